"""Runs of many trials that lose nothing: every finished trial is on disk at once, and running
the same command again resumes where the last run stopped.

* :class:`TrialJournal` -- a JSON-lines file beside a run's output. Its first line holds the
  run's settings; each further line one finished trial, appended, flushed and fsync'd as soon
  as the trial is done. On reopening, the finished trials are read back (a last line cut short
  by a crash is dropped), and a journal written with other settings is refused
  (:class:`ResumeMismatchError`) rather than mixed with this run's trials.
* :func:`run_trials` -- runs the trials not yet in the journal, in this process or in a pool
  of worker processes; :func:`run_trial_groups` the same for trials trained in groups
  (populations, :mod:`agents.population`), journaled as each group finishes. SIGINT (Ctrl-C) and SIGTERM stop it cleanly: the workers are killed,
  the finished trials stay in the journal, and the process exits with status 128 + signal
  number after saying how to resume.
* :func:`check_output_path` -- fail before training, not after, when the output cannot be
  written.

The results of a resumed run are those of an uninterrupted one: trials are keyed (by seed,
algorithm, setting) and reported in the order of the job list, never in order of completion.
Only wall-clock timings differ.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from agents.checkpoint import write_atomically

__all__ = [
    "Interrupted",
    "ResumeMismatchError",
    "TrialJournal",
    "check_output_path",
    "run_trial_groups",
    "run_trials",
    "write_json_atomically",
    "write_text_atomically",
]

JOURNAL_VERSION = 1


class ResumeMismatchError(ValueError):
    """The journal on disk was written by a run with other settings."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while trials were running.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` in the
    training code swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def check_output_path(path: str | Path, *, directory: bool = False) -> Path:
    """Make sure ``path`` (a file, or with ``directory=True`` a directory) can be written.

    Creates the directory (with its parents) and writes and removes a probe file in it, so a
    read-only or impossible location fails now with an ``OSError`` naming it, not after hours
    of training.
    """
    path = Path(path)
    folder = path if directory else path.parent
    if not directory and path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected a file name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write to {folder}: {exc.strerror or exc}") from exc
    return path


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` always holds either the old or the new file."""
    data = text.encode()
    write_atomically(path, lambda file: file.write(data))


def write_json_atomically(path: str | Path, data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as JSON so that ``path`` always holds either the old or the new file."""
    write_text_atomically(path, json.dumps(data, indent=indent))


def _normalised(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(settings))  # type: ignore[no-any-return]


class TrialJournal:
    """The finished trials of one run, kept in a JSON-lines file (see the module docstring).

    Args:
        path: the journal file; created with its directory if missing.
        settings: everything that determines a trial's result apart from its key (algorithm,
            configuration, steps, game). Opening a journal written with other settings raises
            :class:`ResumeMismatchError` naming the differences.

    Attributes:
        finished: the records of the finished trials, by key.
    """

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = _normalised(settings)
        self.finished: dict[str, dict[str, Any]] = {}
        self._seconds_by_session: dict[int, float] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")  # kept open (and locked) for appends until close()
        try:
            self._lock()
            self._load()
        except BaseException:
            self._file.close()
            raise
        self.session = max(self._seconds_by_session, default=0) + 1
        self._session_start = time.monotonic()

    def _lock(self) -> None:
        """Refuse a second run appending to the same journal at the same time (POSIX only)."""
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another run is writing to {self.path}; wait for it or use another --out") from None

    def _load(self) -> None:
        self._file.seek(0)
        content = self._file.read()
        complete = content[: content.rfind(b"\n") + 1]  # a line without its newline was cut short
        if len(complete) != len(content):
            self._file.truncate(len(complete))
        lines = complete.decode().splitlines()
        if not lines:
            self._append({"journal": JOURNAL_VERSION, "settings": self.settings})
            return
        try:
            header = json.loads(lines[0])
            found = header["settings"]
        except (ValueError, KeyError, TypeError):
            raise ResumeMismatchError(
                f"{self.path} is not a trial journal (its first line has no settings); move it away "
                "or choose another --out"
            ) from None
        if header.get("journal") != JOURNAL_VERSION or found != self.settings:
            differences = sorted(k for k in {*found, *self.settings} if found.get(k) != self.settings.get(k))
            raise ResumeMismatchError(
                f"{self.path} holds trials of a run with other settings (differing: "
                f"{', '.join(differences) or 'journal version'}), so they cannot be resumed here. "
                "Run the earlier command again to finish that run, or delete the file (or choose "
                "another --out) to start this one afresh."
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                self.finished[str(entry["key"])] = entry["record"]
                session = int(entry["session"])
                seconds = float(entry["session_seconds"])
            except (ValueError, KeyError, TypeError):
                raise ResumeMismatchError(f"{self.path} line {number} is not a trial record: {line[:200]!r}") from None
            self._seconds_by_session[session] = max(self._seconds_by_session.get(session, 0.0), seconds)

    def _append(self, entry: dict[str, Any]) -> None:
        self._file.seek(0, os.SEEK_END)
        self._file.write(json.dumps(entry).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def record(self, key: str, record: dict[str, Any]) -> None:
        """Append a finished trial and make it durable before returning."""
        seconds = time.monotonic() - self._session_start
        self._append({"key": key, "record": record, "session": self.session, "session_seconds": seconds})
        self.finished[key] = record
        self._seconds_by_session[self.session] = seconds

    @property
    def minutes(self) -> float:
        """Wall-clock minutes spent on the finished trials, summed over the runs that made them."""
        return sum(self._seconds_by_session.values()) / 60.0

    def close(self) -> None:
        """Release the file (and its lock)."""
        self._file.close()

    def remove(self) -> None:
        """Close and delete the journal: call once the run's summary is safely written."""
        self.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` in this (the main) thread, so that a
    ``kill`` stops a script as cleanly as Ctrl-C (the default SIGTERM action would leave its
    pool workers running on, orphaned)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def worker_ignores_interrupts() -> None:
    """Initializer of pool workers: SIGINT is ignored, SIGTERM kills the worker outright."""
    # Ctrl-C reaches the whole process group; only the parent acts on it (it kills the
    # workers). SIGTERM must kill a worker outright, not run the parent's handler it inherited.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _call(task: tuple[Callable[[Any], list[dict[str, Any]]], list[str], Any]
          ) -> tuple[list[str], list[dict[str, Any]] | None, str]:
    """Run one group of trials in a worker; a failure comes back as text naming the trials."""
    fn, keys, jobs = task
    try:
        return keys, fn(jobs), ""
    except Exception:
        return keys, None, traceback.format_exc()


class _Single:
    """``fn`` of one trial as a function of a group of one (picklable for the pool)."""

    def __init__(self, fn: Callable[[Any], dict[str, Any]]) -> None:
        self.fn = fn

    def __call__(self, jobs: list[Any]) -> list[dict[str, Any]]:
        return [self.fn(job) for job in jobs]


def run_trials(
    jobs: Sequence[tuple[str, Any]],
    fn: Callable[[Any], dict[str, Any]],
    *,
    workers: int,
    journal: TrialJournal | None,
    desc: str = "trials",
) -> list[dict[str, Any]]:
    """The record of every job, in the order of ``jobs``: from the journal, or by ``fn(job)``.

    Args:
        jobs: ``(key, job)`` pairs; ``key`` names the trial in the journal.
        fn: runs one trial and returns its JSON-ready record; with ``workers > 1`` it must be
            picklable (a module-level function).
        workers: processes; 1 runs the trials in this process.
        journal: where finished trials are kept and found again (None: nowhere, no resume).

    On SIGINT or SIGTERM the workers are killed, a message says what was kept, and
    ``SystemExit(128 + signal number)`` is raised. If a trial fails, the pool is stopped and a
    ``RuntimeError`` with the trial's key and traceback is raised; finished trials stay kept.
    """
    return run_trial_groups(jobs, _Single(fn), group_size=1, workers=workers, journal=journal, desc=desc)


def run_trial_groups(
    jobs: Sequence[tuple[str, Any]],
    fn: Callable[[list[Any]], list[dict[str, Any]]],
    *,
    group_size: int,
    workers: int,
    journal: TrialJournal | None,
    group_of: Callable[[Any], Any] | None = None,
    desc: str = "trials",
) -> list[dict[str, Any]]:
    """:func:`run_trials` for trials that run in groups (populations trained together).

    The jobs not yet in the journal are split, in job order, into groups of at most
    ``group_size`` consecutive jobs with the same ``group_of(job)`` (all together if None);
    ``fn(list of jobs)`` runs a group and returns one record per job, in order. A group's
    records are journaled when the group finishes, so an interrupted run loses at most the
    groups in flight, and its resumption groups only the missing trials.

    Raises:
        ValueError: ``group_size`` or ``workers`` below 1 (naming the value), or ``fn``
            returning a wrong number of records.
    """
    if group_size < 1:
        raise ValueError(f"group_size={group_size!r} must be at least 1")
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be at least 1")
    done: dict[str, dict[str, Any]] = dict(journal.finished) if journal is not None else {}
    pending = [(key, job) for key, job in jobs if key not in done]
    if journal is not None and len(pending) < len(jobs):
        print(f"resuming: {len(jobs) - len(pending)} of {len(jobs)} trials already finished in {journal.path}",
              file=sys.stderr)
    groups: list[list[tuple[str, Any]]] = []
    for key, job in pending:
        label = group_of(job) if group_of is not None else None
        last = groups[-1] if groups else None
        if last is not None and len(last) < group_size and (group_of is None or group_of(last[0][1]) == label):
            last.append((key, job))
        else:
            groups.append([(key, job)])
    from tqdm import tqdm

    progress = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc)
    pool = None
    try:
        with signals_interrupt():
            tasks = [(fn, [key for key, _ in group], [job for _, job in group]) for group in groups]
            if workers == 1 or len(groups) <= 1:
                # In this process an exception keeps its own type and traceback.
                results: Iterator[tuple[list[str], list[dict[str, Any]] | None, str]] = (
                    (keys, fn(group_jobs), "") for _, keys, group_jobs in tasks
                )
            else:
                pool = multiprocessing.Pool(min(workers, len(groups)), initializer=worker_ignores_interrupts)
                results = pool.imap_unordered(_call, tasks)
            for keys, records, error in results:
                if records is None:
                    name = keys[0] if len(keys) == 1 else f"group {keys[0]} .. {keys[-1]}"
                    raise RuntimeError(f"trial {name} failed:\n{error}")
                if len(records) != len(keys):
                    raise ValueError(f"a group of {len(keys)} trials returned {len(records)} records")
                for key, record in zip(keys, records, strict=True):
                    if journal is not None:
                        journal.record(key, record)
                    done[key] = record
                progress.update(len(keys))
    except Interrupted as exc:
        _stop(pool)
        progress.close()
        kept = (f"{len(done)} of {len(jobs)} trials are finished and kept in {journal.path}; run the same "
                "command again to resume" if journal is not None else
                f"{len(done)} of {len(jobs)} trials had finished; give --out to keep trials across runs")
        print(f"\n{exc}: {kept}", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None
    except BaseException:
        _stop(pool)
        progress.close()
        if journal is not None:
            print(f"\n{len(done)} of {len(jobs)} trials are finished and kept in {journal.path}", file=sys.stderr)
        raise
    if pool is not None:
        pool.close()
        pool.join()
    progress.close()
    return [done[key] for key, _ in jobs]


def _stop(pool: Any) -> None:
    """Kill the workers (SIGTERM) and wait for them, so that none outlives the run."""
    if pool is not None:
        pool.terminate()
        pool.join()
