"""``curves.csv``: one row per evaluation, shared by every run of an output directory.

Several processes append to the same file (local workers, or Ray workers on a shared file
system), so every change holds an exclusive ``fcntl.flock`` on ``curves.csv.lock``. A row is
written with one ``write`` call, flushed and fsync'ed before the lock is released: an
interrupted run loses no finished evaluation. The header is the union of the columns seen so
far, :data:`CORE_COLUMNS` first; a row with a column the file lacks rewrites the file with the
wider header (old rows get empty cells), so that statistics added to a learner later do not
break an existing directory.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

CORE_COLUMNS = ("env", "algo", "seed", "env_steps", "wall_s", "eval_return", "eval_return_std",
                "eval_length", "avg_speed", "collision_rate", "execution", "gradient_steps")
"""Columns every row has (empty where a metric does not apply), in this order; learner
statistics follow as ``train_<name>``."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)  # repr of a float: exact round trip


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _read_header(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return next(csv.reader([f.readline()]), [])


def _write_all(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in header})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one evaluation row (module docstring)."""
    with _locked(path):
        header = _read_header(path)
        missing = [k for k in row if k not in header]
        if not header or missing:
            header, rows = _read(path)
            extra = sorted({*header, *row} - set(CORE_COLUMNS))
            _write_all(path, [*CORE_COLUMNS, *extra], [*rows, row])
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=header, restval="").writerow({k: _cell(row.get(k)) for k in header})
        with open(path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of ``path`` as strings (empty list if the file does not exist)."""
    with _locked(path):
        return _read(path)[1]


def drop_rows(path: Path, *, env: str, algo: str, seed: int, after: int | None = None) -> int:
    """Remove the rows of one run (``env``, ``algo``, ``seed``) with ``env_steps > after``
    (all its rows if ``after`` is None); returns how many were removed.

    A resumed run calls this with its checkpoint's step count: rows written after the last
    checkpoint are computed again, identically.
    """
    with _locked(path):
        header, rows = _read(path)
        keep = [r for r in rows if not (r["env"] == env and r["algo"] == algo and r["seed"] == str(seed)
                                        and (after is None or int(r["env_steps"]) > after))]
        removed = len(rows) - len(keep)
        if removed:
            _write_all(path, header, keep)
        return removed
