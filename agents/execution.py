"""Greedy execution of a trained policy on an STMG game, in two modes.

``communicated``
    Each agent reads its superiors' actions from its STMG observation, as :func:`stmg.wrap`
    delivers it (a communication channel from leaders to followers).
``decentralized``
    No communication: each agent recomputes its superiors' greedy actions with the shared
    model from its own information, building their STMG observations with
    :class:`stmg.STMGEncoder` (Section 3.3 of the paper). This is exact only if every agent's
    policy input is common knowledge -- ``observation="state"``, or identical observations as
    in the matrix games; otherwise :class:`DecentralizedExecutionError` is raised.

The priority order of a time step is common knowledge in both modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

import stmg
from agents.model import MultiAgentActorCritic
from agents.spec import JointSpec

Mode = Literal["communicated", "decentralized"]


class DecentralizedExecutionError(ValueError):
    """Decentralized execution was asked for where superiors' inputs are not common knowledge."""


def act_from_flat(model: MultiAgentActorCritic, flat: np.ndarray | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Greedy head indices/means and probabilities from flat STMG observations.

    Args:
        model: the trained model.
        flat: (B, flat_size) flat STMG observations (``stmg.wrap(..., flatten=True)``).

    Returns:
        (B,) greedy action indices counted from 0 (or (B, max_action_size) means for Box),
        and (B, max_action_size) probabilities (discrete) or None.
    """
    spec, n = model.spec, model.spec.n_agents
    x = torch.as_tensor(np.asarray(flat), dtype=torch.float32)  # (B, flat_size)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    lay = _layout(model)
    priority = x[:, lay["priority"]].argmax(1)  # (B,)
    agent = x[:, lay["agent_id"]].argmax(1)  # (B,)
    batch = x.shape[0]
    # Rebuild the model's generic inputs from the flat vector: only the observing agent's
    # base observation is known, the prior-action table already holds the superiors' rows.
    obs = torch.zeros(batch, n, spec.obs_dim)
    obs[torch.arange(batch), agent] = x[:, lay["observation"]]
    table = x[:, lay["prior_actions"]].reshape(batch, n, spec.slot_size)  # (B, n, slot)
    mask = x[:, lay["prior_mask"]]  # (B, n)
    # Superiors get position 0 (< the observer's priority, which is >= 1 whenever it has
    # superiors); everyone else, the observer included, comes after it.
    pos_of = torch.where(mask > 0.5, torch.zeros_like(mask), torch.full_like(mask, n)).long()
    alive = torch.maximum(mask, torch.nn.functional.one_hot(agent, n).float())
    with torch.no_grad():
        obs, _ = model.prepare_obs(obs)  # running observation statistics, frozen here
        dist, _ = model.evaluate(obs=obs, act_enc=table, alive=alive, pos_of=pos_of, agent=agent,
                                 priority=priority, with_value=False)
    probs = dist.probs() if spec.action_kind == "discrete" else None
    return dist.mode(), probs


def _layout(model: MultiAgentActorCritic) -> dict[str, slice]:
    spec, n = model.spec, model.spec.n_agents
    b, s = spec.obs_dim, spec.slot_size
    return {
        "observation": slice(0, b),
        "prior_actions": slice(b, b + n * s),
        "prior_mask": slice(b + n * s, b + n * s + n),
        "priority": slice(b + n * s + n, b + n * s + 2 * n),
        "agent_id": slice(b + n * s + 2 * n, b + n * s + 3 * n),
    }


def _env_action(model: MultiAgentActorCritic, agent_index: int, raw: torch.Tensor) -> Any:
    return model.spec.env_action(agent_index, raw.numpy())


class ModelGameMismatchError(ValueError):
    """A model was played on a game of another shape than the one it was built for."""


_SHAPE_FIELDS = ("possible_agents", "obs_dim", "action_kind", "action_sizes", "slot_size",
                 "distinct_observations", "image_shape", "image_channels_first")


def check_model_fits_game(model: MultiAgentActorCritic, game: stmg.STMGEnv) -> None:
    """Raise :class:`ModelGameMismatchError`, naming each difference, unless ``model`` was
    built for a game of the shape of ``game`` (agents, observation and action sizes)."""
    expected = model.spec.signature()
    found = JointSpec.from_encoder(game.encoder).signature()
    diffs = [f"{key}: the model has {expected[key]!r}, the game has {found[key]!r}"
             for key in _SHAPE_FIELDS if expected[key] != found[key]]
    if model.spec.action_kind == "box":
        game_spec = JointSpec.from_encoder(game.encoder)
        if (game_spec.action_low, game_spec.action_high) != (model.spec.action_low, model.spec.action_high):
            diffs.append("action bounds differ")
    if diffs:
        raise ModelGameMismatchError("the model was built for another game: " + "; ".join(diffs))


class GreedyExecutor:
    """Chooses each agent's greedy action in an STMG game (module docstring).

    Args:
        model: the trained model.
        game: the flat STMG game (``stmg.wrap(env, order, observation=..., flatten=True)``).
        mode: ``"communicated"`` or ``"decentralized"``.
    """

    def __init__(self, *, model: MultiAgentActorCritic, game: stmg.STMGEnv, mode: Mode) -> None:
        if mode not in ("communicated", "decentralized"):
            raise ValueError(f"mode={mode!r} is not supported; expected 'communicated' or 'decentralized'")
        if not game.encoder.flatten:
            raise ValueError("GreedyExecutor needs the flat STMG form: stmg.wrap(..., flatten=True)")
        check_model_fits_game(model, game)
        self.model = model
        self.game = game
        self.mode = mode
        enc = game.encoder
        if mode == "decentralized" and game.base_observation != "state":
            distinct = {repr(s) for s in enc.base_spaces.values()}
            if len(distinct) > 1:
                raise DecentralizedExecutionError(
                    "decentralized execution needs every agent's policy input to be common "
                    f"knowledge, but the agents' observation spaces differ ({sorted(distinct)}); "
                    "use observation='state' or mode='communicated'"
                )

    def act(self, agent: str) -> Any:
        """The greedy action of the selected ``agent`` in the current time step."""
        game, enc = self.game, self.game.encoder
        k = enc.index[agent]
        own = game.observe(agent)  # flat STMG observation
        if self.mode == "communicated":
            raw, _ = act_from_flat(self.model, own)
            return _env_action(self.model, k, raw[0])
        self._check_common_knowledge()
        base = game.base_observation_of(agent)  # the agent's own base observation
        position = game.current_order.index(agent)
        prior: dict[str, Any] = {}
        for q, superior in enumerate(game.current_order[:position]):
            flat = enc.encode(superior, base, prior, q)  # superior's input as this agent sees it
            raw, _ = act_from_flat(self.model, flat)
            prior[superior] = _env_action(self.model, enc.index[superior], raw[0])
        raw, _ = act_from_flat(self.model, enc.encode(agent, base, prior, position))
        return _env_action(self.model, k, raw[0])

    def _check_common_knowledge(self) -> None:
        game = self.game
        if game.base_observation == "state":
            return
        living = list(game.current_order)
        first = game.base_observation_of(living[0])
        for other in living[1:]:
            if not np.array_equal(np.asarray(game.base_observation_of(other)), np.asarray(first)):
                raise DecentralizedExecutionError(
                    f"decentralized execution needs common-knowledge input, but the observations "
                    f"of {living[0]!r} and {other!r} differ at time step {game.time_step}; an "
                    "agent cannot recompute a superior's action from its own observation. Use "
                    "observation='state' or mode='communicated'"
                )


def play_greedy(model: MultiAgentActorCritic, env: ParallelEnv, *, mode: Mode,
                order: Sequence[str] | None = None, observation: str = "own", seed: int = 0,
                max_steps: int | None = None) -> list[dict[str, Any]]:
    """Play one episode greedily; returns the joint action of every time step.

    Torch runs with the model's configured thread count (``config.torch_threads``) meanwhile,
    as in training: for these small networks more threads are slower."""
    game = stmg.wrap(env, order, observation=observation, flatten=True)  # type: ignore[arg-type]
    executor = GreedyExecutor(model=model, game=game, mode=mode)
    threads = torch.get_num_threads()
    torch.set_num_threads(model.config.torch_threads)
    try:
        return _play(executor, game, seed=seed, max_steps=max_steps)
    finally:
        torch.set_num_threads(threads)


def _play(executor: GreedyExecutor, game: stmg.STMGEnv, *, seed: int, max_steps: int | None
          ) -> list[dict[str, Any]]:
    game.reset(seed=seed)
    joint_actions: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    steps = 0
    while game.agents:
        agent = str(game.agent_selection)
        if game.terminations[agent] or game.truncations[agent]:
            game.step(None)
            continue
        if not current:
            step_at = game.time_step
        action = executor.act(agent)
        current[agent] = action
        game.step(action)
        if game.time_step != step_at:  # the time step closed
            joint_actions.append(current)
            current = {}
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
    return joint_actions


def matrix_game_report(model: MultiAgentActorCritic, env: ParallelEnv,
                       order: Sequence[str] | None = None) -> tuple[tuple[int, ...], list[list[float]]]:
    """Greedy joint action (by agent index) and each agent's action probabilities at the first
    time step, each follower conditioned on its superiors' greedy actions (communicated)."""
    game = stmg.wrap(env, order, flatten=True)  # type: ignore[arg-type]
    game.reset(seed=0)
    joint: dict[str, int] = {}
    probs: dict[str, list[float]] = {}
    for agent in list(game.current_order):
        raw, p = act_from_flat(model, game.observe(agent))
        k = game.encoder.index[agent]
        action = _env_action(model, k, raw[0])
        if p is not None:
            probs[agent] = [float(x) for x in p[0, : model.spec.action_sizes[k]]]
        joint[agent] = action
        game.step(action)
    agents = list(game.possible_agents)
    return tuple(int(joint[a]) for a in agents), [probs.get(a, []) for a in agents]


def space_is_discrete(space: spaces.Space[Any]) -> bool:
    """Whether ``space`` is Discrete (used by scripts that print probabilities)."""
    return isinstance(space, spaces.Discrete)
