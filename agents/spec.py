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
        }

    @classmethod
    def from_encoder(cls, encoder: stmg.STMGEncoder) -> JointSpec:
        """Read the sizes off the STMG encoder of a wrapped game."""
        action_spaces = [encoder.action_spaces[a] for a in encoder.possible_agents]
        if all(isinstance(s, spaces.Discrete) for s in action_spaces):
            return cls(
                possible_agents=tuple(encoder.possible_agents),
                obs_dim=encoder.base_flat_size,
                action_kind="discrete",
                action_sizes=tuple(int(s.n) for s in action_spaces),  # type: ignore[attr-defined]
                action_starts=tuple(int(s.start) for s in action_spaces),  # type: ignore[attr-defined]
                slot_size=encoder.slot_size,
            )
        if all(isinstance(s, spaces.Box) for s in action_spaces):
            boxes: list[spaces.Box] = action_spaces  # type: ignore[assignment]
            return cls(
                possible_agents=tuple(encoder.possible_agents),
                obs_dim=encoder.base_flat_size,
                action_kind="box",
                action_sizes=tuple(int(np.prod(s.shape)) for s in boxes),
                action_starts=tuple(0 for _ in boxes),
                slot_size=encoder.slot_size,
                action_low=tuple(tuple(float(x) for x in s.low.ravel()) for s in boxes),
                action_high=tuple(tuple(float(x) for x in s.high.ravel()) for s in boxes),
            )
        kinds = {a: type(s).__name__ for a, s in zip(encoder.possible_agents, action_spaces, strict=True)}
        raise TypeError(
            f"the STEP agent needs every agent's action space to be Discrete, or every one to be "
            f"Box; got {kinds}"
        )
