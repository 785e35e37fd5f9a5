"""The command line of ``examples/train.py``: typed options, checked before anything runs.

:func:`parse_train_args` turns ``argv`` into :class:`TrainArgs` and :func:`build_run_specs`
into one :class:`~runner.run.RunSpec` per (algorithm, seed). Every field of
:class:`~agents.config.STEPConfig` and :class:`~agents.maddpg.MADDPGConfig` is an option
(``--lr``, ``--n-envs``, ``--advantage-normalization/--no-advantage-normalization``, ...), made
from the dataclasses by :func:`runner.presets.config_options`, with the field's docstring as
its help. Bad input (an unknown env, keyword arguments the env rejects, spaces the learner
cannot handle, an invalid config value) is reported as a usage error naming the value.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.envs import EnvError, EnvRef, check_env, parse_env_kwargs
from runner.presets import ALGOS, algo_config, config_options, overrides_for, preset_name
from runner.run import MISSING_REPLAY_CHOICES, RunSpec, chunk_unit

DESCRIPTION = """Train STEP and baselines on any PettingZoo ParallelEnv, with periodic greedy evaluation.

Writes OUT/curves.csv (one row per evaluation of every run: env, algo, seed, env_steps, wall_s,
eval_return, eval_length, merge metrics, learner statistics), and per run
OUT/runs/<env>/<algo>/seed_<seed>/ with run.json, last.pt, best.pt, state.pt (resume) and
TensorBoard logs (tb/). The learner configuration starts from the preset of the env family
(mamujoco: STEPConfig.mujoco(), merge: STEPConfig.merge(), matrix: STEPConfig.matrix_games(),
others: the general defaults); every configuration option below overrides it.

examples:
  python examples/train.py --env mamujoco/HalfCheetah-2x3-v0 --algo step happo mappo \\
      --steps 1000000 --seeds 0 1 2 --out runs/halfcheetah
  python examples/train.py --env merge/easy-v0 --algo step mappo ippo maddpg --steps 200000 \\
      --seeds 0 1 2 --eval-every 10000 --out runs/merge-easy
  python examples/train.py --env matrix/penalty-v0 --env-kwargs k=-50 episode_length=25 \\
      --algo step --steps 10000 --eval-every 1000 --out runs/penalty --lr 1e-3
  python examples/train.py --env pettingzoo.classic.rps_v2:parallel_env --env-kwargs max_cycles=20 \\
      --algo step --steps 20000 --out runs/rps
  python examples/train.py --env matrix/penalty-v0 --algo step mappo --steps 10000 \\
      --eval-every 2000 --seeds $(seq 0 99) --population 50 --out runs/penalty-100-seeds
  python examples/train.py ... --resume         # continue every run from its last checkpoint
"""


@dataclass(kw_only=True)
class TrainArgs:
    """Parsed options of ``examples/train.py`` (``--help`` explains each)."""

    env: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    algos: list[str] = field(default_factory=lambda: ["step"])
    steps: int
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str
    order: list[str] | None = None
    observation: str = "own"
    eval_every: int = 10_000
    eval_episodes: int = 10
    resume: bool = False
    missing_replay: str = "fail"
    status: bool = False
    workers: int = 2
    ray: str | None = None
    subprocess_envs: bool = False
    population: int = 1
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    """Configuration fields set on the command line."""


def _positive_int(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_integer() or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(value)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if not 0 <= value < 1_000_000:
        raise argparse.ArgumentTypeError(f"seed {value} must lie in [0, 1000000)")
    return value


def build_train_parser() -> argparse.ArgumentParser:
    """The parser of ``examples/train.py`` (harness options, then one option per config field)."""
    parser = argparse.ArgumentParser(prog="train.py", description=DESCRIPTION,
                                     usage="%(prog)s --env ENV --steps N --out DIR [--algo ALGO ...] [--seeds S ...] [options]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("what to run")
    run.add_argument("--env", required=True,
                     help="a registered environment id (mamujoco/..., merge/..., matrix/...) or "
                          "'module:callable' returning a PettingZoo ParallelEnv")
    run.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                     help="keyword arguments of the environment; values are Python literals "
                          "(numbers, True/False/None, quoted strings, lists) or plain strings")
    run.add_argument("--algo", nargs="+", default=["step"], choices=ALGOS, dest="algos", metavar="ALGO",
                     help=f"algorithm(s), each run for every seed: {', '.join(ALGOS)} (default: step)")
    run.add_argument("--steps", type=_positive_int, required=True,
                     help="environment (joint) time steps of training per run")
    run.add_argument("--seeds", nargs="+", type=_seed, default=[0], metavar="SEED",
                     help="seeds, one run per seed and algorithm (default: 0)")
    run.add_argument("--out", required=True, help="output directory (curves.csv, runs/)")
    run.add_argument("--order", nargs="+", default=None, metavar="AGENT",
                     help="priority order of the agents, leader first (default: the env's possible_agents)")
    run.add_argument("--observation", choices=("own", "state"), default="own",
                     help="base observation of each agent: its own, or the global state() "
                          "(common knowledge: decentralized execution is then exact) (default: own)")
    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--eval-every", type=_positive_int, default=10_000,
                    help="environment steps between two greedy evaluations, rounded up to whole "
                         "collects (default: 10000)")
    ev.add_argument("--eval-episodes", type=_positive_int, default=10,
                    help="whole episodes per evaluation, on separately seeded envs (default: 10)")
    ex = parser.add_argument_group("execution")
    ex.add_argument("--resume", action="store_true",
                    help="continue every run from its last checkpoint (refused if its stored "
                         "configuration differs; other package versions are allowed, reported and "
                         "recorded in run.json); finished runs are skipped. A larger --steps "
                         "extends finished runs where the learner has no schedule over the "
                         "total (no --lr-decay)")
    ex.add_argument("--missing-replay", choices=MISSING_REPLAY_CHOICES, default="fail",
                    help="with --resume, for a MADDPG run whose saved replay buffer (replay-*.pkl, "
                         "kept only on the machine that trained it) is gone: fail with a message, "
                         "restart the run from step 0 (the same result as an uninterrupted run), or "
                         "continue with an empty buffer (recorded in run.json) (default: fail)")
    ex.add_argument("--status", action="store_true",
                    help="train nothing: print where each run of this command stands (steps done, "
                         "last and best evaluation return, training time) and what is left")
    ex.add_argument("--workers", type=_positive_int, default=2,
                    help="local processes running the runs in parallel (default: 2); with "
                         "'--ray local', the CPUs of the local Ray instance")
    ex.add_argument("--ray", default=None, metavar="ADDRESS",
                    help="run on Ray: 'local' starts a local instance, otherwise the address of a "
                         "cluster (e.g. auto, ray://head:10001); OUT must be visible from every node")
    ex.add_argument("--population", type=_positive_int, default=1, metavar="K",
                    help="train the seeds of each algorithm together in populations of up to K "
                         "(stacked networks, one process; each seed still independent and equal to "
                         "its single run up to float rounding). Pays for small networks whose steps "
                         "cost mostly Python overhead, such as the matrix games; applies to step, "
                         "mappo, ippo and happo with Discrete actions, every agent acting in every "
                         "step, and no observation normalisation or reward scaling (others run one "
                         "seed at a time). Resume with the same --seeds and --population (default: 1)")
    ex.add_argument("--subprocess-envs", action="store_true",
                    help="step each run's training envs in subprocesses (SubprocVectorEnv)")
    ex.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bars (one per concurrent run), or one printed line per evaluation "
                         "(default: bars when stderr is a terminal)")
    cfg = parser.add_argument_group(
        "learner configuration (defaults: the preset of the env family; each option overrides it)")
    for option in config_options():
        flag = "--" + option.name.replace("_", "-")
        if option.parse is None:
            cfg.add_argument(flag, dest=f"cfg_{option.name}", action=argparse.BooleanOptionalAction,
                             default=None, help=option.help)
        else:
            cfg.add_argument(flag, dest=f"cfg_{option.name}", type=_typed(option.parse, option.name),
                             default=None, metavar=option.metavar, help=option.help)
    return parser


def _typed(parse: Any, name: str) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, SyntaxError) as exc:
            raise argparse.ArgumentTypeError(f"bad value {text!r} for {name}: {exc}") from None

    convert.__name__ = name  # argparse names the type in its error message
    return convert


def parse_train_args(argv: Sequence[str] | None = None) -> tuple[TrainArgs, list[RunSpec]]:
    """Parse and check ``argv``; returns the options and one run per (algorithm, seed).

    Exits with a usage error (status 2) naming the bad value if anything is wrong.
    """
    parser = build_train_parser()
    ns = vars(parser.parse_args(argv))
    overrides = {key[4:]: value for key, value in ns.items() if key.startswith("cfg_") and value is not None}
    try:
        env_kwargs = parse_env_kwargs(ns["env_kwargs"])
    except EnvError as exc:
        parser.error(str(exc))
    args = TrainArgs(
        env=ns["env"], env_kwargs=env_kwargs, algos=list(dict.fromkeys(ns["algos"])), steps=ns["steps"],
        seeds=list(dict.fromkeys(ns["seeds"])), out=ns["out"], order=ns["order"], observation=ns["observation"],
        eval_every=ns["eval_every"], eval_episodes=ns["eval_episodes"], resume=ns["resume"],
        missing_replay=ns["missing_replay"],
        status=ns["status"], workers=ns["workers"], ray=ns["ray"], subprocess_envs=ns["subprocess_envs"],
        population=ns["population"],
        progress=sys.stderr.isatty() if ns["progress"] is None else ns["progress"],
        overrides=overrides,
    )
    try:
        specs = build_run_specs(args)
    except (EnvError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    return args, specs


def build_run_specs(args: TrainArgs, *, notes: Any = None) -> list[RunSpec]:
    """One :class:`RunSpec` per (algorithm, seed), after checking the environment once.

    ``eval_every`` and ``steps`` are rounded up to whole collects of each learner (a note is
    printed to ``notes``, default stderr).

    Raises:
        EnvError: the environment cannot be built, or the learner cannot handle its spaces.
        ValueError: a configuration value or option that does not fit.
    """
    notes = notes if notes is not None else sys.stderr
    ref = EnvRef(args.env, args.env_kwargs)
    _check_playable(ref, args.order, args.observation, args.algos)
    used = set()
    for algo in args.algos:
        used |= set(overrides_for(algo, args.overrides))
    unused = sorted(set(args.overrides) - used)
    if unused:
        raise ValueError(f"option(s) {['--' + u.replace('_', '-') for u in unused]} do not apply to "
                         f"--algo {' '.join(args.algos)}")
    specs = []
    for algo in args.algos:
        config = algo_config(ref.family, algo, overrides_for(algo, args.overrides))
        probe = RunSpec(env=args.env, env_kwargs=args.env_kwargs, algo=algo, seed=args.seeds[0], steps=args.steps,
                        eval_every=args.eval_every, eval_episodes=args.eval_episodes, order=args.order,
                        observation=args.observation, config=config.to_dict())
        unit = chunk_unit(probe)
        eval_every = -(-args.eval_every // unit) * unit
        steps = -(-args.steps // unit) * unit
        if (eval_every, steps) != (args.eval_every, args.steps):
            print(f"note: {algo} collects {unit} steps at a time ({preset_name(ref.family, algo)} with "
                  f"overrides {overrides_for(algo, args.overrides)}); using --eval-every {eval_every} "
                  f"--steps {steps}", file=notes)
        warmup = getattr(config, "warmup_steps", 0)
        if warmup % unit or eval_every < warmup + unit:
            raise ValueError(
                f"maddpg: warmup_steps={warmup} must be a multiple of the collect size {unit} and fit "
                f"with one collect in the first --eval-every {eval_every} steps")
        for seed in args.seeds:
            specs.append(RunSpec(env=args.env, env_kwargs=args.env_kwargs, algo=algo, seed=seed, steps=steps,
                                 eval_every=eval_every, eval_episodes=args.eval_episodes, order=args.order,
                                 observation=args.observation, config=config.to_dict()))
    # Seed-major: with fewer workers than runs, every algorithm's first seed comes first, so a
    # comparison has curves of every algorithm as early as possible.
    specs.sort(key=lambda spec: (list(args.seeds).index(spec.seed), list(args.algos).index(spec.algo)))
    return specs


def _check_playable(ref: EnvRef, order: list[str] | None, observation: str, algos: Sequence[str]) -> None:
    """Build the env once through the joint-step adapter: catches bad ids, kwargs, orders and
    spaces before any process starts."""
    from agents.adapter import JointStepEnv

    env = check_env(ref)
    try:
        adapter = JointStepEnv(env=env, order=order, observation=observation)
        adapter.reset(seed=0)
    except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError) as exc:
        raise EnvError(f"environment {ref.env!r} cannot be played by the learners "
                       f"(order={order}, observation={observation!r}): {exc}") from exc
    finally:
        env.close()
    spec = adapter.joint_spec
    if "maddpg" in algos and spec.action_kind != "discrete":
        raise EnvError(f"maddpg handles Discrete actions only; {ref.env!r} has {spec.action_kind} actions")
