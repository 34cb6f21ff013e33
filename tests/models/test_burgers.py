"""Burgers1D against independent references: the exact product on an unaliased grid, the
Cole--Hopf solution, characteristics before the shock, linear decay, conservation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

from assimilax.filters import ensemble_kalman_filter
from assimilax.models import Burgers1D
from assimilax.observations import LinearObservation
from assimilax.simulate import simulate


def exact_truncated_nonlinear(u_hat, n, K, length=2 * np.pi):
    """-(u^2/2)_x of a band-limited field, the product formed on a 2n grid (no aliasing since
    its modes reach 2K < n), then truncated to |m| <= K; rfft layout of n points."""
    big = np.zeros(n + 1, complex)
    big[: n // 2 + 1] = u_hat * 2  # rfft of 2n points: scale n -> 2n
    u = np.fft.irfft(big, 2 * n)
    sq_hat = np.fft.rfft(u * u)[: n // 2 + 1] / 2  # back to the n-point scale
    m = np.arange(n // 2 + 1)
    k = 2 * np.pi * m / length
    return np.where(m <= K, -0.5j * k * sq_hat, 0.0)


def band_limited(rng, n, K):
    u_hat = np.zeros(n // 2 + 1, complex)
    u_hat[1 : K + 1] = (rng.normal(size=K) + 1j * rng.normal(size=K)) * n / np.arange(1, K + 1)
    return u_hat


@pytest.mark.parametrize("n", [16, 64, 254])
def test_nonlinear_term_matches_unaliased_product(n):
    m = Burgers1D(n=n, nu=0.0)
    rng = np.random.default_rng(n)
    u_hat = band_limited(rng, n, m.cutoff)
    got = np.asarray(m.nonlinear(jnp.asarray(u_hat)))
    ref = exact_truncated_nonlinear(u_hat, n, m.cutoff)
    np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max())


def test_dealiasing_exact_on_two_thirds_rule():
    """Every pair of kept modes (a, b): the product's aliases of a + b > n/2 land beyond the
    cut-off and are removed; the kept output is exactly the true product's kept part."""
    n = 24
    m = Burgers1D(n=n, nu=0.0)
    K = m.cutoff
    assert K == 7 and 3 * K < n <= 3 * (K + 1)
    x = m.grid
    for a in range(1, K + 1):
        for b in range(a, K + 1):
            u = np.cos(a * x) + np.cos(b * x)
            got = np.asarray(m.nonlinear(jnp.fft.rfft(jnp.asarray(u))))
            # u^2 = 1 + cos((a-b)x) + cos((a+b)x) + (cos 2ax + cos 2bx)/2; -(u^2/2)_x exactly:
            ref = np.zeros(n // 2 + 1, complex)
            for k, c in ((b - a, 1.0), (a + b, 1.0), (2 * a, 0.5), (2 * b, 0.5)):
                if 0 < k <= K:
                    ref[k] += -0.5j * k * c * n / 2
            np.testing.assert_allclose(got, ref, atol=1e-9 * n, err_msg=f"modes {a}, {b}")
    # without the mask the product of the top modes would alias into a kept mode (sanity check
    # that the test exercises aliasing): K + K > n/2 and n - 2K <= n/2 is a mode of the grid
    assert 2 * K > n // 2


def test_modes_beyond_cutoff_are_projected_out():
    m = Burgers1D(n=32, nu=0.1)
    x = jnp.asarray(m.grid)
    high = jnp.cos((m.cutoff + 1) * x) + jnp.sin(15 * x)
    np.testing.assert_allclose(m.vector_field(high), 0.0, atol=1e-12)
    np.testing.assert_allclose(m.step(high), 0.0, atol=1e-12)


def cole_hopf_sine(x, t, nu):
    """Exact viscous Burgers solution from u0 = sin x on [0, 2pi): u = -2 nu phi_x / phi with
    phi = I0(a) + 2 sum I_n(a) e^{-nu n^2 t} cos(nx), a = 1/(2 nu) (scaled Bessel functions)."""
    a = 1 / (2 * nu)
    ns = np.arange(1, 200)[:, None]
    c = ive(ns, a) * np.exp(-nu * ns ** 2 * t)
    phi = ive(0, a) + 2 * np.sum(c * np.cos(ns * x), axis=0)
    phi_x = -2 * np.sum(ns * c * np.sin(ns * x), axis=0)
    return -2 * nu * phi_x / phi


@pytest.mark.parametrize("nu", [0.1, 0.05])
def test_viscous_solution_matches_cole_hopf(nu):
    m = Burgers1D(n=256, nu=nu, dt=1e-3)
    x = m.grid
    u = m.integrate(jnp.asarray(np.sin(x)), 1500)
    ref = cole_hopf_sine(x, 1.5, nu)
    err = np.max(np.abs(np.asarray(u) - ref))
    assert err < 1e-6, err  # spatial truncation: the spectrum at K = 85 is ~1e-6 for nu = 0.05
    # and the solution did steepen (a decaying heat profile would be far off)
    assert np.max(np.abs(np.gradient(ref, x))) > 3


def test_inviscid_solution_matches_characteristics_and_conserves():
    m = Burgers1D(n=256, nu=0.0, dt=2e-3)
    x = m.grid
    u0 = 0.3 + np.sin(x)
    T = 0.5  # shock at t = 1 for sin x
    u = np.asarray(m.integrate(jnp.asarray(u0), 250))
    # characteristics: u = u0(x - u t), solved by Newton
    xi = x.copy()
    for _ in range(50):
        g = xi + (0.3 + np.sin(xi)) * T - x
        xi -= g / (1 + np.cos(xi) * T)
    ref = 0.3 + np.sin(xi)
    assert np.max(np.abs(u - ref)) < 1e-8
    # integral of u exact, of u^2 to the time-stepping error (Galerkin truncation conserves it)
    assert abs(u.mean() - u0.mean()) < 1e-13
    e0, e1 = np.mean(u0 ** 2), np.mean(u ** 2)
    assert abs(e1 - e0) / e0 < 1e-9


@pytest.mark.parametrize("k", [1, 3, 10])
def test_small_mode_decays_at_linear_rate(k):
    nu, dt, steps = 0.05, 0.01, 200
    m = Burgers1D(n=64, nu=nu, dt=dt)
    eps = 1e-9  # the nonlinear term is O(eps^2)
    u0 = eps * np.cos(k * m.grid)
    u = np.asarray(m.integrate(jnp.asarray(u0), steps))
    np.testing.assert_allclose(u, u0 * np.exp(-nu * k ** 2 * dt * steps), rtol=1e-6, atol=1e-20)
    # a constant is an exact steady solution
    c = np.asarray(m.integrate(jnp.full(64, 0.7), steps))
    np.testing.assert_allclose(c, 0.7, rtol=1e-14)


def test_step_is_fourth_order_in_time():
    """Same grid, shrinking dt, against a run at dt / 8 (the spatial error cancels)."""
    nu, T, n = 0.05, 0.4, 128
    x = Burgers1D(n=n).grid
    u0 = jnp.asarray(np.sin(x) + 0.5 * np.cos(2 * x))
    ref = np.asarray(Burgers1D(n=n, nu=nu, dt=0.04 / 64).integrate(u0, 640))
    errs = []
    dts = [0.04 / 4, 0.04 / 8, 0.04 / 16]
    for dt in dts:
        m = Burgers1D(n=n, nu=nu, dt=dt)
        errs.append(np.max(np.abs(np.asarray(m.integrate(u0, int(round(T / dt)))) - ref)))
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 3.5 < slope < 4.5, (errs, slope)


def test_random_initial_condition_is_a_sum_of_sinusoids_and_reproducible():
    m = Burgers1D(n=128)
    key = jax.random.PRNGKey(3)
    u0 = m.random_initial_condition(key, n_waves=3, max_wavenumber=5)
    np.testing.assert_array_equal(u0, m.random_initial_condition(key, n_waves=3, max_wavenumber=5))
    assert not np.allclose(u0, m.random_initial_condition(jax.random.PRNGKey(4), n_waves=3, max_wavenumber=5))
    spec = np.abs(np.fft.rfft(np.asarray(u0)))
    assert np.all(spec[6:] < 1e-9 * spec.max()) and spec[0] < 1e-9 * spec.max()
    assert np.count_nonzero(spec > 1e-9 * spec.max()) <= 3
    t1 = m.trajectory(u0, 20)
    t2 = m.trajectory(m.random_initial_condition(key, n_waves=3, max_wavenumber=5), 20)
    np.testing.assert_array_equal(t1, t2)


def test_float32_in_float32_out_and_vmap():
    m = Burgers1D(n=64)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    U = jax.vmap(lambda k: m.random_initial_condition(k, dtype=jnp.float32))(keys)
    assert U.dtype == jnp.float32 and U.shape == (4, 64)
    out = jax.jit(jax.vmap(lambda u: m.integrate(u, 10)))(U)
    assert out.dtype == jnp.float32
    one = np.stack([np.asarray(m.integrate(u, 10)) for u in U])
    np.testing.assert_allclose(out, one, rtol=1e-5, atol=1e-6)
    # float32 agrees with float64 to single precision
    out64 = np.asarray(jax.vmap(lambda u: m.integrate(u, 10))(U.astype(jnp.float64)))
    np.testing.assert_allclose(out, out64, atol=1e-5)


def test_simulate_and_enkf_accept_the_model():
    m = Burgers1D(n=32, nu=0.1)
    obs = LinearObservation.every_kth(32, 4, 0.05)
    x0 = m.random_initial_condition(jax.random.PRNGKey(0), dtype=jnp.float64)
    sim = simulate(m, obs, x0, 5, key=jax.random.PRNGKey(1), steps_per_obs=2)
    assert sim.observations.shape == (5, 8)
    E0 = x0[None, :] + 0.1 * jax.random.normal(jax.random.PRNGKey(2), (10, 32))
    res = ensemble_kalman_filter(m, obs, sim.observations, E0, key=jax.random.PRNGKey(3), steps_per_obs=2)
    assert np.all(np.isfinite(res.analysis_mean)) and res.analysis_mean.shape == (5, 32)


@pytest.mark.parametrize("kw, match", [
    (dict(n=31), "even integer"), (dict(n=2), "even integer"), (dict(n=64.0), "even integer"),
    (dict(nu=-0.1), "nu"), (dict(dt=0.0), "dt"), (dict(dt=-1e-3), "dt"), (dict(length=0.0), "length"),
])
def test_bad_input_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Burgers1D(**kw)


def test_bad_initial_condition_arguments_refused():
    m = Burgers1D(n=16)
    with pytest.raises(ValueError, match="max_wavenumber"):
        m.random_initial_condition(jax.random.PRNGKey(0), max_wavenumber=m.cutoff + 1)
    with pytest.raises(ValueError, match="n_waves"):
        m.random_initial_condition(jax.random.PRNGKey(0), n_waves=0)


def test_integrate_and_trajectory_equal_repeated_steps():
    m = Burgers1D(n=32, nu=0.1)
    u0 = m.random_initial_condition(jax.random.PRNGKey(5), dtype=jnp.float64)
    u = u0
    for _ in range(9):
        u = m.step(u)
    np.testing.assert_allclose(m.integrate(u0, 9), u, atol=1e-13)
    traj = m.trajectory(u0, 9)
    assert traj.shape == (10, 32)
    np.testing.assert_array_equal(traj[0], u0)
    np.testing.assert_allclose(traj[-1], u, atol=1e-13)


@pytest.mark.parametrize("n", [32, 256])
def test_vmapped_batch_equals_one_trajectory_at_a_time(n):
    """The batched path (``jax.vmap`` over initial conditions, and over a batched viscosity) gives
    each trajectory's own result to rounding: integrate, trajectory, snapshots, step,
    float64 (1e-12 of the field's size) and float32 (1e-5)."""
    m = Burgers1D(n=n, nu=0.05)
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    for dtype, tol in ((jnp.float64, 1e-12), (jnp.float32, 1e-5)):
        U = jax.vmap(lambda k: m.random_initial_condition(k, dtype=dtype))(keys)
        calls = {"integrate": lambda mm, u: mm.integrate(u, 40),
                 "trajectory": lambda mm, u: mm.trajectory(u, 8),
                 "snapshots": lambda mm, u: mm.snapshots(u, 3, 5),
                 "step": lambda mm, u: mm.step(u)}
        for name, call in calls.items():
            batched = np.asarray(jax.jit(jax.vmap(lambda u, call=call: call(m, u)))(U))
            one = np.stack([np.asarray(jax.jit(lambda u, call=call: call(m, u))(u)) for u in U])
            assert batched.dtype == one.dtype == dtype, name
            np.testing.assert_allclose(batched, one, rtol=0, atol=tol * np.abs(one).max(), err_msg=name)
    nus = jnp.asarray([0.02, 0.05, 0.2])
    u0 = m.random_initial_condition(keys[0], dtype=jnp.float64)
    batched = jax.vmap(lambda nu: Burgers1D(n=n, nu=nu).integrate(u0, 30))(nus)
    one = np.stack([np.asarray(Burgers1D(n=n, nu=float(nu)).integrate(u0, 30)) for nu in nus])
    np.testing.assert_allclose(batched, one, rtol=0, atol=1e-12 * np.abs(one).max())
    assert np.abs(one[0] - one[2]).max() > 1e-3 * np.abs(one).max()
