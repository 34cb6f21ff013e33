"""Chapter 15's Lorenz-96 study where its 5-minute budget cannot take it: more training seeds,
DAPPER's ``sakov2008`` observation setting, and a learning-rate grid for the ensemble-aware analyses.

The chapter trains every Lorenz-96 analysis once, with one training seed, on the sparse setting
(every other component observed). This script executes **the chapter itself** (its Lorenz-96
sections: the CONFIG cell and every cell from "Lorenz-96" to the cell that glues ``l96_record``;
the linear-Gaussian section, which has its own seeds, is dropped) with three environment
variables that only this script sets:

- ``ASSIMILAX_TRAIN_SEED``: the training seed. Every key of a network's initialisation, minibatch
  order, perturbation and DAgger round is ``fold_in(key, seed)`` (seed 0 is the chapter's run);
  the trajectories, the test truths, their initial ensembles and the LETKF's keys do not change,
  so runs of different seeds are paired by truth and the LETKF with the true model is the same in
  every seed (the LETKF with the learned forward model changes with it);
- ``ASSIMILAX_L96_SETTING``: ``sparse`` (the chapter's) or ``sakov2008``: every component
  observed with R = I, the observation setting of DAPPER's ``mods/Lorenz96/sakov2008.py``
  (:data:`assimilax.configs.LORENZ96_SAKOV2008`), with the chapter's trajectories, truths, cycles,
  networks and budgets;
- ``ASSIMILAX_ENS_LR``: the Adam rates of the learned correction to the LETKF and of the
  ensemble-aware analysis without a base.
  The grid runs first, at training seed 0 on the sparse setting; the kept round's validation RMSE
  (the chapter's own selection score, on the validation trajectories) chooses each rate
  (:func:`choose_rates`), every seed of both settings then runs at the chosen pair, and the chapter's
  ``CONFIG["ens_lr"]`` must be that pair (the record's ``chapter_lr``; the chapter refuses a record
  made at other rates).

Nothing of the chapter is re-implemented: each run's numbers are the chapter's glued
``l96_record`` (per-truth RMSE of every row, the long-run ensemble scores, the validation RMSE
by round, the state sensitivities and the training seconds). The chapter reads the record back and
computes every verdict over seeds from it.

    python -m benchmarks.joint_seeds --write      # about 45 minutes on 2 CPU cores (11 executions)
    python -m benchmarks.joint_seeds --seeds 2    # a quicker look, not written

Writes ``benchmarks/results/joint_seeds.json``.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "15_joint_training.md"
RESULT = Path(__file__).resolve().parent / "results" / "joint_seeds.json"
SETTINGS = ("sparse", "sakov2008")
# the grid of rates, as pairs (correction, without a base), one execution each; the two analyses are trained
# independently, so each is tuned on its own column. (The correction's column starts at 1e-5: on an
# earlier grid from 3e-5 to 3e-3 validation chose its bottom, 3e-5; the analysis without a base
# diverged at 3e-2.)
LR_GRID = ((1e-5, 3e-4), (3e-5, 1e-3), (1e-4, 3e-3), (3e-4, 1e-2), (1e-3, 3e-2))
COLUMNS = ("LETKF + learned correction", "ensemble-aware G")
# the CONFIG entries a record must share with the chapter that reads it
SETUP_KEYS = ("l96_traj", "l96_len", "steps", "batch", "width", "unroll", "perturb", "truths", "cycles", "members",
              "inflation", "radius", "fth_inflation", "fth_radius", "ens_steps", "ens_rounds", "ens_unroll",
              "long_cycles")
RECORD_CELL = 'glue("l96_record"'


def lorenz96_cells(nb):
    """The chapter's notebook without the linear-Gaussian section and without everything after
    the cell that glues ``l96_record`` (the cells that read this script's record)."""
    cells, skipping = [], False
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == "markdown":  # the last section header in the cell decides
            for line in src.splitlines():
                if line.startswith("## "):
                    skipping = line.startswith("## Linear-Gaussian")
        if skipping:
            continue
        cells.append(cell)
        if cell.cell_type == "code" and RECORD_CELL in src:
            break
    else:
        raise RuntimeError(f"{CHAPTER.name} has no cell that glues l96_record")
    nb.cells = cells
    return nb


def glued(nb, name):
    """The value the executed notebook glued under ``name`` (a ``glue(name, str, display=False)``)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name") == name:
                text = out["data"][meta.get("mime_prefix", "") + "text/plain"]
                return ast.literal_eval("".join(text) if isinstance(text, list) else text)
    raise KeyError(name)


def execute(seed, setting, ens_lr, timeout=3600):
    """One execution of the chapter's Lorenz-96 sections; returns its ``l96_record`` (a dict)."""
    import jupytext
    from nbclient import NotebookClient

    nb = lorenz96_cells(jupytext.read(CHAPTER))
    env = dict(ASSIMILAX_TRAIN_SEED=str(seed), ASSIMILAX_L96_SETTING=setting,
               ASSIMILAX_ENS_LR=",".join(repr(float(v)) for v in ens_lr))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        t0 = time.time()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(CHAPTER.parent)}}).execute()
        rec = json.loads(glued(nb, "l96_record"))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    rec["wall_s"] = time.time() - t0
    if (rec["seed"], rec["setting"], tuple(rec["ens_lr"])) != (seed, setting, tuple(float(v) for v in ens_lr)):
        raise RuntimeError(f"the chapter did not read the overrides: {rec['seed'], rec['setting'], rec['ens_lr']}")
    return rec


def choose_rates(grid_records):
    """Each column's rate: the grid point whose kept round (the chapter keeps the round of lowest
    validation RMSE, round 0 being the untrained network) has the lowest validation RMSE."""
    out = []
    for col, name in enumerate(COLUMNS):
        best = min(grid_records, key=lambda r: min(r["ens_val"][name]))
        out.append(float(best["ens_lr"][col]))
    return tuple(out)


def plan(n_seeds, rates):
    """The executions (seed, setting, rates): the rate grid at seed 0 on the sparse setting, then every
    seed of both settings at ``rates`` (seed 0 of the sparse setting is the chapter's own run, repeated
    here so that every seed of the record comes from this script)."""
    runs = [(0, "sparse", lr) for lr in LR_GRID]
    runs += [(s, "sparse", rates) for s in range(n_seeds)]
    runs += [(s, "sakov2008", rates) for s in range(n_seeds)]
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per setting (0 is the chapter's)")
    ap.add_argument("--write", action="store_true", help=f"write {RESULT.relative_to(ROOT)}")
    ap.add_argument("--partial", type=Path, help="also write the executions done so far here, after each one")
    args = ap.parse_args()
    if args.seeds < 2:
        raise SystemExit("--seeds must be at least 2 (seed 0 is the chapter's own run)")
    t_all = time.time()
    records, rates = [], None
    n_all = len(LR_GRID) + 2 * args.seeds
    for i in range(n_all):
        if i == len(LR_GRID):  # the grid is done: choose the rates the seeds run at
            rates = choose_rates(records)
            print(f"validation chooses the rates {rates}", flush=True)
        seed, setting, lr = plan(args.seeds, rates)[i] if rates else (0, "sparse", LR_GRID[i])
        rec = execute(seed, setting, lr)
        records.append(rec)
        print(f"[{i + 1}/{n_all}] seed {seed}, {setting}, rates {lr}: {rec['wall_s']:.0f} s; "
              + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in rec["runs"].items()), flush=True)
        if args.partial:
            args.partial.write_text(json.dumps(records))
    cfg = records[0]["config"]
    for rec in records[1:]:
        if {k: rec["config"][k] for k in SETUP_KEYS} != {k: cfg[k] for k in SETUP_KEYS}:
            raise RuntimeError("the executions ran different CONFIGs")
    out = dict(
        script="benchmarks/joint_seeds.py",
        chapter=str(CHAPTER.relative_to(ROOT)),
        setup={k: cfg[k] for k in SETUP_KEYS},
        seeds=args.seeds,
        lr_grid=[list(p) for p in LR_GRID],
        chapter_lr=list(rates),
        machine=platform.platform(),
        total_s=time.time() - t_all,
        records=records,
    )
    print(f"total {out['total_s']:.0f} s")
    if args.write:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
