r"""The ETKF's random rotation on DAPPER's ``sakov2008`` (Lorenz-96, d = 40, N = 28, float64, one
thread): assimilax with ``rotate=True`` and its default root there (``square_root="cholesky"``,
the mean-preserving Cholesky root: the same law as the symmetric root under the rotation, no
``eigh``), with the symmetric root (one ``eigh`` per cycle, the default before), and with
``rotate=False``, against DAPPER's ``EnKF('Sqrt', N=28, infl=1.02, rot=True)``, in one process,
over the seeds and the protocol of :mod:`benchmarks.peers`. The rotations themselves are drawn
by the Householder construction of :mod:`assimilax.filters.rotations`; drawing them alone is
timed against the QR construction it replaced (a copy kept below).

Usage (peer venv)::

    benchmarks/.venv-peers/bin/python -m benchmarks.etkf_rotation [--write] [--cycles 1000]

Protocol: truth and observations from DAPPER's ``HMM.simulate()`` after ``set_seed(seed)``, the
same arrays for both libraries; RMSE exactly DAPPER's ``rmse.a`` (time mean after the burn-in).
Per seed, DAPPER runs once; then the assimilax variants (:data:`VARIANTS`), each compiled ahead of time
(``jax.jit(...).lower(...).compile()``), run
``REPEATS`` times in turn (round robin: the load of this shared machine hits them alike); a
variant's time per cycle is the median over its runs, then over seeds. The library's own entry
point is also timed as :mod:`benchmarks.peers` does (first call with compilation for
``seconds_total``, then the median of 3 warm calls of ``ensemble_kalman_filter``), and with
``--write`` those two records (DAPPER and assimilax, ``rotate=True``) replace the records of this
case in ``benchmarks/results/peers.json``, with the variants' times as extra keys; ``RESULTS.md``
is rendered again by :func:`benchmarks.peers.render`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import platform
import statistics
import sys
import time

from . import _records

SEEDS = (3000, 3001, 3002)
PROBLEM = "Lorenz-96 sakov2008"
METHOD = "EnKF('Sqrt', N=28, infl=1.02, rot=True)"
N_MEMBERS = 28
INFLATION = 1.02
PUBLISHED_RMSE = 0.18
REPEATS = 5
#: (name, rotate, square_root) of the compiled variants: the default of the rotated ETKF (the
#: Cholesky root, same law as the symmetric one under the rotation), the symmetric root (one
#: ``eigh`` per cycle, the default before), and no rotation (symmetric root)
VARIANTS = (("rotate=True, Cholesky root (default)", True, None),
            ("rotate=True, symmetric root (eigh, before)", True, "symmetric"),
            ("rotate=False", False, None))
THREAD_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), shared with other jobs; JAX on CPU"


# ------------------------------------------------- the construction replaced (kept to compare)
@functools.lru_cache(maxsize=8)
def _old_helmert_basis(N):
    import numpy as np

    M = np.eye(N)
    M[:, 0] = 1.0
    Qm, _ = np.linalg.qr(M)
    return -Qm if Qm[0, 0] < 0 else Qm


def old_mean_preserving_rotations(key, num, N, dtype):
    """The QR construction used by ``enkf.py`` before :mod:`assimilax.filters.rotations`:
    per draw, the sign-corrected QR of an (N-1) x (N-1) Gaussian matrix, conjugated by a Helmert
    basis, vmapped over ``jax.random.split(key, num)``."""
    import jax
    import jax.numpy as jnp

    V = jnp.asarray(_old_helmert_basis(N), dtype=dtype)

    def one(k):
        G = jax.random.normal(k, (N - 1, N - 1), dtype=dtype)
        O, Rm = jnp.linalg.qr(G)
        O = O * jnp.sign(jnp.diag(Rm))[None, :]
        B = jnp.zeros((N, N), dtype).at[0, 0].set(1.0).at[1:, 1:].set(O)
        return V @ B @ V.T

    return jax.vmap(one)(jax.random.split(key, num))


# ---------------------------------------------------------------------------- the runs
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=1000, help="DAPPER Ko (Ko + 1 analyses)")
    ap.add_argument("--write", action="store_true", help="replace this case's records in peers.json")
    args = ap.parse_args(argv)
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import dapper.da_methods as da
    import dapper.mods.Lorenz96.sakov2008 as mod
    import dapper.tools.progressbar as pb
    from dapper.tools.seeding import set_seed

    from assimilax.filters import ensemble_kalman_filter
    from assimilax.filters.rotations import mean_preserving_rotations
    from assimilax.models import Lorenz96
    from assimilax.observations import LinearObservation

    pb.disable_progbar = True
    pb.disable_user_interaction = True
    HMM = mod.HMM.copy()
    HMM.tseq.Ko = args.cycles
    kko, masko = np.asarray(HMM.tseq.kko), np.asarray(HMM.tseq.masko)
    n_an = HMM.tseq.Ko + 1
    X0_mu = jnp.asarray(HMM.X0.mu, dtype=float)
    L0 = jnp.linalg.cholesky(jnp.asarray(HMM.X0.C.full, dtype=float))
    model, obs = Lorenz96(dim=40, forcing=8.0, dt=0.05), LinearObservation.full(40, 1.0)
    assert HMM.tseq.dko == 1

    def rmse(means, truth):
        per_time = np.sqrt(np.mean((np.asarray(means) - truth) ** 2, axis=-1))
        return float(np.mean(per_time[masko]))

    @jax.jit  # the initial draw compiled, as it is in the compiled variants (no eager dispatch)
    def initial(key):
        k0, k1 = jax.random.split(key)
        return X0_mu + jax.random.normal(k0, (N_MEMBERS, 40), dtype=X0_mu.dtype) @ L0.T, k1

    def run(ys, key, rotate, square_root=None):
        E0, k1 = initial(key)
        res = ensemble_kalman_filter(model, obs, ys, E0, key=k1, steps_per_obs=1, method="sqrt",
                                     inflation=INFLATION, rotate=rotate, square_root=square_root,
                                     store_ensembles=False)
        return res.analysis_mean

    data = {}
    for seed in SEEDS:
        set_seed(seed)
        xx, yy = HMM.simulate()
        data[seed] = (xx, np.stack(list(yy)))
    ys0 = jnp.asarray(data[SEEDS[0]][1])
    key0 = jax.random.PRNGKey(SEEDS[0])

    # the library's entry point, cold (compilation included), as benchmarks.peers times it
    t0 = time.perf_counter()
    jax.block_until_ready(run(ys0, key0, True))
    seconds_total = time.perf_counter() - t0

    # the variants, compiled ahead of time
    compiled = {}
    for name, rotate, square_root in VARIANTS:
        compiled[name] = jax.jit(functools.partial(run, rotate=rotate, square_root=square_root)).lower(ys0, key0).compile()

    # the rotations alone, n_an draws (round robin, best of 15)
    gen = {"Householder": jax.jit(lambda k: mean_preserving_rotations(k, n_an, N_MEMBERS, jnp.float64)),
           "QR, before": jax.jit(lambda k: old_mean_preserving_rotations(k, n_an, N_MEMBERS, jnp.float64))}
    best = {k: float("inf") for k in gen}
    for f in gen.values():
        jax.block_until_ready(f(key0))
    for _ in range(15):
        for k, f in gen.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(key0))
            best[k] = min(best[k], time.perf_counter() - t0)
    gen_us = {k: v / n_an * 1e6 for k, v in best.items()}
    _log("drawing the rotations alone, µs per cycle (best of 15): "
         + ", ".join(f"{k} {v:.1f}" for k, v in gen_us.items()))

    d_rmse, d_time, d_total = [], [], None
    lib_rmse, lib_time = [], []
    v_rmse = {k: [] for k in compiled}
    v_time = {k: [] for k in compiled}
    for i, seed in enumerate(SEEDS):
        xx, ys = data[seed]
        truth = xx[kko]
        set_seed(seed + 10_000)
        xp = da.EnKF("Sqrt", N=N_MEMBERS, infl=INFLATION, rot=True)
        t0 = time.perf_counter()
        xp.assimilate(HMM, xx, ys)
        el = time.perf_counter() - t0
        xp.stats.average_in_time()
        d_rmse.append(float(xp.avrgs.err.rms.a.val))
        d_time.append(el / n_an)
        d_total = el if i == 0 else d_total
        ys_j, key = jnp.asarray(ys), jax.random.PRNGKey(seed)
        # the library's entry point: median of 3 warm calls (benchmarks.peers' protocol)
        warms = []
        for _ in range(3):
            t0 = time.perf_counter()
            means = jax.block_until_ready(run(ys_j, key, True))
            warms.append(time.perf_counter() - t0)
        lib_rmse.append(rmse(means, truth))
        lib_time.append(statistics.median(warms) / n_an)
        runs = {k: [] for k in compiled}
        for _ in range(REPEATS):
            for k, f in compiled.items():
                t0 = time.perf_counter()
                means = jax.block_until_ready(f(ys_j, key))
                runs[k].append(time.perf_counter() - t0)
                if len(runs[k]) == 1:
                    v_rmse[k].append(rmse(means, truth))
        for k in compiled:
            v_time[k].append(statistics.median(runs[k]) / n_an)
        _log(f"seed {seed}: DAPPER rmse {d_rmse[-1]:.4f} {d_time[-1] * 1e3:.2f} ms/cycle | assimilax "
             f"rmse {lib_rmse[-1]:.4f} {lib_time[-1] * 1e6:.1f} µs/cycle | "
             + " | ".join(f"{k}: rmse {v_rmse[k][-1]:.4f} {v_time[k][-1] * 1e6:.1f} µs" for k in compiled))

    d_sec = statistics.median(d_time)
    summary = {k: statistics.median(v) for k, v in v_time.items()}
    print()
    print(f"DAPPER {METHOD}: RMSE {statistics.fmean(d_rmse):.4f} ± {statistics.stdev(d_rmse):.4f} "
          f"(per seed {', '.join(f'{r:.4f}' for r in d_rmse)}), {d_sec * 1e3:.2f} ms/cycle")
    print(f"assimilax ensemble_kalman_filter(rotate=True): RMSE {statistics.fmean(lib_rmse):.4f} ± "
          f"{statistics.stdev(lib_rmse):.4f} (per seed {', '.join(f'{r:.4f}' for r in lib_rmse)}), "
          f"{statistics.median(lib_time) * 1e6:.1f} µs/cycle, {d_sec / statistics.median(lib_time):.1f}× DAPPER")
    for k, s in summary.items():
        print(f"  compiled {k}: RMSE {statistics.fmean(v_rmse[k]):.4f} (per seed "
              f"{', '.join(f'{r:.4f}' for r in v_rmse[k])}), {s * 1e6:.1f} µs/cycle, {d_sec / s:.1f}× DAPPER")
    if not args.write:
        return 0

    from importlib.metadata import version

    from . import peers

    stamp = dict(mode="full" if args.cycles == 1000 else f"Ko={args.cycles}", threads=1, machine=_machine(),
                 versions=", ".join([f"Python {platform.python_version()}"]
                                    + [f"{p} {version(p)}" for p in ("assimilax", "jax", "numpy", "scipy", "dapper",
                                                                    "dynamax", "filterpy")]),
                 date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    common = dict(problem=PROBLEM, method=METHOD, dim=40, seeds=list(SEEDS), published_rmse=PUBLISHED_RMSE,
                  n_cycles=n_an, n_averaged=int(masko.sum()), **stamp)
    recs = [
        dict(common, library="dapper", rmse=statistics.fmean(d_rmse), rmse_std=statistics.stdev(d_rmse),
             rmse_per_seed=d_rmse, seconds_per_cycle=d_sec, seconds_total=d_total,
             config=f"EnKF('Sqrt',){{'N': {N_MEMBERS}, 'infl': {INFLATION}, 'rot': True}}"),
        dict(common, library="assimilax", rmse=statistics.fmean(lib_rmse), rmse_std=statistics.stdev(lib_rmse),
             rmse_per_seed=lib_rmse, seconds_per_cycle=statistics.median(lib_time), seconds_total=seconds_total,
             config=f"ensemble_kalman_filter(steps_per_obs=1, method='sqrt', inflation={INFLATION}, rotate=True)",
             benchmark="benchmarks.etkf_rotation",
             seconds_per_cycle_variants={k: s for k, s in summary.items()},
             rmse_per_seed_variants=v_rmse,
             rotation_draw_us_per_cycle=gen_us),
    ]
    merged = _records.append_records(recs)
    peers.render(merged)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
