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
from collections.abc import Callable, Generator, Iterator, Sequence
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
        with preserved_rng():
            play = self.play()
            obs = next(play)
            while True:
                act = policy.map_action(policy(Batch(obs=obs, info=Batch())).act)
                try:
                    obs = play.send(act)
                except StopIteration as done:
                    tally: _Tally = done.value
                    break
        return tally.result(uses_prior_actions=_uses_prior_actions(policy), observation=self.observation)

    def play(self) -> Generator[np.ndarray, np.ndarray, _Tally]:
        """The evaluation episodes as a generator: it yields the stacked observations (B, n,
        width) of the episodes still running, is sent the env actions for them, and returns the
        tally of every episode (:meth:`evaluate` drives it with one policy; a population drives
        its members' generators together)."""
        n = self.envs[0].joint_spec.n_agents
        episodes = len(self.seeds)
        tally = _Tally(n, episodes)
        for start in range(0, episodes, len(self.envs)):
            wave = list(range(start, min(start + len(self.envs), episodes)))
            obs = {j: self.envs[j - start].reset(seed=self.seeds[j])[0] for j in wave}
            active = list(wave)
            while active:
                stacked = np.stack([obs[j] for j in active])  # (B, n, d + 3)
                tally.common_knowledge = tally.common_knowledge and _identical_inputs(stacked)
                act = yield stacked
                still = []
                for i, j in enumerate(active):
                    env = self.envs[j - start]
                    tally.took_part[j] |= obs[j][:, ALIVE] > 0.5
                    obs[j], reward, terminated, truncated, _ = env.step(act[i])
                    tally.returns[j] += reward
                    tally.lengths[j] += 1
                    tally.add_infos(j, env.game.parallel_env.last_infos)
                    if tally.lengths[j] > self.max_steps:
                        raise RuntimeError(f"an evaluation episode ran past {self.max_steps} steps")
                    if not (terminated or truncated):
                        still.append(j)
                active = still
        return tally


def _uses_prior_actions(policy: Any) -> bool:
    """Whether a policy's agents read their superiors' actions (STEP)."""
    model = getattr(policy, "model", None)
    if model is None:  # a population's policy
        model = getattr(getattr(policy, "population", None), "template", None)
    return bool(getattr(model, "uses_prior_actions", False))


class _Tally:
    """What an evaluation counts per episode, turned into an :class:`EvalResult` at the end."""

    def __init__(self, n_agents: int, episodes: int) -> None:
        self.returns = np.zeros((episodes, n_agents))
        self.took_part = np.zeros((episodes, n_agents), bool)
        self.lengths = np.zeros(episodes, np.int64)
        self.speed_sum, self.speed_count = np.zeros(episodes), np.zeros(episodes, np.int64)
        self.crashed = np.zeros(episodes, bool)
        self.reports_speed = self.reports_crash = False
        self.common_knowledge = True

    def add_infos(self, episode: int, infos: dict[str, dict[str, Any]]) -> None:
        """Speeds and crashes from one step's infos."""
        for info in infos.values():
            if "speed" in info:
                self.reports_speed = True
                self.speed_sum[episode] += float(info["speed"])
                self.speed_count[episode] += 1
            if "crashed" in info:
                self.reports_crash = True
                self.crashed[episode] |= bool(info["crashed"])

    def result(self, *, uses_prior_actions: bool, observation: str) -> EvalResult:
        agent_returns = np.where(self.took_part, self.returns, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            speeds = self.speed_sum / self.speed_count if self.reports_speed else None
        decentralized = not uses_prior_actions or observation == "state" or self.common_knowledge
        return EvalResult(agent_returns=agent_returns, lengths=self.lengths, speeds=speeds,
                          crashed=self.crashed if self.reports_crash else None,
                          execution="decentralized" if decentralized else "communicated")


def evaluate_together(evaluators: Sequence[Evaluator], policy: Any,
                      member_policy: Callable[[int], Any]) -> list[EvalResult]:
    """Evaluate the K members of a population, evaluator k playing member k, with one call of
    the population's ``policy`` per step for all members (its input: every member's stacked
    observations, member k's rows k*B .. (k+1)*B - 1). Where the members' episodes do not run
    in lockstep (different numbers of running episodes, or the population policy refuses a
    step whose structure differs between members), every member is evaluated on its own with
    ``member_policy(k)`` instead. Greedy actions are the same either way, up to float rounding
    of the batched forward pass."""
    k = len(evaluators)
    with preserved_rng():
        plays = [evaluator.play() for evaluator in evaluators]
        obs = [next(play) for play in plays]
        tallies: list[_Tally | None] = [None] * k
        while all(t is None for t in tallies):
            if len({o.shape for o in obs}) != 1:
                break
            try:
                act = policy.map_action(policy(Batch(obs=np.concatenate(obs), info=Batch())).act)
            except ValueError:  # structures differ between members
                break
            rows = len(obs[0])
            for m, play in enumerate(plays):
                try:
                    obs[m] = play.send(act[m * rows:(m + 1) * rows])
                except StopIteration as done:
                    tallies[m] = done.value
        else:
            if all(t is not None for t in tallies):
                return [t.result(uses_prior_actions=_uses_prior_actions(policy), observation=e.observation)
                        for t, e in zip(tallies, evaluators, strict=True) if t is not None]
    for play in plays:
        play.close()
    return [evaluator.evaluate(member_policy(m)) for m, evaluator in enumerate(evaluators)]


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
