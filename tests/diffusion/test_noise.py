"""The reverse-SDE increment generators: Threefry against JAX's own implementation and a
known-answer vector, the AES round against FIPS-197 and ARS against Random123's known answers,
the polynomial sine/cosine against NumPy, the Box--Muller normals against the standard normal
law, and the block/remainder bookkeeping of the Euler--Maruyama sampler against the exact
variance of a pure-noise SDE."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32
from scipy import stats

from assimilax.diffusion import euler_maruyama
from assimilax.diffusion.noise import (_SBOX, NOISE_KINDS, RADEMACHER_STEPS, aes_round, ars4x32, gaussian,
                                       gaussian_ars_block, gaussian_block, noise_block, rademacher_block, sincos_2pi,
                                       threefry2x32)


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


def _words(x: int):
    return tuple(np.uint32((x >> (32 * i)) & 0xFFFFFFFF) for i in range(4))


def _int(words):
    return sum(int(w) << (32 * i) for i, w in enumerate(words))


def test_aes_round_matches_fips197():
    """AES-128 built from :func:`aes_round` and the FIPS-197 key expansion encrypts the
    standard's Appendix C.1 example: this pins the S-box, ShiftRows, MixColumns and the byte order."""
    key, pt = bytes(range(16)), bytes.fromhex("00112233445566778899aabbccddeeff")
    w = [int.from_bytes(key[4 * i:4 * i + 4], "little") for i in range(4)]
    rcon = 1
    for i in range(4, 44):
        t = w[i - 1]
        if i % 4 == 0:
            t = ((t >> 8) | (t << 24)) & 0xFFFFFFFF  # RotWord on a little-endian word
            t = sum(int(_SBOX[(t >> (8 * r)) & 0xFF]) << (8 * r) for r in range(4)) ^ rcon
            rcon = (rcon << 1) ^ (0x11B if rcon & 0x80 else 0)
        w.append(w[i - 4] ^ t)
    rk = [tuple(np.uint32(x) for x in w[4 * r:4 * r + 4]) for r in range(11)]
    v = tuple(np.uint32(int.from_bytes(pt[4 * i:4 * i + 4], "little")) ^ rk[0][i] for i in range(4))
    for r in range(1, 10):
        v = aes_round(v, rk[r])
    v = aes_round(v, rk[10], last=True)
    assert b"".join(int(x).to_bytes(4, "little") for x in v).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_ars_matches_random123_known_answers():
    """ARS-1x128 known answers of Random123.jl's test suite (its generator increments the counter
    before encrypting; 128-bit values as hi:lo 64-bit halves) for 1, 2, 3 and 10 rounds."""
    ctr = (0x9799B5D54F7B9227 << 64 | 0xB47607190D0DFEFB) + 1
    key = 0x07B8E4B6AA98EC24 << 64 | 0x5A7DA274D3B8146A
    known = {1: 0x1A0B14C707B64224E548EF12331396EF, 2: 0x3CED8E0970690F718336318BA22E8AE1,
             3: 0xB6621A8B006319E8 << 64 | 0x67C841642C32FC19, 10: 0xAC35DF44F996ED82 << 64 | 0x4E287697BAD2F9A2}
    for rounds, expected in known.items():
        assert _int(ars4x32(_words(key), _words(ctr), rounds=rounds)) == expected, rounds


def _check_standard_normal(zs, n):
    for z in zs:
        assert abs(z.mean()) < 5 / np.sqrt(n)
        assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
        assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
        assert stats.kstest(z, "norm").statistic < 2.0 / np.sqrt(n)  # 99.9 % KS quantile is 1.95/sqrt(n)
        p3 = 2 * stats.norm.sf(3)
        assert abs(np.mean(np.abs(z) > 3) - p3) < 5 * np.sqrt(p3 / n)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gaussian_block_is_standard_normal(dtype):
    shape = (300, 1000)
    z1, z2 = (np.asarray(z, np.float64).ravel() for z in gaussian_block(jax.random.PRNGKey(0), shape, dtype))
    n = z1.size
    _check_standard_normal((z1, z2), n)
    # the two halves of a pair, neighbouring elements and two keys are uncorrelated
    z3 = np.asarray(gaussian(jax.random.PRNGKey(1), shape, dtype), np.float64).ravel()
    for a, b in ((z1, z2), (z1[1:], z1[:-1]), (z2[1000:], z2[:-1000]), (z1, z3)):
        assert abs(np.mean(a * b)) < 5 / np.sqrt(n)
    # r^2 = z1^2 + z2^2 is exponential with mean 2 (a Box-Muller pair is jointly Gaussian)
    assert stats.kstest((z1**2 + z2**2) / 2, "expon").statistic < 2.0 / np.sqrt(n)


def test_gaussian_ars_block_is_standard_normal():
    shape = (300, 1000)
    zs = [np.asarray(z, np.float64).ravel() for z in gaussian_ars_block(jax.random.PRNGKey(0), shape)]
    n = zs[0].size
    assert len(zs) == 4
    _check_standard_normal(zs, n)
    c = np.corrcoef(np.stack(zs + [zs[0][1:].tolist() + [0.0]]))  # the four steps and a neighbour
    assert np.max(np.abs(c - np.eye(5))) < 5 / np.sqrt(n)
    for a, b in ((zs[0], zs[1]), (zs[2], zs[3])):
        assert stats.kstest((a**2 + b**2) / 2, "expon").statistic < 2.0 / np.sqrt(n)


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
    multiple of any block (2, 4 and 32)."""
    sde = _PureNoiseSDE()
    n, steps = 2_000_000, 37
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
