"""The joint-step adapter and per-agent GAE against hand-computed values.

The game: three agents, priority order agent_2 > agent_0 > agent_1 (not the index order),
agent_1 dies in the second time step, the others are truncated after the fourth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

from agents.adapter import JointStepEnv, step_flags, unpack_info, unpack_observation
from agents.config import STEPConfig
from agents.gae import per_agent_gae
from agents.policy import ChainResult
from agents.training import build_learner

ORDER = ["agent_2", "agent_0", "agent_1"]


class DyingEnv(ParallelEnv):  # type: ignore[misc]
    """obs of agent k at time t: [k, t]; reward of agent k at step i (0-based):
    10 k + (i + 1) + a_k; agent_1 terminates at step 1; truncation after 4 steps."""

    metadata = {"name": "dying_v0"}

    def __init__(self) -> None:
        self.possible_agents = ["agent_0", "agent_1", "agent_2"]
        self.agents: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Box(0.0, 100.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Discrete(2)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([int(a[-1]), self.t], np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, ...]:
        self.received.append(dict(actions))
        i = self.t
        self.t += 1
        rewards = {a: 10.0 * int(a[-1]) + (i + 1) + actions[a] for a in self.agents}
        terms = {a: a == "agent_1" and i == 1 for a in self.agents}
        truncs = {a: self.t >= 4 and not terms[a] for a in self.agents}
        obs = {a: np.array([int(a[-1]), self.t], np.float32) for a in self.agents}
        infos: dict[str, dict] = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos


JOINT = np.array([1, 0, 1])  # agent_0 -> 1, agent_1 -> 0, agent_2 -> 1


def test_adapter_transitions_by_hand() -> None:
    env = JointStepEnv(env=DyingEnv(), order=ORDER)
    raw, _ = env.reset(seed=0)
    assert raw.shape == (3, 2 + 3) and raw.dtype == np.float32
    obs = unpack_observation(raw)
    assert obs["order"].tolist() == [2, 0, 1], "the priority order must be agent_2, agent_0, agent_1"
    assert obs["alive"].tolist() == [1, 1, 1]
    rewards, infos, dones = [], [], []
    observations = [obs]
    raws = [raw]
    while True:
        raw, rew, term, trunc, info = env.step(JOINT)
        raws.append(raw)
        observations.append(unpack_observation(raw))
        rewards.append(rew)
        infos.append(unpack_info(info))
        dones.append((term, trunc))
        if term or trunc:
            break
    np.testing.assert_array_equal(rewards, [[2, 11, 22], [3, 12, 23], [4, 0, 24], [5, 0, 25]])
    assert [i["alive"].tolist() for i in infos] == [[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 1]]
    assert [i["terminated"].tolist() for i in infos] == [[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert [i["truncated"].tolist() for i in infos] == [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert dones == [(False, False)] * 3 + [(False, True)], "the episode ends truncated when nobody is left"
    # The flags follow from the observations alone (what the learner uses).
    for t, info in enumerate(infos):
        acted, terminated, truncated = step_flags(raws[t], raws[t + 1])
        assert acted.tolist() == info["alive"].tolist()
        assert terminated.tolist() == info["terminated"].tolist()
        assert truncated.tolist() == info["truncated"].tolist()
    acted, terminated, truncated = step_flags(np.stack(raws[:-1]), np.stack(raws[1:]))  # batched
    np.testing.assert_array_equal(terminated, [i["terminated"] for i in infos])
    np.testing.assert_array_equal(truncated, [i["truncated"] for i in infos])
    # After agent_1 died it is listed last and no longer alive; at the end nobody is alive,
    # but the truncated agents are present (their final observation is kept for bootstrapping).
    assert observations[2]["alive"].tolist() == [1, 0, 1]
    assert observations[2]["order"].tolist() == [2, 0, 1]
    assert observations[4]["alive"].tolist() == [0, 0, 0]
    assert observations[4]["present"].tolist() == [1, 0, 1]
    assert observations[4]["position"].tolist() == [1, 2, 0], "truncated agents keep their last order"
    np.testing.assert_array_equal(observations[4]["obs"], [[0, 4], [0, 0], [2, 4]])
    # The env received exactly the joint action, with the dead agent left out.
    received = env.game.parallel_env.received
    assert received[0] == {"agent_2": 1, "agent_0": 1, "agent_1": 0}
    assert list(received[0]) == ORDER, "actions must be chosen in priority order"
    assert received[2] == {"agent_2": 1, "agent_0": 1}


def test_per_agent_gae_by_hand() -> None:
    # agent 0 lives 2 steps, truncated at the end; agent 1 terminates at step 0.
    adv, ret = per_agent_gae(
        rew=np.array([[1.0, 5.0], [2.0, 0.0]]),
        value=np.array([[0.5, 1.0], [1.0, 0.0]]),
        next_value=np.array([[1.0, 9.0], [3.0, 0.0]]),
        alive=np.array([[True, True], [True, False]]),
        terminated=np.array([[False, True], [False, False]]),
        truncated=np.array([[False, False], [True, False]]),
        episode_end=np.array([False, True]),
        gamma=0.5,
        gae_lambda=0.5,
    )
    # agent 0: delta_1 = 2 + 0.5*3 - 1 = 2.5; delta_0 = 1 + 0.5*1 - 0.5 = 1; A_0 = 1 + 0.25*2.5
    # agent 1: terminated at step 0: A_0 = 5 - 1 = 4 (no bootstrap from 9); step 1 masked
    np.testing.assert_allclose(adv, [[1.625, 4.0], [2.5, 0.0]])
    np.testing.assert_allclose(ret, [[2.125, 5.0], [3.5, 0.0]])


def _stub_chain(obs: torch.Tensor, participating: torch.Tensor, order: torch.Tensor, *,
                greedy: bool, with_value: bool = True, with_logp: bool = True,
                state: torch.Tensor | None = None, uniforms: torch.Tensor | None = None) -> ChainResult:
    """Fixed joint action; V_k = (k + 1) * t from the observation [k, t] of participants.
    ``uniforms`` (as in the chain it stands in for) is not used: nothing is sampled."""
    batch, n = obs.shape[:2]
    k = torch.arange(n, dtype=torch.float32)
    value = (k + 1) * obs[..., 1] * participating  # (B, n)
    act = torch.as_tensor(JOINT).expand(batch, n).clone() * participating.long()
    return ChainResult(act=act, logp=torch.zeros(batch, n), value=value)


def _stub_evaluate_joint(obs: torch.Tensor, alive: torch.Tensor, order: torch.Tensor,
                         act: torch.Tensor, state: torch.Tensor | None = None) -> ChainResult:
    """The learner's batched V^i of the actions taken: the same V_k = (k + 1) * t."""
    return _stub_chain(obs, alive, order, greedy=False)


def test_collector_buffer_and_advantages_by_hand() -> None:
    env = JointStepEnv(env=DyingEnv(), order=ORDER)
    learner = build_learner(spec=env.joint_spec,
                            config=STEPConfig(gamma=0.5, gae_lambda=0.5), env=env)
    learner.policy.chain = _stub_chain  # type: ignore[method-assign]
    learner.policy.evaluate_joint = _stub_evaluate_joint  # type: ignore[method-assign]
    venv = DummyVectorEnv([lambda: JointStepEnv(env=DyingEnv(), order=ORDER)])
    collector: Collector[Any] = Collector(learner.policy, venv, VectorReplayBuffer(16, 1))
    collector.reset()
    stats = collector.collect(n_episode=1)
    assert stats.n_collected_steps == 4
    buffer = collector.buffer
    batch, indices = buffer.sample(0)
    assert batch.rew.shape == (4, 3), f"Tianshou must keep per-agent rewards, got {batch.rew.shape}"
    np.testing.assert_array_equal(batch.rew, [[2, 11, 22], [3, 12, 23], [4, 0, 24], [5, 0, 25]])
    np.testing.assert_array_equal(unpack_info(batch.info)["terminated"][1], [False, True, False])
    obs, obs_next = batch.obs, batch.obs_next
    assert isinstance(obs, np.ndarray) and isinstance(obs_next, np.ndarray)  # packed joint observations
    for name, flags in zip(("alive", "terminated", "truncated"), step_flags(obs, obs_next), strict=True):
        np.testing.assert_array_equal(flags, unpack_info(batch.info)[name], err_msg=name)
    batch = learner.algorithm._preprocess_batch(batch, buffer, indices)
    # Hand computation, gamma = lambda = 0.5 (gamma*lambda = 0.25), V_k(t) = (k+1) t:
    # agent_0: r = 2,3,4,5; V = 0,1,2,3; V' = 1,2,3,4 (truncated at the end: bootstrap 4)
    #   deltas 2.5, 3, 3.5, 4 -> A = 3.53125, 4.125, 4.5, 4
    # agent_1: r = 11,12; V = 0,2; V' = 2, - (terminated at step 1: no bootstrap)
    #   deltas 11 + 1 - 0 = 12, 12 - 2 = 10 -> A = 14.5, 10; later steps masked
    # agent_2: r = 22..25; V = 0,3,6,9; V' = 3,6,9,12
    #   deltas 23.5, 23, 22.5, 22 -> A = 31, 30, 28, 22
    expected = np.array([[3.53125, 14.5, 31.0], [4.125, 10.0, 30.0], [4.5, 0.0, 28.0], [4.0, 0.0, 22.0]])
    np.testing.assert_allclose(batch.adv, expected, rtol=1e-6)
    values = np.array([[0, 0, 0], [1, 2, 3], [2, 0, 6], [3, 0, 9]], dtype=float)
    np.testing.assert_allclose(batch.returns, np.where(expected != 0, expected + values, 0.0))
    pairs = learner.algorithm._pairs
    assert pairs.row.numel() == 10, "only the 10 (step, agent) pairs of living agents are trained on"
    # Priority positions: agent_2 leads, agent_0 second, agent_1 third.
    pos = {(int(r), int(a)): int(p) for r, a, p in zip(pairs.row, pairs.agent, pairs.priority, strict=True)}
    assert pos[(0, 2)] == 0 and pos[(0, 0)] == 1 and pos[(0, 1)] == 2


def test_adapter_rejects_mixed_action_spaces() -> None:
    class Mixed(DyingEnv):
        def action_space(self, agent: str) -> spaces.Space[Any]:
            return spaces.Discrete(2) if agent != "agent_1" else spaces.Box(-1, 1, (1,))

    with pytest.raises(TypeError, match=r"unsupported action spaces .*agent_1.*Box.*every agent with a Discrete"):
        JointStepEnv(env=Mixed())
