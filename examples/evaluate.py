"""Evaluate a saved model greedily: returns, lengths and the merge metrics; optionally a video.

    python examples/evaluate.py runs/merge-easy/runs/merge_easy-v0/step/seed_0/best.pt --episodes 20
    python examples/evaluate.py .../last.pt --episodes 5 --video halfcheetah.gif
    python examples/evaluate.py .../last.pt --env matrix/penalty-v0 --env-kwargs k=-50 --mode decentralized
    python examples/evaluate.py runs/merge-easy/runs/*/*/seed_*/last.pt --episodes 50 --seed 10000 --csv final.csv

The environment, its keyword arguments, the priority order and the base observation are read
from the run.json beside each checkpoint (written by examples/train.py); --env, --env-kwargs,
--order and --observation override them (and are required for a checkpoint without run.json).
Episodes are seeded like the training run's evaluations unless --seed is given: with --seed,
every checkpoint plays the same episodes, a paired comparison of final policies (a --seed that
is no run's seed gives other episodes than the training-time evaluations played). --csv
appends one row of mean metrics per checkpoint (the header is written once), so evaluations
can be added over time; the last command evaluates every final policy of a launch on 50 shared
episodes into final.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.adapter import JointStepEnv
from agents.execution import DecentralizedExecutionError
from runner.envs import EnvError, EnvRef, check_env, parse_env_kwargs
from runner.evaluation import Evaluator, eval_seeds, evaluate_decentralized, record_episode
from runner.learners import load_model
from runner.run import env_label


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="+", help="model files of runs (last.pt or best.pt)")
    parser.add_argument("--env", default=None, help="environment id or module:callable (default: from run.json)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                        help="environment keyword arguments (default: from run.json; given, they replace those)")
    parser.add_argument("--order", nargs="+", default=None, metavar="AGENT",
                        help="priority order, leader first (default: from run.json)")
    parser.add_argument("--observation", choices=("own", "state"), default=None,
                        help="base observation (default: from run.json, else own)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    parser.add_argument("--batch", type=int, default=64,
                        help="episodes played at once, one policy pass per step for all of them (default: "
                             "64); the numbers do not depend on it")
    parser.add_argument("--seed", type=int, default=None,
                        help="select the evaluation seeds as for this run seed (default: the run's seed, else 0)")
    parser.add_argument("--mode", choices=("auto", "communicated", "decentralized"), default="auto",
                        help="auto: the harness's batched greedy evaluation (it says whether the numbers are "
                             "also those of decentralized execution); communicated: the same, forced; "
                             "decentralized: every agent recomputes its superiors' actions itself (STEP "
                             "models; needs common-knowledge inputs, e.g. --observation state)")
    parser.add_argument("--video", default=None, metavar="FILE",
                        help="record the first episode to FILE (.gif via Pillow; .mp4 needs imageio-ffmpeg)")
    parser.add_argument("--fps", type=int, default=20, help="video frames per second (default: 20)")
    parser.add_argument("--max-frames", type=int, default=400, help="at most this many video frames (default: 400)")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="append one row of mean metrics per checkpoint to FILE (created with a header)")
    return parser, parser.parse_args(argv)


CSV_COLUMNS = ("env", "env_kwargs", "algo", "seed", "checkpoint", "episodes", "eval_seed", "execution",
               "eval_return", "eval_return_std", "eval_length", "avg_speed", "collision_rate")
"""Columns of ``--csv``: the run (env named as in curves.csv, algo, seed from run.json), what was
evaluated, and the means (``examples/plot_curves.py --final`` draws its bar charts from them)."""


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate each checkpoint; print per-episode and mean metrics; return the mean metrics
    (of the last checkpoint)."""
    parser, args = parse_args(argv)
    paths = [Path(c) for c in args.checkpoint]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"checkpoint {', '.join(missing)} does not exist")
    for name in ("episodes", "batch", "fps", "max_frames"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.video is not None and Path(args.video).suffix.lower() not in (".gif", ".mp4"):
        parser.error(f"--video {args.video}: expected a .gif or .mp4 file name")
    if args.video is not None and len(paths) > 1:
        parser.error(f"--video records one model's episode; got {len(paths)} checkpoints")
    if args.csv is not None:
        if Path(args.csv).suffix.lower() != ".csv":
            parser.error(f"--csv {args.csv}: expected a .csv file name")
        header = _csv_header(Path(args.csv))
        if header is not None and header != list(CSV_COLUMNS):
            parser.error(f"--csv {args.csv} holds other columns ({', '.join(header)}); expected "
                         f"{', '.join(CSV_COLUMNS)}: give a new file")
    metrics: dict[str, Any] = {}
    for path in paths:
        metrics = _evaluate_checkpoint(parser, args, path)
    return metrics


def _evaluate_checkpoint(parser: argparse.ArgumentParser, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    run_json = path.parent / "run.json"
    stored: dict[str, Any] = json.loads(run_json.read_text())["spec"] if run_json.is_file() else {}
    env_id = args.env or stored.get("env")
    if env_id is None:
        parser.error(f"no run.json beside {path}: give --env")
    try:
        kwargs = parse_env_kwargs(args.env_kwargs) if args.env_kwargs is not None else dict(stored.get("env_kwargs", {}))
        ref = EnvRef(env_id, kwargs)
        check_env(ref).close()
    except EnvError as exc:
        parser.error(str(exc))
    order = args.order or stored.get("order")
    observation = args.observation or stored.get("observation", "own")
    seed = args.seed if args.seed is not None else int(stored.get("seed", 0))
    try:
        algo, policy, model = load_model(path, JointStepEnv(env=ref(), order=order, observation=observation))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))

    seeds = eval_seeds(seed, args.episodes)
    if args.mode == "decentralized":
        if model is None:
            parser.error(f"--mode decentralized needs a STEP-family model; {path} is {algo}")
        try:
            result = evaluate_decentralized(model, ref, order=order, observation=observation, seeds=seeds)
        except DecentralizedExecutionError as exc:
            parser.error(str(exc))
    else:
        evaluator = Evaluator(ref, order=order, observation=observation, episodes=args.episodes, seed=seed,
                              batch=args.batch)
        result = evaluator.evaluate(policy)
        evaluator.close()
        if args.mode == "communicated":
            result.execution = "communicated"
    print(f"{algo} model {path} on {env_id} {kwargs or ''}: {args.episodes} episodes, {result.execution} execution")
    for j, (ret, length) in enumerate(zip(result.episode_returns, result.lengths, strict=True)):
        extra = ""
        if result.speeds is not None:
            extra += f"  avg_speed {result.speeds[j]:.2f} m/s"
        if result.crashed is not None:
            extra += f"  crashed {bool(result.crashed[j])}"
        print(f"  episode {j} (seed {seeds[j]}): return {ret:.3f}  length {int(length)}{extra}")
    metrics = result.metrics()
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if v is not None}
    print("mean: " + "  ".join(f"{k} {v}" for k, v in shown.items()))
    if args.video is not None:
        _record(args, ref, policy, order, observation, seeds[0])
    if args.csv is not None:
        _append_row(Path(args.csv), {
            "env": env_label(env_id, kwargs), "env_kwargs": json.dumps(kwargs, sort_keys=True), "algo": algo,
            "seed": stored.get("seed", ""), "checkpoint": str(path), "episodes": args.episodes, "eval_seed": seed,
            **{k: ("" if v is None else v) for k, v in metrics.items()}})
    return metrics


def _csv_header(path: Path) -> list[str] | None:
    """The header of an existing, non-empty CSV file; None otherwise."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as f:
        return next(csv.reader(f), None)


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header first if the file is new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = _csv_header(path) is None
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})


def _record(args: argparse.Namespace, ref: EnvRef, policy: Any, order: Any, observation: str, seed: int) -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # highway-env draws with pygame, headless
    frames, ret = record_episode(policy, ref.with_kwargs(render_mode="rgb_array"), order=order,
                                 observation=observation, seed=seed, max_frames=args.max_frames)
    out = Path(args.video)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(np.asarray(f)) for f in frames]
        images[0].save(out, save_all=True, append_images=images[1:], duration=max(1, round(1000 / args.fps)), loop=0)
    else:
        try:
            import imageio.v3 as iio
            import imageio_ffmpeg  # noqa: F401  (the MP4 writer)
        except ImportError:
            raise SystemExit("MP4 needs imageio and imageio-ffmpeg: pip install 'stmg-step[video]' (or use .gif)") from None
        video = np.stack(frames)  # (T, H, W, 3)
        # Codecs want sides divisible by 16: pad with black rather than let the writer rescale.
        pad_h, pad_w = -video.shape[1] % 16, -video.shape[2] % 16
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        iio.imwrite(out, video, fps=args.fps)
    print(f"wrote {out}: {len(frames)} frames of the episode with seed {seed} (return {ret:.3f})")


if __name__ == "__main__":
    main()
