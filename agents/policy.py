"""The acting side: a Tianshou ``Policy`` that runs the priority chain inside one joint step.

For priority position p = 0, 1, ... the agent at that position builds its STMG observation
from the base observations and the actions its superiors have sampled so far (training
transmits superiors' sampled actions, Section 3.3 of the paper), samples its own action, and
the policy records its action. The baselines (no prior actions) act simultaneously. The
log-probabilities and values PPO needs are computed afterwards for the whole collected batch
(:meth:`STEPPolicy.evaluate_joint`), with the actions superiors actually took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch

from agents.adapter import ALIVE, EXTRA_COLUMNS, POSITION, PRESENT
from agents.encoding import encode_agent_actions, encode_joint_action, position_of
from agents.model import MultiAgentActorCritic
from agents.networks import MaskedDistribution, NLevelPolicy
from agents.spec import JointSpec


@dataclass
class ChainResult:
    """What one pass of the priority chain produces for a batch of time steps."""

    act: torch.Tensor
    """(B, n_agents) long or (B, n_agents, max_action_size) float; 0 for agents not acting."""
    logp: torch.Tensor
    """(B, n_agents) log-probabilities of the actions taken; 0 for agents not acting."""
    value: torch.Tensor
    """(B, n_agents) V^i of each acting agent; 0 elsewhere (unless computed: 0 everywhere)."""


def batch_tensors(obs: Any, state_dim: int = 0, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(obs (B, n, d), alive (B, n), present (B, n), order (B, n) long, state (B, S) or None)
    from a batch of adapter observations, (B, n, d + S + 3) float32 (see :mod:`agents.adapter`)."""
    x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)
    order = position_of(x[..., POSITION].long())  # the inverse permutation of the positions
    d = x.shape[-1] - EXTRA_COLUMNS - state_dim
    state = x[..., 0, d:d + state_dim] if state_dim else None
    return x[..., :d], x[..., ALIVE], x[..., PRESENT], order, state


class STEPPolicy(Policy):
    """Samples joint actions through the priority chain (module docstring).

    Args:
        model: actor and critics.
        action_space: the adapter's joint action space.
        observation_space: the adapter's observation space.
        deterministic_eval: act greedily when not inside a training step.
    """

    def __init__(self, *, model: MultiAgentActorCritic, action_space: gym.Space,
                 observation_space: gym.Space | None = None, deterministic_eval: bool = True) -> None:
        super().__init__(action_space=action_space, observation_space=observation_space,
                         action_scaling=False, action_bound_method=None)
        self.model = model
        self.spec: JointSpec = model.spec
        self.deterministic_eval = deterministic_eval

    @staticmethod
    def _compile() -> None:
        """Skip Tianshou's numba warm-up: this policy never uses its GAE/n-step kernels
        (per-agent GAE lives in :mod:`agents.gae`), and the warm-up costs seconds per process."""

    def chain(self, obs: torch.Tensor, participating: torch.Tensor, order: torch.Tensor, *,
              greedy: bool, with_value: bool = True, with_logp: bool = True,
              state: torch.Tensor | None = None, uniforms: torch.Tensor | None = None) -> ChainResult:
        """Sample (or pick greedily) a joint action for a batch of time steps.

        STEP runs the priority chain: the agent at position p sees the actions sampled by
        positions 0..p-1. The baselines act simultaneously (one pass over all agents).

        Args:
            obs: (B, n_agents, obs_dim) base observations, prepared
                (:meth:`MultiAgentActorCritic.prepare_obs`).
            participating: (B, n_agents) 1.0 for agents that take part (alive, or present for
                bootstrapping); they must come first in ``order``.
            order: (B, n_agents) long agent indices in priority order.
            greedy: take the most probable action instead of sampling.
            with_value: also evaluate the critics.
            with_logp: also compute the log-probabilities of the actions (else left at 0).
            state: (B, state_dim) prepared global states (where the critics read them).
            uniforms: (B, n_agents) U[0, 1) draws for sampling discrete actions instead of
                torch's global generator: column p for the agent at priority position p
                (STEP), column k for agent k (the baselines). Drawn row after row from one
                generator, ``uniforms.T`` (STEP) or ``uniforms`` holds exactly the numbers the
                global generator would have given (the population learner uses this).

        Values are the critics' outputs (normalised units with value normalisation).
        """
        if self.model.uses_prior_actions:
            return self._priority_chain(obs, participating, order, greedy=greedy,
                                        with_value=with_value, with_logp=with_logp, state=state,
                                        uniforms=uniforms)
        return self._simultaneous(obs, participating, order, greedy=greedy, with_value=with_value,
                                  with_logp=with_logp, state=state, uniforms=uniforms)

    def _empty_result(self, batch: int, like: torch.Tensor) -> ChainResult:
        """Zeros for every result. Made with ``like.new_zeros`` (``like``: the observations)
        so that under ``torch.func.vmap`` (the population learner) they are per-trial tensors
        that the chain can write per-trial actions into."""
        spec, n = self.spec, self.spec.n_agents
        if spec.action_kind == "discrete":
            act = like.new_zeros(batch, n, dtype=torch.long)
        else:
            act = like.new_zeros(batch, n, spec.max_action_size, dtype=torch.float32)
        return ChainResult(act=act, logp=like.new_zeros(batch, n, dtype=torch.float32),
                           value=like.new_zeros(batch, n, dtype=torch.float32))

    def _priority_chain(self, obs: torch.Tensor, participating: torch.Tensor, order: torch.Tensor, *,
                        greedy: bool, with_value: bool, with_logp: bool,
                        state: torch.Tensor | None, uniforms: torch.Tensor | None = None) -> ChainResult:
        """STEP: position by position; each agent's input is built incrementally.

        After position p acts, phi(a^p, c_k) is added to the running sum of superior features
        (the set form of E, :class:`agents.networks.NLevelPolicy`), so position p + 1 reads
        exactly its superiors. With values, the critics' flat STMG inputs are kept up to date
        too. When every row has the same order (a fixed order), agents are plain ints: column
        slices instead of gathers. Runs without autograd (it writes tensors in place). Image
        games encode every participating agent's image once, before the chain.
        """
        spec, n, model = self.spec, self.spec.n_agents, self.model
        actor = model.actor
        assert isinstance(actor, NLevelPolicy)  # internal: only STEP uses prior actions
        batch, device = obs.shape[0], obs.device
        res = self._empty_result(batch, obs)
        if batch == 0:
            return res
        rows = torch.arange(batch, device=device)
        n_part = participating.sum(1).long()  # (B,)
        steps, n_all = int(n_part.max()), int(n_part.min())  # anyone / everyone takes part
        fixed = bool((order == order[0]).all())
        agents_at = order[0].tolist() if fixed else None
        slot = spec.slot_size
        d = model.feature_size
        cells = participating > 0.5
        critic_obs = model.encode(obs, cells, critic=True) if with_value else None  # (B, n, d)
        obs = model.encode(obs, cells)  # (B, n, d): vector games, obs itself
        generated = model.generated()  # the same for every position: compute it once
        code_part = actor.code_part()
        pooled = obs.new_zeros(batch, actor.action_encoder.out_features)  # sum of phi, (B, hidden)
        state_in = obs.new_zeros(batch, d + n * slot + n) if with_value else None
        for p in range(steps):
            active = None if p < n_all else p < n_part  # None: every row takes part
            k: int | torch.Tensor = agents_at[p] if agents_at is not None else order[:, p]
            # Where this position's agent sits in (B, n_agents) tensors: a column, or a gather.
            sel: tuple[Any, ...] = (slice(None), k) if isinstance(k, int) else (rows, k)
            own = obs[sel]
            identity = actor.identity_code(k, batch)
            out, log_std = actor.target(actor.embed(own, pooled, identity), p, generated)
            dist = model.distribution(out, log_std, k)
            a = dist.mode() if greedy else dist.sample(None if uniforms is None else uniforms[:, p])
            if spec.action_kind == "box":
                a = a * dist.valid  # padded dimensions stay 0
            agent = k if not isinstance(k, int) else (
                torch.full((batch,), k, dtype=torch.long, device=device)
                if state_in is not None or spec.action_kind == "box" else None)
            v = None
            if state_in is not None:
                assert agent is not None
                assert critic_obs is not None  # encoded above when with_value
                state_in[:, :d] = critic_obs[sel]
                parts = [state_in, F.one_hot(torch.full_like(agent, p), n).float(),
                         F.one_hot(agent, n).float()]
                if spec.state_dim:
                    if state is None:
                        raise ValueError(f"the critics read a state of size {spec.state_dim}; got none")
                    parts.append(state)
                critic_in = torch.cat(parts, dim=1)
                v = model.critics(critic_in, agent).squeeze(-1)
            self._record(res, dist, a, v, sel, active, with_logp)
            enc = encode_agent_actions(spec, a, agent)  # (B, slot)
            feature = actor.superior_features(enc, k, code_part)  # (B, hidden)
            keep = None if active is None else active.float().unsqueeze(1)
            pooled = pooled + (feature if keep is None else feature * keep)
            if state_in is not None:
                table = state_in[:, d:d + n * slot].view(batch, n, slot)
                mask = state_in[:, d + n * slot:]
                table[sel] = enc if keep is None else enc * keep
                mask[sel] = 1.0 if keep is None else keep.squeeze(1)
        return res

    def _simultaneous(self, obs: torch.Tensor, participating: torch.Tensor, order: torch.Tensor, *,
                      greedy: bool, with_value: bool, with_logp: bool,
                      state: torch.Tensor | None, uniforms: torch.Tensor | None = None) -> ChainResult:
        """Baselines: every participating agent acts at once, from its own inputs."""
        spec, model = self.spec, self.model
        res = self._empty_result(obs.shape[0], obs)
        rows, agent = participating.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return res
        pos_of = position_of(order)
        act_enc = obs.new_zeros(obs.shape[0], spec.n_agents, spec.slot_size)  # unused by baselines
        inputs = model.pair_inputs(obs=obs, act_enc=act_enc, alive=participating, pos_of=pos_of,
                                   row=rows, agent=agent, priority=pos_of[rows, agent], state=state,
                                   with_value=with_value)
        dist, v = model.heads(inputs, agent=agent, priority=pos_of[rows, agent], with_value=with_value)
        a = dist.mode() if greedy else dist.sample(None if uniforms is None else uniforms[rows, agent])
        if spec.action_kind == "box":
            a = a * dist.valid
        self._record(res, dist, a, v, (rows, agent), None, with_logp)
        return res

    @staticmethod
    def _record(res: ChainResult, dist: MaskedDistribution, a: torch.Tensor, v: torch.Tensor | None,
                sel: tuple[Any, ...], active: torch.Tensor | None, with_logp: bool = True) -> None:
        """Write the pairs' actions, log-probs and values into ``res`` at ``sel`` (an index
        into (B, n_agents)); with ``active`` given, only its rows (the others keep theirs)."""
        lp = dist.log_prob(a) if with_logp else None
        if active is None:
            res.act[sel] = a
            if lp is not None:
                res.logp[sel] = lp
            if v is not None:
                res.value[sel] = v
            return
        res.act[sel] = torch.where(active.unsqueeze(1) if a.ndim == 2 else active, a, res.act[sel])
        if lp is not None:
            res.logp[sel] = torch.where(active, lp, res.logp[sel])
        if v is not None:
            res.value[sel] = torch.where(active, v, res.value[sel])

    def evaluate_joint(self, obs: torch.Tensor, alive: torch.Tensor, order: torch.Tensor,
                       act: torch.Tensor, state: torch.Tensor | None = None) -> ChainResult:
        """Log-probabilities and values of given joint actions, all acting agents at once.

        Agent i's input holds the actions its superiors actually took in ``act`` (what the
        STMG observation carried when it acted). Used by the learner for PPO's old
        log-probabilities and V^i, in one batched pass instead of during collection.

        Args:
            obs: (B, n_agents, obs_dim), prepared; alive: (B, n_agents); order: (B, n_agents)
            long; act: (B, n_agents) long or (B, n_agents, max_action_size) float;
            state: (B, state_dim), prepared, where the critics read it.
        """
        model, spec = self.model, self.spec
        res = self._empty_result(obs.shape[0], obs)
        res.act = act
        rows, agent = alive.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return res
        pos_of = position_of(order)
        priority = pos_of[rows, agent]
        inputs = model.pair_inputs(obs=obs, act_enc=encode_joint_action(spec, act), alive=alive,
                                   pos_of=pos_of, row=rows, agent=agent, priority=priority, state=state)
        dist, v = model.heads(inputs, agent=agent, priority=priority)
        self._record(res, dist, act[rows, agent], v, (rows, agent), None)
        return res

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
        """Joint action for a batch of adapter observations."""
        raw = np.asarray(batch.obs)
        # Acting reads no critic, so observations with or without the state columns will do
        # (an evaluation env need not carry the state the critics were trained on).
        state_dim = raw.shape[-1] - EXTRA_COLUMNS - self.spec.obs_dim
        if state_dim not in (0, self.spec.state_dim):
            raise ValueError(f"observations of width {raw.shape[-1]} do not fit this policy: expected "
                             f"{self.spec.obs_dim} + 3 (or + {self.spec.state_dim} state columns)")
        obs, alive, _, order, global_state = batch_tensors(raw, state_dim)
        greedy = self.deterministic_eval and not self.is_within_training_step
        with torch.inference_mode():  # cheaper than no_grad; the outputs leave as numpy
            obs, global_state = self.model.prepare_obs(obs, global_state)
            # No critics here: the learner evaluates log-probabilities and values of the
            # whole collected batch at once (STEPAlgorithm._preprocess_batch).
            res = self.chain(obs, alive, order, greedy=greedy, with_value=False, with_logp=False,
                             state=global_state)
        return Batch(act=res.act.cpu().numpy(), state=state)
