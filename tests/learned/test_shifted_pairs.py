"""shifted_pairs: the translations of analysis triples, and the shift-equivariant gain they give."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learned import fit_linear_analysis, shifted_pairs
from assimilax.observations import LinearObservation

jax.config.update("jax_enable_x64", True)


def test_rows_are_the_rolled_pairs():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    F, Y, Z = (jax.random.normal(kk, (7, s)) for kk, s in zip(k, (8, 4, 8)))
    F2, Y2, Z2 = shifted_pairs(F, Y, Z, state_shift=2, obs_shift=1, n_shifts=4)
    assert F2.shape == (28, 8) and Y2.shape == (28, 4) and Z2.shape == (28, 8)
    for s in range(4):
        rows = slice(7 * s, 7 * (s + 1))
        np.testing.assert_array_equal(F2[rows], np.roll(np.asarray(F), 2 * s, axis=1))
        np.testing.assert_array_equal(Y2[rows], np.roll(np.asarray(Y), s, axis=1))
        np.testing.assert_array_equal(Z2[rows], np.roll(np.asarray(Z), 2 * s, axis=1))
    for a, b in zip(shifted_pairs(F, Y, Z, state_shift=2, obs_shift=1, n_shifts=1), (F, Y, Z)):
        np.testing.assert_array_equal(a, b)


def test_fitted_gain_is_shift_equivariant():
    """Fitted on all shifts of every-other-site pairs, the gain commutes with the shift: rolling
    the state by 2 and the innovation by 1 rolls the increment by 2 (exactly, since the
    augmented design is invariant), while the fit on the raw pairs is not equivariant."""
    d, n = 12, 40
    obs = LinearObservation.every_kth(d, 2, 1.0)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    truth = jax.random.normal(k[0], (n, d))
    uf = truth + 0.5 * jax.random.normal(k[1], (n, d))
    ys = truth @ obs.H.T + jax.random.normal(k[2], (n, d // 2))
    T_aug = fit_linear_analysis(*shifted_pairs(uf, ys, truth, state_shift=2, obs_shift=1, n_shifts=d // 2), H=obs.H)
    T_raw = fit_linear_analysis(uf, ys, truth, H=obs.H)
    u, y = uf[0], ys[0]
    for T, equivariant in ((T_aug, True), (T_raw, False)):
        lhs, rhs = T(jnp.roll(u, 2), jnp.roll(y, 1)), jnp.roll(T(u, y), 2)
        assert bool(jnp.allclose(lhs, rhs, atol=1e-8)) is equivariant


@pytest.mark.parametrize("kw", [dict(n_shifts=0), dict(state_shift=1.5), dict(obs_shift=True)])
def test_bad_arguments(kw):
    F = jnp.zeros((3, 4))
    args = dict(state_shift=2, obs_shift=1, n_shifts=2) | kw
    with pytest.raises(ValueError):
        shifted_pairs(F, jnp.zeros((3, 2)), F, **args)
