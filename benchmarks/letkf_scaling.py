r"""LETKF time per grid point per cycle from d = 40 to 10^4 (Lorenz-96, arctan observations), the
dense-taper implementation of revision 82f5fc5 beside it where it is affordable, a 2-D periodic
128 x 128 field assimilated with the 2-D geometry, and DAPPER's LETKF on the arctan problem at
d = 40 and 100 (``benchmarks/peers.py``'s arctan case, rerun with the current code).

Usage (peer venv for the DAPPER rows; the book venv runs everything else with ``--no-dapper``)::

    benchmarks/.venv-peers/bin/python -m benchmarks.letkf_scaling [--dims 40,100,400,1600,10000]
        [--repeats 3] [--no-dapper] [--no-2d] [--no-write]

Setting (the arctan case of ``benchmarks/peers.py``): F = 8, RK4 dt = 0.01, 10 steps per cycle,
:math:`y = \arctan(x) + \mathcal N(0, 0.05^2 I)` of every component, N = 20, inflation 1.02,
localisation radius 8 (Gaspari--Cohn cut-off :math:`2 \cdot 1.82 \cdot 8 = 29.1` sites, so
:math:`k = 59` observations per grid point once :math:`d > 59`), float64, one compute thread
(``peers.THREAD_ENV``). Truth: spin-up of 1,000 steps from :math:`8 + \mathcal N(0, I)`, the
ensemble :math:`x_0 + \mathcal N(0, I)`. Timing: every configuration (each dimension, new and dense
code) is compiled by a first call, then ``--repeats`` rounds of warm calls
(``jax.block_until_ready``) each of which runs every configuration once, interleaved, so that all
ratios (new/dense, d = 10^4 / d = 100) are measured under the same load of this shared machine;
``seconds_per_cycle`` is the median warm time / cycles and ``seconds_per_cycle_runs`` lists every
run. The new and the dense implementation see the same truth, ensemble and key.

Records (``problem`` :data:`PROBLEM`, ``method="LETKF"`` for the current code and
``method="LETKF (dense taper, 82f5fc5)"`` for the old one, ``library="assimilax"``, ``dim``; the
2-D field under :data:`PROBLEM_2D`) are merged into ``benchmarks/results/peers.json`` with
:func:`benchmarks._records.append_records`, and ``RESULTS.md`` is rendered again by
``benchmarks.peers.render``.
"""
from __future__ import annotations

import argparse
import os
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _records, peers

PROBLEM = _records.LETKF_SCALING_PROBLEM
PROBLEM_2D = _records.LETKF_2D_PROBLEM
METHOD = "LETKF"
METHOD_DENSE = "LETKF (dense taper, 82f5fc5)"
OLD_REVISION = "82f5fc5"
ROOT = Path(__file__).resolve().parents[1]
#: cycles per run at each dimension (fewer where one cycle is long)
CYCLES = {40: 150, 100: 150, 400: 60, 1600: 20, 10_000: 6}
#: the dense implementation holds a (d, m, N) block: run it up to this dimension
DENSE_MAX_DIM = 1600


def load_dense_implementation():
    """``enkf.py`` at revision 82f5fc5 (dense Gaspari--Cohn taper over every observation, dense
    whitening), imported from a ``git show`` copy in a temporary directory."""
    src = subprocess.run(["git", "show", f"{OLD_REVISION}:lib/assimilax/filters/enkf.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    src = (src.replace("from .._ensemble import", "from assimilax._ensemble import")
              .replace("from .._validation import", "from assimilax._validation import")
              .replace("from ._types import EnsembleFilterResult", "from assimilax.filters import EnsembleFilterResult")
              .replace("from .kalman import _check_model_observation",
                       "def _check_model_observation(model, observation):\n    pass"))
    path = Path(tempfile.mkdtemp()) / "enkf_82f5fc5.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("enkf_82f5fc5", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _time(fn, repeats):
    """First call (compilation included), then ``repeats`` warm calls; returns
    ``(output, seconds_first, [seconds_warm, ...])``."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    warms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        warms.append(time.perf_counter() - t0)
    return out, first, warms


def arctan_problem(d, cycles, seed=0):
    """Truth ``(cycles, d)``, observations and initial ensemble of the arctan problem (assimilax's
    Lorenz-96 RK4, the same numbers as ``peers._arctan_truth`` up to the random draws)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from assimilax.models import Lorenz96

    a = peers.arctan_plan()
    model = Lorenz96(d, forcing=8.0, dt=a["dt"])
    rng = np.random.default_rng(seed)
    x = jnp.asarray(8.0 + rng.standard_normal(d))
    x = model.integrate(x, a["spinup"])
    step = jax.jit(lambda x: model.integrate(x, a["dko"]))
    xs = []
    x0 = x
    for _ in range(cycles):
        x = step(x)
        xs.append(x)
    truth = np.asarray(jnp.stack(xs))
    ys = np.arctan(truth) + a["sigma_obs"] * rng.standard_normal(truth.shape)
    E0 = np.asarray(x0)[None] + rng.standard_normal((a["N"], d))
    return model, truth, ys, E0


def run_scaling(dims, repeats, dense_max_dim=DENSE_MAX_DIM):
    import jax
    import numpy as np

    from assimilax.filters import ensemble_kalman_filter
    from assimilax.observations import NonlinearObservation

    a = peers.arctan_plan()
    dense = load_dense_implementation()
    runs = []  # (d, method, fn, truth, cycles)
    for d in dims:
        cycles = CYCLES.get(d, max(3, int(60_000 / d)))
        model, truth, ys, E0 = arctan_problem(d, cycles)
        obs = NonlinearObservation("arctan", d, a["sigma_obs"])
        kw = dict(key=jax.random.PRNGKey(0), steps_per_obs=a["dko"], inflation=a["infl"],
                  localization_radius=a["loc_rad"], store_ensembles=False)
        impls = [(METHOD, ensemble_kalman_filter)]
        if d <= dense_max_dim:
            impls.append((METHOD_DENSE, dense.ensemble_kalman_filter))
        for m, f in impls:
            runs.append((d, m, (lambda f=f, model=model, obs=obs, ys=ys, E0=E0, kw=kw:
                                f(model, obs, ys, E0, **kw).analysis_mean), truth, cycles))
    outs, firsts, warms = {}, {}, {(d, m): [] for d, m, *_ in runs}
    for d, m, fn, _, _ in runs:  # compile every configuration first
        outs[(d, m)], firsts[(d, m)], _ = _time(fn, 0)
    for _ in range(repeats):  # then interleave the warm runs: every configuration sees the same load
        for d, m, fn, _, _ in runs:
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            warms[(d, m)].append(time.perf_counter() - t0)
    records = []
    for d, m, _, truth, cycles in runs:
        last = slice(-min(a["last"], max(1, cycles // 3)), None)
        err = np.sqrt(np.mean((np.asarray(outs[(d, m)]) - truth) ** 2, axis=-1))
        spc = statistics.median(warms[(d, m)]) / cycles
        rec = dict(problem=PROBLEM, method=m, library="assimilax", dim=int(d), seeds=[0],
                   rmse=float(np.mean(err[last])), n_cycles=cycles, n_averaged=len(err[last]),
                   seconds_per_cycle=spc, seconds_per_grid_point=spc / d,
                   seconds_per_cycle_runs=[w / cycles for w in warms[(d, m)]], seconds_total=firsts[(d, m)],
                   letkf_scaling=True,
                   config=f"ensemble_kalman_filter(N={a['N']}, steps_per_obs={a['dko']}, inflation={a['infl']}, "
                          f"localization_radius={a['loc_rad']}), NonlinearObservation('arctan', {d}, "
                          f"{a['sigma_obs']}), float64, 1 thread")
        if m == METHOD_DENSE:
            rec["max_abs_diff_to_new"] = float(np.max(np.abs(np.asarray(outs[(d, m)]) - np.asarray(outs[(d, METHOD)]))))
        records.append(rec)
        peers._log(f"d={d} {m}: {spc * 1e3:.3f} ms/cycle = {spc / d * 1e6:.1f} µs per grid point per cycle "
                   f"(runs {', '.join(f'{w / cycles * 1e3:.3f}' for w in warms[(d, m)])} ms), "
                   f"rmse {rec['rmse']:.4f}, first call {firsts[(d, m)]:.1f} s")
    return records


class _Diffusion2D:
    """Factory of a periodic 2-D diffusion model (five-point Laplacian by ``jnp.roll``)."""

    @staticmethod
    def make(side, diffusivity=0.1):
        import equinox as eqx
        import jax.numpy as jnp

        from assimilax.models import DynamicalModel

        class PeriodicDiffusion2D(DynamicalModel):
            """:math:`x \\leftarrow x + \\kappa \\Delta x` on an ``n x n`` periodic grid, flattened
            row-major (deterministic)."""

            n: int = eqx.field(static=True, default=side)
            kappa: float = eqx.field(static=True, default=diffusivity)
            dt: float = eqx.field(static=True, default=1.0)
            noise_cov: object = None

            @property
            def dim(self):
                return self.n * self.n

            def step(self, x, t=0.0):
                f = x.reshape(self.n, self.n)
                lap = (jnp.roll(f, 1, 0) + jnp.roll(f, -1, 0) + jnp.roll(f, 1, 1) + jnp.roll(f, -1, 1) - 4 * f)
                return (f + self.kappa * lap).reshape(-1)

        return PeriodicDiffusion2D()


def run_2d(n=128, cycles=5, repeats=3, N=20, radius=2.0, stride=2, seed=0, domains=(None, (2, 2))):
    """A 2-D field on an ``n x n`` periodic grid (d = n^2), observed every ``stride``-th point in
    each direction with noise 0.1, assimilated with :class:`PeriodicGrid2D`, one local analysis per
    grid point and per tile of each shape in ``domains``; RMSE against the free run of the
    ensemble mean."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from assimilax.filters import PeriodicGrid2D, ensemble_kalman_filter
    from assimilax.observations import LinearObservation, NonlinearObservation

    d = n * n
    model = _Diffusion2D.make(n)
    rng = np.random.default_rng(seed)
    k1, k2 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")

    def smooth_field(size):
        modes = [(a, b) for a in range(0, 5) for b in range(0, 5) if (a, b) != (0, 0)]
        amp = rng.standard_normal((size, len(modes))) / np.sqrt(len(modes))
        ph = rng.uniform(0, 2 * np.pi, (size, len(modes)))
        arg = 2 * np.pi * (np.array([a for a, _ in modes])[None, :, None] * k1.ravel()[None, None, :]
                           + np.array([b for _, b in modes])[None, :, None] * k2.ravel()[None, None, :]) / n
        return np.sum(amp[..., None] * np.cos(arg + ph[..., None]), axis=1)

    x0 = smooth_field(1)[0] * 3.0
    locs = np.flatnonzero(((k1 % stride) == 0).ravel() & ((k2 % stride) == 0).ravel())
    obs = NonlinearObservation("identity", d, 0.1, indices=locs)
    steps = 5
    xs, x = [], jnp.asarray(x0)
    for _ in range(cycles):
        x = model.integrate(x, steps)
        xs.append(np.asarray(x))
    truth = np.stack(xs)
    ys = truth[:, locs] + 0.1 * rng.standard_normal((cycles, len(locs)))
    E0 = x0[None] + smooth_field(N) * 3.0
    geom = PeriodicGrid2D(n, n)
    free = E0.mean(0)
    free_means = []
    for _ in range(cycles):
        free = np.asarray(model.integrate(jnp.asarray(free), steps))
        free_means.append(free)
    rm = lambda m: np.sqrt(np.mean((np.asarray(m) - truth) ** 2, axis=-1))  # noqa: E731
    e_f = rm(np.stack(free_means))
    records = []
    for tile in domains:  # one analysis per grid point, then per tile of the grid
        kw = dict(key=jax.random.PRNGKey(1), steps_per_obs=steps, inflation=1.05, localization_radius=radius,
                  localization=geom, local_domain=tile, store_ensembles=False)
        geom_t0 = time.perf_counter()
        k_max = geom.local_observations(locs, radius, None if tile is None else geom.partition(tile)).k_max
        geom_s = time.perf_counter() - geom_t0
        out, first, warms = _time(lambda: ensemble_kalman_filter(model, obs, ys, E0, **kw).analysis_mean, repeats)
        e_a = rm(out)
        spc = statistics.median(warms) / cycles
        method = METHOD if tile is None else f"{METHOD}, {tile[0]}x{tile[1]} local domains"
        records.append(dict(
            problem=PROBLEM_2D, method=method, library="assimilax", dim=d, seeds=[seed], rmse=float(e_a[-1]),
            rmse_free_run=float(e_f[-1]), rmse_per_cycle=[float(v) for v in e_a],
            rmse_free_run_per_cycle=[float(v) for v in e_f], n_cycles=cycles, k_max=int(k_max),
            seconds_per_cycle=spc, seconds_per_grid_point=spc / d,
            seconds_per_cycle_runs=[w / cycles for w in warms], seconds_total=first,
            seconds_neighbour_search=geom_s, letkf_scaling=True, shape=[n, n],
            config=f"PeriodicGrid2D({n}, {n}), N={N}, localization_radius={radius}, inflation=1.05, "
                   + ("" if tile is None else f"local_domain={tile}, ")
                   + f"every {stride}nd point observed each way (m={len(locs)}), sigma 0.1, "
                   f"{steps} diffusion steps (kappa 0.1) per cycle, float64, 1 thread"))
        peers._log(f"2-D {n}x{n}, local domains {tile}: {spc:.3f} s/cycle = {spc / d * 1e6:.1f} µs per grid point "
                   f"per cycle, k_max {k_max}, neighbour search {geom_s:.2f} s, RMSE {e_a[-1]:.4f} vs free run "
                   f"{e_f[-1]:.4f}")
    return records


def run_dapper(seeds):
    """``peers.run_arctan`` at d = 40 and 100 with ``seeds``: DAPPER's LETKF and assimilax's on the
    same truths (refreshes the arctan pairs of the side-by-side table with the current code)."""
    pl = {"arctan": dict(peers.arctan_plan(), seeds=tuple(seeds))}
    return peers.run_arctan(pl)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="40,100,400,1600,10000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dapper-seeds", type=int, default=10)
    ap.add_argument("--no-dapper", action="store_true")
    ap.add_argument("--no-2d", action="store_true")
    ap.add_argument("--n2d", type=int, default=128, help="side of the 2-D grid")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    peers._single_thread()
    peers._setup_jax()
    records = []
    if not args.no_scaling:
        records += run_scaling([int(x) for x in args.dims.split(",")], args.repeats)
    if not args.no_2d:
        records += run_2d(n=args.n2d, repeats=args.repeats)
    if not args.no_dapper:
        records += run_dapper(range(args.dapper_seeds))
    import datetime as _dt

    stamp = dict(mode="full", machine=peers._machine(), versions=peers._versions(), threads=1,
                 cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                 date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    for r in records:
        r.update(stamp)
    for line in _records.letkf_verdicts(records + _records.load_records()):
        print(line)
    if args.no_write:
        return records
    merged = _records.append_records(records)
    peers.render(merged)
    return merged


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if main() is not None else 1)
