"""The vectorised float32 arctangent against NumPy's float64 arctangent."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax._fastmath import arctan


def _grid():
    return np.concatenate([np.linspace(-60, 60, 400_001), np.logspace(-30, 30, 4001), -np.logspace(-30, 30, 4001),
                           [0.0, -0.0, np.inf, -np.inf, 0.4142135, 0.41421357, 2.4142134, 2.4142137]]).astype(np.float32)


def test_float32_within_three_ulp():
    x = _grid()
    ref = np.arctan(x.astype(np.float64))
    got = np.asarray(jax.jit(arctan)(jnp.asarray(x))).astype(np.float64)
    assert got.dtype == np.float64 and np.asarray(arctan(jnp.asarray(x))).dtype == np.float32
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    ulp = np.maximum(ulp, np.finfo(np.float32).smallest_subnormal)
    assert np.max(np.abs(got - ref) / ulp) <= 3.0
    assert np.all(np.sign(got) == np.sign(ref))


def test_float64_is_exact_library_arctan():
    x = np.linspace(-20, 20, 1001)
    np.testing.assert_array_equal(np.asarray(arctan(jnp.asarray(x))), np.asarray(jnp.arctan(jnp.asarray(x))))


def test_derivative_is_exact():
    x = jnp.asarray(np.linspace(-30, 30, 2001), dtype=jnp.float32)
    g = jax.vmap(jax.grad(arctan))(x)
    np.testing.assert_allclose(np.asarray(g), 1.0 / (1.0 + np.asarray(x, np.float64) ** 2), rtol=2e-6)
