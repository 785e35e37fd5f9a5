"""Train STEP and baselines (algorithms x seeds) on any PettingZoo ParallelEnv with periodic
greedy evaluation; see ``--help`` for every option.

    python examples/train.py --env mamujoco/HalfCheetah-2x3-v0 --algo step happo mappo \\
        --steps 1000000 --seeds 0 1 2 --out runs/halfcheetah
    python examples/train.py ... --resume
    python examples/train.py ... --status          # where every run stands; trains nothing
    python examples/plot_curves.py runs/halfcheetah --out halfcheetah.png
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from runner.cli import parse_train_args
from runner.journal import Interrupted
from runner.launch import LaunchError, launch
from runner.run import RunError, RunResult, RunSpec, RunStatus, run_status


def main(argv: Sequence[str] | None = None) -> list[RunResult] | list[RunStatus]:
    """Parse the options, run every (algorithm, seed), print the last evaluation of each
    (with ``--status``: print where each run stands instead, and train nothing)."""
    args, specs = parse_train_args(argv)
    if args.status:
        return print_status(specs, args.out)
    print(f"{len(specs)} run(s) of {args.env}: {', '.join(args.algos)} x seeds {args.seeds} -> {args.out}/curves.csv",
          flush=True)
    try:
        results = launch(specs, args.out, workers=args.workers, ray_address=args.ray, resume=args.resume,
                         show_progress=args.progress, subprocess_envs=args.subprocess_envs,
                         population=args.population,
                         missing_replay=args.missing_replay)
    except (LaunchError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\n{exc or 'interrupted'}: every finished evaluation is in {args.out}/curves.csv; run the same command "
              "with --resume to continue from the last checkpoints", file=sys.stderr)
        raise SystemExit(128 + getattr(exc, "signum", signal.SIGINT)) from None
    for r in results:
        shown = "n/a" if r.eval_return is None else f"{r.eval_return:.3f}"
        print(f"{r.algo:7s} seed {r.seed}: {r.env_steps} steps, last eval_return {shown}  ({r.run_dir})")
    return results


def print_status(specs: Sequence[RunSpec], out: str) -> list[RunStatus]:
    """One line per run of the command: its state, steps done, returns and training time."""
    try:
        statuses = [run_status(spec, out) for spec in specs]
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    for st in statuses:
        returns = "" if st.last_return is None else f", last eval_return {st.last_return:.3f}"
        if st.best_return is not None:
            returns += f", best {st.best_return:.3f}"
        detail = f" ({st.detail})" if st.detail else ""
        print(f"{st.algo:7s} seed {st.seed}: {st.state}{detail}, {st.env_steps:,}/{st.steps:,} steps{returns}, "
              f"{st.wall_s / 60:.1f} min of training")
    left = [st for st in statuses if st.state in ("not started", "in progress")]
    steps_left = sum(st.steps - st.env_steps for st in left)
    print(f"{len(statuses) - len(left)} of {len(statuses)} runs complete or not resumable; {len(left)} to go "
          f"({steps_left:,} steps): continue with the same command and --resume")
    return statuses


if __name__ == "__main__":
    main()
