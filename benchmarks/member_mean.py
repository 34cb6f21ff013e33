r"""Mean over the member axis of an (N, d) ensemble: ``jnp.mean(E, axis=0)`` against
:func:`assimilax._ensemble.member_mean` (the contraction :math:`\tfrac1N\mathbf 1^\top E`), and the
filters' per-cycle statistics (mean and spread) written both ways, in one process, on the
default JAX backend. Prints a Markdown table of the median of 9 warm calls and the ratio.

Usage (book venv)::

    .venv/bin/python -m benchmarks.member_mean [--n 20] [--dims 1000,10000,100000,1000000]
"""
from __future__ import annotations

import argparse
import statistics
import time


def _median_seconds(f, x, repeats=9):
    import jax

    jax.block_until_ready(f(x))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    import jax
    import jax.numpy as jnp

    from assimilax._ensemble import mean_and_spread, member_mean

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--dims", default="1000,10000,100000,1000000")
    a = p.parse_args(argv)
    cases = {
        "mean": (jax.jit(lambda E: jnp.mean(E, axis=0)), jax.jit(member_mean)),
        "mean + spread": (jax.jit(lambda E: (jnp.mean(E, 0), jnp.sqrt(jnp.mean(jnp.var(E, axis=0, ddof=1))))),
                          jax.jit(mean_and_spread)),
    }
    print(f"backend {jax.default_backend()}, N = {a.n}, float32; median of 9 warm calls\n")
    print("| d | statistic | jnp (axis 0) | member_mean | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for d in (int(s) for s in a.dims.split(",")):
        E = 8.0 + jax.random.normal(jax.random.PRNGKey(0), (a.n, d), jnp.float32)
        for name, (ref, ours) in cases.items():
            t_ref, t_ours = _median_seconds(ref, E), _median_seconds(ours, E)
            print(f"| {d:,} | {name} | {t_ref * 1e3:.3f} ms | {t_ours * 1e3:.3f} ms | {t_ref / t_ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
