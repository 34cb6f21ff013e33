r"""The cycling driver of the learned analysis (11/13/25 and 12/5/25 notes).

For each ensemble member :math:`i` and each time :math:`t = 1..T`,

.. math::
    u^{F,i}_t = F(u^{A,i}_{t-1}), \qquad
    \tilde u^i_t = T(u^{F,i}_t, y_t), \qquad
    u^{A,i}_t = \tilde u^i_t + r^i_t, \quad r^i_t \sim p_\phi(r \mid y_t, \tilde u^i_t),

vmapped over members under one :func:`jax.lax.scan`. ``F`` is a learned forward model or the
true :class:`~assimilax.models.DynamicalModel` (wrapped in
:class:`~assimilax.learned.ModelForward`); ``T`` any analysis operator; ``p_\phi`` a
:class:`~assimilax.learned.ResidualDiffusion` or ``None`` (deterministic analysis). The
ablations of the chapter are configurations of this one driver:

* two-stage: ``analysis=T_psi, residual=p_phi, cycle="analysis"``;
* :math:`T_\psi` only: ``residual=None``;
* one-stage conditional diffusion: ``analysis=ForecastAnalysis()``, ``cycle="mean"`` and a
  residual model trained on :math:`u^{ref} - u^F` conditioned on :math:`(y, u^F)`;
* true forward model: ``forward=model``.

The result is an :class:`~assimilax.filters.EnsembleFilterResult`, the type of every ensemble
filter in :mod:`assimilax.filters`, with the same time convention.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._ensemble import mean_and_spread, member_mean
from .._validation import check_finite, check_observations, check_positive_int, check_shape, raise_if_diverged
from ..filters._core import forecast_ensemble, scan_cycles
from ..filters._types import EnsembleFilterResult
from .analysis import residual_condition
from .forward import ModelForward, as_forward


def learned_filter(forward, observation, ys: Float[Array, "T m"],
                   ensemble0: Float[Array, "N d"] | Float[Array, " d"], *, analysis, key: PRNGKeyArray,
                   residual=None, n_members: int | None = None,
                   steps_per_obs: int = 1, model_noise: bool = False, store_ensembles: bool = True,
                   residual_steps: int | None = None, cycle: str = "members") -> EnsembleFilterResult:
    r"""Cycle a forward model and a (learned) analysis through the observations.

    The signature is that of every filter, ``(model, observation, ys, prior, *, key, ...)``, with
    the analysis operator as a keyword.

    **Arguments:**

    - ``forward``: callable ``F(x (d,)) -> (d,)`` (e.g. :class:`~assimilax.learned.StencilForward`)
      or a :class:`~assimilax.models.DynamicalModel` (run ``steps_per_obs`` steps; with
      ``model_noise`` its noise is drawn by the filters' ensemble forecast,
      :func:`!assimilax.filters._core.forecast_ensemble`).
    - ``observation``: the observation operator that produced ``ys`` (``state_dim = d``,
      ``obs_dim = m``), against which ``ys`` and ``ensemble0`` are checked; the analysis is
      ``analysis``, which sees only ``y``. ``None`` only where no operator exists (the
      deterministic cycles of :func:`~assimilax.learned.cycled_analysis_pairs`, whose
      trajectories carry observations only): ``ys`` is then checked for shape ``(T, m)`` and
      finiteness alone.
    - ``ys``: ``(T, m)``.
    - ``analysis``: ``T(u_f (d,), y (m,)) -> (d,)``, applied to each member; or an *ensemble*
      analysis (an object with ``acts_on_ensemble = True``, e.g.
      :class:`~assimilax.learned.EnsembleStencilAnalysis`, :class:`~assimilax.filters.LETKFAnalysis`)
      ``G(E^F (N, d), y (m,)) -> (N, d)``, applied to the whole forecast ensemble (only with
      ``cycle="members"``).
    - ``ensemble0``: ``(N, d)`` initial ensemble, or ``(d,)`` repeated ``n_members`` times
      (default 1) — the time-0 state.
    - ``key``: PRNG key (residual draws, model noise).
    - ``residual``: :class:`~assimilax.learned.ResidualDiffusion` with ``cond_dim = m + d``, or
      ``None``; ``residual_steps`` overrides its number of reverse-SDE steps.
    - ``model_noise``: draw the true model's noise in the forecast (only for a wrapped
      :class:`~assimilax.models.DynamicalModel` with ``noise_cov``).
    - ``store_ensembles``: keep the ``(T, N, d)`` analysis ensembles.
    - ``cycle``: what the next forecast starts from.

      * ``"members"`` (default): every member is forecast and analysed,
        :math:`u^{A,i}_t = T(F(u^{A,i}_{t-1}), y_t) + r^i_t`. With a residual model trained on
        the total error of a deterministic cycle this counts the forecast uncertainty twice
        (the propagated member spread *and* the residual).
      * ``"analysis"``: cycle the *deterministic* analysis only,
        :math:`\tilde u_t = T(F(\tilde u_{t-1}), y_t)` (started from the mean of ``ensemble0``),
        and draw the members as :math:`u^{A,i}_t = \tilde u_t + r^i_t`. This is exactly the cycle
        on which a two-stage residual model trained with
        :func:`~assimilax.learned.cycled_analysis_pairs` was fitted: the draws describe the
        uncertainty of :math:`\tilde u_t` and are never fed back (feeding back their sample
        mean adds Monte Carlo noise and any bias of :math:`p_\phi` to the next forecast).
      * ``"mean"``: forecast the mean of the analysis members,
        :math:`u^F_t = F(\overline{u^A_{t-1}})`. This is the cycle of the *one-stage* model
        (``analysis=ForecastAnalysis()``), whose deterministic part ignores ``y``, so the
        conditional mean estimated by the members must drive the next forecast.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` (spreads are zero for ``N = 1``).
    Raises :class:`~assimilax.FilterDivergenceError` if the analysis mean becomes non-finite.
    """
    forward = as_forward(forward, steps_per_obs)
    check_positive_int(steps_per_obs, "steps_per_obs")
    if cycle not in ("members", "analysis", "mean"):
        raise ValueError(f"cycle must be 'members', 'analysis' or 'mean', got {cycle!r}")
    if getattr(analysis, "acts_on_ensemble", False) and cycle != "members":
        raise ValueError(f"an ensemble analysis ({type(analysis).__name__}) cycles its members: use cycle='members', "
                         f"got {cycle!r}")
    E0 = jnp.asarray(ensemble0)
    if E0.ndim == 1:
        N = 1 if n_members is None else n_members
        check_positive_int(N, "n_members")
        E0 = jnp.broadcast_to(E0, (N, E0.shape[0]))
    elif n_members is not None and n_members != E0.shape[0]:
        raise ValueError(f"n_members={n_members} disagrees with ensemble0 of {E0.shape[0]} members")
    check_shape(E0, (None, None), "ensemble0")
    check_finite(E0, "ensemble0")
    d = E0.shape[1]
    ys = jnp.asarray(ys)
    if observation is None:
        if ys.ndim != 2:
            raise ValueError(f"ys must have shape (T, m), got {ys.shape}")
        check_observations(ys, ys.shape[1], "ys")
    else:
        if observation.state_dim != d:
            raise ValueError(f"observation operator expects states of dimension {observation.state_dim}, "
                             f"but ensemble0 has dimension {d}")
        check_observations(ys, observation.obs_dim, "ys")
    m = ys.shape[1]
    if isinstance(forward, ModelForward) and forward.model.dim != d:
        raise ValueError(f"ensemble0 has dimension {d} but the model has dimension {forward.model.dim}")
    if residual is not None:
        if residual.dim != d or residual.cond_dim != m + d:
            raise ValueError(f"residual model must have dim={d} and cond_dim={m + d} (y, u_tilde), "
                             f"got dim={residual.dim}, cond_dim={residual.cond_dim}")
    if model_noise and not (isinstance(forward, ModelForward) and forward.model.noise_cov is not None):
        raise ValueError("model_noise=True needs a DynamicalModel with noise_cov as forward model")
    E0 = E0.astype(ys.dtype) if jnp.issubdtype(ys.dtype, jnp.floating) else E0
    res = _learned_filter(forward, analysis, residual, ys, E0, key, model_noise=bool(model_noise),
                          store_ensembles=bool(store_ensembles), residual_steps=residual_steps,
                          cycle=cycle)
    raise_if_diverged(res.analysis_mean, "learned_filter")
    return res


@eqx.filter_jit
def _learned_filter(forward, analysis, residual, ys, E0, key, *, model_noise, store_ensembles, residual_steps,
                    cycle):
    N = E0.shape[0]
    is_model = isinstance(forward, ModelForward)

    def step(carry, inp):
        E, u_det = carry
        y = inp.y
        kf, kr = jax.random.split(inp.key)
        if cycle == "analysis":
            E = u_det
        elif cycle == "mean":
            E = member_mean(E, keepdims=True)
        if is_model:
            EF = forecast_ensemble(forward.model, E, inp.t0, kf if model_noise else None, forward.steps_per_obs)
        else:
            EF = jax.vmap(forward)(E)
        if getattr(analysis, "acts_on_ensemble", False):
            U = analysis(EF, y)
        else:
            U = jax.vmap(analysis, in_axes=(0, None))(EF, y)
        u_det = U if cycle == "analysis" else u_det
        if cycle != "members":
            U = jnp.broadcast_to(U, (N, U.shape[1]))
        if residual is not None:
            conds = jax.vmap(residual_condition, in_axes=(None, 0))(y, U)
            U = U + residual.sample(conds, key=kr, n_steps=residual_steps).astype(U.dtype)
        out = mean_and_spread(U) + mean_and_spread(EF) + (U if store_ensembles else None,)
        return (U, u_det), out

    carry0 = (E0, member_mean(E0, keepdims=True))
    spo, dt = (forward.steps_per_obs, forward.model.dt) if is_model else (1, 1.0)
    _, (ma, sa, mf, sf, ens) = scan_cycles(step, carry0, ys, key=key, steps_per_obs=spo, dt=dt)
    return EnsembleFilterResult(ma, sa, mf, sf, ens)


__all__ = ["learned_filter"]
