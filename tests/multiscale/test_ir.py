"""Iterative refinement against closed forms: a homogeneous Gaussian field with per-mode AR(1)
dynamics has Gaussian refinement conditionals; exact scores driving the IR sampler and the
one-shot sampler must both reproduce the exact p(x^R_t | x^{r0}_t, x^R_{t-1})."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.diffusion import VPSDE
from assimilax.multiscale import Hierarchy, gaussian_twin
from assimilax.multiscale.ir import (LevelwiseModel, RefinementModel, detail, levelwise_model, matched_batch_size,
                                     reconstruction_scores, refine, refinement_model, sampling_cost, super_resolved_filter,
                                     train_levelwise, train_refinement, training_cost)

N = 16
K = np.abs(np.fft.fftfreq(N, 1.0 / N))
POWER = N * (1.0 + K) ** -1.5        # E|X_k|^2 of the unnormalised DFT
RHO = 0.9 * np.exp(-(K / 6.0) ** 2)  # real lag-one correlation per mode


def _circulant(mult):
    F = np.fft.fft(np.eye(N), axis=0)
    return (F.conj().T @ np.diag(mult) @ F).real / N ** 2


SIGMA = _circulant(POWER)                 # stationary covariance
A = _circulant(RHO * N) * 1.0             # x_t = A x_{t-1} + noise, Fourier multipliers RHO
JOINT = np.block([[SIGMA, A @ SIGMA], [SIGMA @ A.T, SIGMA]])  # cov of (x_t, x_{t-1})


def _matrix(fn, n_in):
    return np.stack([np.asarray(fn(jnp.asarray(e))) for e in np.eye(n_in)], axis=1)


def _gauss_conditional(D, G):
    """Mean map and covariance of D z given G z for z ~ N(0, JOINT)."""
    gj = G @ JOINT
    Kc = np.linalg.solve(gj @ G.T, gj @ D.T).T
    S = D @ JOINT @ D.T - Kc @ gj @ D.T
    return Kc, 0.5 * (S + S.T)


class ExactRefinement:
    """Exact Gaussian conditional scores of the normalised detail at every level of ``hierarchy``."""

    use_previous = True

    def __init__(self, hierarchy, sde, scales):
        self.hierarchy, self.sde, self.detail_scales = hierarchy, sde, tuple(scales)
        h = hierarchy
        self.maps = []
        for r in range(h.finest):
            Pr = _matrix(lambda e: h.restrict(e, r), N)
            P1 = _matrix(lambda e: h.restrict(e, r + 1), N)
            Pi = _matrix(lambda e: detail(h, e, r), h.sizes[r + 1])
            zero = np.zeros_like(P1)
            G = np.block([[Pr, np.zeros_like(Pr)], [zero, P1]])
            D = np.hstack([Pi @ P1, zero]) / self.detail_scales[r]
            Kc, S = _gauss_conditional(D, G)
            lam, V = np.linalg.eigh(S)
            self.maps.append((jnp.asarray(Kc), jnp.asarray(np.maximum(lam, 0.0)), jnp.asarray(V)))

    def condition(self, level, coarse, previous, aug_level=0.0, aug_noise=None):
        h = self.hierarchy
        return jnp.stack([h.lift(coarse, level, target=level + 1), previous])

    def level_score(self, level, x, t, cond):
        Kc, lam, V = self.maps[level]
        u = jnp.concatenate([self.hierarchy.coarsen(cond[0], level), cond[1]])
        a, s2 = self.sde.alpha(t), self.sde.sigma2(t)
        r = V.T @ (x[0] - a * (Kc @ u))
        return -(V @ (r / (a ** 2 * lam + s2)))[None]


def _exact_target(r0):
    h = Hierarchy((4, 8, 16), "spectral")
    P0 = _matrix(lambda e: h.restrict(e, r0), N)
    G = np.block([[P0, np.zeros_like(P0)], [np.zeros((N, N)), np.eye(N)]])
    return _gauss_conditional(np.hstack([np.eye(N), np.zeros((N, N))]), G)


def _truth(seed=3):
    rng = np.random.default_rng(seed)
    z = np.linalg.cholesky(JOINT + 1e-12 * np.eye(2 * N)) @ rng.standard_normal(2 * N)
    return z[:N], z[N:]


def _moments_ok(samples, mean, cov, n_sigma=5.0):
    """Mean within n_sigma standard errors; covariance within 10% (Frobenius) plus Monte Carlo."""
    n = samples.shape[0]
    err = (samples.mean(0) - mean) / np.sqrt(np.diag(cov) / n + 1e-300)
    emp = np.cov(samples.T)
    rel = np.linalg.norm(emp - cov) / np.linalg.norm(cov)
    return float(np.max(np.abs(err))), float(rel)


@pytest.fixture(scope="module")
def exact_runs():
    sde = VPSDE()
    x_t, x_prev = _truth()
    n = 2000
    h_ir = Hierarchy((4, 8, 16), "spectral")
    h_os = Hierarchy((4, 16), "spectral")
    ir = ExactRefinement(h_ir, sde, (0.7, 0.4))
    os_ = ExactRefinement(h_os, sde, (0.6,))
    coarse = jnp.broadcast_to(jnp.asarray(h_ir.restrict(jnp.asarray(x_t), 0)), (n, 4))
    prev = jnp.broadcast_to(jnp.asarray(x_prev), (n, N))
    run = jax.jit(lambda m_key: refine(ir, coarse, prev, key=m_key, n_steps=120))
    s_ir = np.asarray(run(jax.random.key(0)))
    s_os = np.asarray(jax.jit(lambda k: refine(os_, coarse, prev, key=k, n_steps=120))(jax.random.key(1)))
    return x_t, x_prev, s_ir, s_os, coarse


def test_exact_ir_and_one_shot_reproduce_the_exact_conditional(exact_runs):
    x_t, x_prev, s_ir, s_os, _ = exact_runs
    Kc, S = _exact_target(0)
    mean = Kc @ np.concatenate([np.asarray(Hierarchy((4, 16)).restrict(jnp.asarray(x_t), 0)), x_prev])
    for s in (s_ir, s_os):
        z, rel = _moments_ok(s, mean, S)
        assert z < 5.0, z
        assert rel < 0.12, rel
    # the two samplers agree in law with each other (two-sample mean test, covariance)
    se = np.sqrt(s_ir.var(0) / len(s_ir) + s_os.var(0) / len(s_os))
    assert np.max(np.abs(s_ir.mean(0) - s_os.mean(0)) / se) < 5.0
    assert np.linalg.norm(np.cov(s_ir.T) - np.cov(s_os.T)) / np.linalg.norm(S) < 0.15


def test_exact_ir_factorisation_is_the_one_shot_law():
    """Composing the exact level conditionals analytically gives the one-shot conditional exactly
    (spectral restriction, mode-wise dynamics): the IR Markov approximation is exact here."""
    h = Hierarchy((4, 8, 16), "spectral")
    P0 = _matrix(lambda e: h.restrict(e, 0), N)
    P1 = _matrix(lambda e: h.restrict(e, 1), N)
    # x^1_t | x^0_t, x^1_{t-1}, then x^2_t | x^1_t, x_{t-1}: linear-Gaussian composition
    K1, S1 = _gauss_conditional(np.hstack([P1, np.zeros((8, N))]),
                                np.block([[P0, np.zeros((4, N))], [np.zeros((8, N)), P1]]))
    K2, S2 = _gauss_conditional(np.hstack([np.eye(N), np.zeros((N, N))]),
                                np.block([[P1, np.zeros((8, N))], [np.zeros((N, N)), np.eye(N)]]))
    # mean of x^2 as a map of (x^0_t, x_{t-1}): K2 [K1 (x0, P1 xprev); xprev]
    K1_full = np.hstack([K1[:, :4], K1[:, 4:] @ P1])
    Kc = K2[:, :8] @ K1_full + np.hstack([np.zeros((N, 4)), K2[:, 8:]])
    S = S2 + K2[:, :8] @ S1 @ K2[:, :8].T
    K_os, S_os = _exact_target(0)
    np.testing.assert_allclose(Kc, K_os, atol=1e-9)
    np.testing.assert_allclose(S, S_os, atol=1e-9)


def test_refinement_is_consistent_with_its_condition(exact_runs):
    x_t, _, s_ir, s_os, coarse = exact_runs
    h = Hierarchy((4, 8, 16), "spectral")
    for s in (s_ir, s_os):
        np.testing.assert_allclose(np.asarray(h.restrict(jnp.asarray(s), 0)), np.asarray(coarse), atol=1e-10)


def test_ir_without_the_previous_frame_is_detectably_wrong():
    """The moment test has power: scores that ignore the previous frame (AR correlation 0.9 at the
    large scales) give a different law."""
    sde = VPSDE()
    x_t, x_prev = _truth()
    h = Hierarchy((4, 8, 16), "spectral")
    ir = ExactRefinement(h, sde, (0.7, 0.4))
    n = 1000
    coarse = jnp.broadcast_to(h.restrict(jnp.asarray(x_t), 0), (n, 4))
    wrong_prev = jnp.zeros((n, N))
    s = np.asarray(jax.jit(lambda k: refine(ir, coarse, wrong_prev, key=k, n_steps=50))(jax.random.key(2)))
    Kc, S = _exact_target(0)
    mean = Kc @ np.concatenate([np.asarray(coarse[0]), x_prev])
    z, _ = _moments_ok(s, mean, S)
    assert z > 8.0


class _LevelView:
    """Level ``r`` of a shared exact model, seen as level 0 of the two-level hierarchy (n_r, n_{r+1})."""

    def __init__(self, full, r):
        h = full.hierarchy
        self.full, self.r, self.sde = full, r, full.sde
        self.hierarchy = Hierarchy((h.sizes[r], h.sizes[r + 1]), h.kind, h.ndim)
        self.detail_scales = (full.detail_scales[r],)

    def condition(self, level, coarse, previous, aug_level=0.0, aug_noise=None):
        assert level == 0
        return self.full.condition(self.r, coarse, previous, aug_level, aug_noise)

    def level_score(self, level, x, t, cond):
        assert level == 0
        return self.full.level_score(self.r, x, t, cond)


def test_levelwise_sampler_is_the_shared_sampler_for_the_same_factors(exact_runs):
    """Separate per-level models that compute the shared model's factors give the same samples
    (same keys), so the levelwise path inherits the exact-law test above; and it restricts exactly."""
    x_t, x_prev, s_ir, _, coarse = exact_runs
    sde = VPSDE()
    h = Hierarchy((4, 8, 16), "spectral")
    shared = ExactRefinement(h, sde, (0.7, 0.4))
    lw = LevelwiseModel((_LevelView(shared, 0), _LevelView(shared, 1)), h)
    assert lw.detail_scales == (0.7, 0.4)
    prev = jnp.broadcast_to(jnp.asarray(x_prev), (coarse.shape[0], N))
    s_lw = np.asarray(jax.jit(lambda k: refine(lw, coarse, prev, key=k, n_steps=120))(jax.random.key(0)))
    np.testing.assert_allclose(s_lw, s_ir, atol=1e-9)
    with pytest.raises(ValueError, match="one model per refinement step"):
        LevelwiseModel((_LevelView(shared, 0),), h)
    with pytest.raises(ValueError, match=r"models\[1\] must be on the hierarchy"):
        LevelwiseModel((_LevelView(shared, 0), _LevelView(shared, 0)), h)


def test_levelwise_training_cost_parameters_and_filter():
    sde = VPSDE()
    h = Hierarchy((4, 8, 16), "spectral")
    frames = _gaussian_training_data(jax.random.key(21), n_traj=8, n_steps=4)
    lw = levelwise_model(h, frames, sde, key=jax.random.key(22), widths=(8,))
    shared = refinement_model(h, frames, sde, key=jax.random.key(22), widths=(8,))
    assert [m.hierarchy.sizes for m in lw.models] == [(4, 8), (8, 16)]
    # the same detail scales as the shared model (each estimated from the frames at its target level)
    np.testing.assert_allclose(lw.detail_scales, shared.detail_scales, rtol=1e-5)
    fitted, losses, cost = train_levelwise(lw, frames, key=jax.random.key(23), n_steps=30, batch_size=8, progress=False)
    assert cost == training_cost(h, 30, 8)
    assert losses.shape == (30,) and np.all(np.isfinite(losses))
    n_params = lambda m: sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array)))  # noqa: E731
    assert n_params(fitted) > n_params(shared)  # two networks (fewer conditioning channels each) against one
    test = _gaussian_training_data(jax.random.key(24), n_traj=1, n_steps=3)[0]
    ys = h.restrict(test, 0)
    f = eqx.filter_jit(lambda m, k: super_resolved_filter(m, ys, key=k, n_members=3, n_steps=8))
    a, b = f(fitted, jax.random.key(1)), f(fitted, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a.ensembles), np.asarray(b.ensembles))
    np.testing.assert_allclose(np.asarray(h.restrict(a.ensembles.reshape(3, 3, N), 0)),
                               np.broadcast_to(np.asarray(ys)[:, None], (3, 3, 4)), atol=1e-5)
    with pytest.raises(TypeError, match="trains a LevelwiseModel"):
        train_levelwise(shared, frames, key=jax.random.key(0), n_steps=2)


def test_costs_and_matched_batch():
    h = Hierarchy((16, 32, 64, 128), "spectral")
    o = Hierarchy((16, 128), "spectral")
    assert training_cost(h, 10, 4) == (120, 10 * 4 * (32 + 64 + 128))
    assert sampling_cost(o, 50, 3) == (150, 150 * 128)
    assert matched_batch_size(h, 32, o) == 56  # 32 * (32+64+128)/128
    h2 = Hierarchy((8, 16, 32), "spectral", ndim=2)
    assert matched_batch_size(h2, 16, Hierarchy((8, 32), "spectral", ndim=2)) == 20  # 16 * (1/4 + 1)


def _gaussian_training_data(key, n_traj=48, n_steps=12):
    return gaussian_twin(key, jnp.asarray(POWER), n_traj, n_steps, rho=jnp.asarray(RHO + 0j))


@pytest.fixture(scope="module")
def trained():
    sde = VPSDE()
    h = Hierarchy((8, 16), "spectral")
    frames = _gaussian_training_data(jax.random.key(5))
    model = refinement_model(h, frames, sde, key=jax.random.key(6), widths=(16,))
    fitted, losses, cost = train_refinement(model, frames, key=jax.random.key(7), n_steps=400, batch_size=32,
                                            learning_rate=3e-3, progress=False)
    return sde, h, model, fitted, losses, cost


def test_trained_model_beats_broken_models(trained):
    sde, h, untrained, fitted, losses, cost = trained
    assert cost.evaluations == 400 * 32
    assert np.mean(losses[-100:]) < np.mean(losses[:20])
    exact = ExactRefinement(h, sde, fitted.detail_scales)
    test = _gaussian_training_data(jax.random.key(9), n_traj=64, n_steps=2)
    x_t, x_prev = test[:, 1], test[:, 0]
    coarse = h.restrict(x_t, 0)
    d0 = detail(h, x_t, 0)[:, None] / fitted.detail_scales[0]

    def score_error(model, shuffle=False):
        errs, refs = [], []
        for i, t in enumerate((0.05, 0.2, 0.5)):
            k = jax.random.fold_in(jax.random.key(11), i)
            eps = jax.random.normal(k, d0.shape)
            xt = sde.alpha(t) * d0 + sde.sigma(t) * eps
            prev = x_prev[::-1] if shuffle else x_prev
            cond_m = jax.vmap(lambda c, p: model.condition(0, c, p))(coarse, prev)
            cond_e = jax.vmap(lambda c, p: exact.condition(0, c, p))(coarse, x_prev)
            s_m = jax.vmap(lambda x, c: model.level_score(0, x, t, c))(xt, cond_m)
            s_e = jax.vmap(lambda x, c: exact.level_score(0, x, t, c))(xt, cond_e)
            pi = lambda s: detail(h, s[:, 0], 0)  # noqa: E731 the part the model learns
            errs.append(sde.sigma2(t) * jnp.mean(jnp.sum((pi(s_m) - pi(s_e)) ** 2, -1)))
            refs.append(sde.sigma2(t) * jnp.mean(jnp.sum(pi(s_e) ** 2, -1)))
        return float(sum(errs) / sum(refs))

    e_fit, e_untrained, e_shuffled = score_error(fitted), score_error(untrained), score_error(fitted, shuffle=True)
    assert e_fit < 0.15, e_fit
    assert e_untrained > 2 * e_fit and e_shuffled > 2 * e_fit, (e_fit, e_untrained, e_shuffled)


def test_reproducible_and_filter_shapes(trained):
    sde, h, _, fitted, _, _ = trained
    test = _gaussian_training_data(jax.random.key(12), n_traj=1, n_steps=3)[0]
    ys = h.restrict(test, 0)
    f = jax.jit(lambda k: super_resolved_filter(fitted, ys, key=k, n_members=4, n_steps=10))
    a, b, c = f(jax.random.key(1)), f(jax.random.key(1)), f(jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a.ensembles), np.asarray(b.ensembles))
    assert not np.allclose(np.asarray(a.ensembles), np.asarray(c.ensembles))
    assert a.ensembles.shape == (3, 4, N) and a.analysis_mean.shape == (3, N) and a.analysis_spread.shape == (3,)
    np.testing.assert_allclose(np.asarray(h.restrict(a.ensembles, 0)), np.broadcast_to(np.asarray(ys)[:, None], (3, 4, 8)),
                               atol=1e-10)
    with pytest.raises(ValueError, match="observations must have shape"):
        super_resolved_filter(fitted, test, key=jax.random.key(1))
    with pytest.raises(ValueError, match="coarse must have shape"):
        refine(fitted, test, test, key=jax.random.key(0))
    assert isinstance(fitted, RefinementModel)


def test_reconstruction_scores_against_numpy():
    """Every score of reconstruction_scores recomputed independently in NumPy (1-D): the relative
    error of the mean, the fair ensemble CRPS E|X - y| - E|X - X'|/2 (distinct pairs), spread over RMSE, and the band
    log-ratios, which do not depend on the spectrum's normalisation (bands avoid k = 0 and the
    Nyquist mode, whose one-sided weights differ)."""
    rng = np.random.default_rng(3)
    S, M, n = 4, 5, 32
    truth = rng.normal(size=(S, n))
    ens = truth[:, None] + np.array([0.3, 0.5, 1.0, 2.0])[:, None, None] * rng.normal(size=(S, M, n))
    edges = [1.0, 4.0, 9.0, 16.0]
    sc = reconstruction_scores(jnp.asarray(ens), jnp.asarray(truth), edges, ndim=1)
    mean = ens.mean(1)
    np.testing.assert_allclose(sc.rel_l2, np.linalg.norm(mean - truth, axis=1) / np.linalg.norm(truth, axis=1),
                               rtol=1e-10)
    crps = (np.abs(ens - truth[:, None]).mean(1)  # the fair form: M (M - 1) pairs in the second term
            - np.abs(ens[:, :, None] - ens[:, None, :]).sum((1, 2)) / (2 * M * (M - 1))).mean(-1)
    np.testing.assert_allclose(sc.crps, crps, rtol=1e-10)
    spread = np.sqrt(ens.var(1, ddof=1).mean(-1))
    np.testing.assert_allclose(sc.spread_error, spread / np.sqrt(((mean - truth) ** 2).mean(-1)), rtol=1e-10)
    p_e, p_t = np.abs(np.fft.rfft(ens)) ** 2, np.abs(np.fft.rfft(truth)) ** 2
    k = np.arange(n // 2 + 1)
    want = np.zeros((S, len(edges) - 1))
    for b in range(len(edges) - 1):
        sel = (k >= edges[b]) & (k < edges[b + 1])
        want[:, b] = np.abs(np.log10(p_e[..., sel].sum(-1) / p_t[:, None, sel].sum(-1))).mean(1)
    np.testing.assert_allclose(sc.band_spectrum, want, rtol=1e-8)
    # a perfect ensemble scores zero error in every band; a ten-fold amplitude scores 2 (energy x 100)
    same = reconstruction_scores(jnp.repeat(jnp.asarray(truth)[:, None], 2, axis=1), jnp.asarray(truth), edges)
    np.testing.assert_allclose(same.band_spectrum, 0.0, atol=1e-12)
    loud = reconstruction_scores(10.0 * jnp.repeat(jnp.asarray(truth)[:, None], 2, axis=1), jnp.asarray(truth), edges)
    np.testing.assert_allclose(loud.band_spectrum, 2.0, rtol=1e-10)
