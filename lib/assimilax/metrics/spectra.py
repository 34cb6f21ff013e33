r"""Energy spectra, enstrophy, spectral errors per band and structure functions of periodic fields.

Fields live on the periodic domain :math:`[0, 2\pi)^d` sampled at :math:`n` points per axis
(integer wavenumbers), with any batch axes in front; spectra are per field (no averaging over
the batch). With the unnormalised DFT :math:`\hat f_k = \sum_j f_j e^{-i k\cdot x_j}` over
:math:`N = n^d` points, Parseval reads :math:`\langle f^2\rangle = N^{-2}\sum_k |\hat f_k|^2`
(:math:`\langle\cdot\rangle` the grid mean), and every spectrum below is normalised so that its
sum over shells is the corresponding grid mean:

- 1-D velocity :math:`u`: :math:`E(k) = \frac{1}{2N^2}\sum_{|k'| = k} |\hat u_{k'}|^2`,
  :math:`\sum_k E(k) = \tfrac12\langle u^2\rangle`.
- 2-D vorticity :math:`\omega` of an incompressible velocity field (stream function
  :math:`\hat\psi = \hat\omega/|k|^2`, :math:`|\hat{\mathbf u}_k|^2 = |\hat\omega_k|^2/|k|^2`):
  :math:`E(k) = \frac{1}{2N^2}\sum_{k - 1/2 \le |k'| < k + 1/2} |\hat\omega_{k'}|^2/|k'|^2`,
  :math:`\sum_k E(k) = \tfrac12\langle|\mathbf u|^2\rangle`, the mean kinetic energy; the shells run
  to :math:`\operatorname{round}(\sqrt2\, n/2)` so that no mode is dropped. The enstrophy
  :math:`\tfrac12\langle\omega^2\rangle = \sum_k \sum_{|k'|\in\text{shell}} |k'|^2 E`.

For forced 2-D turbulence the direct (enstrophy) cascade gives :math:`E(k) \propto k^{-3}` above
the forcing wavenumber, steeper with large-scale drag :cite:`kraichnan1967inertial,boffetta2012two`;
shocks in Burgers turbulence give :math:`E(k) \propto k^{-2}` :cite:`bec2007burgers`.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_finite


def _field(x, ndim: int, name: str):
    x = jnp.asarray(x)
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2, got {ndim!r}")
    if x.ndim < ndim or (ndim == 2 and x.shape[-1] != x.shape[-2]):
        want = "(..., n)" if ndim == 1 else "(..., n, n)"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if x.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 points per axis, got shape {x.shape}")
    if jnp.iscomplexobj(x):
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    check_finite(x, name)
    return x


def _wavenumbers(n: int):
    return np.fft.fftfreq(n, 1.0 / n)


def _shell_sum(density, shells, n_shells: int):
    """Sum ``density`` (..., n, n) over the integer shells ``shells`` (n, n) -> (..., n_shells)."""
    onehot = jnp.asarray(shells.reshape(-1)[:, None] == np.arange(n_shells)[None, :], dtype=density.dtype)
    flat = density.reshape(density.shape[:-2] + (-1,))
    return flat @ onehot


def energy_spectrum_1d(u: Float[Array, "*batch n"]) -> Float[Array, "*batch k"]:
    r"""Energy spectrum :math:`E(k)`, :math:`k = 0..\lfloor n/2\rfloor`, of a periodic 1-D velocity
    field, normalised so that :math:`\sum_k E(k) = \tfrac12\langle u^2\rangle`.

    **Arguments:** `u`, shape ``(..., n)``, real. **Returns:** shape ``(..., n // 2 + 1)``.
    """
    u = _field(u, 1, "u")
    n = u.shape[-1]
    p = jnp.abs(jnp.fft.rfft(u, axis=-1)) ** 2 / (2.0 * n * n)
    # rfft holds k = 0..n//2 once; every other shell also has its mirror -k
    mult = np.full(n // 2 + 1, 2.0)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    return p * jnp.asarray(mult, dtype=p.dtype).reshape((1,) * (p.ndim - 1) + mult.shape)


def _vorticity_density(omega):
    n = omega.shape[-1]
    k = _wavenumbers(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    w2 = jnp.abs(jnp.fft.fft2(omega, axes=(-2, -1))) ** 2 / (2.0 * n ** 4)
    lead = (1,) * (w2.ndim - 2)
    return w2, k2.reshape(lead + k2.shape), jnp.asarray(inv, dtype=w2.dtype).reshape(lead + inv.shape)


def _shells(n: int):
    k = _wavenumbers(n)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    shells = np.floor(kk + 0.5).astype(int)
    return shells, int(shells.max()) + 1


def energy_spectrum_2d(omega: Float[Array, "*batch n n"]) -> Float[Array, "*batch k"]:
    r"""Radially averaged (shell-summed) kinetic energy spectrum of a 2-D vorticity field,
    :math:`E(k) = \frac{1}{2N^2} \sum_{\mathrm{round}|k'| = k} |\hat\omega_{k'}|^2 / |k'|^2`,
    with :math:`\sum_k E(k) = \tfrac12\langle|\mathbf u|^2\rangle` exactly (the mean mode of
    :math:`\omega`, which no periodic velocity field has, is ignored).

    **Arguments:** `omega`, shape ``(..., n, n)``, real. **Returns:** shape ``(..., K)``,
    :math:`K = \mathrm{round}(\sqrt2\,n/2) + 1`, shells :math:`k = 0..K-1`.
    """
    omega = _field(omega, 2, "omega")
    w2, _, inv = _vorticity_density(omega)
    shells, n_shells = _shells(omega.shape[-1])
    return _shell_sum(w2 * inv, shells, n_shells)


def enstrophy_spectrum_2d(omega: Float[Array, "*batch n n"]) -> Float[Array, "*batch k"]:
    r"""Shell-summed enstrophy spectrum :math:`Z(k) = \frac{1}{2N^2}\sum_{\mathrm{round}|k'|=k}
    |\hat\omega_{k'}|^2` (the mean mode excluded), :math:`\sum_k Z(k) = \tfrac12\langle\omega^2\rangle`
    for a zero-mean :math:`\omega`. Shapes as :func:`energy_spectrum_2d`."""
    omega = _field(omega, 2, "omega")
    w2, k2, _ = _vorticity_density(omega)
    shells, n_shells = _shells(omega.shape[-1])
    return _shell_sum(w2 * jnp.asarray(k2 > 0, dtype=w2.dtype), shells, n_shells)


def enstrophy(omega: Float[Array, "*batch n n"]) -> Float[Array, "*batch"]:
    r"""Mean enstrophy :math:`\tfrac12\langle\omega^2\rangle` of a 2-D vorticity field
    (grid mean over the last two axes). ``(..., n, n) -> (...)``."""
    omega = _field(omega, 2, "omega")
    return 0.5 * jnp.mean(omega ** 2, axis=(-2, -1))


def kinetic_energy_2d(omega: Float[Array, "*batch n n"]) -> Float[Array, "*batch"]:
    r"""Mean kinetic energy :math:`\tfrac12\langle|\mathbf u|^2\rangle` of the velocity whose
    vorticity is ``omega`` (``(..., n, n) -> (...)``), :math:`\sum_k E(k)` of
    :func:`energy_spectrum_2d`."""
    omega = _field(omega, 2, "omega")
    w2, _, inv = _vorticity_density(omega)
    return jnp.sum(w2 * inv, axis=(-2, -1))


class BandError(NamedTuple):
    """Energy of the error and of the reference per wavenumber band, and their ratio."""

    error: Float[Array, "*batch bands"]
    reference: Float[Array, "*batch bands"]
    relative: Float[Array, "*batch bands"]


def band_error(estimate: Float[Array, "*batch n"], truth: Float[Array, "*batch n"], edges: Sequence[float], *,
               ndim: int = 1) -> BandError:
    r"""Spectral error per wavenumber band :math:`[e_b, e_{b+1})`: the energy spectrum
    (:func:`energy_spectrum_1d` for ``ndim=1`` velocity fields, :func:`energy_spectrum_2d` for
    ``ndim=2`` vorticity fields) of ``estimate - truth`` and of ``truth`` summed over each band,
    and their ratio (``nan`` where the truth has no energy in the band, up to round-off).

    **Arguments:** `estimate`, `truth` of equal shape ``(..., n)`` or ``(..., n, n)``; `edges`
    increasing band edges in shell wavenumber (length ``B + 1``); `ndim` 1 or 2.

    **Returns:** :class:`BandError` of arrays ``(..., B)``.
    """
    estimate, truth = _field(estimate, ndim, "estimate"), _field(truth, ndim, "truth")
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate and truth must have the same shape, got {estimate.shape} and {truth.shape}")
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must be an increasing sequence of at least 2 values, got {edges.tolist()}")
    spec = energy_spectrum_1d if ndim == 1 else energy_spectrum_2d
    e_err, e_ref = spec(estimate - truth), spec(truth)
    k = np.arange(e_ref.shape[-1])
    member = jnp.asarray((k[:, None] >= edges[None, :-1]) & (k[:, None] < edges[None, 1:]), dtype=e_ref.dtype)
    err, ref = e_err @ member, e_ref @ member
    floor = jnp.finfo(ref.dtype).eps * jnp.sum(e_ref, axis=-1, keepdims=True)  # round-off of an empty band
    has = ref > floor
    return BandError(err, ref, jnp.where(has, err / jnp.where(has, ref, 1.0), jnp.nan))


def structure_function(field: Float[Array, "*batch n"], *, ndim: int = 1, order: int = 2) -> Float[Array, "*batch r"]:
    r"""Structure function :math:`S_p(r) = \langle |f(x + r) - f(x)|^p\rangle` of a periodic scalar
    field at grid separations :math:`r = 0..\lfloor n/2\rfloor` (in grid steps :math:`2\pi/n`); in
    2-D the mean of the separations along each axis.

    For a smooth field :math:`S_2(r) \propto r^2` at small :math:`r`; shocks give
    :math:`S_p(r) \propto r` for :math:`p \ge 1` (a jump of size :math:`\Delta u` seen with
    probability :math:`\propto r`) :cite:`bec2007burgers`.

    **Arguments:** `field` of shape ``(..., n)`` or ``(..., n, n)``; `ndim` 1 or 2; `order` :math:`p > 0`.
    **Returns:** shape ``(..., n // 2 + 1)``.
    """
    field = _field(field, ndim, "field")
    if not order > 0:
        raise ValueError(f"order must be positive, got {order!r}")
    n = field.shape[-1]
    axes = (-1,) if ndim == 1 else (-2, -1)
    out = []
    for r in range(n // 2 + 1):
        s = 0.0
        for ax in axes:
            s = s + jnp.mean(jnp.abs(jnp.roll(field, -r, axis=ax) - field) ** order, axis=axes)
        out.append(s / len(axes))
    return jnp.stack(out, axis=-1)


def spectral_slope(spectrum: Float[Array, "*batch k"], k_min: float, k_max: float) -> Float[Array, "*batch"]:
    r"""Least-squares slope :math:`\alpha` of :math:`\log E(k) = c + \alpha \log k` over the shells
    :math:`k_{\min} \le k \le k_{\max}` (:math:`k` the index along the last axis; shells with
    :math:`E(k) \le 0` are refused). ``(..., K) -> (...)``."""
    e = jnp.asarray(spectrum)
    k = np.arange(e.shape[-1])
    sel = (k >= k_min) & (k <= k_max) & (k > 0)
    if sel.sum() < 2:
        raise ValueError(f"need at least 2 shells in [{k_min}, {k_max}] within 1..{e.shape[-1] - 1}")
    es = e[..., sel]
    check_finite(es, "spectrum")
    if bool(jnp.any(es <= 0)):
        raise ValueError("spectrum must be positive on the fitted shells")
    lk = np.log(k[sel])
    lk = lk - lk.mean()
    le = jnp.log(es)
    le = le - jnp.mean(le, axis=-1, keepdims=True)
    return le @ jnp.asarray(lk / np.sum(lk ** 2), dtype=le.dtype)


__all__ = ["spectral_slope", "energy_spectrum_1d", "energy_spectrum_2d", "enstrophy_spectrum_2d", "enstrophy", "kinetic_energy_2d",
           "BandError", "band_error", "structure_function"]
