"""The scoreboard of many experiments: every run's final result on one page, and as a table.

    python examples/plot_scores.py docs/experiments/halfcheetah_2x3 docs/experiments/ant_4x2 --out scores.png
    python examples/plot_scores.py runs/beta0 runs/beta10 --labels beta=0 beta=10 --last 3 --out beta.png
    python examples/plot_scores.py runs/* --out scores.png --markdown scores.md

Per environment, one row per algorithm (best mean on top): a dot for each seed's evaluation
return at its run's last evaluation (``--last K``: the mean of its last K evaluations), the
mean over seeds and its 95% bootstrap confidence interval (rliable; SciPy if rliable is
missing). Runs that have not reached the environment's longest run are drawn hollow and their
steps are listed, so that partial results are not mistaken for final ones. With
``--final-evals``, a run that ``DIR/final_eval.csv`` (``examples/evaluate.py --csv``) has
evaluated is scored by that final evaluation instead, and the table says so. The same numbers
are printed as a Markdown table (and written to ``--markdown FILE``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.plots import (
    add_curve_arguments,
    final_scores,
    plot_scores,
    read_curve_arguments,
    read_final,
    scores_markdown,
)


def main(argv: Sequence[str] | None = None) -> Path:
    """Read the curves, draw the scoreboard, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_curve_arguments(parser, metric_help="curves.csv column to score")
    parser.add_argument("--last", type=int, default=1,
                        help="average each run's last K evaluations (default: 1, the last one)")
    parser.add_argument("--min-steps", type=int, default=0, metavar="N",
                        help="score only the runs whose last evaluation is at N environment steps or more "
                             "(leave out runs still in progress; default: every run)")
    parser.add_argument("--final-evals", action="store_true",
                        help="score a run by its final evaluation where DIR/final_eval.csv (written by "
                             "examples/evaluate.py --csv) has one, instead of its training-time evaluations")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last {args.last}: expected at least 1 evaluation to average")
    rows = read_curve_arguments(parser, args)
    if args.min_steps > 0:
        rows = runs_that_reached(rows, args.min_steps)
        if not rows:
            parser.error(f"no run in {args.dirs} reached --min-steps {args.min_steps}")
    try:
        final = final_rows(args.dirs, args.labels, args.algos, args.seeds) if args.final_evals else None
        scores = final_scores(rows, args.metric, last=args.last, reps=args.reps, final=final)
        path = plot_scores(scores, args.out, metric=args.metric, last=args.last, title=args.title)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    table = scores_markdown(scores, metric=args.metric, last=args.last)
    print(f"wrote {path} ({len(rows)} evaluations)")
    print(table, end="")
    if args.markdown:
        Path(args.markdown).write_text(table)
        print(f"wrote {args.markdown}")
    return path


def runs_that_reached(rows: Sequence[dict[str, str]], steps: int) -> list[dict[str, str]]:
    """The rows of the runs (env, algo, seed) whose last evaluation is at ``steps`` or more."""
    reached: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row["env"], row["algo"], row["seed"])
        reached[key] = max(reached.get(key, 0), int(row["env_steps"]))
    return [row for row in rows if reached[(row["env"], row["algo"], row["seed"])] >= steps]


def final_rows(dirs: Sequence[str], labels: Sequence[str] | None, algos: Sequence[str] | None,
               seeds: Sequence[int] | None = None) -> list[dict[str, str]]:
    """The rows of every ``DIR/final_eval.csv`` that exists, labelled as that DIR's curves are."""
    rows: list[dict[str, str]] = []
    for k, directory in enumerate(dirs):
        table = Path(directory) / "final_eval.csv"
        if not table.is_file():
            continue
        for row in read_final([table], algos=algos, seeds=seeds):
            if labels is not None and labels[k]:
                row["algo"] = f"{row['algo']} {labels[k]}"
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
