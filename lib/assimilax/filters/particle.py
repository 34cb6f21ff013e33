r"""The bootstrap particle filter :cite:`gordon1993novel` with systematic resampling
:cite:`kitagawa1996monte`, effective sample size, log-likelihood estimate and optional
Gaussian jitter (regularisation) after resampling."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from jax.scipy.special import logsumexp

from .._validation import (
    check_ensemble,
    check_observations,
    check_positive_int,
    is_concrete,
    raise_if_diverged,
)
from ._core import check_model_observation, forecast_ensemble, scan_cycles, weighted_mean_and_spread
from ._types import EnsembleFilterResult


def systematic_resample(key: PRNGKeyArray, log_weights: Float[Array, " N"]):
    r"""Systematic resampling :cite:`kitagawa1996monte`.

    With normalised weights :math:`w_i` and one uniform draw :math:`u \sim U[0, 1)`, the
    :math:`N` points :math:`u_j = (u + j)/N` are located in the cumulative weights:
    :math:`a_j = \min\{i : \sum_{l \le i} w_l > u_j\}`. Each particle is copied
    :math:`\lfloor N w_i \rfloor` or :math:`\lceil N w_i \rceil` times.

    **Arguments:** ``key``; ``log_weights`` ``(N,)`` (unnormalised, ``-inf`` allowed).

    **Returns:** ancestor indices ``(N,)`` (int32), sorted.
    """
    log_weights = jnp.asarray(log_weights)
    N = log_weights.shape[0]
    w = jnp.exp(log_weights - logsumexp(log_weights))
    cdf = jnp.cumsum(w)
    u = (jax.random.uniform(key, (), dtype=w.dtype) + jnp.arange(N, dtype=w.dtype)) / N
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.clip(idx, 0, N - 1).astype(jnp.int32)


def particle_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *,
                    key: PRNGKeyArray, steps_per_obs: int = 1,
                    resample_threshold=1.0, jitter=0.0, store_ensembles: bool = True
                    ) -> EnsembleFilterResult:
    r"""Bootstrap particle filter (sequential importance resampling) :cite:`gordon1993novel`.

    Each cycle moves every particle through ``steps_per_obs`` noisy model steps (the proposal
    is the model itself, with ``model.noise_cov`` per step), reweights by the likelihood and
    resamples when the effective sample size drops below ``resample_threshold`` :math:`\cdot N`:

    .. math::
        \log \tilde w^i_t = \log w^i_{t-1} + \log \mathcal N(y_t; h(x^i_t), R),\qquad
        \mathrm{ESS}_t = 1 / \textstyle\sum_i (w^i_t)^2,\\
        \log \hat p(y_{1:T}) = \sum_t \log \textstyle\sum_i w^i_{t-1}\, \mathcal N(y_t; h(x^i_t), R)

    (:math:`w_{t-1}` normalised; the estimator of :math:`p(y_{1:T})` is unbiased). Resampling is
    systematic (:func:`systematic_resample`). With ``jitter`` :math:`h > 0` (DAPPER's ``reg``
    of ``PartFilt``), every resampled particle that is a duplicate is moved by
    :math:`\mathcal N(0, s^2 \hat\Sigma_t)` with :math:`s = h N^{-1/(d+4)}` (Scott's rule of
    thumb) and :math:`\hat\Sigma_t` the unbiased weighted analysis covariance
    :math:`\sum_i w_i (x_i - \bar x)(x_i - \bar x)^\top / (1 - \sum_i w_i^2)` (the unweighted
    covariance when the weights are degenerate, as in DAPPER): a regularised
    PF :cite:`musso2001improving`, biased for finite :math:`N` but needed when the model has no
    noise (else the particles collapse onto copies of one).

    ``analysis_mean``/``analysis_spread`` are the weighted mean and spread after reweighting
    (before resampling), ``forecast_mean``/``forecast_spread`` those of the forecast particles
    with the previous weights. The spread of a weighted ensemble is
    :math:`\sqrt{\tfrac1d\sum_i \sum_j w_j (x_{ji}-\bar x_i)^2 / (1 - \sum_j w_j^2)}`, the unbiased
    weighted variance (:func:`!assimilax.filters._core.weighted_mean_and_spread`): with equal
    weights it is the :math:`N-1` variance that every other filter reports, so the spreads of
    all filters are comparable (as DAPPER, the factor :math:`1/(1 - \sum_j w_j^2)` is dropped
    when the weights have collapsed onto one particle); ``ensembles`` ``(T, N, d)`` holds an
    equally weighted systematic resample of
    each analysis (the carried particles themselves when they were resampled); ``ess`` ``(T,)``
    the ESS before resampling. Works in float32; float64 is safer for the log-likelihood.

    **Arguments:** ``model``, ``observation`` (Gaussian noise ``R``), ``ys``
    ``(T, m)``, ``ensemble0`` ``(N, d)`` equally weighted sample of the prior on :math:`x_0`,
    ``key``, ``steps_per_obs``, ``resample_threshold`` in :math:`[0, 1]` (1: resample every
    cycle, 0: never), ``jitter`` :math:`h \ge 0`, ``store_ensembles``.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` with ``ess`` and
    ``log_likelihood``.
    """
    check_model_observation(model, observation)
    check_ensemble(ensemble0, model.dim, "ensemble0")
    check_observations(ys, observation.obs_dim, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    for name, val, lo, hi in (("resample_threshold", resample_threshold, 0.0, 1.0), ("jitter", jitter, 0.0, np.inf)):
        if is_concrete(val):
            v = np.asarray(val)
            if v.shape != () or not (lo <= v <= hi):
                raise ValueError(f"{name} must be a scalar in [{lo}, {hi}], got {val!r}")
    E0 = jnp.asarray(ensemble0)
    res = _pf(model, observation, jnp.asarray(ys), E0, key,
              jnp.asarray(resample_threshold, dtype=E0.dtype), jnp.asarray(jitter, dtype=E0.dtype),
              steps_per_obs=steps_per_obs, store_ensembles=bool(store_ensembles),
              use_jitter=not (is_concrete(jitter) and float(np.asarray(jitter)) == 0.0))
    raise_if_diverged(res.analysis_mean, "particle_filter")
    return res


@functools.partial(jax.jit, static_argnames=("steps_per_obs", "store_ensembles", "use_jitter"))
def _pf(model, observation, ys, E0, key, threshold, jitter, *, steps_per_obs, store_ensembles, use_jitter):
    dtype = E0.dtype
    N, d = E0.shape
    ys = ys.astype(dtype)
    h = jax.vmap(observation)
    L_R = jnp.linalg.cholesky(observation.R.astype(dtype))
    log_norm = -jnp.sum(jnp.log(jnp.diag(L_R))) - 0.5 * L_R.shape[0] * jnp.log(2.0 * jnp.pi)

    L_R_inv = jsl.solve_triangular(L_R, jnp.eye(L_R.shape[0], dtype=dtype), lower=True)

    def loglik(y, E):  # log N(y; h(x_i), R) for all particles (whitening by L_R^{-1}, hoisted)
        Z = L_R_inv @ (y[None, :] - h(E)).T
        return -0.5 * jnp.sum(Z * Z, axis=0) + log_norm
    logN = jnp.log(jnp.asarray(N, dtype))

    def cycle(carry, inp):
        E, logw = carry  # logw normalised
        y = inp.y
        kf, kr, ks, kj = jax.random.split(inp.key, 4)
        E = forecast_ensemble(model, E, inp.t0, kf, steps_per_obs)
        w_prev = jnp.exp(logw)
        mf, sf = weighted_mean_and_spread(E, w_prev)
        ll = loglik(y, E)
        lw = logw + ll
        inc = logsumexp(lw)
        logw_new = lw - inc
        w = jnp.exp(logw_new)
        ess = 1.0 / jnp.sum(w * w)
        ma, sa = weighted_mean_and_spread(E, w)
        resample = ess < threshold * N
        idx = systematic_resample(kr, logw_new)
        E_res = E[idx]
        if use_jitter:
            # regularisation (DAPPER's ``reg``): duplicated particles move by N(0, s^2 Sigma_w),
            # s = jitter * N^{-1/(d+4)} (Scott's rule), Sigma_w the unbiased weighted covariance.
            # degenerate weights (one particle holds ~all mass): use the unweighted covariance, as DAPPER
            # Sigma_w = B^T B with the (N, d) factor B = diag(sqrt(w)) A_c / sqrt(1 - sum w^2), so
            # z B with z ~ N(0, I_N) is an exact N(0, Sigma_w) draw: no Cholesky of the (d, d)
            # covariance, which is singular for N <= d (the ridge it needed gave NaN in float32).
            degenerate = 1.0 - jnp.sum(w * w) < 1e-8
            wc = jnp.where(degenerate, jnp.full_like(w, 1.0 / N), w)
            Ac = E - (wc @ E)[None, :]
            B = Ac * jnp.sqrt(wc / (1.0 - jnp.sum(wc * wc)))[:, None]
            bandwidth = jitter * N ** (-1.0 / (d + 4.0))
            noise = bandwidth * (jax.random.normal(kj, (N, N), dtype=dtype) @ B)
            dup = (idx == jnp.roll(idx, 1)) | (idx == jnp.roll(idx, -1))
            E_res = E_res + jnp.where(dup[:, None], noise, 0.0)
        E_next = jnp.where(resample, E_res, E)
        logw_next = jnp.where(resample, -logN * jnp.ones_like(logw_new), logw_new)
        if store_ensembles:
            E_store = jnp.where(resample, E_res, E[systematic_resample(ks, logw_new)])
        else:
            E_store = None
        return (E_next, logw_next), (ma, sa, mf, sf, E_store, ess, inc)

    logw0 = -logN * jnp.ones((N,), dtype)
    _, (ma, sa, mf, sf, ens, ess, incs) = scan_cycles(cycle, (E0, logw0), ys, key=key, steps_per_obs=steps_per_obs,
                                                      dt=model.dt)
    return EnsembleFilterResult(ma, sa, mf, sf, ens, ess, jnp.sum(incs))


__all__ = ["particle_filter", "systematic_resample"]
