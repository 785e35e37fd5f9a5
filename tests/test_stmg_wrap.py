"""Hand-computed expectations for stmg.wrap: turn order, joint action, rewards, observations."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

import stmg
from tests.toy_envs import RecordingEnv


def three_agents(**kwargs):
    return RecordingEnv([spaces.Discrete(3)] * 3, **kwargs)


def test_turn_order_and_joint_action_follow_the_priority_order():
    base = three_agents()
    env = stmg.wrap(base, order=["agent_2", "agent_0", "agent_1"])
    env.reset(seed=0)
    seen = []
    for action in (1, 2, 0):
        seen.append(env.agent_selection)
        env.step(action)
    assert seen == ["agent_2", "agent_0", "agent_1"]
    assert base.received == [{"agent_2": 1, "agent_0": 2, "agent_1": 0}]
    assert list(base.received[0]) == ["agent_2", "agent_0", "agent_1"], "joint action keeps the turn order"
    assert env.agent_selection == "agent_2", "the leader opens the next time step"
    assert env.time_step == 1


def test_last_shows_what_each_agent_earned_since_it_last_acted():
    env = stmg.wrap(three_agents(), order=["agent_2", "agent_0", "agent_1"])
    env.reset(seed=0)
    for agent in ["agent_2", "agent_0", "agent_1"]:
        assert env.last()[1] == 0.0, f"{agent} has earned nothing before the first joint step"
        env.step(0)
    # Step t=1 paid agent k 10*k + 1.
    expected = {"agent_2": 21.0, "agent_0": 1.0, "agent_1": 11.0}
    for agent in ["agent_2", "agent_0", "agent_1"]:
        assert env.agent_selection == agent
        assert env.last()[1] == expected[agent]
        env.step(0)
    assert env.last()[1] == 22.0  # agent_2 after step t=2
    assert env._cumulative_rewards["agent_0"] == 2.0  # earned at t=2, not yet acted again


@pytest.mark.parametrize("leader_action", [0, 1, 2])
def test_follower_sees_exactly_the_leaders_choice(leader_action):
    env = stmg.wrap(RecordingEnv(), order=["agent_1", "agent_0"])
    env.reset(seed=0)
    before = env.observe("agent_0")
    assert before["prior_mask"].tolist() == [0.0, 0.0], "nothing chosen before the leader acts"
    env.step(leader_action)
    seen = env.observe("agent_0")
    expected_row = np.eye(3, dtype=np.float32)[leader_action]
    np.testing.assert_array_equal(seen["prior_actions"][1], expected_row)
    np.testing.assert_array_equal(seen["prior_actions"][0], np.zeros(3))
    assert seen["prior_mask"].tolist() == [0.0, 1.0]
    assert seen["priority"].tolist() == [0.0, 1.0], "agent_0 acts second"
    assert seen["agent_id"].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(seen["observation"], [0.0, 0.0])
    leader = env.observe("agent_1")
    assert leader["prior_mask"].tolist() == [0.0, 0.0], "the leader has no superiors"
    assert leader["priority"].tolist() == [1.0, 0.0]


def test_box_and_multidiscrete_actions_are_encoded_in_padded_slots():
    action_spaces = [spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.MultiDiscrete([2, 3]), spaces.Discrete(4)]
    env = stmg.wrap(RecordingEnv(action_spaces), flatten=True)
    assert env.encoder.slot_size == 5  # max(2, 2 + 3, 4)
    env.reset(seed=0)
    env.step(np.array([0.5, -0.25], np.float32))
    env.step(np.array([1, 2]))
    obs = env.observe("agent_2")
    layout = env.encoder.flat_layout
    table = obs[layout["prior_actions"]].reshape(3, 5)
    np.testing.assert_array_equal(table[0], [0.5, -0.25, 0, 0, 0])
    np.testing.assert_array_equal(table[1], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(table[2], [0, 0, 0, 0, 0])
    expected = np.concatenate([[2.0, 0.0], table.ravel(), [1, 1, 0], [0, 0, 1], [0, 0, 1]]).astype(np.float32)
    np.testing.assert_array_equal(obs, expected)
    assert env.observation_space("agent_2").contains(obs)


def test_encoder_is_public_and_matches_the_wrapper():
    base = RecordingEnv()
    env = stmg.wrap(base, order=["agent_1", "agent_0"], observation="state")
    env.reset(seed=0)
    env.step(2)
    from_env = env.observe("agent_0")
    rebuilt = env.encoder.encode("agent_0", base.state(), {"agent_1": 2}, priority=1)
    for key in from_env:
        np.testing.assert_array_equal(from_env[key], rebuilt[key])
    np.testing.assert_array_equal(from_env["observation"], [0.0])  # the state, t=0


def test_agent_death_mid_episode():
    base = three_agents(deaths={"agent_1": 2}, episode_length=4)
    env = stmg.wrap(base, order=["agent_1", "agent_0", "agent_2"])
    env.reset(seed=0)
    for _ in range(6):  # two time steps
        env.step(0)
    assert env.agent_selection == "agent_1", "a dead agent is selected first"
    _, reward, terminated, truncated, _ = env.last()
    assert (reward, terminated, truncated) == (12.0, True, False)
    with pytest.raises(ValueError, match="agent_1.*None"):
        env.step(1)
    assert env.agent_selection == "agent_1" and "agent_1" in env.agents, "a rejected action changes nothing"
    env.step(None)
    assert "agent_1" not in env.agents
    assert env.agent_selection == "agent_0", "the next living agent in the order leads"
    assert env.observe("agent_0")["priority"].tolist() == [1.0, 0.0, 0.0]
    env.step(1)
    env.step(2)
    assert base.received[2] == {"agent_0": 1, "agent_2": 2}


def test_episode_end_and_stepping_with_no_agent_left():
    env = stmg.wrap(RecordingEnv(episode_length=1))
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    assert all(env.truncations.values())
    env.step(None)
    env.step(None)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="no agent is left"):
        env.step(0)


def test_dynamic_order_is_asked_every_time_step():
    calls = []

    def alternate(game):
        calls.append(game.time_step)
        agents = list(game.possible_agents)
        return agents if game.time_step % 2 == 0 else agents[::-1]

    env = stmg.wrap(three_agents(), order=alternate)
    env.reset(seed=0)
    selections = []
    for _ in range(9):
        selections.append(env.agent_selection)
        env.step(0)
    assert selections == ["agent_0", "agent_1", "agent_2", "agent_2", "agent_1", "agent_0"] + [
        "agent_0", "agent_1", "agent_2"]
    assert calls == [0, 1, 2, 3]


def test_dynamic_order_is_validated():
    env = stmg.wrap(three_agents(), order=lambda game: ["agent_0", "agent_0", "agent_x"])
    with pytest.raises(ValueError, match=r"unknown \['agent_x'\].*repeated \['agent_0'\].*missing"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["agent_0", "agent_9"], r"unknown \['agent_9'\]"),
        (["agent_0"], r"missing \['agent_1'\]"),
        (["agent_0", "agent_1", "agent_1"], r"repeated \['agent_1'\]"),
    ],
)
def test_bad_orders_are_rejected_with_the_bad_value(order, message):
    with pytest.raises(ValueError, match=message):
        stmg.wrap(RecordingEnv(), order=order)


def test_bad_actions_are_rejected_and_change_nothing():
    base = RecordingEnv([spaces.Discrete(3), spaces.Box(-1.0, 1.0, (2,), np.float32)])
    env = stmg.wrap(base)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 5 of agent 'agent_0'"):
        env.step(5)
    with pytest.raises(ValueError, match="must act"):
        env.step(None)
    env.step(1)
    for bad in (np.array([np.nan, 0.0], np.float32), np.array([2.0, 0.0], np.float32), np.zeros(3, np.float32)):
        with pytest.raises(ValueError, match="agent_1"):
            env.step(bad)
        assert env.agent_selection == "agent_1" and env.prior_actions == {"agent_0": 1}
        assert base.received == []
    env.step(np.zeros(2, np.float32))
    assert len(base.received) == 1


def test_misuse_gets_clear_errors():
    with pytest.raises(TypeError, match="ParallelEnv"):
        stmg.wrap(stmg.wrap(RecordingEnv()))
    with pytest.raises(ValueError, match="observation='global'"):
        stmg.wrap(RecordingEnv(), observation="global")
    env = stmg.wrap(RecordingEnv())
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)


def test_state_observation_and_passthroughs():
    base = RecordingEnv()
    env = stmg.wrap(base, observation="state")
    assert env.state_space is base.state_space
    assert env.action_space("agent_0") is base.action_space("agent_0")
    assert env.observation_space("agent_0") is env.observation_space("agent_0")
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    np.testing.assert_array_equal(env.state(), [1.0])
    np.testing.assert_array_equal(env.observe("agent_0")["observation"], [1.0])
