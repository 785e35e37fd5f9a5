"""The lean vector envs: Tianshou's, minus the env-id entry of every step info."""

from __future__ import annotations

import numpy as np
import torch
from tianshou.env import DummyVectorEnv

from agents import STEPConfig, Variant
from agents.adapter import JointStepEnv
from agents.training import TrainingSession
from agents.vector_env import LeanDummyVectorEnv, LeanSubprocVectorEnv, lean_vector_env
from envs.matrix import MatrixGame, penalty


def _make() -> JointStepEnv:
    return JointStepEnv(env=MatrixGame(penalty(-50), episode_length=3), info_flags=False)


def test_lean_env_steps_like_tianshous_without_env_ids() -> None:
    plain, lean = DummyVectorEnv([_make] * 3), LeanDummyVectorEnv([_make] * 3)
    assert isinstance(lean_vector_env([_make]), LeanDummyVectorEnv)
    obs_p, _ = plain.reset(seed=0)
    obs_l, _ = lean.reset(seed=0)
    assert np.array_equal(obs_p, obs_l)
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.integers(0, 3, size=(2, 2))
        out_p, out_l = plain.step(act, [0, 2]), lean.step(act, [0, 2])
        for a, b in zip(out_p[:4], out_l[:4], strict=True):
            assert np.array_equal(a, b)
        assert [dict(i) for i in out_p[4]] == [{"env_id": 0}, {"env_id": 2}]
        assert [dict(i) for i in out_l[4]] == [{}, {}]
        done = np.array([0, 2])[out_p[2] | out_p[3]]
        if done.size:
            plain.reset(done)
            lean.reset(done)


def test_lean_subprocess_env_drops_env_ids() -> None:
    lean = lean_vector_env([_make] * 2, subprocess=True)
    try:
        assert isinstance(lean, LeanSubprocVectorEnv)
        lean.reset(seed=0)
        _, reward, _, _, infos = lean.step(np.array([[0, 0], [1, 1]]))
        assert [dict(i) for i in infos] == [{}, {}]
        assert reward.shape == (2, 2)
    finally:
        lean.close()


def test_training_over_the_lean_env_is_bit_for_bit_tianshous() -> None:
    config = STEPConfig.matrix_games(variant=Variant.STEP)
    game = lambda: MatrixGame(penalty(-100))  # noqa: E731
    # Each session is trained right after it is made: a session seeds the global RNGs it samples from.
    lean = TrainingSession(game, config=config, total_steps=800, seed=2)
    assert isinstance(lean.venv, LeanDummyVectorEnv)
    lean.train_steps(800)
    plain = TrainingSession(game, config=config, total_steps=800, seed=2, venv_fn=DummyVectorEnv)
    plain.train_steps(800)
    a, b = lean.learner.model.state_dict(), plain.learner.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = TrainingSession(game, config=config, total_steps=800, seed=2).learner.model.state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained
