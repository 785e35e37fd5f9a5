"""A repeated two-agent game with continuous actions and a known leader-follower optimum.

| property           | value                                                   |
|--------------------|---------------------------------------------------------|
| agents             | ``agent_0`` (leader), ``agent_1`` (follower)            |
| action spaces      | ``Box(-1, 1, (1,), float32)`` each                      |
| observation spaces | ``Box(0, 1, (1,), float32)``, always ``[1.0]``          |
| state space        | the same constant                                       |
| episode end        | truncation after ``episode_length`` steps (default 25)  |

Rewards for actions ``x`` (leader) and ``y`` (follower)::

    r_follower = -(y - slope * x) ** 2
    r_leader   = -(y - target) ** 2 - cost * x ** 2

The follower's best response is ``y = slope * x``. A leader who commits, knowing that, solves
``max_x -(slope * x - target)^2 - cost * x^2``, so the Stackelberg equilibrium is

    x* = slope * target / (slope^2 + cost),    y* = slope * x*

(defaults slope 0.5, target 0.4, cost 0.1: x* = 0.5714, y* = 0.2857; both inside [-1, 1]).
Played simultaneously, the leader's best response to any fixed ``y`` is ``x = 0``, so the only
Nash equilibrium is (0, 0): learners that ignore the leader-follower structure drift there.

Registry id: ``continuous/quadratic-v0``. Version history: v0, first release.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

from envs.matrix import repeated_game_step

__all__ = ["QuadraticGame"]


class QuadraticGame(ParallelEnv):  # type: ignore[misc]
    """The repeated quadratic leader-follower game of the module docstring."""

    metadata = {"name": "quadratic_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(
        self, slope: float = 0.5, target: float = 0.4, cost: float = 0.1, episode_length: int = 25
    ) -> None:
        for name, value in (("slope", slope), ("target", target), ("cost", cost)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if cost < 0:
            raise ValueError(f"cost must be non-negative, got {cost!r}")
        if isinstance(episode_length, bool) or not isinstance(episode_length, int | np.integer) or episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
        self.slope, self.target, self.cost = float(slope), float(target), float(cost)
        self.episode_length = int(episode_length)
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.state_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._constant = np.ones(1, dtype=np.float32)
        self._t = 0

    def stackelberg_equilibrium(self) -> tuple[float, float]:
        """``(x*, y*)``: the leader's optimal commitment and the follower's best response."""
        denominator = self.slope**2 + self.cost
        if denominator == 0.0:
            raise ValueError("slope = cost = 0: the leader is indifferent, no unique equilibrium")
        leader = self.slope * self.target / denominator
        return leader, self.slope * leader

    def rewards_for(self, leader: float, follower: float) -> tuple[float, float]:
        """``(r_leader, r_follower)`` for one joint action."""
        r_leader = -((follower - self.target) ** 2) - self.cost * leader**2
        r_follower = -((follower - self.slope * leader) ** 2)
        return r_leader, r_follower

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.state_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_space

    def state(self) -> np.ndarray:
        return self._constant.copy()

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self.agents = list(self.possible_agents)
        self._t = 0
        return {a: self._constant.copy() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        for agent in self.agents:
            if agent not in actions or not self._action_space.contains(np.asarray(actions[agent], np.float32)):
                raise ValueError(f"action {actions.get(agent)!r} of {agent!r} is not in {self._action_space}")
        leader = float(np.asarray(actions["agent_0"]).ravel()[0])
        follower = float(np.asarray(actions["agent_1"]).ravel()[0])
        r_leader, r_follower = self.rewards_for(leader, follower)
        self._t += 1
        return repeated_game_step(self, self._constant, {"agent_0": r_leader, "agent_1": r_follower})

    def close(self) -> None:
        pass
