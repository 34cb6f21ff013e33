"""Bootstrap particle filter: systematic resampling against its defining property, convergence to
the Kalman filter like N^{-1/2}, and the log-likelihood estimate against the exact KF value."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax import simulate
from assimilax.filters import kalman_filter, particle_filter, systematic_resample
from assimilax.models import LinearGaussian, Lorenz96
from assimilax.observations import LinearObservation, NonlinearObservation


def test_systematic_resample_counts_are_floor_or_ceil_and_unbiased():
    rng = np.random.default_rng(0)
    N = 50
    w = rng.dirichlet(0.3 * np.ones(N))
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    idx = np.asarray(jax.vmap(lambda k: systematic_resample(k, jnp.log(jnp.asarray(w))))(keys))
    counts = np.stack([np.bincount(i, minlength=N) for i in idx])
    assert np.all(counts >= np.floor(N * w) - 1e-9) and np.all(counts <= np.ceil(N * w) + 1e-9)
    # unbiased: E[count_i] = N w_i (Monte Carlo error of a count in {floor, ceil}: <= 0.5/sqrt(400))
    np.testing.assert_allclose(counts.mean(axis=0), N * w, atol=0.1)
    # -inf log-weights are never selected
    lw = jnp.asarray(np.log(w)).at[:10].set(-jnp.inf)
    assert np.all(np.asarray(systematic_resample(jax.random.PRNGKey(1), lw)) >= 10)


def _problem(T=10):
    A = np.array([[0.9, 0.2], [-0.1, 0.8]])
    model = LinearGaussian(A, 0.1 * np.eye(2))
    obs = LinearObservation(np.array([[1.0, 0.5]]), np.array([[0.3]]))
    sim = simulate(model, obs, np.zeros(2), T, key=jax.random.PRNGKey(42))
    m0, P0 = np.array([0.5, -0.5]), np.eye(2)
    return model, obs, sim.observations, m0, P0, kalman_filter(model, obs, sim.observations, m0, P0)


def test_particle_filter_converges_to_kalman_and_estimates_likelihood():
    model, obs, ys, m0, P0, kf = _problem()
    Ns, errs, lls = [50, 400, 3200], [], []
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    for N in Ns:
        def run(k):
            k0, k1 = jax.random.split(k)
            E0 = m0[None] + jax.random.normal(k0, (N, 2)) @ jnp.linalg.cholesky(P0).T
            r = particle_filter(model, obs, ys, E0, key=k1, store_ensembles=False)
            return r.analysis_mean, r.log_likelihood, r.ess
        means, ll, ess = jax.vmap(run)(keys)
        errs.append(float(jnp.sqrt(jnp.mean((means - kf.filtered_means[None]) ** 2))))
        lls.append(np.asarray(ll))
        assert np.all((np.asarray(ess) >= 1 - 1e-9) & (np.asarray(ess) <= N + 1e-9))
    slope = np.polyfit(np.log(Ns), np.log(errs), 1)[0]
    assert -0.75 <= slope <= -0.3, (slope, errs)
    ll_kf = float(kf.log_likelihood)
    # the PF likelihood estimate concentrates on the exact value (its log is biased low by ~var/2)
    assert abs(lls[-1].mean() - ll_kf) < 0.05, (lls[-1].mean(), ll_kf)
    assert lls[-1].std() < lls[0].std()


def test_same_key_same_result_jitter_and_vmap():
    model, obs, ys, m0, P0, _ = _problem()
    E0 = m0[None] + np.random.default_rng(0).standard_normal((64, 2))
    kw = dict(jitter=1.0, resample_threshold=0.5)
    a = particle_filter(model, obs, ys, E0, key=jax.random.PRNGKey(3), **kw)
    b = particle_filter(model, obs, ys, E0, key=jax.random.PRNGKey(3), **kw)
    c = particle_filter(model, obs, ys, E0, key=jax.random.PRNGKey(4), **kw)
    np.testing.assert_array_equal(np.asarray(a.ensembles), np.asarray(b.ensembles))
    assert float(a.log_likelihood) == float(b.log_likelihood) != float(c.log_likelihood)
    assert a.ensembles.shape == (10, 64, 2) and a.ess.shape == (10,)
    f = jax.jit(jax.vmap(lambda k: particle_filter(model, obs, ys, E0, key=k, **kw).log_likelihood))
    out = np.asarray(f(jax.random.split(jax.random.PRNGKey(0), 4)))
    assert out.shape == (4,) and np.all(np.isfinite(out)) and len(set(out.tolist())) == 4


def test_jitter_in_float32_with_fewer_particles_than_dimensions():
    """N = 10 < d = 40 in float32: the jitter's weighted covariance is singular. A traced jitter grid
    (so the jitter branch is compiled even for h = 0) gives, at h = 0, exactly the filter without
    jitter, and at h > 0 finite particles that differ from it (a Cholesky of the singular
    covariance gave NaN here)."""
    model = Lorenz96(40, dt=0.01)
    obs = NonlinearObservation("arctan", 40, 0.05)
    x0 = model.integrate(8.0 + jax.random.normal(jax.random.PRNGKey(0), (40,), dtype=jnp.float32), 500)
    sim = simulate(model, obs, x0, 8, key=jax.random.PRNGKey(1), steps_per_obs=10)
    E0 = (x0[None] + jax.random.normal(jax.random.PRNGKey(2), (10, 40))).astype(jnp.float32)
    ys = sim.observations.astype(jnp.float32)
    run = lambda h: particle_filter(model, obs, ys, E0, key=jax.random.PRNGKey(3), jitter=h,  # noqa: E731
                                    resample_threshold=1.0).ensembles
    grid = np.asarray(jax.jit(jax.vmap(run))(jnp.asarray([0.0, 0.5], dtype=jnp.float32)))
    plain = np.asarray(run(0.0))
    assert grid.dtype == np.float32 and np.all(np.isfinite(grid))
    np.testing.assert_array_equal(grid[0], plain)
    assert np.abs(grid[1] - plain).max() > 1e-3
