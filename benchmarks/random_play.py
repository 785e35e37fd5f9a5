"""Timed random play shared by the environment benchmarks (raw parallel API and through stmg)."""

from __future__ import annotations

import time
from typing import Any


def _seeded_action_spaces(env: Any, seed: int) -> dict[str, Any]:
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    for i, agent in enumerate(env.possible_agents):
        spaces[agent].seed(seed + i)
    return spaces


def seconds_raw(env: Any, steps: int, seed: int) -> float:
    """Seconds for ``steps`` parallel-API steps with random actions (resets included)."""
    spaces = _seeded_action_spaces(env, seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        if not env.agents:
            env.reset()
        env.step({a: spaces[a].sample() for a in env.agents})
    return time.perf_counter() - start


def seconds_wrapped(game: Any, steps: int, seed: int) -> float:
    """Seconds for ``steps`` time steps (full agent cycles) of an ``stmg.wrap`` game."""
    spaces = _seeded_action_spaces(game, seed)
    game.reset(seed=seed)
    done = 0
    start = time.perf_counter()
    while done < steps:
        if not game.agents:
            game.reset()
        before = game.time_step
        agent = game.agent_selection
        _, _, termination, truncation, _ = game.last()
        game.step(None if termination or truncation else spaces[agent].sample())
        if game.time_step != before:
            done += 1
    return time.perf_counter() - start
