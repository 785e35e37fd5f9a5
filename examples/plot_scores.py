"""The scoreboard of many experiments: every run's final result on one page, and as a table.

    python examples/plot_scores.py docs/experiments/halfcheetah_2x3 docs/experiments/ant_4x2 --out scores.png
    python examples/plot_scores.py runs/beta0 runs/beta10 --labels beta=0 beta=10 --last 3 --out beta.png
    python examples/plot_scores.py runs/* --out scores.png --markdown scores.md

Per environment, one row per algorithm (best mean on top): a dot for each seed's evaluation
return at its run's last evaluation (``--last K``: the mean of its last K evaluations), the
mean over seeds and its 95% bootstrap confidence interval (rliable; SciPy if rliable is
missing). Runs that have not reached the environment's longest run are drawn hollow and their
steps are listed, so that partial results are not mistaken for final ones. The same numbers
are printed as a Markdown table (and written to ``--markdown FILE``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.plots import final_scores, plot_scores, read_curves, scores_markdown


def main(argv: Sequence[str] | None = None) -> Path:
    """Read the curves, draw the scoreboard, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="training output directories (each holds curves.csv) or curves CSV files")
    parser.add_argument("--out", required=True, help="image to write (.png, .pdf or .svg)")
    parser.add_argument("--metric", default="eval_return",
                        help="curves.csv column to score (default: eval_return)")
    parser.add_argument("--last", type=int, default=1,
                        help="average each run's last K evaluations (default: 1, the last one)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="one label per DIR, added to its algorithms' names (e.g. beta=0 beta=10; '' for none)")
    parser.add_argument("--algos", nargs="+", default=None, metavar="ALGO",
                        help="only these algorithms (default: every algorithm found)")
    parser.add_argument("--title", default=None, help="figure title (default: says what is shown)")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args(argv)
    if args.reps < 100:
        parser.error(f"--reps {args.reps} is too few for a 95% interval; use at least 100")
    if args.last < 1:
        parser.error(f"--last {args.last}: expected at least 1 evaluation to average")
    try:
        rows = read_curves(args.dirs, labels=args.labels, algos=args.algos)
        if not rows:
            parser.error(f"no rows of the algorithms {args.algos} in {args.dirs}")
        scores = final_scores(rows, args.metric, last=args.last, reps=args.reps)
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


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
