"""NumPyro NUTS smoothing posterior against dense Gaussian conditioning (written here in NumPy)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.baselines import linear_gaussian_smoothing_nuts, smoothing_nuts
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation


def dense_smoothing(A, Q, H, R, m0, P0, ys):
    """Moments of p(x_{0:T} | y_{1:T}) by building the joint Gaussian explicitly."""
    T, d = ys.shape[0], A.shape[0]
    n = (T + 1) * d
    # x = G w with w = (x0 - m0, eps_1..eps_T) ~ N(0, blockdiag(P0, Q, ..., Q))
    G = np.zeros((n, n))
    for t in range(T + 1):
        for s in range(t + 1):
            G[t * d:(t + 1) * d, s * d:(s + 1) * d] = np.linalg.matrix_power(A, t - s)
    W = np.kron(np.eye(T + 1), Q); W[:d, :d] = P0
    mean = np.concatenate([np.linalg.matrix_power(A, t) @ m0 for t in range(T + 1)])
    Sx = G @ W @ G.T
    Hbig = np.zeros((T * H.shape[0], n))
    for t in range(1, T + 1):
        Hbig[(t - 1) * H.shape[0]:t * H.shape[0], t * d:(t + 1) * d] = H
    Sy = Hbig @ Sx @ Hbig.T + np.kron(np.eye(T), R)
    K = Sx @ Hbig.T @ np.linalg.inv(Sy)
    post_mean = mean + K @ (ys.reshape(-1) - Hbig @ mean)
    post_cov = Sx - K @ Hbig @ Sx
    return post_mean.reshape(T + 1, d), np.diag(post_cov).reshape(T + 1, d)


def test_nuts_matches_dense_gaussian_conditioning():
    model = LinearGaussian.random_stable(2, key=jax.random.PRNGKey(0), noise_scale=0.5)
    obs = LinearObservation.partial([0], 2, 0.5)
    m0, P0 = jnp.zeros(2), jnp.eye(2)
    sim = simulate(model, obs, jnp.array([1.0, -1.0]), 6, key=jax.random.PRNGKey(1))
    samples = linear_gaussian_smoothing_nuts(model, obs, sim.observations, m0, P0, key=jax.random.PRNGKey(2),
                                             num_warmup=500, num_samples=2000)
    assert samples.shape == (2000, 7, 2)
    mean, var = dense_smoothing(*(np.asarray(a) for a in (model.A, model.Q, obs.H, obs.R, m0, P0, sim.observations)))
    s = np.asarray(samples)
    # Monte Carlo standard error of the mean with an effective sample size of at least ~400
    se = np.sqrt(var / 400)
    assert np.all(np.abs(s.mean(0) - mean) < 4 * se), (s.mean(0) - mean) / se
    # relative error of a variance estimate from ~400 effective draws: sqrt(2/400) ~ 0.07
    np.testing.assert_allclose(s.var(0), var, rtol=0.3)


def test_nuts_validates_inputs():
    model = LinearGaussian.random_stable(2, key=jax.random.PRNGKey(0))
    obs = LinearObservation.full(2, 0.5)
    ys = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="NaN"):
        smoothing_nuts(model, obs, ys.at[1, 0].set(jnp.nan), jnp.zeros(2), jnp.eye(2), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="positive definite"):
        smoothing_nuts(model, obs, ys, jnp.zeros(2), -jnp.eye(2), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"observations must have shape \(\?, 2\), got \(3, 3\)"):
        smoothing_nuts(model, obs, jnp.zeros((3, 3)), jnp.zeros(2), jnp.eye(2), key=jax.random.PRNGKey(0))
