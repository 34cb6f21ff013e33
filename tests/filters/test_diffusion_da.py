"""The three kinds of diffusion DA and SOAD against their exact Gaussian targets.

The targets are checked against dense conditioning of joint Gaussians written here (not the
library's recursions); each filter, driven by its target's exact score, reproduces that target
within Monte Carlo error (bounds stated as multiples of the standard error plus the sampler's
discretisation allowance)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.diffusion import GaussianScore, VPSDE, fit_conditional_score
from assimilax.filters import (climatology_diffusion_filter, cycled_diffusion_filter, diffusion_targets,
                               hybrid_diffusion_filter, kalman_filter, soad_filter)
from assimilax.filters.diffusion_da import augment_states, exact_scores
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation
from assimilax.simulate import simulate


def ar1(a, q, r):
    return LinearGaussian(jnp.array([[a]]), jnp.array([[q]])), LinearObservation(jnp.eye(1), jnp.array([[r]]))


def small_system(seed=0):
    model = LinearGaussian.random_stable(3, key=jax.random.key(seed), spectral_radius=0.9, noise_scale=0.5)
    H = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    obs = LinearObservation(H, jnp.array([[0.5, 0.1], [0.1, 0.8]]))
    return model, obs


def condition(mean, cov, idx_x, idx_y, y):
    """Dense Gaussian conditioning of a joint N(mean, cov) on the components idx_y = y."""
    Sxy, Syy = cov[np.ix_(idx_x, idx_y)], cov[np.ix_(idx_y, idx_y)]
    G = np.linalg.solve(Syy, Sxy.T).T
    return mean[idx_x] + G @ (y - mean[idx_y]), cov[np.ix_(idx_x, idx_x)] - G @ Sxy.T


@pytest.mark.parametrize("aqr,ratio", [((0.9, 1.0, 1.0), 1.41), ((0.95, 0.1, 1.0), 2.10), ((0.5, 1.0, 1.0), 1.08)])
def test_ar1_variance_ratios(aqr, ratio):
    model, obs = ar1(*aqr)
    ys = jnp.zeros((300, 1))
    tg = diffusion_targets(model, obs, ys, jnp.zeros(1), jnp.eye(1))
    got = float(tg.climatology.covs[-1, 0, 0] / tg.posterior.covs[-1, 0, 0])
    assert abs(got - ratio) < 0.005, got
    # the cycled hybrid's fixed point is the steady-state Kalman filter; the reference hybrid is overconfident
    assert abs(float(tg.hybrid_cycled.covs[-1, 0, 0] - tg.posterior.covs[-1, 0, 0])) < 1e-9
    assert float(tg.hybrid_reference.covs[-1, 0, 0]) < float(tg.posterior.covs[-1, 0, 0])


def test_targets_against_dense_conditioning():
    model, obs = small_system()
    A, Q, b = (np.asarray(v) for v in (model.A, model.noise_cov, model.b))
    H, R = np.asarray(obs.H), np.asarray(obs.R)
    d, m, T = 3, 2, 4
    mean0, cov0 = np.array([0.3, -0.2, 0.1]), 0.7 * np.eye(d)
    sim = simulate(model, obs, jnp.asarray(mean0), T, key=jax.random.key(1))
    Y = np.asarray(sim.observations)
    tg = diffusion_targets(model, obs, sim.observations, jnp.asarray(mean0), jnp.asarray(cov0))
    # dense joint of (x_0..x_T, y_1..y_T)
    n = d * (T + 1) + m * T
    L = np.zeros((n, n))  # joint = L @ (x0, w_1..w_T, v_1..v_T) + c
    c = np.zeros(n)
    src_var = np.zeros((n, n))
    src_var[:d, :d] = cov0
    for t in range(T):
        src_var[d * (t + 1):d * (t + 2), d * (t + 1):d * (t + 2)] = Q
        o = d * (T + 1) + m * t
        src_var[o:o + m, o:o + m] = R
    L[:d, :d] = np.eye(d)
    c[:d] = mean0
    for t in range(1, T + 1):
        L[d * t:d * (t + 1)] = A @ L[d * (t - 1):d * t]
        L[d * t:d * (t + 1), d * t:d * (t + 1)] += np.eye(d)
        c[d * t:d * (t + 1)] = A @ c[d * (t - 1):d * t] + b
        o = d * (T + 1) + m * (t - 1)
        L[o:o + m] = H @ L[d * t:d * (t + 1)]
        L[o:o + m, o:o + m] += np.eye(m)
        c[o:o + m] = H @ c[d * t:d * (t + 1)]
    joint_cov = L @ src_var @ L.T
    for t in range(1, T + 1):
        ix = list(range(d * t, d * (t + 1)))
        iy = list(range(d * (T + 1), d * (T + 1) + m * t))
        mu, P = condition(c, joint_cov, ix, iy, Y[:t].ravel())
        np.testing.assert_allclose(tg.posterior.means[t - 1], mu, atol=1e-9)
        np.testing.assert_allclose(tg.posterior.covs[t - 1], P, atol=1e-9)
    # climatology: stationary covariance as a power sum, then condition (x, y) on y_t
    Pc, Ak = np.zeros((d, d)), np.eye(d)
    for _ in range(3000):
        Pc, Ak = Pc + Ak @ Q @ Ak.T, A @ Ak
    mc = np.linalg.solve(np.eye(d) - A, b)
    jc = np.block([[Pc, Pc @ H.T], [H @ Pc, H @ Pc @ H.T + R]])
    for t in range(T):
        mu, P = condition(np.concatenate([mc, H @ mc]), jc, list(range(d)), list(range(d, d + m)), Y[t])
        np.testing.assert_allclose(tg.climatology.means[t], mu, atol=1e-8)
        np.testing.assert_allclose(tg.climatology.covs[t], P, atol=1e-8)

    # hybrids: prior N(x^f, B) around the forecast of the previous target mean, conditioned densely
    def check_hybrid(target, B):
        mprev = mean0
        for t in range(T):
            xf = A @ mprev + b
            jh = np.block([[B, B @ H.T], [H @ B, H @ B @ H.T + R]])
            mu, P = condition(np.concatenate([xf, H @ xf]), jh, list(range(d)), list(range(d, d + m)), Y[t])
            np.testing.assert_allclose(target.means[t], mu, atol=1e-8)
            np.testing.assert_allclose(target.covs[t], P, atol=1e-8)
            mprev = mu

    check_hybrid(tg.hybrid_reference, Q)
    # DAgger by hand: B <- steady forecast-error covariance of the filter whose gain is K(B)
    B = Q.copy()
    for _ in range(60):
        K = B @ H.T @ np.linalg.inv(H @ B @ H.T + R)
        M = A @ (np.eye(d) - K @ H)
        C = Q.copy()
        for _ in range(400):
            C = M @ C @ M.T + A @ K @ R @ K.T @ A.T + Q
        B = C
    np.testing.assert_allclose(tg.cycled_cov, B, atol=1e-7)
    check_hybrid(tg.hybrid_cycled, B)


def _moments_close(E, mean, cov, n_se=5.0, cov_rtol=0.12, bias=0.02):
    E = np.asarray(E)
    N = E.shape[0]
    se = np.sqrt(np.diag(cov) / N)
    assert np.all(np.abs(E.mean(0) - mean) < n_se * se + bias), (E.mean(0), mean)
    C = np.cov(E.T).reshape(cov.shape)
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.all(np.abs(C - cov) < cov_rtol * scale), (C, cov)


@pytest.fixture(scope="module")
def linear_case():
    model, obs = small_system()
    mean0, cov0 = jnp.zeros(3), jnp.eye(3)
    sim = simulate(model, obs, mean0, 2, key=jax.random.key(2))
    tg = diffusion_targets(model, obs, sim.observations, mean0, cov0)
    E0 = jax.random.multivariate_normal(jax.random.key(3), mean0, cov0, (2000,))
    return model, obs, sim, tg, E0


def test_climatology_exact_scores_reproduce_target(linear_case):
    model, obs, sim, tg, E0 = linear_case
    sde = VPSDE()
    sc = exact_scores(tg, obs, sde)
    for guidance, net in ((None, sc["climatology"]), ("tweedie", sc["climatology_prior"])):
        res = climatology_diffusion_filter(model, obs, sim.observations, E0, key=jax.random.key(4), network=net,
                                           guidance=guidance, n_sde_steps=100)
        for t in range(2):
            _moments_close(res.ensembles[t], np.asarray(tg.climatology.means[t]), np.asarray(tg.climatology.covs[t]))


def test_hybrid_exact_score_reproduces_target(linear_case):
    model, obs, sim, tg, E0 = linear_case
    sc = exact_scores(tg, obs, VPSDE())
    res = hybrid_diffusion_filter(model, obs, sim.observations, E0, key=jax.random.key(5),
                                  network=sc["hybrid_reference"], n_sde_steps=100)
    for t in range(2):
        _moments_close(res.ensembles[t], np.asarray(tg.hybrid_reference.means[t]),
                       np.asarray(tg.hybrid_reference.covs[t]), bias=0.05)


def test_soad_linear_h_equals_standard_posterior(linear_case):
    model, obs, sim, tg, E0 = linear_case
    H = np.asarray(obs.H)
    P, mu = np.asarray(tg.clim_cov), np.asarray(tg.clim_mean)
    Sz = np.block([[P, P @ H.T], [H @ P, H @ P @ H.T]])  # degenerate joint of (x, Hx)
    prior = GaussianScore(jnp.asarray(np.concatenate([mu, H @ mu])), jnp.asarray(Sz), VPSDE())
    res = soad_filter(model, obs, sim.observations, E0, key=jax.random.key(6), network=prior, n_sde_steps=100)
    for t in range(2):
        _moments_close(res.ensembles[t], np.asarray(tg.climatology.means[t]), np.asarray(tg.climatology.covs[t]))
    z = augment_states(obs, E0[:5])
    np.testing.assert_allclose(z[:, 3:], E0[:5] @ obs.H.T, atol=1e-12)


def test_soad_dps_guidance_moves_the_prior_toward_the_posterior(linear_case):
    """SOAD with DPS guidance on the exact degenerate prior of (x, Hx): scale 0 samples the prior's
    x-marginal; a positive step moves every cycle's analysis mean toward the exact posterior mean."""
    model, obs, sim, tg, E0 = linear_case
    H = np.asarray(obs.H)
    P, mu = np.asarray(tg.clim_cov), np.asarray(tg.clim_mean)
    Sz = np.block([[P, P @ H.T], [H @ P, H @ P @ H.T]])
    prior = GaussianScore(jnp.asarray(np.concatenate([mu, H @ mu])), jnp.asarray(Sz), VPSDE())
    run = lambda s: soad_filter(model, obs, sim.observations, E0, key=jax.random.key(6), network=prior,  # noqa: E731
                                guidance="dps", scale=s, n_sde_steps=100, store_ensembles=False).analysis_mean
    off, on = np.asarray(run(0.0)), np.asarray(run(0.5))
    post = np.asarray(tg.climatology.means)
    np.testing.assert_allclose(off.mean(0), mu, atol=4 * np.sqrt(np.max(np.diag(P)) / E0.shape[0]))
    assert np.all(np.linalg.norm(on - post, axis=1) < np.linalg.norm(off - post, axis=1))


def test_cycled_exact_gaussian_score_tracks_kalman():
    """Scalar AR(1): with no training the cycled filter's score is the forecast ensemble's exact Gaussian
    score; with Tweedie guidance each cycle samples the Kalman posterior (an EnKF-like sampling error)."""
    model, obs = ar1(0.9, 1.0, 1.0)
    sim = simulate(model, obs, jnp.zeros(1), 3, key=jax.random.key(7))
    kf = kalman_filter(model, obs, sim.observations, jnp.zeros(1), jnp.eye(1))
    E0 = jax.random.normal(jax.random.key(8), (2000, 1))
    res = cycled_diffusion_filter(model, obs, sim.observations, E0, key=jax.random.key(9), n_train_steps=0,
                                  guidance="tweedie", eps_a=0.02, eps_b=1e-4, n_sde_steps=100)
    for t in range(3):
        _moments_close(res.ensembles[t], np.asarray(kf.filtered_means[t]), np.asarray(kf.filtered_covs[t]), bias=0.03)


def test_bad_inputs_refused(linear_case):
    model, obs, sim, tg, E0 = linear_case
    sc = exact_scores(tg, obs, VPSDE())
    ys = sim.observations
    calls = {
        "clim": lambda **k: climatology_diffusion_filter(model, obs, k.get("ys", ys), k.get("E", E0[:10]), key=jax.random.key(0),
                                                         network=sc["climatology_prior"], guidance="damped",
                                                         steps_per_obs=k.get("s", 1), n_sde_steps=5),
        "cyc": lambda **k: cycled_diffusion_filter(model, obs, k.get("ys", ys), k.get("E", E0[:10]), key=jax.random.key(0),
                                                   steps_per_obs=k.get("s", 1), n_train_steps=0, n_sde_steps=5),
        "hyb": lambda **k: hybrid_diffusion_filter(model, obs, k.get("ys", ys), k.get("E", E0[:10]), key=jax.random.key(0),
                                                   network=sc["hybrid_reference"], steps_per_obs=k.get("s", 1),
                                                   n_sde_steps=5),
        "soad": lambda **k: soad_filter(model, obs, k.get("ys", ys), k.get("E", E0[:10]), key=jax.random.key(0),
                                        network=GaussianScore(jnp.zeros(5), jnp.eye(5), VPSDE()),
                                        steps_per_obs=k.get("s", 1), n_sde_steps=5),
    }
    for name, f in calls.items():
        with pytest.raises(ValueError, match="ensemble0"):
            f(E=E0[:10, :2])
        with pytest.raises(ValueError):
            f(ys=ys.at[1, 0].set(jnp.nan))
        with pytest.raises(ValueError, match="ys"):
            f(ys=ys[:, :1])
        with pytest.raises(ValueError, match="steps_per_obs"):
            f(s=0)
    with pytest.raises(ValueError, match="dimension"):
        climatology_diffusion_filter(model, obs, ys, E0[:10], key=jax.random.key(0),
                                     network=GaussianScore(jnp.zeros(2), jnp.eye(2), VPSDE()))
    with pytest.raises(ValueError, match="cond_dim"):
        climatology_diffusion_filter(model, obs, ys, E0[:10], key=jax.random.key(0), network=sc["climatology_prior"],
                                     guidance=None)
    with pytest.raises(ValueError, match="guidance"):
        climatology_diffusion_filter(model, obs, ys, E0[:10], key=jax.random.key(0), network=sc["climatology_prior"],
                                     guidance="magic")
    with pytest.raises(ValueError, match="cond_dim"):
        hybrid_diffusion_filter(model, obs, ys, E0[:10], key=jax.random.key(0), network=sc["climatology"])
    with pytest.raises(ValueError, match="spectral radius"):
        diffusion_targets(LinearGaussian(jnp.eye(3) * 1.01, jnp.eye(3)), obs, ys, jnp.zeros(3), jnp.eye(3))
    with pytest.raises(ValueError, match="linear observation"):
        from assimilax.observations import NonlinearObservation
        diffusion_targets(model, NonlinearObservation("arctan", 3, 1.0), jnp.zeros((3, 3)), jnp.zeros(3), jnp.eye(3))


def test_claim_climatology_variance_exceeds_cycled():
    """The chapter's claim at small scale, AR(1) with (a, q, r) = (0.95, 0.1, 1): the trained
    climatology filter's posterior variance exceeds the trained cycled filter's by more than the
    Monte Carlo error (exact ratio 2.10)."""
    model, obs = ar1(0.95, 0.1, 1.0)
    train = simulate(model, obs, jnp.zeros(1), 3000, key=jax.random.key(10))
    sde = VPSDE()
    net, _ = fit_conditional_score(train.states, train.observations, sde, key=jax.random.key(11), n_steps=800,
                                   width=32, depth=2)
    test = simulate(model, obs, jnp.zeros(1), 30, key=jax.random.key(12))
    E0 = jax.random.normal(jax.random.key(13), (400, 1))
    clim = climatology_diffusion_filter(model, obs, test.observations, E0, key=jax.random.key(14), network=net,
                                        guidance=None, n_sde_steps=100)
    cyc = cycled_diffusion_filter(model, obs, test.observations, E0, key=jax.random.key(15), n_train_steps=20,
                                  batch_size=128, width=32, n_sde_steps=100)
    vc = np.var(np.asarray(clim.ensembles[10:]), axis=1, ddof=1)[:, 0]
    vk = np.var(np.asarray(cyc.ensembles[10:]), axis=1, ddof=1)[:, 0]
    diff = vc - vk
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert diff.mean() > 3 * se + 0.05, (vc.mean(), vk.mean(), se)
