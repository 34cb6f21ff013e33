import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from assimilax.observations import LinearObservation, NonlinearObservation


def test_partial_and_every_kth_select_components():
    x = jnp.arange(10.0)
    op = LinearObservation.every_kth(10, 3, 0.5)
    np.testing.assert_array_equal(op(x), [0.0, 3.0, 6.0, 9.0])
    np.testing.assert_allclose(op.R, 0.25 * np.eye(4))
    op = LinearObservation.partial([1, 4], 10, [1.0, 2.0])
    np.testing.assert_array_equal(op(x), [1.0, 4.0])
    np.testing.assert_allclose(op.R, np.diag([1.0, 4.0]))


def test_nonlinear_operators_and_jacobian():
    x = jnp.array([0.5, -1.0, 2.0])
    op = NonlinearObservation("arctan", 3, 0.1)
    np.testing.assert_allclose(op(x), np.arctan([0.5, -1.0, 2.0]))
    np.testing.assert_allclose(op.jacobian(x), np.diag(1 / (1 + np.array([0.5, -1.0, 2.0]) ** 2)), rtol=1e-12)
    op = NonlinearObservation("cubic", 3, 0.1, indices=[2])
    np.testing.assert_allclose(op(x), [8.0])
    np.testing.assert_allclose(op.jacobian(x), [[0.0, 0.0, 12.0]])


def test_sample_has_covariance_R():
    R = jnp.array([[1.0, 0.3], [0.3, 0.5]])
    op = LinearObservation(jnp.eye(2), R)
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    ys = jax.vmap(lambda k: op.sample(jnp.zeros(2), key=k))(keys)
    # Monte Carlo error of a covariance entry ~ sqrt(2/n) ~ 0.01
    np.testing.assert_allclose(np.cov(np.asarray(ys).T), R, atol=0.04)


def test_log_likelihood_matches_scipy():
    R = np.array([[1.0, 0.3], [0.3, 0.5]])
    H = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    op = LinearObservation(H, R)
    x = np.array([0.2, -0.3, 0.7]); y = np.array([1.0, 0.0])
    np.testing.assert_allclose(op.log_likelihood(jnp.asarray(y), jnp.asarray(x)), multivariate_normal(H @ x, R).logpdf(y), rtol=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"R must have shape \(2, 2\), got \(3, 3\)"):
        LinearObservation(jnp.ones((2, 3)), jnp.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        LinearObservation(jnp.eye(2), -jnp.eye(2))
    with pytest.raises(ValueError, match="indices"):
        LinearObservation.partial([5], 3, 1.0)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        NonlinearObservation("sine", 3, 1.0)


def test_diagonal_noise_is_stored_as_a_vector_and_agrees_with_dense_R():
    big = NonlinearObservation("arctan", 10**6, 0.05)
    assert big.R_full is None and big.noise_var.shape == (10**6,)
    y = big.sample(jnp.zeros(10**6), key=jax.random.PRNGKey(0))
    assert abs(float(jnp.std(y)) - 0.05) < 1e-3
    diag = NonlinearObservation("cubic", 3, [0.1, 0.2, 0.3])
    dense = NonlinearObservation("cubic", 3, jnp.diag(jnp.array([0.1, 0.2, 0.3]) ** 2))
    assert dense.noise_var is None
    np.testing.assert_allclose(diag.R, dense.R)
    x, yy = jnp.array([0.1, -0.2, 0.3]), jnp.array([0.0, 0.1, 0.0])
    np.testing.assert_allclose(diag.log_likelihood(yy, x), dense.log_likelihood(yy, x), rtol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        NonlinearObservation("arctan", 3, 0.0)
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        NonlinearObservation("arctan", 3, [0.1, 0.2])


@pytest.mark.parametrize("noise", [-1.0, 0.0, np.nan, np.inf, [0.1, -0.2, 0.3], [0.1, np.nan, 0.3]])
def test_negative_zero_or_nonfinite_noise_std_is_refused(noise):
    # a standard deviation enters R as its square, so -1 would otherwise pass as R = I
    for make in (lambda: LinearObservation.full(3, noise), lambda: LinearObservation.partial([0, 1, 2], 5, noise),
                 lambda: NonlinearObservation("arctan", 3, noise)):
        with pytest.raises(ValueError, match="noise standard deviations must be positive and finite"):
            make()


def test_negative_std_error_names_the_value_and_component():
    with pytest.raises(ValueError, match=r"got \[-0\.2\] at components \[1\]"):
        LinearObservation.full(3, [0.1, -0.2, 0.3])
    with pytest.raises(ValueError, match=r"got \[-1\.0\]$"):
        LinearObservation.full(3, -1.0)
    # a positive std is still accepted, and a traced one is not checked (no concrete value)
    np.testing.assert_allclose(LinearObservation.full(2, 0.5).R, 0.25 * np.eye(2))
    R = jax.jit(lambda s: NonlinearObservation("arctan", 2, s).R)(jnp.asarray(-0.5))
    np.testing.assert_allclose(R, 0.25 * np.eye(2))
