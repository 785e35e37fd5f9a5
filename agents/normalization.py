"""Running statistics for observation, reward and value normalisation, one set per agent.

:class:`RunningMeanStd` keeps a mean and variance per agent as module buffers, so that they are
saved in checkpoints with the model and never touched by an optimiser. The learner updates
them from each collected batch; acting (collection and evaluation) only reads them, so
evaluation never changes them.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Per-agent running mean and variance of a quantity of shape ``shape``.

    The statistics are exact over everything seen so far (Chan et al.'s parallel update of
    count, mean and sum of squares), computed in float64.

    Args:
        n_agents: number of agents (one set of statistics each).
        shape: shape of one sample (``()`` for scalars such as returns).
        var_floor: smallest variance used when dividing, so that a constant quantity (a
            variance of 0) is not blown up.
    """

    def __init__(self, n_agents: int, shape: tuple[int, ...] = (), *, var_floor: float = 1e-4) -> None:
        super().__init__()
        self.var_floor = var_floor
        self.register_buffer("mean", torch.zeros(n_agents, *shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(n_agents, *shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(n_agents, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor, agent: torch.Tensor) -> None:
        """Add samples ``x`` (P, *shape) of agents ``agent`` (P,) long to the statistics."""
        x = x.detach().to(torch.float64)
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        var: torch.Tensor = self.var  # type: ignore[assignment]
        count: torch.Tensor = self.count  # type: ignore[assignment]
        for k in torch.unique(agent).tolist():
            xs = x[agent == k]
            n_new = float(xs.shape[0])
            new_mean = xs.mean(0)
            new_var = xs.var(0, unbiased=False)
            n_old = float(count[k])
            total = n_old + n_new
            delta = new_mean - mean[k]
            mean[k] = mean[k] + delta * (n_new / total)
            # Sum of squared deviations, combined (exact for any split of the samples).
            m2 = var[k] * n_old + new_var * n_new + delta.pow(2) * (n_old * n_new / total)
            var[k] = m2 / total
            count[k] = total

    def std(self) -> torch.Tensor:
        """(n_agents, *shape) float32 standard deviations (with the variance floor)."""
        var: torch.Tensor = self.var  # type: ignore[assignment]
        return var.clamp(min=self.var_floor).sqrt().float()

    def normalize(self, x: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        """(x - mean) / std; ``agent`` (P,) picks each row's statistics, None means x is
        (..., n_agents, *shape) with one slot per agent."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        if agent is None:
            return (x - mean.float()) / self.std()
        return (x - mean.float()[agent]) / self.std()[agent]

    def denormalize(self, x: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        if agent is None:
            return x * self.std() + mean.float()
        return x * self.std()[agent] + mean.float()[agent]
