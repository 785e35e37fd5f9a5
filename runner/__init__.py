"""The experiment runner: the layer that knows both the learners (:mod:`agents`) and the
environments (:mod:`envs`).

:mod:`agents` learns on any PettingZoo ParallelEnv and imports nothing from :mod:`envs`;
everything that picks an environment by id, runs trials on the paper's games, evaluates,
writes curves or plots lives here, on top of both.
"""
