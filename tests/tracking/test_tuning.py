"""Oracle tuning of the trackers against a series-by-series loop scored in NumPy."""
import jax
import numpy as np
import pytest

from assimilax.configs import LANGFORD_NOTES as NOTES
from assimilax.tracking import (langford_tracking_data, track_augmented_ekf, track_phase_ekf, tune_trackers,
                                window_estimator)

S, T, SKIP, SIGMA = 3, 100, 20, 0.2
WINDOWS, Q_RATES = (3, 12), (0.3, 3.0)


@pytest.fixture(scope="module")
def data():
    return langford_tracking_data(NOTES.model(a=1.0, period=5.0), SIGMA, S, T, key=jax.random.PRNGKey(2))


def _rmse_wrapped(est, truth):
    d = np.angle(np.exp(1j * (np.asarray(est)[SKIP:] - np.asarray(truth)[SKIP:])))  # wrapped to (-pi, pi]
    return np.sqrt(np.mean(d ** 2))


def test_errors_and_choices_match_a_loop_over_series(data):
    ys, times, th = data.simulation.observations, data.simulation.times[0], data.phase
    tuned = tune_trackers(ys, times, th, SIGMA, windows=WINDOWS, q_rates=Q_RATES, skip=SKIP, obs_interval=0.1,
                          steps_per_obs=10)
    ref = {"ls": {}, "win": {}, "ekf": np.zeros((2, S)), "aug": np.zeros((2, S))}
    for s in range(S):
        for w in WINDOWS:
            ref["ls"].setdefault(w, []).append(_rmse_wrapped(window_estimator(ys[s], times, w).phase, th[s]))
            e = window_estimator(ys[s], times, w, sigma=SIGMA, omega_prior=(3.5, 1.0))
            ref["win"].setdefault(w, []).append(_rmse_wrapped(e.phase, th[s]))
        for i, q in enumerate(Q_RATES):
            ref["ekf"][i, s] = _rmse_wrapped(track_phase_ekf(ys[s], SIGMA, obs_interval=0.1, q_amp=0.1, q_rate=q)[0].phase, th[s])
            ref["aug"][i, s] = _rmse_wrapped(track_augmented_ekf(ys[s], SIGMA, steps_per_obs=10, q_state=0.02,
                                                                 q_omega=q)[0].phase, th[s])
    for w in WINDOWS:
        np.testing.assert_allclose(tuned.window_ls[w], ref["ls"][w], rtol=1e-7)
        np.testing.assert_allclose(tuned.window[w], ref["win"][w], rtol=1e-7)
    np.testing.assert_allclose(tuned.ekf_grid, ref["ekf"], rtol=1e-7)
    np.testing.assert_allclose(tuned.augmented_grid, ref["aug"], rtol=1e-7)
    # the oracle choices: the smallest mean over the series
    assert tuned.w_ls == WINDOWS[int(np.argmin([np.mean(ref["ls"][w]) for w in WINDOWS]))]
    assert tuned.w == WINDOWS[int(np.argmin([np.mean(ref["win"][w]) for w in WINDOWS]))]
    i_ekf, i_aug = int(np.argmin(ref["ekf"].mean(1))), int(np.argmin(ref["aug"].mean(1)))
    assert (tuned.q_ekf, tuned.q_augmented) == (Q_RATES[i_ekf], Q_RATES[i_aug])
    np.testing.assert_allclose(tuned.ekf, ref["ekf"][i_ekf], rtol=1e-7)
    better = "ekf" if ref["ekf"][i_ekf].mean() <= ref["aug"][i_aug].mean() else "augmented"
    assert tuned.better_filter == better
    filt = ref["ekf"][i_ekf] if better == "ekf" else ref["aug"][i_aug]
    np.testing.assert_allclose(tuned.ratio, filt / np.asarray(ref["win"][tuned.w]), rtol=1e-7)
    np.testing.assert_allclose(tuned.best_window_ls, ref["ls"][tuned.w_ls], rtol=1e-7)
    # the estimates kept are those of the tuned settings
    e = track_phase_ekf(ys[1], SIGMA, obs_interval=0.1, q_amp=0.1, q_rate=tuned.q_ekf)[0]
    np.testing.assert_allclose(np.asarray(tuned.ekf_estimate.phase[1]), np.asarray(e.phase), rtol=1e-9, atol=1e-12)
    assert tuned.window_estimates[WINDOWS[0]].phase.shape == (S, T)
    assert tuned.augmented_estimate.prediction.shape == (S, T, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ys=np.zeros((S, T, 3))), "ys"), (dict(times=np.zeros(T + 1)), "times"), (dict(phase=np.zeros((S, 5))), "phase"),
    (dict(windows=()), "at least one"), (dict(q_rates=(0.3, -1.0)), "q_rates"), (dict(skip=T), "skip"),
    (dict(sigma=0.0), "sigma")])
def test_bad_input(data, kwargs, match):
    args = dict(ys=data.simulation.observations, times=data.simulation.times[0], phase=data.phase, sigma=SIGMA,
                windows=WINDOWS, q_rates=Q_RATES, skip=SKIP) | kwargs
    with pytest.raises(ValueError, match=match):
        tune_trackers(args.pop("ys"), args.pop("times"), args.pop("phase"), args.pop("sigma"), obs_interval=0.1,
                      steps_per_obs=10, **args)
