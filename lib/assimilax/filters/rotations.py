r"""Haar-random orthogonal matrices, and the mean-preserving rotations of the ensemble square-root
filters, drawn from products of Householder reflections with Gaussian vectors
:cite:`stewart1980efficient` instead of a QR factorisation of a Gaussian matrix.

*Haar on* :math:`O(n)` (:func:`haar_orthogonal`). For :math:`k = 1, \dots, n-1` draw
independent :math:`x_k \sim \mathcal N(0, I_{n-k+1})`, let :math:`s_k = \operatorname{sign}(x_{k,1})`
(:math:`+1` at zero), :math:`\tilde H_k` the Householder reflection of
:math:`\mathbb R^{n-k+1}` with :math:`\tilde H_k x_k = -s_k \lVert x_k\rVert e_1`,
:math:`H_k = \operatorname{diag}(I_{k-1}, \tilde H_k)`, and draw one more sign
:math:`s_n = \operatorname{sign}(z)`, :math:`z \sim \mathcal N(0, 1)`. Then

.. math::
    O = H_1 H_2 \cdots H_{n-1} \operatorname{diag}(-s_1, \dots, -s_{n-1}, s_n)

is Haar-distributed on :math:`O(n)`. These are the reflectors and signs that a Householder QR of
an :math:`n \times n` Gaussian matrix produces (its :math:`k`-th transformed column is again
standard Gaussian, independent of the previous reflectors: Stewart's observation), with the
column signs fixed so that :math:`R` has a positive diagonal :cite:`mezzadri2007generate`; but
only :math:`n(n+1)/2` normal numbers are drawn and no factorisation is computed.

*Why this is Haar* (by induction on :math:`n`; :math:`O(1) = \{\pm 1\}`
and :math:`s_n` is a fair sign). Write :math:`O = \tilde H_1 \operatorname{diag}(-s_1, O')`
with :math:`O'` the same construction on :math:`\mathbb R^{n-1}`, Haar by hypothesis and
independent of :math:`x_1`. (i) The first column is
:math:`O e_1 = -s_1 \tilde H_1 e_1 = x_1 / \lVert x_1 \rVert` (a reflection is an involution),
uniform on the sphere :math:`S^{n-1}`. (ii) The law of :math:`O` is invariant under
:math:`O \mapsto O \operatorname{diag}(1, K)` for every :math:`K \in O(n-1)`, because
:math:`O' K` has the law of :math:`O'` and is independent of :math:`x_1`. A probability on
:math:`O(n)` that is right-invariant under the stabiliser :math:`\operatorname{diag}(1, O(n-1))`
of :math:`e_1` is fixed by the law of the first column (the image on
:math:`O(n)/O(n-1) = S^{n-1}`); for any :math:`W \in O(n)` the law of :math:`WO` has the
same right-invariance and the first column :math:`W x_1/\lVert x_1\rVert`, again uniform, so
:math:`WO \overset{d}{=} O`: the law is left-invariant, i.e. Haar.

*Mean-preserving rotations* (:func:`mean_preserving_rotations`). With
:math:`u = \mathbf 1/\sqrt N` and :math:`Q_0 = I - 2 q q^\top`,
:math:`q = (e_1 - u)/\lVert e_1 - u\rVert` (the reflection exchanging :math:`e_1` and :math:`u`),

.. math::
    \Omega = Q_0 \operatorname{diag}(1, O)\, Q_0, \qquad O \sim \mathrm{Haar}(O(N-1)).

:math:`O \mapsto Q_0 \operatorname{diag}(1, O) Q_0` is a group isomorphism from :math:`O(N-1)`
onto :math:`G = \{\Omega \in O(N) : \Omega \mathbf 1 = \mathbf 1\}` (an orthogonal matrix
fixing :math:`e_1` is :math:`\operatorname{diag}(1, O)`), so it carries Haar measure to the Haar
measure of :math:`G`, which is unique: :math:`\Omega` has the law of DAPPER's ``genOG_1``
(:math:`V \operatorname{diag}(1, O) V^\top`, :math:`V` a basis whose first column is
:math:`u`) :cite:`raanes2024dapper,sakov2008implications`, and the conjugation costs
:math:`O(N^2)` instead of two matrix products.

Cost per draw: :math:`n(n+1)/2` normal numbers and one product of Householder reflectors
(:func:`jax.lax.linalg.householder_product`, LAPACK ``orgqr`` on CPU), all draws of a call in one
batched call.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_positive_int


def _check(key, num, n, n_min, name, dtype):
    check_positive_int(num, "num")
    if not isinstance(n, (int, np.integer)) or n < n_min:
        raise ValueError(f"{name} must be an integer >= {n_min}, got {n!r}")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    typed = jnp.issubdtype(key.dtype if hasattr(key, "dtype") else np.asarray(key).dtype, jax.dtypes.prng_key)
    key_shape = tuple(jnp.shape(key)) if typed else tuple(jnp.shape(key))[:-1]
    if key_shape != ():
        raise ValueError(f"key must be a single PRNG key, got an array of keys of shape {key_shape}")
    return int(num), int(n), dtype


def _reflectors(key, num, n, dtype):
    """The Householder data of the product in the module docstring for ``num`` draws on :math:`O(n)`:
    ``a`` ``(num, n, n)`` with the reflector of step ``k`` (unit leading entry, LAPACK's
    convention) below the diagonal of column ``k``, ``taus`` ``(num, n - 1)`` and the column
    signs ``d`` ``(num, n)``."""
    # column k of a lower-triangular (n, n) array holds x_k (length n - k): the n(n+1)/2 normals
    # z are laid out by a reshape, [z_{n:}, reversed z] -> (n, n), whose lower triangle holds
    # every z_j exactly once (no gather: a gather of the padded vector cost more than drawing z)
    z = jax.random.normal(key, (num, n * (n + 1) // 2), dtype=dtype)
    X = jnp.tril(jnp.concatenate([z[:, n:], jnp.flip(z, axis=1)], axis=1).reshape(num, n, n))
    alpha = jnp.diagonal(X, axis1=1, axis2=2)  # leading entries x_{k,1}
    norm = jnp.sqrt(jnp.sum(X * X, axis=1))  # |x_k|
    s = jnp.where(alpha >= 0, 1.0, -1.0).astype(dtype)
    ok = norm > 0  # a zero Gaussian vector has probability 0; it gives the identity, not NaN
    scale = jnp.where(ok, alpha + s * norm, 1.0)
    a = X / scale[:, None, :]  # v_k = x_k / (x_{k,1} + s_k |x_k|): H x_k = -s_k |x_k| e_1
    taus = jnp.where(ok, (norm + jnp.abs(alpha)) / jnp.where(ok, norm, 1.0), 0.0)[:, : n - 1]
    d = jnp.concatenate([-s[:, : n - 1], s[:, n - 1:]], axis=1)
    return a, taus, d


@functools.partial(jax.jit, static_argnames=("num", "n", "dtype"))
def _haar(key, num, n, dtype):
    a, taus, d = _reflectors(key, num, n, dtype)
    return jax.lax.linalg.householder_product(a, taus) * d[:, None, :]


@functools.partial(jax.jit, static_argnames=("num", "N", "dtype"))
def _mean_preserving(key, num, N, dtype):
    a, taus, d = _reflectors(key, num, N - 1, dtype)
    # diag(1, O) directly: a zero first reflector (tau = 0) and a unit first column sign
    a = jnp.pad(a, ((0, 0), (1, 0), (1, 0)))
    taus = jnp.pad(taus, ((0, 0), (1, 0)))
    d = jnp.pad(d, ((0, 0), (1, 0)), constant_values=1.0)
    B = jax.lax.linalg.householder_product(a, taus) * d[:, None, :]  # (num, N, N) = diag(1, O)
    q = np.zeros(N)
    q[0] = 1.0
    q -= 1.0 / np.sqrt(N)
    q = jnp.asarray(q / np.linalg.norm(q), dtype)
    B = B - 2.0 * q[None, :, None] * jnp.einsum("i,tij->tj", q, B)[:, None, :]  # Q_0 B
    return B - 2.0 * jnp.einsum("tij,j->ti", B, q)[:, :, None] * q[None, None, :]  # (Q_0 B) Q_0


def haar_orthogonal(key: PRNGKeyArray, num: int, n: int, dtype=None) -> Float[Array, "num n n"]:
    r"""``num`` independent Haar-distributed orthogonal matrices :math:`O \in O(n)`:

    .. math:: O = H_1 \cdots H_{n-1} \operatorname{diag}(-s_1, \dots, -s_{n-1}, s_n),

    :math:`H_k` the Householder reflection that maps a fresh Gaussian vector
    :math:`x_k \sim \mathcal N(0, I_{n-k+1})` (acting on coordinates :math:`k..n`) to
    :math:`-s_k \lVert x_k \rVert e_k`, :math:`s_k = \operatorname{sign} x_{k,1}`, and :math:`s_n` a
    fair sign :cite:`stewart1980efficient,mezzadri2007generate` (the proof that this is Haar is
    in the docstring of :mod:`assimilax.filters.rotations`).

    Every entry :math:`O_{ij}` has the law of one coordinate of a uniform point on
    :math:`S^{n-1}`: :math:`(O_{ij} + 1)/2 \sim \mathrm{Beta}(\tfrac{n-1}2, \tfrac{n-1}2)`,
    :math:`\mathbb E O_{ij} = 0`, :math:`\mathbb E O_{ij} O_{kl} = \delta_{ik}\delta_{jl}/n`; the
    determinant is :math:`\pm 1` with probability :math:`1/2` each.

    **Arguments:**

    - ``key``: a PRNG key (one key for all ``num`` draws; same key, same matrices).
    - ``num``: number of matrices; ``n``: their order (:math:`n \ge 1`).
    - ``dtype``: floating dtype (default: JAX's default float, float64 under ``jax_enable_x64``).

    **Returns:** ``(num, n, n)`` array, orthogonal to rounding.

    Raises ``ValueError`` for a non-positive ``num`` or ``n``, a non-floating ``dtype`` or a
    batch of keys. Jit-able with ``num``, ``n`` and ``dtype`` static; ``jax.vmap`` over keys.
    """
    num, n, dtype = _check(key, num, n, 1, "n", dtype)
    return _haar(key, num, n, dtype)


def mean_preserving_rotations(key: PRNGKeyArray, num: int, N: int, dtype=None) -> Float[Array, "num N N"]:
    r"""``num`` independent random orthogonal :math:`\Omega \in \mathbb R^{N \times N}` with
    :math:`\Omega \mathbf 1 = \mathbf 1`, Haar-distributed on that subgroup of :math:`O(N)`:

    .. math:: \Omega = Q_0 \operatorname{diag}(1, O)\, Q_0, \qquad O \sim \mathrm{Haar}(O(N-1)),

    with :math:`Q_0` the Householder reflection exchanging :math:`e_1` and :math:`\mathbf 1/\sqrt N`
    and :math:`O` from :func:`haar_orthogonal`.

    Multiplying ensemble anomalies :math:`A` (:math:`\mathbf 1^\top A = 0`) by :math:`\Omega` keeps
    the ensemble mean (:math:`\mathbf 1^\top \Omega A = \mathbf 1^\top A`) and the sample covariance
    (:math:`A^\top \Omega^\top \Omega A = A^\top A`): the random rotation of the ETKF
    (``rotate=True`` of :func:`~assimilax.filters.ensemble_kalman_filter`, DAPPER's ``rot=True``)
    :cite:`sakov2008implications`.

    **Arguments:**

    - ``key``: a PRNG key (one key for all ``num`` draws).
    - ``num``: number of matrices (e.g. one per assimilation cycle); ``N``: ensemble size
      (:math:`N \ge 2`).
    - ``dtype``: floating dtype (default: JAX's default float).

    **Returns:** ``(num, N, N)`` array.

    Raises ``ValueError`` for a non-positive ``num``, ``N < 2``, a non-floating ``dtype`` or a
    batch of keys. Jit-able with ``num``, ``N`` and ``dtype`` static.
    """
    num, N, dtype = _check(key, num, N, 2, "N", dtype)
    return _mean_preserving(key, num, N, dtype)


__all__ = ["haar_orthogonal", "mean_preserving_rotations"]
