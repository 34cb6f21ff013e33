"""Bad input is refused with ValueError before compilation; divergence raises FilterDivergenceError."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import FilterDivergenceError
from assimilax.filters import (
    ensemble_kalman_filter,
    ensemble_score_filter,
    extended_kalman_filter,
    kalman_filter,
    particle_filter,
    rts_smoother,
    score_filter,
)
from assimilax.models import LinearGaussian, Lorenz63
from assimilax.observations import LinearObservation

A = np.array([[0.9, 0.1], [0.0, 0.8]])
MODEL = LinearGaussian(A, 0.1 * np.eye(2))
OBS = LinearObservation.full(2, 0.5)
YS = np.zeros((5, 2))
M0, P0 = np.zeros(2), np.eye(2)
E0 = np.random.default_rng(0).standard_normal((10, 2))
KEY = jax.random.PRNGKey(0)


def _gaussian(fn):
    return lambda ys=YS, m0=M0, P0=P0, obs=OBS: fn(MODEL, obs, ys, m0, P0)


def _ensemble(fn):
    return lambda ys=YS, E=E0, obs=OBS: fn(MODEL, obs, ys, E, key=KEY)


GAUSSIAN = [_gaussian(kalman_filter), _gaussian(extended_kalman_filter)]
ENSEMBLE = [_ensemble(ensemble_kalman_filter), _ensemble(particle_filter), _ensemble(ensemble_score_filter),
            _ensemble(score_filter)]


@pytest.mark.parametrize("f", GAUSSIAN, ids=["kf", "ekf"])
def test_gaussian_filters_refuse_bad_input(f):
    with pytest.raises(ValueError, match=r"mean0 must have shape \(2,\), got \(3,\)"):
        f(m0=np.zeros(3))
    with pytest.raises(ValueError, match=r"cov0 must have shape \(2, 2\), got \(3, 3\)"):
        f(P0=np.eye(3))
    with pytest.raises(ValueError, match="cov0 must be positive definite"):
        f(P0=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"ys must have shape \(\?, 2\), got \(5, 3\)"):
        f(ys=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="ys contains NaN"):
        f(ys=np.where(np.arange(10).reshape(5, 2) == 7, np.nan, 0.0))
    with pytest.raises(ValueError, match="dimension 3.*dimension 2"):
        f(obs=LinearObservation.full(3, 1.0), ys=np.zeros((5, 3)))


@pytest.mark.parametrize("f", ENSEMBLE, ids=["enkf", "pf", "ensf", "sf"])
def test_ensemble_filters_refuse_bad_input(f):
    with pytest.raises(ValueError, match=r"ensemble0 must have shape \(\?, 2\), got \(10, 3\)"):
        f(E=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="at least 2 members, got 1"):
        f(E=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="ensemble0 contains NaN"):
        f(E=np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match=r"ys must have shape \(\?, 2\), got \(5,\)"):
        f(ys=np.zeros(5))
    with pytest.raises(ValueError, match="ys contains NaN"):
        f(ys=np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="dimension 3.*dimension 2"):
        f(obs=LinearObservation.full(3, 1.0), ys=np.zeros((5, 3)))


def test_option_errors():
    with pytest.raises(ValueError, match="method"):
        ensemble_kalman_filter(MODEL, OBS, YS, E0, key=KEY, method="etkf2")
    with pytest.raises(ValueError, match="LETKF"):
        ensemble_kalman_filter(MODEL, OBS, YS, E0, key=KEY, method="pertobs", localization_radius=2.0)
    with pytest.raises(ValueError, match="inflation"):
        ensemble_kalman_filter(MODEL, OBS, YS, E0, key=KEY, inflation=-1.0)
    with pytest.raises(ValueError, match="steps_per_obs"):
        particle_filter(MODEL, OBS, YS, E0, key=KEY, steps_per_obs=0)
    with pytest.raises(ValueError, match="resample_threshold"):
        particle_filter(MODEL, OBS, YS, E0, key=KEY, resample_threshold=2.0)
    with pytest.raises(ValueError, match=r"filtered_covs must have shape \(5, 2, 2\)"):
        res = kalman_filter(MODEL, OBS, YS, M0, P0)
        rts_smoother(MODEL, res._replace(filtered_covs=res.filtered_covs[:, :1]))


def test_validation_skips_tracers_under_vmap():
    out = jax.vmap(lambda E: ensemble_kalman_filter(MODEL, OBS, YS, E, key=KEY).analysis_mean)(jnp.stack([E0, E0 + 1]))
    assert out.shape == (2, 5, 2)


def test_divergence_is_reported():
    model = Lorenz63(dt=0.5)  # RK4 with a huge step blows up within a cycle of 20 steps
    obs = LinearObservation.full(3, 1.0)
    ys = np.full((20, 3), 5.0)
    x0 = np.array([1.0, 1.0, 20.0])
    E = x0[None] + np.random.default_rng(0).standard_normal((8, 3))
    with pytest.raises(FilterDivergenceError, match="ensemble_kalman_filter"):
        ensemble_kalman_filter(model, obs, ys, E, key=KEY, steps_per_obs=20)
    with pytest.raises(FilterDivergenceError, match="particle_filter"):
        particle_filter(model, obs, ys, E, key=KEY, steps_per_obs=20)
    with pytest.raises(FilterDivergenceError, match="extended_kalman_filter"):
        extended_kalman_filter(model, obs, ys, x0, np.eye(3), steps_per_obs=20)
