"""Learning curves and final-policy bar charts from ``curves.csv`` files.

Per environment, :func:`plot_curves` draws the mean evaluation return over seeds of each
algorithm against environment steps, with a 95% confidence band (as in the STEP paper's
Figs. 6 and 8). For on-ramp merging (rows with ``avg_speed``), it adds bar charts of the final
policies' average speed (Fig. 9) and collision rate, one group of bars per environment: from
each run's last evaluation, or from final evaluations (``examples/evaluate.py --csv``, read by
:func:`read_final`) where given.

:func:`final_scores` and :func:`plot_scores` make the scoreboard of many experiments at once:
per environment, every run's final return (a dot per seed) and each algorithm's mean with its
95% interval, and :func:`scores_markdown` the same as a Markdown table.

Interval estimates come from rliable (``rliable.library.get_interval_estimates``: a
percentile bootstrap over runs, stratified per evaluation point), the tool of Agarwal et al.
(2021) for few-run RL evaluation; if rliable is not installed, from SciPy's
``scipy.stats.bootstrap`` (percentile method). Both resample seeds; with one seed there is no
band. A band is drawn only over the evaluation points that every seed of the algorithm has
reached; beyond that the mean of the seeds there is drawn alone.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

CONFIDENCE = 0.95


def add_curve_arguments(parser: argparse.ArgumentParser, *, metric_help: str) -> None:
    """The inputs that the plotting scripts share: DIRs, --out, --metric, --reps, --title,
    --labels, --algos, --seeds. :func:`read_curve_arguments` checks them and reads the rows."""
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="training output directories (each holds curves.csv) or curves CSV files")
    parser.add_argument("--out", required=True, help="image to write (.png, .pdf or .svg)")
    parser.add_argument("--metric", default="eval_return", help=f"{metric_help} (default: eval_return)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--title", default=None, help="figure title (default: says what is shown)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="one label per DIR, added to its algorithms' names: runs of one algorithm "
                             "with different settings become separate entries (e.g. beta=0 beta=1; '' for none)")
    parser.add_argument("--algos", nargs="+", default=None, metavar="ALGO",
                        help="only these algorithms (default: every algorithm found)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="only these seeds (default: every seed found), e.g. the seeds whose runs "
                             "have finished")


def read_curve_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, str]]:
    """The rows that :func:`add_curve_arguments`' options select; a usage error (exit 2) that
    names the problem for too few resamples, a missing curves file or no matching rows."""
    if args.reps < 100:
        parser.error(f"--reps {args.reps} is too few for a 95% interval; use at least 100")
    try:
        rows = read_curves(args.dirs, labels=args.labels, algos=args.algos, seeds=args.seeds)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    if not rows:
        which = f"the algorithms {args.algos}" if args.algos else "any algorithm"
        if args.seeds:
            which += f" with seeds {args.seeds}"
        parser.error(f"no rows of {which} in {args.dirs}")
    return rows


@dataclass
class Band:
    """One algorithm's curve on one environment."""

    steps: np.ndarray
    """(T,) environment steps of the evaluation points."""
    mean: np.ndarray
    """(T,) mean over the seeds that reached the point."""
    low: np.ndarray
    """(T,) lower end of the 95% interval (NaN where not every seed has the point, or one seed)."""
    high: np.ndarray
    """(T,) upper end."""
    n_seeds: int
    """Seeds of the algorithm on this environment."""


def _seed_keys(seeds: Iterable[int] | None) -> set[str] | None:
    """The ``seed`` cells (as the CSV files write them) of ``seeds``; None keeps every seed."""
    return None if seeds is None else {str(int(seed)) for seed in seeds}


def read_curves(paths: Iterable[Path | str], *, labels: Sequence[str] | None = None,
                algos: Iterable[str] | None = None, seeds: Iterable[int] | None = None) -> list[dict[str, str]]:
    """Rows of every ``DIR/curves.csv`` (or CSV file) in ``paths``.

    Args:
        paths: training output directories or CSV files.
        labels: one per path; its rows' algorithm becomes ``"ALGO LABEL"``, so that runs of one
            algorithm with different settings (e.g. ``beta=0`` and ``beta=10``) are separate curves;
            an empty label leaves the names as they are.
        algos: keep only the rows of these algorithms (None: all).
        seeds: keep only the rows of these seeds (None: all).

    Raises:
        FileNotFoundError: a path with no curves file, naming it.
        ValueError: as many labels as paths were not given.
    """
    paths = list(paths)
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels {list(labels)} for {len(paths)} curve directories; "
                         "expected one label per directory")
    keep = None if algos is None else set(algos)
    keep_seeds = _seed_keys(seeds)
    rows: list[dict[str, str]] = []
    for k, raw in enumerate(paths):
        path = Path(raw)
        file = path / "curves.csv" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no curves file at {file} (expected a training output directory or a CSV)")
        with open(file, newline="") as f:
            for row in csv.DictReader(f):
                if keep is not None and row["algo"] not in keep:
                    continue
                if keep_seeds is not None and row["seed"] not in keep_seeds:
                    continue
                if labels is not None and labels[k]:
                    row["algo"] = f"{row['algo']} {labels[k]}"
                rows.append(row)
    return rows


def _runs(rows: Sequence[Mapping[str, str]], metric: str) -> dict[str, dict[str, dict[str, dict[int, float]]]]:
    """env -> algo -> seed -> {env_steps: value} (rows without the metric are skipped)."""
    out: dict[str, dict[str, dict[str, dict[int, float]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        text = row.get(metric, "")
        if text in ("", None):
            continue
        out[row["env"]][row["algo"]].setdefault(row["seed"], {})[int(row["env_steps"])] = float(text)
    return out


def mean_interval(scores: np.ndarray, *, reps: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs and a 95% bootstrap interval, per column of ``scores`` (runs, points).

    Returns (mean, low, high), each (points,); low/high are NaN with fewer than two runs.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.mean(axis=0)
    if scores.shape[0] < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy()
    try:
        from rliable import library as rly
    except ImportError:
        low, high = _scipy_interval(scores, reps=reps, seed=seed)
    else:
        # rliable's StratifiedBootstrap draws its resampling indices from NumPy's global
        # generator (np.random.choice), whatever random_state says: seed that generator for
        # the call and put its state back, so that the interval is reproducible and the
        # caller's random stream is left as it was.
        saved = np.random.get_state()
        np.random.seed(seed)
        try:
            with warnings.catch_warnings():
                # rliable hands arch a RandomState, which arch 7 deprecates (the results are the same).
                warnings.simplefilter("ignore", FutureWarning)
                _, intervals = rly.get_interval_estimates(
                    {"scores": scores}, lambda x: x.mean(axis=0), reps=reps,
                    confidence_interval_size=CONFIDENCE, random_state=np.random.RandomState(seed))
        finally:
            np.random.set_state(saved)
        low, high = intervals["scores"]
    # A column whose runs all agree has a zero-width interval (the bootstrap may give NaN).
    same = np.ptp(scores, axis=0) == 0
    low, high = np.where(same, mean, low), np.where(same, mean, high)
    return mean, low, high


def _scipy_interval(scores: np.ndarray, *, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import bootstrap

    res = bootstrap((scores,), np.mean, axis=0, confidence_level=CONFIDENCE, n_resamples=reps,
                    method="percentile", random_state=np.random.default_rng(seed))
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def curve_bands(rows: Sequence[Mapping[str, str]], metric: str = "eval_return", *,
                reps: int = 2000) -> dict[str, dict[str, Band]]:
    """env -> algo -> :class:`Band` of ``metric``."""
    out: dict[str, dict[str, Band]] = {}
    for env, algos in sorted(_runs(rows, metric).items()):
        out[env] = {}
        for algo, seeds in sorted(algos.items()):
            all_steps = sorted(set().union(*(s.keys() for s in seeds.values())))
            common = sorted(set.intersection(*(set(s) for s in seeds.values())))
            matrix = np.array([[s[t] for t in common] for s in seeds.values()])  # (seeds, common points)
            mean_c, low_c, high_c = (mean_interval(matrix, reps=reps) if common
                                     else (np.zeros(0), np.zeros(0), np.zeros(0)))
            index = {t: i for i, t in enumerate(common)}
            mean, low, high = [], [], []
            for t in all_steps:
                if t in index:
                    i = index[t]
                    mean.append(mean_c[i])
                    low.append(low_c[i])
                    high.append(high_c[i])
                else:
                    mean.append(float(np.mean([s[t] for s in seeds.values() if t in s])))
                    low.append(np.nan)
                    high.append(np.nan)
            out[env][algo] = Band(steps=np.array(all_steps), mean=np.array(mean), low=np.array(low),
                                  high=np.array(high), n_seeds=len(seeds))
    return out


def final_values(rows: Sequence[Mapping[str, str]], metric: str, *, last: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """env -> algo -> (seeds,) the metric at each run's last evaluation (``last`` > 1: the mean
    of each run's last ``last`` evaluations)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for env, algos in sorted(_runs(rows, metric).items()):
        out[env] = {algo: np.array([float(np.mean([s[t] for t in sorted(s)[-last:]])) for s in seeds.values()])
                    for algo, seeds in sorted(algos.items())}
    return out


FINAL_COLUMNS = ("env", "algo", "seed", "eval_return", "avg_speed", "collision_rate")
"""What a final-evaluation table (``examples/evaluate.py --csv``) must hold for :func:`read_final`."""


def read_final(paths: Iterable[Path | str], *, algos: Iterable[str] | None = None,
               seeds: Iterable[int] | None = None) -> list[dict[str, str]]:
    """Rows of final-evaluation tables written by ``examples/evaluate.py --csv``, the last row
    per run (env, algo, seed) where a run was evaluated more than once; ``algos`` and
    ``seeds`` keep only those runs (None: all).

    Raises:
        FileNotFoundError: a path that is not a file, naming it.
        ValueError: a file without the columns :data:`FINAL_COLUMNS`, naming the missing ones.
    """
    keep = None if algos is None else set(algos)
    keep_seeds = _seed_keys(seeds)
    last: dict[tuple[str, str, str], dict[str, str]] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"no final-evaluation table at {path} (write one with examples/evaluate.py --csv)")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in FINAL_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path} has no column {', '.join(missing)}: is it a table of "
                                 "examples/evaluate.py --csv?")
            for row in reader:
                if (keep is None or row["algo"] in keep) and (keep_seeds is None or row["seed"] in keep_seeds):
                    last[(row["env"], row["algo"], row["seed"])] = row
    return list(last.values())


def final_table(rows: Sequence[Mapping[str, str]], metric: str) -> dict[str, dict[str, np.ndarray]]:
    """env -> algo -> (runs,) ``metric`` of final-evaluation rows (:func:`read_final`); rows
    without a value are skipped."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get(metric, "") not in ("", None):
            out[row["env"]][row["algo"]].append(float(row[metric]))
    return {env: {algo: np.array(v) for algo, v in sorted(per.items())} for env, per in sorted(out.items())}


def plot_curves(rows: Sequence[Mapping[str, str]], out: Path | str, *, metric: str = "eval_return",
                reps: int = 2000, title: str | None = None,
                final: Sequence[Mapping[str, str]] | None = None) -> Path:
    """Write the figure (module docstring) to ``out`` (PNG, PDF or SVG by suffix); returns it.

    ``final``: rows of final evaluations (:func:`read_final`); the bar charts then show these
    (more episodes, on test seeds) instead of each run's last evaluation during training.

    Raises:
        ValueError: no row has ``metric``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = curve_bands(rows, metric, reps=reps)
    if not bands:
        raise ValueError(f"no row has a value for {metric!r}")
    if final:
        speeds, crashes = final_table(final, "avg_speed"), final_table(final, "collision_rate")
    else:
        speeds, crashes = final_values(rows, "avg_speed"), final_values(rows, "collision_rate")
    algos = sorted({a for per_algo in bands.values() for a in per_algo}
                   | {a for per_algo in speeds.values() for a in per_algo})
    colours = {a: f"C{i}" for i, a in enumerate(algos)}
    n_env = len(bands)
    n_cols = min(n_env, 3)
    curve_rows = -(-n_env // n_cols)
    bar_rows = 1 if speeds else 0
    fig = plt.figure(figsize=(5.2 * max(n_cols, 2 * bar_rows), 3.9 * (curve_rows + bar_rows)), layout="constrained")
    grid = fig.add_gridspec(curve_rows + bar_rows, n_cols)
    for k, (env, per_algo) in enumerate(bands.items()):
        ax = fig.add_subplot(grid[k // n_cols, k % n_cols])
        for algo, band in per_algo.items():
            ax.plot(band.steps, band.mean, color=colours[algo], label=f"{algo} ({band.n_seeds} seeds)")
            ok = np.isfinite(band.low)
            if ok.any():
                ax.fill_between(band.steps[ok], band.low[ok], band.high[ok], color=colours[algo], alpha=0.2,
                                linewidth=0)
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if bar_rows:
        halves = grid[curve_rows, :].subgridspec(1, 2)
        for j, (values, label) in enumerate(((speeds, "average speed (m/s)"), (crashes, "collision rate"))):
            _bars(fig.add_subplot(halves[0, j]), values, algos, colours, label, reps,
                  source="final evaluation" if final else "final policies")
    fig.suptitle(title or f"mean {metric.replace('_', ' ')} over seeds, 95% bootstrap CI")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bars(ax: Axes, values: Mapping[str, Mapping[str, np.ndarray]], algos: Sequence[str],
          colours: Mapping[str, str], label: str, reps: int, source: str = "final policies") -> None:
    """Grouped bars of final values: one group per env, one bar per algorithm, 95% CI whiskers."""
    envs = list(values)
    width = 0.8 / max(1, len(algos))
    for i, algo in enumerate(algos):
        xs: list[float] = []
        means: list[float] = []
        errs: list[list[float]] = [[], []]
        for g, env in enumerate(envs):
            if algo not in values[env]:
                continue
            scores = values[env][algo][:, None]  # (seeds, 1)
            mean, low, high = mean_interval(scores, reps=reps)
            xs.append(g + (i - (len(algos) - 1) / 2) * width)
            means.append(mean[0])
            errs[0].append(0.0 if np.isnan(low[0]) else mean[0] - low[0])
            errs[1].append(0.0 if np.isnan(high[0]) else high[0] - mean[0])
        if xs:
            ax.bar(xs, means, width=width, yerr=errs, color=colours[algo], label=algo, capsize=3)
    ax.set_xticks(range(len(envs)), envs, fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(f"{source}: {label}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


TRAINING_SOURCE = "training-time evaluation"
""":attr:`Score.source` of values from the runs' own curves."""


def _evaluation_phrase(last: int) -> str:
    """What a training-time score is: the last evaluation, or the mean of the last ``last``."""
    return "last training-time evaluation" if last == 1 else f"mean of the last {last} training-time evaluations"


@dataclass
class Score:
    """One algorithm's final result on one environment: a value per run (seed)."""

    env: str
    algo: str
    seeds: list[str]
    """The runs' seeds, in numeric order where they are numbers."""
    values: np.ndarray
    """(seeds,) the metric at each run's last evaluation (or the mean of its last ``last``)."""
    steps: np.ndarray
    """(seeds,) environment steps of each run's last evaluation."""
    mean: float
    low: float
    """Lower end of the 95% bootstrap interval of the mean over runs (NaN with one run)."""
    high: float
    source: str = TRAINING_SOURCE
    """Where the values come from: ``"training-time evaluation"``, ``"final evaluation (E
    episodes)"`` (tables of ``examples/evaluate.py --csv``), or ``"mixed"``."""


def _seed_key(seed: str) -> tuple[int, float | str]:
    try:
        return (0, float(seed))
    except ValueError:
        return (1, seed)


def final_scores(rows: Sequence[Mapping[str, str]], metric: str = "eval_return", *, last: int = 1,
                 reps: int = 2000, final: Sequence[Mapping[str, str]] | None = None) -> dict[str, dict[str, Score]]:
    """env -> algo -> :class:`Score`: each run's ``metric`` at its last evaluation (``last`` > 1:
    the mean of its last ``last`` evaluations), and their mean over runs with a 95% interval.

    ``final``: rows of final evaluations (:func:`read_final`); a run (env, algo, seed) that has
    one is scored by it instead (usually more episodes, on test seeds), and
    :attr:`Score.source` says so.

    Raises:
        ValueError: ``last`` below 1, or no row has ``metric``.
    """
    if last < 1:
        raise ValueError(f"last={last!r}: expected the number of final evaluations to average, at least 1")
    runs = _runs(rows, metric)
    if not runs:
        raise ValueError(f"no row has a value for {metric!r}")
    finals = {(r["env"], r["algo"], str(r["seed"])): r for r in final or () if r.get(metric, "") not in ("", None)}
    out: dict[str, dict[str, Score]] = {}
    for env, algos in sorted(runs.items()):
        out[env] = {}
        for algo, per_seed in sorted(algos.items()):
            seeds = sorted(per_seed, key=_seed_key)
            values = np.array([np.mean([per_seed[s][t] for t in sorted(per_seed[s])[-last:]]) for s in seeds])
            steps = np.array([max(per_seed[s]) for s in seeds], dtype=np.int64)
            sources = []
            for i, s in enumerate(seeds):
                row = finals.get((env, algo, s))
                if row is None:
                    sources.append(TRAINING_SOURCE)
                else:
                    values[i] = float(row[metric])
                    sources.append(f"final evaluation ({row.get('episodes') or '?'} episodes)")
            mean, low, high = (float(v[0]) for v in mean_interval(values[:, None], reps=reps))
            out[env][algo] = Score(env=env, algo=algo, seeds=seeds, values=values, steps=steps, mean=mean,
                                   low=low, high=high, source=sources[0] if len(set(sources)) == 1 else "mixed")
    return out


def _number_format(values: np.ndarray) -> str:
    """One format for a row of a table: whole numbers with thousands separators where the
    values reach 100, one decimal otherwise."""
    return ",.0f" if np.nanmax(np.abs(values)) >= 100 else ".1f"


def scores_markdown(scores: Mapping[str, Mapping[str, Score]], *, metric: str = "eval_return",
                    last: int = 1) -> str:
    """A Markdown table of :func:`final_scores`: per environment and algorithm, each seed's
    value, the mean over runs with its 95% interval, and the steps each run reached."""
    what = _evaluation_phrase(last)
    lines = [f"| environment | algorithm | {metric.replace('_', ' ')} per seed | mean [95% CI] | env steps | from |",
             "|---|---|---|---:|---|---|"]
    for env, per_algo in scores.items():
        for algo, sc in sorted(per_algo.items(), key=lambda kv: -kv[1].mean):
            f = _number_format(np.append(sc.values, sc.mean))
            per_seed = " / ".join(f"{v:{f}} (s{s})" for s, v in zip(sc.seeds, sc.values, strict=True))
            band = "" if np.isnan(sc.low) else f" [{sc.low:{f}}, {sc.high:{f}}]"
            steps = sorted(set(sc.steps.tolist()))
            reached = ", ".join(f"{t:,}" for t in steps) + ("" if len(steps) == 1 else " (unequal)")
            source = what if sc.source == TRAINING_SOURCE else sc.source
            lines.append(f"| {env} | {algo} | {per_seed} | {sc.mean:{f}}{band} | {reached} | {source} |")
    return "\n".join(lines) + "\n"


def plot_scores(scores: Mapping[str, Mapping[str, Score]], out: Path | str, *, metric: str = "eval_return",
                last: int = 1, title: str | None = None) -> Path:
    """The scoreboard: one panel per environment, one row per algorithm (best mean on top),
    a dot per run and the mean over runs with its 95% interval. A run that stopped short of
    the environment's longest run is drawn hollow. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not scores:
        raise ValueError("no scores to plot")
    algos = sorted({a for per_algo in scores.values() for a in per_algo})
    colours = {a: f"C{i % 10}" for i, a in enumerate(algos)}
    n_env = len(scores)
    n_cols = min(n_env, 3)
    n_rows = -(-n_env // n_cols)
    most = max(len(per_algo) for per_algo in scores.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.0 * n_cols, (0.55 * most + 1.3) * n_rows),
                             layout="constrained", squeeze=False)
    for ax in axes.ravel()[n_env:]:
        ax.set_visible(False)
    for ax, (env, per_algo) in zip(axes.ravel(), scores.items(), strict=False):
        ranked = sorted(per_algo.values(), key=lambda sc: sc.mean)  # best on top
        full = max(int(sc.steps.max()) for sc in ranked)
        for y, sc in enumerate(ranked):
            colour = colours[sc.algo]
            offsets = np.linspace(-0.15, 0.15, len(sc.values)) if len(sc.values) > 1 else np.zeros(1)
            done = sc.steps == full
            ax.scatter(sc.values[done], y + offsets[done], color=colour, s=22, zorder=3)
            ax.scatter(sc.values[~done], y + offsets[~done], facecolors="none", edgecolors=colour, s=22, zorder=3)
            if not np.isnan(sc.low):
                ax.plot([sc.low, sc.high], [y, y], color=colour, linewidth=2.5, alpha=0.5, zorder=2)
            ax.plot([sc.mean], [y], marker="|", color="black", markersize=14, zorder=4)
        ax.set_yticks(range(len(ranked)), [f"{sc.algo} ({len(sc.values)})" + ("" if sc.source == TRAINING_SOURCE
                                           else "\n" + sc.source) for sc in ranked], fontsize=8)
        ax.set_ylim(-0.6, len(ranked) - 0.4)
        ax.set_title(f"{env} ({full:,} steps)", fontsize=10)
        ax.set_xlabel(metric.replace("_", " "))
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title or f"final {metric.replace('_', ' ')} ({_evaluation_phrase(last)}, or the final evaluation where named): "
                          "a dot per seed, the mean (|) and its 95% bootstrap CI; hollow: run not finished",
                 fontsize=10)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
