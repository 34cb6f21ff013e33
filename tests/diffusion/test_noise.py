"""The reverse-SDE increment generators: Threefry against JAX's own implementation and a
known-answer vector, the polynomial sine/cosine against NumPy, the Box--Muller normals against
the standard normal law, and the block/remainder bookkeeping of the Euler--Maruyama sampler
against the exact variance of a pure-noise SDE."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32
from scipy import stats

from assimilax.diffusion import euler_maruyama
from assimilax.diffusion.noise import (NOISE_KINDS, RADEMACHER_STEPS, gaussian, gaussian_block, noise_block,
                                       rademacher_block, sincos_2pi, threefry2x32)


def test_threefry_matches_jax_and_known_answer():
    rng = np.random.default_rng(0)
    for _ in range(5):
        k = rng.integers(0, 2**32, size=2, dtype=np.uint32)
        c = rng.integers(0, 2**32, size=(2, 1000), dtype=np.uint32)
        ref = np.asarray(threefry_2x32(jnp.asarray(k), jnp.asarray(c.reshape(-1)))).reshape(2, 1000)
        got = threefry2x32(k[0], k[1], jnp.asarray(c[0]), jnp.asarray(c[1]))
        np.testing.assert_array_equal(np.asarray(got[0]), ref[0])
        np.testing.assert_array_equal(np.asarray(got[1]), ref[1])
    # Random123 known-answer vector for Threefry-2x32-20, key = counter = 0
    y0, y1 = threefry2x32(0, 0, 0, 0)
    assert (int(y0), int(y1)) == (0x6B200159, 0x99BA4EFE)


def test_sincos_polynomial_accuracy():
    u = np.concatenate([np.linspace(0, 1, 400_001), np.arange(0, 2**24, 13) * 2.0**-24]).astype(np.float32)
    s, c = sincos_2pi(jnp.asarray(u))
    ref = 2 * np.pi * u.astype(np.float64)
    assert np.asarray(s).dtype == np.float32
    assert np.max(np.abs(np.asarray(s, np.float64) - np.sin(ref))) < 3e-7
    assert np.max(np.abs(np.asarray(c, np.float64) - np.cos(ref))) < 3e-7


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gaussian_block_is_standard_normal(dtype):
    shape = (300, 1000)
    z1, z2 = (np.asarray(z, np.float64).ravel() for z in gaussian_block(jax.random.PRNGKey(0), shape, dtype))
    n = z1.size
    for z in (z1, z2):
        assert abs(z.mean()) < 5 / np.sqrt(n)
        assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
        assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
        assert stats.kstest(z, "norm").statistic < 2.0 / np.sqrt(n)  # 99.9 % KS quantile is 1.95/sqrt(n)
        p3 = 2 * stats.norm.sf(3)
        assert abs(np.mean(np.abs(z) > 3) - p3) < 5 * np.sqrt(p3 / n)
    # the two halves of a pair, neighbouring elements and two keys are uncorrelated
    z3 = np.asarray(gaussian(jax.random.PRNGKey(1), shape, dtype), np.float64).ravel()
    for a, b in ((z1, z2), (z1[1:], z1[:-1]), (z2[1000:], z2[:-1000]), (z1, z3)):
        assert abs(np.mean(a * b)) < 5 / np.sqrt(n)
    # r^2 = z1^2 + z2^2 is exponential with mean 2 (a Box-Muller pair is jointly Gaussian)
    assert stats.kstest((z1**2 + z2**2) / 2, "expon").statistic < 2.0 / np.sqrt(n)


def test_rademacher_block_bits_are_independent_signs():
    zs = np.stack([np.asarray(z) for z in rademacher_block(jax.random.PRNGKey(0), (100, 500), jnp.float32)])
    assert zs.shape == (RADEMACHER_STEPS, 100, 500) and set(np.unique(zs)) == {-1.0, 1.0}
    n = zs[0].size
    assert np.all(np.abs(zs.reshape(RADEMACHER_STEPS, -1).mean(1)) < 5 / np.sqrt(n))
    c = np.corrcoef(zs.reshape(RADEMACHER_STEPS, -1))  # steps of one block
    assert np.max(np.abs(c - np.eye(RADEMACHER_STEPS))) < 5 / np.sqrt(n)


class _PureNoiseSDE:
    """f = 0, g^2(t) = 1 + 3t on [0, 1]: with a zero score the reverse SDE is
    x_T + sum_k sqrt(g^2(t_k) dt) z_k."""
    t_min, t_max = 0.0, 1.0

    def f(self, t):
        return 0.0 * t

    def g2(self, t):
        return 1.0 + 3.0 * t


@pytest.mark.parametrize("noise", NOISE_KINDS)
@pytest.mark.parametrize("noise_last", [True, False])
def test_sampler_increments_have_the_exact_variance(noise, noise_last):
    """The variance of the sampler's output is known exactly, step by step, so a missing,
    repeated or misplaced increment (block remainder, last step) shows. 37 steps are not a
    multiple of either block (2 and 32)."""
    sde = _PureNoiseSDE()
    n, steps = 4_000_000, 37
    x = jax.jit(lambda k: euler_maruyama(sde, lambda x, t: jnp.zeros_like(x), jnp.zeros((n,), jnp.float32), key=k,
                                         n_steps=steps, noise=noise, noise_last=noise_last))(jax.random.PRNGKey(5))
    ts = np.linspace(1.0, 0.0, steps + 1)[:-1]
    var = (1.0 + 3.0 * ts) / steps
    expected = var.sum() - (0.0 if noise_last else var[-1])
    tol = 5 * np.sqrt(2 / n) * expected
    got = float(np.var(np.asarray(x, np.float64)))
    assert abs(got - expected) < tol, (got, expected)
    assert np.min(var) > 2 * tol  # dropping or doubling any one increment would fail the check


def test_noise_block_rejects_unknown_kind():
    with pytest.raises(ValueError, match="noise must be one of"):
        noise_block("uniform")
