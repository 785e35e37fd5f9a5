"""Population runs of the experiment harness (runner/population_run.py, ``train.py --population``)
at tiny sizes: the rows equal those of separate runs, an interrupted population resumes to the
same rows, and a seed stays with the population it was started in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.adapter import JointStepEnv
from agents.config import STEPConfig
from agents.execution import matrix_game_report
from envs.matrix import penalty
from runner.learners import load_model
from runner.population_run import population_dir, population_groups, run_population
from runner.run import RunError, RunSpec, run_one, run_status
from tests.test_harness import _load, _rows, _spec, _without_time


def _comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows without the training time and the learner statistics (a population reports those
    for all its trials together, so its rows leave them out)."""
    kept = [{k: v for k, v in r.items() if not k.startswith("train_")} for r in _without_time(rows)]
    return sorted(kept, key=lambda r: (r["algo"], int(r["seed"]), int(r["env_steps"])))


def _members(seeds: tuple[int, ...], algo: str = "step", **overrides: Any) -> list[RunSpec]:
    return [_spec(algo, seed=s, steps=600, **overrides) for s in seeds]


def test_population_rows_equal_the_rows_of_separate_runs(tmp_path: Path) -> None:
    specs = _members((0, 1, 2))
    for spec in specs:
        run_one(spec, tmp_path / "single", show_progress=False)
    results = run_population(specs, tmp_path / "pop", show_progress=False)
    single, pop = _rows(tmp_path / "single"), _rows(tmp_path / "pop")
    assert len(pop) == 12 and _comparable(pop) == _comparable(single)
    # Every member has the files of a single run; the resume state is the population's.
    for spec, result in zip(specs, results, strict=True):
        run_dir = spec.run_dir(tmp_path / "pop")
        assert {p.name for p in run_dir.iterdir()} == {"run.json", "last.pt", "best.pt", "tb"}
        record = json.loads((run_dir / "run.json").read_text())
        assert record["spec"] == spec.to_dict()
        assert record["population"] == {"name": "population_0-2_k3", "seeds": [0, 1, 2]}
        # last.pt holds the member's final model: its greedy joint action earns the last row's return.
        _, _, model = load_model(run_dir / "last.pt", JointStepEnv(env=spec.env_ref()))
        joint, _ = matrix_game_report(model, spec.env_ref())
        last = [r for r in pop if r["seed"] == str(spec.seed)][-1]
        payoffs = penalty(-100.0)  # (agents, leader action, follower action)
        assert float(last["eval_return"]) == 5 * payoffs[:, joint[0], joint[1]].mean()
        assert result.eval_return == float(last["eval_return"]) and result.env_steps == 600
    assert (population_dir(specs, tmp_path / "pop") / "state.pt").exists()
    assert population_dir(specs, tmp_path / "pop").name == "population_0-2_k3"


@pytest.mark.parametrize(("algo", "overrides"), [
    ("step", {"minibatches": 2}),  # minibatch permutations from every trial's generator
    ("happo", {}),  # a random agent order per trial and update
])
def test_interrupted_population_resumes_to_the_same_rows(algo: str, overrides: dict[str, Any],
                                                         tmp_path: Path) -> None:
    specs = _members((3, 5), algo, **overrides)
    run_population(specs, tmp_path / "straight", show_progress=False)
    resumed = tmp_path / "resumed"
    run_population(specs, resumed, show_progress=False, stop_after_evaluations=2)  # evaluations at 0 and 200
    state_dir = population_dir(specs, resumed)
    shutil.copytree(state_dir, tmp_path / "saved_at_200")
    run_population(specs, resumed, show_progress=False, resume=True, stop_after_evaluations=1)
    # As if interrupted after appending the rows at 400 but before saving the state there.
    shutil.rmtree(state_dir)
    shutil.copytree(tmp_path / "saved_at_200", state_dir)
    assert sorted({int(r["env_steps"]) for r in _rows(resumed)}) == [0, 200, 400]
    assert [run_status(s, resumed).state for s in specs] == ["in progress", "in progress"]
    assert [run_status(s, resumed).env_steps for s in specs] == [200, 200]
    with pytest.raises(RunError, match="already holds a run"):
        run_population(specs, resumed, show_progress=False)
    run_population(specs, resumed, show_progress=False, resume=True)
    assert _without_time(sorted(_rows(resumed), key=lambda r: (r["seed"], int(r["env_steps"])))) == \
        _without_time(sorted(_rows(tmp_path / "straight"), key=lambda r: (r["seed"], int(r["env_steps"]))))
    # A finished population is skipped on resume.
    assert [r.env_steps for r in run_population(specs, resumed, show_progress=False, resume=True)] == [600, 600]
    assert len(_rows(resumed)) == 8
    assert [run_status(s, resumed).state for s in specs] == ["complete", "complete"]


def test_a_seed_is_resumed_only_in_the_population_it_started_in(tmp_path: Path) -> None:
    s0, s1, s2 = _members((0, 1, 2))
    run_population([s0, s1], tmp_path, show_progress=False, stop_after_evaluations=1)
    with pytest.raises(RunError, match="seed 0 was trained in population population_0-1_k2"):
        run_one(s0, tmp_path, show_progress=False, resume=True)
    with pytest.raises(RunError, match="seed 1 was trained in population population_0-1_k2"):
        run_population([s1, s2], tmp_path, show_progress=False, resume=True)
    run_one(s2, tmp_path, show_progress=False, stop_after_evaluations=1)
    s3 = _members((3,))[0]
    with pytest.raises(RunError, match="seed 2 was trained alone"):
        run_population([s2, s3], tmp_path, show_progress=False, resume=True)
    with pytest.raises(ValueError, match="differ only in their seed"):
        run_population([s0, _spec("step", seed=4, steps=800)], tmp_path / "other", show_progress=False)
    with pytest.raises(RunError, match="happo with this configuration cannot be trained as a population"):
        run_population(_members((0, 1), "happo", minibatches=2), tmp_path / "other", show_progress=False)
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_population_groups_follow_the_seeds_and_leave_other_learners_alone() -> None:
    step = _members((0, 1, 2, 3, 4))
    mappo = _members((0, 1, 2), "mappo")
    maddpg = _spec("maddpg", seed=0)
    normalised = _spec("step", seed=9, obs_normalization=True)  # population training keeps no such statistics
    specs = [*step, *mappo, maddpg, normalised]
    jobs = population_groups(specs, 2)
    assert [[(s.algo, s.seed) for s in job] for job in jobs] == [
        [("step", 0), ("step", 1)], [("step", 2), ("step", 3)], [("step", 4)],
        [("mappo", 0), ("mappo", 1)], [("mappo", 2)], [("maddpg", 0)], [("step", 9)]]
    assert population_groups(specs, 1) == [[s] for s in specs]
    with pytest.raises(ValueError, match="population size 0 must be a positive integer"):
        population_groups(specs, 0)


def test_train_py_population_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _load("examples/train.py")
    argv = ["--env", "matrix/penalty-v0", "--env-kwargs", "episode_length=5", "--algo", "step", "--seeds", "0", "1",
            "2", "--steps", "400", "--eval-every", "200", "--eval-episodes", "3", "--n-envs", "2",
            "--steps-per-collect", "100", "--out", str(tmp_path), "--no-progress", "--workers", "1"]
    results = train.main([*argv, "--population", "2"])
    assert [(r.seed, r.env_steps) for r in results] == [(0, 400), (1, 400), (2, 400)]
    assert len(_rows(tmp_path)) == 9
    step_dir = tmp_path / "runs" / "matrix_penalty-v0_episode_length=5" / "step"
    assert (step_dir / "population_0-1_k2" / "state.pt").exists()
    assert (step_dir / "seed_2" / "state.pt").exists()  # the group of one ran as a single run
    statuses = train.main([*argv, "--population", "2", "--status"])
    assert [(st.seed, st.state, st.env_steps) for st in statuses] == [(0, "complete", 400), (1, "complete", 400),
                                                                     (2, "complete", 400)]
    # Finished runs are skipped on resume, however they were trained: alone, or in another grouping.
    rows = _rows(tmp_path)
    for population in ("1", "3"):
        resumed = train.main([*argv, "--population", population, "--resume"])
        assert [(r.seed, r.env_steps, r.eval_return) for r in resumed] == \
            [(r.seed, r.env_steps, r.eval_return) for r in results]
    assert _rows(tmp_path) == rows
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--population", "0"])
    assert exit_info.value.code == 2
    assert "argument --population: '0' is not a positive integer" in capsys.readouterr().err


def test_members_evaluated_together_score_as_when_evaluated_alone() -> None:
    from agents.population import PopulationSession
    from runner.evaluation import Evaluator, evaluate_together

    spec = _spec("step", seed=0)
    config = spec.algo_config()
    assert isinstance(config, STEPConfig)
    session = PopulationSession(spec.env_ref, config=config, total_steps=200, seeds=[0, 1, 2])
    try:
        session.train_steps(200)  # members that differ
        asked: list[int] = []

        def member_policy(k: int) -> Any:
            asked.append(k)
            return session.learner_of(k).policy

        for episodes in ([3, 3, 3], [3, 2, 3]):  # lockstep; then one member with fewer episodes
            evaluators = [Evaluator(spec.env_ref, episodes=e, seed=s) for e, s in zip(episodes, (0, 1, 2), strict=True)]
            alone = [e.evaluate(session.learner_of(k).policy).metrics() for k, e in enumerate(evaluators)]
            asked.clear()
            together = [r.metrics() for r in evaluate_together(evaluators, session.policy, member_policy)]
            assert together == alone
            # Lockstep: one population call per step, no member policy; else each member alone.
            assert asked == ([] if episodes == [3, 3, 3] else [0, 1, 2])
            for evaluator in evaluators:
                evaluator.close()
    finally:
        session.close()


def test_a_population_resumed_with_other_package_versions_records_them_for_every_member(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.run import _versions

    specs = _members((0, 1))
    run_population(specs, tmp_path, show_progress=False, stop_after_evaluations=2)  # saved at 200
    for spec in specs:
        run_json = spec.run_dir(tmp_path) / "run.json"
        record = json.loads(run_json.read_text())
        record["versions"]["torch"] = "0.0.1"
        run_json.write_text(json.dumps(record))
    capsys.readouterr()
    run_population(specs, tmp_path, show_progress=False, resume=True)
    assert capsys.readouterr().err.count(f"torch 0.0.1 -> {_versions()['torch']}") == 2
    for spec in specs:
        record = json.loads((spec.run_dir(tmp_path) / "run.json").read_text())
        assert record["resumed_with_versions"] == [{"env_steps": 200, "versions": {"torch": _versions()["torch"]}}]
