"""Quickstart: train STEP on the Penalty game (k = -100) and compare with its Stackelberg equilibrium.

    python examples/quickstart.py            # 4 seeds of 10,000 steps: about 30 s
    python examples/quickstart.py --seeds 1 --seed 3 --steps 2000

Agent_0 is the leader, agent_1 the follower. The only SE of Penalty is (a1, a3) -- action
indices (0, 2) -- with payoff 10 for both; simultaneous learners usually settle on (a2, a2).
STEP finds the SE in most seeds but not all (docs/RESULTS.md: over 100 seeds), so the
quickstart trains a few seeds and reports each one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import envs  # noqa: E402
from agents import STEPConfig, matrix_game_report, train  # noqa: E402
from envs import matrix  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train, report; returns how many seeds found the SE."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=float, default=-100.0, help="penalty of the Penalty game")
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per seed")
    parser.add_argument("--seeds", type=int, default=4, help="number of seeds to train, one after another")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    args = parser.parse_args(argv)
    for name in ("steps", "seeds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")

    def make_game() -> envs.registry.ParallelEnv:
        return envs.make("matrix/penalty-v0", k=args.k)

    config = STEPConfig.matrix_games()  # the preset tuned for repeated matrix games
    se, values = matrix.stackelberg_equilibrium(matrix.penalty(args.k))
    found = 0
    for seed in range(args.seed, args.seed + args.seeds):
        learner = train(make_game, config=config, total_steps=args.steps, seed=seed, show_progress=True)
        joint, probs = matrix_game_report(learner.model, make_game())
        hit = tuple(joint) == tuple(se)
        found += hit
        print(f"seed {seed}: learned greedy joint action {joint}{'  = the SE' if hit else ''}")
        for k, p in enumerate(probs):
            role = "leader  " if k == 0 else "follower"
            print(f"  agent_{k} ({role}) action probabilities: {[round(x, 3) for x in p]}")
    print(f"Stackelberg equilibrium: {se} with payoffs {values.tolist()}")
    print(f"STEP found the SE in {found}/{args.seeds} seeds.")
    return found


if __name__ == "__main__":
    main()
