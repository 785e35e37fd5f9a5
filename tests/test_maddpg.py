"""Tests of the MADDPG baseline (agents/maddpg.py): shapes, Gumbel-softmax, updates, seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.utils.torch_utils import policy_within_training_step

import envs
from agents.adapter import JointStepEnv
from agents.maddpg import (
    MADDPGConfig,
    build_maddpg,
    gumbel_softmax_st,
    matrix_game_trial,
    train_maddpg,
)
from envs.matrix import MatrixGame, stackelberg_equilibrium

# One joint action, (1, 1), pays 1 to both agents; every other one pays 0.
EASY = np.stack([np.array([[0.0, 0.0], [0.0, 1.0]])] * 2)
SMALL = MADDPGConfig(warmup_steps=100, steps_per_collect=20, gradient_steps_per_step=0.25,
                     batch_size=64, n_envs=2)


def _penalty_env() -> JointStepEnv:
    env = JointStepEnv(env=envs.make("matrix/penalty-v0", k=-100))
    env.action_space.seed(0)  # random collection samples from it
    return env


def _filled_buffer(learner, n_steps: int = 200) -> VectorReplayBuffer:
    venv = DummyVectorEnv([_penalty_env])
    buffer = VectorReplayBuffer(1000, 1)
    collector: Collector[Any] = Collector(learner.policy, venv, buffer)
    collector.reset()
    collector.collect(n_step=n_steps, random=True)
    return buffer


def test_shapes() -> None:
    torch.manual_seed(0)
    env = _penalty_env()
    learner = build_maddpg(env=env, config=MADDPGConfig())
    obs = Batch(obs=np.stack([learner.first_obs] * 5), info={})
    out = learner.policy(obs)
    assert out.act.shape == (5, 2), f"joint action batch must be (B, n_agents), got {out.act.shape}"
    assert out.act.dtype.kind == "i" and out.act.min() >= 0 and out.act.max() < 3
    probs = learner.action_probs()
    assert probs.shape == (2, 3), f"action_probs must be (n_agents, n_actions), got {probs.shape}"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert learner.greedy_joint_action() == tuple(int(i) for i in probs.argmax(axis=1))
    joint = learner.algorithm.one_hot_joint(torch.tensor([[0, 2], [1, 1]]))
    np.testing.assert_array_equal(joint.numpy(), [[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0]])


def test_gumbel_softmax_straight_through_is_one_hot_with_gradients() -> None:
    torch.manual_seed(0)
    logits = torch.randn(64, 4, requires_grad=True)
    sample = gumbel_softmax_st(logits, temperature=0.5)  # (64, 4)
    np.testing.assert_array_equal(sample.detach().sum(dim=1).numpy(), np.ones(64))
    assert set(np.unique(sample.detach().numpy())) <= {0.0, 1.0}, "samples must be one-hot"
    (sample * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0, "no gradient reached the logits"
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax_st(logits, temperature=0.0)


def test_gumbel_sample_frequencies_follow_the_softmax() -> None:
    torch.manual_seed(1)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    freq = gumbel_softmax_st(logits, temperature=1.0).mean(dim=0).numpy()
    np.testing.assert_allclose(freq, torch.softmax(logits[0], 0).numpy(), atol=0.015)


def test_updates_reduce_the_critic_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    # gamma=0 keeps the regression target fixed (r_i), so the loss must fall steadily.
    config = MADDPGConfig(lr=1e-2, gamma=0.0, max_grad_norm=None)
    learner = build_maddpg(env=_penalty_env(), config=config)
    buffer = _filled_buffer(learner)
    batch, _ = buffer.sample(128)
    algorithm = learner.algorithm

    def loss() -> float:
        torch.manual_seed(123)  # the same target-action noise for both evaluations
        with torch.no_grad():
            return float(algorithm.critic_loss(batch))

    before = loss()
    with policy_within_training_step(learner.policy):
        for _ in range(30):
            stats = algorithm._update_with_batch(batch)
    after = loss()
    assert np.isfinite(stats.actor_loss) and np.isfinite(stats.critic_loss)
    assert after < 0.7 * before, f"critic loss did not fall: {before:.3f} -> {after:.3f}"


def test_same_seed_same_result_and_different_seed_differs() -> None:
    def run(seed: int) -> np.ndarray:
        learner = train_maddpg(lambda: envs.make("matrix/penalty-v0"), config=SMALL, steps=300, seed=seed)
        return np.concatenate([p.detach().numpy().ravel() for p in learner.algorithm.parameters()])

    first, second, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first, second, err_msg="same seed must give identical parameters")
    assert not np.array_equal(first, other), "different seeds gave identical parameters"


def test_reaches_the_optimum_of_an_easy_common_payoff_game() -> None:
    se, _ = stackelberg_equilibrium(EASY)
    assert se == (1, 1), "EASY's equilibrium is the common optimum (1, 1)"
    result = matrix_game_trial(lambda: MatrixGame(EASY), stackelberg_joint_action=se, config=SMALL,
                               steps=1500, seed=0)
    assert result["greedy_joint_action"] == [1, 1], f"expected (1, 1), got {result}"
    assert result["is_se"] is True
    assert set(result) == {"seed", "greedy_joint_action", "action_probs", "is_se"}
    assert min(result["action_probs"][0][1], result["action_probs"][1][1]) > 0.8, result


def test_bad_user_input_raises_with_the_value() -> None:
    with pytest.raises(ValueError, match="tau=1.5"):
        MADDPGConfig(tau=1.5)
    with pytest.raises(ValueError, match="batch_size=0"):
        MADDPGConfig(batch_size=0)
    with pytest.raises(ValueError, match="steps=50"):
        train_maddpg(lambda: envs.make("matrix/penalty-v0"), config=SMALL, steps=50, seed=0)
    with pytest.raises(TypeError, match="ParallelEnv, got object"):
        matrix_game_trial(object, stackelberg_joint_action=(0, 0), config=SMALL, steps=300,  # type: ignore[arg-type]
                          seed=0)
    with pytest.raises(ValueError, match=r"stackelberg_joint_action=\[0\] has 1 actions"):
        matrix_game_trial(lambda: MatrixGame(EASY), stackelberg_joint_action=(0,), config=SMALL, steps=300,
                          seed=0)
