r"""The iterative ensemble Kalman smoother (iEnKS), square-root ("Sqrt") variant, with a data
assimilation window of ``lag`` cycles :cite:`bocquet2014iterative,sakov2012iterative`.

The EnKF's analysis is linear in the forecast and the observation; the iEnKS keeps that
Gaussian, ensemble-space update but *iterates* it through the nonlinear model: it minimises, by
Gauss--Newton in the ensemble coordinates :math:`w \in \mathbb R^N`, the cost of the state at the
*start* of the window,

.. math::
    \mathcal J(w) = \tfrac12 (N-1)\, \lVert w \rVert^2
    + \tfrac12 \big\lVert R^{-1/2}\big(y - h(\mathcal M_{L}(\bar x_0 + X_0^\top w))\big)\big\rVert^2 ,

with :math:`\bar x_0` and :math:`X_0` (``(N, d)``, rows the anomalies) the mean and anomalies of
the ensemble at the window's start, :math:`\mathcal M_L` the model over the :math:`L` = ``lag``
cycles of the window (:math:`L = 0`: no model in the loop) and :math:`y` the newest
observation, at the window's end. The sensitivities :math:`h \circ \mathcal M_L` are estimated
from the ensemble ("transform" form, no tangent linear model): at iterate :math:`(w, T)` the
ensemble :math:`E = \mathbf 1 \bar x_0^\top + (\mathbf 1 w^\top + T) X_0` is forecast over the
window and observed, and with :math:`Y` its observed anomalies and :math:`\bar y` their mean,

.. math::
    V = T^{-1} Y R^{-1/2},\quad
    \mathcal H = V V^\top + (N-1) I = U \Lambda U^\top,\quad
    g = V R^{-\top/2}(y - \bar y) - (N-1)\, w

(:math:`\mathcal H` the Gauss--Newton Hessian of :math:`\mathcal J`, :math:`g` minus its
gradient), and the Gauss--Newton step and the new transform are

.. math::
    w \leftarrow w + \mathcal H^{-1} g,\qquad
    T = \sqrt{N-1}\; U \Lambda^{-1/2} U^\top,\qquad T^{-1} = U \Lambda^{1/2} U^\top / \sqrt{N-1}.

After ``n_iterations`` steps (or when :math:`\lVert \Delta w\rVert^2 <` ``tolerance`` :math:`N`)
the smoothed ensemble at the window's start is
:math:`E^s = \mathbf 1 \bar x_0^\top + (\mathbf 1 w^\top + T) X_0`. Its anomalies are multiplied
by ``inflation`` and, with ``rotate=True``, by a random mean-preserving rotation
(:func:`~assimilax.filters.rotations.mean_preserving_rotations`); then the window slides by one
cycle (the ensemble is forecast one cycle). This is the loop of DAPPER's
``iEnKS('Sqrt', N, Lag, nIter, infl, rot)`` (its defaults ``Lag=1``, ``nIter=10``) without the
bundle or MDA options :cite:`raanes2024dapper`.

With one iteration and ``lag=0``, the first Gauss--Newton step from :math:`w = 0, T = I` is
the ETKF's analysis exactly (:math:`\mathcal H` is the ETKF's :math:`C`); on a linear model and a
linear observation the cost is quadratic, so more iterations do not move it, and with ``lag=1``
the smoothed ensemble forecast to the observation time is again the ETKF analysis.

*Reported analysis.* The estimate at the time of ``ys[k]`` is the smoothed ensemble :math:`E^s`
of the window ending there (before inflation and rotation) forecast to the end of the window:
the state given :math:`y_{1:k}` (the iEnKF's analysis for ``lag=1``). For ``lag=0`` it is
:math:`E^s` itself. ``forecast_mean``/``forecast_spread`` are those of the first iterate's forecast
(the plain ensemble forecast of the previous cycle's inflated, rotated ensemble).

Deterministic models only (``model.noise_cov`` must be ``None``), as DAPPER's iEnKS.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._ensemble import mean_and_spread, member_mean
from .._validation import (
    check_ensemble,
    check_observations,
    check_positive_int,
    is_concrete,
    raise_if_diverged,
)
from ._core import check_model_observation, forecast_ensemble
from ._types import EnsembleFilterResult
from .rotations import mean_preserving_rotations


def iterative_ensemble_kalman_smoother(
    model,
    observation,
    ys: Float[Array, "T m"],
    ensemble0: Float[Array, "N d"],
    *,
    key: PRNGKeyArray,
    steps_per_obs: int = 1,
    lag: int = 1,
    n_iterations: int = 10,
    tolerance: float = 0.0,
    inflation=1.0,
    rotate: bool = False,
    store_ensembles: bool = True,
) -> EnsembleFilterResult:
    r"""Iterative ensemble Kalman smoother (iEnKS, "Sqrt" variant) :cite:`bocquet2014iterative`.

    See the module docstring for the Gauss--Newton iteration in ensemble space. Cycle :math:`k`
    assimilates ``ys[k]`` (the time :math:`(k+1)` ``steps_per_obs`` :math:`\Delta t`) with the
    ensemble at the start of its window, :math:`\max(0, k + 1 - L)` cycles in, and
    :math:`\min(k+1, L)` cycles of model in each iteration.

    **Arguments:**

    - ``model``: a deterministic :class:`~assimilax.models.DynamicalModel`
      (``noise_cov is None``); ``observation``: an operator with ``state_dim == model.dim``
      (nonlinear operators are applied per member).
    - ``ys`` ``(T, m)``; ``ensemble0`` ``(N, d)``, ``N >= 2``: sample of the prior at time 0.
    - ``key``: PRNG key (the rotations).
    - ``steps_per_obs``: model steps per cycle; ``lag`` :math:`L \ge 0`: cycles in the window
      (DAPPER's ``Lag``); ``n_iterations`` :math:`\ge 1` (``nIter``); ``tolerance``: stop when
      :math:`\lVert\Delta w\rVert^2 <` ``tolerance`` :math:`\cdot N` (``wtol``; 0 runs every
      iteration); ``inflation`` :math:`\lambda > 0` on the smoothed anomalies (``infl``);
      ``rotate`` (``rot``); ``store_ensembles``: keep the ``(T, N, d)`` analysis ensembles.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` (``ess`` and
    ``log_likelihood`` are ``None``).

    Jit- and vmap-able; ``ValueError`` on bad input before compilation,
    :class:`~assimilax.FilterDivergenceError` when the analysis mean is not finite.
    """
    check_model_observation(model, observation)
    check_ensemble(ensemble0, model.dim, "ensemble0")
    check_observations(ys, observation.obs_dim, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    check_positive_int(n_iterations, "n_iterations")
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 0:
        raise ValueError(f"lag must be a non-negative integer (cycles in the window), got {lag!r}")
    if getattr(model, "noise_cov", None) is not None:
        raise ValueError("iterative_ensemble_kalman_smoother needs a deterministic model "
                         "(model.noise_cov is None); this model has model noise")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if is_concrete(inflation):
        infl = np.asarray(inflation)
        if infl.shape != () or not np.isfinite(infl) or infl <= 0:
            raise ValueError(f"inflation must be a positive finite scalar, got {inflation!r}")
    res = _ienks(model, observation, jnp.asarray(ys), jnp.asarray(ensemble0), key,
                 jnp.asarray(inflation, dtype=jnp.result_type(float)),
                 jnp.asarray(tolerance, dtype=jnp.result_type(float)),
                 steps_per_obs=int(steps_per_obs), lag=int(lag), n_iterations=int(n_iterations),
                 rotate=bool(rotate), store_ensembles=bool(store_ensembles))
    raise_if_diverged(res.analysis_mean, "iterative_ensemble_kalman_smoother")
    return res


def _whitener(observation, dtype):
    """``Z (..., m) -> Z R^{-T/2}`` with the Cholesky factor of ``R``."""
    R = jnp.asarray(observation.R).astype(dtype)
    L_R = jnp.linalg.cholesky(R)
    L_inv = jax.scipy.linalg.solve_triangular(L_R, jnp.eye(R.shape[0], dtype=dtype), lower=True)
    return lambda Z: Z @ L_inv.T


@functools.partial(jax.jit, static_argnames=("steps_per_obs", "lag", "n_iterations", "rotate",
                                             "store_ensembles"))
def _ienks(model, observation, ys, E0, key, inflation, tolerance, *, steps_per_obs, lag, n_iterations,
           rotate, store_ensembles):
    dtype = E0.dtype
    N, d = E0.shape
    T_obs = ys.shape[0]
    ys = ys.astype(dtype)
    inflation = inflation.astype(dtype)
    whiten = _whitener(observation, dtype)
    h = jax.vmap(observation)
    n1 = jnp.asarray(N - 1, dtype)
    eye = jnp.eye(N, dtype=dtype)
    cycle_time = steps_per_obs * model.dt

    def forecast(E, j0, n_cycles):
        """``E`` at obs-time index ``j0`` forecast ``n_cycles`` cycles (a traced count)."""
        def body(c, E):
            return forecast_ensemble(model, E, (j0 + c) * cycle_time, None, steps_per_obs)
        return jax.lax.fori_loop(0, n_cycles, body, E)

    def update(E, y, j0, n_cycles):
        """Gauss--Newton iterations of the window from ``j0`` over ``n_cycles`` cycles."""
        x0 = member_mean(E, keepdims=True)
        X0 = E - x0

        def iterate(state):
            i, w, T, Tinv, _, f_stats = state
            Ei = forecast(x0 + (w[None, :] + T) @ X0, j0, n_cycles)
            f_stats = jax.tree.map(lambda new, old: jnp.where(i == 0, new, old),
                                   mean_and_spread(Ei), f_stats)
            Eo = h(Ei)
            yo = member_mean(Eo, keepdims=True)
            V = whiten(Tinv @ (Eo - yo))  # (N, m), de-conditioned on T
            dy = whiten(y - yo[0])
            lam, U = jnp.linalg.eigh(V @ V.T + n1 * eye)
            grad = V @ dy - n1 * w
            dw = (U / lam[None, :]) @ (U.T @ grad)
            T = (U * (jnp.sqrt(n1) / jnp.sqrt(lam))[None, :]) @ U.T
            Tinv = (U * (jnp.sqrt(lam) / jnp.sqrt(n1))[None, :]) @ U.T
            return i + 1, w + dw, T, Tinv, dw @ dw, f_stats

        def keep_going(state):
            i, *_, dw2, _ = state
            return (i < n_iterations) & ((i == 0) | (dw2 >= tolerance * N))

        zero_stats = (jnp.zeros((d,), dtype), jnp.zeros((), dtype))
        state0 = (jnp.asarray(0), jnp.zeros((N,), dtype), eye, eye, jnp.asarray(jnp.inf, dtype), zero_stats)
        _, w, T, _, _, f_stats = jax.lax.while_loop(keep_going, iterate, state0)
        return x0 + (w[None, :] + T) @ X0, f_stats

    if lag == 0:  # the window has no model in it: start at the first observation time
        E0 = forecast(E0, 0, 1)

    def cycle(E, inp):
        k, y, rot = inp
        j0 = jnp.maximum(0, k + 1 - lag)  # obs-time index of the window's start
        n_cycles = jnp.minimum(k + 1, lag)
        Es, f_stats = update(E, y, j0, n_cycles)
        Ea = forecast(Es, j0, n_cycles)  # the analysis at the time of ys[k]
        mu = member_mean(Es, keepdims=True)
        Ep = mu + inflation * (Es - mu)
        if rotate:
            Ep = mu + rot @ (Ep - mu)
        # slide the window by one cycle once it has its full length (always, for lag 0)
        slide = (k + 1 - lag) >= 0
        E_next = forecast(Ep, j0, jnp.where(slide, 1, 0))
        out = mean_and_spread(Ea) + f_stats + ((Ea,) if store_ensembles else (None,))
        return E_next, out

    rots = mean_preserving_rotations(key, T_obs, N, dtype) if rotate else jnp.zeros((T_obs, 0, 0), dtype)
    _, (ma, sa, mf, sf, ens) = jax.lax.scan(cycle, E0, (jnp.arange(T_obs), ys, rots))
    return EnsembleFilterResult(ma, sa, mf, sf, ens)


__all__ = ["iterative_ensemble_kalman_smoother"]
