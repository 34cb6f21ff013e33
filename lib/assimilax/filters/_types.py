"""Result types shared by every filter (classical, ensemble, particle, score-based, learned).

Time convention for all filters: the prior (mean/covariance or ensemble) describes the state
``x_0`` at time 0; for ``t = 1..T`` the filter forecasts through ``steps_per_obs`` model steps
and then assimilates ``ys[t-1]``. Row ``t-1`` of every time-major output refers to time ``t``,
aligned with ``Simulation.states`` and ``Simulation.observations``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax


class GaussianFilterResult(NamedTuple):
    """Output of Gaussian filters (KF, EKF).

    ``filtered_means`` ``(T, d)``, ``filtered_covs`` ``(T, d, d)``: moments of
    :math:`p(x_t \\mid y_{1:t})`; ``predicted_means``/``predicted_covs``: moments of
    :math:`p(x_t \\mid y_{1:t-1})`; ``log_likelihood``: :math:`\\log p(y_{1:T})` (exact for the KF,
    the linearised approximation for the EKF).
    """

    filtered_means: jax.Array
    filtered_covs: jax.Array
    predicted_means: jax.Array
    predicted_covs: jax.Array
    log_likelihood: jax.Array


class SmootherResult(NamedTuple):
    """``smoothed_means`` ``(T, d)`` and ``smoothed_covs`` ``(T, d, d)`` of :math:`p(x_t \\mid y_{1:T})`."""

    smoothed_means: jax.Array
    smoothed_covs: jax.Array


class EnsembleFilterResult(NamedTuple):
    r"""Output of ensemble and particle filters (EnKF, ETKF, LETKF, PF, EnSF, SF, learned).

    ``analysis_mean``/``forecast_mean`` ``(T, d)`` (weighted mean for particle filters);
    ``analysis_spread``/``forecast_spread`` ``(T,)``: square root of the unbiased ensemble
    variance (the :math:`N-1` variance; for weighted particles the weighted variance divided by
    :math:`1 - \sum_j w_j^2`, equal to it for equal weights) averaged over components;
    ``ensembles`` ``(T, N, d)`` analysis ensembles (equally weighted;
    ``None`` when ``store_ensembles=False``); ``ess`` ``(T,)`` effective sample size before
    resampling (particle filters; ``None`` otherwise); ``log_likelihood`` estimate of
    :math:`\log p(y_{1:T})` where the method provides one (else ``None``).
    """

    analysis_mean: jax.Array
    analysis_spread: jax.Array
    forecast_mean: jax.Array
    forecast_spread: jax.Array
    ensembles: Optional[jax.Array] = None
    ess: Optional[jax.Array] = None
    log_likelihood: Optional[jax.Array] = None


# Built from EnsembleFilterResult's field list, so that the two cannot drift apart.
ScoreFilterResult = NamedTuple("ScoreFilterResult", [*EnsembleFilterResult.__annotations__.items(), ("network", Any)])
ScoreFilterResult._field_defaults = {**EnsembleFilterResult._field_defaults, "network": None}
ScoreFilterResult.__new__.__defaults__ = tuple(ScoreFilterResult._field_defaults.values())
ScoreFilterResult.__doc__ = (
    "Output of :func:`~assimilax.filters.score_filter`: the fields of :class:`EnsembleFilterResult` "
    "(same meanings, same time convention) and ``network``, the trained score model of the last cycle "
    "(a :class:`~assimilax.filters.PreconditionedScore`; its ``.net`` is the learned correction).")
