r"""Oracle-tuned phase errors of the window estimator and the two EKF trackers on a batch of series.

The Langford chapter's comparison protocol, one knob per method on a grid: for series
:math:`s = 1, \dots, S` with true phase :math:`\theta^{(s)}_t`, an estimator with setting
:math:`k` has the per-series phase error

.. math::
    e^{(s)}_k = \Big(\frac{1}{T - t_0} \sum_{t = t_0}^{T-1}
    \mathrm{wrap}\big(\hat\theta^{(s)}_{k,t} - \theta^{(s)}_t\big)^2\Big)^{1/2}

(:func:`~assimilax.tracking.circular_rmse` after ``skip`` :math:`= t_0` spin-up observations),
and the tuned setting is :math:`k^\star = \arg\min_k \frac1S\sum_s e^{(s)}_k`, the smallest mean
over the same series that are then scored (an oracle choice, equally optimistic for every
method). The knobs: the window length :math:`w` of :func:`~assimilax.tracking.window_estimator`,
both as plain least squares and given the filters' information (:math:`\sigma` and the rate prior
:math:`\mathcal N(\bar\omega, s_\omega^2)`); the rate diffusion :math:`q_\omega` of
:func:`~assimilax.tracking.track_phase_ekf` (with ``q_amp`` fixed) and of
:func:`~assimilax.tracking.track_augmented_ekf` (with ``q_state`` fixed). The filters start from
their default priors, whose rate prior is :math:`\mathcal N(3.5, 1)`
(``OMEGA_GUESS``), the window's default ``omega_prior``. Every
setting runs over all series in one ``jax.vmap`` (the EKFs over the :math:`q_\omega` grid too).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_finite, check_shape
from ._types import TrackingEstimate
from .circular import circular_rmse
from .filters import OMEGA_GUESS, track_augmented_ekf, track_phase_ekf
from .window import window_estimator


class TunedTrackers(NamedTuple):
    r"""Per-series phase errors of every setting, the oracle choices and the tuned estimates.

    **Fields:** ``windows``, ``q_rates`` the grids; ``window_ls`` and ``window``: dicts
    :math:`w \mapsto` ``(S,)`` errors of the least-squares window and of the window given
    :math:`\sigma` and the rate prior; ``ekf_grid``, ``augmented_grid`` ``(n_q, S)`` errors of the
    phase/amplitude and augmented EKFs; ``w_ls``, ``w``, ``q_ekf``, ``q_augmented`` the tuned
    settings; ``ekf``, ``augmented`` ``(S,)`` the errors at the tuned :math:`q_\omega`;
    ``better_filter``: ``"ekf"`` or ``"augmented"``, the tuned filter with the smaller mean error
    (the EKF on a tie); ``window_estimates``: dict :math:`w \mapsto` :class:`TrackingEstimate`
    ``(S, T)`` of the window with the prior (every :math:`w`, e.g. to compare one window length
    with a reference); ``ekf_estimate``, ``augmented_estimate`` the tuned filters' estimates.

    **Properties:** ``best_window_ls``, ``best_window`` ``(S,)`` the tuned windows' errors;
    ``better_filter_errors`` ``(S,)``; ``ratio`` ``(S,)`` better filter / best window, series by series.
    """

    windows: tuple
    q_rates: tuple
    window_ls: dict
    window: dict
    ekf_grid: np.ndarray
    augmented_grid: np.ndarray
    w_ls: int
    w: int
    q_ekf: float
    q_augmented: float
    ekf: np.ndarray
    augmented: np.ndarray
    better_filter: str
    window_estimates: dict
    ekf_estimate: TrackingEstimate
    augmented_estimate: TrackingEstimate

    @property
    def best_window_ls(self) -> np.ndarray:
        return self.window_ls[self.w_ls]

    @property
    def best_window(self) -> np.ndarray:
        return self.window[self.w]

    @property
    def better_filter_errors(self) -> np.ndarray:
        return self.ekf if self.better_filter == "ekf" else self.augmented

    @property
    def ratio(self) -> np.ndarray:
        return self.better_filter_errors / self.best_window


def tune_trackers(ys: Float[Array, "S T 2"], times: Float[Array, " T"], phase: Float[Array, "S T"], sigma: float, *,
                  windows: Sequence[int], q_rates: Sequence[float], skip: int = 0,
                  omega_prior: tuple = (OMEGA_GUESS, 1.0), obs_interval: float, steps_per_obs: int,
                  q_amp: float = 0.1, q_state: float = 0.02) -> TunedTrackers:
    r"""Score the window estimator and both EKF trackers on their grids and tune each by oracle
    (module docstring).

    **Arguments:**

    - `ys`: ``(S, T, 2)`` noisy :math:`(x, y)` observations of ``S`` series (e.g.
      ``data.simulation.observations`` of :func:`~assimilax.tracking.langford_tracking_data`).
    - `times`: ``(T,)`` observation times, shared by the series.
    - `phase`: ``(S, T)`` true phases :math:`\theta_t`.
    - `sigma`: the observation-noise standard deviation every method is given (:math:`> 0`).
    - `windows`: window lengths :math:`w \ge 2`; `q_rates`: rate diffusions :math:`q_\omega > 0`
      of both EKFs.
    - `skip`: spin-up observations :math:`t_0` left out of every error, ``0 <= skip < T``.
    - `omega_prior`: ``(mean, std)`` of the window's rate prior (the filters' default by default).
    - `obs_interval`: :math:`\Delta` of the phase/amplitude EKF; `steps_per_obs`: RK4 steps per
      observation of the augmented EKF (with its default ``dt``).
    - `q_amp`: the phase/amplitude EKF's amplitude diffusion; `q_state`: the augmented EKF's
      state diffusion (both fixed, not tuned).

    **Returns:** :class:`TunedTrackers` (errors as NumPy arrays). Run in float64, as the EKFs are.
    """
    ys, times, phase = jnp.asarray(ys), jnp.asarray(times), jnp.asarray(phase)
    if ys.ndim != 3 or ys.shape[-1] != 2:
        raise ValueError(f"ys must have shape (S, T, 2), got {ys.shape}")
    S, T = ys.shape[:2]
    check_shape(times, (T,), "times")
    check_shape(phase, (S, T), "phase")
    check_finite(phase, "phase")
    windows, q_rates = tuple(int(w) for w in windows), tuple(float(q) for q in q_rates)
    if not windows or not q_rates:
        raise ValueError("windows and q_rates need at least one setting each")
    if not all(q > 0 for q in q_rates):
        raise ValueError(f"q_rates must be positive, got {q_rates}")
    if not (isinstance(skip, (int, np.integer)) and 0 <= skip < T):
        raise ValueError(f"skip must be an integer in [0, {T}), got {skip!r}")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    truth = phase[..., skip:]

    def errors(est_phase):  # (..., S, T) -> (..., S)
        return np.asarray(circular_rmse(est_phase[..., skip:], jnp.broadcast_to(truth, est_phase[..., skip:].shape)))

    ls_est = {w: jax.vmap(lambda y: window_estimator(y, times, w))(ys) for w in windows}
    win_est = {w: jax.vmap(lambda y: window_estimator(y, times, w, sigma=sigma, omega_prior=omega_prior))(ys)
               for w in windows}
    qs = jnp.asarray(q_rates)
    ekf_est = jax.vmap(lambda q: jax.vmap(lambda y: track_phase_ekf(y, sigma, obs_interval=obs_interval, q_amp=q_amp,
                                                                    q_rate=q)[0])(ys))(qs)
    aug_est = jax.vmap(lambda q: jax.vmap(lambda y: track_augmented_ekf(y, sigma, steps_per_obs=steps_per_obs,
                                                                        q_state=q_state, q_omega=q)[0])(ys))(qs)
    window_ls = {w: errors(e.phase) for w, e in ls_est.items()}
    window = {w: errors(e.phase) for w, e in win_est.items()}
    ekf_grid, aug_grid = errors(ekf_est.phase), errors(aug_est.phase)  # (n_q, S)
    best = lambda d: min(d, key=lambda k: d[k].mean())  # noqa: E731  first on ties
    i_ekf, i_aug = int(np.argmin(ekf_grid.mean(1))), int(np.argmin(aug_grid.mean(1)))
    take = lambda est, i: jax.tree_util.tree_map(lambda x: x[i], est)  # noqa: E731
    return TunedTrackers(
        windows=windows, q_rates=q_rates, window_ls=window_ls, window=window, ekf_grid=ekf_grid,
        augmented_grid=aug_grid, w_ls=best(window_ls), w=best(window), q_ekf=q_rates[i_ekf],
        q_augmented=q_rates[i_aug], ekf=ekf_grid[i_ekf], augmented=aug_grid[i_aug],
        better_filter="ekf" if ekf_grid[i_ekf].mean() <= aug_grid[i_aug].mean() else "augmented",
        window_estimates=win_est, ekf_estimate=take(ekf_est, i_ekf), augmented_estimate=take(aug_est, i_aug))


__all__ = ["TunedTrackers", "tune_trackers"]
