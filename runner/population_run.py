"""Population runs: the runs of several seeds of one algorithm trained together as one population.

``examples/train.py --population K`` groups the seeds of each algorithm into populations of up
to K (:func:`population_groups`) and trains each with :class:`agents.population.PopulationSession`:
the K trials' networks are stacked and stepped as one learner, each trial independent of the
others (its own gradients, optimiser moments, normalisers and random streams). Trial k
reproduces the single run of its seed to float rounding, not bit for bit (batched matrix
products round differently), so a population writes the same rows as separate runs would, up
to that rounding. It pays where the networks are small and a step costs mostly Python overhead
(the repeated matrix games: :func:`agents.population.check_population_config` says what it
trains); an algorithm or configuration it does not train runs one seed at a time.

Every member writes what a single run writes (:mod:`runner.run`): its rows of ``curves.csv``
(``wall_s`` is the population's training time, shared by its members; no ``train_*`` learner
statistics, which a population reports for all trials together), ``run.json`` (with a
``population`` entry naming its population), ``last.pt``, ``best.pt`` and TensorBoard logs.
The resume state of the whole population is one file::

    OUT/runs/<env>/<algo>/population_<first seed>-<last seed>_k<K>/state.pt

written at every evaluation boundary, so ``--resume`` continues the population exactly where
it stopped (with the same ``--seeds`` and ``--population``: a seed trained in one population
cannot be continued in another or alone).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.checkpoint import save_checkpoint
from agents.config import STEPConfig
from runner.curves import append_row, drop_rows
from runner.evaluation import Evaluator, chunk_seeds, evaluate_together
from runner.run import (
    RunError,
    RunResult,
    RunSpec,
    RunStatus,
    _atomic,
    _check_extension,
    _config_defaults,
    _HookLogger,
    _versions,
    _write_record,
    global_rng_state,
    record_version_change,
    run_status,
    set_global_rng_state,
    spec_differences,
    train_in_chunks,
)

POPULATION_STATE_FORMAT = "stmg-step-population-state"
POPULATION_STATE_VERSION = 1


def population_trainable(spec: RunSpec) -> bool:
    """Whether ``spec``'s algorithm and configuration can be trained as a population."""
    from agents.population import check_population_config

    config = spec.algo_config()
    if not isinstance(config, STEPConfig):
        return False  # MADDPG: agents.maddpg_population has no resume state for the harness
    try:
        check_population_config(config)
    except ValueError:
        return False
    return True


def _group_key(spec: RunSpec) -> str:
    """What the members of one population share: everything but the seed."""
    data = spec.to_dict()
    data.pop("seed")
    return json.dumps(data, sort_keys=True)


def population_groups(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """The launch's jobs: specs that differ only in their seed, in populations of up to
    ``size`` (in the order of the seeds given), where :func:`population_trainable`; every
    other spec alone. ``size`` 1 gives one job per spec."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"population size {size!r} must be a positive integer")
    jobs: list[list[RunSpec]] = []
    open_groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        if size == 1 or not population_trainable(spec):
            jobs.append([spec])
            continue
        key = _group_key(spec)
        group = open_groups.get(key)
        if group is None or len(group) >= size:
            group = []
            open_groups[key] = group
            jobs.append(group)
        group.append(spec)
    return jobs


def population_name(seeds: Sequence[int]) -> str:
    """The directory name of the population of ``seeds`` (in training order)."""
    return f"population_{seeds[0]}-{seeds[-1]}_k{len(seeds)}"


def population_dir(specs: Sequence[RunSpec], out: Path) -> Path:
    """Where the population of ``specs`` keeps its resume state."""
    return specs[0].run_dir(out).parent / population_name([s.seed for s in specs])


@dataclass
class _PopulationProgress:
    """The counters of a population, saved with its state at every evaluation boundary."""

    env_steps: int = 0
    """Environment steps per trial."""
    chunk: int = 0
    wall_s: float = 0.0
    gradient_steps: int = 0
    best_return: list[float] = field(default_factory=list)
    """Per member (in the order of the seeds)."""
    last_return: list[float | None] = field(default_factory=list)


def _load_population_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != POPULATION_STATE_FORMAT:
        raise RunError(f"{path} is not a population state file of this harness")
    if state.get("format_version") != POPULATION_STATE_VERSION:
        raise RunError(f"{path} has population state format {state.get('format_version')!r}; this harness "
                       f"reads {POPULATION_STATE_VERSION}")
    return state  # type: ignore[no-any-return]


def _check_members(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise ValueError("a population needs at least one run")
    keys = {_group_key(s) for s in specs}
    if len(keys) != 1:
        raise ValueError("the runs of a population must differ only in their seed")
    seeds = [s.seed for s in specs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the seeds of a population must be distinct; got {seeds}")


def population_member_status(spec: RunSpec, out: Path, record: dict[str, Any]) -> RunStatus:
    """:func:`runner.run.run_status` of a run that was trained in a population (``record``:
    its ``run.json``)."""
    info = record["population"]
    run_dir = spec.run_dir(out)
    stored = record["spec"]
    diffs = spec_differences({**stored, "steps": spec.steps}, spec.to_dict(), _config_defaults(spec.algo))
    state_path = run_dir.parent / info["name"] / "state.pt"
    env_steps, last, best, wall = 0, None, None, 0.0
    if state_path.exists():
        state = _load_population_state(state_path)
        k = list(state["seeds"]).index(spec.seed)
        env_steps, wall = int(state["env_steps"]), float(state["wall_s"])
        last = state["last_return"][k]
        best = None if state["best_return"][k] == -math.inf else float(state["best_return"][k])
    done = "complete" if env_steps >= spec.steps else "in progress"
    detail = "; ".join(diffs) or f"in {info['name']}"
    return RunStatus(algo=spec.algo, seed=spec.seed, steps=spec.steps, state="differs" if diffs else done,
                     env_steps=env_steps, last_return=last, best_return=best, wall_s=wall, detail=detail)


def run_population(specs: Sequence[RunSpec], out: Path | str, *, resume: bool = False,
                   show_progress: bool = True, position: int = 0, log: Callable[[str], None] | None = None,
                   stop_after_evaluations: int | None = None) -> list[RunResult]:
    """Train ``specs`` (one algorithm, configuration and env; distinct seeds) as one population,
    with a greedy evaluation of every member at each boundary (module docstring). Arguments as
    :func:`runner.run.run_one`; returns one result per member.

    Raises:
        RunError: a member already holds a run and ``resume`` is not set, or was trained
            alone or in another population, or its stored run differs from ``specs``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from agents.population import PopulationSession

    _check_members(specs)
    out = Path(out)
    curves = out / "curves.csv"
    first = specs[0]
    config = first.algo_config()
    if not isinstance(config, STEPConfig) or not population_trainable(first):
        raise RunError(f"{first.algo} with this configuration cannot be trained as a population; run its seeds "
                       "one at a time (without --population)")
    seeds = [s.seed for s in specs]
    name = population_name(seeds)
    pop_dir = population_dir(specs, out)
    state_path = pop_dir / "state.pt"
    defaults = _config_defaults(first.algo)
    if resume:  # finished runs are skipped, however they were trained
        statuses = [run_status(spec, out) for spec in specs]
        if all(st.state == "complete" for st in statuses):
            return [RunResult(env=s.env_label, algo=s.algo, seed=s.seed, env_steps=st.env_steps,
                              eval_return=st.last_return, run_dir=str(s.run_dir(out)))
                    for s, st in zip(specs, statuses, strict=True)]
    for spec in specs:
        spec_path = spec.run_dir(out) / "run.json"
        if not spec_path.exists():
            continue
        if not resume:
            raise RunError(f"{spec.run_dir(out)} already holds a run; pass --resume to continue it, or choose "
                           "another --out")
        record = json.loads(spec_path.read_text())
        member_of = record.get("population", {}).get("name")
        if member_of != name:
            trained = f"in population {member_of}" if member_of else "alone"
            raise RunError(f"cannot resume {spec.run_dir(out)} in {name}: seed {spec.seed} was trained {trained}; "
                           "resume it with the --seeds and --population it was started with")
        stored, given = record["spec"], spec.to_dict()
        diffs = spec_differences(stored, given, defaults)
        if diffs and not spec_differences({**stored, "steps": spec.steps}, given, defaults):  # only --steps
            _check_extension(spec, int(stored["steps"]), spec.run_dir(out))
            record["spec"] = given
            record["extended_from_steps"] = [*record.get("extended_from_steps", []), int(stored["steps"])]
            _write_record(record, spec_path)
        elif diffs:
            raise RunError(f"cannot resume {spec.run_dir(out)}: its stored run differs from this command: "
                           + "; ".join(diffs))
    stored_state = _load_population_state(state_path) if resume and state_path.exists() else None
    if stored_state is not None and list(stored_state["seeds"]) != seeds:
        raise RunError(f"{state_path} holds seeds {list(stored_state['seeds'])}, not {seeds}")
    if log is None:
        log = (lambda _: None) if show_progress else (lambda line: print(line, flush=True))
    if stored_state is not None and stored_state["env_steps"] >= first.steps:
        log(f"{first.algo} seeds {seeds}: already complete ({stored_state['env_steps']} steps)")
        return [RunResult(env=s.env_label, algo=s.algo, seed=s.seed, env_steps=int(stored_state["env_steps"]),
                          eval_return=stored_state["last_return"][k], run_dir=str(s.run_dir(out)))
                for k, s in enumerate(specs)]
    pop_dir.mkdir(parents=True, exist_ok=True)
    if stored_state is None:  # a fresh start: forget rows of an attempt that saved no state
        record_extra = {"family": first.env_ref.family, "versions": _versions(),
                        "population": {"name": name, "seeds": seeds}}
        for spec in specs:
            spec.run_dir(out).mkdir(parents=True, exist_ok=True)
            drop_rows(curves, env=spec.env_label, algo=spec.algo, seed=spec.seed)
            _write_record({"spec": spec.to_dict(), **record_extra}, spec.run_dir(out) / "run.json")

    session = PopulationSession(first.env_ref, config=config, total_steps=first.steps, seeds=seeds,
                                order=first.order, observation=first.observation,
                                venv_fn=_array_venv_fn(first, config))
    evaluators = [Evaluator(s.env_ref, order=s.order, observation=s.observation, episodes=s.eval_episodes,
                            seed=s.seed) for s in specs]
    counters = _PopulationProgress(best_return=[-math.inf] * len(specs), last_return=[None] * len(specs))
    if stored_state is not None:
        for spec in specs:
            record_version_change(spec.run_dir(out) / "run.json", int(stored_state["env_steps"]))
        _restore(session, stored_state)
        counters = _PopulationProgress(**{k: stored_state[k] for k in asdict(counters)})
        for spec in specs:
            drop_rows(curves, env=spec.env_label, algo=spec.algo, seed=spec.seed, after=counters.env_steps)
    purge = counters.env_steps + 1 if stored_state is not None else None
    writers = [SummaryWriter(str(s.run_dir(out) / "tb"), purge_step=purge) for s in specs]
    bar = tqdm(total=first.steps, initial=counters.env_steps, desc=f"{first.algo} {name}", unit="step",
               position=position, dynamic_ncols=True, leave=True, disable=not show_progress)
    started = time.perf_counter() - counters.wall_s

    def on_collect(n: int) -> None:
        counters.env_steps += n // len(specs)  # the collector counts every trial's steps
        bar.update(n // len(specs))

    def on_update(log_data: dict[str, Any]) -> None:
        counters.gradient_steps += int(log_data.get("gradient_steps", 1))

    def boundary() -> None:
        step = counters.env_steps
        results = evaluate_together(evaluators, session.policy, lambda k: session.learner_of(k).policy)
        counters.wall_s = time.perf_counter() - started
        for k, (spec, result, writer) in enumerate(zip(specs, results, writers, strict=True)):
            learner = session.learner_of(k)
            metrics = result.metrics()
            append_row(curves, {"env": spec.env_label, "algo": spec.algo, "seed": spec.seed, "env_steps": step,
                                "wall_s": round(counters.wall_s, 3), **metrics,
                                "gradient_steps": counters.gradient_steps})
            for key in ("eval_return", "eval_length", "avg_speed", "collision_rate"):
                if metrics[key] is not None:
                    writer.add_scalar(f"eval/{key.removeprefix('eval_')}", metrics[key], step)
            writer.add_scalar("time/wall_s", counters.wall_s, step)
            writer.flush()
            run_dir = spec.run_dir(out)
            counters.last_return[k] = metrics["eval_return"]
            if metrics["eval_return"] > counters.best_return[k]:
                counters.best_return[k] = metrics["eval_return"]
                save_checkpoint(learner, run_dir / "best.pt")  # written atomically
            save_checkpoint(learner, run_dir / "last.pt")
        _save_population_state(session, counters, seeds, first, state_path)
        returns = [r for r in counters.last_return if r is not None]
        shown = f"mean {sum(returns) / len(returns):.3f} (min {min(returns):.3f}, max {max(returns):.3f})"
        bar.set_postfix_str(f"eval_return {shown}")
        log(f"{first.env_label} {first.algo} {name}: {step}/{first.steps} steps, eval_return {shown}")

    try:
        hook = _HookLogger(on_collect, on_update)

        def train_chunk(n_steps: int) -> None:  # every seed's envs re-seeded as its single run's
            session.reset_envs([chunk_seeds(seed, counters.chunk, config.n_envs) for seed in seeds])
            session.train_steps(n_steps, logger=hook)

        train_in_chunks(counters, steps=first.steps, eval_every=first.eval_every, fresh=stored_state is None,
                        train_chunk=train_chunk, boundary=boundary, stop_after_evaluations=stop_after_evaluations)
    finally:
        bar.close()
        for writer in writers:
            writer.close()
        for evaluator in evaluators:
            evaluator.close()
        session.close()
    return [RunResult(env=s.env_label, algo=s.algo, seed=s.seed, env_steps=counters.env_steps,
                      eval_return=counters.last_return[k], run_dir=str(s.run_dir(out)))
            for k, s in enumerate(specs)]


def _array_venv_fn(spec: RunSpec, config: STEPConfig) -> Callable[[list[Any]], Any] | None:
    """For a plain repeated matrix game, a maker of :class:`runner.matrix_venv.MatrixGameVectorEnv`
    (the same observations, rewards and episode ends as the generic vector env, stepped as
    arrays: with the generic one, stepping the games through ``stmg.wrap`` costs several times
    the learning); None for any other env (Tianshou's ``DummyVectorEnv``)."""
    from envs.matrix import MatrixGame
    from runner.matrix_trials import array_venv_fn

    if spec.observation != "own":
        return None
    probe = spec.env_ref()
    try:
        if type(probe) is not MatrixGame:
            return None
        payoffs, length = probe.payoffs, probe.episode_length
    finally:
        probe.close()
    return array_venv_fn(payoffs, config, episode_length=length, order=spec.order)


def _save_population_state(session: Any, counters: _PopulationProgress, seeds: list[int], first: RunSpec,
                           path: Path) -> None:
    spec = first.to_dict()
    spec.pop("seed")
    state = {
        "format": POPULATION_STATE_FORMAT, "format_version": POPULATION_STATE_VERSION,
        "spec": json.dumps(spec), "seeds": list(seeds), **asdict(counters),
        "learner": session.state(),
        "rng": global_rng_state(),
    }

    def write(tmp: Path) -> None:
        torch.save(state, tmp)

    _atomic(write, path)


def _restore(session: Any, state: dict[str, Any]) -> None:
    session.load_state(dict(state["learner"]))
    set_global_rng_state(state["rng"])

