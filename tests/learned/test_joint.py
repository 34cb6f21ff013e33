"""Joint training of F and G (assimilax.learned.joint) on a linear-Gaussian system, where every
loss term has a closed-form value and the optimal filter is known.

The references are computed here in NumPy: the stationary state covariance by iterating the
Lyapunov recursion, the steady-state Kalman gain by the Riccati recursion , and each term's noise floor from the error decomposition written in the
test's docstring.
"""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learned import (LinearAnalysis, LinearForward, ResidualDiffusion, TrajectoryData, fit_joint,
                               generate_trajectories, joint_loss_terms, learned_filter, sample_batch,
                               state_sensitivity)
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation
from assimilax.simulate import simulate

D = 4


def riccati_steady_state(A, Q, H, R, n_iter=5000):
    """Steady-state forecast/analysis covariances and gain of the Kalman filter (NumPy)."""
    Pf = Q.copy()
    for _ in range(n_iter):
        K = np.linalg.solve(H @ Pf @ H.T + R, H @ Pf).T
        Pf = A @ ((np.eye(len(A)) - K @ H) @ Pf) @ A.T + Q
    K = np.linalg.solve(H @ Pf @ H.T + R, H @ Pf).T
    Pa = (np.eye(len(A)) - K @ H) @ Pf
    return Pf, 0.5 * (Pa + Pa.T), K


def stationary_cov(A, Q, n_iter=3000):
    S = Q.copy()
    for _ in range(n_iter):
        S = A @ S @ A.T + Q
    return S


@pytest.fixture(scope="module")
def lin():
    O, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))
    model = LinearGaussian(jnp.asarray(0.95 * O), jnp.asarray(0.04 * np.eye(D)))
    obs = LinearObservation.partial(np.arange(0, D, 2), D, 0.5)
    A, Q, H, R = (np.asarray(a, dtype=np.float64) for a in (model.A, model.Q, obs.H, obs.R))
    Pf, Pa, K = riccati_steady_state(A, Q, H, R)
    KQ = np.linalg.solve(H @ Q @ H.T + R, H @ Q).T
    Sigma = stationary_cov(A, Q)
    # initial states from the stationary law, so that every time is stationary
    L = np.linalg.cholesky(Sigma)
    x0s = jax.random.normal(jax.random.PRNGKey(1), (8, D)) @ jnp.asarray(L).T
    data = generate_trajectories(model, obs, x0s, 300, key=jax.random.PRNGKey(2))
    # many short stationary trajectories: (nearly) independent states for the Monte Carlo floors
    x0s_iid = jax.random.normal(jax.random.PRNGKey(11), (5000, D)) @ jnp.asarray(L).T
    data_iid = generate_trajectories(model, obs, x0s_iid, 3, key=jax.random.PRNGKey(12))
    return dict(model=model, obs=obs, A=A, Q=Q, H=H, R=R, Pa=Pa, K=K, KQ=KQ, Sigma=Sigma, data=data,
                data_iid=data_iid)


def _set(F, A):
    """A LinearForward with weight matrix A."""
    return eqx.tree_at(lambda f: f.W, F, jnp.asarray(A))


def test_each_term_has_its_noise_floor_at_the_known_solution(lin):
    r"""With F = A and the one-step Kalman analysis T = (I - K_Q H) u + K_Q y (K_Q the gain of
    P^f = Q, the error of a forecast from the reference), on stationary data (Sigma = A Sigma A^T + Q):

    - forecast: F(x_{t-1}) - x_t = -w, floor tr(Q)/d;
    - analysis: error (I - K_Q H)(-w) + K_Q v, floor tr(P^a_Q)/d, P^a_Q = (I - K_Q H) Q;
    - forward alignment: A e^a_t - w_{t+1}, floor tr(A P^a_Q A^T + Q)/d;
    - backward alignment: M x_t + (I-KH) w + K v and M x_t + K v with M = (I - KH)(A - I), floor
      tr(2 M Sigma M^T + (I-KH) Q (I-KH)^T + 2 K R K^T)/d.

    The states come from 5000 independent stationary starts (3 cycles each), so the Monte Carlo
    mean of the state-dependent part has relative sd ~ sqrt(2 / 5000) (2 %) and the noise parts
    ~ sqrt(2 / 20000); the tolerance is 6 %. A wrong model (0.7 A) and a wrong gain (0) score higher
    than the floor by more than the tolerance."""
    A, Q, H, R, KQ, S = (lin[k] for k in ("A", "Q", "H", "R", "KQ", "Sigma"))
    F = _set(LinearForward(D), A)
    T = LinearAnalysis.from_gain(jnp.asarray(KQ), jnp.asarray(H))
    batch = sample_batch(lin["data_iid"], jax.random.PRNGKey(3), 20000)
    w = {"forecast": 1, "analysis": 1, "forward_alignment": 1, "backward_alignment": 1}
    terms = joint_loss_terms(F, T, batch, jax.random.PRNGKey(4), weights=w)
    I = np.eye(D)
    PaQ = (I - KQ @ H) @ Q
    M = (I - KQ @ H) @ (A - I)
    floors = {"forecast": np.trace(Q) / D, "analysis": np.trace(PaQ) / D,
              "forward_alignment": np.trace(A @ PaQ @ A.T + Q) / D,
              "backward_alignment": np.trace(2 * M @ S @ M.T + (I - KQ @ H) @ Q @ (I - KQ @ H).T
                                             + 2 * KQ @ R @ KQ.T) / D}
    for name, floor in floors.items():
        assert abs(float(terms[name]) / floor - 1) < 0.06, (name, float(terms[name]), floor)
    wrong = joint_loss_terms(_set(LinearForward(D), 0.7 * A), LinearAnalysis(D, H.shape[0]), batch,
                             jax.random.PRNGKey(4), weights=w)
    for name, floor in floors.items():
        if name != "backward_alignment":  # a gain of 0 can lower the backward term: it rewards ignoring u^F
            assert float(wrong[name]) > 1.1 * floor, (name, float(wrong[name]), floor)
    # switched-off terms are not evaluated
    only = joint_loss_terms(F, T, batch, jax.random.PRNGKey(4), weights={"forecast": 1, "analysis": 0})
    assert np.isnan(float(only["analysis"])) and np.isnan(float(only["unrolled"]))


def _fit(lin, key=5, n_steps=300, **kw):
    m = lin["H"].shape[0]
    return fit_joint(LinearForward(D), LinearAnalysis(D, m), lin["data"], key=jax.random.PRNGKey(key),
                     n_steps=n_steps, batch_size=32, learning_rate=1e-2, progress=False, **kw)


def test_zero_alignment_weights_equal_separate_training(lin):
    """The analysis term stops the gradient at u^F: with the alignment and unrolled weights at 0
    the forward model trained jointly equals the one trained on the forecast term alone (same
    key, same numbers), and the analysis term has exactly zero gradient with respect to F (the
    analysis is trained on the forecasts of the current F, as in sequential training)."""
    joint = _fit(lin, weights={"forecast": 1, "analysis": 1, "forward_alignment": 0, "backward_alignment": 0,
                               "unrolled": 0}, perturb_std=0.3)
    f_only = _fit(lin, weights={"forecast": 1, "analysis": 0}, perturb_std=0.3)
    np.testing.assert_allclose(joint.forward.W, f_only.forward.W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(joint.history["forecast"], f_only.history["forecast"], rtol=0, atol=1e-12)
    batch = sample_batch(lin["data"], jax.random.PRNGKey(3), 64)
    m = lin["H"].shape[0]
    g = eqx.filter_grad(lambda F: joint_loss_terms(F, LinearAnalysis(D, m), batch, jax.random.PRNGKey(4),
                                                   weights={"forecast": 0, "analysis": 1},
                                                   perturb_std=0.3)["analysis"])(LinearForward(D))
    assert float(jnp.abs(g.W).max()) == 0.0 and float(jnp.abs(g.b).max()) == 0.0
    # the same key gives the same numbers; another key does not
    again = _fit(lin, weights={"forecast": 1, "analysis": 1}, perturb_std=0.3)
    np.testing.assert_array_equal(np.asarray(again.analysis.Wy), np.asarray(joint.analysis.Wy))
    other = _fit(lin, key=6, weights={"forecast": 1, "analysis": 1}, perturb_std=0.3)
    assert float(jnp.abs(other.analysis.Wy - joint.analysis.Wy).max()) > 1e-6
    # a positive alignment weight does change the forward model (the term is live)
    fa = _fit(lin, weights={"forecast": 1, "analysis": 1, "forward_alignment": 1}, perturb_std=0.3)
    assert float(jnp.abs(fa.forward.W - joint.forward.W).max()) > 1e-3
    assert np.isnan(joint.history["forward_alignment"]).all() and np.isfinite(fa.history["forward_alignment"]).all()


def test_unrolled_training_recovers_model_and_steady_state_gain(lin):
    """Claim: the k-cycle unrolled loss (k = 12, 6 cycles of spin-up discarded) trains the linear
    pair to the true dynamics and the steady-state Kalman gain K_inf; the one-cycle analysis fit
    (the notes' pairs) learns the one-step gain K_Q instead. |K_inf - K_Q| = 0.25 here; the
    tolerance 0.06 is ~2x the error seen at this budget (0.027), and a broken unroll (e.g. no
    gradient through the cycle) stays at persistence, K = 0."""
    A, H, K, KQ, Pa = (lin[k] for k in ("A", "H", "K", "KQ", "Pa"))
    assert np.abs(K - KQ).max() > 0.2
    un = _fit(lin, n_steps=1500, weights={"forecast": 1, "analysis": 0, "unrolled": 1}, unroll=12,
              unroll_discard=6, unroll_std=0.5)
    one = _fit(lin, n_steps=1500, weights={"forecast": 1, "analysis": 1})
    assert np.abs(np.asarray(un.forward.W) - A).max() < 0.03
    assert np.abs(np.asarray(un.analysis.Wy) - K).max() < 0.06
    assert np.abs(np.asarray(un.analysis.Wf) - (np.eye(D) - K @ H)).max() < 0.06
    assert np.abs(np.asarray(one.analysis.Wy) - K).max() > 0.15
    assert np.abs(np.asarray(one.analysis.Wy) - KQ).max() < 0.03
    # cycled on a fresh trajectory, the learned pair's analysis error has the Kalman posterior
    # variance tr(P^a)/d (3000 cycles: relative MC sd ~ 3 %, tolerance 12 %)
    sim = simulate(lin["model"], lin["obs"], jnp.zeros(D), 3000, key=jax.random.PRNGKey(9))
    res = learned_filter(un.forward, lin["obs"], sim.observations, sim.x0, analysis=un.analysis,
                         key=jax.random.PRNGKey(0))
    mse = float(jnp.mean((res.analysis_mean[100:] - sim.states[100:]) ** 2))
    assert abs(mse / (np.trace(Pa) / D) - 1) < 0.12


def test_residual_on_unrolled_cycles_has_the_posterior_covariance(lin):
    """The score term on the residuals of the unrolled cycles (score_source='unrolled') with the
    exact model and the steady-state Kalman analysis learns r ~ N(0, P^a): the sampled
    covariance's trace is within 15 % of tr(P^a) (2000 draws: sd ~ 2 %) and its entries within
    0.04 (P^a's diagonal is ~0.1); the one-step residual model would give tr(P^a_Q) instead."""
    A, H, K, Pa = (lin[k] for k in ("A", "H", "K", "Pa"))
    m = H.shape[0]
    rd = ResidualDiffusion(D, m + D, width=32, depth=2, n_sample_steps=30, key=jax.random.PRNGKey(5))
    fit = fit_joint(_set(LinearForward(D), A), LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H)), lin["data"],
                    residual=rd, key=jax.random.PRNGKey(3), weights={"forecast": 0, "analysis": 0, "score": 1},
                    n_steps=800, batch_size=32, learning_rate=1e-2, progress=False, unroll=10, unroll_discard=6,
                    unroll_std=0.5, score_source="unrolled")
    np.testing.assert_array_equal(np.asarray(fit.analysis.Wy), K)  # the score term leaves T alone
    S = np.asarray(fit.residual.sample(jnp.zeros((2000, m + D)), key=jax.random.PRNGKey(7)))
    C = np.cov(S.T)
    assert abs(np.trace(C) / np.trace(Pa) - 1) < 0.15
    assert np.abs(C - Pa).max() < 0.04


@pytest.mark.parametrize("mode", ["tweedie", "sampler"])
def test_gradients_of_every_term_are_finite_and_reach_both_models(lin, mode):
    m = lin["H"].shape[0]
    rd = ResidualDiffusion(D, m + D, width=16, depth=2, key=jax.random.PRNGKey(5))
    F, T = LinearForward(D), LinearAnalysis(D, m)
    batch = sample_batch(lin["data"], jax.random.PRNGKey(3), 16, unroll=4)
    w = {k: 1.0 for k in ("forecast", "analysis", "score", "forward_alignment", "backward_alignment", "unrolled")}

    def loss(mods):
        terms = joint_loss_terms(*mods[:2], batch, jax.random.PRNGKey(4), residual=mods[2], weights=w,
                                 alignment_sample=mode, unroll_discard=1)
        return sum(terms.values())

    g = eqx.filter_grad(loss)((F, T, rd))
    leaves = jax.tree_util.tree_leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert float(jnp.abs(g[0].W).max()) > 0 and float(jnp.abs(g[1].Wy).max()) > 0
    assert float(jnp.abs(g[2].net.mlp.layers[0].weight).max()) > 0

    # forward alignment alone reaches the residual network through the differentiable draw
    def fa(res):
        return joint_loss_terms(F, T, batch, jax.random.PRNGKey(4), residual=res,
                                weights={"forecast": 0, "analysis": 0, "forward_alignment": 1},
                                alignment_sample=mode)["forward_alignment"]
    gr = eqx.filter_grad(fa)(rd)
    assert float(jnp.abs(gr.net.mlp.layers[0].weight).max()) > 0


def test_state_sensitivity_of_the_kalman_analysis(lin):
    H, K = lin["H"], lin["K"]
    T = LinearAnalysis.from_gain(jnp.asarray(K), jnp.asarray(H))
    uf = jax.random.normal(jax.random.PRNGKey(0), (5, D))
    ys = jax.random.normal(jax.random.PRNGKey(1), (5, H.shape[0]))
    sx, sy = state_sensitivity(T, uf, ys)
    np.testing.assert_allclose(float(sx), np.linalg.norm(np.eye(D) - K @ H) / np.sqrt(D), rtol=1e-10)
    np.testing.assert_allclose(float(sy), np.linalg.norm(K) / np.sqrt(D), rtol=1e-10)


def test_backward_alignment_shrinks_the_state_weight(lin):
    """Claim (the chapter's section on G's state input): the backward-alignment term rewards an
    analysis that ignores u^F (it must map both x_{t+1} and F(x_t) back to x_t), so adding it
    to the one-cycle fit lowers the learned analysis' sensitivity to u^F."""
    H = lin["H"]
    base = _fit(lin, n_steps=800, weights={"forecast": 1, "analysis": 1}, perturb_std=0.3)
    ba = _fit(lin, n_steps=800, weights={"forecast": 1, "analysis": 1, "backward_alignment": 1}, perturb_std=0.3)
    uf = lin["data"].states[0, :50]
    ys = lin["data"].observations[0, :50]
    s_base = float(state_sensitivity(base.analysis, uf, ys)[0])
    s_ba = float(state_sensitivity(ba.analysis, uf, ys)[0])
    assert s_ba < 0.9 * s_base, (s_ba, s_base)
    assert H.shape[0] == 2


def test_bad_input_is_refused(lin):
    data, m = lin["data"], lin["H"].shape[0]
    F, T = LinearForward(D), LinearAnalysis(D, m)
    kw = dict(key=jax.random.PRNGKey(0), n_steps=2, progress=False)
    bad_shape = TrajectoryData(data.x0, data.states, data.observations[:, :-1])
    with pytest.raises(ValueError, match="mismatched trajectory shapes"):
        fit_joint(F, T, bad_shape, **kw)
    with pytest.raises(ValueError, match="mismatched trajectory shapes"):
        fit_joint(F, T, TrajectoryData(data.x0[:, :-1], data.states, data.observations), **kw)
    nan = TrajectoryData(data.x0, data.states.at[0, 3, 1].set(jnp.nan), data.observations)
    with pytest.raises(ValueError, match="NaN|finite"):
        fit_joint(F, T, nan, **kw)
    with pytest.raises(ValueError, match="unknown loss terms"):
        fit_joint(F, T, data, weights={"forcast": 1}, **kw)
    with pytest.raises(ValueError, match=">= 0"):
        fit_joint(F, T, data, weights={"forward_alignment": -1}, **kw)
    with pytest.raises(ValueError, match="nothing to train"):
        fit_joint(F, T, data, weights={"forecast": 0, "analysis": 0}, **kw)
    with pytest.raises(ValueError, match="unroll"):
        fit_joint(F, T, data, weights={"unrolled": 1}, unroll=0, **kw)
    with pytest.raises(ValueError, match="exceeds the trajectory length"):
        fit_joint(F, T, data, weights={"unrolled": 1}, unroll=1000, **kw)
    with pytest.raises(ValueError, match="residual"):
        fit_joint(F, T, data, weights={"score": 1}, **kw)
    with pytest.raises(ValueError, match="alignment_sample"):
        fit_joint(F, T, data, alignment_sample="ode", **kw)


def test_misspecified_forward_model_claims(lin):
    """Claims of chapter 15's misspecified study (diagonal F, which cannot rotate the state), scored
    by the exact stationary error: one-cycle training stays far above the Kalman floor (> 2x),
    forward alignment makes it worse, the unrolled loss with enough steps gets close (< 1.25x),
    and the class itself reaches the floor (direct minimisation, < 1.01x)."""
    from assimilax.learned import DiagonalForward, linear_cycle_error, minimize_cycle_error

    A, Q, H, R, Pa = (lin[k] for k in ("A", "Q", "H", "R", "Pa"))
    floor = np.trace(Pa) / D

    def score(weights, n_steps, **kw):
        fit = fit_joint(DiagonalForward(D), LinearAnalysis(D, H.shape[0]), lin["data"], key=jax.random.PRNGKey(100),
                        weights=weights, n_steps=n_steps, batch_size=32, learning_rate=1e-2, progress=False, **kw)
        return fit, float(linear_cycle_error(A, Q, H, R, fit.forward.W, fit.forward.b, fit.analysis).analysis_mse) / floor

    one_fit, one = score({"forecast": 1, "analysis": 1}, 500)
    _, fa = score({"forecast": 1, "analysis": 1, "forward_alignment": 1}, 500)
    _, un = score({"forecast": 0, "analysis": 0, "unrolled": 1}, 2000, unroll=12, unroll_discard=6, unroll_std=0.5)
    fw, an, _ = minimize_cycle_error(one_fit.forward, one_fit.analysis, A, Q, H, R, n_steps=2000)
    direct = float(linear_cycle_error(A, Q, H, R, fw.W, fw.b, an).analysis_mse) / floor
    assert one > 2.0 and fa > one and un < 1.25 and direct < 1.01


def test_a_repeated_fit_reuses_the_compiled_step(lin, count_compiles):
    """fit_joint's steps are one module-level jitted program per setting: another seed of the same
    setting compiles nothing, another setting compiles anew, and the numbers are those of a fresh process
    (the cache does not change them: same key, same history)."""
    kw = dict(weights={"forecast": 1, "analysis": 1, "backward_alignment": 1}, n_steps=20)
    first = _fit(lin, key=1, **kw)
    assert count_compiles(lambda: _fit(lin, key=2, **kw)) == 0
    assert count_compiles(lambda: _fit(lin, key=2, weights={"forecast": 1, "analysis": 1}, n_steps=20)) > 0
    np.testing.assert_array_equal(_fit(lin, key=1, **kw).history["total"], first.history["total"])
