r"""What bounds the LETKF's speed-up against DAPPER at d = 100: the cost of the symmetric square
root, measured in one process beside the filter and beside DAPPER.

Usage (the peer venv: DAPPER runs in the same process)::

    benchmarks/.venv-peers/bin/python -m benchmarks.letkf_floor [--repeats 7] [--no-write]

Setting: the arctan problem of ``benchmarks/peers.py`` at d = 100 (N = 20, inflation 1.02,
localisation radius 8, 10 RK4 steps of 0.01 per cycle, σ = 0.05, float64, one compute thread),
with local domains of B = 1, 2 and 4 grid points, so ``d / B`` local analyses per cycle. Each local
analysis of the symmetric-root LETKF (Hunt et al. 2007; DAPPER's ``LETKF``) needs the symmetric
eigendecomposition of an ``(N - 1) x (N - 1)`` matrix (order N - 1 after the deflation of the
direction 𝟏, see :func:`assimilax.filters.local_etkf_transform`); that is the one step whose cost no
implementation of this algorithm avoids. Measured, per cycle, minimum over ``--repeats`` warm runs,
all interleaved in one process:

- ``seconds_per_cycle``: the whole jitted ``ensemble_kalman_filter`` (150 cycles);
- ``eigh_xla_seconds_per_cycle``: ``d / B`` eigendecompositions of the ``(N - 1) x (N - 1)``
  matrices the LETKF itself decomposes (rebuilt from its stored ensembles of 10 cycles after a
  spin-up of 50, with the public geometry API), one cycle's batch per step of a jitted
  ``lax.scan`` chained so that the steps run in order;
- ``eigh_numpy_seconds_per_cycle``: the same batch through ``numpy.linalg.eigh`` (LAPACK, one call
  on the stacked batch);
- ``cholesky_xla_seconds_per_cycle``: a Cholesky factorisation of the same batch (what a
  non-symmetric square root would cost instead; not used by the LETKF);
- ``forecast_seconds_per_cycle``: the ensemble forecast alone (10 RK4 steps of 20 members);
- ``dapper_seconds_per_cycle``: DAPPER's ``LETKF`` with ``nd_Id_localization((d,), (B,))`` on the
  same truth.

The bound: no implementation of the symmetric-root LETKF can run a cycle faster than its
eigendecompositions and its forecast, so its speed-up against DAPPER is at most
``dapper / (min(eigh_xla, eigh_numpy) + forecast)``. Records (``problem``
:data:`benchmarks._records.LETKF_FLOOR_PROBLEM`) are merged into ``benchmarks/results/peers.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import _records, peers

D, B_VALUES, CYCLES, SAMPLE = 100, (1, 2, 4), 150, 10


def _min_time(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def _reflection(N):
    """The Householder reflection ``Q0`` that exchanges ``e_1`` and ``1 / sqrt(N)`` (symmetric,
    orthogonal): ``Q0 C Q0 = diag(N - 1, C~)`` for a local matrix ``C`` with ``C 1 = (N - 1) 1``."""
    import numpy as np

    v = np.ones(N) / np.sqrt(N)
    v[0] -= 1.0
    return np.eye(N) - 2.0 * np.outer(v, v) / (v @ v)


def _local_matrices(model, obs, ensembles, radius, inflation, B, a, N, sample=SAMPLE, start=50):
    """The matrices the LETKF decomposes in ``sample`` cycles after cycle ``start``: from the
    stored analysis ensembles, forecast one cycle and inflated, the whitened arctan anomalies of the forecast
    ``Ys``, and for each local domain ``C~ = (Q0 Ys)[1:] rho (Q0 Ys)[1:]^T + (N - 1) I`` over its
    gathered, tapered observations (public geometry API). Returns ``(sample, d / B, N - 1, N - 1)``."""
    import jax
    import numpy as np

    from assimilax.filters import PeriodicRing, observation_locations
    from assimilax.filters.localization import taper_weights

    d = model.dim
    geo = PeriodicRing(d)
    local = geo.local_observations(observation_locations(obs), radius, domains=None if B == 1 else geo.partition(B))
    idx, sqrt_rho = np.asarray(local.indices), np.asarray(taper_weights(local, radius))
    q0 = _reflection(N)
    out = []
    for t in range(start, start + sample):
        Ef = np.asarray(jax.vmap(lambda x: model.integrate(x, a["dko"]))(ensembles[t]))
        Ef = Ef.mean(0) + inflation * (Ef - Ef.mean(0))  # the inflated forecast the analysis sees
        Hx = np.arctan(Ef)
        Ys = (Hx - Hx.mean(0)) / a["sigma_obs"]  # (N, m)
        rows = (q0 @ Ys)[1:].T  # (m, N - 1)
        Yl = rows[idx] * sqrt_rho[..., None]  # (nb, k, N - 1)
        out.append(np.einsum("bki,bkj->bij", Yl, Yl) + (N - 1) * np.eye(N - 1))
    return np.stack(out)


def run(repeats=7, seed=0):
    import jax
    import jax.numpy as jnp
    import numpy as np

    peers._quiet_dapper()
    import dapper.da_methods as da
    import dapper.mods as modelling
    from dapper.mods.Lorenz96 import step
    from dapper.tools.localization import nd_Id_localization
    from dapper.tools.seeding import set_seed

    from assimilax.configs import LORENZ96_ARCTAN
    from assimilax.filters import ensemble_kalman_filter

    a = peers.arctan_plan(False)
    N, infl, rad, d = a["N"], a["infl"], a["loc_rad"], D
    tseq = modelling.Chronology(a["dt"], dko=a["dko"], Ko=CYCLES - 1)
    kko, K = np.asarray(tseq.kko), tseq.K
    xx, yy = peers._arctan_truth(step, d, a, seed, kko, K)
    truth = xx[kko]
    cfg = LORENZ96_ARCTAN.with_dim(d)
    model, obs = cfg.model(), cfg.observation()
    key = jax.random.PRNGKey(seed)
    E0 = jnp.asarray(xx[0]) + jax.random.normal(key, (N, d), dtype=jnp.float64)
    ys = jnp.asarray(yy)
    rows = {}
    for B in B_VALUES:
        nb = d // B
        filt = jax.jit(lambda ys, E0, B=B: ensemble_kalman_filter(
            model, obs, ys, E0, key=key, steps_per_obs=a["dko"], inflation=infl, localization_radius=rad,
            local_domain=None if B == 1 else B, store_ensembles=False).analysis_mean)

        def filt_store(B):
            return ensemble_kalman_filter(model, obs, ys, E0, key=key, steps_per_obs=a["dko"], inflation=infl,
                                          localization_radius=rad, local_domain=None if B == 1 else B).ensembles
        A_np = _local_matrices(model, obs, filt_store(B), rad, infl, B, a, N)  # (SAMPLE, nb, N-1, N-1)
        A = jnp.asarray(A_np)[jnp.arange(CYCLES) % A_np.shape[0]]  # (CYCLES, nb, N-1, N-1)
        A_flat = A_np.reshape((-1,) + A_np.shape[2:])

        @jax.jit
        def eigh_chain(A):  # one cycle's batch per scan step, chained so that the steps run in order
            def body(c, At):
                lam, V = jnp.linalg.eigh(At + c * jnp.eye(N - 1))
                return c + 1e-300 * (jnp.sum(lam) + jnp.sum(V)), None
            return jax.lax.scan(body, jnp.zeros((), A.dtype), A)[0]

        @jax.jit
        def chol_chain(A):
            def body(c, At):
                L = jnp.linalg.cholesky(At + c * jnp.eye(N - 1))
                return c + 1e-300 * jnp.sum(L), None
            return jax.lax.scan(body, jnp.zeros((), A.dtype), A)[0]

        @jax.jit
        def forecast(E):
            return jax.lax.scan(lambda e, _: (jax.vmap(lambda x: model.integrate(x, a["dko"]))(e), None), E, None,
                                length=CYCLES)[0]

        means = np.asarray(jax.block_until_ready(filt(ys, E0)))
        for f, x in ((eigh_chain, A), (chol_chain, A), (forecast, E0)):
            jax.block_until_ready(f(x))

        def dapper_run():
            HMM = modelling.HiddenMarkovModel(
                {"M": d, "model": step, "noise": 0},
                {"M": d, "model": np.arctan, "noise": a["sigma_obs"] ** 2, "localizer": nd_Id_localization((d,), (B,))},
                tseq, modelling.GaussRV(mu=xx[0], C=1.0))
            set_seed(seed + 10_000)
            xp = da.LETKF(N=N, infl=infl, loc_rad=rad)
            xp.assimilate(HMM, xx, yy)
            return np.asarray(xp.stats.mu.a)

        t = {k: [] for k in ("filter", "eigh_xla", "eigh_numpy", "chol_xla", "forecast", "dapper")}
        for _ in range(repeats):  # interleaved: every measurement sees the same load
            t["filter"].append(_min_time(lambda: jax.block_until_ready(filt(ys, E0)), 1) / CYCLES)
            t["eigh_xla"].append(_min_time(lambda: jax.block_until_ready(eigh_chain(A)), 1) / CYCLES)
            t["eigh_numpy"].append(_min_time(lambda: np.linalg.eigh(A_flat), 1) / A_np.shape[0])
            t["chol_xla"].append(_min_time(lambda: jax.block_until_ready(chol_chain(A)), 1) / CYCLES)
            t["forecast"].append(_min_time(lambda: jax.block_until_ready(forecast(E0)), 1) / CYCLES)
        for _ in range(max(3, repeats // 2)):
            t0 = time.perf_counter()
            mu_dapper = dapper_run()
            t["dapper"].append((time.perf_counter() - t0) / CYCLES)
        last = slice(-a["last"], None)
        rmse = lambda m: float(np.mean(np.sqrt(np.mean((m - truth) ** 2, axis=-1))[last]))  # noqa: E731
        tm = {k: min(v) for k, v in t.items()}
        floor = min(tm["eigh_xla"], tm["eigh_numpy"]) + tm["forecast"]
        rows[B] = dict(
            problem=_records.LETKF_FLOOR_PROBLEM, method=peers.arctan_method(N, infl, rad, B), library="assimilax",
            dim=d, local_domain=B, n_local_analyses=nb, seeds=[seed], n_cycles=CYCLES, rmse=rmse(means),
            rmse_dapper=rmse(mu_dapper), seconds_per_cycle=tm["filter"], seconds_total=None,
            eigh_xla_seconds_per_cycle=tm["eigh_xla"], eigh_numpy_seconds_per_cycle=tm["eigh_numpy"],
            cholesky_xla_seconds_per_cycle=tm["chol_xla"], forecast_seconds_per_cycle=tm["forecast"],
            dapper_seconds_per_cycle=tm["dapper"], speedup=tm["dapper"] / tm["filter"],
            speedup_bound=tm["dapper"] / floor, timing_runs={k: v for k, v in t.items()}, repeats=repeats)
        r = rows[B]
        peers._log(f"B={B}: filter {r['seconds_per_cycle'] * 1e3:.3f} ms, eigh {tm['eigh_xla'] * 1e3:.3f} (XLA) / "
                   f"{tm['eigh_numpy'] * 1e3:.3f} (NumPy) ms, cholesky {tm['chol_xla'] * 1e3:.3f} ms, forecast "
                   f"{tm['forecast'] * 1e3:.3f} ms, DAPPER {tm['dapper'] * 1e3:.2f} ms: {r['speedup']:.1f}x, "
                   f"bound {r['speedup_bound']:.1f}x")
    return list(rows.values())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    peers._single_thread()
    peers._setup_jax()
    records = run(args.repeats)
    import datetime as _dt

    stamp = dict(mode="full", machine=peers._machine(), versions=peers._versions(), threads=1,
                 cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                 date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    for r in records:
        r.update(stamp)
    for line in _records.letkf_floor_verdicts(records):
        print(line)
    if args.no_write:
        return records
    merged = _records.append_records(records)
    peers.render(merged)
    return merged


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if main() is not None else 1)
