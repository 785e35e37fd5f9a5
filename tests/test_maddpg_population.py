"""Tests of MADDPG's losses by hand and of its population learner (agents/maddpg_population.py):
per-trial independence, independence of K, per-trial replay sampling, the runner's use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agents.maddpg import MADDPGBatch, MADDPGConfig, actor_q_loss, critic_td_loss, gumbel_softmax_st
from agents.maddpg_population import (
    MADDPGPopulationSession,
    TrialReplayBuffer,
    train_maddpg_population,
)
from envs.matrix import MatrixGame, penalty, stackelberg_equilibrium
from runner.matrix_venv import MatrixGameVectorEnv

EASY = np.stack([np.array([[0.0, 0.0], [0.0, 1.0]])] * 2)  # (1, 1) pays 1 to both, all else 0
SMALL = MADDPGConfig(warmup_steps=100, steps_per_collect=20, gradient_steps_per_step=0.25, batch_size=32, n_envs=2)


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def _one_step_data() -> MADDPGBatch:
    # Two agents, one observation number each, two actions each; two transitions.
    return MADDPGBatch(
        obs=torch.tensor([[[1.0], [2.0]], [[0.0], [1.0]]]),
        obs_next=torch.tensor([[[0.5], [1.0]], [[1.0], [0.0]]]),
        joint_one_hot=torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]),  # (a0, a1), (a1, a1)
        rew=torch.tensor([[1.0, 2.0], [0.0, -1.0]]),
        terminated=torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        acted=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),  # agent 1 did not act in the second step
    )


def test_critic_loss_by_hand() -> None:
    # Actors: logits = w * o + b; critics: Q_i = c_i . (s, a) with s = (o_1, o_2).
    actors = [_linear([[1.0], [-1.0]], [0.0, 0.0]), _linear([[0.0], [0.0]], [0.0, 3.0])]
    critics = [_linear([[1.0, 0.0, 1.0, 2.0, 0.0, 1.0]], [0.0]), _linear([[0.0, 1.0, 0.0, 0.0, 1.0, -1.0]], [0.5])]
    targets = [_linear([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]], [0.0]), _linear([[0.0, 0.0, 1.0, 0.0, 2.0, 0.0]], [0.0])]
    # Exponential draws of 1 everywhere: Gumbel noise 0, so a' is the argmax of the target actors.
    noise = torch.ones(2, 4)
    loss = critic_td_loss(critics, actors, targets, _one_step_data(), action_sizes=(2, 2), gamma=0.5,
                          temperature=1.0, exponential=noise)
    # Row 1: o' = (0.5, 1): agent 0's logits (0.5, -0.5) -> a0' = (1, 0); agent 1's (0, 3) -> a1' = (0, 1).
    #   Q'_0 = o'_0 + o'_1 = 1.5; Q'_1 = a0'[0] + 2 * a1'[0] = 1.
    #   y = (1 + 0.5 * 1.5, 2 + 0.5 * 1) = (1.75, 2.5).
    #   Q(s, a) with s = (1, 2), a = (1, 0, 0, 1): Q_0 = 1 + 1 + 1 = 3; Q_1 = 2 + 0 - 1 + 0.5 = 1.5.
    #   errors^2: (3 - 1.75)^2 = 1.5625; (1.5 - 2.5)^2 = 1.
    # Row 2: terminated, so y = r = (0, -1); s = (0, 1), a = (0, 1, 0, 1):
    #   Q_0 = 0 + 0 + 0 + 2 + 0 + 1 = 3 -> (3 - 0)^2 = 9; agent 1 did not act: 0.
    # mean over rows, summed over agents: (1.5625 + 9) / 2 + (1 + 0) / 2 = 5.78125.
    assert float(loss.detach()) == pytest.approx(5.78125, abs=1e-6)


def test_actor_loss_by_hand() -> None:
    actors = [_linear([[1.0], [-1.0]], [0.5, 0.0]), _linear([[0.0], [0.0]], [0.0, 3.0])]
    critics = [_linear([[0.0, 0.0, 1.0, 2.0, 0.0, 0.0]], [0.0]), _linear([[0.0, 0.0, 0.0, 0.0, 1.0, -1.0]], [0.0])]
    noise = torch.ones(2, 4)  # Gumbel noise 0: each actor's sample is its argmax
    loss = actor_q_loss(actors, critics, _one_step_data(), action_sizes=(2, 2), temperature=1.0,
                        logit_penalty=0.1, exponential=noise)
    # Agent 0: logits (o + 0.5, -o): row 1 (1.5, -1), row 2 (0.5, 0): a0 = (1, 0) in both.
    #   Q_0 reads a_0: a0[0] + 2 * a0[1] = 1 in both rows; -mean(1 * acted) = -1.
    #   penalty 0.1 * mean(2.25, 1, 0.25, 0) = 0.0875.
    # Agent 1: logits (0, 3) -> a1 (0, 1); Q_1 = a1[0] - a1[1] = -1 in both rows, acted (1, 0):
    #   -mean(-1 * 1, -1 * 0) = 0.5; penalty 0.1 * mean(0, 9, 0, 9) = 0.45.
    assert float(loss.detach()) == pytest.approx(-1.0 + 0.0875 + 0.5 + 0.45, abs=1e-6)


def test_gumbel_softmax_with_given_draws_is_the_argmax_of_logits_plus_gumbel() -> None:
    logits = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0]])
    exponential = torch.tensor([[0.1, 5.0, 1.0], [3.0, 0.2, 1.0]])
    sample = gumbel_softmax_st(logits, 1.0, exponential)
    expected = (logits - exponential.log()).argmax(-1)  # (0 + 2.30, 1 - 1.61, 0.5) -> 0; (2 - 1.10, 1.61, 0) -> 1
    assert expected.tolist() == [0, 1]
    assert sample.argmax(-1).tolist() == [0, 1] and sample.sum(-1).tolist() == [1.0, 1.0]


def _session(seeds: list[int], payoffs: np.ndarray = EASY, steps: int = 300) -> MADDPGPopulationSession:
    return MADDPGPopulationSession(lambda: MatrixGame(payoffs), config=SMALL, total_steps=steps, seeds=seeds,
                                   venv_fn=lambda fns: MatrixGameVectorEnv(payoffs, len(fns)))


def _trial_tensors(session: MADDPGPopulationSession, k: int) -> dict[str, torch.Tensor]:
    pop = session.population
    return {n: pop.tensor(n)[k].detach().clone() for n in pop.names}


def test_population_losses_equal_the_single_trial_losses_of_each_trial() -> None:
    session = _session([3, 4, 5])
    try:
        session.train_steps(200)  # warm-up and some updates: the trials differ
        pop, algorithm = session.population, session.algorithm
        rows = 16
        sample, _ = session.buffer.sample(rows)
        from agents.maddpg import maddpg_batch
        data = maddpg_batch(sample, session.spec)
        stacked = [t.reshape(3, rows, *t.shape[1:]) for t in data.as_tuple()]
        noise = torch.rand(3, rows, 4) + 0.1
        sizes = session.spec.action_sizes

        def loss(nets, *xs):  # noqa: ANN001, ANN202
            *fields, e = xs
            return critic_td_loss(nets.critics, nets.actors_old, nets.critics_old, MADDPGBatch(*fields),
                                  action_sizes=sizes, gamma=SMALL.gamma, temperature=1.0, exponential=e)

        population_losses = pop.map(loss, *stacked, noise)
        for k in range(3):
            learner = session.learner_of(k)
            single = critic_td_loss(learner.algorithm.critics, learner.algorithm.actors_old,
                                    learner.algorithm.critics_old, MADDPGBatch(*(t[k] for t in stacked)),
                                    action_sizes=sizes, gamma=SMALL.gamma, temperature=1.0, exponential=noise[k])
            assert float(population_losses[k]) == pytest.approx(float(single), rel=1e-5)
        assert algorithm.last_clip_norms["critic"].shape == (3,)
    finally:
        session.close()


def test_trial_result_does_not_depend_on_k() -> None:
    alone = train_maddpg_population(lambda: MatrixGame(EASY), config=SMALL, steps=400, seeds=[7],
                                    venv_fn=lambda fns: MatrixGameVectorEnv(EASY, len(fns)))[0]
    among = train_maddpg_population(lambda: MatrixGame(EASY), config=SMALL, steps=400, seeds=[3, 7, 11],
                                    venv_fn=lambda fns: MatrixGameVectorEnv(EASY, len(fns)))[1]
    for a, b in zip(alone.policy.parameters(), among.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(alone.algorithm.critics.parameters(), among.algorithm.critics.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_huge_parameters_in_one_trial_leave_the_other_bit_for_bit() -> None:
    plain, blown = _session([1, 2]), _session([1, 2])
    try:
        with torch.no_grad():
            for name in blown.population.names:
                blown.population.tensor(name)[1].mul_(50.0)  # trial 1 only, online and targets
        plain.train_steps(300)
        blown.train_steps(300)
        a, b = _trial_tensors(plain, 0), _trial_tensors(blown, 0)
        assert all(torch.equal(a[n], b[n]) for n in a)
        c, d = _trial_tensors(plain, 1), _trial_tensors(blown, 1)
        assert not all(torch.equal(c[n], d[n]) for n in c)  # trial 1 itself did change
    finally:
        plain.close()
        blown.close()


def test_population_learns_the_easy_game() -> None:
    learners = train_maddpg_population(lambda: MatrixGame(EASY), config=SMALL, steps=1500, seeds=[0, 1, 2, 3],
                                       venv_fn=lambda fns: MatrixGameVectorEnv(EASY, len(fns)))
    assert [lr.greedy_joint_action() for lr in learners] == [(1, 1)] * 4


def _filled_trial_buffer(k: int = 3, envs_per_trial: int = 2) -> TrialReplayBuffer:
    from tianshou.data import Batch

    buffer = TrialReplayBuffer(60, k * envs_per_trial, generators=[np.random.default_rng(s) for s in range(k)])
    for step in range(5):  # every env's transitions have its index as obs
        n = k * envs_per_trial if step < 4 else 2  # the fifth step only in envs 0 and 1: unequal lengths
        ids = np.arange(n)
        buffer.add(Batch(obs=ids.astype(float), act=ids, rew=np.zeros(n), terminated=np.zeros(n, bool),
                         truncated=np.zeros(n, bool), obs_next=ids.astype(float), info=[{}] * n), buffer_ids=ids)
    return buffer


def test_trial_replay_buffer_samples_each_trial_from_its_own_environments() -> None:
    buffer = _filled_trial_buffer()
    batch, indices = buffer.sample(600)
    assert len(indices) == 3 * 600
    obs = batch.obs
    assert isinstance(obs, np.ndarray)
    env = obs.reshape(3, 600).astype(int)  # trial-major rows
    for trial in range(3):
        assert set(np.unique(env[trial])) == {2 * trial, 2 * trial + 1}
    # Uniform over a trial's transitions: trial 0 holds 5 + 5, trial 1 holds 4 + 4.
    assert abs((env[0] == 0).mean() - 0.5) < 0.08 and abs((env[1] == 2).mean() - 0.5) < 0.08
    assert len(set(indices[:600].tolist())) == 10  # all ten of trial 0's transitions are drawn
    _, again = _filled_trial_buffer().sample(600)  # the same generators give the same samples
    np.testing.assert_array_equal(indices, again)


def test_matrix_vector_env_seeds_each_action_space_like_tianshous_workers() -> None:
    venv = MatrixGameVectorEnv(EASY, 3)
    venv.seed([10, 11, 12])
    spaces = venv.get_env_attr("action_space")
    assert len({id(s) for s in spaces}) == 3
    reference = [MatrixGameVectorEnv(EASY, 1).get_env_attr("action_space")[0] for _ in range(3)]
    for space, seed in zip(reference, (10, 11, 12), strict=True):
        space.seed(seed)
    for got, want in zip(spaces, reference, strict=True):
        assert [tuple(got.sample()) for _ in range(5)] == [tuple(want.sample()) for _ in range(5)]
    with pytest.raises(ValueError, match="2 seeds for 3 environments"):
        venv.seed([1, 2])


def test_bad_input_is_a_value_error_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"seeds \[1\] appear more than once"):
        _session([1, 1])
    with pytest.raises(ValueError, match="total_steps=50"):
        _session([1], steps=50)
    with pytest.raises(ValueError, match="trials"):
        TrialReplayBuffer(60, 5, generators=[np.random.default_rng(0), np.random.default_rng(1)])


def test_runner_trains_maddpg_trials_as_a_population() -> None:
    from runner.matrix_trials import population_supported, run_algorithm_population

    assert population_supported("maddpg")
    results = run_algorithm_population("maddpg", penalty(-25.0), steps=700, seeds=[0, 1])
    assert [r.seed for r in results] == [0, 1]
    for r in results:
        assert len(r.greedy_joint_action) == 2 and np.asarray(r.action_probs).shape == (2, 3)
        assert r.is_se == (tuple(r.greedy_joint_action) == tuple(stackelberg_equilibrium(penalty(-25.0))[0]))


@pytest.mark.slow
def test_se_rate_does_not_depend_on_training_as_a_population() -> None:
    # MADDPG on Penalty k=0 (its SE rate is about 50% alone, docs/RESULTS.md): 30 seeds as one
    # population and 30 other seeds alone; the two rates are binomial draws of the same rate.
    from runner.matrix_trials import run_algorithm_population, run_algorithm_trial

    payoffs = penalty(0.0)
    population = run_algorithm_population("maddpg", payoffs, steps=10_000, seeds=list(range(300, 330)))
    singles = [run_algorithm_trial("maddpg", payoffs, steps=10_000, seed=s) for s in range(300, 330)]
    rate_population = np.mean([r.is_se for r in population])
    rate_single = np.mean([r.is_se for r in singles])
    assert abs(rate_population - rate_single) <= 0.35
