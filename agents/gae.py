"""Per-agent generalised advantage estimation over joint-step transitions.

Tianshou's ``compute_episodic_return`` handles one reward stream; here every agent has its
own: its own rewards, its own done flags (an agent that dies mid-episode stops there) and its
own bootstrap value. Rows are transitions in buffer order; each env's transitions are
contiguous and every run ends in an episode end or an ``unfinished`` row (Tianshou's
``buffer.unfinished_index()``), which is bootstrapped like a truncation.
"""

from __future__ import annotations

import numpy as np


def per_agent_gae(
    *,
    rew: np.ndarray,
    value: np.ndarray,
    next_value: np.ndarray,
    alive: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns of every agent.

    Args:
        rew: (T, n_agents) each agent's reward for the time step.
        value: (T, n_agents) V^i at the time step (recorded when acting).
        next_value: (T, n_agents) V^i at the next observation (bootstrap).
        alive: (T, n_agents) bool, the agent acted in this time step.
        terminated: (T, n_agents) bool, the agent terminated in this step (no bootstrap).
        truncated: (T, n_agents) bool, the agent was truncated in this step (bootstrap).
        episode_end: (T,) bool, the transition ends an episode or its env's run of rows.
        gamma: discount.
        gae_lambda: GAE lambda.

    Returns:
        ``(advantages, returns)``, both (T, n_agents) float32; zero where ``alive`` is False.
    """
    alive = alive.astype(bool)
    term = terminated.astype(bool) & alive
    # Where the agent terminated there is no future; elsewhere bootstrap from its own value.
    delta = rew + gamma * next_value * (~term) - value  # (T, n)
    # The recursion stops at the agent's own end (death, truncation) and at episode ends.
    cut = term | truncated.astype(bool) | episode_end.astype(bool)[:, None] | ~alive  # (T, n)
    decay = gamma * gae_lambda * (~cut)
    adv = np.zeros_like(delta, dtype=np.float64)
    running = np.zeros(delta.shape[1], dtype=np.float64)
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + decay[t] * running
        adv[t] = running
    adv = np.where(alive, adv, 0.0)
    returns = np.where(alive, adv + value, 0.0)
    return adv.astype(np.float32), returns.astype(np.float32)
