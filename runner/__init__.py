"""The experiment runner: the layer that knows both the learners (:mod:`agents`) and the
environments (:mod:`envs`).

:mod:`agents` learns on any PettingZoo ParallelEnv and imports nothing from :mod:`envs`;
everything that picks an environment by id, runs trials on the paper's games, evaluates,
writes curves or plots lives here, on top of both.

Modules, one concept each:

* :mod:`runner.envs` -- the ENV argument: a registered id or ``module:callable``.
* :mod:`runner.presets` -- learner configuration per algorithm and env family; config fields
  as command-line options.
* :mod:`runner.evaluation` -- greedy evaluation over whole episodes, counted here.
* :mod:`runner.learners` -- one interface over the PPO family and MADDPG, trained in chunks.
* :mod:`runner.curves` -- the shared ``curves.csv``.
* :mod:`runner.run` -- one run: train, evaluate, checkpoint, resume.
* :mod:`runner.population_run` -- the runs of many seeds trained together as one population.
* :mod:`runner.launch` -- many runs over local processes or Ray.
* :mod:`runner.plots` -- learning curves and bar charts with bootstrap intervals.
* :mod:`runner.cli` -- the command line of ``examples/train.py``.
* :mod:`runner.matrix_trials` -- one trial on a repeated game (train, compare with the SE).
* :mod:`runner.matrix_venv` -- many repeated games stepped as one array computation.
* :mod:`runner.journal` -- finished trials on disk as they complete (resumable scripts).
"""
