"""``STMGEnv``: a PettingZoo ParallelEnv played as a spatio-temporal sequential Markov game.

Within each time step the living agents act one at a time in priority order (leader first);
each sees, in its observation, the actions its superiors already chose in this time step.
After the last living agent has acted, the wrapped ParallelEnv steps once with exactly the
joint action taken. Everything else follows PettingZoo's AEC semantics:

* ``last()`` shows what the selected agent earned since it last acted (``_cumulative_rewards``);
  rewards arrive when the time step closes, so within a time step they are zero.
* An agent that terminates or truncates is selected (dead agents first) at the start of the
  next time step, must be stepped with ``None``, and is then removed from ``agents``; the order
  skips it from then on.
* ``state()``, ``render()``, ``close()`` and the action spaces pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import AECEnv, ParallelEnv

from stmg.encoding import STMGEncoder

OrderFn = Callable[["STMGEnv"], Sequence[str]]
"""A dynamic order: called with the wrapper at the start of every time step."""

BaseObservation = Literal["own", "state"]


class STMGEnv(AECEnv):  # type: ignore[misc]
    """The STMG version of ``env``; build it with :func:`stmg.wrap`.

    Attributes:
        parallel_env: the wrapped ParallelEnv.
        encoder: the :class:`~stmg.encoding.STMGEncoder` that builds every observation.
        current_order: the living agents in this time step's order (leader first).
        prior_actions: the actions chosen so far in this time step, by agent.
        time_step: how many joint steps the wrapped env has taken since ``reset``.
    """

    def __init__(
        self,
        env: ParallelEnv,
        order: Sequence[str] | OrderFn | None = None,
        *,
        observation: BaseObservation = "own",
        flatten: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(env, AECEnv) or not hasattr(env, "possible_agents") or not callable(
            getattr(env, "step", None)
        ):
            raise TypeError(
                f"stmg.wrap expects a PettingZoo ParallelEnv, got {type(env).__name__}; "
                "convert an AECEnv with pettingzoo.utils.conversions.aec_to_parallel first"
            )
        self.parallel_env = env
        self.possible_agents = list(env.possible_agents)
        self._order_fn: OrderFn | None = None
        self._static_order: list[str] = list(self.possible_agents)
        if callable(order):
            self._order_fn = order
        elif order is not None:
            self._static_order = self._checked_static_order(order)

        if observation not in ("own", "state"):
            raise ValueError(f"observation={observation!r} is not supported; expected 'own' or 'state'")
        self.base_observation: BaseObservation = observation
        self._action_spaces = {a: env.action_space(a) for a in self.possible_agents}
        if observation == "state":
            state_space = getattr(env, "state_space", None)
            if state_space is None or not callable(getattr(env, "state", None)):
                raise ValueError(
                    f"observation='state' needs env.state() and env.state_space, which "
                    f"{type(env).__name__} does not provide; use observation='own'"
                )
            base_spaces = {a: state_space for a in self.possible_agents}
        else:
            base_spaces = {a: env.observation_space(a) for a in self.possible_agents}
        self.encoder = STMGEncoder(self.possible_agents, self._action_spaces, base_spaces, flatten=flatten)

        name = getattr(env, "metadata", {}).get("name", type(env).__name__)
        self.metadata = {**getattr(env, "metadata", {}), "name": f"stmg_{name}"}
        self.render_mode = getattr(env, "render_mode", None)

        # Per-episode state; reset() fills it. _ready guards step/observe before reset.
        self._ready = False
        self.agents: list[str] = []
        self.current_order: list[str] = []
        self.prior_actions: dict[str, Any] = {}
        self.time_step = 0
        self._position = 0
        self._base_obs: dict[str, Any] = {}
        self._state_cache: Any = None
        self._table = np.zeros((self.encoder.n_agents, self.encoder.slot_size), np.float32)
        self._mask = np.zeros(self.encoder.n_agents, np.float32)

    # --- order ----------------------------------------------------------------------------
    def _checked_static_order(self, order: Sequence[str]) -> list[str]:
        order = list(order)
        known = set(self.possible_agents)
        unknown = [a for a in order if a not in known]
        repeated = sorted({a for a in order if order.count(a) > 1})
        missing = [a for a in self.possible_agents if a not in order]
        if unknown or repeated or missing:
            raise ValueError(
                f"order {order} is not a permutation of possible_agents {self.possible_agents}: "
                f"unknown {unknown}, repeated {repeated}, missing {missing}"
            )
        return order

    def _order_for_time_step(self, living: list[str]) -> list[str]:
        if self._order_fn is None:
            return [a for a in self._static_order if a in living]
        proposed = list(self._order_fn(self))
        known = set(self.possible_agents)
        unknown = [a for a in proposed if a not in known]
        repeated = sorted({a for a in proposed if proposed.count(a) > 1})
        missing = [a for a in living if a not in proposed]
        if unknown or repeated or missing:
            raise ValueError(
                f"the order function returned {proposed} at time step {self.time_step}; expected "
                f"each living agent {living} exactly once (agents already gone may be listed): "
                f"unknown {unknown}, repeated {repeated}, missing {missing}"
            )
        alive = set(living)
        return [a for a in proposed if a in alive]

    # --- spaces ---------------------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Space[Any]:
        """The STMG observation space of ``agent`` (layout: :mod:`stmg.encoding`)."""
        return self.encoder.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Space[Any]:
        """The wrapped env's action space of ``agent``."""
        try:
            return self._action_spaces[agent]
        except KeyError:
            raise KeyError(f"unknown agent {agent!r}; expected one of {self.possible_agents}") from None

    @property
    def state_space(self) -> spaces.Space[Any]:
        """The wrapped env's state space, where it has one."""
        space = getattr(self.parallel_env, "state_space", None)
        if space is None:
            raise AttributeError(f"{type(self.parallel_env).__name__} has no state_space")
        return space  # type: ignore[no-any-return]

    # --- episode --------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Reset the wrapped env and select the leader of the first time step."""
        obs, infos = self.parallel_env.reset(seed=seed, options=options)
        self.agents = list(self.parallel_env.agents)
        self._base_obs = dict(obs)
        self._state_cache = None
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: dict(infos.get(a, {})) for a in self.agents}
        self.time_step = 0
        self._skip_agent_selection = None
        self._ready = True
        self._begin_time_step()

    def _begin_time_step(self) -> None:
        living = [a for a in self.agents if not (self.terminations[a] or self.truncations[a])]
        self.current_order = self._order_for_time_step(living)
        self.prior_actions = {}
        self._position = 0
        self._table.fill(0.0)
        self._mask.fill(0.0)
        self.agent_selection = self.current_order[0] if self.current_order else None
        # Dead agents are stepped with None first (PettingZoo's convention); afterwards
        # _was_dead_step restores the selection made here.
        self._deads_step_first()

    def step(self, action: Any) -> None:
        """Record the selected agent's action; the last one in the order closes the time step."""
        if not self._ready:
            raise RuntimeError("step() called before reset(); call reset() first")
        if not self.agents:
            raise RuntimeError("step() called but no agent is left; call reset() to start a new episode")
        agent = self.agent_selection
        if agent is None:  # cannot happen while agents remain; keeps the types honest
            raise RuntimeError("no agent is selected; call reset()")
        if self.terminations[agent] or self.truncations[agent]:
            if action is not None:
                raise ValueError(
                    f"agent {agent!r} is done (terminated or truncated) and must be stepped with "
                    f"None, got {action!r}"
                )
            self._was_dead_step(None)
            return
        self.encoder.validate_action(agent, action)

        self._cumulative_rewards[agent] = 0.0
        self.prior_actions[agent] = action
        k = self.encoder.index[agent]
        self.encoder.codecs[agent].encode(action, self._table[k])
        self._mask[k] = 1.0
        self._position += 1
        if self._position < len(self.current_order):
            self.agent_selection = self.current_order[self._position]
            self._clear_rewards()
            return
        self._close_time_step()

    def _close_time_step(self) -> None:
        obs, rewards, terminations, truncations, infos = self.parallel_env.step(dict(self.prior_actions))
        self._base_obs.update(obs)
        self._state_cache = None
        self.time_step += 1
        still_in_env = set(self.parallel_env.agents)
        newcomers = still_in_env.difference(self.agents)
        if newcomers:
            raise NotImplementedError(
                f"agents {sorted(newcomers)} joined mid-episode; stmg supports agents leaving, not joining"
            )
        for a in self.current_order:
            self.rewards[a] = float(rewards.get(a, 0.0))
            self.terminations[a] = bool(terminations.get(a, False))
            self.truncations[a] = bool(truncations.get(a, False))
            # An agent the env dropped without flagging it is treated as terminated.
            if a not in still_in_env and not self.truncations[a]:
                self.terminations[a] = True
            self.infos[a] = dict(infos.get(a, {}))
        self._accumulate_rewards()
        self._begin_time_step()

    # --- observations ---------------------------------------------------------------------
    def base_observation_of(self, agent: str) -> Any:
        """``agent``'s base observation now: its own observation, or the global state."""
        if not self._ready:
            raise RuntimeError("base_observation_of() called before reset(); call reset() first")
        return self._base_observation(agent)

    def _base_observation(self, agent: str) -> Any:
        if self.base_observation == "own":
            return self._base_obs[agent]
        if self._state_cache is None:  # one state() call per time step, however many observers
            self._state_cache = self.parallel_env.state()
        return self._state_cache

    def observe(self, agent: str) -> Any:
        """``agent``'s STMG observation: base observation plus its superiors' actions so far."""
        if not self._ready:
            raise RuntimeError("observe() called before reset(); call reset() first")
        base = self._base_observation(agent)
        if agent == self.agent_selection and self._position < len(self.current_order) and (
            self.current_order[self._position] == agent
        ):
            # Hot path: the acting agent's superiors are exactly the actions taken so far.
            return self.encoder.assemble(agent, base, self._table.copy(), self._mask.copy(), self._position)
        if agent in self.current_order:
            position = self.current_order.index(agent)
            superiors = {a: self.prior_actions[a] for a in self.current_order[:position] if a in self.prior_actions}
        else:  # dead or gone: nobody is its superior any more
            position, superiors = 0, {}
        return self.encoder.encode(agent, base, superiors, position)

    def state(self) -> Any:
        """The wrapped env's global state."""
        return self.parallel_env.state()

    def render(self) -> Any:
        """Render the wrapped env."""
        return self.parallel_env.render()

    def close(self) -> None:
        """Close the wrapped env."""
        self.parallel_env.close()

    def __str__(self) -> str:
        return f"STMGEnv<{self.parallel_env}>"


def wrap(
    env: ParallelEnv,
    order: Sequence[str] | OrderFn | None = None,
    *,
    observation: BaseObservation = "own",
    flatten: bool = False,
) -> STMGEnv:
    """Turn a PettingZoo ``ParallelEnv`` into the spatio-temporal sequential game (an AECEnv).

    Args:
        env: any PettingZoo ParallelEnv with Discrete, Box, MultiDiscrete or MultiBinary
            action spaces.
        order: the priority order, leader first: a permutation of ``env.possible_agents``
            (default: ``possible_agents`` as they are), or a callable ``order(stmg_env)``
            called at the start of every time step that returns each living agent once
            (agents already gone may be listed and are skipped).
        observation: the base observation of each agent: ``"own"`` (its own observation) or
            ``"state"`` (``env.state()``, for envs with a ``state_space``).
        flatten: observations as one float32 vector instead of a dict
            (layout: :mod:`stmg.encoding`).

    Example:
        >>> import stmg, envs
        >>> game = stmg.wrap(envs.make("matrix/penalty-v0"), order=["agent_1", "agent_0"])
        >>> game.reset(seed=0)
        >>> game.agent_selection
        'agent_1'
    """
    return STMGEnv(env, order, observation=observation, flatten=flatten)

