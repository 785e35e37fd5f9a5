"""examples/diagnose_matrix.py: best replies to the trained subordinates, by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "diagnose_matrix", Path(__file__).resolve().parents[1] / "examples" / "diagnose_matrix.py")
assert _spec is not None and _spec.loader is not None
diagnose_matrix = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = diagnose_matrix
_spec.loader.exec_module(diagnose_matrix)

# Two agents, two actions each. Leader's payoffs row by row, follower's below.
PAYOFFS = np.array([[[3.0, 0.0], [2.0, 1.0]],
                    [[1.0, 0.0], [0.0, 1.0]]])
# SE: the follower answers a0 with a0 (1 > 0) and a1 with a1; the leader gets 3 for a0, 1 for a1: (0, 0).


def test_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    # Trained replies (made up): the leader plays 1; the follower answers 0 with 1 (wrong:
    # 0 > ... its payoff 0 for a1 against 1 for a0) and 1 with 1 (right).
    table: dict[Any, Any] = {(): (1, np.array([0.2, 0.8])), (0,): (1, np.array([0.4, 0.6])),
                             (1,): (1, np.array([0.1, 0.9]))}
    monkeypatch.setattr(diagnose_matrix, "greedy_replies", lambda model, payoffs: table)
    d = diagnose_matrix.diagnose(None, PAYOFFS)
    assert d.path == (1, 1) and not d.is_se
    # Against the trained follower the leader gets 0 for a0 (the follower answers with a1) and
    # 1 for a1: a1 is its best reply, so the leader is right; the follower is wrong in 1 of 2.
    assert d.wrong_contexts == [(0, 1), (1, 2)]
    assert d.path_errors == []
    table[(1,)] = (0, np.array([0.7, 0.3]))  # now the follower answers a1 with a0 (payoff 0 < 1)
    d = diagnose_matrix.diagnose(None, PAYOFFS)
    # path: leader 1, follower 0 -> (1, 0). Leader's values: a0 -> (0, 1): 0; a1 -> (1, 0): 2.
    assert d.path == (1, 0) and d.wrong_contexts == [(0, 1), (2, 2)]
    assert d.path_errors == [{"position": 1, "context": (1,), "played": 0, "best": 1, "values": [0.0, 1.0],
                              "probabilities": [0.7, 0.3]}]


SE_PENALTY = (0, 2)  # envs.matrix.stackelberg_equilibrium(penalty(k)) for k < 0 (the table's orientation)


def test_trained_trials_on_penalty(capsys: pytest.CaptureFixture[str]) -> None:
    results = diagnose_matrix.main(["--game", "penalty", "--k", "-25", "--trials", "2", "--steps", "4000"])
    assert len(results) == 2
    for d in results:
        assert d.wrong_contexts[0][1] == 1 and d.wrong_contexts[1][1] == 3
        assert d.is_se == (d.path == SE_PENALTY)
    assert "SE in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        diagnose_matrix.main(["--trials", "0"])
    with pytest.raises(SystemExit):  # populations do not train reward scaling
        diagnose_matrix.main(["--set", "reward_scaling=True", "--trials", "1", "--steps", "400"])
