import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.models import LinearGaussian, Lorenz63
from assimilax.observations import LinearObservation


def test_same_key_same_numbers_and_noise_statistics():
    model = LinearGaussian.random_stable(3, key=jax.random.PRNGKey(0), noise_scale=0.5)
    obs = LinearObservation.partial([0, 2], 3, 0.3)
    s1 = simulate(model, obs, jnp.zeros(3), 4000, key=jax.random.PRNGKey(1))
    s2 = simulate(model, obs, jnp.zeros(3), 4000, key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(s1.states, s2.states)
    np.testing.assert_array_equal(s1.observations, s2.observations)
    xs = np.asarray(s1.states)
    prev = np.vstack([np.zeros(3), xs[:-1]])
    eps = xs - prev @ np.asarray(model.A).T
    np.testing.assert_allclose(np.cov(eps.T), model.Q, atol=0.05)
    eta = np.asarray(s1.observations) - xs[:, [0, 2]]
    np.testing.assert_allclose(np.cov(eta.T), obs.R, atol=0.01)


def test_steps_per_obs_and_times():
    model = Lorenz63()
    obs = LinearObservation.full(3, 1.0)
    x0 = jnp.array([1.0, 1.0, 1.0])
    s = simulate(model, obs, x0, 3, key=jax.random.PRNGKey(0), steps_per_obs=25)
    np.testing.assert_allclose(s.times, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(s.states[1], model.integrate(x0, 50), rtol=1e-10)


def test_simulate_validates():
    model = Lorenz63()
    with pytest.raises(ValueError, match=r"x0 must have shape \(3,\), got \(4,\)"):
        simulate(model, LinearObservation.full(3, 1.0), jnp.zeros(4), 3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="dimension"):
        simulate(model, LinearObservation.full(4, 1.0), jnp.zeros(3), 3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_cycles"):
        simulate(model, LinearObservation.full(3, 1.0), jnp.zeros(3), 0, key=jax.random.PRNGKey(0))
