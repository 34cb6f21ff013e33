"""Phase/amplitude EKF and augmented Langford filters against independent references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.filters import extended_kalman_filter
from assimilax.models.langford import Langford
from assimilax.observations import LinearObservation
from assimilax.tracking import (PhaseAmplitudeModel, PolarObservation, circular_rmse, track_augmented_ekf,
                                track_augmented_pf, track_phase_ekf)


def np_kalman(A, Q, H, R, ys, m, P):
    means, covs = [], []
    for y in ys:
        m, P = A @ m, A @ P @ A.T + Q
        S = H @ P @ H.T + R
        K = np.linalg.solve(S, H @ P).T
        m, P = m + K @ (y - H @ m), P - K @ S @ K.T
        means.append(m)
        covs.append(P)
    return np.array(means), np.array(covs)


def test_linear_special_case_is_a_kalman_filter():
    """Observing (theta, r) directly makes the phase/amplitude model linear-Gaussian: the EKF on
    PhaseAmplitudeModel must equal a hand-written NumPy Kalman filter with
    A = [[1, 0, dt], [0, 1, 0], [0, 0, 1]]."""
    dt, q = 0.1, np.array([0.05, 0.2, 0.7])
    model = PhaseAmplitudeModel(dt, *q)
    obs = LinearObservation.partial([0, 1], 3, np.array([0.1, 0.2]))
    rng = np.random.default_rng(0)
    t = dt * np.arange(1, 31)
    ys = np.stack([0.3 + 3.2 * t + 0.1 * rng.normal(size=30), 1.0 + 0.2 * rng.normal(size=30)], axis=1)
    m0, P0 = np.array([0.0, 0.8, 3.0]), np.diag([0.5, 0.3, 1.0])
    res = extended_kalman_filter(model, obs, jnp.asarray(ys), jnp.asarray(m0), jnp.asarray(P0))
    A = np.array([[1, 0, dt], [0, 1, 0], [0, 0, 1.0]])
    Q = np.diag(q**2 * dt + 1e-12)
    means, covs = np_kalman(A, Q, np.eye(3)[:2], np.diag([0.01, 0.04]), ys, m0, P0)
    np.testing.assert_allclose(res.filtered_means, means, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(res.filtered_covs, covs, rtol=1e-8, atol=1e-12)


def test_polar_observation_and_jacobian():
    obs = PolarObservation(0.1)
    rng = np.random.default_rng(1)
    for _ in range(5):
        s = rng.normal(size=3)
        np.testing.assert_allclose(obs(jnp.asarray(s)), [s[1] * np.cos(s[0]), s[1] * np.sin(s[0])], rtol=1e-12)
        eps, J = 1e-6, np.zeros((2, 3))
        for j in range(3):
            e = np.eye(3)[j] * eps
            J[:, j] = (np.asarray(obs(jnp.asarray(s + e))) - np.asarray(obs(jnp.asarray(s - e)))) / (2 * eps)
        np.testing.assert_allclose(obs.jacobian(jnp.asarray(s)), J, atol=1e-8)
    np.testing.assert_allclose(obs.R, 0.01 * np.eye(2))


def test_phase_ekf_locks_onto_uniform_rotation():
    """Uniform rotation r = 0.9, omega = 2.7 with sigma = 0.05: the filtered phase error settles
    to a fraction of the single-observation error sigma / r, and the rate converges."""
    rng = np.random.default_rng(2)
    dt, T = 0.1, 200
    t = dt * np.arange(1, T + 1)
    th = 0.4 + 2.7 * t
    ys = np.stack([0.9 * np.cos(th), 0.9 * np.sin(th)], 1) + 0.05 * rng.normal(size=(T, 2))
    est, res = track_phase_ekf(jnp.asarray(ys), 0.05, obs_interval=dt, q_phase=0.0, q_amp=0.01, q_rate=0.01, omega_guess=3.0)
    assert float(circular_rmse(est.phase[100:], jnp.asarray(th[100:]))) < 0.3 * 0.05 / 0.9
    np.testing.assert_allclose(est.rate[-1], 2.7, atol=0.02)
    np.testing.assert_allclose(est.amplitude[-1], 0.9, atol=0.02)
    # the prediction of ys[t] is h of the predicted state
    np.testing.assert_allclose(est.prediction[5], [res.predicted_means[5, 1] * np.cos(res.predicted_means[5, 0]),
                                                   res.predicted_means[5, 1] * np.sin(res.predicted_means[5, 0])])


def test_phase_of_negative_amplitude_is_not_an_error():
    """(theta, -r) is the point (theta + pi, r): a sign flip of r must not count as a phase error."""
    dt = 0.1
    t = dt * np.arange(1, 41)
    ys = np.stack([np.cos(1.0 + 3 * t), np.sin(1.0 + 3 * t)], 1)
    m0, P0 = jnp.array([1.0 + np.pi, -1.0, 3.0]), jnp.diag(jnp.array([1e-4, 1e-4, 1e-4]))
    est, res = track_phase_ekf(jnp.asarray(ys), 0.01, obs_interval=dt, q_amp=0.0, q_rate=0.0, mean0=m0, cov0=P0)
    assert float(res.filtered_means[-1, 1]) < 0
    assert float(circular_rmse(est.phase, jnp.asarray(1.0 + 3 * t))) < 1e-3
    np.testing.assert_allclose(est.amplitude, 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def langford_data():
    m = Langford()
    x0 = m.burn_in(n_steps=3000)
    sim = simulate(m, LinearObservation.partial([0, 1], 3, 0.05), x0, 150, key=jax.random.PRNGKey(4), steps_per_obs=10)
    th = jnp.arctan2(sim.states[:, 1], sim.states[:, 0])
    return sim, th


def test_augmented_ekf_learns_omega(langford_data):
    sim, th = langford_data
    est, res = track_augmented_ekf(sim.observations, 0.05, q_omega=0.05, q_state=0.01, omega_guess=3.0)
    assert abs(float(jnp.mean(est.rate[-30:])) - 3.5) < 0.05
    raw = circular_rmse(jnp.arctan2(sim.observations[50:, 1], sim.observations[50:, 0]), th[50:])
    assert float(circular_rmse(est.phase[50:], th[50:])) < 0.5 * float(raw)
    np.testing.assert_allclose(est.prediction, res.predicted_means[:, :2])


def test_inputs_are_validated():
    ys = jnp.ones((10, 2))
    with pytest.raises(ValueError, match="sigma"):
        track_phase_ekf(ys, 0.0, obs_interval=0.1)
    with pytest.raises(ValueError, match="shape"):
        track_augmented_ekf(jnp.ones((10, 3)), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        track_phase_ekf(ys.at[2, 1].set(jnp.nan), 0.1, obs_interval=0.1)


def test_priors_are_the_documented_formulas_and_trackers_share_an_order():
    """The priors' named constants enter exactly as documented (NumPy re-computation), the default
    rate is the Langford omega0, and both EKF trackers take (ys, sigma, *, ...)."""
    import inspect

    from assimilax.tracking import augmented_prior, phase_amplitude_prior
    from assimilax.tracking.filters import OMEGA_GUESS, PHASE_VAR_FLOOR, XY_VAR_FLOOR
    assert OMEGA_GUESS == Langford().omega0
    y1, sigma, delta, w, s_w = np.array([0.3, -0.4]), 0.2, 0.1, 3.0, 0.7
    m, P = phase_amplitude_prior(jnp.asarray(y1), sigma, obs_interval=delta, omega_guess=w, omega_std=s_w)
    r1 = np.hypot(*y1)
    np.testing.assert_allclose(m, [np.arctan2(y1[1], y1[0]) - w * delta, r1, w], rtol=1e-12)
    v_th = (sigma / max(r1, sigma)) ** 2 + (s_w * delta) ** 2 + PHASE_VAR_FLOOR
    np.testing.assert_allclose(P, np.diag([v_th, sigma**2 + XY_VAR_FLOOR, s_w**2]), rtol=1e-12)
    m4, P4 = augmented_prior(jnp.asarray(y1), sigma, obs_interval=delta, omega_guess=w, omega_std=s_w)
    v_xy = sigma**2 + XY_VAR_FLOOR + (s_w * delta) ** 2 * (y1 @ y1)
    np.testing.assert_allclose(np.diag(P4)[:2], [v_xy, v_xy], rtol=1e-12)
    c, s = np.cos(-w * delta), np.sin(-w * delta)
    np.testing.assert_allclose(m4[:2], [c * y1[0] - s * y1[1], s * y1[0] + c * y1[1]], rtol=1e-12)
    for f in (track_phase_ekf, track_augmented_ekf, track_augmented_pf, phase_amplitude_prior, augmented_prior):
        params = list(inspect.signature(f).parameters.values())
        assert [p.name for p in params[:2]] == ["ys" if f.__name__.startswith("track") else "y1", "sigma"], f
        assert all(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params[2:]), f
