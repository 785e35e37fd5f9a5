"""Where a learner's training time goes: the share of each part of a training chunk.

    python benchmarks/profile_train_time.py                       # STEP and MAPPO, HalfCheetah 6x1
    python benchmarks/profile_train_time.py --env merge/hard-v0 --algos step

After a warm-up collect, one chunk of ``--steps`` training steps is timed as a whole and in
parts, each part by wrapping its method with a timer: the adapter's env step
(``JointStepEnv.step``, which includes the raw parallel env), the raw env's own ``step``, the
policy forward in the collector, the batch preparation (GAE and the batched log-prob/value
pass) and the gradient updates. The rest is Tianshou's collector and trainer. Shares of one
run in one process; the machine's load moves the seconds, less the shares.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any


def _timed(cls: type, name: str, key: str, totals: defaultdict[str, float]) -> Callable[[], None]:
    """Wrap ``cls.name`` with a timer adding to ``totals[key]``; returns the undo."""
    original = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    setattr(cls, name, wrapper)
    return lambda: setattr(cls, name, original)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Measure and print; returns the seconds per part and algorithm (``wall`` the whole)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mamujoco/HalfCheetah-6x1-v0", help="a registered env id")
    parser.add_argument("--algos", nargs="+", default=["step", "mappo"],
                        choices=["step", "mappo", "ippo", "happo"], help="algorithms to measure")
    parser.add_argument("--steps", type=int, default=16_000, help="timed training steps (whole collects)")
    parser.add_argument("--seed", type=int, default=0, help="seed of learners and envs")
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")

    import envs
    from agents.adapter import JointStepEnv
    from agents.algorithm import STEPAlgorithm
    from agents.config import STEPConfig
    from agents.policy import STEPPolicy
    from agents.training import TrainingSession
    from runner.presets import algo_config

    try:
        raw_cls = type(envs.make(args.env))
    except (KeyError, ValueError) as exc:
        parser.error(f"--env: {exc}")
    family = args.env.split("/")[0]
    parts = {"adapter env step": (JointStepEnv, "step"), "  of which the raw env": (raw_cls, "step"),
             "policy forward (collector)": (STEPPolicy, "forward"),
             "GAE and batched log-prob/value": (STEPAlgorithm, "_preprocess_batch"),
             "gradient updates": (STEPAlgorithm, "_update_with_batch")}
    results: dict[str, dict[str, float]] = {}
    for algo in args.algos:
        config = algo_config(family, algo, {})
        if not isinstance(config, STEPConfig):  # the choices of --algos are PPO-family learners
            parser.error(f"--algos {algo}: expected one of step, mappo, ippo, happo")
        session = TrainingSession(lambda: envs.make(args.env), config=config,
                                  total_steps=10 * args.steps, seed=args.seed)
        session.train_steps(session.steps_per_chunk_unit)  # warm-up
        unit = session.steps_per_chunk_unit
        steps = -(-args.steps // unit) * unit
        totals: defaultdict[str, float] = defaultdict(float)
        undo = [_timed(cls, name, key, totals) for key, (cls, name) in parts.items()]
        try:
            start = time.perf_counter()
            session.train_steps(steps)
            wall = time.perf_counter() - start
        finally:
            for u in reversed(undo):
                u()
            session.close()
        accounted = sum(v for k, v in totals.items() if not k.startswith(" "))
        print(f"{algo}: {steps} steps of {args.env} in {wall:.2f} s")
        for key in parts:
            print(f"  {key:34s} {totals[key]:7.2f} s  {100 * totals[key] / wall:5.1f}%")
        print(f"  {'collector and trainer (the rest)':34s} {wall - accounted:7.2f} s  "
              f"{100 * (wall - accounted) / wall:5.1f}%")
        results[algo] = {"wall": wall, **totals}
    return results


if __name__ == "__main__":
    main()
