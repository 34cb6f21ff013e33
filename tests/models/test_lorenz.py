import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from assimilax.models import LinearGaussian, Lorenz63, Lorenz96


def l63_numpy(x, s=10.0, r=28.0, b=8.0 / 3.0):
    return np.array([s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]])


def l96_numpy(x, F):
    d = len(x)
    return np.array([(x[(i + 1) % d] - x[(i - 2) % d]) * x[(i - 1) % d] - x[i] + F for i in range(d)])


def test_lorenz63_vector_field_matches_formula():
    rng = np.random.default_rng(0)
    m = Lorenz63()
    for _ in range(5):
        x = rng.normal(size=3) * 10
        np.testing.assert_allclose(m.vector_field(jnp.asarray(x)), l63_numpy(x), rtol=1e-12)


@pytest.mark.parametrize("d", [4, 5, 40])
def test_lorenz96_vector_field_matches_loop(d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=d) * 3
    m = Lorenz96(d, forcing=8.5)
    np.testing.assert_allclose(m.vector_field(jnp.asarray(x)), l96_numpy(x, 8.5), rtol=1e-12)


def test_lorenz96_vmap_does_not_couple_members():
    m = Lorenz96(10)
    ens = jax.random.normal(jax.random.PRNGKey(0), (6, 10)) + 8.0
    batched = jax.vmap(m.step)(ens)
    single = jnp.stack([m.step(e) for e in ens])
    np.testing.assert_allclose(batched, single, rtol=1e-12)
    # the roll acts on the last axis only, so even an unbatched (N, d) array gives the same rows
    np.testing.assert_allclose(m.vector_field(ens), jax.vmap(m.vector_field)(ens), rtol=1e-12)


def test_rk4_is_fourth_order_against_scipy():
    x0 = np.array([1.0, 2.0, 20.0])
    T = 0.2
    ref = solve_ivp(lambda t, x: l63_numpy(x), (0, T), x0, rtol=1e-13, atol=1e-13, method="DOP853").y[:, -1]
    errs = []
    dts = [0.02, 0.01, 0.005]
    for dt in dts:
        m = Lorenz63(dt=dt)
        errs.append(np.linalg.norm(np.asarray(m.integrate(jnp.asarray(x0), int(round(T / dt)))) - ref))
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 3.6 < slope < 4.4, (errs, slope)


def test_trajectory_and_integrate_agree():
    m = Lorenz96(8)
    x0 = jnp.full(8, 8.0).at[0].add(0.01)
    traj = m.trajectory(x0, 50)
    assert traj.shape == (51, 8)
    np.testing.assert_allclose(traj[-1], m.integrate(x0, 50), rtol=1e-12)
    np.testing.assert_allclose(traj[0], x0)


def test_jacobian_matches_finite_differences():
    m = Lorenz63()
    x = jnp.array([1.0, -2.0, 15.0])
    J = m.jacobian(x)
    eps = 1e-6
    fd = np.stack([(m.step(x + eps * e) - m.step(x - eps * e)) / (2 * eps) for e in jnp.eye(3)], axis=1)
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-8)


def test_lorenz96_rejects_small_dim():
    with pytest.raises(ValueError, match="dim >= 4"):
        Lorenz96(3)


def test_linear_gaussian_random_stable_and_validation():
    m = LinearGaussian.random_stable(6, key=jax.random.PRNGKey(3), spectral_radius=0.9)
    assert np.max(np.abs(np.linalg.eigvals(np.asarray(m.A)))) <= 0.9 + 1e-12
    np.linalg.cholesky(np.asarray(m.Q))
    with pytest.raises(ValueError, match=r"Q must have shape \(2, 2\)"):
        LinearGaussian(jnp.eye(2), jnp.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        LinearGaussian(jnp.eye(2), jnp.array([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match=r"A must have shape"):
        LinearGaussian(jnp.ones((2, 3)), jnp.eye(2))
