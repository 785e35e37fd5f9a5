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

from typing import Any

import numpy as np
import torch
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
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
