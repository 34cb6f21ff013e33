"""Input checks run eagerly, before any compilation.

Every public filter and estimator calls these at its boundary so that a wrong shape, a
non-positive-definite covariance or a NaN in the data is refused with a clear message instead
of surfacing as a cryptic XLA error or as silent NaNs. Checks are skipped for traced values
(when the caller has wrapped the public function in ``jax.jit``/``vmap``), because their values
are not known at trace time.
"""
from __future__ import annotations

import jax
import numpy as np


class FilterDivergenceError(FloatingPointError):
    """Raised when a filter's output contains NaN or inf (the filter diverged)."""


def is_concrete(x) -> bool:
    """True when ``x`` holds actual values that this process can read: not an abstract tracer,
    and not an array sharded over devices of other processes (multi-process runs: each process
    sees only its own shards, so value checks are skipped there; replicated arrays are read)."""
    leaves = jax.tree_util.tree_leaves(x)
    return all(not isinstance(leaf, jax.core.Tracer)
               and (getattr(leaf, "is_fully_addressable", True) or getattr(leaf, "is_fully_replicated", False))
               for leaf in leaves)


def check_shape(x, expected: tuple, name: str) -> None:
    """Refuse ``x`` unless its shape matches ``expected`` (``None`` entries match anything)."""
    shape = tuple(np.shape(x))
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        exp = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {exp}, got {shape}")


def check_finite(x, name: str) -> None:
    """Refuse data containing NaN or inf."""
    if not is_concrete(x):
        return
    arr = np.asarray(x)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def check_covariance(P, dim: int, name: str) -> None:
    """Refuse a covariance that is not (dim, dim), symmetric and positive definite."""
    check_shape(P, (dim, dim), name)
    if not is_concrete(P):
        return
    arr = np.asarray(P, dtype=np.float64)
    check_finite(arr, name)
    if not np.allclose(arr, arr.T, rtol=1e-6, atol=1e-10 * max(1.0, float(np.abs(arr).max()))):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(arr).min()
        raise ValueError(f"{name} must be positive definite (smallest eigenvalue {eig:.3g})") from None


def check_ensemble(ens, dim: int, name: str = "ensemble") -> None:
    """Refuse an ensemble that is not (N, dim) with N >= 2, or that holds NaNs."""
    check_shape(ens, (None, dim), name)
    if np.shape(ens)[0] < 2:
        raise ValueError(f"{name} needs at least 2 members, got {np.shape(ens)[0]}")
    check_finite(ens, name)


def check_observations(ys, obs_dim: int, name: str = "observations") -> None:
    """Refuse observations that are not (T, obs_dim) or hold NaN/inf."""
    check_shape(ys, (None, obs_dim), name)
    if np.shape(ys)[0] < 1:
        raise ValueError(f"{name} must hold at least one time step")
    check_finite(ys, name)


def check_positive_int(n, name: str) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def raise_if_diverged(values, name: str):
    """Raise :class:`FilterDivergenceError` when ``values`` (time-major) hold NaN/inf.

    Skipped (returns silently) under tracing. Returns ``values`` unchanged.
    """
    if not is_concrete(values):
        return values
    arr = np.asarray(values)
    finite = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1) if arr.ndim else np.isfinite(arr)
    if not np.all(finite):
        t = int(np.argmin(finite)) if arr.ndim else 0
        raise FilterDivergenceError(
            f"{name} diverged: non-finite values from time index {t} of {arr.shape[0] if arr.ndim else 1}. "
            "Increase inflation, the ensemble size or the observation frequency."
        )
    return values
