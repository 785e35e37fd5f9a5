"""Population training for MADDPG: K independent trials of :mod:`agents.maddpg` trained together.

The off-policy twin of :mod:`agents.population`. A matrix-game trial of MADDPG (10,000 steps,
a gradient step on 256 transitions every 10 time steps) spends most of its time in per-step
Python, not in arithmetic, so K trials run in one process as one learner whose networks are
stacked along a leading trial dimension:

* :class:`MADDPGPopulation` -- every trial's actors, critics and target networks, stacked with
  ``torch.func.stack_module_state``, evaluated through the single-trial code
  (:func:`agents.maddpg.critic_td_loss`, :func:`agents.maddpg.actor_q_loss`, the actors) under
  ``torch.func.vmap`` over ``functional_call``.
* :class:`MADDPGPopulationPolicy` -- a Tianshou ``Policy``: the joint actions of all K x n_envs
  environments, every trial sampling from its own ``torch.Generator``.
* :class:`TrialReplayBuffer` -- a Tianshou ``VectorReplayBuffer`` (vectorised ``add``) over all environments whose
  ``sample`` draws ``batch_size`` transitions for every trial from that trial's own
  environments, with the trial's own NumPy generator (trial-major rows).
* :class:`MADDPGPopulationAlgorithm` -- a Tianshou ``OffPolicyAlgorithm``: every trial's loss,
  summed and backpropagated once (trial k's loss reaches only trial k's slices), gradient-norm
  clipping per trial (:func:`agents.algorithm.clip_grad_norm_per_trial_`), Adam on the
  stacked tensors (elementwise, hence per trial), Polyak updates of the targets.
* :class:`MADDPGPopulationSession` -- collection through Tianshou's ``Collector`` over one
  vector env of K x n_envs environments (trial k owns environments k*n_envs ..
  (k+1)*n_envs - 1), training by Tianshou's off-policy trainer.

Nothing is shared across trials: trial k's networks start as the single trial of its seed
starts (built right after ``seed_everything(seed)``), its warm-up actions come from its
environments' action spaces seeded ``seed * 1000 + i`` as in the single trial, and its action
samples, Gumbel noise and replay samples come from generators of its own. A trial's result
therefore does not depend on the other trials or on K (to float rounding: batched matrix
products may round differently). The random streams are not the single trial's (Tianshou's
buffer and torch's distributions draw in their own ways), so a population trial equals a
single trial in distribution, not number for number.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pettingzoo.utils.env import ParallelEnv
from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm
from tianshou.data import Batch, Collector
from tianshou.env import BaseVectorEnv
from torch import nn
from torch.func import stack_module_state

from agents.adapter import JointStepEnv
from agents.algorithm import clip_grad_norm_per_trial_
from agents.lockstep_buffer import LockstepVectorReplayBuffer
from agents.maddpg import (
    MADDPG,
    MADDPGBatch,
    MADDPGConfig,
    MADDPGLearner,
    MADDPGPolicy,
    MADDPGTrainingStats,
    _obs_tensor,
    actor_q_loss,
    build_maddpg,
    check_total_steps,
    collect_unit,
    critic_td_loss,
    maddpg_batch,
    train_chunk,
)
from agents.population import TrialSamplingPolicy, _key, _trial_draws, check_seeds, map_over_trials
from agents.spec import JointSpec
from agents.training import _joint_action_space, seed_everything
from agents.vector_env import training_vector_env

__all__ = [
    "MADDPGPopulation",
    "MADDPGPopulationAlgorithm",
    "MADDPGPopulationPolicy",
    "MADDPGPopulationSession",
    "TrialReplayBuffer",
    "train_maddpg_population",
]

_ONLINE = ("actors.", "critics.")


class _TrialNetworks(nn.Module):
    """One trial's networks; the template that ``functional_call`` runs with a trial's tensors."""

    def __init__(self, actors: nn.ModuleList, critics: nn.ModuleList) -> None:
        super().__init__()
        self.actors = actors
        self.critics = critics
        self.actors_old = copy.deepcopy(actors)
        self.critics_old = copy.deepcopy(critics)

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self, *args)


class MADDPGPopulation(nn.Module):
    """The networks of K MADDPG trials, stacked (module docstring).

    Args:
        learners: K freshly built single-trial learners of one game and config (their
            networks are copied; the first serves as template).
    """

    def __init__(self, learners: Sequence[MADDPGLearner]) -> None:
        super().__init__()
        if len(learners) < 1:
            raise ValueError(f"a population needs at least one learner (K >= 1); got K={len(learners)}")
        first = learners[0]
        for other in learners[1:]:
            if other.spec != first.spec or other.config != first.config:
                raise ValueError("the learners of a population must share spec and config")
        nets = [_TrialNetworks(copy.deepcopy(lr.policy.actors), copy.deepcopy(lr.algorithm.critics))
                for lr in learners]
        stacked, _ = stack_module_state(nets)  # type: ignore[arg-type]
        self.size = len(learners)
        self.spec: JointSpec = first.spec
        self.config: MADDPGConfig = first.config
        self.first_obs = first.first_obs
        self.names = list(stacked)
        # Online networks are trained; the targets follow them by Polyak averaging (buffers).
        self.online = nn.ParameterDict({_key(n): nn.Parameter(t.detach().clone())
                                        for n, t in stacked.items() if n.startswith(_ONLINE)})
        for n, t in stacked.items():
            if not n.startswith(_ONLINE):
                self.register_buffer(_key(n), t.detach().clone())
        template = nets[0]
        template.requires_grad_(False)
        object.__setattr__(self, "template", template)  # not a submodule: never trained or saved

    template: _TrialNetworks

    def tensor(self, name: str) -> torch.Tensor:
        """The stacked (K, ...) tensor of the template's parameter ``name``."""
        key = _key(name)
        return self.online[key] if key in self.online else getattr(self, key)

    def names_of(self, prefix: str) -> list[str]:
        """The template's parameter names under ``prefix`` (``"actors."``, ``"critics_old."``, ...)."""
        return [n for n in self.names if n.startswith(prefix)]

    def map(self, fn: Callable[..., Any], *batched: torch.Tensor | None, detach_critics: bool = False) -> Any:
        """``fn(networks_k, *batched[k])`` for every trial k at once, stacked along dimension 0
        (``torch.func.vmap`` over ``functional_call``); ``batched`` are (K, ...) tensors.
        ``detach_critics``: the online critics enter as constants (no gradient reaches them)."""
        params = {}
        for n in self.names:
            t = self.tensor(n)
            params[n] = t.detach() if detach_critics and n.startswith("critics.") else t
        return map_over_trials(self.template, params, fn, *batched)

    @torch.no_grad()
    def soft_update_targets(self, tau: float) -> None:
        """target <- tau * online + (1 - tau) * target, for every trial."""
        for n in self.names:
            if n.startswith(("actors_old.", "critics_old.")):
                online = self.tensor(n.replace("_old.", ".", 1))
                self.tensor(n).mul_(1.0 - tau).add_(online, alpha=tau)

    def learner_of(self, k: int) -> MADDPGLearner:
        """A stand-alone single-trial learner holding trial k's networks (copies)."""
        if not 0 <= k < self.size:
            raise ValueError(f"trial index k={k!r} outside 0..{self.size - 1}")
        policy = MADDPGPolicy(spec=self.spec, config=self.config, action_space=_joint_action_space(self.spec))
        algorithm = MADDPG(policy=policy, config=self.config)
        with torch.no_grad():
            for name, module in (("actors.", policy.actors), ("critics.", algorithm.critics),
                                 ("actors_old.", _unwrapped(algorithm.actors_old)),
                                 ("critics_old.", _unwrapped(algorithm.critics_old))):
                state = {n[len(name):]: self.tensor(n)[k].detach().clone() for n in self.names_of(name)}
                module.load_state_dict(state, strict=True)
        return MADDPGLearner(spec=self.spec, config=self.config, policy=policy, algorithm=algorithm,
                             first_obs=self.first_obs)


def _unwrapped(lagged: Sequence[Any]) -> nn.ModuleList:
    """The modules behind Tianshou's lagged-network wrappers, as one ModuleList."""
    return nn.ModuleList(getattr(m, "module", m) for m in lagged)


class MADDPGPopulationPolicy(TrialSamplingPolicy):
    """Joint actions of all trials' environments: observations arrive as (K * n_envs, n_agents,
    width), trial k's in rows k*n_envs .. (k+1)*n_envs - 1; inside a training step each trial
    samples each actor's softmax with its own generator, otherwise every actor acts greedily.

    Args:
        population: the stacked networks.
        generators: one per trial.
        action_space: the adapter's joint action space.
        observation_space: the adapter's observation space.
    """

    def __init__(self, *, population: MADDPGPopulation, generators: Sequence[torch.Generator],
                 action_space: Any, observation_space: Any = None) -> None:
        super().__init__(size=population.size, generators=generators, action_space=action_space,
                         observation_space=observation_space)
        self.population = population

    def logits(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per agent i: (K, B, action_sizes[i]) logits from obs (K, B, n_agents, obs_dim)."""
        def one(nets: _TrialNetworks, o: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(actor(o[:, i]) for i, actor in enumerate(nets.actors))

        result: tuple[torch.Tensor, ...] = self.population.map(one, obs)
        return result

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
        """Joint actions (K * n_envs, n_agents) for a batch of all trials' observations."""
        obs = _obs_tensor(batch.obs)  # (K * E, n, d)
        k = self.population.size
        if obs.shape[0] % k:
            raise ValueError(f"{obs.shape[0]} observations do not split into {k} trials' environments")
        rows = obs.shape[0] // k
        with torch.no_grad():
            logits = self.logits(obs.reshape(k, rows, *obs.shape[1:]))
            if self.is_within_training_step:
                u = _trial_draws(self.generators, (rows, len(logits)))  # (K, E, n)
                # Inverse-CDF sampling of each actor's softmax with the trial's draws.
                act = [(F.softmax(lg, dim=-1).cumsum(-1) < u[..., i:i + 1]).sum(-1).clamp(max=lg.shape[-1] - 1)
                       for i, lg in enumerate(logits)]
            else:
                act = [lg.argmax(dim=-1) for lg in logits]
        return Batch(act=torch.stack(act, dim=-1).reshape(k * rows, -1).numpy(), state=state)


class TrialReplayBuffer(LockstepVectorReplayBuffer):
    """A ``VectorReplayBuffer`` of K trials x n_envs environments that samples per trial.

    ``sample(batch_size)`` returns K * batch_size transitions: rows k*batch_size ..
    (k+1)*batch_size - 1 are drawn uniformly from trial k's environments (k*n_envs ..
    (k+1)*n_envs - 1) with trial k's generator, as Tianshou's buffer draws uniformly from all
    of its environments for a single trial.

    Args:
        total_size: capacity over all environments.
        buffer_num: K * n_envs.
        generators: one NumPy generator per trial.
    """

    def __init__(self, total_size: int, buffer_num: int, *, generators: Sequence[np.random.Generator]) -> None:
        if not generators or buffer_num % len(generators):
            raise ValueError(f"{buffer_num} environments do not split into {len(generators)} trials")
        super().__init__(total_size, buffer_num)
        self.generators = list(generators)
        self.envs_per_trial = buffer_num // len(generators)

    def sample_indices(self, batch_size: int | None) -> np.ndarray:
        """Trial-major indices of ``batch_size`` transitions per trial (0 or None: all stored ones)."""
        if batch_size is None or batch_size <= 0:
            return super().sample_indices(batch_size)
        e = self.envs_per_trial
        out = []
        for k, rng in enumerate(self.generators):
            lengths = np.asarray(self._lengths[k * e:(k + 1) * e], dtype=np.int64)
            total = int(lengths.sum())
            if total == 0:
                raise ValueError(f"trial {k} has no transitions to sample yet")
            draws = rng.integers(0, total, size=batch_size)
            env = np.searchsorted(np.cumsum(lengths), draws, side="right")  # which of the trial's envs
            local = draws - (np.cumsum(lengths) - lengths)[env]
            out.append(np.asarray(self._offset)[k * e + env] + local)
        return np.concatenate(out)


class MADDPGPopulationAlgorithm(OffPolicyAlgorithm[MADDPGPopulationPolicy]):
    """The MADDPG update (:class:`agents.maddpg.MADDPG`) for every trial at once.

    Args:
        policy: the population's actors.
        generators: one torch generator per trial, for the Gumbel-softmax noise.
    """

    def __init__(self, *, policy: MADDPGPopulationPolicy, generators: Sequence[torch.Generator]) -> None:
        super().__init__(policy=policy)
        pop = policy.population
        if len(generators) != pop.size:
            raise ValueError(f"got {len(generators)} generators for a population of {pop.size}")
        self.population = pop
        self.config = pop.config
        self.spec = pop.spec
        self.generators = list(generators)
        self._actor_params = [pop.tensor(n) for n in pop.names_of("actors.")]
        self._critic_params = [pop.tensor(n) for n in pop.names_of("critics.")]
        # Adam is elementwise: on stacked tensors every trial has its own moments (torch's
        # defaults, as Tianshou's AdamOptimizerFactory of the single trial).
        self.actor_optim = torch.optim.Adam(self._actor_params, lr=self.config.lr)
        self.critic_optim = torch.optim.Adam(self._critic_params, lr=self.config.lr)
        self.last_clip_norms: dict[str, torch.Tensor] = {}
        """Per-trial (K,) gradient norms of the last step, before clipping ("actor", "critic")."""

    def _exponentials(self, rows: int) -> torch.Tensor:
        """(K, rows, 2 * sum(action_sizes)) Exponential(1) draws, trial k's from its generator:
        the first half for the target actions, the second for the actor update."""
        width = 2 * sum(self.spec.action_sizes)
        return torch.stack([torch.empty(rows, width).exponential_(generator=g) for g in self.generators])

    def _step(self, optim: torch.optim.Optimizer, params: list[torch.Tensor], losses: torch.Tensor,
              name: str) -> None:
        optim.zero_grad(set_to_none=True)
        losses.sum().backward()  # trial k's loss reaches only trial k's slices
        if self.config.max_grad_norm is not None:
            self.last_clip_norms[name] = clip_grad_norm_per_trial_(params, self.config.max_grad_norm)
        optim.step()

    def _update_with_batch(self, batch: Any) -> MADDPGTrainingStats:
        k, config, sizes = self.population.size, self.config, self.spec.action_sizes
        data = maddpg_batch(batch, self.spec)
        rows = data.obs.shape[0] // k
        stacked = tuple(t.reshape(k, rows, *t.shape[1:]) for t in data.as_tuple())  # (K, B, ...) each
        noise_target, noise_actor = self._exponentials(rows).split(sum(sizes), dim=-1)

        def critic_loss(nets: _TrialNetworks, *xs: torch.Tensor) -> torch.Tensor:
            *fields, noise = xs
            return critic_td_loss(nets.critics, nets.actors_old, nets.critics_old, MADDPGBatch(*fields),
                                  action_sizes=sizes, gamma=config.gamma, temperature=config.gumbel_temperature,
                                  exponential=noise)

        def actor_loss(nets: _TrialNetworks, *xs: torch.Tensor) -> torch.Tensor:
            *fields, noise = xs
            return actor_q_loss(nets.actors, nets.critics, MADDPGBatch(*fields), action_sizes=sizes,
                                temperature=config.gumbel_temperature, logit_penalty=config.logit_penalty,
                                exponential=noise)

        critic_losses = self.population.map(critic_loss, *stacked, noise_target)  # (K,)
        self._step(self.critic_optim, self._critic_params, critic_losses, "critic")
        # The actor loss reads the critics as updated just now, as constants.
        actor_losses = self.population.map(actor_loss, *stacked, noise_actor, detach_critics=True)  # (K,)
        self._step(self.actor_optim, self._actor_params, actor_losses, "actor")
        self.population.soft_update_targets(config.tau)
        return MADDPGTrainingStats(critic_loss=float(critic_losses.detach().mean()),
                                   actor_loss=float(actor_losses.detach().mean()))


class MADDPGPopulationSession:
    """K MADDPG trials with one vector env, one replay buffer and one collector; the population
    twin of :class:`agents.maddpg.MADDPGTrainingSession`.

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv.
        config: hyperparameters (as for a single trial).
        total_steps: joint environment steps per trial, warm-up included.
        seeds: one per trial, distinct.
        order: priority order for :func:`stmg.wrap` (MADDPG's actors ignore it).
        observation: ``"own"`` or ``"state"`` base observations.
        venv_fn: builds the vector env from the K x n_envs environment factories (default
            Tianshou's ``DummyVectorEnv``); ``venv.seed`` must seed each environment's action
            space, which the warm-up samples from.
    """

    def __init__(self, env_fn: Callable[[], ParallelEnv], *, config: MADDPGConfig, total_steps: int,
                 seeds: Sequence[int], order: Sequence[str] | None = None, observation: str = "own",
                 venv_fn: Callable[[list[Callable[[], JointStepEnv]]], BaseVectorEnv] | None = None) -> None:
        check_total_steps(total_steps, config)
        seeds = check_seeds(seeds)
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self.config, self.total_steps, self.seeds = config, total_steps, seeds

        def make() -> JointStepEnv:
            return JointStepEnv(env=env_fn(), order=order, observation=observation)

        learners, torch_generators, numpy_generators = [], [], []
        for seed in seeds:  # the single trial's start: env and networks made right after seeding
            seed_everything(seed)
            probe = make()
            learners.append(build_maddpg(env=probe, config=config))
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())  # continues the stream the single trial uses
            torch_generators.append(generator)
            numpy_generators.append(np.random.default_rng([seed, 1]))
        self.population = MADDPGPopulation(learners)
        self.spec = self.population.spec
        self.policy = MADDPGPopulationPolicy(population=self.population, generators=torch_generators,
                                             action_space=probe.action_space,
                                             observation_space=probe.observation_space)
        self.algorithm = MADDPGPopulationAlgorithm(
            policy=self.policy, generators=[torch.Generator().manual_seed(s + 1) for s in seeds])
        k, n_envs = len(seeds), config.n_envs
        self.venv = training_vector_env([make for _ in range(k * n_envs)], venv_fn=venv_fn, expected=f"{k} x {n_envs}")
        self.venv.seed([s * 1000 + i for s in seeds for i in range(n_envs)])
        # A trial never stores more than total_steps transitions: no larger buffer than that
        # (the single trial's buffer_size still caps it, so wrap-around happens as there).
        per_env = min(config.buffer_size // n_envs, math.ceil(total_steps / n_envs) + 1)
        self.buffer = TrialReplayBuffer(per_env * k * n_envs, k * n_envs, generators=numpy_generators)
        self.collector: Collector[Any] = Collector(self.policy, self.venv, self.buffer)
        self.collector.reset()
        self.warmup_done = config.warmup_steps == 0

    @property
    def size(self) -> int:
        """K, the number of trials."""
        return self.population.size

    def train_steps(self, n_steps: int, *, logger: Any = None) -> None:
        """Collect and learn ``n_steps`` more joint environment steps per trial (the first call
        includes the random warm-up), with Tianshou's off-policy trainer."""
        train_chunk(self.algorithm, self.collector, self.config, n_steps, warmup_done=self.warmup_done,
                    trials=self.size, logger=logger)
        self.warmup_done = True

    def learner_of(self, k: int) -> MADDPGLearner:
        """Trial k's trained networks as a stand-alone single-trial learner."""
        return self.population.learner_of(k)

    def close(self) -> None:
        """Close the environments."""
        self.venv.close()


def train_maddpg_population(env_fn: Callable[[], ParallelEnv], *, config: MADDPGConfig, steps: int,
                            seeds: Sequence[int],
                            venv_fn: Callable[[list[Callable[[], JointStepEnv]]], BaseVectorEnv] | None = None
                            ) -> list[MADDPGLearner]:
    """Train one MADDPG trial per seed together (:class:`MADDPGPopulationSession`); the
    population twin of :func:`agents.maddpg.train_maddpg` (same ``steps`` semantics)."""
    session = MADDPGPopulationSession(env_fn, config=config, total_steps=steps, seeds=seeds, venv_fn=venv_fn)
    try:
        session.train_steps(max(steps, config.warmup_steps + collect_unit(config)))
    finally:
        session.close()
    return [session.learner_of(k) for k in range(session.size)]
