"""Tests of envs.mamujoco: PettingZoo API conformance, splits, episode end, seeding, rendering."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

import mujoco  # noqa: E402
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test  # noqa: E402

import envs  # noqa: E402
from envs import mamujoco  # noqa: E402
from envs.mamujoco import SPLITS, MaMuJoCoEnv  # noqa: E402

IDS = [env_id for env_id in envs.registered_ids() if env_id.startswith("mamujoco/")]
SHORT = 50  # episode length for the API tests: short episodes keep the file fast


def _make(env_id: str, **kwargs):
    return envs.make(env_id, **{"episode_length": SHORT, **kwargs})


def _random_actions(env, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        a: rng.uniform(-1.0, 1.0, env.action_space(a).shape).astype(np.float32) for a in env.agents
    }


def _model(env: MaMuJoCoEnv):
    return env.inner.single_agent_env.unwrapped.model


def _data(env: MaMuJoCoEnv):
    return env.inner.single_agent_env.unwrapped.data


def test_every_scenario_split_is_registered():
    expected = {f"mamujoco/{sc}-{sp}-v0" for sc, splits in SPLITS.items() for sp in splits}
    assert set(IDS) == expected
    assert len(IDS) == 9


# --- PettingZoo API conformance ------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api(env_id):
    parallel_api_test(_make(env_id), num_cycles=2 * SHORT)


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_seed(env_id):
    parallel_seed_test(lambda: _make(env_id), num_cycles=SHORT)


@pytest.mark.parametrize("reverse", [False, True], ids=["order=default", "order=reversed"])
@pytest.mark.parametrize("env_id", IDS)
def test_stmg_wrapped_aec_api_and_seed(env_id, reverse):
    stmg = pytest.importorskip("stmg")

    def build():
        env = _make(env_id, episode_length=20)
        order = list(reversed(env.possible_agents)) if reverse else None
        return stmg.wrap(env, order=order)

    api_test(build(), num_cycles=30)
    seed_test(build, num_cycles=30)


def test_stmg_wrap_with_state_observation():
    stmg = pytest.importorskip("stmg")
    game = stmg.wrap(_make("mamujoco/HalfCheetah-3x2-v0"), observation="state", flatten=True)
    game.reset(seed=0)
    obs = game.observe(game.agent_selection)
    assert game.observation_space(game.agent_selection).contains(obs)
    assert game.state().shape == game.state_space.shape == (17,)


# --- hand-checkable facts about the splits ---------------------------------------------------
ACTION_DIMS = {
    "HalfCheetah-2x3": [3, 3],
    "HalfCheetah-3x2": [2, 2, 2],
    "HalfCheetah-6x1": [1] * 6,
    "Ant-2x4": [4, 4],
    "Ant-4x2": [2, 2, 2, 2],
    "Ant-8x1": [1] * 8,
    "ManyAgentAnt-2x3": [12, 12],  # 3 segments of 4 joints each
    "ManyAgentAnt-3x2": [8, 8, 8],
    "ManyAgentAnt-6x1": [4] * 6,
}


@pytest.mark.parametrize("name", ACTION_DIMS)
def test_agents_and_action_dims(name):
    env = envs.make(f"mamujoco/{name}-v0")
    dims = ACTION_DIMS[name]
    assert env.possible_agents == [f"agent_{i}" for i in range(len(dims))]
    assert [env.action_space(a).shape for a in env.possible_agents] == [(d,) for d in dims]
    for a in env.possible_agents:
        space = env.action_space(a)
        assert np.all(space.low == -1.0) and np.all(space.high == 1.0)
        assert len(env.agent_joints[a]) == space.shape[0]


@pytest.mark.parametrize("env_id", IDS)
def test_joints_cover_every_actuator_exactly_once(env_id):
    env = _make(env_id)
    model = _model(env)
    actuated = [
        mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[i, 0])
        for i in range(model.nu)
    ]
    joints = [j for a in env.possible_agents for j in env.agent_joints[a]]
    assert sorted(joints) == sorted(actuated)
    assert len(joints) == len(set(joints)) == model.nu
    act_ids = [n.act_ids for part in env.inner.agent_action_partitions for n in part]
    assert sorted(act_ids) == list(range(model.nu))


def test_documented_partitions():
    assert mamujoco.joint_partition("HalfCheetah", "3x2") == (
        ("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh"),
    )
    assert mamujoco.joint_partition("Ant", "8x1") == tuple(
        (f"{j}_{leg}",) for leg in (1, 2, 3, 4) for j in ("hip", "ankle")
    )
    assert mamujoco.joint_partition("ManyAgentAnt", "3x2")[1] == tuple(
        f"{j}_{s}" for s in (2, 3) for j in ("hip1", "ankle1", "hip2", "ankle2")
    )


@pytest.mark.parametrize("env_id", IDS)
def test_agent_action_drives_its_documented_joint(env_id):
    """Action index i of an agent moves the actuator of ``agent_joints[agent][i]``."""
    env = _make(env_id)
    env.reset(seed=0)
    model, data = _model(env), _data(env)
    for agent in env.possible_agents:
        for i, joint in enumerate(env.agent_joints[agent]):
            actions = {a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents}
            actions[agent][i] = 0.5
            env.step(actions)
            (actuator,) = np.flatnonzero(data.ctrl)
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[actuator, 0])
            assert name == joint
            assert data.ctrl[actuator] == pytest.approx(0.5)


@pytest.mark.parametrize("env_id", IDS)
def test_agent_observes_its_own_joints(env_id):
    """Each agent's observation holds the position and velocity of every joint it drives
    (this fails on gymnasium-robotics 1.4.2's own ManySegmentAnt factorisation)."""
    env = _make(env_id)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, *_ = env.step(_random_actions(env, rng))
    model, data = _model(env), _data(env)
    for agent in env.possible_agents:
        for joint in env.agent_joints[agent]:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
            assert np.any(obs[agent] == data.qpos[model.jnt_qposadr[jid]]), (agent, joint, "qpos")
            assert np.any(obs[agent] == data.qvel[model.jnt_dofadr[jid]]), (agent, joint, "qvel")


@pytest.mark.parametrize(
    ("env_id", "sizes"),
    [
        ("mamujoco/HalfCheetah-6x1-v0", [9, 9, 8, 9, 9, 8]),
        ("mamujoco/HalfCheetah-3x2-v0", [10, 12, 11]),
        ("mamujoco/Ant-4x2-v0", [42, 42, 42, 42]),
        ("mamujoco/ManyAgentAnt-6x1-v0", [63, 65, 65, 65, 65, 63]),
    ],
)
def test_documented_observation_sizes(env_id, sizes):
    env = _make(env_id)
    assert [env.observation_space(a).shape for a in env.possible_agents] == [(s,) for s in sizes]


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_are_cached_and_contain_data(env_id):
    env = _make(env_id)
    obs, infos = env.reset(seed=3)
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        assert env.observation_space(a).contains(obs[a])
    state = env.state()
    assert state.shape == env.state_space.shape
    assert env.state_space.contains(state)
    obs, rewards, *_ = env.step(_random_actions(env, np.random.default_rng(0)))
    assert len(set(rewards.values())) == 1  # one shared team reward
    assert env.state().shape == env.state_space.shape
    with pytest.raises(KeyError, match="agent_99"):
        env.action_space("agent_99")


@pytest.mark.parametrize("env_id", ["mamujoco/HalfCheetah-3x2-v0", "mamujoco/HalfCheetah-6x1-v0"])
@pytest.mark.parametrize("length", [1, 7])
def test_truncation_exactly_at_episode_length(env_id, length):
    env = envs.make(env_id, episode_length=length)
    rng = np.random.default_rng(0)
    for _episode in range(2):
        env.reset(seed=0)
        for t in range(1, length + 1):
            assert env.agents == env.possible_agents
            _, _, terminations, truncations, _ = env.step(_random_actions(env, rng))
            assert not any(terminations.values())
            assert all(truncations.values()) == (t == length)
            assert any(truncations.values()) == (t == length)
        assert env.agents == []
        with pytest.raises(RuntimeError, match="reset"):
            env.step({})


def test_episode_length_beyond_the_library_default():
    env = envs.make("mamujoco/HalfCheetah-6x1-v0", episode_length=1003)
    env.reset(seed=0)
    zero = {a: np.zeros(1, np.float32) for a in env.possible_agents}
    for _ in range(1002):
        _, _, _, truncations, _ = env.step(zero)
        assert not any(truncations.values())
    assert all(env.step(zero)[3].values())


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout(seed: int) -> list[np.ndarray]:
        env = _make(env_id)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        trace = [np.concatenate([obs[a] for a in env.possible_agents])]
        for _ in range(25):
            if not env.agents:
                break
            obs, rew, *_ = env.step(_random_actions(env, rng))
            trace.append(np.concatenate([obs[a] for a in env.possible_agents] + [[rew["agent_0"]]]))
            trace.append(env.state())
        return trace

    first, second = rollout(7), rollout(7)
    assert len(first) == len(second)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(rollout(8)[0], first[0])


# --- argument checks -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"scenario": "Hopper", "split": "3x1"}, "'Hopper'"),
        ({"scenario": "HalfCheetah", "split": "2x4"}, "'2x4'"),
        ({"scenario": "Ant", "split": "3x2"}, "'3x2'"),
        ({"scenario": "HalfCheetah", "split": "6x1", "episode_length": 0}, "0"),
        ({"scenario": "HalfCheetah", "split": "6x1", "episode_length": -5}, "-5"),
        ({"scenario": "HalfCheetah", "split": "6x1", "episode_length": 2.5}, "2.5"),
        ({"scenario": "HalfCheetah", "split": "6x1", "render_mode": "human"}, "'human'"),
        ({"scenario": "HalfCheetah", "split": "6x1", "agent_obsk": -1}, "-1"),
        ({"scenario": "HalfCheetah", "split": "6x1", "max_episode_steps": 9}, "max_episode_steps"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)) as info:
        MaMuJoCoEnv(**kwargs)
    message = str(info.value)
    if "split" in message and "unknown split" in message:
        assert all(s in message for s in SPLITS[kwargs["scenario"]])  # lists what is expected
    if "unknown scenario" in message:
        assert all(s in message for s in SPLITS)


def test_bad_actions_raise_value_error():
    env = _make("mamujoco/HalfCheetah-3x2-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing \\['agent_2'\\]"):
        env.step({"agent_0": np.zeros(2), "agent_1": np.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        env.step({a: np.zeros(3) for a in env.possible_agents})


def test_step_before_reset_raises():
    env = _make("mamujoco/HalfCheetah-2x3-v0")
    with pytest.raises(RuntimeError, match="reset"):
        env.step({a: np.zeros(3) for a in env.possible_agents})


def test_metadata():
    env = _make("mamujoco/Ant-8x1-v0")
    assert env.metadata["name"] == "mamujoco_Ant_8x1_v0"
    assert env.metadata["render_modes"] == ["rgb_array"]
    assert env.render_mode is None


# --- rendering -------------------------------------------------------------------------------
def test_render_without_mode_returns_none():
    env = _make("mamujoco/HalfCheetah-2x3-v0")
    env.reset(seed=0)
    assert env.render() is None


def test_render_without_backend_says_what_to_install(monkeypatch):
    monkeypatch.setattr(mamujoco, "find_headless_backend", lambda: None)
    env = _make("mamujoco/HalfCheetah-2x3-v0", render_mode="rgb_array")
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="egl.*osmesa") as info:
        env.render()
    assert "apt-get install" in str(info.value)


@pytest.mark.skipif(
    mamujoco.find_headless_backend() is None,
    reason="no headless OpenGL backend (install libegl1 libegl-mesa0 libgl1-mesa-dri, or libosmesa6)",
)
@pytest.mark.parametrize("env_id", ["mamujoco/HalfCheetah-6x1-v0", "mamujoco/ManyAgentAnt-2x3-v0"])
def test_render_rgb_array(env_id):
    env = _make(env_id, render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3)
    assert frame.dtype == np.uint8
    assert frame.std() > 0  # not a blank image
    env.step({a: env.action_space(a).sample() for a in env.agents})
    assert env.render().shape == (48, 64, 3)
    env.close()
