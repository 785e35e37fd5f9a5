"""Random-action speed of the on-ramp merging envs against highway-env's stock ``merge-v0``.

Measured in one process, interleaved in rounds (every configuration runs once per round) so
that machine noise hits all alike; each rate is that of the fastest round, and episode resets
are included in the time. Configurations:

* ``merge-v0``: highway-env's single-vehicle merge env through ``gymnasium.make`` (the
  reference; 1 Hz policy, 15 simulation frames per step, pandas observation).
* ``merge/{easy,medium,hard}-v0``: ours, raw PettingZoo parallel API (5 Hz policy,
  3 simulation frames per step), fast numpy observations.
* the same through ``stmg.wrap`` (AEC API): one time step = one cycle of every living agent,
  each reading ``last()`` then stepping.
* with ``--stock-obs`` (default on): ours with ``observation_impl="stock"`` (highway-env's
  pandas observer), raw.

The last column converts steps/s to simulated seconds per wall-clock second, since one stock
step covers 1 s of traffic and one of ours 0.2 s.

    python benchmarks/bench_envs_merge.py
    python benchmarks/bench_envs_merge.py --steps 300 --rounds 5 --no-stock-obs
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from random_play import seconds_raw, seconds_wrapped  # sibling module: run as a script

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

IDS = ["merge/easy-v0", "merge/medium-v0", "merge/hard-v0"]


def _gym_run(env: Any, steps: int, seed: int) -> float:
    """Seconds for ``steps`` steps of a single-agent gymnasium env with random actions."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Random-action steps/s of highway-env merge-v0 and merge/*-v0, raw and "
        "through stmg.wrap, measured interleaved in one process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=400, help="time steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stock-obs", action=argparse.BooleanOptionalAction, default=True,
        help="also time our envs with highway-env's pandas observation path",
    )
    parser.add_argument(
        "--stock-obs-steps", type=int, default=100,
        help="time steps per measurement of the (slow) stock-observation configurations",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.stock_obs_steps < 1:
        parser.error("--steps, --rounds and --stock-obs-steps must be >= 1")

    import gymnasium as gym
    import highway_env  # noqa: F401  (registers merge-v0)

    import envs
    import stmg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # merge-v0 is flagged "out of date" by gymnasium
        stock = gym.make("merge-v0")

    # name -> (run, env, steps, policy period in s)
    configs: dict[str, tuple[Callable[[Any, int, int], float], Any, int, float]] = {
        "merge-v0 (highway-env, 1 vehicle)": (_gym_run, stock, args.steps, 1.0),
    }
    for env_id in IDS:
        configs[f"{env_id} raw"] = (seconds_raw, envs.make(env_id), args.steps, 0.2)
    for env_id in IDS:
        configs[f"{env_id} stmg.wrap"] = (seconds_wrapped, stmg.wrap(envs.make(env_id)), args.steps, 0.2)
    if args.stock_obs:
        for env_id in IDS:
            env = envs.make(env_id, observation_impl="stock")
            configs[f"{env_id} raw, stock obs"] = (seconds_raw, env, args.stock_obs_steps, 0.2)

    best: dict[str, float] = dict.fromkeys(configs, 0.0)
    for _ in range(args.rounds):
        for name, (run, env, steps, _) in configs.items():
            seconds = run(env, steps, args.seed)
            best[name] = max(best[name], steps / seconds)

    width = max(len(n) for n in configs)
    print(f"random actions, best of {args.rounds} interleaved rounds")
    print(f"{'configuration':<{width}}  {'steps/s':>9}  {'sim s / s':>9}")
    for name, (_, _, _, period) in configs.items():
        print(f"{name:<{width}}  {best[name]:>9.1f}  {best[name] * period:>9.1f}")
    reference = best["merge-v0 (highway-env, 1 vehicle)"]
    print(f"merge/hard-v0 raw / merge-v0 steps/s: {best['merge/hard-v0 raw'] / reference:.2f}x")
    if args.stock_obs:
        for env_id in IDS:
            ratio = best[f"{env_id} raw"] / best[f"{env_id} raw, stock obs"]
            print(f"{env_id}: fast / stock observation path: {ratio:.1f}x")
    for _, env, _, _ in configs.values():
        env.close()


if __name__ == "__main__":
    main()
