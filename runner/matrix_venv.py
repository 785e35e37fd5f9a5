"""Many repeated matrix games stepped as one array computation, for population training.

:class:`MatrixGameVectorEnv` is a Tianshou vector env of ``env_num`` copies of
``JointStepEnv(MatrixGame(payoffs, episode_length), order=order, with_state=...)``: it returns
exactly the observations, rewards and episode ends those environments return through
Tianshou's ``DummyVectorEnv`` (the tests compare them), but computes a vector step with a few
NumPy operations instead of ``env_num`` Python calls through ``stmg.wrap``. A repeated matrix
game allows this because nothing in it varies but the time step and the rewards: the
observation is a constant, every agent acts in every step in a fixed order, and the episode is
truncated after ``episode_length`` steps. The constant observations are recorded from a real
:class:`~agents.adapter.JointStepEnv` at construction.

With a population of 100 trials (800 environments) the per-environment Python of the
``DummyVectorEnv`` path (``stmg.wrap``'s turn machinery, Tianshou's per-environment info
dicts) cost more than the learning itself (``benchmarks/bench_population.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from tianshou.env import BaseVectorEnv
from tianshou.env.venvs import gym_new_venv_step_type

from agents.adapter import JointStepEnv
from envs.matrix import MatrixGame


def _empty_infos(count: int) -> np.ndarray:
    """Empty info dicts, as an object array (what the Collector expects). Empty, unlike the
    ``{"env_id": j}`` of ``BaseVectorEnv.step``: the Collector turns an array of non-empty
    dicts into a Batch one dict at a time, which with hundreds of environments cost more than
    the games; nothing here reads the env id."""
    out = np.empty(count, dtype=object)
    for i in range(count):
        out[i] = {}
    return out


class MatrixGameVectorEnv(BaseVectorEnv):
    """``env_num`` repeated matrix games as one vector env (module docstring).

    Args:
        payoffs: the payoff table, shape (n_agents, |A_1|, ..., |A_n|).
        env_num: number of environments.
        episode_length: steps per episode.
        order: the fixed priority order (agent names; default ``possible_agents``).
        with_state: carry the game's state in the observations (as ``JointStepEnv``).
    """

    def __init__(self, payoffs: np.ndarray, env_num: int, *, episode_length: int = 25,
                 order: Sequence[str] | None = None, with_state: bool = False) -> None:
        if env_num < 1:
            raise ValueError(f"env_num={env_num!r} must be a positive integer")
        # No workers: BaseVectorEnv.__init__ is not called; the attributes the Collector and
        # BaseVectorEnv's own methods read are set here.
        self.env_num = int(env_num)
        self.wait_num = self.env_num
        self.timeout = None
        self.is_async = False
        self.waiting_conn: list[Any] = []
        self.waiting_id: list[int] = []
        self.ready_id = list(range(self.env_num))
        self.is_closed = False
        self.workers: list[Any] = []
        self._payoffs = np.asarray(payoffs, dtype=np.float64)
        reference = JointStepEnv(env=MatrixGame(self._payoffs, episode_length=episode_length), order=order,
                                 info_flags=False, with_state=with_state)
        self.joint_spec = reference.joint_spec
        self._observation_space = reference.observation_space
        # One action space per environment, as DummyVectorEnv's workers have: seed() seeds
        # each, and a Collector's random warm-up samples from each.
        self._action_spaces = [copy.deepcopy(reference.action_space) for _ in range(self.env_num)]
        self._sizes = np.asarray(self.joint_spec.action_sizes)
        self._episode_length = episode_length
        # The observations of a repeated game: after reset, inside an episode, after its last step.
        start, _ = reference.reset(seed=0)
        inside = start
        end = start
        for t in range(episode_length):
            obs, _, terminated, truncated, _ = reference.step(np.zeros(self.joint_spec.n_agents, np.int64))
            last = t == episode_length - 1
            if terminated or truncated != last:  # internal: what MatrixGame documents
                raise RuntimeError("MatrixGame's episode did not end by truncation after episode_length steps")
            if last:
                end = obs
            elif t == 0:
                inside = obs
            elif not np.array_equal(obs, inside):
                raise RuntimeError("the matrix game's observation changed inside an episode")
        self._start, self._inside, self._end = start, inside, end
        self._t = np.zeros(self.env_num, np.int64)

    def get_env_attr(self, key: str, id: int | list[int] | np.ndarray | None = None) -> list[Any]:
        """The spaces (the only attributes these environments have), one per environment."""
        ids = self._wrap_id(id)
        if key == "action_space":
            return [self._action_spaces[i] for i in ids]
        if key == "observation_space":
            return [self._observation_space for _ in ids]
        raise AttributeError(f"MatrixGameVectorEnv environments have no attribute {key!r}")

    def set_env_attr(self, key: str, value: Any, id: int | list[int] | np.ndarray | None = None) -> None:
        """Not supported (the environments are arrays)."""
        raise AttributeError(f"cannot set {key!r} on a MatrixGameVectorEnv")

    def reset(self, env_id: int | list[int] | np.ndarray | None = None, **kwargs: Any
              ) -> tuple[np.ndarray, Any]:
        """Start new episodes in ``env_id`` (all if None)."""
        self._assert_is_not_closed()
        ids = np.asarray(self._wrap_id(env_id), dtype=np.int64)
        self._t[ids] = 0
        obs = np.broadcast_to(self._start, (len(ids), *self._start.shape)).copy()
        return obs, _empty_infos(len(ids))

    def step(self, action: Any, id: int | list[int] | np.ndarray | None = None) -> gym_new_venv_step_type:
        """One time step of the environments ``id`` (all if None) with joint actions ``action``
        ((len(id), n_agents) action indices)."""
        self._assert_is_not_closed()
        ids = np.asarray(self._wrap_id(id), dtype=np.int64)
        if action is None:
            raise ValueError("action must not be None (this vector env is synchronous)")
        act = np.asarray(action)
        if act.shape != (len(ids), self.joint_spec.n_agents) or not np.issubdtype(act.dtype, np.integer) and \
                not np.array_equal(act, np.round(act)):
            raise ValueError(f"actions of shape {act.shape} (dtype {act.dtype}); expected integer actions of "
                             f"shape {(len(ids), self.joint_spec.n_agents)}")
        act = act.astype(np.int64)
        bad = (act < 0) | (act >= self._sizes)
        if bad.any():
            row, agent = np.argwhere(bad)[0]
            raise ValueError(f"action {act[row, agent]} of agent {agent} in environment {ids[row]} is outside "
                             f"0..{self._sizes[agent] - 1}")
        if (self._t[ids] >= self._episode_length).any():
            raise RuntimeError("step() after an episode ended; reset those environments first")
        reward = self._payoffs[(slice(None), *act.T)].T.copy()  # (R, n_agents)
        self._t[ids] += 1
        over = self._t[ids] >= self._episode_length
        obs = np.where(over[:, None, None], self._end, self._inside).astype(np.float32)
        terminated = np.zeros(len(ids), dtype=bool)
        return obs, reward, terminated, over.copy(), _empty_infos(len(ids))

    def seed(self, seed: int | list[int] | None = None) -> list[Any]:
        """Seed each environment's action space, as Tianshou's workers do (``seed`` + i for an
        int, one seed per environment for a list); the games themselves are deterministic."""
        if seed is None or isinstance(seed, int):
            seeds: list[int | None] = [None if seed is None else seed + i for i in range(self.env_num)]
        else:
            seeds = list(seed)
            if len(seeds) != self.env_num:
                raise ValueError(f"got {len(seeds)} seeds for {self.env_num} environments")
        return [space.seed(s) for space, s in zip(self._action_spaces, seeds, strict=True)]

    def render(self, **kwargs: Any) -> list[Any]:
        """Nothing to render."""
        return [None] * self.env_num

    def close(self) -> None:
        """Mark closed."""
        self.is_closed = True
