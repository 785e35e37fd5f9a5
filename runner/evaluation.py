"""Greedy evaluation over whole episodes, counted by the harness itself.

Tianshou 2.0.1's collector statistics cut episodes that are longer than one collect per env
(a 1,000-step MuJoCo episode shows up as 50-step pieces), so :class:`Evaluator` plays its own
episodes: ``episodes`` separately seeded :class:`~agents.adapter.JointStepEnv` s, stepped
together in one batch through the policy (for STEP, the priority chain with greedy actions in
every position, :meth:`agents.policy.STEPPolicy.chain` via ``forward``), until every episode
has ended. Evaluation seeds lie in ``[2**30, 2**31)`` and training seeds (:func:`chunk_seeds`)
in ``[0, 2**30)``, so evaluation never replays a training episode; the same evaluation
episodes are played at every evaluation of a run.

Per episode:

* each agent's return is the sum of its own rewards over the episode (undiscounted); the
  episode's return is the mean of that over the agents that took part (acted at least once);
  ``eval_return`` is its mean over the episodes;
* the length is the number of joint time steps;
* if the environment's step infos carry ``speed`` (m/s) and ``crashed`` per agent (on-ramp
  merging does), ``avg_speed`` is the mean speed over (controlled vehicle, time step) pairs
  after each step, averaged over episodes, and ``collision_rate`` the fraction of episodes
  in which some agent's info reported a crash.

Execution. The returns are those of greedy communicated execution (followers read their
superiors' actions). They are also exactly those of decentralized execution (each agent
recomputes its superiors' greedy actions from its own input, :mod:`agents.execution`) whenever
that is possible: the policy uses no prior actions (MAPPO, IPPO, HAPPO, MADDPG), the base
observation is the global state, or every living agent's observation was identical at every
step (the matrix games). The ``execution`` field says which of the two the numbers stand for.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pettingzoo.utils.env import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper
from tianshou.data import Batch

from agents.adapter import ALIVE, EXTRA_COLUMNS, JointStepEnv

EVAL_SEED_BASE = 2**30
"""Evaluation seeds start here; training seeds stay below it."""
MAX_EVAL_EPISODES = 100_000


class StepRecorder(BaseParallelWrapper):  # type: ignore[misc]
    """Passes everything through and keeps the rewards and infos of the last ``step``.

    The joint-step adapter keeps only rewards and per-agent flags; metrics such as the merge
    env's ``speed`` and ``crashed`` live in the step infos, read from here.
    """

    def __init__(self, env: ParallelEnv) -> None:
        super().__init__(env)
        self.last_infos: dict[str, dict[str, Any]] = {}
        self.last_rewards: dict[str, float] = {}

    @property
    def agents(self) -> list[str]:  # type: ignore[override]
        return self.env.agents  # type: ignore[no-any-return]

    @property
    def possible_agents(self) -> list[str]:  # type: ignore[override]
        return self.env.possible_agents  # type: ignore[no-any-return]

    @property
    def metadata(self) -> dict[str, Any]:  # type: ignore[override]
        return self.env.metadata  # type: ignore[no-any-return]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.last_infos, self.last_rewards = {}, {}
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: dict[str, Any]) -> Any:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self.last_infos, self.last_rewards = dict(infos), dict(rewards)
        return obs, rewards, terminations, truncations, infos


@dataclass
class EvalResult:
    """Outcome of one evaluation (module docstring for the definitions)."""

    agent_returns: np.ndarray
    """(episodes, n_agents) undiscounted return of each agent; NaN for agents that never acted."""
    lengths: np.ndarray
    """(episodes,) joint time steps of each episode."""
    speeds: np.ndarray | None
    """(episodes,) mean speed (m/s) over (agent, step) pairs, or None if the env reports none."""
    crashed: np.ndarray | None
    """(episodes,) bool, some agent crashed, or None if the env reports no crashes."""
    execution: str
    """``"decentralized"`` or ``"communicated"`` (module docstring)."""

    @property
    def episode_returns(self) -> np.ndarray:
        """(episodes,) mean over the participating agents of each agent's return."""
        return np.nanmean(self.agent_returns, axis=1)

    def metrics(self) -> dict[str, Any]:
        """``eval_return``, ``eval_return_std``, ``eval_length``, ``avg_speed``, ``collision_rate``
        (None where the env reports nothing) and ``execution``."""
        returns = self.episode_returns
        return {
            "eval_return": float(returns.mean()),
            "eval_return_std": float(returns.std()),
            "eval_length": float(self.lengths.mean()),
            "avg_speed": None if self.speeds is None else float(np.nanmean(self.speeds)),
            "collision_rate": None if self.crashed is None else float(self.crashed.mean()),
            "execution": self.execution,
        }


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """Environment seeds of the evaluation episodes of run ``seed`` (the same at every evaluation)."""
    if not 1 <= episodes <= MAX_EVAL_EPISODES:
        raise ValueError(f"episodes={episodes!r} must lie in [1, {MAX_EVAL_EPISODES}]")
    state = np.random.SeedSequence([int(seed), 1]).generate_state(episodes, dtype=np.uint32)
    return [EVAL_SEED_BASE + int(s) % EVAL_SEED_BASE for s in state]


def chunk_seeds(seed: int, chunk: int, n_envs: int) -> list[int]:
    """Seeds of the training envs at the start of chunk ``chunk`` (between two evaluations) of
    run ``seed``; all below :data:`EVAL_SEED_BASE`."""
    state = np.random.SeedSequence([int(seed), 0, int(chunk)]).generate_state(n_envs, dtype=np.uint32)
    return [int(s) % EVAL_SEED_BASE for s in state]


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global RNGs of Python, NumPy and torch afterwards, so that evaluating never
    changes what training draws next."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class Evaluator:
    """Plays ``episodes`` greedy episodes of a Tianshou policy on separately seeded envs.

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv.
        order: priority order (as for training).
        observation: ``"own"`` or ``"state"`` (as for training).
        episodes: evaluation episodes per evaluation.
        seed: the run's seed (selects the evaluation seeds, :func:`eval_seeds`).
        batch: episodes played at once (envs kept alive between evaluations).
        max_steps: raise if an episode runs longer than this (an env that never ends).
    """

    def __init__(self, env_fn: Callable[[], ParallelEnv], *, order: Sequence[str] | None = None,
                 observation: str = "own", episodes: int, seed: int, batch: int = 16,
                 max_steps: int = 1_000_000) -> None:
        self.seeds = eval_seeds(seed, episodes)
        self.observation = observation
        self.max_steps = max_steps
        self.envs = [JointStepEnv(env=StepRecorder(env_fn()), order=order, observation=observation,
                                  info_flags=False) for _ in range(min(batch, episodes))]

    def close(self) -> None:
        """Close the evaluation envs."""
        for env in self.envs:
            env.game.close()

    def evaluate(self, policy: Any) -> EvalResult:
        """Greedy episodes of ``policy`` (a Tianshou ``Policy`` acting on adapter observations,
        used outside a training step, where STEP and MADDPG act greedily)."""
        n = self.envs[0].joint_spec.n_agents
        episodes = len(self.seeds)
        returns = np.zeros((episodes, n))
        took_part = np.zeros((episodes, n), bool)
        lengths = np.zeros(episodes, np.int64)
        speed_sum, speed_count = np.zeros(episodes), np.zeros(episodes, np.int64)
        crashed = np.zeros(episodes, bool)
        reports_speed = reports_crash = False
        common_knowledge = True
        with preserved_rng():
            for start in range(0, episodes, len(self.envs)):
                wave = list(range(start, min(start + len(self.envs), episodes)))
                obs = {j: self.envs[j - start].reset(seed=self.seeds[j])[0] for j in wave}
                active = list(wave)
                while active:
                    stacked = np.stack([obs[j] for j in active])  # (B, n, d + 3)
                    common_knowledge = common_knowledge and _identical_inputs(stacked)
                    act = policy.map_action(policy(Batch(obs=stacked, info=Batch())).act)
                    still = []
                    for i, j in enumerate(active):
                        env = self.envs[j - start]
                        took_part[j] |= obs[j][:, ALIVE] > 0.5
                        obs[j], reward, terminated, truncated, _ = env.step(act[i])
                        returns[j] += reward
                        lengths[j] += 1
                        infos = env.game.parallel_env.last_infos
                        for info in infos.values():
                            if "speed" in info:
                                reports_speed = True
                                speed_sum[j] += float(info["speed"])
                                speed_count[j] += 1
                            if "crashed" in info:
                                reports_crash = True
                                crashed[j] |= bool(info["crashed"])
                        if lengths[j] > self.max_steps:
                            raise RuntimeError(f"an evaluation episode ran past {self.max_steps} steps")
                        if not (terminated or truncated):
                            still.append(j)
                    active = still
        agent_returns = np.where(took_part, returns, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            speeds = speed_sum / speed_count if reports_speed else None
        decentralized = (not getattr(getattr(policy, "model", None), "uses_prior_actions", False)
                         or self.observation == "state" or common_knowledge)
        return EvalResult(agent_returns=agent_returns, lengths=lengths, speeds=speeds,
                          crashed=crashed if reports_crash else None,
                          execution="decentralized" if decentralized else "communicated")


def _identical_inputs(obs: np.ndarray) -> bool:
    """Whether, in every row of a batch of adapter observations (B, n, d + 3), all living agents
    have the same base observation (then their inputs are common knowledge)."""
    base = obs[..., :-EXTRA_COLUMNS]  # (B, n, d)
    alive = obs[..., ALIVE] > 0.5  # (B, n)
    for row, living in zip(base, alive, strict=True):
        rows = row[living]
        if len(rows) > 1 and not (rows == rows[0]).all():
            return False
    return True


def evaluate_decentralized(model: Any, env_fn: Callable[[], ParallelEnv], *, order: Sequence[str] | None,
                           observation: str, seeds: Sequence[int]) -> EvalResult:
    """Greedy episodes in which every agent recomputes its superiors' actions itself
    (:class:`agents.execution.GreedyExecutor` in ``decentralized`` mode), one env and one
    agent at a time: the slow, literal form of what :class:`Evaluator` reports as
    ``decentralized``. For checking that claim on a saved STEP model.

    Raises:
        agents.execution.DecentralizedExecutionError: the agents' inputs are not common knowledge.
    """
    import stmg
    from agents.execution import GreedyExecutor

    spec = model.spec
    n = spec.n_agents
    returns = np.zeros((len(seeds), n))
    took_part = np.zeros((len(seeds), n), bool)
    lengths = np.zeros(len(seeds), np.int64)
    speeds: list[float] = []
    crashed = np.zeros(len(seeds), bool)
    reports_speed = reports_crash = False
    index = {a: k for k, a in enumerate(spec.possible_agents)}
    with preserved_rng():
        for j, seed in enumerate(seeds):
            recorder = StepRecorder(env_fn())
            game = stmg.wrap(recorder, order, observation=observation, flatten=True)  # type: ignore[arg-type]
            executor = GreedyExecutor(model=model, game=game, mode="decentralized")
            game.reset(seed=seed)
            speed_sum, speed_count = 0.0, 0
            while game.agents:
                agent = str(game.agent_selection)
                if game.terminations[agent] or game.truncations[agent]:
                    game.step(None)
                    continue
                before = game.time_step
                game.step(executor.act(agent))
                if game.time_step == before:
                    continue
                lengths[j] += 1  # the time step closed: the env stepped once
                for a, r in recorder.last_rewards.items():
                    returns[j, index[a]] += r
                    took_part[j, index[a]] = True
                for info in recorder.last_infos.values():
                    if "speed" in info:
                        reports_speed = True
                        speed_sum += float(info["speed"])
                        speed_count += 1
                    if "crashed" in info:
                        reports_crash = True
                        crashed[j] |= bool(info["crashed"])
            speeds.append(speed_sum / speed_count if speed_count else np.nan)
            game.close()
    return EvalResult(agent_returns=np.where(took_part, returns, np.nan), lengths=lengths,
                      speeds=np.array(speeds) if reports_speed else None,
                      crashed=crashed if reports_crash else None, execution="decentralized")


def record_episode(policy: Any, env_fn: Callable[[], ParallelEnv], *, order: Sequence[str] | None,
                   observation: str, seed: int, max_frames: int = 1000) -> tuple[list[np.ndarray], float]:
    """Frames (``render()`` of an env built with ``render_mode="rgb_array"``) of one greedy
    episode, at most ``max_frames`` of them, and the episode's return (mean over agents)."""
    env = JointStepEnv(env=StepRecorder(env_fn()), order=order, observation=observation, info_flags=False)
    recorder = env.game.parallel_env
    frames: list[np.ndarray] = []
    with preserved_rng():
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(env.joint_spec.n_agents)
        took_part = np.zeros(env.joint_spec.n_agents, bool)
        done = False
        while True:
            if len(frames) < max_frames:
                frame = recorder.render()
                if frame is None:
                    raise RuntimeError("the environment rendered no frame; build it with render_mode='rgb_array'")
                frames.append(np.asarray(frame, np.uint8))
            if done:
                break
            took_part |= obs[:, ALIVE] > 0.5
            act = policy.map_action(policy(Batch(obs=obs[None], info=Batch())).act)[0]
            obs, reward, terminated, truncated, _ = env.step(act)
            returns += reward
            done = bool(terminated or truncated)
    env.game.close()
    return frames, float(returns[took_part].mean()) if took_part.any() else 0.0
