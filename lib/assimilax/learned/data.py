r"""Training data for the learned forward and analysis operators, generated from the models
with explicit keys, and split by trajectory (never by time step, so that validation and test
trajectories are unseen in training).

Pairs the 11/13/25 notes ask for:

* forward pairs :math:`(u^{ref}_{t-1}, u^{ref}_t)` for :math:`F_\theta`;
* analysis triples :math:`(u^F_t, y_t, u^{ref}_t)` for :math:`T_\psi`, with
  :math:`u^F_t = F(u^{ref}_{t-1})` (:func:`analysis_pairs`, the notes' "forecast from the
  reference") or with the forecasts of the *cycled* filter (:func:`cycled_analysis_pairs`),
  which is what the analysis sees at inference time.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_positive_int, check_shape
from ..simulate import simulate
from .cycling import learned_filter
from .forward import ModelForward, as_forward


class TrajectoryData(NamedTuple):
    """A batch of simulated trajectories: ``x0`` ``(n, d)``, ``states`` ``(n, T, d)`` (times
    ``1..T``), ``observations`` ``(n, T, m)``."""

    x0: jax.Array
    states: jax.Array
    observations: jax.Array

    @property
    def n_trajectories(self) -> int:
        return self.states.shape[0]


def generate_trajectories(model, observation, x0s, n_cycles: int, *, key, steps_per_obs: int = 1,
                          burn_in: int = 0) -> TrajectoryData:
    r"""Simulate one trajectory per initial state with :func:`assimilax.simulate` under ``vmap``.

    **Arguments:** ``model``, ``observation``; ``x0s`` ``(n, d)`` initial states; ``n_cycles`` T;
    ``key`` (split once per trajectory); ``steps_per_obs``; ``burn_in`` deterministic model steps
    run first (e.g. to reach the Lorenz-96 attractor).

    **Returns:** :class:`TrajectoryData` (``x0`` is the state after burn-in).
    """
    check_positive_int(n_cycles, "n_cycles")
    x0s = jnp.asarray(x0s)
    check_shape(x0s, (None, model.dim), "x0s")
    keys = jax.random.split(key, x0s.shape[0])
    sims = jax.vmap(lambda x0, k: simulate(model, observation, x0, n_cycles, key=k, steps_per_obs=steps_per_obs,
                                           burn_in=burn_in))(x0s, keys)
    return TrajectoryData(sims.x0, sims.states, sims.observations)


def split_trajectories(data: TrajectoryData, fractions=(0.7, 0.15, 0.15), *, key):
    r"""Random split *by trajectory* into ``(train, validation, test)`` :class:`TrajectoryData`
    with the given ``fractions`` (normalised; each part gets at least one trajectory)."""
    n = data.n_trajectories
    if n < 3:
        raise ValueError(f"need at least 3 trajectories to split, got {n}")
    f = jnp.asarray(fractions, dtype=float)
    f = f / jnp.sum(f)
    n_val = max(1, int(round(float(f[1]) * n)))
    n_test = max(1, int(round(float(f[2]) * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"fractions {fractions} leave no training trajectory out of {n}")
    perm = jax.random.permutation(key, n)
    parts = (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:])
    return tuple(TrajectoryData(*(a[idx] for a in data)) for idx in parts)


def _previous_states(data: TrajectoryData):
    return jnp.concatenate([data.x0[:, None, :], data.states[:, :-1, :]], axis=1)


def forward_pairs(data: TrajectoryData):
    r"""``(inputs, targets)``, both ``(n T, d)``: :math:`(u^{ref}_{t-1}, u^{ref}_t)` for all
    trajectories and times (time 0 is ``x0``)."""
    d = data.states.shape[-1]
    return _previous_states(data).reshape(-1, d), data.states.reshape(-1, d)


def analysis_pairs(forward, data: TrajectoryData, *, steps_per_obs: int = 1, perturb_std=0.0, key=None):
    r"""``(forecasts, observations, targets)`` with :math:`u^F_t = F(u^{ref}_{t-1} + \sigma\xi_t)`,
    :math:`\xi_t \sim \mathcal N(0, I)`, shapes ``(n T, d), (n T, m), (n T, d)``. ``forward`` is a
    learned model or a DynamicalModel.

    With ``perturb_std`` :math:`\sigma = 0` (default) these are the notes' pairs, forecasts from
    the reference itself. In a cycled filter the forecast starts from the previous *analysis*,
    whose error is far larger than :math:`F`'s one-step error; ``perturb_std > 0`` (scalar, or
    ``(k,)`` levels assigned to the pairs in turn) mimics that analysis error so that the operator
    is trained on the forecast errors it will see (``key`` required)."""
    F = as_forward(forward, steps_per_obs)
    prev, targets = forward_pairs(data)
    sig = jnp.atleast_1d(jnp.asarray(perturb_std, dtype=prev.dtype))
    if sig.ndim != 1 or bool(jnp.any(sig < 0)):
        raise ValueError(f"perturb_std must be a non-negative scalar or 1-D array, got {perturb_std!r}")
    if bool(jnp.any(sig > 0)):
        if key is None:
            raise ValueError("perturb_std > 0 needs a key")
        levels = sig[jnp.arange(prev.shape[0]) % sig.shape[0]]
        prev = prev + levels[:, None] * jax.random.normal(key, prev.shape, dtype=prev.dtype)
    forecasts = jax.vmap(F)(prev) if not isinstance(F, ModelForward) else jax.vmap(lambda x: F(x))(prev)
    return forecasts, data.observations.reshape(-1, data.observations.shape[-1]), targets


@eqx.filter_jit
def _cycled_forecasts(forward, analysis, x0s, ys, key):
    # the trajectories carry observations only (no operator): observation=None
    run = lambda x0, y: learned_filter(forward, None, y, x0, analysis=analysis, key=key,
                                       store_ensembles=False).forecast_mean
    return jax.vmap(run)(x0s, ys)


def cycled_analysis_pairs(forward, analysis, data: TrajectoryData, *, key, steps_per_obs: int = 1,
                          discard: int = 0):
    r"""``(forecasts, observations, targets)`` where the forecasts are those of the deterministic
    cycled filter :math:`u^F_t = F(T(u^F_{t-1}, y_{t-1}))` started from each trajectory's ``x0``
    (:func:`~assimilax.learned.learned_filter` with one member), dropping the first ``discard``
    cycles (spin-up). Training :math:`T_\psi` on these pairs, re-cycling and re-fitting is a
    fixed-point iteration whose linear-Gaussian fixed point is the steady-state Kalman gain.
    """
    fc = _cycled_forecasts(as_forward(forward, steps_per_obs), analysis, data.x0, data.observations, key)[:, discard:]
    d, m = data.states.shape[-1], data.observations.shape[-1]
    return fc.reshape(-1, d), data.observations[:, discard:].reshape(-1, m), data.states[:, discard:].reshape(-1, d)


def shifted_pairs(forecasts, observations, targets, *, state_shift: int, obs_shift: int, n_shifts: int):
    r"""Analysis triples augmented by the translations of a translation-invariant system.

    For a periodic domain whose dynamics and observation pattern are invariant under a shift of
    the state by ``state_shift`` sites, which moves the observations by ``obs_shift`` entries
    (Lorenz-96 observed at every other site: ``state_shift=2``, ``obs_shift=1``), the triples

    .. math:: \big(S^k u^F_i,\; S_y^k y_i,\; S^k u^{ref}_i\big), \qquad k = 0, \ldots, K-1,

    with :math:`S` the circular shift by ``state_shift`` and :math:`S_y` by ``obs_shift``, are as
    likely as the originals. A linear analysis fitted on them
    (:func:`~assimilax.learned.fit_linear_analysis`) is, up to sampling error, equivariant under
    the shift, as the stencil networks are by construction, and is fitted on :math:`K` times as
    many pairs.

    **Arguments:** ``forecasts`` ``(n, d)``, ``observations`` ``(n, m)``, ``targets`` ``(n, d)``;
    ``state_shift``, ``obs_shift`` integers; ``n_shifts`` :math:`K \ge 1` (:math:`K = 1`: the
    pairs unchanged).

    **Returns:** ``(forecasts, observations, targets)`` of ``K n`` rows, shift :math:`k` in rows
    :math:`k n, \ldots, (k+1) n - 1`.
    """
    F, Y, Z = (jnp.asarray(a) for a in (forecasts, observations, targets))
    if F.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"forecasts and observations must be 2-D, got {F.shape} and {Y.shape}")
    n, d = F.shape
    check_shape(Y, (n, Y.shape[1]), "observations")
    check_shape(Z, (n, d), "targets")
    check_positive_int(n_shifts, "n_shifts")
    for v, name in ((state_shift, "state_shift"), (obs_shift, "obs_shift")):
        if not isinstance(v, (int,)) or isinstance(v, bool):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    ks = range(int(n_shifts))
    return (jnp.concatenate([jnp.roll(F, k * state_shift, axis=1) for k in ks]),
            jnp.concatenate([jnp.roll(Y, k * obs_shift, axis=1) for k in ks]),
            jnp.concatenate([jnp.roll(Z, k * state_shift, axis=1) for k in ks]))


__all__ = ["TrajectoryData", "generate_trajectories", "split_trajectories", "forward_pairs", "analysis_pairs",
           "cycled_analysis_pairs", "shifted_pairs"]
