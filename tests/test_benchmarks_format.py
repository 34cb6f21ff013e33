"""The committed side-by-side results have the agreed format, and the benchmark module imports
(and builds its plan) without the peer packages. Runs no peer and no filter."""
import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a top-level folder, not part of the library

from benchmarks import _records  # noqa: E402

PEERS_JSON = ROOT / "benchmarks" / "results" / "peers.json"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"


def _committed():
    with open(PEERS_JSON) as f:
        return json.load(f)


def test_peers_json_has_required_keys_and_unique_rows():
    records = _committed()
    assert isinstance(records, list) and records
    for r in records:
        for k in _records.REQUIRED_KEYS:
            assert k in r, f"{r.get('problem')}/{r.get('method')}/{r.get('library')} lacks {k}"
        assert isinstance(r["problem"], str) and isinstance(r["method"], str)
        assert isinstance(r["library"], str) and isinstance(r["dim"], int) and r["dim"] > 0
        assert isinstance(r["seeds"], list) and r["seeds"]
    keys = [(r["problem"], r["method"], r["library"], r["dim"]) for r in records]
    assert len(keys) == len(set(keys))


def test_every_peer_row_is_paired_with_assimilax():
    records = _committed()
    pairs = _records.pairs(records)
    peers = [r for r in records if r["library"] != "assimilax"]
    assert len(pairs) == len(peers), "a peer row has no assimilax row with the same problem/method/dim"
    for ours, peer in pairs:
        assert ours["problem"] == peer["problem"] and ours["method"] == peer["method"]
        assert ours["library"] != peer["library"]
    problems = {r["problem"] for r in records}
    # the three problems and six DAPPER methods, plus the KF against dynamax and filterpy
    assert any("Lorenz-63" in p for p in problems) and any("Lorenz-96" in p for p in problems)
    libs = {r["library"] for r in records}
    assert {"assimilax", "dapper", "dynamax", "filterpy"} <= libs
    dapper_methods = {r["method"] for r in records if r["library"] == "dapper"}
    assert len(dapper_methods) >= 6


def test_results_md_is_generated_from_the_json_and_starts_below_h1():
    text = RESULTS_MD.read_text()
    assert not any(line.startswith("# ") for line in text.splitlines()), "RESULTS.md must start at ##"
    for ours, peer in _records.pairs(_committed()):
        assert ours["method"] in text


def test_append_records_replaces_same_key(tmp_path):
    path = tmp_path / "r.json"
    base = dict(problem="p", method="m", dim=3, rmse=1.0, seconds_per_cycle=1e-3, seconds_total=1.0, seeds=[1])
    _records.append_records([dict(base, library="assimilax"), dict(base, library="peer")], path)
    merged = _records.append_records([dict(base, library="peer", rmse=2.0),
                                      dict(base, library="peer", dim=4)], path)
    assert len(merged) == 3
    assert [r["rmse"] for r in merged if r["library"] == "peer" and r["dim"] == 3] == [2.0]
    with pytest.raises(ValueError, match="lacks"):
        _records.append_records([{"problem": "p"}], path)
    md = _records.render_markdown(merged)
    assert "| p | m | 3 | peer |" in md


def test_module_imports_without_peers_and_quick_plan_builds(monkeypatch):
    # make any import of a peer package fail: the module and its plan must not need them
    for name in ("dapper", "dynamax", "filterpy"):
        monkeypatch.setitem(sys.modules, name, None)
    sys.modules.pop("benchmarks.peers", None)
    peers = importlib.import_module("benchmarks.peers")
    quick, full = peers.plan(quick=True), peers.plan(quick=False)
    assert len(full["seeds"]) >= 3 and len(quick["seeds"]) >= 1
    assert all(full["cycles"][p] >= 1000 for p in full["cycles"])
    assert quick["kf"]["T"] < full["kf"]["T"] == 10_000
    methods = {c.method for c in full["cases"]}
    assert len(methods) == 7 and {c.method for c in quick["cases"]} == methods
    # the iEnKS pair: DAPPER's defaults (Lag=1, nIter=10, wtol=0, no MDA) made explicit on both sides
    (ienks,) = [c for c in full["cases"] if c.method.startswith("iEnKS")]
    assert ienks.dapper_method == "iEnKS" and ienks.assimilax_filter == "iterative_ensemble_kalman_smoother"
    assert ienks.assimilax_kwargs == dict(lag=1, n_iterations=10, tolerance=0.0, inflation=1.02, rotate=True)
    assert ienks.dapper_args == ("Sqrt",) and ienks.dapper_kwargs == {"N": 10, "infl": 1.02, "rot": True}
    assert len(quick["cases"]) <= len(full["cases"])
    jit = {c.method: c.assimilax_kwargs.get("jitter") for c in full["cases"]}
    # particle_filter's jitter is DAPPER's reg (the N^{-1/(d+4)} bandwidth is applied inside)
    assert jit["PartFilt(N=800, reg=0.9, NER=0.2)"] == pytest.approx(0.9)


def test_arctan_problem_is_planned_and_paired(monkeypatch):
    """The Lorenz-96 arctan LETKF comparison (issue 5) is in the plan without the peers, and the
    committed results hold a DAPPER/assimilax pair at d = 40 and d = 100 with a finite RMSE."""
    for name in ("dapper", "dynamax", "filterpy"):
        monkeypatch.setitem(sys.modules, name, None)
    sys.modules.pop("benchmarks.peers", None)
    peers = importlib.import_module("benchmarks.peers")
    for quick in (True, False):
        a = peers.plan(quick=quick)["arctan"]
        assert a["dims"] == (40, 100) and a["cycles"] == 150 and a["last"] == 50 and a["N"] == 20
    assert len(peers.plan(quick=False)["arctan"]["seeds"]) == 10
    rows = [(o, p) for o, p in _records.pairs(_committed()) if o["problem"] == peers.ARCTAN]
    assert sorted(o["dim"] for o, p in rows if p["library"] == "dapper") == [40, 100]
    for o, p in rows:
        assert o["rmse"] is not None and p["rmse"] is not None and o["seeds"] == p["seeds"]


def test_results_md_equals_the_render_of_peers_json(monkeypatch):
    """RESULTS.md is exactly what `python -m benchmarks.peers --render-only` writes from the
    committed peers.json (no hand edits, no stale table); captured instead of written."""
    for name in ("dapper", "dynamax", "filterpy"):
        monkeypatch.setitem(sys.modules, name, None)
    sys.modules.pop("benchmarks.peers", None)
    peers = importlib.import_module("benchmarks.peers")
    written = {}
    monkeypatch.setattr(peers._records, "write_markdown",
                        lambda records, meta=None, mapping=None, path=None: written.setdefault(
                            "text", peers._records.render_markdown(records, meta, mapping)))
    peers.render(_committed())
    assert written["text"] == RESULTS_MD.read_text(), "RESULTS.md differs from the render of peers.json"


def test_extrapolated_reference_yields_no_met_verdict():
    from benchmarks import peers

    base = dict(problem="Lorenz-96 arctan (EnSF setting)", library="assimilax", rmse=0.2, seeds=[0],
                seconds_total=1.0, method="EnSF")
    measured = dict(base, dim=100_000, seconds_per_cycle=0.1, pytorch_anchor_seconds_per_cycle=22.6)
    extrap = dict(base, dim=1_000_000, seconds_per_cycle=1.0, pytorch_anchor_seconds_per_cycle=670.0)
    assert _records.anchor_is_extrapolated(extrap) and not _records.anchor_is_extrapolated(measured)
    lines = peers.verdicts([measured, extrap])
    (line_m,) = [x for x in lines if "100,000" in x]
    (line_x,) = [x for x in lines if "1,000,000" in x]
    assert "met" in line_m
    assert _records.NOT_ASSESSED in line_x and "met" not in line_x.replace(_records.NOT_ASSESSED, "")
    # the committed target list follows the same rule
    for line in RESULTS_MD.read_text().splitlines():
        if line.startswith("- ") and "1,000,000" in line:
            assert "met" not in line.replace(_records.NOT_ASSESSED, ""), line


def _floor_record(B, dapper, filt, eigh_xla, eigh_np, forecast):
    return dict(problem=_records.LETKF_FLOOR_PROBLEM, method=f"LETKF B={B}", library="assimilax", dim=100,
                local_domain=B, n_local_analyses=100 // B, seeds=[0], n_cycles=150, rmse=0.034, rmse_dapper=0.034,
                seconds_per_cycle=filt, seconds_total=None, eigh_xla_seconds_per_cycle=eigh_xla,
                eigh_numpy_seconds_per_cycle=eigh_np, cholesky_xla_seconds_per_cycle=eigh_xla / 20,
                forecast_seconds_per_cycle=forecast, dapper_seconds_per_cycle=dapper, speedup=dapper / filt,
                speedup_bound=dapper / (min(eigh_xla, eigh_np) + forecast), date="2026-12-07 00:00 UTC")


def test_letkf_floor_verdict_follows_the_bound():
    """The cost-floor verdict says 'above the bound' exactly when DAPPER / (fastest eigh +
    forecast) is below the 20x target, and the table has one row per local-domain size."""
    above = _floor_record(2, dapper=17e-3, filt=1.0e-3, eigh_xla=0.95e-3, eigh_np=0.9e-3, forecast=0.1e-3)  # 17x
    below = _floor_record(4, dapper=10e-3, filt=0.6e-3, eigh_xla=0.3e-3, eigh_np=0.35e-3, forecast=0.1e-3)  # 25x
    lines = _records.letkf_floor_verdicts([below, above])
    assert len(lines) == 2 and "2-point" in lines[0] and "4-point" in lines[1]  # sorted by domain
    assert "above the bound" in lines[0] and "at most 17.0×" in lines[0]
    assert "below the bound" in lines[1] and "at most 25.0×" in lines[1]
    table = _records.render_letkf_floor([above, below])
    assert sum(1 for line in table if line.startswith("| 2 |") or line.startswith("| 4 |")) == 2
    assert _records.render_letkf_floor([]) == []


def test_moe_learning_rate_record_is_consistent():
    """The committed chapter-45 learning-rate record: every comparison kind is tuned, each chosen
    rate is the grid point with the lowest mean validation RMSE, and the edge flag is right."""
    import json

    import numpy as np

    from assimilax.learned.moe import COMPARISON_KINDS
    from benchmarks import moe_learning_rate as mlr

    rec = json.loads(mlr.RESULT.read_text())
    assert rec["setup"] == mlr.SETUP
    assert sorted(c["kind"] for c in rec["classes"]) == sorted(COMPARISON_KINDS)
    grid = rec["grid"]
    for c in rec["classes"]:
        one = np.asarray(c["one_step"], float)
        assert one.shape == (len(grid), len(c["variants"]), rec["setup"]["seeds"])
        means = np.where(np.isfinite(one).all(axis=(1, 2)), one.mean(axis=(1, 2)), np.inf)
        assert c["best_rate"] == grid[int(np.argmin(means))]
        assert c["on_edge"] == (grid.index(c["best_rate"]) in (0, len(grid) - 1))
        assert np.asarray(c["long_one_step"]).shape == one.shape[1:]
    rows = mlr.budget_rows(rec)
    assert len(rows) == sum(len(c["variants"]) for c in rec["classes"])


def test_ir_ablations_record_is_consistent():
    """The committed chapter-60 ablation record: its setup is the script's, every sampler has one
    row of per-truth scores per seed, the levelwise rate is the validation argmin of its grid, and
    the viscosity sweep contains the chapter's viscosity with the seed study's own numbers."""
    import json

    import numpy as np

    from benchmarks import ir_ablations as ira

    rec = json.loads(ira.RESULT.read_text())
    s = rec["setup"]
    assert s["systems"] == json.loads(json.dumps({k: ira.SETUP[k] for k in ira.SYSTEMS}))
    assert (s["widths"], s["steps"], s["batch"], s["members"], s["sample_steps"]) == \
        (list(ira.WIDTHS), ira.STEPS, ira.BATCH, ira.MEMBERS, ira.SAMPLE_STEPS)
    assert s["rates"] == json.loads(json.dumps(ira.RATES)) and s["seeds"] >= 5
    for system in ira.SYSTEMS:
        n_truths = ira.SETUP[system]["val"]
        for label in ira.SAMPLERS:
            for metric in ("rel_l2", "crps", "band"):
                assert np.asarray(rec["seeds"][system][label][metric]).shape == (s["seeds"], n_truths)
        lr = rec["levelwise_rate"][system]
        assert lr["best"] == lr["grid"][int(np.argmin(lr["validation_rel_l2"]))]
        assert lr["on_edge"] == (lr["grid"].index(lr["best"]) in (0, len(lr["grid"]) - 1))
        assert len(rec["seeds"][system]["tail_fraction"]) == len(ira.SETUP[system]["sizes"]) - 1
    nus = [v["nu"] for v in rec["viscosity"]]
    assert nus == [nu for nu, _ in ira.VISCOSITIES] and ira.SETUP["burgers"]["nu"] in nus
    same = rec["viscosity"][nus.index(ira.SETUP["burgers"]["nu"])]
    assert same["IR"]["rel_l2"] == rec["seeds"]["burgers"]["IR"]["rel_l2"]
    tails = [v["tail_fraction"][0] for v in rec["viscosity"]]
    assert all(0 < t < 1 for t in tails)
    rob = rec["burgers_rate_over_seeds"]
    assert rob["grid"] == list(ira.BURGERS_GRID)
    for label, v in rob["samplers"].items():
        table = np.asarray(v["validation_rel_l2"], float)
        assert table.shape == (len(rob["grid"]), s["seeds"])
        means = np.where(np.isfinite(table).all(axis=1), table.mean(axis=1), np.inf)
        assert v["best"] == rob["grid"][int(np.argmin(means))]
        assert np.asarray(rec["seeds_rates_over_seeds"]["burgers"][label]["rel_l2"]).shape == \
            (s["seeds"], ira.SETUP["burgers"]["val"])
    assert s["augmentation"] == ira.AUGMENTATION
    assert np.asarray(rec["augmentation"]["kraichnan"][ira.AUGMENTED]["rel_l2"]).shape == \
        (s["seeds"], ira.SETUP["kraichnan"]["val"])


def test_joint_seeds_record_is_consistent():
    """The committed chapter-15 seeds record: it holds the script's plan (every seed of both
    settings at the chapter's rates, and the rate grid at seed 0), each execution read its
    overrides, every execution ran the same CONFIG, and every row has one score per test truth;
    the LETKF with the true model does not depend on the training seed."""
    import json

    import numpy as np

    from benchmarks import joint_seeds as js

    rec = json.loads(js.RESULT.read_text())
    assert rec["seeds"] >= 3
    assert rec["lr_grid"] == [list(p) for p in js.LR_GRID]
    planned = sorted((s, st, list(lr)) for s, st, lr in js.plan(rec["seeds"], tuple(rec["chapter_lr"])))
    assert sorted((r["seed"], r["setting"], r["ens_lr"]) for r in rec["records"]) == planned
    n = rec["setup"]["truths"]
    for r in rec["records"]:
        assert {k: r["config"][k] for k in js.SETUP_KEYS} == rec["setup"]
        assert all(len(v) == n for v in r["runs"].values())
        assert all(len(v["rmse"]) == n for v in r["long"].values())
        assert set(r["ens_val"]) == {"LETKF + learned correction", "ensemble-aware G"}
        assert len(r["ens_val"]["ensemble-aware G"]) == rec["setup"]["ens_rounds"] + 1
    for st in js.SETTINGS:
        letkf = [r["runs"]["LETKF (tuned, true model)"] for r in rec["records"] if r["setting"] == st]
        assert len(letkf) >= rec["seeds"]
        np.testing.assert_allclose(letkf, np.broadcast_to(letkf[0], np.shape(letkf)), rtol=1e-12)
    # the chapter's rates are each analysis' validation argmin on the grid, and the chapter uses them
    grid = rec["records"][:len(js.LR_GRID)]
    assert [r["ens_lr"] for r in grid] == rec["lr_grid"] and all(r["seed"] == 0 and r["setting"] == "sparse"
                                                                 for r in grid)
    assert list(js.choose_rates(grid)) == rec["chapter_lr"]
    for col, name in enumerate(js.COLUMNS):  # choose_rates against an independent argmin
        vals = [min(r["ens_val"][name]) for r in grid]
        assert rec["chapter_lr"][col] == rec["lr_grid"][vals.index(min(vals))][col]
    import re

    m = re.search(r"ens_lr=\(([^)]*)\)", js.CHAPTER.read_text())
    assert [float(v) for v in m.group(1).split(",")] == rec["chapter_lr"]
