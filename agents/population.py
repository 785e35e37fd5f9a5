"""Population training: K independent trials of a PPO-family learner trained together.

Many seeds of a small learner (the repeated matrix games: 10,000 steps, networks of 64 units)
cost mostly per-step Python overhead, not arithmetic. A population trains K trials in one
process as one learner whose parameters are stacked along a leading trial dimension:

* :class:`PopulationModel` -- the K models' parameters, stacked with
  ``torch.func.stack_module_state`` (one leaf tensor per parameter of the single-trial
  :class:`~agents.model.MultiAgentActorCritic`, shape (K, ...)), evaluated through the
  single-trial code: :meth:`PopulationModel.map` runs any function of a model (the priority
  chain, ``evaluate_joint``, the loss of a gradient step) under ``torch.func.vmap`` over
  ``torch.func.functional_call``. What the function reads of the batch *structure* (who is
  alive, the order, the pairs' agents and priorities) is shared by all trials and closed
  over, so the model code's data-dependent Python branches run on ordinary tensors.
* :class:`PopulationPolicy` -- a Tianshou ``Policy``: the joint actions of all K x n_envs
  environments, every trial sampling from its own ``torch.Generator``.
* :class:`PopulationAlgorithm` -- a Tianshou ``OnPolicyAlgorithm``: per-trial advantages
  (:func:`agents.gae.per_agent_gae` over all trials' columns at once), per-trial advantage
  normalisation, the single-trial loss (:func:`agents.algorithm.step_loss`) for every trial,
  the sum of the K losses backpropagated once (trial k's loss reaches only trial k's slice),
  per-trial gradient-norm clipping (:func:`agents.algorithm.clip_grad_norm_per_trial_`) and
  one Adam over the stacked tensors (elementwise, hence per trial), per-trial minibatch
  permutations.
* :class:`PopulationSession` -- the K learners with Tianshou's ``Collector`` over one vector
  env of K x n_envs environments (trial k owns environments k*n_envs .. (k+1)*n_envs - 1),
  trained by Tianshou's on-policy trainer.

Trial k of a population starts exactly as the single-trial learner of its seed does
(:class:`agents.training.TrainingSession`): its model is built right after
``seed_everything(seed)``, its action sampling continues torch's global random stream from
there in its own generator, its minibatch generator is seeded with the seed, and its
environments get the seeds ``seed * 1000 + i``. It reproduces the single-trial run to float
rounding (batched matrix products round differently from unbatched ones), not bit for bit.

HAPPO updates its agents in a random order drawn per trial: at each turn the trials whose
next agent is a are updated together, and the other trials' slices of agent a's parameters and
Adam moments are put back after each step (:meth:`PopulationAlgorithm._update_happo`).

Scope: every agent acts in every time step, in one fixed priority order, in every trial
(repeated matrix games), so the trials' batches share one structure; Discrete actions;
STEP, MAPPO, IPPO and HAPPO (minibatches for STEP only); value normalisation per (trial,
agent), no observation normalisation or reward scaling. Anything else is a ``ValueError`` naming the setting
(:func:`check_population_config`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm, Policy
from tianshou.data import Batch, Collector, ReplayBuffer
from tianshou.env import BaseVectorEnv
from tianshou.trainer import OnPolicyTrainerParams
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from agents.adapter import ALIVE, EXTRA_COLUMNS, POSITION, PRESENT, JointStepEnv, step_flags
from agents.algorithm import (
    DistinctInputs,
    PairBatch,
    STEPAlgorithm,
    STEPTrainingStats,
    _next_positions,
    _normalise_per_agent,
    clip_grad_norm_per_trial_,
    horizon_progress,
    pair_losses,
    step_loss,
)
from agents.config import STEPConfig, Variant
from agents.encoding import encode_joint_action, position_of
from agents.gae import per_agent_gae
from agents.lockstep_buffer import LockstepVectorReplayBuffer
from agents.model import MultiAgentActorCritic, PairInputs
from agents.networks import NLevelPolicy
from agents.normalization import RunningMeanStd
from agents.policy import STEPPolicy, batch_tensors
from agents.spec import JointSpec
from agents.training import Learner, OrderArg, learner_env_maker, mean_over_agents, seed_everything
from agents.vector_env import training_vector_env

SUPPORTED_VARIANTS = (Variant.STEP, Variant.MAPPO, Variant.IPPO, Variant.HAPPO)


def check_population_config(config: STEPConfig, spec: JointSpec | None = None) -> None:
    """Raise ``ValueError`` naming the setting if the population learner cannot train
    ``config`` (on a game of shape ``spec``) exactly as the single-trial learner would."""
    if config.variant not in SUPPORTED_VARIANTS:
        raise ValueError(f"variant={config.variant.value!r}: population training supports "
                         f"{[v.value for v in SUPPORTED_VARIANTS]}; train it one trial at a time (population 1)")
    for name in ("obs_normalization", "reward_scaling"):
        if getattr(config, name):
            raise ValueError(f"{name}=True: population training does not keep these running statistics "
                             "per trial yet; set it to False or train one trial at a time")
    if config.policy_anchor > 0:
        raise ValueError(f"policy_anchor={config.policy_anchor!r}: population training has no policy anchor "
                         "yet; set it to 0 or train one trial at a time")
    if config.variant is not Variant.STEP and (config.minibatch_size is not None or config.minibatches != 1):
        # MAPPO, IPPO: per-trial minibatches would mix agents differently per trial; HAPPO:
        # the trials update different agents at a time, and only those trials may draw.
        raise ValueError(f"minibatches={config.minibatches!r}, minibatch_size={config.minibatch_size!r}: "
                         f"population training of {config.variant.value} needs full-batch gradient steps")
    if spec is not None:
        if spec.action_kind != "discrete":
            raise ValueError(f"action_kind={spec.action_kind!r}: population training supports Discrete actions")
        if spec.is_image:
            raise ValueError(f"image_shape={spec.image_shape!r}: population training supports vector observations")


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The population's seeds as a list; ``ValueError`` for none, duplicates or non-integers."""
    seeds = list(seeds)
    if len(seeds) < 1:
        raise ValueError(f"a population needs at least one seed (K >= 1); got K={len(seeds)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 2**32:
            raise ValueError(f"seed {s!r} must be an integer in [0, 2**32)")
    duplicates = sorted({int(s) for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ValueError(f"seeds {duplicates} appear more than once; the trials of a population need distinct seeds")
    return [int(s) for s in seeds]


class _Call(nn.Module):
    """Holds the template model so that ``functional_call`` can run any function of it."""

    def __init__(self, model: MultiAgentActorCritic) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


class PopulationModel(nn.Module):
    """The parameters of K models of one architecture, stacked (module docstring).

    Args:
        models: K freshly built (or trained) models of the same spec and config; their
            parameters are copied into the stacked tensors, the first one serves as template.
    """

    def __init__(self, models: Sequence[MultiAgentActorCritic]) -> None:
        super().__init__()
        if len(models) < 1:
            raise ValueError(f"a population needs at least one model (K >= 1); got K={len(models)}")
        template = models[0]
        for m in models[1:]:
            if m.spec != template.spec or m.config != template.config:
                raise ValueError("the models of a population must share spec and config")
        # Running statistics other than the value normaliser's are refused by check_population_config.
        stateful = [name for name, _ in template.named_buffers()
                    if name in template.state_dict() and not name.startswith("value_norm.")]
        if stateful:
            raise ValueError(f"population training keeps no per-trial buffers; the model has {stateful}")
        self.size = len(models)
        n = template.spec.n_agents
        # Per-trial value normalisation (value_normalization): one set of running statistics per
        # (trial, agent), index trial * n_agents + agent -- exact per trial, as RunningMeanStd is.
        self.value_norm = RunningMeanStd(self.size * n) if template.value_norm is not None else None
        if self.value_norm is not None:
            with torch.no_grad():
                for name in ("mean", "var", "count"):
                    own = torch.cat([getattr(m.value_norm, name) for m in models])
                    getattr(self.value_norm, name).copy_(own)
        params, _ = stack_module_state(list(models))  # type: ignore[arg-type]
        self.names = list(params)
        # ParameterDict keys cannot hold dots.
        self.stacked = nn.ParameterDict({_key(n): nn.Parameter(t.detach().clone()) for n, t in params.items()})
        # The template is not a submodule: its own parameters are never trained or saved.
        object.__setattr__(self, "template", template)
        template.requires_grad_(False)
        object.__setattr__(self, "_call", _Call(template))
        self.spec: JointSpec = template.spec
        self.config: STEPConfig = template.config

    template: MultiAgentActorCritic
    _call: _Call

    def param(self, name: str) -> nn.Parameter:
        """The stacked (K, ...) tensor of the template's parameter ``name``."""
        return self.stacked[_key(name)]

    def names_of(self, params: Sequence[nn.Parameter]) -> list[str]:
        """The names of template parameters (as returned by the model's helpers)."""
        by_id = {id(p): name for name, p in self.template.named_parameters()}
        return [by_id[id(p)] for p in params]

    def map(self, fn: Callable[..., Any], *batched: torch.Tensor | None) -> Any:
        """``fn(model_k, *batched[k])`` for every trial k at once, stacked along dimension 0.

        ``fn`` receives the template with trial k's parameters (``torch.func.vmap`` over
        ``functional_call``); ``batched`` are (K, ...) tensors (None passes through).
        Whatever else ``fn`` reads must be the same for every trial (close over it).
        """
        params = {"model." + n: self.stacked[_key(n)] for n in self.names}
        return map_over_trials(self._call, params, fn, *batched)

    def model_of(self, k: int) -> MultiAgentActorCritic:
        """A stand-alone single-trial model holding trial k's parameters (a copy)."""
        if not 0 <= k < self.size:
            raise ValueError(f"trial index k={k!r} outside 0..{self.size - 1}")
        model = MultiAgentActorCritic(spec=self.spec, config=self.config)
        state = {n: self.stacked[_key(n)][k].detach().clone() for n in self.names}
        if self.value_norm is not None:
            n = self.spec.n_agents
            for name in ("mean", "var", "count"):
                state[f"value_norm.{name}"] = getattr(self.value_norm, name)[k * n:(k + 1) * n].clone()
        model.load_state_dict(state, strict=True)
        return model

    def trial_agent_index(self, agent: torch.Tensor) -> torch.Tensor:
        """(K, ...) index of the per-(trial, agent) statistics of :attr:`value_norm` for agent
        indices ``agent`` (...), the same in every trial."""
        trial = torch.arange(self.size).reshape(-1, *([1] * agent.ndim))
        return trial * self.spec.n_agents + agent.unsqueeze(0)

    def value_in_return_units(self, value: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """(K, ...) critic outputs of agents ``agent`` (...) in return units (per-trial
        :meth:`MultiAgentActorCritic.value_in_return_units`)."""
        if self.value_norm is None:
            return value
        index = self.trial_agent_index(agent).expand_as(value)
        return self.value_norm.denormalize(value.reshape(-1), index.reshape(-1)).reshape(value.shape)


@contextmanager
def superior_slots(model: MultiAgentActorCritic, alive: torch.Tensor, pos_of: torch.Tensor,
                   priority: torch.Tensor) -> Iterator[None]:
    """Tell STEP's actor which prior-action slots hold a superior in some of the pairs
    (``alive``, ``pos_of``: (P, n_agents) of the pairs' time steps, ``priority`` (P,)), read off
    the shared structure as :func:`agents.encoding.stmg_inputs` builds the mask: the actor
    then skips the same slots as in a single trial (:attr:`NLevelPolicy.superior_slots`)."""
    actor = model.actor
    if not isinstance(actor, NLevelPolicy):
        yield
        return
    used = ((pos_of < priority.unsqueeze(1)) & (alive > 0.5)).any(0)
    actor.superior_slots = used
    try:
        yield
    finally:
        actor.superior_slots = None


def _key(name: str) -> str:
    return name.replace(".", "__")


def map_over_trials(template: nn.Module, params: dict[str, torch.Tensor], fn: Callable[..., Any],
                    *batched: torch.Tensor | None) -> Any:
    """``template(fn, *batched[k])`` with trial k's tensors ``params[name][k]`` for every trial k
    at once (``torch.func.vmap`` over ``functional_call``), stacked along dimension 0.

    ``template``'s ``forward(fn, *args)`` must call ``fn(module, *args)``; ``params`` maps the
    template's parameter and buffer names to (K, ...) tensors; ``batched`` are (K, ...)
    tensors (None passes through unbatched)."""
    in_dims = (0, *(None if x is None else 0 for x in batched))

    def one(p: dict[str, torch.Tensor], *xs: torch.Tensor | None) -> Any:
        return functional_call(template, p, (fn, *xs))

    return vmap(one, in_dims=in_dims)(params, *batched)


class TrialSamplingPolicy(Policy):
    """A Tianshou ``Policy`` for a population whose trials sample with generators of their own
    (one per trial, checked against the population's size)."""

    def __init__(self, *, size: int, generators: Sequence[torch.Generator], action_space: Any,
                 observation_space: Any = None) -> None:
        super().__init__(action_space=action_space, observation_space=observation_space,
                         action_scaling=False, action_bound_method=None)
        if len(generators) != size:
            raise ValueError(f"got {len(generators)} generators for a population of {size}")
        self.generators = list(generators)


def _trial_draws(generators: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """(K, *shape) U[0, 1) draws, row k from trial k's generator."""
    return torch.stack([torch.rand(shape, generator=g) for g in generators])


class PopulationPolicy(TrialSamplingPolicy):
    """Joint actions of all trials' environments (module docstring).

    Observations arrive as (K * n_envs, n_agents, width), trial k's environments in rows
    k*n_envs .. (k+1)*n_envs - 1. Each trial samples from its own generator, drawing what the
    single-trial policy would draw from torch's global generator.

    Args:
        population: the stacked models.
        generators: one per trial, for action sampling.
        action_space: the adapter's joint action space.
        observation_space: the adapter's observation space.
    """

    def __init__(self, *, population: PopulationModel, generators: Sequence[torch.Generator],
                 action_space: Any, observation_space: Any = None) -> None:
        super().__init__(size=population.size, generators=generators, action_space=action_space,
                         observation_space=observation_space)
        self.population = population
        self.spec = population.spec
        # The single-trial policy around the template: its chain and evaluate_joint run per trial.
        object.__setattr__(self, "inner", STEPPolicy(model=population.template, action_space=action_space,
                                                     observation_space=observation_space))

    inner: STEPPolicy

    @staticmethod
    def _compile() -> None:
        """No numba warm-up (as :meth:`STEPPolicy._compile`)."""

    def uniforms(self, rows: int) -> torch.Tensor:
        """(K, rows, n_agents) draws for one chain over ``rows`` time steps per trial, laid out
        as :meth:`STEPPolicy.chain` reads them (the single trial's draw order)."""
        n = self.spec.n_agents
        if self.population.template.uses_prior_actions:  # STEP: one draw per row, position by position
            return _trial_draws(self.generators, (n, rows)).transpose(1, 2)
        return _trial_draws(self.generators, (rows, n))  # baselines: one draw per (row, agent)

    def chain(self, obs: torch.Tensor, participating: torch.Tensor, order: torch.Tensor, *,
              greedy: bool, state: torch.Tensor | None = None) -> torch.Tensor:
        """(K, B, n_agents) joint actions: :meth:`STEPPolicy.chain` for every trial.

        Args:
            obs: (K, B, n_agents, obs_dim) raw base observations; state: (K, B, S) or None.
            participating, order: (B, n_agents), the same for every trial.
            greedy: most probable actions instead of samples.
        """
        inner = self.inner
        u = None if greedy else self.uniforms(obs.shape[1])

        def act(model: MultiAgentActorCritic, o: torch.Tensor, s: torch.Tensor | None,
                uk: torch.Tensor | None) -> torch.Tensor:
            o, s = model.prepare_obs(o, s)
            return inner.chain(o, participating, order, greedy=greedy, with_value=False, with_logp=False,
                               state=s, uniforms=uk).act

        with torch.no_grad():
            result: torch.Tensor = self.population.map(act, obs, state, u)
        return result

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
        """Joint actions for a batch of adapter observations of all trials' environments."""
        raw = np.asarray(batch.obs)
        k = self.population.size
        if raw.shape[0] % k:
            raise ValueError(f"{raw.shape[0]} observations do not split into {k} trials' environments")
        state_dim = raw.shape[-1] - EXTRA_COLUMNS - self.spec.obs_dim
        if state_dim not in (0, self.spec.state_dim):
            raise ValueError(f"observations of width {raw.shape[-1]} do not fit this policy")
        per_trial = raw.reshape(k, raw.shape[0] // k, *raw.shape[1:])
        structure = _shared_structure(per_trial)
        obs, alive, _, order, global_state = batch_tensors(raw, state_dim)
        greedy = self.inner.deterministic_eval and not self.is_within_training_step
        act = self.chain(obs.reshape(k, -1, *obs.shape[1:]), alive[: structure], order[: structure],
                         greedy=greedy,
                         state=None if global_state is None else global_state.reshape(k, structure, -1))
        return Batch(act=act.reshape(-1, *act.shape[2:]).numpy(), state=state)


def _shared_structure(per_trial: np.ndarray) -> int:
    """Rows per trial, after checking that every trial's rows have the same alive, present
    and position columns (``per_trial``: (K, rows, n_agents, width))."""
    columns = per_trial[..., [ALIVE, PRESENT, POSITION]]
    if not (columns == columns[:1]).all():
        raise ValueError("the trials of a population must share who acts and the priority order in every "
                         "time step (repeated games with a fixed order); their observations differ there")
    return int(per_trial.shape[1])


@dataclass
class PopulationPairs:
    """The (time step, agent) pairs of every trial: per-trial data (K, P, ...) and the shared
    structure (P,) (:class:`agents.algorithm.PairBatch` per trial)."""

    actor_in: torch.Tensor  # (K, P, actor input)
    critic_in: torch.Tensor  # (K, P, critic input)
    act: torch.Tensor  # (K, P)
    adv: torch.Tensor  # (K, P)
    ret: torch.Tensor  # (K, P)
    v_old: torch.Tensor  # (K, P)
    logp_old: torch.Tensor  # (K, P)
    row: torch.Tensor  # (P,) shared
    agent: torch.Tensor  # (P,) shared
    priority: torch.Tensor  # (P,) shared
    n_rows: int
    alive: torch.Tensor  # (T, n_agents) shared: who acted in each time step
    pos_of: torch.Tensor  # (T, n_agents) long, shared: each agent's priority position


class PopulationAlgorithm(OnPolicyAlgorithm[PopulationPolicy]):
    """The updates of :class:`agents.algorithm.STEPAlgorithm`, for every trial of a population
    at once and independently (module docstring).

    Args:
        policy: the population's acting policy.
        config: hyperparameters (see :func:`check_population_config`).
        seeds: the trials' seeds (their minibatch generators are seeded with them).
    """

    def __init__(self, *, policy: PopulationPolicy, config: STEPConfig, seeds: Sequence[int]) -> None:
        super().__init__(policy=policy)
        check_population_config(config, policy.spec)
        seeds = check_seeds(seeds)
        pop = policy.population
        if len(seeds) != pop.size:
            raise ValueError(f"got {len(seeds)} seeds for a population of {pop.size}")
        self.config = config
        self.population = pop
        template = pop.template
        critic_names = set(pop.names_of(template.critic_parameters()))
        self._actor_names = [n for n in pop.names if n not in critic_names]
        self._critic_names = [n for n in pop.names if n in critic_names]
        groups = [{"params": [pop.param(n) for n in self._actor_names], "lr": config.lr},
                  {"params": [pop.param(n) for n in self._critic_names], "lr": config.critic_lr or config.lr}]
        # Adam is elementwise: on stacked tensors every trial has its own moments. The step
        # count is shared, and equal for all trials (they take the same gradient steps).
        self._adam = torch.optim.Adam(groups, lr=config.lr, eps=1e-5, fused=True)
        self._base_lrs = [float(config.lr), float(config.critic_lr or config.lr)]
        self._params = [pop.param(n) for n in self._actor_names + self._critic_names]
        n = pop.spec.n_agents
        self._agent_params = [pop.names_of(template.agent_parameters(k)) for k in range(n)]
        self._priority_params = [pop.names_of(template.priority_parameters(p)) for p in range(n)]
        self._generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.register_buffer("env_steps_done", torch.zeros((), dtype=torch.int64))  # per trial
        self.total_env_steps: int | None = None
        self._pairs: PopulationPairs | None = None
        self._explained_variance = float("nan")
        self.last_clip_norms: torch.Tensor | None = None
        """(K,) per-trial gradient norms of the last gradient step (before clipping)."""

    def set_training_horizon(self, total_env_steps: int) -> None:
        """Environment steps per trial of the whole run (for ``lr_decay``)."""
        if total_env_steps <= 0:
            raise ValueError(f"total_env_steps={total_env_steps!r} must be positive")
        self.total_env_steps = int(total_env_steps)

    def lr_fraction(self, env_steps_done: int) -> float:
        """As :meth:`STEPAlgorithm.lr_fraction` (steps per trial)."""
        if not self.config.lr_decay:
            return 1.0
        if self.total_env_steps is None:
            raise RuntimeError("lr_decay needs the run's length: call set_training_horizon first")
        return max(0.0, 1.0 - env_steps_done / self.total_env_steps)

    def steps_done(self) -> int:
        """Environment steps per trial learned from so far."""
        done: torch.Tensor = self.env_steps_done  # type: ignore[assignment]
        return int(done)

    # --- advantages ------------------------------------------------------------------------
    def _trial_rows(self, buffer: ReplayBuffer, indices: np.ndarray) -> np.ndarray:
        """A permutation of the batch rows grouping them by trial (stable within a trial),
        after checking that every trial has as many rows."""
        k = self.population.size
        offsets = getattr(buffer, "_offset", None)
        if offsets is None or len(offsets) % k:
            raise ValueError(f"a population of {k} needs a VectorReplayBuffer over a multiple of {k} environments")
        env = np.searchsorted(offsets, indices, side="right") - 1
        trial = env // (len(offsets) // k)
        counts = np.bincount(trial, minlength=k)
        if not (counts == counts[0]).all():
            raise ValueError(f"the trials collected different numbers of steps {counts.tolist()}; a population "
                             "collects the same number per trial (n_step a multiple of the env count)")
        return np.argsort(trial, kind="stable")

    def _preprocess_batch(self, batch: Any, buffer: ReplayBuffer, indices: np.ndarray) -> Any:
        cfg, pop = self.config, self.population
        spec, k = pop.spec, pop.size
        perm = self._trial_rows(buffer, indices)
        batch, indices = batch[perm], indices[perm]
        rows = len(indices) // k
        raw_obs, raw_next = np.asarray(batch.obs), np.asarray(batch.obs_next)
        _shared_structure(raw_obs.reshape(k, rows, *raw_obs.shape[1:]))
        _shared_structure(raw_next.reshape(k, rows, *raw_next.shape[1:]))
        obs_raw, alive_all, _, order_all, state_raw = batch_tensors(raw_obs, spec.state_dim)
        alive, order = alive_all[:rows], order_all[:rows]  # the shared structure: trial 0's
        obs_raw = obs_raw.reshape(k, rows, *obs_raw.shape[1:])
        state_raw = None if state_raw is None else state_raw.reshape(k, rows, -1)
        act = torch.as_tensor(np.asarray(batch.act)).long().reshape(k, rows, -1)
        alive_np, terminated, truncated = step_flags(raw_obs[:rows], raw_next[:rows])
        episode_end = np.asarray(batch.done, bool).copy()
        episode_end[np.isin(indices, buffer.unfinished_index())] = True
        episode_end = episode_end.reshape(k, rows)
        next_pos = _next_positions(buffer, indices, episode_end.reshape(-1)).reshape(k, rows)
        offset = (np.arange(k) * rows)[:, None]
        next_pos = np.where(next_pos >= 0, next_pos - offset, -1)
        if not ((episode_end == episode_end[:1]).all() and (next_pos == next_pos[:1]).all()):
            raise ValueError("the trials of a population must share their episode boundaries")
        episode_end, next_pos = episode_end[0], next_pos[0]
        inner = self.policy.inner
        pos_of = position_of(order)
        n = spec.n_agents
        row_np, agent_np = np.nonzero(alive_np)
        row, agent = torch.as_tensor(row_np), torch.as_tensor(agent_np)
        priority = pos_of[row, agent]
        template = pop.template

        def inputs(o: torch.Tensor, a: torch.Tensor, s: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            o, s = template.prepare_obs(o, s)
            pi = template.inputs(obs=o[row], act_enc=encode_joint_action(spec, a[row]), alive=alive[row],
                                 pos_of=pos_of[row], agent=agent, priority=priority,
                                 state=None if s is None else s[row])
            assert pi.critic is not None  # internal: the states are given where critics read them
            return pi.actor, pi.critic

        # The pairs' network inputs (data only), as STEPAlgorithm._preprocess_batch builds them.
        actor_in, critic_in = vmap(inputs, in_dims=(0, 0, None if state_raw is None else 0))(obs_raw, act, state_raw)
        act_pairs = act[:, row, agent]
        with torch.no_grad():
            # PPO's old log-probabilities and V^i with the superiors' actual actions: what
            # STEPPolicy.evaluate_joint computes, group by group on each distinct input.
            logp_pairs, v_pairs = self._old_outputs(actor_in, critic_in, act_pairs, row, agent, priority,
                                                    alive, pos_of)
            value = torch.zeros(k, rows, n)  # return units
            value[:, row, agent] = pop.value_in_return_units(v_pairs, agent)
            next_value = torch.zeros_like(value)
            if cfg.gamma > 0.0:
                inside = next_pos >= 0
                next_value[:, torch.as_tensor(inside)] = value[:, torch.as_tensor(next_pos[inside])]
                sample_rows = np.flatnonzero(~inside | truncated.any(1))
                if sample_rows.size:
                    rows_t = torch.as_tensor(sample_rows)
                    present_next = torch.as_tensor(raw_next[:rows][sample_rows][..., PRESENT])
                    order_next = position_of(torch.as_tensor(raw_next[:rows][sample_rows][..., POSITION]).long())
                    obs_n, _, _, _, state_n = batch_tensors(raw_next, spec.state_dim)
                    obs_n = obs_n.reshape(k, rows, *obs_n.shape[1:])[:, rows_t]
                    state_n = None if state_n is None else state_n.reshape(k, rows, -1)[:, rows_t]
                    u = self.policy.uniforms(len(sample_rows))

                    def bootstrap(model: MultiAgentActorCritic, o: torch.Tensor, s: torch.Tensor | None,
                                  uk: torch.Tensor) -> torch.Tensor:
                        o, s = model.prepare_obs(o, s)
                        return inner.chain(o, present_next, order_next, greedy=False, with_logp=False,
                                           state=s, uniforms=uk).value

                    sampled = pop.value_in_return_units(pop.map(bootstrap, obs_n, state_n, u), torch.arange(n))
                    replace = torch.as_tensor(~inside[sample_rows, None] | truncated[sample_rows])
                    next_value[:, rows_t] = torch.where(replace, sampled, next_value[:, rows_t])
        rew = np.asarray(batch.rew, np.float64).reshape(k, rows, n)

        def columns(x: np.ndarray) -> np.ndarray:  # (K, T, n) -> (T, K * n): every trial's agents as columns
            return np.ascontiguousarray(x.transpose(1, 0, 2).reshape(rows, k * n))

        adv_cols, ret_cols = per_agent_gae(
            rew=columns(rew), value=columns(value.numpy().astype(np.float64)),
            next_value=columns(next_value.numpy().astype(np.float64)), alive=np.tile(alive_np, (1, k)),
            terminated=np.tile(terminated, (1, k)), truncated=np.tile(truncated, (1, k)),
            episode_end=episode_end, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        )
        adv = torch.as_tensor(adv_cols.reshape(rows, k, n).transpose(1, 0, 2))  # (K, T, n)
        ret = torch.as_tensor(ret_cols.reshape(rows, k, n).transpose(1, 0, 2))
        ret_pairs = ret[:, row, agent]
        ev = [_explained_variance(value[j, row, agent], ret_pairs[j]) for j in range(k)]
        self._explained_variance = float(np.nanmean(ev)) if not np.isnan(ev).all() else float("nan")
        if pop.value_norm is not None:  # targets on the updated scale, per trial
            index = pop.trial_agent_index(agent).expand_as(ret_pairs).reshape(-1)
            pop.value_norm.update(ret_pairs.reshape(-1), index)
            ret_pairs = pop.value_norm.normalize(ret_pairs.reshape(-1), index).reshape(ret_pairs.shape)
        self._pairs = PopulationPairs(
            actor_in=actor_in, critic_in=critic_in, act=act_pairs, adv=adv[:, row, agent],
            ret=ret_pairs, v_old=v_pairs, logp_old=logp_pairs,
            row=row, agent=agent, priority=priority, n_rows=rows, alive=alive, pos_of=pos_of)
        done: torch.Tensor = self.env_steps_done  # type: ignore[assignment]
        done += rows
        return batch

    def _old_outputs(self, actor_in: torch.Tensor, critic_in: torch.Tensor, act: torch.Tensor, row: torch.Tensor,
                     agent: torch.Tensor, priority: torch.Tensor, alive: torch.Tensor, pos_of: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, P) log-probabilities of the pairs' actions and (K, P) critic outputs: the heads
        on the pairs' inputs, STEP priority by priority (one generated target network each),
        the baselines at once, each on the distinct inputs (:func:`_distinct_inputs`)."""
        logp = torch.zeros(act.shape)
        value = torch.zeros(act.shape)
        step = self.config.variant is Variant.STEP
        groups = [(p, (priority == p).nonzero(as_tuple=True)[0]) for p in torch.unique(priority).tolist()] if step \
            else [(None, torch.arange(priority.numel()))]
        for p, sel in groups:
            lp, v = self._group_outputs(actor_in[:, sel], critic_in[:, sel], act[:, sel], agent[sel], priority[sel],
                                        alive[row[sel]], pos_of[row[sel]], p)
            logp[:, sel], value[:, sel] = lp, v
        return logp, value

    def _group_outputs(self, actor_in: torch.Tensor, critic_in: torch.Tensor, act: torch.Tensor,
                       agent: torch.Tensor, priority: torch.Tensor, alive: torch.Tensor, pos_of: torch.Tensor,
                       position: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_old_outputs` of one group of pairs (``alive``, ``pos_of``: of their time steps;
        ``position``: STEP's common priority position, None for the baselines)."""
        distinct = _distinct_inputs(actor_in, critic_in, agent, priority)
        head_agent = agent if distinct is None else distinct.agent
        head_priority = priority if distinct is None else distinct.priority

        def heads(model: MultiAgentActorCritic, a_in: torch.Tensor, c_in: torch.Tensor, a: torch.Tensor,
                  rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            with superior_slots(model, alive, pos_of, priority):
                dist, v = model.heads(PairInputs(actor=a_in, critic=c_in), agent=head_agent,
                                      priority=head_priority if position is None else position)
            assert v is not None  # with_value defaults to True
            if rows is not None:
                dist, v = dist.take(rows), v[rows]
            return dist.log_prob(a), v

        if distinct is None:
            result: tuple[torch.Tensor, torch.Tensor] = self.population.map(heads, actor_in, critic_in, act, None)
        else:
            result = self.population.map(heads, distinct.actor_in, distinct.critic_in, act, distinct.rows)
        return result

    # --- updates ---------------------------------------------------------------------------
    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> STEPTrainingStats:
        pairs = self._pairs
        if pairs is None:
            raise RuntimeError("update without a preprocessed batch")
        log: dict[str, list[float]] = {"actor": [], "vf": [], "ent": [], "reg": []}
        fraction = self.lr_fraction(self.steps_done() - pairs.n_rows)
        for param_group, base in zip(self._adam.param_groups, self._base_lrs, strict=True):
            param_group["lr"] = base * fraction
        all_pairs = torch.arange(pairs.row.numel())
        n = self.population.spec.n_agents
        steps = 0
        if self.config.variant is Variant.STEP:
            actor_group = self._adam.param_groups[0]
            progress = (horizon_progress(self.steps_done() - pairs.n_rows, self.total_env_steps)
                        if self.config.bottom_up > 0 else 1.0)
            for p in range(n):  # Algorithm 1: agent by agent, leader first
                actor_group["lr"] = self._base_lrs[0] * fraction * self.config.superior_lr_scale ** (n - 1 - p)
                steps += self._update_group(pairs, all_pairs[pairs.priority == p], repeat, log, priority=p,
                                            actor_waits=self.config.actor_waits(p, n, progress))
        elif self.config.variant is Variant.HAPPO:
            steps += self._update_happo(pairs, all_pairs, repeat, log)
        else:  # MAPPO, IPPO: one joint update
            steps += self._update_group(pairs, all_pairs, repeat, log)
        self._pairs = None
        return STEPTrainingStats.of_update(log, gradient_steps=steps, explained_variance=self._explained_variance,
                                           lr=self._adam.param_groups[0]["lr"])

    def _single_minibatch(self, count: int) -> bool:
        size = self.config.minibatch_size
        return count <= size if size is not None else self.config.minibatches == 1

    def _minibatches(self, count: int) -> list[torch.Tensor] | None:
        """Per-trial minibatches of ``count`` pairs: a list of (K, m) position tensors (each
        trial permuted by its own generator, split as :meth:`STEPAlgorithm._minibatches`
        splits), or None for one full batch."""
        if self._single_minibatch(count):
            return None
        size, chunks = self.config.minibatch_size, self.config.minibatches
        perms = torch.stack([torch.randperm(count, generator=g) for g in self._generators])  # (K, count)
        if size is not None:
            return list(perms.split(size, dim=1))
        return [c for c in perms.chunk(chunks, dim=1) if c.shape[1] > 0]

    def _update_happo(self, pairs: PopulationPairs, all_pairs: torch.Tensor, epochs: int,
                      log: dict[str, list[float]]) -> int:
        """HAPPO: every trial updates its agents one by one in its own random order, each
        agent's advantage multiplied by the ratios of the agents its trial updated before
        (:meth:`STEPAlgorithm._update_with_batch`). At turn i, the trials whose i-th agent is
        a are updated together (``trials``); the others' parameters and Adam moments of agent a
        stay exactly where they are, and Adam's step count of agent a's tensors is reset to its
        value at the start of the iteration before each turn, so that every trial counts its
        own steps."""
        pop = self.population
        n, k = pop.spec.n_agents, pop.size
        factor = torch.ones(k, pairs.n_rows)  # (K, T) products of earlier agents' ratios, per trial
        order = torch.stack([torch.randperm(n, generator=g) for g in self._generators])  # (K, n)
        # Adam's step count of every tensor at the start of the iteration (0 before the first step).
        start_steps = {id(p): float(self._adam.state[p]["step"]) if "step" in self._adam.state[p] else 0.0
                       for p in self._params}
        steps = 0
        for i in range(n):
            turn_steps = 0
            for a in range(n):
                trials = order[:, i] == a
                group = all_pairs[pairs.agent == a]
                if not bool(trials.any()) or group.numel() == 0:
                    continue
                for name in self._agent_params[a]:  # each trial counts its own Adam steps
                    state = self._adam.state[pop.param(name)]
                    if "step" in state:
                        state["step"].fill_(start_steps[id(pop.param(name))])
                turn_steps = max(turn_steps, self._update_group(pairs, group, epochs, log, factor=factor,
                                                                trials=trials))
                # Agent a's policy is final for this iteration in these trials: its ratio enters
                # the factor of the agents after it.
                with torch.no_grad():
                    logp_new = self._new_logp(pairs, group)
                    ratio = (logp_new - pairs.logp_old[:, group]).exp()
                    rows = pairs.row[group]
                    factor[:, rows] = torch.where(trials.unsqueeze(1), factor[:, rows] * ratio, factor[:, rows])
            steps += turn_steps
        return steps

    def _new_logp(self, pairs: PopulationPairs, group: torch.Tensor) -> torch.Tensor:
        """(K, m) log-probabilities of the pairs ``group``'s actions under the current policies."""
        agent, prio, row = pairs.agent[group], pairs.priority[group], pairs.row[group]
        cfg = self.config

        def one(model: MultiAgentActorCritic, actor_in: torch.Tensor, critic_in: torch.Tensor, act: torch.Tensor,
                adv: torch.Tensor, ret: torch.Tensor, v_old: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
            pb = PairBatch(inputs=None, act=act, row=row, agent=agent, priority=prio, adv=adv, ret=ret,
                           v_old=v_old, logp_old=logp_old, n_rows=pairs.n_rows)
            return pair_losses(model, cfg, PairInputs(actor=actor_in, critic=critic_in), pb, adv)[3]

        data = [x[:, group] for x in (pairs.actor_in, pairs.critic_in, pairs.act, pairs.adv, pairs.ret,
                                      pairs.v_old, pairs.logp_old)]
        result: torch.Tensor = self.population.map(one, *data)
        return result

    def _update_group(self, pairs: PopulationPairs, group: torch.Tensor, epochs: int,
                      log: dict[str, list[float]], *, priority: int | None = None,
                      factor: torch.Tensor | None = None, trials: torch.Tensor | None = None,
                      actor_waits: bool = False) -> int:
        """PPO epochs of every trial on the pairs ``group`` (:meth:`STEPAlgorithm._update_group`).

        ``factor`` (K, T) (HAPPO): multiplies each trial's normalised advantages by row.
        ``trials`` (K,) bool (HAPPO): only these trials are updated; the others' parameters
        and Adam moments are left exactly as they are."""
        if group.numel() == 0:
            return 0
        cfg, pop = self.config, self.population
        n = pop.spec.n_agents
        group_agents = set(pairs.agent[group].tolist())
        frozen = {name for k, names in enumerate(self._agent_params) if k not in group_agents for name in names}
        if priority is not None:
            frozen |= {name for q, names in enumerate(self._priority_params) if q != priority for name in names}
        if actor_waits:  # STEPConfig.bottom_up: no actor parameter moves, the critics learn
            frozen |= set(self._actor_names)
        frozen_params = [pop.param(name) for name in frozen]
        snapshot: torch.Tensor | None = None
        if priority is not None and priority > 0 and cfg.beta > 0 and isinstance(pop.template.actor, NLevelPolicy):
            superiors = torch.arange(priority)
            with torch.no_grad():
                snapshot = pop.map(lambda m: m.actor.generated(superiors)).clone()  # (K, i-1, n_generated)
        take = group
        data = [x[:, group] for x in (pairs.actor_in, pairs.critic_in, pairs.act, pairs.adv, pairs.ret,
                                      pairs.v_old, pairs.logp_old)]
        agent, prio, row = pairs.agent[take], pairs.priority[take], pairs.row[take]

        def normalised(adv: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
            if not cfg.advantage_normalization:
                return adv
            return vmap(lambda a: _normalise_per_agent(a, agents, n))(adv)

        if factor is not None:
            data[3] = normalised(data[3], agent) * factor[:, row]
            normalised = _as_is  # (normalised once, before the factor: as the single trial)
        whole = None
        distinct: _Distinct | None = None
        if self._single_minibatch(group.numel()):  # (no draw: the generators are not touched)
            whole = [*data[:3], normalised(data[3], agent), *data[4:]]
            distinct = _distinct_inputs(data[0], data[1], agent, prio)
        steps = 0
        terms: list[torch.Tensor] = []
        for _ in range(epochs):
            parts: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]]
            if whole is not None:
                parts = [(whole, agent, prio, row)]
            else:
                parts = []
                for idx in self._minibatches(group.numel()) or []:
                    # The pairs of one group share agent and priority (STEP: one position),
                    # so the trials' different permutations keep one shared structure.
                    trial = torch.arange(pop.size).unsqueeze(1)
                    sub = [x[trial, idx] for x in data]
                    sub[3] = normalised(sub[3], agent[: idx.shape[1]])
                    parts.append((sub, agent[: idx.shape[1]], prio[: idx.shape[1]], row[: idx.shape[1]]))
            for sub, sub_agent, sub_prio, sub_row in parts:
                loss, term = self._losses(sub, sub_agent, sub_prio, sub_row, priority, snapshot, pairs, distinct)
                if trials is None:
                    self._gradient_step(loss, frozen_params)
                    terms.append(term.detach().mean(0))
                else:
                    self._masked_gradient_step(loss * trials, frozen_params, trials)
                    terms.append(term.detach()[trials].mean(0))
                steps += 1
        for key, column in zip(("actor", "vf", "ent", "reg"), torch.stack(terms).T.tolist(), strict=True):
            log[key].extend(column)
        return steps

    def _losses(self, data: list[torch.Tensor], agent: torch.Tensor, prio: torch.Tensor, row: torch.Tensor,
                priority: int | None, snapshot: torch.Tensor | None, structure: PopulationPairs,
                distinct: _Distinct | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) losses and (K, 4) terms of one gradient step: :func:`agents.algorithm.step_loss`
        for every trial (``distinct``: the heads run on each distinct input once)."""
        cfg, n_rows = self.config, structure.n_rows

        def one(model: MultiAgentActorCritic, actor_in: torch.Tensor, critic_in: torch.Tensor, act: torch.Tensor,
                adv: torch.Tensor, ret: torch.Tensor, v_old: torch.Tensor, logp_old: torch.Tensor,
                snap: torch.Tensor | None, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            pb = PairBatch(inputs=None, act=act, row=row, agent=agent, priority=prio, adv=adv, ret=ret,
                           v_old=v_old, logp_old=logp_old, n_rows=n_rows)
            where = None if distinct is None or rows is None else DistinctInputs(
                rows=rows, agent=distinct.agent, priority=distinct.priority)
            with superior_slots(model, structure.alive[row], structure.pos_of[row], prio):
                return step_loss(model, cfg, PairInputs(actor=actor_in, critic=critic_in), pb, adv, priority, snap,
                                 where)

        if distinct is not None:
            data = [distinct.actor_in, distinct.critic_in, *data[2:]]
        result: tuple[torch.Tensor, torch.Tensor] = self.population.map(
            one, *data, snapshot, None if distinct is None else distinct.rows)
        return result

    def _masked_gradient_step(self, losses: torch.Tensor, frozen: list[torch.nn.Parameter],
                              trials: torch.Tensor) -> None:
        """:meth:`_gradient_step` that moves only the ``trials`` (K,) bool: the other trials'
        slices of the parameters and of Adam's moments are put back after the step."""
        keep = ~trials
        frozen_ids = {id(p) for p in frozen}
        moving = [p for p in self._params if id(p) not in frozen_ids]
        saved = []
        for p in moving:
            state = self._adam.state[p]
            saved.append((p.detach()[keep].clone(),
                          {key: state[key][keep].clone() for key in ("exp_avg", "exp_avg_sq") if key in state}))
        self._gradient_step(losses, frozen)
        with torch.no_grad():
            for p, (values, moments) in zip(moving, saved, strict=True):
                p[keep] = values
                state = self._adam.state[p]
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][keep] = moments.get(key, torch.zeros_like(values))

    def _gradient_step(self, losses: torch.Tensor, frozen: list[torch.nn.Parameter]) -> None:
        """Backward of the summed trial losses (trial k's loss reaches only trial k's slices),
        drop the frozen parameters' gradients, clip per trial, one Adam step."""
        self._adam.zero_grad(set_to_none=True)
        losses.sum().backward()
        for param in frozen:
            param.grad = None
        if self.config.max_grad_norm is not None:
            self.last_clip_norms = clip_grad_norm_per_trial_(self._params, self.config.max_grad_norm)
        self._adam.step()


@dataclass
class _Distinct:
    """The distinct inputs of a group's pairs, per trial (:func:`_distinct_inputs`)."""

    actor_in: torch.Tensor  # (K, U, actor input)
    critic_in: torch.Tensor  # (K, U, critic input)
    rows: torch.Tensor  # (K, m) long: each pair's input row
    agent: torch.Tensor  # (U,) shared
    priority: torch.Tensor  # (U,) shared


_HASH_MASK = (1 << 40) - 1


def _hash_multipliers(width: int) -> torch.Tensor:
    """Fixed odd int64 multipliers for :func:`_distinct_inputs`'s row hash (a generator of its
    own: no trial's random stream is touched)."""
    generator = torch.Generator().manual_seed(0x5EED)
    return torch.randint(1, 1 << 31, (width,), generator=generator) * 2 + 1


def _distinct_inputs(actor_in: torch.Tensor, critic_in: torch.Tensor, agent: torch.Tensor,
                     priority: torch.Tensor) -> _Distinct | None:
    """Each trial's distinct (actor, critic) inputs of a group of pairs, or None where that saves
    little (more than half the pairs distinct).

    In a repeated game with a constant observation a group's hundreds of pairs have a handful
    of distinct inputs (the superiors' actions), and evaluating the networks once per distinct
    input instead of once per pair is what makes a large population cheap. The input rows are
    laid out in one block per agent, as wide as the trial with the most distinct inputs of
    that agent (the shorter trials repeat their first row, which no pair reads), so that the
    rows' agents and priorities are the same in every trial.
    """
    k, m = actor_in.shape[:2]
    width = actor_in.shape[2]
    both = torch.cat([actor_in, critic_in], dim=2)
    blocks, agents, priorities = [], [], []
    rows = torch.empty(k, m, dtype=torch.long)
    offset = 0
    for a in torch.unique(agent).tolist():
        sel = (agent == a).nonzero(as_tuple=True)[0]
        if not bool((priority[sel] == priority[sel[0]]).all()):
            return None  # an agent at several positions: the rows' priorities would differ
        # One sort of one int64 key per pair for all trials (``torch.unique(dim=0)`` on the rows
        # cost more than it saved): the trial in the high bits, a hash of the row's float bits
        # in the low ones; equal rows are checked below, a collision only forgoes the saving.
        part = both[:, sel].contiguous()  # (K, m_a, width) float32
        flat = part.reshape(k * sel.numel(), -1)
        bits = flat.view(torch.int32).long()
        digest = (bits * _hash_multipliers(bits.shape[1])).sum(1) & _HASH_MASK
        key = torch.arange(k).repeat_interleave(sel.numel()) * (_HASH_MASK + 1) + digest
        keys, inverse = torch.unique(key, return_inverse=True)  # sorted: by trial first
        first = torch.full((keys.numel(),), flat.shape[0], dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(flat.shape[0]), reduce="amin")
        found = flat[first]
        if not torch.equal(found[inverse], flat):
            return None  # a hash collision: evaluate every pair
        owner = keys // (_HASH_MASK + 1)
        counts = torch.bincount(owner, minlength=k)
        starts = counts.cumsum(0) - counts
        local = torch.arange(found.shape[0]) - starts[owner]  # index within its trial
        size = int(counts.max())
        block = found[starts].unsqueeze(1).repeat(1, size, 1)  # (K, size, width): first rows as padding
        block[owner, local] = found
        blocks.append(block)
        rows[:, sel] = local[inverse].reshape(k, sel.numel()) + offset
        agents += [a] * size
        priorities += [int(priority[sel[0]])] * size
        offset += size
    if 2 * offset > m:
        return None
    distinct = torch.cat(blocks, dim=1)
    return _Distinct(actor_in=distinct[..., :width], critic_in=distinct[..., width:], rows=rows,
                     agent=torch.tensor(agents, dtype=torch.long), priority=torch.tensor(priorities, dtype=torch.long))


def _as_is(adv: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
    return adv


def _explained_variance(value: torch.Tensor, ret: torch.Tensor) -> float:
    var = float(ret.var()) if ret.numel() > 1 else 0.0
    return float("nan") if var == 0.0 else 1.0 - float((ret - value).var()) / var


class PopulationSession:
    """K independent learners trained together (module docstring); the population twin of
    :class:`agents.training.TrainingSession`.

    Args:
        env_fn: makes a fresh PettingZoo ParallelEnv.
        config: hyperparameters (:func:`check_population_config`).
        total_steps: joint environment steps per trial.
        seeds: one per trial, distinct; trial k is the single-trial run of ``seeds[k]``.
        order: priority order for :func:`stmg.wrap` (a fixed one).
        observation: ``"own"`` or ``"state"``.
        venv_fn: builds the vector env from the K x n_envs environment factories (default
            Tianshou's ``DummyVectorEnv``).
    """

    def __init__(self, env_fn: Callable[[], Any], *, config: STEPConfig, total_steps: int,
                 seeds: Sequence[int], order: OrderArg = None, observation: str = "own",
                 venv_fn: Callable[[list[Callable[[], JointStepEnv]]], BaseVectorEnv] | None = None) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps={total_steps!r} must be positive")
        if callable(order):
            raise ValueError("population training needs a fixed priority order (a sequence of agents), "
                             "not a callable")
        seeds = check_seeds(seeds)
        check_population_config(config)
        k = len(seeds)
        torch.set_num_threads(config.torch_threads)
        make, self.with_state = learner_env_maker(env_fn, config=config, order=order, observation=observation)
        probe = make()
        spec = probe.joint_spec
        check_population_config(config, spec)
        models, generators = [], []
        for seed in seeds:  # exactly the single-trial start (TrainingSession)
            seed_everything(seed)
            models.append(MultiAgentActorCritic(spec=spec, config=config))
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())  # the stream the single trial samples from
            generators.append(generator)
        self.population = PopulationModel(models)
        self.policy = PopulationPolicy(population=self.population, generators=generators,
                                       action_space=probe.action_space, observation_space=probe.observation_space)
        self.algorithm = PopulationAlgorithm(policy=self.policy, config=config, seeds=seeds)
        self.algorithm.set_training_horizon(total_steps)
        self.config, self.total_steps, self.seeds, self.spec = config, total_steps, seeds, spec
        n_envs = config.n_envs
        self.venv = training_vector_env([make for _ in range(k * n_envs)], venv_fn=venv_fn, expected=f"{k} x {n_envs}",
                                        observation_space=probe.observation_space)
        self.venv.seed([s * 1000 + i for s in seeds for i in range(n_envs)])
        self.steps_per_collect = min(config.steps_per_collect, total_steps)  # per trial
        per_env = math.ceil(self.steps_per_collect / n_envs) + 1  # headroom: no wrap-around
        self.collector: Collector = Collector(self.policy, self.venv, LockstepVectorReplayBuffer(per_env * k * n_envs, k * n_envs))
        self.collector.reset()

    @property
    def size(self) -> int:
        """K, the number of trials."""
        return self.population.size

    def reset_envs(self, seeds: Sequence[Sequence[int]]) -> None:
        """Re-seed every training environment and start new episodes: ``seeds[k]`` are trial
        k's ``n_envs`` seeds (as :meth:`agents.training.TrainingSession.reset_envs` of its
        single trial)."""
        n_envs = self.config.n_envs
        if len(seeds) != self.size or any(len(s) != n_envs for s in seeds):
            raise ValueError(f"expected {self.size} lists of {n_envs} seeds (one per trial and env); got "
                             f"{[len(s) for s in seeds]}")
        self.venv.seed([int(s) for trial in seeds for s in trial])
        self.collector.reset()

    def state(self) -> dict[str, Any]:
        """Everything the trials' learning continues from (plain containers of tensors): the
        stacked parameters and value statistics, the Adam moments, the steps learned from, and
        every trial's sampling and minibatch generators. Environments are not included: a
        caller that saves this restarts them with :meth:`reset_envs`. A copy: training on does
        not change it (an optimiser's ``state_dict`` holds its live moment tensors, and
        ``load_state_dict`` adopts them)."""
        algorithm = self.algorithm
        return copy.deepcopy({
            "algorithm": algorithm.state_dict(),
            "adam": algorithm._adam.state_dict(),
            "update_generators": [g.get_state() for g in algorithm._generators],
            "sample_generators": [g.get_state() for g in self.policy.generators],
        })

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state` (on a session built with the same seeds and config)."""
        algorithm = self.algorithm
        for name in ("update_generators", "sample_generators"):
            if len(state[name]) != self.size:
                raise ValueError(f"the saved state holds {len(state[name])} trials; this population has {self.size}")
        algorithm.load_state_dict(dict(state["algorithm"]))
        algorithm._adam.load_state_dict(state["adam"])
        for generator, saved in zip(algorithm._generators, state["update_generators"], strict=True):
            generator.set_state(saved)
        for generator, saved in zip(self.policy.generators, state["sample_generators"], strict=True):
            generator.set_state(saved)

    def train_steps(self, n_steps: int, *, logger: Any = None, show_progress: bool = False) -> None:
        """Collect and learn ``n_steps`` more joint environment steps per trial (rounded up to
        whole collects), with Tianshou's on-policy trainer."""
        if n_steps <= 0:
            raise ValueError(f"n_steps={n_steps!r} must be positive")
        k, n_envs = self.size, self.config.n_envs
        # Whole vector steps per collect, as the single trial's collector rounds them.
        per_collect = math.ceil(self.steps_per_collect / n_envs) * n_envs
        params = OnPolicyTrainerParams(
            training_collector=self.collector,
            max_epochs=1,
            epoch_num_steps=k * n_steps,
            collection_step_num_env_steps=k * per_collect,
            update_step_num_repetitions=self.config.epochs,
            batch_size=None,
            test_collector=None,
            logger=logger,
            multi_agent_return_reduction=mean_over_agents,
            verbose=False,
            show_progress=show_progress,
        )
        self.algorithm.run_training(params)

    def model_of(self, k: int) -> MultiAgentActorCritic:
        """Trial k's trained model, as a stand-alone single-trial model."""
        return self.population.model_of(k)

    def learner_of(self, k: int) -> Learner:
        """Trial k as a stand-alone single-trial :class:`~agents.training.Learner` (a copy of
        its model, a greedy policy, and an algorithm with fresh optimiser state): what
        evaluation and :func:`agents.checkpoint.save_checkpoint` take."""
        model = self.model_of(k)
        policy = STEPPolicy(model=model, action_space=self.policy.action_space,
                            observation_space=self.policy.observation_space)
        algorithm = STEPAlgorithm(policy=policy, config=self.config)
        return Learner(spec=self.spec, config=self.config, model=model, policy=policy, algorithm=algorithm)

    def close(self) -> None:
        """Close the environments."""
        self.venv.close()


def train_population(env_fn: Callable[[], Any], *, config: STEPConfig, total_steps: int, seeds: Sequence[int],
                     order: OrderArg = None, observation: str = "own",
                     venv_fn: Callable[[list[Callable[[], JointStepEnv]]], BaseVectorEnv] | None = None
                     ) -> list[MultiAgentActorCritic]:
    """Train one trial per seed together (:class:`PopulationSession`); the trials' models.

    The population twin of :func:`agents.training.train`: trial k's model is (to float
    rounding) what ``train(env_fn, config=config, total_steps=total_steps, seed=seeds[k])``
    learns.
    """
    session = PopulationSession(env_fn, config=config, total_steps=total_steps, seeds=seeds, order=order,
                                observation=observation, venv_fn=venv_fn)
    try:
        session.train_steps(total_steps)
    finally:
        session.close()
    return [session.model_of(k) for k in range(session.size)]
