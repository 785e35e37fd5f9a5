"""Reproduce the paper's matrix-game results: Table 1 (Mixing) and Figure 5 (Penalty at five k).

For every algorithm and setting it trains ``--trials`` seeds of ``--steps`` environment steps,
evaluates the greedy joint action (each agent's most probable action, the leader's first), and
writes:

* ``OUT/matrix_results.json``: every trial (seed, greedy joint action, action probabilities,
  is_se) per algorithm and setting;
* ``OUT/matrix_results.md``: the SE rate per setting, Table 1 laid out as in the paper, and
  the Penalty outcome proportions of Figure 5;
* ``OUT/penalty_outcomes.png``: a bar chart like Figure 5.

    python examples/reproduce_matrix.py                               # the paper's protocol
    python examples/reproduce_matrix.py --trials 10 --algos step mappo   # a quicker look
    python examples/reproduce_matrix.py --from-json a/matrix_results.json b/matrix_results.json \
        --out docs/matrix            # tables and figure of earlier runs, merged, nothing trained
    python examples/reproduce_matrix.py --population 1   # every trial on its own (about two hours)

``--population K`` (default 50) trains up to K seeds of one algorithm and setting together in
one process as one population (:mod:`agents.population` for STEP, MAPPO, IPPO and HAPPO,
:mod:`agents.maddpg_population` for MADDPG): the default protocol (3,000 trials) took 11.9
minutes on this 2-core machine, against about two hours one trial at a time.
``--population 1`` trains every trial on its own, as before this option existed: a
population's trials match the single trials of their seeds to float rounding only (MADDPG's in
distribution only: their random streams are their own). The journal remembers which of the two
made its trials and refuses to mix them (a resumed population run regroups the missing trials,
so its trials equal the uninterrupted run's to float rounding). Records look the same either
way (a population trial's ``seconds`` is its share of the population's time).

Every finished trial is appended to ``OUT/trials.jsonl`` as it completes. If the run stops
(Ctrl-C, SIGTERM, a failing trial, a crash), running the same command again trains only the
missing trials and writes what an uninterrupted run would (timings aside); the journal is
deleted once the results are written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from envs import matrix  # noqa: E402
from runner.journal import (  # noqa: E402
    ResumeMismatchError,
    TrialJournal,
    check_output_path,
    run_trial_groups,
    run_trials,
    write_json_atomically,
    write_text_atomically,
)

ALGOS = ("step", "mappo", "ippo", "happo", "maddpg")
PENALTY_KS = (0.0, -25.0, -50.0, -75.0, -100.0)


@dataclass(kw_only=True)
class Args:
    """Command-line options (``--help`` shows them)."""

    algos: list[str] = field(default_factory=lambda: list(ALGOS))
    trials: int = 100
    steps: int = 10_000
    workers: int = 2
    population: int = 50
    seed: int = 0
    out: str = "results/matrix"
    settings: list[str] = field(default_factory=lambda: ["mixing", *(f"penalty{k:g}" for k in PENALTY_KS)])
    from_json: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> Args:
    """Parse the command line into :class:`Args`."""
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=defaults.algos,
                        help="algorithms to run")
    parser.add_argument("--trials", type=int, default=defaults.trials, help="seeds per algorithm and setting")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="environment steps per trial")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes running trials")
    parser.add_argument("--population", type=int, default=defaults.population, metavar="K",
                        help="train up to K seeds of one algorithm and setting together as one population "
                             "(default 50: the whole default protocol in about 12 minutes on 2 cores); "
                             "1: every trial on its own")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the first trial")
    parser.add_argument("--out", default=defaults.out, help="output directory")
    parser.add_argument("--settings", nargs="+", default=defaults.settings,
                        help="'mixing' and/or 'penalty<k>' such as penalty-100")
    parser.add_argument("--from-json", nargs="+", default=[], metavar="FILE",
                        help="merge the trials of earlier runs' matrix_results.json instead of training")
    ns = parser.parse_args(argv)
    for path in ns.from_json:
        if not Path(path).is_file():
            parser.error(f"--from-json: no file {path!r}")
    for name in ("trials", "steps", "workers", "population"):
        if getattr(ns, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(ns, name)}")
    max_seed = 2**32 - 1 - (ns.trials - 1)  # NumPy's seeds are 32-bit
    if not 0 <= ns.seed <= max_seed:
        parser.error(f"--seed must lie in 0..{max_seed} (seeds seed..seed+trials-1 must be valid "
                     f"NumPy seeds), got {ns.seed}")
    try:  # now, not after thousands of trials
        check_output_path(ns.out, directory=True)
    except OSError as exc:
        parser.error(f"--out: {exc}")
    for setting in ns.settings:
        try:
            payoffs_for(setting)
        except ValueError as exc:
            parser.error(str(exc))
    return Args(**vars(ns))


def payoffs_for(setting: str) -> np.ndarray:
    """The payoff table of a setting name: ``mixing`` or ``penalty<k>``."""
    if setting == "mixing":
        return matrix.mixing()
    if setting.startswith("penalty"):
        try:
            return matrix.penalty(float(setting.removeprefix("penalty")))
        except ValueError:
            pass
    raise ValueError(f"unknown setting {setting!r}; expected 'mixing' or 'penalty<k>' such as 'penalty-100'")


def run_trial(job: tuple[str, str, int, int]) -> dict[str, Any]:
    """One seed of one algorithm on one setting (runs in a worker process)."""
    algo, setting, steps, seed = job
    payoffs = payoffs_for(setting)
    from runner.matrix_trials import run_algorithm_trial

    record = run_algorithm_trial(algo, payoffs, steps=steps, seed=seed).to_dict()
    joint = tuple(record["greedy_joint_action"])
    record["rewards"] = payoffs[(slice(None), *joint)].tolist()
    return {"algo": algo, "setting": setting, **record}


def run_population(jobs: list[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
    """Seeds of one algorithm on one setting, trained as one population where the algorithm
    supports it (:func:`runner.matrix_trials.run_algorithm_population`); records as :func:`run_trial`."""
    algo, setting, steps, _ = jobs[0]
    payoffs = payoffs_for(setting)
    from runner.matrix_trials import run_algorithm_population

    out = []
    for result in run_algorithm_population(algo, payoffs, steps=steps, seeds=[job[3] for job in jobs]):
        record = result.to_dict()
        joint = tuple(record["greedy_joint_action"])
        record["rewards"] = payoffs[(slice(None), *joint)].tolist()
        out.append({"algo": algo, "setting": setting, **record})
    return out


def se_rate_table(results: dict[str, dict[str, list[dict[str, Any]]]], settings: list[str]) -> str:
    """Markdown: fraction of trials whose greedy joint action is the SE, per algo and setting."""
    lines = ["| algorithm | " + " | ".join(settings) + " |", "|---|" + "---:|" * len(settings)]
    for algo, per_setting in results.items():
        cells = []
        for setting in settings:
            trials = per_setting.get(setting, [])
            cells.append(f"{100 * np.mean([t['is_se'] for t in trials]):.0f}% ({len(trials)})" if trials else "-")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table1(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Markdown laid out like the paper's Table 1: action probabilities and rewards on Mixing."""
    head = ("| | a1 (agent 1) | a2 | a3 | a1 (agent 2) | a2 | a3 | reward 1 | reward 2 | avg |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [head]
    for algo, per_setting in results.items():
        trials = per_setting.get("mixing")
        if not trials:
            continue
        probs = np.array([t["action_probs"] for t in trials]) * 100.0  # (trials, 2, 3)
        rewards = np.array([t["rewards"] for t in trials])  # (trials, 2)
        cells = [f"{m:.2f} ({s:.2f})" for m, s in zip(probs.mean(0).ravel(), probs.std(0).ravel(), strict=True)]
        cells += [f"{m:.2f} ({s:.2f})" for m, s in zip(rewards.mean(0), rewards.std(0), strict=True)]
        avg = rewards.mean(1)
        cells.append(f"{avg.mean():.2f} ({avg.std():.2f})")
        rows.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


PENALTY_OUTCOMES = {(0, 2): "(a1,a3) SE", (1, 1): "(a2,a2)", (2, 0): "(a3,a1)"}


def penalty_outcomes(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Share of trials per greedy outcome, per algo and Penalty setting (Figure 5's bars)."""
    shares: dict[str, dict[str, dict[str, float]]] = {}
    for algo, per_setting in results.items():
        for setting, trials in per_setting.items():
            if not setting.startswith("penalty"):
                continue
            counts = Counter(PENALTY_OUTCOMES.get(tuple(t["greedy_joint_action"]), "other") for t in trials)
            shares.setdefault(algo, {})[setting] = {
                name: counts.get(name, 0) / len(trials) for name in [*PENALTY_OUTCOMES.values(), "other"]
            }
    return shares


def plot_penalty(shares: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    """Stacked bars: for each k (groups) and algorithm (bars), the share of each outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(shares)
    settings = sorted({s for per in shares.values() for s in per}, key=lambda s: -float(s.removeprefix("penalty")))
    outcomes = [*PENALTY_OUTCOMES.values(), "other"]
    colours = ["#2a9d8f", "#e9c46a", "#f4a261", "#bbbbbb"]
    width = 0.8 / max(len(algos), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(settings), 4))
    for a, algo in enumerate(algos):
        x = np.arange(len(settings)) + (a - (len(algos) - 1) / 2) * width
        bottom = np.zeros(len(settings))
        for outcome, colour in zip(outcomes, colours, strict=True):
            values = np.array([shares[algo].get(s, {}).get(outcome, 0.0) for s in settings])
            ax.bar(x, values, width * 0.95, bottom=bottom, color=colour, edgecolor="white",
                   label=outcome if a == 0 else None)
            bottom += values
        for xi in x:
            ax.text(xi, 1.01, algo, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(settings)))
    ax.set_xticklabels([f"k={float(s.removeprefix('penalty')):g}" for s in settings])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("share of trials")
    ax.set_title("Penalty: greedy joint action after training")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_all(args: Args) -> tuple[list[dict[str, Any]], float]:
    """Run every (algorithm, setting, seed) job over ``args.workers`` processes, resuming from
    ``OUT/trials.jsonl``; returns the records in job order and the minutes spent training."""
    jobs = [(f"{algo}/{setting}/{args.seed + i}", (algo, setting, args.steps, args.seed + i))
            for algo in args.algos for setting in args.settings for i in range(args.trials)]
    try:
        # The key names algorithm, setting and seed; the steps are all else a record depends on.
        path = Path(args.out) / "trials.jsonl"
        population = args.population
        settings: dict[str, Any] = {"script": "reproduce_matrix", "steps": args.steps}
        if population > 1:  # its trials match single trials to float rounding only
            settings["trainer"] = "population"
            settings["maddpg_trainer"] = "population"  # (journals from before trained MADDPG alone)
        journal = TrialJournal(path, settings)
    except (ResumeMismatchError, RuntimeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        if population > 1:
            from runner.matrix_trials import population_supported

            # Algorithms without population training form groups of one (a trial each).
            records = run_trial_groups(
                jobs, run_population, workers=args.workers, journal=journal, group_size=population,
                group_of=lambda job: (job[0], job[1]) if population_supported(job[0]) else job)
        else:
            records = run_trials(jobs, run_trial, workers=args.workers, journal=journal)
    finally:
        journal.close()
    return records, journal.minutes


def load_runs(paths: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The trial records and commands of earlier runs' JSON files."""
    records: list[dict[str, Any]] = []
    commands = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            commands.append(f"`{data['command']}` ({data['trials']} trials of {data['steps']} steps, "
                            f"{data['minutes']:.1f} min)")
            for per_setting in data["results"].values():
                for trials in per_setting.values():
                    records.extend(trials)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"--from-json {path}: not a matrix_results.json written by this script "
                             f"({type(exc).__name__}: {exc})") from exc
    return records, commands


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run everything (or merge earlier runs) and write the JSON, markdown and PNG outputs."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python examples/reproduce_matrix.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_json:
        try:
            records, commands = load_runs(args.from_json)
        except ValueError as exc:
            raise SystemExit(f"reproduce_matrix.py: error: {exc}") from exc
        minutes = 0.0
        settings = list(dict.fromkeys(r["setting"] for r in records))
    else:
        records, minutes = train_all(args)
        commands = [f"`{command.strip()}` ({args.trials} trials of {args.steps} steps, {minutes:.1f} min)"]
        settings = args.settings

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record in records:
        results.setdefault(record["algo"], {}).setdefault(record["setting"], []).append(record)
    shares = penalty_outcomes(results)
    summary = {"command": command.strip(), "minutes": minutes, "trials": args.trials, "steps": args.steps,
               "results": results, "penalty_outcomes": shares}
    write_json_atomically(out / "matrix_results.json", summary, indent=1)
    markdown = "\n\n".join([
        "Made by " + "; ".join(commands),
        "SE rate (greedy joint action = Stackelberg equilibrium; trials in parentheses):\n\n"
        + se_rate_table(results, settings),
        "Mixing, as in Table 1 (mean (std) over trials of each action's probability in %, and the "
        "payoffs of the greedy joint action):\n\n" + table1(results),
        "Penalty outcomes, as in Figure 5 (share of trials per greedy joint action):\n\n"
        + "\n".join(f"- {algo} {setting}: " + ", ".join(f"{k} {v:.2f}" for k, v in share.items())
                    for algo, per in shares.items() for setting, share in per.items()),
    ])
    write_text_atomically(out / "matrix_results.md", markdown + "\n")
    if shares:
        plot_penalty(shares, out / "penalty_outcomes.png")
    if not args.from_json:
        (out / "trials.jsonl").unlink(missing_ok=True)  # every trial is in matrix_results.json now
    print(markdown)
    return summary


if __name__ == "__main__":
    main()
