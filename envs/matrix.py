"""Repeated matrix games: a normal-form game among n agents, played ``episode_length`` times.

| property           | value                                                        |
|--------------------|--------------------------------------------------------------|
| agents             | ``agent_0`` ... ``agent_{n-1}`` (``agent_0`` is the row player) |
| action spaces      | ``Discrete(|A_i|)`` per agent                                |
| observation spaces | ``Box(0, 1, (1,), float32)``, always ``[1.0]`` (constant)    |
| state space        | the same constant as the observation                         |
| rewards            | ``payoffs[i][a_0, ..., a_{n-1}]`` to agent ``i`` each step   |
| episode end        | truncation of every agent after ``episode_length`` steps     |

The observation is constant, as in the STEP paper (Section 5.1): the game has no state, so a
policy must settle on one action distribution per agent.

Arguments of ``MatrixGame``:
    payoffs: array of shape ``(n_agents, |A_1|, ..., |A_n|)``; ``payoffs[i][a]`` is agent ``i``'s
        reward for joint action ``a``. Finite real numbers only (no booleans or strings); the
        game keeps its own read-only copy.
    episode_length: steps per episode (default 25, the paper's).
    render_mode: ``None`` or ``"ansi"`` (the last joint action and rewards as text).

Games (registry ids; row = leader ``agent_0``, column = follower ``agent_1``):
    ``matrix/penalty-v0`` (argument ``k``, default -100): common payoff
        ``[[k, 0, 10], [0, 2, 0], [8, 0, k]]`` (Claus and Boutilier, 1998). Pure NE (a1,a3),
        (a2,a2), (a3,a1); the only SE is (a1,a3) with 10, also the optimum.
    ``matrix/mixing-v0``: general sum, from the STEP paper; SE (a1,a1) with payoffs (0, 5);
        the only pure NE is (a2,a2) with (-5, 0).
    ``matrix/climbing-v0``: common payoff ``[[11, -30, 0], [-30, 7, 6], [0, 0, 5]]``
        (Claus and Boutilier, 1998); SE and optimum (a1,a1) with 11; pure NE (a1,a1), (a2,a2).

Equilibria: :func:`stackelberg_equilibrium` (pure strong SE by backward induction, any number
of agents and any order) and :func:`pure_nash_equilibria`.

Version history: v0, first release.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

from stmg.encoding import ActionCodec

__all__ = [
    "MatrixGame",
    "climbing",
    "make_climbing",
    "make_mixing",
    "make_penalty",
    "mixing",
    "penalty",
    "pure_nash_equilibria",
    "repeated_game_step",
    "stackelberg_equilibrium",
]


def _index(*parts: int | slice) -> tuple[Any, ...]:
    """An index tuple into a payoff table (typed loosely: numpy's stubs reject mixed tuples)."""
    return parts


def _checked_payoffs(payoffs: Any) -> np.ndarray:
    """``payoffs`` as a new float64 array, or a ValueError that says what is wrong with it.

    Only real numbers count: numpy would turn ``True`` into 1.0 and ``"3"`` into 3.0, which
    hides a wrong file or a wrong variable, so booleans, strings and other objects are refused.
    The result is always a copy, so the caller's array can change without changing the game.
    """
    try:
        raw = np.asarray(payoffs)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested lists
        raise ValueError(f"payoffs must be a numeric array, got {payoffs!r}") from exc
    if raw.dtype.kind not in "iuf":
        raise ValueError(
            f"payoffs must be a numeric array of real numbers (int or float), got dtype {raw.dtype} "
            f"({_describe_kind(raw.dtype)}) of shape {raw.shape}"
        )
    table = np.array(raw, dtype=np.float64, copy=True)
    if table.ndim < 2:
        raise ValueError(
            f"payoffs has shape {table.shape}; expected (n_agents, |A_1|, ..., |A_n|) with n_agents >= 1"
        )
    n_agents = table.shape[0]
    if table.ndim != n_agents + 1:
        raise ValueError(
            f"payoffs has shape {table.shape}: its first axis says {n_agents} agents, so it needs "
            f"{n_agents + 1} axes (n_agents, |A_1|, ..., |A_n|), not {table.ndim}"
        )
    if any(size < 1 for size in table.shape[1:]):
        raise ValueError(f"payoffs has shape {table.shape}; every agent needs at least one action")
    if not np.all(np.isfinite(table)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(table))[0])
        raise ValueError(f"payoffs must be finite; payoffs{list(bad)} = {table[bad]}")
    return table


def _describe_kind(dtype: np.dtype[Any]) -> str:
    return {"b": "booleans", "U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers"}.get(
        dtype.kind, "not real numbers"
    )


def _checked_order(order: Any, n_agents: int) -> list[int]:
    """``order`` as a list of agent indices, or a ValueError naming what is wrong with it.

    Integers only (Python or numpy, a numpy array included): ``int(0.7)`` and ``int(True)``
    would silently turn a wrong argument into a valid-looking order.
    """
    if isinstance(order, str | bytes):
        raise ValueError(f"order must be a sequence of agent indices, got the string {order!r}")
    try:
        entries = list(order)
    except TypeError:
        raise ValueError(f"order must be a sequence of agent indices, got {order!r}") from None
    not_ints = [e for e in entries if isinstance(e, bool | np.bool_) or not isinstance(e, int | np.integer)]
    if not_ints:
        raise ValueError(f"order {entries!r} holds {not_ints!r}; expected integer agent indices 0..{n_agents - 1}")
    indices = [int(e) for e in entries]
    if sorted(indices) != list(range(n_agents)):
        raise ValueError(f"order {indices} is not a permutation of agents 0..{n_agents - 1}")
    return indices


def penalty(k: float = -100.0) -> np.ndarray:
    """Payoffs of the Penalty game, shape (2, 3, 3), common payoff ``[[k,0,10],[0,2,0],[8,0,k]]``."""
    if not np.isfinite(k):
        raise ValueError(f"k must be a finite number, got {k!r}")
    table = np.array([[k, 0.0, 10.0], [0.0, 2.0, 0.0], [8.0, 0.0, k]])
    return np.stack([table, table])


def mixing() -> np.ndarray:
    """Payoffs of the Mixing game of the STEP paper, shape (2, 3, 3)."""
    leader = np.array([[0.0, -10.0, -8.0], [-5.0, -5.0, -15.0], [5.0, -10.0, -10.0]])
    follower = np.array([[5.0, -5.0, 4.0], [-10.0, 0.0, -5.0], [0.0, -5.0, 5.0]])
    return np.stack([leader, follower])


def climbing() -> np.ndarray:
    """Payoffs of the Climbing game (Claus and Boutilier, 1998), shape (2, 3, 3), common payoff."""
    table = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])
    return np.stack([table, table])


def stackelberg_equilibrium(
    payoffs: Any, order: Sequence[int] | np.ndarray | None = None
) -> tuple[tuple[int, ...], np.ndarray]:
    """The pure strong Stackelberg equilibrium, by backward induction over ``order``.

    Args:
        payoffs: shape ``(n_agents, |A_1|, ..., |A_n|)``.
        order: agent indices from leader to last follower (default ``0, 1, ..., n-1``): a
            permutation of ``0..n-1`` as a sequence or a numpy array of integers.

    Returns:
        ``(joint_action, values)``: the equilibrium joint action (indexed by agent, not by
        position in the order) and each agent's payoff there.

    Each agent, knowing the actions of the agents before it, picks the action that maximises
    its own payoff given that every later agent responds the same way. Ties are broken in
    favour of the superiors (the "strong" SE): among a follower's equally good actions, the
    one best for the leader wins, then the one best for the next superior, and so on; a tie
    that remains goes to the lowest action index.
    """
    table = _checked_payoffs(payoffs)
    n_agents = table.shape[0]
    order_list = list(range(n_agents)) if order is None else _checked_order(order, n_agents)

    def solve(position: int, chosen: dict[int, int]) -> tuple[tuple[int, ...], np.ndarray]:
        if position == n_agents:
            joint = tuple(chosen[i] for i in range(n_agents))
            return joint, table[_index(slice(None), *joint)]
        agent = order_list[position]
        superiors = order_list[:position]
        best: tuple[tuple[int, ...], np.ndarray] | None = None
        best_key: tuple[float, ...] | None = None
        for action in range(table.shape[1 + agent]):
            outcome = solve(position + 1, {**chosen, agent: action})
            # Own payoff first, then the superiors' from the leader down (strong SE tie-break).
            key = (outcome[1][agent], *(outcome[1][j] for j in superiors))
            if best_key is None or key > best_key:  # strict: lowest index wins remaining ties
                best, best_key = outcome, key
        assert best is not None  # every agent has at least one action (checked above)
        return best

    return solve(0, {})


def pure_nash_equilibria(payoffs: Any) -> list[tuple[int, ...]]:
    """All pure Nash equilibria: joint actions from which no agent gains by deviating alone."""
    table = _checked_payoffs(payoffs)
    n_agents = table.shape[0]
    equilibria = []
    for joint in itertools.product(*(range(size) for size in table.shape[1:])):
        stable = True
        for i in range(n_agents):
            deviations = table[_index(i, *joint[:i], slice(None), *joint[i + 1 :])]
            if deviations.max() > table[(i, *joint)]:
                stable = False
                break
        if stable:
            equilibria.append(tuple(int(a) for a in joint))
    return equilibria


def repeated_game_step(env: Any, observation: np.ndarray, rewards: dict[str, float]) -> tuple[dict[str, Any], ...]:
    """The outputs of one step of a repeated game with a constant observation, ``env._t`` steps
    in: every living agent gets a copy of ``observation``, its reward, no termination, and
    truncation once ``env._t`` reaches ``env.episode_length`` (``env.agents`` is then emptied).
    Shared by :class:`MatrixGame` and :class:`envs.continuous.QuadraticGame`."""
    done = env._t >= env.episode_length
    agents = env.agents
    observations = {a: observation.copy() for a in agents}
    terminations = {a: False for a in agents}
    truncations = {a: done for a in agents}
    infos: dict[str, dict[str, Any]] = {a: {} for a in agents}
    if done:
        env.agents = []
    return observations, rewards, terminations, truncations, infos


class MatrixGame(ParallelEnv):  # type: ignore[misc]
    """A repeated normal-form game as a PettingZoo ParallelEnv (see the module docstring)."""

    metadata = {"name": "matrix_game_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(
        self, payoffs: Any, episode_length: int = 25, render_mode: str | None = None
    ) -> None:
        self.payoffs = _checked_payoffs(payoffs)  # a copy: the caller may reuse its array
        self.payoffs.setflags(write=False)  # and game.payoffs cannot change the game either
        if isinstance(episode_length, bool) or not isinstance(episode_length, (int, np.integer)) or episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; expected None or 'ansi'")
        self.episode_length = int(episode_length)
        self.render_mode = render_mode
        n_agents = self.payoffs.shape[0]
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._observation = np.ones(1, dtype=np.float32)
        self.state_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._observation_spaces = {a: self.state_space for a in self.possible_agents}
        self._action_spaces = {
            a: spaces.Discrete(int(size)) for a, size in zip(self.possible_agents, self.payoffs.shape[1:], strict=True)
        }
        self._action_codecs = {a: ActionCodec(space) for a, space in self._action_spaces.items()}
        self._t = 0
        self._last: tuple[tuple[int, ...], np.ndarray] | None = None

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_spaces[agent]

    def state(self) -> np.ndarray:
        return self._observation.copy()

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        # The game is deterministic; seed is accepted for API compatibility.
        self.agents = list(self.possible_agents)
        self._t = 0
        self._last = None
        return {a: self._observation.copy() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions are missing for agents {missing}; got actions for {sorted(actions)}")
        joint = []
        for agent in self.agents:
            action = actions[agent]
            if not self._action_codecs[agent].contains(action):  # gymnasium's check, faster
                raise ValueError(f"action {action!r} of {agent!r} is not in {self._action_spaces[agent]}")
            joint.append(int(action))
        rewards_vec = self.payoffs[_index(slice(None), *joint)]
        self._t += 1
        self._last = (tuple(joint), rewards_vec)
        rewards = {a: float(rewards_vec[i]) for i, a in enumerate(self.agents)}
        return repeated_game_step(self, self._observation, rewards)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            return f"t={self._t}: no action yet"
        joint, rewards = self._last
        return f"t={self._t}: joint action {joint}, rewards {rewards.tolist()}"

    def close(self) -> None:
        pass


def make_penalty(k: float = -100.0, episode_length: int = 25, render_mode: str | None = None) -> MatrixGame:
    """The Penalty game with penalty ``k`` (the paper uses 0, -25, -50, -75, -100)."""
    env = MatrixGame(penalty(k), episode_length, render_mode)
    env.metadata = {**MatrixGame.metadata, "name": "penalty_v0"}
    return env


def make_mixing(episode_length: int = 25, render_mode: str | None = None) -> MatrixGame:
    """The Mixing game of the STEP paper."""
    env = MatrixGame(mixing(), episode_length, render_mode)
    env.metadata = {**MatrixGame.metadata, "name": "mixing_v0"}
    return env


def make_climbing(episode_length: int = 25, render_mode: str | None = None) -> MatrixGame:
    """The Climbing game of Claus and Boutilier (1998)."""
    env = MatrixGame(climbing(), episode_length, render_mode)
    env.metadata = {**MatrixGame.metadata, "name": "climbing_v0"}
    return env
