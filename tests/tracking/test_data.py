"""The Langford tracking data against the chapter code it replaces and against its definition in NumPy."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.configs import LANGFORD_NOTES as NOTES
from assimilax.models import Lorenz63
from assimilax.tracking import langford_tracking_data

S, T = 3, 40


def test_same_as_the_chapter_code_it_replaced():
    """chapters/30_langford_phase_tracking.md built its data with ``make_data`` (verbatim below, at
    b993af8) before it moved here; the same key gives bit-identical series, so the chapter's numbers
    do not move."""
    K = NOTES.steps_per_obs
    X_ATTR = NOTES.model().burn_in(jnp.asarray(NOTES.x0))

    @functools.partial(jax.jit, static_argnames=("seeds", "T"))
    def _unit_noise_data(a, P, key, seeds, T):
        m = NOTES.model(a=a, period=P)
        k0, k1 = jax.random.split(key)
        x0s = jax.vmap(lambda k: m.burn_in(X_ATTR + 0.2 * jax.random.normal(k, (3,)), 1000))(jax.random.split(k0, seeds))
        obs = NOTES.observation(1.0)
        return jax.vmap(lambda x0, k: simulate(m, obs, x0, T, key=k, steps_per_obs=K))(x0s, jax.random.split(k1, seeds))

    def make_data(a, P, sigma, seeds, T, key=jax.random.PRNGKey(0)):
        sims = _unit_noise_data(a, P, key, seeds, T)
        xy = sims.states[..., :2]
        sims = sims._replace(observations=xy + sigma * (sims.observations - xy))
        th = jnp.arctan2(sims.states[..., 1], sims.states[..., 0])
        r = jnp.hypot(sims.states[..., 0], sims.states[..., 1])
        om = NOTES.model(a=a, period=P).omega(sims.times)
        return sims, th, r, om

    for a, P, sigma, k in [(1.0, 10.0, 0.1, 0), (0.0, 2.5, 0.3, 3)]:
        old = make_data(a, P, sigma, S, T, key=jax.random.PRNGKey(k))
        new = langford_tracking_data(NOTES.model(a=a, period=P), sigma, S, T, key=jax.random.PRNGKey(k), steps_per_obs=K)
        for o, n in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new)):
            np.testing.assert_array_equal(np.asarray(n), np.asarray(o))


def test_matches_its_definition():
    model = NOTES.model(a=1.0, period=5.0)
    key = jax.random.PRNGKey(4)
    start = np.asarray(model.burn_in())
    lo, hi = (langford_tracking_data(model, s, S, T, key=key, steps_per_obs=10, start=start, start_spread=0.3,
                                     burn_in_steps=200) for s in (0.05, 0.4))
    sim = lo.simulation
    assert sim.states.shape == (S, T, 3) and sim.observations.shape == (S, T, 2) and sim.times.shape == (S, T)
    # starts: B^200(x* + 0.3 zeta_s), zeta from the first half of the key
    zeta = jax.vmap(lambda k: jax.random.normal(k, (3,)))(jax.random.split(jax.random.split(key)[0], S))
    x0 = np.stack([np.asarray(model.burn_in(start + 0.3 * z, 200)) for z in zeta])
    np.testing.assert_allclose(np.asarray(sim.x0), x0, rtol=1e-12, atol=1e-12)
    assert np.min(np.linalg.norm(x0[:, None] - x0[None, :] + 10 * np.eye(S)[..., None], axis=-1)) > 1e-3  # distinct
    # the first state is 10 RK4 steps of the time-dependent flow from x0; times k dt t
    np.testing.assert_allclose(np.asarray(sim.states[:, 0]), np.stack([np.asarray(model.integrate(x, 10)) for x in x0]),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sim.times), np.tile(np.arange(1, T + 1) * 0.1, (S, 1)), rtol=1e-12)
    # the targets, in NumPy
    st, t = np.asarray(sim.states), np.asarray(sim.times)
    np.testing.assert_allclose(np.asarray(lo.phase), np.arctan2(st[..., 1], st[..., 0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lo.amplitude), np.sqrt(st[..., 0] ** 2 + st[..., 1] ** 2), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lo.rate), 3.5 + 1.0 * np.sin(2 * np.pi * t / 5.0), rtol=1e-12)
    # same key: same trajectories, same standardised noise at every sigma (paired settings)
    np.testing.assert_array_equal(np.asarray(hi.simulation.states), st)
    z_lo = (np.asarray(sim.observations) - st[..., :2]) / 0.05
    z_hi = (np.asarray(hi.simulation.observations) - st[..., :2]) / 0.4
    np.testing.assert_allclose(z_lo, z_hi, rtol=1e-8, atol=1e-9)
    # unit normal noise: mean and std within 4 standard errors
    assert abs(z_lo.std() - 1.0) < 4 / np.sqrt(2 * z_lo.size) and abs(z_lo.mean()) < 4 / np.sqrt(z_lo.size)
    # sigma = 0: the observations are the truth
    exact = langford_tracking_data(model, 0.0, S, T, key=key, start=start, start_spread=0.3, burn_in_steps=200)
    np.testing.assert_array_equal(np.asarray(exact.simulation.observations), st[..., :2])


@pytest.mark.parametrize("kwargs, match", [
    (dict(model=Lorenz63()), "Langford"), (dict(sigma=-0.1), "sigma"), (dict(n_series=0), "n_series"),
    (dict(n_obs=2.5), "n_obs"), (dict(start=jnp.zeros(2)), "start"), (dict(start_spread=-1.0), "start_spread"),
    (dict(burn_in_steps=-5), "burn_in_steps"), (dict(steps_per_obs=0), "steps_per_obs")])
def test_bad_input(kwargs, match):
    args = dict(model=NOTES.model(), sigma=0.1, n_series=2, n_obs=10) | kwargs
    with pytest.raises(ValueError, match=match):
        langford_tracking_data(args.pop("model"), args.pop("sigma"), args.pop("n_series"), args.pop("n_obs"),
                               key=jax.random.PRNGKey(0), **args)
