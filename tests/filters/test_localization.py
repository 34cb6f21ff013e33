"""Localisation geometry and the LETKF that gathers only the observations within the taper's
cut-off: neighbour sets against brute-force distances, one LETKF analysis against a dense-taper
computation written here in NumPy (every observation, Gaspari--Cohn weights), several Lorenz-96
cycles against the code at git revision 82f5fc5 (the dense implementation), a 2-D periodic field
assimilated with the 2-D geometry, and bad input."""
import importlib.util
import subprocess
from pathlib import Path

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from assimilax.filters import ensemble_kalman_filter
from assimilax.filters.localization import (
    GC_SCALE,
    Locations,
    PeriodicGrid2D,
    PeriodicRing,
    gaspari_cohn,
    observation_locations,
    taper_cutoff,
)
from assimilax.models import DynamicalModel, LinearGaussian, Lorenz96
from assimilax.observations import LinearObservation, NonlinearObservation

ROOT = Path(__file__).resolve().parents[2]
OLD_REVISION = "82f5fc5"


class Identity(DynamicalModel):
    """x -> x, no noise: one cycle of the filter is one analysis of the given ensemble."""

    n: int = 0

    @property
    def dim(self):
        return self.n

    def step(self, x, t=0.0):
        return x


# ------------------------------------------------------------------------- brute-force references
def _ring_dist(a, b, n):
    diff = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    return np.minimum(diff, n - diff).astype(float)


def _grid_dist(a, b, n1, n2):
    a1, a2 = np.divmod(np.asarray(a), n2)
    b1, b2 = np.divmod(np.asarray(b), n2)
    d1 = np.abs(a1[:, None] - b1[None, :])
    d2 = np.abs(a2[:, None] - b2[None, :])
    d1, d2 = np.minimum(d1, n1 - d1), np.minimum(d2, n2 - d2)
    return np.sqrt(d1**2 + d2**2)


def _gc(r, radius):
    """Gaspari--Cohn, written out again (scalar formula, vectorised with np.select)."""
    z = np.abs(r) / (1.82 * radius)
    inner = -0.25 * z**5 + 0.5 * z**4 + 0.625 * z**3 - 5 / 3 * z**2 + 1
    with np.errstate(divide="ignore"):
        outer = z**5 / 12 - 0.5 * z**4 + 0.625 * z**3 + 5 / 3 * z**2 - 5 * z + 4 - 2 / (3 * z)
    return np.select([z <= 1, z <= 2], [inner, outer], 0.0)


def _dense_letkf_analysis(E, Eo, y, r_std, dist, radius):
    """Dense-taper LETKF analysis (every observation, weight sqrt(rho_ij)), NumPy float64."""
    N, d = E.shape
    mu, yo = E.mean(0), Eo.mean(0)
    A, Y = E - mu, Eo - yo
    Ys, dys = Y / r_std, (y - yo) / r_std
    Ea = np.empty_like(E)
    for i in range(d):
        sr = np.sqrt(_gc(dist[i], radius))
        Yl, dl = Ys * sr, dys * sr
        lam, V = np.linalg.eigh(Yl @ Yl.T + (N - 1) * np.eye(N))
        w = V @ ((V.T @ (Yl @ dl)) / lam)
        T = V @ np.diag(np.sqrt(N - 1) / np.sqrt(lam)) @ V.T
        Ea[:, i] = mu[i] + w @ A[:, i] + T @ A[:, i]
    return Ea


def _one_analysis(obs, E0, y, **kw):
    model = Identity(n=E0.shape[1])
    res = ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0), **kw)
    return np.asarray(res.ensembles[0])


# ------------------------------------------------------------------------------ neighbour sets
def _check_neighbours(geom, locs, radius, dist):
    """The gathered sets are exactly {j : dist_ij <= 2c} and carry the right distances."""
    local = geom.local_observations(locs, radius)
    cut = 2 * GC_SCALE * radius
    assert local.indices.shape == local.mask.shape == local.distances.shape
    assert local.indices.shape[0] == geom.size
    for i in range(geom.size):
        got = local.indices[i][local.mask[i]]
        want = np.flatnonzero(dist[i] <= cut)
        np.testing.assert_array_equal(np.sort(got), want)
        np.testing.assert_allclose(local.distances[i][local.mask[i]], dist[i][got], atol=1e-12)
    assert local.k_max == max(1, int((dist <= cut).sum(1).max()))


@given(n1=st.integers(1, 12), n2=st.integers(1, 12), radius=st.floats(0.1, 4.0),
       stride=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_grid2d_neighbour_sets_match_brute_force(n1, n2, radius, stride, seed):
    d = n1 * n2
    rng = np.random.default_rng(seed)
    locs = np.sort(rng.permutation(d)[: max(1, d // stride)])
    _check_neighbours(PeriodicGrid2D(n1, n2), locs, radius, _grid_dist(np.arange(d), locs, n1, n2))


@given(n=st.integers(1, 60), radius=st.floats(0.1, 12.0), stride=st.integers(1, 4), offset=st.integers(0, 3))
def test_ring_neighbour_sets_match_brute_force(n, radius, stride, offset):
    locs = np.arange(offset % n, n, stride)
    _check_neighbours(PeriodicRing(n), locs, radius, _ring_dist(np.arange(n), locs, n))


def test_locations_with_mixed_periods_match_brute_force():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(0, 10, 80), rng.uniform(-3, 3, 80)])
    geom = Locations(X, periods=(10.0, None))
    locs = np.arange(0, 80, 3)
    dx = np.abs(X[:, None, 0] - X[None, locs, 0])
    dx = np.minimum(dx, 10.0 - dx)
    dy = X[:, None, 1] - X[None, locs, 1]
    _check_neighbours(geom, locs, 0.5, np.sqrt(dx**2 + dy**2))
    # no periods: plain Euclidean
    geom = Locations(X)
    _check_neighbours(geom, locs, 0.4, np.linalg.norm(X[:, None] - X[None, locs], axis=-1))


def test_infinite_radius_keeps_every_observation():
    local = PeriodicGrid2D(4, 5).local_observations(np.arange(0, 20, 2), np.inf)
    assert local.k_max == 10 and local.mask.all()
    assert taper_cutoff(np.inf) == np.inf


def test_observation_locations():
    H = np.zeros((3, 8))
    H[0, 5], H[1, 2], H[2, 7] = 1.0, -2.0, 0.5
    H[1, 3] = 0.1
    np.testing.assert_array_equal(observation_locations(LinearObservation(H, np.eye(3))), [5, 2, 7])
    np.testing.assert_array_equal(observation_locations(NonlinearObservation("arctan", 8, 0.1, indices=[1, 4])), [1, 4])
    np.testing.assert_array_equal(observation_locations(NonlinearObservation("arctan", 8, 0.1)), np.arange(8))
    with pytest.raises(ValueError, match="observation locations"):
        observation_locations(object())


def _ring_problem(kind, d, N, seed):
    """A ring ensemble (N, d), its operator (every third component observed linearly, or arctan of
    every component), observed ensemble, locations, noise sds and an observation."""
    rng = np.random.default_rng(seed)
    E0 = 1.5 * rng.standard_normal((N, d)) + rng.standard_normal(d)
    if kind == "linear_partial":
        locs = np.arange(1, d, 3)
        obs = LinearObservation.partial(locs, d, rng.uniform(0.5, 1.5, len(locs)))
        Eo = E0[:, locs]
        r_std = np.sqrt(np.diag(np.asarray(obs.R)))
    else:
        locs = np.arange(d)
        obs = NonlinearObservation("arctan", d, 0.3)
        Eo = np.asarray(jax.vmap(obs)(jnp.asarray(E0)))
        r_std = np.full(d, 0.3)
    y = Eo.mean(0) + rng.standard_normal(len(locs)) * r_std
    return E0, obs, Eo, locs, r_std, y


# ------------------------------------------------ dense-GEMM and gathered local matrices agree
@pytest.mark.parametrize("local_domain", [None, 2, 3])
@pytest.mark.parametrize("kind", ["linear_partial", "arctan_full"])
def test_dense_and_gathered_local_matrices_give_the_same_analysis(monkeypatch, kind, local_domain):
    """With few observations in all (m <= DENSE_LOCAL_RATIO k) the local matrices come from one
    GEMM over the dense taper; forcing the gathered path gives the same analysis to rounding."""
    from assimilax.filters import enkf as enkf_module

    d, N, radius = 30, 8, 5.0
    E0, obs, Eo, locs, r_std, y = _ring_problem(kind, d, N, seed=4)
    geom = PeriodicRing(d)
    local = geom.local_observations(locs, radius, None if local_domain is None else geom.partition(local_domain))
    assert len(locs) <= enkf_module.DENSE_LOCAL_RATIO * local.k_max  # the dense path is the default here
    dense = _one_analysis(obs, E0, y, localization_radius=radius, local_domain=local_domain)
    monkeypatch.setattr(enkf_module, "DENSE_LOCAL_RATIO", 0)  # m <= 0 never holds: gather
    jax.clear_caches()
    gathered = _one_analysis(obs, E0, y, localization_radius=radius, local_domain=local_domain)
    jax.clear_caches()
    np.testing.assert_allclose(dense, gathered, rtol=1e-11, atol=1e-11)
    assert not np.allclose(dense, E0)  # the analysis moved the ensemble


# --------------------------------------- batched local analyses: one eigh call, no deadlock
@pytest.mark.parametrize("local_domain", [None, 2])
def test_batched_local_analyses_compile_to_one_eigh_call_and_match_one_batch(monkeypatch, local_domain):
    """When the local analyses go through lax.map in batches (a small LOCAL_BATCH_BYTES), the
    batches are equal (the last padded), so the compiled cycle holds exactly one batched eigh:
    with two independent ones (a loop and a remainder) XLA may run both at once on its
    intra-op pool while jaxlib's LAPACK kernel waits on the same pool, which deadlocked a d =
    1,600 LETKF on this 2-core machine. The analysis equals the one-batch analysis."""
    from assimilax.filters import enkf as enkf_module

    d, N, radius = 30, 8, 2.0  # 2k < m: the gathered path (not the dense GEMM)
    E0, obs, Eo, locs, r_std, y = _ring_problem("arctan_full", d, N, seed=5)
    model = Identity(n=d)
    run = lambda: ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0),  # noqa: E731
                                         localization_radius=radius, local_domain=local_domain)
    one_batch = np.asarray(run().ensembles[0])
    n_local = d if local_domain is None else d // local_domain
    k = PeriodicRing(d).local_observations(locs, radius).k_max
    per = (2 * k * N + 4 * N * N + 2 * (local_domain or 1) * N) * 8
    monkeypatch.setattr(enkf_module, "LOCAL_BATCH_BYTES", 4 * per)  # batches of 4: 30 or 15 not divisible
    jax.clear_caches()
    assert enkf_module._local_batch(n_local, k, N, 8, local_domain or 1) == 4
    hlo = jax.jit(lambda yy: ensemble_kalman_filter(
        model, obs, yy, E0, key=jax.random.PRNGKey(0), localization_radius=radius,
        local_domain=local_domain).ensembles).lower(y[None]).compile().as_text()
    assert hlo.count("custom_call_target=\"lapack_dsyevd_ffi\"") == 1
    batched = np.asarray(run().ensembles[0])
    jax.clear_caches()
    np.testing.assert_allclose(batched, one_batch, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------- LETKF equals the dense taper
@pytest.mark.parametrize("radius", [0.7, 2.0, 5.0])
@pytest.mark.parametrize("kind", ["linear_partial", "arctan_full"])
def test_letkf_on_ring_equals_dense_taper_reference(radius, kind):
    d, N = 30, 8
    E0, obs, Eo, locs, r_std, y = _ring_problem(kind, d, N, seed=2)
    want = _dense_letkf_analysis(E0, Eo, y, r_std, _ring_dist(np.arange(d), locs, d), radius)
    got = _one_analysis(obs, E0, y, localization_radius=radius)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    got_geom = _one_analysis(obs, E0, y, localization_radius=radius, localization=PeriodicRing(d))
    np.testing.assert_array_equal(got_geom, got)
    # the cut-off really drops observations here (the test would not see a wrong k otherwise)
    if radius < 2.0:
        assert PeriodicRing(d).local_observations(locs, radius).k_max < len(locs)


def test_letkf_on_2d_grid_equals_dense_taper_reference():
    n1, n2, N = 9, 7, 10
    d = n1 * n2
    rng = np.random.default_rng(3)
    E0 = rng.standard_normal((N, d)) + rng.standard_normal(d)
    locs = np.sort(rng.permutation(d)[:25])
    obs = LinearObservation.partial(locs, d, 0.6)
    y = E0[:, locs].mean(0) + 0.6 * rng.standard_normal(len(locs))
    want = _dense_letkf_analysis(E0, E0[:, locs], y, np.full(len(locs), 0.6),
                                 _grid_dist(np.arange(d), locs, n1, n2), 1.0)
    got = _one_analysis(obs, E0, y, localization_radius=1.0, localization=PeriodicGrid2D(n1, n2))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    ring = _one_analysis(obs, E0, y, localization_radius=1.0)
    assert np.max(np.abs(ring - got)) > 1e-2  # the geometry matters


# ------------------------------------------------------------------------------- local domains
def _dense_domain_letkf_analysis(E, Eo, y, r_std, dist, radius, domains):
    """DAPPER's batched LETKF in NumPy: one dense-taper transform per domain, at the mean distance
    of the domain's points to each observation, applied to every point of the domain."""
    N = E.shape[0]
    mu, yo = E.mean(0), Eo.mean(0)
    A, Y = E - mu, Eo - yo
    Ys, dys = Y / r_std, (y - yo) / r_std
    Ea = np.empty_like(E)
    for row in domains:
        sr = np.sqrt(_gc(dist[row].mean(0), radius))
        Yl, dl = Ys * sr, dys * sr
        lam, V = np.linalg.eigh(Yl @ Yl.T + (N - 1) * np.eye(N))
        w = V @ ((V.T @ (Yl @ dl)) / lam)
        T = V @ np.diag(np.sqrt(N - 1) / np.sqrt(lam)) @ V.T
        Ea[:, row] = mu[row] + (w @ A[:, row])[None, :] + T @ A[:, row]
    return Ea


def test_partitions_cut_the_grid_into_rectangles():
    np.testing.assert_array_equal(PeriodicRing(12).partition(3), np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(PeriodicRing(12).partition(1), np.arange(12)[:, None])
    tiles = PeriodicGrid2D(4, 6).partition((2, 3))
    assert tiles.shape == (4, 6)
    np.testing.assert_array_equal(np.sort(tiles.ravel()), np.arange(24))  # a partition
    for row in tiles:
        i1, i2 = np.divmod(row, 6)
        assert i1.min() % 2 == 0 and i2.min() % 3 == 0
        np.testing.assert_array_equal(i1, i1.min() + np.repeat([0, 1], 3))
        np.testing.assert_array_equal(i2, i2.min() + np.tile([0, 1, 2], 2))
    np.testing.assert_array_equal(PeriodicGrid2D(4, 6).partition(2), PeriodicGrid2D(4, 6).partition((2, 2)))
    np.testing.assert_array_equal(Locations(np.arange(5.0)).partition(1), np.arange(5)[:, None])
    bad = [(PeriodicRing(10), 3, "divide"), (PeriodicGrid2D(4, 6), (3, 2), "divide"),
           (PeriodicRing(10), 0, "positive"), (PeriodicRing(10), 2.0, "positive"),
           (PeriodicGrid2D(4, 6), (2, 2, 1), "tuple of 2"), (Locations(np.arange(6.0)), 2, "no grid")]
    for geom, block, match in bad:
        with pytest.raises(ValueError, match=match):
            geom.partition(block)


@given(b1=st.integers(1, 3), b2=st.integers(1, 3), q1=st.integers(1, 4), q2=st.integers(1, 4),
       radius=st.floats(0.1, 3.0), stride=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_domain_neighbour_sets_use_the_mean_distance(b1, b2, q1, q2, radius, stride, seed):
    n1, n2 = b1 * q1, b2 * q2
    geom = PeriodicGrid2D(n1, n2)
    rng = np.random.default_rng(seed)
    locs = np.sort(rng.permutation(n1 * n2)[: max(1, n1 * n2 // stride)])
    domains = geom.partition((b1, b2))
    local = geom.local_observations(locs, radius, domains)
    mean_dist = _grid_dist(np.arange(n1 * n2), locs, n1, n2)[domains].mean(1)  # (n, m)
    cut = 2 * GC_SCALE * radius
    assert local.indices.shape[0] == domains.shape[0]
    for b in range(domains.shape[0]):
        got = local.indices[b][local.mask[b]]
        np.testing.assert_array_equal(got, np.flatnonzero(mean_dist[b] <= cut))
        np.testing.assert_allclose(local.distances[b][local.mask[b]], mean_dist[b][got], atol=1e-12)
    assert local.k_max == max(1, int((mean_dist <= cut).sum(1).max()))


@pytest.mark.parametrize("block", [2, 3])
@pytest.mark.parametrize("kind", ["linear_partial", "arctan_full"])
def test_letkf_local_domains_on_ring_equal_dense_reference(block, kind):
    d, N, radius = 30, 8, 2.0
    E0, obs, Eo, locs, r_std, y = _ring_problem(kind, d, N, seed=7)
    domains = np.arange(d).reshape(-1, block)
    want = _dense_domain_letkf_analysis(E0, Eo, y, r_std, _ring_dist(np.arange(d), locs, d), radius, domains)
    got = _one_analysis(obs, E0, y, localization_radius=radius, local_domain=block)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    per_point = _one_analysis(obs, E0, y, localization_radius=radius)
    assert np.max(np.abs(got - per_point)) > 1e-3  # the domains change the analysis
    np.testing.assert_array_equal(_one_analysis(obs, E0, y, localization_radius=radius, local_domain=1), per_point)
    np.testing.assert_allclose(got.mean(0), want.mean(0), rtol=1e-10, atol=1e-10)


def test_letkf_local_domains_on_2d_grid_equal_dense_reference():
    n1, n2, N = 8, 6, 10
    d = n1 * n2
    rng = np.random.default_rng(8)
    E0 = rng.standard_normal((N, d)) + rng.standard_normal(d)
    locs = np.sort(rng.permutation(d)[:20])
    obs = LinearObservation.partial(locs, d, 0.6)
    y = E0[:, locs].mean(0) + 0.6 * rng.standard_normal(len(locs))
    geom = PeriodicGrid2D(n1, n2)
    want = _dense_domain_letkf_analysis(E0, E0[:, locs], y, np.full(len(locs), 0.6),
                                        _grid_dist(np.arange(d), locs, n1, n2), 1.5, geom.partition((2, 3)))
    got = _one_analysis(obs, E0, y, localization_radius=1.5, localization=geom, local_domain=(2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_local_domain_needs_localisation_and_a_dividing_block():
    d, N = 12, 5
    E0 = np.random.default_rng(9).standard_normal((N, d))
    obs = NonlinearObservation("arctan", d, 0.3)
    y = np.zeros(d)
    with pytest.raises(ValueError, match="needs localization_radius"):
        _one_analysis(obs, E0, y, local_domain=2)
    with pytest.raises(ValueError, match="divide"):
        _one_analysis(obs, E0, y, localization_radius=2.0, local_domain=5)
    with pytest.raises(ValueError, match="no grid"):
        _one_analysis(obs, E0, y, localization_radius=2.0, localization=Locations(np.arange(d) * 1.0),
                      local_domain=2)


def test_letkf_batched_lax_map_equals_vmap(monkeypatch):
    """Many grid points go through lax.map in batches; the numbers do not depend on the batch."""
    import assimilax.filters.enkf as enkf_module

    d, N = 50, 6
    rng = np.random.default_rng(4)
    E0 = rng.standard_normal((N, d))
    obs = NonlinearObservation("arctan", d, 0.2)
    y = np.asarray(obs(jnp.asarray(E0[0])))
    full = _one_analysis(obs, E0, y, localization_radius=2.5)  # one vmap over the 50 points
    k = PeriodicRing(d).local_observations(np.arange(d), 2.5).k_max
    monkeypatch.setattr(enkf_module, "LOCAL_BATCH_BYTES", 7 * (2 * k * N + 4 * N * N + 2 * N) * 8)  # 7 points a batch
    assert enkf_module._local_batch(d, k, N, 8) == 7
    batched = _one_analysis(obs, E0, y, localization_radius=2.5)
    np.testing.assert_allclose(batched, full, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(batched - E0)) > 1e-2


def test_traced_radius_gathers_everything_and_agrees():
    d, N = 24, 7
    rng = np.random.default_rng(5)
    E0 = rng.standard_normal((N, d))
    obs = LinearObservation.every_kth(d, 2, 0.5)
    y = rng.standard_normal(d // 2)
    model = Identity(n=d)
    run = lambda r: ensemble_kalman_filter(model, obs, y[None], E0, key=jax.random.PRNGKey(0),  # noqa: E731
                                           localization_radius=r).ensembles[0]
    radii = jnp.array([0.8, 3.0])
    traced = np.asarray(jax.vmap(run)(radii))
    for k, r in enumerate([0.8, 3.0]):
        np.testing.assert_allclose(traced[k], np.asarray(run(r)), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- against the code at 82f5fc5
@pytest.fixture(scope="module")
def old_enkf(tmp_path_factory):
    """``enkf.py`` at revision 82f5fc5 (dense taper, dense whitening), imported from a copy."""
    try:
        src = subprocess.run(["git", "show", f"{OLD_REVISION}:lib/assimilax/filters/enkf.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:  # pragma: no cover - no git history
        pytest.skip(f"git revision {OLD_REVISION} not available: {e}")
    src = (src.replace("from .._ensemble import", "from assimilax._ensemble import")
              .replace("from .._validation import", "from assimilax._validation import")
              .replace("from ._types import EnsembleFilterResult", "from assimilax.filters import EnsembleFilterResult")
              .replace("from .kalman import _check_model_observation",
                       "def _check_model_observation(model, observation):\n    pass"))
    path = tmp_path_factory.mktemp("old") / "enkf_82f5fc5.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("enkf_82f5fc5", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("d,radius", [(40, 2.0), (60, 4.0)])
def test_letkf_lorenz96_arctan_cycles_equal_the_dense_implementation(old_enkf, d, radius):
    """Lorenz-96, arctan observations of every component, 12 cycles of 10 steps, inflation 1.02,
    no rotation (deterministic): the gathered LETKF reproduces the dense-taper one of 82f5fc5
    (the taper is exactly zero beyond the cut-off, so only rounding differs)."""
    model = Lorenz96(d, dt=0.01)
    obs = NonlinearObservation("arctan", d, 0.05)
    rng = np.random.default_rng(6)
    x = 8.0 + rng.standard_normal(d)
    x = np.asarray(model.integrate(jnp.asarray(x), 500)) if hasattr(model, "integrate") else x
    E0 = x + rng.standard_normal((20, d))
    ys = np.arctan(x + 0.1 * rng.standard_normal((12, d))) + 0.05 * rng.standard_normal((12, d))
    kw = dict(key=jax.random.PRNGKey(1), steps_per_obs=10, inflation=1.02, localization_radius=radius)
    new = ensemble_kalman_filter(model, obs, ys, E0, **kw)
    old = old_enkf.ensemble_kalman_filter(model, obs, ys, E0, **kw)
    assert PeriodicRing(d).local_observations(np.arange(d), radius).k_max < d  # the cut-off drops some
    np.testing.assert_allclose(np.asarray(new.analysis_mean), np.asarray(old.analysis_mean), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(new.ensembles), np.asarray(old.ensembles), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("method", ["sqrt", "pertobs"])
def test_global_paths_equal_the_dense_implementation(old_enkf, method):
    """The non-local ETKF and the perturbed-observation EnKF with a diagonal R (now whitened as a
    vector) give the numbers of 82f5fc5 (dense whitening). One cycle (the first cycle's key is the
    same in both: split(split(key)[0], T)[0])."""
    d, N = 12, 15
    rng = np.random.default_rng(7)
    E0 = rng.standard_normal((N, d))
    obs = LinearObservation.partial(np.arange(0, d, 2), d, rng.uniform(0.3, 1.0, d // 2))
    y = rng.standard_normal((1, d // 2))
    model = Identity(n=d)
    kw = dict(key=jax.random.PRNGKey(2), method=method, inflation=1.05)
    new = ensemble_kalman_filter(model, obs, y, E0, **kw)
    old = old_enkf.ensemble_kalman_filter(model, obs, y, E0, **kw)
    np.testing.assert_allclose(np.asarray(new.ensembles), np.asarray(old.ensembles), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["sqrt", "pertobs"])
def test_diagonal_r_vector_whitening_equals_dense_whitening(method):
    """Under jit the observation operator's R is traced, so the filter whitens densely; eagerly a
    diagonal R is whitened as a vector. Same key, same numbers."""
    d, N = 10, 12
    rng = np.random.default_rng(8)
    E0 = rng.standard_normal((N, d))
    obs = LinearObservation.full(d, rng.uniform(0.3, 1.0, d))
    y = rng.standard_normal((3, d))
    model = Identity(n=d)
    run = lambda o: ensemble_kalman_filter(model, o, y, E0, key=jax.random.PRNGKey(3), method=method).ensembles  # noqa: E731
    np.testing.assert_allclose(np.asarray(run(obs)), np.asarray(jax.jit(run)(obs)), rtol=1e-12, atol=1e-12)


def test_non_diagonal_r_with_localization_whitens_densely():
    """A non-diagonal R is accepted with localisation (dense whitening, whitened component j
    tapered at observation j's location), as at 82f5fc5: with an infinite radius the LETKF is
    the global ETKF."""
    d, N = 8, 10
    rng = np.random.default_rng(9)
    E0 = rng.standard_normal((N, d))
    V = rng.standard_normal((d, d))
    obs = LinearObservation(np.eye(d), V @ V.T / d + np.eye(d))
    y = rng.standard_normal(d)
    np.testing.assert_allclose(_one_analysis(obs, E0, y, localization_radius=np.inf), _one_analysis(obs, E0, y),
                               rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- 2-D field, 2-D geometry
def _diffusion_model(n, kappa=0.15, q=0.05):
    """Periodic n x n diffusion, explicit five-point Laplacian, x -> (I + kappa L) x + noise."""
    d = n * n
    idx = np.arange(d).reshape(n, n)
    A = np.eye(d) * (1 - 4 * kappa)
    for s in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
        A[idx.ravel(), np.roll(idx, s, axis=(0, 1)).ravel()] += kappa
    return LinearGaussian(jnp.asarray(A), q**2 * jnp.eye(d))


def test_2d_field_assimilated_with_2d_geometry_beats_free_run_and_ring():
    n, N, T = 32, 16, 15
    d = n * n
    model = _diffusion_model(n)
    rng = np.random.default_rng(10)
    # a smooth random truth: a few Fourier modes
    k1, k2 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x0 = sum(rng.standard_normal() * np.cos(2 * np.pi * (a * k1 + b * k2) / n + rng.uniform(0, 2 * np.pi))
             for a, b in [(1, 0), (0, 1), (1, 1), (2, 1), (1, 2)]).ravel()
    locs = np.flatnonzero(((k1 % 4) == 0).ravel() & ((k2 % 4) == 0).ravel())  # every 4th point each way
    obs = LinearObservation.partial(locs, d, 0.1)
    from assimilax import simulate

    sim = simulate(model, obs, jnp.asarray(x0), T, key=jax.random.PRNGKey(11))
    E0 = jnp.asarray(x0)[None] + jnp.asarray(
        sum(rng.standard_normal((N, 1)) * np.cos(2 * np.pi * (a * k1 + b * k2).ravel() / n + rng.uniform(0, 6.3, (N, 1)))
            for a, b in [(1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (2, 2)]))
    truth = np.asarray(sim.states)

    def rmse(means):
        return float(np.mean(np.sqrt(np.mean((np.asarray(means) - truth) ** 2, axis=1))[5:]))

    free = np.asarray(E0).mean(0)[None]
    free_means = [free[0]]
    A = np.asarray(model.A)
    for _ in range(T - 1):
        free_means.append(A @ free_means[-1])
    free_means = np.stack([A @ m for m in free_means])
    kw = dict(key=jax.random.PRNGKey(12), inflation=1.05, localization_radius=2.0, store_ensembles=False)
    grid = ensemble_kalman_filter(model, obs, sim.observations, E0, localization=PeriodicGrid2D(n, n), **kw)
    ring = ensemble_kalman_filter(model, obs, sim.observations, E0, **kw)
    e_free, e_grid, e_ring = rmse(free_means), rmse(grid.analysis_mean), rmse(ring.analysis_mean)
    assert e_grid < 0.4 * e_free, (e_grid, e_free)
    assert e_grid < 0.8 * e_ring, (e_grid, e_ring)


# ---------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused():
    d = 12
    model = Identity(n=d)
    obs = LinearObservation.full(d, 1.0)
    E0 = np.random.default_rng(0).standard_normal((5, d))
    y = np.zeros((1, d))
    call = lambda **kw: ensemble_kalman_filter(model, obs, y, E0, key=jax.random.PRNGKey(0), **kw)  # noqa: E731
    for bad in (0.0, -1.0, np.array([1.0, 2.0])):
        with pytest.raises(ValueError, match="localization_radius"):
            call(localization_radius=bad)
    with pytest.raises(ValueError, match="expected the state dimension 12"):
        call(localization_radius=1.0, localization=PeriodicGrid2D(3, 5))
    with pytest.raises(ValueError, match="needs localization_radius"):
        call(localization=PeriodicRing(d))
    with pytest.raises(ValueError, match="must be a geometry"):
        call(localization_radius=1.0, localization=lambda i, j: abs(i - j))
    with pytest.raises(ValueError, match="positive integer"):
        PeriodicGrid2D(0, 3)
    with pytest.raises(ValueError, match="one entry per axis"):
        Locations(np.zeros((4, 2)), periods=(1.0,))
    with pytest.raises(ValueError, match="positive and finite"):
        Locations(np.zeros((4, 1)), periods=(-1.0,))
    with pytest.raises(ValueError, match="radius"):
        PeriodicRing(5).local_observations(np.arange(5), 0.0)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        PeriodicRing(5).local_observations(np.array([0, 7]), 1.0)


def test_gaspari_cohn_exported_from_both_modules():
    from assimilax.filters import gaspari_cohn as g2

    r = np.linspace(0, 9, 50)
    np.testing.assert_allclose(np.asarray(gaspari_cohn(jnp.asarray(r), 1.5)), _gc(r, 1.5), atol=1e-12)
    assert g2 is gaspari_cohn
