r"""How much high-resolution structure a field has: tail energies, conditional explained variance
across resolution levels, and a Gaussian control with the same second-order statistics.

For a hierarchy :math:`P^r` (:class:`~assimilax.multiscale.Hierarchy`) and fields
:math:`x` at the finest level,

- the **tail** at level :math:`r` is :math:`x - L^r P^r x` with :math:`L^r` the optimal linear lift
  (the conditional mean for Gaussian data); its weighted energy
  :math:`E_r = E \sum_k |k|^{2p} |\widehat{(x - L^rP^rx)}_k|^2` relative to that of :math:`x` is
  the fraction of energy (:math:`p = 0` for a velocity, :math:`p = -1` for a 2-D vorticity) or of
  enstrophy (:math:`p = 1` for a 1-D velocity, :math:`p = 0` for a vorticity) that level :math:`r`
  cannot represent (:func:`~assimilax.multiscale.tail_fractions`);
- the **conditional explained variance** of level :math:`r+1` (the May 7 notes' conditioning
  :math:`p(x^{r+1}_t \mid x^r_t, x^{r+1}_{t-1})`) compares the best linear predictors of
  :math:`x^{r+1}_t` from :math:`x^r_t` alone and from :math:`(x^r_t, x^{r+1}_{t-1})`, fitted on
  training pairs and scored on held-out ones (:func:`~assimilax.multiscale.conditional_gain`).

Both use the statistical homogeneity of the fields (periodic domain, statistics invariant under
shifts): the optimal linear predictor then commutes with the coarse shifts and acts on each fold
:math:`\{q + jm\}` of fine wavenumbers separately (see the projections module), so the
regressions are small (one per fold, :math:`1 + f^d` complex features) and well posed with a few
hundred samples, where a dense regression on :math:`n^d` pixels would not be.

Second-order quantities are, by construction, the same for a Gaussian field with the same power
spectrum and lag-one covariance (:func:`~assimilax.multiscale.gaussian_twin`); what separates a multiscale field from
that control is non-Gaussian structure, e.g. the flatness of its tails (:func:`~assimilax.multiscale.tail_flatness`):
:math:`3` for any Gaussian field, larger for intermittent ones (shocks, vortices)
:cite:`bec2007burgers,boffetta2012two`.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from .._validation import check_finite
from .projections import Hierarchy, mean_power, stationary_lift


def _axes(ndim: int) -> tuple:
    return (-1,) if ndim == 1 else (-2, -1)


def _samples(x, hierarchy: Hierarchy, level: int, name: str):
    x = jnp.asarray(x)
    want = hierarchy.shape(level)
    if x.ndim < hierarchy.ndim + 1 or x.shape[x.ndim - hierarchy.ndim:] != want:
        raise ValueError(f"{name} must have shape (S, {', '.join(map(str, want))}) (samples first), got {x.shape}")
    check_finite(x, name)
    return x.reshape((-1,) + want)


def _k_weight(n: int, ndim: int, k_power: float, dtype):
    k = np.fft.fftfreq(n, 1.0 / n)
    k2 = k ** 2 if ndim == 1 else k[:, None] ** 2 + k[None, :] ** 2
    if k_power < 0:
        w = np.where(k2 > 0, np.where(k2 > 0, k2, 1.0) ** k_power, 0.0)
    else:
        w = k2 ** k_power if k_power != 0 else np.ones_like(k2)
    return jnp.asarray(w, dtype=dtype)


def _weighted_energy(x, ndim: int, k_power: float):
    """sum_k |k|^(2p) |X_k|^2 / N^2 per sample (the grid-mean of |x|^2 for p = 0)."""
    n = x.shape[-1]
    X = jnp.fft.fftn(x, axes=_axes(ndim))
    w = _k_weight(n, ndim, k_power, x.dtype)
    w = w.reshape((1,) * (X.ndim - ndim) + w.shape)
    return jnp.sum(w * jnp.abs(X) ** 2, axis=_axes(ndim)) / float(n ** ndim) ** 2


class TailFractions(NamedTuple):
    """Per level ``r = 0..R-1`` (``R`` the finest): ``sizes[r]``, the mean weighted tail energy
    ``tail[r]`` per sample, its fraction ``fraction[r]`` of the fields' mean weighted energy
    ``total``, and the per-sample fractions ``per_sample[r, s]`` (for intervals over samples)."""

    sizes: tuple
    tail: Float[Array, " R"]
    fraction: Float[Array, " R"]
    total: float
    per_sample: Float[Array, "R S"]


def tail_fractions(fields: Float[Array, "S n"], hierarchy: Hierarchy, *, k_power: float = 0.0,
                   train: Optional[Float[Array, "S2 n"]] = None, lift: str = "optimal") -> TailFractions:
    r"""Fraction of weighted energy above each level: :math:`\sum_s E_r(x_s) / \sum_s E(x_s)` with
    :math:`E(x) = \sum_k |k|^{2p} |\hat x_k|^2 / N^2` and :math:`E_r(x) = E(x - L^r P^r x)`.

    **Arguments:**

    - `fields`: held-out fields at the finest level, shape ``(S, n)`` or ``(S, n, n)``.
    - `hierarchy`: the levels.
    - `k_power`: :math:`p` (see the module docstring: energy or enstrophy of a velocity or vorticity).
    - `train`: fields from which the power spectrum of the optimal lift is estimated
      (default: `fields` themselves).
    - `lift`: ``"optimal"`` (homogeneous Wiener lift, :func:`stationary_lift_weights`) or
      ``"default"`` (piecewise constant / zero-padding).

    **Returns:** :class:`TailFractions`.
    """
    R = hierarchy.finest
    x = _samples(fields, hierarchy, R, "fields")
    if lift not in ("optimal", "default"):
        raise ValueError(f"lift must be 'optimal' or 'default', got {lift!r}")
    power = mean_power(_samples(train, hierarchy, R, "train") if train is not None else x, ndim=hierarchy.ndim)
    total = _weighted_energy(x, hierarchy.ndim, k_power)
    tails = []
    for r in range(R):
        xr = hierarchy.restrict(x, r)
        if lift == "optimal":
            up = stationary_lift(xr, hierarchy.lift_weights(power, r), ndim=hierarchy.ndim)
        else:
            up = hierarchy.lift(xr, r)
        tails.append(_weighted_energy(x - up, hierarchy.ndim, k_power))
    tails = jnp.stack(tails)
    tot = float(jnp.sum(total))
    return TailFractions(tuple(hierarchy.sizes[:R]), jnp.mean(tails, axis=1), jnp.sum(tails, axis=1) / tot,
                         float(jnp.mean(total)), tails / jnp.where(total > 0, total, 1.0)[None, :])


def _fold(X, f: int, m: int, ndim: int):
    """(S, n) -> (S, f, m) or (S, n, n) -> (S, f*f, m*m): fine wavenumber k = j*m + q."""
    S = X.shape[0]
    if ndim == 1:
        return X.reshape(S, f, m)
    return X.reshape(S, f, m, f, m).transpose(0, 1, 3, 2, 4).reshape(S, f * f, m * m)


def _fit_predict(phi_tr, z_tr, phi_te, ridge):
    """Per-fold complex least squares: phi (S, p, M), z (S, F, M) -> predictions (S_te, F, M)."""
    gram = jnp.einsum("spm,sqm->mpq", jnp.conj(phi_tr), phi_tr)
    rhs = jnp.einsum("spm,sfm->mpf", jnp.conj(phi_tr), z_tr)
    p = gram.shape[-1]
    scale = jnp.real(jnp.trace(gram, axis1=-2, axis2=-1)) / p
    eye = jnp.eye(p, dtype=gram.dtype)
    reg = (ridge * jnp.mean(scale) + jnp.finfo(scale.dtype).tiny) * eye
    w = jnp.linalg.solve(gram + reg[None], rhs)
    return jnp.einsum("spm,mpf->sfm", phi_te, w)


class ConditionalGain(NamedTuple):
    r"""Held-out explained variance of :math:`x^{r+1}_t` (weighted as in :func:`tail_fractions`)
    from :math:`x^r_t` (``r2_coarse``) and from :math:`(x^r_t, x^{r+1}_{t-1})` (``r2_both``);
    ``gain = r2_both - r2_coarse``; ``variance_ratio`` the detail variance left with the previous
    frame relative to that left without it (:math:`\le 1`, smaller = the past explains more of the
    detail); ``detail_fraction = 1 - r2_coarse``. With ``groups``, the ``group_*`` arrays hold the
    same quantities per held-out group (e.g. per test trajectory, for intervals); else ``None``."""

    r2_coarse: float
    r2_both: float
    gain: float
    variance_ratio: float
    detail_fraction: float
    n_train: int
    n_test: int
    group_r2_coarse: Optional[np.ndarray] = None
    group_gain: Optional[np.ndarray] = None
    group_variance_ratio: Optional[np.ndarray] = None


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _gain_core(z, b, y, n_train, f, m, d, k_power, ridge):
    """Per held-out sample: weighted residual energies of both predictors and the total."""
    S, n = z.shape[0], z.shape[-1]
    Z = _fold(jnp.fft.fftn(z, axes=_axes(d)), f, m, d)
    B = _fold(jnp.fft.fftn(b, axes=_axes(d)), f, m, d)
    Y = jnp.fft.fftn(y, axes=_axes(d)).reshape(S, 1, -1)
    w = _fold(_k_weight(n, d, k_power, z.dtype)[None], f, m, d)
    phi_b = jnp.concatenate([Y, B], axis=1)
    tr, te = slice(0, n_train), slice(n_train, S)
    res = lambda pred: jnp.sum(w * jnp.abs(Z[te] - pred) ** 2, axis=(1, 2))  # noqa: E731
    rc = res(_fit_predict(Y[tr], Z[tr], Y[te], ridge))
    rb = res(_fit_predict(phi_b[tr], Z[tr], phi_b[te], ridge))
    return rc, rb, jnp.sum(w * jnp.abs(Z[te]) ** 2, axis=(1, 2))


def conditional_gain(current: Float[Array, "S n"], previous: Float[Array, "S n"], hierarchy: Hierarchy,
                     level: int, *, n_train: int, k_power: float = 0.0, ridge: float = 1e-8,
                     groups: Optional[Sequence[int]] = None) -> ConditionalGain:
    r"""How much of level :math:`r+1` the previous high-resolution frame explains beyond :math:`x^r_t`.

    With :math:`z = x^{r+1}_t`, :math:`y = C^r z = x^r_t` and :math:`b = x^{r+1}_{t-1}`, fits the
    linear predictors :math:`\hat z = A y` and :math:`\hat z = A' y + B b` by least squares on the
    first `n_train` pairs (fold by fold in Fourier, which is optimal for homogeneous statistics)
    and scores them on the rest:

    .. math:: R^2 = 1 - \frac{\sum_{s,k} |k|^{2p} |z_{s,k} - \hat z_{s,k}|^2}{\sum_{s,k} |k|^{2p} |z_{s,k} - \bar z_k|^2},
       \qquad \text{ratio} = \frac{\text{residual}(y, b)}{\text{residual}(y)},

    with :math:`\bar z` the training mean field (subtracted from all fields first).

    **Arguments:**

    - `current`, `previous`: fields at level ``level + 1`` at times :math:`t` and :math:`t-1`,
      shape ``(S, n)`` or ``(S, n, n)`` each, pair ``s`` from the same trajectory.
    - `hierarchy`, `level`: the pair of levels :math:`(r, r+1)`, ``0 <= level < R``.
    - `n_train`: pairs used for fitting; the remaining ``S - n_train`` (at least 1) are held out.
      Use pairs from different trajectories for the two parts so that they are independent.
    - `k_power`: :math:`p`, the weight of the variance as in :func:`tail_fractions`.
    - `ridge`: relative Tikhonov regularisation of the per-fold normal equations.
    - `groups`: optional integer label per held-out pair (length ``S - n_train``), e.g. its
      trajectory; the result then also holds the quantities per group.

    **Returns:** :class:`ConditionalGain`.
    """
    if not 0 <= level < hierarchy.finest:
        raise ValueError(f"level must be in 0..{hierarchy.finest - 1}, got {level}")
    z = _samples(current, hierarchy, level + 1, "current")
    b = _samples(previous, hierarchy, level + 1, "previous")
    if z.shape != b.shape:
        raise ValueError(f"current and previous must have the same shape, got {z.shape} and {b.shape}")
    S = z.shape[0]
    if not 1 <= int(n_train) < S:
        raise ValueError(f"n_train must be in 1..{S - 1} (S = {S} pairs), got {n_train}")
    n_train = int(n_train)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (S - n_train,):
            raise ValueError(f"groups must have shape ({S - n_train},) (one label per held-out pair), got {groups.shape}")
    mean = jnp.mean(z[:n_train], axis=0, keepdims=True)
    z, b = z - mean, b - mean
    n, m = hierarchy.sizes[level + 1], hierarchy.sizes[level]
    y = hierarchy.coarsen(z, level)
    rc, rb, tot = (np.asarray(a, dtype=np.float64) for a in
                   _gain_core(z, b, y, n_train, n // m, m, hierarchy.ndim, float(k_power), float(ridge)))
    total = tot.sum()
    if total <= 0:
        raise ValueError("the held-out fields have no variance at this level")

    def summary(sel):
        c, bb, t = rc[sel].sum(), rb[sel].sum(), tot[sel].sum()
        return 1.0 - c / t, 1.0 - bb / t, (bb / c if c > 0 else float("nan"))

    r2c, r2b, ratio = summary(slice(None))
    extra = (None, None, None)
    if groups is not None:
        per = np.array([summary(groups == g) for g in np.unique(groups)])
        extra = (per[:, 0], per[:, 1] - per[:, 0], per[:, 2])
    return ConditionalGain(float(r2c), float(r2b), float(r2b - r2c), float(ratio), float(1.0 - r2c), n_train,
                           S - n_train, *extra)


def lag_correlation(current: Float[Array, "S n"], previous: Float[Array, "S n"], *, ndim: int = 1) -> Complex[Array, " n"]:
    r"""Per-wavenumber lag-one correlation :math:`\rho_k = E[X_{t,k}\overline{X_{t-1,k}}] / E|X_{t-1,k}|^2`
    of homogeneous fields (DFT order, shape ``(n,)`` or ``(n, n)``), for :func:`gaussian_twin`."""
    z, b = jnp.asarray(current), jnp.asarray(previous)
    if z.shape != b.shape or z.ndim < ndim + 1:
        raise ValueError(f"current and previous must have the same shape (S, ...), got {z.shape} and {b.shape}")
    Z = jnp.fft.fftn(z, axes=_axes(ndim)).reshape((-1,) + z.shape[z.ndim - ndim:])
    B = jnp.fft.fftn(b, axes=_axes(ndim)).reshape(Z.shape)
    num = jnp.mean(Z * jnp.conj(B), axis=0)
    den = jnp.mean(jnp.abs(B) ** 2, axis=0)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def gaussian_twin(key: jax.Array, power: Float[Array, " n"], n_traj: int, n_steps: int, *,
                  rho: Optional[Complex[Array, " n"]] = None, ndim: int = 1) -> Float[Array, "S T n"]:
    r"""Homogeneous Gaussian fields with DFT power :math:`S_k` (:func:`mean_power`), as trajectories
    of the per-mode AR(1) process :math:`X_{t,k} = \rho_k X_{t-1,k} + \sqrt{1 - |\rho_k|^2}\,\xi_{t,k}`
    started in its stationary law (:math:`\rho = 0`: independent frames). The non-multiscale
    control: the same power spectrum and lag-one correlation as the data, nothing else.

    **Arguments:** `key`; `power` shape ``(n,)`` or ``(n, n)`` (symmetrised in :math:`k \to -k`);
    `n_traj`, `n_steps`; `rho` complex lag correlations (:func:`lag_correlation`), :math:`|\rho_k| \le 1`;
    `ndim`.

    **Returns:** shape ``(n_traj, n_steps, n)`` or ``(n_traj, n_steps, n, n)``.
    """
    power = jnp.asarray(power)
    n = power.shape[0]
    if power.shape != (n,) * ndim:
        raise ValueError(f"power must have shape {(n,) * ndim}, got {power.shape}")
    neg = (-np.arange(n)) % n
    sym = 0.5 * (power + (power[neg] if ndim == 1 else power[np.ix_(neg, neg)]))
    amp = jnp.sqrt(jnp.maximum(sym, 0.0) / n ** ndim)
    rho = jnp.zeros(power.shape, dtype=jnp.result_type(power.dtype, jnp.complex64)) if rho is None else jnp.asarray(rho)
    if rho.shape != power.shape:
        raise ValueError(f"rho must have shape {power.shape}, got {rho.shape}")
    mag = jnp.abs(rho)
    rho = jnp.where(mag > 1.0, rho / jnp.where(mag > 0, mag, 1.0), rho)
    innov = jnp.sqrt(jnp.maximum(1.0 - jnp.abs(rho) ** 2, 0.0))
    shape = (n_traj,) + (n,) * ndim

    def noise(k):
        return jnp.fft.fftn(jax.random.normal(k, shape, dtype=power.dtype), axes=_axes(ndim)) * amp[None]

    k0, k1 = jax.random.split(key)

    def step(X, k):
        X = rho[None] * X + innov[None] * noise(k)
        return X, X

    X0 = noise(k0)
    _, Xs = jax.lax.scan(step, X0, jax.random.split(k1, n_steps - 1))
    Xs = jnp.concatenate([X0[None], Xs], axis=0)
    x = jnp.fft.ifftn(Xs, axes=_axes(ndim)).real.astype(power.dtype)
    return jnp.moveaxis(x, 0, 1)


def tail_flatness(fields: Float[Array, "S n"], hierarchy: Hierarchy, level: int, *,
                  power: Optional[Float[Array, " n"]] = None) -> float:
    r"""Flatness :math:`E[t^4] / E[t^2]^2` of the pointwise tail :math:`t = x - L^r P^r x` at the
    finest level (optimal lift from `power`, default the fields' own): :math:`3` for Gaussian
    fields, larger when the tail is concentrated in a few intense structures.

    **Arguments:** `fields` ``(S, n)`` or ``(S, n, n)``; `hierarchy`; `level` ``0 <= r < R``;
    `power` the power spectrum of the lift (:func:`mean_power` of training fields).
    """
    R = hierarchy.finest
    if not 0 <= level < R:
        raise ValueError(f"level must be in 0..{R - 1}, got {level}")
    x = _samples(fields, hierarchy, R, "fields")
    power = mean_power(x, ndim=hierarchy.ndim) if power is None else jnp.asarray(power)
    up = stationary_lift(hierarchy.restrict(x, level), hierarchy.lift_weights(power, level), ndim=hierarchy.ndim)
    t = x - up
    return float(jnp.mean(t ** 4) / jnp.mean(t ** 2) ** 2)


class LevelStructure(NamedTuple):
    r"""The structure measures of one set of trajectories, level by level (:func:`level_structure`).

    Per level :math:`r = 0..R-1` and held-out trajectory :math:`j`: ``tail_energy[r, j]`` and
    ``tail_enstrophy[r, j]`` (:func:`tail_fractions` with the optimal lift, averaged over the
    trajectory's frames), ``tail_energy_default_lift[r, j]`` (the same with the hierarchy's default
    lift), ``variance_ratio[r, j]`` and ``gain[r, j]`` (:func:`conditional_gain` from the previous
    frame, per held-out trajectory); ``flatness[r]`` (:func:`tail_flatness` over all held-out
    frames)."""

    tail_energy: np.ndarray
    tail_enstrophy: np.ndarray
    tail_energy_default_lift: np.ndarray
    variance_ratio: np.ndarray
    gain: np.ndarray
    flatness: np.ndarray


class StructureComparison(NamedTuple):
    """:class:`LevelStructure` of the system (``system``) and of its Gaussian twin (``twin``)."""

    system: LevelStructure
    twin: LevelStructure


def _level_structure(data: np.ndarray, hierarchy: Hierarchy, n_train: int, power, energy_k_power: float,
                     enstrophy_k_power: float, conditional_k_power: float) -> LevelStructure:
    n_traj, T = data.shape[:2]
    spatial = data.shape[2:]
    n_test = n_traj - n_train
    R = hierarchy.finest
    train = jnp.asarray(data[:n_train].reshape((-1,) + spatial))
    test = jnp.asarray(data[n_train:].reshape((-1,) + spatial))

    def per_trajectory(tf):
        return np.asarray(tf.per_sample).reshape(R, n_test, T).mean(-1)

    energy = per_trajectory(tail_fractions(test, hierarchy, k_power=energy_k_power, train=train))
    enstrophy = per_trajectory(tail_fractions(test, hierarchy, k_power=enstrophy_k_power, train=train))
    default = per_trajectory(tail_fractions(test, hierarchy, k_power=energy_k_power, lift="default"))
    groups = np.repeat(np.arange(n_test), T - 1)
    cur_all = jnp.asarray(data[:, 1:].reshape((-1,) + spatial))
    prev_all = jnp.asarray(data[:, :-1].reshape((-1,) + spatial))
    ratios, gains = [], []
    for r in range(R):
        cur, prev = cur_all, prev_all
        if r + 1 < R:
            cur, prev = hierarchy.restrict(cur, r + 1), hierarchy.restrict(prev, r + 1)
        cg = conditional_gain(cur, prev, hierarchy, r, n_train=n_train * (T - 1), k_power=conditional_k_power,
                              groups=groups)
        ratios.append(cg.group_variance_ratio)
        gains.append(cg.group_gain)
    flatness = np.array([tail_flatness(test, hierarchy, r, power=power) for r in range(R)])
    return LevelStructure(energy, enstrophy, default, np.array(ratios), np.array(gains), flatness)


def level_structure(trajectories: Float[Array, "J T n"], hierarchy: Hierarchy, *, key: jax.Array,
                    energy_k_power: float = 0.0, enstrophy_k_power: float = 1.0,
                    conditional_k_power: Optional[float] = None, n_train: Optional[int] = None) -> StructureComparison:
    r"""Every structure measure of this module, per level, for a set of trajectories and for their
    Gaussian twin: the multiscale-systems chapter's table in one call.

    The first ``n_train`` trajectories (default half) fit the optimal lifts, the power spectrum
    and lag correlation of the twin (:func:`gaussian_twin`, drawn with ``key``, as many
    trajectories of the same length) and the conditional predictors; the others are scored.

    **Arguments:**

    - `trajectories`: ``(J, T, n)`` (1-D) or ``(J, T, n, n)`` (2-D) fields at the finest level
      of `hierarchy`, ``J >= 2`` trajectories of ``T >= 2`` frames.
    - `energy_k_power`, `enstrophy_k_power`: the weights :math:`|k|^{2p}` of the energy and
      enstrophy tails (:math:`0, 1` for a 1-D velocity; :math:`-1, 0` for a 2-D vorticity).
    - `conditional_k_power`: the weight of the conditional explained variance (default: the
      enstrophy weight in 2-D, the energy weight in 1-D).
    - `n_train`: number of training trajectories, ``1 <= n_train < J``.

    **Returns:** :class:`StructureComparison` of two :class:`LevelStructure`.
    """
    data = np.asarray(trajectories)
    d = hierarchy.ndim
    if data.ndim != 2 + d:
        raise ValueError(f"trajectories must have shape (J, T) + {d}-D field, got {data.shape}")
    n_traj, T = data.shape[:2]
    n_train = n_traj // 2 if n_train is None else int(n_train)
    if not 1 <= n_train < n_traj or T < 2:
        raise ValueError(f"need T >= 2 frames and 1 <= n_train < J; got J={n_traj}, T={T}, n_train={n_train}")
    if conditional_k_power is None:
        conditional_k_power = enstrophy_k_power if d == 2 else energy_k_power
    check_finite(data, "trajectories")
    power = mean_power(jnp.asarray(data[:n_train]), ndim=d)
    rho = lag_correlation(jnp.asarray(data[:n_train, 1:]), jnp.asarray(data[:n_train, :-1]), ndim=d)
    twin = np.asarray(gaussian_twin(key, power, n_traj, T, rho=rho, ndim=d))
    args = (hierarchy, n_train, power, energy_k_power, enstrophy_k_power, conditional_k_power)
    return StructureComparison(_level_structure(data, *args), _level_structure(twin, *args))


__all__ = ["TailFractions", "tail_fractions", "ConditionalGain", "conditional_gain", "lag_correlation",
           "gaussian_twin", "tail_flatness", "LevelStructure", "StructureComparison", "level_structure"]
