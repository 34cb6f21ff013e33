r"""Localisation geometry for the LETKF: where the grid points and the observations are, and which
observations lie within a taper's cut-off of each grid point.

A geometry object (:class:`PeriodicRing`, :class:`PeriodicGrid2D`, :class:`Locations`) holds the
coordinates of the ``d`` state components and the distance between points (Euclidean, with the
minimum image along periodic axes). For a taper radius :math:`\ell` (DAPPER's ``loc_rad``
convention, :cite:`raanes2024dapper`) the Gaspari--Cohn taper :func:`gaspari_cohn`
:cite:`gaspari1999construction` has half-width :math:`c = 1.82\,\ell` (:data:`GC_SCALE`) and is
exactly zero beyond :math:`2c`, so the local analysis at grid point :math:`i`
:cite:`hunt2007efficient` needs only

.. math:: \mathcal J_i = \{\, j : \operatorname{dist}(x_i, o_j) \le 2c \,\}.

:meth:`Geometry.local_observations` gathers :math:`\mathcal J_i` for every :math:`i` at once, in
NumPy and outside any ``jit`` (a periodic k-d tree, ``scipy.spatial.cKDTree``, so the cost is
about :math:`O((d + m)\log m + d\,k)`), as a padded index array ``(d, k_max)`` with a validity
mask and the distances: this is done once per geometry and observation layout, not per cycle.
The geometry is injected into :func:`~assimilax.filters.ensemble_kalman_filter` through its
``localization`` argument, as DAPPER's ``local_analyses(..., obs_taperer)`` takes the taper from
the model setup instead of hard-wiring it.

Observations are located at state components: :func:`observation_locations` gives, for each
observation, the index of the state component it observes (``argmax |H|`` per row of a
:class:`~assimilax.observations.LinearObservation`, ``.indices`` of the nonlinear and partial
operators); the geometry maps those indices to coordinates.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

#: DAPPER's factor from ``loc_rad`` to the Gaspari--Cohn half-width (``~ sqrt(10/3)``).
GC_SCALE = 1.82


def gaspari_cohn(r, radius):
    r"""Gaspari--Cohn fifth-order piecewise rational taper :cite:`gaspari1999construction`, eq. (4.10).

    With :math:`z = |r| / c` and half-width :math:`c = 1.82\,\ell` (``radius`` :math:`= \ell`, the
    DAPPER ``loc_rad`` convention: the taper is about :math:`e^{-1/2}` at :math:`r = \ell` and
    vanishes beyond :math:`r = 2c`):

    .. math::
        \rho(z) = \begin{cases}
        1 - \tfrac53 z^2 + \tfrac58 z^3 + \tfrac12 z^4 - \tfrac14 z^5, & 0 \le z \le 1,\\
        4 - 5z + \tfrac53 z^2 + \tfrac58 z^3 - \tfrac12 z^4 + \tfrac1{12} z^5 - \tfrac{2}{3z},
        & 1 < z \le 2,\\ 0, & z > 2. \end{cases}

    **Arguments:** ``r`` distances (any shape), ``radius`` scalar :math:`\ell > 0` (``inf`` gives
    weights 1). **Returns:** weights of the shape of ``r``.
    """
    r = jnp.asarray(r)
    c = GC_SCALE * jnp.asarray(radius, dtype=r.dtype if jnp.issubdtype(r.dtype, jnp.floating) else None)
    z = jnp.abs(r) / c
    z_safe = jnp.maximum(z, 1e-6)
    inner = 1.0 - (5.0 / 3.0) * z**2 + (5.0 / 8.0) * z**3 + 0.5 * z**4 - 0.25 * z**5
    outer = (4.0 - 5.0 * z + (5.0 / 3.0) * z**2 + (5.0 / 8.0) * z**3 - 0.5 * z**4
             + (1.0 / 12.0) * z**5 - (2.0 / 3.0) / z_safe)
    return jnp.where(z <= 1.0, inner, jnp.where(z <= 2.0, outer, 0.0))


def taper_cutoff(radius) -> float:
    r"""Distance beyond which :func:`gaspari_cohn` with ``radius`` :math:`\ell` is exactly zero:
    :math:`2c = 2 \cdot 1.82\,\ell` (``inf`` for an infinite radius)."""
    return 2.0 * GC_SCALE * float(radius)


class LocalObservations(NamedTuple):
    r"""The observations within the cut-off of each grid point (or of each local domain, one row
    per domain of :meth:`Geometry.partition`), padded to a common width.

    - ``indices`` ``(d, k_max)`` int32: observation indices :math:`j \in \mathcal J_i`, ascending,
      padded with ``0``;
    - ``mask`` ``(d, k_max)`` bool: ``True`` for a real entry, ``False`` for padding;
    - ``distances`` ``(d, k_max)`` float64: :math:`\operatorname{dist}(x_i, o_j)` (``0`` at padding).
    """

    indices: Int[np.ndarray, "d k"]
    mask: Bool[np.ndarray, "d k"]
    distances: Float[np.ndarray, "d k"]

    @property
    def k_max(self) -> int:
        return self.indices.shape[1]


class Geometry(abc.ABC):
    """Base class: ``size`` grid points with ``coordinates`` ``(size, q)`` and ``periods`` (one
    entry per axis: a positive period, or ``None`` for a non-periodic axis)."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Number of grid points ``d`` (must equal ``model.dim``)."""

    @abc.abstractmethod
    def coordinates(self) -> np.ndarray:
        """Coordinates ``(d, q)`` of the grid points, float64, in state order."""

    @property
    @abc.abstractmethod
    def periods(self) -> tuple:
        """Period of each of the ``q`` axes (``None``: not periodic)."""

    def distances(self, a, b) -> np.ndarray:
        r"""Pairwise distances ``(n_a, n_b)`` between coordinates ``a`` ``(n_a, q)`` and ``b``
        ``(n_b, q)``: :math:`\sqrt{\sum_k \delta_k^2}` with :math:`\delta_k = |a_k - b_k|`, replaced
        by :math:`\min(\delta_k, L_k - \delta_k)` (after reduction modulo :math:`L_k`) along an axis
        of period :math:`L_k`."""
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        sq = np.zeros((a.shape[0], b.shape[0]))
        for k, L in enumerate(self.periods):
            delta = np.abs(a[:, None, k] - b[None, :, k])
            if L is not None:
                delta = np.mod(delta, L)
                delta = np.minimum(delta, L - delta)
            sq += delta**2
        return np.sqrt(sq)

    def partition(self, block=1) -> Int[np.ndarray, "n B"]:
        r"""Local domains: the grid points cut into ``n`` disjoint blocks of ``B`` points each,
        ``(n, B)`` state indices (row :math:`b` is domain :math:`D_b`), for
        :meth:`local_observations` and the ``local_domain`` argument of
        :func:`~assimilax.filters.ensemble_kalman_filter`. ``block=1`` (every geometry): one point
        per domain, ``arange(d)[:, None]``. :class:`PeriodicRing` and :class:`PeriodicGrid2D` cut
        their grid into rectangles of ``block`` points along each axis (DAPPER's
        ``rectangular_partitioning``, here with equal blocks only)."""
        if block not in (1, (1,), (1, 1)):
            raise ValueError(f"{type(self).__name__} has no grid to cut into blocks: local_domain must be 1 "
                             f"(one local analysis per point), got {block!r}")
        return np.arange(self.size, dtype=np.int64)[:, None]

    def local_observations(self, obs_locations, radius, domains=None) -> LocalObservations:
        r"""The observations within the taper's cut-off :math:`2c` (:func:`taper_cutoff`) of each
        grid point, or of each local domain.

        **Arguments:** ``obs_locations`` ``(m,)`` integer: the state component each observation
        sits at (:func:`observation_locations`); ``radius`` :math:`\ell > 0` (a Python or NumPy
        scalar; ``inf`` keeps every observation for every grid point); ``domains`` (optional)
        ``(n, B)`` state indices from :meth:`partition`: the distance of observation :math:`j`
        to domain :math:`D_b` is then the mean of its distances to the domain's points,
        :math:`\operatorname{dist}(D_b, o_j) = B^{-1}\sum_{i \in D_b} \operatorname{dist}(x_i, o_j)`
        (DAPPER's ``obs_taperer``: ``x2y[batch].mean(axis=0)``), the distance to the block's centre
        for an observation outside the block's span; ``None``: the points themselves (``B = 1``).

        **Returns:** :class:`LocalObservations` with ``indices``/``mask``/``distances``
        ``(n, k_max)`` (``n = d`` without ``domains``), ``k_max`` the largest neighbour count (at
        least 1). NumPy, to be called outside ``jit``.
        """
        radius = _check_radius(radius)
        locs = _check_locations(obs_locations, self.size)
        X = self.coordinates()
        O = X[locs]
        d, m = X.shape[0], O.shape[0]
        if domains is None:
            domains = np.arange(d, dtype=np.int64)[:, None]
        domains = _check_domains(domains, d)
        n = domains.shape[0]

        def mean_distances(b, cols):  # (len(cols),): mean distance of domain b's points to O[cols]
            return self.distances(X[domains[b]], O[cols]).mean(axis=0)

        cut = taper_cutoff(radius)
        if not math.isfinite(cut):
            idx = np.broadcast_to(np.arange(m, dtype=np.int32), (n, m)).copy()
            if domains.shape[1] == 1:
                pts = domains[:, 0]
                dist = np.concatenate([self.distances(X[pts[i:i + 4096]], O) for i in range(0, n, 4096)])
            else:
                dist = np.stack([mean_distances(b, np.arange(m)) for b in range(n)])
            return LocalObservations(idx, np.ones((n, m), bool), dist)
        lists = _ball_query(X, O, self.periods, cut)
        # mean >= min, so an observation within the cut-off of a domain is within it of one of its points
        cand = [sorted(set().union(*(lists[i] for i in row))) for row in domains]
        k_max = max(1, max(len(c) for c in cand))
        idx = np.zeros((n, k_max), np.int32)
        mask = np.zeros((n, k_max), bool)
        dist = np.zeros((n, k_max))
        for b, li in enumerate(cand):
            if not li:
                continue
            li = np.asarray(li, dtype=np.int64)
            di = mean_distances(b, li)
            keep = di <= cut  # the tree was asked for a slightly larger ball: decide here, exactly
            li, di = li[keep], di[keep]
            idx[b, :len(li)] = li
            mask[b, :len(li)] = True
            dist[b, :len(li)] = di
        k_used = max(1, int(mask.sum(axis=1).max()))
        return LocalObservations(idx[:, :k_used], mask[:, :k_used], dist[:, :k_used])


def _ball_query(X, O, periods, cut):
    """For each row of ``X``, the indices of the rows of ``O`` within ``cut`` (a little more:
    callers filter exactly). Periodic axes become a torus of the k-d tree; a non-periodic axis gets
    a box wide enough that no pair within ``cut`` wraps around."""
    from scipy.spatial import cKDTree

    X = np.array(X, dtype=float)
    O = np.array(O, dtype=float)
    box = []
    for k, L in enumerate(periods):
        if L is None:
            lo = min(X[:, k].min(), O[:, k].min())
            span = max(X[:, k].max(), O[:, k].max()) - lo
            L = 2.0 * (span + cut) + 1.0
            X[:, k] -= lo
            O[:, k] -= lo
        X[:, k] = np.mod(X[:, k], L)
        O[:, k] = np.mod(O[:, k], L)
        # np.mod can return L itself for tiny negative inputs; the tree needs [0, L)
        X[:, k] = np.where(X[:, k] >= L, 0.0, X[:, k])
        O[:, k] = np.where(O[:, k] >= L, 0.0, O[:, k])
        box.append(L)
    tree = cKDTree(O, boxsize=np.asarray(box))
    return tree.query_ball_point(X, r=cut * (1 + 1e-9) + 1e-12)


def _check_radius(radius):
    r = np.asarray(radius)
    if r.shape != () or not np.isreal(r) or not r > 0:
        raise ValueError(f"localization radius must be a positive scalar (inf allowed), got {radius!r}")
    return float(r)


def _check_locations(obs_locations, d):
    locs = np.asarray(obs_locations)
    if locs.ndim != 1 or locs.size == 0 or not np.issubdtype(locs.dtype, np.integer):
        raise ValueError(f"observation locations must be a non-empty 1-D integer array (state indices), "
                         f"got shape {locs.shape} and dtype {locs.dtype}")
    if locs.min() < 0 or locs.max() >= d:
        raise ValueError(f"observation locations must lie in [0, {d}), got range [{locs.min()}, {locs.max()}]")
    return locs


def _check_domains(domains, d):
    D = np.asarray(domains)
    if D.ndim != 2 or D.size == 0 or not np.issubdtype(D.dtype, np.integer):
        raise ValueError(f"domains must be a non-empty (n, B) integer array of state indices, got shape {D.shape}")
    if D.min() < 0 or D.max() >= d:
        raise ValueError(f"domains must hold state indices in [0, {d}), got range [{D.min()}, {D.max()}]")
    return D.astype(np.int64)


def _block_shape(block, ndim, name="local_domain"):
    """``block`` as a tuple of ``ndim`` positive ints (an int is repeated along every axis)."""
    if np.ndim(block) == 0:
        b = (block,) * ndim
    else:
        b = tuple(np.asarray(block).tolist()) if isinstance(block, np.ndarray) else tuple(block)
    if len(b) != ndim or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in b):
        raise ValueError(f"{name} must be a positive integer or a tuple of {ndim} positive integers, got {block!r}")
    return tuple(int(v) for v in b)


def _positive_int(n, name):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


@dataclasses.dataclass(frozen=True)
class PeriodicRing(Geometry):
    r"""A periodic 1-D grid of ``n`` sites, site :math:`i` at coordinate :math:`i`, distance
    :math:`\min(|i - j|, n - |i - j|)` (Lorenz-96; the default geometry of the LETKF)."""

    n: int

    def __post_init__(self):
        _positive_int(self.n, "n")

    @property
    def size(self) -> int:
        return int(self.n)

    def coordinates(self) -> np.ndarray:
        return np.arange(self.n, dtype=float)[:, None]

    @property
    def periods(self) -> tuple:
        return (float(self.n),)

    def partition(self, block=1) -> Int[np.ndarray, "n B"]:
        """Consecutive sites in blocks of ``block`` (which must divide ``n``):
        ``arange(n).reshape(n // block, block)``."""
        (b,) = _block_shape(block, 1)
        if self.n % b:
            raise ValueError(f"local_domain {b} must divide the ring's {self.n} sites")
        return np.arange(self.n, dtype=np.int64).reshape(self.n // b, b)


@dataclasses.dataclass(frozen=True)
class PeriodicGrid2D(Geometry):
    r"""A doubly periodic ``n1 x n2`` grid, the state flattened row-major (C order): component
    :math:`k = i_1 n_2 + i_2` sits at :math:`(i_1, i_2)`, as a field of shape ``(n1, n2)`` reshaped
    to ``(n1 * n2,)``. Distance: Euclidean with the minimum image along both axes,
    :math:`\sqrt{\min(\delta_1, n_1-\delta_1)^2 + \min(\delta_2, n_2-\delta_2)^2}`, in grid units."""

    n1: int
    n2: int

    def __post_init__(self):
        _positive_int(self.n1, "n1")
        _positive_int(self.n2, "n2")

    @property
    def size(self) -> int:
        return int(self.n1) * int(self.n2)

    def coordinates(self) -> np.ndarray:
        i1, i2 = np.divmod(np.arange(self.size), self.n2)
        return np.stack([i1, i2], axis=1).astype(float)

    @property
    def periods(self) -> tuple:
        return (float(self.n1), float(self.n2))

    def partition(self, block=1) -> Int[np.ndarray, "n B"]:
        """Rectangular tiles of ``b1 x b2`` points (``block`` an int ``b`` for ``b x b``; each
        must divide its axis), tiles in row-major order, points row-major within a tile."""
        b1, b2 = _block_shape(block, 2)
        if self.n1 % b1 or self.n2 % b2:
            raise ValueError(f"local_domain {(b1, b2)} must divide the grid's shape {(self.n1, self.n2)}")
        k = np.arange(self.size, dtype=np.int64).reshape(self.n1 // b1, b1, self.n2 // b2, b2)
        return k.transpose(0, 2, 1, 3).reshape(-1, b1 * b2)


@dataclasses.dataclass(frozen=True, eq=False)
class Locations(Geometry):
    r"""Arbitrary coordinates ``coords`` ``(d, q)`` (or ``(d,)`` for one axis) of the state
    components, with optional ``periods`` (one entry per axis: a positive period or ``None``).
    Distance: Euclidean, minimum image along the periodic axes. Compared and hashed by identity."""

    coords: Float[np.ndarray, "d q"]
    periods: Optional[tuple] = None

    def __post_init__(self):
        c = np.asarray(self.coords, dtype=float)
        if c.ndim == 1:
            c = c[:, None]
        if c.ndim != 2 or c.shape[0] == 0 or not np.all(np.isfinite(c)):
            raise ValueError(f"coords must be a finite array of shape (d, q) or (d,), got shape {np.shape(self.coords)}")
        per = (None,) * c.shape[1] if self.periods is None else tuple(self.periods)
        if len(per) != c.shape[1]:
            raise ValueError(f"periods must have one entry per axis ({c.shape[1]}), got {len(per)}")
        for L in per:
            if L is not None and not (np.isfinite(L) and L > 0):
                raise ValueError(f"each period must be positive and finite or None, got {L!r}")
        object.__setattr__(self, "coords", c)
        object.__setattr__(self, "periods", tuple(None if L is None else float(L) for L in per))

    @property
    def size(self) -> int:
        return self.coords.shape[0]

    def coordinates(self) -> np.ndarray:
        return self.coords


def observation_locations(observation) -> Int[np.ndarray, " m"]:
    """The state component each observation sits at, ``(m,)`` int (NumPy).

    ``argmax |H|`` per row for an operator with a matrix ``H``
    (:class:`~assimilax.observations.LinearObservation`), ``.indices`` for the nonlinear and
    partial operators. Raises ``ValueError`` for an operator with neither.
    """
    if hasattr(observation, "H"):
        return np.asarray(np.argmax(np.abs(np.asarray(observation.H)), axis=1))
    if hasattr(observation, "indices"):
        return np.asarray(observation.indices)
    raise ValueError(
        f"localization needs observation locations: a LinearObservation (located at argmax |H| per row) "
        f"or an operator with `.indices`; got {type(observation).__name__}"
    )


def taper_weights(local: LocalObservations, radius) -> Float[Array, "d k"]:
    r""":math:`\sqrt{\rho_{ij}}` for the gathered pairs, :math:`\rho` = :func:`gaspari_cohn` of
    the stored distance, zero at padding. ``radius`` may be traced (jit/vmap over radii)."""
    dist = jnp.asarray(local.distances)
    rho = gaspari_cohn(dist, radius)
    return jnp.where(jnp.asarray(local.mask), jnp.sqrt(rho), jnp.zeros((), dist.dtype))


__all__ = [
    "GC_SCALE",
    "Geometry",
    "LocalObservations",
    "Locations",
    "PeriodicGrid2D",
    "PeriodicRing",
    "gaspari_cohn",
    "observation_locations",
    "taper_cutoff",
    "taper_weights",
]
