"""The filter core: one ensemble forecast (batched or not, same numbers; the noise law Q per
step), the cycle skeleton's time and key convention, the weighted spread against a direct
NumPy computation and the unweighted one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax._ensemble import mean_and_spread
from assimilax.filters._core import (FORECAST_BATCH_ELEMENTS, forecast_ensemble, scan_cycles,
                                     weighted_mean_and_spread)
from assimilax.models import LinearGaussian, Lorenz96


@pytest.mark.parametrize("noisy", [False, True])
def test_forecast_batches_equal_one_vmap(noisy):
    """The memory-saving lax.map path (batches of 3 members, 7 members: a ragged last batch)
    gives the same ensemble as one vmap over all members, with and without model noise."""
    model = Lorenz96(8, dt=0.01, noise_cov=0.01 * jnp.eye(8) if noisy else None)
    E = 8.0 + jax.random.normal(jax.random.PRNGKey(0), (7, 8))
    ref = forecast_ensemble(model, E, 0.0, jax.random.PRNGKey(1), 5)  # 56 elements: one vmap
    got = forecast_ensemble(model, E, 0.0, jax.random.PRNGKey(1), 5, max_elements=24)
    unb = forecast_ensemble(model, E, 0.0, jax.random.PRNGKey(1), 5, max_elements=None)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(unb), np.asarray(ref), rtol=1e-12, atol=1e-12)
    assert not np.allclose(np.asarray(ref), np.asarray(E))
    det = np.asarray(jax.vmap(lambda x: Lorenz96(8, dt=0.01).integrate(x, 5))(E))  # independent: plain RK4 steps
    if noisy:  # the members received different noise
        diff = np.asarray(ref) - det
        assert np.all(np.std(diff, axis=1) > 0) and not np.allclose(diff[0], diff[1])
        # key=None: a deterministic forecast of the noisy model
        np.testing.assert_allclose(np.asarray(forecast_ensemble(model, E, 0.0, None, 5)), det, rtol=1e-12)
    else:
        np.testing.assert_allclose(np.asarray(ref), det, rtol=1e-12)
    assert FORECAST_BATCH_ELEMENTS == 2**18


def test_forecast_noise_has_covariance_q_per_step():
    """x_{k+1} = A x_k + eps, eps ~ N(0, Q): after 3 steps from 0 the members have covariance
    Q + A Q A^T + A^2 Q A^2T (closed form); 40,000 members, 5-sigma Monte Carlo bound."""
    model = LinearGaussian.random_stable(3, key=jax.random.PRNGKey(0), noise_scale=0.5)
    A, Q = np.asarray(model.A), np.asarray(model.Q)
    E = forecast_ensemble(model, jnp.zeros((40_000, 3)), 0.0, jax.random.PRNGKey(3), 3)
    C = Q + A @ Q @ A.T + A @ A @ Q @ A.T @ A.T
    emp = np.cov(np.asarray(E).T)
    se = np.sqrt((C**2 + np.outer(np.diag(C), np.diag(C))) / 40_000)  # sd of a Gaussian sample covariance
    assert np.all(np.abs(emp - C) < 5 * se), (emp, C)


def test_scan_cycles_time_and_key_convention():
    """Cycle k sees t0 = k * steps_per_obs * dt, ys[k] and split(key, T)[k]."""
    ys = jnp.arange(12.0).reshape(4, 3)
    key = jax.random.PRNGKey(5)

    def cycle(c, inp):
        return c + 1, (inp.index, inp.t0, inp.y, jax.random.key_data(inp.key) if hasattr(jax.random, "key_data")
                       else inp.key, inp.extra)

    n, (k, t0, y, keys, ex) = scan_cycles(cycle, 0, ys, key=key, steps_per_obs=5, dt=0.01, extra=-jnp.arange(4))
    assert int(n) == 4
    np.testing.assert_array_equal(np.asarray(k), [0, 1, 2, 3])
    np.testing.assert_allclose(np.asarray(t0), [0.0, 0.05, 0.1, 0.15], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ys))
    np.testing.assert_array_equal(np.asarray(keys), np.asarray(jax.random.split(key, 4)))
    np.testing.assert_array_equal(np.asarray(ex), [0, -1, -2, -3])
    _, none_keys = scan_cycles(lambda c, inp: (c, inp.key), 0, ys)  # deterministic filters: no key
    assert none_keys is None


def test_weighted_spread_is_the_unbiased_weighted_variance():
    E = jax.random.normal(jax.random.PRNGKey(0), (9, 4)) * jnp.arange(1.0, 5.0)[None, :]
    w = jax.random.uniform(jax.random.PRNGKey(1), (9,))
    w = w / w.sum()
    m, s = weighted_mean_and_spread(E, w)
    En, wn = np.asarray(E), np.asarray(w)
    mn = (wn[:, None] * En).sum(0)
    var = (wn[:, None] * (En - mn) ** 2).sum(0) / (1 - (wn**2).sum())
    np.testing.assert_allclose(np.asarray(m), mn, rtol=1e-12)
    np.testing.assert_allclose(float(s), np.sqrt(var.mean()), rtol=1e-12)
    # equal weights: exactly the N - 1 spread of every other filter (np.var ddof=1)
    m_eq, s_eq = weighted_mean_and_spread(E, jnp.full((9,), 1 / 9))
    np.testing.assert_allclose(float(s_eq), np.sqrt(np.var(En, axis=0, ddof=1).mean()), rtol=1e-12)
    np.testing.assert_allclose(float(s_eq), float(mean_and_spread(E)[1]), rtol=1e-12)
    # all the mass on one particle: a single member, spread 0 (not nan)
    _, s1 = weighted_mean_and_spread(E, jnp.zeros(9).at[3].set(1.0))
    assert float(s1) == 0.0
    # collapsed weights (1 - max w < 1e-10): no unbiasing factor (DAPPER's avoid_pathological)
    wc = np.full(9, 1e-12 / 8)
    wc[3] = 1 - 1e-12
    _, sc = weighted_mean_and_spread(E, jnp.asarray(wc))
    mc = (wc[:, None] * En).sum(0)
    np.testing.assert_allclose(float(sc), np.sqrt((wc[:, None] * (En - mc) ** 2).sum(0).mean()), rtol=1e-6)
    assert float(sc) < 1e-5
