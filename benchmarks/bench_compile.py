"""Benchmark: does ``torch.compile`` pay for STEP's priority chain on the CPU?

    python benchmarks/bench_compile.py                       # HalfCheetah 6x1, the MuJoCo preset
    python benchmarks/bench_compile.py --env matrix/penalty-v0 --calls 2000

Times the priority chain that the collector runs at every step (sampling a joint action for
a batch of ``n_envs`` time steps) eagerly, then asks TorchDynamo how the chain would be
captured (``torch._dynamo.explain``: the number of graphs and the reasons for each graph
break), then compiles it with ``torch.compile`` and times it again, printing the ratio eager /
compiled, or the error if compilation fails. Both run under ``torch.no_grad`` (the collector's
``inference_mode`` is not used here: compiling under it failed with a TorchDynamo guard error
in torch 2.13), in this process, one after the other, with one torch thread, as training does.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents.adapter import EXTRA_COLUMNS  # noqa: E402
from agents.config import STEPConfig  # noqa: E402
from agents.policy import batch_tensors  # noqa: E402
from agents.training import build_learner, learner_env_maker  # noqa: E402
from runner.envs import EnvRef  # noqa: E402
from runner.presets import algo_config  # noqa: E402


def microseconds_per_call(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of ``fn()`` over ``calls`` calls after a short warm-up."""
    for _ in range(min(20, calls)):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mamujoco/HalfCheetah-6x1-v0", help="registered env id or module:callable")
    parser.add_argument("--calls", type=int, default=500, help="timed forward passes of each kind")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls {args.calls}: expected at least 1")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    ref = EnvRef(args.env)
    config = algo_config(ref.family, "step", {})
    if not isinstance(config, STEPConfig):
        raise TypeError(f"the preset of {args.env} for STEP is a {type(config).__name__}, not a STEPConfig")
    make, _ = learner_env_maker(ref, config=config, order=None, observation="own")
    env = make()
    learner = build_learner(spec=env.spec_, config=config, env=env)
    policy = learner.policy
    raw = np.stack([env.reset(seed=i)[0] for i in range(config.n_envs)])
    obs, alive, _, order, state = batch_tensors(raw, raw.shape[-1] - EXTRA_COLUMNS - policy.spec.obs_dim)
    obs, state = policy.model.prepare_obs(obs, state)
    chain = policy._priority_chain

    def run(fn: Callable[..., object], mode: Callable[[], Any] = torch.no_grad) -> Callable[[], object]:
        def call() -> object:
            with mode():
                return fn(obs, alive, order, greedy=False, with_value=False, with_logp=False, state=state)
        return call

    collector = microseconds_per_call(run(chain, torch.inference_mode), args.calls)
    eager = microseconds_per_call(run(chain), args.calls)
    print(f"{args.env}, {config.n_envs} envs per forward pass, priority chain: eager {collector:.0f} us per "
          f"call under inference_mode (as the collector runs it), {eager:.0f} us under no_grad")
    with torch.no_grad():
        report = torch._dynamo.explain(chain)(obs, alive, order, greedy=False, with_value=False,
                                             with_logp=False, state=state)
    print(f"TorchDynamo: {report.graph_count} graph(s), {report.graph_break_count} graph break(s)")
    for reason in report.break_reasons[:6]:
        where = reason.user_stack[-1] if reason.user_stack else None
        line = f"{Path(where.filename).name}:{where.lineno}" if where is not None else "?"
        print(f"  break at {line}: {reason.reason.splitlines()[0][:110]}")
    torch._dynamo.reset()
    compiled_chain = torch.compile(chain)
    start = time.perf_counter()
    try:
        run(compiled_chain)()
    except Exception as exc:  # report what a user would meet, whatever it is
        print(f"torch.compile failed after {time.perf_counter() - start:.1f} s: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:200]}")
        return
    print(f"compiled in {time.perf_counter() - start:.1f} s")
    compiled = microseconds_per_call(run(compiled_chain), args.calls)
    print(f"compiled (no_grad) {compiled:.0f} us per call; ratio eager / compiled: {eager / compiled:.2f} "
          f"under no_grad, {collector / compiled:.2f} against the collector's eager inference_mode")


if __name__ == "__main__":
    main()
