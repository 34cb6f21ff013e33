"""Run-level scores and verdicts against direct NumPy computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.metrics import compare, compare_runs, describe_runs, ensemble_scores, failed_runs, timed_call


def _numpy_crps(E, x):  # (N, d), (d,) -> mean over d of the fair energy-form CRPS
    N = E.shape[0]
    t1 = np.abs(E - x).mean(0)
    t2 = np.abs(E[:, None] - E[None]).sum((0, 1)) / (2 * N * (N - 1))
    return (t1 - t2).mean()


def test_ensemble_scores_against_numpy():
    rng = np.random.default_rng(0)
    R, T, N, d = 3, 7, 6, 4
    X = rng.normal(size=(R, T, d))
    E = X[:, :, None] + rng.normal(size=(R, T, N, d))
    E[2, 4, 1, 0] = np.nan  # run 2 diverged
    m = E.mean(2)
    s = ensemble_scores(m, E, X, burn=2, level=0.8)
    for r in range(2):
        e, x, mm = E[r, 2:], X[r, 2:], m[r, 2:]
        want_rmse = np.sqrt(((mm - x) ** 2).mean(-1)).mean()
        want_crps = np.mean([_numpy_crps(e[t], x[t]) for t in range(T - 2)])
        lo, hi = np.quantile(e, 0.1, axis=1), np.quantile(e, 0.9, axis=1)
        want_cov = np.mean((x >= lo) & (x <= hi))
        want_spread = np.sqrt(e.var(1, ddof=1).mean(-1)).mean()
        np.testing.assert_allclose([s["rmse"][r], s["crps"][r], s["coverage"][r], s["spread"][r]],
                                   [want_rmse, want_crps, want_cov, want_spread], rtol=1e-7)  # coverage: a float32 mean
        np.testing.assert_allclose(s["spread_error"][r], want_spread / want_rmse, rtol=1e-10)
    assert all(np.isnan(v[2]) for v in s.values())
    p = ensemble_scores(m[:2], None, X[:2])
    np.testing.assert_allclose(p["crps"], np.abs(m[:2] - X[:2]).mean((1, 2)), rtol=1e-12)
    assert np.all(np.isnan(p["coverage"])) and np.all(np.isnan(p["spread"]))
    with pytest.raises(ValueError, match="shape"):
        ensemble_scores(m, E[:, :, :, :2], X)
    with pytest.raises(ValueError, match="burn"):
        ensemble_scores(m, E, X, burn=T)


def test_failed_runs_describe_and_compare_runs():
    a = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    b = a + 0.5
    assert compare_runs(a, b) == compare(a, b)
    assert compare_runs(a, b).phrase == "better than"
    bad = b.copy()
    bad[1] = np.inf
    v = compare_runs(a, bad)
    assert (v.phrase, v.comparison) == ("better than", None) and "1 of 5" in v.summary
    assert compare_runs(bad, a).phrase == "worse than"
    big = a.copy()
    big[0] = 50.0
    assert compare_runs(big, b, failed_above=10.0).phrase == "worse than"
    assert compare_runs(big, b).phrase == compare(big, b).phrase  # no threshold: 50 is a number
    assert compare_runs(bad, big, failed_above=10.0).phrase == "not comparable with"
    np.testing.assert_array_equal(failed_runs([1.0, np.nan, 20.0], 10.0), [False, True, True])
    assert describe_runs(bad) == "failed on 1 of 5"
    assert describe_runs([np.nan, np.nan]) == "—"
    assert describe_runs(a).startswith("1 [")


def test_timed_call_returns_the_output_and_two_times():
    out, comp, run = timed_call(lambda x: jnp.sin(x) * 2.0, jnp.arange(4.0))
    np.testing.assert_allclose(np.asarray(out), 2 * np.sin(np.arange(4.0)))
    assert comp > 0 and run > 0
    out2, _, _ = timed_call(jax.vmap(lambda x, y: x + y), jnp.ones(3), jnp.ones(3))
    np.testing.assert_array_equal(np.asarray(out2), 2 * np.ones(3))
