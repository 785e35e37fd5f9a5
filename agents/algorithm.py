"""The learning side: STEP (and the PPO baselines) as a Tianshou ``OnPolicyAlgorithm``.

* ``_preprocess_batch`` computes each agent's advantages with :func:`agents.gae.per_agent_gae`
  from its own rewards, done flags and bootstrap value, and flattens the batch into
  (time step, agent) pairs of the agents that acted.
* ``_update_with_batch`` updates agent by agent in priority order (Algorithm 1): for the agent
  at position i, the actor objective of Eq. 11 (clipped surrogate with the agent's own
  advantage, entropy bonus, hypernetwork regulariser) and the clipped critic loss of Eq. 12.

The regulariser snapshot: just before the update of position i, the generated target
parameters theta_tar^j = H(e^j) of every superior j < i are recorded (as constants); while
position i is updated, beta/(i-1) * sum_j ||H(e^j) - snapshot_j||^2 keeps the superiors'
generated policies where their own updates (earlier in this iteration) left them. The
snapshot covers both the hypernetwork weights and the embeddings e^j, i.e. it protects the
generated policy parameters, which is what catastrophic forgetting would damage.

Baselines: MAPPO and IPPO do one joint update over all pairs; HAPPO updates the agents one by
one in a fresh random order each iteration, multiplying each agent's advantage by the product
of the probability ratios (new/old) of the agents updated before it in this iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm, TrainingStats
from tianshou.algorithm.optim import TorchOptimizerFactory
from tianshou.data import ReplayBuffer, SequenceSummaryStats

from agents.adapter import step_flags
from agents.config import STEPConfig, Variant
from agents.encoding import encode_joint_action, position_of
from agents.gae import per_agent_gae
from agents.model import PairInputs
from agents.networks import NLevelPolicy
from agents.policy import STEPPolicy, batch_tensors


@dataclass(kw_only=True)
class STEPTrainingStats(TrainingStats):
    """Losses of one update (summaries over gradient steps)."""

    actor_loss: SequenceSummaryStats
    vf_loss: SequenceSummaryStats
    entropy: SequenceSummaryStats
    regulariser: SequenceSummaryStats
    gradient_steps: int


@dataclass
class PairBatch:
    """Transitions flattened into the (time step, agent) pairs of agents that acted.

    Everything the losses read that does not depend on the parameters is computed once per
    collected batch: the pairs' network inputs, actions, advantages and old outputs.
    """

    inputs: PairInputs  # actor/critic inputs, (P, ...)
    act: torch.Tensor  # (P,) long or (P, max_action_size)
    row: torch.Tensor  # (P,) long, the time step (row of the collected batch)
    agent: torch.Tensor  # (P,) long
    priority: torch.Tensor  # (P,) long
    adv: torch.Tensor  # (P,)
    ret: torch.Tensor  # (P,)
    v_old: torch.Tensor  # (P,)
    logp_old: torch.Tensor  # (P,)
    n_rows: int  # T

    def subset(self, idx: torch.Tensor) -> PairBatch:
        """The pairs ``idx`` (rows keep their meaning)."""
        return PairBatch(inputs=self.inputs[idx], act=self.act[idx], row=self.row[idx],
                         agent=self.agent[idx], priority=self.priority[idx], adv=self.adv[idx],
                         ret=self.ret[idx], v_old=self.v_old[idx], logp_old=self.logp_old[idx],
                         n_rows=self.n_rows)


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
        # Adam with fused=True: the same update as Tianshou's AdamOptimizerFactory (betas and
        # weight decay at their defaults) in one fused kernel instead of a loop over the
        # parameters, which dominates for these small networks on the CPU (2.4x faster here: benchmarks/bench_ops.py).
        self.optim = self._create_optimizer(
            self.model, TorchOptimizerFactory(torch.optim.Adam, lr=config.lr, eps=1e-5, fused=True),
            max_grad_norm=config.max_grad_norm)
        self._generator = torch.Generator().manual_seed(0)

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

    # --- advantages ------------------------------------------------------------------------
    def _preprocess_batch(self, batch: Any, buffer: ReplayBuffer, indices: np.ndarray) -> Any:
        cfg = self.config
        spec = self.model.spec
        obs, alive, _, order = batch_tensors(batch.obs)
        obs_next, _, present_next, order_next = batch_tensors(batch.obs_next)
        act = torch.as_tensor(np.asarray(batch.act))
        act = act.long() if spec.action_kind == "discrete" else act.float()
        with torch.no_grad():  # (not inference_mode: logp_old and v_old enter the losses)
            # PPO's old log-probabilities and V^i(s, a^{1:i-1}) with the superiors' actual
            # actions, for the whole batch at once (the collector only sampled actions).
            taken = self.policy.evaluate_joint(obs, alive, order, act)
            # V^i at the next observation: its own value given superiors' actions sampled
            # from the current policy (the next step's actual actions are not in this row).
            # With gamma = 0 the bootstrap term vanishes: skip the chain.
            next_value = (torch.zeros_like(taken.value) if cfg.gamma == 0.0 else
                          self.policy.chain(obs_next, present_next, order_next, greedy=False).value)
        episode_end = np.asarray(batch.done, bool).copy()
        episode_end[np.isin(indices, buffer.unfinished_index())] = True
        # Per-agent flags from the observations (the env's info may be empty, agents.adapter).
        alive_np, terminated, truncated = step_flags(batch.obs, batch.obs_next)
        value = taken.value.numpy()
        adv, ret = per_agent_gae(
            rew=np.asarray(batch.rew, np.float64).reshape(alive_np.shape),
            value=value.astype(np.float64),
            next_value=next_value.numpy().astype(np.float64),
            alive=alive_np,
            terminated=terminated,
            truncated=truncated,
            episode_end=episode_end,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
        )
        batch.adv, batch.returns = adv, ret
        row_np, agent_np = np.nonzero(alive_np)
        row, agent = torch.as_tensor(row_np), torch.as_tensor(agent_np)
        pos_of = position_of(order)
        priority = pos_of[row, agent]
        inputs = self.model.inputs(obs=obs[row], act_enc=encode_joint_action(spec, act[row]),
                                   alive=alive[row], pos_of=pos_of[row], agent=agent, priority=priority)
        self._pairs = PairBatch(
            inputs=inputs, act=act[row, agent], row=row, agent=agent, priority=priority,
            adv=torch.as_tensor(adv[row_np, agent_np]), ret=torch.as_tensor(ret[row_np, agent_np]),
            v_old=taken.value[row, agent], logp_old=taken.logp[row, agent], n_rows=obs.shape[0],
        )
        return batch

    # --- losses ----------------------------------------------------------------------------
    def _pair_losses(self, pb: PairBatch, adv: torch.Tensor, priority: int | None = None,
                     generated: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clipped surrogate, clipped value loss, entropy and new log-probs of the pairs ``pb``.

        Args:
            pb: the pairs (a :meth:`PairBatch.subset`).
            adv: (m,) their advantages, already normalised/scaled.
            priority: the common priority of all pairs, if they share one (faster).
            generated: STEP: the hypernetwork output for all priorities, if already computed.
        """
        cfg = self.config
        dist, value = self.model.heads(pb.inputs, agent=pb.agent,
                                       priority=pb.priority if priority is None else priority,
                                       generated=generated)
        assert value is not None  # with_value defaults to True
        logp = dist.log_prob(pb.act)  # (m,)
        ratio = (logp - pb.logp_old).exp()
        surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip) * adv)
        # Eq. 12: the pessimistic maximum of the plain and the clipped value error.
        v_old, ret = pb.v_old, pb.ret
        v_clipped = v_old + (value - v_old).clamp(-cfg.clip, cfg.clip)
        vf_loss = torch.max((value - ret).pow(2), (v_clipped - ret).pow(2)).mean()
        return surrogate.mean(), vf_loss, dist.entropy().mean(), logp.detach()

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
        return [chunk for chunk in perm.chunk(self.config.minibatches) if chunk.numel() > 0]

    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> STEPTrainingStats:
        pb = self._pairs
        log: dict[str, list[float]] = {"actor": [], "vf": [], "ent": [], "reg": []}
        steps = 0
        variant = self.config.variant
        all_pairs = torch.arange(pb.row.numel())
        if variant is Variant.STEP:
            for p in range(self.model.spec.n_agents):  # Algorithm 1: agent by agent, leader first
                steps += self._update_group(pb, all_pairs[pb.priority == p], repeat, log, priority=p)
        elif variant is Variant.HAPPO:
            factor = torch.ones(pb.n_rows)  # (T,) product of earlier agents' ratios
            perm = torch.randperm(self.model.spec.n_agents, generator=self._generator)
            for k in perm.tolist():
                group = all_pairs[pb.agent == k]
                if group.numel() == 0:
                    continue
                steps += self._update_group(pb, group, repeat, log, factor=factor)
                with torch.no_grad():
                    _, _, _, logp_new = self._pair_losses(pb.subset(group), pb.adv[group])
                    factor[pb.row[group]] *= (logp_new - pb.logp_old[group]).exp()
        else:  # MAPPO, IPPO: simultaneous agents, one joint update
            steps += self._update_group(pb, all_pairs, repeat, log)

        def summary(values: list[float]) -> SequenceSummaryStats:
            return SequenceSummaryStats.from_sequence(values or [0.0])

        return STEPTrainingStats(actor_loss=summary(log["actor"]), vf_loss=summary(log["vf"]),
                                 entropy=summary(log["ent"]), regulariser=summary(log["reg"]),
                                 gradient_steps=steps)

    def _update_group(self, pb: PairBatch, group: torch.Tensor, epochs: int,
                      log: dict[str, list[float]], *, priority: int | None = None,
                      factor: torch.Tensor | None = None) -> int:
        """PPO epochs on the pairs ``group``; returns the number of gradient steps.

        ``priority`` (STEP): the position all pairs of the group hold; the superiors 0..p-1
        are regularised (Eq. 11) against a snapshot taken now, before this group's update.
        """
        if group.numel() == 0:
            return 0
        cfg = self.config
        actor = self.model.actor
        snapshot: torch.Tensor | None = None
        if priority is not None and priority > 0 and cfg.beta > 0 and isinstance(actor, NLevelPolicy):
            with torch.no_grad():
                snapshot = actor.generated(torch.arange(priority)).clone()  # (i-1, n_generated)
        # One minibatch: the same pairs every epoch, gathered and their advantages prepared once.
        whole = pb.subset(group) if cfg.minibatches == 1 else None
        whole_parts = [(whole, self._advantages(whole, factor))] if whole is not None else None
        steps = 0
        terms: list[torch.Tensor] = []
        for _ in range(epochs):
            parts = whole_parts
            if parts is None:
                subsets = [pb.subset(idx) for idx in self._minibatches(group)]
                parts = [(sub, self._advantages(sub, factor)) for sub in subsets]
            for sub, adv in parts:
                # STEP: one hypernetwork pass serves the target policy and the regulariser.
                generated = actor.generated() if isinstance(actor, NLevelPolicy) else None
                surrogate, vf_loss, entropy, _ = self._pair_losses(sub, adv, priority, generated)
                loss = -surrogate - cfg.entropy * entropy + cfg.vf_coef * vf_loss
                reg = torch.zeros(())
                if snapshot is not None and generated is not None:
                    reg = hypernetwork_regulariser(actor, snapshot, beta=cfg.beta,  # type: ignore[arg-type]
                                                   current=generated[: snapshot.shape[0]])
                    loss = loss + reg
                self.optim.step(loss)
                steps += 1
                terms.append(torch.stack([-surrogate, vf_loss, entropy, reg]).detach())
        if terms:  # one conversion instead of four .item() per gradient step
            for key, column in zip(("actor", "vf", "ent", "reg"), torch.stack(terms).T.tolist(), strict=True):
                log[key].extend(column)
        return steps


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
