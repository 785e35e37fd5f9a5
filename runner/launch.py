"""Run many :class:`~runner.run.RunSpec` s (algorithms x seeds): in this process, over local
worker processes, or over a Ray cluster.

Every run writes its own files and appends to the shared ``OUT/curves.csv`` under a file lock
(:mod:`runner.curves`), whichever way it is launched; a run gives the same rows in each (same
seed, same code, one torch thread). With Ray, every node must see ``OUT`` at the same path (a
shared file system, or a single machine): each Ray task first checks a marker file that the
driver wrote there, and fails with a message saying so if it cannot read it. The package must
be installed on every node (``pip install 'stmg-step[ray]'`` and the env extras).

With ``population`` K > 1, the seeds of each algorithm are trained in populations of up to K
(:mod:`runner.population_run`) where the learner supports it; a population is one job on one
worker.

A run that fails does not stop the others; :class:`LaunchError` lists every failure at the end.
"""

from __future__ import annotations

import multiprocessing
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runner.journal import signals_interrupt, worker_ignores_interrupts
from runner.population_run import population_groups, run_population
from runner.run import RunResult, RunSpec, run_one

MARKER = ".stmg-harness"


class LaunchError(RuntimeError):
    """Some runs failed; the message lists each with its error."""


def launch(specs: Sequence[RunSpec], out: Path | str, *, workers: int = 2, ray_address: str | None = None,
           resume: bool = False, show_progress: bool = True, subprocess_envs: bool = False,
           missing_replay: str = "fail", population: int = 1) -> list[RunResult]:
    """Run every spec; returns their results in the order of ``specs``.

    Args:
        specs: the runs.
        out: output directory.
        workers: local worker processes (1: run in this process, one after another); with Ray,
            the CPUs of a local Ray instance (``ray_address="local"``).
        ray_address: None for local processes; ``"local"`` to start a Ray instance here;
            otherwise the address of a running Ray cluster (``ray.init(address=...)``), e.g.
            ``"auto"`` or ``"ray://head:10001"``. An already initialised Ray is used as is.
        resume: continue runs from their checkpoints (see :func:`runner.run.run_one`).
        show_progress: progress bars (local runs only; Ray tasks print a line per evaluation).
        subprocess_envs: training envs in subprocesses.
        missing_replay: what resuming does where a MADDPG run's replay buffer file is gone
            (see :func:`runner.run.run_one`).
        population: train the seeds of each algorithm in populations of up to this many
            (:func:`runner.population_run.population_groups`); 1: every run on its own.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be at least 1")
    jobs = population_groups(specs, population)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ray_address is not None:
        return _launch_ray(specs, jobs, out, workers=workers, address=ray_address, resume=resume,
                           subprocess_envs=subprocess_envs, missing_replay=missing_replay)
    if workers == 1 or len(jobs) == 1:
        results: list[list[RunResult] | BaseException] = []
        with signals_interrupt():  # SIGTERM unwinds like Ctrl-C: the run closes its envs
            for job in jobs:
                try:
                    results.append(run_job(job, out, resume=resume, show_progress=show_progress,
                                           subprocess_envs=subprocess_envs, missing_replay=missing_replay))
                except Exception as exc:  # report it with the others; keep going
                    results.append(exc)
        return _collect(specs, jobs, results)
    slots = min(workers, len(jobs))
    # spawn: a clean interpreter per worker (forking a process that has torch's thread pools
    # and Tianshou loaded is fragile). Workers ignore Ctrl-C and die on SIGTERM; the parent
    # turns both into Interrupted and kills them, so that none outlives the launch and keeps
    # writing to OUT.
    pool = ProcessPoolExecutor(max_workers=slots, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_ignores_interrupts)
    try:
        with signals_interrupt():
            futures: list[Future[list[RunResult]]] = [
                pool.submit(run_job, job, out, resume=resume, show_progress=show_progress, position=i % slots,
                            subprocess_envs=subprocess_envs, missing_replay=missing_replay)
                for i, job in enumerate(jobs)
            ]
            results = []
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:
                    results.append(exc)
    except BaseException:
        # Runs not yet started never start; the running ones are killed: their finished
        # evaluations and checkpoints are on disk for --resume.
        _kill_workers(pool)
        raise
    pool.shutdown(wait=True)
    return _collect(specs, jobs, results)


def run_job(job: Sequence[RunSpec], out: Path | str, *, resume: bool, show_progress: bool, position: int = 0,
            subprocess_envs: bool = False, missing_replay: str = "fail") -> list[RunResult]:
    """One job of a launch: a single run (:func:`runner.run.run_one`) or a population
    (:func:`runner.population_run.run_population`)."""
    if len(job) == 1:
        return [run_one(job[0], out, resume=resume, show_progress=show_progress, position=position,
                        subprocess_envs=subprocess_envs, missing_replay=missing_replay)]
    return run_population(job, out, resume=resume, show_progress=show_progress, position=position)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the runs not started and terminate the worker processes, then wait for them.

    ``ProcessPoolExecutor`` has no public way to stop running work before Python 3.14
    (``terminate_workers``); its process table is the only handle on the workers."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _collect(specs: Sequence[RunSpec], jobs: Sequence[Sequence[RunSpec]],
             results: Sequence[list[RunResult] | BaseException]) -> list[RunResult]:
    """The results of every run, in the order of ``specs``; or a :class:`LaunchError` listing
    every failed run."""
    failures = [f"{s.env_label} {s.algo} seed {s.seed}: {type(r).__name__}: {r}"
                for job, r in zip(jobs, results, strict=True) if isinstance(r, BaseException) for s in job]
    if failures:
        raise LaunchError(f"{len(failures)} of {len(specs)} runs failed:\n  " + "\n  ".join(failures))
    by_run = {(r.algo, r.seed): r for result in results if not isinstance(result, BaseException) for r in result}
    return [by_run[(s.algo, s.seed)] for s in specs]


def _launch_ray(specs: Sequence[RunSpec], jobs: Sequence[Sequence[RunSpec]], out: Path, *, workers: int,
                address: str, resume: bool, subprocess_envs: bool, missing_replay: str) -> list[RunResult]:
    try:
        import ray
    except ImportError as exc:
        raise LaunchError("--ray needs the 'ray' package: pip install 'stmg-step[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False)
        else:
            ray.init(address=address)
    token = secrets.token_hex(8)
    (out / MARKER).write_text(token)
    task = ray.remote(num_cpus=1)(_ray_task)
    try:
        refs = [task.remote([spec.to_dict() for spec in job], str(out.resolve()), token, resume, subprocess_envs,
                            missing_replay)
                for job in jobs]
        results: list[list[RunResult] | BaseException] = []
        for ref in refs:
            try:
                results.append([RunResult(**r) for r in ray.get(ref)])
            except Exception as exc:  # ray.exceptions.RayTaskError wraps the task's error
                results.append(exc)
    finally:
        if started_here:
            ray.shutdown()
    return _collect(specs, jobs, results)


def _ray_task(job: list[dict[str, Any]], out: str, token: str, resume: bool, subprocess_envs: bool,
              missing_replay: str) -> list[dict[str, Any]]:
    """One job (a run, or a population) on a Ray worker (its node must see ``out``)."""
    import socket

    marker = Path(out) / MARKER
    if not marker.exists() or marker.read_text() != token:
        raise LaunchError(
            f"output directory {out} is not visible on Ray node {socket.gethostname()}: --out must "
            "be on a file system that every Ray node mounts at the same path"
        )
    results = run_job([RunSpec.from_dict(spec) for spec in job], out, resume=resume, show_progress=False,
                      subprocess_envs=subprocess_envs, missing_replay=missing_replay)
    return [asdict(result) for result in results]
