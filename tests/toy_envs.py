"""Small deterministic ParallelEnvs for tests, with hand-checkable rewards and deaths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv


class RecordingEnv(ParallelEnv):  # type: ignore[misc]
    """Records every joint action it receives.

    * observation of agent ``k`` at time ``t``: ``[k, t]`` (float32); ``state()`` is ``[t]``.
    * reward of agent ``k`` at step ``t`` (t counted from 1): ``10 * k + t``.
    * ``deaths[agent] = t``: the agent terminates at step ``t``.
    * every agent left is truncated at ``episode_length``.
    """

    metadata = {"name": "recording_v0", "render_modes": []}

    def __init__(
        self,
        action_spaces: Sequence[spaces.Space[Any]] | None = None,
        deaths: Mapping[str, int] | None = None,
        episode_length: int = 5,
    ) -> None:
        action_spaces = list(action_spaces or [spaces.Discrete(3), spaces.Discrete(3)])
        self.possible_agents = [f"agent_{k}" for k in range(len(action_spaces))]
        self._action_spaces = dict(zip(self.possible_agents, action_spaces, strict=True))
        self._obs_space = spaces.Box(0.0, 1000.0, shape=(2,), dtype=np.float32)
        self.state_space = spaces.Box(0.0, 1000.0, shape=(1,), dtype=np.float32)
        self.deaths = dict(deaths or {})
        self.episode_length = episode_length
        self.received: list[dict[str, Any]] = []
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_spaces[agent]

    def _obs(self, agent: str) -> np.ndarray:
        return np.array([self.possible_agents.index(agent), self.t], dtype=np.float32)

    def state(self) -> np.ndarray:
        return np.array([self.t], dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.agents = list(self.possible_agents)
        self.t = 0
        self.received = []
        for space in self._action_spaces.values():
            space.seed(seed)
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> Any:
        self.received.append(dict(actions))
        self.t += 1
        agents = self.agents
        obs = {a: self._obs(a) for a in agents}
        rewards = {a: float(10 * self.possible_agents.index(a) + self.t) for a in agents}
        terminations = {a: self.deaths.get(a) == self.t for a in agents}
        truncations = {a: self.t >= self.episode_length and not terminations[a] for a in agents}
        infos: dict[str, dict[str, Any]] = {a: {"t": self.t} for a in agents}
        self.agents = [a for a in agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, infos
