"""EKF: equal to the Kalman filter on linear models; its inner model-step loop and inflation
checked against independent NumPy recursions; a sanity check on Lorenz-63."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax import simulate
from assimilax.filters import extended_kalman_filter, kalman_filter
from assimilax.models import LinearGaussian, Lorenz63
from assimilax.observations import LinearObservation, NonlinearObservation


def _system(seed=0, d=4, m=3, T=12):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    W = rng.standard_normal((d, d))
    Q = 0.2 * (W @ W.T / d + 0.5 * np.eye(d))
    H = rng.standard_normal((m, d))
    R = 0.3 * np.eye(m) + 0.1
    return A, rng.standard_normal(d) * 0.2, Q, H, R, rng.standard_normal(d), np.eye(d), rng.standard_normal((T, m))


def test_ekf_equals_kf_on_linear_model():
    A, b, Q, H, R, m0, P0, ys = _system()
    model, obs = LinearGaussian(A, Q, b), LinearObservation(H, R)
    kf = kalman_filter(model, obs, ys, m0, P0)
    ekf = extended_kalman_filter(model, obs, ys, m0, P0)
    for a, c in zip(kf, ekf):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-10, atol=1e-12)


def _numpy_ekf_linear(A, b, Q, H, R, m0, P0, ys, k, infl):
    """Independent NumPy recursion: k model steps per cycle, P <- infl * A P A^T + Q per step."""
    m, P, out = m0.copy(), P0.copy(), []
    for y in ys:
        for _ in range(k):
            m = A @ m + b
            P = infl * A @ P @ A.T + Q
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        m = m + K @ (y - H @ m)
        P = (np.eye(len(m)) - K @ H) @ P
        out.append((m, P))
    return out


def test_ekf_steps_per_obs_and_inflation_match_numpy_recursion():
    A, b, Q, H, R, m0, P0, ys = _system(seed=1, T=6)
    model, obs = LinearGaussian(A, Q, b), LinearObservation(H, R)
    res = extended_kalman_filter(model, obs, ys, m0, P0, steps_per_obs=3, inflation_rate=1.3)
    ref = _numpy_ekf_linear(A, b, Q, H, R, m0, P0, ys, 3, 1.3)  # dt = 1 for LinearGaussian
    for t, (m, P) in enumerate(ref):
        np.testing.assert_allclose(np.asarray(res.filtered_means[t]), m, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(np.asarray(res.filtered_covs[t]), P, rtol=1e-9, atol=1e-11)


def test_ekf_nonlinear_observation_uses_jacobian():
    # x observed through arctan: one analysis step against a hand-written linearisation
    A, b, Q, _, _, m0, P0, _ = _system(seed=2, d=3, T=1)
    obs = NonlinearObservation("arctan", 3, 0.5, indices=[0, 2])
    y = np.array([[0.3, -0.2]])
    res = extended_kalman_filter(LinearGaussian(A, Q, b), obs, y, m0, P0)
    mp = A @ m0 + b
    Pp = A @ P0 @ A.T + Q
    H = np.zeros((2, 3))
    H[0, 0], H[1, 2] = 1 / (1 + mp[0] ** 2), 1 / (1 + mp[2] ** 2)
    S = H @ Pp @ H.T + 0.25 * np.eye(2)
    K = Pp @ H.T @ np.linalg.inv(S)
    np.testing.assert_allclose(np.asarray(res.filtered_means[0]), mp + K @ (y[0] - np.arctan(mp[[0, 2]])), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.filtered_covs[0]), (np.eye(3) - K @ H) @ Pp, rtol=1e-9, atol=1e-12)


def test_ekf_tracks_lorenz63():
    model = Lorenz63()
    obs = LinearObservation.full(3, np.sqrt(2.0))
    x0 = jnp.array([1.509, -1.531, 25.46])
    sim = simulate(model, obs, x0, 300, key=jax.random.PRNGKey(0), steps_per_obs=25)
    res = extended_kalman_filter(model, obs, sim.observations, x0, 2.0 * jnp.eye(3), steps_per_obs=25, inflation_rate=90.0)
    rmse = np.sqrt(np.mean((np.asarray(res.filtered_means) - np.asarray(sim.states)) ** 2, axis=1))[50:].mean()
    assert rmse < 1.3, rmse  # DAPPER sakov2012 ExtKF(infl=90): ~0.9; observation noise std 1.41
