"""Save and load a whole learner: model (policy and critics), optimiser state and config.

The file is a plain dict of tensors and primitives written with ``torch.save``, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled classes). It also stores the game's
:meth:`~agents.spec.JointSpec.signature`; loading into a learner built for a differently
shaped game raises :class:`CheckpointMismatchError` naming each mismatching field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.config import STEPConfig
from agents.spec import JointSpec
from agents.training import Learner, build_learner

FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a game or learner of another shape."""


def save_checkpoint(learner: Learner, path: str | Path) -> None:
    """Write ``learner`` to ``path``."""
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "config": learner.config.to_dict(),
            "spec": learner.spec.signature(),
            "algorithm": learner.algorithm.state_dict(),  # model + optimiser states
        },
        Path(path),
    )


def _read(path: str | Path) -> dict[str, Any]:
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else type(data).__name__
        raise CheckpointMismatchError(
            f"{path} is not a STEP checkpoint of format version {FORMAT_VERSION} (found {found!r})"
        )
    return data


def load_into(learner: Learner, path: str | Path) -> None:
    """Restore a checkpoint into an existing learner built for the same game and config."""
    data = _read(path)
    expected = learner.spec.signature()
    found = data["spec"]
    diffs = [f"{key}: checkpoint has {found.get(key)!r}, this game has {expected[key]!r}"
             for key in expected if found.get(key) != expected[key]]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for a differently shaped game: " + "; ".join(diffs))
    saved_variant = data["config"].get("variant")
    if saved_variant != learner.config.variant.value:
        raise CheckpointMismatchError(
            f"checkpoint {path} holds variant {saved_variant!r}, the learner is "
            f"{learner.config.variant.value!r}")
    try:
        learner.algorithm.load_state_dict(dict(data["algorithm"]))
    except RuntimeError as exc:  # e.g. another hidden size
        raise CheckpointMismatchError(f"checkpoint {path} does not fit this learner: {exc}") from exc


def load_checkpoint(path: str | Path, *, spec: JointSpec) -> Learner:
    """Build a learner from the config stored in ``path`` for the game ``spec`` and restore it."""
    data = _read(path)
    learner = build_learner(spec=spec, config=STEPConfig.from_dict(dict(data["config"])))
    load_into(learner, path)
    return learner
