"""Haar rotations (:mod:`assimilax.filters.rotations`) against the Haar law itself.

Independent references: the exact law of one entry of a Haar matrix on O(n) (one coordinate of a
uniform point on the sphere, (O_ij + 1)/2 ~ Beta((n-1)/2, (n-1)/2)), its first and second
moments, the fair determinant, the complete characterisation of Haar on O(2) (uniform angle,
independent fair determinant), and SciPy's sign-corrected QR sampler
(``scipy.stats.ortho_group``, Mezzadri 2007) for the law of the trace. The mean-preserving
rotations are read in a basis the library does not use (SciPy's Helmert matrix).

Every law test runs at a stated level ALPHA with fixed keys (deterministic). The same tests are
run on broken constructions (NumPy, written here) and must reject them: QR without the sign
correction, Householder products without their signs, without the last random sign, and one fixed
matrix for every draw. So the tests can fail.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.stats as st

from assimilax.filters.rotations import haar_orthogonal, mean_preserving_rotations

#: level of each statistical test (fixed keys: each verdict is deterministic)
ALPHA = 1e-3
#: |z| bound on each of the (many) moment statistics: two-sided 5.0 sigma is 5.7e-7 per
#: statistic, under 1e-3 for the at most ~1,000 statistics of one test (Bonferroni)
Z_MAX = 5.0


# --------------------------------------------------------------------------- law checks
def entry_ks_pvalues(O, entries=None):
    """KS p-values of entries of ``O`` ``(S, n, n)`` against (O_ij + 1)/2 ~ Beta((n-1)/2, (n-1)/2)."""
    n = O.shape[-1]
    if entries is None:
        entries = sorted({(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1), (n // 2, n // 3)})
    law = st.beta((n - 1) / 2, (n - 1) / 2)
    return {ij: st.kstest((O[:, ij[0], ij[1]] + 1) / 2, law.cdf).pvalue for ij in entries}


def moment_zscores(O):
    """z-scores of E O_ij = 0 and E O_ij O_kl = delta_ik delta_jl / n (standard errors from the
    sample), over the entries in rows and columns {0, 1, n//2, n-2, n-1} (all entries up to
    n = 5) and all pairs of them."""
    S, n, _ = O.shape
    sub = sorted({i for i in (0, 1, n // 2, n - 2, n - 1) if 0 <= i < n})
    v = O[:, sub][:, :, sub].reshape(S, len(sub) ** 2)
    z1 = v.mean(0) / (v.std(0, ddof=1) / np.sqrt(S))
    iu = np.triu_indices(v.shape[1])
    prod = (v[:, :, None] * v[:, None, :])[:, iu[0], iu[1]]
    target = (np.eye(v.shape[1]) / n)[iu]
    z2 = (prod.mean(0) - target) / (prod.std(0, ddof=1) / np.sqrt(S))
    return z1, z2


def det_pvalue(O):
    """Binomial p-value of P(det O = +1) = 1/2."""
    k = int(np.sum(np.linalg.det(O) > 0))
    return st.binomtest(k, O.shape[0], 0.5).pvalue


def o2_pvalue(O):
    """Chi-square p-value of Haar on O(2): first-column angle uniform and independent of the
    determinant (16 cells: determinant sign x 8 angle bins, equally likely under Haar)."""
    theta = np.arctan2(O[:, 1, 0], O[:, 0, 0]) % (2 * np.pi)
    cell = (np.linalg.det(O) > 0) * 8 + np.minimum((theta / (2 * np.pi) * 8).astype(int), 7)
    counts = np.bincount(cell, minlength=16)
    return st.chisquare(counts).pvalue


def trace_pvalue(O, seed=0):
    """Two-sample KS p-value of trace(O) against SciPy's Haar sampler (sign-corrected QR)."""
    n = O.shape[-1]
    ref = st.ortho_group.rvs(n, size=O.shape[0], random_state=np.random.default_rng(seed))
    ref = ref.reshape(-1, n, n)
    return st.ks_2samp(np.trace(O, axis1=1, axis2=2), np.trace(ref, axis1=1, axis2=2)).pvalue


def haar_verdict(O):
    """The smallest p-value of the battery (entry KS, determinant, and the trace for n >= 3 or
    the complete O(2) test for n = 2, where the trace of every reflection is 0: an atom that a KS
    test cannot compare) and the largest moment |z|."""
    ps = list(entry_ks_pvalues(O).values()) + [det_pvalue(O)]
    ps.append(o2_pvalue(O) if O.shape[-1] == 2 else trace_pvalue(O))
    z1, z2 = moment_zscores(O)
    return min(ps), max(np.abs(z1).max(), np.abs(z2).max())


# -------------------------------------------------------- broken constructions (NumPy)
def qr_without_sign_correction(rng, S, n):
    return np.stack([np.linalg.qr(rng.standard_normal((n, n)))[0] for _ in range(S)])


def householder_product_np(rng, S, n, *, signs=True, random_last_sign=True):
    """Stewart's product written independently in NumPy, with switchable defects."""
    out = np.empty((S, n, n))
    for t in range(S):
        Q = np.eye(n)
        d = np.ones(n)
        for k in range(n - 1):
            x = rng.standard_normal(n - k)
            s = 1.0 if x[0] >= 0 else -1.0
            v = x.copy()
            v[0] += s * np.linalg.norm(x)
            Hk = np.eye(n)
            Hk[k:, k:] -= 2.0 * np.outer(v, v) / (v @ v)
            Q = Q @ Hk
            d[k] = -s
        d[n - 1] = np.sign(rng.standard_normal()) if random_last_sign else 1.0
        out[t] = Q * d[None, :] if signs else Q
    return out


def helmert_coordinates(W):
    """O with W = V diag(1, O) V^T in SciPy's Helmert basis V (first column 1/sqrt(N))."""
    V = sla.helmert(W.shape[-1], full=True).T
    B = np.einsum("ji,tjk,kl->til", V, W, V)
    return B


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-13), (jnp.float32, 3e-6)])
@pytest.mark.parametrize("N", [2, 3, 7, 28, 65])
def test_rotations_are_orthogonal_and_fix_the_ones_vector(N, dtype, tol):
    W = np.asarray(mean_preserving_rotations(jax.random.PRNGKey(N), 64, N, dtype))
    assert W.shape == (64, N, N) and W.dtype == dtype
    ones = np.ones(N)
    np.testing.assert_allclose(W @ ones, np.broadcast_to(ones, (64, N)), atol=tol)
    np.testing.assert_allclose(np.einsum("i,tij->tj", ones, W), np.broadcast_to(ones, (64, N)), atol=tol)
    np.testing.assert_allclose(np.einsum("tji,tjk->tik", W, W), np.broadcast_to(np.eye(N), W.shape), atol=tol)
    B = helmert_coordinates(W.astype(np.float64))
    np.testing.assert_allclose(B[:, 0, :], np.broadcast_to(np.eye(N)[0], (64, N)), atol=10 * tol)
    np.testing.assert_allclose(B[:, :, 0], np.broadcast_to(np.eye(N)[0], (64, N)), atol=10 * tol)


@pytest.mark.parametrize("n", [1, 2, 5, 27])
def test_haar_orthogonal_is_orthogonal(n):
    O = np.asarray(haar_orthogonal(jax.random.PRNGKey(0), 50, n))
    np.testing.assert_allclose(np.einsum("tji,tjk->tik", O, O), np.broadcast_to(np.eye(n), O.shape), atol=1e-13)


def test_same_key_same_draws_and_draws_differ():
    k = jax.random.PRNGKey(7)
    a, b = mean_preserving_rotations(k, 5, 6), mean_preserving_rotations(k, 5, 6)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = np.asarray(mean_preserving_rotations(jax.random.PRNGKey(8), 5, 6))
    assert np.abs(np.asarray(a) - c).min() > 0
    assert np.abs(np.asarray(a)[0] - np.asarray(a)[1]).max() > 1e-2
    typed = mean_preserving_rotations(jax.random.key(7), 5, 6)
    assert typed.shape == (5, 6, 6)
    jitted = jax.jit(lambda key: mean_preserving_rotations(key, 5, 6))(k)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(a), atol=1e-14)


def test_bad_input_is_refused():
    k = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="N must be an integer >= 2, got 1"):
        mean_preserving_rotations(k, 3, 1)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        mean_preserving_rotations(k, 0, 4)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        haar_orthogonal(k, 3, 0)
    with pytest.raises(ValueError, match="floating dtype"):
        haar_orthogonal(k, 3, 4, jnp.int32)
    with pytest.raises(ValueError, match=r"single PRNG key.*\(3,\)"):
        haar_orthogonal(jax.random.split(k, 3), 3, 4)


@pytest.mark.parametrize("n, S", [(2, 8000), (5, 20000), (27, 4000)])
def test_haar_orthogonal_has_the_haar_law(n, S):
    O = np.asarray(haar_orthogonal(jax.random.PRNGKey(100 + n), S, n))
    p, z = haar_verdict(O)
    assert p > ALPHA, f"Haar law rejected at level {ALPHA}: smallest p-value {p:.2e}"
    assert z < Z_MAX, f"moment z-score {z:.2f} >= {Z_MAX}"


@pytest.mark.parametrize("N, S", [(3, 8000), (6, 20000), (28, 4000)])
def test_mean_preserving_rotations_are_haar_on_the_complement_of_ones(N, S):
    B = helmert_coordinates(np.asarray(mean_preserving_rotations(jax.random.PRNGKey(200 + N), S, N)))
    p, z = haar_verdict(B[:, 1:, 1:])
    assert p > ALPHA, f"Haar law rejected at level {ALPHA}: smallest p-value {p:.2e}"
    assert z < Z_MAX, f"moment z-score {z:.2f} >= {Z_MAX}"


def test_draws_within_one_call_are_uncorrelated():
    O = np.asarray(haar_orthogonal(jax.random.PRNGKey(5), 20000, 4))
    a, b = O[:-1].reshape(19999, 16), O[1:].reshape(19999, 16)
    r = np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(16)])
    assert np.abs(r).max() * np.sqrt(19999) < Z_MAX


def test_the_numpy_reference_construction_passes_the_same_tests():
    O = householder_product_np(np.random.default_rng(1), 8000, 2)
    p, z = haar_verdict(O)
    assert p > ALPHA and z < Z_MAX


@pytest.mark.parametrize("broken", ["qr without sign correction", "no signs", "last sign fixed", "fixed matrix"])
def test_broken_constructions_fail_the_law_tests(broken):
    rng = np.random.default_rng(2)
    n, S = (2, 8000) if broken == "last sign fixed" else (5, 4000)
    if broken == "qr without sign correction":
        O = qr_without_sign_correction(rng, S, n)
    elif broken == "no signs":
        O = householder_product_np(rng, S, n, signs=False)
    elif broken == "last sign fixed":
        O = householder_product_np(rng, S, n, random_last_sign=False)
    else:
        O = np.broadcast_to(np.asarray(haar_orthogonal(jax.random.PRNGKey(3), 1, n)), (S, n, n)).copy()
        O += 1e-12 * rng.standard_normal(O.shape)  # finite standard errors for the z-scores
    p, z = haar_verdict(O)
    assert p < ALPHA or z > Z_MAX, f"{broken}: not rejected (smallest p {p:.2e}, max |z| {z:.2f})"
    if broken == "last sign fixed":  # the determinant is tied to the half-plane of the first column
        assert o2_pvalue(O) < ALPHA
    if broken in ("qr without sign correction", "no signs"):  # O_11 <= 0 always
        assert entry_ks_pvalues(O, [(0, 0)])[(0, 0)] < ALPHA
