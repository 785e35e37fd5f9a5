"""The actor and critics of one variant, evaluated on batches of (time step, agent) pairs.

Every variant reads the same inputs -- all agents' base observations, the encoded joint action,
who is alive and each agent's priority position -- and picks what it may see:

========  =====================================================  =====================================
variant   actor input                                            critic
========  =====================================================  =====================================
STEP      STMG observation: own obs, superiors' actions, mask;   V^i(s, a^{1:i-1}) per agent on the
          priority ID -> hypernetwork (:class:`NLevelPolicy`)    full flat STMG observation
MAPPO     own obs + agent ID, one shared MLP                     one shared MLP on all obs + alive
                                                                 mask + agent ID (centralised)
IPPO      own obs, one MLP per agent                             one MLP per agent on own obs
HAPPO     own obs, one MLP per agent                             one MLP per agent on all obs + alive
========  =====================================================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agents.config import STEPConfig, Variant
from agents.encoding import stmg_inputs
from agents.networks import AgentMLPs, MaskedDistribution, NLevelPolicy, mlp
from agents.spec import JointSpec


class MultiAgentActorCritic(nn.Module):
    """Actor (``self.actor``) and critics (``self.critics``) of ``config.variant`` for ``spec``."""

    def __init__(self, *, spec: JointSpec, config: STEPConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.variant = config.variant
        n, d, out = spec.n_agents, spec.obs_dim, spec.max_action_size
        h = config.hidden_size
        gaussian = spec.action_kind == "box"
        self.register_buffer("valid_actions", torch.as_tensor(spec.action_mask()), persistent=False)
        self.all_actions_valid = bool(spec.action_mask().all())  # same action count for all
        self.actor: nn.Module
        self.critics: nn.Module
        self.log_std: nn.Parameter | None = None
        if self.variant is Variant.STEP:
            self.actor = NLevelPolicy(
                obs_size=d, n_agents=n, slot_size=spec.slot_size, hidden=h,
                embedding_size=config.priority_embedding_size,
                target_hidden=config.target_hidden_size, out_size=out, gaussian=gaussian,
                log_std_init=config.log_std_init,
            )
            self.critics = AgentMLPs(n_members=n, in_size=spec.flat_size, hidden=h, out_size=1)
        elif self.variant is Variant.MAPPO:
            self.actor = mlp(d + n, h, out)
            _small_head(self.actor)
            self.critics = mlp(n * d + 2 * n, h, 1)
        elif self.variant in (Variant.IPPO, Variant.HAPPO):
            self.actor = AgentMLPs(n_members=n, in_size=d, hidden=h, out_size=out, out_gain=0.01)
            critic_in = d if self.variant is Variant.IPPO else n * d + n
            self.critics = AgentMLPs(n_members=n, in_size=critic_in, hidden=h, out_size=1)
        else:  # pragma: no cover - Variant is closed
            raise ValueError(f"unknown variant {self.variant!r}")
        if gaussian and self.variant is not Variant.STEP:
            members = 1 if self.variant is Variant.MAPPO else n
            self.log_std = nn.Parameter(torch.full((members, out), config.log_std_init))

    def generated(self) -> torch.Tensor | None:
        """STEP: the hypernetwork output for all priorities (see ``evaluate``); else None."""
        actor = self.actor
        return actor.generated() if isinstance(actor, NLevelPolicy) else None

    @property
    def uses_prior_actions(self) -> bool:
        """Whether an agent's action depends on its superiors' actions (STEP only)."""
        return self.variant is Variant.STEP

    def inputs(
        self,
        *,
        obs: torch.Tensor,
        act_enc: torch.Tensor,
        alive: torch.Tensor,
        pos_of: torch.Tensor,
        agent: torch.Tensor,
        priority: torch.Tensor,
    ) -> PairInputs:
        """What the actor and the critic of each (time step, agent) pair read (data only).

        Args:
            obs: (B, n_agents, obs_dim) base observations of every agent.
            act_enc: (B, n_agents, slot_size) encoded (partial) joint actions.
            alive: (B, n_agents) 1.0 for the agents acting in the time step.
            pos_of: (B, n_agents) long priority positions.
            agent: (B,) long, the agent of each pair.
            priority: (B,) long, its priority position.
        """
        spec, n = self.spec, self.spec.n_agents
        batch = obs.shape[0]
        if self.variant is Variant.STEP:
            flat = stmg_inputs(spec, obs=obs, act_enc=act_enc, alive=alive, pos_of=pos_of,
                               agent=agent, priority=priority)  # (B, flat_size)
            return PairInputs(actor=flat[:, : spec.obs_dim + n * spec.slot_size + n], critic=flat)
        own = obs[torch.arange(batch, device=obs.device), agent]  # (B, obs_dim)
        if self.variant is Variant.IPPO:
            return PairInputs(actor=own, critic=own)
        joint = torch.cat([obs.reshape(batch, -1), alive], dim=1)
        if self.variant is Variant.HAPPO:
            return PairInputs(actor=own, critic=joint)
        agent_id = F.one_hot(agent, n).float()  # MAPPO: (B, n)
        return PairInputs(actor=torch.cat([own, agent_id], dim=1),
                          critic=torch.cat([joint, agent_id], dim=1))

    def heads(
        self,
        inputs: PairInputs,
        *,
        agent: torch.Tensor,
        priority: torch.Tensor | int,
        with_value: bool = True,
        generated: torch.Tensor | None = None,
    ) -> tuple[MaskedDistribution, torch.Tensor | None]:
        """Policy distribution and (B,) value (or None) of pairs from their :meth:`inputs`.

        Args:
            inputs: the pairs' actor and critic inputs.
            agent: (B,) long, the agent of each pair.
            priority: (B,) long priority positions, or one int when all pairs share it.
            with_value: also evaluate the critic.
            generated: STEP only: the hypernetwork output for all priorities
                (:meth:`NLevelPolicy.generated`), to reuse across calls; computed if None.
        """
        log_std: torch.Tensor | None = None
        value: torch.Tensor | None = None
        if with_value and inputs.critic is None:
            raise ValueError("heads(with_value=True) needs critic inputs; got PairInputs.critic=None")
        if self.variant is Variant.STEP:
            out, log_std = self.actor(inputs.actor, priority, generated)
            if with_value:
                value = self.critics(inputs.critic, agent).squeeze(-1)
        else:
            if self.variant is Variant.MAPPO:
                out = self.actor(inputs.actor)
                if with_value:
                    value = self.critics(inputs.critic).squeeze(-1)
            else:
                out = self.actor(inputs.actor, agent)
                if with_value:
                    value = self.critics(inputs.critic, agent).squeeze(-1)
            if self.log_std is not None:
                member = torch.zeros_like(agent) if self.log_std.shape[0] == 1 else agent
                log_std = self.log_std[member]
        valid_actions: torch.Tensor = self.valid_actions  # type: ignore[assignment]
        dist = MaskedDistribution(kind=self.spec.action_kind, out=out, log_std=log_std,
                                  valid=valid_actions[agent], all_valid=self.all_actions_valid)
        return dist, value

    def evaluate(
        self,
        *,
        obs: torch.Tensor,
        act_enc: torch.Tensor,
        alive: torch.Tensor,
        pos_of: torch.Tensor,
        agent: torch.Tensor,
        priority: torch.Tensor,
        with_value: bool = True,
        generated: torch.Tensor | None = None,
    ) -> tuple[MaskedDistribution, torch.Tensor | None]:
        """:meth:`heads` of :meth:`inputs`: the distribution and value of a batch of pairs
        (arguments as there)."""
        pair_inputs = self.inputs(obs=obs, act_enc=act_enc, alive=alive, pos_of=pos_of,
                                  agent=agent, priority=priority)
        return self.heads(pair_inputs, agent=agent, priority=priority, with_value=with_value,
                          generated=generated)


@dataclass
class PairInputs:
    """Actor and critic inputs of a batch of (time step, agent) pairs (:meth:`MultiAgentActorCritic.inputs`)."""

    actor: torch.Tensor
    critic: torch.Tensor | None
    """None when no value is needed."""

    def __getitem__(self, idx: torch.Tensor) -> PairInputs:
        return PairInputs(actor=self.actor[idx], critic=None if self.critic is None else self.critic[idx])


def _small_head(net: nn.Sequential) -> None:
    """Near-zero output layer: a uniform initial policy, as usual for PPO actors."""
    last: nn.Linear = net[-1]  # type: ignore[assignment]
    nn.init.orthogonal_(last.weight, gain=0.01)
    nn.init.zeros_(last.bias)
