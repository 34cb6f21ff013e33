"""Learning-rate and step-budget tuning for chapter 45's learned predictors, on validation data.

Chapter 45 compares mixtures of experts (softmax gate, eight loss variants trained side by side,
and the attention router), a single MLP of equal parameter count, the oracle with wide experts and
a single network conditioned on the regime, all at one Adam budget. A learning-rate grid inside
the chapter would multiply its training time by the grid's size, so this script makes the choice
the way the chapter would if it could afford to:

- the same grid of rates for every model class, the chapter's default sizes, data, batch and
  number of steps;
- training trajectories and validation trajectories simulated from keys the chapter does not use
  (900, 901; the chapter uses 0 to 15), so its test trajectories play no part in the choice;
- the score is the one-step RMSE against the true state on the validation trajectories (the
  chapter's headline metric), mean and 95 % interval over the seeds; a class's rate is the one
  with the lowest mean (for the gate family: the lowest mean over its variants), flagged when it
  lies on the edge of the grid;
- then, at each class's chosen rate, the same models trained for ``BUDGET_FACTOR`` times the steps,
  compared with the chapter's budget seed by seed (``assimilax.metrics.compare_runs``): does the
  ranking depend on the budget?

Every rate of a class trains in one program (``fit_moe`` takes one rate per model).

    python -m benchmarks.moe_learning_rate            # prints the tables
    python -m benchmarks.moe_learning_rate --write    # and writes benchmarks/results/moe_learning_rate.json

The chapter reads the record, checks that its setup is the chapter's own, and trains each class at
the rate chosen here.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.learned import moe
from assimilax.metrics import compare_runs, format_interval, mean_interval
from assimilax.observations import LinearObservation

RESULT = Path(__file__).resolve().parent / "results" / "moe_learning_rate.json"
GRID = (1e-3, 3e-3, 1e-2, 3e-2)
BUDGET_FACTOR = 3
#: chapter 45's default CONFIG (chapters/45_switching_experts.md); the chapter checks these
SETUP = dict(n_regimes=3, forcing=12.0, dwell_time=2.0, dt=0.01, steps_per_obs=5, obs_noise=0.1, n_train=1500,
             n_test=500, window=4, width=16, depth=2, router_hidden=16, steps=1000, batch=16, segment=8,
             horizon=5, seeds=5)
#: the gate family: (name, (balance, z, alignment, consistency, information), oracle), as in the chapter
GATE_VARIANTS = (
    ("MoE, no regulariser", (0.0, 0.0, 0.0, 0.0, 0.0), False),
    ("MoE + load balancing", (1e-2, 0.0, 0.0, 0.0, 0.0), False),
    ("MoE + alignment (supervised)", (0.0, 0.0, 0.05, 0.0, 0.0), False),
    ("MoE + information (unsupervised)", (0.0, 0.0, 0.0, 0.0, 0.05), False),
    ("oracle (true regime)", (0.0, 0.0, 0.0, 0.0, 0.0), True),
)
#: the other classes: (class, comparison_model kind, loss weights, oracle)
OTHERS = (
    ("attention router (alignment)", "attention", (0.0, 0.0, 0.05, 0.0, 0.0), False),
    ("single MLP", "mlp", (0.0,) * 5, False),
    ("oracle, wide experts", "wide", (0.0,) * 5, True),
    ("regime-conditioned MLP", "conditioned", (0.0,) * 5, True),
)


def data(key, n_obs: int, seeds: int):
    """``seeds`` switching trajectories of the chapter's system (``moe.switching_data``)."""
    obs = LinearObservation.full(3, SETUP["obs_noise"])
    fn = jax.jit(jax.vmap(lambda k: moe.switching_data(
        k, SETUP["dwell_time"], SETUP["forcing"], n_obs, observation=obs, n_regimes=SETUP["n_regimes"],
        dt=SETUP["dt"], steps_per_obs=SETUP["steps_per_obs"])))
    return fn(jax.random.split(key, seeds))


def train_and_score(kind, variants, rates, train, val, scales, n_steps, key):
    """Train ``len(variants) * len(rates) * seeds`` models of one kind in one program; return the
    validation scores ``(rates, variants, seeds)`` of one-step RMSE, horizon RMSE and NMI."""
    S, V, R = SETUP["seeds"], len(variants), len(rates)
    n = R * V * S
    build = lambda k: moe.comparison_model(kind, SETUP["window"], 3, SETUP["n_regimes"], width=SETUP["width"],  # noqa: E731
                                           depth=SETUP["depth"], router_hidden=SETUP["router_hidden"], **scales,
                                           key=k)
    models = eqx.filter_vmap(build)(jax.random.split(jax.random.fold_in(key, 0), n))
    rep = lambda a: jnp.tile(a, (R * V,) + (1,) * (a.ndim - 1))  # noqa: E731 (seed is the fastest axis)
    weights = moe.MoELossWeights(*(jnp.tile(jnp.repeat(jnp.array([v[1][j] for v in variants]), S), R)
                                   for j in range(5)))
    oracle = jnp.tile(jnp.repeat(jnp.array([v[2] for v in variants]), S), R)
    lr = jnp.repeat(jnp.array(rates, jnp.float32), V * S)
    models, _ = moe.fit_moe(models, rep(train.observations), rep(train.labels), weights, key=jax.random.fold_in(key, 1),
                            n_steps=n_steps, batch_size=SETUP["batch"], segment=SETUP["segment"], learning_rate=lr,
                            oracle=oracle, progress=False)
    ev = eqx.filter_jit(eqx.filter_vmap(lambda m, y, x, lab, o: moe.prediction_scores(
        m, y, x, lab, horizon=SETUP["horizon"], oracle=o)))
    sc = ev(models, rep(val.observations), rep(val.states), rep(val.labels), oracle)
    one, hor, nmi = (np.asarray(a, dtype=float).reshape(R, V, S) for a in sc[:3])
    one[~np.isfinite(one)] = np.inf
    return one, hor, nmi


def sweep(grid=GRID, budget_factor=BUDGET_FACTOR, key=jax.random.key(900)):
    t_start = time.time()
    train = data(jax.random.fold_in(key, 0), SETUP["n_train"], SETUP["seeds"])
    val = data(jax.random.fold_in(key, 1), SETUP["n_test"], SETUP["seeds"])
    y = train.observations
    scales = dict(loc=float(jnp.mean(y)), scale=float(jnp.std(y)), step_scale=float(jnp.std(jnp.diff(y, axis=1))))
    classes = [("gate", "MoE, softmax gate (all variants)", GATE_VARIANTS)]
    classes += [(kind, name, ((name, w, o),)) for name, kind, w, o in OTHERS]
    out = {"setup": SETUP, "grid": list(grid), "budget_factor": budget_factor, "classes": []}
    for c, (kind, cname, variants) in enumerate(classes):
        t0 = time.time()
        ck = jax.random.fold_in(key, 10 + c)
        one, hor, nmi = train_and_score(kind, variants, grid, train, val, scales, SETUP["steps"], ck)
        family = one.mean(axis=2).mean(axis=1)  # mean over seeds, then variants
        family[~np.isfinite(family)] = np.inf
        b = int(np.argmin(family))
        rec = {"class": cname, "kind": kind, "variants": [v[0] for v in variants], "best_rate": grid[b],
               "on_edge": b in (0, len(grid) - 1), "one_step": one.tolist(), "horizon": hor.tolist(),
               "nmi": nmi.tolist()}
        for i, lr in enumerate(grid):
            print(f"{cname:34s} lr {lr:.0e}: one-step RMSE (mean over variants) {family[i]:.4f}", flush=True)
        # the chapter's budget against budget_factor times it, at the chosen rate (same keys and seeds)
        one_l, hor_l, nmi_l = train_and_score(kind, variants, (grid[b],), train, val, scales,
                                              budget_factor * SETUP["steps"], ck)
        rec["long_one_step"], rec["long_horizon"], rec["long_nmi"] = one_l[0].tolist(), hor_l[0].tolist(), \
            nmi_l[0].tolist()
        rec["seconds"] = time.time() - t0
        out["classes"].append(rec)
        print(f"{cname:34s} best {grid[b]:.0e}{' (grid edge)' if rec['on_edge'] else ''}; "
              f"{rec['seconds']:.0f} s", flush=True)
    out["seconds"] = time.time() - t_start
    out["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out["machine"] = f"{os.cpu_count()} CPUs, jax {jax.__version__}"
    return out


def budget_rows(record):
    """Per variant: one-step RMSE at the chapter's budget and at ``budget_factor`` times it, both
    at the class's chosen rate, with the paired verdict (longer training better / within noise / worse)."""
    rows = []
    grid = record["grid"]
    for c in record["classes"]:
        b = grid.index(c["best_rate"])
        for j, name in enumerate(c["variants"]):
            short = np.asarray(c["one_step"])[b, j]
            long = np.asarray(c["long_one_step"])[j]
            v = compare_runs(long, short)
            rows.append({"model": name, "rate": c["best_rate"], "short": short, "long": long, "verdict": v})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="learning rates")
    p.add_argument("--write", action="store_true", help=f"write {RESULT.relative_to(RESULT.parents[2])}")
    args = p.parse_args(argv)
    rec = sweep(tuple(args.grid))
    for r in budget_rows(rec):
        print(f"{r['model']:34s} lr {r['rate']:.0e}: {SETUP['steps']} steps {format_interval(mean_interval(r['short']), 3)}"
              f", {BUDGET_FACTOR * SETUP['steps']} steps {format_interval(mean_interval(r['long']), 3)}: "
              f"longer training {r['verdict'].phrase} ({r['verdict'].summary})", flush=True)
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
