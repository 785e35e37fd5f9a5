"""Which spaces the learners take, how they say no, and greedy execution on any Box shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import stmg
from agents.adapter import JointStepEnv
from agents.config import STEPConfig, Variant
from agents.execution import ModelGameMismatchError, play_greedy
from agents.spec import JointSpec, UnsupportedSpaceError
from agents.training import build_learner, train
from envs.matrix import MatrixGame
from tests.toy_envs import RecordingEnv


class ShapedEnv(RecordingEnv):
    """RecordingEnv with chosen observation spaces per agent."""

    def __init__(self, action_spaces: list[spaces.Space[Any]], obs_spaces: list[spaces.Space[Any]]) -> None:
        super().__init__(action_spaces)
        self._obs_spaces = dict(zip(self.possible_agents, obs_spaces, strict=True))

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._obs_spaces[agent]

    def _obs(self, agent: str) -> Any:
        space = self._obs_spaces[agent]
        return np.full(space.shape, self.t, dtype=space.dtype)  # type: ignore[arg-type]


BOX2 = spaces.Box(0.0, 1000.0, (2,), np.float32)


@pytest.mark.parametrize("action_space", [
    spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(3), spaces.Box(-2, 2, (2,), np.int64),
])
def test_unsupported_actions_are_rejected_before_training(action_space: spaces.Space[Any]) -> None:
    env = ShapedEnv([spaces.Discrete(3), action_space], [BOX2, BOX2])
    with pytest.raises(UnsupportedSpaceError, match=r"unsupported action spaces.*agent_1.*learners support"):
        train(lambda: ShapedEnv([spaces.Discrete(3), action_space], [BOX2, BOX2]),
              config=STEPConfig(), total_steps=10, seed=0)
    game = stmg.wrap(env)  # the wrapper itself takes them
    game.reset(seed=0)


def test_mixed_discrete_and_box_actions_are_rejected() -> None:
    with pytest.raises(UnsupportedSpaceError, match="a mix of Discrete and Box"):
        JointStepEnv(env=ShapedEnv([spaces.Discrete(3), spaces.Box(-1, 1, (1,), np.float32)], [BOX2, BOX2]))


IMAGE = spaces.Box(0, 255, (8, 8, 3), np.uint8)


@pytest.mark.parametrize(("obs_spaces", "message"), [
    ([IMAGE, BOX2], r"mixed image and vector observations.*agent_1.*either every agent"),
    ([IMAGE, spaces.Box(0, 255, (9, 8, 3), np.uint8)],
     r"image observations of different shapes.*\(8, 8, 3\).*\(9, 8, 3\).*resize"),
    ([spaces.Box(0, 255, (8, 3, 8), np.uint8)] * 2, r"image shape \(8, 3, 8\).*first or the last"),
    ([spaces.Box(-np.inf, np.inf, (8, 8, 3), np.float32)] * 2, r"finite bounds.*-inf"),
    ([IMAGE, spaces.Box(0, 1, (8, 8, 3), np.float32)], r"the same for every pixel and agent"),
])
def test_images_the_encoder_cannot_read_are_rejected(obs_spaces: list[spaces.Space[Any]], message: str) -> None:
    with pytest.raises(UnsupportedSpaceError, match=message):
        JointStepEnv(env=ShapedEnv([spaces.Discrete(2), spaces.Discrete(2)], obs_spaces))


def test_image_observations_are_accepted() -> None:
    spec = JointStepEnv(env=ShapedEnv([spaces.Discrete(2), spaces.Discrete(2)], [IMAGE, IMAGE])).joint_spec
    assert spec.image_shape == (8, 8, 3) and spec.obs_dim == 192 and not spec.distinct_observations


def test_discrete_actions_of_different_sizes_train() -> None:
    make = lambda: ShapedEnv([spaces.Discrete(2), spaces.Discrete(5)], [BOX2, BOX2])  # noqa: E731
    learner = train(make, config=STEPConfig(n_envs=2, steps_per_collect=20, epochs=1), total_steps=40, seed=0)
    assert learner.spec.action_sizes == (2, 5)
    actions = play_greedy(learner.model, make(), mode="communicated", max_steps=3)
    assert all(a["agent_0"] in (0, 1) and a["agent_1"] in range(5) for a in actions)


def test_distinct_observation_spaces_give_the_shared_policy_the_agents_identity() -> None:
    # Agent 0 sees a 1-vector, agent 1 a 2-vector: padded rows [t, 0] and [t, t] mean
    # different things, so the shared N-level policy must also know who is acting.
    distinct = JointStepEnv(env=ShapedEnv([spaces.Discrete(3)] * 2, [spaces.Box(0, 9, (1,)), BOX2]))
    same = JointStepEnv(env=ShapedEnv([spaces.Discrete(3)] * 2, [BOX2, BOX2]))
    assert distinct.joint_spec.distinct_observations and not same.joint_spec.distinct_observations
    learner = build_learner(spec=distinct.joint_spec, config=STEPConfig(), env=distinct)
    actor = learner.model.actor
    assert getattr(actor, "agent_identity", False)
    # Same padded observation and priority, two different agents: different inputs to E.
    obs = torch.zeros(2, 2, 2)
    from agents.encoding import position_of

    order = torch.tensor([[0, 1], [0, 1]])
    inputs = learner.model.inputs(obs=obs, act_enc=torch.zeros(2, 2, 3), alive=torch.ones(2, 2),
                                  pos_of=position_of(order), agent=torch.tensor([0, 1]),
                                  priority=torch.tensor([0, 0]))
    assert not torch.equal(inputs.actor[0], inputs.actor[1])
    # It trains and plays (the priority chain feeds E the code too).
    make = lambda: ShapedEnv([spaces.Discrete(3)] * 2, [spaces.Box(0, 9, (1,)), BOX2])  # noqa: E731
    trained = train(make, config=STEPConfig(n_envs=2, steps_per_collect=20, epochs=1), total_steps=40, seed=0)
    assert len(play_greedy(trained.model, make(), mode="communicated", max_steps=2)) == 2
    # The parameter count still does not grow with the number of agents.
    same_learner = build_learner(spec=same.joint_spec, config=STEPConfig(), env=same)
    extra = sum(p.numel() for p in actor.parameters()) - sum(p.numel() for p in same_learner.model.actor.parameters())
    assert extra == STEPConfig().priority_embedding_size * STEPConfig().hidden_size


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.MAPPO])
def test_greedy_execution_of_box_actions_of_any_shape(variant: Variant) -> None:
    square = spaces.Box(-1.0, 1.0, (2, 2), np.float32)
    make = lambda: ShapedEnv([square, spaces.Box(-1.0, 1.0, (3,), np.float32)], [BOX2, BOX2])  # noqa: E731
    learner = train(make, config=STEPConfig(variant=variant, n_envs=2, steps_per_collect=20, epochs=1),
                    total_steps=40, seed=0)
    env = make()
    actions = play_greedy(learner.model, env, mode="communicated", max_steps=2)
    assert actions[0]["agent_0"].shape == (2, 2) and actions[0]["agent_1"].shape == (3,)
    assert all(square.contains(a["agent_0"]) for a in actions)
    # The adapter converts the same way (one conversion for training and execution).
    spec = learner.spec
    raw = np.array([0.5, -3.0, 0.25, 2.0])
    np.testing.assert_array_equal(spec.env_action(0, raw), [[0.5, -1.0], [0.25, 1.0]])
    # The adapter's conversion of a whole joint action is the per-agent one.
    joint_raw = np.array([[0.5, -3.0, 0.25, 2.0], [1.5, -0.5, -7.0, 9.0]])
    joint = spec.env_joint_action(joint_raw)
    for k in range(2):
        np.testing.assert_array_equal(joint[k], spec.env_action(k, joint_raw[k]))
        assert joint[k].shape == spec.env_action(k, joint_raw[k]).shape and joint[k].dtype == np.float32
    np.testing.assert_array_equal(joint[1], [1.0, -0.5, -1.0])


def test_joint_discrete_actions_keep_each_agents_start() -> None:
    spec = JointSpec(possible_agents=("a", "b", "c"), obs_dim=1, action_kind="discrete", action_sizes=(2, 3, 4),
                     action_starts=(0, 5, -2), slot_size=4)
    raw = np.array([1, 2, 0])
    assert spec.env_joint_action(raw) == [spec.env_action(k, raw[k]) for k in range(3)] == [1, 7, -2]


def test_playing_a_model_on_another_game_is_an_error() -> None:
    learner = train(lambda: MatrixGame(np.zeros((2, 3, 3))), config=STEPConfig.matrix_games(),
                    total_steps=40, seed=0)
    with pytest.raises(ModelGameMismatchError, match=r"action_sizes: the model has \[3, 3\], the game has \[4, 4\]"):
        play_greedy(learner.model, MatrixGame(np.zeros((2, 4, 4))), mode="communicated", max_steps=1)


def test_play_greedy_runs_with_the_configured_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    learner = train(lambda: MatrixGame(np.zeros((2, 3, 3))), config=STEPConfig.matrix_games(torch_threads=1),
                    total_steps=40, seed=0)
    torch.set_num_threads(2)
    seen: list[int] = []
    from agents import execution

    original = execution.act_from_flat

    def spy(model: Any, flat: Any) -> Any:
        seen.append(torch.get_num_threads())
        return original(model, flat)

    monkeypatch.setattr(execution, "act_from_flat", spy)
    play_greedy(learner.model, MatrixGame(np.zeros((2, 3, 3))), mode="communicated", max_steps=2)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2, "the caller's setting is restored"


def test_spec_records_the_state_size() -> None:
    env = JointStepEnv(env=RecordingEnv(), with_state=True)
    assert env.joint_spec.state_dim == 1 and env.observation_space.shape == (2, 2 + 1 + 3)
    with pytest.raises(ValueError, match="with_state=True needs env.state"):
        JointStepEnv(env=ShapedEnvWithoutState(), with_state=True)
    assert JointSpec.from_encoder(env.game.encoder).state_dim == 0


class ShapedEnvWithoutState(RecordingEnv):
    state_space = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.state_space = None  # type: ignore[assignment]
