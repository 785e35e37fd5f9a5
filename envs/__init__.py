"""PettingZoo environments of the STEP paper: matrix games, Multi-Agent MuJoCo, on-ramp merging.

Use ``envs.make(env_id, **kwargs)``; ``envs.registered_ids()`` lists the ids.
"""

from envs.registry import EnvSpec, make, register, registered_ids

__all__ = ["EnvSpec", "make", "register", "registered_ids"]
