"""Guided sampling with a Gaussian prior and a linear-Gaussian likelihood gives the Kalman
posterior (computed here in NumPy); the DPS gradient matches its closed form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.diffusion import (VPSDE, GaussianMixture, dps_guidance, euler_maruyama, gaussian_likelihood_score,
                                 mixture_score, probability_flow_heun, tweedie_covariance_guidance)
from assimilax.observations import LinearObservation, NonlinearObservation

rng = np.random.default_rng(0)
D, M = 3, 2
m0 = np.array([1.0, -0.5, 0.3])
A = rng.normal(size=(D, D))
P0 = A @ A.T / D + 0.3 * np.eye(D)
H = rng.normal(size=(M, D))
R = np.diag([0.2, 0.5])
y = np.array([0.7, -1.2])


def kalman_posterior():
    S = H @ P0 @ H.T + R
    K = P0 @ H.T @ np.linalg.inv(S)
    return m0 + K @ (y - H @ m0), (np.eye(D) - K @ H) @ P0


@pytest.mark.parametrize("sampler", ["em", "heun"])
def test_guided_sampling_gives_kalman_posterior(sampler):
    sde = VPSDE(t_min=1e-3)
    prior = GaussianMixture(jnp.ones(1), jnp.asarray(m0)[None], jnp.asarray(P0)[None])
    score = tweedie_covariance_guidance(sde, mixture_score(sde, prior), H, R, y)
    n = 3000
    x_T = jax.random.normal(jax.random.PRNGKey(0), (n, D)) * sde.prior_std(1.0)
    if sampler == "em":
        x = euler_maruyama(sde, score, x_T, key=jax.random.PRNGKey(1), n_steps=300)
    else:
        x = probability_flow_heun(sde, score, x_T, n_steps=100)
    x = np.asarray(x)
    mean, cov = kalman_posterior()
    cov_t = cov + float(sde.sigma2(sde.t_min)) * np.eye(D)
    se = np.sqrt(np.diag(cov_t) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 4.5 * se + 0.01), (x.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cov_t), np.diag(cov_t)) + cov_t**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov_t) < 5 * se_cov + 0.01)
    # the prior alone is far from the posterior, so the check has power
    assert np.abs(m0 - mean).max() > 10 * se.max()


def test_likelihood_score_closed_form():
    obs = LinearObservation(jnp.asarray(H), jnp.asarray(R))
    x = jnp.asarray(rng.normal(size=(4, D)))
    got = gaussian_likelihood_score(obs, jnp.asarray(y))(x)
    want = (y[None] - np.asarray(x) @ H.T) @ np.linalg.inv(R) @ H
    np.testing.assert_allclose(got, want, rtol=1e-10)
    arc = NonlinearObservation("arctan", D, 0.3)
    yy = jnp.asarray(rng.normal(size=D))
    got = gaussian_likelihood_score(arc, yy)(x)
    xn = np.asarray(x)
    want = (np.asarray(yy)[None] - np.arctan(xn)) / 0.09 / (1 + xn**2)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_dps_gradient_closed_form():
    sde = VPSDE()
    prior = GaussianMixture(jnp.ones(1), jnp.asarray(m0)[None], jnp.asarray(P0)[None])
    obs = LinearObservation(jnp.asarray(H), jnp.asarray(R))
    prior_score = mixture_score(sde, prior)
    score = dps_guidance(sde, prior_score, obs, jnp.asarray(y))
    x = jnp.asarray(rng.normal(size=(5, D)))
    t = 0.4
    a, s2 = float(sde.alpha(t)), float(sde.sigma2(t))
    Ct = a**2 * P0 + s2 * np.eye(D)
    J = a * P0 @ np.linalg.inv(Ct)
    x0 = m0[None] + (np.asarray(x) - a * m0[None]) @ J.T
    g = (y[None] - x0 @ H.T) @ np.linalg.inv(R) @ H @ J
    want = -(np.asarray(x) - a * m0[None]) @ np.linalg.inv(Ct) + g
    np.testing.assert_allclose(score(x, t), want, rtol=1e-8, atol=1e-10)


def test_damped_guidance_is_prior_plus_damped_gaussian_likelihood_score():
    """At t = 0 (h = 1) with a Gaussian prior score and a linear-Gaussian likelihood, the damped
    posterior score is the exact posterior score -P^{-1}(x - m) + H^T R^{-1}(y - H x) (NumPy);
    at t = 1 the default damping 1 - t leaves the prior score alone."""
    from assimilax.diffusion import damped_guidance, gaussian_likelihood_score
    from assimilax.observations import LinearObservation

    rng = np.random.default_rng(0)
    d, m = 3, 2
    Lp = rng.normal(size=(d, d))
    P = Lp @ Lp.T + d * np.eye(d)
    mean = rng.normal(size=d)
    H = rng.normal(size=(m, d))
    R = np.diag([0.3, 0.7])
    obs = LinearObservation(jnp.asarray(H), jnp.asarray(R))
    y = rng.normal(size=m)
    x = rng.normal(size=(5, d))
    Pinv = np.linalg.inv(P)
    prior = lambda x, t: -(x - jnp.asarray(mean)[None, :]) @ jnp.asarray(Pinv)
    score = damped_guidance(prior, gaussian_likelihood_score(obs, jnp.asarray(y)))
    exact = -(x - mean) @ Pinv + (y - x @ H.T) @ np.linalg.inv(R) @ H
    np.testing.assert_allclose(np.asarray(score(jnp.asarray(x), 0.0)), exact, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(score(jnp.asarray(x), 1.0)), -(x - mean) @ Pinv, rtol=1e-10)
