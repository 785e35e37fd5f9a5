"""Train STEP (or MAPPO) on the continuous leader-follower QuadraticGame over several seeds.

    python examples/train_continuous.py --seeds 5 --steps 60000
    python examples/train_continuous.py --algo mappo --seeds 3 --steps 30000 --out mappo.json

QuadraticGame (``envs/continuous.py``): leader x, follower y in [-1, 1]; follower reward
-(y - 0.5 x)^2, leader reward -(y - 0.4)^2 - 0.1 x^2. Stackelberg equilibrium x* = 0.571,
y* = 0.286; the simultaneous Nash equilibrium is (0, 0). For each seed the script prints the
greedy (x, y), the follower's distance from its best response |y - 0.5 x| and its greedy
replies to the forced leader actions -0.4, 0, 0.4; ``--out`` writes them all as JSON.
Training uses ``STEPConfig.continuous_games()``.

With ``--out OUT.json`` every finished seed is also appended to ``OUT.json.trials.jsonl`` as it
completes; after an interruption (Ctrl-C, SIGTERM, a failing seed) the same command trains
only the missing seeds and writes the summary an uninterrupted run would (timings aside).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.config import STEPConfig, Variant  # noqa: E402
from runner.journal import (  # noqa: E402
    ResumeMismatchError,
    TrialJournal,
    check_output_path,
    run_trials,
    write_json_atomically,
)
from runner.matrix_trials import QuadraticTrialResult, run_quadratic_trial  # noqa: E402


def _trial(job: tuple[dict[str, Any], int, int]) -> dict[str, Any]:
    config, steps, seed = job
    return run_quadratic_trial(config=STEPConfig.from_dict(config), steps=steps, seed=seed).to_dict()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=[v.value for v in Variant], default="step",
                        help="STEP or a PPO baseline on the same machinery")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=60_000, help="environment steps per seed")
    parser.add_argument("--workers", type=int, default=2, help="processes running seeds")
    parser.add_argument("--out", default=None,
                        help="write the per-seed results here (JSON); finished seeds are kept in "
                             "OUT.trials.jsonl meanwhile, so that the same command resumes")
    args = parser.parse_args(argv)
    for name in ("seeds", "steps", "workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.out is not None:
        try:  # now, not after the training
            check_output_path(args.out)
        except OSError as exc:
            parser.error(f"--out: {exc}")
    config = STEPConfig.continuous_games(variant=Variant(args.algo))
    jobs = [(f"seed={seed}", (config.to_dict(), args.steps, seed)) for seed in range(args.seeds)]
    journal = None
    if args.out is not None:
        settings = {"script": "train_continuous", "algo": args.algo, "steps": args.steps,
                    "config": config.to_dict()}
        try:
            journal = TrialJournal(Path(args.out).with_name(Path(args.out).name + ".trials.jsonl"), settings)
        except (ResumeMismatchError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from None
    try:
        records = run_trials(jobs, _trial, workers=args.workers, journal=journal, desc="seeds")
    finally:
        if journal is not None:
            journal.close()
    results = [QuadraticTrialResult(**record) for record in records]
    print(f"{args.algo} on QuadraticGame, {args.steps} steps per seed (x* = {results[0].x_star:.3f})")
    print(" seed       x       y   |y-0.5x|   |x-x*|   replies to x = -0.4, 0, 0.4      s")
    for r in results:
        print(f"{r.seed:5d}  {r.x:6.3f}  {r.y:6.3f}   {r.best_response_gap:7.3f}  {abs(r.x - r.x_star):7.3f}"
              f"   {', '.join(f'{v:6.3f}' for v in r.replies)}   {r.seconds:5.1f}")
    xs = np.array([r.x for r in results])
    print(f"mean x {xs.mean():.3f} (|mean - x*| = {abs(xs.mean() - results[0].x_star):.3f}); "
          f"within 0.1 of x*: {int((abs(xs - results[0].x_star) < 0.1).sum())}/{len(results)}; "
          f"max |y - 0.5x| {max(r.best_response_gap for r in results):.3f}")
    summary = {"algo": args.algo, "steps": args.steps, "config": config.to_dict(), "trials": records}
    if args.out is not None and journal is not None:
        write_json_atomically(args.out, summary)
        journal.remove()  # the summary now holds every seed
    return summary


if __name__ == "__main__":
    main()
