"""Benchmark: training on full-size images with glibc's default allocator settings against
:func:`agents.allocator.reuse_freed_memory` (what ``build_learner`` applies to image games).

The setting is process-wide and cannot be undone within a process, so each measurement runs in
a fresh subprocess, the two kinds alternating in rounds so that machine noise hits both alike;
the fastest round of each counts. One measurement: STEP with the general defaults on
pistonball (``--pistons`` pistons, 457x120x3 images), a warm-up collect and update, then
``--steps`` timed training steps; it reports wall-clock, user and kernel seconds and the minor
page faults of the timed part.

    python benchmarks/bench_image_memory.py
    python benchmarks/bench_image_memory.py --pistons 4 --steps 800 --rounds 1

Needs PettingZoo's butterfly environments (``pip install 'pettingzoo[butterfly]'``, part of the
``test`` extra).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def measure(mode: str, pistons: int, steps: int, n_envs: int, steps_per_collect: int) -> dict[str, float]:
    """One measurement in this process; ``mode`` "default" keeps glibc's settings."""
    sys.path.insert(0, str(ROOT))
    import agents.training
    from agents.config import STEPConfig

    if mode == "default":
        agents.training.reuse_freed_memory = lambda: False  # type: ignore[attr-defined]
    from pettingzoo.butterfly import pistonball_v6

    config = STEPConfig(n_envs=n_envs, steps_per_collect=steps_per_collect)
    session = agents.training.TrainingSession(
        lambda: pistonball_v6.parallel_env(n_pistons=pistons, max_cycles=50), config=config,
        total_steps=steps + steps_per_collect, seed=0)
    session.train_steps(steps_per_collect)  # warm-up
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    session.train_steps(steps)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    session.close()
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "faults": float(after.ru_minflt - before.ru_minflt), "peak_mb": after.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pistons", type=int, default=2, help="pistons (agents) of pistonball")
    parser.add_argument("--steps", type=int, default=400, help="timed training steps per measurement")
    parser.add_argument("--n-envs", type=int, default=4, help="training envs")
    parser.add_argument("--steps-per-collect", type=int, default=200, help="steps per collect and update")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the fastest counts)")
    parser.add_argument("--child", choices=("default", "raised"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("pistons", "steps", "n_envs", "steps_per_collect", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected at least 1")
    if args.child:
        print(json.dumps(measure(args.child, args.pistons, args.steps, args.n_envs, args.steps_per_collect)))
        return {}
    best: dict[str, dict[str, Any]] = {}
    options = ["--pistons", str(args.pistons), "--steps", str(args.steps), "--n-envs", str(args.n_envs),
               "--steps-per-collect", str(args.steps_per_collect)]
    for _ in range(args.rounds):
        for mode in ("default", "raised"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, *options], capture_output=True,
                                 text=True, cwd=ROOT)
            if out.returncode != 0:
                raise SystemExit(f"the {mode} measurement failed:\n{out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if mode not in best or result["wall"] < best[mode]["wall"]:
                best[mode] = result
    print(f"pistonball, {args.pistons} pistons, {args.steps} STEP training steps (fastest of {args.rounds} rounds)")
    print(f"{'allocator':26s} {'wall s':>8s} {'user s':>8s} {'kernel s':>9s} {'page faults':>12s} {'peak MB':>8s}")
    for mode, label in (("default", "glibc defaults"), ("raised", "reuse_freed_memory()")):
        r = best[mode]
        print(f"{label:26s} {r['wall']:8.1f} {r['user']:8.1f} {r['sys']:9.1f} {r['faults']:12.0f} {r['peak_mb']:8.0f}")
    d, r = best["default"], best["raised"]
    print(f"ratio defaults / reuse_freed_memory(): wall {d['wall'] / r['wall']:.2f}x, kernel time "
          f"{d['sys'] / max(r['sys'], 1e-9):.1f}x, page faults {d['faults'] / max(r['faults'], 1.0):.1f}x")
    return best


if __name__ == "__main__":
    main()
