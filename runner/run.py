"""One run: one algorithm, one seed, one environment, trained with periodic greedy evaluation.

:func:`run_one` trains in chunks of ``eval_every`` environment steps. At step 0 and after every
chunk (an *evaluation boundary*) it

1. evaluates greedily (:class:`runner.evaluation.Evaluator`),
2. appends the row to ``OUT/curves.csv`` (flushed; :mod:`runner.curves`) and logs it to
   TensorBoard (``RUN_DIR/tb``),
3. saves ``best.pt`` if the evaluation return is the best so far, and
4. saves ``last.pt`` (the model) and ``state.pt`` (everything needed to continue: learner and
   optimiser state, the step, chunk and gradient-step counters, the elapsed time, and the RNG
   states of Python, NumPy, torch and the learner's own generator; MADDPG's replay buffer
   beside it), each written to a temporary file and renamed.

Each chunk then starts by re-seeding and resetting the training envs with seeds that depend
only on (seed, chunk) (:func:`runner.evaluation.chunk_seeds`). A run resumed from ``state.pt``
is therefore in exactly the state the uninterrupted run was in at that boundary, and writes
exactly the same rows (only ``wall_s`` differs). Rows of the run that were appended after its
last ``state.pt`` (an interruption between steps 2 and 4) are dropped on resume and computed
again. The price of this design: every ``eval_every`` steps the training envs start new
episodes, which cuts the episodes running at the boundary (their data was already used, with
a bootstrapped value, by the update that ended the chunk).

Layout of ``OUT``::

    OUT/curves.csv                                one row per evaluation of every run
    OUT/runs/<env>/<algo>/seed_<seed>/run.json    what the run is (env, kwargs, order,
                                                  observation, algo, config, steps, evaluation)
    .../last.pt, best.pt                          models (agents.checkpoint format; MADDPG: its own)
    .../state.pt (+ replay-<steps>.pkl)           resume state
    .../tb/                                       TensorBoard logs
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.utils.logger.logger_base import LazyLogger

from agents.config import STEPConfig
from agents.maddpg import MADDPGConfig
from runner.curves import append_row, drop_rows
from runner.envs import EnvRef
from runner.evaluation import Evaluator, chunk_seeds
from runner.learners import (
    LearnerSession,
    MADDPGSession,
    PPOSession,
    numpy_rng_state,
    set_numpy_rng_state,
)
from runner.presets import check_algo, config_class, config_from_dict

STATE_FORMAT = "stmg-step-run-state"
STATE_FORMAT_VERSION = 1


class RunError(RuntimeError):
    """A run cannot start or continue as asked (the message says why and what to do)."""


def env_label(env: str, env_kwargs: Mapping[str, Any]) -> str:
    """How curves and evaluation tables name an environment: the id, plus the keyword
    arguments if any (``id[k=v,...]``)."""
    if not env_kwargs:
        return env
    args = ",".join(f"{k}={env_kwargs[k]!r}" for k in sorted(env_kwargs))
    return f"{env}[{args}]"


@dataclass(kw_only=True)
class RunSpec:
    """Everything that defines a run; stored in ``run.json`` and compared on resume."""

    env: str
    """Registered environment id or ``module:callable``."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment."""
    algo: str
    """``step``, ``mappo``, ``ippo``, ``happo`` or ``maddpg``."""
    seed: int
    """Seeds the learner, the training envs and (disjointly) the evaluation envs."""
    steps: int
    """Environment (joint) steps of training."""
    eval_every: int
    """Environment steps between two evaluations."""
    eval_episodes: int = 10
    """Whole episodes per evaluation."""
    order: list[str] | None = None
    """Priority order (default: the env's ``possible_agents``)."""
    observation: str = "own"
    """Base observation: ``own`` or ``state``."""
    config: dict[str, Any] = field(default_factory=dict)
    """The algorithm's full configuration (``STEPConfig``/``MADDPGConfig`` as a dict)."""

    def __post_init__(self) -> None:
        check_algo(self.algo)
        for name in ("steps", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 1_000_000:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 1000000)")
        if self.observation not in ("own", "state"):
            raise ValueError(f"observation={self.observation!r}; expected 'own' or 'state'")

    @property
    def env_ref(self) -> EnvRef:
        """The environment factory."""
        return EnvRef(self.env, dict(self.env_kwargs))

    @property
    def env_label(self) -> str:
        """The ``env`` column: the id, plus the keyword arguments if any (``id[k=v,...]``)."""
        return env_label(self.env, self.env_kwargs)

    def algo_config(self) -> STEPConfig | MADDPGConfig:
        """The configuration object."""
        return config_from_dict(self.algo, self.config)

    def run_dir(self, out: Path) -> Path:
        """Where this run keeps its files under ``out``."""
        slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.env_label).strip("_")
        return Path(out) / "runs" / slug / self.algo / f"seed_{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data))


def spec_differences(stored: Mapping[str, Any], given: Mapping[str, Any],
                     config_defaults: Mapping[str, Any] | None = None) -> list[str]:
    """Human-readable differences between two :meth:`RunSpec.to_dict` (config field by field).

    A configuration field that the stored run does not have (added to the dataclass after the
    run started) counts as equal if the command leaves it at its default ``config_defaults``.
    """
    defaults = dict(config_defaults or {})
    diffs = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if name not in a and name in defaults and _jsonable(defaults[name]) == b.get(name):
                    continue
                if a.get(name) != b.get(name):
                    diffs.append(f"config.{name}: stored {a.get(name)!r}, now {b.get(name)!r}")
        elif a != b:
            diffs.append(f"{key}: stored {a!r}, now {b!r}")
    return diffs


def _config_defaults(algo: str) -> dict[str, Any]:
    """Plain-data defaults of every field of ``algo``'s configuration class."""
    defaults = config_class(algo)().to_dict()
    return {f.name: defaults[f.name] for f in fields(config_class(algo))}


def chunk_unit(spec: RunSpec) -> int:
    """Environment steps of one collect of ``spec``'s learner; evaluation boundaries fall on
    multiples of it."""
    config = spec.algo_config()
    per_collect = config.steps_per_collect
    if isinstance(config, STEPConfig):
        per_collect = min(per_collect, spec.steps)
    return math.ceil(per_collect / config.n_envs) * config.n_envs


def _check_extension(spec: RunSpec, stored_steps: int, run_dir: Path) -> None:
    """Allow ``--resume`` with a larger ``--steps`` only where nothing the learner does depends
    on the total: no learning-rate decay over the run, and collects of the same size. Then the
    extended run continues exactly as a run started with the larger ``--steps`` would (when the
    old total was a multiple of ``--eval-every``: the same chunks and evaluations)."""
    if spec.steps < stored_steps:
        raise RunError(f"cannot resume {run_dir} with --steps {spec.steps}: it was started for {stored_steps} "
                       "steps; a run can be extended, not shortened (use its rows up to that step instead)")
    config = spec.algo_config()
    if isinstance(config, STEPConfig):
        if config.lr_decay:
            raise RunError(f"cannot extend {run_dir} from {stored_steps} to {spec.steps} steps: its learning "
                           "rate decays to 0 over the stored total (lr_decay), so the longer run would "
                           "differ from its start on; start a new run (another --out) instead")
        if config.steps_per_collect > stored_steps:
            raise RunError(f"cannot extend {run_dir} from {stored_steps} steps: its collects were cut to the "
                           f"old total (steps_per_collect={config.steps_per_collect}); start a new run instead")


def _versions() -> dict[str, str]:
    """Versions of the packages that shape the results (the MuJoCo ones if loaded)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "tianshou", "pettingzoo", "gymnasium", "numpy", "mujoco",
                 "gymnasium-robotics", "highway-env", "stmg-step"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


class _HookLogger(LazyLogger):
    """Receives the trainer's collect and update statistics (nothing else of Tianshou's
    logging: its episode statistics are wrong for long episodes)."""

    def __init__(self, on_collect: Callable[[int], None], on_update: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._on_collect, self._on_update = on_collect, on_update

    def log_training_data(self, log_data: dict, step: int) -> None:
        self._on_collect(int(log_data["n_collected_steps"]))

    def log_update_data(self, log_data: dict, step: int) -> None:
        self._on_update(log_data)


def _flat_stats(log_data: Mapping[str, Any]) -> dict[str, float]:
    """Scalar statistics of one update: summaries give their mean."""
    out = {}
    for key, value in log_data.items():
        if key in ("train_time", "smoothed_loss", "gradient_steps"):
            continue
        if isinstance(value, Mapping) and "mean" in value:
            value = value["mean"]
        if isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def make_session(spec: RunSpec, *, subprocess_envs: bool = False) -> LearnerSession:
    """Build the learner session of ``spec`` (seeds everything with ``spec.seed``)."""
    config = spec.algo_config()
    common = {"total_steps": spec.steps, "seed": spec.seed, "order": spec.order,
              "observation": spec.observation, "subprocess": subprocess_envs}
    if isinstance(config, MADDPGConfig):
        return MADDPGSession(spec.env_ref, config=config, **common)  # type: ignore[arg-type]
    return PPOSession(spec.env_ref, config=config, **common)  # type: ignore[arg-type]


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic(save: Callable[[Path], None], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save(tmp)
    os.replace(tmp, path)


def _write_record(record: Mapping[str, Any], path: Path) -> None:
    """Rewrite a run's ``run.json`` atomically."""
    text = json.dumps(record, indent=2)

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    _atomic(write, path)


@dataclass
class _Progress:
    """The counters of a run, saved with its state at every evaluation boundary."""

    env_steps: int = 0
    chunk: int = 0
    wall_s: float = 0.0
    gradient_steps: int = 0
    best_return: float = -math.inf
    last_return: float | None = None


@dataclass
class RunResult:
    """What a finished (or already complete) run reports back."""

    env: str
    algo: str
    seed: int
    env_steps: int
    eval_return: float | None
    run_dir: str


@dataclass
class RunStatus:
    """Where a run of a launch stands (:func:`run_status`), without training it."""

    algo: str
    seed: int
    state: str
    """``not started``, ``in progress``, ``complete``, or ``differs`` (its ``run.json`` is another run)."""
    env_steps: int
    steps: int
    """The steps the command asks for."""
    last_return: float | None
    best_return: float | None
    wall_s: float
    detail: str = ""
    """For ``differs``: what differs."""


def run_status(spec: RunSpec, out: Path | str) -> RunStatus:
    """Where ``spec``'s run under ``out`` stands, read from its ``run.json`` and ``state.pt``.

    Raises:
        RunError: a ``state.pt`` that is not a state file of this harness.
    """
    run_dir = spec.run_dir(Path(out))
    spec_path, state_path = run_dir / "run.json", run_dir / "state.pt"
    if not spec_path.exists():
        return RunStatus(algo=spec.algo, seed=spec.seed, steps=spec.steps, state="not started", env_steps=0,
                         last_return=None, best_return=None, wall_s=0.0)
    record = json.loads(spec_path.read_text())
    if "population" in record:
        from runner.population_run import population_member_status

        return population_member_status(spec, Path(out), record)
    stored = record["spec"]
    given = spec.to_dict()
    defaults = _config_defaults(spec.algo)
    diffs = spec_differences({**stored, "steps": spec.steps}, given, defaults)  # --steps may extend it
    if not diffs and int(stored["steps"]) != spec.steps:
        try:
            _check_extension(spec, int(stored["steps"]), run_dir)
        except RunError as exc:  # e.g. a learning rate that decays over the stored total
            diffs = [str(exc)]
    counters = _load_state(state_path) if state_path.exists() else {}
    env_steps = int(counters.get("env_steps", 0))
    best = counters.get("best_return")
    state = "differs" if diffs else "complete" if env_steps >= spec.steps else "in progress"
    if state == "in progress" and _replay_missing(counters, run_dir):
        diffs = [f"its replay buffer {counters['replay']} is missing: --resume needs --missing-replay restart or "
                 "empty"]
    return RunStatus(algo=spec.algo, seed=spec.seed, steps=spec.steps, state=state, env_steps=env_steps,
                     last_return=counters.get("last_return"),
                     best_return=None if best is None or best == -math.inf else float(best),
                     wall_s=float(counters.get("wall_s", 0.0)), detail="; ".join(diffs))


MISSING_REPLAY_CHOICES = ("fail", "restart", "empty")
"""What ``--resume`` does when a MADDPG run's saved replay buffer is gone (:func:`run_one`)."""


def run_one(spec: RunSpec, out: Path | str, *, resume: bool = False, show_progress: bool = True,
            position: int = 0, subprocess_envs: bool = False, log: Callable[[str], None] | None = None,
            stop_after_evaluations: int | None = None, missing_replay: str = "fail") -> RunResult:
    """Train and evaluate one run (module docstring); returns its last evaluation.

    Args:
        spec: the run.
        out: the output directory (``curves.csv`` and ``runs/`` below it).
        resume: continue from ``state.pt`` if the run has one (refused if its ``run.json``
            differs from ``spec``); without it an existing run is an error.
        show_progress: a tqdm progress bar over environment steps.
        position: the bar's line (one per concurrent run).
        subprocess_envs: training envs in subprocesses (``SubprocVectorEnv``).
        log: called with one line per evaluation (default: print when there is no bar).
        stop_after_evaluations: stop (as if interrupted) after this many evaluations in this
            call; for tests of resuming.
        missing_replay: when resuming a MADDPG run whose replay buffer file (``replay-*.pkl``,
            not committed with the rest of a run directory) is gone: ``"fail"`` (a
            :class:`RunError` that says so), ``"restart"`` (train the run again from step 0;
            the result is the same as a run never interrupted) or ``"empty"`` (continue from
            the saved learner with an empty replay buffer; the run is no longer the same as an
            uninterrupted one, and ``run.json`` records the steps at which the buffer was lost
            under ``replay_lost_at_steps``).
    """
    if missing_replay not in MISSING_REPLAY_CHOICES:
        raise ValueError(f"missing_replay={missing_replay!r}; expected one of {MISSING_REPLAY_CHOICES}")
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    out = Path(out)
    run_dir = spec.run_dir(out)
    curves = out / "curves.csv"
    state_path, spec_path = run_dir / "state.pt", run_dir / "run.json"
    given = spec.to_dict()
    stored_state: dict[str, Any] | None = None
    if spec_path.exists():
        record = json.loads(spec_path.read_text())
        stored = record["spec"]
        if not resume:
            raise RunError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
        if "population" in record:
            from runner.population_run import population_member_status

            member = population_member_status(spec, out, record)
            if member.state == "complete":  # finished runs are skipped, however they were trained
                return RunResult(env=spec.env_label, algo=spec.algo, seed=spec.seed, env_steps=member.env_steps,
                                 eval_return=member.last_return, run_dir=str(run_dir))
            raise RunError(f"cannot resume {run_dir} alone: seed {spec.seed} was trained in population "
                           f"{record['population']['name']}; resume it with the --seeds and --population it was "
                           "started with")
        defaults = _config_defaults(spec.algo)
        diffs = spec_differences(stored, given, defaults)
        if diffs and not spec_differences({**stored, "steps": spec.steps}, given, defaults):  # only --steps
            _check_extension(spec, int(stored["steps"]), run_dir)
            record = json.loads(spec_path.read_text())
            record["spec"] = given
            record["extended_from_steps"] = [*record.get("extended_from_steps", []), int(stored["steps"])]
            _write_record(record, spec_path)
        elif diffs:
            raise RunError(f"cannot resume {run_dir}: its stored run differs from this command: " + "; ".join(diffs))
        if state_path.exists():
            stored_state = _load_state(state_path)
    if log is None:
        log = (lambda _: None) if show_progress else (lambda line: print(line, flush=True))
    if stored_state is not None and stored_state["env_steps"] >= spec.steps:
        log(f"{spec.algo} seed {spec.seed}: already complete ({stored_state['env_steps']} steps)")
        return RunResult(env=spec.env_label, algo=spec.algo, seed=spec.seed, env_steps=stored_state["env_steps"],
                         eval_return=stored_state["last_return"], run_dir=str(run_dir))
    if stored_state is not None and _replay_missing(stored_state, run_dir):
        stored_state = _handle_missing_replay(stored_state, run_dir, spec_path, missing_replay)
    if stored_state is not None:
        record_version_change(spec_path, int(stored_state["env_steps"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    if stored_state is None:  # a fresh start: forget rows of an attempt that saved no state
        drop_rows(curves, env=spec.env_label, algo=spec.algo, seed=spec.seed)
        family = spec.env_ref.family
        spec_path.write_text(json.dumps({"spec": given, "family": family, "versions": _versions()}, indent=2))

    session = make_session(spec, subprocess_envs=subprocess_envs)
    evaluator = Evaluator(spec.env_ref, order=spec.order, observation=spec.observation,
                          episodes=spec.eval_episodes, seed=spec.seed)
    counters = _Progress()
    if stored_state is not None:
        _restore(session, stored_state, run_dir)
        counters = _Progress(**{k: stored_state[k] for k in asdict(counters)})
        drop_rows(curves, env=spec.env_label, algo=spec.algo, seed=spec.seed, after=counters.env_steps)
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=counters.env_steps + 1 if stored_state else None)
    bar = tqdm(total=spec.steps, initial=counters.env_steps, desc=f"{spec.algo} seed {spec.seed}",
               unit="step", position=position, dynamic_ncols=True, leave=True, disable=not show_progress)
    started = time.perf_counter() - counters.wall_s
    chunk_stats: dict[str, list[float]] = {}
    collect_stats: dict[str, list[float]] = {}

    def on_collect(n: int) -> None:
        counters.env_steps += n
        bar.update(n)
        for key, values in collect_stats.items():
            writer.add_scalar(f"train/{key}", float(np.mean(values)), counters.env_steps)
        collect_stats.clear()

    def on_update(log_data: dict[str, Any]) -> None:
        counters.gradient_steps += int(log_data.get("gradient_steps", 1))
        for key, value in _flat_stats(log_data).items():
            chunk_stats.setdefault(key, []).append(value)
            collect_stats.setdefault(key, []).append(value)

    def boundary() -> None:
        result = evaluator.evaluate(session.policy)
        metrics = result.metrics()
        counters.wall_s = time.perf_counter() - started
        row = {"env": spec.env_label, "algo": spec.algo, "seed": spec.seed,
               "env_steps": counters.env_steps, "wall_s": round(counters.wall_s, 3), **metrics,
               "gradient_steps": counters.gradient_steps,
               **{f"train_{k}": float(np.mean(v)) for k, v in sorted(chunk_stats.items())}}
        chunk_stats.clear()
        append_row(curves, row)
        step = counters.env_steps
        for key in ("eval_return", "eval_length", "avg_speed", "collision_rate"):
            if metrics[key] is not None:
                writer.add_scalar(f"eval/{key.removeprefix('eval_')}", metrics[key], step)
        writer.add_scalar("time/wall_s", counters.wall_s, step)
        writer.flush()
        counters.last_return = metrics["eval_return"]
        if metrics["eval_return"] > counters.best_return:
            counters.best_return = metrics["eval_return"]
            _atomic(session.save_model, run_dir / "best.pt")
        _atomic(session.save_model, run_dir / "last.pt")
        _save_state(session, counters, given, run_dir)
        bar.set_postfix(eval_return=f"{metrics['eval_return']:.2f}")
        log(f"{spec.env_label} {spec.algo} seed {spec.seed}: {step}/{spec.steps} steps, "
            f"eval_return {metrics['eval_return']:.3f}, eval_length {metrics['eval_length']:.1f}")

    try:
        hook = _HookLogger(on_collect, on_update)

        def train_chunk(n_steps: int) -> None:
            session.reset_envs(chunk_seeds(spec.seed, counters.chunk, session.n_envs))
            session.train_steps(n_steps, logger=hook)

        train_in_chunks(counters, steps=spec.steps, eval_every=spec.eval_every, fresh=stored_state is None,
                        train_chunk=train_chunk, boundary=boundary, stop_after_evaluations=stop_after_evaluations)
    finally:
        bar.close()
        writer.close()
        evaluator.close()
        session.close()
    return RunResult(env=spec.env_label, algo=spec.algo, seed=spec.seed, env_steps=counters.env_steps,
                     eval_return=counters.last_return, run_dir=str(run_dir))


def train_in_chunks(counters: Any, *, steps: int, eval_every: int, fresh: bool, train_chunk: Callable[[int], None],
                    boundary: Callable[[], None], stop_after_evaluations: int | None = None) -> None:
    """The chunk loop of a run (module docstring): an evaluation ``boundary()`` at step 0 if
    ``fresh``, then ``train_chunk(n)`` up to the next multiple of ``eval_every`` (or ``steps``),
    ``counters.chunk`` advanced, and ``boundary()`` again, until ``counters.env_steps`` reaches
    ``steps`` (``train_chunk`` advances it) or ``stop_after_evaluations`` evaluations were made."""
    evaluations = 0
    if fresh:
        boundary()
        evaluations += 1
    while counters.env_steps < steps:
        if stop_after_evaluations is not None and evaluations >= stop_after_evaluations:
            break
        target = min((counters.env_steps // eval_every + 1) * eval_every, steps)
        train_chunk(target - counters.env_steps)
        counters.chunk += 1
        boundary()
        evaluations += 1


def global_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy and torch, as plain data for a state file."""
    py_version, py_keys, py_gauss = random.getstate()
    return {"python": [py_version, list(py_keys), py_gauss], "numpy": numpy_rng_state(),
            "torch": torch.get_rng_state()}


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`global_rng_state`."""
    py_version, py_keys, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_keys), py_gauss))
    set_numpy_rng_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _save_state(session: LearnerSession, counters: _Progress, spec: dict[str, Any], run_dir: Path) -> None:
    replay_name = None
    replay = getattr(session, "replay_buffer", None)
    if replay is not None:
        # A new file per boundary, named by step: state.pt names the one that matches it.
        replay_name = f"replay-{counters.env_steps}.pkl"
        buffer = replay()

        def write(path: Path) -> None:  # streamed: no second copy of a buffer of hundreds of MB
            with open(path, "wb") as f:
                pickle.dump(buffer, f, protocol=pickle.HIGHEST_PROTOCOL)

        _atomic(write, run_dir / replay_name)
    state = {
        "format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, "spec": json.dumps(spec),
        **asdict(counters),
        "learner": session.state(),
        "generator": session.generator_state(),
        "rng": global_rng_state(),
        "replay": replay_name,
    }
    _atomic_torch_save(state, run_dir / "state.pt")
    for old in run_dir.glob("replay-*.pkl"):
        if old.name != replay_name:
            old.unlink()


def _replay_missing(state: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether the resume state names a replay buffer file that is not in ``run_dir``."""
    replay = state.get("replay")
    return replay is not None and not (run_dir / replay).exists()


def record_version_change(spec_path: Path, env_steps: int) -> dict[str, list[str]]:
    """Before a run resumes at ``env_steps``: compare today's package versions with those it was
    trained with so far. Where they differ, say so on stderr and append the change to run.json
    (``resumed_with_versions``), so that the record of a run says what trained each part of it.

    Resuming is still allowed (a run may move to another machine), but the rest of the run need
    not equal an uninterrupted one. Returns the changes, ``{package: [before, now]}``.
    """
    record = json.loads(spec_path.read_text())
    in_effect = dict(record.get("versions", {}))
    for entry in record.get("resumed_with_versions", []):
        in_effect.update(entry["versions"])
    now = _versions()
    pairs = {name: [in_effect.get(name, "absent"), now.get(name, "absent")] for name in sorted(set(in_effect) | set(now))}
    changed = {name: pair for name, pair in pairs.items() if pair[0] != pair[1]}
    if changed:
        listing = ", ".join(f"{name} {before} -> {after}" for name, (before, after) in changed.items())
        print(f"{spec_path.parent}: resuming at step {env_steps} with other package versions than it was "
              f"trained with ({listing}); the rest of the run may differ from an uninterrupted one "
              "(recorded in run.json)", file=sys.stderr, flush=True)
        record["resumed_with_versions"] = [*record.get("resumed_with_versions", []),
                                           {"env_steps": env_steps, "versions": {k: v[1] for k, v in changed.items()}}]
        _write_record(record, spec_path)
    return changed


def _handle_missing_replay(state: dict[str, Any], run_dir: Path, spec_path: Path,
                           policy: str) -> dict[str, Any] | None:
    """The resume state to continue from when its replay buffer file is gone (``run_one``'s
    ``missing_replay``); None to start the run again from step 0."""
    steps = int(state["env_steps"])
    missing = run_dir / state["replay"]
    if policy == "fail":
        raise RunError(
            f"cannot resume {run_dir} at step {steps}: its replay buffer {missing.name} is missing (replay "
            "buffers stay on the machine that trained the run; they are not committed with the run "
            "directory). Pass --missing-replay restart to train this run again from step 0, or "
            "--missing-replay empty to continue with an empty replay buffer (recorded in run.json)")
    if policy == "restart":
        print(f"{run_dir}: replay buffer {missing.name} missing; training the run again from step 0",
              file=sys.stderr, flush=True)
        shutil.rmtree(run_dir)  # run_one starts it afresh
        return None
    print(f"{run_dir}: replay buffer {missing.name} missing; continuing at step {steps} with an empty one",
          file=sys.stderr, flush=True)
    record = json.loads(spec_path.read_text())
    record["replay_lost_at_steps"] = [*record.get("replay_lost_at_steps", []), steps]
    _write_record(record, spec_path)
    return {**state, "replay": None}


def _load_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise RunError(f"{path} is not a run state file of this harness")
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise RunError(f"{path} has state format {state.get('format_version')!r}; this harness reads "
                       f"{STATE_FORMAT_VERSION}")
    return state  # type: ignore[no-any-return]


def _restore(session: LearnerSession, state: Mapping[str, Any], run_dir: Path) -> None:
    session.load_state(dict(state["learner"]))
    session.set_generator_state(state["generator"])
    if state["replay"] is not None:
        # Our own file, written by _save_state in this run directory.
        with open(run_dir / state["replay"], "rb") as f:
            buffer = pickle.load(f)
        session.load_replay_buffer(buffer)  # type: ignore[attr-defined]
    set_global_rng_state(state["rng"])
