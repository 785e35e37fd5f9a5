"""Greedy execution modes, checkpoints and seed reproducibility of the STEP learner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

import envs
from agents import (
    CheckpointMismatchError,
    DecentralizedExecutionError,
    JointStepEnv,
    STEPConfig,
    build_learner,
    load_checkpoint,
    load_into,
    matrix_game_report,
    play_greedy,
    save_checkpoint,
    train,
)
from agents.config import Variant
from agents.networks import NLevelPolicy
from agents.training import seed_everything
from envs.matrix import MatrixGame


class StateGame(ParallelEnv):  # type: ignore[misc]
    """Three agents whose own observations differ ([k, t, noise]); state() is [t, noise]."""

    metadata = {"name": "state_game_v0"}

    def __init__(self) -> None:
        self.possible_agents = ["agent_0", "agent_1", "agent_2"]
        self.agents: list[str] = []
        self.state_space = spaces.Box(-10, 10, (2,), np.float32)
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Box(-10, 10, (3,), np.float32)

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return spaces.Discrete(3)

    def state(self) -> np.ndarray:
        return np.array([self.t, self.noise], np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([int(a[-1]), self.t, self.noise], np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.rng = np.random.default_rng(seed)
        self.agents, self.t, self.noise = list(self.possible_agents), 0, float(self.rng.normal())
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, ...]:
        self.t += 1
        self.noise = float(self.rng.normal())
        done = self.t >= 6
        obs = self._obs()
        rew = {a: float(actions[a] == 1) for a in self.agents}
        infos: dict[str, dict] = {a: {} for a in self.agents}
        truncs = {a: done for a in self.agents}
        terms = {a: False for a in self.agents}
        if done:
            self.agents = []
        return obs, rew, terms, truncs, infos


def _untrained(env: ParallelEnv, observation: str = "own", seed: int = 0) -> Any:
    torch.manual_seed(seed)
    adapter = JointStepEnv(env=env, observation=observation)
    learner = build_learner(spec=adapter.joint_spec, config=STEPConfig(), env=adapter)
    # Larger random hypernetwork outputs so that the greedy actions depend on the priors.
    actor = learner.model.actor
    assert isinstance(actor, NLevelPolicy)
    with torch.no_grad():
        cast(torch.nn.Linear, actor.hypernetwork[-1]).weight.normal_(0, 1.0)
    return learner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_communicated_equals_decentralized_on_state_input(seed: int) -> None:
    learner = _untrained(StateGame(), observation="state", seed=seed)
    order = ["agent_1", "agent_2", "agent_0"]
    kwargs: dict[str, Any] = dict(order=order, observation="state", seed=seed)
    comm = play_greedy(learner.model, StateGame(), mode="communicated", **kwargs)
    dec = play_greedy(learner.model, StateGame(), mode="decentralized", **kwargs)
    assert len(comm) == 6
    assert comm == dec


def test_communicated_equals_decentralized_on_matrix_game() -> None:
    payoffs = np.random.default_rng(0).normal(size=(3, 3, 2, 4))
    learner = _untrained(MatrixGame(payoffs, episode_length=3))
    comm = play_greedy(learner.model, MatrixGame(payoffs, episode_length=3), mode="communicated",
                       order=["agent_2", "agent_0", "agent_1"])
    dec = play_greedy(learner.model, MatrixGame(payoffs, episode_length=3), mode="decentralized",
                      order=["agent_2", "agent_0", "agent_1"])
    assert comm == dec and len(comm) == 3


def test_decentralized_raises_without_common_knowledge() -> None:
    learner = _untrained(StateGame(), observation="own")
    with pytest.raises(DecentralizedExecutionError, match="common-knowledge"):
        play_greedy(learner.model, StateGame(), mode="decentralized")
    assert len(play_greedy(learner.model, StateGame(), mode="communicated")) == 6


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    learner = train(lambda: envs.make("matrix/penalty-v0", k=-100), total_steps=400, seed=0,
                    config=STEPConfig(n_envs=4, steps_per_collect=200))
    path = tmp_path / "step.pt"
    save_checkpoint(learner, path)
    data = torch.load(path, weights_only=True)  # plain data only
    assert data["config"]["variant"] == "step"
    restored = load_checkpoint(path, spec=learner.spec)
    for a, b in zip(learner.algorithm.state_dict()["_optimizers"],
                    restored.algorithm.state_dict()["_optimizers"], strict=True):
        assert a["state"].keys() == b["state"].keys(), "the optimiser state must be restored"
    game = envs.make("matrix/penalty-v0", k=-100)
    assert matrix_game_report(learner.model, game) == matrix_game_report(restored.model, game)
    for (name, p), (_, q) in zip(learner.model.state_dict().items(),
                                 restored.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_checkpoint_from_other_game_names_the_mismatch(tmp_path: Path) -> None:
    learner = _untrained(MatrixGame(np.zeros((2, 3, 3))))
    path = tmp_path / "step.pt"
    save_checkpoint(learner, path)
    other = _untrained(MatrixGame(np.zeros((2, 3, 4))))
    with pytest.raises(CheckpointMismatchError, match="action_sizes: checkpoint has \\[3, 3\\]"):
        load_into(other, path)


def test_same_seed_same_result() -> None:
    cfg = STEPConfig(n_envs=4, steps_per_collect=200)
    runs = [train(lambda: envs.make("matrix/mixing-v0"), config=cfg, total_steps=400, seed=7)
            for _ in range(2)]
    for (name, p), (_, q) in zip(runs[0].model.state_dict().items(),
                                 runs[1].model.state_dict().items(), strict=True):
        assert torch.equal(p, q), f"parameter {name} differs between two runs with seed 7"


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.HAPPO])
def test_minibatches_with_subprocess_envs_train_reproducibly(variant: Variant) -> None:
    """Several minibatches per epoch (shuffled by the learner's seeded generator) and
    SubprocVectorEnv: training changes the model, and the same seed gives the same model."""
    cfg = STEPConfig(variant=variant, n_envs=2, steps_per_collect=100, minibatches=3, epochs=2)
    seed_everything(3)  # as train() does before building the model: the same initial weights
    probe = JointStepEnv(env=envs.make("matrix/penalty-v0"), info_flags=False)
    initial = build_learner(spec=probe.joint_spec, config=cfg, env=probe).model.state_dict()
    runs = [train(lambda: envs.make("matrix/penalty-v0"), config=cfg, total_steps=200, seed=3,
                  subprocess=True) for _ in range(2)]
    states = [run.model.state_dict() for run in runs]
    assert any(not torch.equal(states[0][name], initial[name]) for name in initial), "nothing was learned"
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), f"{name} differs between two runs with seed 3"


class BoxGame(ParallelEnv):  # type: ignore[misc]
    """Two agents with Box actions of different sizes; reward -(a_0[0] - a_1[0])^2."""

    metadata = {"name": "box_game_v0"}

    def __init__(self) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.state_space = spaces.Box(0, 10, (1,), np.float32)
        self._act = {"agent_0": spaces.Box(-1, 1, (2,), np.float32),
                     "agent_1": spaces.Box(-2, 2, (1,), np.float32)}

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.state_space

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._act[agent]

    def state(self) -> np.ndarray:
        return np.array([self.t], np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents, self.t = list(self.possible_agents), 0
        return {a: self.state() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, ...]:
        for a, act in actions.items():
            assert self._act[a].contains(np.asarray(act, np.float32)), (a, act)
        self.t += 1
        r = -float((actions["agent_0"][0] - actions["agent_1"][0]) ** 2)
        done = self.t >= 5
        obs = {a: self.state() for a in self.agents}
        rew = {a: r for a in self.agents}
        infos: dict[str, dict] = {a: {} for a in self.agents}
        truncs = {a: done for a in self.agents}
        self.agents = [] if done else self.agents
        return obs, rew, {a: False for a in truncs}, truncs, infos


def test_box_actions_train_and_execute() -> None:
    learner = train(BoxGame, config=STEPConfig(n_envs=2, steps_per_collect=50), total_steps=100,
                    seed=0, observation="state")
    assert learner.spec.action_kind == "box" and learner.spec.action_sizes == (2, 1)
    comm = play_greedy(learner.model, BoxGame(), mode="communicated", observation="state")
    dec = play_greedy(learner.model, BoxGame(), mode="decentralized", observation="state")
    assert len(comm) == 5
    for c, d in zip(comm, dec, strict=True):
        for agent in c:
            np.testing.assert_array_equal(c[agent], d[agent])
