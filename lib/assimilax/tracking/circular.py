r"""Circular statistics for phases :cite:`fisher1993statistical,mardia2000directional`.

Phase errors are compared on the circle: the difference of two angles is wrapped to
:math:`(-\pi, \pi]` before squaring, so that an estimate of :math:`\pi - 0.01` for a truth of
:math:`-\pi + 0.01` counts as an error of 0.02, not :math:`2\pi - 0.02`.
"""
from __future__ import annotations

import jax.numpy as jnp

from ..metrics import wrap_angle


def circular_error(estimate, truth):
    r"""Signed phase error :math:`\mathrm{wrap}(\hat\theta - \theta) \in (-\pi, \pi]` (any shape)."""
    estimate, truth = jnp.asarray(estimate), jnp.asarray(truth)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate and truth must have the same shape, got {estimate.shape} and {truth.shape}")
    return wrap_angle(estimate - truth)


def circular_rmse(estimate, truth, axis=-1):
    r"""Root-mean-square wrapped phase error :math:`\sqrt{\overline{\mathrm{wrap}(\hat\theta-\theta)^2}}`
    over ``axis`` (default the last, e.g. time: ``(T,), (T,) -> ()``; ``(S, T) -> (S,)``)."""
    return jnp.sqrt(jnp.mean(circular_error(estimate, truth) ** 2, axis=axis))


def circular_mean(angles, axis=-1, weights=None):
    r"""Circular mean :math:`\arg \sum_j w_j e^{i\theta_j}` along ``axis``."""
    angles = jnp.asarray(angles)
    w = jnp.ones_like(angles) if weights is None else jnp.asarray(weights)
    return jnp.arctan2(jnp.sum(w * jnp.sin(angles), axis=axis), jnp.sum(w * jnp.cos(angles), axis=axis))


def circular_interval_contains(samples, truth, level: float = 0.9):
    r"""Whether ``truth`` lies in the central ``level`` interval of phase ``samples`` ``(S,)``.

    The samples are centred on their circular mean, wrapped to :math:`(-\pi,\pi]`, and the
    equal-tailed interval of the centred values is used (appropriate for unimodal posteriors
    narrower than the circle)."""
    samples = jnp.asarray(samples)
    mu = circular_mean(samples)
    d = wrap_angle(samples - mu)
    lo, hi = jnp.quantile(d, jnp.array([(1 - level) / 2, (1 + level) / 2]))
    dt = wrap_angle(jnp.asarray(truth) - mu)
    return (dt >= lo) & (dt <= hi)


__all__ = ["wrap_angle", "circular_error", "circular_rmse", "circular_mean", "circular_interval_contains"]
