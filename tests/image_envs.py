"""A tiny image game for the learners' tests: the reward depends on what the image shows."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv


class BrightHalfEnv(ParallelEnv):  # type: ignore[misc]
    """Each agent sees an image whose top or bottom half is bright and names that half.

    ==============  ==========================================================================
    agents          ``agent_0`` .. ``agent_{n-1}``
    observation     (size, size, 3) uint8 in [0, 255] (``channels_first``: (3, size, size));
                    one half 255, the other 0; each agent's half is drawn anew every step
    action          Discrete(2): 0 "bottom", 1 "top"
    reward          1 when the action names the bright half, else 0
    episode         ``episode_length`` steps, then every agent is truncated
    ==============  ==========================================================================
    """

    metadata = {"name": "bright_half_v0", "render_modes": []}

    def __init__(self, n_agents: int = 2, *, size: int = 12, episode_length: int = 4,
                 channels_first: bool = False) -> None:
        self.possible_agents = [f"agent_{k}" for k in range(n_agents)]
        self.size, self.episode_length, self.channels_first = size, episode_length, channels_first
        shape = (3, size, size) if channels_first else (size, size, 3)
        self._obs_space = spaces.Box(0, 255, shape, np.uint8)
        self.agents: list[str] = []
        self.t = 0
        self._rng = np.random.default_rng(0)
        self._top: dict[str, bool] = {}
        self.rewards_given: list[float] = []
        """Every reward handed out since construction (for checks of greedy play)."""

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Discrete(2)

    def _draw(self) -> dict[str, np.ndarray]:
        self._top = {a: bool(self._rng.integers(2)) for a in self.agents}
        out = {}
        for a in self.agents:
            image = np.zeros((self.size, self.size, 3), np.uint8)
            half = self.size // 2
            image[:half] = 255 if self._top[a] else 0
            image[half:] = 0 if self._top[a] else 255
            out[a] = image.transpose(2, 0, 1).copy() if self.channels_first else image
        return out

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._draw(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> Any:
        rewards = {a: float(int(actions[a]) == int(self._top[a])) for a in self.agents}
        self.rewards_given += rewards.values()
        self.t += 1
        over = self.t >= self.episode_length
        terminations = {a: False for a in self.agents}
        truncations = {a: over for a in self.agents}
        obs = self._draw()
        infos: dict[str, dict[str, Any]] = {a: {} for a in self.agents}
        if over:
            self.agents = []
        return obs, rewards, terminations, truncations, infos
