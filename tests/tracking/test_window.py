"""Window estimator and circular metrics against closed forms and NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assimilax.tracking import circular_error, circular_interval_contains, circular_mean, circular_rmse, window_estimator, wrap_angle


@given(r=st.floats(0.2, 3.0), omega=st.floats(-8.0, 8.0), th0=st.floats(-np.pi, np.pi), w=st.sampled_from([2, 7, 25]))
def test_exact_on_noise_free_uniform_rotation(r, omega, th0, w):
    dt = 0.1  # |omega| dt < pi: unwrapping is unambiguous
    t = dt * np.arange(1, 61)
    ys = np.stack([r * np.cos(th0 + omega * t), r * np.sin(th0 + omega * t)], axis=1)
    est = window_estimator(jnp.asarray(ys), jnp.asarray(t), w)
    sl = slice(w - 1, None)
    true_phase = np.angle(np.exp(1j * (th0 + omega * t)))
    np.testing.assert_allclose(np.asarray(circular_error(est.phase[sl], jnp.asarray(true_phase[sl]))), 0.0, atol=1e-9)
    np.testing.assert_allclose(est.amplitude[sl], r, rtol=1e-9)
    np.testing.assert_allclose(est.rate[sl], omega, atol=1e-9)
    # row t predicts ys[t] from the window ending at t - 1
    np.testing.assert_allclose(est.prediction[w:], ys[w:], atol=1e-8)


def test_noisy_window_is_the_least_squares_sinusoid_fit():
    """With noise, the rate maximises the periodogram |sum_j z_j exp(-i omega s_j)|^2 (the
    least-squares fit of a constant-amplitude rotation), found here by SciPy's bounded scalar
    search; phase and amplitude are the demodulated mean, evaluated with NumPy complex arithmetic."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(0)
    t = 0.1 * np.arange(1, 41)
    th = 0.3 + 3.4 * t
    ys = 0.7 * np.stack([np.cos(th), np.sin(th)], 1) + 0.15 * rng.normal(size=(40, 2))
    est = window_estimator(jnp.asarray(ys), jnp.asarray(t), 25)
    zz = ys[-25:, 0] + 1j * ys[-25:, 1]
    s = t[-25:] - t[-1]
    res = minimize_scalar(lambda om: -np.abs(np.mean(zz * np.exp(-1j * om * s))) ** 2, bounds=(2.5, 4.5),
                          method="bounded", options={"xatol": 1e-10})
    np.testing.assert_allclose(est.rate[-1], res.x, atol=1e-6)
    c = np.mean(zz * np.exp(-1j * float(est.rate[-1]) * s))
    np.testing.assert_allclose(est.phase[-1], np.angle(c), atol=1e-12)
    np.testing.assert_allclose(est.amplitude[-1], np.abs(c), rtol=1e-12)


def test_vmaps_over_series_and_validates():
    t = jnp.linspace(0.1, 3.0, 30)
    ys = jnp.stack([jnp.cos(2 * t), jnp.sin(2 * t)], axis=1)
    batch = jnp.stack([ys, 2 * ys])
    out = jax.vmap(lambda y: window_estimator(y, t, 5))(batch)
    np.testing.assert_allclose(out.amplitude[1, 4:], 2.0, rtol=1e-9)
    with pytest.raises(ValueError, match="window"):
        window_estimator(ys, t, 1)
    with pytest.raises(ValueError, match="shape"):
        window_estimator(ys[:, :1], t, 3)
    with pytest.raises(ValueError, match="NaN"):
        window_estimator(ys.at[3, 0].set(jnp.nan), t, 3)


def test_circular_metrics_against_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-10, 10, 50), rng.uniform(-10, 10, 50)
    d = np.angle(np.exp(1j * (a - b)))
    np.testing.assert_allclose(circular_error(jnp.asarray(a), jnp.asarray(b)), d, atol=1e-12)
    np.testing.assert_allclose(circular_rmse(jnp.asarray(a), jnp.asarray(b)), np.sqrt(np.mean(d**2)), rtol=1e-12)
    assert float(wrap_angle(jnp.asarray(-np.pi))) == pytest.approx(np.pi)
    # across the branch cut: pi - 0.01 vs -pi + 0.01 is an error of 0.02
    assert float(circular_rmse(jnp.array([np.pi - 0.01]), jnp.array([-np.pi + 0.01]))) == pytest.approx(0.02)
    s = np.pi + 0.1 * rng.normal(size=2000)
    assert abs(float(wrap_angle(circular_mean(jnp.asarray(s)) - np.pi))) < 0.01
    assert bool(circular_interval_contains(jnp.asarray(s), np.pi + 0.1))
    assert not bool(circular_interval_contains(jnp.asarray(s), np.pi + 0.3))


def test_rate_prior_gives_the_map_fit():
    """With omega_prior=(m, s) and sigma, the rate minimises the penalised least-squares objective
    -w |mean_j z_j exp(-i omega s_j)|^2 / sigma^2 + (omega - m)^2 / s^2 (the Gaussian MAP with a flat
    prior on c), found by SciPy's bounded scalar search; it lies between the least-squares rate and m."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(0)
    t = 0.1 * np.arange(1, 41)
    th = 0.3 + 3.4 * t
    sig, om0, sd, w = 0.3, 3.0, 0.5, 5
    ys = 0.7 * np.stack([np.cos(th), np.sin(th)], 1) + sig * rng.normal(size=(40, 2))
    est = window_estimator(jnp.asarray(ys), jnp.asarray(t), w, sigma=sig, omega_prior=(om0, sd))
    free = window_estimator(jnp.asarray(ys), jnp.asarray(t), w)
    zz, s = ys[-w:, 0] + 1j * ys[-w:, 1], t[-w:] - t[-1]
    obj = lambda om: -w * np.abs(np.mean(zz * np.exp(-1j * om * s))) ** 2 / sig**2 + (om - om0) ** 2 / sd**2  # noqa: E731
    res = minimize_scalar(obj, bounds=(1.0, 6.0), method="bounded", options={"xatol": 1e-12})
    np.testing.assert_allclose(est.rate[-1], res.x, atol=1e-5)
    assert om0 < float(est.rate[-1]) < float(free.rate[-1])  # shrunk from the free fit towards the prior
    c = np.mean(zz * np.exp(-1j * float(est.rate[-1]) * s))
    np.testing.assert_allclose(est.phase[-1], np.angle(c), atol=1e-12)
    # a vanishing prior weight is the least-squares fit (after the first row); a prior needs sigma
    weak = window_estimator(jnp.asarray(ys), jnp.asarray(t), w, sigma=1e-6, omega_prior=(om0, sd))
    np.testing.assert_allclose(weak.rate[1:], free.rate[1:], atol=1e-9)
    assert float(weak.rate[0]) == om0 and float(free.rate[0]) == 0.0  # one observation: the prior mean, or 0
    with pytest.raises(ValueError, match="sigma"):
        window_estimator(jnp.asarray(ys), jnp.asarray(t), w, omega_prior=(om0, sd))
    with pytest.raises(ValueError, match="omega_std"):
        window_estimator(jnp.asarray(ys), jnp.asarray(t), w, sigma=sig, omega_prior=(om0, 0.0))
