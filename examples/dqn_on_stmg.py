"""Tianshou's own multi-agent DQN on the STMG wrapper versus the simultaneous game.

``stmg.wrap`` is a plain PettingZoo AECEnv, so any AEC learner can play the Stackelberg
(leader-follower) version of a game. This script trains Tianshou 2.0.1's off-policy
multi-agent path (``PettingZooEnv`` + ``MultiAgentOffPolicyAlgorithm`` with one ``DQN`` per
agent) on the repeated Penalty game twice:

* **STMG**: ``stmg.wrap(envs.make("matrix/penalty-v0", k=k), flatten=True)``; the leader
  ``agent_0`` acts first and the follower ``agent_1`` sees the leader's action in its
  observation.
* **simultaneous**: ``pettingzoo.utils.conversions.parallel_to_aec(envs.make(...))``; agents
  still act in turn, but the follower does not see what the leader chose.

For each setting it prints the fraction of trials whose greedy joint action is the Stackelberg
equilibrium (``envs.matrix.stackelberg_equilibrium``) and the mean reward of that greedy joint
action.

The reward shim (:class:`OwnRewardMultiAgentDQN`, a Tianshou template-method override)
---------------------------------------------------------------------------------------
Tianshou's ``PettingZooEnv.step`` returns the env's per-step ``rewards`` dict as a vector, and
``MARLDispatcher`` trains each agent on its own column of the row of *its own* transition. In a
repeated matrix game (both in ``stmg.wrap`` and in ``parallel_to_aec``) the rewards of a time
step arrive when the last agent closes the cycle, and the first step of the cycle clears them.
So the leader's transitions always carry reward 0 (checked in ``tests/test_dqn_on_stmg.py``):
unpatched, the leader learns nothing. Its ``obs_next`` is also the follower's observation, so a
bootstrap with ``gamma > 0`` would evaluate the leader's Q-network on the follower's input.

The shim credits every agent, for its transition at buffer index ``i``, with what it earned
until it acts again -- the amount PettingZoo's ``last()`` shows the agent at its next turn
(``_cumulative_rewards``): the sum of its own reward column from ``i`` up to the transition ``j``
just before its next turn (or the episode's end). It then hands ``j`` instead of ``i`` to the
agent's DQN as the index to bootstrap from, so that ``obs_next[j]`` (the agent's own next
observation) and ``done[j]`` are used. This is exact for 1-step returns; the shim refuses
``n_step_return_horizon > 1``. Collect whole cycles (a multiple of ``n_agents`` env steps per
collect from one env, as here) so that no sampled cycle is still open.

A second finding, fixed in ``train_trial``: the trainer sets ``is_within_training_step`` only on
the ``MultiAgentPolicy``, while each agent's ``DiscreteQLearningPolicy`` reads its own flag to
pick ``eps_training`` over ``eps_inference``; unpatched, the agents never explore. The
``training_fn`` sets the agents' flags too.

Run ``python examples/dqn_on_stmg.py --help`` for the options; ``--steps`` counts time steps
(one action of every agent), i.e. ``n_agents`` Tianshou env steps each.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from pettingzoo.utils.conversions import parallel_to_aec
from pettingzoo.utils.env import AECEnv
from tianshou.algorithm import DQN
from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.multiagent.marl import MultiAgentOffPolicyAlgorithm
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, ReplayBuffer, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.env.pettingzoo_env import PettingZooEnv
from tianshou.trainer import OffPolicyTrainerParams
from tianshou.utils.net.common import Net
from tqdm import tqdm

import envs
import stmg
from envs.matrix import stackelberg_equilibrium


@dataclass(kw_only=True)
class Args:
    """Options of the script (each one is a command-line flag)."""

    k: float = -100.0
    """Penalty k of the Penalty game (the paper uses 0, -25, -50, -75, -100)."""
    steps: int = 2000
    """Time steps per trial (each agent acts once per time step)."""
    trials: int = 3
    """Independent trials per setting (seeds seed, seed+1, ...)."""
    seed: int = 0
    """Seed of the first trial."""
    lr: float = 1e-3
    """Adam learning rate of each agent's Q-network."""
    hidden_size: int = 64
    """Width of the two hidden layers of each Q-network."""
    gamma: float = 0.9
    """Discount factor."""
    batch_size: int = 64
    """Transitions per gradient step."""
    eps_start: float = 1.0
    """Epsilon-greedy exploration at the start of training."""
    eps_end: float = 0.05
    """Epsilon after the decay (the first half of training, linear)."""
    no_shim: bool = False
    """Train on Tianshou's raw multi-agent rewards (the leader then learns from zeros)."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Parse the command line into :class:`Args` (``--help`` lists every field's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = _field_docs()
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=docs[f.name])
        else:
            kind = {"int": int, "float": float}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default, help=docs[f.name])
    args = Args(**vars(parser.parse_args(argv)))
    for name in ("steps", "trials", "batch_size", "hidden_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    for name in ("gamma", "eps_start", "eps_end"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must lie in [0, 1], got {getattr(args, name)}")
    return args


def _field_docs() -> dict[str, str]:
    """The docstring under each field of :class:`Args` (for ``--help``)."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(Args)).body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[attr-defined,union-attr]
    return docs


# --- the reward shim -----------------------------------------------------------------------------
def credit_own_rewards(buffer: ReplayBuffer, indices: np.ndarray, agent_idx: dict[Any, int]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """What each sampled transition's agent earned until its next turn, and where that ends.

    Args:
        buffer: a buffer of Tianshou ``PettingZooEnv`` transitions (``obs.agent_id`` per row,
            ``rew`` of shape (size, n_agents)).
        indices: (I,) sampled buffer indices.
        agent_idx: agent id -> column of ``rew`` (``PettingZooEnv.agent_idx``).

    Returns:
        ``(credited, last)``: credited (I,) is the sum of agent A's column of ``rew`` over the
        transitions from ``indices`` up to ``last`` (I,), the transition just before A's next
        turn in the same episode (or the episode's final transition); A = ``obs.agent_id`` of
        each sampled transition.
    """
    rew = np.asarray(buffer.rew, dtype=np.float64)  # (size, n_agents)
    ids = np.asarray(buffer.obs.agent_id)  # (size,) the acting agent of each transition
    done = np.asarray(buffer.done, dtype=bool)  # (size,)
    last = np.asarray(indices, dtype=np.int64).copy()  # (I,)
    owner = ids[last]  # (I,)
    cols = np.array([agent_idx[a] for a in owner], dtype=np.int64)  # (I,)
    credited = rew[last, cols].copy()  # (I,)
    open_ = ~done[last]  # (I,) the walk may continue: the episode goes on after `last`
    # Each hop moves to the next transition; a cycle of n agents needs at most n - 1 hops,
    # the bound only guards against a malformed buffer.
    for _ in range(4 * len(agent_idx)):
        if not open_.any():
            break
        nxt = buffer.next(last)  # (I,) equals `last` at an episode's or the buffer's end
        hop = open_ & (nxt != last) & (ids[nxt] != owner)
        credited[hop] += rew[nxt[hop], cols[hop]]
        last = np.where(hop, nxt, last)
        open_ = hop & ~done[last]
    return credited, last


class OwnRewardMultiAgentDQN(MultiAgentOffPolicyAlgorithm):
    """Tianshou's multi-agent off-policy algorithm with each agent credited its own reward.

    Overrides only the template method ``_preprocess_batch`` (module docstring): rewards from
    :func:`credit_own_rewards`, and each agent bootstraps from its own next observation.
    """

    def __init__(self, *, algorithms: list[Any], env: PettingZooEnv) -> None:
        for algorithm in algorithms:
            if getattr(algorithm, "n_step", 1) != 1:
                raise ValueError(
                    f"the reward shim is exact for 1-step returns only; got "
                    f"n_step_return_horizon={algorithm.n_step}"
                )
        super().__init__(algorithms=algorithms, env=env)

    def _preprocess_batch(self, batch: Any, buffer: ReplayBuffer, indices: np.ndarray) -> Any:
        agent_idx = self._dispatcher.agent_idx
        credited, last = credit_own_rewards(buffer, indices, agent_idx)
        cols = np.array([agent_idx[a] for a in np.asarray(batch.obs.agent_id)], dtype=np.int64)
        original = buffer.rew
        patched = np.array(original, dtype=np.float64, copy=True)  # (size, n_agents)
        # Column A at `last` holds A's credit for its turn at `indices`. No two sampled turns of
        # one agent share a `last`, and other agents' columns are untouched.
        patched[last, cols] = credited
        batch.rew = patched[last]
        buffer._meta.rew = patched  # the dispatcher swaps buffer rewards the same way
        try:
            # The DQNs compute 1-step targets at `last`: rew, done and obs_next of that row.
            return super()._preprocess_batch(batch, buffer, last)
        finally:
            buffer._meta.rew = original


# --- training -------------------------------------------------------------------------------------
def make_game(setting: str, k: float) -> AECEnv:
    """The AEC game of a setting: ``"stmg"`` (leader first, follower sees its action) or
    ``"simultaneous"`` (follower does not)."""
    if setting == "stmg":
        return stmg.wrap(envs.make("matrix/penalty-v0", k=k), flatten=True)
    if setting == "simultaneous":
        return parallel_to_aec(envs.make("matrix/penalty-v0", k=k))
    raise ValueError(f"setting={setting!r} is not known; expected 'stmg' or 'simultaneous'")


def train_trial(setting: str, args: Args, seed: int) -> MultiAgentOffPolicyAlgorithm:
    """Train one DQN per agent on ``setting`` for ``args.steps`` time steps."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    def make_env() -> PettingZooEnv:
        return PettingZooEnv(make_game(setting, args.k))

    probe = make_env()
    n_agents = len(probe.agents)
    algorithms: list[OffPolicyAlgorithm[Any]] = []
    for _ in probe.agents:
        net = Net(state_shape=probe.observation_space.shape, action_shape=probe.action_space.n,
                  hidden_sizes=[args.hidden_size, args.hidden_size])
        policy = DiscreteQLearningPolicy(model=net, action_space=probe.action_space,
                                         observation_space=probe.observation_space,
                                         eps_training=args.eps_start)
        algorithms.append(DQN(policy=policy, optim=AdamOptimizerFactory(lr=args.lr), gamma=args.gamma,
                              target_update_freq=100))
    cls = MultiAgentOffPolicyAlgorithm if args.no_shim else OwnRewardMultiAgentDQN
    algorithm = cls(algorithms=algorithms, env=probe)
    venv = DummyVectorEnv([make_env])
    venv.seed(seed)
    collector: Collector[Any] = Collector(algorithm.policy, venv, VectorReplayBuffer(2 * n_agents * args.steps, 1),
                          exploration_noise=True)
    collector.reset()
    env_steps = n_agents * args.steps
    decay_steps = max(1, env_steps // 2)

    def set_eps(epoch: int, env_step: int) -> None:
        frac = min(1.0, env_step / decay_steps)
        for a in algorithms:
            a.policy.set_eps_training(args.eps_start + frac * (args.eps_end - args.eps_start))
            # The trainer flags only the MultiAgentPolicy as being in a training step; each
            # DQN policy reads its own flag to choose eps_training over eps_inference (0), so
            # without this line Tianshou's multi-agent DQN never explores.
            a.policy.is_within_training_step = True

    params = OffPolicyTrainerParams(
        training_collector=collector,
        max_epochs=1,
        epoch_num_steps=env_steps,
        collection_step_num_env_steps=10 * n_agents,  # whole cycles: no open cycle is sampled
        batch_size=args.batch_size,
        update_step_num_gradient_steps_per_sample=0.1,
        training_fn=set_eps,
        test_collector=None,
        multi_agent_return_reduction=lambda r: np.asarray(r, float).mean(axis=-1),
        verbose=False,
        show_progress=False,
    )
    try:
        algorithm.run_training(params)
    finally:
        venv.close()
        for a in algorithms:
            a.policy.is_within_training_step = False
    return algorithm


def greedy_joint_action(algorithm: MultiAgentOffPolicyAlgorithm, setting: str, k: float) -> tuple[int, ...]:
    """Play one time step greedily: each agent in turn takes the argmax of its Q-network on
    what it observes (in the STMG, the follower's observation holds the leader's action)."""
    game = make_game(setting, k)
    game.reset(seed=0)
    joint: dict[str, int] = {}
    for _ in game.possible_agents:
        agent = game.agent_selection
        obs = torch.as_tensor(np.asarray(game.observe(agent), np.float32)).reshape(1, -1)  # (1, obs_dim)
        with torch.no_grad():
            q, _ = algorithm.get_algorithm(agent).policy.model(obs)  # (1, n_actions)
        joint[agent] = int(q.argmax(dim=1).item())
        game.step(joint[agent])
    return tuple(joint[a] for a in game.possible_agents)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run both settings and print, for each, the SE rate and the mean greedy reward."""
    args = parse_args(argv)
    logging.getLogger("tianshou.data.stats").setLevel(logging.ERROR)  # 2-D per-agent returns
    payoffs = envs.make("matrix/penalty-v0", k=args.k).payoffs
    se_joint, se_values = stackelberg_equilibrium(payoffs)
    settings = ("stmg", "simultaneous")
    joints: dict[str, list[tuple[int, ...]]] = {s: [] for s in settings}
    for trial in tqdm(range(args.trials), desc="trials"):
        for setting in settings:
            algorithm = train_trial(setting, args, args.seed + trial)
            joints[setting].append(greedy_joint_action(algorithm, setting, args.k))
    print(f"Penalty k={args.k:g}: Stackelberg equilibrium {se_joint} with rewards {se_values.tolist()}; "
          f"{args.trials} trials x {args.steps} time steps; reward shim {'off' if args.no_shim else 'on'}")
    summary: dict[str, dict[str, float]] = {}
    labels = {"stmg": "STMG (follower sees the leader's action)",
              "simultaneous": "simultaneous (parallel_to_aec)"}
    for setting in settings:
        rewards = np.array([payoffs[(slice(None), *j)] for j in joints[setting]])  # (trials, n_agents)
        se_rate = float(np.mean([j == tuple(se_joint) for j in joints[setting]]))
        summary[setting] = {"se_rate": se_rate, "mean_reward": float(rewards.mean())}
        print(f"{labels[setting]}: SE rate {se_rate:.2f}, mean reward {rewards.mean():.2f} "
              f"(per agent {np.round(rewards.mean(axis=0), 2).tolist()}); greedy joint actions "
              f"{[list(j) for j in joints[setting]]}")
    return summary


if __name__ == "__main__":
    main()
