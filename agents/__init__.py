"""The STEP agent (Stackelberg equilibrium via spatio-temporal sequential decisions) on Tianshou.

Modules, one concept each:

* :mod:`agents.config` -- :class:`STEPConfig`, every hyperparameter; :class:`Variant` picks STEP
  or a baseline (MAPPO, IPPO, HAPPO) on the same machinery.
* :mod:`agents.spec` -- :class:`JointSpec`, the shapes of one game.
* :mod:`agents.adapter` -- :class:`JointStepEnv`, one STMG time step per gymnasium step.
* :mod:`agents.encoding` -- the STMG observation built in torch for batches.
* :mod:`agents.networks` -- the N-level policy (hypernetwork) and per-agent MLPs.
* :mod:`agents.model` -- actor and critics of each variant.
* :mod:`agents.policy` -- :class:`STEPPolicy`, the Tianshou policy running the priority chain.
* :mod:`agents.gae` -- per-agent GAE.
* :mod:`agents.normalization` -- running per-agent statistics (observation, reward and value
  normalisation).
* :mod:`agents.algorithm` -- :class:`STEPAlgorithm`, the Tianshou on-policy algorithm.
* :mod:`agents.training` -- :func:`train` with Tianshou's collector and trainer.
* :mod:`agents.execution` -- greedy execution, communicated or decentralized.
* :mod:`agents.checkpoint` -- save and load a whole learner.
* :mod:`agents.maddpg` -- the MADDPG baseline (Tianshou off-policy algorithm).

The package learns on any PettingZoo ParallelEnv and imports nothing from :mod:`envs`; trials
on particular games (train, then compare with the equilibrium) live in :mod:`runner`.
"""

from agents.adapter import JointStepEnv
from agents.algorithm import STEPAlgorithm
from agents.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from agents.config import STEPConfig, Variant
from agents.execution import (
    DecentralizedExecutionError,
    GreedyExecutor,
    matrix_game_report,
    play_greedy,
)
from agents.policy import STEPPolicy
from agents.spec import JointSpec
from agents.training import Learner, build_learner, train

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "DecentralizedExecutionError",
    "GreedyExecutor",
    "JointSpec",
    "JointStepEnv",
    "Learner",
    "STEPAlgorithm",
    "STEPConfig",
    "STEPPolicy",
    "Variant",
    "build_learner",
    "load_checkpoint",
    "load_into",
    "matrix_game_report",
    "play_greedy",
    "save_checkpoint",
    "train",
]
