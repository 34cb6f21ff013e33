"""Chapter 10's linear-Gaussian claim at small scale: an analysis operator fitted on the notes'
pairs (forecasts from the true previous state) learns the one-step gain K_Q of a filter whose
forecast error is the model noise alone; re-fitted on the forecasts of its own cycle it moves to
the steady-state Kalman gain K_inf. The gains are computed in closed form here, independently of
the library's fits."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.learned import analysis_pairs, cycled_analysis_pairs, fit_linear_analysis, generate_trajectories
from assimilax.models import LinearGaussian
from assimilax.observations import LinearObservation


def _steady_gain(A, Q, H, R, n=500):
    P = np.eye(A.shape[0])
    for _ in range(n):
        Pf = A @ P @ A.T + Q
        K = np.linalg.solve(H @ Pf @ H.T + R, H @ Pf).T
        P = (np.eye(A.shape[0]) - K @ H) @ Pf
    return K


def test_notes_pairs_learn_the_one_step_gain_and_cycled_pairs_the_kalman_gain():
    d = 4
    O, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    A, Q = 0.95 * O, 0.04 * np.eye(d)
    model = LinearGaussian(jnp.asarray(A), jnp.asarray(Q))
    obs = LinearObservation.every_kth(d, 2, 0.5)
    H, R = np.asarray(obs.H), np.asarray(obs.R)
    K_inf = _steady_gain(A, Q, H, R)
    K_Q = np.linalg.solve(H @ Q @ H.T + R, H @ Q).T
    gap = np.abs(K_inf - K_Q).max()
    assert gap > 0.1  # the two gains differ enough for the test to tell them apart

    x0s = jax.random.normal(jax.random.PRNGKey(1), (20, d))
    data = generate_trajectories(model, obs, x0s, 400, key=jax.random.PRNGKey(2))
    T_notes = fit_linear_analysis(*analysis_pairs(model, data), H=obs.H)
    err_notes_Q = np.abs(np.asarray(T_notes.Wy) - K_Q).max()
    err_notes_inf = np.abs(np.asarray(T_notes.Wy) - K_inf).max()
    assert err_notes_Q < 0.1 * gap, (err_notes_Q, gap)
    assert err_notes_inf > 0.75 * gap, (err_notes_inf, gap)

    T = T_notes
    for r in range(4):
        T = fit_linear_analysis(*cycled_analysis_pairs(model, T, data, key=jax.random.PRNGKey(10 + r), discard=10),
                                H=obs.H)
    err_cyc_inf = np.abs(np.asarray(T.Wy) - K_inf).max()
    assert err_cyc_inf < 0.15 * err_notes_inf, (err_cyc_inf, err_notes_inf)
