"""Batched twin experiments: truths, batched runs and grid tuning against one-at-a-time loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.experiments import TwinTruths, run_batched, score_runs, tune_grid, twin_truths
from assimilax.filters import ensemble_kalman_filter
from assimilax.metrics import ensemble_scores, rmse
from assimilax.models import LinearGaussian, Lorenz63
from assimilax.observations import LinearObservation

L63 = Lorenz63(dt=0.01)
OBS = LinearObservation.partial([0], 3, 2.0)


def _truths(R=4, T=30, N=6, key=jax.random.PRNGKey(3)):
    starts = jnp.asarray([[1.5, -1.5, 25.0]]) + jax.random.normal(jax.random.PRNGKey(9), (R, 3))
    return twin_truths(L63, OBS, starts, T, key=key, n_members=N, steps_per_obs=5, burn_in=100)


def test_twin_truths_equal_one_at_a_time_simulations_with_the_documented_keys():
    R, N = 3, 5
    key = jax.random.PRNGKey(11)
    starts = 8.0 + jax.random.normal(jax.random.PRNGKey(1), (R, 3))
    tt = twin_truths(L63, OBS, starts, 12, key=key, n_members=N, steps_per_obs=2, burn_in=50, ensemble_std=0.5)
    keys = jax.random.split(key, R)
    noise = jax.random.normal(jax.random.fold_in(key, R), (R, N, 3))
    for r in range(R):
        s = simulate(L63, OBS, starts[r], 12, key=keys[r], steps_per_obs=2, burn_in=50)
        np.testing.assert_allclose(tt.states[r], s.states, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tt.observations[r], s.observations, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tt.x0[r], s.x0, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tt.ensembles0[r], s.x0[None] + 0.5 * noise[r], rtol=1e-6, atol=1e-6)
    assert tt.n_truths == R and tt.ensembles0.shape == (R, N, 3)
    # an explicit ensemble key changes the ensembles only
    other = twin_truths(L63, OBS, starts, 12, key=key, n_members=N, steps_per_obs=2, burn_in=50,
                        ensemble_key=jax.random.PRNGKey(5))
    np.testing.assert_array_equal(other.states, tt.states)
    np.testing.assert_allclose(other.ensembles0, tt.x0[:, None] + jax.random.normal(jax.random.PRNGKey(5), (R, N, 3)),
                               rtol=1e-6, atol=1e-6)


def test_twin_truths_refuse_bad_input():
    with pytest.raises(ValueError, match=r"starts must have shape \(R, 3\)"):
        twin_truths(L63, OBS, jnp.zeros(3), 5, key=jax.random.PRNGKey(0), n_members=4)
    with pytest.raises(ValueError, match="n_members"):
        twin_truths(L63, OBS, jnp.zeros((2, 3)), 5, key=jax.random.PRNGKey(0), n_members=0)
    with pytest.raises(ValueError, match="ensemble_std"):
        twin_truths(L63, OBS, jnp.zeros((2, 3)), 5, key=jax.random.PRNGKey(0), n_members=4, ensemble_std=-1.0)


def _etkf(inflation, y, e, k):
    return ensemble_kalman_filter(L63, OBS, y, e, key=k, steps_per_obs=5, method="sqrt", inflation=inflation,
                                  store_ensembles=False).analysis_mean


def test_run_batched_and_score_runs_equal_the_loop():
    tt = _truths()
    key = jax.random.PRNGKey(4)
    means = run_batched(lambda y, e, k: _etkf(1.05, y, e, k), tt, key=key)
    keys = jax.random.split(key, tt.n_truths)
    for r in range(tt.n_truths):
        np.testing.assert_allclose(means[r], _etkf(1.05, tt.observations[r], tt.ensembles0[r], keys[r]),
                                   rtol=1e-5, atol=1e-5)
    sc = score_runs(means, None, tt, burn=10)
    np.testing.assert_allclose(sc["rmse"], [float(jnp.mean(rmse(means[r], tt.states[r])[10:])) for r in range(4)],
                               rtol=1e-5)
    assert np.all(np.isnan(sc["spread"]))  # a point analysis
    one_member = jnp.broadcast_to(means[:, :, None, :], means.shape[:2] + (1, 3))
    np.testing.assert_array_equal(score_runs(means, one_member, tt, burn=10)["rmse"], sc["rmse"])
    np.testing.assert_array_equal(score_runs(means, None, tt, burn=10)["crps"],
                                  ensemble_scores(means, None, tt.states, burn=10)["crps"])


def test_tune_grid_scores_every_setting_with_common_keys_and_finds_the_minimum():
    tt = _truths()
    key = jax.random.PRNGKey(7)
    infl = (1.0, 1.1, 1.4)
    out = tune_grid(_etkf, [infl], tt, key=key, burn=10)
    keys = jax.random.split(key, tt.n_truths)
    ref = np.array([[float(jnp.mean(rmse(_etkf(a, tt.observations[r], tt.ensembles0[r], keys[r]), tt.states[r])[10:]))
                     for r in range(tt.n_truths)] for a in infl])
    np.testing.assert_allclose(out.scores, ref, rtol=1e-4)
    np.testing.assert_allclose(out.mean, ref.mean(1), rtol=1e-4)
    assert out.best == (int(np.argmin(ref.mean(1))),) and out.best_setting == (infl[out.best[0]],)
    assert out.on_edge == (out.best[0] in (0, 2))
    assert out.scores.shape == (3, 4) and out.seconds > 0


def test_tune_grid_product_order_failures_and_edges():
    # truths at zero, so that an analysis c 1 has RMSE |c|; truth r is told apart by its ensemble
    R, T = 2, 8
    tt = TwinTruths(jnp.zeros((R, T, 3)), jnp.zeros((R, T, 1)), jnp.zeros((R, 3)),
                    jnp.arange(R, dtype=jnp.float32)[:, None, None] * jnp.ones((R, 4, 3)))

    def fake(a, b, y, e, k):
        # RMSE (a - 1.5)^2 + (b - 10)^2 / 100, except that (a, b) = (2, 20) diverges on truth 1
        bad = (a == 2.0) & (b == 20.0) & (e[0, 0] == 1.0)
        c = (a - 1.5) ** 2 + (b - 10.0) ** 2 / 100
        return jnp.where(bad, jnp.nan, jnp.full((T, 3), c))

    out = tune_grid(fake, [(1.0, 2.0), (0.0, 10.0, 20.0)], tt, key=jax.random.PRNGKey(0))
    assert out.scores.shape == (2, 3, 2) and out.mean.shape == (2, 3)
    assert np.isinf(out.mean[1, 2]) and np.isnan(out.scores[1, 2, 1]) and np.isfinite(out.scores[1, 2, 0])
    np.testing.assert_allclose(out.scores[0, :, 0], [0.25 + 1.0, 0.25, 0.25 + 1.0], rtol=1e-6)
    assert out.best in ((0, 1), (1, 1)) and out.best_setting[1] == 10.0
    assert out.on_edge  # the first axis has two values: both are edges
    out2 = tune_grid(fake, [(1.0, 1.5, 2.0), (0.0, 10.0, 20.0)], tt, key=jax.random.PRNGKey(0))
    assert out2.best == (1, 1) and not out2.on_edge
    # a score above failed_above counts as a failure
    out3 = tune_grid(fake, [(1.5,), (10.0, 30.0)], tt, key=jax.random.PRNGKey(0), failed_above=1.0)
    assert np.isinf(out3.mean[0, 1]) and out3.best == (0, 0) and out3.on_edge  # index 0 of a two-value axis


def test_tune_grid_refuses_bad_input():
    tt = _truths(R=2, T=8, N=4)
    with pytest.raises(ValueError, match="axes"):
        tune_grid(_etkf, [], tt, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="axes"):
        tune_grid(_etkf, [()], tt, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="burn"):
        tune_grid(_etkf, [(1.0,)], tt, key=jax.random.PRNGKey(0), burn=8)
    with pytest.raises(ValueError, match="analysis means"):
        tune_grid(lambda a, y, e, k: e, [(1.0,)], tt, key=jax.random.PRNGKey(0))


def test_twin_truths_work_with_a_noisy_linear_model():
    model = LinearGaussian.random_stable(2, key=jax.random.PRNGKey(0), noise_scale=0.3)
    obs = LinearObservation.full(2, 0.5)
    tt = twin_truths(model, obs, jnp.zeros((3, 2)), 6, key=jax.random.PRNGKey(2), n_members=4)
    assert isinstance(tt, TwinTruths)
    assert tt.states.shape == (3, 6, 2) and tt.observations.shape == (3, 6, 2)
    # model noise: different keys give different truths from the same start
    assert not np.allclose(tt.states[0], tt.states[1])


def test_score_row_formats_the_means_over_truths_and_hides_them_when_a_run_failed():
    from assimilax.experiments import score_row
    from assimilax.metrics import format_interval, mean_interval
    sc = {"rmse": np.array([1.0, 1.2, 0.9]), "crps": np.array([0.51234, 0.6, 0.55]),
          "coverage": np.array([0.8, 0.9, 0.85]), "spread_error": np.array([1.1, 0.9, 1.3]), "spread": np.ones(3)}
    row = score_row(sc)
    assert list(row) == ["RMSE", "CRPS", "90 % coverage", "spread / error"]
    assert row["RMSE"] == format_interval(mean_interval([1.0, 1.2, 0.9]), 3)
    assert row["CRPS"] == f"{(0.51234 + 0.6 + 0.55) / 3:.3g}" == "0.554"
    assert row["90 % coverage"] == "0.85" and row["spread / error"] == "1.10"
    assert list(score_row(sc, level=0.8, digits=2)) == ["RMSE", "CRPS", "80 % coverage", "spread / error"]
    assert score_row(sc, digits=2)["CRPS"] == "0.55"
    # a failed run: the RMSE says so, the other cells are missing
    bad = dict(sc, rmse=np.array([1.0, np.nan, 0.9]))
    assert score_row(bad) == {"RMSE": "failed on 1 of 3", "CRPS": "—", "90 % coverage": "—",
                              "spread / error": "—"}
    assert score_row(sc, failed_above=1.1)["RMSE"] == "failed on 1 of 3"
    assert score_row(sc, failed_above=1.1, missing="n/a")["CRPS"] == "n/a"
    # a point analysis (score_runs without ensembles): no coverage, no spread
    tt = _truths(R=3, T=12, N=4)
    means = run_batched(lambda y, e, k: _etkf(1.05, y, e, k), tt, key=jax.random.PRNGKey(1))
    point = score_row(score_runs(means, None, tt, burn=2))
    assert point["90 % coverage"] == "—" and point["spread / error"] == "—" and point["CRPS"] != "—"


def test_score_row_refuses_bad_input():
    from assimilax.experiments import score_row
    sc = {k: np.ones(3) for k in ("rmse", "crps", "coverage", "spread_error")}
    with pytest.raises(ValueError, match="lacks"):
        score_row({"rmse": np.ones(3)})
    with pytest.raises(ValueError, match="same shape"):
        score_row(dict(sc, crps=np.ones(2)))
    with pytest.raises(ValueError, match="level"):
        score_row(sc, level=90)
    with pytest.raises(ValueError, match="digits"):
        score_row(sc, digits=0)


def _point_truths(R=3, T=20, d=2, key=jax.random.PRNGKey(8)):
    model = LinearGaussian.random_stable(d, key=jax.random.PRNGKey(0), noise_scale=0.3)
    obs = LinearObservation.full(d, 0.5)
    return model, obs, twin_truths(model, obs, jnp.zeros((R, d)), T, key=key, n_members=4)


def test_learned_cycle_rmse_equals_a_numpy_loop_and_loses_only_the_diverged_truth():
    from assimilax.experiments import learned_cycle_rmse
    model, obs, tt = _point_truths()
    A = np.asarray(model.A, dtype=np.float64)
    K = 0.4
    forward = lambda u: model.A @ u  # noqa: E731
    analysis = lambda u, y: u + K * (y - u)  # noqa: E731
    got = learned_cycle_rmse(forward, obs, tt, analysis=analysis, burn=5)
    ys, xs, x0 = (np.asarray(a, dtype=np.float64) for a in (tt.observations, tt.states, tt.x0))
    ref = []
    for r in range(tt.n_truths):
        u, errs = x0[r], []
        for t in range(ys.shape[1]):
            u = A @ u
            u = u + K * (ys[r, t] - u)
            errs.append(np.sqrt(np.mean((u - xs[r, t]) ** 2)))
        ref.append(np.mean(errs[5:]))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert got.shape == (3,) and np.all(np.isfinite(got))
    # truth 1 starts at 1e37: a forecast that doubles the state overflows float32 on it only
    big = TwinTruths(*(jnp.asarray(a, jnp.float32) for a in (tt.states, tt.observations,
                                                             tt.x0.at[1].set(1e37), tt.ensembles0)))
    out = learned_cycle_rmse(lambda u: 2.0 * u, obs, big, analysis=lambda u, y: u)
    assert np.isnan(out[1]) and np.all(np.isfinite(out[[0, 2]]))
    x32 = np.asarray(big.states, np.float64)
    np.testing.assert_allclose(out[0], np.mean([np.sqrt(np.mean((2.0 ** (t + 1) * np.asarray(big.x0[0]) - x32[0, t]) ** 2))
                                                for t in range(x32.shape[1])]), rtol=1e-5)


def test_learned_cycle_rmse_refuses_bad_input():
    from assimilax.experiments import learned_cycle_rmse
    model, obs, tt = _point_truths(T=6)
    with pytest.raises(ValueError, match="burn"):
        learned_cycle_rmse(lambda u: u, obs, tt, analysis=lambda u, y: u, burn=6)
    with pytest.raises(ValueError, match="x0"):
        learned_cycle_rmse(lambda u: u, obs, tt._replace(x0=tt.x0[:2]), analysis=lambda u, y: u)


def test_learned_filter_batched_equals_one_truth_at_a_time_with_the_documented_keys():
    from assimilax import learned_filter
    from assimilax.experiments import learned_filter_batched
    from assimilax.filters import LETKFAnalysis
    model, obs, tt = _point_truths(R=3, T=15)
    key = jax.random.PRNGKey(6)
    keys = jax.random.split(key, tt.n_truths)
    analysis = lambda u, y: u + 0.4 * (y - u)  # noqa: E731
    # model noise drawn in the forecast: the result depends on each truth's key
    out = learned_filter_batched(model, obs, tt, analysis=analysis, key=key, model_noise=True)
    assert out.analysis_mean.shape == (3, 15, 2) and out.ensembles.shape == (3, 15, 4, 2)
    for r in range(tt.n_truths):
        one = learned_filter(model, obs, tt.observations[r], tt.ensembles0[r], analysis=analysis, key=keys[r],
                             model_noise=True)
        np.testing.assert_allclose(out.analysis_mean[r], one.analysis_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.ensembles[r], one.ensembles, rtol=1e-5, atol=1e-6)
    other = learned_filter_batched(model, obs, tt, analysis=analysis, key=jax.random.PRNGKey(7), model_noise=True)
    assert not np.allclose(other.analysis_mean, out.analysis_mean)
    # an ensemble analysis (the ETKF as a LETKFAnalysis without localisation), not jitted, no ensembles stored
    G = LETKFAnalysis(OBS, 3, inflation=1.02, n_members=6)
    t3 = _truths(R=2, T=10, N=6)
    e = learned_filter_batched(L63, OBS, t3, analysis=G, key=key, store_ensembles=False, jit=False)
    assert e.ensembles is None
    for r in range(2):
        np.testing.assert_allclose(e.analysis_mean[r], learned_filter(L63, OBS, t3.observations[r], t3.ensembles0[r],
                                                                      analysis=G, key=jax.random.PRNGKey(0)).analysis_mean,
                                   rtol=1e-5, atol=1e-5)


def test_learned_filter_batched_refuses_bad_input():
    from assimilax.experiments import learned_filter_batched
    model, obs, tt = _point_truths(T=4)
    with pytest.raises(ValueError, match="ensemble0"):
        learned_filter_batched(model, obs, tt, analysis=lambda u, y: u, key=jax.random.PRNGKey(0),
                               ensemble0=tt.ensembles0[0])
    with pytest.raises(ValueError, match="same R"):
        learned_filter_batched(model, obs, tt._replace(ensembles0=tt.ensembles0[:2]), analysis=lambda u, y: u,
                               key=jax.random.PRNGKey(0))
