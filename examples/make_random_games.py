"""Write random normal-form games with a unique pure Stackelberg equilibrium, and the paper's
games with payoffs multiplied by 20, for training checks on games nobody tuned on.

    python examples/make_random_games.py --out-dir docs/matrix/games
    python examples/train_matrix.py --payoffs docs/matrix/games/three_int80.npy --trials 100

Each game has 3 or 4 agents with 2 to 4 actions each (drawn), payoffs either integers 0..80
or Gaussian times 100, and is redrawn until every decision of the backward induction has a
single best action (no ties), so that "found the SE" has one meaning. The paper's Penalty
(k = -100) and Mixing games are also written with every payoff multiplied by 20
(``penalty_k-100_x20.npy``, ``mixing_x20.npy``): the same equilibria on another reward scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from envs.matrix import mixing, penalty, stackelberg_equilibrium

KINDS = {
    "three_int80": (3, "int80"),
    "four_int80": (4, "int80"),
    "three_gauss100": (3, "gauss100"),
    "four_gauss100": (4, "gauss100"),
}


def has_unique_backward_induction(payoffs: np.ndarray) -> bool:
    """Whether every agent, at every subgame of the backward induction (leader = agent 0),
    has exactly one best action."""
    n = payoffs.shape[0]

    def solve(position: int, chosen: tuple[int, ...]) -> tuple[np.ndarray, bool]:
        if position == n:
            every_agent: tuple[Any, ...] = (slice(None), *chosen)  # all agents' payoffs at `chosen`
            return payoffs[every_agent], True
        outcomes = [solve(position + 1, (*chosen, a)) for a in range(payoffs.shape[1 + position])]
        if not all(unique for _, unique in outcomes):
            return outcomes[0][0], False
        own = np.array([values[position] for values, _ in outcomes])
        best = own.max()
        if int((own == best).sum()) != 1:
            return outcomes[0][0], False
        return outcomes[int(own.argmax())][0], True

    return solve(0, ())[1]


def random_game(n_agents: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A game of ``kind`` ("int80" or "gauss100") with a unique backward induction."""
    while True:
        sizes = tuple(int(s) for s in rng.integers(2, 5, size=n_agents))
        shape = (n_agents, *sizes)
        payoffs: Any = (rng.integers(0, 81, size=shape).astype(np.float64) if kind == "int80"
                        else rng.normal(size=shape) * 100.0)
        if has_unique_backward_induction(payoffs):
            return np.asarray(payoffs, dtype=np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="docs/matrix/games", help="directory for the .npy files")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the random draws")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, (n_agents, kind) in KINDS.items():
        payoffs = random_game(n_agents, kind, rng)
        np.save(out / f"{name}.npy", payoffs)
        joint, values = stackelberg_equilibrium(payoffs)
        print(f"{name}: actions {payoffs.shape[1:]}, SE {joint}, payoffs there {np.round(values, 1).tolist()}")
    for name, payoffs in (("penalty_k-100_x20", 20.0 * penalty(-100.0)), ("mixing_x20", 20.0 * mixing())):
        np.save(out / f"{name}.npy", payoffs)
        joint, values = stackelberg_equilibrium(payoffs)
        print(f"{name}: SE {joint}, payoffs there {values.tolist()}")


if __name__ == "__main__":
    main()
