"""Benchmark: many seeds at once. One trial vs. 100 trials trained as one population, and an
estimate of the default ``examples/reproduce_matrix.py`` run.

    python benchmarks/bench_population.py                  # 100 trials, estimate with K = 50
    python benchmarks/bench_population.py --trials 20 --no-estimate
    python benchmarks/bench_population.py --scripts        # also time the two script commands
    python benchmarks/bench_population.py --harness 10 --no-estimate --trials 10 --single 1

Everything is measured in this process, one thing after another, after a warm-up that pays
the one-time costs (imports, numba compilation of Tianshou's buffer code): the times are
ratios of the same machine in the same state (other load included).

1. ``train_matrix.py``'s STEP trial (Penalty k=-100, 10,000 steps, ``STEPConfig.matrix_games()``):
   one trial on its own (:func:`runner.matrix_trials.run_matrix_trial`, the median of
   ``--single`` seeds) against ``--trials`` trials as one population
   (:func:`runner.matrix_trials.run_matrix_population`). Target: ratio <= 10.
2. The default reproduction (5 algorithms x 6 settings x 100 trials, ``--workers 2``,
   ``--population 50``): every algorithm measured as one population of ``--estimate-k``
   trials (MADDPG's also against one single trial of it); the estimate is (seconds per trial)
   x 600 trials per algorithm / 2 workers, summed (it assumes two free cores: both workers
   run at full speed).

``--scripts`` also runs ``train_matrix.py --trials 1`` and ``train_matrix.py --trials 100
--population 100 --workers 1`` as subprocesses, one after the other: the wall time of one trial
of the same script, process start and warm-up (about 10 s here) included in both.

``--harness N`` times the experiment harness: ``examples/train.py`` with N seeds of STEP on
Penalty (``--steps`` each, an evaluation every 2,000 steps, ``--workers 1``), once seed by seed
and once with ``--population N``, as subprocesses, and checks that both wrote the same rows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.config import STEPConfig, Variant  # noqa: E402
from envs import matrix  # noqa: E402
from runner.matrix_trials import (  # noqa: E402
    run_algorithm_trial,
    run_maddpg_population,
    run_matrix_population,
    run_matrix_trial,
)

ROOT = Path(__file__).resolve().parents[1]
REPRODUCTION_TRIALS = 600  # per algorithm: 6 settings x 100 trials
REPRODUCTION_WORKERS = 2


def _single_seconds(algo: str, payoffs: object, steps: int, seeds: list[int]) -> float:
    """Median wall seconds of single trials of ``algo``."""
    times = []
    for seed in seeds:
        start = time.perf_counter()
        run_algorithm_trial(algo, payoffs, steps=steps, seed=seed)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _population_seconds(algo: str, payoffs: object, steps: int, k: int, first_seed: int) -> float:
    """Wall seconds of one population of ``k`` trials of ``algo``."""
    seeds = list(range(first_seed, first_seed + k))
    start = time.perf_counter()
    if algo == "maddpg":
        run_maddpg_population(payoffs, steps=steps, seeds=seeds)  # type: ignore[arg-type]
    else:
        run_matrix_population(payoffs, config=STEPConfig.matrix_games(variant=Variant(algo)), steps=steps,  # type: ignore[arg-type]
                              seeds=seeds)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100, help="trials of the population (K)")
    parser.add_argument("--single", type=int, default=3, help="single trials timed (median)")
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per trial")
    parser.add_argument("--estimate-k", type=int, default=50, help="population size of the reproduction estimate")
    parser.add_argument("--no-estimate", action="store_true", help="skip the reproduction estimate")
    parser.add_argument("--scripts", action="store_true", help="also time the train_matrix.py commands")
    parser.add_argument("--harness", type=int, default=0, metavar="N",
                        help="also time examples/train.py with N seeds, alone and with --population N")
    args = parser.parse_args(argv)
    if args.harness < 0:
        parser.error(f"--harness must be >= 0, got {args.harness}")
    for name in ("trials", "single", "steps", "estimate_k"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    payoffs = matrix.penalty(-100.0)
    config = STEPConfig.matrix_games()

    # Warm-up: imports, numba, first-call costs of both paths.
    run_matrix_trial(payoffs, config=config, steps=800, seed=10_000)
    run_matrix_population(payoffs, config=config, steps=800, seeds=[10_000, 10_001])
    run_maddpg_population(payoffs, steps=800, seeds=[10_000, 10_001])
    run_algorithm_trial("maddpg", payoffs, steps=800, seed=10_000)

    one = _single_seconds("step", payoffs, args.steps, [10_001 + i for i in range(args.single)])
    many = _population_seconds("step", payoffs, args.steps, args.trials, 0)
    print(f"STEP, Penalty k=-100, {args.steps} steps per trial (train_matrix.py's trial):")
    print(f"  one trial on its own:             {one:7.2f} s (median of {args.single})")
    print(f"  {args.trials} trials as one population:  {many:7.2f} s ({many / args.trials:.3f} s per trial)")
    print(f"  ratio {args.trials} trials / one trial:     {many / one:7.2f}   (target <= 10 for 100 trials)")

    if not args.no_estimate:
        k = args.estimate_k
        per_trial: dict[str, float] = {}
        how: dict[str, str] = {}
        for algo in ("step", "mappo", "ippo", "happo", "maddpg"):
            per_trial[algo] = _population_seconds(algo, payoffs, args.steps, k, 20_000) / k
            how[algo] = f"population of {k}"
        maddpg_alone = _single_seconds("maddpg", payoffs, args.steps, [30_000])
        print(f"\nMADDPG, one trial on its own: {maddpg_alone:.2f} s; in a population of {k}: "
              f"{per_trial['maddpg']:.3f} s per trial (ratio {maddpg_alone / per_trial['maddpg']:.1f})")
        print(f"\ndefault reproduce_matrix.py ({REPRODUCTION_TRIALS} trials per algorithm, "
              f"{REPRODUCTION_WORKERS} workers, --population {k}), estimated:")
        total = 0.0
        for algo, seconds in per_trial.items():
            minutes = seconds * REPRODUCTION_TRIALS / REPRODUCTION_WORKERS / 60
            total += minutes
            print(f"  {algo:6} {seconds:6.3f} s per trial ({how[algo]:28}) -> {minutes:6.1f} min")
        print(f"  total                                                   -> {total:6.1f} min "
              "(target <= 30)")

    if args.scripts:
        script = str(ROOT / "examples" / "train_matrix.py")
        walls = {}
        commands = {"--trials 1": ["--trials", "1"],
                    "--trials 100 --population 100 --workers 1": ["--trials", "100", "--population", "100",
                                                                  "--workers", "1"]}
        for label, options in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, script, *options, "--steps", str(args.steps)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[label] = time.perf_counter() - start
        one_script, many_script = walls.values()
        print("\ntrain_matrix.py wall time (process start and warm-up included):")
        for label, wall in walls.items():
            print(f"  {label:44} {wall:7.2f} s")
        print(f"  ratio {many_script / one_script:.2f} (target <= 10)")

    if args.harness:
        _time_harness(args.harness, args.steps)


def _time_harness(seeds: int, steps: int) -> None:
    """examples/train.py, N seeds one by one against one population of N (module docstring)."""
    import csv
    import tempfile

    script = str(ROOT / "examples" / "train.py")
    common = ["--env", "matrix/penalty-v0", "--algo", "step", "--steps", str(steps), "--eval-every", "2000",
              "--seeds", *[str(s) for s in range(seeds)], "--workers", "1", "--no-progress"]
    walls, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in {"seed by seed": [], f"--population {seeds}": ["--population", str(seeds)]}.items():
            out = Path(tmp) / label.replace(" ", "_")
            start = time.perf_counter()
            subprocess.run([sys.executable, script, *common, *extra, "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[label] = time.perf_counter() - start
            with open(out / "curves.csv", newline="") as f:
                rows[label] = sorted((r["seed"], int(r["env_steps"]), r["eval_return"]) for r in csv.DictReader(f))
    print(f"\nexamples/train.py, STEP on Penalty, {seeds} seeds x {steps} steps, --workers 1 "
          "(process start included):")
    for label, wall in walls.items():
        print(f"  {label:20} {wall:7.2f} s")
    alone, together = walls.values()
    same = len(set(map(tuple, rows.values()))) == 1
    print(f"  speed-up {alone / together:.2f}x; the same rows: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
