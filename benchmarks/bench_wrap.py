"""Cost of one AEC turn through stmg.wrap against PettingZoo's parallel_to_aec, same env.

Both loops are the standard AEC loop (``agent_iter`` / ``last`` / ``step``) with actions drawn
in advance, measured interleaved in one process (several rounds, best round kept for each) so
that machine noise hits both alike. Prints the cost ratio stmg / parallel_to_aec per env.

    python benchmarks/bench_wrap.py --help
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec

import envs
import stmg


def _pettingzoo_aec(env_id: str) -> Any:
    """The reference: PettingZoo's own parallel-to-AEC conversion of ``env_id``."""
    return parallel_to_aec(envs.make(env_id))


def _stmg_game(env_id: str, flatten: bool) -> Any:
    """Ours: ``env_id`` wrapped by ``stmg.wrap``."""
    return stmg.wrap(envs.make(env_id), flatten=flatten)


def seconds_per_turn(make_aec: Callable[[], Any], turns: int, seed: int) -> float:
    """Best-effort wall time of one AEC turn (last + step) over ``turns`` turns."""
    env = make_aec()
    env.reset(seed=seed)
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    for space in spaces.values():
        space.seed(seed)
    actions = {a: [spaces[a].sample() for _ in range(256)] for a in env.possible_agents}
    done = 0
    start = time.perf_counter()
    while done < turns:
        for agent in env.agent_iter(turns - done):
            _, _, terminated, truncated, _ = env.last()
            env.step(None if terminated or truncated else actions[agent][done % 256])
            done += 1
        env.reset()
    return (time.perf_counter() - start) / max(done, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20_000, help="AEC turns per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is kept")
    parser.add_argument(
        "--envs", nargs="+", default=["matrix/penalty-v0", "mamujoco/HalfCheetah-6x1-v0"],
        help="registry ids to measure (mamujoco ids need the 'mujoco' extra)",
    )
    parser.add_argument("--flatten", action="store_true", help="measure stmg's flat observation form")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"{'env':32s} {'parallel_to_aec us/turn':>24s} {'stmg.wrap us/turn':>18s} {'ratio':>6s}")
    for env_id in args.envs:
        try:
            envs.make(env_id).close()
        except ImportError as exc:
            print(f"{env_id:32s} skipped: {exc}")
            continue
        reference: list[float] = []
        wrapped: list[float] = []
        for _ in range(args.rounds):  # interleaved: A, B, A, B, ...
            reference.append(seconds_per_turn(partial(_pettingzoo_aec, env_id), args.turns, args.seed))
            wrapped.append(seconds_per_turn(partial(_stmg_game, env_id, args.flatten), args.turns, args.seed))
        ref, ours = min(reference), min(wrapped)
        print(f"{env_id:32s} {ref * 1e6:24.2f} {ours * 1e6:18.2f} {ours / ref:6.2f}")


if __name__ == "__main__":
    main()
