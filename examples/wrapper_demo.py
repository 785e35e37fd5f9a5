"""Play the Penalty game as a spatio-temporal sequential game and watch the follower respond.

The follower (agent_1) sees the leader's choice in its STMG observation and best-responds to it
by reading the payoff table; the leader picks the action whose best response pays it most.
This is the Stackelberg equilibrium that STEP learns, computed here by hand in a few lines.

    python examples/wrapper_demo.py --k -100 --steps 5
"""

from __future__ import annotations

import argparse

import numpy as np

import envs
import stmg
from envs.matrix import stackelberg_equilibrium


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=float, default=-100.0, help="the Penalty game's penalty")
    parser.add_argument("--steps", type=int, default=3, help="time steps to play")
    args = parser.parse_args(argv)

    base = envs.make("matrix/penalty-v0", k=args.k, episode_length=args.steps)
    payoffs = base.payoffs
    game = stmg.wrap(base, order=["agent_0", "agent_1"])
    game.reset(seed=0)

    def follower_reply(leader_action: int) -> int:
        return int(np.argmax(payoffs[1, leader_action]))

    leader_choice = int(np.argmax([payoffs[0, a, follower_reply(a)] for a in range(payoffs.shape[1])]))
    for agent in game.agent_iter():
        obs, reward, terminated, truncated, _ = game.last()
        if terminated or truncated:
            game.step(None)
            continue
        if agent == "agent_0":
            action = leader_choice
        else:
            # The leader's action is row 0 of the prior-action table (a one-hot), present in the mask.
            assert obs["prior_mask"][0] == 1.0
            seen = int(np.argmax(obs["prior_actions"][0][:3]))
            action = follower_reply(seen)
            print(f"t={game.time_step}: follower sees leader action a{seen + 1} -> plays a{action + 1}")
        game.step(action)
        if agent == "agent_1":
            print(f"           joint reward {game.rewards}")
    joint, values = stackelberg_equilibrium(payoffs)
    print(f"Stackelberg equilibrium of Penalty(k={args.k:g}): (a{joint[0] + 1}, a{joint[1] + 1}) paying {values.tolist()}")


if __name__ == "__main__":
    main()
