r"""Phase/amplitude trackers built on the generic filters of :mod:`assimilax.filters`.

Two state-space formulations of the March 5 notes' "track phase and amplitude as states":

* **Phase/amplitude EKF** -- state :math:`s = (\theta, r, \omega)`,

  .. math::
      \theta_{k+1} = \theta_k + \omega_k\Delta + \eta^\theta_k,\quad
      r_{k+1} = r_k + \eta^r_k,\quad \omega_{k+1} = \omega_k + \eta^\omega_k,\qquad
      \eta_k \sim \mathcal N\big(0, \mathrm{diag}(q_\theta^2, q_r^2, q_\omega^2)\,\Delta\big),

  observed through :math:`h(s) = (r\cos\theta, r\sin\theta) + \mathcal N(0, \sigma^2 I)`
  (:class:`PhaseAmplitudeModel`, :class:`PolarObservation`). The phase equation is exact for the
  Langford system (:math:`\dot\theta = \omega(t)`); the amplitude, driven by the unobserved
  :math:`z`, is only a random walk here.
* **Augmented Langford EKF / particle filter** -- state :math:`(x, y, z, \omega)` with the full
  Langford drift and a random-walk :math:`\omega` (:class:`~assimilax.models.langford.AugmentedLangford`).

Both run through :func:`assimilax.filters.extended_kalman_filter` (the EKF
:cite:`jazwinski1970stochastic,sarkka2013bayesian`) and
:func:`assimilax.filters.particle_filter` (bootstrap), and return a :class:`TrackingEstimate`.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..models._base import DynamicalModel
from ..models.langford import AugmentedLangford
from ..observations import LinearObservation, ObservationOperator, noise_moments
from .._validation import check_covariance, check_observations, check_positive_int, check_shape
from ._types import TrackingEstimate

#: Default prior rotation rate (rad per time unit): the Langford system's :math:`\omega_0` in
#: the March 5 notes (:class:`~assimilax.models.Langford`'s ``omega0``).
OMEGA_GUESS = 3.5

#: Phase variance (rad^2) added to the prior of :func:`phase_amplitude_prior`: a floor of about
#: 0.22 rad standard deviation, so a first observation with a large amplitude and a small noise
#: never gives an over-confident prior phase (the phase of the EKF state is only defined up to
#: the noise of ``ys[0]`` and the rate uncertainty over one interval, both of which can be ~0).
PHASE_VAR_FLOOR = 0.05

#: Variance added to :math:`\sigma^2` in the priors of the amplitude (:func:`phase_amplitude_prior`)
#: and of :math:`(x, y)` (:func:`augmented_prior`): the first observation is one noisy draw, and the
#: state has moved by an unknown amount since the time the prior describes.
XY_VAR_FLOOR = 0.1


class PhaseAmplitudeModel(DynamicalModel):
    r"""Discrete phase/amplitude/rate dynamics :math:`(\theta, r, \omega) \mapsto (\theta + \omega\Delta, r, \omega)`.

    **Arguments:** ``dt`` :math:`\Delta` (time per step; use the observation interval with
    ``steps_per_obs=1``), diffusion coefficients ``q_phase``, ``q_amp``, ``q_rate``; the per-step
    noise covariance is :math:`\mathrm{diag}(q_\theta^2, q_r^2, q_\omega^2)\Delta` (plus ``1e-12``).
    """

    dt: float = eqx.field(static=True, default=0.1)
    noise_cov: object = None

    def __init__(self, dt: float = 0.1, q_phase: float = 0.0, q_amp: float = 0.3, q_rate: float = 0.5):
        self.dt = float(dt)
        self.noise_cov = jnp.diag(jnp.array([q_phase**2, q_amp**2, q_rate**2]) * self.dt + 1e-12)

    @property
    def dim(self) -> int:
        return 3

    def step(self, x, t=0.0):
        return jnp.stack([x[0] + x[2] * self.dt, x[1], x[2]])

    def jacobian(self, x, t=0.0):
        return jnp.array([[1.0, 0.0, self.dt], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=x.dtype)


class PolarObservation(ObservationOperator):
    r"""Cartesian observation of a polar state: :math:`h(\theta, r, \dots) = (r\cos\theta, r\sin\theta)`.

    **Arguments:** ``noise`` (std, per-component stds or ``(2, 2)`` ``R``), ``state_dim`` (default 3;
    the phase is component 0, the amplitude component 1).
    """

    def __init__(self, noise, state_dim: int = 3):
        self.noise_var, self.R_full = noise_moments(noise, 2)
        self.state_dim = state_dim

    def __call__(self, x):
        return jnp.stack([x[1] * jnp.cos(x[0]), x[1] * jnp.sin(x[0])])

    def jacobian(self, x):
        c, s = jnp.cos(x[0]), jnp.sin(x[0])
        J = jnp.zeros((2, self.state_dim), dtype=x.dtype)
        return J.at[0, 0].set(-x[1] * s).at[0, 1].set(c).at[1, 0].set(x[1] * c).at[1, 1].set(s)


def _check_ys(ys, sigma):
    ys = jnp.asarray(ys)
    check_observations(ys, 2, "ys")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    return ys


def phase_amplitude_prior(y1: Float[Array, " 2"], sigma: float, *, obs_interval: float = 0.0,
                          omega_guess: float = OMEGA_GUESS,
                          omega_std: float = 1.0):
    r"""A weak Gaussian prior on :math:`(\theta_0, r_0, \omega_0)` one interval :math:`\Delta`
    (``obs_interval``) before the first observation ``y1`` ``(2,)``: phase
    :math:`\operatorname{atan2}(y_1) - \bar\omega\Delta`, amplitude :math:`|y_1|`, rate
    :math:`\bar\omega` = ``omega_guess``, with variances

    .. math::
        v_\theta = \big(\sigma / \max(|y_1|, \sigma)\big)^2 + (s_\omega\Delta)^2 + v^\theta_0,\qquad
        v_r = \sigma^2 + v^{xy}_0,\qquad v_\omega = s_\omega^2

    (:math:`s_\omega` = ``omega_std``, :math:`v^\theta_0` = ``PHASE_VAR_FLOOR``,
    :math:`v^{xy}_0` = ``XY_VAR_FLOOR``). Returns ``(mean0 (3,), cov0 (3, 3))``."""
    y1 = jnp.asarray(y1)
    r1 = jnp.hypot(y1[0], y1[1])
    mean0 = jnp.stack([jnp.arctan2(y1[1], y1[0]) - omega_guess * obs_interval, r1, jnp.asarray(omega_guess, y1.dtype)])
    var_phase = (sigma / jnp.maximum(r1, sigma)) ** 2 + (omega_std * obs_interval) ** 2 + PHASE_VAR_FLOOR
    cov0 = jnp.diag(jnp.stack([var_phase, jnp.asarray(sigma**2 + XY_VAR_FLOOR, y1.dtype),
                               jnp.asarray(omega_std**2, y1.dtype)]))
    return mean0, cov0


def _polar_tracks(mf):
    # (theta, r) and (theta + pi, -r) are the same point: report the phase of the point estimate
    # r (cos theta, sin theta) and |r|, so that a sign flip of r is not counted as a phase error.
    phase = jnp.arctan2(mf[:, 1] * jnp.sin(mf[:, 0]), mf[:, 1] * jnp.cos(mf[:, 0]))
    return phase, jnp.abs(mf[:, 1])


def track_phase_ekf(ys: Float[Array, "T 2"], sigma: float, *, obs_interval: float, q_phase: float = 0.0,
                    q_amp: float = 0.3,
                    q_rate: float = 0.5, mean0=None, cov0=None, omega_guess: float = OMEGA_GUESS):
    r"""Phase/amplitude/rate EKF on observations ``ys`` ``(T, 2)`` of :math:`(x, y)` every
    ``obs_interval`` time units (keyword, like every tracker's time step) with noise std ``sigma``.

    **Returns:** ``(TrackingEstimate, GaussianFilterResult)``; the phase is that of the filtered
    point :math:`\hat r(\cos\hat\theta, \sin\hat\theta)` in :math:`(-\pi, \pi]` (so the
    equivalence :math:`(\theta, r) \sim (\theta+\pi, -r)` is harmless), the amplitude
    :math:`|\hat r|`, the prediction :math:`h(\hat s_{t|t-1})`.
    Default prior: :func:`phase_amplitude_prior` from ``ys[0]``. Run in float64.
    """
    from ..filters import extended_kalman_filter

    ys = _check_ys(ys, sigma)
    model = PhaseAmplitudeModel(obs_interval, q_phase, q_amp, q_rate)
    obs = PolarObservation(sigma)
    if mean0 is None or cov0 is None:
        m, P = phase_amplitude_prior(ys[0], sigma, obs_interval=obs_interval, omega_guess=omega_guess)
        mean0 = m if mean0 is None else mean0
        cov0 = P if cov0 is None else cov0
    res = extended_kalman_filter(model, obs, ys, mean0, cov0, steps_per_obs=1)
    mf, mp = res.filtered_means, res.predicted_means
    phase, amp = _polar_tracks(mf)
    return TrackingEstimate(phase, amp, mf[:, 2], jax.vmap(obs)(mp)), res


def augmented_prior(y1: Float[Array, " 2"], sigma: float, *, obs_interval: float = 0.0,
                    omega_guess: float = OMEGA_GUESS,
                    omega_std: float = 1.0, z_mean: float = 0.8, z_std: float = 0.8):
    r"""Gaussian prior on :math:`(x, y, z, \omega)` near the first observation ``y1``: :math:`(x, y)`
    is ``y1`` rotated back by :math:`\bar\omega\Delta`, with variance
    :math:`\sigma^2 + v^{xy}_0 + (s_\omega\Delta)^2 |y_1|^2` (:math:`v^{xy}_0` = ``XY_VAR_FLOOR``);
    ``z`` and :math:`\omega` weak. Returns ``(mean0 (4,), cov0 (4, 4))``."""
    y1 = jnp.asarray(y1)
    a = -omega_guess * obs_interval
    xy = jnp.stack([jnp.cos(a) * y1[0] - jnp.sin(a) * y1[1], jnp.sin(a) * y1[0] + jnp.cos(a) * y1[1]])
    mean0 = jnp.concatenate([xy, jnp.array([z_mean, omega_guess], dtype=y1.dtype)])
    v_xy = sigma**2 + XY_VAR_FLOOR + (omega_std * obs_interval) ** 2 * (y1 @ y1)
    cov0 = jnp.diag(jnp.stack([v_xy, v_xy, jnp.asarray(z_std**2, y1.dtype), jnp.asarray(omega_std**2, y1.dtype)]))
    return mean0, cov0


def _augmented_setup(ys, sigma, steps_per_obs, dt, q_state, q_z, q_omega, mean0, cov0, omega_guess, params):
    ys = _check_ys(ys, sigma)
    check_positive_int(steps_per_obs, "steps_per_obs")
    model = AugmentedLangford.with_noise(q_state=q_state, q_z=q_z, q_omega=q_omega, dt=dt, **params)
    obs = LinearObservation.partial([0, 1], 4, sigma)
    if mean0 is None or cov0 is None:
        m, P = augmented_prior(ys[0], sigma, omega_guess=omega_guess, obs_interval=steps_per_obs * dt)
        mean0 = m if mean0 is None else mean0
        cov0 = P if cov0 is None else cov0
    check_shape(mean0, (4,), "mean0")
    check_covariance(cov0, 4, "cov0")
    return ys, model, obs, jnp.asarray(mean0), jnp.asarray(cov0)


def track_augmented_ekf(ys: Float[Array, "T 2"], sigma: float, *, steps_per_obs: int = 10, dt: float = 0.01,
                        q_state: float = 0.01,
                        q_z=None, q_omega: float = 0.5, mean0=None, cov0=None, omega_guess: float = OMEGA_GUESS, **params):
    r"""EKF on the augmented Langford state :math:`(x, y, z, \omega)` (joint state--parameter
    estimation) from observations ``ys`` ``(T, 2)`` of :math:`(x, y)` every ``steps_per_obs``
    RK4 steps of ``dt``. ``params`` are passed to :class:`~assimilax.models.AugmentedLangford` (physical constants).

    **Returns:** ``(TrackingEstimate, GaussianFilterResult)``. Run in float64.
    """
    from ..filters import extended_kalman_filter

    ys, model, obs, mean0, cov0 = _augmented_setup(ys, sigma, steps_per_obs, dt, q_state, q_z, q_omega,
                                                    mean0, cov0, omega_guess, params)
    res = extended_kalman_filter(model, obs, ys, mean0, cov0, steps_per_obs=steps_per_obs)
    mf, mp = res.filtered_means, res.predicted_means
    est = TrackingEstimate(jnp.arctan2(mf[:, 1], mf[:, 0]), jnp.hypot(mf[:, 0], mf[:, 1]), mf[:, 3], mp[:, :2])
    return est, res


def track_augmented_pf(ys: Float[Array, "T 2"], sigma: float, *, key: PRNGKeyArray, n_particles: int = 1000,
                       steps_per_obs: int = 10, dt: float = 0.01,
                       q_state: float = 0.02, q_z=None, q_omega: float = 0.5, mean0=None, cov0=None,
                       omega_guess: float = OMEGA_GUESS, resample_threshold: float = 0.5, jitter=0.0, **params):
    r"""Bootstrap particle filter (:func:`assimilax.filters.particle_filter`) on the augmented Langford
    model; a nonlinear reference for the EKFs. Phase and amplitude are the particle averages of
    :math:`e^{i\theta}` (circular mean) and of :math:`r`; the prediction is the forecast mean of
    :math:`(x, y)`. Needs model noise (``q_state``, ``q_omega`` > 0) for particle diversity;
    ``jitter`` :math:`h \ge 0` adds the regularisation of :func:`~assimilax.filters.particle_filter`
    (DAPPER's ``reg``) after resampling. ``q_state``, ``q_omega``, ``jitter`` and
    ``resample_threshold`` may be traced (``jax.vmap`` over a tuning grid).

    **Returns:** ``(TrackingEstimate, EnsembleFilterResult)``.
    """
    from ..filters import particle_filter

    ys, model, obs, mean0, cov0 = _augmented_setup(ys, sigma, steps_per_obs, dt, q_state, q_z, q_omega,
                                                    mean0, cov0, omega_guess, params)
    k0, k1 = jax.random.split(key)
    E0 = mean0[None, :] + jax.random.normal(k0, (n_particles, 4), dtype=mean0.dtype) @ jnp.linalg.cholesky(cov0).T
    res = particle_filter(model, obs, ys, E0, key=k1, steps_per_obs=steps_per_obs,
                          resample_threshold=resample_threshold, jitter=jitter, store_ensembles=True)
    E = res.ensembles  # (T, N, 4)
    th = jnp.arctan2(E[..., 1], E[..., 0])
    phase = jnp.arctan2(jnp.mean(jnp.sin(th), axis=1), jnp.mean(jnp.cos(th), axis=1))
    amp = jnp.mean(jnp.hypot(E[..., 0], E[..., 1]), axis=1)
    est = TrackingEstimate(phase, amp, res.analysis_mean[:, 3], res.forecast_mean[:, :2])
    return est, res


__all__ = ["PhaseAmplitudeModel", "PolarObservation", "phase_amplitude_prior", "augmented_prior",
           "track_phase_ekf", "track_augmented_ekf", "track_augmented_pf", "OMEGA_GUESS", "PHASE_VAR_FLOOR",
           "XY_VAR_FLOOR"]
