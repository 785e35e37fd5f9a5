"""Matrix games: payoffs, equilibria computed by hand, the env and the registry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import envs
import stmg
from envs.matrix import (
    MatrixGame,
    climbing,
    mixing,
    penalty,
    pure_nash_equilibria,
    stackelberg_equilibrium,
)


@pytest.mark.parametrize("k", [0, -25, -50, -75, -100])
def test_penalty_equilibria(k):
    joint, values = stackelberg_equilibrium(penalty(k))
    assert joint == (0, 2) and values.tolist() == [10.0, 10.0]
    # Even at k = 0 the corners (a1,a1), (a3,a3) are no NE: a deviation to 8 or 10 pays more.
    assert pure_nash_equilibria(penalty(k)) == [(0, 2), (1, 1), (2, 0)]


def test_mixing_equilibria_match_the_paper():
    joint, values = stackelberg_equilibrium(mixing())
    assert joint == (0, 0) and values.tolist() == [0.0, 5.0]
    assert pure_nash_equilibria(mixing()) == [(1, 1)]
    assert mixing()[:, 1, 1].tolist() == [-5.0, 0.0]


def test_climbing_equilibria():
    joint, values = stackelberg_equilibrium(climbing())
    assert joint == (0, 0) and values.tolist() == [11.0, 11.0]
    assert pure_nash_equilibria(climbing()) == [(0, 0), (1, 1)]


def test_reversed_order_changes_who_leads():
    # With the column player leading Mixing: for each a2 the row player best-responds
    # (a2=0 -> a1=2 (5), a2=1 -> a1=1 (-5), a2=2 -> a1=0 (-8)).
    # Follower values: (2,0)->0, (1,1)->0, (0,2)->4, so agent 1 leads with a2=2.
    joint, values = stackelberg_equilibrium(mixing(), order=[1, 0])
    assert joint == (0, 2) and values.tolist() == [-8.0, 4.0]


def test_three_agent_stackelberg_by_hand():
    # Agent 2 (last follower) copies agent 1; agent 1 copies agent 0 unless agent 0 plays 1;
    # payoffs make agent 0 prefer the outcome (1, 0, 0).
    payoffs = np.zeros((3, 2, 2, 2))
    for a0 in range(2):
        for a1 in range(2):
            for a2 in range(2):
                payoffs[2, a0, a1, a2] = 1.0 if a2 == a1 else 0.0
                payoffs[1, a0, a1, a2] = 1.0 if (a1 == a0) != (a0 == 1) else 0.0
                payoffs[0, a0, a1, a2] = {(0, 0, 0): 2.0, (1, 0, 0): 3.0}.get((a0, a1, a2), 0.0)
    joint, values = stackelberg_equilibrium(payoffs)
    assert joint == (1, 0, 0) and values.tolist() == [3.0, 1.0, 1.0]


def test_strong_tie_break_favours_the_leader():
    # Follower indifferent between its actions; the leader gets 5 only if the follower plays 1.
    payoffs = np.stack([np.array([[0.0, 5.0], [1.0, 1.0]]), np.zeros((2, 2))])
    joint, values = stackelberg_equilibrium(payoffs)
    assert joint == (0, 1) and values.tolist() == [5.0, 0.0]


@pytest.mark.parametrize(
    ("payoffs", "message"),
    [
        (np.zeros((2, 3)), "needs 3 axes"),
        (np.zeros(3), "expected \\(n_agents"),
        (np.full((2, 2, 2), np.nan), "finite"),
        ("abc", "numeric"),
    ],
)
def test_invalid_payoffs_are_rejected(payoffs, message):
    with pytest.raises(ValueError, match=message):
        MatrixGame(payoffs)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="episode_length"):
        MatrixGame(penalty(), episode_length=0)
    with pytest.raises(ValueError, match="render_mode"):
        MatrixGame(penalty(), render_mode="human")
    with pytest.raises(ValueError, match="order"):
        stackelberg_equilibrium(penalty(), order=[0, 0])


def test_rewards_observations_and_episode_length():
    env = envs.make("matrix/mixing-v0", episode_length=3)
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"].tolist() == [1.0]
    for t in range(3):
        obs, rewards, terminations, truncations, _ = env.step({"agent_0": 2, "agent_1": 0})
        assert rewards == {"agent_0": 5.0, "agent_1": 0.0}
        assert truncations["agent_0"] == (t == 2) and not terminations["agent_0"]
    assert env.agents == []


def test_a_three_agent_game_through_the_wrapper():
    payoffs = np.arange(3 * 2 * 3 * 4, dtype=float).reshape(3, 2, 3, 4)
    env = stmg.wrap(MatrixGame(payoffs), order=["agent_2", "agent_0", "agent_1"])
    env.reset()
    env.step(3)
    env.step(1)
    env.step(2)
    assert env.last()[1] == payoffs[2, 1, 2, 3]


def test_registry():
    assert {"matrix/penalty-v0", "matrix/mixing-v0", "matrix/climbing-v0"} <= set(envs.registered_ids())
    assert envs.make("matrix/penalty-v0", k=-25).payoffs[0, 0, 0] == -25.0
    with pytest.raises(KeyError, match="unknown environment id 'matrix/nope-v0'.*matrix/penalty-v0"):
        envs.make("matrix/nope-v0")


@pytest.mark.parametrize("env_id", ["matrix/penalty-v0", "matrix/mixing-v0", "matrix/climbing-v0"])
def test_pettingzoo_test_suite(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(envs.make(env_id), num_cycles=60)
        parallel_seed_test(lambda: envs.make(env_id))
        api_test(stmg.wrap(envs.make(env_id)), num_cycles=60)
        seed_test(lambda: stmg.wrap(envs.make(env_id), order=["agent_1", "agent_0"]))


def test_ansi_render():
    env = envs.make("matrix/penalty-v0", render_mode="ansi")
    env.reset()
    env.step({"agent_0": 0, "agent_1": 2})
    assert env.render() == "t=1: joint action (0, 2), rewards [10.0, 10.0]"
