r"""Ensemble statistics over the member axis, shared by the filters.

The mean over the leading (member) axis of an ``(N, d)`` ensemble is written as the contraction
:math:`\bar x = \tfrac1N \mathbf 1^\top E` rather than ``jnp.mean(E, axis=0)``. Both give the same
float32 sums up to rounding, but XLA's CPU backend (jaxlib 0.10) lowers a reduction over the
major axis of a large array to a slow loop: for ``N = 20`` and ``d = 10^5`` it took tens of
milliseconds where the contraction (one matrix-vector product) takes well under one
(``benchmarks/member_mean.py`` measures both). A filter that reports the mean and spread of the
forecast and analysis ensembles every cycle paid that several times per cycle. The contraction
uses ``precision="highest"`` so that GPUs do not round it to TF32. Below :math:`2^{17}` elements
``jnp.mean`` is kept: there the contraction's call overhead is larger than the reduction, and
inside a jitted loop the reduction fuses with the operations around it.
"""
from __future__ import annotations

import jax.numpy as jnp

_CONTRACT_FROM = 2**17  # elements; below this ``jnp.mean`` is as fast or faster (benchmarks/member_mean.py)


def member_mean(E, keepdims: bool = False):
    r"""Mean over the leading (member) axis, :math:`\bar x = \tfrac1N\sum_{j=1}^N E_j`.

    **Arguments:** ``E`` ``(N, ...)``, ``N >= 1``. **Returns:** ``E.shape[1:]`` (``(1, ...)`` with
    ``keepdims``)."""
    E = jnp.asarray(E)
    if E.ndim < 1 or E.shape[0] < 1:
        raise ValueError(f"member_mean needs an ensemble (N, ...) with N >= 1, got shape {E.shape}")
    if E.size < _CONTRACT_FROM:  # small: XLA fuses the reduction with its neighbours
        return jnp.mean(E, axis=0, keepdims=keepdims)
    w = jnp.full((E.shape[0],), 1.0 / E.shape[0], dtype=E.dtype)
    m = jnp.tensordot(w, E, axes=1, precision="highest")
    return m[None] if keepdims else m


def mean_and_spread(E):
    r"""The ensemble mean :math:`\bar x` (:func:`member_mean`) and the spread
    :math:`\sqrt{\tfrac1d\sum_i \tfrac1{N-1}\sum_j (E_{ji} - \bar x_i)^2}` (unbiased variance,
    averaged over the ``d`` components before the square root; 0 for a single member).

    **Arguments:** ``E`` ``(N, d)``. **Returns:** ``((d,), ())``."""
    E = jnp.asarray(E)
    if E.ndim != 2:
        raise ValueError(f"mean_and_spread needs an ensemble of shape (N, d), got {E.shape}")
    N, d = E.shape
    m = member_mean(E)
    if N < 2:
        return m, jnp.zeros((), E.dtype)
    c = E - m[None]
    return m, jnp.sqrt(jnp.sum(c * c) / (d * (N - 1)))


__all__ = ["member_mean", "mean_and_spread"]
