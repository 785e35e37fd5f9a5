"""Trials on the repeated games: train a learner and read off what it converged to.

This is runner code: it knows both the learners (:mod:`agents`) and the games (:mod:`envs`),
and hands the learners only what they need (an env factory, the equilibrium to compare with).

* :func:`run_matrix_trial` -- a payoff table (:class:`envs.matrix.MatrixGame`); is the greedy
  joint action the Stackelberg equilibrium?
* :func:`run_quadratic_trial` -- the continuous :class:`envs.continuous.QuadraticGame`; how far
  are the greedy actions from the equilibrium, and does the follower's reply track the leader?
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import STEPConfig
from agents.execution import matrix_game_report
from agents.training import VenvFn, train
from envs.matrix import MatrixGame, climbing, mixing, penalty, stackelberg_equilibrium


def load_payoffs_file(path: str | Path) -> np.ndarray:
    """The payoff table saved with ``numpy.save`` at ``path``, checked like :class:`MatrixGame`'s.

    Raises:
        ValueError: naming the file and what is wrong (not a ``.npy`` file, missing, pickled
            objects instead of numbers, a shape or value that is no payoff table).
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{str(path)!r} is not a .npy file; save the payoff array with numpy.save('game.npy', array)")
    if not path.is_file():
        raise ValueError(f"no file {str(path)!r}")
    with path.open("rb") as file:
        is_npy = file.read(6) == b"\x93NUMPY"  # the magic string that starts every .npy file
    if not is_npy:
        raise ValueError(f"{path} is not a .npy file (it does not start like one); expected a numeric "
                         "array written by numpy.save")
    try:
        table = np.load(path, allow_pickle=False)  # never unpickle: a .npy of numbers needs none
    except ValueError as exc:
        raise ValueError(f"{path} holds Python objects, not numbers; expected a numeric array "
                         "written by numpy.save") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy file: {exc}") from exc
    try:
        MatrixGame(table)  # the game's own checks: numbers, finite, shape (n, |A_1|, ..., |A_n|)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return np.asarray(table, dtype=np.float64)


def game_payoffs(game: str, k: float = -100.0, payoffs_file: str | Path | None = None) -> np.ndarray:
    """The payoff table of ``payoffs_file`` (:func:`load_payoffs_file`) if given, else of the
    paper's game ``game`` ("penalty" with penalty ``k``, "mixing" or "climbing")."""
    if payoffs_file is not None:
        return load_payoffs_file(payoffs_file)
    if game == "penalty":
        return penalty(k)
    tables = {"mixing": mixing, "climbing": climbing}
    if game not in tables:
        raise ValueError(f"game={game!r}; expected 'penalty', 'mixing' or 'climbing'")
    return tables[game]()


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
                    total_steps=steps, seed=seed, logdir=logdir,
                    venv_fn=array_venv_fn(payoffs, config, episode_length=episode_length))
    seconds = time.perf_counter() - start
    joint, probs = matrix_game_report(learner.model, MatrixGame(payoffs, episode_length=episode_length))
    se, _ = stackelberg_equilibrium(payoffs)
    return TrialResult(seed=seed, greedy_joint_action=list(joint), action_probs=probs,
                       is_se=tuple(joint) == tuple(se), seconds=seconds)


def array_venv_fn(payoffs: np.ndarray, config: STEPConfig, *, episode_length: int = 25,
                  order: Sequence[str] | None = None) -> VenvFn:
    """A maker of the training envs of the repeated game ``payoffs`` (priority ``order``)
    computed as arrays (:class:`~runner.matrix_venv.MatrixGameVectorEnv`): what
    ``DummyVectorEnv`` of its ``stmg.wrap`` games returns, without the per-env Python (the same
    training, faster)."""
    from agents.training import critics_read_state
    from runner.matrix_venv import MatrixGameVectorEnv

    with_state = critics_read_state(config, MatrixGame(payoffs, episode_length=episode_length))
    return lambda fns: MatrixGameVectorEnv(payoffs, len(fns), episode_length=episode_length, order=order,
                                           with_state=with_state)


def population_supported(algo: str, config: STEPConfig | None = None) -> bool:
    """Whether ``algo`` (with ``config``, default its matrix-game preset) can be trained as a
    population (:mod:`agents.population`); otherwise its trials run one at a time."""
    if algo == "maddpg":
        return True  # agents.maddpg_population, with MADDPG's default config
    from agents.config import Variant
    from agents.population import check_population_config

    try:
        check_population_config(config if config is not None else STEPConfig.matrix_games(variant=Variant(algo)))
    except ValueError:
        return False
    return True


def train_matrix_population(payoffs: np.ndarray, *, config: STEPConfig, steps: int, seeds: list[int],
                            episode_length: int = 25) -> list[Any]:
    """The trained models of one population (:func:`agents.population.train_population`) on
    the repeated game ``payoffs``, stepped as arrays (:class:`~runner.matrix_venv.MatrixGameVectorEnv`).

    Raises:
        ValueError: for an empty or repeated seed list, or a config the population learner
            does not train (:func:`agents.population.check_population_config`).
    """
    from agents.population import train_population

    payoffs = np.asarray(payoffs, dtype=np.float64)
    return train_population(
        lambda: MatrixGame(payoffs, episode_length=episode_length), config=config, total_steps=steps, seeds=seeds,
        venv_fn=array_venv_fn(payoffs, config, episode_length=episode_length))


def run_matrix_population(payoffs: np.ndarray, *, config: STEPConfig, steps: int, seeds: list[int],
                          episode_length: int = 25) -> list[TrialResult]:
    """:func:`run_matrix_trial` for every seed, the trials trained together as one population
    (:func:`agents.population.train_population`, over a :class:`~runner.matrix_venv.MatrixGameVectorEnv`).

    Trial k's result is (to float rounding) that of ``run_matrix_trial(..., seed=seeds[k])``;
    its ``seconds`` is the population's training time divided by the number of trials.

    Raises:
        ValueError: for an empty or repeated seed list, or a config the population learner
            does not train (:func:`agents.population.check_population_config`).
    """
    from agents.population import check_seeds

    payoffs = np.asarray(payoffs, dtype=np.float64)
    seeds = check_seeds(seeds)
    start = time.perf_counter()
    models = train_matrix_population(payoffs, config=config, steps=steps, seeds=seeds, episode_length=episode_length)
    seconds = (time.perf_counter() - start) / len(seeds)
    se, _ = stackelberg_equilibrium(payoffs)
    results = []
    for seed, model in zip(seeds, models, strict=True):
        joint, probs = matrix_game_report(model, MatrixGame(payoffs, episode_length=episode_length))
        results.append(TrialResult(seed=seed, greedy_joint_action=list(joint), action_probs=probs,
                                   is_se=tuple(joint) == tuple(se), seconds=seconds))
    return results


def run_maddpg_population(payoffs: np.ndarray, *, steps: int, seeds: list[int],
                          episode_length: int = 25) -> list[TrialResult]:
    """MADDPG's trials (its default :class:`~agents.maddpg.MADDPGConfig`) trained together as one
    population (:mod:`agents.maddpg_population`, over a
    :class:`~runner.matrix_venv.MatrixGameVectorEnv`); records as :func:`run_algorithm_trial`.

    Trial k's result does not depend on the other trials; it equals the single trial of its
    seed in distribution (its random streams are its own), not number for number.
    """
    from agents.maddpg import MADDPGConfig, matrix_game_record
    from agents.maddpg_population import train_maddpg_population
    from agents.population import check_seeds
    from runner.matrix_venv import MatrixGameVectorEnv

    payoffs = np.asarray(payoffs, dtype=np.float64)
    seeds = check_seeds(seeds)
    start = time.perf_counter()
    learners = train_maddpg_population(
        lambda: MatrixGame(payoffs, episode_length=episode_length), config=MADDPGConfig(), steps=steps,
        seeds=seeds, venv_fn=lambda fns: MatrixGameVectorEnv(payoffs, len(fns), episode_length=episode_length))
    seconds = (time.perf_counter() - start) / len(seeds)
    se, _ = stackelberg_equilibrium(payoffs)
    return [TrialResult(seconds=seconds, **matrix_game_record(learner, seed=seed, stackelberg_joint_action=se))
            for seed, learner in zip(seeds, learners, strict=True)]


def run_algorithm_population(algo: str, payoffs: np.ndarray, *, steps: int, seeds: list[int],
                             config: STEPConfig | None = None) -> list[TrialResult]:
    """:func:`run_algorithm_trial` for every seed: one population where ``algo`` supports it
    (:func:`population_supported`), else the trials one after another."""
    if algo == "maddpg":
        return run_maddpg_population(payoffs, steps=steps, seeds=seeds)
    if config is None:
        from agents.config import Variant

        config = STEPConfig.matrix_games(variant=Variant(algo))
    if population_supported(algo, config):
        return run_matrix_population(payoffs, config=config, steps=steps, seeds=seeds)
    return [run_algorithm_trial(algo, payoffs, steps=steps, seed=seed, config=config) for seed in seeds]


def run_algorithm_trial(algo: str, payoffs: np.ndarray, *, steps: int, seed: int,
                        config: STEPConfig | None = None, logdir: str | None = None) -> TrialResult:
    """One matrix-game trial of ``algo``: ``"maddpg"`` (:mod:`agents.maddpg`, its default
    :class:`~agents.maddpg.MADDPGConfig`) or a PPO-family variant name (``config``, default
    ``STEPConfig.matrix_games(variant=algo)``; ``logdir`` for its TensorBoard logs)."""
    if algo == "maddpg":
        from agents.maddpg import MADDPGConfig, matrix_game_trial

        se, _ = stackelberg_equilibrium(payoffs)
        start = time.perf_counter()
        record = matrix_game_trial(lambda: MatrixGame(payoffs), stackelberg_joint_action=se,
                                   config=MADDPGConfig(), steps=steps, seed=seed)
        return TrialResult(seconds=time.perf_counter() - start, **record)
    if config is None:
        from agents.config import Variant

        config = STEPConfig.matrix_games(variant=Variant(algo))
    return run_matrix_trial(payoffs, config=config, steps=steps, seed=seed, logdir=logdir)


@dataclass
class QuadraticTrialResult:
    """Outcome of one seed on :class:`envs.continuous.QuadraticGame`."""

    seed: int
    x: float
    """The leader's greedy action."""
    y: float
    """The follower's greedy action (its reply to ``x``)."""
    replies: list[float]
    """The follower's greedy replies to forced leader actions :data:`FORCED_LEADER_ACTIONS`."""
    x_star: float
    """The leader's action at the Stackelberg equilibrium."""
    best_response_gap: float
    """|y - slope * x|: how far the follower is from its best response."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(vars(self))


FORCED_LEADER_ACTIONS = (-0.4, 0.0, 0.4)


def run_quadratic_trial(*, config: STEPConfig, steps: int, seed: int) -> QuadraticTrialResult:
    """Train on the default :class:`envs.continuous.QuadraticGame`, then act greedily
    (communicated mode) once, and once more after each forced leader action."""
    import stmg
    from agents.execution import act_from_flat, play_greedy
    from envs.continuous import QuadraticGame

    start = time.perf_counter()
    learner = train(QuadraticGame, config=config, total_steps=steps, seed=seed)
    seconds = time.perf_counter() - start
    joint = play_greedy(learner.model, QuadraticGame(), mode="communicated", max_steps=1)[0]
    game = stmg.wrap(QuadraticGame(), flatten=True)
    follower = game.possible_agents[1]
    replies = []
    for forced in FORCED_LEADER_ACTIONS:
        game.reset(seed=0)
        game.step(np.array([forced], np.float32))
        replies.append(float(act_from_flat(learner.model, game.observe(follower))[0][0, 0]))
    reference = QuadraticGame()
    x, y = float(joint[game.possible_agents[0]][0]), float(joint[follower][0])
    return QuadraticTrialResult(seed=seed, x=x, y=y, replies=replies,
                                x_star=reference.stackelberg_equilibrium()[0],
                                best_response_gap=abs(y - reference.slope * x), seconds=seconds)
