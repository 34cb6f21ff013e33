"""Chapter 60's ablations that its 6-minute budget cannot hold: training seeds, separate networks
per level, and a Burgers viscosity sweep.

Chapter 60 trains each sampler once. This script repeats its part-1 comparison (single-frame
reconstruction of the chapter's own test truths, its default sizes, networks, batch, steps and
sampler) over ``--seeds`` independent training runs (network initialisation and minibatch keys),
so that the verdicts can carry intervals over training runs, and adds:

- **separate networks per level** (``multiscale.LevelwiseModel``) against the shared network
  with the one-hot level embedding phi(r), at the same point evaluations in training; its Adam
  rate is chosen on the chapter's validation trajectories from the grid of
  ``benchmarks/ir_learning_rate.py`` (the same grid and budget the other two samplers were tuned on);
- **conditioning augmentation** on Kraichnan (IR trained with noise up to ``AUGMENTATION`` on the
  lifted coarse input), over the seeds, with the IR model's initialisation and minibatch keys;
- **Burgers rates chosen over seeds**: ``benchmarks/ir_learning_rate.py`` chose each rate from one
  training run; here every Burgers sampler runs the same grid over ``--seeds`` training seeds on
  the validation trajectories (the chapter's grid and 4e-2) and the rate with the best seed-mean is
  kept (a Burgers training
  takes about a second; Kraichnan's grid over seeds would take hours here), and the seed study is
  repeated at those rates;
- **a Burgers viscosity sweep**: IR against one-shot at each viscosity, with the tail-energy
  fractions of ``multiscale.tail_fractions`` of each data set (the structure the chapter relates
  the gain to). The rates are the chapter's (tuned at its viscosity 0.01), not re-tuned per
  viscosity: the same for both samplers. The least viscous case is simulated on a 1024-point grid
  (the chapter's full-scale resolution) so that its shocks are resolved.

    python -m benchmarks.ir_ablations --write          # about half an hour on 2 CPU cores
    python -m benchmarks.ir_ablations --seeds 2        # a quick look, not written

Writes ``benchmarks/results/ir_ablations.json``: per system, sampler and seed the per-truth
relative L2, CRPS and top-band spectrum error (the chapter computes every verdict from these).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.diffusion import VPSDE
from assimilax.metrics import format_interval, mean_interval
from assimilax.multiscale import (Hierarchy, levelwise_model, matched_batch_size, reconstruction_scores, refine,
                                  refinement_model, tail_fractions, train_levelwise, train_refinement)

from .ir_learning_rate import BATCH, GRID, MEMBERS, SAMPLE_STEPS, SETUP, STEPS, WIDTHS, simulate

RESULT = Path(__file__).resolve().parent / "results" / "ir_ablations.json"
SYSTEMS = ("burgers", "kraichnan")
# chapter 60's CONFIG["lr"] (chosen by benchmarks/ir_learning_rate.py)
RATES = {"burgers": {"IR": 2e-2, "one-shot": 1e-2}, "kraichnan": {"IR": 5e-3, "one-shot": 2e-3}}
VISCOSITIES = ((0.005, 1024), (0.01, 512), (0.02, 512), (0.04, 512))  # (nu, solver grid); 0.01 is the chapter's
SAMPLERS = ("IR", "one-shot", "levelwise")
AUGMENTED = "IR, cond. aug."  # chapter 60's CONFIG["augmentation"]: noise level up to AUGMENTATION on the coarse input
AUGMENTATION = 0.2
# the rate grid over seeds for Burgers: the chapter's grid and one step further up (its IR rate is on the edge)
BURGERS_GRID = GRID + (4e-2,)


def _n_params(model) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def _build(label: str, h: Hierarchy, train, key):
    """Untrained model and its batch for ``label`` (IR batch per level; one-shot matched in point evaluations)."""
    sde = VPSDE()
    if label == "levelwise":
        return levelwise_model(h, train, sde, key=key, widths=WIDTHS), BATCH
    if label == "IR":
        return refinement_model(h, train, sde, key=key, widths=WIDTHS), BATCH
    h_os = Hierarchy((h.sizes[0], h.sizes[-1]), h.kind, h.ndim)
    return refinement_model(h_os, train, sde, key=key, widths=WIDTHS), matched_batch_size(h, BATCH, h_os)


def _train(label, h, train, key, lr):
    k_i, k_t = jax.random.split(key)
    model, b = _build("IR" if label == AUGMENTED else label, h, train, k_i)
    fit = train_levelwise if label == "levelwise" else train_refinement
    model, _, cost = fit(model, train, key=k_t, n_steps=STEPS, batch_size=b, learning_rate=lr, progress=False,
                         augmentation=AUGMENTATION if label == AUGMENTED else 0.0)
    return model, cost


_SAMPLE = eqx.filter_jit(lambda model, c, p, k: refine(model, c, p, key=k, n_steps=SAMPLE_STEPS))


def evaluate(model, h: Hierarchy, held_out, key) -> dict:
    """The chapter's part-1 scores on the last frame of every held-out trajectory, given its previous
    frame: per-truth relative L2, CRPS and top-band spectrum error (lists)."""
    truth, prev = held_out[:, -1], held_out[:, -2]
    S = truth.shape[0]
    coarse = jnp.repeat(h.restrict(truth, 0), MEMBERS, axis=0)
    ens = _SAMPLE(model, coarse, jnp.repeat(prev, MEMBERS, axis=0), key).reshape((S, MEMBERS) + truth.shape[1:])
    if not bool(jnp.all(jnp.isfinite(ens))):
        return dict(rel_l2=[float("inf")] * S, crps=[float("inf")] * S, band=[float("inf")] * S)
    bands = [h.sizes[r] / 2 for r in range(len(h.sizes))]
    bands[-1] += 1
    sc = reconstruction_scores(ens, truth, bands, ndim=h.ndim)
    return dict(rel_l2=np.asarray(sc.rel_l2).tolist(), crps=np.asarray(sc.crps).tolist(),
                band=np.asarray(sc.band_spectrum[:, -1]).tolist())


def tune_levelwise(system: str, grid=GRID) -> dict:
    """The levelwise sampler's rate on the validation trajectories of ``ir_learning_rate`` (its keys)."""
    h, train, val = simulate(system, jax.random.fold_in(jax.random.key(900), SYSTEMS.index(system)))
    scores = {}
    for lr in grid:
        model, _ = _train("levelwise", h, train, jax.random.key(3), lr)
        rel = np.asarray(evaluate(model, h, val, jax.random.key(2))["rel_l2"])
        scores[lr] = float(rel.mean()) if np.all(np.isfinite(rel)) else float("inf")
        print(f"{system:9s} levelwise lr {lr:.0e}: validation rel. L2 {scores[lr]:.4g}", flush=True)
    best = min(grid, key=lambda lr: scores[lr])
    return dict(grid=list(grid), validation_rel_l2=[scores[lr] for lr in grid], best=best,
                on_edge=grid.index(best) in (0, len(grid) - 1))


def tune_over_seeds(system: str, n_seeds: int, grid=BURGERS_GRID, samplers=SAMPLERS) -> dict:
    """Every sampler's validation relative L2 (seed means over the truths) on ``grid`` x seeds, on the
    validation trajectories of ``ir_learning_rate``; seed s trains with ``fold_in(key(3000), s)``.
    The best rate is the one with the lowest mean over seeds (a diverged run scores inf)."""
    h, train, val = simulate(system, jax.random.fold_in(jax.random.key(900), SYSTEMS.index(system)))
    out = {}
    for j, label in enumerate(samplers):
        table = []
        for lr in grid:
            row = []
            for s in range(n_seeds):
                model, _ = _train(label, h, train, jax.random.fold_in(jax.random.fold_in(jax.random.key(3000), s), j), lr)
                row.append(float(np.mean(evaluate(model, h, val, jax.random.key(2))["rel_l2"])))
            table.append(row)
            print(f"{system:9s} {label:9s} lr {lr:.0e}: validation rel. L2 over seeds "
                  f"{format_interval(mean_interval(np.asarray(row)), 3) if np.all(np.isfinite(row)) else 'diverged'}",
                  flush=True)
        means = [float(np.mean(r)) if np.all(np.isfinite(r)) else float("inf") for r in table]
        best = grid[int(np.argmin(means))]
        out[label] = dict(validation_rel_l2=table, best=best, on_edge=grid.index(best) in (0, len(grid) - 1))
    return dict(grid=list(grid), samplers=out)


def seed_study(system: str, n_seeds: int, rates: dict, samplers=SAMPLERS, **overrides) -> dict:
    """Every sampler trained ``n_seeds`` times (seed s: ``fold_in(key(2000), s)``) on the chapter's
    training trajectories of ``system`` (``overrides`` change the simulation, e.g. the viscosity),
    scored on its test truths with one sampling key per system."""
    i = SYSTEMS.index(system)
    h, train, test = simulate(system, jax.random.key(100 + i), **overrides)
    out = {label: dict(rel_l2=[], crps=[], band=[], seconds=[]) for label in samplers}
    for s in range(n_seeds):
        for j, label in enumerate(samplers):
            t0 = time.time()
            model, cost = _train(label, h, train, jax.random.fold_in(jax.random.fold_in(jax.random.key(2000), s), j),
                                 rates[label])
            sc = evaluate(model, h, test, jax.random.key(1 + i))
            for k, v in sc.items():
                out[label][k].append(v)
            out[label]["seconds"].append(time.time() - t0)
            out[label]["params"], out[label]["train_point_evaluations"] = _n_params(model), cost.point_evaluations
            print(f"{system:9s} {overrides or ''} seed {s} {label:9s} rel. L2 {np.mean(sc['rel_l2']):.4g} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    tf = tail_fractions(flat(test), h, train=flat(train))
    out["tail_fraction"] = np.asarray(tf.fraction).tolist()
    out["sizes"] = list(h.sizes)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="training seeds per sampler")
    p.add_argument("--write", action="store_true", help="write benchmarks/results/ir_ablations.json")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (intervals over seeds)")
    t_start = time.time()
    rec = dict(setup=dict(systems={k: dict(SETUP[k]) for k in SYSTEMS}, widths=list(WIDTHS), steps=STEPS,
                          batch=BATCH, members=MEMBERS, sample_steps=SAMPLE_STEPS, seeds=args.seeds,
                          augmentation=AUGMENTATION,
                          rates=RATES, viscosities=[list(v) for v in VISCOSITIES]),
               levelwise_rate={}, seeds={}, viscosity=[])
    for system in SYSTEMS:
        rec["levelwise_rate"][system] = tune_levelwise(system)
        rates = {**RATES[system], "levelwise": rec["levelwise_rate"][system]["best"]}
        rec["seeds"][system] = seed_study(system, args.seeds, rates)
        for label in SAMPLERS:
            m = np.asarray(rec["seeds"][system][label]["rel_l2"]).mean(1)
            print(f"{system:9s} {label:9s} rel. L2 over seeds {format_interval(mean_interval(m), 3)}", flush=True)
    # conditioning augmentation on Kraichnan, with the IR model's keys (sampler index 0): paired with IR
    rec["augmentation"] = {"kraichnan": seed_study("kraichnan", args.seeds, {AUGMENTED: RATES["kraichnan"]["IR"]},
                                                   samplers=(AUGMENTED,))}
    rec["burgers_rate_over_seeds"] = tune_over_seeds("burgers", args.seeds)
    rec["seeds_rates_over_seeds"] = {"burgers": seed_study(
        "burgers", args.seeds, {k: v["best"] for k, v in rec["burgers_rate_over_seeds"]["samplers"].items()})}
    for nu, sim_n in VISCOSITIES:
        if nu == SETUP["burgers"]["nu"] and sim_n == SETUP["burgers"]["sim_n"]:
            st = {k: rec["seeds"]["burgers"][k] for k in ("IR", "one-shot", "tail_fraction", "sizes")}
        else:
            st = seed_study("burgers", args.seeds, RATES["burgers"], samplers=("IR", "one-shot"), nu=nu, sim_n=sim_n)
        rec["viscosity"].append(dict(nu=nu, sim_n=sim_n, **st))
    rec["seconds"] = time.time() - t_start
    rec["machine"] = f"{platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}"
    print(f"total {rec['seconds']:.0f} s", flush=True)
    if args.write:
        RESULT.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
