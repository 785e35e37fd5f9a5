"""Curves and bar charts from curves.csv: intervals, alignment over seeds, and the figure."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from runner.plots import (
    curve_bands,
    final_scores,
    final_table,
    final_values,
    mean_interval,
    plot_curves,
    plot_scores,
    read_curves,
    read_final,
    scores_markdown,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    columns = ["env", "algo", "seed", "env_steps", "eval_return", "avg_speed", "collision_rate"]
    with open(path / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _load_script(name: str) -> ModuleType:
    """examples/NAME.py as a module (its ``main`` takes argv)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / f"examples/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_interval_by_hand() -> None:
    scores = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])  # (3 seeds, 3 points)
    mean, low, high = mean_interval(scores, reps=500)
    np.testing.assert_allclose(mean, [3.0, 5.0, 5.0])
    # A percentile bootstrap of a mean lies within the range of the data and brackets the mean.
    assert np.all(low <= mean) and np.all(mean <= high)
    assert np.all(low >= scores.min(0)) and np.all(high <= scores.max(0))
    assert low[1] == high[1] == 5.0  # all seeds agree: no width
    assert low[0] < 3.0 < high[0]
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    for _ in range(20):  # seeded: the same figure every time
        again = mean_interval(scores, reps=500)
        np.testing.assert_array_equal(again[1], low)
        np.testing.assert_array_equal(again[2], high)
    assert np.random.random() == before  # and the global NumPy stream is left as it was
    one = mean_interval(scores[:1])
    assert np.isnan(one[1]).all() and np.isnan(one[2]).all()


def test_scipy_fallback_agrees_with_rliable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rliable")
    rng = np.random.default_rng(0)
    scores = rng.normal(10.0, 2.0, size=(10, 4))
    _, low_r, high_r = mean_interval(scores, reps=4000)
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable now fails
    _, low_s, high_s = mean_interval(scores, reps=4000)
    np.testing.assert_allclose(low_s, low_r, atol=0.25)
    np.testing.assert_allclose(high_s, high_r, atol=0.25)


def test_bands_align_seeds_and_final_values(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = []
    for seed, offset in ((0, 0.0), (1, 2.0)):
        for t in (0, 100, 200):
            rows.append({"env": "merge/easy-v0", "algo": "step", "seed": seed, "env_steps": t,
                         "eval_return": t / 100 + offset, "avg_speed": 20 + seed, "collision_rate": 0.5 * seed})
    rows.append({"env": "merge/easy-v0", "algo": "step", "seed": 0, "env_steps": 300, "eval_return": 7.0,
                 "avg_speed": 25.0, "collision_rate": 0.0})  # seed 0 is further along
    _write(tmp_path / "a", rows)
    read = read_curves([tmp_path / "a"])
    band = curve_bands(read, reps=200)["merge/easy-v0"]["step"]
    np.testing.assert_array_equal(band.steps, [0, 100, 200, 300])
    np.testing.assert_allclose(band.mean, [1.0, 2.0, 3.0, 7.0])
    assert band.n_seeds == 2 and np.isnan(band.low[3]) and np.isfinite(band.low[:3]).all()
    final = final_values(read, "avg_speed")["merge/easy-v0"]["step"]
    assert sorted(final.tolist()) == [21.0, 25.0]  # each run's last evaluation
    out = plot_curves(read, tmp_path / "fig.png", reps=200)
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no row has a value for 'nope'"):
        plot_curves(read, tmp_path / "x.png", metric="nope")
    with pytest.raises(FileNotFoundError, match="no curves file"):
        read_curves([tmp_path / "missing"])


def test_plot_curves_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[dict[str, object]] = [
        {"env": env, "algo": algo, "seed": seed, "env_steps": t, "eval_return": t * (1 + seed)}
        for env in ("mamujoco/HalfCheetah-2x3-v0", "matrix/penalty-v0") for algo in ("step", "mappo")
        for seed in range(3) for t in (0, 10, 20)]
    _write(tmp_path / "run1", rows[: len(rows) // 2])
    _write(tmp_path / "run2", rows[len(rows) // 2:])
    module = _load_script("plot_curves")
    path = module.main([str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(tmp_path / "f.png"),
                        "--reps", "200"])
    out = capsys.readouterr().out
    assert path.exists() and "36 evaluations" in out
    # The table of each run's last evaluation: seeds at 20 * (1 + seed), all at step 20.
    # Last 3: the mean of 0, 10 and 20 times (1 + seed), over the seeds: 10 * 2 = 20.
    assert ("matrix/penalty-v0  mappo: 40.0 [20.0, 60.0]  seeds: 20.0 (20 steps), 40.0 (20 steps), 60.0 (20 steps); "
            "last 3: 20.0") in out
    with pytest.raises(SystemExit) as exc:
        module.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "g.png")])
    assert exc.value.code == 2


def test_labels_make_settings_separate_curves_and_algos_filter(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The regulariser ablation: one algorithm, one directory per beta, one curve per beta."""
    for beta, level in (("0", 1.0), ("10", 5.0)):
        _write(tmp_path / f"beta{beta}", [
            {"env": "mamujoco/HalfCheetah-6x1-v0", "algo": algo, "seed": seed, "env_steps": t,
             "eval_return": level + seed + (100 if algo == "happo" else 0)}
            for algo in ("step", "happo") for seed in (0, 1) for t in (0, 10)])
    rows = read_curves([tmp_path / "beta0", tmp_path / "beta10"], labels=["beta=0", "beta=10"], algos=["step"])
    bands = curve_bands(rows, reps=200)["mamujoco/HalfCheetah-6x1-v0"]
    assert sorted(bands) == ["step beta=0", "step beta=10"]
    np.testing.assert_allclose(bands["step beta=0"].mean, [1.5, 1.5])
    np.testing.assert_allclose(bands["step beta=10"].mean, [5.5, 5.5])
    with pytest.raises(ValueError, match=r"got 1 labels \['beta=0'\] for 2 curve directories"):
        read_curves([tmp_path / "beta0", tmp_path / "beta10"], labels=["beta=0"])
    module = _load_script("plot_curves")
    path = module.main([str(tmp_path / "beta0"), str(tmp_path / "beta10"), "--labels", "beta=0", "beta=10",
                        "--algos", "step", "--out", str(tmp_path / "beta.png"), "--reps", "200"])
    assert path.exists() and "8 evaluations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        module.main([str(tmp_path / "beta0"), "--algos", "maddpg", "--out", str(tmp_path / "none.png")])
    assert exc.value.code == 2
    assert "no rows of the algorithms ['maddpg']" in capsys.readouterr().err


def test_seeds_filter_curves_and_final_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--seeds keeps only the runs of those seeds: e.g. the finished ones beside one in progress."""
    env = "mamujoco/ManyAgentAnt-6x1-v0"
    _write(tmp_path / "beta1", [
        {"env": env, "algo": "step", "seed": seed, "env_steps": t, "eval_return": 100.0 * seed + t}
        for seed in (0, 1, 2) for t in ((0, 10) if seed < 2 else (0,))])  # seed 2 still running
    rows = read_curves([tmp_path / "beta1"], seeds=[0, 1])
    assert sorted({r["seed"] for r in rows}) == ["0", "1"] and len(rows) == 4
    band = curve_bands(rows, reps=200)[env]["step"]
    np.testing.assert_allclose(band.mean, [50.0, 60.0])  # (0 + 100) / 2, (10 + 110) / 2
    table = tmp_path / "final_eval.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, ["env", "algo", "seed", "checkpoint", "eval_return", "avg_speed",
                                    "collision_rate"])
        writer.writeheader()
        for seed in (0, 1, 2):
            writer.writerow({"env": env, "algo": "step", "seed": seed, "checkpoint": "last.pt",
                             "eval_return": 7.0 * seed, "avg_speed": "", "collision_rate": ""})
    assert [r["seed"] for r in read_final([table], seeds=[2])] == ["2"]
    module = _load_script("plot_curves")
    path = module.main([str(tmp_path / "beta1"), "--seeds", "0", "1", "--out", str(tmp_path / "b.png"),
                        "--reps", "200"])
    assert path.exists() and "4 evaluations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        module.main([str(tmp_path / "beta1"), "--seeds", "5", "--out", str(tmp_path / "none.png")])
    assert exc.value.code == 2
    assert "no rows of any algorithm with seeds [5]" in capsys.readouterr().err


def test_final_evaluations_feed_the_bars_and_the_printed_table(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "merge", [
        {"env": "merge/easy-v0", "algo": algo, "seed": seed, "env_steps": t, "eval_return": t,
         "avg_speed": 99.0, "collision_rate": 1.0}  # training-time values the table must not show
        for algo in ("step", "mappo") for seed in (0, 1) for t in (0, 10)])
    table = tmp_path / "final_eval.csv"
    columns = ["env", "algo", "seed", "checkpoint", "eval_return", "avg_speed", "collision_rate"]
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerow({"env": "merge/easy-v0", "algo": "step", "seed": 0, "checkpoint": "old",
                         "eval_return": -50.0, "avg_speed": 1.0, "collision_rate": 1.0})  # replaced below
        for algo, seed, ret, speed, crash in (("step", 0, 10.0, 24.0, 0.2), ("step", 1, 30.0, 26.0, 0.0),
                                               ("mappo", 0, 0.0, 22.0, 0.4), ("mappo", 1, 4.0, 22.0, 0.6)):
            writer.writerow({"env": "merge/easy-v0", "algo": algo, "seed": seed, "checkpoint": "last.pt",
                             "eval_return": ret, "avg_speed": speed, "collision_rate": crash})
    rows = read_final([table])
    assert len(rows) == 4  # the last row per run
    np.testing.assert_allclose(final_table(rows, "avg_speed")["merge/easy-v0"]["step"], [24.0, 26.0])
    np.testing.assert_allclose(final_table(rows, "collision_rate")["merge/easy-v0"]["mappo"], [0.4, 0.6])
    assert [r["algo"] for r in read_final([table], algos=["mappo"])] == ["mappo", "mappo"]
    module = _load_script("plot_curves")
    path = module.main([str(tmp_path / "merge"), "--final", str(table), "--out", str(tmp_path / "m.png"),
                        "--reps", "200"])
    out = capsys.readouterr().out
    assert path.exists()
    assert "merge/easy-v0  step (2 runs): eval_return 20.00 [10.00, 30.00]  avg_speed 25.00 [24.00, 26.00]" in out
    assert "collision_rate 0.50 [0.40, 0.60]" in out  # mappo
    bad = tmp_path / "curves_not_final.csv"
    bad.write_text("env,algo,seed,env_steps\nx,step,0,1\n")
    with pytest.raises(ValueError, match="has no column eval_return, avg_speed, collision_rate"):
        read_final([bad])
    with pytest.raises(SystemExit):
        module.main([str(tmp_path / "merge"), "--final", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "n.png")])
    assert "no final-evaluation table at" in capsys.readouterr().err


def test_scoreboard_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Final scores per run, their mean and interval, the table, unfinished runs, labels."""
    env = "mamujoco/Ant-4x2-v0"
    rows: list[dict[str, object]] = []
    for seed, curve in ((0, [0.0, 100.0, 400.0, 1000.0]), (1, [0.0, 200.0, 500.0, 2000.0]),
                        (10, [0.0, 300.0, 900.0, 3000.0])):
        rows += [{"env": env, "algo": "step", "seed": seed, "env_steps": 10 * k, "eval_return": v}
                 for k, v in enumerate(curve)]
    # An unfinished run: seed 1 of happo stopped at step 20.
    rows += [{"env": env, "algo": "happo", "seed": seed, "env_steps": 10 * k, "eval_return": 50.0 * (1 + seed)}
             for seed in (0, 1) for k in range(4 if seed == 0 else 3)]
    _write(tmp_path / "a", rows)
    scores = final_scores(read_curves([tmp_path / "a"]), reps=300)[env]
    step = scores["step"]
    assert step.seeds == ["0", "1", "10"]  # numeric order, not "0", "1", "10" by accident of text
    np.testing.assert_allclose(step.values, [1000.0, 2000.0, 3000.0])
    assert step.mean == 2000.0 and 1000.0 <= step.low < 2000.0 < step.high <= 3000.0
    np.testing.assert_array_equal(scores["happo"].steps, [30, 20])
    last2 = final_scores(read_curves([tmp_path / "a"]), last=2, reps=300)[env]["step"]
    np.testing.assert_allclose(last2.values, [700.0, 1250.0, 1950.0])  # mean of the last two
    table = scores_markdown({env: scores})
    lines = table.splitlines()
    # Best mean first; thousands separators; the unequal steps of happo's runs are flagged.
    assert lines[2] == (f"| {env} | step | 1,000 (s0) / 2,000 (s1) / 3,000 (s10) | "
                        f"2,000 [{step.low:,.0f}, {step.high:,.0f}] | 30 | last training-time evaluation |")
    assert lines[3] == (f"| {env} | happo | 50 (s0) / 100 (s1) | 75 [50, 100] | 20, 30 (unequal) | "
                        "last training-time evaluation |")
    _write(tmp_path / "m", [{"env": "merge/easy-v0", "algo": "ippo", "seed": seed, "env_steps": 0,
                             "eval_return": value} for seed, value in ((0, 1.5), (1, 2.5))])
    small = scores_markdown(final_scores(read_curves([tmp_path / "m"]), reps=300))  # small values: decimals
    assert small.splitlines()[2] == ("| merge/easy-v0 | ippo | 1.5 (s0) / 2.5 (s1) | 2.0 [1.5, 2.5] | 0 | "
                                     "last training-time evaluation |")
    assert plot_scores({env: scores}, tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ValueError, match="last=0"):
        final_scores(read_curves([tmp_path / "a"]), last=0)
    with pytest.raises(ValueError, match="no row has a value for 'avg_speed'"):
        final_scores(read_curves([tmp_path / "a"]), "avg_speed")
    # The script: an empty label keeps the names, a label makes a separate row.
    _write(tmp_path / "b", [dict(r, eval_return=float(r["eval_return"]) + 1.0) for r in rows  # type: ignore[arg-type]
                            if r["algo"] == "step"])
    module = _load_script("plot_scores")
    md = tmp_path / "scores.md"
    path = module.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "", "beta=10",
                        "--out", str(tmp_path / "t.png"), "--reps", "200", "--markdown", str(md)])
    out = capsys.readouterr().out
    assert path.exists() and "| step beta=10 | 1,001 (s0) / 2,001 (s1) / 3,001 (s10) |" in out
    assert "| step | 1,000 (s0)" in out and md.read_text() in out
    # --final-evals: a DIR's final_eval.csv scores the runs it evaluated (labelled as the DIR).
    with open(tmp_path / "b" / "final_eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["env", "algo", "seed", "checkpoint", "episodes", "eval_return",
                                    "avg_speed", "collision_rate"])
        writer.writeheader()
        for seed, value in ((0, 10.0), (1, 20.0), (10, 30.0)):
            writer.writerow({"env": env, "algo": "step", "seed": seed, "checkpoint": "last.pt", "episodes": 20,
                             "eval_return": value, "avg_speed": "", "collision_rate": ""})
    module.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "", "beta=10", "--final-evals",
                 "--out", str(tmp_path / "t2.png"), "--reps", "200"])
    out = capsys.readouterr().out
    assert "| step beta=10 | 10.0 (s0) / 20.0 (s1) / 30.0 (s10) | 20.0 [" in out
    assert out.rstrip().splitlines()[-1].endswith("| final evaluation (20 episodes) |")  # the lowest mean: last
    assert "| step | 1,000 (s0)" in out  # DIR a has no final evaluations: its rows stay
    mixed = final_scores(read_curves([tmp_path / "a"]), reps=200, final=[
        {"env": env, "algo": "step", "seed": "1", "eval_return": "7.0", "episodes": "50"}])[env]["step"]
    np.testing.assert_allclose(mixed.values, [1000.0, 7.0, 3000.0])
    assert mixed.source == "mixed"
    # --min-steps leaves out happo's unfinished seed 1 (stopped at step 20).
    module.main([str(tmp_path / "a"), "--min-steps", "30", "--out", str(tmp_path / "t3.png"),
                 "--reps", "200"])
    assert f"| {env} | happo | 50.0 (s0) | 50.0 | 30 | last training-time evaluation |" in capsys.readouterr().out
    for bad in (["--last", "0"], ["--reps", "10"], ["--min-steps", "40"]):
        with pytest.raises(SystemExit) as exc:
            module.main([str(tmp_path / "a"), "--out", str(tmp_path / "u.png"), *bad])
        assert exc.value.code == 2
