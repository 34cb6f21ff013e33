r"""The extended Kalman filter (EKF) :cite:`jazwinski1970stochastic`, with Jacobians from
:func:`jax.jacfwd`."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from .._validation import check_positive_int, raise_if_diverged
from ._core import check_gaussian_inputs, check_inflation, gaussian_update, scan_cycles, symmetrize
from ._types import GaussianFilterResult


def extended_kalman_filter(model, observation, ys: Float[Array, "T m"], mean0: Float[Array, " d"],
                           cov0: Float[Array, "d d"], *, steps_per_obs: int = 1,
                           inflation_rate=1.0) -> GaussianFilterResult:
    r"""Extended Kalman filter: linearise the model and the observation operator about the mean.

    Forecast, for each of the ``steps_per_obs`` model steps :math:`k` (time :math:`t_k`):

    .. math::
        F_k = \partial_x \mathcal M(m, t_k),\quad m \leftarrow \mathcal M(m, t_k),\quad
        P \leftarrow \lambda^{\Delta t} F_k P F_k^\top + Q,

    with :math:`Q` = ``model.noise_cov`` per model step (omitted when ``None``) and
    :math:`\lambda` = ``inflation_rate``, a covariance factor *per unit time* (DAPPER's
    ``ExtKF(infl=...)`` convention: the factor per model step is :math:`\lambda^{\Delta t}`,
    ``model.dt`` :math:`=\Delta t`; for discrete-time models :math:`\Delta t = 1`). It is not the
    ``inflation`` of the ensemble filters, which multiplies the anomalies once per cycle. Analysis with
    :math:`H = \partial_x h(m^-)` (:func:`jax.jacfwd`, or ``observation.jacobian``):

    .. math::
        S = H P^- H^\top + R,\ K = P^- H^\top S^{-1},\ m = m^- + K(y - h(m^-)),\
        P = (I - KH) P^- (I - KH)^\top + K R K^\top,

    and the linearised log-likelihood :math:`\sum_t \log\mathcal N(y_t; h(m_t^-), S_t)`. On a
    linear-Gaussian model it is exactly the Kalman filter. Use float64 (``jax_enable_x64``).

    **Arguments:** ``model`` (any :class:`~assimilax.models.DynamicalModel`), ``observation``
    (``state_dim == model.dim``), ``ys`` ``(T, m)``, ``mean0`` ``(d,)``, ``cov0`` ``(d, d)``
    positive definite (prior on :math:`x_0`), ``steps_per_obs`` model steps per cycle,
    ``inflation_rate`` :math:`\lambda > 0` (covariance factor per unit time).

    **Returns:** :class:`~assimilax.filters.GaussianFilterResult`. Raises ``ValueError`` on bad
    input and :class:`~assimilax.FilterDivergenceError` when the filtered means are not finite.
    """
    check_gaussian_inputs(model, observation, ys, mean0, cov0)
    check_positive_int(steps_per_obs, "steps_per_obs")
    check_inflation(inflation_rate, "inflation_rate")
    mean0 = jnp.asarray(mean0)
    res = _ekf(model, observation, jnp.asarray(ys), mean0, jnp.asarray(cov0),
               jnp.asarray(inflation_rate, dtype=mean0.dtype), steps_per_obs=steps_per_obs)
    raise_if_diverged(res.filtered_means, "extended_kalman_filter")
    return res


@functools.partial(jax.jit, static_argnames=("steps_per_obs",))
def _ekf(model, observation, ys, mean0, cov0, inflation_rate, *, steps_per_obs):
    step_infl = inflation_rate ** model.dt
    Q = model.noise_cov
    R = observation.R

    def model_step(i, carry):
        m, P, t0 = carry
        t = t0 + i * model.dt
        F = model.jacobian(m, t)
        m = model.step(m, t)
        P = step_infl * (F @ P @ F.T)
        if Q is not None:
            P = P + Q
        return m, symmetrize(P), t0

    def cycle(carry, inp):
        m, P, ll = carry
        m_pred, P_pred, _ = jax.lax.fori_loop(0, steps_per_obs, model_step, (m, P, inp.t0))
        H = observation.jacobian(m_pred)
        m_f, P_f, ll_t = gaussian_update(m_pred, P_pred, inp.y, observation(m_pred), H, R)
        return (m_f, P_f, ll + ll_t), (m_f, P_f, m_pred, P_pred)

    ll0 = jnp.zeros((), dtype=mean0.dtype)
    (_, _, ll), (mf, Pf, mp, Pp) = scan_cycles(cycle, (mean0, cov0, ll0), ys, steps_per_obs=steps_per_obs,
                                               dt=model.dt)
    return GaussianFilterResult(mf, Pf, mp, Pp, ll)


__all__ = ["extended_kalman_filter"]
