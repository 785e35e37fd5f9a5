"""The shapes of one STMG game as the learner sees them (:class:`JointSpec`).

A :class:`JointSpec` is derived from an :class:`stmg.STMGEncoder`; the networks, the torch
encoding, the adapter and the checkpoints all read their sizes from it, so that one game has one
description and a checkpoint can say exactly which shape does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

import stmg

ActionKind = Literal["discrete", "box"]


@dataclass(frozen=True, kw_only=True)
class JointSpec:
    """Sizes of a game with ``n_agents`` agents, all with Discrete or all with Box actions."""

    possible_agents: tuple[str, ...]
    """The agents, in the environment's order (agent index k = position in this tuple)."""
    obs_dim: int
    """Flat size of the base observation, zero-padded to the largest over the agents."""
    action_kind: ActionKind
    """``"discrete"`` (every agent Discrete) or ``"box"`` (every agent Box)."""
    action_sizes: tuple[int, ...]
    """Per agent: number of actions (Discrete) or flat action dimension (Box)."""
    action_starts: tuple[int, ...]
    """Per agent: the Discrete ``start`` (0 for Box)."""
    slot_size: int
    """Row size of the STMG prior-action table (largest action encoding)."""
    action_low: tuple[tuple[float, ...], ...] = ()
    """Per agent (Box only): lower bounds, flattened."""
    action_high: tuple[tuple[float, ...], ...] = ()
    """Per agent (Box only): upper bounds, flattened."""
    action_shapes: tuple[tuple[int, ...], ...] = ()
    """Per agent (Box only): the action's shape in the environment."""
    state_dim: int = 0
    """Flat size of the environment's global state carried for the critics (0: none)."""
    distinct_observations: bool = False
    """Whether the agents' base observation spaces differ (padded rows then mean different
    things per agent, so the shared STEP policy also reads the agent's identity)."""

    @property
    def n_agents(self) -> int:
        """Number of agents."""
        return len(self.possible_agents)

    @property
    def max_action_size(self) -> int:
        """Width of the policy head: the largest action count / dimension."""
        return max(self.action_sizes)

    @property
    def flat_size(self) -> int:
        """Length of one flat STMG observation (see :mod:`stmg.encoding`)."""
        n = self.n_agents
        return self.obs_dim + n * self.slot_size + 3 * n

    def action_mask(self) -> np.ndarray:
        """(n_agents, max_action_size) bool: which head outputs belong to each agent."""
        mask = np.zeros((self.n_agents, self.max_action_size), dtype=bool)
        for k, size in enumerate(self.action_sizes):
            mask[k, :size] = True
        return mask

    def signature(self) -> dict[str, Any]:
        """Plain-data description stored in checkpoints and compared on load."""
        return {
            "possible_agents": list(self.possible_agents),
            "obs_dim": self.obs_dim,
            "action_kind": self.action_kind,
            "action_sizes": list(self.action_sizes),
            "slot_size": self.slot_size,
            "state_dim": self.state_dim,
            "distinct_observations": self.distinct_observations,
        }

    def env_action(self, agent_index: int, raw: Any) -> Any:
        """The environment action of agent ``agent_index`` from one network output row.

        ``raw`` is an action index counted from 0 (Discrete) or a padded flat float vector
        (Box). Discrete: ``start`` is added. Box: the agent's entries are clipped to its bounds
        and reshaped to its action shape. The one conversion used for training and execution.
        """
        if self.action_kind == "discrete":
            return int(raw) + self.action_starts[agent_index]
        size = self.action_sizes[agent_index]
        values = np.asarray(raw, dtype=np.float32).reshape(-1)[:size]
        low = np.asarray(self.action_low[agent_index], np.float32)
        high = np.asarray(self.action_high[agent_index], np.float32)
        return np.clip(values, low, high).reshape(self.action_shapes[agent_index])

    @classmethod
    def from_encoder(cls, encoder: stmg.STMGEncoder, *, state_dim: int = 0) -> JointSpec:
        """Read the sizes off the STMG encoder of a wrapped game.

        Raises:
            UnsupportedSpaceError: for action or observation spaces the learner cannot handle,
                naming each agent's space and what is supported.
        """
        check_supported_spaces(encoder)
        action_spaces = [encoder.action_spaces[a] for a in encoder.possible_agents]
        distinct = len({repr(s) for s in encoder.base_spaces.values()}) > 1
        common: dict[str, Any] = {
            "possible_agents": tuple(encoder.possible_agents), "obs_dim": encoder.base_flat_size,
            "slot_size": encoder.slot_size, "state_dim": int(state_dim),
            "distinct_observations": distinct,
        }
        if all(isinstance(s, spaces.Discrete) for s in action_spaces):
            return cls(
                action_kind="discrete",
                action_sizes=tuple(int(s.n) for s in action_spaces),  # type: ignore[attr-defined]
                action_starts=tuple(int(s.start) for s in action_spaces),  # type: ignore[attr-defined]
                **common,
            )
        boxes: list[spaces.Box] = action_spaces  # type: ignore[assignment]
        return cls(
            action_kind="box",
            action_sizes=tuple(int(np.prod(s.shape)) for s in boxes),
            action_starts=tuple(0 for _ in boxes),
            action_low=tuple(tuple(float(x) for x in s.low.ravel()) for s in boxes),
            action_high=tuple(tuple(float(x) for x in s.high.ravel()) for s in boxes),
            action_shapes=tuple(tuple(int(d) for d in s.shape) for s in boxes),
            **common,
        )


class UnsupportedSpaceError(TypeError):
    """The game has action or observation spaces the learner does not support."""


SUPPORTED_SPACES = (
    "the learners support: every agent with a Discrete action space (sizes may differ), or every "
    "agent with a float Box action space (shapes may differ); observations that flatten to "
    "vectors (Box of any shape, Discrete, MultiDiscrete, MultiBinary, Dict/Tuple of these). "
    "Not supported: MultiDiscrete, MultiBinary, Dict or Tuple actions, integer Box actions, and "
    "a mix of Discrete and Box actions across agents (stmg.wrap itself accepts them; a learner "
    "for them is still to come)"
)


def check_supported_spaces(encoder: stmg.STMGEncoder) -> None:
    """Raise :class:`UnsupportedSpaceError` (naming every agent's spaces) unless the game's
    spaces are ones the learners handle (:data:`SUPPORTED_SPACES`)."""
    action_spaces = {a: encoder.action_spaces[a] for a in encoder.possible_agents}
    discrete = all(type(s) is spaces.Discrete for s in action_spaces.values())
    float_box = all(type(s) is spaces.Box and np.issubdtype(s.dtype, np.floating)  # type: ignore[arg-type]
                    for s in action_spaces.values())
    if not (discrete or float_box):
        found = {a: str(s) for a, s in action_spaces.items()}
        raise UnsupportedSpaceError(f"unsupported action spaces {found}; {SUPPORTED_SPACES}")
    images = {a: str(s) for a, s in encoder.base_spaces.items()
              if isinstance(s, spaces.Box) and len(s.shape) == 3}
    if images:
        raise UnsupportedSpaceError(
            f"image observations {images} are not supported yet: the learners' networks are "
            "MLPs on flat vectors (a convolutional encoder is still to come); flatten or "
            "downsample the observations with a wrapper (e.g. supersuit's resize_v1 and "
            f"flatten_v0) first; {SUPPORTED_SPACES}")
