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

Errors never leave a time step half-closed. A rejected ``step`` (an action outside the space,
an action for a done agent, a step before ``reset`` or after the last agent left) raises before
anything changes. If the wrapped env's ``reset``/``step`` raises or returns agent names outside
``possible_agents`` (or an agent that joins mid-episode), or the ``order`` callable fails, the
wrapper stops the episode: the exception propagates with a note saying so, and every further
``step`` raises ``RuntimeError`` naming the first error until ``reset()`` is called. The wrapped
env is therefore stepped exactly once per time step, never again with a closed step's actions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import AECEnv, ParallelEnv

from stmg.encoding import STMGEncoder

OrderFn = Callable[["STMGEnv"], Sequence[str]]
"""A dynamic order: called with the wrapper at the start of every time step."""

BaseObservation = Literal["own", "state"]

_STEP_OUTPUTS = ("observations", "rewards", "terminations", "truncations", "infos")


class STMGEnv(AECEnv):  # type: ignore[misc]
    """The STMG version of ``env``; build it with :func:`stmg.wrap`.

    Attributes:
        parallel_env: the wrapped ParallelEnv.
        encoder: the :class:`~stmg.encoding.STMGEncoder` that builds every observation.
        current_order: the living agents in this time step's order (leader first).
        prior_actions: the actions chosen so far in this time step, by agent.
        time_step: how many time steps have closed since ``reset`` (the wrapped env stepped
            and its outputs were taken in).
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
        self._known = frozenset(self.possible_agents)
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

        # Per-episode state; reset() fills it. _ready guards step/observe before reset;
        # _halted says why step() is refused until the next reset() (None: it is not).
        self._ready = False
        self._halted: str | None = None
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
        """Reset the wrapped env and select the leader of the first time step.

        If the wrapped env's ``reset`` or the order callable fails, or the env names an agent
        outside ``possible_agents``, the error propagates and ``step`` stays refused until a
        ``reset`` succeeds.
        """
        self._halted = "the last reset() did not complete"
        stage = "the wrapped env's reset()"
        try:
            outputs = self.parallel_env.reset(seed=seed, options=options)
            stage = "checking what the wrapped env's reset() returned"
            obs, infos = self._checked_reset_outputs(outputs)
            self.agents = list(self.parallel_env.agents)
            self._base_obs = dict(obs)
            self._state_cache = None
            self.rewards = {a: 0.0 for a in self.agents}
            self._cumulative_rewards = {a: 0.0 for a in self.agents}
            self.terminations = {a: False for a in self.agents}
            self.truncations = {a: False for a in self.agents}
            self.infos = {a: dict(infos.get(a, {})) for a in self.agents}
            self.time_step = 0
            self.prior_actions = {}
            self._position = 0
            self._skip_agent_selection = None
            self._ready = True
            stage = "the order function at the start of time step 0"
            self._begin_time_step()
        except BaseException as exc:
            self._halt(stage, exc)
            raise
        self._halted = None

    def _halt(self, stage: str, exc: BaseException) -> None:
        """Stop the episode after ``stage`` raised ``exc``: record why and note it on ``exc``."""
        self._halted = f"{stage} raised {type(exc).__name__}: {exc}"
        exc.add_note(
            f"stmg: {stage} failed, so the wrapper stopped this episode (the wrapped env is never "
            "stepped twice for one time step); call reset() before step() again"
        )

    def _checked_agent_names(self, names: Any, where: str) -> set[str]:
        """``names`` as a set, or a ValueError if one is unknown or repeated."""
        unique = set(names)
        if len(unique) == len(names) and self._known.issuperset(unique):
            return unique
        names = list(names)
        unknown = [a for a in names if a not in self._known]
        repeated = sorted({a for a in names if names.count(a) > 1}, key=str)
        raise ValueError(
            f"{where} names agents {names}; expected distinct names from possible_agents "
            f"{self.possible_agents}: unknown {unknown}, repeated {repeated}"
        )

    def _check_keys(self, mapping: Any, what: str, where: str) -> None:
        """Raise unless ``mapping`` is a dict keyed by names from ``possible_agents``."""
        if type(mapping) is not dict and not isinstance(mapping, Mapping):  # exact type first: faster
            raise TypeError(f"{where} returned {what} of type {type(mapping).__name__}; expected a dict by agent")
        if not self._known.issuperset(mapping):  # the common case costs one set operation
            unknown = [a for a in mapping if a not in self._known]
            raise ValueError(
                f"{where} returned {what} for agents {unknown} that are not in possible_agents "
                f"{self.possible_agents}"
            )

    def _checked_reset_outputs(self, outputs: Any) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
        where = "the wrapped env's reset()"
        if not (isinstance(outputs, tuple) and len(outputs) == 2):
            raise TypeError(f"{where} returned {type(outputs).__name__}; expected (observations, infos)")
        obs, infos = outputs
        self._check_keys(obs, "observations", where)
        self._check_keys(infos, "infos", where)
        self._checked_agent_names(self.parallel_env.agents, "after reset(), env.agents")
        if self.base_observation == "own":
            missing = [a for a in self.parallel_env.agents if a not in obs]
            if missing:
                raise ValueError(f"{where} returned no observation for agents {missing} in env.agents")
        return obs, infos

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
        """Record the selected agent's action; the last one in the order closes the time step.

        A rejected action raises ``ValueError`` and changes nothing. After an error that stopped
        the episode (see the module docstring) it raises ``RuntimeError`` until ``reset()``.
        """
        self._refuse_outside_an_episode("step()")
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
        self._record_action(agent, action)
        self._position += 1
        if self._position < len(self.current_order):
            self.agent_selection = self.current_order[self._position]
            self._clear_rewards()
            return
        self._close_time_step()

    def _refuse_outside_an_episode(self, call: str) -> None:
        """Raise ``RuntimeError`` naming ``call`` unless an episode is under way and not halted."""
        if self._halted is not None:
            raise RuntimeError(f"{call} refused: {self._halted}; call reset() to start a new episode")
        if not self._ready:
            raise RuntimeError(f"{call} called before reset(); call reset() first")
        if not self.agents:
            raise RuntimeError(f"{call} called but no agent is left; call reset() to start a new episode")

    def _record_action(self, agent: str, action: Any) -> None:
        """Take ``agent``'s (already validated) action into this time step."""
        self._cumulative_rewards[agent] = 0.0
        self.prior_actions[agent] = action
        k = self.encoder.index[agent]
        self.encoder.codecs[agent].encode(action, self._table[k])
        self._mask[k] = 1.0

    def step_time_step(self, actions: Mapping[str, Any]) -> None:
        """Play a whole time step at once: exactly what ``step(actions[a])`` for each
        agent ``a`` of ``current_order`` in turn would do, with fewer Python round trips.

        For learners that choose the joint action themselves, already in priority order (each
        agent's action chosen after its superiors'), and so need no observation between the
        agents' turns. It must be called at the start of a time step, after the agents that
        died in the last one were stepped with ``None``; ``actions`` holds an action for every
        agent of ``current_order`` (extra keys are an error). Every action is checked before
        anything changes: a rejected call raises ``ValueError`` and leaves the wrapper as it was.
        """
        self._refuse_outside_an_episode("step_time_step()")
        order = self.current_order
        if self._position != 0 or not order or self.agent_selection != order[0]:
            raise RuntimeError(
                f"step_time_step() must start a time step: {self.agent_selection!r} is selected "
                f"(position {self._position} of {order}); step the agents that are done with "
                "None first, and do not mix it with step() within one time step"
            )
        if len(actions) != len(order) or any(a not in actions for a in order):
            raise ValueError(
                f"step_time_step() needs one action for each agent of this time step's order "
                f"{order}; got actions for {list(actions)}"
            )
        for agent in order:  # all checked before any is taken in
            self.encoder.validate_action(agent, actions[agent])
        for agent in order:
            self._record_action(agent, actions[agent])
        if len(order) > 1:  # step() clears the rewards on every turn that does not close the step
            self._clear_rewards()
        self._position = len(order)
        self.agent_selection = order[-1]  # where step() would stand when the step closes
        self._close_time_step()

    def _close_time_step(self) -> None:
        # The wrapped env steps once; whatever fails from here on stops the episode (_halt),
        # so no later step() can send this time step's actions again. One try block instead
        # of a context manager per stage: this runs every time step and try costs nothing.
        t = self.time_step + 1
        stage = "the wrapped env's step() at time step {t}"  # formatted only on failure
        try:
            outputs = self.parallel_env.step(dict(self.prior_actions))
            stage = "checking what the wrapped env's step() returned at time step {t}"
            obs, rewards, terminations, truncations, infos = self._checked_step_outputs(outputs)
            # Nothing here can fail: the outputs are taken in whole or not at all.
            self._base_obs.update(obs)
            self._state_cache = None
            self.time_step = t
            self.rewards.update(rewards)
            self.terminations.update(terminations)
            self.truncations.update(truncations)
            self.infos.update(infos)
            self._accumulate_rewards()
            stage = "the order function at the start of time step {t}"
            self._begin_time_step()
        except BaseException as exc:
            self._halt(stage.format(t=t), exc)
            raise

    def _checked_step_outputs(self, outputs: Any) -> tuple[Any, ...]:
        """The wrapped env's step outputs, checked and converted for the agents of this time step."""
        where = "the wrapped env's step()"
        if not (isinstance(outputs, tuple) and len(outputs) == 5):
            raise TypeError(
                f"{where} returned {type(outputs).__name__}; expected (observations, rewards, "
                "terminations, truncations, infos)"
            )
        obs, rewards, terminations, truncations, infos = outputs
        known = self._known
        # Fast path (plain dicts of known agents); otherwise check each part for its message.
        if not (
            type(obs) is dict and type(rewards) is dict and type(terminations) is dict
            and type(truncations) is dict and type(infos) is dict
            and known.issuperset(obs) and known.issuperset(rewards) and known.issuperset(terminations)
            and known.issuperset(truncations) and known.issuperset(infos)
        ):
            for part, what in zip(outputs, _STEP_OUTPUTS, strict=True):
                self._check_keys(part, what, where)
        still_in_env = self._checked_agent_names(self.parallel_env.agents, "after step(), env.agents")
        if not still_in_env.issubset(self.agents):
            newcomers = sorted(still_in_env.difference(self.agents))
            raise NotImplementedError(
                f"agents {newcomers} joined mid-episode; stmg supports agents leaving, not joining"
            )
        new_rewards, new_terms, new_truncs, new_infos = {}, {}, {}, {}
        for a in self.current_order:
            new_rewards[a] = float(rewards.get(a, 0.0))
            new_truncs[a] = bool(truncations.get(a, False))
            # An agent the env dropped without flagging it is treated as terminated.
            new_terms[a] = bool(terminations.get(a, False)) or (a not in still_in_env and not new_truncs[a])
            new_infos[a] = dict(infos.get(a, {}))
        return obs, new_rewards, new_terms, new_truncs, new_infos

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

