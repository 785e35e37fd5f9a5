"""Tianshou's vector envs without the env-id entry in every step info.

``BaseVectorEnv.step`` writes ``info["env_id"] = j`` into every environment's info dict on every
step. Only Tianshou's ``AsyncCollector`` reads it; the synchronous ``Collector`` that every
learner here uses knows which environments it stepped. The entry is not free: the collector
turns an array of non-empty info dicts into a ``Batch`` one dict at a time, and with the joint-step
adapter's otherwise empty infos that conversion was a large part of the collector's per-step
cost (on a two-agent matrix game, ``python benchmarks/bench_step.py``). These subclasses drop the
entry, so empty infos stay empty and the collector skips the conversion; nothing else changes
(training is bit for bit the same, ``tests/test_vector_env.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.env import BaseVectorEnv, DummyVectorEnv, SubprocVectorEnv
from tianshou.env.venvs import gym_new_venv_step_type


def _without_env_ids(out: gym_new_venv_step_type) -> gym_new_venv_step_type:
    for info in out[4]:
        info.pop("env_id", None)
    return out


class LeanDummyVectorEnv(DummyVectorEnv):
    """``DummyVectorEnv`` whose step infos carry no ``env_id`` (module docstring). Not for
    Tianshou's ``AsyncCollector``, which reads it."""

    def step(self, action: np.ndarray | torch.Tensor | None,
             id: int | list[int] | np.ndarray | None = None) -> gym_new_venv_step_type:
        """``DummyVectorEnv.step``, the ``env_id`` entries removed from the infos."""
        return _without_env_ids(super().step(action, id))


class LeanSubprocVectorEnv(SubprocVectorEnv):
    """``SubprocVectorEnv`` whose step infos carry no ``env_id`` (module docstring). Not for
    Tianshou's ``AsyncCollector``, which reads it."""

    def step(self, action: np.ndarray | torch.Tensor | None,
             id: int | list[int] | np.ndarray | None = None) -> gym_new_venv_step_type:
        """``SubprocVectorEnv.step``, the ``env_id`` entries removed from the infos."""
        return _without_env_ids(super().step(action, id))


def lean_vector_env(fns: list[Any], *, subprocess: bool = False) -> DummyVectorEnv | SubprocVectorEnv:
    """A :class:`LeanDummyVectorEnv` (or, with ``subprocess``, a :class:`LeanSubprocVectorEnv`)
    of the environment factories ``fns``."""
    return LeanSubprocVectorEnv(fns) if subprocess else LeanDummyVectorEnv(fns)


def training_vector_env(fns: list[Any], *, venv_fn: Callable[[list[Any]], BaseVectorEnv] | None = None,
                        subprocess: bool = False, expected: str,
                        observation_space: gym.Space | None = None) -> BaseVectorEnv:
    """The learners' vector env of the factories ``fns``: :func:`lean_vector_env`, or
    ``venv_fn(fns)`` where one is given, checked to hold one env per factory (``expected``:
    how the count reads in the error, e.g. ``"4 x 8"``) and, given ``observation_space``, to
    observe that space.

    Raises:
        ValueError: ``venv_fn`` made another number of envs or envs of another observation space.
    """
    if venv_fn is None:
        return lean_vector_env(fns, subprocess=subprocess)
    venv = venv_fn(fns)
    if len(venv) != len(fns):
        raise ValueError(f"venv_fn made {len(venv)} environments; expected {expected}")
    if observation_space is not None:
        made_space = venv.get_env_attr("observation_space", 0)[0]
        if made_space != observation_space:
            raise ValueError(f"venv_fn's environments observe {made_space}, the learner's {observation_space}")
    return venv
