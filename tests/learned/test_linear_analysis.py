"""The linear-Gaussian case, where the optimum is known: the steady-state Kalman filter.

References are computed here in NumPy, independently of the library: the steady-state gain by
iterating the Riccati recursion, and the steady-state filter by its own recursion.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.filters import kalman_filter
from assimilax.learned import (LinearAnalysis, ModelForward, analysis_pairs, fit_linear_analysis,
                               generate_trajectories, learned_filter)
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation
from assimilax.simulate import simulate


def riccati_steady_state(A, Q, H, R, n_iter=5000):
    """Steady-state forecast/analysis covariances and gain of the Kalman filter (NumPy)."""
    Pf = Q.copy()
    for _ in range(n_iter):
        S = H @ Pf @ H.T + R
        K = np.linalg.solve(S, H @ Pf).T
        Pa = (np.eye(len(A)) - K @ H) @ Pf
        Pa = 0.5 * (Pa + Pa.T)
        Pf_new = A @ Pa @ A.T + Q
        if np.max(np.abs(Pf_new - Pf)) < 1e-15:
            Pf = Pf_new
            break
        Pf = Pf_new
    S = H @ Pf @ H.T + R
    K = np.linalg.solve(S, H @ Pf).T
    Pa = (np.eye(len(A)) - K @ H) @ Pf
    return Pf, 0.5 * (Pa + Pa.T), K


@pytest.fixture(scope="module")
def system():
    d = 10
    # A = 0.95 x a random rotation: information flows from observed to unobserved components,
    # so the steady-state gain differs clearly from the one-step gain.
    Qo, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    model = LinearGaussian(jnp.asarray(0.95 * Qo), jnp.asarray(0.04 * np.eye(d)))
    obs = LinearObservation.partial(np.arange(0, d, 2), d, 0.5)
    A, Q, H, R = (np.asarray(a, dtype=np.float64) for a in (model.A, model.Q, obs.H, obs.R))
    Pf, Pa, K = riccati_steady_state(A, Q, H, R)
    return model, obs, A, Q, H, R, Pf, Pa, K


def test_least_squares_recovers_steady_state_kalman_map(system):
    """Draw n i.i.d. triples from the steady state: u^F arbitrary, x = u^F + e, e ~ N(0, P^f),
    y = H x + eta. Then E[x | u^F, y] = u^F + K(y - H u^F) exactly, and the regression error
    x - E[x | u^F, y] ~ N(0, P^a) is independent of the regressors X = [u^F, y, 1]. Ordinary
    least squares is then exactly beta_hat | X ~ N(beta, (X^T X)^{-1} (x) P^a): the standard
    error of coefficient j of output i is se_ij = sqrt(P^a_ii [(X^T X)^{-1}]_jj) ~ sqrt(P^a_ii / (n
    Var(regressor j))). With 10 x 16 = 160 coefficients, the probability that any deviates by
    more than 5 se is below 160 * 5.7e-7 < 1e-4, so the tolerance 5 se is the sample-size
    justified bound (and it shrinks as 1/sqrt(n))."""
    model, obs, A, Q, H, R, Pf, Pa, K = system
    d, m = K.shape
    n = 20000
    rng = np.random.default_rng(0)
    uf = rng.normal(size=(n, d)) * 2.0
    x = uf + rng.multivariate_normal(np.zeros(d), Pf, size=n)
    y = x @ H.T + rng.multivariate_normal(np.zeros(m), R, size=n)
    T = fit_linear_analysis(uf, y, x)
    X = np.concatenate([uf, y, np.ones((n, 1))], axis=1)
    XtX_inv = np.linalg.inv(X.T @ X)
    se = np.sqrt(np.outer(np.diag(Pa), np.diag(XtX_inv)))  # (d, d + m + 1)
    beta_true = np.concatenate([np.eye(d) - K @ H, K, np.zeros((d, 1))], axis=1)
    beta_hat = np.concatenate([np.asarray(T.Wf), np.asarray(T.Wy), np.asarray(T.b)[:, None]], axis=1)
    z = np.abs(beta_hat - beta_true) / se
    assert z.max() < 5.0, z.max()
    # the gain form u^F + W(y - H u^F) + b: regressors [y - H u^F, 1], same error law
    Tg = fit_linear_analysis(uf, y, x, H=H)
    Xg = np.concatenate([y - uf @ H.T, np.ones((n, 1))], axis=1)
    se_g = np.sqrt(np.outer(np.diag(Pa), np.diag(np.linalg.inv(Xg.T @ Xg))))[:, :m]
    assert (np.abs(np.asarray(Tg.Wy) - K) / se_g).max() < 5.0
    np.testing.assert_allclose(Tg.Wf, np.eye(d) - np.asarray(Tg.Wy) @ H, atol=1e-12)
    # ...and the test can fail: the one-step gain K_Q (prior covariance Q instead of P^f) is far off
    KQ = np.linalg.solve(H @ Q @ H.T + R, H @ Q).T
    assert (np.abs(np.asarray(T.Wy) - KQ) / se[:, d:d + m]).max() > 20


def test_driver_with_kalman_analysis_reproduces_kalman_filter(system):
    """learned_filter(true model, LinearAnalysis(K_ss)) == kalman_filter started at the steady
    analysis covariance (its gain is then K_ss at every step) == a NumPy steady-state filter."""
    model, obs, A, Q, H, R, Pf, Pa, K = system
    sim = simulate(model, obs, jnp.ones(10), 60, key=jax.random.PRNGKey(1))
    m0 = np.full(10, 0.5)
    res = learned_filter(model, obs, sim.observations, jnp.asarray(m0),
                         analysis=LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H)), key=jax.random.PRNGKey(0))
    kf = kalman_filter(model, obs, sim.observations, jnp.asarray(m0), jnp.asarray(Pa))
    np.testing.assert_allclose(res.analysis_mean, kf.filtered_means, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.forecast_mean, kf.predicted_means, atol=1e-10, rtol=0)
    x, ref = m0, []
    for y in np.asarray(sim.observations):
        xf = A @ x
        x = xf + K @ (y - H @ xf)
        ref.append(x)
    np.testing.assert_allclose(res.analysis_mean, np.array(ref), atol=1e-10, rtol=0)
    assert res.analysis_spread.shape == (60,) and float(jnp.max(res.analysis_spread)) == 0.0


def test_notes_objective_learns_one_step_gain(system):
    """Fitting T on (F(u^ref_{t-1}), y_t) -> u^ref_t (the notes' supervised objective, with the
    true F) has population optimum u^F + K_Q (y - H u^F), K_Q = Q H^T (H Q H^T + R)^{-1}: the
    forecast error is the model noise alone. The regression error eps_t - K_Q(H eps_t + eta_t)
    is a martingale difference with covariance (I - K_Q H) Q, so the OLS standard errors below
    hold asymptotically (martingale CLT); 5 se as in the i.i.d. test. It is *not* K_ss."""
    model, obs, A, Q, H, R, Pf, Pa, K = system
    d, m = K.shape
    x0s = jax.random.normal(jax.random.PRNGKey(5), (20, d))
    data = generate_trajectories(model, obs, x0s, 400, key=jax.random.PRNGKey(6))
    uf, y, x = (np.asarray(a) for a in analysis_pairs(model, data))
    T = fit_linear_analysis(uf, y, x)
    KQ = np.linalg.solve(H @ Q @ H.T + R, H @ Q).T
    Pq = (np.eye(d) - KQ @ H) @ Q
    X = np.concatenate([uf, y, np.ones((len(y), 1))], axis=1)
    se = np.sqrt(np.outer(np.diag(Pq), np.diag(np.linalg.inv(X.T @ X))))[:, d:d + m]
    assert (np.abs(np.asarray(T.Wy) - KQ) / se).max() < 5.0
    assert (np.abs(np.asarray(T.Wy) - K) / se).max() > 20.0


def test_bad_inputs_are_refused(system):
    model, obs, A, Q, H, R, Pf, Pa, K = system
    T = LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H))
    with pytest.raises(ValueError, match="ys"):
        learned_filter(model, obs, jnp.full((5, 5), jnp.nan), jnp.zeros(10), analysis=T, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="dimension"):
        learned_filter(model, obs, jnp.zeros((5, 5)), jnp.zeros(7), analysis=T, key=jax.random.PRNGKey(0))
    # ys are checked against the observation operator (m = 5), not against their own width
    with pytest.raises(ValueError, match=r"ys must have shape \(\?, 5\), got \(5, 4\)"):
        learned_filter(model, obs, jnp.zeros((5, 4)), jnp.zeros(10), analysis=T, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="targets"):
        fit_linear_analysis(np.zeros((50, 10)), np.zeros((50, 5)), np.zeros((50, 9)))
    # the known-model forward operator is steps_per_obs model steps, deterministic without a key
    x = jnp.linspace(-1.0, 1.0, model.dim)
    np.testing.assert_allclose(np.asarray(ModelForward(model, 3)(x)), np.asarray(model.integrate(x, 3)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ModelForward(model)(x)), np.asarray(model.step(x, 0.0)), rtol=1e-12)


def test_driver_with_residual_sampler_cycle_modes(system):
    """cycle="analysis": the forecast is F(u_tilde_{t-1}) of the deterministic cycle, identical to the
    residual-free run (draws are never fed back), and members minus their mean spread around it;
    cycle="mean" feeds the mean of the members back; "members" spreads the forecasts."""
    from assimilax.learned import ResidualDiffusion
    model, obs, A, Q, H, R, Pf, Pa, K = system
    T = LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H))
    rd = ResidualDiffusion(10, 15, width=8, depth=1, n_sample_steps=5, key=jax.random.PRNGKey(0))
    ys = jax.random.normal(jax.random.PRNGKey(3), (6, 5))
    ens0 = jax.random.normal(jax.random.PRNGKey(1), (4, 10))
    res = learned_filter(model, obs, ys, ens0, analysis=T, key=jax.random.PRNGKey(2), residual=rd, cycle="analysis")
    det = learned_filter(model, obs, ys, ens0.mean(axis=0), analysis=T, key=jax.random.PRNGKey(2))
    assert res.ensembles.shape == (6, 4, 10) and res.analysis_spread.shape == (6,)
    np.testing.assert_allclose(res.forecast_spread, 0.0, atol=1e-12)
    np.testing.assert_allclose(res.forecast_mean, det.forecast_mean, atol=1e-12)
    assert float(jnp.min(res.analysis_spread)) > 0.0
    assert not np.allclose(res.analysis_mean, det.analysis_mean)  # the draws do move the members
    # "mean": the next forecast starts from the mean of the analysis members (NumPy reference)
    rm = learned_filter(model, obs, ys, ens0, analysis=T, key=jax.random.PRNGKey(2), residual=rd, cycle="mean")
    np.testing.assert_allclose(rm.forecast_mean[1:], np.asarray(rm.analysis_mean[:-1]) @ A.T, atol=1e-10)
    res2 = learned_filter(model, obs, ys, ens0, analysis=T, key=jax.random.PRNGKey(2), residual=rd)
    assert float(jnp.min(res2.forecast_spread)) > 0.0
    with pytest.raises(ValueError, match="cond_dim"):
        learned_filter(model, obs, ys, ens0, analysis=T, key=jax.random.PRNGKey(2),
                       residual=ResidualDiffusion(10, 14, width=8, depth=1, key=jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="cycle"):
        learned_filter(model, obs, ys, ens0, analysis=T, key=jax.random.PRNGKey(2), cycle="mean-field")


def test_perturbed_analysis_pairs_have_the_forecast_error_law(system):
    """u^F = A(u_ref_{t-1} + sigma xi) with the true linear model: the forecast error
    u^F - u_ref_t = A sigma xi - eps_t has covariance sigma^2 A A^T + Q (independent NumPy
    reference); with sigma = 0 it is Q alone."""
    model, obs, A, Q, H, R, Pf, Pa, K = system
    x0s = jax.random.normal(jax.random.PRNGKey(7), (10, 10))
    data = generate_trajectories(model, obs, x0s, 400, key=jax.random.PRNGKey(8))
    for sigma in (0.0, 0.5):
        uf, y, x = (np.asarray(a) for a in analysis_pairs(model, data, perturb_std=sigma, key=jax.random.PRNGKey(9)))
        C = np.cov((uf - x).T)
        ref = sigma**2 * A @ A.T + Q
        # 4000 draws: the entries of a sample covariance have se <= sqrt(2/n) * max var ~ 0.006
        np.testing.assert_allclose(C, ref, atol=0.03)
    with pytest.raises(ValueError, match="key"):
        analysis_pairs(model, data, perturb_std=0.5)


def test_dagger_training_moves_the_gain_from_one_step_to_steady_state(system):
    """fit_cycled_analysis with perturb_std=0 starts from the notes' pairs, whose least-squares
    optimum is the one-step gain K_Q (test above); each DAgger round adds the forecasts of the
    operator's own cycle, whose errors have the steady-state statistics once the gain is right.
    The learned W_y must end much closer to the NumPy steady-state gain K_ss than the notes' fit
    (the gap |K_Q - K_ss| is ~20 standard errors at this sample size)."""
    from assimilax.learned import fit_cycled_analysis
    model, obs, A, Q, H, R, Pf, Pa, K = system
    KQ = np.linalg.solve(H @ Q @ H.T + R, H @ Q).T
    x0s = jax.random.normal(jax.random.PRNGKey(11), (16, 10))
    data = generate_trajectories(model, obs, x0s, 200, key=jax.random.PRNGKey(12))
    kw = dict(key=jax.random.PRNGKey(13), n_steps=1500, round_steps=1500, batch_size=256, learning_rate=3e-2,
              round_learning_rate=1e-2, progress=False)
    T0, h0 = fit_cycled_analysis(LinearAnalysis(10, 5), model, data, n_rounds=0, **kw)
    T3, h3 = fit_cycled_analysis(LinearAnalysis(10, 5), model, data, n_rounds=4, **kw)
    gap = np.abs(KQ - K).max()
    err0, err3 = np.abs(np.asarray(T0.Wy) - K).max(), np.abs(np.asarray(T3.Wy) - K).max()
    print(f"|K_Q - K_ss| {gap:.3f}; notes' fit {err0:.3f}; after 4 DAgger rounds {err3:.3f}")
    assert np.abs(np.asarray(T0.Wy) - KQ).max() < 0.25 * gap  # the notes' pairs give K_Q
    assert err3 < 0.5 * err0
    assert len(h3["cycled_forecast_rmse"]) == 4 and h3["pairs"][0].shape[0] == 5 * 16 * 200 - 4 * 16 * 5
