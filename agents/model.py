"""The actor and critics of one variant, evaluated on batches of (time step, agent) pairs.

Every variant reads the same inputs -- all agents' base observations, the encoded joint action,
who is alive and each agent's priority position -- and picks what it may see:

========  =====================================================  =====================================
variant   actor input                                            critic
========  =====================================================  =====================================
STEP      STMG observation: own obs, superiors' actions, mask;   V^i(s, a^{1:i-1}) per agent on the
          priority ID -> hypernetwork (:class:`NLevelPolicy`);   full flat STMG observation + state
          + the agent's code where observation spaces differ
MAPPO     own obs + agent ID, one shared MLP                     one shared MLP on all obs + alive
                                                                 mask + agent ID + state
IPPO      own obs, one MLP per agent                             one MLP per agent on own obs
HAPPO     own obs, one MLP per agent                             one MLP per agent on all obs + alive
                                                                 + state
========  =====================================================  =====================================

Image games (``spec.image_shape`` set): every "obs" above is the feature vector of the
agent's image (``hidden_size`` values) from a small CNN (:class:`agents.networks.ImageEncoder`,
pixels scaled to [0, 1] by the space's bounds). The actor has one encoder shared by all agents
(``actor_encoder``; for STEP it is the first stage of the shared state embedding
E(.; theta_s), so the actor still grows with the number of agents only by the priority
embeddings) and the critics one more, shared by all critics (``critic_encoder``, trained by
the value loss alone with the critics' learning rate, as the critics' MLPs are kept apart from
the actor's; a shared parameter, so the agent-by-agent updates of STEP and HAPPO move it in
every agent's turn, as they move STEP's shared actor). Pair inputs are built from per-time-step encodings
(:meth:`MultiAgentActorCritic.pair_inputs`): each (time step, agent) image is encoded once per
forward pass, and nothing of size pairs x agents x image is ever allocated. Observation
normalisation does not apply to images (the bounds scale them).

"state" is the env's global ``state()`` where the adapter carries it (``spec.state_dim`` > 0,
:attr:`STEPConfig.critic_state`). MAPPO's critic thus reads everything STEP's reads except the
superiors' actions, which simultaneous agents do not have.

Normalisation (:mod:`agents.normalization`): with ``obs_normalization`` the base observations
and the state pass :meth:`MultiAgentActorCritic.prepare_obs` before anything reads them; with
``value_normalization`` the critics' outputs are in normalised units and
:meth:`MultiAgentActorCritic.value_in_return_units` converts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agents.config import STEPConfig, Variant
from agents.encoding import stmg_inputs
from agents.networks import AgentMLPs, ImageEncoder, MaskedDistribution, NLevelPolicy, mlp
from agents.normalization import RunningMeanStd
from agents.spec import JointSpec

OBS_CLIP = 10.0
"""Normalised observations are clipped to [-OBS_CLIP, OBS_CLIP]."""
ENCODE_CHUNK = 64
"""Images encoded per encoder call: bounds the memory of encoding a whole collected batch
without gradients (pistonball's first conv layer holds 0.9 MB per image)."""


class MultiAgentActorCritic(nn.Module):
    """Actor (``self.actor``) and critics (``self.critics``) of ``config.variant`` for ``spec``."""

    def __init__(self, *, spec: JointSpec, config: STEPConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.variant = config.variant
        n, out = spec.n_agents, spec.max_action_size
        h = config.hidden_size
        s = spec.state_dim
        # d: what the networks read per agent, the flat observation or its image features.
        d = h if spec.is_image else spec.obs_dim
        self.feature_size = d
        self.actor_encoder: ImageEncoder | None = None
        self.critic_encoder: ImageEncoder | None = None
        if spec.image_shape is not None:
            image = {"shape": spec.image_shape, "channels_first": spec.image_channels_first,
                     "low": spec.image_low, "high": spec.image_high, "out_size": h}
            self.actor_encoder = ImageEncoder(**image)  # type: ignore[arg-type]
            self.critic_encoder = ImageEncoder(**image)  # type: ignore[arg-type]
        gaussian = spec.action_kind == "box"
        self.register_buffer("valid_actions", torch.as_tensor(spec.action_mask()), persistent=False)
        self.all_actions_valid = bool(spec.action_mask().all())  # same action count for all
        self.actor: nn.Module
        self.critics: nn.Module
        if self.variant is Variant.STEP:
            self.actor = NLevelPolicy(
                obs_size=d, n_agents=n, slot_size=spec.slot_size, hidden=h,
                embedding_size=config.priority_embedding_size,
                target_hidden=config.target_hidden_size, out_size=out, gaussian=gaussian,
                log_std_init=config.log_std_init, agent_identity=spec.distinct_observations,
                generated_log_std=config.log_std_source == "generated",
            )
            flat_size = spec.flat_size - spec.obs_dim + d  # the STMG observation, features first
            self.critics = AgentMLPs(n_members=n, in_size=flat_size + s, hidden=h, out_size=1)
        elif self.variant is Variant.MAPPO:
            self.actor = mlp(d + n, h, out)
            _small_head(self.actor)
            self.critics = mlp(n * d + 2 * n + s, h, 1)
        elif self.variant in (Variant.IPPO, Variant.HAPPO):
            self.actor = AgentMLPs(n_members=n, in_size=d, hidden=h, out_size=out, out_gain=0.01)
            critic_in = d if self.variant is Variant.IPPO else n * d + n + s
            self.critics = AgentMLPs(n_members=n, in_size=critic_in, hidden=h, out_size=1)
        else:  # pragma: no cover - Variant is closed
            raise ValueError(f"unknown variant {self.variant!r}")
        self.log_stds: nn.ParameterList | None = None
        if gaussian and self.variant is not Variant.STEP:
            # One tensor per member (MAPPO: one shared), for the same reason as AgentMLPs.
            members = 1 if self.variant is Variant.MAPPO else n
            self.log_stds = nn.ParameterList(
                [nn.Parameter(torch.full((out,), config.log_std_init)) for _ in range(members)])
        # Images are scaled by their bounds in the encoder instead of running statistics.
        self.obs_norm = RunningMeanStd(n, (d,)) if config.obs_normalization and not spec.is_image else None
        self.state_norm = RunningMeanStd(1, (s,)) if config.obs_normalization and s else None
        self.value_norm = RunningMeanStd(n) if config.value_normalization else None

    # --- per-agent parameters (agent-by-agent updates) -------------------------------------
    def agent_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters that belong to agent ``k`` alone: its critic, and for IPPO/HAPPO its
        actor and log-std. Shared parameters (STEP's N-level policy, MAPPO's networks) are not
        included."""
        params: list[nn.Parameter] = []
        if isinstance(self.critics, AgentMLPs):
            params += self.critics.member_parameters(k)
        if isinstance(self.actor, AgentMLPs):
            params += self.actor.member_parameters(k)
        if self.log_stds is not None and len(self.log_stds) > 1:
            params.append(self.log_stds[k])
        return params

    def critic_parameters(self) -> list[nn.Parameter]:
        """The critics' parameters, with their image encoder (the critics' optimiser group)."""
        params = list(self.critics.parameters())
        if self.critic_encoder is not None:
            params += list(self.critic_encoder.parameters())
        return params

    def priority_parameters(self, p: int) -> list[nn.Parameter]:
        """STEP: the priority embedding e^p, and the free log-std of priority p where the
        hypernetwork does not generate it (empty for the baselines)."""
        actor = self.actor
        if not isinstance(actor, NLevelPolicy):
            return []
        params = [actor.priority_embedding[p]]
        if actor.priority_log_std is not None:
            params.append(actor.priority_log_std[p])
        return params

    # --- normalisation ---------------------------------------------------------------------
    def prepare_obs(self, obs: torch.Tensor, state: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised (obs (B, n_agents, obs_dim), state (B, state_dim)); unchanged without
        ``obs_normalization``. Every path that feeds the networks calls this first."""
        if self.obs_norm is not None:
            obs = self.obs_norm.normalize(obs).clamp(-OBS_CLIP, OBS_CLIP)
        if state is not None and self.state_norm is not None:
            state = self.state_norm.normalize(state.unsqueeze(1)).squeeze(1).clamp(-OBS_CLIP, OBS_CLIP)
        return obs, state

    def update_obs_statistics(self, obs: torch.Tensor, alive: torch.Tensor,
                              state: torch.Tensor | None = None) -> None:
        """Add raw observations of the acting agents (obs (B, n, d), alive (B, n)) and the
        states (B, S) to the running statistics (no-op without ``obs_normalization``)."""
        if self.obs_norm is not None:
            rows, agent = (alive > 0.5).nonzero(as_tuple=True)
            if rows.numel():
                self.obs_norm.update(obs[rows, agent], agent)
        if self.state_norm is not None and state is not None and state.shape[0]:
            self.state_norm.update(state, torch.zeros(state.shape[0], dtype=torch.long))

    # --- image features --------------------------------------------------------------------
    def encode(self, obs: torch.Tensor, cells: torch.Tensor | None = None, *,
               critic: bool = False) -> torch.Tensor:
        """What the networks read per agent: (B, n_agents, obs_dim) prepared observations ->
        (B, n_agents, feature_size).

        Vector games: ``obs`` itself. Image games: the actor's (``critic=True``: the critics')
        encoder applied once to each cell of ``cells`` ((B, n_agents) bool; all if None),
        :data:`ENCODE_CHUNK` images per call; the other cells are 0, as gone agents'
        observations are in vector games.
        """
        encoder = self.critic_encoder if critic else self.actor_encoder
        if encoder is None:
            return obs
        batch, n = obs.shape[0], obs.shape[1]
        if cells is None:
            cells = torch.ones(batch, n, dtype=torch.bool, device=obs.device)
        rows, agents = cells.nonzero(as_tuple=True)
        out = obs.new_zeros(batch, n, self.feature_size)
        if rows.numel() == 0:
            return out
        parts = [encoder(obs[r, a]) for r, a in zip(rows.split(ENCODE_CHUNK), agents.split(ENCODE_CHUNK),
                                                    strict=True)]
        return out.index_put((rows, agents), torch.cat(parts))  # (B, n, feature_size)

    @property
    def critic_reads_all_agents(self) -> bool:
        """Whether an agent's critic reads every agent's observation (MAPPO, HAPPO)."""
        return self.variant in (Variant.MAPPO, Variant.HAPPO)

    def pair_inputs(
        self,
        *,
        obs: torch.Tensor,
        act_enc: torch.Tensor,
        alive: torch.Tensor,
        pos_of: torch.Tensor,
        row: torch.Tensor,
        agent: torch.Tensor,
        priority: torch.Tensor,
        state: torch.Tensor | None = None,
        with_value: bool = True,
    ) -> PairInputs:
        """:meth:`inputs` of the pairs (``row[b]``, ``agent[b]``) from per-time-step tensors.

        Vector games gather the rows and call :meth:`inputs`. Image games first encode, once
        each, the observations the pairs read -- every pair's own for the actor, and for the
        critics every living agent's of the pairs' time steps (MAPPO, HAPPO) or the own (STEP,
        IPPO) -- and gather the (pairs, n_agents, feature_size) features: no per-pair copy of
        any image.

        Args:
            obs: (T, n_agents, obs_dim) prepared observations; act_enc: (T, n_agents,
                slot_size); alive: (T, n_agents); pos_of: (T, n_agents) long; state: (T,
                state_dim) or None.
            row: (P,) long time step of each pair; agent: (P,) long; priority: (P,) long.
            with_value: build the critics' inputs too.
        """
        state_rows = None if state is None else state[row]
        if not self.spec.is_image:
            return self.inputs(obs=obs[row], act_enc=act_enc[row], alive=alive[row], pos_of=pos_of[row],
                               agent=agent, priority=priority, state=state_rows)
        own = torch.zeros(obs.shape[0], self.spec.n_agents, dtype=torch.bool, device=obs.device)
        own[row, agent] = True  # (T, n) the pairs' own cells
        features = self.encode(obs, own)[row]  # (P, n, feature_size)
        critic_features = None
        if with_value:
            cells = own
            if self.critic_reads_all_agents:  # every living agent of the pairs' time steps
                in_pairs = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
                in_pairs[row] = True
                cells = own | ((alive > 0.5) & in_pairs.unsqueeze(1))
            critic_features = self.encode(obs, cells, critic=True)[row]
        return self.inputs(obs=features, critic_obs=critic_features, act_enc=act_enc[row], alive=alive[row],
                           pos_of=pos_of[row], agent=agent, priority=priority, state=state_rows,
                           with_critic=with_value)

    def value_in_return_units(self, value: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        """Critic outputs -> values in return units (de-normalised with ``value_normalization``).
        ``agent`` (P,) for a flat batch of pairs; None for (..., n_agents) tensors."""
        return value if self.value_norm is None else self.value_norm.denormalize(value, agent)

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
        state: torch.Tensor | None = None,
        critic_obs: torch.Tensor | None = None,
        with_critic: bool = True,
    ) -> PairInputs:
        """What the actor and the critic of each (time step, agent) pair read (data only).

        Args:
            obs: (B, n_agents, feature_size) what the actor reads of every agent: the base
                observations (prepared: :meth:`prepare_obs`), or in image games their
                features (:meth:`encode`).
            critic_obs: (B, n_agents, feature_size) what the critics read, where it differs
                from ``obs`` (image games: the critic encoder's features); None: ``obs``.
            with_critic: build the critic inputs (else ``critic`` is None).
            state: (B, state_dim) global states (prepared), needed when ``spec.state_dim`` > 0.
            act_enc: (B, n_agents, slot_size) encoded (partial) joint actions.
            alive: (B, n_agents) 1.0 for the agents acting in the time step.
            pos_of: (B, n_agents) long priority positions.
            agent: (B,) long, the agent of each pair.
            priority: (B,) long, its priority position.
        """
        spec, n = self.spec, self.spec.n_agents
        batch = obs.shape[0]
        if spec.state_dim and state is not None and state.shape != (batch, spec.state_dim):
            raise ValueError(f"this model's critics read a state of size {spec.state_dim}; got "
                             f"{tuple(state.shape)} for {batch} pairs")
        # Without the state the critics cannot be evaluated (acting only): no critic inputs.
        no_critic = (bool(spec.state_dim) and state is None) or not with_critic
        d = self.feature_size
        extra: list[torch.Tensor] = [state] if state is not None and spec.state_dim else []
        if self.variant is Variant.STEP:
            flat = stmg_inputs(spec, obs=obs, act_enc=act_enc, alive=alive, pos_of=pos_of,
                               agent=agent, priority=priority)  # (B, flat_size)
            actor_in = flat[:, : d + n * spec.slot_size + n]
            actor = self.actor
            assert isinstance(actor, NLevelPolicy)  # internal: STEP's actor
            identity = actor.identity_code(agent, batch)
            if identity is not None:
                actor_in = torch.cat([actor_in, identity], dim=1)
            critic_flat = flat
            if critic_obs is not None and not no_critic:  # the critic's own features first
                critic_own = critic_obs[torch.arange(batch, device=obs.device), agent]  # (B, d)
                critic_flat = torch.cat([critic_own, flat[:, d:]], dim=1)
            critic = None if no_critic else torch.cat([critic_flat, *extra], dim=1) if extra else critic_flat
            return PairInputs(actor=actor_in, critic=critic)
        pair_rows = torch.arange(batch, device=obs.device)
        own = obs[pair_rows, agent]  # (B, d)
        seen = obs if critic_obs is None else critic_obs  # what the critics read
        if self.variant is Variant.IPPO:
            if critic_obs is None:  # vector games: the critic reads the actor's input
                return PairInputs(actor=own, critic=own)
            return PairInputs(actor=own, critic=None if no_critic else critic_obs[pair_rows, agent])
        joint = torch.cat([seen.reshape(batch, -1), alive, *extra], dim=1)
        if self.variant is Variant.HAPPO:
            return PairInputs(actor=own, critic=None if no_critic else joint)
        agent_id = F.one_hot(agent, n).float()  # MAPPO: (B, n)
        return PairInputs(actor=torch.cat([own, agent_id], dim=1),
                          critic=None if no_critic else torch.cat([joint, agent_id], dim=1))

    def heads(
        self,
        inputs: PairInputs,
        *,
        agent: torch.Tensor,
        priority: torch.Tensor | int,
        with_value: bool = True,
        generated: torch.Tensor | None = None,
    ) -> tuple[MaskedDistribution, torch.Tensor | None]:
        """Policy distribution and (B,) critic output (or None) of pairs from their :meth:`inputs`.

        The critic output is in normalised units with ``value_normalization``
        (:meth:`value_in_return_units` converts it).

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
            if self.log_stds is not None:
                if len(self.log_stds) == 1:
                    log_std = self.log_stds[0].expand(out.shape[0], -1)
                else:  # only the members present enter the graph
                    log_std = out.new_zeros(out.shape)
                    for m in torch.unique(agent).tolist():
                        log_std = log_std.index_put(((agent == m).nonzero(as_tuple=True)[0],),
                                                    self.log_stds[m].expand(int((agent == m).sum()), -1))
        return self.distribution(out, log_std, agent), value

    def distribution(self, out: torch.Tensor, log_std: torch.Tensor | None,
                     agent: torch.Tensor | int) -> MaskedDistribution:
        """The masked action distribution of head outputs ``out`` for rows of ``agent``."""
        valid_actions: torch.Tensor = self.valid_actions  # type: ignore[assignment]
        return MaskedDistribution(kind=self.spec.action_kind, out=out, log_std=log_std,
                                  valid=valid_actions[agent], all_valid=self.all_actions_valid,
                                  log_std_min=self.config.log_std_min)

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
        state: torch.Tensor | None = None,
    ) -> tuple[MaskedDistribution, torch.Tensor | None]:
        """:meth:`heads` of :meth:`pair_inputs` with one pair per row: the distribution and
        value of a batch of pairs from their (B, n_agents, obs_dim) prepared observations
        (arguments as :meth:`inputs`; image games encode the images here)."""
        pair_inputs = self.pair_inputs(obs=obs, act_enc=act_enc, alive=alive, pos_of=pos_of,
                                       row=torch.arange(obs.shape[0], device=obs.device), agent=agent,
                                       priority=priority, state=state, with_value=with_value)
        return self.heads(pair_inputs, agent=agent, priority=priority, with_value=with_value,
                          generated=generated)


@dataclass
class PairInputs:
    """Actor and critic inputs of a batch of (time step, agent) pairs (:meth:`MultiAgentActorCritic.inputs`)."""

    actor: torch.Tensor
    critic: torch.Tensor | None
    """None when no value is needed."""

    def __getitem__(self, idx: torch.Tensor) -> PairInputs:
        return PairInputs(actor=take_rows(self.actor, idx),
                          critic=None if self.critic is None else take_rows(self.critic, idx))


def take_rows(tensor: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``tensor[idx]`` for a 1-D index of rows; through ``index_select`` for long indices,
    which is several times faster on the CPU than advanced indexing (a minibatch gather runs
    at every gradient step)."""
    if idx.ndim == 1 and idx.dtype == torch.long:
        return tensor.index_select(0, idx)
    return tensor[idx]


def _small_head(net: nn.Sequential) -> None:
    """Near-zero output layer: a uniform initial policy, as usual for PPO actors."""
    last: nn.Linear = net[-1]  # type: ignore[assignment]
    nn.init.orthogonal_(last.weight, gain=0.01)
    nn.init.zeros_(last.bias)
