"""Side by side with jax-cfd: forced 2-D turbulence and Burgers, float32, in one process.

The forced configuration of jax-cfd's spectral ``ForcedNavierStokes2D`` (Kochkov et al. 2021:
Kolmogorov forcing ``(sin 4y, 0)``, i.e. vorticity forcing ``-4 cos 4y``, viscosity 1e-3, drag
0.1, ``[0, 2 pi)^2``) stepped by jax-cfd's ``crank_nicolson_rk4`` and by
:class:`assimilax.models.Kraichnan2D` (integrating-factor RK4), from the same initial field, at
the same time step (jax-cfd's ``stable_time_step`` for a maximum velocity of 7 and Courant number
0.5, which is also Kraichnan2D's default).

*Filters.* jax-cfd's ``brick_wall_filter_2d`` keeps, in ``rfft2`` layout, the rows
``kx = 0 .. K-1`` and ``kx = -K .. -1`` and the columns ``ky = 0 .. K`` (``K = N // 3`` for
N = 64, 128, 256): the mode ``kx = +K`` is dropped on one side only, so the kept set is not
mirror-symmetric (and the ``(+-K, 0)`` pair is left non-Hermitian, i.e. halved). Kraichnan2D keeps
the symmetric square ``|kx|, |ky| <= K``. To compare like with like the *matched* runs replace
jax-cfd's ``filter_`` by Kraichnan2D's mask (and start from a field band-limited to
``|kx|, |ky| < K``, inside both filters); the *stock* runs keep jax-cfd's filter, and their
difference from the matched runs is reported too.

*Accuracy.* Relative L2 error of the vorticity at time ``T`` against a float64 Kraichnan2D run at
``dt / 8`` (the same PDE; its agreement with a float64 jax-cfd run at ``dt / 8`` with the matched
filter is printed as a check). Burgers: the max error at ``T = 1.5`` against the Cole--Hopf
solution from ``u0 = sin x`` (``nu = 0.05``), jax-cfd's ``BurgersEquation`` (3/2-rule padding,
``crank_nicolson_rk4``) against :class:`assimilax.models.Burgers1D`; its batched timing vmaps over
``B`` random-sinusoid initial conditions (``Burgers1D.random_initial_condition``).

*Timing.* Seconds per step of a jitted loop of ``S`` steps, median of several warm runs
(compilation excluded); batched: a ``vmap`` over ``B`` initial fields, time per trajectory-step.
Kraichnan2D's ``integrate`` keeps the state in Fourier space between steps, as jax-cfd does;
calling ``step`` on the grid field once per step (what a filter's single forecast step does) costs
one ``rfft2``/``irfft2`` pair more and is timed too (``seconds_per_step_grid_state``).

Run: ``benchmarks/.venv-peers/bin/python -m benchmarks.cfd [--quick] [--no-write]``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time

import numpy as np

NU, DRAG, KF = 1e-3, 0.1, 4
TABLE = "cfd"
BATCH = 8


def _problem_ns(n):
    return f"Kraichnan 2-D forced (k_f = 4, ν = 1e-3, drag 0.1), {n}²"


def _problem_burgers(n):
    return f"Burgers 1-D (ν = 0.05), N = {n}"


def _median_times(fns, repeats):
    """``{name: (median, runs, first)}`` of jitted ``fn(arg)`` calls, the warm runs interleaved
    across ``fns`` (``{name: (fn, arg)}``) so that load on the shared machine hits all alike."""
    import jax
    first, runs = {}, {k: [] for k in fns}
    for k, (fn, arg) in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        first[k] = time.perf_counter() - t0
    for _ in range(repeats):
        for k, (fn, arg) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(arg))
            runs[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(runs[k]), runs[k], first[k]) for k in fns}


def _cfd_ns(n, dt, mask=None):
    """jax-cfd's forced equation and CN-RK4 step; ``mask`` replaces its brick-wall filter."""
    import jax.numpy as jnp
    from jax_cfd.base import grids
    from jax_cfd.spectral import equations, time_stepping
    grid = grids.Grid((n, n), domain=((0, 2 * np.pi), (0, 2 * np.pi)))
    eq = equations.ForcedNavierStokes2D(NU, grid, smooth=True)
    if mask is not None:
        eq.filter_ = jnp.asarray(mask, eq.filter_.dtype)
    return eq, time_stepping.crank_nicolson_rk4(eq, dt)


def _masks(n):
    from assimilax.models import Kraichnan2D
    K = Kraichnan2D(n=n).cutoff
    kx = np.fft.fftfreq(n, 1 / n)[:, None]
    ky = np.fft.rfftfreq(n, 1 / n)[None, :]
    ours = ((np.abs(kx) <= K) & (np.abs(ky) <= K)).astype(np.float32)
    inner = ((np.abs(kx) < K) & (np.abs(ky) < K)).astype(np.float32)
    return K, ours, inner


def _initial_field(n, seed=0):
    """A Kraichnan-spectrum field (k0 = 4, energy 2), band-limited inside both filters (float32)."""
    import jax
    import jax.numpy as jnp
    from assimilax.models import Kraichnan2D
    _, _, inner = _masks(n)
    w = Kraichnan2D(n=n).random_initial_condition(jax.random.PRNGKey(seed), k0=4.0, energy=2.0,
                                                  dtype=jnp.float32)
    return jnp.fft.irfft2(jnp.fft.rfft2(w.reshape(n, n)) * inner, s=(n, n)).reshape(n * n)


def _rel(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_ns(n, T, steps_timed, repeats, check_reference=False):
    import jax
    import jax.numpy as jnp
    from assimilax.models import Kraichnan2D

    model = Kraichnan2D(n=n, nu=NU, drag=DRAG, forcing_wavenumber=KF)
    dt = model.dt
    n_steps = int(round(T / dt))
    T = n_steps * dt
    _, ours_mask, _ = _masks(n)
    w0 = _initial_field(n)

    # -- accuracy: both float32 at dt, against float64 Kraichnan2D at dt / 8 ---------------------
    with jax.enable_x64(True):
        fine = Kraichnan2D(n=n, nu=NU, drag=DRAG, forcing_wavenumber=KF, dt=dt / 8)
        ref = np.asarray(jax.jit(lambda w: fine.integrate(w, 8 * n_steps))(w0.astype(jnp.float64)))
        ref_check = None
        if check_reference:
            _, step64 = _cfd_ns(n, dt / 8, ours_mask)
            wh = jnp.fft.rfftn(w0.astype(jnp.float64).reshape(n, n))
            wh = jax.jit(lambda s: jax.lax.fori_loop(0, 8 * n_steps, lambda i, x: step64(x), s))(wh)
            ref_check = _rel(jnp.fft.irfftn(wh, s=(n, n)), ref.reshape(n, n))
    ours = np.asarray(jax.jit(lambda w: model.integrate(w, n_steps))(w0))
    w_hat0 = jnp.fft.rfftn(w0.reshape(n, n))
    out = {}
    for name, mask in (("matched", ours_mask), ("stock", None)):
        _, step = _cfd_ns(n, dt, mask)
        loop = jax.jit(lambda s, step=step: jax.lax.fori_loop(0, n_steps, lambda i, x: step(x), s))
        out[name] = np.asarray(jnp.fft.irfftn(loop(w_hat0), s=(n, n))).ravel()
    acc = dict(ours=_rel(ours, ref), cfd=_rel(out["matched"], ref), stock=_rel(out["stock"], ref),
               ours_vs_cfd=_rel(ours, out["matched"]), stock_vs_matched=_rel(out["stock"], out["matched"]),
               reference_check=ref_check, T=T, n_steps=n_steps, dt=dt)
    # equal accuracy: the fewest steps per unit time (in steps of 5 %) at which Kraichnan2D's error
    # is no larger than jax-cfd's at dt (both schemes are fourth order; their constants differ)
    factor = 1.0
    err = acc["ours"]
    while err > acc["cfd"] and factor < 3:
        factor = round(factor + 0.05, 2)
        m_eq = Kraichnan2D(n=n, nu=NU, drag=DRAG, forcing_wavenumber=KF, dt=T / int(np.ceil(n_steps * factor)))
        err = _rel(jax.jit(lambda w: m_eq.integrate(w, int(np.ceil(n_steps * factor))))(w0), ref)
    acc.update(equal_accuracy_step_factor=factor, equal_accuracy_error=err)

    # -- timing --------------------------------------------------------------------------------
    _, step = _cfd_ns(n, dt, ours_mask)
    cfd_loop = jax.jit(lambda s: jax.lax.fori_loop(0, steps_timed, lambda i, x: step(x), s))
    our_loop = jax.jit(lambda w: model.integrate(w, steps_timed))
    W0 = jnp.stack([_initial_field(n, seed) for seed in range(BATCH)])
    W0_hat = jnp.fft.rfftn(W0.reshape(BATCH, n, n), axes=(1, 2))
    cfd_batch = jax.jit(jax.vmap(lambda s: jax.lax.fori_loop(0, steps_timed, lambda i, x: step(x), s)))
    our_batch = jax.jit(jax.vmap(lambda w: model.integrate(w, steps_timed)))
    our_step_loop = jax.jit(lambda w: jax.lax.fori_loop(0, steps_timed, lambda i, x: model.step(x), w))
    per = {"ours": steps_timed, "ours_step": steps_timed, "cfd": steps_timed, "ours_batch": steps_timed * BATCH,
           "cfd_batch": steps_timed * BATCH}
    res = _median_times({"ours": (our_loop, w0), "ours_step": (our_step_loop, w0), "cfd": (cfd_loop, w_hat0),
                         "ours_batch": (our_batch, W0),
                         "cfd_batch": (cfd_batch, W0_hat)}, repeats)
    timings = {k: dict(seconds=med / per[k], runs=[r / per[k] for r in runs], first=first)
               for k, (med, runs, first) in res.items()}
    return acc, timings


def cole_hopf_sine(x, t, nu):
    from scipy.special import ive
    a = 1 / (2 * nu)
    ns = np.arange(1, 200)[:, None]
    c = ive(ns, a) * np.exp(-nu * ns ** 2 * t)
    phi = ive(0, a) + 2 * np.sum(c * np.cos(ns * x), axis=0)
    phi_x = -2 * np.sum(ns * c * np.sin(ns * x), axis=0)
    return -2 * nu * phi_x / phi


def run_burgers(n, steps_timed, repeats, nu=0.05, T=1.5):
    import jax
    import jax.numpy as jnp
    from jax_cfd.base import grids
    from jax_cfd.spectral import equations, time_stepping
    from assimilax.models import Burgers1D

    dt = 0.5 * 2 * np.pi / n
    n_steps = int(np.ceil(T / dt))
    dt = T / n_steps
    model = Burgers1D(n=n, nu=nu, dt=dt)
    grid = grids.Grid((n,), domain=((0, 2 * np.pi),))
    step = time_stepping.crank_nicolson_rk4(equations.BurgersEquation(nu, grid), dt)
    x = model.grid
    u0 = jnp.asarray(np.sin(x), jnp.float32)
    exact = cole_hopf_sine(x, T, nu)
    ours = np.asarray(jax.jit(lambda u: model.integrate(u, n_steps))(u0))
    # jax-cfd's Burgers state is (u_hat, t)
    state0 = (jnp.fft.rfft(u0), jnp.zeros((), jnp.float32))
    theirs = jax.jit(lambda s: jax.lax.fori_loop(0, n_steps, lambda i, v: step(v), s))(state0)
    theirs = np.asarray(jnp.fft.irfft(theirs[0], n=n))
    acc = dict(ours=float(np.max(np.abs(ours - exact))), cfd=float(np.max(np.abs(theirs - exact))), dt=dt,
               n_steps=n_steps, T=T)
    our_loop = jax.jit(lambda u: model.integrate(u, steps_timed))
    cfd_loop = jax.jit(lambda s: jax.lax.fori_loop(0, steps_timed, lambda i, v: step(v), s))
    # a batch of BATCH initial conditions (random sinusoids), vmapped like the 2-D runs
    U0 = jnp.stack([model.random_initial_condition(jax.random.PRNGKey(seed), dtype=jnp.float32)
                    for seed in range(BATCH)])
    states0 = (jnp.fft.rfft(U0, axis=-1), jnp.zeros((BATCH,), jnp.float32))
    our_batch = jax.jit(jax.vmap(lambda u: model.integrate(u, steps_timed)))
    cfd_batch = jax.jit(jax.vmap(lambda s: jax.lax.fori_loop(0, steps_timed, lambda i, v: step(v), s)))
    per = {"ours": steps_timed, "cfd": steps_timed, "ours_batch": steps_timed * BATCH,
           "cfd_batch": steps_timed * BATCH}
    res = _median_times({"ours": (our_loop, u0), "cfd": (cfd_loop, state0), "ours_batch": (our_batch, U0),
                         "cfd_batch": (cfd_batch, states0)}, repeats)
    timings = {k: dict(seconds=med / per[k], runs=[r / per[k] for r in runs], first=first)
               for k, (med, runs, first) in res.items()}
    return acc, timings


def _versions():
    import jax
    import jax_cfd
    return f"jax {jax.__version__}, jax-cfd {getattr(jax_cfd, '__version__', '0.2.1')}"


def _machine():
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs; JAX on CPU"


def records_ns(n, acc, timings, mode):
    base = dict(dim=n * n, seeds=[0], table=TABLE, system="kraichnan", n=n, mode=mode,
                dt=acc["dt"], T=acc["T"], n_steps=acc["n_steps"])
    out = []
    for method, ours_key, cfd_key in (("time step (float32)", "ours", "cfd"),
                                      (f"time step, vmapped batch of {BATCH}, per trajectory", "ours_batch",
                                       "cfd_batch")):
        for lib, key, err, scheme in (("assimilax", ours_key, acc["ours"], "integrating-factor RK4, grid state"),
                                      ("jax-cfd", cfd_key, acc["cfd"], "Crank-Nicolson RK4, Fourier state")):
            t = timings[key]
            out.append(dict(base, problem=_problem_ns(n), method=method, library=lib, rmse=err,
                            seconds_per_cycle=t["seconds"], seconds_per_cycle_runs=t["runs"],
                            seconds_total=t["first"], scheme=scheme,
                            accuracy="relative L2 error of the vorticity at T vs float64 Kraichnan2D at dt/8",
                            difference_ours_vs_jaxcfd=acc["ours_vs_cfd"],
                            stock_filter_error=acc["stock"] if lib == "jax-cfd" else None,
                            stock_vs_matched_filter=acc["stock_vs_matched"],
                            reference_check=acc["reference_check"],
                            steps_per_unit_time_equal_accuracy=(acc["equal_accuracy_step_factor"] if lib == "assimilax"
                                                                else 1.0) / acc["dt"],
                            seconds_per_unit_time_equal_accuracy=t["seconds"] * (
                                acc["equal_accuracy_step_factor"] if lib == "assimilax" else 1.0) / acc["dt"],
                            equal_accuracy_error=acc["equal_accuracy_error"] if lib == "assimilax" else err,
                            batch=BATCH if "batch" in key else 1,
                            seconds_per_step_grid_state=(timings["ours_step"]["seconds"]
                                                         if lib == "assimilax" and key == "ours" else None)))
    return out


def records_burgers(n, acc, timings, mode):
    base = dict(dim=n, seeds=[0], table=TABLE, system="burgers", n=n, mode=mode, dt=acc["dt"], T=acc["T"],
                n_steps=acc["n_steps"],
                accuracy="max abs error at T = 1.5 vs the Cole-Hopf solution from sin x")
    out = []
    for method, suffix, batch in (("time step (float32)", "", 1),
                                  (f"time step, vmapped batch of {BATCH}, per trajectory", "_batch", BATCH)):
        for lib, key, scheme in (("assimilax", "ours", "integrating-factor RK4, 2/3 truncation"),
                                 ("jax-cfd", "cfd", "Crank-Nicolson RK4, 3/2 padding")):
            t = timings[key + suffix]
            out.append(dict(base, problem=_problem_burgers(n), method=method, library=lib, rmse=acc[key],
                            seconds_per_cycle=t["seconds"], seconds_per_cycle_runs=t["runs"],
                            seconds_total=t["first"], scheme=scheme, batch=batch))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="64² and 128², N <= 1024, fewer repeats")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--repeats", type=int, default=None)
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full"
    repeats = a.repeats or (3 if a.quick else 5)
    sizes = (64, 128) if a.quick else (64, 128, 256)
    steps = {64: 200, 128: 100, 256: 40}
    records = []
    for n in sizes:
        acc, tm = run_ns(n, T=1.0, steps_timed=steps[n], repeats=repeats, check_reference=(n == 64))
        print(f"NS {n}²: error ours {acc['ours']:.2e}, jax-cfd {acc['cfd']:.2e} (stock filter {acc['stock']:.2e}); "
              f"ours vs jax-cfd {acc['ours_vs_cfd']:.2e}; stock vs matched {acc['stock_vs_matched']:.2e}; "
              f"reference check {acc['reference_check']}; equal accuracy at {acc['equal_accuracy_step_factor']}x "
              f"the steps (error {acc['equal_accuracy_error']:.2e})", flush=True)
        print(f"   step: ours {tm['ours']['seconds'] * 1e3:.3f} ms, jax-cfd {tm['cfd']['seconds'] * 1e3:.3f} ms; "
              f"batched {BATCH} per trajectory: ours {tm['ours_batch']['seconds'] * 1e3:.3f} ms, "
              f"jax-cfd {tm['cfd_batch']['seconds'] * 1e3:.3f} ms", flush=True)
        records += records_ns(n, acc, tm, mode)
    for n in ((256, 512, 1024) if a.quick else (256, 512, 1024, 2048, 4096)):
        acc, tm = run_burgers(n, steps_timed=500, repeats=repeats)
        print(f"Burgers N={n}: error ours {acc['ours']:.2e}, jax-cfd {acc['cfd']:.2e}; step ours "
              f"{tm['ours']['seconds'] * 1e6:.1f} µs, jax-cfd {tm['cfd']['seconds'] * 1e6:.1f} µs; "
              f"batched {BATCH} per trajectory: ours {tm['ours_batch']['seconds'] * 1e6:.1f} µs, jax-cfd "
              f"{tm['cfd_batch']['seconds'] * 1e6:.1f} µs", flush=True)
        records += records_burgers(n, acc, tm, mode)
    stamp = dict(machine=_machine(), versions=_versions(),
                 # not ``date``: peers.py stamps RESULTS.md's machine line from the newest ``date``
                 run_date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    for r in records:
        r.update(stamp)
    if a.no_write:
        return records
    from benchmarks import _records
    _records.append_records(records)
    return records


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if main() is not None else 1)
