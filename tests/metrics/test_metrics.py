import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from assimilax import metrics


def test_rmse_and_spread_match_numpy():
    rng = np.random.default_rng(0)
    est, truth = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    np.testing.assert_allclose(metrics.rmse(est, truth), np.sqrt(((est - truth) ** 2).mean(1)))
    ens = rng.normal(size=(7, 9, 5))
    np.testing.assert_allclose(metrics.spread(ens), np.sqrt(ens.var(axis=1, ddof=1).mean(1)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.rmse(est, truth[:, :3])
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.spread(ens[:, :1])


def _crps_by_integration(members, y):
    # CRPS of the empirical CDF F: integral of (F(z) - 1{z >= y})^2 dz, by numerical quadrature
    members = np.sort(members)
    lo, hi = min(members[0], y) - 1.0, max(members[-1], y) + 1.0
    F = lambda z: np.searchsorted(members, z, side="right") / len(members)
    pts = np.sort(np.concatenate([members, [y]]))
    val = 0.0
    edges = np.concatenate([[lo], pts, [hi]])
    for a, b in zip(edges[:-1], edges[1:]):
        val += integrate.quad(lambda z: (F(z) - (z >= y)) ** 2, a, b)[0]
    return val


def test_crps_matches_integral_definition():
    rng = np.random.default_rng(1)
    for n in [2, 5, 30]:
        members, y = rng.normal(size=n), rng.normal()
        exact = _crps_by_integration(members, y)
        # the "fair" estimator differs from the empirical-CDF CRPS by the finite-N term
        pair = np.abs(members[:, None] - members[None, :]).sum()
        fair_minus_emp = pair / (2 * n**2) - pair / (2 * n * (n - 1))
        got = metrics.crps_ensemble(members[None, :, None], np.array([[y]]))[0]
        np.testing.assert_allclose(got, exact + fair_minus_emp, rtol=1e-6)


def test_crps_of_gaussian_ensemble_approaches_closed_form():
    # CRPS(N(0,1), y) = y(2Phi(y)-1) + 2phi(y) - 1/sqrt(pi)
    y = 0.7
    closed = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
    ens = jax.random.normal(jax.random.PRNGKey(0), (1, 4000, 1))
    np.testing.assert_allclose(metrics.crps_ensemble(ens, jnp.full((1, 1), y))[0], closed, atol=0.02)


def test_rank_histogram_flat_for_calibrated_and_ushaped_for_underdispersed():
    key1, key2 = jax.random.split(jax.random.PRNGKey(2))
    T, N, d = 3000, 9, 2
    truth = jax.random.normal(key1, (T, d))
    ens = jax.random.normal(key2, (T, N, d))
    h = np.asarray(metrics.rank_histogram(ens, truth))
    assert h.sum() == T * d and len(h) == N + 1
    assert stats.chisquare(h).pvalue > 1e-3
    h_narrow = np.asarray(metrics.rank_histogram(0.3 * ens, truth))
    assert h_narrow[0] + h_narrow[-1] > 4 * h_narrow[N // 2]


def test_interval_coverage_nominal():
    key1, key2 = jax.random.split(jax.random.PRNGKey(3))
    truth = jax.random.normal(key1, (2000, 3))
    ens = jax.random.normal(key2, (2000, 200, 3))
    cov = float(metrics.interval_coverage(ens, truth, 0.9))
    assert abs(cov - 0.9) < 0.02
    cov = float(metrics.gaussian_interval_coverage(jnp.zeros((2000, 3)), jnp.ones((2000, 3)), truth, 0.5))
    assert abs(cov - 0.5) < 0.03
    with pytest.raises(ValueError, match="level"):
        metrics.interval_coverage(ens, truth, 1.5)


def test_wrap_angle():
    th = jnp.array([0.0, np.pi, -np.pi, 3 * np.pi, -3.5 * np.pi, 7.0])
    w = np.asarray(metrics.wrap_angle(th))
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(th), atol=1e-12)
    np.testing.assert_allclose(np.sin(w), np.sin(th), atol=1e-12)
