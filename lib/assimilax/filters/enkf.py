r"""Ensemble Kalman filters: stochastic (perturbed observations) and square-root (ETKF), with
multiplicative inflation, mean-preserving random rotations and local analysis (LETKF) with a
Gaspari--Cohn taper.

References: :cite:`evensen1994sequential`, :cite:`evensen2009data` (EnKF),
:cite:`burgers1998analysis` (perturbed observations), :cite:`bishop2001adaptive` and
:cite:`hunt2007efficient` (ETKF / LETKF), :cite:`sakov2008implications` (symmetric square root,
mean preservation), :cite:`gaspari1999construction` (taper).

Notation: ensemble :math:`E \in \mathbb R^{N \times d}` (members in rows), mean
:math:`\bar x`, anomalies :math:`A = E - \mathbf 1 \bar x^\top`, observed ensemble
:math:`E^o = h(E)` row-wise (nonlinear :math:`h` is applied to each member; no Jacobian), its
anomalies :math:`Y` and mean :math:`\bar y`.

Conventions (chosen to match DAPPER, :cite:`raanes2024dapper`, so that its published
configurations are comparable):

- ``inflation`` :math:`\lambda` multiplies the *anomalies* (covariance by :math:`\lambda^2`) as
  DAPPER's ``infl``. We apply it to the forecast ensemble just before the analysis (DAPPER
  applies it to the analysis ensemble right after; with no model noise the two differ only by
  where the first/last cycle is inflated).
- ``rotate=True`` multiplies the analysis anomalies by a Haar-random orthogonal matrix that
  keeps :math:`\mathbf 1` fixed (DAPPER's ``rot=True``, ``genOG_1``), so the mean and the
  sample covariance are unchanged.
- ``localization_radius`` :math:`\ell` is DAPPER's ``loc_rad``: the Gaspari--Cohn function with
  half-width :math:`c = 1.82\,\ell` (support :math:`2c`), whose value at distance :math:`\ell` is
  about :math:`e^{-1/2}`. DAPPER additionally zeroes coefficients below :math:`10^{-3}`; we keep
  them (a difference below :math:`10^{-3}` in a weight).
- Perturbed observations are centred (their ensemble mean is subtracted), as in DAPPER's
  ``PertObs``.
"""
from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._ensemble import mean_and_spread, member_mean
from .._validation import (
    check_ensemble,
    check_observations,
    check_positive_int,
    is_concrete,
    raise_if_diverged,
)
from ._types import EnsembleFilterResult
from .rotations import haar_orthogonal, mean_preserving_rotations
from ._core import check_model_observation as _check_model_observation, forecast_ensemble, scan_cycles

from .localization import (
    GC_SCALE,
    Geometry,
    LocalObservations,
    PeriodicRing,
    gaspari_cohn,
    observation_locations,
    taper_weights,
)


# ----------------------------------------------------------------------------- shared helpers
SQUARE_ROOTS = ("symmetric", "cholesky", "eigenvector")


def _etkf_transform(Ys, dys, square_root="symmetric"):
    r"""ETKF weights in ensemble space from whitened anomalies ``Ys`` ``(N, m)`` and innovation
    ``dys`` ``(m,)``: :math:`C = Y_s Y_s^\top + (N-1) I = V \Lambda V^\top`,
    :math:`P_w = C^{-1}`, :math:`w = P_w Y_s d_s` and :math:`T = \sqrt{N-1}\, C^{-1/2}`
    (``"symmetric"``) or :math:`\sqrt{N-1}\, \tilde V \tilde\Lambda^{-1/2}` (``"eigenvector"``,
    the eigenvalues of :math:`C^{-1}` ascending; see :func:`ensemble_kalman_filter`)."""
    N = Ys.shape[0]
    C = Ys @ Ys.T + (N - 1) * jnp.eye(N, dtype=Ys.dtype)
    lam, V = jnp.linalg.eigh(C)
    w = (V / lam[None, :]) @ (V.T @ (Ys @ dys))
    if square_root == "eigenvector":
        T = V[:, ::-1] * (jnp.sqrt(N - 1.0) / jnp.sqrt(lam[::-1]))[None, :]
    else:
        T = (V * (jnp.sqrt(N - 1.0) / jnp.sqrt(lam))[None, :]) @ V.T
    return w, T


def _householder_q0(N, dtype):
    r"""``Z -> Q_0 Z`` for the Householder reflection :math:`Q_0 = I - 2uu^\top` of order ``N`` that
    exchanges :math:`e_1` and :math:`\mathbf 1/\sqrt N` (``Z`` ``(N,)`` or ``(N, k)``). For a
    centred ``Z`` (:math:`\mathbf 1^\top Z = 0`) the first row of :math:`Q_0 Z` is zero."""
    u = jnp.full((N,), -1.0 / np.sqrt(N), dtype).at[0].add(1.0)
    u = u / jnp.linalg.norm(u)

    def q0(Z):
        return Z - 2.0 * jnp.outer(u, u @ Z) if Z.ndim == 2 else Z - 2.0 * u * (u @ Z)

    return q0


def _etkf_cholesky_root(Ys, dys, A, O=None):
    r"""The ETKF update without an eigendecomposition (``square_root="cholesky"``): the mean weights
    :math:`w = C^{-1} Y_s d_s` and the analysis anomalies :math:`T' A` for the mean-preserving
    Cholesky square root

    .. math::
        T' = \sqrt{N-1}\; Q_0 \begin{pmatrix} (N-1)^{-1/2} & 0 \\ 0 & L^{-1} \end{pmatrix} Q_0,
        \qquad Q_0 C Q_0 = \begin{pmatrix} N-1 & 0 \\ 0 & L L^\top \end{pmatrix},

    with :math:`Q_0` the Householder reflection exchanging :math:`e_1` and :math:`\mathbf 1/\sqrt N`
    (:math:`C \mathbf 1 = (N-1)\mathbf 1` because :math:`\mathbf 1^\top Y_s = 0`, so :math:`Q_0 C Q_0`
    is block diagonal) and :math:`L` the Cholesky factor of the lower block. Then
    :math:`T'^\top T' = (N-1) C^{-1} = T^\top T` for the symmetric root :math:`T` and
    :math:`T' \mathbf 1 = \mathbf 1`, so :math:`U = T' T^{-1}` is orthogonal with
    :math:`U \mathbf 1 = \mathbf 1`: with :math:`\Omega` Haar-distributed on the mean-preserving
    orthogonal group and independent of the data, :math:`\Omega T' = (\Omega U) T` has the law of
    :math:`\Omega T` (Haar measure is invariant under right multiplication). The rotated filter
    is the same random filter; a Cholesky of order :math:`N-1` and two triangular solves replace
    the eigendecomposition of order :math:`N`.

    With ``O`` (an orthogonal matrix of order :math:`N-1`) the rotated anomalies
    :math:`\Omega T' A` are returned for :math:`\Omega = Q_0 \operatorname{diag}(1, O) Q_0`, the
    mean-preserving rotation of :func:`~assimilax.filters.rotations.mean_preserving_rotations`
    built from the same :math:`O` (so :math:`\Omega T' = Q_0 \operatorname{diag}(1, O M) Q_0`,
    :math:`M = \sqrt{N-1}\, L^{-1}`: neither :math:`\Omega` nor the conjugation is formed)."""
    N = Ys.shape[0]
    dtype = Ys.dtype
    q0 = _householder_q0(N, dtype)
    Zs = q0(Ys)  # Q0 Ys: its first row is ~0 (1^T Ys = 0)
    Ct = Zs[1:] @ Zs[1:].T + (N - 1) * jnp.eye(N - 1, dtype=dtype)  # lower block of Q0 C Q0
    L = jnp.linalg.cholesky(Ct)
    g = q0(Ys @ dys)
    wt = jsl.cho_solve((L, True), g[1:])
    w = q0(jnp.concatenate([g[:1] / (N - 1), wt]))
    B = q0(A)
    B1 = jnp.sqrt(jnp.asarray(N - 1.0, dtype)) * jsl.solve_triangular(L, B[1:], lower=True)
    if O is not None:
        B1 = O @ B1
    return w, q0(jnp.concatenate([B[:1], B1]))


def _divided_differences(lam, f, fprime):
    r"""First divided differences :math:`D_{ij} = (f(\lambda_i) - f(\lambda_j))/(\lambda_i - \lambda_j)`,
    :math:`f'(\bar\lambda_{ij})` where the two eigenvalues agree to :math:`\sqrt{\epsilon}` (relative):
    the Daleckii--Krein kernel of the derivative of a symmetric matrix function."""
    li, lj = lam[:, None], lam[None, :]
    diff = li - lj
    tol = jnp.sqrt(jnp.finfo(lam.dtype).eps) * jnp.maximum(jnp.abs(li), jnp.abs(lj))
    close = jnp.abs(diff) <= tol
    return jnp.where(close, fprime(0.5 * (li + lj)), (f(li) - f(lj)) / jnp.where(close, 1.0, diff))


def local_etkf_transform(C: Float[Array, "n n"], g: Float[Array, " n"], a: Float[Array, " n"], *,
                         n_members: int | None = None):
    r"""The symmetric ETKF transform of one local analysis, differentiable everywhere.

    With :math:`C = V \Lambda V^\top` (symmetric positive definite, :math:`n \times n`) returns
    :math:`\big(a^\top C^{-1} g,\ \sqrt{N-1}\, C^{-1/2} a\big)`: the mean increment and the
    analysis anomalies of one grid point of the LETKF (:math:`g = \tilde Y^\top \tilde d`, :math:`a`
    the forecast anomalies of the component), :math:`N` = ``n_members`` (default :math:`n`; the
    LETKF passes :math:`n = N - 1`, the block of :math:`C` orthogonal to :math:`\mathbf 1`, see
    :func:`ensemble_kalman_filter`). The primal is one ``eigh``. Its derivative is taken
    through the matrix functions :math:`f_1(\lambda) = 1/\lambda` and
    :math:`f_2(\lambda) = \sqrt{N-1}/\sqrt{\lambda}` with the Daleckii--Krein formula
    :math:`\mathrm d f(C) = V (D_f \circ V^\top \mathrm dC\, V) V^\top`, :math:`D_f` the divided
    differences of :math:`f` on the eigenvalues, which is finite when
    eigenvalues repeat. They always do in the LETKF: with :math:`k < N - 1` local observations
    :math:`C_i` has the eigenvalue :math:`N-1` with multiplicity :math:`N - 1 - k` or more, where
    differentiating through ``eigh`` itself gives NaN.
    """
    if n_members is None:
        n_members = C.shape[-1]
    check_positive_int(n_members, "n_members")
    return _local_etkf(float(np.sqrt(n_members - 1.0)), C, g, a)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _local_etkf(scale, C, g, a):
    lam, V = jnp.linalg.eigh(C)
    Va, Vg = V.T @ a, V.T @ g
    scale = jnp.asarray(scale, C.dtype)
    return jnp.sum(Va * Vg / lam), V @ (Va * (scale / jnp.sqrt(lam)))


@_local_etkf.defjvp
def _local_etkf_jvp(scale, primals, tangents):
    C, g, a = primals
    dC, dg, da = tangents
    lam, V = jnp.linalg.eigh(C)
    scale = jnp.asarray(scale, C.dtype)
    Va, Vg = V.T @ a, V.T @ g
    f1 = 1.0 / lam
    f2 = scale / jnp.sqrt(lam)
    M = V.T @ (0.5 * (dC + dC.T)) @ V
    D1 = _divided_differences(lam, lambda z: 1.0 / z, lambda z: -1.0 / z**2)
    D2 = _divided_differences(lam, lambda z: scale / jnp.sqrt(z), lambda z: -0.5 * scale * z ** (-1.5))
    dx = jnp.sum((V.T @ da) * Vg * f1) + jnp.sum(Va * f1 * (V.T @ dg)) + Va @ ((D1 * M) @ Vg)
    du = V @ (f2 * (V.T @ da) + (D2 * M) @ Va)
    return (jnp.sum(Va * Vg * f1), V @ (Va * f2)), (dx, du)


#: Bytes of gathered local blocks (whitened anomalies, ``C_i`` and its eigenvectors) processed at
#: once by the LETKF; more grid points than fit go through ``lax.map`` in batches of this size.
LOCAL_BATCH_BYTES = 32 * 2**20
#: The LETKF forms every local matrix from one dense GEMM over all ``m`` observations (instead of
#: gathering each analysis's ``k`` observations) when ``m <= DENSE_LOCAL_RATIO * k``: the dense
#: product does at most this many times the gathered arithmetic, as one large matrix product.
DENSE_LOCAL_RATIO = 2


def _diagonal_noise_std(observation):
    """``(m,)`` noise standard deviations when ``R`` is diagonal (``noise_var``, or a concrete
    ``R_full`` with zero off-diagonal entries), else ``None`` (dense whitening)."""
    var = getattr(observation, "noise_var", None)
    if var is not None:
        return jnp.sqrt(jnp.asarray(var))
    R = observation.R
    if is_concrete(R):
        Rn = np.asarray(R)
        if Rn.ndim == 2 and not np.any(Rn - np.diag(np.diagonal(Rn))):
            return jnp.sqrt(jnp.diagonal(jnp.asarray(R)))
    return None


@functools.lru_cache(maxsize=32)
def _cached_local_observations(geometry, locs_bytes, m, radius, block):
    locs = np.frombuffer(locs_bytes, dtype=np.int64, count=m)
    members = geometry.partition(block)
    return geometry.local_observations(locs, radius, members), members


def _local_setup(dim, observation, localization_radius, geometry, local_domain=None):
    """Check the geometry, the radius and the local domains; gather the local observations (NumPy,
    once per call, cached per geometry, observation layout, radius and domain shape). Returns
    ``(LocalObservations, radius, members)``: ``members`` ``(n, B)`` the state indices of each
    local domain, or ``None`` for one analysis per grid point."""
    geometry = PeriodicRing(dim) if geometry is None else geometry
    if not isinstance(geometry, Geometry):
        raise ValueError("localization must be a geometry of assimilax.filters.localization (PeriodicRing, "
                         f"PeriodicGrid2D, Locations), got {type(geometry).__name__}")
    if geometry.size != dim:
        raise ValueError(f"localization geometry has {geometry.size} grid points, expected the state dimension {dim}")
    where = getattr(observation, "H", getattr(observation, "indices", None))
    if where is not None and not is_concrete(where):
        raise ValueError("localization needs concrete observation locations (H or indices), got a traced array")
    locs = np.ascontiguousarray(observation_locations(observation), dtype=np.int64)
    if is_concrete(localization_radius):
        rad = np.asarray(localization_radius)
        if rad.shape != () or not rad > 0:
            raise ValueError(f"localization_radius must be a positive scalar, got {localization_radius!r}")
        gather_radius = float(rad)
    else:  # traced radius: the neighbour sets cannot depend on it; gather every observation
        gather_radius = float("inf")
    block = 1 if local_domain is None else local_domain
    if isinstance(block, (list, np.ndarray)):
        block = tuple(np.asarray(block).tolist())
    try:
        hash(block)
    except TypeError:
        raise ValueError(f"local_domain must be an int or a tuple of ints, got {local_domain!r}") from None
    local, members = _cached_local_observations(geometry, locs.tobytes(), locs.size, gather_radius, block)
    members = None if members.shape[1] == 1 else members
    return local, jnp.asarray(localization_radius, dtype=jnp.result_type(float)), members


def _local_batch(n, k, N, itemsize, B=1):
    """Local analyses (of ``n``, one per grid point or per domain of ``B`` points) per batch so
    that a batch's gathered blocks (``k x N`` anomalies, ``N x N`` matrices, ``B x N`` state
    anomalies in and out) stay within :data:`LOCAL_BATCH_BYTES`."""
    per_point = (2 * k * N + 4 * N * N + 2 * B * N) * itemsize
    return int(max(1, min(n, LOCAL_BATCH_BYTES // per_point)))


def _local_analyses(Ys, dys, A, idx, sqrt_rho, batch, square_root="symmetric", members=None):
    r"""One ETKF analysis per grid point (or per local domain) from its gathered, tapered
    observations.

    ``Ys`` ``(N, m)`` whitened anomalies, ``dys`` ``(m,)`` whitened innovation, ``A`` ``(N, d)``
    forecast anomalies, ``idx``/``sqrt_rho`` ``(n, k)`` local observation indices and
    :math:`\sqrt{\rho}` (zero at padding), one row per grid point (``members=None``, ``n = d``) or
    per local domain (``members`` ``(n, B)``: the state indices of each domain, a partition of
    the grid; each domain's transform is applied to the anomalies of all its points). Returns the
    mean increments ``(d,)`` and the analysis anomalies, transposed, ``(d, N)``: for point
    :math:`i` (of domain :math:`b`: read :math:`C_b` for :math:`C_i`), with
    :math:`C_i = \tilde Y^\top \tilde Y + (N-1) I = V \Lambda V^\top` (:math:`\tilde Y` the
    ``(k, N)`` gathered and tapered rows of :math:`Y_s^\top`), :math:`\delta x_i = a_i^\top V
    \Lambda^{-1} V^\top \tilde Y^\top \tilde d` and :math:`\sqrt{N-1}\, V \Lambda^{-1/2}
    V^\top a_i` (``square_root="eigenvector"``: :math:`\sqrt{N-1}\, \tilde V \tilde\Lambda^{-1/2} a_i`,
    columns in the order of ascending eigenvalues of :math:`C_i^{-1}`)."""
    N = Ys.shape[0]
    dtype = Ys.dtype
    deflate = square_root != "eigenvector"
    if deflate:
        # C_i 1 = (N-1) 1 (the anomalies are centred), so Q0 C_i Q0 = diag(N-1, C~_i) with Q0 the
        # reflection exchanging e_1 and 1/sqrt(N): the symmetric root is Q0 diag((N-1)^{-1/2},
        # C~_i^{-1/2}) Q0 and the first rows of Q0 Ys, Q0 A, Q0 g vanish, so each local analysis
        # needs only the block C~_i of order N-1 (the numbers of the order-N path, to rounding)
        q0 = _householder_q0(N, dtype)
        obs_rows, state_rows, n = q0(Ys)[1:].T, q0(A)[1:].T, N - 1  # (m, N-1), (d, N-1)
    else:
        obs_rows, state_rows, n = Ys.T, A.T, N  # gathering rows keeps an observation's anomalies contiguous
    eye = jnp.eye(n, dtype=dtype)
    scale = float(np.sqrt(N - 1.0))

    def apply_block(C, g, a):  # a: (n,), or (B, n) for a domain's points, which share C
        if deflate:
            def apply(ai):
                return _local_etkf(scale, C, g, ai)
        else:  # the eigenvector root of the EnSF repository
            lam, V = jnp.linalg.eigh(C)
            Vg = V.T @ g

            def apply(ai):
                return jnp.sum((V.T @ ai) * Vg / lam), V[:, ::-1] @ (ai * (scale / jnp.sqrt(lam[::-1])))
        return apply(a) if a.ndim == 1 else jax.vmap(apply)(a)  # one eigh per domain

    def one(args):
        ix, sr, a = args  # (k,), (k,), (n,) or (B, n)
        Yl = obs_rows[ix] * sr[:, None]  # (k, n)
        return apply_block(Yl.T @ Yl + (N - 1) * eye, Yl.T @ (dys[ix] * sr), a)

    a_rows = state_rows if members is None else state_rows[members]
    n_local, k = idx.shape
    m = obs_rows.shape[0]
    if batch >= n_local and m <= DENSE_LOCAL_RATIO * k:
        # Few observations in all (m <= DENSE_LOCAL_RATIO k): C_b = sum_j rho_bj y_j y_j^T + (N-1) I and
        # g_b = sum_j rho_bj y_j d_j are linear in the taper, so every local analysis's C_b and g_b
        # come from one GEMM of the dense (n_local, m) taper with the per-observation products
        # (upper triangles only): the same sums as the gathered path, in another order, and several
        # times faster on CPU than n_local small batched products of (k, n) blocks.
        rho = jnp.zeros((n_local, m), dtype).at[jnp.arange(n_local)[:, None], idx].add(sqrt_rho * sqrt_rho)
        iu, ju = np.triu_indices(n)
        tri = np.zeros((n, n), dtype=np.int64)
        tri[iu, ju] = np.arange(iu.size)
        tri[ju, iu] = np.arange(iu.size)
        products = jnp.concatenate([obs_rows[:, iu] * obs_rows[:, ju], obs_rows * dys[:, None]], axis=1)
        CG = rho @ products  # (n_local, n (n + 1) / 2 + n)
        C = CG[:, tri] + (N - 1) * eye[None]
        dx, AaT = jax.vmap(apply_block)(C, CG[:, iu.size:], a_rows)
    elif batch >= n_local:
        dx, AaT = jax.vmap(one)((idx, sqrt_rho, a_rows))
    else:
        # Equal batches, the last one padded with empty analyses (no observation: C = (N-1) I):
        # lax.map then has no remainder, so the program holds one batched eigh, not two. Two
        # independent batched eigh calls may run at once on XLA's intra-op pool, and jaxlib's
        # LAPACK kernel splits its batch over that same pool and waits: with both pool threads
        # waiting (a 2-core machine) the program deadlocks (seen at d = 1,600 under load).
        n_batches = -(-n_local // batch)
        size = -(-n_local // n_batches)
        pad = n_batches * size - n_local

        def padded(x):
            return jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x

        dx, AaT = jax.lax.map(one, tuple(padded(x) for x in (idx, sqrt_rho, a_rows)), batch_size=size)
        dx, AaT = dx[:n_local], AaT[:n_local]
    if members is not None:
        inverse = jnp.argsort(members.reshape(-1))  # members is a partition of range(d)
        dx, AaT = dx.reshape(-1)[inverse], AaT.reshape(-1, n)[inverse]
    if deflate:
        AaT = q0(jnp.concatenate([jnp.zeros((1, AaT.shape[0]), dtype), AaT.T])).T  # (d, N)
    return dx, AaT


# ----------------------------------------------------------------------------- public API
def ensemble_kalman_filter(
    model,
    observation,
    ys: Float[Array, "T m"],
    ensemble0: Float[Array, "N d"],
    *,
    key: PRNGKeyArray,
    steps_per_obs: int = 1,
    method: str = "sqrt",
    inflation=1.0,
    rotate: bool = False,
    square_root: str | None = None,
    localization_radius=None,
    localization: Geometry | None = None,
    local_domain=None,
    store_ensembles: bool = True,
) -> EnsembleFilterResult:
    r"""Ensemble Kalman filter: ETKF / LETKF (``method="sqrt"``) or stochastic EnKF
    (``method="pertobs"``).

    Each cycle forecasts every member through ``steps_per_obs`` model steps (adding the model's
    noise, ``model.noise_cov`` per step, independently per member), inflates the forecast
    anomalies :math:`A \leftarrow \lambda A`, then assimilates :math:`y_t`.

    *Square root (ETKF)* :cite:`bishop2001adaptive,hunt2007efficient,sakov2008implications`:
    with whitened :math:`Y_s = Y L_R^{-\top}`, :math:`d_s = L_R^{-1}(y - \bar y)` (:math:`R = L_R L_R^\top`),

    .. math::
        C = Y_s Y_s^\top + (N-1) I = V\Lambda V^\top,\quad
        w = C^{-1} Y_s d_s,\quad T = \sqrt{N-1}\, V \Lambda^{-1/2} V^\top,\quad
        E^a = \mathbf 1 \bar x^\top + (\mathbf 1 w^\top + T) A .

    The symmetric square root keeps the analysis mean at :math:`\bar x + A^\top w`
    :cite:`sakov2008implications`. ``rotate=True`` then multiplies the analysis anomalies by a
    random mean-preserving orthogonal matrix :math:`\Omega`. ``square_root="cholesky"`` (the
    default of the global ETKF with ``rotate=True``) uses the mean-preserving root
    :math:`T' = \sqrt{N-1}\, Q_0 \operatorname{diag}\big((N-1)^{-1/2}, L^{-1}\big) Q_0`, with
    :math:`Q_0` the Householder reflection exchanging :math:`e_1` and :math:`\mathbf 1/\sqrt N` and
    :math:`L L^\top` the lower block of the block-diagonal :math:`Q_0 C Q_0`: a Cholesky factor of
    order :math:`N-1` instead of an eigendecomposition of order :math:`N` (about 4x cheaper at
    :math:`N = 28`). :math:`T' = U T` with :math:`U` orthogonal and :math:`U\mathbf 1 = \mathbf 1`, so
    :math:`\Omega T'` and :math:`\Omega T` have the same law (Haar measure is invariant under
    right multiplication): with the rotation, the two roots give the same random filter, drawn
    differently from the same key; without it they differ by :math:`U`, which keeps the mean and
    the covariance. ``square_root="eigenvector"`` uses instead
    :math:`T = \sqrt{N-1}\,\tilde V\tilde\Lambda^{-1/2}` (the eigenvectors of :math:`C^{-1}` in
    ascending order of its eigenvalues, without the closing :math:`V^\top`), as the LETKF of the
    EnSF repository does :cite:`bao2024ensemble`. It satisfies :math:`T T^\top = (N-1) C^{-1}`,
    but the analysis covariance :math:`A^\top T^\top T A/(N-1)` needs :math:`T^\top T = (N-1) C^{-1}`,
    and here :math:`T^\top T = (N-1)\tilde\Lambda^{-1}`: member :math:`n`'s anomaly is scaled by the
    :math:`n`-th eigenvalue, a pairing set by the sort order, and then rotated by :math:`\tilde V`
    (per grid point, with the eigensolver's signs); the anomalies no longer sum to zero, so the
    analysis mean also moves off :math:`\bar x + A^\top w` :cite:`sakov2008implications`. It is
    here to measure what that choice costs, not for use.

    *LETKF* (``localization_radius`` :math:`\ell` not ``None``) :cite:`hunt2007efficient`: for
    each grid point :math:`i` of the geometry ``localization`` (default: the periodic 1-D ring of
    ``model.dim`` sites, :class:`~assimilax.filters.localization.PeriodicRing`) the same transform
    is computed with observation :math:`j` weighted by
    :math:`\rho_{ij} = \mathrm{GC}(\mathrm{dist}(x_i, o_j); \ell)` (:func:`gaspari_cohn`), i.e.
    columns of :math:`Y_s` and entries of :math:`d_s` scaled by :math:`\sqrt{\rho_{ij}}`
    (exactly :math:`R^{-1} \to \rho R^{-1}` for diagonal :math:`R`), and only component
    :math:`i` of the analysis is kept:

    .. math::
        C_i = \textstyle\sum_{j \in \mathcal J_i} \rho_{ij}\, y_{s,j} y_{s,j}^\top + (N-1) I
        = V_i \Lambda_i V_i^\top,\quad
        x^a_i = \bar x_i + a_i^\top C_i^{-1} \textstyle\sum_{j} \rho_{ij}\, y_{s,j} d_{s,j},\quad
        A^a_{:,i} = \sqrt{N-1}\, V_i \Lambda_i^{-1/2} V_i^\top a_i ,

    with :math:`a_i` the forecast anomalies of component :math:`i` and
    :math:`\mathcal J_i = \{j : \mathrm{dist}(x_i, o_j) \le 2 \cdot 1.82\,\ell\}` the
    observations where the taper is not zero, gathered once per call
    (:meth:`~assimilax.filters.localization.Geometry.local_observations`), so a cycle costs
    :math:`O(d\,(k N^2 + N^3))` for :math:`k = \max_i |\mathcal J_i|` instead of
    :math:`O(d\, m N^2)`. Observation locations are ``argmax |H|`` per row
    (:class:`~assimilax.observations.LinearObservation`) or ``.indices`` (nonlinear operators),
    :func:`~assimilax.filters.localization.observation_locations`. The grid points are processed
    in batches (``vmap``; ``lax.map`` over batches when the gathered blocks would exceed
    ``assimilax.filters.enkf.LOCAL_BATCH_BYTES``, 32 MiB). A traced ``localization_radius`` (e.g.
    under ``vmap`` over radii) cannot choose the neighbour sets: every observation is then
    gathered for every grid point (the same numbers, at the cost :math:`O(d\, m N^2)`).

    *Whitening.* A diagonal :math:`R` (``observation.noise_var``, or a concrete ``R`` with zero
    off-diagonal entries) is whitened as a vector, :math:`Y_s = Y \operatorname{diag}(1/\sigma)`,
    :math:`O(m)` memory. A non-diagonal :math:`R` keeps the dense whitening by
    :math:`L_R^{-1}` (an :math:`m \times m` matrix); with localisation the whitened component
    :math:`j` is then tapered at the location of observation :math:`j`, as before this change
    (exact for diagonal :math:`R` only).

    *Perturbed observations* :cite:`burgers1998analysis,evensen2009data`: with centred
    perturbations :math:`D` (rows :math:`\sim\mathcal N(0,R)`, ensemble mean removed),

    .. math:: E^a = E + (\mathbf 1 y^\top - D - E^o)\,(Y^\top Y + (N-1)R)^{-1} Y^\top A ,

    computed in whitened observation space with one eigendecomposition of
    :math:`Y_s^\top Y_s + (N-1) I_m`.

    Works in float32; float64 is more accurate for large ensembles.

    **Arguments:**

    - ``model``: a :class:`~assimilax.models.DynamicalModel`; ``observation``: an observation
      operator with ``state_dim == model.dim``.
    - ``ys`` ``(T, m)``; ``ensemble0`` ``(N, d)`` with ``N >= 2``: sample of the prior on :math:`x_0`.
    - ``key``: PRNG key (model noise, perturbed observations, rotations).
    - ``steps_per_obs``: model steps per cycle; ``method``: ``"sqrt"`` or ``"pertobs"``;
      ``inflation`` :math:`\lambda \ge 1` typically; ``rotate``; ``square_root``
      (``"symmetric"``, ``"cholesky"`` (global ETKF only) or ``"eigenvector"``, ``"sqrt"`` only;
      default ``None``: ``"cholesky"`` for the global ETKF with ``rotate=True``, else
      ``"symmetric"``); ``localization_radius``
      :math:`\ell > 0` (``"sqrt"`` only); ``localization``: a
      :class:`~assimilax.filters.localization.Geometry` with ``size == model.dim``
      (:class:`~assimilax.filters.localization.PeriodicRing`,
      :class:`~assimilax.filters.localization.PeriodicGrid2D`,
      :class:`~assimilax.filters.localization.Locations`; needs ``localization_radius``; default
      the periodic ring); ``store_ensembles``: keep the ``(T, N, d)`` analysis ensembles.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` (``log_likelihood`` and
    ``ess`` are ``None``).

    Jit- and vmap-able (e.g. ``jax.vmap(lambda k: ensemble_kalman_filter(..., key=k))``);
    raises ``ValueError`` on bad input before compilation and
    :class:`~assimilax.FilterDivergenceError` when the analysis mean is not finite.
    """
    _check_model_observation(model, observation)
    check_ensemble(ensemble0, model.dim, "ensemble0")
    check_observations(ys, observation.obs_dim, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    if method not in ("sqrt", "pertobs"):
        raise ValueError(f"method must be 'sqrt' or 'pertobs', got {method!r}")
    localize = localization_radius is not None
    if square_root is None:
        square_root = "cholesky" if rotate and method == "sqrt" and not localize else "symmetric"
    if square_root not in SQUARE_ROOTS:
        raise ValueError(f"square_root must be one of {SQUARE_ROOTS} or None, got {square_root!r}")
    if square_root != "symmetric" and method != "sqrt":
        raise ValueError("square_root applies to method='sqrt' only")
    if square_root == "cholesky" and localize:
        raise ValueError("square_root='cholesky' is for the global ETKF only: in the LETKF each grid "
                         "point's root would differ from the symmetric one by its own rotation, which "
                         "breaks the spatial coherence of the analysis anomalies; use 'symmetric'")
    if is_concrete(inflation):
        infl = np.asarray(inflation)
        if infl.shape != () or not np.isfinite(infl) or infl <= 0:
            raise ValueError(f"inflation must be a positive finite scalar, got {inflation!r}")
    if localization is not None and not localize:
        raise ValueError("localization (a geometry) needs localization_radius, the taper radius; got None")
    if localize:
        if method != "sqrt":
            raise ValueError("localization_radius is supported for method='sqrt' (LETKF) only")
        local, radius, members = _local_setup(model.dim, observation, localization_radius, localization,
                                              local_domain)
        B = 1 if members is None else members.shape[1]
        batch = _local_batch(local.indices.shape[0], local.k_max, np.shape(ensemble0)[0],
                             jnp.dtype(jnp.asarray(ensemble0).dtype).itemsize, B)
        local = LocalObservations(*(jnp.asarray(a) for a in local))
        members = None if members is None else jnp.asarray(members, dtype=jnp.int32)
    else:
        if local_domain is not None:
            raise ValueError("local_domain needs localization_radius (it partitions the LETKF's local analyses)")
        local, radius, batch, members = None, None, 0, None
    noise_std = _diagonal_noise_std(observation)
    res = _enkf(
        model, observation, jnp.asarray(ys), jnp.asarray(ensemble0), key,
        jnp.asarray(inflation, dtype=jnp.result_type(float)), radius, local, noise_std, members,
        steps_per_obs=steps_per_obs, method=method, rotate=bool(rotate), localize=localize,
        store_ensembles=bool(store_ensembles), local_batch=batch, square_root=square_root,
    )
    name = "ensemble_kalman_filter (LETKF)" if localize else f"ensemble_kalman_filter ({method})"
    raise_if_diverged(res.analysis_mean, name)
    return res


def _analysis_step(observation, radius, local, noise_std, dtype, *, method, rotate, localize, local_batch,
                   square_root, members=None):
    """The analysis of one cycle, ``analysis(E (N, d), y (m,), key, rot) -> E^a``, shared by
    :func:`ensemble_kalman_filter` and :class:`LETKFAnalysis` (inflation is applied before it).
    The operator's arrays are cast to ``dtype``, so that a float32 ensemble stays float32 when x64
    is enabled and the operator was built in float64."""
    observation = jax.tree_util.tree_map(lambda z: z.astype(dtype) if eqx.is_inexact_array(z) else z, observation)
    if noise_std is not None:  # diagonal R: whiten by the vector 1 / sigma, O(m) memory
        inv_std = 1.0 / noise_std.astype(dtype)

        def whiten(Z):  # Z (..., m) -> Z L_R^{-T} = Z diag(1 / sigma)
            return Z * inv_std.reshape((1,) * (Z.ndim - 1) + inv_std.shape)
    else:
        R = observation.R.astype(dtype)
        L_R = jnp.linalg.cholesky(R)
        # whitening matrix L_R^{-1}, hoisted out of the scan (triangular solves inside loops are slow on CPU)
        L_R_inv = jsl.solve_triangular(L_R, jnp.eye(R.shape[0], dtype=dtype), lower=True)

        def whiten(Z):  # Z (..., m) -> Z L_R^{-T}
            return Z @ L_R_inv.T
    if localize:
        sqrt_rho = taper_weights(local._replace(distances=local.distances.astype(dtype)),
                                 radius.astype(dtype))  # (d, k), zero at padding
    h = jax.vmap(observation)

    def analysis(E, y, key, rot):
        N = E.shape[0]
        mu = member_mean(E, keepdims=True)
        A = E - mu
        Eo = h(E)
        yo = member_mean(Eo, keepdims=True)
        Y = Eo - yo
        if method == "pertobs":
            # whitened: C = Y^T Y + (N-1) R = L_R (Ys^T Ys + (N-1) I) L_R^T, Ys = Y L_R^{-T}
            Z = jax.random.normal(key, Eo.shape, dtype=dtype)
            Z = Z - member_mean(Z, keepdims=True)  # centred perturbations D = Z L_R^T
            Ys = whiten(Y)
            innov_s = whiten(y[None, :] - Eo) - Z  # (N, m) = (y - D - Eo) L_R^{-T}
            lam, V = jnp.linalg.eigh(Ys.T @ Ys + (N - 1) * jnp.eye(Ys.shape[1], dtype=dtype))
            X = ((innov_s @ V) / lam[None, :]) @ V.T  # (N, m)
            return E + X @ (Ys.T @ A)
        Ys = whiten(Y)  # (N, m): Ys Ys^T = Y R^-1 Y^T
        dys = whiten(y - yo[0])
        if square_root == "cholesky":  # global ETKF only (checked by the callers)
            # rotated: rot is O of order N - 1, Omega = Q0 diag(1, O) Q0 (see _etkf_cholesky_root)
            w, Aa = _etkf_cholesky_root(Ys, dys, A, rot if rotate else None)
            xa = mu + (w @ A)[None, :]
        elif not localize:
            w, T = _etkf_transform(Ys, dys, square_root)
            Aa = T @ A
            xa = mu + (w @ A)[None, :]
        else:
            dx, Aa_T = _local_analyses(Ys, dys, A, local.indices, sqrt_rho, local_batch, square_root,
                                     members)  # (d,), (d, N)
            Aa = Aa_T.T
            xa = mu + dx[None, :]
        if rotate and square_root != "cholesky":
            Aa = rot @ Aa
        return xa + Aa

    return analysis


class LETKFAnalysis(eqx.Module):
    r"""The analysis step of :func:`ensemble_kalman_filter` alone, as an ensemble analysis
    operator ``A(E^F (N, d), y (m,)) -> E^a (N, d)``: inflation of the forecast anomalies by
    :math:`\lambda`, then the symmetric ETKF (``localization_radius=None``) or the LETKF, exactly
    the code path of the filter (the same function computes both).

    With localisation it is differentiable in the ensemble and the observation (through
    :func:`local_etkf_transform`), so it can sit inside a network trained through the cycle
    (:class:`~assimilax.learned.EnsembleStencilAnalysis`). The neighbour sets are gathered once, at
    construction (NumPy), as the filter does per call.

    **Arguments:** ``observation`` (operator with ``state_dim = d``; its ``R`` whitens), ``dim``
    :math:`d`, ``inflation`` :math:`\lambda > 0`, ``localization_radius`` :math:`\ell` (``None``: no
    localisation), ``localization`` (a geometry, default the periodic ring of ``dim`` sites),
    ``n_members`` (sizes the batches of local analyses; any ensemble size works).
    """

    observation: object
    inflation: float = eqx.field(static=True)
    radius: object
    local: object
    noise_std: object
    members: object
    localize: bool = eqx.field(static=True)
    local_batch: int = eqx.field(static=True)
    acts_on_ensemble: bool = eqx.field(static=True, default=True)

    def __init__(self, observation, dim: int, *, inflation: float = 1.0, localization_radius=None,
                 localization: Geometry | None = None, local_domain=None, n_members: int = 40):
        check_positive_int(dim, "dim")
        if observation.state_dim != dim:
            raise ValueError(f"observation operator expects states of dimension {observation.state_dim}, got dim={dim}")
        infl = float(inflation)
        if not np.isfinite(infl) or infl <= 0:
            raise ValueError(f"inflation must be a positive finite scalar, got {inflation!r}")
        if localization is not None and localization_radius is None:
            raise ValueError("localization (a geometry) needs localization_radius, the taper radius; got None")
        self.observation, self.inflation = observation, infl
        self.localize = localization_radius is not None
        if self.localize:
            local, self.radius, members = _local_setup(dim, observation, localization_radius, localization,
                                                       local_domain)
            B = 1 if members is None else members.shape[1]
            self.local_batch = _local_batch(local.indices.shape[0], local.k_max, int(n_members), 8, B)
            self.local = LocalObservations(*(jnp.asarray(a) for a in local))
            self.members = None if members is None else jnp.asarray(members, dtype=jnp.int32)
        else:
            if local_domain is not None:
                raise ValueError("local_domain needs localization_radius (it partitions the LETKF's local analyses)")
            self.radius, self.local, self.local_batch, self.members = None, None, 0, None
        self.noise_std = _diagonal_noise_std(observation)

    def __call__(self, E: Float[Array, "N d"], y: Float[Array, " m"]) -> Float[Array, "N d"]:
        dtype = E.dtype
        mu = member_mean(E, keepdims=True)
        E = mu + jnp.asarray(self.inflation, dtype) * (E - mu)
        # the operator, the taper and R are settings, not parameters: no gradient reaches them
        # (cast to the ensemble's dtype: a float32 ensemble is analysed in float32 under x64 too)
        frozen = jax.tree_util.tree_map(
            lambda z: jax.lax.stop_gradient(z).astype(dtype) if eqx.is_inexact_array(z) else z,
            (self.observation, self.radius, self.local, self.noise_std))
        step = _analysis_step(*frozen, dtype, method="sqrt",
                              rotate=False, localize=self.localize, local_batch=self.local_batch,
                              square_root="symmetric", members=self.members)
        return step(E, y.astype(dtype), None, None).astype(dtype)


@functools.partial(
    jax.jit, static_argnames=("steps_per_obs", "method", "rotate", "localize", "store_ensembles",
                              "local_batch", "square_root")
)
def _enkf(model, observation, ys, E0, key, inflation, radius, local, noise_std, members, *, steps_per_obs,
          method, rotate, localize, store_ensembles, local_batch, square_root="symmetric"):
    dtype = E0.dtype
    N = E0.shape[0]
    ys = ys.astype(dtype)
    inflation = inflation.astype(dtype)
    analysis = _analysis_step(observation, radius, local, noise_std, dtype, method=method, rotate=rotate,
                              localize=localize, local_batch=local_batch, square_root=square_root,
                              members=members)

    def cycle(E, inp):
        kf, ka = jax.random.split(inp.key)
        E = forecast_ensemble(model, E, inp.t0, kf, steps_per_obs)
        mu_f = member_mean(E, keepdims=True)
        E = mu_f + inflation * (E - mu_f)
        f_stats = (mu_f[0], mean_and_spread(E)[1])
        E = analysis(E, inp.y, ka, inp.extra)
        out = mean_and_spread(E) + f_stats + ((E,) if store_ensembles else (None,))
        return E, out

    T = ys.shape[0]
    key, krot = jax.random.split(key)
    # The random rotations do not depend on the data: all T of them are drawn before the scan,
    # in one batched product of Householder reflections (filters.rotations).
    if rotate and square_root == "cholesky":  # O of Omega = Q0 diag(1, O) Q0: the same draws
        rots = haar_orthogonal(krot, T, N - 1, dtype)
    elif rotate:
        rots = mean_preserving_rotations(krot, T, N, dtype)
    else:
        rots = jnp.zeros((T, 0, 0), dtype)
    _, (ma, sa, mf, sf, ens) = scan_cycles(cycle, E0, ys, key=key, steps_per_obs=steps_per_obs, dt=model.dt,
                                           extra=rots)
    return EnsembleFilterResult(ma, sa, mf, sf, ens)


__all__ = ["ensemble_kalman_filter", "LETKFAnalysis", "local_etkf_transform", "gaspari_cohn", "GC_SCALE", "LOCAL_BATCH_BYTES", "SQUARE_ROOTS"]
