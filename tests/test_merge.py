"""Tests of the on-ramp merging env (``envs/merge.py``, ids ``merge/*-v0``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("highway_env")

from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test  # noqa: E402

import envs  # noqa: E402
import stmg  # noqa: E402
from envs.merge import DIFFICULTIES, MERGE_END, MERGE_LANE_LENGTH, MergeEnv  # noqa: E402

IDS = ["merge/easy-v0", "merge/medium-v0", "merge/hard-v0"]
IDLE = 1


def idle(env: MergeEnv) -> dict[str, int]:
    return dict.fromkeys(env.agents, IDLE)


# --- PettingZoo API ------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api(env_id: str) -> None:
    parallel_api_test(envs.make(env_id), num_cycles=100)


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api_remove_crashed(env_id: str) -> None:
    parallel_api_test(envs.make(env_id, remove_crashed=True), num_cycles=100)


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_seed(env_id: str) -> None:
    parallel_seed_test(lambda: envs.make(env_id), num_cycles=20)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_aec_api_through_stmg(env_id: str, reverse: bool) -> None:
    env = envs.make(env_id)
    order = list(reversed(env.possible_agents)) if reverse else None
    api_test(stmg.wrap(env, order=order), num_cycles=40)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_aec_seed_through_stmg(env_id: str, reverse: bool) -> None:
    def make() -> stmg.STMGEnv:
        env = envs.make(env_id)
        order = list(reversed(env.possible_agents)) if reverse else None
        return stmg.wrap(env, order=order)

    seed_test(make, num_cycles=20)


def test_stmg_state_observation() -> None:
    api_test(stmg.wrap(envs.make("merge/medium-v0"), observation="state"), num_cycles=30)


def test_spaces_are_cached_and_fixed() -> None:
    env = envs.make("merge/hard-v0")
    assert env.possible_agents == [f"agent_{i}" for i in range(6)]
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert env.observation_space(agent).shape == (25,)
        assert env.action_space(agent).n == 5
    assert env.state_space.shape == (5 * (6 + 5) + 1,)


# --- traffic ---------------------------------------------------------------------------------
@pytest.mark.parametrize("difficulty", sorted(DIFFICULTIES))
def test_counts_within_difficulty_ranges(difficulty: str) -> None:
    (cav_lo, cav_hi), (hdv_lo, hdv_hi) = DIFFICULTIES[difficulty]
    env = MergeEnv(difficulty)
    seen_cavs, seen_hdvs = set(), set()
    for seed in range(30):
        env.reset(seed=seed)
        cavs = [env.vehicle(a) for a in env.agents]
        hdvs = env.human_vehicles
        assert cav_lo <= len(cavs) <= cav_hi
        assert hdv_lo <= len(hdvs) <= hdv_hi
        seen_cavs.add(len(cavs))
        seen_hdvs.add(len(hdvs))
        assert env.agents == env.possible_agents[: len(cavs)]
        for group in (cavs, hdvs):  # half on the main road, half on the ramp
            on_ramp = sum(v.lane_index == ("j", "k", 0) for v in group)
            assert abs((len(group) - on_ramp) - on_ramp) <= 1
        for v in cavs + hdvs:
            assert 25.0 <= v.speed <= 27.0
            assert not v.crashed
        xs = [v.position[0] for v in cavs]
        assert xs == sorted(xs, reverse=True)  # agent_0 starts furthest ahead
        state = env.state()
        assert env.state_space.contains(state)
        presence = state[:-1].reshape(-1, 5)[:, 0]
        n_max = len(env.possible_agents)
        assert presence[:n_max].sum() == len(cavs) and presence[n_max:].sum() == len(hdvs)
    assert seen_cavs == set(range(cav_lo, cav_hi + 1))
    assert seen_hdvs == set(range(hdv_lo, hdv_hi + 1))


@pytest.mark.parametrize("difficulty", sorted(DIFFICULTIES))
def test_n_controlled_fixes_count(difficulty: str) -> None:
    (_, cav_hi), _ = DIFFICULTIES[difficulty]
    for n in (1, cav_hi):
        env = envs.make(f"merge/{difficulty}-v0", n_controlled=n)
        assert env.possible_agents == [f"agent_{i}" for i in range(n)]
        for seed in range(5):
            env.reset(seed=seed)
            assert env.agents == env.possible_agents


# --- rewards, by hand ----------------------------------------------------------------------------
def test_speed_term_by_hand() -> None:
    env = MergeEnv("easy")
    cases = [(20.0, 0.5), (10.0, 0.0), (5.0, 0.0), (25.0, 0.75), (30.0, 1.0), (31.0, 1.0)]
    for speed, expected in cases:
        _, infos = env.reset_to([(("a", "b", 0), 50.0, speed)])
        terms = infos["agent_0"]["reward_terms"]
        assert terms["speed"] == pytest.approx(expected, abs=1e-12)
        assert terms["collision"] == 0.0 and terms["merge"] == 0.0 and terms["headway"] == 0.0


def test_headway_term_by_hand() -> None:
    env = MergeEnv("medium")
    # gap 20 m at 25 m/s: log(20 / (1.2 * 25)) < 0
    _, infos = env.reset_to([(("a", "b", 0), 100.0, 25.0)], [(("a", "b", 0), 120.0, 25.0)])
    assert env.headway(env.vehicle("agent_0")) == pytest.approx(20.0)
    assert infos["agent_0"]["reward_terms"]["headway"] == pytest.approx(math.log(20.0 / 30.0))
    # gap 40 m > 1.2 s * 25 m/s: no cost
    _, infos = env.reset_to([(("a", "b", 0), 100.0, 25.0)], [(("a", "b", 0), 140.0, 25.0)])
    assert infos["agent_0"]["reward_terms"]["headway"] == 0.0
    # nobody ahead (the other vehicle is behind): no cost
    _, infos = env.reset_to([(("a", "b", 0), 100.0, 25.0)], [(("a", "b", 0), 90.0, 25.0)])
    assert env.headway(env.vehicle("agent_0")) is None
    assert infos["agent_0"]["reward_terms"]["headway"] == 0.0
    # the leader is in the next segment (x = 220 -> 235): 15 m
    _, infos = env.reset_to([(("a", "b", 0), 220.0, 20.0)], [(("b", "c", 0), 5.0, 20.0)])
    assert env.headway(env.vehicle("agent_0")) == pytest.approx(15.0)
    assert infos["agent_0"]["reward_terms"]["headway"] == pytest.approx(math.log(15.0 / 24.0))
    # a vehicle in another lane does not count; the ramp sees into the merge lane
    _, infos = env.reset_to(
        [(("a", "b", 0), 100.0, 25.0), (("k", "b", 0), 70.0, 25.0)],
        [(("a", "b", 0), 240.0, 25.0), (("b", "c", 1), 10.0, 25.0)],
    )
    sine = env.road.network.get_lane(("k", "b", 0))
    ramp_gap = sine.length - 70.0 + 10.0
    assert env.headway(env.vehicle("agent_1")) == pytest.approx(ramp_gap, abs=1e-6)
    assert env.headway(env.vehicle("agent_0")) == pytest.approx(140.0)  # not the merge-lane car


def test_merge_term_and_obstacle_headway_by_hand() -> None:
    env = MergeEnv("easy")
    merge_lane = ("b", "c", 1)
    lane_start = MERGE_END - MERGE_LANE_LENGTH  # x = 230
    for x in (240.0, 280.0, 300.0):
        _, infos = env.reset_to([(merge_lane, x - lane_start, 20.0)])
        terms = infos["agent_0"]["reward_terms"]
        assert infos["agent_0"]["on_ramp"] is True
        assert infos["agent_0"]["position"][0] == pytest.approx(x)
        expected = -math.exp(-((x - 310.0) ** 2) / (10.0 * 80.0))
        assert terms["merge"] == pytest.approx(expected, rel=1e-12)
        # the obstacle at x = 310 m is the road user ahead
        assert terms["headway"] == pytest.approx(min(0.0, math.log((310.0 - x) / 24.0)))
    # on the main road, no merging cost
    _, infos = env.reset_to([(("b", "c", 0), 70.0, 20.0)])
    assert infos["agent_0"]["reward_terms"]["merge"] == 0.0
    assert infos["agent_0"]["on_ramp"] is False


def test_crash_term_and_weights_by_hand() -> None:
    weights: dict[str, Any] = dict(collision_weight=100.0, speed_weight=2.0, merge_weight=3.0, headway_weight=5.0)
    env = MergeEnv("easy", **weights)
    # agent_0 runs into a stopped car 7 m ahead; agent_1 drives alone on the ramp
    env.reset_to(
        [(("a", "b", 0), 100.0, 30.0), (("j", "k", 0), 20.0, 25.0)],
        [(("a", "b", 0), 107.0, 0.0)],
    )
    _, rewards, terminations, truncations, infos = env.step(idle(env))
    terms = infos["agent_0"]["reward_terms"]
    assert infos["agent_0"]["crashed"] is True and terms["collision"] == -1.0
    speed = infos["agent_0"]["speed"]
    assert terms["speed"] == pytest.approx(min(max((speed - 10.0) / 20.0, 0.0), 1.0))
    for agent in ("agent_0", "agent_1"):
        t = infos[agent]["reward_terms"]
        expected = 100.0 * t["collision"] + 2.0 * t["speed"] + 3.0 * t["merge"] + 5.0 * t["headway"]
        assert rewards[agent] == pytest.approx(expected)
    assert rewards["agent_0"] < -100.0 + 2.0
    assert infos["agent_1"]["crashed"] is False and infos["agent_1"]["reward_terms"]["collision"] == 0.0


# --- episode end ---------------------------------------------------------------------------------
def crash_scene(env: MergeEnv) -> None:
    env.reset_to(
        [(("a", "b", 0), 100.0, 30.0), (("a", "b", 0), 0.0, 25.0)],
        [(("a", "b", 0), 107.0, 0.0), (("a", "b", 0), 40.0, 25.0)],
    )


def test_crash_ends_episode_by_default() -> None:
    env = MergeEnv("easy")
    crash_scene(env)
    _, _, terminations, truncations, _ = env.step(idle(env))
    assert terminations == {"agent_0": True, "agent_1": True}
    assert truncations == {"agent_0": False, "agent_1": False}
    assert env.agents == []


def test_remove_crashed_removes_only_crashed() -> None:
    env = MergeEnv("easy", remove_crashed=True)
    crash_scene(env)
    hdv_wreck, hdv_other = env.human_vehicles
    _, _, terminations, _, infos = env.step(idle(env))
    assert terminations == {"agent_0": True, "agent_1": False}
    assert infos["agent_0"]["crashed"] and not infos["agent_1"]["crashed"]
    assert env.agents == ["agent_1"]
    assert env.vehicle("agent_0") not in env.road.vehicles
    assert hdv_wreck not in env.road.vehicles and hdv_other in env.road.vehicles
    state = env.state().reshape(-1)[:-1].reshape(-1, 5)
    assert state[0].tolist() == [0.0] * 5 and state[1, 0] == 1.0  # agent_0's row is cleared
    steps = 1
    while env.agents:
        obs, rewards, terminations, truncations, _ = env.step(idle(env))
        assert set(obs) == {"agent_1"}
        steps += 1
    assert steps == env.max_steps and truncations == {"agent_1": True}


def test_truncation_after_max_steps() -> None:
    env = MergeEnv("easy", max_steps=7)
    env.reset_to([(("a", "b", 0), 10.0, 25.0)])
    for step in range(7):
        _, _, terminations, truncations, _ = env.step(idle(env))
        assert truncations["agent_0"] is (step == 6)
        assert terminations["agent_0"] is False
    assert env.agents == []


# --- observations --------------------------------------------------------------------------------
@pytest.mark.parametrize("difficulty", sorted(DIFFICULTIES))
@pytest.mark.parametrize("kwargs", [{}, {"main_lanes": 2, "remove_crashed": True}])
def test_fast_observation_equals_stock(difficulty: str, kwargs: dict) -> None:
    env = MergeEnv(difficulty, **kwargs)
    compared = 0
    for seed in range(3):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(30):
            fast = env.fast_observations(env.agents)
            stock = env.stock_observations(env.agents)
            assert set(fast) == set(stock) == set(env.agents)
            for agent in env.agents:
                assert fast[agent].dtype == np.float32 and fast[agent].shape == (25,)
                np.testing.assert_allclose(fast[agent], stock[agent], rtol=0, atol=1e-6)
                assert env.observation_space(agent).contains(fast[agent])
                compared += 1
            env.step({a: int(rng.integers(5)) for a in env.agents})
            if not env.agents:
                break
    assert compared > 50


def test_stock_observation_switch_gives_same_episode() -> None:
    fast, stock = MergeEnv("medium"), MergeEnv("medium", observation_impl="stock")
    obs_f, _ = fast.reset(seed=3)
    obs_s, _ = stock.reset(seed=3)
    rng = np.random.default_rng(0)
    while fast.agents:
        for agent in obs_f:
            np.testing.assert_allclose(obs_f[agent], obs_s[agent], rtol=0, atol=1e-6)
        actions = {a: int(rng.integers(5)) for a in fast.agents}
        obs_f, rew_f, *_ = fast.step(actions)
        obs_s, rew_s, *_ = stock.step(actions)
        assert rew_f == rew_s
    assert stock.agents == []


def test_observation_content() -> None:
    env = MergeEnv("easy")
    obs, _ = env.reset_to([(("a", "b", 0), 100.0, 20.0)], [(("a", "b", 0), 120.0, 25.0)])
    rows = obs["agent_0"].reshape(5, 5)
    # own row: absolute x = 100 of +-200 m, y = 0 of +-8 m, vx = 20 of +-80 m/s
    np.testing.assert_allclose(rows[0], [1.0, 0.5, 0.0, 0.25, 0.0], atol=1e-6)
    # the car ahead: relative x = +20 m, vx = +5 m/s
    np.testing.assert_allclose(rows[1], [1.0, 0.1, 0.0, 5.0 / 80.0, 0.0], atol=1e-6)
    assert not rows[2:].any()


# --- seeding, state, rendering, info -------------------------------------------------------------
def rollout(env: MergeEnv, seed: int, steps: int = 30) -> list:
    trace: list[Any] = []
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    trace.append({a: o.tolist() for a, o in obs.items()})
    for _ in range(steps):
        if not env.agents:
            obs, _ = env.reset()
        obs, rewards, *_ = env.step({a: int(rng.integers(5)) for a in env.agents})
        trace.append(({a: o.tolist() for a, o in obs.items()}, rewards, env.state().tolist()))
    return trace


def test_same_seed_same_episode() -> None:
    a, b = MergeEnv("hard"), MergeEnv("hard")
    assert rollout(a, 7) == rollout(b, 7)
    assert rollout(a, 7) != rollout(a, 8)


def test_infos() -> None:
    env = MergeEnv("medium")
    _, infos = env.reset(seed=0)
    _, _, _, _, infos = env.step(idle(env))
    for agent, info in infos.items():
        vehicle = env.vehicle(agent)
        assert info["speed"] == pytest.approx(vehicle.speed)
        assert info["position"] == pytest.approx(tuple(vehicle.position))
        assert isinstance(info["crashed"], bool) and isinstance(info["on_ramp"], bool)
        assert info["on_ramp"] == (vehicle.lane_index in {("j", "k", 0), ("k", "b", 0), ("b", "c", 1)})
        assert set(info["reward_terms"]) == {"collision", "speed", "merge", "headway"}


def test_render_rgb_array() -> None:
    env = envs.make("merge/easy-v0", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(idle(env))
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.shape[:2] == (120, 1200)
    assert frame.std() > 0  # something was drawn
    env.close()


def test_render_without_mode_returns_none() -> None:
    env = MergeEnv("easy")
    env.reset(seed=0)
    with pytest.warns(UserWarning):
        assert env.render() is None


# --- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"difficulty": "extreme"}, ValueError, "extreme"),
        ({"n_controlled": 0}, ValueError, "n_controlled=0"),
        ({"n_controlled": 4}, ValueError, "n_controlled=4.*from 1 to 3"),
        ({"n_controlled": 2.0}, TypeError, "n_controlled"),
        ({"n_controlled": True}, TypeError, "n_controlled"),
        ({"collision_weight": -1.0}, ValueError, "collision_weight=-1.0"),
        ({"headway_weight": float("nan")}, ValueError, "headway_weight"),
        ({"speed_weight": "1"}, TypeError, "speed_weight"),
        ({"speed_range": (30, 10)}, ValueError, "speed_range"),
        ({"speed_range": 5}, ValueError, "speed_range"),
        ({"headway_time": 0}, ValueError, "headway_time=0.0"),
        ({"max_steps": 0}, ValueError, "max_steps=0"),
        ({"main_lanes": 0}, ValueError, "main_lanes=0"),
        ({"observation_impl": "pandas"}, ValueError, "pandas"),
        ({"render_mode": "human"}, ValueError, "human"),
        ({"render_config": {"fps": 3}}, ValueError, "fps"),
        ({"remove_crashed": "yes"}, TypeError, "remove_crashed"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"difficulty": "easy", **kwargs}
    with pytest.raises(error, match=match):
        MergeEnv(**kwargs)


def test_bad_actions() -> None:
    env = MergeEnv("easy", n_controlled=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": 1, "agent_1": 1})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="agent_1"):
        env.step({"agent_0": 1})
    with pytest.raises(ValueError, match="invalid action 5"):
        env.step({"agent_0": 5, "agent_1": 1})
    with pytest.raises(ValueError, match="invalid action 1.5"):
        env.step({"agent_0": 1.5, "agent_1": 1})
    with pytest.raises(ValueError, match="agent_7"):
        env.step({"agent_0": 1, "agent_1": 1, "agent_7": 1})
    env.step({"agent_0": np.int64(3), "agent_1": np.array(4)})  # numpy ints are fine


def test_make_passes_kwargs() -> None:
    env = envs.make("merge/hard-v0", n_controlled=4, collision_weight=10.0)
    assert isinstance(env, MergeEnv)
    assert env.difficulty == "hard" and env.collision_weight == 10.0
    assert len(env.possible_agents) == 4
