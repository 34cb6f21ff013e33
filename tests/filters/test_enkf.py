"""Ensemble Kalman filters against closed forms: one ETKF/LETKF analysis from an ensemble with
prescribed sample moments equals the Kalman update exactly; the stochastic EnKF converges to the
Kalman filter like N^{-1/2}; ETKF/LETKF track Lorenz-96 (Sakov & Oke 2008 setting)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.configs import LORENZ96_SAKOV2008
from assimilax.filters import ensemble_kalman_filter, gaspari_cohn, kalman_filter
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation, NonlinearObservation


def _ensemble_with_moments(rng, m, P, N):
    """Ensemble (N, d) whose sample mean is m and sample covariance (ddof=1) is P, exactly."""
    d = len(m)
    Z = rng.standard_normal((N, d))
    Z -= Z.mean(axis=0)
    U, _ = np.linalg.qr(Z)  # orthonormal columns, orthogonal to the ones vector
    return m[None, :] + np.sqrt(N - 1) * U @ np.linalg.cholesky(P).T


def _kalman_update(m, P, H, R, y):
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
    return m + K @ (y - H @ m), (np.eye(len(m)) - K @ H) @ P


def _problem(seed=0, d=4, m=3, N=9):
    rng = np.random.default_rng(seed)
    A = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    W = rng.standard_normal((d, d))
    P = W @ W.T / d + 0.3 * np.eye(d)
    mu = rng.standard_normal(d)
    H = rng.standard_normal((m, d))
    V = rng.standard_normal((m, m))
    R = V @ V.T / m + 0.5 * np.eye(m)
    y = rng.standard_normal(m)
    E0 = _ensemble_with_moments(rng, mu, P, N)
    return A, P, mu, H, R, y, E0


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("inflation", [1.0, 1.1])
def test_one_etkf_analysis_equals_kalman_update(rotate, inflation, deterministic_linear):
    A, P, mu, H, R, y, E0 = _problem()
    model, obs = deterministic_linear(A=jnp.asarray(A)), LinearObservation(H, R)
    res = ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0), inflation=inflation, rotate=rotate)
    mf, Pf = A @ mu, inflation**2 * A @ P @ A.T  # inflation multiplies anomalies
    ma, Pa = _kalman_update(mf, Pf, H, R, y)
    Ea = np.asarray(res.ensembles[0])
    np.testing.assert_allclose(Ea.mean(axis=0), ma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.cov(Ea.T), Pa, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(res.forecast_mean[0]), mf, rtol=1e-10)
    np.testing.assert_allclose(float(res.forecast_spread[0]), np.sqrt(np.mean(np.diag(Pf))), rtol=1e-10)
    np.testing.assert_allclose(float(res.analysis_spread[0]), np.sqrt(np.mean(np.diag(Pa))), rtol=1e-9)


def test_rotation_changes_members_but_not_moments(deterministic_linear):
    A, P, mu, H, R, y, E0 = _problem(seed=3)
    model, obs = deterministic_linear(A=jnp.asarray(A)), LinearObservation(H, R)
    kw = dict(key=jax.random.PRNGKey(1))
    E_plain = np.asarray(ensemble_kalman_filter(model, obs, y[None], E0, **kw).ensembles[0])
    E_rot = np.asarray(ensemble_kalman_filter(model, obs, y[None], E0, rotate=True, **kw).ensembles[0])
    assert np.max(np.abs(E_plain - E_rot)) > 1e-3
    np.testing.assert_allclose(E_rot.mean(0), E_plain.mean(0), rtol=1e-10)


def test_letkf_with_huge_radius_equals_etkf_and_kalman(deterministic_linear):
    d = 6
    rng = np.random.default_rng(5)
    A, P, mu, _, _, _, E0 = _problem(seed=5, d=d, m=3, N=9)
    obs = LinearObservation.every_kth(d, 2, np.array([0.7, 1.0, 1.3]))
    y = rng.standard_normal(3)
    model = deterministic_linear(A=jnp.asarray(A))
    res = ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0), localization_radius=1e9)
    ma, Pa = _kalman_update(A @ mu, A @ P @ A.T, np.asarray(obs.H), np.asarray(obs.R), y)
    Ea = np.asarray(res.ensembles[0])
    np.testing.assert_allclose(Ea.mean(axis=0), ma, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.cov(Ea.T), Pa, rtol=1e-8, atol=1e-11)


def test_letkf_local_update_uses_only_nearby_observations(deterministic_linear):
    # one observation at site 0 of a 20-site ring, radius 1: sites farther than 2 * 1.82 are untouched
    d, N = 20, 6
    rng = np.random.default_rng(0)
    E0 = rng.standard_normal((N, d))
    obs = LinearObservation.partial([0], d, 0.5)
    model = deterministic_linear(A=jnp.eye(d))
    res = ensemble_kalman_filter(model, obs, np.array([[3.0]]), E0, key=jax.random.PRNGKey(0), localization_radius=1.0)
    Ea = np.asarray(res.ensembles[0])
    far = [i for i in range(d) if min(i, d - i) > 2 * 1.82]
    np.testing.assert_allclose(Ea[:, far], E0[:, far], rtol=1e-12)
    assert np.max(np.abs(Ea[:, 0] - E0[:, 0])) > 1e-2
    assert np.max(np.abs(Ea[:, d - 1] - E0[:, d - 1])) > 1e-3  # periodic neighbour is updated


def _gc_reference(r, c):
    z = abs(r) / c
    if z <= 1:
        return -0.25 * z**5 + 0.5 * z**4 + 0.625 * z**3 - 5 / 3 * z**2 + 1
    if z <= 2:
        return z**5 / 12 - 0.5 * z**4 + 0.625 * z**3 + 5 / 3 * z**2 - 5 * z + 4 - 2 / (3 * z)
    return 0.0


def test_gaspari_cohn_matches_formula_and_dapper_radius_convention():
    r = np.linspace(0, 10, 201)
    got = np.asarray(gaspari_cohn(jnp.asarray(r), 2.0))
    np.testing.assert_allclose(got, [_gc_reference(x, 1.82 * 2.0) for x in r], atol=1e-12)
    assert abs(float(gaspari_cohn(2.0, 2.0)) - np.exp(-0.5)) < 0.05  # ~e^{-1/2} at the radius
    assert float(gaspari_cohn(2 * 1.82 * 2.0 + 1e-9, 2.0)) == 0.0


def _linear_gaussian_problem(T=10):
    A = np.array([[0.9, 0.2], [-0.1, 0.8]])
    Q = 0.1 * np.eye(2)
    model = LinearGaussian(A, Q)
    obs = LinearObservation(np.array([[1.0, 0.5]]), np.array([[0.3]]))
    sim = simulate(model, obs, np.zeros(2), T, key=jax.random.PRNGKey(42))
    m0, P0 = np.array([0.5, -0.5]), np.eye(2)
    kf = kalman_filter(model, obs, sim.observations, m0, P0)
    return model, obs, sim.observations, m0, P0, kf


def _slope(Ns, errs):
    return np.polyfit(np.log(Ns), np.log(errs), 1)[0]


def test_pertobs_enkf_converges_to_kalman_like_inverse_sqrt_n():
    model, obs, ys, m0, P0, kf = _linear_gaussian_problem()
    L0 = np.linalg.cholesky(P0)
    Ns, errs = [50, 400, 3200], []
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    for N in Ns:
        def run(k):
            k0, k1 = jax.random.split(k)
            E0 = m0[None] + jax.random.normal(k0, (N, 2)) @ L0.T
            return ensemble_kalman_filter(model, obs, ys, E0, key=k1, method="pertobs", store_ensembles=False).analysis_mean
        means = jax.vmap(run)(keys)
        errs.append(float(jnp.sqrt(jnp.mean((means - kf.filtered_means[None]) ** 2))))
    s = _slope(Ns, errs)
    assert -0.75 <= s <= -0.3, (s, errs)
    assert errs[-1] < 0.05


def test_same_key_same_result_and_jit_vmap_over_keys():
    model, obs, ys, m0, P0, _ = _linear_gaussian_problem()
    E0 = m0[None] + np.random.default_rng(0).standard_normal((20, 2))
    for method in ["sqrt", "pertobs"]:
        kw = dict(method=method, rotate=method == "sqrt")
        a = ensemble_kalman_filter(model, obs, ys, E0, key=jax.random.PRNGKey(3), **kw)
        b = ensemble_kalman_filter(model, obs, ys, E0, key=jax.random.PRNGKey(3), **kw)
        c = ensemble_kalman_filter(model, obs, ys, E0, key=jax.random.PRNGKey(4), **kw)
        np.testing.assert_array_equal(np.asarray(a.ensembles), np.asarray(b.ensembles))
        assert np.max(np.abs(np.asarray(a.ensembles) - np.asarray(c.ensembles))) > 1e-6
        f = jax.jit(jax.vmap(lambda k: ensemble_kalman_filter(model, obs, ys, E0, key=k, **kw).analysis_mean))
        out = f(jax.random.split(jax.random.PRNGKey(3), 4))
        assert out.shape == (4,) + ys.shape[:1] + (2,)
        assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("localization_radius", [None, 1e6])
def test_nonlinear_observation_analysis_equals_numpy_etkf(localization_radius, deterministic_linear):
    """A cubic observation of one component, applied per member: the first analysis ensemble equals
    an independent NumPy ETKF with the observed anomalies Y = h(E^f) - mean (no Jacobian), for the
    global ETKF and for the LETKF with a taper that is 1 to 1e-12 at these distances."""
    rng = np.random.default_rng(4)
    A = np.array([[0.9, 0.2], [-0.1, 0.95]])
    model = deterministic_linear(A=jnp.asarray(A), dt=1.0)
    obs = NonlinearObservation("cubic", 2, 0.5, indices=[0])
    E0 = 1.0 + 0.5 * rng.standard_normal((30, 2))
    y = np.array([1.7])
    res = ensemble_kalman_filter(model, obs, jnp.asarray(y[None]), jnp.asarray(E0), key=jax.random.PRNGKey(0),
                                 localization_radius=localization_radius)
    Ef = E0 @ A.T
    N = Ef.shape[0]
    Xf = Ef - Ef.mean(0)
    Eo = Ef[:, :1] ** 3
    Y = (Eo - Eo.mean(0)) / 0.5
    dy = (y - Eo.mean(0)) / 0.5
    C = Y @ Y.T + (N - 1) * np.eye(N)
    lam, V = np.linalg.eigh(C)
    w = V @ ((V.T @ (Y @ dy)) / lam)
    T = V @ np.diag(np.sqrt(N - 1) / np.sqrt(lam)) @ V.T
    Ea = Ef.mean(0) + w @ Xf + T @ Xf
    np.testing.assert_allclose(np.asarray(res.ensembles[0]), Ea, rtol=1e-8, atol=1e-9)
    # and the update moved the mean of the observed component towards y^(1/3) (~1.19)
    assert abs(Ea.mean(0)[0] - 1.7 ** (1 / 3)) < abs(Ef.mean(0)[0] - 1.7 ** (1 / 3))


@pytest.fixture(scope="module")
def l96_problem():
    # DAPPER's sakov2008 model and observations; a shorter run (300 cycles) from a spun-up state
    model, obs = LORENZ96_SAKOV2008.model(), LORENZ96_SAKOV2008.observation()
    x0 = 8.0 + 0.01 * jax.random.normal(jax.random.PRNGKey(0), (40,))
    sim = simulate(model, obs, x0, 300, key=jax.random.PRNGKey(1), burn_in=2000)
    E0 = sim.x0[None] + jax.random.normal(jax.random.PRNGKey(2), (28, 40))
    return model, obs, sim, E0


def test_etkf_lorenz96_sakov_oke_2008(l96_problem):
    # DAPPER mods/Lorenz96/sakov2008: EnKF('Sqrt', N=28, infl=1.02, rot=True) -> RMSE 0.18
    ref = LORENZ96_SAKOV2008.reference("EnKF('Sqrt', N=28, infl=1.02, rot=True)")
    model, obs, sim, E0 = l96_problem
    res = ensemble_kalman_filter(model, obs, sim.observations, E0[:ref.ensemble_size], key=jax.random.PRNGKey(3),
                                 store_ensembles=False, **ref.options)
    rmse = np.sqrt(np.mean((np.asarray(res.analysis_mean) - np.asarray(sim.states)) ** 2, axis=1))[100:].mean()
    assert rmse < ref.rmse + 0.12, (rmse, ref.rmse)  # 300 cycles, one seed: within 0.12 of the published


def test_letkf_lorenz96_sakov_oke_2008(l96_problem):
    # DAPPER: LETKF(N=7, rot=True, infl=1.04, loc_rad=4) -> RMSE 0.22
    ref = LORENZ96_SAKOV2008.reference("LETKF(N=7, rot=True, infl=1.04, loc_rad=4)")
    model, obs, sim, E0 = l96_problem
    res = ensemble_kalman_filter(model, obs, sim.observations, E0[:ref.ensemble_size], key=jax.random.PRNGKey(3),
                                 store_ensembles=False, **ref.options)
    rmse = np.sqrt(np.mean((np.asarray(res.analysis_mean) - np.asarray(sim.states)) ** 2, axis=1))[100:].mean()
    assert rmse < ref.rmse + 0.13, (rmse, ref.rmse)  # 300 cycles, one seed: within 0.13 of the published


def test_letkf_on_2d_grid_updates_only_sites_within_the_cutoff(deterministic_linear):
    # one observation at (0, 0) of a periodic 10 x 12 grid, radius 1: sites farther than 2 * 1.82
    # (Euclidean, minimum image) are untouched, the periodic neighbours across both edges are updated
    from assimilax.filters import PeriodicGrid2D

    n1, n2, N = 10, 12, 6
    d = n1 * n2
    rng = np.random.default_rng(1)
    E0 = rng.standard_normal((N, d))
    obs = LinearObservation.partial([0], d, 0.5)
    model = deterministic_linear(A=jnp.eye(d))
    res = ensemble_kalman_filter(model, obs, np.array([[3.0]]), E0, key=jax.random.PRNGKey(0),
                                 localization_radius=1.0, localization=PeriodicGrid2D(n1, n2))
    Ea = np.asarray(res.ensembles[0])
    i1, i2 = np.divmod(np.arange(d), n2)
    dist = np.hypot(np.minimum(i1, n1 - i1), np.minimum(i2, n2 - i2))
    far = dist > 2 * 1.82
    np.testing.assert_allclose(Ea[:, far], E0[:, far], rtol=1e-12)
    for k in (0, n2 - 1, (n1 - 1) * n2, d - 1, 2 * n2 + 2):  # (0,0), (0,-1), (-1,0), (-1,-1), (2,2)
        assert dist[k] <= 2 * 1.82 and np.max(np.abs(Ea[:, k] - E0[:, k])) > 1e-4, k
    # the 1-D ring over the flattened index would instead update sites 0..3 and d-3..d-1 only
    ring = np.asarray(ensemble_kalman_filter(model, obs, np.array([[3.0]]), E0, key=jax.random.PRNGKey(0),
                                             localization_radius=1.0).ensembles[0])
    np.testing.assert_allclose(ring[:, 2 * n2 + 2], E0[:, 2 * n2 + 2], rtol=1e-12)


def test_letkf_geometry_keyword_default_is_the_ring(deterministic_linear):
    from assimilax.filters import Locations, PeriodicRing

    d, N = 16, 8
    rng = np.random.default_rng(2)
    E0 = rng.standard_normal((N, d))
    obs = NonlinearObservation("arctan", d, 0.3, indices=np.arange(0, d, 2))
    ys = rng.standard_normal((1, d // 2))
    model = deterministic_linear(A=jnp.eye(d))
    kw = dict(key=jax.random.PRNGKey(0), localization_radius=1.5)
    ref = np.asarray(ensemble_kalman_filter(model, obs, ys, E0, **kw).ensembles)
    for geom in (PeriodicRing(d), Locations(np.arange(d, dtype=float), periods=(float(d),))):
        got = np.asarray(ensemble_kalman_filter(model, obs, ys, E0, localization=geom, **kw).ensembles)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # a non-periodic line differs from the ring only near the ends
    line = np.asarray(ensemble_kalman_filter(model, obs, ys, E0, localization=Locations(np.arange(d, dtype=float)),
                                             **kw).ensembles)
    np.testing.assert_allclose(line[..., 6:10], ref[..., 6:10], rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(line[..., 0] - ref[..., 0])) > 1e-6


@pytest.mark.parametrize("localization_radius", [None, 1e6])
def test_eigenvector_square_root_scales_members_by_sorted_eigenvalues(localization_radius, deterministic_linear):
    """``square_root="eigenvector"`` (the EnSF repository's LETKF): the analysis anomalies about the
    nominal mean xbar + A^T w are V~ Lambda~^(-1/2) A sqrt(N-1), so their Gram matrix is
    (N-1) sum_n a_n a_n^T / lambda~_n with lambda~ the eigenvalues of C in descending order (free of
    the eigenvectors' signs and of the basis of a degenerate eigenspace, checked against NumPy); its
    covariance is not the Kalman one."""
    A, P, mu, H, R, y, E0 = _problem(seed=3)
    R = np.diag(np.diag(R))
    model, obs = deterministic_linear(A=jnp.asarray(A)), LinearObservation(H, R)
    res = ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0), square_root="eigenvector",
                                 localization_radius=localization_radius)
    Ef = E0 @ A.T
    N = Ef.shape[0]
    Xf = Ef - Ef.mean(0)
    s = 1 / np.sqrt(np.diag(R))
    Y, dy = (Xf @ H.T) * s, (y - Ef.mean(0) @ H.T) * s
    lam, V = np.linalg.eigh(Y @ Y.T + (N - 1) * np.eye(N))
    w = V @ ((V.T @ (Y @ dy)) / lam)
    xa_nominal = Ef.mean(0) + w @ Xf
    Aa = np.asarray(res.ensembles[0]) - xa_nominal
    want = (N - 1) * (Xf.T / lam[::-1]) @ Xf
    if localization_radius is None:
        np.testing.assert_allclose(Aa.T @ Aa, want, rtol=1e-8, atol=1e-10)
    else:  # each grid point has its own eigenbasis (C has a degenerate eigenvalue N - 1): per-component only
        np.testing.assert_allclose(np.sum(Aa**2, 0), np.diag(want), rtol=1e-8, atol=1e-10)
    ma, Pa = _kalman_update(Ef.mean(0), np.cov(Ef.T), H, R, y)
    assert np.abs(np.cov(np.asarray(res.ensembles[0]).T) - Pa).max() > 1e-3
    sym = ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0),
                                 localization_radius=localization_radius)
    np.testing.assert_allclose(np.asarray(sym.ensembles[0]).mean(0), ma, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="square_root"):
        ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0), square_root="qr")


# ----------------------------------------------------------------------------- the Cholesky root
@pytest.mark.parametrize("N, m", [(9, 4), (9, 15), (28, 40)])
def test_cholesky_root_is_a_mean_preserving_rotation_of_the_symmetric_root(N, m):
    """T' = U T with U orthogonal and U 1 = 1: under a Haar mean-preserving rotation Omega the
    rotated filters Omega T' A and Omega T A have the same law; the weights w are the same."""
    from assimilax.filters.enkf import _etkf_cholesky_root, _etkf_transform
    rng = np.random.default_rng(N + m)
    Ys = rng.standard_normal((N, m)) * rng.uniform(0.1, 3.0, m)
    Ys -= Ys.mean(0)
    dys = rng.standard_normal(m)
    w_sym, T = (np.asarray(z) for z in _etkf_transform(jnp.asarray(Ys), jnp.asarray(dys)))
    w_chol, TpI = (np.asarray(z) for z in _etkf_cholesky_root(jnp.asarray(Ys), jnp.asarray(dys), jnp.eye(N)))
    np.testing.assert_allclose(w_chol, w_sym, rtol=1e-10, atol=1e-12)
    U = TpI @ np.linalg.inv(T)
    np.testing.assert_allclose(U.T @ U, np.eye(N), atol=1e-11)
    np.testing.assert_allclose(U @ np.ones(N), np.ones(N), atol=1e-11)
    assert np.abs(U - np.eye(N)).max() > 1e-3  # a different root, not the symmetric one again
    C = Ys @ Ys.T + (N - 1) * np.eye(N)  # T'^T T' = (N-1) C^{-1}
    np.testing.assert_allclose(TpI.T @ TpI, (N - 1) * np.linalg.inv(C), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rotate", [False, True])
def test_cholesky_root_filter_equals_kalman_update_and_is_the_rotated_default(rotate, deterministic_linear):
    A, P, mu, H, R, y, E0 = _problem(seed=4)
    model, obs = deterministic_linear(A=jnp.asarray(A)), LinearObservation(H, R)
    kw = dict(key=jax.random.PRNGKey(2), rotate=rotate)
    res = ensemble_kalman_filter(model, obs, y[None], E0, square_root="cholesky", **kw)
    ma, Pa = _kalman_update(A @ mu, A @ P @ A.T, H, R, y)
    Ea = np.asarray(res.ensembles[0])
    np.testing.assert_allclose(Ea.mean(0), ma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.cov(Ea.T), Pa, rtol=1e-9, atol=1e-12)
    default = np.asarray(ensemble_kalman_filter(model, obs, y[None], E0, **kw).ensembles[0])
    sym = np.asarray(ensemble_kalman_filter(model, obs, y[None], E0, square_root="symmetric", **kw).ensembles[0])
    if rotate:  # the rotated ETKF uses the Cholesky root by default
        np.testing.assert_array_equal(default, Ea)
    else:
        np.testing.assert_array_equal(default, sym)
    assert np.abs(sym - Ea).max() > 1e-3  # same moments, other members
    with pytest.raises(ValueError, match="global ETKF only"):
        ensemble_kalman_filter(model, obs, y[None], E0, square_root="cholesky", localization_radius=2.0, **kw)


# ----------------------------------------------------------------------------- LETKFAnalysis, differentiable
def _l96_forecast_ensemble(N=12, d=24):
    from assimilax.filters._core import forecast_ensemble
    from assimilax.models import Lorenz96
    l96 = Lorenz96(dim=d, forcing=8.0, dt=0.05)
    obs = LinearObservation.every_kth(d, 2, 1.0)
    sim = simulate(l96, obs, 8.0 + jax.random.normal(jax.random.PRNGKey(0), (d,)), 3, key=jax.random.PRNGKey(1),
                   burn_in=200)
    E0 = sim.x0[None, :] + jax.random.normal(jax.random.PRNGKey(2), (N, d))
    return l96, obs, sim, E0, forecast_ensemble(l96, E0, 0.0, None, 1)


@pytest.mark.parametrize("radius, domain", [(None, None), (3.0, None), (3.0, 3)])
def test_letkf_analysis_is_one_cycle_of_the_filter(radius, domain):
    from assimilax.filters import LETKFAnalysis
    l96, obs, sim, E0, EF = _l96_forecast_ensemble()
    res = ensemble_kalman_filter(l96, obs, sim.observations[:1], E0, key=jax.random.PRNGKey(3), inflation=1.07,
                                 localization_radius=radius, local_domain=domain)
    A = LETKFAnalysis(obs, 24, inflation=1.07, localization_radius=radius, local_domain=domain, n_members=12)
    np.testing.assert_allclose(A(EF, sim.observations[0]), res.ensembles[0], rtol=0, atol=1e-10)


def test_local_etkf_transform_derivative_is_finite_and_exact_with_repeated_eigenvalues():
    """k = 5 local observations and N = 16 members: C has the eigenvalue N - 1 eleven times, where
    differentiating through eigh gives NaN; the Daleckii-Krein JVP matches central differences."""
    from assimilax.filters import local_etkf_transform
    N, k = 16, 5
    keys = jax.random.split(jax.random.PRNGKey(4), 5)
    Yl, g, a = (jax.random.normal(keys[0], (k, N)), jax.random.normal(keys[1], (N,)), jax.random.normal(keys[2], (N,)))
    w = jnp.linspace(-1.0, 1.0, N)

    def scalar(fn, Yl, g, a):
        dx, u = fn(Yl.T @ Yl + (N - 1) * jnp.eye(N), g, a)
        return dx + jnp.sum(w * u) + 0.3 * jnp.sum(u**2)

    def naive(C, g, a):
        lam, V = jnp.linalg.eigh(C)
        Va, Vg = V.T @ a, V.T @ g
        return jnp.sum(Va * Vg / lam), V @ (Va * jnp.sqrt(N - 1.0) / jnp.sqrt(lam))

    # the same primal values
    for out, ref in zip(local_etkf_transform(Yl.T @ Yl + (N - 1) * jnp.eye(N), g, a),
                        naive(Yl.T @ Yl + (N - 1) * jnp.eye(N), g, a)):
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert not np.all(np.isfinite(jax.grad(scalar, argnums=1)(naive, Yl, g, a)))
    grads = jax.grad(scalar, argnums=(1, 2, 3))(local_etkf_transform, Yl, g, a)
    dirs = [jax.random.normal(kk, x.shape) for kk, x in zip(jax.random.split(keys[3], 3), (Yl, g, a))]
    eps = 1e-6
    plus = scalar(local_etkf_transform, *(x + eps * v for x, v in zip((Yl, g, a), dirs)))
    minus = scalar(local_etkf_transform, *(x - eps * v for x, v in zip((Yl, g, a), dirs)))
    fd = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(sum(jnp.sum(gr * v) for gr, v in zip(grads, dirs)), fd, rtol=1e-6)
    # C^{-1/2} from the transform: sum of squares of the anomalies equals a^T (N-1) C^{-1} a
    C = Yl.T @ Yl + (N - 1) * jnp.eye(N)
    _, u = local_etkf_transform(C, g, a)
    np.testing.assert_allclose(u @ u, (N - 1) * a @ np.linalg.solve(C, a), rtol=1e-10)
    # n_members sets the scale sqrt(N - 1) for a block of another order (the LETKF's order N - 1 block)
    _, u7 = local_etkf_transform(C, g, a, n_members=7)
    np.testing.assert_allclose(u7, u * np.sqrt(6.0 / (N - 1)), rtol=1e-12)
    with pytest.raises(ValueError, match="n_members"):
        local_etkf_transform(C, g, a, n_members=0)


@pytest.mark.parametrize("domain", [None, 2])
def test_letkf_analysis_gradient_matches_finite_differences(domain):
    from assimilax.filters import LETKFAnalysis
    _, obs, sim, _, EF = _l96_forecast_ensemble()
    A = LETKFAnalysis(obs, 24, inflation=1.03, localization_radius=3.0, local_domain=domain, n_members=12)
    y = sim.observations[0]
    f = lambda E, y: jnp.sum(jnp.sin(A(E, y)))  # noqa: E731
    gE, gy = jax.grad(f, argnums=(0, 1))(EF, y)
    vE, vy = jax.random.normal(jax.random.PRNGKey(5), EF.shape), jax.random.normal(jax.random.PRNGKey(6), y.shape)
    eps = 1e-6
    fd = (f(EF + eps * vE, y + eps * vy) - f(EF - eps * vE, y - eps * vy)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(gE * vE) + jnp.sum(gy * vy), fd, rtol=1e-6)
    # the settings receive no gradient
    import equinox as eqx
    g_mod = eqx.filter_grad(lambda mod: jnp.sum(jnp.sin(mod(EF, y))))(A)
    assert float(jnp.abs(g_mod.radius)) == 0.0 and float(jnp.max(jnp.abs(g_mod.observation.H))) == 0.0


def test_letkf_analysis_refuses_bad_input():
    from assimilax.filters import LETKFAnalysis
    obs = LinearObservation.every_kth(24, 2, 1.0)
    with pytest.raises(ValueError, match="inflation"):
        LETKFAnalysis(obs, 24, inflation=0.0)
    with pytest.raises(ValueError, match="dimension 24"):
        LETKFAnalysis(obs, 20)
    with pytest.raises(ValueError, match="needs localization_radius"):
        LETKFAnalysis(obs, 24, localization=object())


def test_letkf_analysis_keeps_the_ensemble_dtype():
    """A float32 ensemble is analysed in float32 although x64 is on and H is float64."""
    from assimilax.filters import LETKFAnalysis
    _, obs, sim, _, EF = _l96_forecast_ensemble()
    A = LETKFAnalysis(obs, 24, inflation=1.03, localization_radius=3.0, n_members=12)
    out = A(EF.astype(jnp.float32), sim.observations[0])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, A(EF, sim.observations[0]), rtol=0, atol=1e-3)


def test_letkf_filter_runs_in_float32_under_x64():
    """The scan carry stays float32 with a float64 observation operator (x64 is on in the tests)."""
    l96, obs, sim, E0, _ = _l96_forecast_ensemble()
    f32 = jnp.float32
    res = ensemble_kalman_filter(l96, obs, sim.observations.astype(f32), E0.astype(f32), key=jax.random.PRNGKey(0),
                                 inflation=1.03, localization_radius=3.0)
    ref = ensemble_kalman_filter(l96, obs, sim.observations, E0, key=jax.random.PRNGKey(0), inflation=1.03,
                                 localization_radius=3.0)
    assert res.analysis_mean.dtype == f32
    np.testing.assert_allclose(res.analysis_mean, ref.analysis_mean, rtol=0, atol=1e-3)
