r"""Nested restrictions between resolution levels of periodic fields, and their lifts.

A periodic field on :math:`n` points per axis (``ndim`` = 1 or 2 spatial axes, the last ones of
the array; any batch axes in front) is restricted to :math:`m = n/f` points per axis by

- **block averaging** (``kind="block"``): the mean over each block of :math:`f` points
  (:math:`f^2` in 2-D), a cell-average (finite-volume) coarsening;
- **spectral truncation** (``kind="spectral"``): the Fourier modes :math:`|k| < m/2` kept, and
  for even :math:`m` the cosine part of :math:`\pm m/2` (the coarse Nyquist mode, which a real
  field on :math:`m` points can hold only as a cosine); the result is the coarse grid's samples
  of that band-limited field.

Both are written with the unnormalised DFT :math:`X_k = \sum_j x_j e^{-2\pi i jk/n}` as a fold
of the fine wavenumbers :math:`k_j = q + jm` (:math:`j = 0..f-1`) onto the coarse one :math:`q`,

.. math:: Y_q = \frac1f \sum_{j=0}^{f-1} g(k_j)\, X_{k_j},
   \qquad g_{\rm block}(k) = \frac1f \sum_{s=0}^{f-1} e^{2\pi i k s/n},
   \qquad g_{\rm spectral}(k) = \mathbf 1\{|k| < m/2\} + \mathbf 1\{|k| = m/2\},
   :label: ms-fold

per axis (a tensor product in 2-D). Their default lifts are right inverses,
:math:`P L = I`: the piecewise-constant lift for blocks, zero-padding for the spectral
truncation (the Nyquist cosine split evenly between :math:`\pm m/2`). With the Euclidean inner
product on grid values block averaging satisfies :math:`P^\top = f^{-d} L` (:math:`d` =
``ndim``); the spectral truncation satisfies :math:`P^\top = f^{-d} L N`, where :math:`N` doubles
the coarse Nyquist coefficient along each axis (for even :math:`m`; :math:`N = I` for odd
:math:`m`), because the coarse Nyquist cosine :math:`(-1)^i` has twice the squared norm per unit
amplitude of every other mode. In both cases :math:`L P` is the orthogonal projector onto the
coarse-resolvable fields.

Restrictions nest: :math:`P^r = C^r P^{r+1}` with :math:`C^r` the same restriction from level
:math:`r+1` to :math:`r`, so that :math:`x^{r_0}` is a function of :math:`x^{r}` for every
:math:`r \ge r_0` and :math:`p(x^R \mid x^{r_0}) = \prod_{r=r_0}^{R-1} p(x^{r+1} \mid x^{r})`
(the factorisation behind iterative refinement across resolutions). :class:`~assimilax.multiscale.Hierarchy` holds the
levels.

The **optimal linear lift** for a field with covariance (second-moment matrix) :math:`\Sigma` is
the Gaussian conditional mean :math:`E[x \mid Px] = \Sigma P^\top (P \Sigma P^\top)^{-1} P x`
(:func:`~assimilax.multiscale.gaussian_lift_matrix`, dense). For a statistically homogeneous field (distinct
wavenumbers uncorrelated, power :math:`S_k = E|X_k|^2`) it acts fold by fold,

.. math:: \hat X_{k_j} = \frac{f\, S_{k_j} \overline{g(k_j)}}{\sum_l S_{k_l} |g(k_l)|^2}\, Y_q ,
   :label: ms-stationary-lift

(:func:`~assimilax.multiscale.stationary_lift_weights`, :func:`~assimilax.multiscale.stationary_lift`): the Wiener filter of the fold, a
PCA of the field restricted to the hierarchy. For the spectral truncation it is zero-padding.
"""
from __future__ import annotations

import functools
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

KINDS = ("block", "spectral")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _check_grid(shape: tuple, factor: int, ndim: int, name: str) -> int:
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2, got {ndim!r}")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if len(shape) < ndim:
        raise ValueError(f"{name} must have shape (..., n{', n' if ndim == 2 else ''}) with {ndim} spatial axes, "
                         f"got {shape}")
    spatial = shape[len(shape) - ndim:]
    if ndim == 2 and spatial[0] != spatial[1]:
        raise ValueError(f"{name} must have square spatial axes (..., n, n), got {shape}")
    n = int(spatial[0])
    if n % factor != 0:
        raise ValueError(f"{name}'s spatial size {n} is not divisible by factor {factor} (shape {shape})")
    return n


def transfer_function(n: int, factor: int, kind: str) -> Complex[Array, " n"]:
    r"""The per-axis transfer function :math:`g(k)` of :eq:`ms-fold` at the fine wavenumbers
    :math:`k = 0..n-1` (DFT order), shape ``(n,)``, complex.

    **Arguments:** `n` fine points per axis, `factor` the coarsening factor (divides `n`),
    `kind` ``"block"`` or ``"spectral"``.
    """
    _check_kind(kind)
    _check_grid((n,), factor, 1, "grid")
    m = n // factor
    k = np.fft.fftfreq(n, 1.0 / n)  # signed integer wavenumbers
    if kind == "block":
        s = np.arange(factor)
        g = np.exp(2j * np.pi * np.outer(k, s) / n).mean(axis=1)
    else:
        g = (np.abs(k) < m / 2.0).astype(np.complex128)
        if m % 2 == 0 and factor > 1:
            g = g + (np.abs(k) == m / 2.0)
        if factor == 1:
            g = np.ones(n, dtype=np.complex128)
    return jnp.asarray(g)


def _axes(ndim: int) -> tuple:
    return (-1,) if ndim == 1 else (-2, -1)


def _truncate_axis(x, m: int, axis: int):
    """Spectral truncation of the real field ``x`` along ``axis`` to ``m`` points (grid values)."""
    n = x.shape[axis]
    f = n // m
    X = jnp.fft.fft(x, axis=axis)
    take = lambda a, b: jax.lax.slice_in_dim(X, a, b, axis=axis)  # noqa: E731
    h = m // 2
    if m % 2 == 0:
        parts = [take(0, h), take(h, h + 1) + take(n - h, n - h + 1), take(n - h + 1, n)]
    else:
        parts = [take(0, h + 1), take(n - h, n)]
    Xc = jnp.concatenate(parts, axis=axis) / f
    return jnp.fft.ifft(Xc, axis=axis).real.astype(x.dtype)


def _pad_axis(xc, n: int, axis: int):
    """Zero-padding lift of the real field ``xc`` along ``axis`` to ``n`` points."""
    m = xc.shape[axis]
    f = n // m
    Xc = jnp.fft.fft(xc, axis=axis) * f
    take = lambda a, b: jax.lax.slice_in_dim(Xc, a, b, axis=axis)  # noqa: E731
    h = m // 2
    zshape = list(Xc.shape)
    if m % 2 == 0:
        zshape[axis] = n - m - 1
        nyq = take(h, h + 1) / 2
        parts = [take(0, h), nyq, jnp.zeros(zshape, Xc.dtype), nyq, take(h + 1, m)]
    else:
        zshape[axis] = n - m
        parts = [take(0, h + 1), jnp.zeros(zshape, Xc.dtype), take(h + 1, m)]
    X = jnp.concatenate(parts, axis=axis)
    return jnp.fft.ifft(X, axis=axis).real.astype(xc.dtype)


def restrict(x: Float[Array, "*batch n"], factor: int, *, kind: str = "spectral", ndim: int = 1) -> Float[Array, "*batch m"]:
    r"""Restriction :math:`P` of a periodic field by an integer ``factor`` per axis.

    **Arguments:**

    - `x`: shape ``(..., n)`` (``ndim=1``) or ``(..., n, n)`` (``ndim=2``), real; batch axes in front.
    - `factor`: :math:`f`, dividing :math:`n`; the result has :math:`m = n/f` points per axis.
    - `kind`: ``"block"`` (block averages) or ``"spectral"`` (Fourier truncation, :eq:`ms-fold`).
    - `ndim`: number of trailing spatial axes (1 or 2).

    **Returns:** shape ``(..., m)`` or ``(..., m, m)``.
    """
    _check_kind(kind)
    x = jnp.asarray(x)
    n = _check_grid(x.shape, factor, ndim, "x")
    if factor == 1:
        return x
    return _restrict_jit(x, factor, kind, ndim)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _restrict_jit(x, factor, kind, ndim):
    m = x.shape[-1] // factor
    if kind == "block":
        batch = x.shape[:x.ndim - ndim]
        shape = batch + (m, factor) * ndim
        return jnp.mean(x.reshape(shape), axis=tuple(range(len(batch) + 1, len(shape), 2)))
    for axis in _axes(ndim):
        x = _truncate_axis(x, m, axis)
    return x


def lift(x: Float[Array, "*batch m"], factor: int, *, kind: str = "spectral", ndim: int = 1) -> Float[Array, "*batch n"]:
    r"""Default lift :math:`L` with :math:`P L = I`: piecewise constant (``kind="block"``) or
    zero-padding in Fourier (``kind="spectral"``), from :math:`m` to :math:`n = f m` points per axis.

    Shapes as in :func:`restrict`, the other way round. :math:`L = f^{d} P^\top` for blocks
    (for the spectral truncation, up to the coarse Nyquist factor of the module docstring).
    """
    _check_kind(kind)
    x = jnp.asarray(x)
    m = _check_grid(x.shape, 1, ndim, "x")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if factor == 1:
        return x
    return _lift_jit(x, factor, kind, ndim)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _lift_jit(x, factor, kind, ndim):
    n = x.shape[-1] * factor
    if kind == "block":
        for axis in _axes(ndim):
            x = jnp.repeat(x, factor, axis=axis)
        return x
    for axis in _axes(ndim):
        x = _pad_axis(x, n, axis)
    return x


def restriction_matrix(n: int, factor: int, *, kind: str = "spectral", ndim: int = 1) -> Float[Array, "dm dn"]:
    r"""Dense matrix of :func:`restrict` acting on row-major flattened fields, shape
    ``(m**ndim, n**ndim)`` (float64 when x64 is enabled). For small sizes and tests."""
    size = n ** ndim
    eye = jnp.eye(size).reshape((size,) + (n,) * ndim)
    cols = restrict(eye, factor, kind=kind, ndim=ndim).reshape(size, -1)
    return cols.T


def gaussian_lift_matrix(cov: Float[Array, "dn dn"], restriction: Float[Array, "dm dn"]) -> Float[Array, "dn dm"]:
    r"""Optimal linear lift :math:`L = \Sigma P^\top (P\Sigma P^\top)^{-1}`, shape ``(dn, dm)``.

    :math:`L P x = E[x \mid P x]` for a zero-mean Gaussian :math:`x \sim \mathcal N(0, \Sigma)`;
    :math:`P L = I`. Computed with a Cholesky solve of :math:`P \Sigma P^\top` (use float64).

    **Arguments:** `cov` :math:`\Sigma`, shape ``(dn, dn)``, symmetric positive semi-definite with
    :math:`P\Sigma P^\top` positive definite; `restriction` :math:`P`, shape ``(dm, dn)``.
    """
    cov, restriction = jnp.asarray(cov), jnp.asarray(restriction)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be square (dn, dn), got {cov.shape}")
    if restriction.ndim != 2 or restriction.shape[1] != cov.shape[0]:
        raise ValueError(f"restriction must have shape (dm, {cov.shape[0]}), got {restriction.shape}")
    sp = cov @ restriction.T
    gram = restriction @ sp
    chol = jnp.linalg.cholesky(0.5 * (gram + gram.T))
    return jax.scipy.linalg.cho_solve((chol, True), sp.T).T


def mean_power(samples: Float[Array, "*batch n"], *, ndim: int = 1) -> Float[Array, " n"]:
    r"""Power :math:`S_k = E|X_k|^2` of the unnormalised DFT, averaged over all batch axes,
    shape ``(n,)`` or ``(n, n)``: the second moments that :func:`stationary_lift_weights` needs."""
    x = jnp.asarray(samples)
    _check_grid(x.shape, 1, ndim, "samples")
    X = jnp.fft.fftn(x, axes=_axes(ndim))
    p = jnp.abs(X) ** 2
    return jnp.mean(p.reshape((-1,) + p.shape[p.ndim - ndim:]), axis=0)


def stationary_lift_weights(power: Float[Array, " n"], factor: int, *, kind: str = "spectral",
                            ndim: int = 1) -> Complex[Array, " n"]:
    r"""Fold weights of the optimal linear lift :eq:`ms-stationary-lift` of a homogeneous field.

    **Arguments:**

    - `power`: :math:`S_k \ge 0`, shape ``(n,)`` or ``(n, n)`` (DFT order), e.g. :func:`mean_power`
      of training fields.
    - `factor`, `kind`, `ndim`: the restriction (as in :func:`restrict`).

    **Returns:** complex weights :math:`w_k` with :math:`\hat X_k = w_k Y_{k \bmod m}`, same shape as
    `power`. Folds with no power fall back to the minimum-norm right inverse of the fold.
    """
    power = jnp.asarray(power)
    n = _check_grid(power.shape, factor, ndim, "power")
    if power.shape != (n,) * ndim:
        raise ValueError(f"power must have shape {(n,) * ndim}, got {power.shape}")
    return _weights_jit(power, transfer_function(n, factor, kind), factor, ndim)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _weights_jit(power, g1, factor, ndim):
    n = power.shape[0]
    g = g1 if ndim == 1 else g1[:, None] * g1[None, :]
    m = n // factor
    fold = (factor, m) * ndim  # k = j*m + q along each axis
    sum_axes = (0,) if ndim == 1 else (0, 2)
    num = (power * jnp.conj(g)).reshape(fold)
    den = jnp.sum((power * jnp.abs(g) ** 2).reshape(fold), axis=sum_axes, keepdims=True)
    default = jnp.conj(g).reshape(fold) / jnp.sum((jnp.abs(g) ** 2).reshape(fold), axis=sum_axes, keepdims=True)
    safe = jnp.where(den > 0, den, 1.0)
    w = jnp.where(den > 0, num / safe, default)
    return (factor ** ndim * w).reshape(power.shape)


def stationary_lift(x: Float[Array, "*batch m"], weights: Complex[Array, " n"], *, ndim: int = 1) -> Float[Array, "*batch n"]:
    r"""Apply the fold weights of :func:`stationary_lift_weights` to coarse fields ``x``
    (shape ``(..., m)`` or ``(..., m, m)``), giving fine fields ``(..., n)`` or ``(..., n, n)``."""
    x = jnp.asarray(x)
    m = _check_grid(x.shape, 1, ndim, "x")
    weights = jnp.asarray(weights)
    n = weights.shape[0]
    if weights.ndim != ndim or n % m != 0 or weights.shape != (n,) * ndim:
        raise ValueError(f"weights must have shape (n,)*{ndim} with n a multiple of {m}, got {weights.shape}")
    return _stationary_lift_jit(x, weights, ndim)


@functools.partial(jax.jit, static_argnums=(2,))
def _stationary_lift_jit(x, weights, ndim):
    f = weights.shape[0] // x.shape[-1]
    Y = jnp.fft.fftn(x, axes=_axes(ndim))
    reps = (1,) * (x.ndim - ndim) + (f,) * ndim
    X = jnp.tile(Y, reps) * weights.reshape((1,) * (x.ndim - ndim) + weights.shape)
    return jnp.fft.ifftn(X, axes=_axes(ndim)).real.astype(x.dtype)


class Hierarchy(eqx.Module):
    r"""Nested resolution levels :math:`r = 0..R` of a periodic field (coarse to fine).

    ``sizes[r]`` points per axis at level ``r`` (each dividing the next), ``kind`` the restriction
    (``"block"`` or ``"spectral"``), ``ndim`` the spatial dimension. Level ``R = len(sizes) - 1``
    is the full resolution. :meth:`restrict` is :math:`P^r`, :meth:`coarsen` is :math:`C^r`
    (level ``r+1`` to ``r``), and :math:`P^r = C^r P^{r+1}` holds exactly.
    """

    sizes: tuple = eqx.field(static=True)
    kind: str = eqx.field(static=True, default="spectral")
    ndim: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        _check_kind(self.kind)
        if self.ndim not in (1, 2):
            raise ValueError(f"ndim must be 1 or 2, got {self.ndim!r}")
        s = tuple(int(v) for v in self.sizes)
        if len(s) < 1 or any(v < 1 for v in s):
            raise ValueError(f"sizes must be positive integers, got {self.sizes}")
        for a, b in zip(s[:-1], s[1:]):
            if b <= a or b % a != 0:
                raise ValueError(f"each size must divide the next, larger one; got {self.sizes}")

    @classmethod
    def dyadic(cls, n: int, levels: int, *, kind: str = "spectral", ndim: int = 1) -> "Hierarchy":
        """``levels`` levels halving from ``n`` points: sizes ``(n / 2**(levels-1), ..., n/2, n)``."""
        if n % (2 ** (levels - 1)) != 0:
            raise ValueError(f"n={n} is not divisible by 2**{levels - 1}")
        return cls(tuple(n // 2 ** (levels - 1 - r) for r in range(levels)), kind, ndim)

    @property
    def finest(self) -> int:
        return len(self.sizes) - 1

    def shape(self, level: int) -> tuple:
        """Spatial shape at ``level``."""
        return (self.sizes[level],) * self.ndim

    def _level(self, level: int) -> int:
        if not -len(self.sizes) <= level < len(self.sizes):
            raise ValueError(f"level must be in 0..{self.finest}, got {level}")
        return level % len(self.sizes)

    def _from(self, x, source: int) -> int:
        n = _check_grid(jnp.shape(x), 1, self.ndim, "x")
        if n != self.sizes[source]:
            raise ValueError(f"x must have {self.sizes[source]} points per axis at level {source}, got shape {jnp.shape(x)}")
        return n

    def restrict(self, x: Float[Array, "*batch n"], level: int, *, source: Optional[int] = None) -> Float[Array, "*batch m"]:
        r""":math:`P^{r}` from level ``source`` (default: the finest) to ``level``."""
        source = self.finest if source is None else self._level(source)
        level = self._level(level)
        if level > source:
            raise ValueError(f"cannot restrict from level {source} to the finer level {level}")
        self._from(x, source)
        return restrict(x, self.sizes[source] // self.sizes[level], kind=self.kind, ndim=self.ndim)

    def coarsen(self, x: Float[Array, "*batch n"], level: int) -> Float[Array, "*batch m"]:
        r""":math:`C^{r}`: from level ``level + 1`` to ``level``."""
        level = self._level(level)
        if level >= self.finest:
            raise ValueError(f"coarsen(x, r) needs r < {self.finest}, got {level}")
        return self.restrict(x, level, source=level + 1)

    def lift(self, x: Float[Array, "*batch m"], level: int, *, target: Optional[int] = None) -> Float[Array, "*batch n"]:
        r"""Default lift (piecewise constant / zero-padding) from ``level`` to ``target``
        (default: the finest); a right inverse of :meth:`restrict`."""
        target = self.finest if target is None else self._level(target)
        level = self._level(level)
        if target < level:
            raise ValueError(f"cannot lift from level {level} to the coarser level {target}")
        self._from(x, level)
        return lift(x, self.sizes[target] // self.sizes[level], kind=self.kind, ndim=self.ndim)

    def lift_weights(self, power: Float[Array, " n"], level: int, *, target: Optional[int] = None) -> Complex[Array, " n"]:
        r"""Fold weights of the optimal (Wiener) lift from ``level`` to ``target`` for a homogeneous
        field of power ``power`` at ``target`` (:func:`stationary_lift_weights`)."""
        target = self.finest if target is None else self._level(target)
        level = self._level(level)
        return stationary_lift_weights(power, self.sizes[target] // self.sizes[level], kind=self.kind, ndim=self.ndim)


__all__ = ["KINDS", "transfer_function", "restrict", "lift", "restriction_matrix", "gaussian_lift_matrix",
           "mean_power", "stationary_lift_weights", "stationary_lift", "Hierarchy"]
