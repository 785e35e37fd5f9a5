"""Save and load a whole learner: model (policy and critics), optimiser state and config.

The file is a plain dict of tensors and primitives written with ``torch.save``, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled classes). It also stores the game's
:meth:`~agents.spec.JointSpec.signature`; loading into a learner built for a differently
shaped game raises :class:`CheckpointMismatchError` naming each mismatching field.

Nothing is ever half-done:

* :func:`save_checkpoint` writes a temporary file next to the target, flushes it to disk and
  renames it over the target (:func:`write_atomically`), so a failed or interrupted save leaves
  the previous checkpoint as it was. A learner with a NaN or infinite weight is not saved.
* :func:`load_into` checks the whole checkpoint (game signature, variant, every tensor's
  presence, shape, dtype and finiteness, the optimiser state's structure) before copying
  anything, so a rejected checkpoint leaves the learner exactly as it was.
* Every problem with a file raises :class:`CheckpointError` (or its subclass
  :class:`CheckpointMismatchError`) naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from agents.config import STEPConfig
from agents.spec import JointSpec
from agents.training import Learner, build_learner

FORMAT_VERSION = 1

# Tianshou's Algorithm.state_dict() keeps the optimisers' states, one per optimiser, under
# this key beside the module's tensors.
_OPTIMIZERS_KEY = "_optimizers"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or holds something other than a sound STEP learner."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written for a game or learner of another shape."""


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through ``write(file)`` so that ``path`` is either the old or the new file.

    The bytes go to a temporary file in the same directory (same file system, so the final
    rename is atomic), which is flushed and fsync'd, then renamed over ``path``. If ``write``
    or anything after it fails, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent
    temporary = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 honours the umask, as a plain open() of ``path`` would.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable; not every platform or file system can sync a directory.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_checkpoint(learner: Learner, path: str | Path) -> None:
    """Write ``learner`` to ``path`` atomically (a failed write keeps the previous file).

    Raises:
        CheckpointError: the learner has a NaN or infinite weight or optimiser state (a
            diverged run must not replace the last good checkpoint); nothing is written.
    """
    state = learner.algorithm.state_dict()  # model + optimiser states
    bad = _non_finite(state)
    if bad:
        raise CheckpointError(
            f"not saving to {path}: the learner holds NaN or infinite values in {_listed(bad)}; "
            "the file there (if any) is left as it was"
        )
    data = {
        "format_version": FORMAT_VERSION,
        "config": learner.config.to_dict(),
        "spec": learner.spec.signature(),
        "algorithm": state,
    }
    write_atomically(path, lambda file: torch.save(data, file))


def _read(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, or a CheckpointError that names the file and the fault."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if path.exists() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint; was its write cut short?")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # missing file, no permission: the OS's message already names the file
        raise
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} was not loaded: it is not a PyTorch file, or it holds Python objects other "
            f"than tensors and plain data (only those are loaded, so no code in it can run): "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # torch reports a text file as KeyError, a truncated one as RuntimeError
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (it may be truncated, or another kind "
            f"of file): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else type(data).__name__
        raise CheckpointMismatchError(
            f"{path} is not a STEP checkpoint of format version {FORMAT_VERSION} (found {found!r})"
        )
    for key in ("config", "spec", "algorithm"):
        if key not in data:
            raise CheckpointError(f"{path} has no {key!r} entry, so it is not a complete STEP checkpoint")
        if not isinstance(data[key], dict):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(data[key]).__name__}; expected a dict"
            )
    return data


def load_into(learner: Learner, path: str | Path) -> None:
    """Restore a checkpoint into an existing learner built for the same game and config.

    The whole checkpoint is checked first; if it is rejected the learner is left exactly as
    it was (every parameter and the optimiser state).

    Raises:
        CheckpointMismatchError: written for another game, variant or network shape.
        CheckpointError: not a readable checkpoint, or it holds NaN or infinite values.
    """
    data = _read(path)
    _check_fits(learner, data, path)
    algorithm = learner.algorithm
    # The checks above cover everything torch checks, so this should not fail; if it does
    # anyway, put the learner back as it was rather than leave it half loaded.
    before = copy.deepcopy(algorithm.state_dict())
    try:
        algorithm.load_state_dict(dict(data["algorithm"]))
    except Exception as exc:
        algorithm.load_state_dict(before)
        raise CheckpointMismatchError(f"checkpoint {path} does not fit this learner: {exc}") from exc


def load_checkpoint(path: str | Path, *, spec: JointSpec) -> Learner:
    """Build a learner from the config stored in ``path`` for the game ``spec`` and restore it."""
    data = _read(path)
    try:
        config = STEPConfig.from_dict(dict(data["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds a config that cannot be used: {exc}") from exc
    learner = build_learner(spec=spec, config=config)
    load_into(learner, path)
    return learner


# --- checks ---------------------------------------------------------------------------------------


_SIGNATURE_DEFAULTS: dict[str, Any] = {"state_dim": 0, "distinct_observations": False, "image_shape": None,
                                       "image_channels_first": False}
"""Fields that joined :meth:`JointSpec.signature` later, with the value every game had before."""


def _check_fits(learner: Learner, data: dict[str, Any], path: str | Path) -> None:
    """Raise unless ``data`` can be loaded into ``learner`` whole (nothing is copied here)."""
    expected = learner.spec.signature()
    # A checkpoint written before a signature field existed was written for the field's default.
    found = {**_SIGNATURE_DEFAULTS, **data["spec"]}
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

    saved = data["algorithm"]
    current = learner.algorithm.state_dict()
    problems = _tensor_problems(
        {k: v for k, v in saved.items() if k != _OPTIMIZERS_KEY},
        {k: v for k, v in current.items() if k != _OPTIMIZERS_KEY},
    )
    problems += _optimizer_problems(saved.get(_OPTIMIZERS_KEY), learner)
    if problems:
        raise CheckpointMismatchError(f"checkpoint {path} does not fit this learner: {_listed(problems)}")
    bad = _non_finite(saved)
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite values in {_listed(bad)}")


def _tensor_problems(saved: Mapping[str, Any], current: Mapping[str, torch.Tensor]) -> list[str]:
    """Every key missing from or unexpected in ``saved``, and every shape or dtype that differs."""
    problems = [f"missing tensor {key}" for key in current if key not in saved]
    problems += [f"unexpected entry {key}" for key in saved if key not in current]
    for key, want in current.items():
        have = saved.get(key)
        if key not in saved:
            continue
        if not isinstance(have, torch.Tensor):
            problems.append(f"{key} is a {type(have).__name__}, not a tensor")
        elif have.shape != want.shape or have.dtype != want.dtype:
            problems.append(f"{key} has shape {tuple(have.shape)} {have.dtype}, expected "
                            f"{tuple(want.shape)} {want.dtype}")
    return problems


def _optimizer_problems(saved: Any, learner: Learner) -> list[str]:
    """Structural differences between the saved optimiser states and the learner's optimisers.

    Each saved state must have as many parameter groups, with as many parameters and the same
    settings, as the learner's optimiser; each per-parameter state tensor (Adam's moments) must
    have its parameter's shape. The parameters are read from Tianshou's optimiser wrappers
    (``Algorithm._optimizers[i]._optim``, Tianshou 2.0).
    """
    optimizers = [wrapper._optim for wrapper in learner.algorithm._optimizers]
    if not isinstance(saved, list) or len(saved) != len(optimizers):
        count = len(saved) if isinstance(saved, list) else type(saved).__name__
        return [f"{_OPTIMIZERS_KEY} holds {count} optimiser states, expected a list of {len(optimizers)}"]
    problems: list[str] = []
    for k, (state, optimizer) in enumerate(zip(saved, optimizers, strict=True)):
        where = f"{_OPTIMIZERS_KEY}[{k}]"
        if not (isinstance(state, dict) and isinstance(state.get("state"), dict)
                and isinstance(state.get("param_groups"), list)):
            problems.append(f"{where} is not an optimiser state (a dict with 'state' and 'param_groups')")
            continue
        groups, own_groups = state["param_groups"], optimizer.param_groups
        if len(groups) != len(own_groups):
            problems.append(f"{where} has {len(groups)} parameter groups, expected {len(own_groups)}")
            continue
        parameters: dict[Any, torch.Tensor] = {}  # saved parameter id -> the learner's parameter
        for g, (group, own) in enumerate(zip(groups, own_groups, strict=True)):
            if not isinstance(group, dict) or not isinstance(group.get("params"), list):
                problems.append(f"{where} group {g} has no 'params' list")
                continue
            if len(group["params"]) != len(own["params"]) or set(group) != set(own):
                problems.append(f"{where} group {g} has {len(group['params'])} parameters and settings "
                                f"{sorted(group)}, expected {len(own['params'])} and {sorted(own)}")
                continue
            parameters.update(zip(group["params"], own["params"], strict=True))
        for pid, entry in state["state"].items():
            parameter = parameters.get(pid)
            if parameter is None or not isinstance(entry, dict):
                problems.append(f"{where} holds state for unknown parameter {pid!r}")
                continue
            for name, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != parameter.shape:
                    problems.append(f"{where} state {name} of parameter {pid} has shape "
                                    f"{tuple(value.shape)}, expected {tuple(parameter.shape)}")
    return problems


def _non_finite(tree: Any, prefix: str = "") -> list[str]:
    """Paths of the floating-point tensors in a nested dict/list that hold NaN or infinity."""
    if isinstance(tree, torch.Tensor):
        return [prefix] if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else []
    if isinstance(tree, Mapping):
        return [p for key, value in tree.items() for p in _non_finite(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(tree, list | tuple):
        return [p for i, value in enumerate(tree) for p in _non_finite(value, f"{prefix}[{i}]")]
    return []


def _listed(items: list[str], limit: int = 8) -> str:
    """``items`` joined, at most ``limit`` of them (the rest counted), to keep errors readable."""
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"
