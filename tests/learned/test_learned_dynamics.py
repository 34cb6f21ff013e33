"""LearnedDynamics: a learned one-cycle map as a DynamicalModel the ensemble filters accept."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.filters import ensemble_kalman_filter
from assimilax.learned import LearnedDynamics, ModelForward, StencilForward
from assimilax.models import Lorenz96
from assimilax.observations import LinearObservation

jax.config.update("jax_enable_x64", True)


def test_letkf_with_wrapped_true_map_equals_letkf_with_the_model():
    """Wrapping the true model's one-cycle map gives the same LETKF, number for number."""
    model = Lorenz96(dim=12, dt=0.05)
    obs = LinearObservation.every_kth(12, 2, 1.0)
    sim = simulate(model, obs, 8.0 + jax.random.normal(jax.random.PRNGKey(0), (12,)), 30, key=jax.random.PRNGKey(1),
                   burn_in=100)
    E0 = sim.x0[None, :] + jax.random.normal(jax.random.PRNGKey(2), (8, 12))
    kw = dict(key=jax.random.PRNGKey(3), inflation=1.05, localization_radius=3.0, store_ensembles=False)
    ref = ensemble_kalman_filter(model, obs, sim.observations, E0, **kw)
    wrapped = LearnedDynamics(ModelForward(model, 1), 12, dt=0.05)
    assert wrapped.dim == 12 and wrapped.noise_cov is None
    out = ensemble_kalman_filter(wrapped, obs, sim.observations, E0, **kw)
    np.testing.assert_allclose(out.analysis_mean, ref.analysis_mean, rtol=1e-10, atol=1e-10)


def test_stencil_forward_steps_and_keeps_dtype():
    F = StencilForward(radius=2, width=8, scale=4.0, key=jax.random.PRNGKey(0), dtype=jnp.float32)
    m = LearnedDynamics(F, 10)
    x = jnp.linspace(-1.0, 1.0, 10)
    y = m.step(x)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, F(x), rtol=1e-6)
    np.testing.assert_allclose(m.integrate(x, 2), F(F(x)), rtol=1e-5)


F0 = StencilForward(radius=1, width=4, scale=1.0, key=jax.random.PRNGKey(0))


def test_letkf_forecasts_with_a_stencil_network():
    """The LETKF (jitted) accepts a stencil network: its first forecast is the network applied
    to every initial member."""
    F = StencilForward(radius=2, width=8, scale=4.0, key=jax.random.PRNGKey(4))
    obs = LinearObservation.every_kth(12, 2, 1.0)
    E0 = 8.0 + jax.random.normal(jax.random.PRNGKey(5), (6, 12))
    ys = jax.random.normal(jax.random.PRNGKey(6), (3, 6))
    res = ensemble_kalman_filter(LearnedDynamics(F, 12), obs, ys, E0, key=jax.random.PRNGKey(7), inflation=1.02,
                                 localization_radius=3.0, store_ensembles=False)
    np.testing.assert_allclose(res.forecast_mean[0], jax.vmap(F)(E0).mean(axis=0), rtol=1e-10)


@pytest.mark.parametrize("args", [(None, 10), (lambda x: x, 10), (F0, 0), (F0, 2.5), (F0, True)])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        LearnedDynamics(*args)
