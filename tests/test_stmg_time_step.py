"""``STMGEnv.step_time_step``: a whole time step in one call, exactly as step() agent by agent."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

import stmg
from tests.toy_envs import RecordingEnv


def _snapshot(game: stmg.STMGEnv) -> dict[str, Any]:
    """Everything a user or a learner can read from the wrapper."""
    return {
        "agents": list(game.agents), "selection": game.agent_selection, "order": list(game.current_order),
        "rewards": dict(game.rewards), "cumulative": dict(game._cumulative_rewards),
        "terminations": dict(game.terminations), "truncations": dict(game.truncations),
        "infos": copy.deepcopy(game.infos), "time_step": game.time_step,
        "observations": {a: np.asarray(game.observe(a)).tolist() for a in game.agents},
    }


def _step_dead_agents(game: stmg.STMGEnv) -> None:
    while game.agents:
        agent = game.agent_selection
        assert agent is not None  # the wrapper keeps an agent selected while agents remain
        if not (game.terminations[agent] or game.truncations[agent]):
            break
        game.step(None)


def test_whole_time_steps_equal_agent_by_agent_steps_with_deaths_and_reordering() -> None:
    # Three agents, a dynamic order that rotates every time step, agent_1 dying at step 2 and
    # everybody truncated at step 4: both games must agree after every time step.
    def rotating(game: stmg.STMGEnv) -> list[str]:
        agents = list(game.possible_agents)
        shift = game.time_step % 3
        return agents[shift:] + agents[:shift]

    action_spaces = [spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32), spaces.MultiDiscrete([2, 3])]
    by_agent = stmg.wrap(RecordingEnv(action_spaces, deaths={"agent_1": 2}, episode_length=4), rotating, flatten=True)
    at_once = stmg.wrap(RecordingEnv(action_spaces, deaths={"agent_1": 2}, episode_length=4), rotating, flatten=True)
    by_agent.reset(seed=3)
    at_once.reset(seed=3)
    rng = np.random.default_rng(0)
    steps = 0
    while by_agent.agents:
        _step_dead_agents(by_agent)
        _step_dead_agents(at_once)
        assert _snapshot(by_agent) == _snapshot(at_once)
        if not by_agent.agents:
            break
        actions = {}
        for agent in by_agent.current_order:
            space = by_agent.action_space(agent)
            space.seed(int(rng.integers(1 << 30)))
            actions[agent] = space.sample()
        for agent in list(by_agent.current_order):
            by_agent.step(actions[agent])
        at_once.step_time_step(actions)
        steps += 1
        assert _snapshot(by_agent) == _snapshot(at_once)
    assert steps == 4
    assert not at_once.agents
    received_a, received_b = by_agent.parallel_env.received, at_once.parallel_env.received
    assert len(received_a) == len(received_b) == 4
    for a, b in zip(received_a, received_b, strict=True):
        assert list(a) == list(b)  # the same agents, in the same priority order
        for agent in a:
            np.testing.assert_array_equal(np.asarray(a[agent]), np.asarray(b[agent]))


def test_a_rejected_time_step_changes_nothing_and_names_the_problem() -> None:
    game = stmg.wrap(RecordingEnv([spaces.Discrete(3), spaces.Discrete(2)]), flatten=True)
    game.reset(seed=0)
    before = _snapshot(game)
    with pytest.raises(ValueError, match="agent_1"):  # the follower's action is out of its space
        game.step_time_step({"agent_0": 1, "agent_1": 2})
    with pytest.raises(ValueError, match=r"one action for each agent .*agent_0.*agent_1"):
        game.step_time_step({"agent_0": 1})
    with pytest.raises(ValueError, match="one action for each agent"):
        game.step_time_step({"agent_0": 1, "agent_1": 0, "agent_9": 0})
    assert _snapshot(game) == before
    assert game.parallel_env.received == []
    game.step(1)  # the leader acted alone: the time step is under way
    with pytest.raises(RuntimeError, match="must start a time step"):
        game.step_time_step({"agent_0": 1, "agent_1": 0})
    game.step(0)
    assert game.parallel_env.received == [{"agent_0": 1, "agent_1": 0}]


def test_dead_agents_must_be_stepped_with_none_first() -> None:
    game = stmg.wrap(RecordingEnv([spaces.Discrete(3), spaces.Discrete(3)], deaths={"agent_0": 1}), flatten=True)
    game.reset(seed=0)
    game.step_time_step({"agent_0": 0, "agent_1": 1})
    assert game.agent_selection == "agent_0" and game.terminations["agent_0"]
    with pytest.raises(RuntimeError, match="with None first"):
        game.step_time_step({"agent_1": 1})
    game.step(None)
    game.step_time_step({"agent_1": 2})
    assert game.parallel_env.received[-1] == {"agent_1": 2}


def test_refused_before_reset_and_after_the_episode() -> None:
    game = stmg.wrap(RecordingEnv(episode_length=1), flatten=True)
    with pytest.raises(RuntimeError, match="before reset"):
        game.step_time_step({"agent_0": 0, "agent_1": 0})
    game.reset(seed=0)
    game.step_time_step({"agent_0": 0, "agent_1": 0})
    _step_dead_agents(game)
    with pytest.raises(RuntimeError, match="no agent is left"):
        game.step_time_step({})
