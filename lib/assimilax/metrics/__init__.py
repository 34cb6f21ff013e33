r"""Verification metrics for point estimates and ensembles.

Time-major conventions: a point estimate is ``(T, d)``, an ensemble ``(T, N, d)``, the truth
``(T, d)``. Functions that reduce over components return one value per time step.
References: CRPS :cite:`gneiting2007strictly`, rank histograms :cite:`hamill2001interpretation`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _pair(estimate, truth):
    estimate, truth = jnp.asarray(estimate), jnp.asarray(truth)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate and truth must have the same shape, got {estimate.shape} and {truth.shape}")
    return estimate, truth


def rmse(estimate, truth):
    r"""Root-mean-square error over the last axis: :math:`\sqrt{\tfrac1d \sum_i (\hat x_i - x_i)^2}`.

    ``(T, d), (T, d) -> (T,)`` (or ``(d,), (d,) -> ()``).
    """
    estimate, truth = _pair(estimate, truth)
    return jnp.sqrt(jnp.mean((estimate - truth) ** 2, axis=-1))


def spread(ensembles):
    r"""Ensemble spread :math:`\sqrt{\tfrac1d \sum_i \widehat{\mathrm{Var}}(x_i)}` with the unbiased
    (``N-1``) variance. ``(T, N, d) -> (T,)``."""
    ens = jnp.asarray(ensembles)
    if ens.ndim < 2 or ens.shape[-2] < 2:
        raise ValueError(f"ensembles must have shape (..., N, d) with N >= 2, got {ens.shape}")
    return jnp.sqrt(jnp.mean(jnp.var(ens, axis=-2, ddof=1), axis=-1))


def _ens_truth(ensembles, truth):
    ens, truth = jnp.asarray(ensembles), jnp.asarray(truth)
    if ens.ndim != truth.ndim + 1 or ens.shape[:-2] != truth.shape[:-1] or ens.shape[-1] != truth.shape[-1]:
        raise ValueError(f"ensembles must have shape (..., N, d) matching truth (..., d); got {ens.shape} and {truth.shape}")
    return ens, truth


def crps_ensemble(ensembles, truth):
    r"""Continuous ranked probability score of an ensemble, averaged over components.

    Uses the energy form with the unbiased ("fair") second term,

    .. math:: \mathrm{CRPS} = \frac1N \sum_n |x_n - y| - \frac{1}{2N(N-1)} \sum_{n,m} |x_n - x_m| ,

    which equals the CRPS of the ensemble's empirical distribution up to the finite-N correction
    :cite:`gneiting2007strictly`. ``(T, N, d), (T, d) -> (T,)``. Lower is better; for a point
    ensemble it reduces to the mean absolute error.
    """
    ens, truth = _ens_truth(ensembles, truth)
    n = ens.shape[-2]
    term1 = jnp.mean(jnp.abs(ens - truth[..., None, :]), axis=-2)
    pair = jnp.abs(ens[..., :, None, :] - ens[..., None, :, :])
    term2 = jnp.sum(pair, axis=(-3, -2)) / (2.0 * n * max(n - 1, 1))
    return jnp.mean(term1 - term2, axis=-1)


def rank_histogram(ensembles, truth):
    r"""Counts of the rank of the truth among the ``N`` members, pooled over time and components.

    Returns an integer array of length ``N + 1``; a calibrated ensemble gives a flat histogram
    :cite:`hamill2001interpretation`. Ties are broken at random-free "count strictly below".
    """
    ens, truth = _ens_truth(ensembles, truth)
    n = ens.shape[-2]
    ranks = jnp.sum(ens < truth[..., None, :], axis=-2).reshape(-1)
    return jnp.bincount(ranks, length=n + 1)


def interval_coverage(ensembles, truth, level: float = 0.9):
    r"""Fraction of (time, component) pairs whose truth lies in the central ``level`` interval of
    the ensemble (empirical quantiles). ``(T, N, d), (T, d) -> ()``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ens, truth = _ens_truth(ensembles, truth)
    lo = jnp.quantile(ens, (1 - level) / 2, axis=-2)
    hi = jnp.quantile(ens, 1 - (1 - level) / 2, axis=-2)
    return jnp.mean((truth >= lo) & (truth <= hi))


def gaussian_interval_coverage(means, variances, truth, level: float = 0.9):
    r"""Coverage of central Gaussian intervals :math:`\mu \pm z_{(1+\ell)/2} \sigma`."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means, truth = _pair(means, truth)
    z = jax.scipy.special.ndtri(0.5 + level / 2)
    return jnp.mean(jnp.abs(truth - means) <= z * jnp.sqrt(jnp.asarray(variances)))


def wrap_angle(theta):
    r"""Wrap angles to :math:`(-\pi, \pi]`."""
    theta = jnp.asarray(theta)
    wrapped = jnp.mod(theta + jnp.pi, 2 * jnp.pi) - jnp.pi
    return jnp.where(wrapped == -jnp.pi, jnp.pi, wrapped)


__all__ = ["rmse", "spread", "crps_ensemble", "rank_histogram", "interval_coverage",
           "gaussian_interval_coverage", "wrap_angle"]

# Intervals, paired comparisons and computed verdicts (issue 19); energy spectra (issue 15).
from .stats import (MeanInterval, PairedComparison, TwoSampleComparison, Verdict, compare,  # noqa: E402
                    format_interval, gaussian_w2, interval_position, largest_with_verdict, loglog_slope, mean_interval,
                    offset_power_law_fit, paired_comparison, PowerLawFit, verdicts_by_setting, welch_comparison)

__all__ += ["MeanInterval", "PairedComparison", "TwoSampleComparison", "Verdict", "compare", "format_interval", "gaussian_w2",
            "interval_position", "largest_with_verdict", "loglog_slope", "mean_interval", "offset_power_law_fit",
            "paired_comparison", "PowerLawFit", "verdicts_by_setting", "welch_comparison"]
from .spectra import (BandError, band_error, energy_spectrum_1d, energy_spectrum_2d, enstrophy,  # noqa: E402
                      enstrophy_spectrum_2d, kinetic_energy_2d, spectral_slope, structure_function)

__all__ += ["BandError", "band_error", "energy_spectrum_1d", "energy_spectrum_2d", "enstrophy", "enstrophy_spectrum_2d",
            "kinetic_energy_2d", "spectral_slope", "structure_function"]
# Agreement of two labellings (routes and regimes, issue 18).
from .clustering import adjusted_rand_index, contingency_table, normalized_mutual_information  # noqa: E402

__all__ += ["adjusted_rand_index", "contingency_table", "normalized_mutual_information"]

from .runs import compare_runs, describe_runs, ensemble_scores, failed_runs, timed_call  # noqa: E402

__all__ += ["compare_runs", "describe_runs", "ensemble_scores", "failed_runs", "timed_call"]
