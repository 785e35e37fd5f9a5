"""Quickstart: train STEP on the Penalty game (k = -100) and compare with its Stackelberg equilibrium.

    python examples/quickstart.py            # about a minute on 2 CPU cores
    python examples/quickstart.py --steps 200 --seed 3

Agent_0 is the leader, agent_1 the follower. The only SE of Penalty is (a1, a3) -- action
indices (0, 2) -- with payoff 10 for both; simultaneous learners usually settle on (a2, a2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import envs  # noqa: E402
from agents import STEPConfig, matrix_game_report, train  # noqa: E402
from envs import matrix  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=float, default=-100.0, help="penalty of the Penalty game")
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps to train")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")

    def make_game() -> envs.registry.ParallelEnv:
        return envs.make("matrix/penalty-v0", k=args.k)

    config = STEPConfig.matrix_games()  # the preset tuned for repeated matrix games
    learner = train(make_game, config=config, total_steps=args.steps, seed=args.seed,
                    show_progress=True)
    joint, probs = matrix_game_report(learner.model, make_game())
    se, values = matrix.stackelberg_equilibrium(matrix.penalty(args.k))
    print(f"learned greedy joint action: {joint}")
    for k, p in enumerate(probs):
        role = "leader  " if k == 0 else "follower"
        print(f"  agent_{k} ({role}) action probabilities: {[round(x, 3) for x in p]}")
    print(f"Stackelberg equilibrium:     {se} with payoffs {values.tolist()}")
    print("STEP found the SE." if tuple(joint) == tuple(se) else "STEP did not find the SE this time.")


if __name__ == "__main__":
    main()
