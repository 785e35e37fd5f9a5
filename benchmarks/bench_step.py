"""Benchmark: STEP vs plain Tianshou PPO wall time, and policy parameter counts vs agent count.

    python benchmarks/bench_step.py                 # 5 timed trials each, 10,000 steps
    python benchmarks/bench_step.py --trials 3 --steps 10000 --max-agents 17

Timing: one 10,000-step STEP trial on Penalty k=-100 (twice: through ``stmg.wrap`` and the
joint-step adapter, and with the game stepped as arrays as ``examples/train_matrix.py`` trains
it) against Tianshou's own ``PPO`` on the single-agent version of the same game (the joint
action flattened into one Discrete(9), shared reward), with the same collector settings (n envs,
steps per update, epochs, hidden size), also twice: over Tianshou's ``DummyVectorEnv`` and over
the lean vector env STEP trains with (:mod:`agents.vector_env`), so that the ratio against
PPO-lean shows the learner alone. A warm-up run of each is done first so that one-time costs (imports, numba) are excluded.

Parameter counts: the actor ("policy") parameters of STEP (shared N-level policy) and HAPPO
(one actor per agent) for 2..max-agents agents on a game with 3 actions and 1-dim observation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents import STEPConfig, Variant, train  # noqa: E402
from agents.model import MultiAgentActorCritic  # noqa: E402
from agents.networks import count_parameters  # noqa: E402
from agents.spec import JointSpec  # noqa: E402
from agents.vector_env import LeanDummyVectorEnv  # noqa: E402
from envs import matrix  # noqa: E402
from runner.matrix_trials import array_venv_fn  # noqa: E402


class FlatPenalty(gym.Env[np.ndarray, np.int64]):
    """Penalty as one agent: action a = 3 * a_leader + a_follower, shared reward, 25 steps."""

    def __init__(self, k: float = -100.0, episode_length: int = 25) -> None:
        self.table = matrix.penalty(k)[0]
        self.episode_length = episode_length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(9)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.ones(1, np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        reward = float(self.table[int(action) // 3, int(action) % 3])
        return np.ones(1, np.float32), reward, False, self.t >= self.episode_length, {}


def train_plain_ppo(config: STEPConfig, steps: int, seed: int, *, lean: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds for one Tianshou PPO run with the same collector settings; ``lean``:
    over the vector env that STEP's training uses (:mod:`agents.vector_env`) instead of
    Tianshou's ``DummyVectorEnv``."""
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OnPolicyTrainerParams
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

    torch.manual_seed(seed)
    torch.set_num_threads(config.torch_threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    env = FlatPenalty()
    h = config.hidden_size
    actor = DiscreteActor(preprocess_net=Net(state_shape=1, hidden_sizes=[h, h]), action_shape=9,
                          softmax_output=False)
    critic = DiscreteCritic(preprocess_net=Net(state_shape=1, hidden_sizes=[h, h]))
    policy = ProbabilisticActorPolicy(actor=actor, dist_fn=lambda logits: torch.distributions.Categorical(logits=logits),
                                      action_space=env.action_space, action_scaling=False)
    algo = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=config.lr),
               eps_clip=config.clip, ent_coef=config.entropy, gamma=config.gamma,
               gae_lambda=config.gae_lambda, max_grad_norm=config.max_grad_norm)
    venv = (LeanDummyVectorEnv if lean else DummyVectorEnv)([FlatPenalty for _ in range(config.n_envs)])
    venv.seed(seed)
    collector: Collector[Any] = Collector(policy, venv, VectorReplayBuffer(config.steps_per_collect + config.n_envs, config.n_envs))
    collector.reset()
    algo.run_training(OnPolicyTrainerParams(
        training_collector=collector, max_epochs=1, epoch_num_steps=steps,
        collection_step_num_env_steps=config.steps_per_collect,
        update_step_num_repetitions=config.epochs, batch_size=None, test_collector=None,
        verbose=False, show_progress=False))
    venv.close()
    return time.perf_counter() - start, time.process_time() - cpu_start


def train_step(config: STEPConfig, steps: int, seed: int, *, arrays: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds for one STEP run on Penalty k=-100: through ``stmg.wrap`` and the
    joint-step adapter (any PettingZoo game's path), or with ``arrays`` the game stepped as
    arrays, as ``examples/train_matrix.py`` trains a trial (the same training, bit for bit)."""
    payoffs = matrix.penalty(-100.0)
    venv_fn = array_venv_fn(payoffs, config) if arrays else None
    start, cpu_start = time.perf_counter(), time.process_time()
    train(lambda: matrix.MatrixGame(payoffs), config=config, total_steps=steps, seed=seed, venv_fn=venv_fn)
    return time.perf_counter() - start, time.process_time() - cpu_start


def parameter_counts(max_agents: int) -> list[tuple[int, int, int]]:
    """(n_agents, STEP actor parameters, HAPPO actor parameters)."""
    rows = []
    for n in range(2, max_agents + 1):
        spec = JointSpec(possible_agents=tuple(f"agent_{k}" for k in range(n)), obs_dim=1,
                         action_kind="discrete", action_sizes=(3,) * n, action_starts=(0,) * n,
                         slot_size=3)
        counts = [count_parameters(MultiAgentActorCritic(spec=spec, config=STEPConfig(variant=v)).actor)
                  for v in (Variant.STEP, Variant.HAPPO)]
        rows.append((n, counts[0], counts[1]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per trial")
    parser.add_argument("--trials", type=int, default=5, help="timed trials of each (interleaved)")
    parser.add_argument("--max-agents", type=int, default=17, help="largest agent count to count")
    args = parser.parse_args(argv)
    config = STEPConfig.matrix_games()
    train_step(config, 400, seed=99)  # warm-up: imports, first-use costs
    train_step(config, 400, seed=99, arrays=True)
    train_plain_ppo(config, 400, seed=99)
    train_plain_ppo(config, 400, seed=99, lean=True)
    # Interleaved (STEP, STEP on arrays, PPO, PPO-lean, ...) so that load from other jobs hits all alike.
    # Wall time is what a user waits; this process's CPU time is less sensitive to other jobs
    # on a shared machine. Both are reported as ratios of medians.
    times: dict[str, list[tuple[float, float]]] = {"STEP": [], "STEP-arrays": [], "PPO": [], "PPO-lean": []}
    for seed in tqdm(range(args.trials), desc="timed trials (STEP x 2 + PPO x 2)", disable=args.trials < 2):
        times["STEP"].append(train_step(config, args.steps, seed))
        times["STEP-arrays"].append(train_step(config, args.steps, seed, arrays=True))
        times["PPO"].append(train_plain_ppo(config, args.steps, seed))
        times["PPO-lean"].append(train_plain_ppo(config, args.steps, seed, lean=True))
    print("STEP: the game through stmg.wrap and the joint-step adapter (any PettingZoo game's path)")
    print("STEP-arrays: the game stepped as arrays, as examples/train_matrix.py trains a trial")
    print("PPO: Tianshou's own PPO on the flattened game (a plain gymnasium env), Tianshou's DummyVectorEnv")
    print("PPO-lean: the same over the vector env STEP trains with (no env-id entry in the step infos)")
    for label, column in (("wall", 0), ("CPU", 1)):
        medians = {name: float(np.median([t[column] for t in rows])) for name, rows in times.items()}
        for name, rows in times.items():
            print(f"{label:4} {name:11} {args.steps} steps: median {medians[name]:.2f} s per trial "
                  f"({', '.join(f'{t[column]:.2f}' for t in rows)})")
        for name in ("STEP", "STEP-arrays"):
            for ppo in ("PPO", "PPO-lean"):
                print(f"{label:4} ratio {name} / {ppo} (medians): {medians[name] / medians[ppo]:.2f}x")
    print("\nactor parameters   n_agents   STEP (shared N-level)   HAPPO (one actor per agent)")
    for n, step_count, happo_count in parameter_counts(args.max_agents):
        print(f"{'':19}{n:8d}   {step_count:21d}   {happo_count:27d}")


if __name__ == "__main__":
    main()
