"""The joint-step adapter: one STMG time step (one full priority cycle) per gymnasium step.

Tianshou's own multi-agent path steps one agent per env step and mis-attributes rewards,
next observations and done flags (``/work/shared/reference/FACTS.md``). This adapter avoids
that: each ``step`` drives :func:`stmg.wrap` through one whole time step, so one Tianshou
transition holds every agent's data for that time step, in fixed-shape arrays indexed by the
agent's position in ``possible_agents``:

================  ================================  ===========================================
field             shape / dtype                     meaning
================  ================================  ===========================================
obs               (n_agents, obs_dim + 3) float32   one row per agent, columns as below
obs[:, :obs_dim]  (n_agents, obs_dim)               base observations, flattened, zero-padded;
                                                    zeros for agents that are gone
obs[:, obs_dim:   (n_agents, state_dim)             only with ``with_state=True``: the env's
    obs_dim+S]                                      global ``state()``, flattened, the same in
                                                    every row (the critics read it)
obs[:, ALIVE]     (n_agents,), column -3            1.0 for the agents that act in this time step
obs[:, PRESENT]   (n_agents,), column -2            alive, or truncated in the step that led here
                                                    (their observation is valid for bootstrapping)
obs[:, POSITION]  (n_agents,), column -1            the agent's priority position (a permutation
                                                    of 0..n-1): the living agents in this time
                                                    step's priority order, then the agents just
                                                    truncated (in their last order), then the rest
action            (n_agents,) int (MultiDiscrete)   the joint action, counted from 0 per agent;
                  or (n_agents, max_dim) float      entries of agents that do not act are ignored
reward            (n_agents,) float                 each agent's ``_cumulative_rewards`` after
                                                    the time step (its reward for this step)
info["flags"]     (n_agents, 3) bool                per-agent flags of this step, columns
                                                    TERMINATED, TRUNCATED, ACTED (who acted)
================  ================================  ===========================================

One array per field keeps Tianshou's ``Batch`` handling (stacking, buffer writes) cheap;
:func:`unpack_observation` and :func:`unpack_info` give the named views. The info flags are
redundant with the observations: :func:`step_flags` recovers them exactly from a transition's
``obs`` and ``obs_next``. The learner relies on that and builds its environments with
``info_flags=False`` (no flags in the info), so Tianshou has fewer info entries to stack per
env step.

Image observations are flattened into the same float32 rows (the learner's encoder reshapes
them), so a collected step costs 2 x n_agents x (obs_dim + S + 3) x 4 bytes in the replay
buffer (``obs`` and ``obs_next``): 26 MB for pistonball's 20 agents of 457x120x3 images.
Downscale such images before wrapping (e.g. supersuit's ``resize_v1``).

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

ALIVE, PRESENT, POSITION = -3, -2, -1
"""Columns of the adapter observation after the base observation (module docstring)."""
EXTRA_COLUMNS = 3
"""Number of columns after the base observation."""
TERMINATED, TRUNCATED, ACTED = 0, 1, 2
"""Columns of ``info["flags"]``."""


def unpack_observation(obs: np.ndarray, state_dim: int = 0) -> dict[str, np.ndarray]:
    """Named views of an adapter observation (or a stacked batch, shape (..., n, d + S + 3)).

    Returns ``obs`` (base observations), ``state`` (the global state, (..., S); present only
    when ``state_dim`` > 0), ``alive`` and ``present`` (float32), ``position`` (int64, each
    agent's priority position) and ``order`` (int64, agent indices in priority order, the
    inverse permutation of ``position``).
    """
    obs = np.asarray(obs)
    position = obs[..., POSITION].astype(np.int64)
    d = obs.shape[-1] - EXTRA_COLUMNS - state_dim
    out = {"obs": obs[..., :d], "alive": obs[..., ALIVE], "present": obs[..., PRESENT],
           "position": position, "order": np.argsort(position, axis=-1, kind="stable")}
    if state_dim:
        out["state"] = obs[..., 0, d:d + state_dim]
    return out


def unpack_info(info: Any) -> dict[str, np.ndarray]:
    """``terminated``, ``truncated`` and ``alive`` (who acted) bool arrays from an adapter info."""
    flags = np.asarray(info["flags"], bool)
    return {"terminated": flags[..., TERMINATED], "truncated": flags[..., TRUNCATED],
            "alive": flags[..., ACTED]}


def step_flags(obs: np.ndarray, obs_next: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(acted, terminated, truncated) bool arrays (..., n_agents) of transitions, from their
    observations alone: exactly ``info["flags"]`` of the adapter's ``step``.

    The agents that act in a time step are the alive ones of its observation; an agent that
    acted and is not present in the next observation has terminated; one that is present but
    not alive was truncated (its last observation is kept for bootstrapping).
    """
    obs, obs_next = np.asarray(obs), np.asarray(obs_next)
    acted = obs[..., ALIVE] > 0.5
    present_next = obs_next[..., PRESENT] > 0.5
    alive_next = obs_next[..., ALIVE] > 0.5
    return acted, acted & ~present_next, acted & present_next & ~alive_next


def has_state(env: ParallelEnv) -> bool:
    """Whether ``env`` offers a global state the adapter can carry (``state()`` and a Box
    ``state_space``)."""
    return callable(getattr(env, "state", None)) and isinstance(getattr(env, "state_space", None), spaces.Box)


class JointStepEnv(gym.Env[np.ndarray, np.ndarray]):
    """A PettingZoo ParallelEnv played as an STMG, one time step per ``step`` (module docstring).

    Args:
        env: the ParallelEnv to play.
        order: the priority order (see :func:`stmg.wrap`).
        observation: base observation, ``"own"`` or ``"state"`` (see :func:`stmg.wrap`).
        info_flags: put the per-agent flags into ``info["flags"]``; if False the info is empty
            (the flags follow from the observations, :func:`step_flags`).
        with_state: carry the env's global ``state()`` in every row (for centralised critics);
            the env must have ``state()`` and a Box ``state_space``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        *,
        env: ParallelEnv,
        order: Sequence[str] | Callable[[stmg.STMGEnv], Sequence[str]] | None = None,
        observation: str = "own",
        info_flags: bool = True,
        with_state: bool = False,
    ) -> None:
        self.info_flags = info_flags
        self.game = stmg.wrap(env, order, observation=observation)  # type: ignore[arg-type]
        state_dim = 0
        if with_state:
            if not has_state(env):
                raise ValueError(
                    f"with_state=True needs env.state() and a Box env.state_space, which "
                    f"{type(env).__name__} does not provide")
            state_dim = int(np.prod(env.state_space.shape))  # type: ignore[attr-defined]
        self.spec_ = JointSpec.from_encoder(self.game.encoder, state_dim=state_dim)
        spec = self.spec_
        n = spec.n_agents
        self._index = {a: k for k, a in enumerate(spec.possible_agents)}
        self._base_spaces = self.game.encoder.base_spaces
        self._box_obs = {a: type(s) is spaces.Box for a, s in self._base_spaces.items()}
        width = spec.obs_dim + spec.state_dim + EXTRA_COLUMNS
        low = np.full((n, width), -np.inf, np.float32)
        high = np.full((n, width), np.inf, np.float32)
        low[:, -EXTRA_COLUMNS:] = 0.0
        high[:, [ALIVE, PRESENT]] = 1.0
        high[:, POSITION] = n - 1
        self.observation_space = spaces.Box(low, high, dtype=np.float32)  # type: ignore[assignment]
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
        self._extra_obs: dict[str, np.ndarray] = {}

    @property
    def joint_spec(self) -> JointSpec:
        """Sizes of the game (shared with the policy and checkpoints)."""
        return self.spec_

    # --- helpers -----------------------------------------------------------------------------
    def _base_obs(self, agent: str) -> np.ndarray:
        """``agent``'s base observation, flat (a view where possible; callers copy it)."""
        raw = self.game.base_observation_of(agent)
        if self._box_obs[agent]:  # fast path: what spaces.flatten does for a Box
            return np.asarray(raw).reshape(-1)
        return np.asarray(spaces.flatten(self._base_spaces[agent], raw))

    def _observation(self, last_order: Sequence[str]) -> np.ndarray:
        """The observation after a time step; ``self._extra_obs`` holds the just-truncated agents."""
        spec, index = self.spec_, self._index
        n = spec.n_agents
        out = np.zeros((n, spec.obs_dim + spec.state_dim + EXTRA_COLUMNS), np.float32)
        out[:, POSITION] = -1.0  # not yet placed
        if spec.state_dim:  # also at the episode's end: truncated agents bootstrap from it
            out[:, spec.obs_dim:spec.obs_dim + spec.state_dim] = np.asarray(
                self.game.state(), np.float32).reshape(-1)
        position = 0
        living = self.game.current_order if self.game.agents else ()
        for a in living:
            k = index[a]
            flat = self._base_obs(a)
            row = out[k]
            row[: flat.shape[0]] = flat
            row[ALIVE] = row[PRESENT] = 1.0
            row[POSITION] = position
            position += 1
        extra = self._extra_obs
        for a in last_order:  # the just-truncated agents, in their last order
            flat_or_none = extra.get(a)
            if flat_or_none is not None:
                k = index[a]
                row = out[k]
                row[: flat_or_none.shape[0]] = flat_or_none
                row[PRESENT] = 1.0
                row[POSITION] = position
                position += 1
        if position < n:  # the rest, in index order
            rest = np.flatnonzero(out[:, POSITION] < 0)
            out[rest, POSITION] = np.arange(position, n, dtype=np.float32)
        return out

    # --- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the game; the observation shows the first time step's order."""
        super().reset(seed=seed)
        self.game.reset(seed=seed, options=options)
        self._extra_obs = {}
        info = {"flags": np.zeros((self.spec_.n_agents, 3), bool)} if self.info_flags else {}
        return self._observation(()), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool, dict[str, Any]]:
        """Play one time step: every living agent acts once, in priority order."""
        game, spec, index = self.game, self.spec_, self._index
        if not game.agents:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        action = np.asarray(action)
        order = list(game.current_order)
        # The policy chose every action already, in priority order: one call plays the time step.
        env_actions = spec.env_joint_action(action)
        game.step_time_step({agent: env_actions[index[agent]] for agent in order})
        n = spec.n_agents
        reward = np.zeros(n, np.float64)
        flags = np.zeros((n, 3), bool)
        just_truncated = []
        rewards, terminations, truncations = game._cumulative_rewards, game.terminations, game.truncations
        for agent in order:
            k = index[agent]
            reward[k] = rewards[agent]
            term = bool(terminations[agent])
            trunc = bool(truncations[agent]) and not term
            flags[k] = (term, trunc, True)
            if trunc:
                just_truncated.append(agent)
        # Keep the last observation of agents truncated now: their value is bootstrapped from it.
        self._extra_obs = {a: self._base_obs(a).astype(np.float32) for a in just_truncated}
        # Dead agents are stepped with None before anything else can happen (PettingZoo).
        while game.agents and (game.terminations[str(game.agent_selection)]
                               or game.truncations[str(game.agent_selection)]):
            game.step(None)
        obs = self._observation(order)
        over = not game.agents
        env_truncated = over and bool(just_truncated)
        env_terminated = over and not env_truncated
        return obs, reward, env_terminated, env_truncated, {"flags": flags} if self.info_flags else {}
