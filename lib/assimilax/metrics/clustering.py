r"""Agreement between two labellings of the same items (e.g. an MoE's routes and the regime
index of a switching system): normalised mutual information and the adjusted Rand index.

Both act on integer labels in ``[0, n_classes)`` through the contingency table
:math:`n_{ij} = \#\{t : a_t = i, b_t = j\}`; they are invariant to permuting either set of labels,
jit, and vmap over seeds. References: :cite:`strehl2002cluster` (NMI),
:cite:`hubert1985comparing` (ARI), :cite:`vinh2010information` (the normalisations compared).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int


def _labels(a, b, n_a, n_b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"labels must be two 1-D arrays of the same length, got {a.shape} and {b.shape}")
    if a.shape[0] < 1:
        raise ValueError("labels must not be empty")
    if not (jnp.issubdtype(a.dtype, jnp.integer) and jnp.issubdtype(b.dtype, jnp.integer)):
        raise ValueError(f"labels must be integer arrays, got {a.dtype} and {b.dtype}")
    for n, name in ((n_a, "n_classes_a"), (n_b, "n_classes_b")):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return a, b


def contingency_table(a: Int[Array, " n"], b: Int[Array, " n"], n_classes_a: int, n_classes_b: int):
    r"""Counts :math:`n_{ij}` of items labelled ``i`` by ``a`` and ``j`` by ``b``,
    shape ``(n_classes_a, n_classes_b)`` (labels outside the range are not counted)."""
    a, b = _labels(a, b, n_classes_a, n_classes_b)
    return jax.nn.one_hot(a, n_classes_a).T @ jax.nn.one_hot(b, n_classes_b)


def _xlogx(p):
    return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)


def normalized_mutual_information(a: Int[Array, " n"], b: Int[Array, " n"], n_classes_a: int, n_classes_b: int):
    r"""Normalised mutual information with the arithmetic-mean normalisation
    :cite:`strehl2002cluster,vinh2010information`,

    .. math::
        \mathrm{NMI}(a, b) = \frac{I(a; b)}{\tfrac12 (H(a) + H(b))},\qquad
        I = \sum_{ij} p_{ij} \log\frac{p_{ij}}{p_{i\cdot} p_{\cdot j}},\quad p_{ij} = n_{ij}/n ,

    in :math:`[0, 1]`: 1 when one labelling is a relabelling of the other, 0 when they are
    independent. When both labellings are constant (:math:`H(a) = H(b) = 0`) it is 1.
    **Arguments:** two ``(n,)`` integer label arrays and the numbers of classes (static).
    **Returns:** a scalar.
    """
    c = contingency_table(a, b, n_classes_a, n_classes_b)
    p = c / jnp.sum(c)
    pa, pb = jnp.sum(p, axis=1), jnp.sum(p, axis=0)
    ha, hb = -jnp.sum(_xlogx(pa)), -jnp.sum(_xlogx(pb))
    mi = jnp.sum(_xlogx(p)) + ha + hb
    denom = 0.5 * (ha + hb)
    return jnp.where(denom > 0, jnp.clip(mi, 0.0, None) / jnp.where(denom > 0, denom, 1.0), 1.0)


def adjusted_rand_index(a: Int[Array, " n"], b: Int[Array, " n"], n_classes_a: int, n_classes_b: int):
    r"""Adjusted Rand index :cite:`hubert1985comparing`: the Rand index corrected for chance,

    .. math::
        \mathrm{ARI} = \frac{\sum_{ij}\binom{n_{ij}}{2} - S_a S_b / \binom n2}
        {\tfrac12 (S_a + S_b) - S_a S_b / \binom n2},\qquad
        S_a = \sum_i \binom{n_{i\cdot}}{2},\ S_b = \sum_j \binom{n_{\cdot j}}{2},

    1 for identical partitions, 0 in expectation for independent random ones (it can be
    negative). When the denominator vanishes (both partitions trivial in the same way) it is 1.
    **Arguments:** two ``(n,)`` integer label arrays and the numbers of classes (static).
    **Returns:** a scalar.
    """
    c = contingency_table(a, b, n_classes_a, n_classes_b)
    n = jnp.sum(c)
    comb2 = lambda x: x * (x - 1.0) / 2.0  # noqa: E731
    sij = jnp.sum(comb2(c))
    sa, sb = jnp.sum(comb2(jnp.sum(c, axis=1))), jnp.sum(comb2(jnp.sum(c, axis=0)))
    expected = sa * sb / jnp.maximum(comb2(n), 1.0)
    denom = 0.5 * (sa + sb) - expected
    return jnp.where(jnp.abs(denom) > 0, (sij - expected) / jnp.where(jnp.abs(denom) > 0, denom, 1.0), 1.0)


__all__ = ["contingency_table", "normalized_mutual_information", "adjusted_rand_index"]
