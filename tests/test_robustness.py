"""Adversarial input to the matrix games, the action checks and the checkpoints (issue 11).

Each check holds a value worked out by hand: the wrapped int8 that used to pass, the equilibrium
that a copied payoff table must keep, the exact bytes of a checkpoint that a failed save must
leave alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

import stmg
from envs.matrix import MatrixGame, mixing, penalty, stackelberg_equilibrium

# --- matrix games -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ([0.0, 1.0], r"holds \[0\.0, 1\.0\]; expected integer agent indices 0\.\.1"),
        ([1, 0.5], r"holds \[0\.5\]"),
        (["1", "0"], r"holds \['1', '0'\]"),
        ("10", "got the string '10'"),
        ([True, False], r"holds \[True, False\]"),
        (np.array([0, 0]), r"order \[0, 0\] is not a permutation of agents 0\.\.1"),
        (np.array([0.0, 1.0]), r"holds \[np\.float64\(0\.0\), np\.float64\(1\.0\)\]|holds \[0\.0, 1\.0\]"),
        (5, "must be a sequence of agent indices, got 5"),
    ],
)
def test_stackelberg_order_must_be_a_permutation_of_integers(order, message) -> None:
    with pytest.raises(ValueError, match=message):
        stackelberg_equilibrium(mixing(), order=order)


def test_stackelberg_order_as_a_numpy_array_of_integers() -> None:
    # Mixing with the column player leading: the follower (row) best-responds to each column
    # (column 0 -> row 2 (5), 1 -> row 0 or 1 (-10, -5: row 1), 2 -> row 0 (-8)); the leader's
    # payoffs for those replies are 0, 0 and 4, so it plays column 2: joint (0, 2), values (-8, 4).
    joint, values = stackelberg_equilibrium(mixing(), order=np.array([1, 0]))
    assert joint == (0, 2) and values.tolist() == [-8.0, 4.0]
    assert stackelberg_equilibrium(mixing(), order=np.array([1, 0], dtype=np.int8))[0] == (0, 2)


@pytest.mark.parametrize(
    ("payoffs", "message"),
    [
        (np.ones((2, 2, 2), dtype=bool), "dtype bool \\(booleans\\)"),
        ([[["1", "2"], ["3", "4"]], [["1", "2"], ["3", "4"]]], "dtype <U1 \\(strings\\)"),
        (np.array([[[1, None], [1, 1]], [[1, 1], [1, 1]]], dtype=object), "dtype object \\(Python objects\\)"),
        (np.ones((2, 2, 2), dtype=complex), "complex numbers"),
    ],
)
def test_payoffs_must_be_real_numbers(payoffs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MatrixGame(payoffs)
    with pytest.raises(ValueError, match=message):
        stackelberg_equilibrium(payoffs)


def test_matrix_game_keeps_its_own_copy_of_the_payoffs() -> None:
    table = penalty(-100.0)
    game = MatrixGame(table)
    table[:] = 0.0  # the caller reuses its array
    game.reset()
    _, rewards, *_ = game.step({"agent_0": 0, "agent_1": 2})
    assert rewards == {"agent_0": 10.0, "agent_1": 10.0}, "the game must still pay Penalty's 10 for (a1, a3)"
    with pytest.raises(ValueError, match="read-only"):
        game.payoffs[0, 0, 2] = 0.0


# --- actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "action"),
    [
        (spaces.MultiBinary(2), np.array([257, 0])),  # int8 cast wraps 257 to 1
        (spaces.MultiBinary(2), [2, 0]),
        (spaces.MultiBinary(2), np.array([0.5, 1.0])),
        (spaces.MultiBinary(2), np.array([np.nan, 1.0])),
        (spaces.MultiBinary(2), np.array([1, 0, 1])),
        (spaces.MultiDiscrete([3, 3], dtype=np.int8), np.array([257, 0])),  # wraps to 1
        (spaces.MultiDiscrete([3, 3]), np.array([0.5, 1.0])),
        (spaces.MultiDiscrete([3, 3]), np.array([3, 0])),
        (spaces.Box(0, 3, (1,), np.int64), np.array([0.5])),
        (spaces.Box(0, 3, (1,), np.int64), np.array([1.0])),  # gymnasium: float64 cannot cast to int64
        (spaces.Box(0, 3, (1,), np.int64), [0.5]),
        (spaces.Box(0, 3, (1,), np.int64), np.array([4])),
        (spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([0.0, 1.5])),
        (spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([0.0, 0.0, 0.0])),
    ],
)
def test_actions_outside_the_space_are_rejected_like_gymnasium(space, action) -> None:
    assert not space.contains(np.asarray(action)), "the case itself must be one gymnasium rejects"
    assert not stmg.ActionCodec(space).contains(action)
    with pytest.raises(ValueError, match="not in its action space"):
        stmg.validate_action("agent_0", space, action)


@pytest.mark.parametrize(
    ("space", "action", "encoding"),
    [
        (spaces.MultiBinary(3), np.array([1, 0, 1], dtype=np.int8), [1.0, 0.0, 1.0]),
        (spaces.MultiBinary(3), [True, False, True], [1.0, 0.0, 1.0]),
        (spaces.MultiBinary(2), np.array([1.0, 0.0]), [1.0, 0.0]),
        (spaces.MultiDiscrete([3, 2], dtype=np.int8), np.array([2, 1]), [0.0, 0.0, 1.0, 0.0, 1.0]),
        (spaces.Box(0, 3, (2,), np.int64), np.array([3, 0]), [3.0, 0.0]),
        (spaces.Box(0, 3, (2,), np.int64), [1, 2], [1.0, 2.0]),
        (spaces.Box(-1.0, 1.0, (2,), np.float32), np.array([0.25, -1.0]), [0.25, -1.0]),
        (spaces.Discrete(3, start=1), 3, [0.0, 0.0, 1.0]),
    ],
)
def test_actions_inside_the_space_are_accepted_and_encoded(space, action, encoding) -> None:
    assert stmg.ActionCodec(space).contains(action)
    assert stmg.encode_action(space, action).tolist() == encoding
