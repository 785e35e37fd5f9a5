"""One table of environment ids with lazy imports.

Heavy optional dependencies (MuJoCo, highway-env) load only when their environment is made.
Adding an environment is one module plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pettingzoo.utils.env import ParallelEnv


@dataclass(frozen=True)
class EnvSpec:
    """Where an environment lives and the keyword arguments its id fixes."""

    env_id: str
    entry_point: str  # "module:callable", imported on first use
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    extra: str | None = None  # the pip extra that provides its dependencies, if any

    def load(self) -> Callable[..., ParallelEnv]:
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f" (pip install 'stmg-step[{self.extra}]')" if self.extra else ""
            raise ImportError(
                f"environment {self.env_id!r} needs a package that is not installed{hint}: {exc}"
            ) from exc
        return getattr(module, attr)  # type: ignore[no-any-return]


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    env_id: str, entry_point: str, *, extra: str | None = None, **kwargs: Any
) -> None:
    """Register ``env_id``; ``kwargs`` are defaults that ``make`` may override."""
    if env_id in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _REGISTRY[env_id] = EnvSpec(env_id, entry_point, dict(kwargs), extra)


def registered_ids() -> list[str]:
    """All known environment ids, sorted."""
    return sorted(_REGISTRY)


def make(env_id: str, **kwargs: Any) -> ParallelEnv:
    """Build the PettingZoo ``ParallelEnv`` registered as ``env_id``.

    Keyword arguments override the defaults that the id fixes.
    """
    try:
        spec = _REGISTRY[env_id]
    except KeyError:
        known = "\n  ".join(registered_ids())
        raise KeyError(f"unknown environment id {env_id!r}; known ids:\n  {known}") from None
    factory = spec.load()
    return factory(**{**spec.kwargs, **kwargs})


# --- the table -------------------------------------------------------------------------------
register("matrix/penalty-v0", "envs.matrix:make_penalty", k=-100.0)
register("matrix/mixing-v0", "envs.matrix:make_mixing")
register("matrix/climbing-v0", "envs.matrix:make_climbing")
register("continuous/quadratic-v0", "envs.continuous:QuadraticGame")

for _split in ("2x3", "3x2", "6x1"):
    register(f"mamujoco/HalfCheetah-{_split}-v0", "envs.mamujoco:MaMuJoCoEnv", extra="mujoco",
             scenario="HalfCheetah", split=_split)
    register(f"mamujoco/ManyAgentAnt-{_split}-v0", "envs.mamujoco:MaMuJoCoEnv", extra="mujoco",
             scenario="ManyAgentAnt", split=_split)
for _split in ("2x4", "4x2", "8x1"):
    register(f"mamujoco/Ant-{_split}-v0", "envs.mamujoco:MaMuJoCoEnv", extra="mujoco",
             scenario="Ant", split=_split)

for _difficulty in ("easy", "medium", "hard"):
    register(f"merge/{_difficulty}-v0", "envs.merge:MergeEnv", extra="highway",
             difficulty=_difficulty)
