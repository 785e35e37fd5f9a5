"""The experiment harness (runner/, examples/train.py, examples/evaluate.py) at tiny sizes.

Hand-computed expectations: :class:`SpeedEnv` below has rewards, speeds and crashes chosen so
that every evaluation metric can be worked out on paper; the matrix games give returns that
follow from the greedy joint action.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

import envs
from agents.adapter import JointStepEnv
from agents.config import STEPConfig, Variant
from agents.execution import matrix_game_report
from agents.training import build_learner
from envs.matrix import penalty
from runner.cli import build_train_parser, parse_train_args
from runner.envs import EnvError, EnvRef, check_env, parse_env_kwargs
from runner.evaluation import Evaluator, chunk_seeds, eval_seeds, evaluate_decentralized
from runner.launch import LaunchError, launch
from runner.learners import load_model
from runner.presets import algo_config, config_options
from runner.run import RunError, RunSpec, run_one

ROOT = Path(__file__).resolve().parents[1]


def _load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(script).stem + "_harness", ROOT / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class SpeedEnv(ParallelEnv):  # type: ignore[misc]
    """Three possible agents, of which ``agent_0`` and ``agent_1`` play; ``length`` steps.

    * reward of ``agent_k`` per step: ``k + 1`` (so returns 1 * length and 2 * length);
    * info ``speed`` of ``agent_k`` after step ``t``: ``10 * (k + 1) + t`` m/s;
    * with an odd reset seed, every agent reports ``crashed`` at the last step (a crash
      terminates the episode there; otherwise it is truncated).
    """

    metadata = {"name": "speed_v0", "render_modes": []}

    def __init__(self, length: int = 3) -> None:
        self.possible_agents = ["agent_0", "agent_1", "agent_2"]
        self.length = length
        self._obs_space = spaces.Box(0.0, 100.0, (1,), np.float32)
        self._act_space = spaces.Discrete(2)
        self.state_space = spaces.Box(0.0, 100.0, (1,), np.float32)
        self.agents: list[str] = []
        self.t = 0
        self.odd = False

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    def state(self) -> np.ndarray:
        return np.array([self.t], np.float32)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.agents, self.t, self.odd = ["agent_0", "agent_1"], 0, bool(seed is not None and seed % 2)
        return {a: np.array([self.t], np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> Any:
        self.t += 1
        last = self.t >= self.length
        crash = last and self.odd
        agents = list(self.agents)
        obs = {a: np.array([self.t], np.float32) for a in agents}
        rewards = {a: float(int(a[-1]) + 1) for a in agents}
        infos = {a: {"speed": 10.0 * (int(a[-1]) + 1) + self.t, "crashed": crash} for a in agents}
        terminations = dict.fromkeys(agents, crash)
        truncations = dict.fromkeys(agents, last and not crash)
        self.agents = [] if last else agents
        return obs, rewards, terminations, truncations, infos


def mixed_action_env() -> ParallelEnv:
    """A ParallelEnv whose agents mix Discrete and Box actions (the learners cannot play it)."""
    from tests.toy_envs import RecordingEnv

    return RecordingEnv(action_spaces=[spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)])


class ConstantPolicy:
    """Plays the same joint action (n_agents,) in every time step; the Evaluator's policy protocol."""

    def __init__(self, joint: list[int]) -> None:
        self.joint = np.asarray(joint, np.int64)

    def __call__(self, batch: Any) -> Any:
        from tianshou.data import Batch

        return Batch(act=np.tile(self.joint, (len(batch.obs), 1)))

    def map_action(self, act: np.ndarray) -> np.ndarray:
        return act


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "curves.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


TINY = {"n_envs": 2, "steps_per_collect": 100}


def _spec(algo: str = "step", *, env: str = "matrix/penalty-v0", env_kwargs: dict[str, Any] | None = None,
          steps: int = 400, eval_every: int = 200, seed: int = 0, **overrides: Any) -> RunSpec:
    family = EnvRef(env).family
    base = dict(TINY) if algo != "maddpg" else {"n_envs": 2, "steps_per_collect": 50, "warmup_steps": 100,
                                                 "batch_size": 32}
    config = algo_config(family, algo, {**base, **overrides})
    return RunSpec(env=env, env_kwargs={"episode_length": 5} if env_kwargs is None else env_kwargs, algo=algo,
                   seed=seed, steps=steps, eval_every=eval_every, eval_episodes=3, config=config.to_dict())


# --- environments and options -------------------------------------------------------------------
def test_parse_env_kwargs_reads_literals_and_names_bad_items() -> None:
    assert parse_env_kwargs(["k=-50", "name=abc", "flag=true", "xs=[1, 2]", "s='x y'", "none=None"]) == {
        "k": -50, "name": "abc", "flag": True, "xs": [1, 2], "s": "x y", "none": None}
    with pytest.raises(EnvError, match="'k'; expected KEY=VALUE"):
        parse_env_kwargs(["k"])
    with pytest.raises(EnvError, match="'1x=3'"):
        parse_env_kwargs(["1x=3"])


@pytest.mark.parametrize(("env", "kwargs", "message"), [
    ("nope", {}, "unknown environment 'nope'; expected a registered id"),
    ("no_such_module_xyz:make", {}, "cannot import module 'no_such_module_xyz'"),
    ("tests.test_harness:missing", {}, "has no attribute 'missing'"),
    ("pettingzoo.classic.rps_v2:env", {}, "returned an AEC environment"),
    ("matrix/penalty-v0", {"foo": 1}, "rejected the keyword arguments {'foo': 1}"),
    ("matrix/penalty-v0", {"episode_length": 0}, "episode_length must be a positive integer"),
])
def test_bad_environments_raise_env_errors(env: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message.replace("(", r"\(").replace("{", r"\{").replace("[", r"\[")):
        check_env(EnvRef(env, kwargs)).close()


def test_env_ref_families_and_pickling() -> None:
    import pickle

    assert EnvRef("mamujoco/HalfCheetah-2x3-v0").family == "mamujoco"
    assert EnvRef("merge/hard-v0").family == "merge"
    assert EnvRef("tests.test_harness:SpeedEnv").family == "custom"
    ref = pickle.loads(pickle.dumps(EnvRef("matrix/penalty-v0", {"k": -5})))
    assert ref().payoffs[0, 0, 0] == -5  # type: ignore[attr-defined]


def test_every_config_field_is_an_option_with_its_docstring() -> None:
    from dataclasses import fields

    from agents.maddpg import MADDPGConfig

    options = {o.name: o for o in config_options()}
    expected = {f.name for f in fields(STEPConfig)} | {f.name for f in fields(MADDPGConfig)}
    assert set(options) == expected - {"variant"}
    assert "PPO ratio clip epsilon" in options["clip"].help
    assert options["lr"].owners == ("STEPConfig", "MADDPGConfig")
    assert options["advantage_normalization"].parse is None  # a --x/--no-x flag pair
    assert options["max_grad_norm"].parse is not None and options["max_grad_norm"].parse("none") is None
    help_text = build_train_parser().format_help()
    for name in options:
        assert "--" + name.replace("_", "-") in help_text


def test_presets_follow_the_env_family_and_options_override_them(tmp_path: Path) -> None:
    _, specs = parse_train_args(["--env", "matrix/penalty-v0", "--steps", "1000", "--out", str(tmp_path),
                                 "--algo", "step", "mappo", "--seeds", "3", "4", "--entropy", "0.2",
                                 "--no-advantage-normalization"])
    # Seed-major: every algorithm's first seed before any second seed.
    assert [(s.algo, s.seed) for s in specs] == [("step", 3), ("mappo", 3), ("step", 4), ("mappo", 4)]
    for s in specs:
        assert s.config["gamma"] == 0.0  # STEPConfig.matrix_games()
        assert s.config["entropy"] == 0.2 and s.config["advantage_normalization"] is False
    assert specs[1].config["variant"] == "mappo" and specs[3].config["variant"] == "mappo"
    _, specs = parse_train_args(["--env", "tests.test_harness:SpeedEnv", "--steps", "1000", "--out",
                                 str(tmp_path), "--algo", "maddpg"])
    assert specs[0].config["gamma"] == 0.99 and specs[0].config["tau"] == 0.01


def test_eval_every_and_steps_round_up_to_whole_collects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, specs = parse_train_args(["--env", "matrix/penalty-v0", "--steps", "1000", "--eval-every", "250",
                                 "--n-envs", "3", "--steps-per-collect", "100", "--out", str(tmp_path)])
    # A collect of 100 steps over 3 envs takes ceil(100 / 3) * 3 = 102 steps.
    assert (specs[0].eval_every, specs[0].steps) == (306, 1020)
    assert "using --eval-every 306 --steps 1020" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--env", "nope"], "unknown environment 'nope'"),
    (["--env", "matrix/penalty-v0", "--env-kwargs", "foo=1"], "rejected the keyword arguments"),
    (["--env", "matrix/penalty-v0", "--env-kwargs", "foo"], "expected KEY=VALUE"),
    (["--env", "matrix/penalty-v0", "--n-envs", "0"], "n_envs=0 must be a positive integer"),
    (["--env", "matrix/penalty-v0", "--lr", "fast"], "bad value 'fast' for lr"),
    (["--env", "matrix/penalty-v0", "--tau", "0.1"], "['--tau'] do not apply to --algo step"),
    (["--env", "matrix/penalty-v0", "--order", "agent_0", "agent_9"], "unknown ['agent_9']"),
    (["--env", "matrix/penalty-v0", "--seeds", "-1"], "seed -1 must lie in [0, 1000000)"),
    (["--env", "matrix/penalty-v0", "--algo", "dqn"], "invalid choice: 'dqn'"),
    (["--env", "continuous/quadratic-v0", "--algo", "maddpg"], "maddpg handles Discrete actions only"),
    (["--env", "matrix/penalty-v0", "--algo", "maddpg", "--eval-every", "300"], "warmup_steps=500"),
    (["--env", "tests.test_harness:mixed_action_env"], "unsupported action spaces"),
])
def test_cli_usage_errors_name_the_bad_value(argv: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_train_args([*argv, "--steps", "1000", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


SCRIPTS = sorted(str(path.relative_to(ROOT)) for folder in ("examples", "benchmarks")
                 for path in (ROOT / folder).glob("*.py") if "def main(" in path.read_text())


def test_every_script_is_checked() -> None:
    assert {"examples/train.py", "examples/plot_scores.py", "benchmarks/bench_step.py"} <= set(SCRIPTS)
    assert len(SCRIPTS) >= 20


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_on_every_script(script: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / Path(script).parent))  # as when run: its folder's helpers
    with pytest.raises(SystemExit) as exc:
        _load(script).main(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


# --- evaluation ---------------------------------------------------------------------------------
def test_evaluation_metrics_by_hand() -> None:
    evaluator = Evaluator(SpeedEnv, episodes=6, seed=0)
    result = evaluator.evaluate(ConstantPolicy([0, 0, 0]))
    seeds = eval_seeds(0, 6)
    odd = np.array([s % 2 for s in seeds], bool)
    # agent_2 never plays: its return is NaN and the mean is over agent_0 (3) and agent_1 (6).
    np.testing.assert_array_equal(result.agent_returns, np.tile([3.0, 6.0, np.nan], (6, 1)))
    m = result.metrics()
    assert m["eval_return"] == 4.5 and m["eval_return_std"] == 0.0 and m["eval_length"] == 3.0
    # speeds after steps 1..3: agent_0 11, 12, 13 and agent_1 21, 22, 23 -> mean 17.
    assert m["avg_speed"] == 17.0
    assert m["collision_rate"] == odd.mean()
    assert m["execution"] == "decentralized"  # a policy without prior actions


def test_matrix_game_evaluation_is_the_payoff_of_the_joint_action() -> None:
    # Penalty: (a1, a3) pays 10 to both; 4 steps -> 40. Mixing: (a1, a1) pays (0, 5) -> mean 2.5 * 4.
    penalty_eval = Evaluator(EnvRef("matrix/penalty-v0", {"episode_length": 4}), episodes=2, seed=1)
    assert penalty_eval.evaluate(ConstantPolicy([0, 2])).metrics()["eval_return"] == 40.0
    mixing = Evaluator(EnvRef("matrix/mixing-v0", {"episode_length": 4}), episodes=1, seed=1).evaluate(
        ConstantPolicy([0, 0]))
    np.testing.assert_array_equal(mixing.agent_returns, [[0.0, 20.0]])
    assert mixing.metrics()["eval_return"] == 10.0


def test_evaluation_does_not_touch_the_training_rngs() -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(5)
    np.random.seed(5)
    Evaluator(SpeedEnv, episodes=2, seed=0).evaluate(ConstantPolicy([1, 1, 1]))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def test_evaluation_and_training_seeds_are_disjoint_and_stable() -> None:
    evals = eval_seeds(7, 50)
    assert evals == eval_seeds(7, 50) and len(set(evals)) == 50
    trains = {s for c in range(100) for s in chunk_seeds(7, c, 8)}
    assert min(evals) >= 2**30 > max(trains)


@pytest.mark.parametrize("env", ["matrix/mixing-v0", "merge/easy-v0"])
def test_decentralized_execution_gives_the_reported_returns(env: str) -> None:
    """With common-knowledge inputs (observation='state'), agents that recompute their superiors'
    greedy actions (GreedyExecutor) play exactly the batched evaluation's episodes."""
    ref = EnvRef(env, {"episode_length": 3} if env.startswith("matrix") else {})
    torch.manual_seed(2)
    probe = JointStepEnv(env=ref(), observation="state")
    learner = build_learner(spec=probe.joint_spec, config=STEPConfig(), env=probe)
    batched = Evaluator(ref, observation="state", episodes=2, seed=3).evaluate(learner.policy)
    literal = evaluate_decentralized(learner.model, ref, order=None, observation="state", seeds=eval_seeds(3, 2))
    assert batched.execution == "decentralized"
    np.testing.assert_array_equal(batched.agent_returns, literal.agent_returns)
    np.testing.assert_array_equal(batched.lengths, literal.lengths)


# --- runs ---------------------------------------------------------------------------------------
def test_tiny_run_writes_the_expected_rows(tmp_path: Path) -> None:
    spec = _spec("step")
    result = run_one(spec, tmp_path, show_progress=False)
    rows = _rows(tmp_path)
    assert [int(r["env_steps"]) for r in rows] == [0, 200, 400]
    assert {r["env"] for r in rows} == {"matrix/penalty-v0[episode_length=5]"}
    assert all(r["algo"] == "step" and r["seed"] == "0" and r["eval_length"] == "5.0" for r in rows)
    assert all(r["avg_speed"] == "" and r["collision_rate"] == "" for r in rows)
    assert [r["execution"] for r in rows] == ["decentralized"] * 3  # identical observations
    assert [float(r["wall_s"]) for r in rows] == sorted(float(r["wall_s"]) for r in rows)
    # One STEP update per 100-step collect: 2 agents x 5 epochs x 1 minibatch = 10 gradient steps.
    assert [int(r["gradient_steps"]) for r in rows] == [0, 20, 40]
    assert rows[0]["train_actor_loss"] == "" and rows[1]["train_actor_loss"] != ""
    run_dir = Path(result.run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {"run.json", "last.pt", "best.pt", "state.pt", "tb"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/return")] == [0, 200, 400]
    assert [e.value for e in events.Scalars("eval/return")] == [float(r["eval_return"]) for r in rows]
    assert "train/actor_loss" in events.Tags()["scalars"]
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored["spec"] == spec.to_dict() and stored["family"] == "matrix"
    # The last row's return is the payoff of the final model's greedy joint action, 5 times.
    _, policy, model = load_model(run_dir / "last.pt", JointStepEnv(env=spec.env_ref()))
    joint, _ = matrix_game_report(model, spec.env_ref())
    payoffs = penalty(-100.0)  # (agents, leader action, follower action)
    assert float(rows[-1]["eval_return"]) == 5 * payoffs[:, joint[0], joint[1]].mean()
    assert result.eval_return == float(rows[-1]["eval_return"])


@pytest.mark.parametrize(("algo", "env", "env_kwargs", "overrides"), [
    ("step", "matrix/penalty-v0", None, {"minibatches": 2}),
    ("happo", "mamujoco/HalfCheetah-2x3-v0", {"episode_length": 30}, {"minibatches": 2}),
    ("maddpg", "merge/easy-v0", {}, {}),
])
def test_interrupted_and_resumed_run_writes_the_same_rows(algo: str, env: str, env_kwargs: dict[str, Any] | None,
                                                          overrides: dict[str, Any], tmp_path: Path) -> None:
    spec = _spec(algo, env=env, env_kwargs=env_kwargs, steps=600, **overrides)
    run_one(spec, tmp_path / "straight", show_progress=False)
    resumed = tmp_path / "resumed"
    run_one(spec, resumed, show_progress=False, stop_after_evaluations=2)  # evaluations at 0 and 200
    run_dir = spec.run_dir(resumed)
    shutil.copytree(run_dir, tmp_path / "saved_at_200")
    run_one(spec, resumed, show_progress=False, resume=True, stop_after_evaluations=1)
    # As if interrupted after appending the row at 400 but before saving the state at 400: the
    # run resumes from 200, drops that row and computes it again.
    shutil.rmtree(run_dir)
    shutil.copytree(tmp_path / "saved_at_200", run_dir)
    assert [int(r["env_steps"]) for r in _rows(resumed)] == [0, 200, 400]
    with pytest.raises(RunError, match="already holds a run"):
        run_one(spec, resumed, show_progress=False)
    run_one(spec, resumed, show_progress=False, resume=True)
    straight_rows, resumed_rows = _rows(tmp_path / "straight"), _rows(resumed)
    assert [int(r["env_steps"]) for r in resumed_rows] == [0, 200, 400, 600]
    assert _without_time(resumed_rows) == _without_time(straight_rows)
    # A finished run is skipped on resume.
    assert run_one(spec, resumed, show_progress=False, resume=True).env_steps == 600
    assert len(_rows(resumed)) == 4


def test_resuming_without_the_replay_buffer_fails_restarts_or_continues_empty(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A MADDPG run whose replay file is gone (it is not committed): a clear error by default,
    --missing-replay restart trains it again (rows as an uninterrupted run), empty continues
    from the saved learner and records the loss in run.json."""
    from runner.run import run_status

    spec = _spec("maddpg", steps=600)
    run_one(spec, tmp_path / "straight", show_progress=False)
    straight_rows = _without_time(_rows(tmp_path / "straight"))
    for policy in ("restart", "empty"):
        out = tmp_path / policy
        run_one(spec, out, show_progress=False, stop_after_evaluations=2)  # saved at 200
        run_dir = spec.run_dir(out)
        (replay,) = run_dir.glob("replay-*.pkl")
        assert replay.name == "replay-200.pkl"
        replay.unlink()
        status = run_status(spec, out)
        assert (status.state, status.env_steps) == ("in progress", 200)
        assert "replay buffer replay-200.pkl is missing" in status.detail
        with pytest.raises(RunError, match=r"at step 200: its replay buffer replay-200.pkl is missing.*"
                                           r"--missing-replay restart.*--missing-replay empty"):
            run_one(spec, out, show_progress=False, resume=True)
        assert len(_rows(out)) == 2 and (run_dir / "state.pt").exists()  # the error lost nothing
        with pytest.raises(ValueError, match="missing_replay='later'; expected one of"):
            run_one(spec, out, show_progress=False, resume=True, missing_replay="later")
        assert run_one(spec, out, show_progress=False, resume=True, missing_replay=policy).env_steps == 600
        rows = _without_time(_rows(out))
        record = json.loads((run_dir / "run.json").read_text())
        assert [int(r["env_steps"]) for r in rows] == [0, 200, 400, 600]
        if policy == "restart":
            assert rows == straight_rows
            assert "replay_lost_at_steps" not in record
            assert "training the run again from step 0" in capsys.readouterr().err
        else:
            assert rows[:2] == straight_rows[:2] and rows[2:] != straight_rows[2:]
            assert record["replay_lost_at_steps"] == [200]
            assert "continuing at step 200 with an empty one" in capsys.readouterr().err


def test_resuming_with_other_package_versions_warns_and_records_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run resumed under other package versions than it was trained with goes on, says which
    changed, and records them in run.json; a later resume under the same versions adds nothing."""
    from runner.run import _versions

    spec = _spec("step", steps=600)
    run_one(spec, tmp_path, show_progress=False, stop_after_evaluations=2)  # saved at 200
    run_json = spec.run_dir(tmp_path) / "run.json"
    record = json.loads(run_json.read_text())
    now = _versions()
    assert record["versions"] == now and "resumed_with_versions" not in record
    record["versions"]["torch"] = "0.0.1"  # as if trained so far under another torch
    record["versions"]["not-a-package"] = "1.0"  # and a package that is gone now
    run_json.write_text(json.dumps(record))
    capsys.readouterr()
    run_one(spec, tmp_path, show_progress=False, resume=True, stop_after_evaluations=1)  # to 400
    err = capsys.readouterr().err
    assert f"resuming at step 200 with other package versions than it was trained with (not-a-package 1.0 -> " \
           f"absent, torch 0.0.1 -> {now['torch']})" in err
    record = json.loads(run_json.read_text())
    assert record["resumed_with_versions"] == [{"env_steps": 200,
                                                "versions": {"not-a-package": "absent", "torch": now["torch"]}}]
    assert record["versions"]["torch"] == "0.0.1"  # what trained the start is kept
    run_one(spec, tmp_path, show_progress=False, resume=True)  # from 400, under the versions now in effect
    assert "other package versions" not in capsys.readouterr().err
    assert len(json.loads(run_json.read_text())["resumed_with_versions"]) == 1
    assert [int(r["env_steps"]) for r in _rows(tmp_path)] == [0, 200, 400, 600]


def test_train_py_passes_missing_replay_through() -> None:
    args, _ = parse_train_args(["--env", "matrix/penalty-v0", "--algo", "maddpg", "--steps", "600", "--out", "x",
                                "--resume", "--missing-replay", "restart"])
    assert args.missing_replay == "restart"
    assert parse_train_args(["--env", "matrix/penalty-v0", "--steps", "600", "--out", "x"])[0].missing_replay == "fail"
    with pytest.raises(SystemExit):
        parse_train_args(["--env", "matrix/penalty-v0", "--steps", "600", "--out", "x", "--missing-replay", "later"])


@pytest.mark.parametrize("algo", ["step", "maddpg"])
def test_a_finished_run_extended_with_more_steps_equals_a_longer_run(algo: str, tmp_path: Path) -> None:
    """--resume with a larger --steps continues a finished run as if it had been started longer."""
    run_one(_spec(algo, steps=600), tmp_path / "straight", show_progress=False)
    short = tmp_path / "extended"
    run_one(_spec(algo, steps=400), short, show_progress=False)
    assert run_one(_spec(algo, steps=600), short, show_progress=False, resume=True).env_steps == 600
    assert _without_time(_rows(short)) == _without_time(_rows(tmp_path / "straight"))
    record = json.loads((_spec(algo).run_dir(short) / "run.json").read_text())
    assert record["spec"]["steps"] == 600 and record["extended_from_steps"] == [400]
    with pytest.raises(RunError, match="extended, not shortened"):
        run_one(_spec(algo, steps=400), short, show_progress=False, resume=True)


def test_extending_is_refused_where_the_learning_rate_decays_over_the_run(tmp_path: Path) -> None:
    run_one(_spec("step", steps=200, lr_decay=True), tmp_path, show_progress=False)
    with pytest.raises(RunError, match=r"cannot extend .* from 200 to 400 steps: its learning rate decays"):
        run_one(_spec("step", steps=400, lr_decay=True), tmp_path, show_progress=False, resume=True)
    run_one(_spec("step", steps=200, eval_every=200, seed=1, steps_per_collect=300), tmp_path, show_progress=False)
    with pytest.raises(RunError, match="collects were cut to the old total"):
        run_one(_spec("step", steps=400, seed=1, steps_per_collect=300), tmp_path, show_progress=False, resume=True)


def test_resume_refuses_a_changed_configuration(tmp_path: Path) -> None:
    run_one(_spec("step", steps=200), tmp_path, show_progress=False)
    with pytest.raises(RunError, match=r"config.lr: stored 0.0005, now 0.001"):
        run_one(_spec("step", steps=200, lr=1e-3), tmp_path, show_progress=False, resume=True)
    # A longer run alone is an extension (test below); with another change it is refused too.
    with pytest.raises(RunError, match=r"config.lr: stored 0.0005, now 0.001; steps: stored 200, now 400"):
        run_one(_spec("step", steps=400, lr=1e-3), tmp_path, show_progress=False, resume=True)


def test_resume_accepts_a_config_field_added_later_at_its_default(tmp_path: Path) -> None:
    """A run started before a STEPConfig field existed resumes while the field keeps its default."""
    spec = _spec("step", steps=400)
    run_one(spec, tmp_path, show_progress=False, stop_after_evaluations=2)
    run_json = spec.run_dir(tmp_path) / "run.json"
    stored = json.loads(run_json.read_text())
    del stored["spec"]["config"]["beta"]  # as if written before the field was added
    run_json.write_text(json.dumps(stored))
    assert run_one(spec, tmp_path, show_progress=False, resume=True).env_steps == 400
    stored["spec"]["config"].pop("vf_coef")
    run_json.write_text(json.dumps(stored))
    with pytest.raises(RunError, match=r"config.vf_coef: stored None, now 0.25"):
        run_one(_spec("step", steps=400, vf_coef=0.25), tmp_path, show_progress=False, resume=True)


def test_status_reports_every_run_of_a_command_and_trains_nothing(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    train = _load("examples/train.py")
    argv = ["--env", "matrix/penalty-v0", "--env-kwargs", "episode_length=5", "--algo", "step", "mappo",
            "--seeds", "0", "1", "--steps", "400", "--eval-every", "200", "--eval-episodes", "3", "--n-envs", "2",
            "--steps-per-collect", "100", "--out", str(tmp_path), "--no-progress"]
    _, specs = parse_train_args(argv)
    by_key = {(s.algo, s.seed): s for s in specs}
    run_one(by_key[("step", 0)], tmp_path, show_progress=False)  # complete
    run_one(by_key[("mappo", 0)], tmp_path, show_progress=False, stop_after_evaluations=2)  # at 200 of 400
    other = RunSpec(**{**by_key[("step", 1)].to_dict(), "config": {**by_key[("step", 1)].config, "lr": 1e-2}})
    run_one(other, tmp_path, show_progress=False, stop_after_evaluations=1)  # another config under step seed 1
    rows_before = _rows(tmp_path)
    statuses = train.main([*argv, "--status"])
    assert _rows(tmp_path) == rows_before  # nothing trained
    got = {(st.algo, st.seed): (st.state, st.env_steps) for st in statuses}
    assert got == {("step", 0): ("complete", 400), ("mappo", 0): ("in progress", 200),
                   ("step", 1): ("differs", 0), ("mappo", 1): ("not started", 0)}
    last = {(r["algo"], r["seed"]): float(r["eval_return"]) for r in rows_before}  # the last row per run
    st = next(st for st in statuses if (st.algo, st.seed) == ("mappo", 0))
    assert st.last_return == last[("mappo", "0")] and st.wall_s > 0
    out = capsys.readouterr().out
    assert "step    seed 1: differs (config.lr: stored 0.01, now 0.0005)" in out
    assert "2 of 4 runs complete or not resumable; 2 to go (600 steps)" in out
    # A larger --steps extends a finished run (the matrix preset has no schedule over the total);
    # a smaller one cannot shorten it.
    longer = [a if a != "400" else "800" for a in argv]
    assert {(st.algo, st.seed): st.state for st in train.main([*longer, "--status"])}[("step", 0)] == "in progress"
    shorter = [a if a != "400" else "200" for a in argv]
    shortened = {(st.algo, st.seed): st for st in train.main([*shorter, "--status"])}[("step", 0)]
    assert shortened.state == "differs" and "can be extended, not shortened" in shortened.detail


def test_custom_env_and_pettingzoo_env_run_end_to_end(tmp_path: Path) -> None:
    train = _load("examples/train.py")
    train.main(["--env", "tests.test_harness:SpeedEnv", "--algo", "mappo", "--steps", "200", "--eval-every", "100",
                "--eval-episodes", "2", "--n-envs", "2", "--steps-per-collect", "100", "--out", str(tmp_path / "a"),
                "--workers", "1", "--no-progress"])
    rows = _rows(tmp_path / "a")
    assert [float(r["eval_return"]) for r in rows] == [4.5, 4.5, 4.5]  # rewards do not depend on actions
    assert [float(r["avg_speed"]) for r in rows] == [17.0, 17.0, 17.0]
    results = train.main(["--env", "pettingzoo.classic.rps_v2:parallel_env", "--env-kwargs", "max_cycles=6",
                          "--steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--n-envs", "2",
                          "--steps-per-collect", "100", "--out", str(tmp_path / "b"), "--workers", "1",
                          "--no-progress"])
    rows = _rows(tmp_path / "b")
    assert [r["env"] for r in rows] == ["pettingzoo.classic.rps_v2:parallel_env[max_cycles=6]"] * 3
    # Zero-sum: the mean over the two players is 0; each agent sees the other's last move.
    assert {float(r["eval_return"]) for r in rows} == {0.0} and {r["eval_length"] for r in rows} == {"6.0"}
    assert {r["execution"] for r in rows} == {"communicated"}
    assert results[0].env_steps == 200


def test_local_workers_give_the_rows_of_an_in_process_run(tmp_path: Path) -> None:
    """Two spawned worker processes (two seeds) write the rows an in-process run writes."""
    train = _load("examples/train.py")
    argv = ["--env", "matrix/mixing-v0", "--env-kwargs", "episode_length=4", "--algo", "step", "--seeds", "0", "1",
            "--steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--n-envs", "2",
            "--steps-per-collect", "100", "--no-progress"]
    train.main([*argv, "--out", str(tmp_path / "pool"), "--workers", "2"])
    train.main([*argv, "--out", str(tmp_path / "here"), "--workers", "1"])

    def key(r: dict[str, str]) -> tuple[str, int]:
        return r["seed"], int(r["env_steps"])

    pool, here = sorted(_rows(tmp_path / "pool"), key=key), sorted(_rows(tmp_path / "here"), key=key)
    assert len(pool) == 6 and _without_time(pool) == _without_time(here)


# --- evaluate.py --------------------------------------------------------------------------------
def test_evaluate_script_reproduces_the_last_row_and_writes_a_gif(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec("ippo", env="merge/easy-v0", env_kwargs={}, steps=200, eval_every=200)
    result = run_one(spec, tmp_path, show_progress=False)
    last = _rows(tmp_path)[-1]
    gif = tmp_path / "episode.gif"
    metrics = _load("examples/evaluate.py").main([str(Path(result.run_dir) / "last.pt"), "--episodes", "3",
                                                  "--video", str(gif), "--max-frames", "5"])
    out = capsys.readouterr().out
    assert "ippo model" in out and "avg_speed" in out and "collision_rate" in out
    # Same model, same evaluation seeds: the same numbers as the run's last evaluation.
    assert metrics["eval_return"] == float(last["eval_return"])
    assert metrics["avg_speed"] == float(last["avg_speed"])
    assert metrics["collision_rate"] == float(last["collision_rate"])
    # One episode at a time instead of all three at once: the same numbers.
    one_by_one = _load("examples/evaluate.py").main([str(Path(result.run_dir) / "last.pt"), "--episodes", "3",
                                                     "--batch", "1"])
    assert {k: one_by_one[k] for k in metrics} == metrics
    from PIL import GifImagePlugin, Image

    with Image.open(gif) as image:
        assert isinstance(image, GifImagePlugin.GifImageFile)
        assert image.n_frames == 5 and image.size == (1200, 120)


def test_evaluate_script_appends_one_csv_row_per_checkpoint(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    evaluate = _load("examples/evaluate.py")
    runs = {}
    for algo, seed in (("ippo", 0), ("mappo", 1)):
        runs[algo] = Path(run_one(_spec(algo, env="merge/easy-v0", env_kwargs={}, steps=200, eval_every=200,
                                        seed=seed), tmp_path, show_progress=False).run_dir) / "last.pt"
    last = {r["algo"]: r for r in _rows(tmp_path)}
    table = tmp_path / "final" / "final_eval.csv"
    evaluate.main([str(runs["ippo"]), str(runs["mappo"]), "--episodes", "3", "--csv", str(table)])
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["algo"], r["seed"], r["eval_seed"]) for r in rows] == [("ippo", "0", "0"), ("mappo", "1", "1")]
    assert list(rows[0]) == list(evaluate.CSV_COLUMNS) and rows[0]["env"] == "merge/easy-v0"
    for r in rows:  # each run's own evaluation seeds: its last curve row, number for number
        assert r["checkpoint"] == str(runs[r["algo"]]) and r["episodes"] == "3"
        for column in ("eval_return", "avg_speed", "collision_rate", "eval_length"):
            assert float(r[column]) == float(last[r["algo"]][column])
    # --seed: both models play the same episodes; the rows are appended below the others.
    evaluate.main([str(runs["ippo"]), str(runs["mappo"]), "--episodes", "3", "--seed", "10000", "--csv", str(table)])
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["eval_seed"] for r in rows[2:]} == {"10000"}
    assert "episode 0 (seed " in capsys.readouterr().out
    with pytest.raises(SystemExit):  # one video, one model
        evaluate.main([str(runs["ippo"]), str(runs["mappo"]), "--video", str(tmp_path / "v.gif")])
    assert "--video records one model's episode; got 2 checkpoints" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit):  # a file of other columns is refused before anything runs
        evaluate.main([str(runs["ippo"]), "--csv", str(other)])
    assert "holds other columns (a, b)" in capsys.readouterr().err and other.read_text() == "a,b\n1,2\n"


def test_evaluate_script_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evaluate = _load("examples/evaluate.py")
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(tmp_path / "none.pt")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err
    probe = JointStepEnv(env=envs.make("matrix/penalty-v0"))
    learner = build_learner(spec=probe.joint_spec, config=STEPConfig(variant=Variant.STEP), env=probe)
    from agents.checkpoint import save_checkpoint

    save_checkpoint(learner, tmp_path / "m.pt")
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path / "m.pt")])  # no run.json beside it
    assert "give --env" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path / "m.pt"), "--env", "tests.test_harness:SpeedEnv"])
    assert "differently shaped game" in capsys.readouterr().err
    metrics = evaluate.main([str(tmp_path / "m.pt"), "--env", "matrix/penalty-v0", "--episodes", "2"])
    assert metrics["eval_length"] == 25.0
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path / "m.pt"), "--env", "matrix/penalty-v0", "--batch", "0"])
    assert "--batch must be positive, got 0" in capsys.readouterr().err


def test_failed_runs_are_listed(tmp_path: Path) -> None:
    spec = _spec("step", steps=200)
    launch([spec], tmp_path, workers=1, show_progress=False)
    with pytest.raises(LaunchError, match="1 of 1 runs failed:\n  matrix/penalty-v0\\[episode_length=5\\] step seed 0: "
                                          "RunError: .* already holds a run"):
        launch([spec], tmp_path, workers=1, show_progress=False)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_sigterm_to_train_py_stops_its_worker_processes(tmp_path: Path) -> None:
    """``kill PID`` reaches the main process only; its pool workers must not run on, orphaned,
    appending rows to curves.csv (a later --resume would then share the directory with them)."""
    import os
    import signal
    import subprocess
    import time

    from tests.test_scripts_resume import alive, children

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/train.py"), "--env", "matrix/penalty-v0", "--algo", "step",
         "--seeds", "0", "1", "--steps", "400000", "--eval-every", "100", "--eval-episodes", "1",
         "--n-envs", "2", "--steps-per-collect", "100", "--workers", "2", "--no-progress", "--out", str(out)],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    curves = out / "curves.csv"
    deadline = time.monotonic() + 240
    while not (curves.exists() and {r["seed"] for r in _rows(out)} == {"0", "1"}):  # both workers train
        assert proc.poll() is None, f"the launch ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the workers did not start in time"
        time.sleep(0.05)
    workers = children(proc.pid)
    assert workers, "no worker processes found"
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "--resume" in stderr, stderr
    time.sleep(0.5)
    assert not [p for p in workers if alive(p)], "worker processes outlived the launch"
    rows = len(_rows(out))
    time.sleep(1.0)
    assert len(_rows(out)) == rows, "curves.csv still grows after the launch was stopped"
