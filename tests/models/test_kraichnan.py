"""Kraichnan2D against independent references: the advective form on an unaliased grid,
exact single-shell solutions, Kolmogorov flow, Euler invariants, velocity by finite spectra."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.filters import ensemble_kalman_filter
from assimilax.models import Kraichnan2D
from assimilax.observations import LinearObservation
from assimilax.simulate import simulate


def full_spectrum(w_hat_r, n):
    """The full fft2 of a real field from its rfft2 (numpy)."""
    return np.fft.fft2(np.fft.irfft2(w_hat_r, s=(n, n)))


def advection_reference(omega, K):
    """P_K (u . grad omega) computed in advective form on a 2n x 2n grid (unaliased since the
    product's modes reach 2K < n), from the full fft2 -- independent of the model's code."""
    n = omega.shape[0]
    w = np.fft.fft2(omega)
    k = np.fft.fftfreq(n, 1 / n)
    KX, KY = np.meshgrid(k, k, indexing="ij")
    keep = (np.abs(KX) <= K) & (np.abs(KY) <= K)
    w = np.where(keep, w, 0)
    k2 = np.where(KX ** 2 + KY ** 2 == 0, 1, KX ** 2 + KY ** 2)
    psi = w / k2
    fields = [1j * KY * psi, -1j * KX * psi, 1j * KX * w, 1j * KY * w]  # u, v, w_x, w_y

    def up(f):  # zero-pad to 2n (all kept modes are below n/2 in magnitude)
        big = np.zeros((2 * n, 2 * n), complex)
        kk = np.fft.fftfreq(2 * n, 1 / (2 * n)).astype(int)
        idx = np.fft.fftfreq(n, 1 / n).astype(int)
        big[np.ix_(idx % (2 * n), idx % (2 * n))] = f * 4
        return np.fft.ifft2(big).real
    u, v, wx, wy = (up(f) for f in fields)
    adv = np.fft.fft2(u * wx + v * wy)
    idx = np.fft.fftfreq(n, 1 / n).astype(int)
    adv = adv[np.ix_(idx % (2 * n), idx % (2 * n))] / 4
    return np.where(keep, adv, 0)


@pytest.mark.parametrize("n", [16, 32])
def test_nonlinear_term_matches_advective_form_on_unaliased_grid(n):
    m = Kraichnan2D(n=n, forced=False)
    rng = np.random.default_rng(n)
    omega = rng.normal(size=(n, n))
    ref = advection_reference(omega, m.cutoff)
    kx, ky = np.fft.fftfreq(n, 1 / n)[:, None], np.fft.rfftfreq(n, 1 / n)[None, :]
    keep = (np.abs(kx) <= m.cutoff) & (np.abs(ky) <= m.cutoff)
    w_hat = jnp.asarray(np.fft.rfft2(omega) * keep)
    got = full_spectrum(np.asarray(m.nonlinear(w_hat)), n)
    np.testing.assert_allclose(got, -ref, atol=1e-9 * np.abs(ref).max())


def test_dealiasing_removes_aliases_of_kept_modes():
    """Two kept modes whose sum lies past n/2: the true product's modes past the cut-off and all
    their aliases are absent; the kept difference mode is exact."""
    n = 24
    m = Kraichnan2D(n=n, forced=False)
    K = m.cutoff
    x, y = m.grid
    for (a1, b1), (a2, b2) in [((K, 1), (K - 1, 2)), ((K, K), (K, -K + 1)), ((3, K), (-2, K))]:
        omega = np.cos(a1 * x + b1 * y) + np.cos(a2 * x + b2 * y)
        got = full_spectrum(np.asarray(m.nonlinear(jnp.fft.rfft2(jnp.asarray(omega)))), n)
        ref = advection_reference(omega, K)
        np.testing.assert_allclose(got, -ref, atol=1e-9 * n * n)
        # where the aliased sum modes would land (sum mod n) there is nothing
        sx, sy = (a1 + a2) % n, (b1 + b2) % n
        assert abs(got[sx, sy]) < 1e-9 * n * n


def test_modes_beyond_cutoff_are_projected_out():
    m = Kraichnan2D(n=24, nu=1e-2, forced=False)
    x, y = m.grid
    high = np.cos((m.cutoff + 1) * x) + np.sin(3 * x + (m.cutoff + 2) * y)
    np.testing.assert_allclose(m.step(jnp.asarray(high.ravel())), 0.0, atol=1e-12)


@pytest.mark.parametrize("modes", [[(1, 0)], [(3, 4)], [(3, 4), (5, 0), (0, 5), (4, -3)], [(7, 2)]])
@pytest.mark.parametrize("drag", [0.0, 0.3])
def test_single_shell_decays_exactly(modes, drag):
    """Modes on one shell |k| = const give u . grad omega = 0: an exact solution decaying at
    exp(-(nu k^2 + mu) t), however large its amplitude."""
    nu, dt, steps = 2e-3, 0.01, 100
    m = Kraichnan2D(n=32, nu=nu, drag=drag, forced=False, dt=dt)
    x, y = m.grid
    rng = np.random.default_rng(0)
    omega = sum(5 * rng.normal() * np.cos(a * x + b * y + rng.uniform(0, 6)) for a, b in modes)
    k2 = modes[0][0] ** 2 + modes[0][1] ** 2
    w = np.asarray(m.integrate(jnp.asarray(omega.ravel()), steps)).reshape(32, 32)
    np.testing.assert_allclose(w, omega * np.exp(-(nu * k2 + drag) * dt * steps), atol=1e-11)


def test_mode_by_mode_linear_decay():
    """A small random field: every Fourier mode decays at its own rate (nonlinear O(eps^2))."""
    nu, drag, dt, steps, n = 5e-3, 0.1, 0.02, 50, 32
    m = Kraichnan2D(n=n, nu=nu, drag=drag, forced=False, dt=dt)
    w0 = m.random_initial_condition(jax.random.PRNGKey(0), k0=4.0, energy=1e-18, dtype=jnp.float64)
    w1 = m.integrate(w0, steps)
    f0 = np.fft.rfft2(np.asarray(w0).reshape(n, n))
    f1 = np.fft.rfft2(np.asarray(w1).reshape(n, n))
    kx = np.fft.fftfreq(n, 1 / n)[:, None]
    ky = np.fft.rfftfreq(n, 1 / n)[None, :]
    rate = np.exp(-(nu * (kx ** 2 + ky ** 2) + drag) * dt * steps)
    big = np.abs(f0) > 1e-3 * np.abs(f0).max()
    assert big.sum() > 50
    np.testing.assert_allclose(f1[big], (f0 * rate)[big], rtol=1e-6)


def test_kolmogorov_flow_is_steady():
    nu, drag, A, kf = 1e-2, 0.1, 1.5, 4
    m = Kraichnan2D(n=32, nu=nu, drag=drag, forcing_amplitude=A, forcing_wavenumber=kf, dt=0.02)
    _, y = m.grid
    w_star = -A * kf * np.cos(kf * y) / (nu * kf ** 2 + drag)
    w = np.asarray(m.integrate(jnp.asarray(w_star.ravel()), 200)).reshape(32, 32)
    np.testing.assert_allclose(w, w_star, atol=1e-9 * np.abs(w_star).max())
    # and from rest it approaches the steady state at rate nu kf^2 + mu
    w = np.asarray(m.integrate(jnp.zeros(32 * 32), 200)).reshape(32, 32)
    np.testing.assert_allclose(w, w_star * (1 - np.exp(-(nu * kf ** 2 + drag) * 4.0)), atol=1e-8)
    # the forcing helper is the curl of (A sin kf y, 0)
    np.testing.assert_allclose(m.forcing(jnp.float64), -A * kf * np.cos(kf * y), atol=1e-12)


def invariants(m, omega):
    u, v = m.velocity(omega)
    return 0.5 * float(jnp.mean(u ** 2 + v ** 2)), 0.5 * float(jnp.mean(omega ** 2))


def test_euler_conserves_energy_and_enstrophy():
    m = Kraichnan2D(n=64, nu=0.0, drag=0.0, forced=False, dt=0.01)
    w0 = m.random_initial_condition(jax.random.PRNGKey(1), k0=4.0, energy=0.5, dtype=jnp.float64)
    w1 = jax.jit(lambda w: m.integrate(w, 100))(w0)
    (e0, z0), (e1, z1) = invariants(m, w0), invariants(m, w1)
    assert abs(e1 - e0) / e0 < 1e-7 and abs(z1 - z0) / z0 < 1e-6, (e0, e1, z0, z1)
    assert float(jnp.max(jnp.abs(w1 - w0))) > 0.1 * float(jnp.max(jnp.abs(w0)))  # it moved
    # with viscosity both decay
    mv = Kraichnan2D(n=64, nu=1e-2, drag=0.0, forced=False, dt=0.01)
    e2, z2 = invariants(mv, jax.jit(lambda w: mv.integrate(w, 100))(w0))
    assert e2 < e0 and z2 < z0


def test_velocity_is_divergence_free_with_curl_omega():
    n = 32
    m = Kraichnan2D(n=n)
    w = m.random_initial_condition(jax.random.PRNGKey(2), k0=3.0, dtype=jnp.float64)
    u, v = (np.asarray(a) for a in m.velocity(w))
    k = np.fft.fftfreq(n, 1 / n)
    KX, KY = np.meshgrid(k, k, indexing="ij")
    d = lambda f, K: np.fft.ifft2(1j * K * np.fft.fft2(f)).real  # noqa: E731
    np.testing.assert_allclose(d(u, KX) + d(v, KY), 0, atol=1e-10)
    np.testing.assert_allclose(d(v, KX) - d(u, KY), np.asarray(w).reshape(n, n), atol=1e-10)


def test_random_initial_condition_energy_spectrum_and_reproducibility():
    n = 64
    m = Kraichnan2D(n=n, forced=False)
    k0 = 5.0
    key = jax.random.PRNGKey(7)
    w = m.random_initial_condition(key, k0=k0, energy=0.3, dtype=jnp.float64)
    np.testing.assert_array_equal(w, m.random_initial_condition(key, k0=k0, energy=0.3, dtype=jnp.float64))
    assert invariants(m, w)[0] == pytest.approx(0.3, rel=1e-10)
    assert abs(float(jnp.mean(w))) < 1e-12
    # shell-averaged over many draws, E(k) follows k^4 exp(-(k/k0)^2) (within sampling noise)
    W = jax.vmap(lambda kk: m.random_initial_condition(kk, k0=k0, energy=0.3, dtype=jnp.float64))(
        jax.random.split(key, 64))
    f = np.fft.fft2(np.asarray(W).reshape(-1, n, n)) / n ** 2
    k = np.fft.fftfreq(n, 1 / n)
    KX, KY = np.meshgrid(k, k, indexing="ij")
    kk = np.sqrt(KX ** 2 + KY ** 2)
    e_mode = 0.5 * np.mean(np.abs(f) ** 2, axis=0) / np.where(kk == 0, 1, kk ** 2)
    shells = np.arange(2, 15)
    E = np.array([e_mode[np.rint(kk) == s].sum() for s in shells])
    target = shells ** 4 * np.exp(-(shells / k0) ** 2)
    ratio = E / target
    assert np.std(np.log(ratio)) < 0.15, ratio / ratio.mean()
    # different keys differ; same key, same trajectory
    assert not np.allclose(W[0], W[1])
    mf = Kraichnan2D(n=32)
    w0 = mf.random_initial_condition(key, k0=3.0)
    np.testing.assert_array_equal(mf.trajectory(w0, 5), mf.trajectory(mf.random_initial_condition(key, k0=3.0), 5))


def test_float32_and_vmap_over_ensemble():
    n = 32
    m = Kraichnan2D(n=n)
    W = jax.vmap(lambda k: m.random_initial_condition(k, k0=3.0, dtype=jnp.float32))(
        jax.random.split(jax.random.PRNGKey(0), 3))
    assert W.dtype == jnp.float32 and W.shape == (3, n * n)
    out = jax.jit(jax.vmap(lambda w: m.integrate(w, 20)))(W)
    assert out.dtype == jnp.float32
    one = np.stack([np.asarray(m.integrate(w, 20)) for w in W])
    np.testing.assert_allclose(out, one, atol=1e-4)
    out64 = np.asarray(jax.vmap(lambda w: m.integrate(w, 20))(W.astype(jnp.float64)))
    np.testing.assert_allclose(out, out64, atol=2e-4 * np.abs(out64).max())


def test_simulate_and_enkf_accept_the_model():
    n = 12
    m = Kraichnan2D(n=n, nu=1e-2, dt=0.05, forcing_wavenumber=2)
    obs = LinearObservation.every_kth(n * n, 3, 0.1)
    x0 = m.random_initial_condition(jax.random.PRNGKey(0), k0=2.0, dtype=jnp.float64)
    sim = simulate(m, obs, x0, 4, key=jax.random.PRNGKey(1), steps_per_obs=2)
    assert sim.states.shape == (4, n * n)
    E0 = x0[None, :] + 0.1 * jax.random.normal(jax.random.PRNGKey(2), (12, n * n))
    res = ensemble_kalman_filter(m, obs, sim.observations, E0, key=jax.random.PRNGKey(3), steps_per_obs=2)
    assert res.analysis_mean.shape == (4, n * n) and np.all(np.isfinite(res.analysis_mean))


@pytest.mark.parametrize("kw, match", [
    (dict(n=33), "even integer"), (dict(n=2), "even integer"), (dict(nu=-1e-3), "nu"),
    (dict(drag=-0.1), "drag"), (dict(dt=0.0), "dt"), (dict(dt=-0.1), "dt"),
    (dict(n=16, forcing_wavenumber=6), "forcing_wavenumber"), (dict(forcing_wavenumber=0), "forcing_wavenumber"),
])
def test_bad_input_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Kraichnan2D(**kw)


def test_defaults_follow_forced_flag():
    assert Kraichnan2D().drag == 0.1 and Kraichnan2D(forced=False).drag == 0.0
    assert Kraichnan2D(n=8, forced=False).forcing_wavenumber == 4  # unused when unforced
    assert Kraichnan2D().field_shape == (64, 64) and Kraichnan2D().dim == 64 * 64
    with pytest.raises(ValueError, match="k0"):
        Kraichnan2D().random_initial_condition(jax.random.PRNGKey(0), k0=-1.0)


def test_random_initial_condition_without_x64_at_large_n():
    """n^4 overflows int32 at n = 256: the normalisation must not depend on x64 being on."""
    with jax.enable_x64(False):
        m = Kraichnan2D(n=256)
        w = m.random_initial_condition(jax.random.PRNGKey(0), k0=4.0, energy=2.0)
        assert w.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(w)))
        u, v = m.velocity(w)
        assert 0.5 * float(jnp.mean(u ** 2 + v ** 2)) == pytest.approx(2.0, rel=1e-4)


def test_integrate_and_trajectory_equal_repeated_steps():
    m = Kraichnan2D(n=16, nu=1e-2, forcing_wavenumber=2, dt=0.02)
    w0 = m.random_initial_condition(jax.random.PRNGKey(5), k0=2.0, dtype=jnp.float64)
    w = w0
    for _ in range(7):
        w = m.step(w)
    np.testing.assert_allclose(m.integrate(w0, 7), w, atol=1e-12)
    traj = m.trajectory(w0, 7)
    assert traj.shape == (8, 256)
    np.testing.assert_array_equal(traj[0], w0)
    np.testing.assert_allclose(traj[-1], w, atol=1e-12)
    np.testing.assert_allclose(m.from_spectral(m.step_spectral(m.to_spectral(w0))), m.step(w0), atol=1e-14)


@pytest.mark.parametrize("n", [16, 32])
def test_vmapped_batch_equals_one_trajectory_at_a_time(n):
    """The batched path (``jax.vmap`` over initial fields, and over a batched viscosity) gives
    each trajectory's own result to rounding: integrate, trajectory, snapshots, step and the
    Fourier-space step, float64 (1e-12 of the field's size) and float32 (1e-5)."""
    m = Kraichnan2D(n=n, nu=5e-3, forcing_wavenumber=2)
    keys = jax.random.split(jax.random.PRNGKey(11), 5)
    for dtype, tol in ((jnp.float64, 1e-12), (jnp.float32, 1e-5)):
        W = jax.vmap(lambda k: m.random_initial_condition(k, k0=3.0, energy=1.0, dtype=dtype))(keys)
        calls = {"integrate": lambda mm, w: mm.integrate(w, 12),
                 "trajectory": lambda mm, w: mm.trajectory(w, 6),
                 "snapshots": lambda mm, w: mm.snapshots(w, 3, 4),
                 "step": lambda mm, w: mm.step(w),
                 "step_spectral": lambda mm, w: mm.from_spectral(mm.step_spectral(mm.to_spectral(w)))}
        for name, call in calls.items():
            batched = np.asarray(jax.jit(jax.vmap(lambda w, call=call: call(m, w)))(W))
            one = np.stack([np.asarray(jax.jit(lambda w, call=call: call(m, w))(w)) for w in W])
            assert batched.dtype == one.dtype == dtype, name
            np.testing.assert_allclose(batched, one, rtol=0, atol=tol * np.abs(one).max(), err_msg=name)
    # a batch over a model parameter: each viscosity's own trajectory
    nus = jnp.asarray([1e-3, 1e-2, 5e-2])
    w0 = m.random_initial_condition(keys[0], k0=3.0, dtype=jnp.float64)
    batched = jax.vmap(lambda nu: Kraichnan2D(n=n, nu=nu, forcing_wavenumber=2).integrate(w0, 10))(nus)
    one = np.stack([np.asarray(Kraichnan2D(n=n, nu=float(nu), forcing_wavenumber=2).integrate(w0, 10))
                    for nu in nus])
    np.testing.assert_allclose(batched, one, rtol=0, atol=1e-12 * np.abs(one).max())
    assert np.abs(one[0] - one[2]).max() > 1e-3 * np.abs(one).max()  # the viscosities do differ
