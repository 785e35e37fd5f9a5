"""The STMG observation built in torch, for whole batches of (time step, agent) pairs.

This is the batched twin of :meth:`stmg.STMGEncoder.encode` in its flat form; the test suite
checks that the two agree exactly, so the policy sees during training what ``stmg.wrap``
shows during execution.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from agents.spec import JointSpec


def encode_joint_action(spec: JointSpec, act: torch.Tensor) -> torch.Tensor:
    """Encode a batch of joint actions as STMG prior-action rows.

    Args:
        spec: the game's sizes.
        act: (B, n_agents) long action indices counted from 0 (Discrete), or
            (B, n_agents, max_action_size) float (Box, padded).

    Returns:
        (B, n_agents, slot_size) float32: row k is agent k's action encoding, zero-padded
        (Box actions clipped to their bounds first, as the adapter does).
    """
    batch, n = act.shape[0], spec.n_agents
    # Row (b, k) is agent k's action: encode all rows at once as single-agent actions.
    agent = torch.arange(n, device=act.device).repeat(batch)  # (B * n,)
    rows = act.reshape(batch * n, *act.shape[2:])
    return encode_agent_actions(spec, rows, agent).reshape(batch, n, spec.slot_size)


def encode_agent_actions(spec: JointSpec, act: torch.Tensor, agent: torch.Tensor | None) -> torch.Tensor:
    """Encode one action per row as its agent's prior-action slot.

    Args:
        spec: the game's sizes.
        act: (B,) long (Discrete) or (B, max_action_size) float (Box) actions.
        agent: (B,) long, whose action each row is (Box bounds are per agent; may be None for
            Discrete actions).

    Returns:
        (B, slot_size) float32: the row :func:`encode_joint_action` gives that agent.
    """
    if spec.action_kind == "discrete":
        # One-hot over the slot width; an index is always < its agent's count, so nothing is
        # lost and entries beyond the count stay 0.
        return F.one_hot(act.long().clamp(min=0), spec.slot_size).float()
    if agent is None:
        raise ValueError("encode_agent_actions needs the agents of Box actions (their bounds)")
    # Encode what the environment receives: sampled Gaussian actions clipped to the bounds,
    # exactly as the adapter clips them (stmg encodes the action it was given).
    low, high = _bounds(spec, act.device)  # (n, max_action_size) each, 0 in padding
    clipped = torch.maximum(torch.minimum(act.float(), high[agent]), low[agent])
    out = torch.zeros(act.shape[0], spec.slot_size, dtype=torch.float32, device=act.device)
    width = min(spec.slot_size, act.shape[-1])
    out[:, :width] = clipped[:, :width]
    return out


def _bounds(spec: JointSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent Box bounds padded to (n_agents, max_action_size) with zeros. Built once per
    spec: this runs at every position of every collector step. Read-only."""
    low, high = _cpu_bounds(spec)
    return low.to(device), high.to(device)


@functools.lru_cache(maxsize=32)
def _cpu_bounds(spec: JointSpec) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = spec.padded_bounds
    return torch.tensor(low), torch.tensor(high)


def position_of(order: torch.Tensor) -> torch.Tensor:
    """Invert a batch of orders.

    Args:
        order: (B, n_agents) long; ``order[b, p]`` is the agent index at priority position p.

    Returns:
        (B, n_agents) long; entry ``[b, k]`` is agent k's position in ``order[b]``.
    """
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)  # (B, n)
    return torch.empty_like(order).scatter_(1, order.long(), positions)


def stmg_inputs(
    spec: JointSpec,
    *,
    obs: torch.Tensor,
    act_enc: torch.Tensor,
    alive: torch.Tensor,
    pos_of: torch.Tensor,
    agent: torch.Tensor,
    priority: torch.Tensor,
) -> torch.Tensor:
    """Flat STMG observations of a batch of (time step, agent) pairs.

    Args:
        spec: the game's sizes.
        obs: (B, n_agents, obs_dim) base observations of every agent.
        act_enc: (B, n_agents, slot_size) encoded joint actions (:func:`encode_joint_action`);
            only superiors' rows are read.
        alive: (B, n_agents) float, 1.0 for the agents acting in the time step.
        pos_of: (B, n_agents) long, each agent's priority position (:func:`position_of`).
        agent: (B,) long, the observing agent of each pair.
        priority: (B,) long, its priority position (0 = leader).

    Returns:
        (B, flat_size) float32, laid out as :attr:`stmg.STMGEncoder.flat_layout`.
    """
    rows = torch.arange(obs.shape[0], device=obs.device)
    own_obs = obs[rows, agent]  # (B, obs_dim)
    # Superiors: living agents whose position is before the observer's.
    prior_mask = ((pos_of < priority.unsqueeze(1)) & (alive > 0.5)).float()  # (B, n)
    table = act_enc * prior_mask.unsqueeze(-1)  # (B, n, slot)
    n = spec.n_agents
    return torch.cat(
        [
            own_obs,
            table.reshape(obs.shape[0], n * spec.slot_size),
            prior_mask,
            F.one_hot(priority.long(), n).float(),
            F.one_hot(agent.long(), n).float(),
        ],
        dim=1,
    )
