"""Plot learning curves from one or more training output directories.

    python examples/plot_curves.py runs/halfcheetah runs/halfcheetah-more --out halfcheetah.png
    python examples/plot_curves.py runs/merge-easy runs/merge-medium runs/merge-hard --out merge.png
    python examples/plot_curves.py runs/beta0 runs/beta1 --labels beta=0 beta=1 --algos step --out beta.png
    python examples/plot_curves.py runs/beta0 runs/beta1 --seeds 0 1 --out beta.png  # finished seeds only
    python examples/plot_curves.py runs/merge-easy --final runs/merge-easy/final_eval.csv --out merge.png

Per environment: mean evaluation return over seeds per algorithm against environment steps,
with a 95% bootstrap confidence band (rliable; SciPy if rliable is missing). For on-ramp
merging also bar charts of the final policies' average speed and collision rate: each run's
last evaluation during training, or with --final the final evaluations that
examples/evaluate.py --csv wrote (and a table of them is printed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runner.plots import (
    add_curve_arguments,
    final_table,
    final_values,
    mean_interval,
    plot_curves,
    read_curve_arguments,
    read_final,
)


def main(argv: Sequence[str] | None = None) -> Path:
    """Read the curves, draw the figure, print where it went."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_curve_arguments(parser, metric_help="curves.csv column to plot against env_steps")
    parser.add_argument("--final", nargs="+", default=None, metavar="CSV",
                        help="final-evaluation tables (examples/evaluate.py --csv): the bar charts show "
                             "these instead of each run's last evaluation, and a table of them is printed")
    args = parser.parse_args(argv)
    rows = read_curve_arguments(parser, args)
    try:
        final = read_final(args.final, algos=args.algos, seeds=args.seeds) if args.final else None
        path = plot_curves(rows, args.out, metric=args.metric, reps=args.reps, title=args.title, final=final)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    print(f"wrote {path} ({len(rows)} evaluations)")
    print_last(rows, metric=args.metric, reps=args.reps)
    if final:
        print_final(final, reps=args.reps)
    return path


def print_last(rows: Sequence[dict[str, str]], *, metric: str, reps: int) -> None:
    """Per env and algorithm: ``metric`` at each run's last evaluation (the seeds' values and
    steps reached) and their mean with a 95% bootstrap interval."""
    last = final_values(rows, metric)
    last3 = final_values(rows, metric, last=3)
    steps = final_values(rows, "env_steps")
    print(f"last evaluation of each run: {metric}, mean over seeds [95% bootstrap CI]; "
          "then the mean over seeds of each run's last 3 evaluations")
    for env, per_algo in last.items():
        for algo, scores in per_algo.items():
            mean, low, high = (float(v[0]) for v in mean_interval(scores[:, None], reps=reps))
            band = "" if np.isnan(low) else f" [{low:.1f}, {high:.1f}]"
            reached = ", ".join(f"{v:.1f} ({int(t):,} steps)" for v, t in zip(scores, steps[env][algo], strict=True))
            print(f"  {env}  {algo}: {mean:.1f}{band}  seeds: {reached}; last 3: {last3[env][algo].mean():.1f}")


def print_final(rows: Sequence[dict[str, str]], *, reps: int) -> None:
    """Per env and algorithm: the mean over runs of each final-evaluation metric, 95% CI."""
    metrics = [m for m in ("eval_return", "avg_speed", "collision_rate") if final_table(rows, m)]
    tables = {m: final_table(rows, m) for m in metrics}
    print("final evaluations: mean over runs [95% bootstrap CI]")
    for env, per_algo in tables[metrics[0]].items():
        for algo in per_algo:
            cells = []
            for m in metrics:
                scores = tables[m].get(env, {}).get(algo)
                if scores is None or scores.size == 0:
                    continue
                mean, low, high = (float(v[0]) for v in mean_interval(scores[:, None], reps=reps))
                band = "" if np.isnan(low) else f" [{low:.2f}, {high:.2f}]"
                cells.append(f"{m} {mean:.2f}{band}")
            print(f"  {env}  {algo} ({per_algo[algo].size} runs): " + "  ".join(cells))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
