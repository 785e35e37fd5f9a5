"""Matrix-game trials: train a learner on a payoff table and read off what it converged to."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.config import STEPConfig
from agents.execution import matrix_game_report
from agents.training import train
from envs.matrix import MatrixGame, stackelberg_equilibrium


@dataclass
class TrialResult:
    """Outcome of one seed."""

    seed: int
    greedy_joint_action: list[int]
    action_probs: list[list[float]]
    is_se: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"seed": self.seed, "greedy_joint_action": self.greedy_joint_action,
                "action_probs": self.action_probs, "is_se": self.is_se, "seconds": self.seconds}


def run_matrix_trial(payoffs: np.ndarray, *, config: STEPConfig, steps: int, seed: int,
                     episode_length: int = 25, logdir: str | None = None) -> TrialResult:
    """Train on the repeated game ``payoffs`` for ``steps`` joint steps and evaluate greedily.

    ``is_se`` compares the greedy joint action (leader = agent_0, then agent_1, ...) with
    :func:`envs.matrix.stackelberg_equilibrium`. ``logdir``: TensorBoard logs of the run.
    """
    payoffs = np.asarray(payoffs, dtype=np.float64)
    start = time.perf_counter()
    learner = train(lambda: MatrixGame(payoffs, episode_length=episode_length), config=config,
                    total_steps=steps, seed=seed, logdir=logdir)
    seconds = time.perf_counter() - start
    joint, probs = matrix_game_report(learner.model, MatrixGame(payoffs, episode_length=episode_length))
    se, _ = stackelberg_equilibrium(payoffs)
    return TrialResult(seed=seed, greedy_joint_action=list(joint), action_probs=probs,
                       is_se=tuple(joint) == tuple(se), seconds=seconds)
