"""QuadraticGame (Box actions): the env, its registry entry, and STEP training on it.

Measured with ``STEPConfig.continuous_games()`` (greedy joint action, communicated mode;
``python examples/train_continuous.py --seeds 5 --steps 60000`` on the 2-core machine):

=========  ======  ===================================  ==========================
learner    steps   greedy x, seeds 0-4 (x* = 0.571)     max |y - 0.5 x| over seeds
=========  ======  ===================================  ==========================
STEP       60,000  0.574, 0.564, 0.563, 0.401, 0.572    0.010
MAPPO      30,000  0.03, 0.04, -0.01 (seeds 0-2)        (y 0.02, 0.01, -0.00)
=========  ======  ===================================  ==========================

STEP's follower best-responds closely and its leader commits to x* in most seeds (the leader's
objective is flat there: -0.35 (x - x*)^2). MAPPO drifts to the NE (0, 0). With the
``matrix_games`` preset (normalised advantages) the follower's std collapsed and it ended far
off its best response (e.g. y = 1.0 for x = 0.10).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import envs
import stmg
from agents.config import STEPConfig
from envs.continuous import QuadraticGame
from runner.matrix_trials import run_quadratic_trial


def test_registered_and_passes_pettingzoo_api_tests() -> None:
    assert "continuous/quadratic-v0" in envs.registered_ids()
    assert isinstance(envs.make("continuous/quadratic-v0"), QuadraticGame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(envs.make("continuous/quadratic-v0"), num_cycles=60)
        parallel_seed_test(lambda: envs.make("continuous/quadratic-v0"))
        api_test(stmg.wrap(envs.make("continuous/quadratic-v0")), num_cycles=60)


@pytest.mark.parametrize(
    ("x", "y", "r_leader", "r_follower"),
    [
        (0.0, 0.0, -0.16, 0.0),  # -(0 - 0.4)^2 - 0.1 * 0;  -(0 - 0)^2
        (1.0, 0.5, -0.11, 0.0),  # -(0.5 - 0.4)^2 - 0.1 * 1;  -(0.5 - 0.5)^2
        (-1.0, 1.0, -0.46, -2.25),  # -(0.6)^2 - 0.1;  -(1 + 0.5)^2
        (0.4, -0.2, -0.376, -0.16),  # -(0.6)^2 - 0.016;  -(-0.2 - 0.2)^2
    ],
)
def test_rewards_by_hand(x: float, y: float, r_leader: float, r_follower: float) -> None:
    env = QuadraticGame(episode_length=2)
    env.reset(seed=0)
    _, rewards, terms, truncs, _ = env.step({"agent_0": np.array([x], np.float32),
                                             "agent_1": np.array([y], np.float32)})
    assert rewards["agent_0"] == pytest.approx(r_leader, abs=1e-6)
    assert rewards["agent_1"] == pytest.approx(r_follower, abs=1e-6)
    assert env.rewards_for(x, y) == pytest.approx((r_leader, r_follower), abs=1e-6)
    assert not any(terms.values()) and not any(truncs.values())
    *_, truncs, _ = env.step({"agent_0": np.zeros(1, np.float32), "agent_1": np.zeros(1, np.float32)})
    assert all(truncs.values()) and env.agents == []


def test_stackelberg_equilibrium_formula() -> None:
    x, y = QuadraticGame().stackelberg_equilibrium()
    assert x == pytest.approx(4 / 7) and y == pytest.approx(2 / 7)  # 0.5*0.4/0.35, 0.5*x
    # x* maximises the leader's reward against the best response y = slope * x.
    grid = np.linspace(-1, 1, 20001)
    game = QuadraticGame()
    values = [game.rewards_for(g, 0.5 * g)[0] for g in grid]
    assert grid[int(np.argmax(values))] == pytest.approx(x, abs=1e-4)
    assert QuadraticGame(slope=-1.0, target=0.5, cost=0.0).stackelberg_equilibrium() == pytest.approx((-0.5, 0.5))
    with pytest.raises(ValueError):
        QuadraticGame(slope=0.0, cost=0.0).stackelberg_equilibrium()


@pytest.mark.parametrize(
    "kwargs",
    [{"slope": float("nan")}, {"target": float("inf")}, {"cost": -0.1}, {"episode_length": 0},
     {"episode_length": 2.5}, {"episode_length": True}],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        QuadraticGame(**kwargs)


def test_bad_actions_raise() -> None:
    env = QuadraticGame()
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step({"agent_0": np.array([1.5], np.float32), "agent_1": np.zeros(1, np.float32)})
    with pytest.raises(ValueError):
        env.step({"agent_0": np.zeros(1, np.float32)})


def test_step_learns_to_lead_on_quadratic_game() -> None:
    """Fast check (~30 s): the follower best-responds and the leader commits away from NE 0."""
    r = run_quadratic_trial(config=STEPConfig.continuous_games(), steps=30000, seed=0)
    assert r.x > 0.25, r
    assert r.best_response_gap < 0.05, r
    assert r.replies[0] < r.replies[1] < r.replies[2], r.replies  # the reply rises with the leader's x


@pytest.mark.slow
def test_step_reaches_the_stackelberg_equilibrium() -> None:
    """Five seeds of 60,000 steps (~4 min): measured 4/5 within 0.1 of x* (module docstring)."""
    results = [run_quadratic_trial(config=STEPConfig.continuous_games(), steps=60000, seed=seed)
               for seed in range(5)]
    x_star = results[0].x_star
    assert all(r.best_response_gap < 0.05 for r in results), results
    assert sum(abs(r.x - x_star) < 0.1 for r in results) >= 4, results
    assert abs(np.mean([r.x for r in results]) - x_star) < 0.1, results


def test_train_continuous_script_smoke(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples/train_continuous.py"
    spec = importlib.util.spec_from_file_location("train_continuous", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "c.json"
    summary = module.main(["--seeds", "1", "--steps", "400", "--workers", "1", "--out", str(out)])
    trial = json.loads(out.read_text())["trials"][0]
    assert summary["algo"] == "step" and set(trial) >= {"x", "y", "replies", "best_response_gap"}
    assert len(trial["replies"]) == 3 and trial["x_star"] == pytest.approx(4 / 7)
