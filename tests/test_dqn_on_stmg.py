"""Tests of examples/dqn_on_stmg.py: the reward shim (hand-computed) and a smoke run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from tianshou.data import Batch, ReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "dqn_on_stmg.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dqn_on_stmg", SCRIPT)
    assert spec is not None and spec.loader is not None, f"cannot load {SCRIPT}"
    module = importlib.util.module_from_spec(spec)
    sys.modules["dqn_on_stmg"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dqn_on_stmg = _load_script()


def _buffer(steps: list[tuple[str, list[float], bool]]) -> ReplayBuffer:
    """A buffer of PettingZooEnv-style transitions: (acting agent, reward vector, done)."""
    buffer = ReplayBuffer(size=32)
    for agent, rew, done in steps:
        obs = Batch(agent_id=np.array(agent, dtype=object), obs=np.zeros(1, np.float32))
        buffer.add(Batch(obs=obs, act=0, rew=np.array(rew, dtype=np.float64), terminated=False,
                         truncated=done, obs_next=obs, info={}))
    return buffer


def test_credit_two_agents_matrix_game() -> None:
    # Two time steps of a repeated 2x2 game, then the leader opens a new episode. The first
    # step of a cycle clears rewards; the closing step carries both agents' payoffs.
    buffer = _buffer([
        ("agent_0", [0.0, 0.0], False),
        ("agent_1", [3.0, 5.0], False),
        ("agent_0", [0.0, 0.0], False),
        ("agent_1", [7.0, -1.0], True),   # episode ends (truncation)
        ("agent_0", [0.0, 0.0], False),   # a new episode's open cycle: nothing earned yet
    ])
    credited, last = dqn_on_stmg.credit_own_rewards(
        buffer, np.array([0, 1, 2, 3, 4]), {"agent_0": 0, "agent_1": 1})
    np.testing.assert_array_equal(credited, [3.0, 5.0, 7.0, -1.0, 0.0])
    # obs_next at `last` is the agent's own next observation (the follower's at 2 is obs[3]).
    np.testing.assert_array_equal(last, [1, 2, 3, 3, 4])


def test_credit_three_agents_sums_over_the_cycle() -> None:
    # Rewards may arrive on any step; agent a earns what reaches its column until its next turn.
    buffer = _buffer([
        ("a", [1.0, 0.0, 0.0], False),
        ("b", [2.0, 10.0, 0.0], False),
        ("c", [4.0, 20.0, 100.0], False),
        ("a", [8.0, 0.0, 0.0], False),
        ("b", [0.0, 30.0, 0.0], True),
    ])
    credited, last = dqn_on_stmg.credit_own_rewards(
        buffer, np.array([0, 1, 2, 3, 4, 0]), {"a": 0, "b": 1, "c": 2})
    # a@0: 1 + 2 + 4 (stops before a@3); b@1: 10 + 20 (stops before b@4); c@2: 100 + 0 + 0
    # (to the episode's end); a@3: 8 + 0; b@4: 30 (episode end); a@0 again: 7.
    np.testing.assert_array_equal(credited, [7.0, 30.0, 100.0, 8.0, 30.0, 7.0])
    np.testing.assert_array_equal(last, [2, 3, 4, 4, 4, 2])


def test_raw_tianshou_path_gives_the_leader_zero_and_the_shim_fixes_it() -> None:
    """On the STMG Penalty game, Tianshou's rows give the leader 0; the shim's returns match."""
    import torch
    from tianshou.algorithm import DQN
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.env.pettingzoo_env import PettingZooEnv
    from tianshou.utils.net.common import Net
    from tianshou.utils.torch_utils import policy_within_training_step

    torch.manual_seed(0)
    np.random.seed(0)

    def make_env() -> PettingZooEnv:
        return PettingZooEnv(dqn_on_stmg.make_game("stmg", -100.0))

    probe = make_env()
    algorithms = [
        DQN(policy=DiscreteQLearningPolicy(
                model=Net(state_shape=probe.observation_space.shape, action_shape=3, hidden_sizes=[8]),
                action_space=probe.action_space, eps_training=1.0),
            optim=AdamOptimizerFactory(lr=1e-3), gamma=0.0)
        for _ in probe.agents
    ]
    algorithm = dqn_on_stmg.OwnRewardMultiAgentDQN(algorithms=algorithms, env=probe)
    collector: Collector[Any] = Collector(algorithm.policy, DummyVectorEnv([make_env]), VectorReplayBuffer(400, 1),
                          exploration_noise=True)
    collector.reset()
    for a in algorithms:  # see train_trial: Tianshou flags only the MultiAgentPolicy
        a.policy.is_within_training_step = True
    with policy_within_training_step(algorithm.policy):
        collector.collect(n_step=100)  # two full episodes of 25 time steps
    buffer = collector.buffer
    ids = np.asarray(buffer.obs.agent_id)[:100]
    rew = np.asarray(buffer.rew)[:100]
    acts = np.asarray(buffer.act)[:100]
    leader = ids == "agent_0"
    assert leader.sum() == 50, "the leader must act in every other transition"
    assert np.all(rew[leader] == 0.0), "Tianshou's raw leader rows should be all zero"
    payoff = dqn_on_stmg.envs.matrix.penalty(-100.0)[0]
    expected = payoff[acts[leader], acts[~leader]]  # (50,) the leader's earned reward per turn
    assert np.any(expected != 0.0), "the random actions should have earned something"

    indices = np.arange(100)
    batch = buffer[indices]
    out = algorithm._preprocess_batch(batch, buffer, indices)
    leader_returns = np.asarray(out["agent_0"].returns).ravel()  # gamma = 0: returns = rewards
    np.testing.assert_allclose(leader_returns, expected)
    follower_returns = np.asarray(out["agent_1"].returns).ravel()
    np.testing.assert_allclose(follower_returns, expected)  # common payoff
    np.testing.assert_array_equal(np.asarray(buffer.rew)[:100], rew)  # buffer restored


def test_shim_refuses_n_step_returns() -> None:
    class Fake:
        n_step = 3

    with pytest.raises(ValueError, match="n_step_return_horizon=3"):
        dqn_on_stmg.OwnRewardMultiAgentDQN(algorithms=[Fake()], env=None)  # type: ignore[arg-type]


def test_bad_arguments_raise() -> None:
    with pytest.raises(SystemExit):  # a usage error (test_bad_options_are_usage_errors)
        dqn_on_stmg.parse_args(["--steps", "0"])
    with pytest.raises(ValueError, match="setting='both'"):
        dqn_on_stmg.make_game("both", -100.0)


def test_smoke_run_prints_both_settings() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "300", "--trials", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    assert result.returncode == 0, f"script failed:\n{result.stderr[-3000:]}"
    out = result.stdout
    for label in ("STMG (follower sees the leader's action): SE rate", "simultaneous (parallel_to_aec): SE rate"):
        assert label in out, f"missing {label!r} in output:\n{out}"
    assert out.count("mean reward") == 2, out


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--gamma", "1.5"], "--gamma must lie in [0, 1], got 1.5"),
    (["--lr", "0"], "--lr must be positive, got 0.0"),
])
def test_bad_options_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        dqn_on_stmg.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
