"""Learning-rate sweep for chapter 60's samplers (IR and one-shot), on validation data.

Chapter 60 trains the IR model and the one-shot model with one learning rate at its default
scale (a grid inside the chapter would triple its training time on Kraichnan). This script
chooses that rate the way the chapter would if it could afford to: the same grid for both
samplers, the chapter's default sizes, networks, batch and steps, and trajectories simulated
from keys the chapter does not use (so its test truths play no part in the choice). The score is
the relative L2 error of the ensemble mean of single-frame reconstructions (the chapter's part 1
metric), mean and 95 % interval over the validation truths.

    python -m benchmarks.ir_learning_rate            # both systems, grid 2e-3 .. 2e-2
    python -m benchmarks.ir_learning_rate --system burgers

Prints one line per (system, sampler, rate) and the best rate per sampler.
"""
from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.diffusion import VPSDE
from assimilax.metrics import format_interval, mean_interval
from assimilax.models import Burgers1D, Kraichnan2D
from assimilax.multiscale import Hierarchy, matched_batch_size, reconstruction_scores, refine, refinement_model, \
    train_refinement

F32 = jnp.float32
GRID = (2e-3, 5e-3, 1e-2, 2e-2)
# the chapter's default CONFIG (chapters/60_iterative_refinement.md), validation keys 900 + i
SETUP = {
    "burgers": dict(sim_n=512, nu=0.01, sizes=(16, 32, 64, 128), train=16, val=6, frames=14, skip=10, dt_frame=0.05),
    "kraichnan": dict(n=64, sizes=(8, 16, 32, 64), train=12, val=5, spin=10.0, frames=10, dt_frame=0.2),
}
WIDTHS, STEPS, BATCH, MEMBERS, SAMPLE_STEPS = (8, 16), 150, 8, 6, 20

_run = jax.jit(jax.vmap(lambda m, x0, n, k: m.snapshots(x0, n, k), in_axes=(None, 0, None, None)),
               static_argnums=(2, 3))


def simulate(system: str, key, **overrides) -> tuple:
    """``(hierarchy, train, held_out)`` trajectories of ``system`` with ``SETUP[system]`` updated by
    ``overrides`` (e.g. ``nu``, ``sim_n``); with the chapter's key (``key(100)`` Burgers,
    ``key(101)`` Kraichnan) and no overrides these are chapter 60's training and test sets."""
    c = {**SETUP[system], **overrides}
    n_traj = c["train"] + c["val"]
    if system == "burgers":
        m = Burgers1D(n=c["sim_n"], nu=c["nu"])
        u0 = jax.vmap(lambda k: m.random_initial_condition(k, dtype=F32))(jax.random.split(key, n_traj))
        fr = _run(m, u0, c["frames"] + c["skip"], int(round(c["dt_frame"] / m.dt)))
        fr = Hierarchy((c["sizes"][-1], m.n)).restrict(fr[:, c["skip"]:], 0)
        h = Hierarchy(c["sizes"], "spectral", 1)
    else:
        m = Kraichnan2D(n=c["n"])
        x0 = jax.vmap(lambda k: m.random_initial_condition(k, dtype=F32))(jax.random.split(key, n_traj))
        spin = _run(m, x0, 1, int(round(c["spin"] / m.dt)))[:, -1]
        fr = _run(m, spin, c["frames"], int(round(c["dt_frame"] / m.dt))).reshape(n_traj, c["frames"], m.n, m.n)
        h = Hierarchy(c["sizes"], "spectral", 2)
    return h, fr[:c["train"]], fr[c["train"]:]


def sweep(system: str, grid=GRID, key=jax.random.key(900)) -> dict:
    h, train, val = simulate(system, jax.random.fold_in(key, 0 if system == "burgers" else 1))
    truth, prev = val[:, -1], val[:, -2]
    S = truth.shape[0]
    coarse = jnp.repeat(h.restrict(truth, 0), MEMBERS, axis=0)
    prev_m = jnp.repeat(prev, MEMBERS, axis=0)
    h_os = Hierarchy((h.sizes[0], h.sizes[-1]), h.kind, h.ndim)
    sample = eqx.filter_jit(lambda model, c, p, k: refine(model, c, p, key=k, n_steps=SAMPLE_STEPS))
    out = {}
    for label, hh, b in (("IR", h, BATCH), ("one-shot", h_os, matched_batch_size(h, BATCH, h_os))):
        for lr in grid:
            t0 = time.time()
            model = refinement_model(hh, train, VPSDE(), key=jax.random.key(3), widths=WIDTHS)
            model, _, _ = train_refinement(model, train, key=jax.random.key(4), n_steps=STEPS, batch_size=b,
                                           learning_rate=lr, progress=False)
            ens = sample(model, coarse, prev_m, jax.random.key(2)).reshape((S, MEMBERS) + truth.shape[1:])
            if not bool(jnp.all(jnp.isfinite(ens))):  # training diverged at this rate
                out[(label, lr)] = np.full(S, np.inf)
                print(f"{system:9s} {label:8s} lr {lr:.0e}: diverged (non-finite samples)", flush=True)
                continue
            rel = np.asarray(reconstruction_scores(ens, truth, [h.sizes[0] / 2, h.sizes[-1] / 2 + 1],
                                                   ndim=h.ndim).rel_l2)
            out[(label, lr)] = rel
            print(f"{system:9s} {label:8s} lr {lr:.0e}: rel. L2 {format_interval(mean_interval(rel), 3)} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    for label in ("IR", "one-shot"):
        best = min(grid, key=lambda lr: float(out[(label, lr)].mean()))
        print(f"{system:9s} {label:8s} best lr {best:.0e}", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=("burgers", "kraichnan", "both"), default="both")
    p.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="learning rates")
    args = p.parse_args(argv)
    for system in (("burgers", "kraichnan") if args.system == "both" else (args.system,)):
        sweep(system, tuple(args.grid))


if __name__ == "__main__":
    main()
