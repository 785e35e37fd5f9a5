"""Greedy evaluation of a saved model: episodes in waves of 16 envs against all in one wave.

    python benchmarks/bench_eval_batch.py CHECKPOINT --episodes 20
    python benchmarks/bench_eval_batch.py docs/experiments/merge_hard/runs/merge_hard-v0/step/seed_0/last.pt --episodes 50

:class:`runner.evaluation.Evaluator` plays ``batch`` episodes at once, one policy pass per step
for all of them; the next wave starts when the slowest episode of the wave has ended. The two
settings alternate for ``--rounds`` rounds in this process (the fastest round of each counts),
and the benchmark checks that both give the same returns and lengths, episode by episode: the
episodes are seeded one by one and played greedily, so the wave size must not change them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.adapter import JointStepEnv  # noqa: E402
from runner.envs import EnvRef  # noqa: E402
from runner.evaluation import Evaluator  # noqa: E402
from runner.learners import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> float:
    """Measure and print; returns the speed-up of one wave over waves of ``--small``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a model saved by examples/train.py (run.json beside it)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (default: 20)")
    parser.add_argument("--small", type=int, default=16, help="the smaller wave size (default: 16)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    args = parser.parse_args(argv)
    for name in ("episodes", "small", "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    path = Path(args.checkpoint)
    run_json = path.parent / "run.json"
    if not path.is_file() or not run_json.is_file():
        parser.error(f"{path}: expected a checkpoint with a run.json beside it")
    spec = json.loads(run_json.read_text())["spec"]
    ref = EnvRef(spec["env"], dict(spec.get("env_kwargs", {})))
    order, observation = spec.get("order"), spec.get("observation", "own")
    _, policy, _ = load_model(path, JointStepEnv(env=ref(), order=order, observation=observation))
    best = {"waves": np.inf, "one wave": np.inf}
    results = {}
    for _ in range(args.rounds):
        for label, batch in (("waves", args.small), ("one wave", args.episodes)):
            evaluator = Evaluator(ref, order=order, observation=observation, episodes=args.episodes, seed=10_000,
                                  batch=batch)
            start = time.perf_counter()
            results[label] = evaluator.evaluate(policy)
            best[label] = min(best[label], time.perf_counter() - start)
            evaluator.close()
    same = (np.array_equal(results["waves"].agent_returns, results["one wave"].agent_returns, equal_nan=True)
            and np.array_equal(results["waves"].lengths, results["one wave"].lengths))
    print(f"{spec['env']}: {args.episodes} episodes, mean length {results['waves'].lengths.mean():.0f}")
    print(f"  waves of {args.small}: {best['waves']:.2f} s   one wave of {args.episodes}: {best['one wave']:.2f} s"
          f"   ratio {best['waves'] / best['one wave']:.2f}x   (fastest of {args.rounds} rounds)")
    print(f"  the same returns and lengths episode by episode: {same}")
    if not same:
        raise SystemExit("the wave size changed the evaluation")
    return best["waves"] / best["one wave"]


if __name__ == "__main__":
    main()
