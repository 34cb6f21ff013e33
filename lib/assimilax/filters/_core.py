r"""The filter core: the pieces every filter of :mod:`assimilax.filters` (and the cycled drivers of
:mod:`assimilax.learned` and :mod:`assimilax.tracking`) shares, written once.

Internal, but made for sharing (as dynamax's ``_predict``/``_condition_on`` are shared by its
filter, smoother and sampler): a filter module imports from here, never from another filter.

- Input checks at the boundary: :func:`check_model_observation`, :func:`check_gaussian_inputs`,
  :func:`check_inflation`.
- The Gaussian (Kalman) update and exact symmetrisation, used by the KF and the EKF:
  :func:`gaussian_update`, :func:`symmetrize`.
- ONE ensemble forecast, :func:`forecast_ensemble`, with one random-stream convention: model
  step :math:`i` of a cycle adds the rows of :math:`Z_i L_Q^\top`,
  :math:`Z_i \sim \mathcal N(0, I)^{N \times d}` drawn from ``fold_in(key, i)``, with the
  Cholesky factor :math:`L_Q` of ``model.noise_cov`` computed once per call.
- The cycle skeleton, :func:`scan_cycles`: cycle :math:`k = 0..T-1` starts at physical time
  :math:`t_0 = k \cdot \text{steps\_per\_obs} \cdot \Delta t`, assimilates ``ys[k]`` and gets
  the key ``jax.random.split(key, T)[k]``.
- The spread of a weighted ensemble, :func:`weighted_mean_and_spread` (equal to
  :func:`!assimilax._ensemble.mean_and_spread` for equal weights).

The damped posterior score of the score filters is
:func:`assimilax.diffusion.damped_guidance` (shared by :func:`~assimilax.filters.ensemble_score_filter`
and :func:`~assimilax.filters.score_filter`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_covariance, check_observations, check_shape, is_concrete

LOG_2PI = float(np.log(2.0 * np.pi))

#: Ensembles with more than this many elements go through the model in batches of members
#: (:func:`forecast_ensemble`): 2^18 elements, 1 MiB per float32 buffer.
FORECAST_BATCH_ELEMENTS = 2**18

#: Weights with :math:`1 - \max_j w_j` below this have collapsed onto one particle
#: (:func:`weighted_mean_and_spread`; DAPPER's ``weight_degeneracy`` tolerance).
DEGENERATE_WEIGHT_TOL = 1e-10


# ----------------------------------------------------------------------------- input checks
def check_model_observation(model, observation) -> None:
    """Refuse an observation operator whose state dimension differs from the model's."""
    if observation.state_dim != model.dim:
        raise ValueError(
            f"observation operator expects states of dimension {observation.state_dim}, "
            f"but the model has dimension {model.dim}"
        )


def check_gaussian_inputs(model, observation, ys, mean0, cov0) -> None:
    """Checks of a Gaussian filter's inputs: operator/model dimensions, ``mean0`` ``(d,)``,
    ``cov0`` ``(d, d)`` positive definite, ``ys`` ``(T, m)`` finite."""
    check_model_observation(model, observation)
    d = model.dim
    check_shape(mean0, (d,), "mean0")
    check_covariance(cov0, d, "cov0")
    check_observations(ys, observation.obs_dim, "ys")


def check_inflation(value, name: str = "inflation") -> None:
    """Refuse a concrete inflation factor (or rate) that is not a positive finite scalar."""
    if is_concrete(value):
        v = np.asarray(value)
        if v.shape != () or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite scalar, got {value!r}")


# ----------------------------------------------------------------------------- Gaussian update
def symmetrize(P: Float[Array, "d d"]) -> Float[Array, "d d"]:
    r""":math:`\tfrac12 (P + P^\top)`: exactly symmetric."""
    return 0.5 * (P + P.T)


def gaussian_update(m_pred: Float[Array, " d"], P_pred: Float[Array, "d d"], y: Float[Array, " m"],
                    y_pred: Float[Array, " m"], H: Float[Array, "m d"], R: Float[Array, "m m"],
                    joseph: bool = False):
    r"""Kalman update given the predicted observation ``y_pred`` and (linearised) ``H``.

    With :math:`S = H P^- H^\top + R = L L^\top` (Cholesky), one triangular solve gives
    :math:`[W, z] = L^{-1} [H P^-, \; y - \hat y]`; then :math:`K = W^\top L^{-\top}` and

    - ``joseph=False`` (default): :math:`P = P^- - W^\top W`, symmetric by construction (the
      Cholesky form of :math:`P^- - K S K^\top`, as dynamax computes it);
    - ``joseph=True``: :math:`P = (I - KH) P^- (I - KH)^\top + K R K^\top`, positive
      semi-definite for any gain, at about 30 % more time per step at d = 10.

    **Returns:** ``(m (d,), P (d, d), log_lik ())`` with
    :math:`\log \mathcal N(y; \hat y, S) = -\tfrac12 z^\top z - \sum_i \log L_{ii} - \tfrac m2 \log 2\pi`.
    """
    d = m_pred.shape[0]
    S = symmetrize(H @ P_pred @ H.T + R)
    L = jnp.linalg.cholesky(S)
    r = y - y_pred
    Wz = jsl.solve_triangular(L, jnp.concatenate([H @ P_pred, r[:, None]], axis=1), lower=True)
    W, z = Wz[:, :d], Wz[:, d]
    K = jsl.solve_triangular(L.T, W, lower=False).T  # P H^T S^{-1}
    m = m_pred + K @ r
    if joseph:
        IKH = jnp.eye(d, dtype=P_pred.dtype) - K @ H
        P = symmetrize(IKH @ P_pred @ IKH.T + K @ R @ K.T)
    else:
        P = symmetrize(P_pred - W.T @ W)
    ll = -0.5 * (z @ z) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * r.shape[0] * LOG_2PI
    return m, P, ll


# ----------------------------------------------------------------------------- ensemble forecast
def forecast_ensemble(model, E: Float[Array, "N d"], t0, key, n_steps: int, *,
                      max_elements: Optional[int] = FORECAST_BATCH_ELEMENTS) -> Float[Array, "N d"]:
    r"""Advance every member of ``E`` by ``n_steps`` model steps from time ``t0``.

    Step :math:`i` (time :math:`t_0 + i\Delta t`) maps :math:`E \leftarrow \mathcal M(E, t_i) +
    Z_i L_Q^\top` row-wise, :math:`Q = L_Q L_Q^\top` = ``model.noise_cov`` (per model step;
    :math:`L_Q` computed once), :math:`Z_i` an ``(N, d)`` block of standard normals drawn from
    ``jax.random.fold_in(key, i)``. No noise when ``model.noise_cov`` is ``None`` or ``key`` is
    ``None`` (a deterministic forecast of a noisy model).

    Members go through the model in batches of :math:`\max(1, \lfloor` ``max_elements`` /
    :math:`d \rfloor)` under ``lax.map`` when :math:`N d >` ``max_elements``: the same numbers
    as one ``vmap``, but the integrator's temporaries (an RK4 step keeps a dozen state-sized
    buffers) scale with the batch, not with the ensemble; for Lorenz-96 with N = 20,
    d = 10^5 batches of 2 members ran several times faster than one ``vmap`` over the 8 MB
    ensemble, and at d = 10^6 the peak memory of an EnSF cycle drops by about 1 GB
    (``benchmarks/ensf_scaling.py``). Without noise a batch runs all its steps before the
    next batch starts (it stays in cache); with noise the loop over steps is outside (each
    step's noise block is one draw). ``max_elements=None``: always one ``vmap`` (e.g. to keep
    a sharding of the members).

    **Arguments:** ``model`` (:class:`~assimilax.models.DynamicalModel`), ``E`` ``(N, d)``,
    ``t0`` scalar, ``key`` PRNG key or ``None``, ``n_steps`` (static int), ``max_elements``.

    **Returns:** the forecast ensemble ``(N, d)``.
    """
    N, d = E.shape
    batch = None if (max_elements is None or N * d <= max_elements) else max(1, max_elements // d)

    def over_members(f, E):
        return jax.vmap(f)(E) if batch is None else jax.lax.map(f, E, batch_size=batch)

    if model.noise_cov is None or key is None:
        return over_members(lambda x: model.integrate(x, n_steps, t0), E)
    chol_Q = jnp.linalg.cholesky(model.noise_cov).astype(E.dtype)

    def body(i, E):
        t = t0 + i * model.dt
        noise = jax.random.normal(jax.random.fold_in(key, i), E.shape, dtype=E.dtype) @ chol_Q.T
        return over_members(lambda x: model.step(x, t), E) + noise

    return jax.lax.fori_loop(0, n_steps, body, E)


# ----------------------------------------------------------------------------- cycle skeleton
class CycleInput(NamedTuple):
    """What one cycle of :func:`scan_cycles` receives: ``index`` :math:`k` (0-based), ``t0`` the
    physical time at its start, ``y`` ``(m,)`` = ``ys[k]``, ``key`` its PRNG key (``None`` for
    deterministic filters) and ``extra`` (row ``k`` of the optional per-cycle inputs)."""

    index: jax.Array
    t0: jax.Array
    y: jax.Array
    key: Any = None
    extra: Any = None


def scan_cycles(cycle: Callable, carry0, ys: Float[Array, "T m"], *, key=None, steps_per_obs: int = 1,
                dt=1.0, extra=None):
    r"""The assimilation loop of every filter, one ``lax.scan`` over the :math:`T` cycles.

    Cycle :math:`k` (0-based) forecasts from time :math:`t_0 = k \cdot` ``steps_per_obs``
    :math:`\cdot\,\Delta t` (``dt`` = ``model.dt``) to the time of ``ys[k]`` and assimilates it,
    with the key ``jax.random.split(key, T)[k]`` (the filter splits it further).

    **Arguments:** ``cycle(carry, CycleInput) -> (carry, out)``; ``carry0``; ``ys`` ``(T, m)``;
    ``key`` or ``None``; ``steps_per_obs``; ``dt``; ``extra`` a pytree of ``(T, ...)`` arrays
    (or ``None``) handed to cycle :math:`k` as its row ``k``.

    **Returns:** ``(final carry, stacked outs)`` as :func:`jax.lax.scan`.
    """
    T = ys.shape[0]
    keys = None if key is None else jax.random.split(key, T)

    def body(carry, inp):
        k, y, ck, ex = inp
        return cycle(carry, CycleInput(k, k * steps_per_obs * dt, y, ck, ex))

    return jax.lax.scan(body, carry0, (jnp.arange(T), ys, keys, extra))


# ----------------------------------------------------------------------------- weighted spread
def weighted_mean_and_spread(E: Float[Array, "N d"], w: Float[Array, " N"]):
    r"""Mean and spread of a weighted ensemble (normalised weights :math:`w`):

    .. math::
        \bar x = \sum_j w_j x_j, \qquad
        \text{spread} = \sqrt{\frac{u}{d} \sum_i \sum_j w_j (x_{ji} - \bar x_i)^2},\qquad
        u = \frac{1}{1 - \sum_j w_j^2},

    the unbiased ("reliability weights") variance averaged over components before the square
    root. For :math:`w_j = 1/N`, :math:`u = N/(N-1)`: exactly the :math:`N-1` variance of
    :func:`!assimilax._ensemble.mean_and_spread` that every other filter reports
    (:math:`1/\sum_j w_j^2` is the effective sample size, so :math:`u = \mathrm{ESS}/(\mathrm{ESS}-1)`).
    When the weights have collapsed, :math:`1 - \max_j w_j < 10^{-10}`, :math:`u = 1` (the
    weighted variance itself, about 0), DAPPER's ``unbias_var(w, avoid_pathological=True)``
    :cite:`raanes2024dapper`: there :math:`u` would divide a vanishing numerator by a vanishing
    :math:`1 - \sum_j w_j^2`.

    **Returns:** ``(mean (d,), spread ())``.
    """
    mean = w @ E
    A = E - mean[None, :]
    weighted = jnp.mean(w @ (A * A))
    denom = 1.0 - jnp.sum(w * w)
    collapsed = (1.0 - jnp.max(w)) < DEGENERATE_WEIGHT_TOL
    unbias = jnp.where(collapsed, 1.0, 1.0 / jnp.where(collapsed, 1.0, denom))
    return mean, jnp.sqrt(weighted * unbias)


__all__ = ["check_model_observation", "check_gaussian_inputs", "check_inflation", "symmetrize", "gaussian_update",
           "forecast_ensemble", "CycleInput", "scan_cycles", "weighted_mean_and_spread", "LOG_2PI",
           "FORECAST_BATCH_ELEMENTS", "DEGENERATE_WEIGHT_TOL"]
