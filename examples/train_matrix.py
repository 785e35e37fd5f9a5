"""Train STEP or a baseline on a repeated matrix game over several seeds; write a JSON summary.

    python examples/train_matrix.py --algo step --game penalty --k -100 --trials 10 --steps 10000
    python examples/train_matrix.py --algo mappo --game mixing --trials 4 --workers 2
    python examples/train_matrix.py --payoffs my_game.npy --trials 4   # any number of agents
    python examples/train_matrix.py --algo maddpg --game penalty --k -50 --trials 4
    python examples/train_matrix.py --set value_normalization=True entropy=0.15 --trials 100
    python examples/train_matrix.py --trials 100 --population 50   # 2 workers, a population of 50 each

``--population K`` trains K seeds together in one process as one population
(:mod:`agents.population` for STEP, MAPPO, IPPO and HAPPO, :mod:`agents.maddpg_population` for
MADDPG: stacked parameters, every trial's learner independent); each worker trains one
population at a time. The default, 1, trains every seed on its own as before: a trial of a
PPO-family population matches the single trial of its seed to float rounding, not bit for bit
(a MADDPG trial in distribution only: its random streams are its own), and a population's
trials reach the journal only when the whole population finishes, so the default keeps
existing runs, their journals and their exact results as they were. The journal remembers which of the two made its trials. Records
look the same either way; a population trial's ``seconds`` is its share of the population's time.

The JSON holds ``{"trials": [{"seed", "greedy_joint_action", "action_probs", "is_se"}, ...]}``
plus the configuration and the Stackelberg equilibrium of the game (leader = agent_0).

With ``--out OUT.json`` every finished trial is also appended to ``OUT.json.trials.jsonl`` as
it completes. If the run stops (Ctrl-C, SIGTERM, a failing trial, a crash), running the same
command again trains only the missing seeds and writes the same summary as an uninterrupted
run would (timings aside); the journal is deleted once the summary is written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.config import STEPConfig, Variant  # noqa: E402
from agents.maddpg import MADDPGConfig  # noqa: E402
from envs import matrix  # noqa: E402
from runner.journal import (  # noqa: E402
    ResumeMismatchError,
    TrialJournal,
    check_output_path,
    run_trial_groups,
    run_trials,
    write_json_atomically,
)
from runner.matrix_trials import (  # noqa: E402
    game_payoffs,
    load_payoffs_file,
    population_supported,
    run_algorithm_population,
    run_algorithm_trial,
)
from runner.presets import parse_config_overrides  # noqa: E402

MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit


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
    population: int = 1
    seed: int = 0
    out: str | None = None
    logdir: str | None = None
    n_envs: int | None = None
    set: list[str] | None = None


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
    parser.add_argument("--population", type=int, default=1, metavar="K",
                        help="train K seeds together as one population (not with obs_normalization or "
                             "reward_scaling); 1: every seed on its own")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--out", default=None,
                        help="write the JSON summary here; finished trials are kept in OUT.trials.jsonl "
                             "meanwhile, so that the same command resumes an interrupted run")
    parser.add_argument("--n-envs", type=int, default=None,
                        help="parallel environments per trial (default: the matrix-game preset)")
    parser.add_argument("--logdir", default=None,
                        help="write TensorBoard logs to LOGDIR/seed_<seed> for every trial")
    parser.add_argument("--set", nargs="+", default=None, metavar="FIELD=VALUE",
                        help="override fields of the preset STEPConfig.matrix_games() (PPO family), "
                             "e.g. --set value_normalization=True entropy=0.15")
    ns = parser.parse_args(argv)
    for name in ("trials", "steps", "workers"):
        if getattr(ns, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(ns, name)}")
    if not 0 <= ns.seed <= MAX_SEED - (ns.trials - 1):
        parser.error(f"--seed must lie in 0..{MAX_SEED - (ns.trials - 1)} (seeds seed..seed+trials-1 "
                     f"must be valid NumPy seeds), got {ns.seed}")
    if ns.n_envs is not None and ns.n_envs <= 0:
        parser.error(f"--n-envs must be positive, got {ns.n_envs}")
    if ns.algo == "maddpg" and (ns.n_envs is not None or ns.logdir is not None or ns.set):
        parser.error("--n-envs, --logdir and --set apply to the PPO-family algorithms, not maddpg")
    if ns.set:
        try:
            STEPConfig.matrix_games(**parse_config_overrides(ns.set))
        except (ValueError, TypeError) as exc:
            parser.error(f"--set: {exc}")
    if ns.population <= 0:
        parser.error(f"--population must be positive, got {ns.population}")
    supported = ns.algo == "maddpg" or population_supported(
        ns.algo, STEPConfig.matrix_games(variant=Variant(ns.algo), **parse_config_overrides(ns.set or [])))
    if ns.population > 1 and not supported:
        parser.error(f"--population {ns.population}: population training of {ns.algo} supports no "
                     "obs_normalization, reward_scaling or policy_anchor; use --population 1")
    elif ns.population > 1 and ns.logdir is not None:
        parser.error("--logdir writes one TensorBoard log per trial; use it with --population 1")
    if ns.payoffs is not None:
        try:
            load_payoffs_file(ns.payoffs)
        except ValueError as exc:
            parser.error(f"--payoffs: {exc}")
    if ns.out is not None:
        try:  # now, not after hours of training
            check_output_path(ns.out)
        except OSError as exc:
            parser.error(f"--out: {exc}")
    return Args(**vars(ns))


def load_payoffs(args: Args) -> np.ndarray:
    """The payoff table of ``--payoffs`` or of ``--game``."""
    return game_payoffs(args.game, args.k, args.payoffs)


def _trial(job: tuple[str, np.ndarray, dict | None, int, int, str | None]) -> dict[str, Any]:
    algo, payoffs, config, steps, seed, logdir = job
    return run_algorithm_trial(algo, payoffs, steps=steps, seed=seed,
                               config=None if config is None else STEPConfig.from_dict(config),
                               logdir=None if logdir is None else f"{logdir}/seed_{seed}").to_dict()


def _population(jobs: list[tuple[str, np.ndarray, dict | None, int, int, str | None]]) -> list[dict[str, Any]]:
    """A group of trials (same algorithm, game, config and steps) trained as one population."""
    algo, payoffs, config, steps = jobs[0][:4]
    return [r.to_dict() for r in run_algorithm_population(
        algo, payoffs, steps=steps, seeds=[job[4] for job in jobs],
        config=None if config is None else STEPConfig.from_dict(config))]


def journal_path(out: str) -> Path:
    """Where the finished trials of ``--out OUT`` are kept until the summary is written."""
    return Path(out).with_name(Path(out).name + ".trials.jsonl")


def main(argv: list[str] | None = None) -> dict:
    """Train every seed (resuming from ``--out``'s journal), print and return the summary."""
    args = parse_args(argv)
    payoffs = load_payoffs(args)
    overrides = {} if args.n_envs is None else {"n_envs": args.n_envs}
    overrides.update(parse_config_overrides(args.set or []))
    config: STEPConfig | MADDPGConfig
    if args.algo == "maddpg":
        config = MADDPGConfig()
    else:
        config = STEPConfig.matrix_games(variant=Variant(args.algo), **overrides)
    config_dict = config.to_dict() if isinstance(config, STEPConfig) else asdict(config)
    job_config = config.to_dict() if isinstance(config, STEPConfig) else None
    jobs = [(f"seed={seed}", (args.algo, payoffs, job_config, args.steps, seed, args.logdir))
            for seed in range(args.seed, args.seed + args.trials)]
    journal = None
    if args.out is not None:
        # Everything a trial's result depends on, besides its seed: a journal made with other
        # settings is refused rather than mixed in.
        settings = {"script": "train_matrix", "algo": args.algo, "payoffs": payoffs.tolist(),
                    "steps": args.steps, "config": config_dict}
        if args.population > 1:  # its trials match single trials to float rounding only
            settings["trainer"] = "population"
        try:
            journal = TrialJournal(journal_path(args.out), settings)
        except (ResumeMismatchError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from None
    try:
        if args.population > 1:
            trials = run_trial_groups(jobs, _population, group_size=args.population, workers=args.workers,
                                      journal=journal)
        else:
            trials = run_trials(jobs, _trial, workers=args.workers, journal=journal)
    finally:
        if journal is not None:
            journal.close()
    se, se_values = matrix.stackelberg_equilibrium(payoffs)
    hits = sum(t["is_se"] for t in trials)
    summary = {
        "trials": trials,
        "se_rate": hits / len(trials),
        "stackelberg_equilibrium": list(se),
        "se_values": se_values.tolist(),
        "algo": args.algo,
        "game": args.payoffs or args.game,
        "k": args.k if args.payoffs is None and args.game == "penalty" else None,
        "steps": args.steps,
        "config": config_dict,
    }
    print(f"{args.algo} on {summary['game']}: greedy joint action is the SE {se} in "
          f"{hits}/{len(trials)} trials; mean {np.mean([t['seconds'] for t in trials]):.1f} s per trial")
    if args.out is not None and journal is not None:
        write_json_atomically(args.out, summary)
        journal.remove()  # the summary now holds every trial
    return summary


if __name__ == "__main__":
    main()
