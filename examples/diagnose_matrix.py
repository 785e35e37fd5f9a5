"""Train STEP on a repeated matrix game and show where each trial's leader-follower chain goes wrong.

    python examples/diagnose_matrix.py --payoffs game.npy --trials 12
    python examples/diagnose_matrix.py --game penalty --k -75 --trials 20 --set value_normalization=True

For every trial (trained as one population, :mod:`agents.population`) it reads each position's
greedy reply in every context of its superiors' actions (``stmg.wrap`` with forced superiors'
actions, :func:`agents.execution.act_from_flat`) and compares it with the best reply *to the
trained subordinates' greedy replies*. It prints the greedy joint action, whether it is the
Stackelberg equilibrium, how many contexts each position answers wrongly, and the first
positions on the greedy path whose choice is not their best reply (with the values of each
action and the position's probabilities there). A leader that is wrong against its own trained
followers committed too early; a follower that is wrong on the path did not learn its reply.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import stmg  # noqa: E402
from agents.config import STEPConfig  # noqa: E402
from agents.execution import act_from_flat  # noqa: E402
from agents.model import MultiAgentActorCritic  # noqa: E402
from envs import matrix  # noqa: E402
from runner.matrix_trials import game_payoffs, train_matrix_population  # noqa: E402
from runner.presets import parse_config_overrides  # noqa: E402

Context = tuple[int, ...]


@dataclass
class TrialDiagnosis:
    """What one trained model does in every context of a game."""

    path: Context
    """The greedy joint action."""
    is_se: bool
    wrong_contexts: list[tuple[int, int]]
    """Per position: (contexts whose greedy reply is not the best reply to the trained
    subordinates, all contexts)."""
    path_errors: list[dict[str, Any]]
    """Positions on the greedy path that do not play their best reply: position, context,
    played, best, values of each action, the position's probabilities."""


def greedy_replies(model: MultiAgentActorCritic, payoffs: np.ndarray) -> dict[Context, tuple[int, np.ndarray]]:
    """Every position's (greedy reply, probabilities) in every context of its superiors' actions
    (leader = agent_0, then agent_1, ...)."""
    sizes = payoffs.shape[1:]
    game = stmg.wrap(matrix.MatrixGame(payoffs), flatten=True)
    replies = {}
    for i in range(len(sizes)):
        for context in itertools.product(*[range(s) for s in sizes[:i]]):
            game.reset(seed=0)
            for action in context:
                game.step(action)
            act, probs = act_from_flat(model, game.observe(game.possible_agents[i]))
            if probs is None:
                raise TypeError("the model's actions are not discrete; a matrix game's are")
            replies[context] = (int(act[0]), probs[0, : sizes[i]].detach().numpy())
    return replies


def diagnose(model: MultiAgentActorCritic, payoffs: np.ndarray) -> TrialDiagnosis:
    """Compare every position's greedy reply with its best reply to the trained subordinates."""
    n, sizes = payoffs.shape[0], payoffs.shape[1:]
    replies = greedy_replies(model, payoffs)

    def follow(context: Context) -> Context:  # the trained subordinates' greedy replies from here on
        while len(context) < n:
            context = (*context, replies[context][0])
        return context

    def values(context: Context) -> list[float]:
        i = len(context)
        return [float(payoffs[(i, *follow((*context, a)))]) for a in range(sizes[i])]

    path = follow(())
    wrong = [[0, 0] for _ in range(n)]
    for context, (played, _) in replies.items():
        i = len(context)
        wrong[i][1] += 1
        wrong[i][0] += int(np.argmax(values(context))) != played
    errors = []
    for i in range(n):
        context = path[:i]
        vals = values(context)
        if int(np.argmax(vals)) != path[i]:
            errors.append({"position": i, "context": context, "played": path[i], "best": int(np.argmax(vals)),
                           "values": [round(v, 1) for v in vals],
                           "probabilities": [round(float(p), 2) for p in replies[context][1]]})
    se, _ = matrix.stackelberg_equilibrium(payoffs)
    return TrialDiagnosis(path=path, is_se=path == tuple(se), wrong_contexts=[(w, t) for w, t in wrong],
                          path_errors=errors)


def main(argv: list[str] | None = None) -> list[TrialDiagnosis]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", choices=["penalty", "mixing", "climbing"], default="penalty",
                        help="a matrix game of the paper (ignored with --payoffs)")
    parser.add_argument("--k", type=float, default=-100.0, help="penalty of the Penalty game")
    parser.add_argument("--payoffs", default=None, help="a .npy payoff array of shape (n_agents, |A_1|, ..., |A_n|)")
    parser.add_argument("--trials", type=int, default=8, help="number of seeds (trained as one population)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per trial")
    parser.add_argument("--set", nargs="+", metavar="FIELD=VALUE", default=None,
                        help="override fields of STEPConfig.matrix_games(), e.g. value_normalization=True")
    args = parser.parse_args(argv)
    for name in ("trials", "steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    try:
        payoffs = game_payoffs(args.game, args.k, args.payoffs)
        config = STEPConfig.matrix_games(**parse_config_overrides(args.set or []))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        models = train_matrix_population(payoffs, config=config, steps=args.steps,
                                         seeds=list(range(args.seed, args.seed + args.trials)))
    except ValueError as exc:  # a setting populations do not train
        parser.error(str(exc))
    results = []
    for k, model in enumerate(models):
        d = diagnose(model, payoffs)
        results.append(d)
        wrong = ", ".join(f"{w}/{t}" for w, t in d.wrong_contexts)
        print(f"seed {args.seed + k}: {d.path} {'SE' if d.is_se else '  '}  wrong replies per position: {wrong}")
        for e in d.path_errors[:2]:
            print(f"    position {e['position']} after {e['context']}: plays {e['played']}, best {e['best']}; "
                  f"values {e['values']}, probabilities {e['probabilities']}")
    print(f"SE in {sum(d.is_se for d in results)}/{len(results)} trials")
    return results


if __name__ == "__main__":
    main()
