"""One interface over the learners the harness trains: the PPO family and MADDPG.

A :class:`LearnerSession` trains in chunks of environment steps between two evaluations,
re-seeds its training envs at chunk boundaries, and exposes everything a run must checkpoint
to continue exactly where it stopped (:meth:`~LearnerSession.state` /
:meth:`~LearnerSession.load_state`) and what a user loads later (:meth:`~LearnerSession.save_model`).

* :class:`PPOSession` wraps :class:`agents.training.TrainingSession` (STEP, MAPPO, IPPO, HAPPO).
* :class:`MADDPGSession` wraps :class:`agents.maddpg.MADDPGTrainingSession` (the session
  :func:`agents.maddpg.train_maddpg` trains in one chunk). Its replay buffer is part of its state (:meth:`MADDPGSession.replay_buffer`), and so are its
  target networks, which ``MADDPG.state_dict()`` does not contain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pettingzoo.utils.env import ParallelEnv
from tianshou.data import VectorReplayBuffer

from agents.adapter import JointStepEnv
from agents.checkpoint import save_checkpoint
from agents.config import STEPConfig
from agents.maddpg import MADDPGConfig, MADDPGLearner, MADDPGTrainingSession, build_maddpg
from agents.training import Learner, TrainingSession

MADDPG_FORMAT = "stmg-step-maddpg"
MADDPG_FORMAT_VERSION = 1


class LearnerSession(Protocol):
    """What the harness needs from a learner (module docstring)."""

    @property
    def policy(self) -> Any:
        """The Tianshou policy (greedy outside a training step)."""

    @property
    def n_envs(self) -> int:
        """Training environments."""

    @property
    def chunk_unit(self) -> int:
        """Environment steps of one collect; chunk lengths are multiples of it."""

    def reset_envs(self, seeds: Sequence[int]) -> None:
        """Re-seed the training envs and start new episodes."""

    def train_steps(self, n_steps: int, *, logger: Any) -> None:
        """Collect and learn for ``n_steps`` more environment steps."""

    def state(self) -> dict[str, Any]:
        """Learner state for resuming (plain containers of tensors and numbers)."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""

    def generator_state(self) -> torch.Tensor | None:
        """The learner's own torch generator (minibatch shuffling), if it has one."""

    def set_generator_state(self, state: torch.Tensor | None) -> None:
        """Inverse of :meth:`generator_state`."""

    def save_model(self, path: Path) -> None:
        """Write a model checkpoint that ``examples/evaluate.py`` loads."""

    def close(self) -> None:
        """Close the training envs."""


class _SessionWrapper:
    """What both learner sessions pass straight on to their training session (``self.session``:
    an :class:`agents.training.TrainingSession` or :class:`agents.maddpg.MADDPGTrainingSession`)."""

    session: TrainingSession | MADDPGTrainingSession

    @property
    def policy(self) -> Any:
        return self.session.learner.policy

    @property
    def n_envs(self) -> int:
        return self.session.config.n_envs

    @property
    def chunk_unit(self) -> int:
        return self.session.steps_per_chunk_unit

    def reset_envs(self, seeds: Sequence[int]) -> None:
        self.session.reset_envs(seeds)

    def train_steps(self, n_steps: int, *, logger: Any) -> None:
        self.session.train_steps(n_steps, logger=logger)

    def close(self) -> None:
        self.session.close()


class PPOSession(_SessionWrapper):
    """STEP and the PPO baselines through :class:`agents.training.TrainingSession`."""

    def __init__(self, env_fn: Callable[[], ParallelEnv], *, config: STEPConfig, total_steps: int,
                 seed: int, order: Sequence[str] | None, observation: str,
                 subprocess: bool = False) -> None:
        self.session: TrainingSession = TrainingSession(
            env_fn, config=config, total_steps=total_steps, seed=seed, order=order, observation=observation,
            subprocess=subprocess)

    @property
    def learner(self) -> Learner:
        """The learner (model, policy, algorithm)."""
        return self.session.learner

    def state(self) -> dict[str, Any]:
        return {"algorithm": self.session.learner.algorithm.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.session.learner.algorithm.load_state_dict(dict(state["algorithm"]))

    def generator_state(self) -> torch.Tensor | None:
        # STEPAlgorithm keeps its minibatch/HAPPO-order generator private; it must be restored
        # for a resumed run to shuffle exactly as an uninterrupted one.
        generator = getattr(self.session.learner.algorithm, "_generator", None)
        return generator.get_state() if isinstance(generator, torch.Generator) else None

    def set_generator_state(self, state: torch.Tensor | None) -> None:
        generator = getattr(self.session.learner.algorithm, "_generator", None)
        if state is not None and isinstance(generator, torch.Generator):
            generator.set_state(state)

    def save_model(self, path: Path) -> None:
        save_checkpoint(self.session.learner, path)


class MADDPGSession(_SessionWrapper):
    """MADDPG through :class:`agents.maddpg.MADDPGTrainingSession` (module docstring)."""

    def __init__(self, env_fn: Callable[[], ParallelEnv], *, config: MADDPGConfig, total_steps: int,
                 seed: int, order: Sequence[str] | None, observation: str,
                 subprocess: bool = False) -> None:
        self.session: MADDPGTrainingSession = MADDPGTrainingSession(
            env_fn, config=config, total_steps=total_steps, seed=seed, order=order, observation=observation,
            subprocess=subprocess)

    @property
    def learner(self) -> MADDPGLearner:
        """Actors, critics and optimisers."""
        return self.session.learner

    def state(self) -> dict[str, Any]:
        algorithm = self.learner.algorithm
        return {
            "algorithm": algorithm.state_dict(),
            # The target networks are not in MADDPG.state_dict(): keep them here.
            "targets": [m.state_dict() for m in (*algorithm.actors_old, *algorithm.critics_old)],
            "warmup_done": self.session.warmup_done,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        algorithm = self.learner.algorithm
        algorithm.load_state_dict(dict(state["algorithm"]))
        for module, saved in zip((*algorithm.actors_old, *algorithm.critics_old), state["targets"], strict=True):
            module.load_state_dict(saved)
        self.session.warmup_done = bool(state["warmup_done"])

    def replay_buffer(self) -> VectorReplayBuffer:
        """The replay buffer (saved beside the state by the harness)."""
        return self.session.buffer

    def load_replay_buffer(self, buffer: VectorReplayBuffer) -> None:
        """Put a saved replay buffer back (into the collector as well)."""
        self.session.buffer = buffer
        self.session.collector.buffer = buffer

    def generator_state(self) -> torch.Tensor | None:
        return None

    def set_generator_state(self, state: torch.Tensor | None) -> None:
        pass

    def save_model(self, path: Path) -> None:
        save_maddpg_model(self.learner, path)


def save_maddpg_model(learner: MADDPGLearner, path: Path) -> None:
    """A MADDPG model file: config, game signature, actors and critics (plain data)."""
    torch.save({"format": MADDPG_FORMAT, "format_version": MADDPG_FORMAT_VERSION,
                "config": learner.config.to_dict(), "spec": learner.spec.signature(),
                "algorithm": learner.algorithm.state_dict()}, path)


def is_maddpg_model(path: Path) -> bool:
    """Whether ``path`` holds a model written by :func:`save_maddpg_model`."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    return isinstance(data, dict) and data.get("format") == MADDPG_FORMAT


def load_maddpg_model(path: Path, env: JointStepEnv) -> MADDPGLearner:
    """Rebuild a MADDPG learner for ``env`` from :func:`save_maddpg_model`'s file."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("format_version") != MADDPG_FORMAT_VERSION:
        raise ValueError(f"{path} has MADDPG model format {data.get('format_version')!r}, "
                         f"expected {MADDPG_FORMAT_VERSION}")
    expected = env.joint_spec.signature()
    if data["spec"] != expected:
        raise ValueError(f"{path} was written for the game {data['spec']}, this env is {expected}")
    learner = build_maddpg(env=env, config=MADDPGConfig(**data["config"]))
    learner.algorithm.load_state_dict(dict(data["algorithm"]))
    return learner


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG state as plain data (for ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {"name": name, "keys": torch.as_tensor(np.asarray(keys, np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`numpy_rng_state`."""
    keys = np.asarray(state["keys"].numpy(), np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def load_model(path: Path, env: JointStepEnv) -> tuple[str, Any, Any]:
    """Load a model written by a run (``last.pt``/``best.pt``) for the game ``env`` plays.

    Returns ``(algo, policy, model)``: the algorithm name (``maddpg`` or the PPO variant), the
    Tianshou policy, and the STEP family's ``MultiAgentActorCritic`` (None for MADDPG).

    Raises:
        ValueError: not a model file, or one written for a differently shaped game
            (:class:`agents.checkpoint.CheckpointMismatchError` is a ``ValueError``).
    """
    from agents.checkpoint import load_into
    from agents.training import build_learner

    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a model file of this toolkit")
    if data.get("format") == MADDPG_FORMAT:
        maddpg = load_maddpg_model(path, env)
        return "maddpg", maddpg.policy, None
    if "config" not in data:
        raise ValueError(f"{path} is not a model file of this toolkit (no config inside)")
    config = STEPConfig.from_dict(dict(data["config"]))
    # The critics may have read the env's state in training; acting does not need it, but the
    # model has the critics' shape of the run.
    stored_spec = data.get("spec")
    state_dim = int(stored_spec.get("state_dim", 0)) if isinstance(stored_spec, dict) else 0
    spec = dataclasses.replace(env.joint_spec, state_dim=state_dim)
    learner = build_learner(spec=spec, config=config, env=env)
    load_into(learner, path)
    return config.variant.value, learner.policy, learner.model
