"""Closing a time step is all or nothing: errors never make the wrapped env step twice (issue 11).

``CountingEnv`` counts its ``step`` calls and can be told to fail once: raise, return an agent
name outside ``possible_agents``, or let an agent join. The hand-written tests pin down what each
failure leaves behind; the property test drives random sequences of valid and invalid calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pettingzoo.utils.env import ParallelEnv

import stmg

ACTION_SPACES = {
    "a0": spaces.Discrete(3),
    "a1": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "a2": spaces.MultiBinary(2),
}
VALID = {"a0": 2, "a1": np.array([0.5, -0.5], np.float32), "a2": np.array([1, 0], np.int8)}
INVALID = {"a0": 3, "a1": np.array([0.5, np.nan], np.float32), "a2": np.array([257, 0])}


class CountingEnv(ParallelEnv):  # type: ignore[misc]
    """Three agents; observation of agent ``k`` at time ``t`` is ``[k, t]``, reward ``10 k + t``.

    ``deaths[agent] = t`` terminates ``agent`` at step ``t``; all others truncate at
    ``episode_length``. ``fault`` (cleared when used) makes the next ``step`` misbehave:
    ``"raise"``, ``"unknown_name"`` (rewards for an agent "intruder"), ``"join"`` (a dead agent
    comes back) or ``"reset_unknown_name"`` for the next ``reset``.
    """

    metadata = {"name": "counting_v0"}

    def __init__(self, episode_length: int = 4, deaths: dict[str, int] | None = None) -> None:
        self.possible_agents = list(ACTION_SPACES)
        self.episode_length = episode_length
        self.deaths = dict(deaths or {})
        self.agents: list[str] = []
        self.t = 0
        self.step_calls = 0
        self.fault: str | None = None
        self.received: list[dict[str, Any]] = []

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Box(0.0, 100.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return ACTION_SPACES[agent]

    def _obs(self, agent: str) -> np.ndarray:
        return np.array([self.possible_agents.index(agent), self.t], np.float32)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.agents = list(self.possible_agents)
        self.t = 0
        obs = {a: self._obs(a) for a in self.agents}
        if self.fault == "reset_unknown_name":
            self.fault = None
            obs["intruder"] = np.zeros(2, np.float32)
        return obs, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> Any:
        self.step_calls += 1
        self.received.append(dict(actions))
        fault, self.fault = self.fault, None
        if fault == "raise":
            raise OSError("simulated failure inside the env")
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)}, living {self.agents}"
        self.t += 1
        agents = self.agents
        obs = {a: self._obs(a) for a in agents}
        rewards = {a: float(10 * self.possible_agents.index(a) + self.t) for a in agents}
        terms = {a: self.deaths.get(a) == self.t for a in agents}
        truncs = {a: self.t >= self.episode_length and not terms[a] for a in agents}
        self.agents = [a for a in agents if not (terms[a] or truncs[a])]
        if fault == "unknown_name":
            rewards["intruder"] = 1.0
        if fault == "join":
            self.agents.append(next(a for a in self.possible_agents if a not in agents))
        return obs, rewards, terms, truncs, {a: {} for a in agents}


class FlakyOrder:
    """Leader first as listed; raises ``ZeroDivisionError`` on its next call once armed."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, game: stmg.STMGEnv) -> list[str]:
        if self.armed:
            self.armed = False
            raise ZeroDivisionError("simulated failure inside the order function")
        return list(game.possible_agents)


def snapshot(game: stmg.STMGEnv, base: CountingEnv) -> dict[str, Any]:
    """What a rejected call must leave unchanged."""
    return {
        "observations": {a: game.observe(a).tolist() for a in game.agents},
        "agent_selection": game.agent_selection,
        "agents": list(game.agents),
        "rewards": dict(game.rewards),
        "cumulative_rewards": dict(game._cumulative_rewards),
        "prior_actions": sorted(game.prior_actions),
        "time_step": game.time_step,
        "env_step_calls": base.step_calls,
    }


def play_one_time_step(game: stmg.STMGEnv) -> None:
    for agent in list(game.current_order):
        assert game.agent_selection == agent
        game.step(VALID[agent])


def refused_until_reset(game: stmg.STMGEnv, base: CountingEnv, cause: str) -> None:
    before = snapshot(game, base)
    for _ in range(3):
        with pytest.raises(RuntimeError, match=rf"step\(\) refused: .*{cause}.*call reset\(\)"):
            game.step(VALID[game.agent_selection] if game.agent_selection else 0)
    assert snapshot(game, base) == before, "a refused step must change nothing"


def note(exc_info: pytest.ExceptionInfo[BaseException]) -> str:
    return " ".join(getattr(exc_info.value, "__notes__", []))


def test_order_function_failing_after_the_env_stepped_stops_the_episode() -> None:
    base, order = CountingEnv(), FlakyOrder()
    game = stmg.wrap(base, order=order, flatten=True)
    game.reset(seed=0)
    play_one_time_step(game)
    order.armed = True
    game.step(VALID["a0"])
    game.step(VALID["a1"])
    with pytest.raises(ZeroDivisionError) as exc_info:  # the caller's own error, unchanged
        game.step(VALID["a2"])
    assert "order function at the start of time step 2 failed" in note(exc_info)
    assert "call reset() before step() again" in note(exc_info)
    # The env stepped once for time step 2, and its outputs were taken in: time step 2 rewards
    # are 10 k + 2 and the observations show t = 2.
    assert base.step_calls == 2 and game.time_step == 2
    assert game.rewards == {"a0": 2.0, "a1": 12.0, "a2": 22.0}
    assert game.observe("a1")[:2].tolist() == [1.0, 2.0]
    refused_until_reset(game, base, "ZeroDivisionError")
    assert base.step_calls == 2, "the env must not be stepped again with time step 2's actions"
    game.reset(seed=0)
    play_one_time_step(game)
    assert base.step_calls == 3 and game.time_step == 1


def test_order_function_failing_at_reset_refuses_steps_until_a_reset_works() -> None:
    base, order = CountingEnv(), FlakyOrder()
    game = stmg.wrap(base, order=order, flatten=True)
    order.armed = True
    with pytest.raises(ZeroDivisionError) as exc_info:
        game.reset(seed=0)
    assert "time step 0" in note(exc_info)
    with pytest.raises(RuntimeError, match=r"refused: the order function .* call reset\(\)"):
        game.step(0)
    game.reset(seed=0)
    play_one_time_step(game)
    assert base.step_calls == 1


def test_env_step_raising_stops_the_episode_without_a_second_step() -> None:
    base = CountingEnv()
    game = stmg.wrap(base, flatten=True)
    game.reset(seed=0)
    base.fault = "raise"
    game.step(VALID["a0"])
    game.step(VALID["a1"])
    with pytest.raises(OSError, match="simulated failure") as exc_info:
        game.step(VALID["a2"])
    assert "the wrapped env's step() at time step 1 failed" in note(exc_info)
    assert game.time_step == 0 and base.step_calls == 1
    refused_until_reset(game, base, "OSError")


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("unknown_name", ValueError, r"returned rewards for agents \['intruder'\] that are not in possible_agents"),
        ("join", NotImplementedError, r"agents \['a2'\] joined mid-episode"),
    ],
)
def test_env_returning_unknown_or_joining_agents_stops_the_episode(fault, error, message) -> None:
    base = CountingEnv(deaths={"a2": 1})
    game = stmg.wrap(base, flatten=True)
    game.reset(seed=0)
    play_one_time_step(game)  # a2 dies at step 1
    game.step(None)  # a2's dead step
    assert game.agents == ["a0", "a1"]
    base.fault = fault
    game.step(VALID["a0"])
    before_close = snapshot(game, base)
    with pytest.raises(error, match=message) as exc_info:
        game.step(VALID["a1"])
    assert "call reset() before step() again" in note(exc_info)
    assert base.step_calls == 2
    # Nothing the env returned was taken in: still time step 1's rewards and observations.
    after = snapshot(game, base)
    assert after["time_step"] == 1 and after["observations"] == before_close["observations"]
    refused_until_reset(game, base, error.__name__)
    assert base.step_calls == 2


def test_reset_returning_unknown_agents_is_rejected() -> None:
    base = CountingEnv()
    game = stmg.wrap(base, flatten=True)
    base.fault = "reset_unknown_name"
    with pytest.raises(ValueError, match=r"returned observations for agents \['intruder'\]"):
        game.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"refused: checking what the wrapped env's reset\(\) returned"):
        game.step(0)


# --- the property test --------------------------------------------------------------------------

# Valid steps dominate so that time steps close; every other kind of call comes up often.
CALLS = st.sampled_from(
    ["valid"] * 12 + ["whole_step"] * 3 + ["bad_action", "bad_action", "none_for_living", "arm_order",
                                           "arm_env_raise", "arm_env_unknown_name", "reset"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(CALLS, min_size=20, max_size=80),
    deaths=st.dictionaries(st.sampled_from(list(ACTION_SPACES)), st.integers(1, 4), max_size=2),
)
def test_random_call_sequences_never_step_the_env_twice(calls: list[str], deaths: dict[str, int]) -> None:
    base, order = CountingEnv(episode_length=4, deaths=deaths), FlakyOrder()
    game = stmg.wrap(base, order=order, flatten=True)
    game.reset(seed=0)
    closed = 0  # time steps whose closing called env.step: the count env.step must match
    halted = False
    stopped_episodes = 0
    for call in calls:
        if call == "reset":
            if order.armed:  # the order function runs at the start of time step 0
                with pytest.raises(ZeroDivisionError):
                    game.reset(seed=0)
                halted = True
            else:
                game.reset(seed=0)
                halted = False
            continue
        if call == "arm_order":
            order.armed = True
            continue
        if call.startswith("arm_env"):
            base.fault = "raise" if call == "arm_env_raise" else "unknown_name"
            continue
        before = snapshot(game, base)
        agent = game.agent_selection
        # While agents remain the wrapper keeps one selected (the checks below index by it).
        assert agent is not None or not game.agents
        dead = agent is not None and bool(game.agents) and (game.terminations[agent] or game.truncations[agent])
        if agent is None or halted or not game.agents:
            with pytest.raises(RuntimeError, match=r"call reset\(\)"):
                game.step(None if dead else (0 if agent is None else VALID.get(agent, 0)))
        elif call == "whole_step":  # step_time_step: only at the start of a time step
            if dead or game.current_order.index(agent) != 0:
                with pytest.raises(RuntimeError, match="must start a time step"):
                    game.step_time_step({a: VALID[a] for a in game.current_order})
            else:
                if base.fault or order.armed:
                    with pytest.raises((ZeroDivisionError, OSError, ValueError)):
                        game.step_time_step({a: VALID[a] for a in game.current_order})
                    halted = True
                    stopped_episodes += 1
                else:
                    game.step_time_step({a: VALID[a] for a in game.current_order})
                closed += 1
                assert base.step_calls == closed
                continue
        elif call == "valid":
            closes = not dead and game.current_order.index(agent) == len(game.current_order) - 1
            order_armed, env_fault = order.armed, base.fault
            if closes and (env_fault or order_armed):
                with pytest.raises((ZeroDivisionError, OSError, ValueError)):
                    game.step(VALID[agent])
                halted = True
                stopped_episodes += 1
            else:
                game.step(None if dead else VALID[agent])
            closed += closes
            assert base.step_calls == closed
            continue
        else:  # an invalid action: for a living agent, or a non-None action for a dead one
            bad = VALID[agent] if dead else (INVALID[agent] if call == "bad_action" else None)
            with pytest.raises(ValueError, match=repr(agent)):
                game.step(bad)
        assert snapshot(game, base) == before, f"rejected call {call!r} changed the wrapper's state"
        assert base.step_calls == closed
    # What the examples cover (pytest --hypothesis-show-statistics).
    event(f"time steps closed: {min(closed, 6)}{'+' if closed >= 6 else ''}")
    event(f"episodes stopped by an error while closing: {min(stopped_episodes, 2)}")
