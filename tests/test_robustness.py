"""Adversarial input to the matrix games, the action checks and the checkpoints (issue 11).

Each check holds a value worked out by hand: the wrapped int8 that used to pass, the equilibrium
that a copied payoff table must keep, the exact bytes of a checkpoint that a failed save must
leave alone.
"""

from __future__ import annotations

import copy
import os
import re
import resource
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import stmg
from agents import (
    CheckpointError,
    CheckpointMismatchError,
    JointStepEnv,
    Learner,
    STEPConfig,
    load_checkpoint,
    load_into,
    save_checkpoint,
    train,
)
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
    int8_order = np.array([1, 0], dtype=np.int8)
    assert stackelberg_equilibrium(mixing(), order=int8_order)[0] == (0, 2)


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


# --- checkpoints --------------------------------------------------------------------------------

CHECKPOINT_CONFIG = STEPConfig(n_envs=2, steps_per_collect=100, hidden_size=16)


@pytest.fixture(scope="module")
def trained() -> tuple[Learner, Learner]:
    """Two learners for the Mixing game, trained with different seeds: both have Adam moments."""
    return tuple(  # type: ignore[return-value]
        train(lambda: MatrixGame(mixing()), config=CHECKPOINT_CONFIG, total_steps=200, seed=seed)
        for seed in (0, 1)
    )


def frozen(learner: Learner) -> dict[str, Any]:
    """A deep copy of every parameter and the optimiser state, to compare bit for bit."""
    return copy.deepcopy(learner.algorithm.state_dict())


def assert_same_state(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{path} changed"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys changed"
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: length changed"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} -> {b!r}"


def doctored(source: Path, target: Path, change) -> Path:
    data = torch.load(source, weights_only=True)
    change(data)
    torch.save(data, target)
    return target


def a_float_weight(learner: Learner) -> tuple[str, torch.Tensor]:
    """The checkpoint name and value of the learner's last trainable model parameter."""
    name, parameter = list(learner.model.named_parameters())[-1]
    return f"model.{name}", parameter.detach()


def test_checkpoint_with_one_wrong_tensor_leaves_the_learner_unchanged(trained, tmp_path: Path) -> None:
    source, target = trained
    assert target.algorithm.state_dict()["_optimizers"][0]["state"], "the target must have Adam moments"
    save_checkpoint(source, tmp_path / "good.pt")
    name, value = a_float_weight(source)
    shape, dtype = tuple(value.shape), value.dtype
    wrong = (shape[0] + 1, *shape[1:])

    def widen(data: dict[str, Any]) -> None:
        data["algorithm"][name] = torch.zeros(wrong, dtype=dtype)

    before = frozen(target)
    with pytest.raises(CheckpointMismatchError) as rejected:
        load_into(target, doctored(tmp_path / "good.pt", tmp_path / "bad.pt", widen))
    assert_same_state(before, frozen(target))  # every parameter and the Adam moments
    assert f"{name} has shape {wrong} {dtype}, expected {shape} {dtype}" in str(rejected.value)


def test_checkpoint_from_before_a_signature_field_existed_still_loads(trained, tmp_path: Path) -> None:
    # Checkpoints written before the state, identity and image fields joined the game's
    # signature were written for their defaults: they load; a stored non-default still differs.
    source, target = trained[0], copy.deepcopy(trained[1])  # the fixture's learners stay as they are
    save_checkpoint(source, tmp_path / "good.pt")
    # The defaults of the fields added later; this learner's critics read Mixing's state.
    defaults = {"distinct_observations": False, "image_shape": None, "image_channels_first": False}
    assert source.spec.signature()["state_dim"] == 1

    def older(data: dict[str, Any]) -> None:
        for key, value in defaults.items():
            assert data["spec"][key] == value
            del data["spec"][key]

    load_into(target, doctored(tmp_path / "good.pt", tmp_path / "old.pt", older))
    assert_same_state(frozen(source), frozen(target))  # every parameter and the Adam moments

    def without_state(data: dict[str, Any]) -> None:  # written before state_dim: for no state
        del data["spec"]["state_dim"]

    with pytest.raises(CheckpointMismatchError, match="state_dim: checkpoint has 0, this game has 1"):
        load_into(target, doctored(tmp_path / "good.pt", tmp_path / "nostate.pt", without_state))

    def channels_first(data: dict[str, Any]) -> None:
        data["spec"]["image_channels_first"] = True

    with pytest.raises(CheckpointMismatchError, match="image_channels_first: checkpoint has True, this game has False"):
        load_into(target, doctored(tmp_path / "good.pt", tmp_path / "cf.pt", channels_first))


def test_checkpoint_with_a_wrong_optimiser_state_leaves_the_learner_unchanged(trained, tmp_path: Path) -> None:
    source, target = trained
    save_checkpoint(source, tmp_path / "good.pt")
    shapes = []

    def bad_moment(data: dict[str, Any]) -> None:
        moments = data["algorithm"]["_optimizers"][0]["state"][0]
        shapes.append(tuple(moments["exp_avg"].shape))
        moments["exp_avg"] = torch.zeros(3)

    before = frozen(target)
    with pytest.raises(CheckpointMismatchError) as rejected:
        load_into(target, doctored(tmp_path / "good.pt", tmp_path / "bad.pt", bad_moment))
    assert_same_state(before, frozen(target))
    assert f"state exp_avg of parameter 0 has shape (3,), expected {shapes[0]}" in str(rejected.value)


def test_non_finite_weights_are_rejected_on_load_and_not_saved(trained, tmp_path: Path) -> None:
    source, target = trained
    save_checkpoint(source, tmp_path / "good.pt")
    name, _ = a_float_weight(source)

    def poison(data: dict[str, Any]) -> None:
        data["algorithm"][name].view(-1)[0] = float("nan")

    before = frozen(target)
    # policy.model.* and model.* are the same tensors (the policy holds the model), so both show.
    with pytest.raises(CheckpointError, match=rf"NaN or infinite values in (policy\.)?{re.escape(name)}"):
        load_into(target, doctored(tmp_path / "good.pt", tmp_path / "nan.pt", poison))
    assert_same_state(before, frozen(target))

    good_bytes = (tmp_path / "good.pt").read_bytes()
    diverged = copy.deepcopy(source)
    with torch.no_grad():
        next(diverged.model.parameters()).view(-1)[-1] = float("inf")
    with pytest.raises(CheckpointError, match=r"not saving .*NaN or infinite.*left as it was"):
        save_checkpoint(diverged, tmp_path / "good.pt")
    assert (tmp_path / "good.pt").read_bytes() == good_bytes


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(trained, tmp_path: Path) -> None:
    source, other = trained
    path = tmp_path / "step.pt"
    save_checkpoint(other, path)
    good_bytes = path.read_bytes()
    # The file-size limit makes the write fail with EFBIG part way through (Python ignores
    # SIGXFSZ), as a full disk would; torch.save onto ``path`` itself used to truncate it first.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(good_bytes) // 3, hard))
    try:
        with pytest.raises(OSError):
            save_checkpoint(source, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == good_bytes, "the previous checkpoint must be intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.pt"], "no temporary file may be left"
    restored = load_checkpoint(path, spec=other.spec)
    assert_same_state(other.model.state_dict(), restored.model.state_dict())


def test_a_save_interrupted_inside_torch_save_keeps_the_previous_checkpoint(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, other = trained
    path = tmp_path / "step.pt"
    save_checkpoint(other, path)
    good_bytes = path.read_bytes()
    real_save = torch.save

    def save_then_die(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, file, *args, **kwargs)
        raise KeyboardInterrupt  # after the bytes went out, before the rename

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(source, path)
    assert path.read_bytes() == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.pt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, this is a text file\n", "is not a readable PyTorch checkpoint"),
        (b"", r"is empty \(0 bytes\)"),
        (b"PK\x03\x04 truncated zip", "is not a readable PyTorch checkpoint"),
    ],
)
def test_unreadable_files_name_the_file_and_the_fault(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    spec = JointStepEnv(env=MatrixGame(mixing())).joint_spec
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))} {message}"):
        load_checkpoint(path, spec=spec)


@pytest.mark.parametrize("key", ["config", "spec", "algorithm"])
def test_checkpoint_missing_an_entry_names_it(trained, tmp_path: Path, key: str) -> None:
    source, target = trained
    save_checkpoint(source, tmp_path / "good.pt")
    path = doctored(tmp_path / "good.pt", tmp_path / "partial.pt", lambda data: data.pop(key))
    before = frozen(target)
    with pytest.raises(CheckpointError, match=rf"partial.pt has no '{key}' entry"):
        load_into(target, path)
    with pytest.raises(CheckpointError, match=rf"partial.pt has no '{key}' entry"):
        load_checkpoint(path, spec=target.spec)
    assert_same_state(before, frozen(target))


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(os.environ["STMG_TEST_MARKER"]),))


def test_a_pickled_object_is_refused_without_running_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("STMG_TEST_MARKER", str(marker))
    torch.save({"format_version": 1, "config": {}, "spec": {}, "algorithm": {"x": _Payload()}}, tmp_path / "evil.pt")
    spec = JointStepEnv(env=MatrixGame(mixing())).joint_spec
    with pytest.raises(CheckpointError, match="was not loaded.*no code in it can run"):
        load_checkpoint(tmp_path / "evil.pt", spec=spec)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path, spec=spec)
