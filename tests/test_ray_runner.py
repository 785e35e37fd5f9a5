"""Runs over Ray give the rows of local runs with the same seeds (a local Ray instance)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from runner.launch import launch
from runner.presets import algo_config
from runner.run import RunSpec

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'stmg-step[ray]')")


def _specs() -> list[RunSpec]:
    config = algo_config("matrix", "step", {"n_envs": 2, "steps_per_collect": 100})
    return [RunSpec(env="matrix/penalty-v0", env_kwargs={"episode_length": 5}, algo="step", seed=seed, steps=200,
                    eval_every=100, eval_episodes=2, config=config.to_dict()) for seed in (0, 1)]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "curves.csv", newline="") as f:
        # wall_s differs; learner statistics are not in a population's rows
        rows = [{k: v for k, v in r.items() if k != "wall_s" and not k.startswith("train_")}
                for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: (r["seed"], int(r["env_steps"])))


def test_ray_rows_equal_local_rows(tmp_path: Path) -> None:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = launch(_specs(), tmp_path / "ray", ray_address="local", show_progress=False)
        assert [(r.seed, r.env_steps) for r in results] == [(0, 200), (1, 200)]
        # The two seeds as one population in one Ray task: the same rows.
        results = launch(_specs(), tmp_path / "ray_population", ray_address="local", show_progress=False,
                         population=2)
        assert [(r.seed, r.env_steps) for r in results] == [(0, 200), (1, 200)]
        assert (tmp_path / "ray_population" / "runs" / "matrix_penalty-v0_episode_length=5" / "step" /
                "population_0-1_k2" / "state.pt").exists()
        # A Ray task that cannot see the output directory says so.
        (tmp_path / "ray" / ".stmg-harness").write_text("stale")
        from runner.launch import _ray_task

        bad = ray.remote(num_cpus=1)(_ray_task).remote([_specs()[0].to_dict()], str(tmp_path / "ray"), "token",
                                                       False, False, "fail")
        with pytest.raises(ray.exceptions.RayTaskError, match="not visible on Ray node"):
            ray.get(bad)
    finally:
        ray.shutdown()
    launch(_specs(), tmp_path / "local", workers=1, show_progress=False)
    ray_rows, local_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert len(ray_rows) == 6 and ray_rows == local_rows
    assert _rows(tmp_path / "ray_population") == local_rows
