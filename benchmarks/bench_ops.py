"""Benchmark: the small torch operations behind STEP's speed choices, timed in one process.

    python benchmarks/bench_ops.py

Prints microseconds per call and the ratio of each alternative to the choice the code makes:
categorical sampling (torch.multinomial vs the inverse CDF of ``MaskedDistribution.sample``)
and log-normalisation (logsumexp vs log_softmax) on an (8, 3) batch of logits, as in the
priority chain; an Adam step over the STEP model's parameters (foreach vs fused); tanh vs
sigmoid on a (200, 64) tensor (the networks keep tanh; this shows what it costs here).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from agents import JointStepEnv, STEPConfig, build_learner  # noqa: E402
from envs import matrix  # noqa: E402


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Best of 3 rounds of ``calls`` calls, in microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="calls per timing round")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as STEPConfig.torch_threads
    logits = torch.randn(8, 3)
    probs = torch.softmax(logits, -1)

    def inverse_cdf() -> torch.Tensor:
        cdf = probs.cumsum(-1)
        u = torch.rand(8, 1) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, side="right").squeeze(-1).clamp_(max=2)

    env = JointStepEnv(env=matrix.MatrixGame(matrix.penalty(-100.0)))
    params = list(build_learner(spec=env.joint_spec, config=STEPConfig.matrix_games(), env=env)
                  .model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    adam = {"foreach": torch.optim.Adam(params, lr=1e-12, eps=1e-5, foreach=True),
            "fused": torch.optim.Adam(params, lr=1e-12, eps=1e-5, fused=True)}
    x = torch.randn(200, 64)
    rows = [
        ("categorical sample (8 x 3)", "torch.multinomial", lambda: torch.multinomial(probs, 1, True),
         "inverse CDF", inverse_cdf),
        ("log-normalise (8 x 3)", "x - logsumexp(x)", lambda: logits - logits.logsumexp(-1, keepdim=True),
         "log_softmax", lambda: torch.log_softmax(logits, -1)),
        (f"Adam step ({len(params)} tensors)", "foreach", adam["foreach"].step, "fused", adam["fused"].step),
        ("activation (200 x 64)", "sigmoid", lambda: torch.sigmoid(x), "tanh (kept)", lambda: torch.tanh(x)),
    ]
    print(f"{'operation':28} {'alternative':>18} {'us':>8}   {'used':>14} {'us':>8}   alternative / used")
    with torch.no_grad():
        for name, alt_name, alt, used_name, used in rows:
            a, u = per_call_us(alt, args.calls), per_call_us(used, args.calls)
            print(f"{name:28} {alt_name:>18} {a:8.2f}   {used_name:>14} {u:8.2f}   {a / u:.2f}")


if __name__ == "__main__":
    main()
