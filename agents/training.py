"""Putting it together: build a STEP (or baseline) learner for a game and train it with Tianshou.

:func:`build_learner` makes the model, policy and algorithm for a :class:`JointSpec`;
:func:`train` runs Tianshou's ``Collector`` over a ``DummyVectorEnv``/``SubprocVectorEnv`` of
:class:`~agents.adapter.JointStepEnv` and its ``OnPolicyTrainer``
(``algorithm.run_training(OnPolicyTrainerParams(...))``), optionally with a TensorBoard logger.
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
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OnPolicyTrainerParams

from agents.adapter import JointStepEnv, has_state
from agents.algorithm import STEPAlgorithm
from agents.config import STEPConfig, Variant
from agents.model import MultiAgentActorCritic
from agents.policy import STEPPolicy
from agents.spec import JointSpec

OrderArg = Sequence[str] | Callable[[Any], Sequence[str]] | None


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
    """
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
    the adapter then carries it. IPPO's independent critics never do."""
    if config.critic_state == "never" or config.variant is Variant.IPPO:
        return False
    available = has_state(env)
    if config.critic_state == "always" and not available:
        raise ValueError(f"critic_state='always' needs env.state() and a Box env.state_space, "
                         f"which {type(env).__name__} does not provide; use 'auto' or 'never'")
    return available


def _joint_action_space(spec: JointSpec) -> Any:
    from gymnasium import spaces

    if spec.action_kind == "discrete":
        return spaces.MultiDiscrete(np.array(spec.action_sizes, dtype=np.int64))
    return spaces.Box(-np.inf, np.inf, (spec.n_agents, spec.max_action_size), np.float32)


def train(
    env_fn: Callable[[], ParallelEnv],
    *,
    config: STEPConfig,
    total_steps: int,
    seed: int,
    order: OrderArg = None,
    observation: str = "own",
    subprocess: bool = False,
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
        logdir: write TensorBoard logs there.
        show_progress: show Tianshou's progress bar.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps!r} must be positive")
    seed_everything(seed)
    torch.set_num_threads(config.torch_threads)

    first_env = env_fn()
    with_state = critics_read_state(config, first_env)
    envs_made = [first_env]

    def make() -> JointStepEnv:
        # The learner reads the per-agent flags from the observations (adapter.step_flags).
        env = envs_made.pop() if envs_made else env_fn()
        return JointStepEnv(env=env, order=order, observation=observation, info_flags=False,
                            with_state=with_state)

    probe = make()
    learner = build_learner(spec=probe.joint_spec, config=config, env=probe)
    learner.algorithm.reseed(seed)
    learner.algorithm.set_training_horizon(total_steps)
    n_envs = config.n_envs
    venv_cls = SubprocVectorEnv if subprocess else DummyVectorEnv
    venv = venv_cls([make for _ in range(n_envs)])
    venv.seed([seed * 1000 + i for i in range(n_envs)])
    per_collect = min(config.steps_per_collect, total_steps)
    buffer_size = (math.ceil(per_collect / n_envs) + 1) * n_envs  # headroom: no wrap-around
    collector: Collector = Collector(learner.policy, venv, VectorReplayBuffer(buffer_size, n_envs))
    collector.reset()
    logger = None
    if logdir is not None:
        from tianshou.utils import TensorboardLogger
        from torch.utils.tensorboard import SummaryWriter

        logger = TensorboardLogger(SummaryWriter(logdir))
    params = OnPolicyTrainerParams(
        training_collector=collector,
        max_epochs=1,
        epoch_num_steps=total_steps,
        collection_step_num_env_steps=per_collect,
        update_step_num_repetitions=config.epochs,
        batch_size=None,
        test_collector=None,
        logger=logger,
        multi_agent_return_reduction=_mean_over_agents,
        verbose=False,
        show_progress=show_progress,
    )
    learner.algorithm.run_training(params)
    venv.close()
    return learner


class _MultiAgentReturnsFilter(logging.Filter):
    """Drop Tianshou's warning that per-agent episode returns (episodes, n_agents) are 2-D.

    The collector summarises returns before ``multi_agent_return_reduction`` is applied, which
    logs this warning once per collect; the reduced statistics that are logged are correct.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "only 1D sequences are supported" not in record.getMessage()


logging.getLogger("tianshou.data.stats").addFilter(_MultiAgentReturnsFilter())


def _mean_over_agents(returns: np.ndarray) -> np.ndarray:
    """Tianshou logs one return per episode; ours are (episodes, n_agents)."""
    returns = np.asarray(returns, dtype=float)
    return returns.mean(axis=-1) if returns.ndim > 1 else returns
