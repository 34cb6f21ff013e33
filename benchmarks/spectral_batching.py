"""Why a vmapped batch of ``Kraichnan2D`` trajectories is not cheaper per trajectory on the CPU.

Issue 15 asks for batched (vmapped) trajectories to be faster per trajectory than one at a time.
``Burgers1D`` is, several times over (its step is dominated by the fixed cost of dispatching a
dozen small operations, which a batch shares). ``Kraichnan2D`` is not at 64² and 256², and this
script measures the pieces that decide it, in one process, interleaved (ratios survive a loaded
machine):

1. *Time per trajectory-step* of ``integrate`` for one trajectory, a ``vmap`` over ``B`` and a
   ``lax.map`` over ``B`` (one trajectory after another inside one program), with the process's
   user and system CPU time per trajectory-step (``resource.getrusage``).
2. *The transforms alone*: an ``irfft2``/``rfft2`` pair per field on the shapes the step uses,
   ``(2, n, n//2+1)`` for one trajectory (u and v stacked) and ``(B, 2, n, n//2+1)`` batched.
3. *The compiled program*: how many fusions XLA's CPU parallel-task assignment split into tasks
   for its thread pool (``outer_dimension_partitions`` in the optimised HLO), for one trajectory
   and for the batch.
4. *The fixed cost per step*: the same at n = 8, where the transforms cost almost nothing.

What it showed on the 2-core machine (December 2026, load 3-4): XLA's CPU FFT runs single-threaded
(``FftThunk`` passes DUCC no thread pool), so a batch saves only the ~12 µs fixed cost per step
(n = 8: 18 µs one trajectory, 6 µs per trajectory batched), under 10 % of a 64² step and under 1 %
of a 256² step. Against that, (a) XLA splits 8 of the batch's fusions per 64² step into 2 tasks for
its thread pool (none for one trajectory): pinned to one core (no split) the batch is 1.17x faster
per trajectory, unpinned 0.68x; (b) an FFT pair over the batch's 16 fields (4.2 MB at 256²,
transformed axis by axis) costs 0.70-0.75x per field of one over 2 fields (0.5 MB; the L2 is
1 MB per core), so at 256² the batch is 0.7-0.9x whatever the threading. ``lax.map`` over the
batch (one trajectory after another) is at parity (0.95-1.05x), not faster. Rerun on December 7
with ``--single-thread --one-core`` (load 1.2-1.8), vmap against one at a time per trajectory-step:
1.13x at 64², 1.02x at 128², 0.88x at 256² (2,564 against 2,246 µs); the 16-field FFT pair alone
0.97x of the 2-field pair at 256².

Run: ``PYTHONPATH=lib .venv/bin/python -m benchmarks.spectral_batching [--single-thread]
[--one-core] [--sizes 64,128,256] [--repeats 15]``. ``--single-thread`` sets the XLA flags of
``benchmarks.peers`` (no Eigen thread pool, one intra-op thread) before JAX is imported;
``--one-core`` pins the process, XLA's pool threads included, to one core (what is left of a
batch's loss then is not the thread pool's). Prints a table; writes nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time

THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _interleaved(fns, repeats):
    """``{name: [seconds per unit, ...]}`` of ``fns = {name: (fn, arg, units)}``, warm runs
    interleaved across the entries; also ``{name: (user, sys)}`` CPU seconds per unit."""
    import jax
    runs = {k: [] for k in fns}
    cpu = {k: [0.0, 0.0] for k in fns}
    for fn, arg, _ in fns.values():
        jax.block_until_ready(fn(arg))
    for _ in range(repeats):
        for k, (fn, arg, units) in fns.items():
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            jax.block_until_ready(fn(arg))
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            runs[k].append((t1 - t0) / units)
            cpu[k][0] += (r1.ru_utime - r0.ru_utime) / units / repeats
            cpu[k][1] += (r1.ru_stime - r0.ru_stime) / units / repeats
    return runs, cpu


def _partitioned_fusions(fn, arg):
    text = fn.lower(arg).compile().as_text()
    return len(re.findall(r'"outer_dimension_partitions"', text))


def measure(n, batch, repeats):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from assimilax.models import Kraichnan2D

    model = Kraichnan2D(n=n, forcing_wavenumber=min(4, (n - 1) // 3))  # k_f = 4 where the grid keeps it
    steps = max(10, int(2e5 / n ** 2))
    W = jnp.stack([model.random_initial_condition(jax.random.PRNGKey(s), k0=min(4.0, n / 4), energy=2.0,
                                                  dtype=jnp.float32) for s in range(batch)])
    integ = lambda w: model.integrate(w, steps)  # noqa: E731
    one, vm = jax.jit(integ), jax.jit(jax.vmap(integ))
    seq = jax.jit(lambda X: jax.lax.map(integ, X))
    fns = {"one": (one, W[0], steps), "vmap": (vm, W, steps * batch), "lax.map": (seq, W, steps * batch)}

    m = n // 2 + 1
    pairs = max(10, int(2e6 / n ** 2))

    def fft_loop(v):  # an irfft2 / rfft2 pair per iteration, as in one stage of the step
        return jax.lax.fori_loop(0, pairs, lambda i, v: jnp.fft.rfft2(jnp.fft.irfft2(v, s=(n, n))) * 0.999, v)
    fft = jax.jit(fft_loop)
    fns["fft pair, 2 fields"] = (fft, jnp.ones((2, n, m), jnp.complex64), pairs * 2)
    fns[f"fft pair, {2 * batch} fields"] = (fft, jnp.ones((batch, 2, n, m), jnp.complex64), pairs * 2 * batch)
    runs, cpu = _interleaved(fns, repeats)
    base = np.asarray(runs["one"])
    out = {}
    for k, v in runs.items():
        v = np.asarray(v)
        ref = base if not k.startswith("fft") else np.asarray(runs["fft pair, 2 fields"])
        r = ref / v
        out[k] = dict(median=float(np.median(v)), ratio=float(np.median(r)), q25=float(np.quantile(r, 0.25)),
                      q75=float(np.quantile(r, 0.75)), user=cpu[k][0], sys=cpu[k][1])
    out["partitioned fusions"] = dict(one=_partitioned_fusions(one, W[0]), vmap=_partitioned_fusions(vm, W))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--single-thread", action="store_true", help=f"XLA_FLAGS={THREAD_FLAGS!r}")
    ap.add_argument("--one-core", action="store_true",
                    help="pin the process (and XLA's pool threads) to one CPU core before JAX starts")
    ap.add_argument("--sizes", default="8,64,128,256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args(argv)
    if a.single_thread:
        if "jax" in sys.modules:
            print("warning: jax already imported; the thread flags may not apply", file=sys.stderr)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + THREAD_FLAGS).strip()
    if a.one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; CPU affinity {sorted(os.sched_getaffinity(0))}; "
          f"load average {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    for n in (int(s) for s in a.sizes.split(",")):
        res = measure(n, a.batch, a.repeats)
        print(f"n = {n}: partitioned fusions one {res['partitioned fusions']['one']}, "
              f"vmap {res['partitioned fusions']['vmap']}", flush=True)
        for k, r in res.items():
            if k == "partitioned fusions":
                continue
            unit = "field-pair" if k.startswith("fft") else "trajectory-step"
            print(f"   {k:22s} {r['median'] * 1e6:9.1f} µs/{unit}  (user {r['user'] * 1e6:8.1f}, sys "
                  f"{r['sys'] * 1e6:6.1f})  speed vs {'2 fields' if k.startswith('fft') else 'one'}: "
                  f"{r['ratio']:.2f}× [{r['q25']:.2f}, {r['q75']:.2f}]", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
