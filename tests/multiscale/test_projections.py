"""Algebra of the resolution projections: right inverses, nesting, adjoints, projectors, and the
optimal lift against the dense Gaussian conditional mean (computed independently here)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assimilax.multiscale import (Hierarchy, gaussian_lift_matrix, lift, mean_power, restrict, restriction_matrix,
                                  stationary_lift, stationary_lift_weights)

KINDS = ["block", "spectral"]
sizes = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))  # (m, f, f2): n = m * f * f2


def _field(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ndim", [1, 2])
@settings(max_examples=5)
@given(mff=sizes, seed=st.integers(0, 1000))
def test_lift_is_right_inverse(kind, ndim, mff, seed):
    m, f, _ = mff
    xc = _field((3,) + (m,) * ndim, seed)
    np.testing.assert_allclose(restrict(lift(xc, f, kind=kind, ndim=ndim), f, kind=kind, ndim=ndim), xc, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ndim", [1, 2])
@settings(max_examples=5)
@given(mff=sizes, seed=st.integers(0, 1000))
def test_nesting(kind, ndim, mff, seed):
    m, f1, f2 = mff
    x = _field((2,) + (m * f1 * f2,) * ndim, seed)
    direct = restrict(x, f1 * f2, kind=kind, ndim=ndim)
    two_step = restrict(restrict(x, f2, kind=kind, ndim=ndim), f1, kind=kind, ndim=ndim)
    np.testing.assert_allclose(direct, two_step, atol=1e-12)
    if f1 > 1 and f2 > 1:
        h = Hierarchy((m, m * f1, m * f1 * f2), kind, ndim)
        np.testing.assert_allclose(h.restrict(x, 0), h.coarsen(h.restrict(x, 1), 0), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ndim", [1, 2])
@settings(max_examples=5)
@given(mff=sizes)
def test_adjoint_and_projector(kind, ndim, mff):
    m, f, _ = mff
    n = m * f
    P = np.asarray(restriction_matrix(n, f, kind=kind, ndim=ndim))
    eye_c = jnp.eye(m ** ndim).reshape((m ** ndim,) + (m,) * ndim)
    L = np.asarray(lift(eye_c, f, kind=kind, ndim=ndim).reshape(m ** ndim, -1)).T
    if kind == "block" or m % 2 == 1 or f == 1:
        np.testing.assert_allclose(P.T, L / f ** ndim, atol=1e-12)  # P^T = f^-d L
    else:
        # the coarse Nyquist cosine has twice the squared norm per amplitude of the other modes:
        # P^T = f^-d L N, with N doubling the coarse Nyquist coefficient along each axis
        w = np.ones(m)
        w[m // 2] = 2.0
        F = np.fft.fft(np.eye(m), axis=0)
        N1 = (np.linalg.inv(F) @ np.diag(w) @ F).real
        N = N1 if ndim == 1 else np.kron(N1, N1)
        np.testing.assert_allclose(P.T, L @ N / f ** ndim, atol=1e-12)
        assert not np.allclose(P.T, L / f ** ndim)
    proj = L @ P
    np.testing.assert_allclose(proj @ proj, proj, atol=1e-12)
    np.testing.assert_allclose(proj, proj.T, atol=1e-12)
    assert np.linalg.matrix_rank(proj) == m ** ndim


def test_block_and_spectral_closed_forms():
    x = jnp.arange(8.0)
    np.testing.assert_allclose(restrict(x, 2, kind="block"), [0.5, 2.5, 4.5, 6.5])
    np.testing.assert_allclose(lift(jnp.array([1.0, 2.0]), 2, kind="block"), [1, 1, 2, 2])
    j = np.arange(16)
    # modes 1 and 3 survive truncation to 8 points, mode 5 is removed; cos(4.) (the coarse Nyquist) survives
    u = np.cos(2 * np.pi * j / 16) + np.sin(2 * np.pi * 3 * j / 16) + np.cos(2 * np.pi * 5 * j / 16)
    jc = np.arange(8)
    np.testing.assert_allclose(restrict(jnp.asarray(u), 2), np.cos(2 * np.pi * jc / 8) + np.sin(2 * np.pi * 3 * jc / 8),
                               atol=1e-12)
    nyq = np.cos(np.pi * j / 2)  # k = 4 on 16 points
    np.testing.assert_allclose(restrict(jnp.asarray(nyq), 2), np.cos(np.pi * jc), atol=1e-12)
    np.testing.assert_allclose(restrict(jnp.asarray(np.sin(np.pi * j / 2)), 2), 0.0, atol=1e-12)


def _circulant_cov(power, n, ndim):
    """Dense covariance of a homogeneous real field with DFT power `power`: C = F^H diag(S) F / n^(2d)."""
    size = n ** ndim
    F = np.fft.fftn(np.eye(size).reshape((size,) + (n,) * ndim), axes=tuple(range(1, ndim + 1))).reshape(size, size)
    return (F.conj().T @ np.diag(np.asarray(power).reshape(-1)) @ F).real / size ** 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ndim", [1, 2])
@settings(max_examples=5)
@given(mff=sizes, seed=st.integers(0, 1000))
def test_stationary_lift_is_dense_conditional_mean(kind, ndim, mff, seed):
    m, f, _ = mff
    n = m * f
    rng = np.random.default_rng(seed)
    k = np.abs(np.fft.fftfreq(n, 1.0 / n))
    kk = k if ndim == 1 else np.hypot(k[:, None], k[None, :])
    power = (1.0 + kk) ** -2.5 * (1 + 0.5 * rng.random(kk.shape))
    power = 0.5 * (power + power[(-np.arange(n)) % n] if ndim == 1 else power + power[np.ix_(-np.arange(n) % n, -np.arange(n) % n)])
    cov = _circulant_cov(power, n, ndim)
    P = np.asarray(restriction_matrix(n, f, kind=kind, ndim=ndim))
    # independent dense conditional mean of x given y = P x for x ~ N(0, cov)
    gram = P @ cov @ P.T
    xs = rng.multivariate_normal(np.zeros(n ** ndim), cov, size=3)
    ys = xs @ P.T
    dense = np.linalg.solve(gram, ys.T).T @ (cov @ P.T).T
    w = stationary_lift_weights(jnp.asarray(power), f, kind=kind, ndim=ndim)
    yc = jnp.asarray(ys.reshape((3,) + (m,) * ndim))
    ours = stationary_lift(yc, w, ndim=ndim).reshape(3, -1)
    np.testing.assert_allclose(ours, dense, atol=1e-9 * np.abs(dense).max() + 1e-12)
    np.testing.assert_allclose(np.asarray(gaussian_lift_matrix(jnp.asarray(cov), jnp.asarray(P))) @ ys.T, dense.T,
                               atol=1e-9 * np.abs(dense).max() + 1e-12)
    # P L = I for the optimal lift too
    np.testing.assert_allclose(restrict(stationary_lift(yc, w, ndim=ndim), f, kind=kind, ndim=ndim), yc, atol=1e-10)


def test_spectral_optimal_lift_is_zero_padding():
    power = jnp.asarray(1.0 / (1.0 + np.abs(np.fft.fftfreq(32, 1 / 32))) ** 2)
    w = stationary_lift_weights(power, 4, kind="spectral")
    xc = _field((5, 8), 0)
    np.testing.assert_allclose(stationary_lift(xc, w), lift(xc, 4, kind="spectral"), atol=1e-12)


def test_mean_power_parseval():
    x = _field((7, 16, 16), 1)
    p = mean_power(x, ndim=2)
    np.testing.assert_allclose(jnp.sum(p) / 16 ** 2, jnp.mean(jnp.sum(x ** 2, axis=(1, 2))), rtol=1e-12)


def test_jit_vmap_and_dtype():
    x = _field((4, 32), 2).astype(jnp.float32)
    out = jax.jit(jax.vmap(lambda v: restrict(v, 4, kind="spectral")))(x)
    assert out.shape == (4, 8) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, restrict(x, 4), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="not divisible"):
        restrict(jnp.zeros(10), 3)
    with pytest.raises(ValueError, match="kind"):
        restrict(jnp.zeros(8), 2, kind="wavelet")
    with pytest.raises(ValueError, match="square"):
        restrict(jnp.zeros((8, 4)), 2, ndim=2)
    with pytest.raises(ValueError, match="factor"):
        lift(jnp.zeros(4), 0)
    with pytest.raises(ValueError, match="divide"):
        Hierarchy((4, 6, 12))
    h = Hierarchy.dyadic(16, 3, kind="block")
    assert h.sizes == (4, 8, 16)
    with pytest.raises(ValueError, match="16 points"):
        h.restrict(jnp.zeros(8), 0)
    with pytest.raises(ValueError, match="finer"):
        h.restrict(jnp.zeros(8), 2, source=1)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        stationary_lift_weights(jnp.ones((8, 4)), 2, ndim=1)
