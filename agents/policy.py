"""The acting side: a Tianshou ``Policy`` that runs the priority chain inside one joint step.

For priority position p = 0, 1, ... the agent at that position builds its STMG observation
from the base observations and the actions its superiors have sampled so far (training
transmits superiors' sampled actions, Section 3.3 of the paper), samples its own action, and
the policy records its log-probability and its value V^i. The baselines (no prior actions) run
the same loop; their agents simply ignore the earlier actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch

from agents.adapter import ALIVE, EXTRA_COLUMNS, POSITION, PRESENT
from agents.encoding import encode_joint_action, position_of
from agents.model import MultiAgentActorCritic
from agents.spec import JointSpec


@dataclass
class ChainResult:
    """What one pass of the priority chain produces for a batch of time steps."""

    act: torch.Tensor
    """(B, n_agents) long or (B, n_agents, max_action_size) float; 0 for agents not acting."""
    logp: torch.Tensor
    """(B, n_agents) log-probabilities of the actions taken; 0 for agents not acting."""
    value: torch.Tensor
    """(B, n_agents) V^i of each acting agent; 0 elsewhere."""
    probs: torch.Tensor | None
    """(B, n_agents, max_action_size) action probabilities (discrete only)."""


def batch_tensors(obs: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(obs (B, n, d), alive (B, n), present (B, n), order (B, n) long) from a batch of adapter
    observations, (B, n, d + 3) float32 (columns: see :mod:`agents.adapter`)."""
    x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)
    order = position_of(x[..., POSITION].long())  # the inverse permutation of the positions
    return x[..., :-EXTRA_COLUMNS], x[..., ALIVE], x[..., PRESENT], order


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
              greedy: bool, with_value: bool = True) -> ChainResult:
        """Run the priority chain.

        Args:
            obs: (B, n_agents, obs_dim) base observations.
            participating: (B, n_agents) 1.0 for agents that take part (alive, or present for
                bootstrapping); they must come first in ``order``.
            order: (B, n_agents) long agent indices in priority order.
            greedy: take the most probable action instead of sampling.
            with_value: also evaluate the critics.
        """
        spec, n = self.spec, self.spec.n_agents
        batch = obs.shape[0]
        rows = torch.arange(batch, device=obs.device)
        n_part = participating.sum(1).long()  # (B,)
        pos_of = position_of(order)  # (B, n)
        if spec.action_kind == "discrete":
            act = torch.zeros(batch, n, dtype=torch.long, device=obs.device)
        else:
            act = torch.zeros(batch, n, spec.max_action_size, device=obs.device)
        logp = torch.zeros(batch, n, device=obs.device)
        value = torch.zeros(batch, n, device=obs.device)
        probs = (torch.zeros(batch, n, spec.max_action_size, device=obs.device)
                 if spec.action_kind == "discrete" else None)
        generated = self.model.generated()  # the same for every position: compute it once
        steps = int(n_part.max()) if batch > 0 else 0  # positions that anyone takes part in
        for p in range(steps):
            active = p < n_part  # (B,)
            everyone = bool(active.all())  # the common case: no masking needed
            agent = order[:, p]  # (B,)
            act_enc = encode_joint_action(spec, act)  # (B, n, slot): superiors' rows are final
            dist, v = self.model.evaluate(
                obs=obs, act_enc=act_enc, alive=participating, pos_of=pos_of, agent=agent,
                priority=torch.full_like(agent, p), with_value=with_value, generated=generated)
            a = dist.mode() if greedy else dist.sample()
            if spec.action_kind == "box":
                a = a * dist.valid  # padded dimensions stay 0
            lp = dist.log_prob(a)
            if everyone:
                act[rows, agent] = a
                logp[rows, agent] = lp
                if probs is not None:
                    probs[rows, agent] = dist.probs()
                if v is not None:
                    value[rows, agent] = v
                continue
            keep = active.float()
            if spec.action_kind == "discrete":
                act[rows, agent] = torch.where(active, a, act[rows, agent])
                assert probs is not None
                probs[rows, agent] = torch.where(active.unsqueeze(1), dist.probs(), probs[rows, agent])
            else:
                act[rows, agent] = torch.where(active.unsqueeze(1), a, act[rows, agent])
            logp[rows, agent] = torch.where(active, lp, logp[rows, agent])
            if v is not None:
                value[rows, agent] = v * keep + value[rows, agent] * (1 - keep)
        return ChainResult(act=act, logp=logp, value=value, probs=probs)

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
        """Joint action for a batch of adapter observations; ``policy`` holds logp and values."""
        obs, alive, _, order = batch_tensors(batch.obs)
        greedy = self.deterministic_eval and not self.is_within_training_step
        with torch.inference_mode():  # cheaper than no_grad; the outputs leave as numpy
            res = self.chain(obs, alive, order, greedy=greedy)
        return Batch(act=res.act.cpu().numpy(), state=state,
                     policy=Batch(logp=res.logp.cpu().numpy(), v=res.value.cpu().numpy()))
