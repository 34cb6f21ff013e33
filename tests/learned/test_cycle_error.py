"""The exact stationary error of a cycled affine forecast/analysis pair (``linear_cycle_error``):
against the steady-state Kalman filter (scipy's discrete algebraic Riccati equation) and against
a NumPy Monte Carlo run of a misspecified pair with biases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from assimilax.learned import DiagonalForward, LinearAnalysis, linear_cycle_error


def _system(d=4, seed=0):
    O, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    A = 0.95 * O
    Q = 0.04 * np.eye(d)
    H = np.eye(d)[::2]
    R = 0.25 * np.eye(H.shape[0])
    return A, Q, H, R


def test_kalman_pair_has_the_riccati_covariances():
    A, Q, H, R = _system()
    Pf = scipy.linalg.solve_discrete_are(A.T, H.T, Q, R)  # forecast covariance of the steady filter
    K = Pf @ H.T @ np.linalg.inv(H @ Pf @ H.T + R)
    Pa = (np.eye(4) - K @ H) @ Pf
    err = linear_cycle_error(A, Q, H, R, A, 0.0, LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H)))
    np.testing.assert_allclose(np.asarray(err.analysis_cov), Pa, atol=1e-10)
    np.testing.assert_allclose(float(err.analysis_mse), np.trace(Pa) / 4, rtol=1e-10)
    np.testing.assert_allclose(float(err.forecast_mse), np.trace(Pf) / 4, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(err.analysis_bias), 0.0, atol=1e-12)
    # any other gain is worse (the Kalman gain minimises the stationary error among these filters)
    worse = linear_cycle_error(A, Q, H, R, A, 0.0, LinearAnalysis.from_gain(jnp.asarray(0.8 * K), jnp.asarray(H)))
    assert float(worse.analysis_mse) > float(err.analysis_mse)


def test_misspecified_pair_against_monte_carlo():
    A, Q, H, R = _system(seed=1)
    d, m = 4, 2
    rng = np.random.default_rng(2)
    W = np.diag([0.9, -0.3, 0.5, 0.7])                # a diagonal (misspecified) forward model
    c = np.array([0.1, -0.2, 0.0, 0.05])
    Wf = 0.6 * np.eye(d) + 0.1 * rng.normal(size=(d, d))
    Wy = 0.5 * rng.normal(size=(d, m))
    b = np.array([0.05, 0.0, -0.1, 0.02])
    err = linear_cycle_error(A, Q, H, R, W, c, LinearAnalysis(d, m, Wf=Wf, Wy=Wy, b=b))
    assert float(err.spectral_radius) < 1
    # Monte Carlo: many chains in parallel, burn-in then stationary averages
    n, burn, steps = 4000, 200, 300
    x = rng.normal(size=(n, d))
    u = np.zeros((n, d))
    Lq, Lr = np.linalg.cholesky(Q), np.linalg.cholesky(R)
    ea, ef = [], []
    for t in range(burn + steps):
        uf = u @ W.T + c
        x = x @ A.T + rng.normal(size=(n, d)) @ Lq.T
        y = x @ H.T + rng.normal(size=(n, m)) @ Lr.T
        u = uf @ Wf.T + y @ Wy.T + b
        if t >= burn:
            ea.append(u - x)
            ef.append(uf - x)
    ea, ef = np.concatenate(ea), np.concatenate(ef)
    np.testing.assert_allclose(float(err.analysis_mse), np.mean(ea ** 2), rtol=0.02)
    np.testing.assert_allclose(float(err.forecast_mse), np.mean(ef ** 2), rtol=0.02)
    np.testing.assert_allclose(np.asarray(err.analysis_bias), ea.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(np.asarray(err.analysis_cov), np.cov(ea.T), atol=0.01)


def test_unstable_cycle_is_infinite_and_gradients_are_finite():
    A, Q, H, R = _system()
    an = LinearAnalysis(4, 2, Wf=1.5 * np.eye(4), Wy=np.zeros((4, 2)))
    assert np.isinf(float(linear_cycle_error(A, Q, H, R, np.eye(4), 0.0, an).analysis_mse))
    K = 0.3 * np.asarray(H).T
    g = jax.grad(lambda s: linear_cycle_error(A, Q, H, R, s * A, 0.0,
                                              LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H))).analysis_mse)(1.0)
    assert np.isfinite(float(g))
    with pytest.raises(ValueError, match="W"):
        linear_cycle_error(A, Q, H, R, np.eye(3), 0.0, an)


def test_diagonal_forward():
    f = DiagonalForward(3)
    np.testing.assert_array_equal(np.asarray(f.W), np.eye(3))
    g = jax.tree_util.tree_map(lambda v: v * 2.0 + 0.5, DiagonalForward(3))
    x = jnp.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(np.asarray(g(x)), np.asarray(g.W @ x + g.b))


def test_direct_minimisation_reaches_the_kalman_floor_in_the_diagonal_class():
    """With an invertible diagonal W the class contains a pair with the Kalman cycle matrix, so
    minimising the exact error from a stable start must reach tr(P^a)/d; an unstable start is refused."""
    from assimilax.learned import minimize_cycle_error

    A, Q, H, R = _system()
    Pf = scipy.linalg.solve_discrete_are(A.T, H.T, Q, R)
    K = Pf @ H.T @ np.linalg.inv(H @ Pf @ H.T + R)
    floor = np.trace((np.eye(4) - K @ H) @ Pf) / 4
    fw = jax.tree_util.tree_map(lambda v: 0.5 * v, DiagonalForward(4))      # w = 0.5, b = 0
    an = LinearAnalysis(4, 2, Wf=0.5 * np.eye(4), Wy=0.3 * np.asarray(H).T)
    start = float(linear_cycle_error(A, Q, H, R, fw.W, fw.b, an).analysis_mse)
    fw2, an2, hist = minimize_cycle_error(fw, an, A, Q, H, R, n_steps=3000, learning_rate=1e-2)
    end = float(linear_cycle_error(A, Q, H, R, fw2.W, fw2.b, an2).analysis_mse)
    assert start > 1.2 * floor and end == pytest.approx(floor, rel=1e-3) and float(hist[-1]) <= float(hist[0])
    with pytest.raises(ValueError, match="stable"):
        minimize_cycle_error(DiagonalForward(4), LinearAnalysis(4, 2), A, Q, H, R, n_steps=10)
