"""The shapes of one STMG game as the learner sees them (:class:`JointSpec`).

A :class:`JointSpec` is derived from an :class:`stmg.STMGEncoder`; the networks, the torch
encoding, the adapter and the checkpoints all read their sizes from it, so that one game has one
description and a checkpoint can say exactly which shape does not match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
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
    image_shape: tuple[int, int, int] | None = None
    """(H, W, C) of every agent's image observation in an image game (see
    :func:`image_layout`); None for games of vector observations."""
    image_channels_first: bool = False
    """Image games: whether the environment's images are (C, H, W) instead of (H, W, C) (the
    flat observation is the image in the environment's layout)."""
    image_low: float = 0.0
    """Image games: the lower bound of every pixel value (the encoder maps it to 0)."""
    image_high: float = 1.0
    """Image games: the upper bound of every pixel value (the encoder maps it to 1)."""

    @property
    def n_agents(self) -> int:
        """Number of agents."""
        return len(self.possible_agents)

    @property
    def is_image(self) -> bool:
        """Whether the agents observe images (the networks read them through a CNN encoder)."""
        return self.image_shape is not None

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
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "image_channels_first": self.image_channels_first,
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

    def env_joint_action(self, raw: np.ndarray) -> list[Any]:
        """Every agent's environment action from the (n_agents, width) network output rows:
        ``[env_action(k, raw[k]) for k in range(n_agents)]``, computed in one clip."""
        if self.action_kind == "discrete":
            flat = np.asarray(raw).reshape(self.n_agents, -1)[:, 0].tolist()
            return [int(a) + start for a, start in zip(flat, self.action_starts, strict=True)]
        low, high = self.padded_bounds
        values = np.clip(np.asarray(raw, dtype=np.float32).reshape(self.n_agents, -1)[:, : low.shape[1]], low, high)
        return [values[k, :size].reshape(shape)
                for k, (size, shape) in enumerate(zip(self.action_sizes, self.action_shapes, strict=True))]

    @cached_property
    def padded_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_agents, max_action_size) float32 lower and upper bounds of Box actions, padded
        with 0 (computed once; read-only)."""
        low = np.zeros((self.n_agents, self.max_action_size), np.float32)
        high = np.zeros_like(low)
        for k, size in enumerate(self.action_sizes):
            low[k, :size] = self.action_low[k]
            high[k, :size] = self.action_high[k]
        low.flags.writeable = high.flags.writeable = False  # shared by every caller
        return low, high

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
        image = image_layout(encoder.base_spaces)
        if image is not None:
            common.update(image_shape=image.shape, image_channels_first=image.channels_first,
                          image_low=image.low, image_high=image.high)
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
    "vectors (Box of 1 or 2 dimensions, Discrete, MultiDiscrete, MultiBinary, Dict/Tuple of "
    "these), or images: every agent a 3-D Box of one common shape, (H, W, C) or (C, H, W), "
    "with finite bounds that are the same for every pixel (read by a convolutional encoder; "
    "not with MADDPG). Not supported: mixed image and vector observations, images of "
    "different shapes, MultiDiscrete, MultiBinary, Dict or Tuple actions, integer Box actions, and "
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
    image_layout(encoder.base_spaces)  # raises for images it cannot read


@dataclass(frozen=True)
class ImageLayout:
    """How the learner reads the image observations of a game (:func:`image_layout`)."""

    shape: tuple[int, int, int]
    """(H, W, C)."""
    channels_first: bool
    """Whether the environment's images are (C, H, W)."""
    low: float
    """Lower bound of every pixel value."""
    high: float
    """Upper bound of every pixel value."""


def _is_image(space: spaces.Space[Any]) -> bool:
    return type(space) is spaces.Box and len(space.shape) == 3


def image_layout(base_spaces: Mapping[str, spaces.Space[Any]]) -> ImageLayout | None:
    """The image layout of a game whose agents all observe images, None if none does.

    An observation is an image when it is a 3-D Box. Channels: PettingZoo's images are
    channels last, (H, W, C); a shape is read as channels first, (C, H, W), only when its
    first dimension is strictly smaller than the other two and the last is not (e.g.
    (3, 64, 64)); every other shape, ties included ((4, 4, 4)), is channels last.

    Raises:
        UnsupportedSpaceError: when some agents observe images and others do not, when the
            images' shapes differ, when a shape is neither layout (its middle dimension is
            the smallest), or when the bounds are not finite and the same for every pixel.
    """
    images = {a: s for a, s in base_spaces.items() if _is_image(s)}
    if not images:
        return None
    if len(images) != len(base_spaces):
        found = {a: str(s) for a, s in base_spaces.items()}
        raise UnsupportedSpaceError(
            f"mixed image and vector observations {found}: either every agent observes an "
            f"image of one shape or none does; {SUPPORTED_SPACES}")
    shapes = {a: tuple(int(d) for d in s.shape or ()) for a, s in images.items()}
    if len(set(shapes.values())) > 1:
        raise UnsupportedSpaceError(
            f"image observations of different shapes {shapes}: the agents share one "
            f"convolutional encoder, so their images must have one shape (resize them, e.g. "
            f"with supersuit's resize_v1); {SUPPORTED_SPACES}")
    a, b, c = next(iter(shapes.values()))
    if c <= a and c <= b:
        shape, channels_first = (a, b, c), False
    elif a < b and a < c:
        shape, channels_first = (b, c, a), True
    else:
        raise UnsupportedSpaceError(
            f"image shape {(a, b, c)}: the channels must be the first or the last dimension, "
            "the smallest of the three (HWC or CHW)")
    lows = {float(x) for s in images.values() for x in np.unique(s.low)}  # type: ignore[attr-defined]
    highs = {float(x) for s in images.values() for x in np.unique(s.high)}  # type: ignore[attr-defined]
    low, high = min(lows), max(highs)
    if len(lows) > 1 or len(highs) > 1 or not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        bounds = {a: f"low in {sorted({float(x) for x in np.unique(s.low)})[:4]}, high in "  # type: ignore[attr-defined]
                     f"{sorted({float(x) for x in np.unique(s.high)})[:4]}" for a, s in images.items()}  # type: ignore[attr-defined]
        raise UnsupportedSpaceError(
            f"image observations need finite bounds low < high, the same for every pixel and "
            f"agent (the encoder scales pixels to [0, 1] with them); found {bounds}")
    return ImageLayout(shape=shape, channels_first=channels_first, low=low, high=high)
