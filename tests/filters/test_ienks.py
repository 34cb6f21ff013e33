"""The iterative ensemble Kalman smoother against independent references: on a deterministic
linear model with linear observations its Gauss--Newton cost is quadratic and the model commutes
with the ensemble transform, so for every lag (0 to 3: windows of 0 to 3 cycles, the first ones
shorter) the analyses reproduce the ETKF (tested against the Kalman update) to rounding, for one
iteration and for several; on Lorenz-63 sakov2012 it reaches the range DAPPER publishes
for iEnKS('Sqrt', N=10, infl=1.02, rot=True) (0.31) and beats the ETKF of the same size."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.configs import LORENZ63_SAKOV2012
from assimilax.filters import ensemble_kalman_filter, iterative_ensemble_kalman_smoother
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation


def _linear_problem(deterministic_linear, T=12, N=6, d=4, seed=0):
    rng = np.random.default_rng(seed)
    A = np.eye(d) + 0.25 * rng.standard_normal((d, d)) / np.sqrt(d)
    A = A / max(1.0, np.max(np.abs(np.linalg.eigvals(A))) / 0.98)
    model = deterministic_linear(A=jnp.asarray(A), dt=1.0)
    obs = LinearObservation(jnp.asarray(rng.standard_normal((2, d))), 0.3 * jnp.eye(2) + 0.1)
    ys = jnp.asarray(rng.standard_normal((T, 2)))
    E0 = jnp.asarray(rng.standard_normal((N, d)))
    return model, obs, ys, E0


@pytest.mark.parametrize("lag", [0, 1, 2, 3])
@pytest.mark.parametrize("n_iterations", [1, 3])
def test_linear_model_equals_etkf(lag, n_iterations, deterministic_linear):
    with jax.enable_x64(True):
        model, obs, ys, E0 = _linear_problem(deterministic_linear)
        E0 = E0.astype(jnp.float64)
        key = jax.random.key(0)
        etkf = ensemble_kalman_filter(model, obs, ys, E0, key=key, method="sqrt")
        ienks = iterative_ensemble_kalman_smoother(model, obs, ys, E0, key=key, lag=lag,
                                                   n_iterations=n_iterations)
        np.testing.assert_allclose(ienks.analysis_mean, etkf.analysis_mean, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(ienks.analysis_spread, etkf.analysis_spread, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(ienks.ensembles, etkf.ensembles, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(ienks.forecast_mean, etkf.forecast_mean, rtol=1e-9, atol=1e-10)


def test_lorenz63_sakov2012_reaches_published_range():
    """DAPPER publishes 0.31 for iEnKS('Sqrt', N=10, infl=1.02, rot=True) on sakov2012 (and 0.60
    for the ETKF with the same N, inflation and rotation); 5 truths, 200 cycles after a 100-cycle
    spin-up: the mean over truths must lie in [0.2, 0.42] (0.33 measured) and every truth must
    favour the iEnKS (ETKF 0.57 measured)."""
    cfg = LORENZ63_SAKOV2012
    model, obs = cfg.model(), cfg.observation()
    ref = cfg.reference("iEnKS('Sqrt', N=10, infl=1.02, rot=True)")
    assert ref.rmse == pytest.approx(0.31)

    def one(key):
        k_sim, k_e, k_f = jax.random.split(key, 3)
        sim = simulate(model, obs, jnp.asarray(cfg.x0), 300, key=k_sim, steps_per_obs=cfg.steps_per_obs,
                       burn_in=500)
        E0 = sim.x0[None, :] + jnp.sqrt(cfg.x0_var) * jax.random.normal(k_e, (10, 3))
        ie = iterative_ensemble_kalman_smoother(model, obs, sim.observations, E0, key=k_f,
                                                steps_per_obs=cfg.steps_per_obs, lag=1, n_iterations=10,
                                                inflation=1.02, rotate=True, store_ensembles=False)
        et = ensemble_kalman_filter(model, obs, sim.observations, E0, key=k_f, steps_per_obs=cfg.steps_per_obs,
                                    method="sqrt", inflation=1.02, rotate=True, store_ensembles=False)
        err = lambda r: jnp.mean(jnp.sqrt(jnp.mean((r.analysis_mean - sim.states) ** 2, -1))[100:])  # noqa: E731
        return err(ie), err(et)

    ie, et = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(2012), 5))
    ie, et = np.asarray(ie), np.asarray(et)
    assert 0.2 < ie.mean() < 0.42, ie
    assert np.all(ie < et), (ie, et)


def test_bad_input(deterministic_linear):
    model, obs, ys, E0 = _linear_problem(deterministic_linear)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="lag"):
        iterative_ensemble_kalman_smoother(model, obs, ys, E0, key=key, lag=-1)
    with pytest.raises(ValueError, match="n_iterations"):
        iterative_ensemble_kalman_smoother(model, obs, ys, E0, key=key, n_iterations=0)
    with pytest.raises(ValueError, match="inflation"):
        iterative_ensemble_kalman_smoother(model, obs, ys, E0, key=key, inflation=-1.0)
    with pytest.raises(ValueError, match="deterministic"):
        lg = LinearGaussian(model.A, 0.1 * jnp.eye(model.dim))
        iterative_ensemble_kalman_smoother(lg, obs, ys, E0, key=key)
    with pytest.raises(ValueError):
        iterative_ensemble_kalman_smoother(model, obs, ys, E0[:, :2], key=key)
