"""Smoke runs of the STEP examples at tiny sizes, and the slow statistical convergence check."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quickstart_smoke() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples/quickstart.py"), "--steps", "200",
                          "--seeds", "2"], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("learned greedy joint action") == 2
    assert "Stackelberg equilibrium: (0, 2)" in out.stdout
    assert "STEP found the SE in " in out.stdout and "/2 seeds." in out.stdout


def test_train_matrix_smoke_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/train_matrix.py"), "--algo", "step", "--game", "penalty",
         "--k", "-100", "--steps", "200", "--trials", "1", "--workers", "1", "--out", str(path)],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    summary = json.loads(path.read_text())
    trial = summary["trials"][0]
    assert set(trial) >= {"seed", "greedy_joint_action", "action_probs", "is_se"}
    assert summary["stackelberg_equilibrium"] == [0, 2]


@pytest.mark.parametrize("algo", ["mappo", "ippo", "happo"])
def test_train_matrix_baselines_in_process(algo: str, tmp_path: Path) -> None:
    module = _load("examples/train_matrix.py")
    summary = module.main(["--algo", algo, "--game", "mixing", "--steps", "200", "--trials", "1",
                           "--workers", "1", "--out", str(tmp_path / "o.json")])
    assert len(summary["trials"]) == 1 and summary["algo"] == algo


def test_train_matrix_maddpg_in_process(tmp_path: Path) -> None:
    module = _load("examples/train_matrix.py")
    out = tmp_path / "m.json"
    summary = module.main(["--algo", "maddpg", "--game", "penalty", "--k", "-50", "--steps", "700",
                           "--trials", "1", "--workers", "1", "--out", str(out)])
    trial = json.loads(out.read_text())["trials"][0]
    assert summary["algo"] == "maddpg" and len(trial["greedy_joint_action"]) == 2
    assert [len(p) for p in trial["action_probs"]] == [3, 3]
    assert summary["config"]["batch_size"] > 0, "the MADDPG configuration is recorded"


def test_train_matrix_three_agents_from_file(tmp_path: Path) -> None:
    payoffs = np.random.default_rng(0).normal(size=(3, 2, 3, 2))
    np.save(tmp_path / "game.npy", payoffs)
    module = _load("examples/train_matrix.py")
    summary = module.main(["--payoffs", str(tmp_path / "game.npy"), "--steps", "200",
                           "--trials", "1", "--workers", "1"])
    assert len(summary["trials"][0]["greedy_joint_action"]) == 3
    assert [len(p) for p in summary["trials"][0]["action_probs"]] == [2, 3, 2]


@pytest.mark.slow
def test_step_finds_the_se_on_penalty() -> None:
    """20 seeds never used for tuning (1000-1019). Measured rate with the preset: 139/140 on
    seeds 0-39 and 100-199 (docs/RESULTS.md), so 20 trials expect 19.9 with a std of 0.4;
    the threshold 18 is about 5 std below, and a rate of 97% would still pass in 98% of runs."""
    module = _load("examples/train_matrix.py")
    summary = module.main(["--algo", "step", "--game", "penalty", "--k", "-100", "--steps", "10000",
                           "--trials", "20", "--seed", "1000", "--workers", "2"])
    hits = sum(t["is_se"] for t in summary["trials"])
    assert hits >= 18, f"STEP found the SE in only {hits}/20 trials: {summary['trials']}"


def test_wrapper_demo_plays_the_equilibrium() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples/wrapper_demo.py"), "--steps", "2"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("follower sees leader action a1 -> plays a3") == 2
    assert "Stackelberg equilibrium of Penalty(k=-100): (a1, a3)" in out.stdout


def test_training_writes_tensorboard_logs(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents import STEPConfig, train
    from envs import matrix

    train(lambda: matrix.MatrixGame(matrix.mixing()), config=STEPConfig.matrix_games(), total_steps=800,
          seed=0, logdir=str(tmp_path))
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {list(tmp_path.iterdir())}"
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert any("train" in tag for tag in tags), tags


def test_train_matrix_set_overrides_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("examples/train_matrix.py")
    summary = module.main(["--trials", "1", "--steps", "400", "--workers", "1",
                           "--set", "value_normalization=True", "entropy=0.15", "--out", str(tmp_path / "s.json")])
    assert summary["config"]["value_normalization"] is True and summary["config"]["entropy"] == 0.15
    assert summary["config"]["gamma"] == 0.0, "the rest is the matrix-game preset"
    with pytest.raises(SystemExit):
        module.main(["--set", "entropy"])
    assert "--set: 'entropy' is not FIELD=VALUE" in capsys.readouterr().err
