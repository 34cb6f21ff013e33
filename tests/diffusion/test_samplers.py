"""Samplers driven by the exact mixture score reproduce known Gaussian mixtures.

Target: the mixture diffused to ``t_min`` (closed form). Tolerances are Monte Carlo standard
errors computed from the target's own moments (plus a small allowance for time discretisation),
so a sampler with a wrong drift, a wrong noise scale or a wrong time direction fails.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.diffusion import (VESDE, VPSDE, GaussianMixture, euler_maruyama, mixture_score,
                                 predictor_corrector, probability_flow_heun)

N = 2000


def mixture_2d():
    return GaussianMixture(jnp.array([0.5, 0.3, 0.2]), jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                           jnp.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]], [[0.4, 0.0], [0.0, 0.2]]]))


def mixture_10d():
    rng = np.random.default_rng(1)
    d = 10
    covs = []
    for _ in range(2):
        A = rng.normal(size=(d, d)) / np.sqrt(d)
        covs.append(0.3 * A @ A.T + 0.2 * np.eye(d))
    means = np.stack([np.full(d, 1.5), np.full(d, -1.5)]) + 0.3 * rng.normal(size=(2, d))
    return GaussianMixture(jnp.array([0.65, 0.35]), jnp.array(means), jnp.array(np.stack(covs)))


def run(sampler, sde, mix, key):
    score = mixture_score(sde, mix)
    k1, k2 = jax.random.split(key)
    x_T = mix.diffused(sde, sde.t_max).sample(k1, N)
    if sampler == "em":
        f = lambda: euler_maruyama(sde, score, x_T, key=k2, n_steps=300)
    elif sampler.startswith("em-"):
        f = lambda: euler_maruyama(sde, score, x_T, key=k2, n_steps=300, noise=sampler[3:])
    elif sampler == "heun":
        f = lambda: probability_flow_heun(sde, score, x_T, n_steps=100)
    else:
        f = lambda: predictor_corrector(sde, score, x_T, key=k2, n_steps=200, n_corrector=1, snr=0.1)
    return np.asarray(jax.jit(f)())


def check_moments(x, target, slack=0.02):
    mean, cov = np.asarray(target.mean()), np.asarray(target.cov())
    n, d = x.shape
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 4.5 * se_mean + slack), (x.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    err = np.abs(np.cov(x.T) - cov)
    assert np.all(err < 5.0 * se_cov + slack * np.sqrt(np.outer(np.diag(cov), np.diag(cov)))), err.max()
    K = target.weights.shape[0]
    w_hat = np.bincount(np.asarray(jnp.argmax(target.responsibilities(jnp.asarray(x)), 1)), minlength=K) / n
    w = np.asarray(target.weights)
    assert np.all(np.abs(w_hat - w) < 4.5 * np.sqrt(w * (1 - w) / n) + 0.01), (w_hat, w)


@pytest.mark.parametrize("sampler", ["em", "em-rademacher", "heun", "pc"])
@pytest.mark.parametrize("which", ["2d", "10d"])
def test_vp_samplers_reproduce_mixture(sampler, which):
    mix = mixture_2d() if which == "2d" else mixture_10d()
    sde = VPSDE()
    x = run(sampler, sde, mix, jax.random.PRNGKey(3))
    check_moments(x, mix.diffused(sde, sde.t_min))


@pytest.mark.parametrize("sde", [VPSDE(schedule="cosine"), VESDE(sigma_min=0.01, sigma_max=30.0)], ids=["cosine", "ve"])
def test_other_sdes_reproduce_mixture(sde):
    mix = mixture_2d()
    x = run("heun", sde, mix, jax.random.PRNGKey(4))
    check_moments(x, mix.diffused(sde, sde.t_min))


def test_wrong_score_is_detected():
    """The moment check has power: a score of the wrong mixture (weights swapped) fails it."""
    mix = mixture_2d()
    wrong = GaussianMixture(jnp.array([0.2, 0.3, 0.5]), mix.means, mix.covs)
    sde = VPSDE()
    x = run("heun", sde, wrong, jax.random.PRNGKey(5))
    with pytest.raises(AssertionError):
        check_moments(x, mix.diffused(sde, sde.t_min))


def test_sde_coefficients_closed_form():
    """f and g^2 from autodiff match the textbook VP and VE formulas."""
    vp = VPSDE(beta_min=0.1, beta_max=20.0)
    t = jnp.linspace(0.01, 1.0, 7)
    beta = 0.1 + t * 19.9
    np.testing.assert_allclose(vp.f(t), -0.5 * beta, rtol=1e-10)
    np.testing.assert_allclose(vp.g2(t), beta, rtol=1e-10)
    np.testing.assert_allclose(vp.alpha(t) ** 2 + vp.sigma2(t), 1.0, rtol=1e-12)
    ve = VESDE(sigma_min=0.01, sigma_max=50.0)
    sig = 0.01 * 5000.0**t
    np.testing.assert_allclose(ve.sigma(t), sig, rtol=1e-10)
    np.testing.assert_allclose(ve.g2(t), 2 * sig**2 * np.log(5000.0), rtol=1e-10)
    cos = VPSDE(schedule="cosine")
    s = 0.008
    tc = np.asarray(t) * 0.99  # the cosine schedule's beta diverges at t = 1
    u = (tc + s) / (1 + s) * np.pi / 2
    abar = np.cos(u) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    np.testing.assert_allclose(cos.alpha(tc) ** 2, abar, rtol=1e-10)
    np.testing.assert_allclose(cos.sigma2(tc), 1.0 - abar, rtol=1e-10)
    # beta(t) = -d log abar / dt = pi tan(u) / (1 + s): f = -beta / 2 and g^2 = beta (VP)
    beta_cos = np.pi * np.tan(u) / (1 + s)
    np.testing.assert_allclose(cos.f(tc), -0.5 * beta_cos, rtol=1e-9)
    np.testing.assert_allclose(cos.g2(tc), beta_cos, rtol=1e-9)
    np.testing.assert_allclose(cos.beta(tc), beta_cos, rtol=1e-9)


def test_sde_coefficients_keep_float32_time_under_x64():
    """With float64 enabled (conftest), a float32 time must give float32 f and g^2, or a float32
    sampler's scan carry turns float64 (the EnSF failed on float32 ensembles this way)."""
    from assimilax.diffusion import EnSFSDE

    assert jax.config.jax_enable_x64
    t32 = jnp.linspace(0.0, 1.0, 5, dtype=jnp.float32)
    for sde in (VPSDE(), VESDE(), EnSFSDE()):
        assert sde.f(t32).dtype == jnp.float32 and sde.g2(t32).dtype == jnp.float32
        np.testing.assert_allclose(sde.g2(t32), sde.g2(t32.astype(jnp.float64)), rtol=1e-5)
        assert sde.g2(jnp.arange(2)).dtype == jnp.float64  # integer times get the default float
    x = jnp.zeros((3, 2), jnp.float32)
    out = euler_maruyama(EnSFSDE(), lambda x, t: -x, x, key=jax.random.PRNGKey(0), n_steps=5)
    assert out.dtype == jnp.float32


def test_mixture_score_matches_finite_differences():
    mix = mixture_2d()
    sde = VPSDE()
    x = mix.sample(jax.random.PRNGKey(0), 5)
    t = 0.3
    p = mix.diffused(sde, t)
    num = jax.vmap(jax.grad(lambda xi: p.log_prob(xi[None])[0]))(x)
    np.testing.assert_allclose(mixture_score(sde, mix)(x, t), num, rtol=1e-8, atol=1e-10)


def test_rademacher_increments():
    """+-1 entries, balanced over positions and bits, uncorrelated neighbours; odd sizes work."""
    from assimilax.diffusion.noise import rademacher
    z = np.asarray(rademacher(jax.random.PRNGKey(0), (50, 1001), jnp.float64))
    assert z.shape == (50, 1001) and set(np.unique(z)) == {-1.0, 1.0}
    n = z.size
    assert abs(z.mean()) < 4.5 / np.sqrt(n)
    per_bit = z.reshape(-1)[: (n // 32) * 32].reshape(-1, 32).mean(0)  # each bit position of the words
    assert np.all(np.abs(per_bit) < 4.5 / np.sqrt(n / 32))
    flat = z.reshape(-1)
    assert abs(np.mean(flat[1:] * flat[:-1])) < 4.5 / np.sqrt(n)
    assert abs(np.mean(flat[32:] * flat[:-32])) < 4.5 / np.sqrt(n)
    z2 = np.asarray(rademacher(jax.random.PRNGKey(1), (50, 1001), jnp.float64))
    assert abs(np.mean(z * z2)) < 4.5 / np.sqrt(n)


def test_unknown_noise_is_rejected():
    with pytest.raises(ValueError, match="noise"):
        euler_maruyama(VPSDE(), lambda x, t: -x, jnp.zeros((3, 2)), key=jax.random.PRNGKey(0), noise="uniform")
