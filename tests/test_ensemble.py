"""Member-axis statistics shared by the filters (assimilax._ensemble)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax._ensemble import mean_and_spread, member_mean


@pytest.mark.parametrize("shape", [(1, 7), (2, 3), (20, 1000), (5, 4, 6), (20, 7000), (3, 50000)])  # both sides of 2^17
def test_member_mean_equals_numpy(shape):
    E = np.random.default_rng(0).normal(3.0, 2.0, shape).astype(np.float32)
    np.testing.assert_allclose(member_mean(E), E.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)
    assert member_mean(E, keepdims=True).shape == (1,) + shape[1:]


def test_member_mean_keeps_float64_and_works_under_jit_and_vmap():
    assert jax.config.jax_enable_x64  # tests/conftest.py
    E = jnp.asarray(np.random.default_rng(1).normal(size=(9, 5)))
    m = jax.jit(member_mean)(E)
    assert m.dtype == jnp.float64
    np.testing.assert_allclose(m, np.asarray(E).mean(0), rtol=1e-14)
    B = np.random.default_rng(2).normal(size=(4, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(jax.vmap(member_mean)(B), B.mean(1), rtol=1e-5, atol=1e-6)


def test_mean_and_spread_match_unbiased_variance():
    E = np.random.default_rng(3).normal(1.0, 0.5, (20, 300))
    m, s = mean_and_spread(jnp.asarray(E, jnp.float32))
    np.testing.assert_allclose(m, E.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, np.sqrt(np.mean(np.var(E, axis=0, ddof=1))), rtol=1e-5)
    m1, s1 = mean_and_spread(jnp.ones((1, 4)))
    assert float(s1) == 0.0 and m1.shape == (4,)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="N >= 1"):
        member_mean(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        mean_and_spread(jnp.zeros((2, 3, 4)))
