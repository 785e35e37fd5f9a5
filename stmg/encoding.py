"""The STMG observation: an agent's base observation plus what its superiors already chose.

This module is public so that a policy can build any agent's STMG observation itself, for
example a follower that recomputes its leader's action during execution without communication.

Encoding (one fixed-size layout, shared by every agent of an environment):

``"observation"``
    The base observation: the agent's own observation, or the global state (``env.state()``).
``"prior_actions"``  float32, shape ``(n_agents, slot_size)``
    Row ``k`` encodes the action chosen in this time step by ``possible_agents[k]`` if that agent
    is a superior of the observing agent (acted before it), else zeros. ``slot_size`` is the
    largest action encoding over the agents; shorter encodings are zero-padded on the right.
    Per action space: ``Discrete(n)`` is a one-hot of length ``n`` (of ``action - start``);
    ``Box`` is its raw values, flattened; ``MultiDiscrete(nvec)`` is one one-hot per component,
    concatenated (length ``sum(nvec)``); ``MultiBinary`` is its raw 0/1 values, flattened.
``"prior_mask"``  float32, shape ``(n_agents,)``
    1.0 where row ``k`` of ``prior_actions`` holds an action, 0.0 for agents that have not
    acted yet in this time step, act after the observer, or are dead.
``"priority"``  float32, shape ``(n_agents,)``
    One-hot of the agent's position among the living agents in this time step's order
    (position 0 is the leader).
``"agent_id"``  float32, shape ``(n_agents,)``
    One-hot of the agent's index in ``possible_agents``.

Flat form: one float32 vector, the concatenation in this order of the base observation
flattened with ``gymnasium.spaces.flatten`` and zero-padded to the largest flat size over the
agents, ``prior_actions`` (row-major), ``prior_mask``, ``priority`` and ``agent_id``.
``STMGEncoder.flat_layout`` gives the slice of each part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["ActionCodec", "STMGEncoder", "action_encoding_size", "encode_action", "validate_action"]

_SUPPORTED = (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)


def _check_supported(space: spaces.Space[Any]) -> None:
    if not isinstance(space, _SUPPORTED):
        raise TypeError(
            f"action space {space!r} is not supported; expected Discrete, Box, MultiDiscrete "
            "or MultiBinary"
        )


def action_encoding_size(space: spaces.Space[Any]) -> int:
    """Length of the encoding of one action from ``space`` (see the module docstring)."""
    _check_supported(space)
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    return int(np.prod(space.shape or ()))


class ActionCodec:
    """Checks and encodes the actions of one action space; built once, used every turn.

    The checks are specialised per space type because they run on every turn: gymnasium's
    ``contains`` is general but several times slower than a shape-and-bounds test. They accept
    what ``contains`` accepts, with two deliberate differences: values are compared as they
    are, never after a cast to the space's dtype (a cast can wrap: 257 becomes 1 in int8), and
    a float Box takes any real dtype (a float64 action for a float32 Box is fine here).
    Integer spaces (Discrete, MultiDiscrete, MultiBinary, an integer Box) take integers only;
    MultiBinary, like gymnasium, also takes booleans and the floats 0.0 and 1.0. NaN is never
    a valid action.
    """

    def __init__(self, space: spaces.Space[Any]) -> None:
        self.space = space
        self.size = action_encoding_size(space)
        self._shape: tuple[int, ...] | None = space.shape
        if isinstance(space, spaces.Discrete):
            self._start, self._n = int(space.start), int(space.n)
        elif isinstance(space, spaces.Box):
            self._low, self._high = space.low, space.high
            # gymnasium refuses a float action for an integer Box (it cannot be cast safely).
            self._kinds = "biu" if np.dtype(space.dtype).kind in "biu" else "biuf"
            # Small boxes (the usual joint torques) are checked in plain Python: faster than
            # three numpy calls for a handful of numbers.
            self._bounds = list(zip(space.low.ravel().tolist(), space.high.ravel().tolist(), strict=True))
            self._small = space.low.size <= 16
        elif isinstance(space, spaces.MultiDiscrete):
            self._low = space.start
            self._high = space.start + space.nvec - 1  # the largest valid value; fits the dtype
            self._offsets = np.concatenate(([0], np.cumsum(space.nvec.ravel())[:-1])) - space.start.ravel()

    def contains(self, action: Any) -> bool:
        """Whether ``action`` is a valid action of the space; NaN never is."""
        space = self.space
        if isinstance(space, spaces.Discrete):
            is_integer = (isinstance(action, int | np.integer) and not isinstance(action, bool)) or (
                isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"
            )
            return is_integer and self._start <= int(action) < self._start + self._n
        try:
            arr = np.asarray(action)
        except (TypeError, ValueError):
            return False
        if arr.shape != self._shape:
            return False
        kind = arr.dtype.kind
        if isinstance(space, spaces.Box):
            if kind not in self._kinds:
                return False
            # NaN fails every comparison, so it is rejected here too.
            if self._small:
                values = arr.ravel().tolist()
                return all(lo <= v <= hi for v, (lo, hi) in zip(values, self._bounds, strict=True))
            return bool(np.logical_and(arr >= self._low, arr <= self._high).all())
        if isinstance(space, spaces.MultiDiscrete):
            # Compared without a cast, so an out-of-range value cannot wrap into the range.
            return kind in "biu" and bool(np.logical_and(arr >= self._low, arr <= self._high).all())
        # MultiBinary: every entry 0 or 1, as gymnasium's test (x == 0) | (x == 1).
        return kind in "biuf" and bool(np.logical_or(arr == 0, arr == 1).all())

    def encode(self, action: Any, out: np.ndarray) -> None:
        """Write the encoding of ``action`` into ``out[:size]``."""
        target = out[: self.size]
        space = self.space
        if isinstance(space, spaces.Discrete):
            target.fill(0.0)
            target[int(action) - self._start] = 1.0
        elif isinstance(space, spaces.MultiDiscrete):
            target.fill(0.0)
            target[(self._offsets + np.asarray(action).ravel()).astype(np.int64)] = 1.0
        else:  # Box, MultiBinary: raw values
            target[:] = np.asarray(action, dtype=np.float32).ravel()


def encode_action(space: spaces.Space[Any], action: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Encode ``action`` from ``space`` as a float32 vector of ``action_encoding_size(space)``.

    If ``out`` is given, the encoding is written into its first entries (the rest is left as
    it is) and ``out`` is returned.
    """
    codec = ActionCodec(space)
    if out is None:
        out = np.zeros(codec.size, dtype=np.float32)
    codec.encode(action, out)
    return out


def validate_action(agent: str, space: spaces.Space[Any], action: Any) -> None:
    """Raise ``ValueError`` naming ``agent`` and ``action`` unless ``action`` lies in ``space``.

    NaN is never a valid action, whatever the bounds.
    """
    _raise_unless_valid(agent, ActionCodec(space), action)


def _raise_unless_valid(agent: str, codec: ActionCodec, action: Any) -> None:
    if action is None:
        raise ValueError(f"agent {agent!r} is alive and must act, but the action is None")
    if not codec.contains(action):
        raise ValueError(f"action {action!r} of agent {agent!r} is not in its action space {codec.space!r}")


class STMGEncoder:
    """Builds STMG observations for the agents of one environment (layout: module docstring).

    Args:
        possible_agents: every agent, in the environment's order; fixes the slot of each agent.
        action_spaces: the action space of each agent.
        base_observation_spaces: the space of each agent's base observation (its own
            observation, or the state space shared by all).
        flatten: build one float32 vector instead of a dict.
    """

    def __init__(
        self,
        possible_agents: Sequence[str],
        action_spaces: Mapping[str, spaces.Space[Any]],
        base_observation_spaces: Mapping[str, spaces.Space[Any]],
        *,
        flatten: bool = False,
    ) -> None:
        self.possible_agents: list[str] = list(possible_agents)
        if not self.possible_agents:
            raise ValueError("possible_agents is empty; an STMG needs at least one agent")
        missing = [a for a in self.possible_agents if a not in action_spaces or a not in base_observation_spaces]
        if missing:
            raise ValueError(f"no action or base observation space given for agents {missing}")
        self.n_agents = len(self.possible_agents)
        self.index = {agent: k for k, agent in enumerate(self.possible_agents)}
        self.action_spaces = {a: action_spaces[a] for a in self.possible_agents}
        self.base_spaces = {a: base_observation_spaces[a] for a in self.possible_agents}
        self.flatten = flatten
        self.codecs = {a: ActionCodec(s) for a, s in self.action_spaces.items()}
        self.action_sizes = {a: codec.size for a, codec in self.codecs.items()}
        self.slot_size = max(self.action_sizes.values())
        self.base_flat_size = max(spaces.flatdim(s) for s in self.base_spaces.values())

        n, slot = self.n_agents, self.slot_size
        b = self.base_flat_size
        self.flat_layout: dict[str, slice] = {
            "observation": slice(0, b),
            "prior_actions": slice(b, b + n * slot),
            "prior_mask": slice(b + n * slot, b + n * slot + n),
            "priority": slice(b + n * slot + n, b + n * slot + 2 * n),
            "agent_id": slice(b + n * slot + 2 * n, b + n * slot + 3 * n),
        }
        self.flat_size = b + n * slot + 3 * n
        self._low, self._high = self._prior_action_bounds()
        self._one_hots = np.eye(n, dtype=np.float32)
        self._one_hots.setflags(write=False)
        self._spaces = {a: self._make_space(a) for a in self.possible_agents}
        self._flat_templates = {}
        for agent in self.possible_agents:
            template = np.zeros(self.flat_size, dtype=np.float32)
            template[self.flat_layout["agent_id"].start + self.index[agent]] = 1.0
            self._flat_templates[agent] = template

    # --- spaces ---------------------------------------------------------------------------
    def _prior_action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-slot bounds: [0, 1] for one-hots, the Box's bounds for raw values, 0 in padding."""
        low = np.zeros((self.n_agents, self.slot_size), dtype=np.float32)
        high = np.zeros((self.n_agents, self.slot_size), dtype=np.float32)
        for k, agent in enumerate(self.possible_agents):
            space, size = self.action_spaces[agent], self.action_sizes[agent]
            if isinstance(space, spaces.Box):
                # A masked-out slot holds 0, so the bounds must include 0.
                low[k, :size] = np.minimum(space.low.ravel(), 0.0)
                high[k, :size] = np.maximum(space.high.ravel(), 0.0)
            else:
                high[k, :size] = 1.0
        return low, high

    def _make_space(self, agent: str) -> spaces.Space[Any]:
        n = self.n_agents
        unit = spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32)
        parts: dict[str, spaces.Space[Any]] = {
            "observation": self.base_spaces[agent],
            "prior_actions": spaces.Box(self._low, self._high, dtype=np.float32),
            "prior_mask": unit,
            "priority": unit,
            "agent_id": unit,
        }
        if not self.flatten:
            return spaces.Dict(parts)
        lows, highs = [], []
        base = self.base_spaces[agent]
        base_flat = spaces.flatten_space(base)
        pad = self.base_flat_size - spaces.flatdim(base)
        if not isinstance(base_flat, spaces.Box):
            raise TypeError(f"base observation space {base!r} of agent {agent!r} cannot be flattened to a Box")
        lows.append(np.concatenate([base_flat.low.astype(np.float32), np.zeros(pad, np.float32)]))
        highs.append(np.concatenate([base_flat.high.astype(np.float32), np.zeros(pad, np.float32)]))
        lows += [self._low.ravel(), np.zeros(3 * n, np.float32)]
        highs += [self._high.ravel(), np.ones(3 * n, np.float32)]
        return spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=np.float32)

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        """The STMG observation space of ``agent`` (the same object on every call)."""
        try:
            return self._spaces[agent]
        except KeyError:
            raise KeyError(f"unknown agent {agent!r}; expected one of {self.possible_agents}") from None

    # --- encoding -------------------------------------------------------------------------
    def encode_prior_actions(self, prior_actions: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(prior_actions (n_agents, slot_size), prior_mask (n_agents,))`` for the given actions."""
        table = np.zeros((self.n_agents, self.slot_size), dtype=np.float32)
        mask = np.zeros(self.n_agents, dtype=np.float32)
        for agent, action in prior_actions.items():
            k = self.index[agent]
            self.codecs[agent].encode(action, table[k])
            mask[k] = 1.0
        return table, mask

    def validate_action(self, agent: str, action: Any) -> None:
        """Raise ``ValueError`` naming the agent and the action unless it is valid (NaN never is)."""
        _raise_unless_valid(agent, self.codecs[agent], action)

    def encode(
        self, agent: str, base_obs: Any, prior_actions: Mapping[str, Any], priority: int
    ) -> Any:
        """The STMG observation of ``agent`` given its superiors' actions this time step.

        ``prior_actions`` maps each superior (an agent that acted before ``agent`` in this time
        step) to its action; ``priority`` is ``agent``'s position in this time step's order.
        """
        if agent not in self.index:
            raise KeyError(f"unknown agent {agent!r}; expected one of {self.possible_agents}")
        unknown = [a for a in prior_actions if a not in self.index]
        if unknown:
            raise KeyError(f"prior actions name unknown agents {unknown}; expected some of {self.possible_agents}")
        if not 0 <= priority < self.n_agents:
            raise ValueError(f"priority {priority} is out of range; expected 0..{self.n_agents - 1}")
        table, mask = self.encode_prior_actions(prior_actions)
        return self.assemble(agent, base_obs, table, mask, priority)

    def assemble(
        self, agent: str, base_obs: Any, table: np.ndarray, mask: np.ndarray, priority: int
    ) -> Any:
        """Put an already encoded prior-action table and mask together with the other parts."""
        if not self.flatten:
            return {
                "observation": base_obs,
                "prior_actions": table,
                "prior_mask": mask,
                "priority": self._one_hots[priority].copy(),
                "agent_id": self._one_hots[self.index[agent]].copy(),
            }
        # Start from the agent's template (its agent_id already set, zeros elsewhere).
        out = self._flat_templates[agent].copy()
        space = self.base_spaces[agent]
        if isinstance(space, spaces.Box):  # the common case, without gymnasium's dispatch
            base_flat = np.asarray(base_obs).ravel()
        else:
            base_flat = np.asarray(spaces.flatten(space, base_obs))
        out[: base_flat.shape[0]] = base_flat
        layout = self.flat_layout
        out[layout["prior_actions"]] = table.ravel()
        out[layout["prior_mask"]] = mask
        out[layout["priority"].start + priority] = 1.0
        return out
