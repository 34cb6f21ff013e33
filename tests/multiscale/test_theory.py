"""Exact mixture computations of multiscale.theory against Monte Carlo, Bayes' rule on a grid,
autodiff, quadrature and the Schur-complement identity (independent references)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from hypothesis import given, settings
from hypothesis import strategies as st

from assimilax.diffusion import VPSDE, GaussianMixture
from assimilax.multiscale import restriction_matrix
from assimilax.multiscale.theory import (affine_pushforward, chi2_divergence, condition, conditional_log_prob,
                                         conditional_sample, conditional_score, detail_basis, gaussian_chi2,
                                         hierarchy_coordinates, linear_image, mahalanobis_separation,
                                         mixture_lsi_bound, transition_joint)


def _random_mixture(rng, K, d, scale=2.0):
    means = rng.normal(size=(K, d)) * scale
    covs = []
    for _ in range(K):
        B = rng.normal(size=(d, d))
        covs.append(0.3 * B @ B.T / d + 0.2 * np.eye(d))
    return GaussianMixture(jnp.asarray(rng.uniform(0.5, 1.5, K)), jnp.asarray(means), jnp.asarray(np.stack(covs)))


def _system(rng, d):
    A = np.linalg.qr(rng.normal(size=(d, d)))[0] * 0.9
    b = rng.normal(size=d) * 0.3
    B = rng.normal(size=(d, d))
    Q = 0.05 * B @ B.T / d + 0.02 * np.eye(d)
    return jnp.asarray(A), jnp.asarray(b), jnp.asarray(Q)


def test_pushforward_against_simulation():
    rng = np.random.default_rng(0)
    mix = _random_mixture(rng, 3, 2)
    A, b, Q = _system(rng, 2)
    n = 200_000
    x = mix.sample(jax.random.PRNGKey(1), n)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    L = jnp.linalg.cholesky(Q)
    for k in keys:
        x = x @ A.T + b[None, :] + jax.random.normal(k, x.shape) @ L.T
    exact = affine_pushforward(mix, A, b, Q, steps=3)
    sd = np.sqrt(np.diag(np.asarray(exact.cov())))
    np.testing.assert_allclose(x.mean(0), exact.mean(), atol=5 * float(sd.max()) / np.sqrt(n))
    np.testing.assert_allclose(np.cov(np.asarray(x).T), exact.cov(), atol=0.02 * float(sd.max()) ** 2)
    # the density too: a 1-D projection's histogram against the exact projected mixture
    P = jnp.asarray([[0.6, -0.8]])
    proj = linear_image(exact, P)
    hist, edges = np.histogram(np.asarray(x @ P.T)[:, 0], bins=40, density=True)
    mid = 0.5 * (edges[1:] + edges[:-1])
    dens = np.exp(np.asarray(proj.log_prob(jnp.asarray(mid)[:, None])))
    np.testing.assert_allclose(hist, dens, atol=0.02 + 0.05 * dens.max())


def test_transition_conditional_against_binning():
    # 1-D state: p(x_t | x_{t-1} = y0) from the joint, against samples binned at y0
    mix = GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-1.5], [1.0]]), jnp.array([[[0.4]], [[0.3]]]))
    A, b, Q = jnp.array([[0.8]]), jnp.array([0.2]), jnp.array([[0.1]])
    joint = transition_joint(mix, A, b, Q)
    y0 = -0.2
    cond = condition(joint, jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])).at(jnp.array([y0]))
    x = np.asarray(joint.sample(jax.random.PRNGKey(3), 600_000))
    sel = x[np.abs(x[:, 0] - y0) < 0.04, 1]
    assert sel.size > 3000
    se = sel.std() / np.sqrt(sel.size)
    np.testing.assert_allclose(sel.mean(), cond.mean(), atol=5 * se + 0.01)
    np.testing.assert_allclose(sel.var(), cond.cov()[0, 0], rtol=0.05)
    # and the same mean from direct simulation of the dynamics, not through transition_joint
    x0 = np.asarray(mix.sample(jax.random.PRNGKey(4), 600_000))[:, 0]
    x1 = 0.8 * x0 + 0.2 + np.sqrt(0.1) * np.random.default_rng(5).normal(size=x0.size)
    sel2 = x1[np.abs(x0 - y0) < 0.04]
    np.testing.assert_allclose(sel2.mean(), cond.mean(), atol=5 * sel2.std() / np.sqrt(sel2.size) + 0.01)


def test_condition_against_bayes_on_a_grid():
    rng = np.random.default_rng(6)
    z = _random_mixture(rng, 3, 3)
    O = jnp.asarray(rng.normal(size=(2, 3)))
    T = jnp.asarray(rng.normal(size=(1, 3)))
    y = jnp.asarray(rng.normal(size=2))
    cm = condition(z, O, T)
    # Bayes: p(u | y) proportional to the joint density of (Tz, Oz) at (u, y)
    joint = linear_image(z, jnp.concatenate([T, O], axis=0))
    u = jnp.linspace(-15, 15, 3001)
    pts = jnp.concatenate([u[:, None], jnp.broadcast_to(y[None, :], (u.size, 2))], axis=1)
    lj = np.asarray(joint.log_prob(pts))
    ref = np.exp(lj - lj.max())
    ref /= np.trapezoid(ref, np.asarray(u))
    got = np.exp(np.asarray(conditional_log_prob(cm, u[:, None], jnp.broadcast_to(y[None, :], (u.size, 2)))))
    np.testing.assert_allclose(got, ref, atol=1e-6 * ref.max() + 1e-12, rtol=1e-6)
    # sampling draws from the same law
    s = np.asarray(conditional_sample(cm, jnp.broadcast_to(y[None, :], (100_000, 2)), jax.random.PRNGKey(7)))[:, 0]
    mean_ref = np.trapezoid(ref * np.asarray(u), np.asarray(u))
    assert abs(s.mean() - mean_ref) < 5 * s.std() / np.sqrt(s.size)


def test_conditional_score_against_autodiff():
    rng = np.random.default_rng(8)
    z = _random_mixture(rng, 4, 4)
    O, T = jnp.asarray(rng.normal(size=(2, 4))), jnp.asarray(rng.normal(size=(2, 4)))
    cm = condition(z, O, T)
    sde = VPSDE()
    score = conditional_score(sde, cm)
    vals = jnp.asarray(rng.normal(size=(5, 2)))
    u = jnp.asarray(rng.normal(size=(5, 2)))
    for t in (0.01, 0.3, 0.9):
        got = score(u, t, vals)
        ref = jnp.stack([jax.grad(lambda x: cm.at(v).diffused(sde, t).log_prob(x[None])[0])(ui) for ui, v in zip(u, vals)])
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


def test_chain_rule_of_the_hierarchy_factors_is_exact():
    # the IR factors p(xi_r | xi_<r, c) multiply to the one-shot conditional p(xi | c), pointwise
    rng = np.random.default_rng(9)
    d = 4
    mix = _random_mixture(rng, 3, d)
    A, b, Q = _system(rng, d)
    joint = transition_joint(mix, A, b, Q)
    Ps = [restriction_matrix(4, f, kind="block") for f in (4, 2, 1)]
    hc = hierarchy_coordinates(Ps)
    Z = jnp.zeros((d, d))
    past = jnp.concatenate([jnp.eye(d), Z], axis=1)
    now = lambda M: jnp.concatenate([jnp.zeros((M.shape[0], d)), M], axis=1)  # noqa: E731
    zs = joint.sample(jax.random.PRNGKey(10), 500)
    one_shot = condition(joint, jnp.concatenate([past, now(hc.level(0))]), now(hc.forward[hc.slices[1].start:]))
    c = zs @ jnp.concatenate([past, now(hc.level(0))]).T
    xi = zs @ now(hc.forward[hc.slices[1].start:]).T
    total = conditional_log_prob(one_shot, xi, c)
    parts = 0.0
    for j in (1, 2):
        O = jnp.concatenate([past, now(hc.up_to(j - 1))])
        f = condition(joint, O, now(hc.level(j)))
        parts = parts + conditional_log_prob(f, zs @ now(hc.level(j)).T, zs @ O.T)
    np.testing.assert_allclose(parts, total, rtol=1e-8, atol=1e-8)
    # coordinates: inverse, and groups 0..j carry exactly x^{r0+j}
    x = jnp.asarray(rng.normal(size=(7, d)))
    np.testing.assert_allclose((x @ hc.forward.T) @ hc.inverse.T, x, atol=1e-10)
    for j, P in enumerate(Ps):
        rows = hc.up_to(j)
        M = P @ jnp.linalg.pinv(rows)
        np.testing.assert_allclose(M @ rows, P, atol=1e-10)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 8))
def test_coarsening_never_increases_separation(seed, d):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(d, d))
    S = B @ B.T + 0.1 * np.eye(d)
    delta = rng.normal(size=d) * 3
    # random nested restrictions: P^{r} = C^r P^{r+1}, full row rank
    Ps = [np.eye(d)]
    while Ps[-1].shape[0] > 1:
        m = rng.integers(1, Ps[-1].shape[0])
        Ps.append(rng.normal(size=(m, Ps[-1].shape[0])) @ Ps[-1])
    seps = [float(P @ delta @ np.linalg.solve(P @ S @ P.T, P @ delta)) for P in Ps]
    mix = GaussianMixture(jnp.ones(2), jnp.asarray(np.stack([delta, np.zeros(d)])), jnp.asarray(np.stack([S, S])))
    for P, s in zip(Ps, seps):
        np.testing.assert_allclose(mahalanobis_separation(linear_image(mix, jnp.asarray(P)))[0, 1], s, rtol=1e-8)
    assert all(a >= b - 1e-9 * a for a, b in zip(seps[:-1], seps[1:]))
    # the Schur split: separation = coarse part + the conditional part of the detail
    P = Ps[1]
    G = S @ P.T @ np.linalg.inv(P @ S @ P.T)
    dc, Sc = delta - G @ P @ delta, S - G @ P @ S
    N = np.asarray(detail_basis(jnp.asarray(P)))
    cond = float(N.T @ dc @ np.linalg.solve(N.T @ Sc @ N, N.T @ dc))
    np.testing.assert_allclose(seps[0], seps[1] + cond, rtol=1e-6)


def test_separation_decreases_along_block_hierarchy():
    rng = np.random.default_rng(11)
    for _ in range(10):
        B = rng.normal(size=(8, 8))
        S = B @ B.T + 0.1 * np.eye(8)
        mix = GaussianMixture(jnp.ones(2), jnp.asarray(rng.normal(size=(2, 8))), jnp.asarray(np.stack([S, S])))
        seps = [float(mahalanobis_separation(linear_image(mix, restriction_matrix(8, f, kind=k)))[0, 1])
                for k in ("block", "spectral") for f in (1, 2, 4, 8)]
        assert all(a >= b - 1e-9 for a, b in zip(seps[:4][:-1], seps[:4][1:]))
        assert all(a >= b - 1e-9 for a, b in zip(seps[4:][:-1], seps[4:][1:]))


def test_chi2_against_quadrature():
    for (m1, v1, m2, v2) in [(0.0, 1.0, 1.5, 1.0), (0.3, 0.8, -0.5, 1.4), (1.0, 0.5, 0.0, 2.0)]:
        f = lambda x: np.exp(-(x - m1) ** 2 / v1 + (x - m2) ** 2 / (2 * v2)) / (2 * np.pi * v1) * np.sqrt(2 * np.pi * v2)  # noqa: E731
        ref = scipy.integrate.quad(f, -25, 25, limit=400, epsabs=0, epsrel=1e-10)[0]
        got = float(gaussian_chi2(jnp.array([m1]), jnp.array([[v1]]), jnp.array([m2]), jnp.array([[v2]])))
        np.testing.assert_allclose(np.exp(got), ref, rtol=1e-7)
    # 2 Sigma_1^-1 - Sigma_2^-1 not positive definite: infinite
    assert np.isinf(float(gaussian_chi2(jnp.zeros(1), jnp.array([[3.0]]), jnp.zeros(1), jnp.array([[1.0]]))))
    mix = GaussianMixture(jnp.ones(2), jnp.array([[-2.0], [2.0]]), jnp.ones((2, 1, 1)))
    np.testing.assert_allclose(chi2_divergence(mix)[0, 1], 16.0, rtol=1e-10)  # exp(delta^2) - 1 with delta = 4
    np.testing.assert_allclose(mixture_lsi_bound(mix), 16.0, rtol=1e-10)


def test_zero_noise_makes_the_full_past_conditional_degenerate():
    mix = GaussianMixture(jnp.ones(2), jnp.array([[-1.0, 0.5], [1.0, 0.0]]), jnp.stack([jnp.eye(2)] * 2))
    A = jnp.array([[0.9, 0.2], [0.0, 0.8]])
    covs = []
    for q in (1e-1, 1e-3, 1e-6):
        joint = transition_joint(mix, A, None, q * jnp.eye(2))
        cm = condition(joint, jnp.concatenate([jnp.eye(2), jnp.zeros((2, 2))], axis=1),
                       jnp.concatenate([jnp.zeros((2, 2)), jnp.eye(2)], axis=1))
        covs.append(float(jnp.max(jnp.linalg.eigvalsh(cm.covs))))
    np.testing.assert_allclose(covs, [1e-1, 1e-3, 1e-6], rtol=1e-6)


def test_bad_input():
    mix = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    with pytest.raises(ValueError, match="shape"):
        affine_pushforward(mix, jnp.eye(3))
    with pytest.raises(ValueError, match="positive semi-definite"):
        transition_joint(mix, jnp.eye(2), None, -jnp.eye(2))
    with pytest.raises(ValueError, match="positive definite"):
        condition(mix, jnp.array([[1.0, 1.0], [2.0, 2.0]]), jnp.eye(2))
    with pytest.raises(ValueError, match="nested"):
        hierarchy_coordinates([jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.eye(2)])
    with pytest.raises(ValueError, match="full row rank"):
        detail_basis(jnp.array([[1.0, 1.0], [2.0, 2.0]]))


def test_energy_distance_against_closed_form():
    from scipy.stats import norm

    from assimilax.multiscale.theory import energy_distance

    def e_abs(d, s):  # E|X - Y| for X - Y ~ N(d, s^2)
        return s * np.sqrt(2 / np.pi) * np.exp(-d**2 / (2 * s**2)) + d * (1 - 2 * norm.cdf(-d / s))

    m1, s1, m2, s2 = 0.0, 1.0, 0.7, 1.5
    ref = 2 * e_abs(m1 - m2, np.hypot(s1, s2)) - e_abs(0, np.sqrt(2) * s1) - e_abs(0, np.sqrt(2) * s2)
    k1, k2 = jax.random.split(jax.random.PRNGKey(12))
    vals = jax.vmap(lambda k: energy_distance(m1 + s1 * jax.random.normal(jax.random.fold_in(k, 0), (400, 1)),
                                              m2 + s2 * jax.random.normal(jax.random.fold_in(k, 1), (400, 1))))(jax.random.split(k1, 40))
    assert abs(float(vals.mean()) - ref) < 4 * float(vals.std()) / np.sqrt(40)
    same = jax.vmap(lambda k: energy_distance(jax.random.normal(jax.random.fold_in(k, 0), (400, 1)),
                                              jax.random.normal(jax.random.fold_in(k, 1), (400, 1))))(jax.random.split(k2, 40))
    assert abs(float(same.mean())) < 4 * float(same.std()) / np.sqrt(40)


def test_score_kl_bound_of_a_constant_offset():
    from assimilax.multiscale.theory import score_kl_bound

    sde = VPSDE(t_min=1e-2)
    mix = GaussianMixture(jnp.ones(1), jnp.zeros((1, 3)), jnp.eye(3)[None])
    cm = condition(linear_image(mix, jnp.eye(3)), jnp.eye(3)[:1], jnp.eye(3)[1:])
    exact = conditional_score(sde, cm)
    c = jnp.array([0.3, -0.4])
    x = mix.sample(jax.random.PRNGKey(13), 200)
    got = score_kl_bound(sde, lambda u, t, v: exact(u, t, v) + c[None, :], exact, x[:, 1:], x[:, :1], jax.random.PRNGKey(14), n_times=4000)
    a, b = sde.t_min, sde.t_max
    int_g2 = sde.beta_min * (b - a) + 0.5 * (sde.beta_max - sde.beta_min) * (b**2 - a**2)
    np.testing.assert_allclose(float(got), 0.5 * float(c @ c) * int_g2, rtol=0.05)


def test_target_geometry_against_the_mixture_at_each_value():
    from assimilax.multiscale.theory import target_geometry
    rng = np.random.default_rng(21)
    mix = _random_mixture(rng, 3, 3)
    O, T = jnp.asarray(rng.normal(size=(1, 3))), jnp.asarray(rng.normal(size=(2, 3)))
    cm = condition(mix, O, T)
    values = mix.sample(jax.random.PRNGKey(22), 4) @ O.T
    geo = target_geometry(cm, values)
    for n in range(4):
        m = cm.at(values[n])
        np.testing.assert_allclose(geo.cov_max[n], float(jnp.linalg.eigvalsh(m.cov())[-1]), rtol=1e-10)
        mu, keep = np.asarray(m.means), np.flatnonzero(np.asarray(m.weights) > 1e-6)  # components that carry weight
        ref = max(np.linalg.norm(mu[i] - mu[j]) for i in keep for j in keep)
        np.testing.assert_allclose(geo.diameter[n], ref, rtol=1e-10)
    eig = np.linalg.eigvalsh(np.asarray(cm.covs))
    assert geo.comp_min == pytest.approx(eig.min()) and geo.comp_max == pytest.approx(eig.max())
    assert not geo.shared  # random component covariances
    shared = GaussianMixture(jnp.ones(2), jnp.array([[0.0, 1.0], [2.0, -1.0]]), jnp.stack([jnp.eye(2)] * 2))
    assert target_geometry(condition(shared, jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])), jnp.zeros((1, 1))).shared
