"""Configuration of the STEP agent and of the multi-agent PPO baselines that share its machinery.

One dataclass, :class:`STEPConfig`, holds every setting of the learner; the baselines
(MAPPO, IPPO, HAPPO) are the same machinery with a different :class:`Variant`. The field
defaults are general starting points (hidden 64, lr 5e-4, clip 0.2, 5 epochs, entropy 0.05,
gamma 0.99, GAE lambda 0.95, beta 1.0); :meth:`STEPConfig.matrix_games` is the preset tuned for
the repeated matrix games (constant observation, 25-step episodes, 10,000 steps per trial:
gamma 0, entropy 0.1);
:meth:`STEPConfig.continuous_games` adds the Gaussian settings for Box-action repeated games.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
from typing import Any


class Variant(enum.Enum):
    """Which multi-agent PPO algorithm the shared machinery runs."""

    STEP = "step"
    """N-level policy (hypernetwork over priority IDs), prior actions in the input, per-agent
    critics V^i(s, a^{1:i-1}), agent-by-agent updates in priority order (the STEP paper)."""
    MAPPO = "mappo"
    """One shared actor with an agent-ID input, a centralised critic on the joint observation,
    simultaneous actions, one joint update."""
    IPPO = "ippo"
    """Independent actors and critics on each agent's own observation, simultaneous actions."""
    HAPPO = "happo"
    """Per-agent actors on own observations, centralised per-agent critics, sequential updates
    in a random order each iteration with the HAPPO correction factor on the advantage."""


@dataclass(kw_only=True)
class STEPConfig:
    """Every setting of the STEP learner (and of the baselines, through :attr:`variant`)."""

    variant: Variant = Variant.STEP
    """The algorithm to run on the shared machinery."""
    hidden_size: int = 64
    """Width of every hidden layer (state embedding, hypernetwork, critics, baseline actors)."""
    priority_embedding_size: int = 16
    """Size of the learned priority-ID embedding e^i that conditions the hypernetwork."""
    target_hidden_size: int = 0
    """Hidden width of the generated target policy network; 0 makes it one linear layer on top
    of the state embedding (the hypernetwork then generates weights and bias of that layer)."""
    lr: float = 5e-4
    """Adam learning rate of actor and critics."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """PPO ratio clip epsilon; also the value clip of Eq. 12."""
    epochs: int = 5
    """PPO epochs over each collected batch (per agent, for the sequential variants)."""
    minibatches: int = 1
    """Minibatches per epoch (1: full-batch gradient steps)."""
    entropy: float = 0.05
    """Entropy bonus eta."""
    beta: float = 1.0
    """Weight of the hypernetwork regulariser of Eq. 11."""
    vf_coef: float = 0.5
    """Weight of the critic loss in the summed loss of one update step."""
    max_grad_norm: float | None = 0.5
    """Gradient-norm clip; None disables it."""
    advantage_normalization: bool = True
    """Normalise each agent's advantages over its own samples of a minibatch."""
    log_std_init: float = -0.5
    """Initial log standard deviation of the Gaussian policy (Box action spaces)."""
    log_std_min: float = -5.0
    """Floor of the Gaussian policy's log standard deviation: its spread cannot collapse below
    exp(log_std_min), whatever the updates do (the ceiling is 2.0)."""
    log_std_source: str = "generated"
    """STEP's Gaussian log-std: ``"generated"`` by the hypernetwork with the target network,
    H(e^i) (every priority's update moves the shared hypernetwork that makes all of them), or
    ``"priority"``: one free log-std vector per priority position, updated only in its own
    priority's update, as the baselines' per-agent log-std. On MA-MuJoCo the per-priority
    log-std was far better on HalfCheetah and collapsed on ManyAgentAnt (see the project's
    results), so the MuJoCo preset keeps the generated one."""
    value_normalization: bool = True
    """Critics predict returns normalised by running per-agent statistics (mean and std of the
    returns seen so far), so the value loss and the value clip work on the same scale whatever
    the reward scale; values are de-normalised for GAE."""
    value_clip: float | None = 0.2
    """Clip of V - V_old in the value loss (Eq. 12), in the critic's units (normalised units
    with ``value_normalization``); None: plain squared error."""
    obs_normalization: bool = False
    """Normalise each agent's base observation (and the global state) by running per-agent
    mean and std, clipped to [-10, 10]. Updated from each collected batch after the update;
    frozen while acting and evaluating; saved in checkpoints."""
    reward_scaling: bool = False
    """Divide each agent's rewards by the running std of its discounted return (accumulated
    forward within each collected batch), as PPO implementations for continuous control do."""
    lr_decay: bool = False
    """Decay the learning rates linearly to 0 over the run (needs the run's length:
    ``STEPAlgorithm.set_training_horizon``, which :func:`agents.training.train` calls)."""
    critic_lr: float | None = None
    """Adam learning rate of the critics; None: ``lr``."""
    superior_lr_scale: float = 1.0
    """STEP: the actor learning rate in the update of priority position p is
    ``lr * superior_lr_scale ** (n_agents - 1 - p)``: with a value below 1 every superior moves
    more slowly than the agents below it, so that followers can track their best responses to
    what the leaders do (two-timescale Stackelberg learning). 1.0: one rate for every position."""
    bottom_up: float = 0.0
    """STEP: the fraction of the run before the leader's policy starts to learn; position p of
    n starts after ``bottom_up * (n - 1 - p) / (n - 1)`` of it (the last follower at once).
    Until its start a position's actor parameters take no step in its update (its critic
    learns from the start). 0: every position learns from the start (the paper's update).

    Why: a leader's advantage is only right once the followers below it answer each of its
    actions with their best responses; a leader that learns from the start commits to what
    is best against followers that are still random (docs/RESULTS.md, the random games).
    Pair it with ``policy_anchor``: the shared parameters that the learning positions move
    would otherwise carry the waiting positions' policies along. Needs the run's length
    (``STEPAlgorithm.set_training_horizon``, which :func:`agents.training.train` calls)."""
    policy_anchor: float = 0.0
    """STEP: weight of KL(pi_before^j || pi^j), averaged over the batch's pairs of every other
    priority position j, added to the loss of each position's update (pi_before^j: position
    j's policy just before this update began). 0: off (the paper's update).

    Why: every position's update moves the shared state embedding E and hypernetwork H, and
    Eq. 11's regulariser protects only the superiors' generated parameters H(e^j), not what
    E does to their inputs, nor the subordinates at all. Measured on a random 3-agent game
    (make_random_games.py --seed 7, three_int80, seed 0): one leader update changed the last
    follower's policy by a total variation of 0.13-0.32 (mean over its 12 contexts), as much
    as or more than the follower's own update, so small payoff differences between a
    follower's actions drowned in this drift and followers settled on wrong replies. The
    anchor makes the update agent by agent for the policies themselves, as Algorithm 1
    intends. Its value and gradient are zero where an update starts, so the first gradient
    step is unchanged. Costs one more actor pass over the other positions' pairs per
    gradient step (with minibatches, over a share of them). See docs/RESULTS.md."""
    minibatch_size: int | None = None
    """Pairs (time step, agent) per gradient step; overrides ``minibatches`` when set. With a
    size instead of a count, every variant takes the same number of gradient steps per
    collected batch: the sequential variants (STEP, HAPPO) split each agent's share into
    minibatches of this size, the joint ones (MAPPO, IPPO) all pairs."""
    critic_state: str = "auto"
    """What the centralised critics (STEP, MAPPO, HAPPO) read besides observations: the env's
    global ``state()`` -- ``"auto"`` where the env has ``state()`` and a Box ``state_space``,
    ``"always"`` (an error where it has not), ``"never"``. IPPO's critics stay independent."""
    n_envs: int = 8
    """Parallel environments of the collector."""
    steps_per_collect: int = 400
    """Environment (joint) steps collected between two updates, over all envs."""
    torch_threads: int = 1
    """Intra-op threads of torch while training. 1 is fastest for these small networks: with
    Tianshou (numba) loaded, two threads made each tiny forward pass ~50x slower here."""

    def __post_init__(self) -> None:
        if isinstance(self.variant, str):  # from a checkpoint or the command line
            self.variant = Variant(self.variant)
        positive = ("hidden_size", "priority_embedding_size", "epochs", "minibatches", "n_envs",
                    "steps_per_collect", "torch_threads")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive integer")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma!r} must lie in [0, 1]")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda={self.gae_lambda!r} must lie in [0, 1]")
        if self.clip <= 0.0:
            raise ValueError(f"clip={self.clip!r} must be positive")
        if self.target_hidden_size < 0:
            raise ValueError(f"target_hidden_size={self.target_hidden_size!r} must be >= 0")
        for name in ("lr", "critic_lr", "value_clip", "minibatch_size", "superior_lr_scale"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} must be positive (or None where allowed)")
        if not 0.0 <= self.bottom_up < 1.0:
            raise ValueError(f"bottom_up={self.bottom_up!r} must lie in [0, 1) (a fraction of the run; 0 turns it off)")
        if not self.policy_anchor >= 0.0:
            raise ValueError(f"policy_anchor={self.policy_anchor!r} must be >= 0 (0 turns it off)")
        if not self.log_std_min < 2.0:
            raise ValueError(f"log_std_min={self.log_std_min!r} must be below the ceiling 2.0")
        if self.log_std_source not in ("generated", "priority"):
            raise ValueError(f"log_std_source={self.log_std_source!r}; expected 'generated' or 'priority'")
        if self.critic_state not in ("auto", "always", "never"):
            raise ValueError(f"critic_state={self.critic_state!r}; expected 'auto', 'always' or 'never'")

    def actor_waits(self, position: int, n_positions: int, progress: float) -> bool:
        """Whether priority ``position`` of ``n_positions`` still waits to learn after
        ``progress`` (fraction of the run) under :attr:`bottom_up`."""
        return n_positions > 1 and progress < self.bottom_up * (n_positions - 1 - position) / (n_positions - 1)

    @classmethod
    def matrix_games(cls, **overrides: Any) -> STEPConfig:
        """The preset used for the repeated matrix games.

        A repeated normal-form game with a constant observation is a sequence of independent
        stage games: an action changes nothing after its own time step, so future rewards
        only add noise to its advantage. ``gamma = 0`` (and hence ``gae_lambda`` irrelevant,
        set to 0) makes each agent's advantage its own stage reward minus its baseline
        V^i(s, a^{1:i-1}). Measured on Penalty k=-100 (8 seeds, 10,000 steps): gamma 0.99 /
        lambda 0.95 found the SE in 2/6, gamma 0.99 / lambda 0 in 6/8, gamma 0 in 6/6.

        ``entropy = 0.1`` (the general default is 0.05): the leader must keep trying a1 and a3
        until the follower has learned its reply to each, or it settles on the one the follower
        happened to answer first -- (a3, a1), payoff 8, instead of the SE (a1, a3), payoff 10.
        Measured with the set-form state embedding, 10,000 steps: entropy 0.05 found the SE in
        92/100 seeds at k=-100 and at k=-75; entropy 0.1 in 39/40 at k=-100, -75 and -50, 40/40
        at k=0 and on Mixing.

        ``value_normalization = False`` (the general default is on): with gamma = 0 and
        per-agent advantage normalisation the critics' scale matters little here, and the
        normalised critics found the SE less often on Penalty k=-100: 37/40 (seeds 0-39),
        94/100 (seeds 100-199) and, with critic lr 1e-3, 92/100 (seeds 0-99), against 40/40
        (seeds 0-39) and 99/100 (seeds 100-199) without. (Games with other payoff scales: see
        docs/RESULTS.md.)
        """
        return cls(**{"gamma": 0.0, "gae_lambda": 0.0, "entropy": 0.1, "value_normalization": False,
                      **overrides})

    @classmethod
    def continuous_games(cls, **overrides: Any) -> STEPConfig:
        """The preset for repeated games with Box (Gaussian) actions, e.g. ``QuadraticGame``.

        As :meth:`matrix_games` (``gamma = gae_lambda = 0``), plus three Gaussian settings:

        * ``advantage_normalization=False``: with normalised advantages the pull on the
          log-std of a quadratic stage reward no longer shrinks with the std (it is a constant
          ~sqrt(2) per unit log-std at the optimum), so the std collapses to the clamp floor
          whatever the entropy bonus. Measured on QuadraticGame (seed 1, 30,000 steps,
          entropy 0, normalised): the follower's log-std fell to -4 (std 0.02); its PPO trust
          region became too small to undo the drift that the leader's updates cause through
          the shared hypernetwork, its mean left [-1, 1] (every sample clipped, no signal)
          and the greedy follower played 1.0 whatever the leader did.
        * ``entropy=0.01``: with raw advantages this balances the quadratic pull at a
          follower std of ~0.08 (log-std ~-2.5) and a leader std of ~0.15.
        * ``log_std_init=-1.0``: initial std 0.37, most samples inside [-1, 1].

        Measured on QuadraticGame (x* = 0.571, y* = 0.286): see tests/test_continuous.py and
        the numbers in its module docstring.
        """
        defaults = {"gamma": 0.0, "gae_lambda": 0.0, "advantage_normalization": False,
                    "entropy": 0.01, "log_std_init": -1.0}
        return cls(**{**defaults, **overrides})

    @classmethod
    def mujoco(cls, **overrides: Any) -> STEPConfig:
        """The preset for Multi-Agent MuJoCo (continuous control, one team reward).

        The settings that the strong MA-MuJoCo PPO setups share (MAPPO's and HAPPO's published
        configurations, CleanRL's single-agent PPO): observation normalisation, reward scaling,
        value normalisation, linear learning-rate decay, lr 3e-4, 4,000 steps per collect over
        8 envs, 5 epochs, clip 0.2, gradient-norm clip 0.5. Minibatches are given by size
        (1,000 pairs) so that every algorithm takes the same number of gradient steps per
        batch (:attr:`minibatch_size`). The Gaussian policy starts at std 0.6
        (``log_std_init=-0.5``), keeps a small entropy bonus (1e-3, the MuJoCo value of later
        work by STEP's first author) and cannot fall below std 0.135 (``log_std_min=-2``):
        without a bonus STEP's policy entropy collapsed within 500k steps on HalfCheetah 2x3
        (4.3 -> -0.5) and its return went flat. These are starting points, not tuned per
        algorithm; every algorithm of a comparison runs with the same preset.
        """
        defaults: dict[str, Any] = {
            "lr": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.2, "epochs": 5,
            "minibatch_size": 1000, "n_envs": 8, "steps_per_collect": 4000, "entropy": 1e-3,
            "log_std_init": -0.5, "log_std_min": -2.0, "obs_normalization": True,
            "reward_scaling": True, "value_normalization": True, "lr_decay": True,
            "max_grad_norm": 0.5,
        }
        return cls(**{**defaults, **overrides})

    @classmethod
    def merge(cls, **overrides: Any) -> STEPConfig:
        """The preset for highway on-ramp merging (5 discrete meta-actions, per-vehicle rewards,
        100-step episodes that end at the first crash).

        lr 5e-4, 5 epochs and hidden size 64 as in later work by STEP's first author on this
        task (which used clip 0.05; here 0.2, the same for every algorithm); gamma 0.99;
        reward scaling, because one crash costs 200 while a step earns at most about 1;
        value normalisation; no observation normalisation (the observations are already
        normalised kinematics); entropy 0.01 for the discrete policies; 2,000 steps per
        collect over 8 envs, minibatches of 500 pairs. Starting points, not tuned.
        """
        defaults: dict[str, Any] = {
            "lr": 5e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.2, "epochs": 5,
            "minibatch_size": 500, "n_envs": 8, "steps_per_collect": 2000, "entropy": 0.01,
            "reward_scaling": True, "value_normalization": True, "obs_normalization": False,
        }
        return cls(**{**defaults, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives only, so that ``torch.load(..., weights_only=True)`` accepts it."""
        out = asdict(self)
        out["variant"] = self.variant.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> STEPConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown STEPConfig fields {unknown}; expected some of {sorted(known)}")
        return cls(**data)
