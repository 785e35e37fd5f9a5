"""The learning side: STEP (and the PPO baselines) as a Tianshou ``OnPolicyAlgorithm``.

* ``_preprocess_batch`` computes each agent's advantages with :func:`agents.gae.per_agent_gae`
  from its own rewards, done flags and bootstrap value, and flattens the batch into
  (time step, agent) pairs of the agents that acted. The bootstrap value V^i(s_{t+1},
  a_{t+1}^{1:i-1}) of a step inside an episode is the value recorded for the next row, with
  the superiors' actions actually taken there (so GAE telescopes: with lambda = 1 the returns
  are the Monte Carlo returns); only where the next row is not in the batch (truncation, the
  batch's end) are the superiors' actions sampled from the current policy.
* ``_update_with_batch`` updates agent by agent in priority order (Algorithm 1): for the agent
  at position i, the actor objective of Eq. 11 (clipped surrogate with the agent's own
  advantage, entropy bonus, hypernetwork regulariser) and the clipped critic loss of Eq. 12,
  on normalised returns with ``value_normalization``.

Agent-by-agent means it: during the update of one group, the parameters that belong to other
agents alone (their critics; for HAPPO/IPPO their actors and log-stds; for STEP the other
priorities' embeddings e^j) get no gradient and are skipped by Adam, so they do not move at all
(one Adam over stacked per-agent tensors would keep moving them with stale momentum). STEP's
shared parameters (state embedding, hypernetwork) are updated by every group; the regulariser
keeps the superiors' generated policies H(e^j) in place, as in Eq. 11 where e^j is fixed.

The regulariser snapshot: just before the update of position i, the generated target
parameters theta_tar^j = H(e^j) of every superior j < i are recorded (as constants); while
position i is updated, beta/(i-1) * sum_j ||H(e^j) - snapshot_j||^2 keeps the superiors'
generated policies where their own updates (earlier in this iteration) left them. The
snapshot covers both the hypernetwork weights and the embeddings e^j, i.e. it protects the
generated policy parameters, which is what catastrophic forgetting would damage.

The policy anchor (``STEPConfig.policy_anchor``, off by default): during the update of
position i, policy_anchor * KL(pi_before^j || pi^j), averaged over the batch's pairs of every
other position j, is added to the loss; pi_before^j is recorded just before position i's
update. The regulariser above keeps H(e^j) in place, but the shared state embedding E moves
every position's input, and nothing protects the subordinates j > i: on the random matrix
games a leader's update moved the followers' policies as much as their own updates did.

Baselines: MAPPO and IPPO do one joint update over all pairs; HAPPO updates the agents one by
one in a fresh random order each iteration, multiplying each agent's advantage by the product
of the probability ratios (new/old) of the agents updated before it in this iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm, TrainingStats
from tianshou.data import ReplayBuffer, SequenceSummaryStats

from agents.adapter import step_flags
from agents.config import STEPConfig, Variant
from agents.encoding import encode_joint_action, position_of
from agents.gae import per_agent_gae
from agents.model import MultiAgentActorCritic, PairInputs, take_rows
from agents.networks import MaskedDistribution, NLevelPolicy
from agents.normalization import RunningMeanStd
from agents.policy import STEPPolicy, batch_tensors


@dataclass(kw_only=True)
class STEPTrainingStats(TrainingStats):
    """Losses of one update (summaries over gradient steps) and what the update did."""

    actor_loss: SequenceSummaryStats
    vf_loss: SequenceSummaryStats
    entropy: SequenceSummaryStats
    regulariser: SequenceSummaryStats
    gradient_steps: int
    """Gradient steps of this update (all groups together)."""
    explained_variance: float
    """1 - Var(returns - V) / Var(returns) over the batch's pairs, in return units."""
    lr: float
    """The actor learning rate used in this update."""

    @classmethod
    def of_update(cls, log: dict[str, list[float]], *, gradient_steps: int, explained_variance: float,
                  lr: float) -> STEPTrainingStats:
        """The statistics of an update from its per-gradient-step terms ``log`` (keys
        ``actor``, ``vf``, ``ent``, ``reg``; an empty list summarises as 0)."""

        def summary(values: list[float]) -> SequenceSummaryStats:
            return SequenceSummaryStats.from_sequence(values or [0.0])

        return cls(actor_loss=summary(log["actor"]), vf_loss=summary(log["vf"]), entropy=summary(log["ent"]),
                   regulariser=summary(log["reg"]), gradient_steps=gradient_steps,
                   explained_variance=explained_variance, lr=lr)


@dataclass
class PairBatch:
    """Transitions flattened into the (time step, agent) pairs of agents that acted.

    Everything the losses read that does not depend on the parameters is computed once per
    collected batch: the pairs' network inputs, actions, advantages and old outputs. Image
    games are the exception: their inputs depend on the encoders being trained, so the pairs
    keep the per-time-step data (``steps``) and each gradient step rebuilds the inputs of its
    minibatch (:meth:`STEPAlgorithm._inputs_of`).
    """

    inputs: PairInputs | None  # actor/critic inputs, (P, ...); None: rebuilt from ``steps``
    act: torch.Tensor  # (P,) long or (P, max_action_size)
    row: torch.Tensor  # (P,) long, the time step (row of the collected batch)
    agent: torch.Tensor  # (P,) long
    priority: torch.Tensor  # (P,) long
    adv: torch.Tensor  # (P,)
    ret: torch.Tensor  # (P,) value targets in critic units (normalised with value normalisation)
    v_old: torch.Tensor  # (P,) critic outputs when collected, critic units
    logp_old: torch.Tensor  # (P,)
    n_rows: int  # T
    steps: StepData | None = None  # image games: what the inputs are rebuilt from

    def subset(self, idx: torch.Tensor) -> PairBatch:
        """The pairs ``idx`` (rows keep their meaning)."""
        return PairBatch(inputs=None if self.inputs is None else self.inputs[idx], act=take_rows(self.act, idx),
                         row=take_rows(self.row, idx), agent=take_rows(self.agent, idx),
                         priority=take_rows(self.priority, idx), adv=take_rows(self.adv, idx),
                         ret=take_rows(self.ret, idx), v_old=take_rows(self.v_old, idx),
                         logp_old=take_rows(self.logp_old, idx), n_rows=self.n_rows, steps=self.steps)


@dataclass
class StepData:
    """Per time step tensors of a collected batch (image games), shared by all its pairs."""

    obs: torch.Tensor  # (T, n_agents, obs_dim) prepared observations (the images, flat)
    act_enc: torch.Tensor  # (T, n_agents, slot_size)
    alive: torch.Tensor  # (T, n_agents)
    pos_of: torch.Tensor  # (T, n_agents) long
    state: torch.Tensor | None  # (T, state_dim)


class STEPAlgorithm(OnPolicyAlgorithm[STEPPolicy]):
    """STEP / MAPPO / IPPO / HAPPO updates (module docstring).

    Args:
        policy: the acting policy (holds the model).
        config: hyperparameters; ``config.variant`` selects the update scheme.
    """

    def __init__(self, *, policy: STEPPolicy, config: STEPConfig) -> None:
        super().__init__(policy=policy)
        self.config = config
        self.model = policy.model
        model = self.model
        critic_params = model.critic_parameters()
        critic_ids = {id(p) for p in critic_params}
        actor_params = [p for p in model.parameters() if id(p) not in critic_ids]
        groups = [{"params": actor_params, "lr": config.lr},
                  {"params": critic_params, "lr": config.critic_lr or config.lr}]
        # Adam with fused=True: one fused kernel instead of a loop over the parameters, which
        # dominates for these small networks on the CPU (benchmarks/bench_ops.py). Parameters
        # whose gradient is None (frozen in a group's update) are skipped entirely.
        self._adam = torch.optim.Adam(groups, lr=config.lr, eps=1e-5, fused=True)
        self._base_lrs = [float(config.lr), float(config.critic_lr or config.lr)]
        self._params = actor_params + critic_params
        # Registered so that Tianshou's state_dict/load_state_dict carry the optimiser state.
        self.optim = self.Optimizer(self._adam, model, max_grad_norm=config.max_grad_norm)
        self._optimizers.append(self.optim)
        n = model.spec.n_agents
        self._agent_params = [model.agent_parameters(k) for k in range(n)]
        self._priority_params = [model.priority_parameters(p) for p in range(n)]
        self._generator = torch.Generator().manual_seed(0)
        # Progress of the run (saved with the algorithm, so a resumed run continues its schedule).
        self.register_buffer("env_steps_done", torch.zeros((), dtype=torch.int64))
        self.total_env_steps: int | None = None
        self.return_stats = RunningMeanStd(n) if config.reward_scaling else None
        self._stats_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._explained_variance = float("nan")

    def set_training_horizon(self, total_env_steps: int) -> None:
        """Tell the algorithm how many environment steps the whole run will take (schedules
        such as learning-rate decay read it). Call once before training; a resumed run calls
        it again with the same total."""
        if total_env_steps <= 0:
            raise ValueError(f"total_env_steps={total_env_steps!r} must be positive")
        self.total_env_steps = int(total_env_steps)

    def reseed(self, seed: int) -> None:
        """Seed the random update order of HAPPO and the minibatch shuffling."""
        self._generator.manual_seed(seed)

    def steps_done(self) -> int:
        """Environment steps this algorithm has learned from (saved in its state)."""
        done: torch.Tensor = self.env_steps_done  # type: ignore[assignment]
        return int(done)

    def _add_env_steps(self, count: int) -> None:
        done: torch.Tensor = self.env_steps_done  # type: ignore[assignment]
        done += count

    def lr_fraction(self, env_steps_done: int) -> float:
        """The factor on the learning rates after ``env_steps_done`` steps (1 without
        ``lr_decay``; else linear from 1 to 0 over the training horizon)."""
        if not self.config.lr_decay:
            return 1.0
        if self.total_env_steps is None:
            raise RuntimeError("lr_decay needs the run's length: call "
                               "algorithm.set_training_horizon(total_env_steps) before training")
        return max(0.0, 1.0 - env_steps_done / self.total_env_steps)

    # --- advantages ------------------------------------------------------------------------
    def _preprocess_batch(self, batch: Any, buffer: ReplayBuffer, indices: np.ndarray) -> Any:
        cfg, model = self.config, self.model
        spec = model.spec
        obs_raw, alive, _, order, state_raw = batch_tensors(batch.obs, spec.state_dim)
        obs_next_raw, _, present_next, order_next, state_next_raw = batch_tensors(batch.obs_next, spec.state_dim)
        act = torch.as_tensor(np.asarray(batch.act))
        act = act.long() if spec.action_kind == "discrete" else act.float()
        n_rows = obs_raw.shape[0]
        # Per-agent flags from the observations (the env's info may be empty, agents.adapter).
        alive_np, terminated, truncated = step_flags(batch.obs, batch.obs_next)
        episode_end = np.asarray(batch.done, bool).copy()
        episode_end[np.isin(indices, buffer.unfinished_index())] = True
        next_pos = _next_positions(buffer, indices, episode_end)  # (T,), -1: not in the batch
        with torch.no_grad():  # (not inference_mode: logp_old and v_old enter the losses)
            obs, state = model.prepare_obs(obs_raw, state_raw)
            # PPO's old log-probabilities and V^i(s, a^{1:i-1}) with the superiors' actual
            # actions, for the whole batch at once (the collector only sampled actions).
            taken = self.policy.evaluate_joint(obs, alive, order, act, state)
            value = model.value_in_return_units(taken.value)  # (T, n) return units
            next_value = torch.zeros_like(value)
            if cfg.gamma > 0.0:  # with gamma = 0 the bootstrap term vanishes
                inside = next_pos >= 0
                next_value[torch.as_tensor(inside)] = value[torch.as_tensor(next_pos[inside])]
                # Rows whose next row is not here, or where an agent was truncated alone:
                # bootstrap from obs_next with superiors' actions sampled from the policy.
                sample_rows = np.flatnonzero(~inside | truncated.any(1))
                if sample_rows.size:
                    rows_t = torch.as_tensor(sample_rows)
                    obs_n, state_n = model.prepare_obs(
                        obs_next_raw[rows_t], None if state_next_raw is None else state_next_raw[rows_t])
                    sampled = model.value_in_return_units(self.policy.chain(
                        obs_n, present_next[rows_t], order_next[rows_t], greedy=False,
                        with_logp=False, state=state_n).value)
                    replace = torch.as_tensor(~inside[sample_rows, None] | truncated[sample_rows])
                    next_value[rows_t] = torch.where(replace, sampled, next_value[rows_t])
        rew = np.asarray(batch.rew, np.float64).reshape(alive_np.shape)
        if self.return_stats is not None:
            rew = self._scale_rewards(rew, next_pos, alive_np)
        adv, ret = per_agent_gae(
            rew=rew, value=value.numpy().astype(np.float64),
            next_value=next_value.numpy().astype(np.float64), alive=alive_np,
            terminated=terminated, truncated=truncated, episode_end=episode_end,
            gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        )
        batch.adv, batch.returns = adv, ret
        row_np, agent_np = np.nonzero(alive_np)
        row, agent = torch.as_tensor(row_np), torch.as_tensor(agent_np)
        ret_pairs = torch.as_tensor(ret[row_np, agent_np])
        self._explained_variance = _explained_variance(value[row, agent], ret_pairs)
        if model.value_norm is not None:  # targets on the updated scale (MAPPO's value normaliser)
            model.value_norm.update(ret_pairs, agent)
            ret_pairs = model.value_norm.normalize(ret_pairs, agent)
        pos_of = position_of(order)
        priority = pos_of[row, agent]
        inputs: PairInputs | None = None
        steps: StepData | None = None
        if spec.is_image:  # inputs rebuilt per minibatch from each time step's images
            steps = StepData(obs=obs, act_enc=encode_joint_action(spec, act), alive=alive,
                             pos_of=pos_of, state=state)
        else:
            inputs = model.inputs(obs=obs[row], act_enc=encode_joint_action(spec, act[row]),
                                  alive=alive[row], pos_of=pos_of[row], agent=agent, priority=priority,
                                  state=None if state is None else state[row])
        self._pairs = PairBatch(
            inputs=inputs, act=act[row, agent], row=row, agent=agent, priority=priority,
            adv=torch.as_tensor(adv[row_np, agent_np]), ret=ret_pairs,
            v_old=taken.value[row, agent], logp_old=taken.logp[row, agent], n_rows=n_rows,
            steps=steps,
        )
        # Observation statistics change after this batch's update (the policy that collected
        # it and the one being updated see the same normalisation).
        self._stats_batch = (obs_raw, alive, state_raw)
        self._add_env_steps(n_rows)
        return batch

    def _scale_rewards(self, rew: np.ndarray, next_pos: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Rewards divided by the running std of each agent's discounted return, accumulated
        forward in time within the batch (``reward_scaling``); ``next_pos`` as in
        :func:`_next_positions`."""
        assert self.return_stats is not None  # internal: only called with reward scaling
        prev_pos = _previous_positions(next_pos)
        discounted = forward_discounted_returns(rew, prev_pos, self.config.gamma)
        row, agent = np.nonzero(alive)
        agent_t = torch.as_tensor(agent)
        self.return_stats.update(torch.as_tensor(discounted[row, agent]), agent_t)
        std = self.return_stats.std().double().numpy()  # (n,)
        return rew / std

    # --- losses ----------------------------------------------------------------------------
    def _inputs_of(self, pb: PairBatch) -> PairInputs:
        """The network inputs of the pairs ``pb``: precomputed (vector games), or rebuilt from
        their time steps' images with the encoders as they are now (image games: only the
        images of this minibatch's pairs are encoded, so the encoders get their gradient)."""
        if pb.inputs is not None:
            return pb.inputs
        steps = pb.steps
        if steps is None:  # internal invariant: PairBatch holds one of the two
            raise RuntimeError("PairBatch without inputs needs its per-time-step data")
        return self.model.pair_inputs(obs=steps.obs, act_enc=steps.act_enc, alive=steps.alive,
                                      pos_of=steps.pos_of, row=pb.row, agent=pb.agent,
                                      priority=pb.priority, state=steps.state)

    def _pair_losses(self, pb: PairBatch, adv: torch.Tensor, priority: int | None = None,
                     generated: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clipped surrogate, value loss (Eq. 12), entropy and new log-probs of the pairs ``pb``.

        Args:
            pb: the pairs (a :meth:`PairBatch.subset`).
            adv: (m,) their advantages, already normalised/scaled.
            priority: the common priority of all pairs, if they share one (faster).
            generated: STEP: the hypernetwork output for all priorities, if already computed.
        """
        return pair_losses(self.model, self.config, self._inputs_of(pb), pb, adv, priority, generated)

    def _advantages(self, pb: PairBatch, factor: torch.Tensor | None) -> torch.Tensor:
        """The advantages the surrogate of the pairs ``pb`` uses (normalised per agent, scaled)."""
        adv = pb.adv
        if self.config.advantage_normalization:
            adv = _normalise_per_agent(adv, pb.agent, self.model.spec.n_agents)
        if factor is not None:
            adv = adv * factor[pb.row]
        return adv

    def _minibatches(self, idx: torch.Tensor) -> list[torch.Tensor]:
        perm = idx[torch.randperm(idx.numel(), generator=self._generator)]
        size = self.config.minibatch_size
        if size is not None:
            return list(perm.split(size))
        return [chunk for chunk in perm.chunk(self.config.minibatches) if chunk.numel() > 0]

    def _single_minibatch(self, count: int) -> bool:
        size = self.config.minibatch_size
        return count <= size if size is not None else self.config.minibatches == 1

    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> STEPTrainingStats:
        pb = self._pairs
        log: dict[str, list[float]] = {"actor": [], "vf": [], "ent": [], "reg": []}
        steps = 0
        variant = self.config.variant
        # The schedule reads the progress before this batch was counted.
        fraction = self.lr_fraction(self.steps_done() - pb.n_rows)
        for param_group, base in zip(self._adam.param_groups, self._base_lrs, strict=True):
            param_group["lr"] = base * fraction
        all_pairs = torch.arange(pb.row.numel())
        n = self.model.spec.n_agents
        if variant is Variant.STEP:
            actor_group = self._adam.param_groups[0]
            progress = (horizon_progress(self.steps_done() - pb.n_rows, self.total_env_steps)
                        if self.config.bottom_up > 0 else 1.0)
            for p in range(n):  # Algorithm 1: agent by agent, leader first
                # Two timescales: each superior's actor steps superior_lr_scale times the step
                # of the agent below it (1.0: one rate for all, as in the paper).
                actor_group["lr"] = self._base_lrs[0] * fraction * self.config.superior_lr_scale ** (n - 1 - p)
                group = all_pairs[pb.priority == p]
                steps += self._update_group(pb, group, repeat, log, priority=p,
                                            actor_waits=self.config.actor_waits(p, n, progress))
        elif variant is Variant.HAPPO:
            factor = torch.ones(pb.n_rows)  # (T,) product of earlier agents' ratios
            perm = torch.randperm(n, generator=self._generator)
            for k in perm.tolist():
                group = all_pairs[pb.agent == k]
                if group.numel() == 0:
                    continue
                steps += self._update_group(pb, group, repeat, log, factor=factor)
                # Agent k's policy is final for this iteration (the others' updates leave it
                # alone), so its ratio enters the factor of the agents after it.
                with torch.no_grad():
                    _, _, _, logp_new = self._pair_losses(pb.subset(group), pb.adv[group])
                    factor[pb.row[group]] *= (logp_new - pb.logp_old[group]).exp()
        else:  # MAPPO, IPPO: simultaneous agents, one joint update
            steps += self._update_group(pb, all_pairs, repeat, log)
        if self._stats_batch is not None:
            self.model.update_obs_statistics(*self._stats_batch)
            self._stats_batch = None
        return STEPTrainingStats.of_update(log, gradient_steps=steps, explained_variance=self._explained_variance,
                                           lr=self._adam.param_groups[0]["lr"])

    def _frozen(self, group_agents: set[int], priority: int | None) -> list[torch.nn.Parameter]:
        """Parameters that must not move in the update of a group: those of agents outside
        the group, and (STEP) the embeddings of the other priorities."""
        frozen = [p for k, params in enumerate(self._agent_params) if k not in group_agents for p in params]
        if priority is not None:
            frozen += [p for q, params in enumerate(self._priority_params) if q != priority for p in params]
        return frozen

    def _gradient_step(self, loss: torch.Tensor, frozen: list[torch.nn.Parameter]) -> None:
        """zero_grad, backward, drop the frozen parameters' gradients, clip, Adam step."""
        self._adam.zero_grad(set_to_none=True)
        loss.backward()
        for param in frozen:
            param.grad = None
        if self.config.max_grad_norm is not None:
            with_grad = [p for p in self._params if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(with_grad, max_norm=self.config.max_grad_norm)
        self._adam.step()

    def _update_group(self, pb: PairBatch, group: torch.Tensor, epochs: int,
                      log: dict[str, list[float]], *, priority: int | None = None,
                      factor: torch.Tensor | None = None, actor_waits: bool = False) -> int:
        """PPO epochs on the pairs ``group``; returns the number of gradient steps.

        ``priority`` (STEP): the position all pairs of the group hold; the superiors 0..p-1
        are regularised (Eq. 11) against a snapshot taken now, before this group's update.
        ``actor_waits``: no actor parameter moves (:attr:`STEPConfig.bottom_up`), the critics learn.
        """
        if group.numel() == 0:
            return 0
        cfg = self.config
        actor = self.model.actor
        frozen = self._frozen(set(pb.agent[group].tolist()), priority)
        if actor_waits:
            frozen += list(self._adam.param_groups[0]["params"])
        snapshot: torch.Tensor | None = None
        if priority is not None and priority > 0 and cfg.beta > 0 and isinstance(actor, NLevelPolicy):
            with torch.no_grad():
                snapshot = actor.generated(torch.arange(priority)).clone()  # (i-1, n_generated)
        # Agent by agent also for the policies: while this position learns, the shared
        # parameters it moves must not carry the other positions' policies along.
        anchor = (self._anchor(pb, priority) if priority is not None and cfg.policy_anchor > 0 and not actor_waits
                  else None)
        # One minibatch: the same pairs every epoch, gathered and their advantages prepared once.
        whole = pb.subset(group) if self._single_minibatch(group.numel()) else None
        whole_parts = [(whole, self._advantages(whole, factor))] if whole is not None else None
        steps = 0
        terms: list[torch.Tensor] = []
        for _ in range(epochs):
            parts = whole_parts
            if parts is None:
                subsets = [pb.subset(idx) for idx in self._minibatches(group)]
                parts = [(sub, self._advantages(sub, factor)) for sub in subsets]
            anchor_parts = anchor.chunks(len(parts), self._generator) if anchor is not None else []
            for k, (sub, adv) in enumerate(parts):
                # STEP: one hypernetwork pass per gradient step serves the target policy, the
                # regulariser and the anchor.
                generated = actor.generated() if isinstance(actor, NLevelPolicy) else None
                loss, term = step_loss(self.model, cfg, self._inputs_of(sub), sub, adv, priority, snapshot,
                                       generated=generated)
                if k < len(anchor_parts):
                    loss = loss + cfg.policy_anchor * self._anchor_divergence(*anchor_parts[k], generated)
                self._gradient_step(loss, frozen)
                steps += 1
                terms.append(term.detach())
        if terms:  # one conversion instead of four .item() per gradient step
            for key, column in zip(("actor", "vf", "ent", "reg"), torch.stack(terms).T.tolist(), strict=True):
                log[key].extend(column)
        return steps

    def _anchor(self, pb: PairBatch, priority: int) -> PolicyAnchor | None:
        """The batch's pairs of every position other than ``priority`` and their policies
        now, just before that position's update (:attr:`STEPConfig.policy_anchor`); None if
        the batch has no such pairs."""
        others = torch.arange(pb.row.numel())[pb.priority != priority]
        if others.numel() == 0:
            return None
        pairs = pb.subset(others)
        with torch.no_grad():
            before, _ = self.model.heads(self._inputs_of(pairs), agent=pairs.agent, priority=pairs.priority,
                                         with_value=False)
        return PolicyAnchor(pairs=pairs, before=before)

    def _anchor_divergence(self, pairs: PairBatch, before: MaskedDistribution,
                           generated: torch.Tensor | None) -> torch.Tensor:
        """Mean KL(pi_before || pi_now) over ``pairs`` (a chunk of a :class:`PolicyAnchor`);
        ``generated``: the hypernetwork's output of this gradient step (STEP)."""
        now, _ = self.model.heads(self._inputs_of(pairs), agent=pairs.agent, priority=pairs.priority,
                                  with_value=False, generated=generated)
        return before.kl_divergence(now).mean()


@dataclass
class PolicyAnchor:
    """What :attr:`STEPConfig.policy_anchor` holds other positions' policies to during one
    position's update: their pairs in the batch and their policies before the update."""

    pairs: PairBatch
    before: MaskedDistribution

    def chunks(self, count: int, generator: torch.Generator) -> list[tuple[PairBatch, MaskedDistribution]]:
        """The pairs in ``count`` random chunks (one per minibatch of the update, so that a
        gradient step evaluates a share of them, not all); one chunk: all, unshuffled."""
        if count == 1:
            return [(self.pairs, self.before)]
        perm = torch.randperm(self.pairs.row.numel(), generator=generator)
        return [(self.pairs.subset(idx), self.before.take(idx)) for idx in perm.chunk(count) if idx.numel()]


def pair_losses(model: MultiAgentActorCritic, cfg: STEPConfig, inputs: PairInputs, pb: PairBatch,
                adv: torch.Tensor, priority: int | None = None, generated: torch.Tensor | None = None,
                distinct: DistinctInputs | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate, value loss (Eq. 12), entropy and new log-probs of the pairs ``pb``
    (:meth:`STEPAlgorithm._pair_losses`, whose arguments these are, with the pairs' network
    ``inputs``). A pure function of the model's parameters and the data, so that the
    population learner can evaluate it for every trial at once under ``torch.func.vmap``.

    ``distinct``: ``inputs`` hold each distinct input of the pairs once (the population
    learner's repeated games have a handful per group); the heads run on those, and every pair
    reads the outputs of its input row ``distinct.rows``. The same losses, up to float rounding.
    """
    if distinct is None:
        dist, value = model.heads(inputs, agent=pb.agent, priority=pb.priority if priority is None else priority,
                                  generated=generated)
    else:
        dist, value = model.heads(inputs, agent=distinct.agent,
                                  priority=distinct.priority if priority is None else priority, generated=generated)
        dist = dist.take(distinct.rows)
        value = None if value is None else value[distinct.rows]
    assert value is not None  # with_value defaults to True
    logp = dist.log_prob(pb.act)  # (m,)
    ratio = (logp - pb.logp_old).exp()
    surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip) * adv)
    v_old, ret = pb.v_old, pb.ret
    if cfg.value_clip is None:
        vf_loss = (value - ret).pow(2).mean()
    else:  # Eq. 12: the pessimistic maximum of the plain and the clipped value error
        v_clipped = v_old + (value - v_old).clamp(-cfg.value_clip, cfg.value_clip)
        vf_loss = torch.max((value - ret).pow(2), (v_clipped - ret).pow(2)).mean()
    return surrogate.mean(), vf_loss, dist.entropy().mean(), logp.detach()


@dataclass
class DistinctInputs:
    """Where the pairs' inputs hold each distinct input once (:func:`pair_losses`)."""

    rows: torch.Tensor
    """(m,) long: the input row of each pair."""
    agent: torch.Tensor
    """(U,) long: the agent of each input row."""
    priority: torch.Tensor
    """(U,) long: the priority position of each input row."""


def step_loss(model: MultiAgentActorCritic, cfg: STEPConfig, inputs: PairInputs, pb: PairBatch,
              adv: torch.Tensor, priority: int | None, snapshot: torch.Tensor | None,
              distinct: DistinctInputs | None = None, generated: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one gradient step on the pairs ``pb`` and its terms.

    ``-surrogate - entropy * H + vf_coef * vf_loss`` plus, for STEP with a ``snapshot`` of the
    superiors' generated parameters, the hypernetwork regulariser of Eq. 11. ``distinct``: as
    in :func:`pair_losses`. ``generated``: STEP's hypernetwork output for this step if the
    caller already has it (computed here otherwise).

    Returns:
        (loss, (4,) [actor loss, value loss, entropy, regulariser]).
    """
    actor = model.actor
    # STEP: one hypernetwork pass serves the target policy and the regulariser.
    if generated is None and isinstance(actor, NLevelPolicy):
        generated = actor.generated()
    surrogate, vf_loss, entropy, _ = pair_losses(model, cfg, inputs, pb, adv, priority, generated, distinct)
    loss = -surrogate - cfg.entropy * entropy + cfg.vf_coef * vf_loss
    reg = torch.zeros((), device=loss.device)
    if snapshot is not None and isinstance(actor, NLevelPolicy) and generated is not None:
        reg = hypernetwork_regulariser(actor, snapshot, beta=cfg.beta, current=generated[: snapshot.shape[0]])
        loss = loss + reg
    return loss, torch.stack([-surrogate, vf_loss, entropy, reg.expand_as(vf_loss)])


def horizon_progress(env_steps_done: int, total_env_steps: int | None) -> float:
    """The fraction of the training horizon done after ``env_steps_done`` steps."""
    if total_env_steps is None:
        raise RuntimeError("this setting needs the run's length: call "
                           "algorithm.set_training_horizon(total_env_steps) before training")
    return env_steps_done / total_env_steps


def clip_grad_norm_per_trial_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Per-trial gradient-norm clipping of stacked parameters (leading dimension: the trial).

    The population twin of ``torch.nn.utils.clip_grad_norm_``: trial k's norm is taken over
    its own slice ``p.grad[k]`` of every parameter with a gradient, and only that slice is
    scaled, by ``min(1, max_norm / (norm_k + 1e-6))`` as torch does. Returns the (K,) norms.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    per_param = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), 2, dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per_param, 2, dim=0)  # (K,)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *([1] * (g.ndim - 1))))
    return norms


def _next_positions(buffer: ReplayBuffer, indices: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
    """For each row, the batch position of the next time step of the same episode, or -1 where
    the row ends an episode or its env's run of rows (its next step is not in the batch)."""
    position = {int(i): t for t, i in enumerate(indices)}
    following = buffer.next(indices)
    out = np.array([position.get(int(j), -1) for j in following], dtype=np.int64)
    out[episode_end] = -1
    out[out == np.arange(len(indices))] = -1
    return out


def _previous_positions(next_pos: np.ndarray) -> np.ndarray:
    """For each row, the batch position of the previous time step of the same episode, or -1
    (the inverse of ``next_pos``, :func:`_next_positions`)."""
    prev = np.full(len(next_pos), -1, dtype=np.int64)
    has_next = next_pos >= 0
    prev[next_pos[has_next]] = np.flatnonzero(has_next)
    return prev


def forward_discounted_returns(rew: np.ndarray, prev_pos: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{prev(t)} along each episode (G restarts where ``prev_pos`` is -1).

    Args:
        rew: (T, n_agents) rewards.
        prev_pos: (T,) batch position of each row's previous step, -1 for an episode's first
            row in the batch; previous rows come first (buffer order).
        gamma: discount.
    """
    out = np.zeros_like(rew, dtype=np.float64)
    for t in range(rew.shape[0]):
        p = prev_pos[t]
        out[t] = rew[t] + (gamma * out[p] if p >= 0 else 0.0)
    return out


def _explained_variance(value: torch.Tensor, ret: torch.Tensor) -> float:
    var = float(ret.var()) if ret.numel() > 1 else 0.0
    return float("nan") if var == 0.0 else 1.0 - float((ret - value).var()) / var


def hypernetwork_regulariser(actor: NLevelPolicy, snapshot: torch.Tensor, *, beta: float,
                             current: torch.Tensor | None = None) -> torch.Tensor:
    """L_h of Eq. 11: beta/(i-1) * sum_{j<i} ||H(e^j) - H_old(e^j)||^2.

    Args:
        actor: the N-level policy being updated.
        snapshot: (i-1, n_generated) generated parameters of the superiors before this update.
        beta: regulariser weight.
        current: H(e^j) of the superiors now, if the caller already computed it.
    """
    count = snapshot.shape[0]
    if count == 0:
        return torch.zeros(())
    if current is None:
        current = actor.generated(torch.arange(count))  # (i-1, n_generated)
    return beta / count * (current - snapshot).pow(2).sum()


def _normalise_per_agent(adv: torch.Tensor, agent: torch.Tensor, n_agents: int) -> torch.Tensor:
    """Zero-mean, unit-std advantages within each agent's own samples."""
    out = adv.clone()
    for k in range(n_agents):
        sel = agent == k
        count = int(sel.sum())
        if count > 1:
            a = adv[sel]
            out[sel] = (a - a.mean()) / (a.std() + 1e-8)
    return out
