"""The joint-step adapter: one STMG time step (one full priority cycle) per gymnasium step.

Tianshou's own multi-agent path steps one agent per env step and mis-attributes rewards,
next observations and done flags (``/work/shared/reference/FACTS.md``). This adapter avoids
that: each ``step`` drives :func:`stmg.wrap` through one whole time step, so one Tianshou
transition holds every agent's data for that time step, in fixed-shape arrays indexed by the
agent's position in ``possible_agents``:

===============  ==============================  ===========================================
field            shape / dtype                   meaning
===============  ==============================  ===========================================
obs["obs"]       (n_agents, obs_dim) float32     base observations, flattened, zero-padded;
                                                 zeros for agents that are gone
obs["alive"]     (n_agents,) float32             1.0 for the agents that act in this time step
obs["present"]   (n_agents,) float32             alive, or truncated in the step that led here
                                                 (their observation is valid for bootstrapping)
obs["order"]     (n_agents,) int64               agent indices: the living agents in this
                                                 time step's priority order, then the agents
                                                 just truncated (in their last order), then
                                                 the rest
action           (n_agents,) int (MultiDiscrete)  the joint action, counted from 0 per agent;
                 or (n_agents, max_dim) float     entries of agents that do not act are ignored
reward           (n_agents,) float               each agent's ``_cumulative_rewards`` after
                                                 the time step (its reward for this step)
info             "terminated", "truncated",      per-agent flags of this step, and who acted
                 "alive" (n_agents,) bool
===============  ==============================  ===========================================

The priority cycle runs in the order the wrapper chose (``current_order``); dead agents are
stepped with ``None`` the PettingZoo way right after the time step in which they died. The
gymnasium episode ends when no agent is left: ``truncated`` if some agent was truncated in the
last step, else ``terminated``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

import stmg
from agents.spec import JointSpec


class JointStepEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A PettingZoo ParallelEnv played as an STMG, one time step per ``step`` (module docstring).

    Args:
        env: the ParallelEnv to play.
        order: the priority order (see :func:`stmg.wrap`).
        observation: base observation, ``"own"`` or ``"state"`` (see :func:`stmg.wrap`).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        *,
        env: ParallelEnv,
        order: Sequence[str] | Callable[[stmg.STMGEnv], Sequence[str]] | None = None,
        observation: str = "own",
    ) -> None:
        self.game = stmg.wrap(env, order, observation=observation)  # type: ignore[arg-type]
        self.spec_ = JointSpec.from_encoder(self.game.encoder)
        spec = self.spec_
        n = spec.n_agents
        self._index = {a: k for k, a in enumerate(spec.possible_agents)}
        self._base_spaces = self.game.encoder.base_spaces
        self.observation_space = spaces.Dict({  # type: ignore[assignment]
            "obs": spaces.Box(-np.inf, np.inf, (n, spec.obs_dim), np.float32),
            "alive": spaces.Box(0.0, 1.0, (n,), np.float32),
            "present": spaces.Box(0.0, 1.0, (n,), np.float32),
            "order": spaces.Box(0, n - 1, (n,), np.int64),
        })
        if spec.action_kind == "discrete":
            self.action_space = spaces.MultiDiscrete(np.array(spec.action_sizes, dtype=np.int64))
        else:
            width = spec.max_action_size
            low = np.zeros((n, width), np.float32)
            high = np.zeros((n, width), np.float32)
            for k in range(n):
                low[k, : spec.action_sizes[k]] = spec.action_low[k]
                high[k, : spec.action_sizes[k]] = spec.action_high[k]
            self.action_space = spaces.Box(low, high, dtype=np.float32)
        self._act_spaces = [self.game.action_space(a) for a in spec.possible_agents]

    @property
    def joint_spec(self) -> JointSpec:
        """Sizes of the game (shared with the policy and checkpoints)."""
        return self.spec_

    # --- helpers -----------------------------------------------------------------------------
    def _base_obs(self, agent: str) -> np.ndarray:
        raw = self.game.observe(agent)["observation"]
        flat = np.asarray(spaces.flatten(self._base_spaces[agent], raw))
        return flat.astype(np.float32, copy=False)

    def _observation(self, present_extra: Sequence[str], last_order: Sequence[str]) -> dict[str, np.ndarray]:
        spec = self.spec_
        n = spec.n_agents
        obs = np.zeros((n, spec.obs_dim), np.float32)
        alive = np.zeros(n, np.float32)
        present = np.zeros(n, np.float32)
        living = list(self.game.current_order) if self.game.agents else []
        extra = [a for a in last_order if a in set(present_extra)]
        for a in living:
            k = self._index[a]
            flat = self._base_obs(a)
            obs[k, : flat.shape[0]] = flat
            alive[k] = present[k] = 1.0
        for a, flat in self._extra_obs.items():
            k = self._index[a]
            obs[k, : flat.shape[0]] = flat
            present[k] = 1.0
        listed = living + extra
        rest = [a for a in spec.possible_agents if a not in set(listed)]
        order = np.array([self._index[a] for a in listed + rest], dtype=np.int64)
        return {"obs": obs, "alive": alive, "present": present, "order": order}

    def _agent_action(self, k: int, action: np.ndarray) -> Any:
        spec = self.spec_
        if spec.action_kind == "discrete":
            return int(action[k]) + spec.action_starts[k]
        space = self._act_spaces[k]
        values = np.asarray(action[k, : spec.action_sizes[k]], dtype=np.float32)
        return np.clip(values, space.low.ravel(), space.high.ravel()).reshape(space.shape)  # type: ignore[attr-defined]

    def _empty_info(self) -> dict[str, np.ndarray]:
        n = self.spec_.n_agents
        return {"terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool), "alive": np.zeros(n, bool)}

    # --- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the game; the observation shows the first time step's order."""
        super().reset(seed=seed)
        self.game.reset(seed=seed, options=options)
        self._extra_obs: dict[str, np.ndarray] = {}
        return self._observation((), ()), self._empty_info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, bool, bool, dict[str, Any]]:
        """Play one time step: every living agent acts once, in priority order."""
        game, spec = self.game, self.spec_
        if not game.agents:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        action = np.asarray(action)
        order = list(game.current_order)
        for agent in order:
            if game.agent_selection != agent:  # the wrapper's contract; fail loudly if broken
                raise RuntimeError(
                    f"stmg selected {game.agent_selection!r} but the time step's order {order} "
                    f"expects {agent!r}"
                )
            game.step(self._agent_action(self._index[agent], action))
        n = spec.n_agents
        reward = np.zeros(n, np.float64)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        acted = np.zeros(n, bool)
        for agent in order:
            k = self._index[agent]
            reward[k] = game._cumulative_rewards[agent]
            terminated[k] = game.terminations[agent]
            truncated[k] = game.truncations[agent] and not terminated[k]
            acted[k] = True
        # Keep the last observation of agents truncated now: their value is bootstrapped from it.
        just_truncated = [a for a in order if truncated[self._index[a]]]
        self._extra_obs = {a: self._base_obs(a) for a in just_truncated}
        # Dead agents are stepped with None before anything else can happen (PettingZoo).
        while game.agents and (game.terminations[str(game.agent_selection)]
                               or game.truncations[str(game.agent_selection)]):
            game.step(None)
        obs = self._observation(just_truncated, order)
        over = not game.agents
        env_truncated = over and bool(truncated.any())
        env_terminated = over and not env_truncated
        info = {"terminated": terminated, "truncated": truncated, "alive": acted}
        return obs, reward, env_terminated, env_truncated, info
