"""The chapter's central claim at small scale (chapters/30_langford_phase_tracking.md).

March 5 notes: "tracking phase through history via a filtering algorithm can help, but windowing
throws away information". On a fixed configuration (a = 1, P = 10, sigma = 0.1, observations of
(x, y) every 0.1 time units, 3 seeds) the phase/amplitude EKF and the augmented-Langford EKF have a
phase RMSE below the best window over a grid of w, the window given the filters' information (the
noise level and the rate prior N(3.5, 1), as in the chapter). With a constant rotation rate (a = 0) the
U-curve disappears (the longest window is best), yet the filters, which use all the history,
stay ahead of every window on the grid.
"""
import jax
import jax.numpy as jnp
import pytest

from assimilax import simulate
from assimilax.models.langford import Langford
from assimilax.observations import LinearObservation
from assimilax.tracking import circular_rmse, track_augmented_ekf, track_phase_ekf, window_estimator

WINDOWS = (3, 5, 8, 12, 20, 40)
S, T, SKIP = 3, 300, 40


def _data(a, sigma):
    m = Langford(a=a, period=10.0)
    x0 = m.burn_in(n_steps=3000)
    obs = LinearObservation.partial([0, 1], 3, sigma)
    keys = jax.random.split(jax.random.PRNGKey(0), S)
    sims = [simulate(m, obs, m.burn_in(x0, 100 * i), T, key=keys[i], steps_per_obs=10) for i in range(S)]
    ys = jnp.stack([s.observations for s in sims])
    th = jnp.stack([jnp.arctan2(s.states[:, 1], s.states[:, 0]) for s in sims])
    return ys, th, sims[0].times


def _scores(a, sigma, q_rates):
    ys, th, times = _data(a, sigma)
    err = lambda e: float(jnp.mean(circular_rmse(e.phase[:, SKIP:], th[:, SKIP:])))  # noqa: E731
    win = {w: err(jax.vmap(lambda y: window_estimator(y, times, w, sigma=sigma, omega_prior=(3.5, 1.0)))(ys))
           for w in WINDOWS}
    ekf = min(err(jax.vmap(lambda y: track_phase_ekf(y, sigma, obs_interval=0.1, q_amp=0.1, q_rate=q)[0])(ys)) for q in q_rates)
    aug = min(err(jax.vmap(lambda y: track_augmented_ekf(y, sigma, q_omega=q, q_state=0.02)[0])(ys)) for q in q_rates)
    return win, ekf, aug


@pytest.mark.parametrize("sigma", [0.1])
def test_filters_beat_the_best_window_when_omega_varies(sigma):
    win, ekf, aug = _scores(1.0, sigma, (1.0,))
    best = min(win.values())
    print(win, ekf, aug)
    assert min(win, key=win.get) not in (WINDOWS[0], WINDOWS[-1])  # a U-curve: interior optimum
    assert ekf < 0.95 * best
    assert aug < 0.95 * best


def test_constant_omega_longest_window_best_filters_still_ahead():
    win, ekf, aug = _scores(0.0, 0.1, (0.05, 0.3))
    print(win, ekf, aug)
    assert min(win, key=win.get) == WINDOWS[-1]  # no lag to trade against: longest is best
    assert min(ekf, aug) < min(win.values())  # the filters still use more history
