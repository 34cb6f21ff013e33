r"""Observation operators with additive Gaussian noise.

An operator maps a state ``x`` of shape ``(d,)`` to ``h(x)`` of shape ``(m,)``; observations
are :math:`y = h(x) + \eta`, :math:`\eta \sim \mathcal N(0, R)`. All operators expose
``__call__`` (the noise-free map), ``R``, ``obs_dim``, ``state_dim``, ``jacobian`` and
``sample(x, key=...)``. :class:`LinearObservation` additionally has the matrix ``H``.
"""
from __future__ import annotations

from typing import Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._fastmath import arctan as _fast_arctan
from .._validation import check_covariance, check_shape, is_concrete


class ObservationOperator(eqx.Module):
    """Base class. The noise covariance is stored either as a full matrix (``R_full``) or, for
    independent components, as the vector of variances ``noise_var`` ``(m,)`` only: the dense
    ``R`` is then built on demand, so an operator on a state of a million components costs
    ``O(m)`` memory. Algorithms that can exploit a diagonal ``R`` test ``noise_var is not None``."""

    noise_var: Optional[jax.Array]
    R_full: Optional[jax.Array]
    state_dim: int = eqx.field(static=True)

    @property
    def R(self):
        """The ``(m, m)`` noise covariance (built from ``noise_var`` when diagonal)."""
        return jnp.diag(self.noise_var) if self.R_full is None else self.R_full

    @property
    def obs_dim(self) -> int:
        return (self.noise_var if self.R_full is None else self.R_full).shape[0]

    def __call__(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def jacobian(self, x):
        """``jax.jacfwd`` of the noise-free map, shape ``(m, d)``."""
        return jax.jacfwd(self.__call__)(x)

    def sample(self, x, *, key):
        """``h(x) + eta`` with ``eta ~ N(0, R)``."""
        z = jax.random.normal(key, (self.obs_dim,), dtype=x.dtype)
        if self.R_full is None:
            return self(x) + jnp.sqrt(self.noise_var).astype(x.dtype) * z
        return self(x) + jnp.linalg.cholesky(self.R_full) @ z

    def log_likelihood(self, y, x):
        r"""Gaussian :math:`\log \mathcal N(y; h(x), R)`."""
        r = y - self(x)
        if self.R_full is None:
            return -0.5 * jnp.sum(r**2 / self.noise_var + jnp.log(2 * jnp.pi * self.noise_var))
        chol = jnp.linalg.cholesky(self.R_full)
        z = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
        return -0.5 * z @ z - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * self.obs_dim * jnp.log(2 * jnp.pi)


def _noise(noise, m: int, name: str = "R"):
    """``(noise_var, R_full)`` from a std (scalar), per-component stds ``(m,)`` or a matrix ``(m, m)``."""
    arr = jnp.asarray(noise)
    if arr.ndim >= 2:
        check_covariance(arr, m, name)
        return None, arr
    if arr.ndim == 1:
        check_shape(arr, (m,), "noise (per-component standard deviations)")
    if is_concrete(arr):
        std = np.asarray(arr, dtype=np.float64)
        bad = ~(np.isfinite(std) & (std > 0))
        if bad.any():
            raise ValueError("noise standard deviations must be positive and finite, got "
                             f"{std.ravel()[bad.ravel()][:5].tolist()}"
                             + ("" if std.ndim == 0 else f" at components {np.flatnonzero(bad)[:5].tolist()}"))
    var = jnp.full((m,), arr**2) if arr.ndim == 0 else arr**2
    return var, None


def _noise_cov(sigma_or_R, m):
    """Dense ``R`` from a std, per-component stds or a matrix (kept for callers that need it)."""
    var, full = _noise(sigma_or_R, m)
    return jnp.diag(var) if full is None else full


def noise_moments(noise, m: int, name: str = "R"):
    """``(noise_var (m,), None)`` for independent components or ``(None, R (m, m))``, from a
    standard deviation (scalar), per-component standard deviations ``(m,)`` or a covariance
    ``(m, m)``: how every operator here (and :class:`~assimilax.tracking.PolarObservation`)
    stores its noise. Refuses shapes other than these and non-positive deviations."""
    return _noise(noise, m, name)


class LinearObservation(ObservationOperator):
    r"""Linear observations :math:`y = H x + \eta`, :math:`\eta \sim \mathcal N(0, R)`.

    **Arguments:** ``H`` ``(m, d)``, ``R`` ``(m, m)`` positive definite. Constructors:
    :meth:`full`, :meth:`partial` (chosen indices), :meth:`every_kth`.
    """

    H: jax.Array

    def __init__(self, H, R):
        H = jnp.asarray(H)
        if H.ndim != 2:
            raise ValueError(f"H must have shape (m, d), got {H.shape}")
        check_covariance(R, H.shape[0], "R")
        self.H = H
        self.noise_var, self.R_full = None, jnp.asarray(R)
        self.state_dim = H.shape[1]

    def __call__(self, x):
        return self.H @ x

    def jacobian(self, x):
        return self.H

    @classmethod
    def full(cls, dim: int, noise):
        """Observe every component; ``noise`` is a std (scalar), per-component stds or ``R``."""
        return cls(jnp.eye(dim), _noise_cov(noise, dim))

    @classmethod
    def partial(cls, indices, dim: int, noise):
        """Observe the components ``indices`` of a ``dim``-dimensional state."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= dim:
            raise ValueError(f"indices must be a non-empty 1-D array within [0, {dim}), got {indices!r}")
        H = jnp.eye(dim)[idx]
        return cls(H, _noise_cov(noise, len(idx)))

    @classmethod
    def every_kth(cls, dim: int, k: int, noise, offset: int = 0):
        """Observe components ``offset, offset + k, ...``."""
        return cls.partial(np.arange(offset, dim, k), dim, noise)


_NONLINEAR = {
    "arctan": _fast_arctan,
    "cubic": lambda z: z**3,
    "identity": lambda z: z,
}


class NonlinearObservation(ObservationOperator):
    r"""Component-wise nonlinear observations :math:`y = g(x_{I}) + \eta`.

    ``g`` is ``"arctan"`` (as in the EnSF papers; vectorised in float32 by
    :func:`!assimilax._fastmath.arctan`), ``"cubic"`` or any callable acting
    element-wise; ``indices`` picks the observed components (default: all). ``noise`` is a
    standard deviation (scalar), per-component standard deviations ``(m,)`` -- both stored as
    ``noise_var`` only, ``O(m)`` memory -- or a full ``R`` ``(m, m)``.
    """

    indices: jax.Array
    fn: Callable = eqx.field(static=True)
    name: str = eqx.field(static=True)
    all_components: bool = eqx.field(static=True)

    def __init__(self, fn, dim: int, noise, indices=None):
        if isinstance(fn, str):
            if fn not in _NONLINEAR:
                raise ValueError(f"unknown nonlinearity {fn!r}; choose from {sorted(_NONLINEAR)} or pass a callable")
            self.name, self.fn = fn, _NONLINEAR[fn]
        else:
            self.name, self.fn = getattr(fn, "__name__", "custom"), fn
        idx = np.arange(dim) if indices is None else np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= dim:
            raise ValueError(f"indices must be a non-empty 1-D array within [0, {dim}), got {indices!r}")
        self.indices = jnp.asarray(idx)
        self.all_components = indices is None
        self.state_dim = dim
        self.noise_var, self.R_full = _noise(noise, len(idx))

    def __call__(self, x):
        return self.fn(x if self.all_components else x[..., self.indices])


__all__ = ["ObservationOperator", "LinearObservation", "NonlinearObservation", "noise_moments"]
