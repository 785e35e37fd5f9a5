"""Random-action speed of the Multi-Agent MuJoCo envs, raw and through ``stmg.wrap``.

Raw: the PettingZoo parallel API, one ``step`` per time step. Wrapped: ``stmg.wrap(env)`` (AEC
API), where one time step is one cycle of all agents, each reading its observation with
``last()`` and then stepping. Both are measured in one process, interleaved in rounds so that
machine noise hits both alike; each rate is that of the fastest round. Episode resets are
included in the time.

    python benchmarks/bench_envs_mamujoco.py                      # every mamujoco id
    python benchmarks/bench_envs_mamujoco.py --ids mamujoco/Ant-4x2-v0 --steps 2000
"""

from __future__ import annotations

import argparse

import numpy as np
from random_play import seconds_raw, seconds_wrapped  # sibling module: run as a script


def main(argv: list[str] | None = None) -> None:
    import envs
    import stmg

    all_ids = [i for i in envs.registered_ids() if i.startswith("mamujoco/")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", nargs="+", default=all_ids, metavar="ID",
                        help=f"environment ids (default: all {len(all_ids)} mamujoco ids)")
    parser.add_argument("--steps", type=int, default=500,
                        help="time steps per measurement and API, summed over rounds (default: 500)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved raw/wrapped rounds per id (default: 3)")
    parser.add_argument("--episode-length", type=int, default=1000,
                        help="episode_length of the envs (default: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = [i for i in args.ids if i not in all_ids]
    if unknown:
        parser.error(f"unknown ids {unknown}; choose from {all_ids}")
    if args.steps < args.rounds or args.rounds < 1:
        parser.error("need --rounds >= 1 and --steps >= --rounds")

    per_round = args.steps // args.rounds
    rows = []
    for env_id in args.ids:
        raw = envs.make(env_id, episode_length=args.episode_length)
        game = stmg.wrap(envs.make(env_id, episode_length=args.episode_length))
        seconds_raw(raw, 20, args.seed)  # warm-up
        seconds_wrapped(game, 20, args.seed)
        raw_times, wrapped_times = [], []
        for r in range(args.rounds):
            raw_times.append(seconds_raw(raw, per_round, args.seed + r))
            wrapped_times.append(seconds_wrapped(game, per_round, args.seed + r))
        # best round of each: the least disturbed by other load on the machine (as timeit does)
        rows.append((env_id, len(raw.possible_agents),
                     per_round / min(raw_times), per_round / min(wrapped_times)))
        raw.close()
        game.close()

    print(f"random actions; {args.rounds} interleaved rounds of {per_round} time steps per API; "
          "rate of the fastest round")
    header = f"{'id':<32} {'agents':>6} {'raw steps/s':>12} {'wrapped steps/s':>16} {'wrapped/raw':>12}"
    print(header)
    print("-" * len(header))
    for env_id, n_agents, raw_sps, wrapped_sps in rows:
        print(f"{env_id:<32} {n_agents:>6} {raw_sps:>12,.0f} {wrapped_sps:>16,.0f} {wrapped_sps / raw_sps:>12.2f}")
    ratios = np.array([w / r for _, _, r, w in rows])
    print(f"geometric mean wrapped/raw: {np.exp(np.log(ratios).mean()):.2f}")


if __name__ == "__main__":
    main()
