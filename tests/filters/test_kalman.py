"""Kalman filter and RTS smoother against the dense joint Gaussian of all states and observations.

The reference builds the joint law of (x_0..x_T, y_1..y_T) by hand with NumPy: x = mu + G z with
z = (x_0 - m_0, eps_1, ..., eps_T) ~ N(0, blockdiag(P_0, Q, ..., Q)), y = H x_{1:T} + eta; the
marginal log-likelihood is scipy's multivariate normal log-density of the stacked observations and
the smoother is plain Gaussian conditioning.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from assimilax.filters import kalman_filter, rts_smoother
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation


def _random_spd(rng, n, scale=1.0):
    W = rng.standard_normal((n, n))
    return scale * (W @ W.T / n + 0.5 * np.eye(n))


def _random_system(seed, d, m, T):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    b = rng.standard_normal(d) * 0.3
    Q = _random_spd(rng, d, 0.3)
    H = rng.standard_normal((m, d))
    R = _random_spd(rng, m, 0.5)
    m0 = rng.standard_normal(d)
    P0 = _random_spd(rng, d)
    ys = rng.standard_normal((T, m)) * 2.0
    return A, b, Q, H, R, m0, P0, ys


def _dense_joint(A, b, Q, H, R, m0, P0, T):
    """Mean and covariance of x_{1:T} (stacked) and y_{1:T} (stacked), and their cross-covariance."""
    d, m = A.shape[0], H.shape[0]
    mu = [m0]
    for _ in range(T):
        mu.append(A @ mu[-1] + b)
    mu = np.concatenate(mu)  # (T+1)d
    G = np.zeros(((T + 1) * d, (T + 1) * d))
    for t in range(T + 1):
        for k in range(t + 1):
            G[t * d:(t + 1) * d, k * d:(k + 1) * d] = np.linalg.matrix_power(A, t - k)
    Cz = sla.block_diag(P0, *([Q] * T))
    Cx = G @ Cz @ G.T
    Cx, mux = Cx[d:, d:], mu[d:]  # states 1..T
    Hb = np.kron(np.eye(T), H)
    muy = Hb @ mux
    Cy = Hb @ Cx @ Hb.T + np.kron(np.eye(T), R)
    Cxy = Cx @ Hb.T
    return mux, Cx, muy, Cy, Cxy


@settings(max_examples=10)  # every new (d, m, T) compiles afresh
@given(
    d=st.integers(1, 5), m=st.integers(1, 4), T=st.integers(1, 8), seed=st.integers(0, 2**31 - 1)
)
def test_kalman_and_rts_equal_dense_gaussian(d, m, T, seed):
    A, b, Q, H, R, m0, P0, ys = _random_system(seed, d, m, T)
    model = LinearGaussian(jnp.asarray(A), jnp.asarray(Q), jnp.asarray(b))
    obs = LinearObservation(jnp.asarray(H), jnp.asarray(R))
    res = kalman_filter(model, obs, jnp.asarray(ys), jnp.asarray(m0), jnp.asarray(P0))
    assert res.filtered_means.dtype == jnp.float64

    mux, Cx, muy, Cy, Cxy = _dense_joint(A, b, Q, H, R, m0, P0, T)
    ll_ref = multivariate_normal(muy, Cy).logpdf(ys.reshape(-1))
    np.testing.assert_allclose(float(res.log_likelihood), ll_ref, rtol=1e-8)

    # filtered moments at the last time = dense conditioning on all observations
    K = np.linalg.solve(Cy, Cxy.T).T
    ms = mux + K @ (ys.reshape(-1) - muy)
    Ps = Cx - K @ Cxy.T
    np.testing.assert_allclose(np.asarray(res.filtered_means[-1]), ms[-d:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.filtered_covs[-1]), Ps[-d:, -d:], rtol=1e-8, atol=1e-10)

    sm = rts_smoother(model, res)
    np.testing.assert_allclose(np.asarray(sm.smoothed_means).reshape(-1), ms, rtol=1e-8, atol=1e-10)
    for t in range(T):
        blk = slice(t * d, (t + 1) * d)
        np.testing.assert_allclose(np.asarray(sm.smoothed_covs[t]), Ps[blk, blk], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("joseph", [False, True])
def test_filtered_moments_at_every_time_match_dense_conditioning(joseph):
    d, m, T = 3, 2, 6
    A, b, Q, H, R, m0, P0, ys = _random_system(7, d, m, T)
    model = LinearGaussian(jnp.asarray(A), jnp.asarray(Q), jnp.asarray(b))
    res = kalman_filter(model, LinearObservation(jnp.asarray(H), jnp.asarray(R)), jnp.asarray(ys), jnp.asarray(m0),
                        jnp.asarray(P0), joseph=joseph)
    mux, Cx, muy, Cy, Cxy = _dense_joint(A, b, Q, H, R, m0, P0, T)
    for t in range(T):
        sx, sy = slice(t * d, (t + 1) * d), slice(0, (t + 1) * m)
        K = np.linalg.solve(Cy[sy, sy], Cxy[sx, sy].T).T
        mt = mux[sx] + K @ (ys[: t + 1].reshape(-1) - muy[sy])
        Pt = Cx[sx, sx] - K @ Cxy[sx, sy].T
        np.testing.assert_allclose(np.asarray(res.filtered_means[t]), mt, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.asarray(res.filtered_covs[t]), Pt, rtol=1e-8, atol=1e-10)
        # predicted moments: conditioning on y_{1:t-1}
        if t > 0:
            sy0 = slice(0, t * m)
            K0 = np.linalg.solve(Cy[sy0, sy0], Cxy[sx, sy0].T).T
            mp = mux[sx] + K0 @ (ys[:t].reshape(-1) - muy[sy0])
            np.testing.assert_allclose(np.asarray(res.predicted_means[t]), mp, rtol=1e-8, atol=1e-10)


def test_covariances_symmetric():
    A, b, Q, H, R, m0, P0, ys = _random_system(3, 4, 2, 8)
    res = kalman_filter(LinearGaussian(A, Q, b), LinearObservation(H, R), ys, m0, P0)
    P = np.asarray(res.filtered_covs)
    np.testing.assert_array_equal(P, np.swapaxes(P, 1, 2))
    assert np.all(np.linalg.eigvalsh(P) > 0)


def test_kalman_needs_linear_model():
    from assimilax.models import Lorenz63

    with pytest.raises(ValueError, match="LinearGaussian"):
        kalman_filter(Lorenz63(), LinearObservation.full(3, 1.0), np.zeros((2, 3)), np.zeros(3), np.eye(3))
