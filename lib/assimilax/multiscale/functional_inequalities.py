r"""Numerical Poincaré and log-Sobolev constants of densities in one and two dimensions.

For a probability density :math:`p` the Poincaré constant :math:`C_{\rm P}` and the log-Sobolev
constant :math:`C_{\rm LS}` are the smallest constants with

.. math:: \mathrm{Var}_p(f) \le C_{\rm P}\, \mathbb E_p|\nabla f|^2, \qquad
   \mathrm{Ent}_p(f^2) \le 2 C_{\rm LS}\, \mathbb E_p|\nabla f|^2,
   :label: fi-constants

:math:`\mathrm{Ent}_p(g) = \mathbb E_p[g\log g] - \mathbb E_p g\,\log \mathbb E_p g`. For
:math:`\mathcal N(\mu, \Sigma)` both equal :math:`\lambda_{\max}(\Sigma)`, and always
:math:`C_{\rm P} \le C_{\rm LS}` :cite:`chen2021dimensionfree`.

Discretisation: a uniform grid on a box (per axis ``n`` points), cell masses
:math:`m_i \propto p(x_i)` (normalised), and the Dirichlet form
:math:`\mathcal E(f) = \sum_{\text{edges } ij} \bar m_{ij} (f_i - f_j)^2 / h^2` with
:math:`\bar m_{ij} = (m_i + m_j)/2`: a finite-volume (lumped-mass finite-element) discretisation
of :math:`\mathbb E_p|\nabla f|^2` with reflecting (Neumann) boundaries. Then

- :math:`1/C_{\rm P}` is the smallest non-zero eigenvalue of the generalised eigenproblem
  :math:`K f = \lambda M f` (:math:`K` the matrix of :math:`\mathcal E`, :math:`M = \mathrm{diag}(m)`),
  computed as the second eigenvalue of :math:`M^{-1/2}KM^{-1/2}` (tridiagonal in 1-D, sparse
  shift-invert Lanczos in 2-D and 3-D) (:func:`poincare_constant`);
- :math:`1/C_{\rm LS} = \inf_f 2\mathcal E(f)/\mathrm{Ent}(f^2)` is bounded from above by the
  infimum over the exponential tilts :math:`f^2 = e^{a\phi}` of the Poincaré eigenfunction
  (:func:`log_sobolev_constant`): the value returned is a lower bound on the discrete
  :math:`C_{\rm LS}` (exact for Gaussians).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg


class Grid(NamedTuple):
    """A uniform grid: ``points`` ``(n**dim, dim)`` (row-major), ``shape`` per axis, ``steps`` ``h`` per axis."""

    points: np.ndarray
    shape: tuple
    steps: tuple


def box_grid(low: Sequence[float], high: Sequence[float], n: int) -> Grid:
    """``n`` points per axis on the box ``[low, high]`` (1, 2 or 3 axes)."""
    low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
    if low.shape != high.shape or low.ndim != 1 or low.size not in (1, 2, 3):
        raise ValueError(f"low and high must both have 1, 2 or 3 entries, got {low.shape}, {high.shape}")
    if np.any(high <= low):
        raise ValueError(f"high must exceed low on every axis, got {low}, {high}")
    if not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an integer >= 3, got {n!r}")
    axes = [np.linspace(a, b, n) for a, b in zip(low, high)]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    return Grid(pts, (n,) * low.size, tuple(float(a[1] - a[0]) for a in axes))


def mixture_box(mixture, width: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A box holding a Gaussian mixture: per axis, from the smallest component mean minus
    ``width`` component standard deviations to the largest plus as many."""
    means = np.asarray(mixture.means)
    sd = np.sqrt(np.diagonal(np.asarray(mixture.covs), axis1=1, axis2=2))
    return (means - width * sd).min(0), (means + width * sd).max(0)


def _masses(log_density: Callable, grid: Grid) -> np.ndarray:
    lp = np.asarray(log_density(jnp.asarray(grid.points)), dtype=float)
    if lp.shape != (grid.points.shape[0],):
        raise ValueError(f"log_density must map (n, dim) points to (n,), got {lp.shape}")
    if not np.all(np.isfinite(lp)):
        raise ValueError("log_density returned non-finite values on the grid")
    w = np.exp(lp - lp.max())
    return w / w.sum()


def _edges(grid: Grid):
    """Per axis: index pairs (i, j) of neighbours and 1/h^2."""
    idx = np.arange(grid.points.shape[0]).reshape(grid.shape)
    out = []
    for ax in range(len(grid.shape)):
        a = np.take(idx, np.arange(grid.shape[ax] - 1), axis=ax).ravel()
        b = np.take(idx, np.arange(1, grid.shape[ax]), axis=ax).ravel()
        out.append((a, b, 1.0 / grid.steps[ax] ** 2))
    return out


def _stiffness(m: np.ndarray, grid: Grid) -> scipy.sparse.csr_matrix:
    n = m.size
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    for a, b, ih2 in _edges(grid):
        w = 0.5 * (m[a] + m[b]) * ih2
        rows += [a, b]
        cols += [b, a]
        vals += [-w, -w]
        np.add.at(diag, a, w)
        np.add.at(diag, b, w)
    K = scipy.sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return (K + scipy.sparse.diags(diag)).tocsr()


class Constant(NamedTuple):
    """A computed constant, the grid it was computed on and (Poincaré) the eigenfunction ``(n**dim,)``."""

    value: float
    grid: Grid
    function: Optional[np.ndarray]


def poincare_constant(log_density: Callable, grid: Grid) -> Constant:
    r"""Poincaré constant :math:`C_{\rm P}` :eq:`fi-constants` of the (unnormalised) density
    :math:`e^{\text{log\_density}}` on ``grid`` (1-D, 2-D or 3-D).

    **Arguments:** ``log_density`` maps points ``(n, dim)`` to ``(n,)`` (e.g.
    ``GaussianMixture.log_prob``); ``grid`` from :func:`box_grid` (wide enough that the density is
    negligible at its edges, e.g. :func:`mixture_box`).

    **Returns:** a :class:`Constant` with the first non-constant eigenfunction.
    """
    m = _masses(log_density, grid)
    m = np.maximum(m, 1e-300)
    K = _stiffness(m, grid)
    s = 1.0 / np.sqrt(m)
    if len(grid.shape) == 1:
        d = K.diagonal() * s * s
        e = K.diagonal(1) * s[:-1] * s[1:]
        lam, vec = scipy.linalg.eigh_tridiagonal(d, e, select="i", select_range=(0, 1))
    else:
        S = scipy.sparse.diags(s) @ K @ scipy.sparse.diags(s)
        lam, vec = scipy.sparse.linalg.eigsh(S.tocsc(), k=2, sigma=-1e-6 * abs(S.diagonal()).max(), which="LM")
        order = np.argsort(lam)
        lam, vec = lam[order], vec[:, order]
    f = vec[:, 1] * s
    return Constant(float(1.0 / lam[1]), grid, f)


def log_sobolev_constant(log_density: Callable, grid: Grid, *, poincare: Optional[Constant] = None,
                         amplitudes: Optional[Sequence[float]] = None) -> Constant:
    r"""A lower bound on the log-Sobolev constant :math:`C_{\rm LS}` :eq:`fi-constants` on ``grid``:
    :math:`1/\min_a R(a\phi)` with :math:`R(u) = 2\mathcal E(e^{u/2})/\mathrm{Ent}(e^{u})` over the
    exponential tilts :math:`f^2 = e^{a\phi}` of the Poincaré eigenfunction :math:`\phi` (scaled to
    unit standard deviation), ``amplitudes`` :math:`a` of both signs (default 80 values from
    :math:`10^{-3}` to :math:`10^{1.5}`). :math:`R(a\phi) \to 1/C_{\rm P}` as :math:`a \to 0`, so
    the result is never below the discrete :math:`C_{\rm P}`; for a Gaussian every tilt is
    extremal and both equal :math:`\lambda_{\max}(\Sigma)`; for a well-separated mixture the large
    tilts (mass moved onto one mode) give the larger entropy. Returns the maximising :math:`f`."""
    m = _masses(log_density, grid)
    P = poincare if poincare is not None else poincare_constant(log_density, grid)
    edges = [(a, b, 0.5 * (m[a] + m[b]) * ih2) for a, b, ih2 in _edges(grid)]
    phi = P.function - np.sum(m * P.function)
    phi = phi / np.sqrt(np.sum(m * phi**2))
    amps = np.logspace(-3, 1.5, 80) if amplitudes is None else np.asarray(amplitudes, float)
    amps = np.concatenate([amps, -amps])

    def ratio(u):
        u = u - u.max()
        f = np.exp(0.5 * u)
        energy = sum(np.sum(w * (f[a] - f[b]) ** 2) for a, b, w in edges)
        g = f**2
        Eg = np.sum(m * g)
        ent = np.sum(m * g * u) - Eg * np.log(Eg)
        return 2.0 * energy / ent if ent > 0 else np.inf

    vals = np.array([ratio(a * phi) for a in amps])
    best = min(float(vals.min()), 1.0 / P.value)
    a = amps[int(np.argmin(vals))]
    f = np.exp(0.5 * (a * phi - (a * phi).max()))
    return Constant(float(1.0 / best), grid, f)


__all__ = ["Constant", "Grid", "box_grid", "log_sobolev_constant", "mixture_box", "poincare_constant"]
