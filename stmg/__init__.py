"""stmg: play any PettingZoo ParallelEnv as a spatio-temporal sequential Markov game (STMG).

``stmg.wrap(env, order=[...])`` returns a PettingZoo AECEnv in which, within each time step,
the agents act one after another in priority order and each sees the actions already chosen
by the agents before it. The observation encoding is public (:mod:`stmg.encoding`) so that a
policy can rebuild any agent's observation itself.
"""

from stmg.encoding import (
    ActionCodec,
    STMGEncoder,
    action_encoding_size,
    encode_action,
    validate_action,
)
from stmg.env import OrderFn, STMGEnv, wrap

__all__ = [
    "ActionCodec",
    "OrderFn",
    "STMGEncoder",
    "STMGEnv",
    "action_encoding_size",
    "encode_action",
    "validate_action",
    "wrap",
]
