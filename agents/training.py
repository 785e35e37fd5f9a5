"""Putting it together: build a STEP (or baseline) learner for a game and train it with Tianshou.

:func:`build_learner` makes the model, policy and algorithm for a :class:`JointSpec`;
:class:`TrainingSession` holds a learner with Tianshou's ``Collector`` over a
``DummyVectorEnv``/``SubprocVectorEnv`` (:mod:`agents.vector_env`) of
:class:`~agents.adapter.JointStepEnv` and trains it in
chunks with Tianshou's ``OnPolicyTrainer`` (``algorithm.run_training(OnPolicyTrainerParams(...))``);
:func:`train` is one session trained in one chunk, optionally with a TensorBoard logger.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pettingzoo.utils.env import ParallelEnv
from tianshou.data import Collector
from tianshou.env import BaseVectorEnv
from tianshou.trainer import OnPolicyTrainerParams

from agents.adapter import JointStepEnv, has_state
from agents.algorithm import STEPAlgorithm
from agents.allocator import reuse_freed_memory
from agents.config import STEPConfig, Variant
from agents.lockstep_buffer import LockstepVectorReplayBuffer
from agents.model import MultiAgentActorCritic
from agents.policy import STEPPolicy
from agents.spec import JointSpec
from agents.vector_env import training_vector_env

OrderArg = Sequence[str] | Callable[[Any], Sequence[str]] | None
VenvFn = Callable[[list[Callable[[], JointStepEnv]]], BaseVectorEnv]
"""Builds a vector env from the training envs' factories (one per env), e.g. an array-computed
equivalent of ``DummyVectorEnv(fns)`` for a game where one exists."""


@dataclass
class Learner:
    """Everything a trained agent consists of."""

    spec: JointSpec
    config: STEPConfig
    model: MultiAgentActorCritic
    policy: STEPPolicy
    algorithm: STEPAlgorithm


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) so that a run is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_learner(*, spec: JointSpec, config: STEPConfig, env: JointStepEnv | None = None) -> Learner:
    """Model, policy and algorithm of ``config.variant`` for a game of shape ``spec``.

    ``env`` (optional) supplies the exact joint action and observation spaces to the policy.
    Image games also make the process keep large freed memory blocks
    (:func:`agents.allocator.reuse_freed_memory`): their batch tensors are hundreds of MB.
    """
    if spec.is_image:
        reuse_freed_memory()
    model = MultiAgentActorCritic(spec=spec, config=config)
    policy = STEPPolicy(
        model=model,
        action_space=env.action_space if env is not None else _joint_action_space(spec),
        observation_space=env.observation_space if env is not None else None,
    )
    algorithm = STEPAlgorithm(policy=policy, config=config)
    return Learner(spec=spec, config=config, model=model, policy=policy, algorithm=algorithm)


def critics_read_state(config: STEPConfig, env: ParallelEnv) -> bool:
    """Whether the learner's critics read ``env``'s global state (``config.critic_state``):
    the adapter then carries it. IPPO's independent critics never do.

    A state that is an image (a 3-D Box, as pistonball's 560x880x3 screen) is left out by
    ``"auto"`` and refused by ``"always"``: the critics would read it as a flat vector, and
    a flat screen costs an MLP of millions of weights per critic (the critics of image games
    read the agents' image features instead)."""
    if config.critic_state == "never" or config.variant is Variant.IPPO:
        return False
    available = has_state(env)
    if config.critic_state == "always" and not available:
        raise ValueError(f"critic_state='always' needs env.state() and a Box env.state_space, "
                         f"which {type(env).__name__} does not provide; use 'auto' or 'never'")
    state_shape = tuple(getattr(getattr(env, "state_space", None), "shape", None) or ())
    if available and len(state_shape) == 3:
        if config.critic_state == "always":
            raise ValueError(f"critic_state='always': {type(env).__name__}'s state is an image of "
                             f"shape {state_shape}, which the critics cannot read (they read flat "
                             "states); use 'auto' (which leaves it out) or 'never'")
        return False
    return available


def learner_env_maker(env_fn: Callable[[], ParallelEnv], *, config: STEPConfig, order: OrderArg,
                      observation: str) -> tuple[Callable[[], JointStepEnv], bool]:
    """A factory of the learner's training envs and whether they carry the global state.

    The first env made by ``env_fn`` decides the state question (:func:`critics_read_state`)
    and is then reused by the first call of the factory, so no env is made in vain. The envs
    put no flags into their infos: the learner reads them from the observations
    (:func:`agents.adapter.step_flags`).
    """
    first_env = env_fn()
    with_state = critics_read_state(config, first_env)
    envs_made = [first_env]

    def make() -> JointStepEnv:
        env = envs_made.pop() if envs_made else env_fn()
        return JointStepEnv(env=env, order=order, observation=observation, info_flags=False,
                            with_state=with_state)

    return make, with_state


def _joint_action_space(spec: JointSpec) -> Any:
    from gymnasium import spaces

    if spec.action_kind == "discrete":
        return spaces.MultiDiscrete(np.array(spec.action_sizes, dtype=np.int64))
    return spaces.Box(-np.inf, np.inf, (spec.n_agents, spec.max_action_size), np.float32)


class TrainingSession:
    """A learner with its vector env and collector, trained in chunks of environment steps.

    :func:`train` is one session trained in a single chunk. A harness that evaluates between
    chunks calls :meth:`train_steps` repeatedly; :meth:`reset_envs` re-seeds and restarts the
    training environments (used at chunk boundaries, so that a run resumed from a checkpoint
    sees exactly the environments an uninterrupted run saw).

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv (one per vector-env worker).
        config: hyperparameters (``config.variant`` picks STEP or a baseline).
        total_steps: joint environment steps the whole run will take (the training horizon
            that schedules read; also caps the steps per collect).
        seed: seeds Python, NumPy, torch, the learner's generator and the environments.
        order: priority order for :func:`stmg.wrap`.
        observation: ``"own"`` or ``"state"`` base observations.
        subprocess: use ``SubprocVectorEnv`` instead of ``DummyVectorEnv``.
        venv_fn: builds the vector env from the ``n_envs`` env factories instead (it must
            return what ``DummyVectorEnv`` of them would; the observation space is checked).
    """

    def __init__(
        self,
        env_fn: Callable[[], ParallelEnv],
        *,
        config: STEPConfig,
        total_steps: int,
        seed: int,
        order: OrderArg = None,
        observation: str = "own",
        subprocess: bool = False,
        venv_fn: VenvFn | None = None,
    ) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps={total_steps!r} must be positive")
        if subprocess and venv_fn is not None:
            raise ValueError("give subprocess=True or a venv_fn, not both")
        seed_everything(seed)
        torch.set_num_threads(config.torch_threads)
        make, self.with_state = learner_env_maker(env_fn, config=config, order=order, observation=observation)
        probe = make()
        self.learner = build_learner(spec=probe.joint_spec, config=config, env=probe)
        self.learner.algorithm.reseed(seed)
        self.learner.algorithm.set_training_horizon(total_steps)
        self.config = config
        self.total_steps = total_steps
        n_envs = config.n_envs
        self.venv = training_vector_env([make for _ in range(n_envs)], venv_fn=venv_fn, subprocess=subprocess,
                                        expected=f"n_envs={n_envs}", observation_space=probe.observation_space)
        self.venv.seed([seed * 1000 + i for i in range(n_envs)])
        self.steps_per_collect = min(config.steps_per_collect, total_steps)
        buffer_size = (math.ceil(self.steps_per_collect / n_envs) + 1) * n_envs  # headroom: no wrap-around
        self.collector: Collector = Collector(self.learner.policy, self.venv,
                                              LockstepVectorReplayBuffer(buffer_size, n_envs))
        self.collector.reset()

    @property
    def steps_per_chunk_unit(self) -> int:
        """Environment steps one collect really takes (the collector rounds a collect up to
        whole vector steps); chunks that are multiples of it end exactly where asked."""
        n_envs = self.config.n_envs
        return math.ceil(self.steps_per_collect / n_envs) * n_envs

    def reset_envs(self, seeds: Sequence[int]) -> None:
        """Re-seed every training environment (``seeds``: one per env) and start new episodes."""
        if len(seeds) != self.config.n_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.config.n_envs} training envs")
        self.venv.seed([int(s) for s in seeds])
        self.collector.reset()

    def train_steps(self, n_steps: int, *, logger: Any = None, show_progress: bool = False) -> None:
        """Collect and learn for ``n_steps`` more joint environment steps (rounded up to whole
        collects) with Tianshou's on-policy trainer.

        Args:
            n_steps: environment steps to add.
            logger: a Tianshou logger that receives the collect and update statistics (note
                that Tianshou 2.0.1's episode statistics are wrong for episodes longer than
                one collect per env).
            show_progress: show Tianshou's progress bar.
        """
        if n_steps <= 0:
            raise ValueError(f"n_steps={n_steps!r} must be positive")
        params = OnPolicyTrainerParams(
            training_collector=self.collector,
            max_epochs=1,
            epoch_num_steps=n_steps,
            collection_step_num_env_steps=self.steps_per_collect,
            update_step_num_repetitions=self.config.epochs,
            batch_size=None,
            test_collector=None,
            logger=logger,
            multi_agent_return_reduction=mean_over_agents,
            verbose=False,
            show_progress=show_progress,
        )
        self.learner.algorithm.run_training(params)

    def close(self) -> None:
        """Close the training environments."""
        self.venv.close()


def train(
    env_fn: Callable[[], ParallelEnv],
    *,
    config: STEPConfig,
    total_steps: int,
    seed: int,
    order: OrderArg = None,
    observation: str = "own",
    subprocess: bool = False,
    venv_fn: VenvFn | None = None,
    logdir: str | None = None,
    show_progress: bool = False,
) -> Learner:
    """Train a learner for ``total_steps`` joint environment steps.

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv (one per vector-env worker).
        config: hyperparameters (``config.variant`` picks STEP or a baseline).
        total_steps: joint environment steps (time steps, summed over envs).
        seed: seeds torch, NumPy and the environments; same seed, same result.
        order: priority order for :func:`stmg.wrap`.
        observation: ``"own"`` or ``"state"`` base observations.
        subprocess: use ``SubprocVectorEnv`` instead of ``DummyVectorEnv``.
        venv_fn: builds the vector env instead (:class:`TrainingSession`).
        logdir: write TensorBoard logs there.
        show_progress: show Tianshou's progress bar.
    """
    session = TrainingSession(env_fn, config=config, total_steps=total_steps, seed=seed, order=order,
                              observation=observation, subprocess=subprocess, venv_fn=venv_fn)
    logger = None
    if logdir is not None:
        from tianshou.utils import TensorboardLogger
        from torch.utils.tensorboard import SummaryWriter

        logger = TensorboardLogger(SummaryWriter(logdir))
    try:
        session.train_steps(total_steps, logger=logger, show_progress=show_progress)
    finally:
        session.close()
    return session.learner


class _MultiAgentReturnsFilter(logging.Filter):
    """Drop Tianshou's warning that per-agent episode returns (episodes, n_agents) are 2-D.

    The collector summarises returns before ``multi_agent_return_reduction`` is applied, which
    logs this warning once per collect; the reduced statistics that are logged are correct.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "only 1D sequences are supported" not in record.getMessage()


logging.getLogger("tianshou.data.stats").addFilter(_MultiAgentReturnsFilter())


def mean_over_agents(returns: np.ndarray) -> np.ndarray:
    """Tianshou's ``multi_agent_return_reduction``: it logs one return per episode; ours are
    (episodes, n_agents)."""
    returns = np.asarray(returns, dtype=float)
    return returns.mean(axis=-1) if returns.ndim > 1 else returns
