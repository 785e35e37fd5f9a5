"""MADDPG (Lowe et al., 2017) for discrete actions: the simultaneous-play baseline of the paper.

Every agent ``i`` has a decentralised actor ``mu_i(o_i)`` on its own observation and a
centralised critic ``Q_i(s, a_1, ..., a_n)``, where ``s`` is the concatenation of all agents'
observations. Discrete actions are made differentiable with the straight-through Gumbel-softmax
(Jang et al., 2017): the forward pass uses a one-hot sample, the backward pass the gradient of
the tempered softmax. Critics regress on ``r_i + gamma * (1 - terminated_i) * Q'_i(s', a')``
with ``a'`` sampled from the target actors; actor ``i`` maximises ``Q_i(s, a_i ~ mu_i,
a_{-i} from the replay buffer)``; target networks follow with soft (Polyak) updates.

Play is simultaneous: actors never see the others' actions. The environment is
:class:`agents.adapter.JointStepEnv`, which plays one STMG time step per gymnasium step; since
all the actions of a time step are fixed before the step, driving the priority chain with them
is exactly one step of the simultaneous (parallel) game, so the adapter serves both settings.
Learning runs on Tianshou: :class:`MADDPGPolicy` is a ``Policy``, :class:`MADDPG` an
``OffPolicyAlgorithm`` (template method ``_update_with_batch``), and training is
``algorithm.run_training(OffPolicyTrainerParams(...))`` over a ``Collector``, a
``DummyVectorEnv`` and a ``VectorReplayBuffer`` (:class:`agents.lockstep_buffer.LockstepVectorReplayBuffer`).

Entry points: :func:`train_maddpg` returns a :class:`MADDPGLearner` with
:meth:`~MADDPGLearner.greedy_joint_action` and :meth:`~MADDPGLearner.action_probs`;
:func:`matrix_game_trial` runs one trial of the paper's matrix-game protocol and returns
``{"seed", "greedy_joint_action", "action_probs", "is_se"}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pettingzoo.utils.env import ParallelEnv
from tianshou.algorithm.algorithm_base import (
    LaggedNetworkPolyakUpdateAlgorithmMixin,
    OffPolicyAlgorithm,
    Policy,
    TrainingStats,
)
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.trainer import OffPolicyTrainerParams
from torch import nn

from agents.adapter import ALIVE, EXTRA_COLUMNS, JointStepEnv, unpack_info
from agents.lockstep_buffer import LockstepVectorReplayBuffer
from agents.spec import JointSpec, UnsupportedSpaceError
from agents.training import mean_over_agents, seed_everything
from agents.vector_env import lean_vector_env

__all__ = [
    "MADDPG",
    "MADDPGBatch",
    "MADDPGConfig",
    "MADDPGLearner",
    "MADDPGPolicy",
    "MADDPGTrainingSession",
    "MADDPGTrainingStats",
    "actor_q_loss",
    "build_maddpg",
    "critic_td_loss",
    "gumbel_softmax_st",
    "check_total_steps",
    "collect_unit",
    "maddpg_batch",
    "matrix_game_record",
    "matrix_game_trial",
    "one_hot_joint",
    "train_chunk",
    "train_maddpg",
]


@dataclass(kw_only=True)
class MADDPGConfig:
    """Every setting of the MADDPG baseline (defaults: the repeated matrix games)."""

    hidden_size: int = 64
    """Width of the two hidden layers of every actor and critic."""
    lr: float = 1e-3
    """Adam learning rate of actors and critics."""
    tau: float = 0.01
    """Soft-update rate of the target networks: target <- tau * online + (1 - tau) * target."""
    gamma: float = 0.95
    """Discount factor."""
    batch_size: int = 256
    """Transitions (time steps) per gradient step."""
    gumbel_temperature: float = 1.0
    """Temperature of the Gumbel-softmax relaxation in the actor and target-action samples."""
    buffer_size: int = 100_000
    """Replay buffer capacity in time steps."""
    warmup_steps: int = 500
    """Time steps of uniformly random joint actions collected before learning starts."""
    steps_per_collect: int = 50
    """Time steps collected between two rounds of gradient steps."""
    gradient_steps_per_step: float = 0.1
    """Gradient steps per collected time step (0.1: one gradient step every 10 time steps)."""
    logit_penalty: float = 1e-3
    """Weight of the mean squared actor logits in the actor loss; keeps the logits bounded
    (as in the reference implementation of MADDPG)."""
    max_grad_norm: float | None = 0.5
    """Gradient-norm clipping of all actors together and all critics together (None: off)."""
    n_envs: int = 5
    """Parallel environments in the ``DummyVectorEnv``."""
    torch_threads: int | None = 1
    """``torch.set_num_threads`` during training (None: leave it). The networks are tiny, so
    one thread is about 3x faster than two on a 2-core machine (thread hand-off dominates)."""

    def __post_init__(self) -> None:
        positive = {
            "hidden_size": self.hidden_size, "lr": self.lr, "batch_size": self.batch_size,
            "gumbel_temperature": self.gumbel_temperature, "buffer_size": self.buffer_size,
            "steps_per_collect": self.steps_per_collect,
            "gradient_steps_per_step": self.gradient_steps_per_step, "n_envs": self.n_envs,
            "torch_threads": 1 if self.torch_threads is None else self.torch_threads,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"MADDPGConfig.{name}={value!r} must be positive")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"MADDPGConfig.tau={self.tau!r} must lie in (0, 1]")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"MADDPGConfig.gamma={self.gamma!r} must lie in [0, 1]")
        if self.warmup_steps < 0 or self.logit_penalty < 0:
            raise ValueError(
                f"MADDPGConfig.warmup_steps={self.warmup_steps!r} and "
                f"logit_penalty={self.logit_penalty!r} must not be negative"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"MADDPGConfig.max_grad_norm={self.max_grad_norm!r} must be positive or None")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for logs and result files."""
        return asdict(self)


def gumbel_softmax_st(logits: torch.Tensor, temperature: float,
                      exponential: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through Gumbel-softmax sample: one-hot forward, softmax gradient backward.

    Args:
        logits: (..., n_actions) unnormalised log-probabilities.
        temperature: softmax temperature of the relaxation (> 0).
        exponential: (..., n_actions) Exponential(1) draws to make the Gumbel noise from
            (``-log``); default: drawn here from torch's global generator. A population passes
            each trial's own draws.

    Returns:
        (..., n_actions) one-hot rows; ``argmax`` of a row is a sample of
        ``Categorical(logits=logits)`` (the Gumbel-max trick, whatever the temperature).
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    if exponential is None:
        exponential = torch.empty_like(logits).exponential_()
    # Gumbel(0, 1) noise as -log(Exponential(1)), which never takes log(0).
    soft = F.softmax((logits - exponential.log()) / temperature, dim=-1)  # (..., A)
    # The one-hot by scatter (not F.one_hot), which also runs under torch.func.vmap.
    hard = torch.zeros_like(soft).scatter(-1, soft.argmax(dim=-1, keepdim=True), 1.0)  # (..., A)
    return hard - soft.detach() + soft


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def _obs_tensor(obs: Any) -> torch.Tensor:
    """(B, n_agents, obs_dim) float32 base observations from an adapter observation batch."""
    return torch.as_tensor(np.asarray(obs)[..., :-EXTRA_COLUMNS], dtype=torch.float32)


def _acted(obs: Any) -> torch.Tensor:
    """(B, n_agents) float32, 1.0 for the agents that act in the observed time step."""
    return torch.as_tensor(np.asarray(obs)[..., ALIVE], dtype=torch.float32)


class MADDPGPolicy(Policy):
    """The decentralised actors; samples joint actions while training, else acts greedily.

    Args:
        spec: sizes of the game (from the adapter).
        config: hyperparameters (``hidden_size``).
        action_space: the adapter's joint action space (MultiDiscrete).
        observation_space: the adapter's observation space.
    """

    def __init__(self, *, spec: JointSpec, config: MADDPGConfig, action_space: gym.Space,
                 observation_space: gym.Space | None = None) -> None:
        if spec.action_kind != "discrete":
            raise TypeError(
                f"this MADDPG handles Discrete action spaces only; the game has {spec.action_kind!r} actions"
            )
        if spec.image_shape is not None:
            raise UnsupportedSpaceError(
                f"this MADDPG reads vector observations only; the game's are images of shape "
                f"{spec.image_shape} (use a PPO variant, which encodes them with a CNN, or flatten "
                "and downscale them with a wrapper)")
        super().__init__(action_space=action_space, observation_space=observation_space,
                         action_scaling=False, action_bound_method=None)
        self.spec = spec
        self.actors = nn.ModuleList(
            _mlp(spec.obs_dim, config.hidden_size, size) for size in spec.action_sizes
        )

    def logits(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """Per agent k: (B, action_sizes[k]) logits from obs (B, n_agents, obs_dim)."""
        return [actor(obs[:, k]) for k, actor in enumerate(self.actors)]

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
        """Joint action (B, n_agents): a sample of each actor's softmax while inside a training
        step (this is the hard Gumbel-softmax sample), the most probable action otherwise."""
        obs = _obs_tensor(batch.obs)  # (B, n, d)
        with torch.no_grad():
            logits = self.logits(obs)
            if self.is_within_training_step:
                act = [torch.distributions.Categorical(logits=lg).sample() for lg in logits]
            else:
                act = [lg.argmax(dim=-1) for lg in logits]
        return Batch(act=torch.stack(act, dim=1).numpy(), state=state)  # (B, n)


@dataclass(kw_only=True)
class MADDPGTrainingStats(TrainingStats):
    """Losses of one gradient step, summed over the agents."""

    critic_loss: float
    actor_loss: float


class MADDPG(OffPolicyAlgorithm[MADDPGPolicy], LaggedNetworkPolyakUpdateAlgorithmMixin):
    """Centralised critics, target networks and the MADDPG update (module docstring).

    Args:
        policy: the actors.
        config: hyperparameters.
    """

    def __init__(self, *, policy: MADDPGPolicy, config: MADDPGConfig) -> None:
        super().__init__(policy=policy)
        LaggedNetworkPolyakUpdateAlgorithmMixin.__init__(self, tau=config.tau)
        spec = policy.spec
        self.config = config
        self.spec = spec
        joint_in = spec.n_agents * spec.obs_dim + sum(spec.action_sizes)
        self.critics = nn.ModuleList(_mlp(joint_in, config.hidden_size, 1) for _ in range(spec.n_agents))
        self.actors_old = [self._add_lagged_network(a) for a in policy.actors]
        self.critics_old = [self._add_lagged_network(c) for c in self.critics]
        self.actor_optim = self._create_optimizer(
            policy.actors, AdamOptimizerFactory(lr=config.lr), max_grad_norm=config.max_grad_norm)
        self.critic_optim = self._create_optimizer(
            self.critics, AdamOptimizerFactory(lr=config.lr), max_grad_norm=config.max_grad_norm)

    def one_hot_joint(self, act: torch.Tensor) -> torch.Tensor:
        """(B, sum(action_sizes)) concatenated one-hots of a joint action act (B, n_agents) long."""
        return one_hot_joint(act, self.spec.action_sizes)

    def critic_loss(self, batch: Any) -> torch.Tensor:
        """Sum over agents of the mean squared TD error of Q_i on ``batch`` (:func:`critic_td_loss`)."""
        return critic_td_loss(self.critics, self.actors_old, self.critics_old, maddpg_batch(batch, self.spec),
                              action_sizes=self.spec.action_sizes, gamma=self.config.gamma, temperature=self.config.gumbel_temperature)

    def actor_loss(self, batch: Any) -> torch.Tensor:
        """Sum over agents of -Q_i(s, a_i ~ mu_i, a_{-i} from the batch), plus the logit penalty
        (:func:`actor_q_loss`)."""
        return actor_q_loss(self.policy.actors, self.critics, maddpg_batch(batch, self.spec),
                            action_sizes=self.spec.action_sizes, temperature=self.config.gumbel_temperature,
                            logit_penalty=self.config.logit_penalty)

    def _update_with_batch(self, batch: Any) -> MADDPGTrainingStats:
        data = maddpg_batch(batch, self.spec)  # the tensors once, for both losses
        sizes, temperature = self.spec.action_sizes, self.config.gumbel_temperature
        critic_loss = critic_td_loss(self.critics, self.actors_old, self.critics_old, data, action_sizes=sizes,
                                     gamma=self.config.gamma, temperature=temperature)
        self.critic_optim.step(critic_loss)
        actor_loss = actor_q_loss(self.policy.actors, self.critics, data, action_sizes=sizes,
                                  temperature=temperature, logit_penalty=self.config.logit_penalty)
        # The actor loss also leaves gradients on the critics; the critic optimiser zeroes them
        # before its next backward pass, so they never reach a critic update.
        self.actor_optim.step(actor_loss)
        self._update_lagged_network_weights()
        return MADDPGTrainingStats(critic_loss=float(critic_loss.item()), actor_loss=float(actor_loss.item()))


@dataclass(frozen=True)
class MADDPGBatch:
    """One gradient step's transitions as tensors (B rows; a population stacks K of them)."""

    obs: torch.Tensor
    """(B, n_agents, obs_dim) base observations."""
    obs_next: torch.Tensor
    """(B, n_agents, obs_dim) base observations after the step."""
    joint_one_hot: torch.Tensor
    """(B, sum(action_sizes)) the joint action taken, as concatenated one-hots."""
    rew: torch.Tensor
    """(B, n_agents) rewards."""
    terminated: torch.Tensor
    """(B, n_agents) 1.0 where the agent's episode ended by termination (no bootstrap)."""
    acted: torch.Tensor
    """(B, n_agents) 1.0 for the agents that acted (dead agents carry no loss)."""

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """The fields in order (for ``torch.func.vmap``, which maps over tensors, not dataclasses)."""
        return (self.obs, self.obs_next, self.joint_one_hot, self.rew, self.terminated, self.acted)


def one_hot_joint(act: torch.Tensor, action_sizes: Sequence[int]) -> torch.Tensor:
    """(..., sum(action_sizes)) concatenated one-hots of joint actions act (..., n_agents) long."""
    return torch.cat([F.one_hot(act[..., k], size).float() for k, size in enumerate(action_sizes)], dim=-1)


def maddpg_batch(batch: Any, spec: JointSpec) -> MADDPGBatch:
    """The tensors of a sampled Tianshou batch of adapter transitions."""
    obs, obs_next = _obs_tensor(batch.obs), _obs_tensor(batch.obs_next)  # (B, n, d)
    n, size = spec.n_agents, obs.shape[0]
    act = torch.as_tensor(np.asarray(batch.act), dtype=torch.long)  # (B, n)
    return MADDPGBatch(
        obs=obs, obs_next=obs_next, joint_one_hot=one_hot_joint(act, spec.action_sizes),
        rew=torch.as_tensor(np.asarray(batch.rew), dtype=torch.float32).reshape(size, n),
        terminated=_per_agent_flags(batch, "terminated", size, n), acted=_acted(batch.obs))


Networks = Sequence[nn.Module] | nn.ModuleList
"""One network per agent, in the agents' order (a list, or an ``nn.ModuleList``)."""


def critic_td_loss(critics: Networks, actors_old: Networks, critics_old: Networks,
                   data: MADDPGBatch, *, action_sizes: Sequence[int], gamma: float, temperature: float,
                   exponential: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over agents i of mean_b acted_i * (Q_i(s, a) - y_i)^2, with the target
    y_i = r_i + gamma * (1 - terminated_i) * Q'_i(s', a'), a' drawn from the target actors
    by the straight-through Gumbel-softmax.

    ``exponential``: (B, sum(action_sizes)) Exponential(1) draws for a' (agent k's columns in
    the order of the agents); default: drawn from torch's global generator.
    """
    obs_next = data.obs_next
    size = obs_next.shape[0]
    s, s_next = data.obs.reshape(size, -1), obs_next.reshape(size, -1)  # (B, n * d)
    with torch.no_grad():
        draws = _split_columns(exponential, action_sizes)
        a_next = torch.cat([gumbel_softmax_st(actor(obs_next[:, k]), temperature, draws[k])
                            for k, actor in enumerate(actors_old)], dim=1)  # (B, sum A)
        q_next = torch.cat([c(torch.cat([s_next, a_next], 1)) for c in critics_old], 1)  # (B, n)
        target = data.rew + gamma * (1.0 - data.terminated) * q_next  # (B, n)
    sa = torch.cat([s, data.joint_one_hot], dim=1)  # (B, n * d + sum A)
    q = torch.cat([c(sa) for c in critics], dim=1)  # (B, n)
    return (((q - target) ** 2) * data.acted).mean(dim=0).sum()


def actor_q_loss(actors: Networks, critics: Networks, data: MADDPGBatch, *,
                 action_sizes: Sequence[int], temperature: float, logit_penalty: float, exponential: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over agents k of -mean_b acted_k * Q_k(s, a_k ~ mu_k, a_{-k} from the batch) plus
    ``logit_penalty`` times the mean squared logits of mu_k; a_k is the straight-through
    Gumbel-softmax sample (``exponential`` as in :func:`critic_td_loss`)."""
    obs = data.obs
    size = obs.shape[0]
    s = obs.reshape(size, -1)  # (B, n * d)
    starts = np.cumsum((0, *action_sizes))
    draws = _split_columns(exponential, action_sizes)
    all_logits = [actor(obs[:, k]) for k, actor in enumerate(actors)]  # (B, A_k) each
    loss = torch.zeros((), dtype=obs.dtype)
    buffer_joint = data.joint_one_hot
    for k, logits in enumerate(all_logits):
        a_k = gumbel_softmax_st(logits, temperature, draws[k])  # (B, A_k), differentiable
        joint = torch.cat([buffer_joint[:, : starts[k]], a_k, buffer_joint[:, starts[k + 1]:]], 1)
        q_k = critics[k](torch.cat([s, joint], dim=1)).squeeze(1)  # (B,)
        loss = loss - (q_k * data.acted[:, k]).mean() + logit_penalty * logits.pow(2).mean()
    return loss


def _split_columns(x: torch.Tensor | None, sizes: Sequence[int]) -> list[torch.Tensor | None]:
    """``x`` (B, sum(sizes)) cut into per-agent column blocks (None: a None per agent)."""
    if x is None:
        return [None] * len(sizes)
    if x.shape[-1] != sum(sizes):
        raise ValueError(f"exponential draws of width {x.shape[-1]}; expected {sum(sizes)} (one per action)")
    return list(torch.split(x, list(sizes), dim=-1))


def _per_agent_flags(batch: Any, key: str, size: int, n: int) -> torch.Tensor:
    """(B, n) float per-agent flags from the adapter's infos, else the env-level flag broadcast."""
    info = getattr(batch, "info", None)
    if info is not None and "flags" in info.get_keys() and np.asarray(info.flags).shape == (size, n, 3):
        return torch.as_tensor(unpack_info(info)[key], dtype=torch.float32)
    flag = torch.as_tensor(np.asarray(getattr(batch, key)), dtype=torch.float32).reshape(size, 1)
    return flag.expand(size, n)


@dataclass
class MADDPGLearner:
    """A MADDPG agent: actors (``policy``), critics and optimisers (``algorithm``)."""

    spec: JointSpec
    config: MADDPGConfig
    policy: MADDPGPolicy
    algorithm: MADDPG
    first_obs: np.ndarray
    """The adapter observation after ``reset`` (the constant observation of a matrix game)."""

    def action_probs(self, obs: np.ndarray | None = None) -> np.ndarray:
        """(n_agents, max_action_size) softmax of each actor at ``obs`` (default: ``first_obs``);
        entries beyond an agent's action count are 0."""
        o = _obs_tensor(obs if obs is not None else self.first_obs).unsqueeze(0)  # (1, n, d)
        probs = np.zeros((self.spec.n_agents, self.spec.max_action_size))
        with torch.no_grad():
            for k, logits in enumerate(self.policy.logits(o)):  # (1, A_k)
                probs[k, : logits.shape[1]] = F.softmax(logits, dim=-1)[0].numpy()
        return probs

    def greedy_joint_action(self, obs: np.ndarray | None = None) -> tuple[int, ...]:
        """Each agent's most probable action at ``obs`` (default: ``first_obs``), counted from 0."""
        probs = self.action_probs(obs)
        return tuple(int(np.argmax(probs[k, :size])) for k, size in enumerate(self.spec.action_sizes))


def build_maddpg(*, env: JointStepEnv, config: MADDPGConfig) -> MADDPGLearner:
    """Actors, critics and optimisers for the game that ``env`` plays (weights from torch's RNG)."""
    spec = env.joint_spec
    policy = MADDPGPolicy(spec=spec, config=config, action_space=env.action_space,
                          observation_space=env.observation_space)
    algorithm = MADDPG(policy=policy, config=config)
    first_obs, _ = env.reset(seed=0)
    return MADDPGLearner(spec=spec, config=config, policy=policy, algorithm=algorithm, first_obs=first_obs)


def collect_unit(config: MADDPGConfig) -> int:
    """Environment steps one collect really takes (whole vector steps over ``config.n_envs``)."""
    return math.ceil(config.steps_per_collect / config.n_envs) * config.n_envs


def check_total_steps(total_steps: Any, config: MADDPGConfig) -> None:
    """``ValueError`` unless ``total_steps`` is an integer larger than the warm-up."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= config.warmup_steps:
        raise ValueError(f"total_steps={total_steps!r} must be an integer larger than MADDPG's "
                         f"warmup_steps={config.warmup_steps}")


def train_chunk(algorithm: OffPolicyAlgorithm, collector: Collector, config: MADDPGConfig, n_steps: int, *,
                warmup_done: bool, trials: int = 1, logger: Any = None) -> None:
    """Collect and learn ``n_steps`` more joint environment steps per trial with Tianshou's
    off-policy trainer; unless ``warmup_done``, first ``config.warmup_steps`` uniformly random
    ones (which must fit in the chunk). ``trials``: the collector's environments belong to
    this many trials of ``config.n_envs`` each (a population), which collect and take their
    gradient steps together, each as many as a single trial."""
    if not warmup_done:
        warmup = config.warmup_steps
        if n_steps < warmup + collect_unit(config):
            raise ValueError(
                f"the first chunk ({n_steps} steps) must hold MADDPG's warmup_steps={warmup} plus "
                f"one collect ({collect_unit(config)} steps); evaluate less often or lower warmup_steps"
            )
        stats = collector.collect(n_step=trials * warmup, random=True)
        if logger is not None:
            logger.log_training_data({"n_collected_steps": stats.n_collected_steps}, 0)
        n_steps -= stats.n_collected_steps // trials
    params = OffPolicyTrainerParams(
        training_collector=collector,
        max_epochs=1,
        epoch_num_steps=trials * n_steps,
        collection_step_num_env_steps=trials * config.steps_per_collect,
        batch_size=config.batch_size,  # per trial (a population's buffer samples it for each)
        # Per collected step of all trials: each trial takes the single trial's gradient steps.
        update_step_num_gradient_steps_per_sample=config.gradient_steps_per_step / trials,
        test_collector=None,
        logger=logger,
        multi_agent_return_reduction=mean_over_agents,
        verbose=False,
        show_progress=False,
    )
    # reset_collectors=False: keep the replay buffer and the episodes under way (or just
    # restarted by reset_envs); Trainer.run would otherwise reset the envs once more.
    algorithm.create_trainer(params).run(reset_collectors=False)


class MADDPGTrainingSession:
    """MADDPG with its vector env, replay buffer and collector, trained in chunks of
    environment steps (Tianshou's off-policy trainer), as :class:`agents.training.TrainingSession`
    is for the PPO family.

    The first chunk starts with ``config.warmup_steps`` uniformly random steps, which must fit
    in it: the action spaces that draw them are seeded when the envs are built, so a run resumed
    from a checkpoint could not draw the same ones in a later chunk.

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv (one per vector-env worker).
        config: hyperparameters.
        total_steps: joint environment steps of the whole run, warm-up included.
        seed: seeds Python, NumPy, torch, the environments and their action spaces.
        order: priority order for :func:`stmg.wrap` (MADDPG's actors ignore it; it only decides
            the order in which the adapter hands the actions to the wrapper).
        observation: ``"own"`` or ``"state"`` base observations.
        subprocess: use ``SubprocVectorEnv`` instead of ``DummyVectorEnv``.
    """

    def __init__(self, env_fn: Callable[[], ParallelEnv], *, config: MADDPGConfig, total_steps: int, seed: int,
                 order: Sequence[str] | None = None, observation: str = "own", subprocess: bool = False) -> None:
        check_total_steps(total_steps, config)
        seed_everything(seed)
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self.config = config

        def make(index: int) -> Callable[[], JointStepEnv]:
            def factory() -> JointStepEnv:
                env = JointStepEnv(env=env_fn(), order=order, observation=observation)
                env.action_space.seed(seed * 1000 + index)  # the warm-up samples from it
                return env
            return factory

        probe = make(0)()
        self.learner: MADDPGLearner = build_maddpg(env=probe, config=config)
        self.venv = lean_vector_env([make(i) for i in range(config.n_envs)], subprocess=subprocess)
        self.venv.seed([seed * 1000 + i for i in range(config.n_envs)])
        self.buffer: VectorReplayBuffer = LockstepVectorReplayBuffer(config.buffer_size, config.n_envs)
        self.collector: Collector[Any] = Collector(self.learner.policy, self.venv, self.buffer)
        self.collector.reset()
        self.warmup_done = config.warmup_steps == 0

    @property
    def steps_per_chunk_unit(self) -> int:
        """Environment steps one collect really takes (whole vector steps)."""
        return collect_unit(self.config)

    def reset_envs(self, seeds: Sequence[int]) -> None:
        """Re-seed every training environment (one seed per env) and start new episodes; the
        replay buffer is kept."""
        if len(seeds) != self.config.n_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.config.n_envs} training envs")
        self.venv.seed([int(s) for s in seeds])
        self.collector.reset(reset_buffer=False)

    def train_steps(self, n_steps: int, *, logger: Any = None) -> None:
        """Collect and learn for ``n_steps`` more joint environment steps (the first call
        includes the random warm-up).

        Args:
            n_steps: environment steps to add.
            logger: a Tianshou logger for the collect and update statistics (or None).
        """
        train_chunk(self.learner.algorithm, self.collector, self.config, n_steps, warmup_done=self.warmup_done,
                    logger=logger)
        self.warmup_done = True

    def close(self) -> None:
        """Close the training environments."""
        self.venv.close()


def train_maddpg(env_factory: Callable[[], ParallelEnv], *, config: MADDPGConfig, steps: int,
                 seed: int) -> MADDPGLearner:
    """Train MADDPG for about ``steps`` time steps (joint environment steps, summed over envs).

    Args:
        env_factory: makes a fresh PettingZoo ParallelEnv (one per vector-env worker).
        config: hyperparameters.
        steps: time steps in total, ``config.warmup_steps`` random ones included; rounded up to
            a multiple of ``config.steps_per_collect``.
        seed: seeds Python, NumPy, torch, the environments and their action spaces; the same
            seed gives the same result.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= config.warmup_steps:
        raise ValueError(
            f"steps={steps!r} must be an integer larger than config.warmup_steps={config.warmup_steps}"
        )
    session = MADDPGTrainingSession(env_factory, config=config, total_steps=steps, seed=seed)
    try:
        # One chunk: the warm-up, then (at least) the rest.
        session.train_steps(max(steps, config.warmup_steps + session.steps_per_chunk_unit))
    finally:
        session.close()
    return session.learner


def matrix_game_trial(env_factory: Callable[[], ParallelEnv], *, stackelberg_joint_action: Sequence[int],
                      config: MADDPGConfig, steps: int, seed: int) -> dict[str, Any]:
    """One trial of the matrix-game protocol: train, then read off the greedy joint action.

    ``env_factory`` makes the repeated game (a one-state ParallelEnv with Discrete actions);
    ``stackelberg_joint_action`` is its equilibrium joint action, one action index per agent in
    ``possible_agents`` order. The caller computes it (for a payoff table, by backward
    induction), so that this module stays independent of any particular game.

    Returns:
        ``{"seed", "greedy_joint_action" (list of int), "action_probs" (n_agents lists),
        "is_se" (bool)}``.
    """
    probe = env_factory()
    agents = getattr(probe, "possible_agents", None)
    if agents is None or not callable(getattr(probe, "step", None)):
        raise TypeError(
            f"matrix_game_trial needs an env_factory that makes a PettingZoo ParallelEnv, "
            f"got {type(probe).__name__}"
        )
    se_joint = tuple(int(a) for a in stackelberg_joint_action)
    if len(se_joint) != len(agents):
        raise ValueError(
            f"stackelberg_joint_action={list(stackelberg_joint_action)} has {len(se_joint)} actions; "
            f"expected one per agent of {list(agents)}"
        )
    learner = train_maddpg(env_factory, config=config, steps=steps, seed=seed)
    return matrix_game_record(learner, seed=seed, stackelberg_joint_action=se_joint)


def matrix_game_record(learner: MADDPGLearner, *, seed: int, stackelberg_joint_action: Sequence[int]
                       ) -> dict[str, Any]:
    """What a trained learner converged to on a repeated game: ``{"seed", "greedy_joint_action",
    "action_probs", "is_se"}`` (as :func:`matrix_game_trial` returns)."""
    joint = learner.greedy_joint_action()
    return {"seed": seed, "greedy_joint_action": list(joint), "action_probs": learner.action_probs().tolist(),
            "is_se": joint == tuple(int(a) for a in stackelberg_joint_action)}
