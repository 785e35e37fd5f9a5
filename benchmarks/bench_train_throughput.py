"""Training throughput against the environment's own pace.

For each algorithm: environment steps per second while training (collection and updates, wall
clock, one process, ``agents.training.TrainingSession``) divided by random-action steps per
second of the raw parallel env in the same process. Training and random play alternate in
rounds, so that machine noise hits both alike; each rate is that of the fastest round.

    python benchmarks/bench_train_throughput.py                                   # HalfCheetah 6x1
    python benchmarks/bench_train_throughput.py --env merge/hard-v0 --algos step
    python benchmarks/bench_train_throughput.py --steps 8000 --rounds 2           # quicker
    python benchmarks/bench_train_throughput.py --subprocess-envs                 # envs in subprocesses

``--subprocess-envs`` steps the training envs in subprocesses (Tianshou's ``SubprocVectorEnv``,
what ``examples/train.py --subprocess-envs`` uses); the raw env is still played in this process,
so the ratio then says how much the other cores buy.

The first collect of each learner (numba compilation, allocation) is excluded: every round
trains ``--steps`` more steps on an already warmed-up session. The preset of the env family is
used (``STEPConfig.mujoco()`` for MA-MuJoCo, ``STEPConfig.merge()`` for merging).
"""

from __future__ import annotations

import argparse
import time

from random_play import seconds_raw  # sibling module: run as a script


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print; returns the ratio per algorithm."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mamujoco/HalfCheetah-6x1-v0", help="a registered env id")
    parser.add_argument("--algos", nargs="+", default=["step", "mappo", "happo"],
                        choices=["step", "mappo", "ippo", "happo"], help="algorithms to measure")
    parser.add_argument("--steps", type=int, default=16_000,
                        help="training steps per round and algorithm (rounded up to whole collects)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the fastest counts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of learners and envs")
    parser.add_argument("--subprocess-envs", action="store_true",
                        help="step the training envs in subprocesses (SubprocVectorEnv)")
    args = parser.parse_args(argv)
    for name in ("steps", "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")

    import envs
    from agents.config import STEPConfig, Variant
    from agents.training import TrainingSession
    from runner.presets import algo_config

    try:
        raw_env = envs.make(args.env)
    except (KeyError, ValueError) as exc:
        parser.error(f"--env: {exc}")
    family = args.env.split("/")[0]
    sessions = {}
    for algo in args.algos:
        config = algo_config(family, algo, {})  # the harness's preset of this family
        if not isinstance(config, STEPConfig) or config.variant is not Variant(algo):
            raise TypeError(f"{algo}: expected a STEPConfig preset, got {config!r}")
        session = TrainingSession(lambda: envs.make(args.env), config=config,
                                  total_steps=10 * args.rounds * args.steps, seed=args.seed,
                                  subprocess=args.subprocess_envs)
        session.train_steps(session.steps_per_chunk_unit)  # warm-up: compilation, first allocations
        sessions[algo] = session
    raw_rate, train_rate = 0.0, {algo: 0.0 for algo in args.algos}
    for r in range(args.rounds):
        raw_rate = max(raw_rate, args.steps / seconds_raw(raw_env, args.steps, args.seed + r))
        for algo, session in sessions.items():
            unit = session.steps_per_chunk_unit
            steps = -(-args.steps // unit) * unit
            start = time.perf_counter()
            session.train_steps(steps)
            train_rate[algo] = max(train_rate[algo], steps / (time.perf_counter() - start))
    where = "in subprocesses" if args.subprocess_envs else "in this process"
    print(f"training envs stepped {where}")
    print(f"{args.env}: random-action raw env {raw_rate:,.0f} steps/s (fastest of {args.rounds} rounds)")
    ratios = {}
    for algo in args.algos:
        ratios[algo] = train_rate[algo] / raw_rate
        print(f"  {algo:6s} training {train_rate[algo]:8,.0f} steps/s   ratio to the raw env {ratios[algo]:.3f}")
    for session in sessions.values():
        session.close()
    return ratios


if __name__ == "__main__":
    main()
