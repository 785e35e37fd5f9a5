"""Smoke run of the paper-reproduction script at a tiny size, and its merge of earlier runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples/reproduce_matrix.py"


def test_reproduce_matrix_writes_json_markdown_and_figure(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--algos", "step", "mappo", "--trials", "1", "--steps", "200",
         "--workers", "2", "--settings", "mixing", "penalty-100", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "run/matrix_results.json").read_text())
    assert set(data["results"]) == {"step", "mappo"}
    for algo in ("step", "mappo"):
        assert set(data["results"][algo]) == {"mixing", "penalty-100"}
        trial = data["results"][algo]["mixing"][0]
        assert len(trial["greedy_joint_action"]) == 2 and len(trial["action_probs"]) == 2
        # The reported rewards are the Mixing payoffs of the greedy joint action.
        a1, a2 = trial["greedy_joint_action"]
        mixing = [[(0, 5), (-10, -5), (-8, 4)], [(-5, -10), (-5, 0), (-15, -5)], [(5, 0), (-10, -5), (-10, 5)]]
        assert trial["rewards"] == list(map(float, mixing[a1][a2]))
    markdown = (tmp_path / "run/matrix_results.md").read_text()
    assert "| step |" in markdown and "| mappo |" in markdown and "Table 1" in markdown
    assert (tmp_path / "run/penalty_outcomes.png").stat().st_size > 1000

    merged = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-json", str(tmp_path / "run/matrix_results.json"),
         "--out", str(tmp_path / "merged")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert merged.returncode == 0, merged.stderr
    assert json.loads((tmp_path / "merged/matrix_results.json").read_text())["results"] == data["results"]


def test_bad_setting_is_rejected() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--settings", "penaltyX"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "unknown setting 'penaltyX'" in out.stderr
