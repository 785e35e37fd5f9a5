"""One STMG time step handed to the wrapper whole (``STMGEnv.step_time_step``) against agent by
agent (``STMGEnv.step`` per agent), through the learner's adapter, with the raw env for scale.

    python benchmarks/bench_adapter_step.py                         # HalfCheetah 6x1
    python benchmarks/bench_adapter_step.py --env merge/hard-v0

The same pre-drawn joint actions in each variant; rounds interleaved, the best round counts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print; returns microseconds per time step of each variant."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mamujoco/HalfCheetah-6x1-v0", help="a registered env id")
    parser.add_argument("--steps", type=int, default=2000, help="time steps per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the best counts)")
    args = parser.parse_args(argv)
    for name in ("steps", "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")

    import envs
    from agents.adapter import JointStepEnv

    try:
        whole = JointStepEnv(env=envs.make(args.env), info_flags=False)
    except (KeyError, ValueError) as exc:
        parser.error(f"--env: {exc}")
    by_agent = JointStepEnv(env=envs.make(args.env), info_flags=False)
    game = by_agent.game

    def agent_by_agent(actions: Mapping[str, Any]) -> None:
        for agent in list(game.current_order):
            game.step(actions[agent])

    game.step_time_step = agent_by_agent  # type: ignore[method-assign]
    raw = envs.make(args.env)
    space = whole.action_space
    space.seed(0)
    actions = [space.sample() for _ in range(args.steps)]
    raw_actions = [{a: whole.spec_.env_action(k, act[k]) for k, a in enumerate(raw.possible_agents)}
                   for act in actions]

    def run_adapter(env: JointStepEnv) -> float:
        env.reset(seed=0)
        start = time.perf_counter()
        for act in actions:
            _, _, terminated, truncated, _ = env.step(act)
            if terminated or truncated:
                env.reset()
        return time.perf_counter() - start

    def run_raw() -> float:
        raw.reset(seed=0)
        start = time.perf_counter()
        for act in raw_actions:
            raw.step(act)
            if not raw.agents:
                raw.reset()
        return time.perf_counter() - start

    best = {"raw env": np.inf, "adapter, agent by agent": np.inf, "adapter, whole time step": np.inf}
    for _ in range(args.rounds):
        best["raw env"] = min(best["raw env"], run_raw())
        best["adapter, agent by agent"] = min(best["adapter, agent by agent"], run_adapter(by_agent))
        best["adapter, whole time step"] = min(best["adapter, whole time step"], run_adapter(whole))
    per_step = {k: 1e6 * v / args.steps for k, v in best.items()}
    print(f"{args.env}, {args.steps} time steps, best of {args.rounds} rounds:")
    for key, us in per_step.items():
        print(f"  {key:26s} {us:8.1f} us/step")
    ratio = per_step["adapter, whole time step"] / per_step["adapter, agent by agent"]
    print(f"  whole / agent by agent: {ratio:.3f}")
    return per_step


if __name__ == "__main__":
    main()
