"""Population training (agents.population): K trials trained together, each as its own learner.

* A trial of a population is the single-trial run of its seed (to float rounding: batched
  matrix products round differently), whatever the other trials are.
* Trials are independent: a huge loss, huge parameters or another random stream in trial j
  leave trial k's update bit for bit unchanged; gradient norms are clipped per trial.
* The array-computed matrix-game vector env returns exactly what Tianshou's DummyVectorEnv of
  JointStepEnv returns.
* Bad input is a ValueError naming the value; groups of trials are journaled and resumed.
* (slow) The SE rate of STEP on Penalty k=-100 does not depend on the population size.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tianshou.env import DummyVectorEnv

from agents.adapter import JointStepEnv
from agents.algorithm import clip_grad_norm_per_trial_
from agents.config import STEPConfig, Variant
from agents.model import MultiAgentActorCritic
from agents.population import (
    PopulationModel,
    PopulationSession,
    check_population_config,
    check_seeds,
)
from agents.training import TrainingSession, critics_read_state
from envs.matrix import MatrixGame, penalty
from runner.journal import TrialJournal, run_trial_groups
from runner.matrix_venv import MatrixGameVectorEnv

PAYOFFS = penalty(-100)


def _game() -> MatrixGame:
    return MatrixGame(PAYOFFS)


def _fast_venv(config: STEPConfig, payoffs: np.ndarray = PAYOFFS) -> Any:
    with_state = critics_read_state(config, MatrixGame(payoffs))
    return lambda fns: MatrixGameVectorEnv(payoffs, len(fns), with_state=with_state)


def _state(model: MultiAgentActorCritic) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# --- a population trial is the single trial of its seed ---------------------------------------

@pytest.mark.parametrize("variant", [Variant.STEP, Variant.MAPPO, Variant.IPPO, Variant.HAPPO])
def test_trial_of_a_population_reproduces_the_single_trial(variant: Variant) -> None:
    # Three collects and updates through Tianshou's trainer: the same sampled actions and the
    # same parameters (to float rounding) as the single trial of seed 3.
    config = STEPConfig.matrix_games(variant=variant)
    steps = 1200
    single = TrainingSession(_game, config=config, total_steps=steps, seed=3)
    single.train_steps(steps)
    expected = _state(single.learner.model)
    population = PopulationSession(_game, config=config, total_steps=steps, seeds=[5, 3, 7])
    population.train_steps(steps)
    assert _max_diff(expected, _state(population.model_of(1))) < 1e-5
    # ... and it really trained: trial 1 moved away from its start and differs from trial 0.
    assert _max_diff(expected, _state(population.model_of(0))) > 1e-2


def test_bottom_up_start_reproduces_the_single_trial() -> None:
    # STEPConfig.bottom_up over three updates of 400 steps: the leader waits for the first 0.5
    # of the run (updates 1 and 2), then learns; as in the single trial of seed 3.
    config = STEPConfig.matrix_games(bottom_up=0.5)
    steps = 1200
    single = TrainingSession(_game, config=config, total_steps=steps, seed=3)
    single.train_steps(steps)
    expected = _state(single.learner.model)
    population = PopulationSession(_game, config=config, total_steps=steps, seeds=[5, 3])
    population.train_steps(steps)
    assert _max_diff(expected, _state(population.model_of(1))) < 1e-5
    plain = TrainingSession(_game, config=STEPConfig.matrix_games(), total_steps=steps, seed=3)
    plain.train_steps(steps)
    assert _max_diff(expected, _state(plain.learner.model)) > 1e-3  # the option changed the run


def test_bootstrap_values_with_gamma_reproduce_the_single_trial() -> None:
    # gamma > 0: the bootstrap values of truncated steps sample the superiors' actions from the
    # current policy, from each trial's own generator as the single trial does.
    config = STEPConfig.matrix_games(gamma=0.99, gae_lambda=0.95)
    single = TrainingSession(_game, config=config, total_steps=800, seed=3)
    single.train_steps(800)
    population = PopulationSession(_game, config=config, total_steps=800, seeds=[8, 3], venv_fn=_fast_venv(config))
    population.train_steps(800)
    assert _max_diff(_state(single.learner.model), _state(population.model_of(1))) < 1e-5


def test_value_normalisation_is_per_trial_and_reproduces_the_single_trial() -> None:
    config = STEPConfig.matrix_games(value_normalization=True)
    single = TrainingSession(_game, config=config, total_steps=800, seed=3)
    single.train_steps(800)
    population = PopulationSession(_game, config=config, total_steps=800, seeds=[8, 3], venv_fn=_fast_venv(config))
    population.train_steps(800)
    expected, found = _state(single.learner.model), _state(population.model_of(1))
    assert _max_diff(expected, found) < 1e-5
    assert "value_norm.mean" in found and float(found["value_norm.count"][0]) == 800  # 2 collects x 400
    other = _state(population.model_of(0))
    assert not torch.equal(other["value_norm.mean"], found["value_norm.mean"])  # each trial its own


def test_trial_result_does_not_depend_on_the_other_trials() -> None:
    config = STEPConfig.matrix_games()

    def trained(seeds: list[int], index: int) -> dict[str, torch.Tensor]:
        session = PopulationSession(_game, config=config, total_steps=1200, seeds=seeds, venv_fn=_fast_venv(config))
        session.train_steps(1200)
        return _state(session.model_of(index))

    alone = trained([3], 0)
    assert _max_diff(alone, trained([1, 3, 2], 1)) < 1e-6
    assert _max_diff(alone, trained([3, 11], 0)) < 1e-6


def test_collected_actions_are_the_single_trials() -> None:
    # Trial k samples from its own generator, continuing the stream the single trial uses.
    config = STEPConfig.matrix_games()
    single = TrainingSession(_game, config=config, total_steps=400, seed=4)
    single.learner.policy.is_within_training_step = True  # sample, as in training
    single.collector.collect(n_step=400)
    expected = np.asarray(single.collector.buffer.sample(0)[0].act)
    population = PopulationSession(_game, config=config, total_steps=400, seeds=[9, 4], venv_fn=_fast_venv(config))
    population.policy.is_within_training_step = True
    population.collector.collect(n_step=800)
    batch, indices = population.collector.buffer.sample(0)
    act = np.asarray(batch.act)[np.argsort(indices, kind="stable")]
    assert np.array_equal(act[400:], expected)
    assert not np.array_equal(act[:400], expected)


# --- independence -----------------------------------------------------------------------------

def _prepared(seeds: list[int], config: STEPConfig | None = None) -> PopulationSession:
    """A population with one collected, preprocessed batch (ready for gradient steps)."""
    config = config or STEPConfig.matrix_games()
    session = PopulationSession(_game, config=config, total_steps=400, seeds=seeds, venv_fn=_fast_venv(config))
    session.policy.is_within_training_step = True
    session.collector.collect(n_step=400 * len(seeds))
    batch, indices = session.collector.buffer.sample(0)
    session.algorithm._preprocess_batch(batch, session.collector.buffer, indices)
    return session


def _one_step(session: PopulationSession, priority: int = 1, *, scale_trial: int | None = None,
              scale: float = 1.0) -> torch.Tensor:
    """One gradient step of STEP's group ``priority`` (trial ``scale_trial``'s returns and
    advantages multiplied by ``scale``); returns the per-trial gradient norms."""
    algo = session.algorithm
    pairs = copy.copy(algo._pairs)
    assert pairs is not None
    if scale_trial is not None:
        for name in ("adv", "ret"):
            value = getattr(pairs, name).clone()
            value[scale_trial] *= scale
            setattr(pairs, name, value)
    group = torch.arange(pairs.row.numel())[pairs.priority == priority]
    log: dict[str, list[float]] = {"actor": [], "vf": [], "ent": [], "reg": []}
    algo._update_group(pairs, group, 1, log, priority=priority)
    assert algo.last_clip_norms is not None
    return algo.last_clip_norms.clone()


def _trial_params(session: PopulationSession) -> dict[str, torch.Tensor]:
    return {n: session.population.param(n).detach().clone() for n in session.population.names}


def test_a_huge_loss_in_one_trial_leaves_the_others_bit_for_bit() -> None:
    seeds = [0, 1, 2]
    plain = _prepared(seeds)
    norms_plain = _one_step(plain)
    perturbed = _prepared(seeds)
    norms_perturbed = _one_step(perturbed, scale_trial=1, scale=1e6)
    after_plain, after_perturbed = _trial_params(plain), _trial_params(perturbed)
    for name in after_plain:
        for k in (0, 2):
            assert torch.equal(after_plain[name][k], after_perturbed[name][k]), (name, k)
    # Trial 1 did see its huge loss: a huge gradient norm, clipped on its own.
    assert float(norms_perturbed[1]) > 1e3 * float(norms_plain[1])
    assert torch.equal(norms_plain[[0, 2]], norms_perturbed[[0, 2]])
    assert any(not torch.equal(after_plain[n][1], after_perturbed[n][1]) for n in after_plain)


def test_huge_parameters_in_one_trial_leave_the_others_bit_for_bit() -> None:
    seeds = [0, 1, 2]
    plain, perturbed = _prepared(seeds), _prepared(seeds)
    with torch.no_grad():
        for name in perturbed.population.names:
            perturbed.population.param(name)[0].mul_(50.0)
    _one_step(plain, priority=0)
    _one_step(perturbed, priority=0)
    a, b = _trial_params(plain), _trial_params(perturbed)
    for name in a:
        for k in (1, 2):
            assert torch.equal(a[name][k], b[name][k]), (name, k)


def test_sampling_streams_are_per_trial() -> None:
    # Another generator state in trial 0 changes its actions, never trial 1's.
    session = PopulationSession(_game, config=STEPConfig.matrix_games(), total_steps=400, seeds=[0, 1],
                                venv_fn=_fast_venv(STEPConfig.matrix_games()))
    policy = session.policy
    obs = torch.ones(2, 64, 2, 1)
    alive = torch.ones(64, 2)
    order = torch.tensor([[0, 1]]).expand(64, 2)
    states = [g.get_state() for g in policy.generators]
    first = policy.chain(obs, alive, order, greedy=False, state=torch.ones(2, 64, 1))
    for g, s in zip(policy.generators, states, strict=True):
        g.set_state(s)
    policy.generators[0].manual_seed(12345)
    second = policy.chain(obs, alive, order, greedy=False, state=torch.ones(2, 64, 1))
    assert torch.equal(first[1], second[1])
    assert not torch.equal(first[0], second[0])


def _grad(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, which the test below has set."""
    assert p.grad is not None
    return p.grad


def test_clip_grad_norm_per_trial_matches_torch_on_each_slice() -> None:
    gen = torch.Generator().manual_seed(0)
    stacked = [torch.zeros(4, 3, 5, requires_grad=True), torch.zeros(4, 7, requires_grad=True)]
    for p, scale in zip(stacked, (1.0, 3.0), strict=True):
        p.grad = torch.randn(p.shape, generator=gen) * scale
    _grad(stacked[0])[2] *= 1e-3  # trial 2 is below the threshold: left as it is
    expected_grads: list[list[torch.Tensor]] = []
    expected_norms: list[float] = []
    for k in range(4):
        slices = [torch.zeros_like(p[k]) for p in stacked]
        for s, p in zip(slices, stacked, strict=True):
            s.grad = _grad(p)[k].clone()
        expected_norms.append(float(torch.nn.utils.clip_grad_norm_(slices, max_norm=2.0)))
        expected_grads.append([_grad(s) for s in slices])
    norms = clip_grad_norm_per_trial_(stacked, 2.0)
    assert torch.allclose(norms, torch.tensor(expected_norms), rtol=1e-6)
    for k in range(4):
        for p, g in zip(stacked, expected_grads[k], strict=True):
            assert torch.allclose(_grad(p)[k], g, rtol=1e-6, atol=1e-7)
    # By hand: each clipped trial's norm is now max_norm, the unclipped one unchanged.
    after = torch.stack([torch.cat([_grad(p)[k].reshape(-1) for p in stacked]).norm() for k in range(4)])
    for k in range(4):
        assert float(after[k]) == pytest.approx(min(2.0, expected_norms[k]), rel=1e-5)


def test_advantages_are_normalised_per_trial() -> None:
    session = _prepared([0, 1])
    pairs = session.algorithm._pairs
    assert pairs is not None
    group = torch.arange(pairs.row.numel())[pairs.priority == 0]
    from agents.algorithm import _normalise_per_agent

    for k in range(2):
        single = _normalise_per_agent(pairs.adv[k, group], pairs.agent[group], 2)
        assert float(single.mean()) == pytest.approx(0.0, abs=1e-5)
        assert float(single.std()) == pytest.approx(1.0, abs=1e-3)
    # The population normalises trial by trial (a trial with 1e6 times larger advantages
    # normalises to the same numbers).
    scaled = pairs.adv.clone()
    scaled[1] = scaled[0] * 1e6
    from torch.func import vmap

    out = vmap(lambda a: _normalise_per_agent(a, pairs.agent[group], 2))(scaled[:, group])
    assert torch.allclose(out[0], out[1], atol=1e-4)


# --- the vector env of matrix games -----------------------------------------------------------

@pytest.mark.parametrize("with_state, order, n_agents", [(False, None, 2), (True, ["agent_1", "agent_0"], 2),
                                                         (True, None, 3)])
def test_matrix_vector_env_returns_what_dummy_vector_env_returns(with_state: bool, order: list[str] | None,
                                                                 n_agents: int) -> None:
    rng = np.random.default_rng(0)
    payoffs = rng.normal(size=(n_agents, *[3] * n_agents)) if n_agents > 2 else PAYOFFS
    envs = 5

    def make() -> JointStepEnv:
        return JointStepEnv(env=MatrixGame(payoffs, episode_length=4), order=order, info_flags=False,
                            with_state=with_state)

    dummy = DummyVectorEnv([make for _ in range(envs)])
    fast = MatrixGameVectorEnv(payoffs, envs, episode_length=4, order=order, with_state=with_state)
    assert fast.get_env_attr("observation_space", 0) == dummy.get_env_attr("observation_space", 0)
    assert fast.get_env_attr("action_space", 0) == dummy.get_env_attr("action_space", 0)
    obs_d, _ = dummy.reset()
    obs_f, _ = fast.reset()
    assert np.array_equal(obs_d, obs_f) and obs_d.dtype == obs_f.dtype
    for _ in range(11):
        ids = np.flatnonzero(rng.random(envs) < 0.8)  # some environments sit out a step
        act = rng.integers(0, 3, size=(len(ids), n_agents))
        out_d, out_f = dummy.step(act, ids), fast.step(act, ids)
        for a, b in zip(out_d[:4], out_f[:4], strict=True):
            assert np.array_equal(a, b) and a.dtype == b.dtype
        done = ids[out_d[2] | out_d[3]]
        if done.size:
            reset_d, _ = dummy.reset(done)
            reset_f, _ = fast.reset(done)
            assert np.array_equal(reset_d, reset_f)


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.HAPPO])
def test_single_trial_over_the_array_env_equals_the_wrapped_games(variant: Variant) -> None:
    # run_matrix_trial trains a single trial over MatrixGameVectorEnv: the same training as
    # DummyVectorEnv of stmg-wrapped games, bit for bit (three collects and updates).
    config = STEPConfig.matrix_games(variant=variant)
    steps = 1200
    wrapped = TrainingSession(_game, config=config, total_steps=steps, seed=4)
    wrapped.train_steps(steps)
    arrays = TrainingSession(_game, config=config, total_steps=steps, seed=4, venv_fn=_fast_venv(config))
    arrays.train_steps(steps)
    assert _max_diff(_state(wrapped.learner.model), _state(arrays.learner.model)) == 0.0
    # ... and it trained: the parameters moved from the same seed's untrained start.
    assert _max_diff(_state(arrays.learner.model),
                     _state(TrainingSession(_game, config=config, total_steps=steps, seed=4).learner.model)) > 1e-3


def test_single_session_refuses_a_venv_fn_that_does_not_fit() -> None:
    config = STEPConfig.matrix_games()
    with pytest.raises(ValueError, match="expected n_envs=8"):
        TrainingSession(_game, config=config, total_steps=400, seed=0,
                        venv_fn=lambda fns: MatrixGameVectorEnv(PAYOFFS, len(fns) + 1))
    with pytest.raises(ValueError, match="observe"):  # a 3-agent game's observations
        TrainingSession(_game, config=config, total_steps=400, seed=0,
                        venv_fn=lambda fns: MatrixGameVectorEnv(np.zeros((3, 2, 2, 2)), len(fns)))
    with pytest.raises(ValueError, match="not both"):
        TrainingSession(_game, config=config, total_steps=400, seed=0, subprocess=True, venv_fn=_fast_venv(config))


def test_matrix_vector_env_refuses_bad_actions() -> None:
    fast = MatrixGameVectorEnv(PAYOFFS, 2)
    fast.reset()
    with pytest.raises(ValueError, match="action 3 of agent 1"):
        fast.step(np.array([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        fast.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="env_num=0"):
        MatrixGameVectorEnv(PAYOFFS, 0)


# --- bad input --------------------------------------------------------------------------------

def test_bad_input_is_a_value_error_naming_the_value() -> None:
    config = STEPConfig.matrix_games()
    with pytest.raises(ValueError, match="K=0"):
        check_seeds([])
    with pytest.raises(ValueError, match=r"\[3\]"):
        check_seeds([3, 4, 3])
    with pytest.raises(ValueError, match="-1"):
        check_seeds([-1])
    with pytest.raises(ValueError, match="K=0"):
        PopulationSession(_game, config=config, total_steps=400, seeds=[])
    with pytest.raises(ValueError, match="K=0"):
        PopulationModel([])
    with pytest.raises(ValueError, match="happo"):
        check_population_config(STEPConfig.matrix_games(variant=Variant.HAPPO, minibatches=2))
    with pytest.raises(ValueError, match="reward_scaling"):
        check_population_config(STEPConfig.matrix_games(reward_scaling=True))
    with pytest.raises(ValueError, match="policy_anchor=10.0"):
        check_population_config(STEPConfig.matrix_games(policy_anchor=10.0))
    with pytest.raises(ValueError, match="minibatches=2"):
        check_population_config(STEPConfig.matrix_games(variant=Variant.MAPPO, minibatches=2))
    with pytest.raises(ValueError, match="total_steps=0"):
        PopulationSession(_game, config=config, total_steps=0, seeds=[1])
    with pytest.raises(ValueError, match="callable"):
        PopulationSession(_game, config=config, total_steps=400, seeds=[1], order=lambda env: env.possible_agents)
    session = PopulationSession(_game, config=config, total_steps=400, seeds=[1, 2], venv_fn=_fast_venv(config))
    with pytest.raises(ValueError, match="k=2"):
        session.model_of(2)
    with pytest.raises(ValueError, match="n_steps=0"):
        session.train_steps(0)
    with pytest.raises(ValueError, match="environments"):
        PopulationSession(_game, config=config, total_steps=400, seeds=[1, 2],
                          venv_fn=lambda fns: MatrixGameVectorEnv(PAYOFFS, 3, with_state=True))
    with pytest.raises(ValueError, match=r"expected 2 lists of 8 seeds .* got \[8\]"):
        session.reset_envs([list(range(8))])
    with pytest.raises(ValueError, match="holds 1 trials; this population has 2"):
        session.load_state({**session.state(), "update_generators": [torch.Generator().get_state()]})


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.HAPPO])
def test_a_population_restored_from_its_state_continues_bit_for_bit(variant: Variant) -> None:
    """state() / load_state(): a new session that loads the state of one trained 400 steps, and
    the trained one itself, learn exactly the same next 400 steps (same env seeds). The state
    is a copy: the first session training on must not change what the second loaded."""
    config = STEPConfig.matrix_games(variant=variant, steps_per_collect=200)

    def session() -> PopulationSession:
        return PopulationSession(_game, config=config, total_steps=800, seeds=[4, 7], venv_fn=_fast_venv(config))

    seeds = [[100 + i for i in range(config.n_envs)], [200 + i for i in range(config.n_envs)]]
    first = session()
    first.train_steps(400)
    saved = first.state()
    second = session()
    second.load_state(saved)
    for s in (first, second):
        s.reset_envs(seeds)
        s.train_steps(400)
    for k in range(2):
        assert _max_diff(_state(first.model_of(k)), _state(second.model_of(k))) == 0.0
    assert _max_diff(_state(first.model_of(0)), _state(first.model_of(1))) > 0.0  # the trials differ


def test_minibatches_are_permuted_per_trial() -> None:
    # STEP with minibatches: every trial draws its own permutation; still the single trial.
    config = STEPConfig.matrix_games(minibatch_size=100)
    single = TrainingSession(_game, config=config, total_steps=800, seed=2)
    single.train_steps(800)
    population = PopulationSession(_game, config=config, total_steps=800, seeds=[6, 2])
    population.train_steps(800)
    assert _max_diff(_state(single.learner.model), _state(population.model_of(1))) < 1e-5


# --- groups of trials in the journal ----------------------------------------------------------

def _group(jobs: list[int]) -> list[dict[str, Any]]:
    if 13 in jobs:
        raise RuntimeError("trial 13 fails")
    return [{"seed": j, "group": list(jobs)} for j in jobs]


def test_run_trial_groups_journals_finished_groups_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    jobs = [(f"seed={s}", s) for s in (10, 11, 12, 13, 14)]
    journal = TrialJournal(path, {"x": 1})
    with pytest.raises(RuntimeError, match="13"):
        run_trial_groups(jobs, _group, group_size=2, workers=1, journal=journal)
    journal.close()
    journal = TrialJournal(path, {"x": 1})
    assert sorted(journal.finished) == ["seed=10", "seed=11"]  # the finished group only
    fixed = [(key, job if job != 13 else 23) for key, job in jobs]
    records = run_trial_groups(fixed, _group, group_size=2, workers=1, journal=journal)
    journal.close()
    assert [r["seed"] for r in records] == [10, 11, 12, 23, 14]
    assert records[0]["group"] == [10, 11] and records[2]["group"] == [12, 23] and records[4]["group"] == [14]
    with pytest.raises(ValueError, match="group_size=0"):
        run_trial_groups(jobs, _group, group_size=0, workers=1, journal=None)


def _load_train_matrix() -> Any:
    spec = importlib.util.spec_from_file_location("train_matrix", Path(__file__).resolve().parents[1]
                                                  / "examples" / "train_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look their module up there
    spec.loader.exec_module(module)
    return module


def test_train_matrix_population_writes_todays_records_and_resumes(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    train_matrix = _load_train_matrix()
    out = tmp_path / "out.json"
    argv = ["--trials", "3", "--steps", "400", "--workers", "1", "--population", "2", "--out", str(out)]
    run_population = train_matrix._population
    seen: list[list[int]] = []

    def failing_second_group(jobs: list[Any]) -> list[dict[str, Any]]:
        seen.append([job[4] for job in jobs])
        if len(seen) == 2:
            raise RuntimeError("the second population fails")
        return run_population(jobs)  # type: ignore[no-any-return]

    monkeypatch.setattr(train_matrix, "_population", failing_second_group)
    with pytest.raises(RuntimeError, match="second population"):
        train_matrix.main(argv)
    assert seen == [[0, 1], [2]]
    journal = train_matrix.journal_path(str(out))
    assert len(journal.read_text().splitlines()) == 3  # settings and the first population's two trials
    # Single trials do not resume a population's journal (they differ by float rounding) ...
    with pytest.raises(SystemExit, match="trainer"):
        train_matrix.main([*argv[:-3], "1", "--out", str(out)])
    # ... the same command does, training only seed 2.
    summary = train_matrix.main(argv)
    assert seen[2:] == [[2]]
    assert [t["seed"] for t in summary["trials"]] == [0, 1, 2]
    for trial in summary["trials"]:
        assert list(trial) == ["seed", "greedy_joint_action", "action_probs", "is_se", "seconds"]
    assert json.loads(out.read_text())["trials"] == summary["trials"]
    assert not journal.exists()
    with pytest.raises(SystemExit):
        train_matrix.parse_args(["--population", "0"])
    with pytest.raises(SystemExit):  # a setting populations do not train
        train_matrix.parse_args(["--set", "reward_scaling=True", "--population", "4"])
    assert train_matrix.parse_args(["--algo", "maddpg", "--population", "4"]).population == 4  # agents.maddpg_population
    assert train_matrix.parse_args(["--trials", "100"]).population == 1  # the default: as before


# --- statistics -------------------------------------------------------------------------------

@pytest.mark.slow
def test_se_rate_does_not_depend_on_the_population_size() -> None:
    # STEP on Penalty k=-100, 10,000 steps: 20 trials as one population and the same 20
    # seeds one at a time. Each population trial is its single trial to float rounding, so
    # the outcomes agree almost trial by trial; SE rates documented: 98-100%.
    from runner.matrix_trials import run_matrix_population, run_matrix_trial

    config = STEPConfig.matrix_games()
    seeds = list(range(100, 120))
    population = run_matrix_population(PAYOFFS, config=config, steps=10_000, seeds=seeds)
    singles = [run_matrix_trial(PAYOFFS, config=config, steps=10_000, seed=s) for s in seeds]
    hits_population = sum(r.is_se for r in population)
    hits_single = sum(r.is_se for r in singles)
    assert hits_population >= 17 and hits_single >= 17
    assert abs(hits_population - hits_single) <= 3
    same = sum(p.greedy_joint_action == s.greedy_joint_action for p, s in zip(population, singles, strict=True))
    assert same >= 17



def test_reproduce_matrix_population_records_look_like_single_trial_records(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("reproduce_matrix", Path(__file__).resolve().parents[1]
                                                  / "examples" / "reproduce_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    argv = ["--algos", "step", "happo", "--settings", "penalty-100", "--trials", "2", "--steps", "200",
            "--workers", "1"]
    single = module.main([*argv, "--population", "1", "--out", str(tmp_path / "single")])
    population = module.main([*argv, "--population", "2", "--out", str(tmp_path / "population")])
    for algo in ("step", "happo"):
        for a, b in zip(single["results"][algo]["penalty-100"], population["results"][algo]["penalty-100"],
                        strict=True):
            assert list(a) == list(b)
            assert a["seed"] == b["seed"] and a["greedy_joint_action"] == b["greedy_joint_action"]
            assert np.allclose(a["action_probs"], b["action_probs"], atol=1e-4)
    with pytest.raises(SystemExit):
        module.parse_args(["--population", "0"])
    assert module.parse_args([]).population == 50  # the default protocol trains populations


def test_happo_turn_moves_only_the_trials_whose_turn_it_is() -> None:
    # HAPPO: at a turn, only the trials updating agent 0 now move agent 0's parameters and
    # Adam moments; the other trials' slices stay bit for bit.
    session = _prepared([0, 1, 2], STEPConfig.matrix_games(variant=Variant.HAPPO))
    algo, pop = session.algorithm, session.population
    pairs = algo._pairs
    assert pairs is not None
    log: dict[str, list[float]] = {"actor": [], "vf": [], "ent": [], "reg": []}
    group = torch.arange(pairs.row.numel())[pairs.agent == 0]
    factor = torch.ones(3, pairs.n_rows)
    algo._update_group(pairs, group, 2, log, factor=factor, trials=torch.tensor([True, True, False]))
    before = _trial_params(session)
    moments = {n: algo._adam.state[pop.param(n)]["exp_avg"].clone() for n in pop.names
               if "exp_avg" in algo._adam.state[pop.param(n)]}
    algo._update_group(pairs, group, 2, log, factor=factor, trials=torch.tensor([False, True, False]))
    after = _trial_params(session)
    for name in algo._agent_params[0]:
        assert torch.equal(before[name][0], after[name][0]) and torch.equal(before[name][2], after[name][2])
        assert not torch.equal(before[name][1], after[name][1])
        state = algo._adam.state[pop.param(name)]
        assert torch.equal(state["exp_avg"][0], moments[name][0]) and torch.equal(state["exp_avg"][2], moments[name][2])
    for name in algo._agent_params[1]:  # agent 1 is frozen in agent 0's turn
        assert torch.equal(before[name], after[name])


def test_distinct_inputs_by_hand() -> None:
    # Two trials, one agent, four pairs: trial 0 has inputs a, b, a, a; trial 1 has c, c, c, c.
    from agents.population import _distinct_inputs

    a, b, c = [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]
    actor = torch.tensor([[a, b, a, a], [c, c, c, c]])
    critic = actor[..., :1] * 10
    agent = torch.zeros(4, dtype=torch.long)
    priority = torch.ones(4, dtype=torch.long)
    found = _distinct_inputs(actor, critic, agent, priority)
    assert found is not None
    assert found.actor_in.shape == (2, 2, 2)  # two rows per trial: trial 1 pads with its only row
    for k in range(2):
        assert torch.equal(found.actor_in[k, found.rows[k]], actor[k])
        assert torch.equal(found.critic_in[k, found.rows[k]], critic[k])
    assert found.rows[1].unique().numel() == 1
    assert found.agent.tolist() == [0, 0] and found.priority.tolist() == [1, 1]
    # No saving when most pairs differ: None (every pair is evaluated).
    assert _distinct_inputs(torch.randn(2, 4, 2), torch.randn(2, 4, 1), agent, priority) is None
