"""Train STEP or a baseline on a repeated matrix game over several seeds; write a JSON summary.

    python examples/train_matrix.py --algo step --game penalty --k -100 --trials 10 --steps 10000
    python examples/train_matrix.py --algo mappo --game mixing --trials 4 --workers 2
    python examples/train_matrix.py --payoffs my_game.npy --trials 4   # any number of agents
    python examples/train_matrix.py --algo maddpg --game penalty --k -50 --trials 4

The JSON holds ``{"trials": [{"seed", "greedy_joint_action", "action_probs", "is_se"}, ...]}``
plus the configuration and the Stackelberg equilibrium of the game (leader = agent_0).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.config import STEPConfig, Variant  # noqa: E402
from agents.maddpg import MADDPGConfig  # noqa: E402
from envs import matrix  # noqa: E402
from runner.matrix_trials import TrialResult, run_algorithm_trial  # noqa: E402


@dataclass(kw_only=True)
class Args:
    """Command-line options (``--help`` shows them)."""

    algo: str = "step"
    game: str = "penalty"
    k: float = -100.0
    payoffs: str | None = None
    trials: int = 10
    steps: int = 10_000
    workers: int = 2
    seed: int = 0
    out: str | None = None
    logdir: str | None = None
    n_envs: int | None = None


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=[v.value for v in Variant] + ["maddpg"], default="step",
                        help="algorithm: STEP, a PPO baseline on the same machinery, or MADDPG")
    parser.add_argument("--game", choices=["penalty", "mixing", "climbing"], default="penalty",
                        help="a matrix game of the paper (ignored with --payoffs)")
    parser.add_argument("--k", type=float, default=-100.0, help="penalty of the Penalty game")
    parser.add_argument("--payoffs", default=None,
                        help="a .npy payoff array of shape (n_agents, |A_1|, ..., |A_n|)")
    parser.add_argument("--trials", type=int, default=10, help="number of seeds")
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per trial")
    parser.add_argument("--workers", type=int, default=2, help="processes running trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--out", default=None, help="write the JSON summary here")
    parser.add_argument("--n-envs", type=int, default=None,
                        help="parallel environments per trial (default: the matrix-game preset)")
    parser.add_argument("--logdir", default=None,
                        help="write TensorBoard logs to LOGDIR/seed_<seed> for every trial")
    ns = parser.parse_args(argv)
    for name in ("trials", "steps", "workers"):
        if getattr(ns, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(ns, name)}")
    return Args(**vars(ns))


def load_payoffs(args: Args) -> np.ndarray:
    if args.payoffs is not None:
        return np.load(args.payoffs)
    if args.game == "penalty":
        return matrix.penalty(args.k)
    return {"mixing": matrix.mixing, "climbing": matrix.climbing}[args.game]()


def _trial(job: tuple[str, np.ndarray, dict | None, int, int, str | None]) -> TrialResult:
    algo, payoffs, config, steps, seed, logdir = job
    return run_algorithm_trial(algo, payoffs, steps=steps, seed=seed,
                               config=None if config is None else STEPConfig.from_dict(config),
                               logdir=None if logdir is None else f"{logdir}/seed_{seed}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    payoffs = load_payoffs(args)
    overrides = {} if args.n_envs is None else {"n_envs": args.n_envs}
    config: STEPConfig | MADDPGConfig
    if args.algo == "maddpg":
        if args.n_envs is not None or args.logdir is not None:
            raise SystemExit("--n-envs and --logdir apply to the PPO-family algorithms, not maddpg")
        config = MADDPGConfig()
    else:
        config = STEPConfig.matrix_games(variant=Variant(args.algo), **overrides)
    job_config = config.to_dict() if isinstance(config, STEPConfig) else None
    jobs = [(args.algo, payoffs, job_config, args.steps, args.seed + i, args.logdir)
            for i in range(args.trials)]
    results: list[TrialResult] = []
    from tqdm import tqdm

    if args.workers == 1:
        for job in tqdm(jobs, desc="trials"):
            results.append(_trial(job))
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for result in tqdm(pool.map(_trial, jobs), total=len(jobs), desc="trials"):
                results.append(result)
    se, se_values = matrix.stackelberg_equilibrium(payoffs)
    summary = {
        "trials": [r.to_dict() for r in results],
        "se_rate": sum(r.is_se for r in results) / len(results),
        "stackelberg_equilibrium": list(se),
        "se_values": se_values.tolist(),
        "algo": args.algo,
        "game": args.payoffs or args.game,
        "k": args.k if args.payoffs is None and args.game == "penalty" else None,
        "steps": args.steps,
        "config": config.to_dict() if isinstance(config, STEPConfig) else asdict(config),
    }
    print(f"{args.algo} on {summary['game']}: greedy joint action is the SE {se} in "
          f"{sum(r.is_se for r in results)}/{len(results)} trials; "
          f"mean {np.mean([r.seconds for r in results]):.1f} s per trial")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
