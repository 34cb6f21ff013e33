r"""Joint training of a forward model :math:`F_\theta` and a conditional diffusion analysis
:math:`G_\phi` with forward and backward alignment (the 12/5/25 "diffusion-based DA with
dynamical guidance" notes), and training through the cycle (truncated backpropagation through
time).

The analysis :math:`G_\phi(u^F, y)` is the two-stage analysis of
:mod:`assimilax.learned.analysis`: a deterministic part :math:`T_\psi(u^F, y)` (its
conditional mean) and, optionally, a conditional diffusion model of the residual,
:math:`u^A = T_\psi(u^F, y) + r`, :math:`r \sim p_\phi(r \mid y, T_\psi)`
(a :class:`~assimilax.learned.ResidualDiffusion`) :cite:`mardani2025residual`. With
:math:`u^{F,ref}_t = F_\theta(u^{ref}_{t-1} + \sigma\xi_t)` (``perturb_std`` :math:`\sigma`,
``0`` gives the notes' pairs) the loss terms, each averaged over the state components, are

.. math::
    \mathcal L_{\rm fc} &= \mathbb E\,\|F_\theta(u^{ref}_{t-1}) - u^{ref}_t\|^2, \\
    \mathcal L_{\rm an} &= \mathbb E\,\|T_\psi(u^{F,ref}_t, y_t) - u^{ref}_t\|^2, \\
    \mathcal L_{\rm sc} &= \text{DSM loss of } p_\phi \text{ on } r_t = u^{ref}_t - T_\psi(u^{F,ref}_t, y_t), \\
    \mathcal L_{\rm fa} &= \mathbb E\,\|F_\theta(u^{A,F,ref}_t) - u^{ref}_{t+1}\|^2,
        \quad u^{A,F,ref}_t \sim G_\phi(u^{F,ref}_t, y_t) \text{ (differentiable draw)}, \\
    \mathcal L_{\rm ba} &= \mathbb E\,\|T_\psi(u^{ref}_{t+1}, y_t) - u^{ref}_t\|^2
        + \mathbb E\,\|T_\psi(F_\theta(u^{ref}_t), y_t) - u^{ref}_t\|^2, \\
    \mathcal L_{k} &= \mathbb E\,\frac{1}{k - k_0}\sum_{j=k_0+1}^{k} \|u^A_{t_0+j} - u^{ref}_{t_0+j}\|^2,
        \quad u^A_{t_0+j} = T_\psi(F_\theta(u^A_{t_0+j-1}), y_{t_0+j}),\ u^A_{t_0} = u^{ref}_{t_0} + \sigma_0\xi,

and :func:`fit_joint` minimises :math:`\sum_\ell w_\ell \mathcal L_\ell`. A weight of ``0``
removes a term (it is not evaluated). The unrolled term :math:`\mathcal L_k` is the cycle of
:func:`~assimilax.learned.learned_filter` with ``cycle="analysis"`` run for ``k`` cycles from a
perturbed reference and differentiated through all of them; its minimiser among linear
:math:`(F, T)` on a linear-Gaussian system (for :math:`k` large against the filter's
memory) is the true model and the steady-state Kalman gain, which the one-cycle analysis fit,
trained on forecasts from the reference, does not reach. Learning the forward model
end-to-end through the assimilation cycle is the approach of :cite:`bocquet2020bayesian`.

The differentiable draw of :math:`G_\phi` in :math:`\mathcal L_{\rm fa}` is either

* ``"tweedie"``: :math:`u^A = T_\psi + \mu_r + \sigma_r \hat z`, with the denoiser's posterior
  mean (Tweedie's formula) :math:`\hat z = (z_\tau + \sigma_\tau^2 s_\phi(z_\tau, \tau, c))/\alpha_\tau`
  at diffusion time :math:`\tau` (``tweedie_time``) from a reparameterised
  :math:`z_\tau = \sqrt{\alpha_\tau^2 + \sigma_\tau^2}\,\varepsilon`; or
* ``"sampler"``: a short reparameterised probability-flow (Heun) run of ``alignment_steps``
  steps from :math:`z_1 = \sigma_1\varepsilon`, differentiated through every step.

Without a residual model both reduce to :math:`u^A = T_\psi(u^F, y)`.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .._training import adam_cosine, run_chunked, strong_types
from .._validation import check_finite, check_positive_int
from ..diffusion import batch_score, dsm_loss, probability_flow_heun
from .analysis import ResidualDiffusion, residual_condition
from .data import TrajectoryData

TERMS = ("forecast", "analysis", "score", "forward_alignment", "backward_alignment", "unrolled")
DEFAULT_WEIGHTS = {"forecast": 1.0, "analysis": 1.0, "score": 0.0, "forward_alignment": 0.0,
                   "backward_alignment": 0.0, "unrolled": 0.0}


class JointBatch(NamedTuple):
    """One minibatch of consecutive reference states and observations.

    ``x_prev``, ``x``, ``x_next`` ``(B, d)``: :math:`u^{ref}_{t-1}, u^{ref}_t, u^{ref}_{t+1}`;
    ``y``, ``y_next`` ``(B, m)``: :math:`y_t, y_{t+1}`; ``window_x0`` ``(B, d)``, ``window_states``
    ``(B, k, d)``, ``window_ys`` ``(B, k, m)``: the windows of the unrolled term (``k = 0``: empty).
    """

    x_prev: jax.Array
    x: jax.Array
    x_next: jax.Array
    y: jax.Array
    y_next: jax.Array
    window_x0: jax.Array
    window_states: jax.Array
    window_ys: jax.Array


class JointFit(NamedTuple):
    """What :func:`fit_joint` returns: the trained ``forward`` :math:`F_\\theta`, ``analysis``
    :math:`T_\\psi`, ``residual`` :math:`p_\\phi` (or ``None``) and ``history``, a dict with one
    ``(n_steps,)`` array per term of ``TERMS`` (``nan`` where the weight is 0) and ``"total"``."""

    forward: eqx.Module
    analysis: eqx.Module
    residual: object
    history: dict


def check_weights(weights) -> dict:
    r"""Complete ``weights`` (a dict over ``TERMS``) with ``DEFAULT_WEIGHTS``; refuse
    unknown names and negative or non-finite values."""
    w = dict(DEFAULT_WEIGHTS)
    if weights is not None:
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; the terms are {list(TERMS)}")
        w.update({k: float(v) for k, v in weights.items()})
    bad = {k: v for k, v in w.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"loss weights must be finite and >= 0, got {bad}")
    if all(v == 0 for v in w.values()):
        raise ValueError("every loss weight is 0: nothing to train")
    return w


def _check_data(data: TrajectoryData, unroll: int):
    if not isinstance(data, TrajectoryData):
        raise ValueError(f"data must be a TrajectoryData, got {type(data).__name__}")
    x0, S, Y = (jnp.asarray(a) for a in data)
    if x0.ndim != 2 or S.ndim != 3 or Y.ndim != 3:
        raise ValueError(f"data must hold x0 (n, d), states (n, T, d), observations (n, T, m); got shapes "
                         f"{x0.shape}, {S.shape}, {Y.shape}")
    if S.shape[0] != x0.shape[0] or S.shape[2] != x0.shape[1] or Y.shape[:2] != S.shape[:2]:
        raise ValueError(f"mismatched trajectory shapes: x0 {x0.shape}, states {S.shape}, observations {Y.shape} "
                         f"(expected (n, d), (n, T, d), (n, T, m))")
    if S.shape[1] < 2:
        raise ValueError(f"trajectories need at least 2 cycles (the alignment terms use t and t+1), got {S.shape[1]}")
    if unroll > S.shape[1]:
        raise ValueError(f"unroll={unroll} exceeds the trajectory length {S.shape[1]}")
    for a, name in ((x0, "data.x0"), (S, "data.states"), (Y, "data.observations")):
        check_finite(a, name)
    return x0, S, Y


def sample_batch(data: TrajectoryData, key, batch_size: int, unroll: int = 0) -> JointBatch:
    r"""Draw ``batch_size`` times :math:`(i, t)`, :math:`1 \le t \le T-1` (so that :math:`t+1`
    exists), uniformly with replacement, and as many windows of ``unroll`` cycles
    (:math:`u^{ref}_{t_0}` and the next ``unroll`` states and observations). Jit-able."""
    x0, S, Y = data
    n, T, _ = S.shape
    full = jnp.concatenate([x0[:, None, :], S], axis=1)  # (n, T+1, d), time 0..T
    ki, kt, kw, ks = jax.random.split(key, 4)
    i = jax.random.randint(ki, (batch_size,), 0, n)
    t = jax.random.randint(kt, (batch_size,), 1, T)  # 1..T-1
    yt, ytn = Y[i, t - 1], Y[i, t]  # observations are stored for times 1..T
    if unroll > 0:
        iw = jax.random.randint(kw, (batch_size,), 0, n)
        t0 = jax.random.randint(ks, (batch_size,), 0, T - unroll + 1)
        offs = t0[:, None] + jnp.arange(1, unroll + 1)[None, :]
        wx0, ws, wy = full[iw, t0], full[iw[:, None], offs], Y[iw[:, None], offs - 1]
    else:
        wx0 = jnp.zeros((batch_size, S.shape[2]), S.dtype)
        ws = jnp.zeros((batch_size, 0, S.shape[2]), S.dtype)
        wy = jnp.zeros((batch_size, 0, Y.shape[2]), Y.dtype)
    return JointBatch(full[i, t - 1], full[i, t], full[i, t + 1], yt, ytn, wx0, ws, wy)


def _sqmean(a, b):
    return jnp.mean((a - b) ** 2)


def residual_draw(residual: ResidualDiffusion, y, u_tilde, key, *, mode: str = "tweedie", tweedie_time: float = 0.5,
                  n_steps: int = 4):
    r"""A differentiable (reparameterised) residual for one condition :math:`c = (y, \tilde u)`,
    ``(d,)``: the Tweedie posterior mean at ``tweedie_time`` (``mode="tweedie"``) or a short
    probability-flow Heun run of ``n_steps`` (``mode="sampler"``); see the module docstring."""
    sde, net = residual.sde, residual.net
    c = (residual_condition(y, u_tilde) - residual.c_mean) / residual.c_std
    eps = jax.random.normal(key, (residual.dim,), dtype=u_tilde.dtype)
    if mode == "tweedie":
        tau = jnp.asarray(tweedie_time, dtype=u_tilde.dtype)
        a, s2 = sde.alpha(tau), sde.sigma2(tau)
        z_t = jnp.sqrt(a**2 + s2) * eps
        z = (z_t + s2 * net(z_t, tau, c)) / a
    elif mode == "sampler":
        z = probability_flow_heun(sde, batch_score(net, c), sde.prior_std(1.0) * eps[None, :], n_steps=n_steps)[0]
    else:
        raise ValueError(f"mode must be 'tweedie' or 'sampler', got {mode!r}")
    return residual.r_mean + residual.r_std * z.astype(u_tilde.dtype)


def joint_loss_terms(forward, analysis, batch: JointBatch, key, *, residual=None, weights=None,
                     perturb_std: float = 0.0, unroll_std: float = 0.0, unroll_discard: int = 0,
                     alignment_sample: str = "tweedie", tweedie_time: float = 0.5, alignment_steps: int = 4,
                     score_source: str = "reference") -> dict:
    r"""The loss terms of the module docstring on one :class:`JointBatch` (a dict over
    ``TERMS``; a term whose weight is 0 is not evaluated and reported as ``nan``).

    The analysis term sees the forecast :math:`u^{F,ref}_t` with ``jax.lax.stop_gradient``, so
    that :math:`\mathcal L_{\rm an}` trains :math:`T_\psi` only and :math:`\mathcal L_{\rm fc}`
    :math:`F_\theta` only: with both alignment weights and the unrolled weight at 0, joint
    training *is* separate training. The alignment and unrolled terms differentiate through both.
    ``score_source="unrolled"`` fits :math:`p_\phi` on the residuals of the unrolled cycles after
    spin-up (the cycle it is used in) instead of those of the one-cycle forecasts.
    """
    w = check_weights(weights)
    if score_source not in ("reference", "unrolled"):
        raise ValueError(f"score_source must be 'reference' or 'unrolled', got {score_source!r}")
    B = batch.x.shape[0]
    kp, ks, ka, ku = jax.random.split(key, 4)
    nan = jnp.asarray(jnp.nan, batch.x.dtype)
    out = {k: nan for k in TERMS}
    T_b = jax.vmap(analysis)
    F_b = jax.vmap(forward)
    need_fref = w["analysis"] > 0 or w["score"] > 0 or w["forward_alignment"] > 0
    if need_fref:
        start = batch.x_prev
        if perturb_std > 0:
            start = start + perturb_std * jax.random.normal(kp, start.shape, start.dtype)
        uf_ref = F_b(start)
    if w["forecast"] > 0:
        out["forecast"] = _sqmean(F_b(batch.x_prev), batch.x)
    if w["analysis"] > 0:
        out["analysis"] = _sqmean(T_b(jax.lax.stop_gradient(uf_ref), batch.y), batch.x)
    if w["score"] > 0:
        if residual is None:
            raise ValueError("the score term needs a residual model")
        if score_source == "reference":
            ut = jax.lax.stop_gradient(T_b(jax.lax.stop_gradient(uf_ref), batch.y))
            ys_s, xs_s = batch.y, batch.x
        else:  # the analyses of the unrolled cycles after spin-up (computed below)
            ut = ys_s = xs_s = None
    if w["forward_alignment"] > 0:
        ua = T_b(uf_ref, batch.y)
        if residual is not None:
            ua = ua + jax.vmap(lambda y, u, k: residual_draw(residual, y, u, k, mode=alignment_sample,
                                                             tweedie_time=tweedie_time, n_steps=alignment_steps))(
                batch.y, ua, jax.random.split(ka, B))
        out["forward_alignment"] = _sqmean(F_b(ua), batch.x_next)
    if w["backward_alignment"] > 0:
        out["backward_alignment"] = (_sqmean(T_b(batch.x_next, batch.y), batch.x)
                                     + _sqmean(T_b(F_b(batch.x), batch.y), batch.x))
    if w["unrolled"] > 0 or (w["score"] > 0 and score_source == "unrolled"):
        k = batch.window_states.shape[1]
        if k <= unroll_discard:
            raise ValueError(f"the unrolled cycles need windows longer than unroll_discard={unroll_discard}, got {k}")
        u0 = batch.window_x0
        if unroll_std > 0:
            u0 = u0 + unroll_std * jax.random.normal(ku, u0.shape, u0.dtype)

        def cycle(u, inp):
            y, x = inp
            u = jax.vmap(analysis)(jax.vmap(forward)(u), y)
            return u, (jnp.mean((u - x) ** 2, axis=-1), u)

        wys, wxs = jnp.swapaxes(batch.window_ys, 0, 1), jnp.swapaxes(batch.window_states, 0, 1)  # (k, B, .)
        _, (errs, us) = jax.lax.scan(cycle, u0, (wys, wxs))
        if w["unrolled"] > 0:
            out["unrolled"] = jnp.mean(errs[unroll_discard:])
        if w["score"] > 0 and score_source == "unrolled":
            flat = lambda a: a[unroll_discard:].reshape(-1, a.shape[-1])
            ut, ys_s, xs_s = jax.lax.stop_gradient(flat(us)), flat(wys), flat(wxs)
    if w["score"] > 0:
        r = (xs_s - ut - residual.r_mean[None, :]) / residual.r_std[None, :]
        c = (jax.vmap(residual_condition)(ys_s, ut) - residual.c_mean[None, :]) / residual.c_std[None, :]
        out["score"] = dsm_loss(residual.net, residual.sde, r, ks, cond=c) / residual.dim
    return out


def _standardise_residual(residual, forward, analysis, data, perturb_std, key):
    # the residual's standardisation constants, from the initial T_psi (held fixed in training)
    x0, S, Y = data
    prev = jnp.concatenate([x0[:, None, :], S[:, :-1]], axis=1).reshape(-1, S.shape[-1])
    ys = Y.reshape(-1, Y.shape[-1])
    if perturb_std > 0:
        prev = prev + perturb_std * jax.random.normal(key, prev.shape, prev.dtype)
    ut = jax.vmap(analysis)(jax.vmap(forward)(prev), ys)
    r = S.reshape(-1, S.shape[-1]) - ut
    c = jax.vmap(residual_condition)(ys, ut)
    dt = residual.r_std.dtype
    vals = (jnp.mean(r, 0), jnp.std(r, 0) + 1e-8, jnp.mean(c, 0), jnp.std(c, 0) + 1e-8)
    return eqx.tree_at(lambda m: (m.r_mean, m.r_std, m.c_mean, m.c_std), residual, tuple(v.astype(dt) for v in vals))


def _freeze_constants(res):
    # the residual's standardisation constants get zero gradients (Adam then leaves them unchanged)
    if res is None:
        return None
    sg = jax.lax.stop_gradient
    return eqx.tree_at(lambda r: (r.r_mean, r.r_std, r.c_mean, r.c_std), res,
                       (sg(res.r_mean), sg(res.r_std), sg(res.c_mean), sg(res.c_std)))


@eqx.filter_jit
def _joint_steps(mods, opt_state, arrays, key, n, optimizer, batch_size, k_unroll, setting):
    # n Adam steps of fit_joint in one scan; every argument but the models, the optimiser state, the
    # data and the key is static (hashable), so a repeated fit reuses the compiled program
    weights, perturb_std, unroll_std, unroll_discard, alignment_sample, tweedie_time, alignment_steps, score_source = \
        setting
    w = dict(weights)
    names = [k for k in TERMS if w[k] > 0]
    params, static = eqx.partition(mods, eqx.is_inexact_array)

    def loss_fn(p, batch, k):
        F, T, res = eqx.combine(p, static)
        terms = joint_loss_terms(F, T, batch, k, residual=_freeze_constants(res), weights=w, perturb_std=perturb_std,
                                 unroll_std=unroll_std, unroll_discard=unroll_discard,
                                 alignment_sample=alignment_sample, tweedie_time=tweedie_time,
                                 alignment_steps=alignment_steps, score_source=score_source)
        total = sum(w[nm] * terms[nm] for nm in names)
        return total, jnp.stack([total] + [terms[nm] for nm in TERMS])

    def step(carry, k):
        p, s = carry
        kb, kl = jax.random.split(k)
        batch = sample_batch(arrays, kb, batch_size, k_unroll)
        (_, vals), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch, kl)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), vals

    (params, opt_state), vals = jax.lax.scan(step, (params, opt_state), jax.random.split(key, n))
    return eqx.combine(params, static), opt_state, vals


def fit_joint(forward, analysis, data: TrajectoryData, *, key, weights=None, residual=None, n_steps: int = 2000,
              batch_size: int = 64, learning_rate: float = 1e-3, unroll: int = 0, unroll_discard: int = 0,
              unroll_std: float = 0.0, perturb_std: float = 0.0, alignment_sample: str = "tweedie",
              tweedie_time: float = 0.5, alignment_steps: int = 4, score_source: str = "reference", optimizer=None,
              progress: bool = True,
              chunk: int = 100, desc: str = "joint") -> JointFit:
    r"""Train :math:`F_\theta`, :math:`T_\psi` (and :math:`p_\phi`) together on the weighted sum
    of the loss terms of the module docstring (:func:`joint_loss_terms`).

    **Arguments:**

    - ``forward``: unbatched equinox Module ``F(x (d,)) -> (d,)`` (e.g.
      :class:`~assimilax.learned.StencilForward`, :class:`~assimilax.learned.LinearForward`).
    - ``analysis``: unbatched ``T(u_f (d,), y (m,)) -> (d,)`` (e.g.
      :class:`~assimilax.learned.StencilAnalysis`, :class:`~assimilax.learned.LinearAnalysis`).
    - ``data``: :class:`~assimilax.learned.TrajectoryData` (``x0`` ``(n, d)``, ``states``
      ``(n, T, d)``, ``observations`` ``(n, T, m)``), finite.
    - ``key``: PRNG key; same key, same numbers.
    - ``weights``: dict over ``TERMS`` (missing entries from ``DEFAULT_WEIGHTS``:
      forecast and analysis fit 1, the rest 0); 0 switches a term off.
    - ``residual``: :class:`~assimilax.learned.ResidualDiffusion` (``cond_dim = m + d``) or
      ``None``; its standardisation constants are set from the initial :math:`T_\psi` and kept.
    - ``n_steps``, ``batch_size``, ``learning_rate`` (Adam with cosine decay unless ``optimizer``).
    - ``unroll`` k (cycles per window of the unrolled term; needed when its weight is > 0),
      ``unroll_discard`` :math:`k_0` (cycles of spin-up excluded from it), ``unroll_std``
      :math:`\sigma_0` (perturbation of the window's initial state).
    - ``perturb_std`` :math:`\sigma`: the single-cycle terms' forecasts start from
      :math:`u^{ref}_{t-1} + \sigma\xi` (as :func:`~assimilax.learned.analysis_pairs`).
    - ``alignment_sample`` (``"tweedie"`` or ``"sampler"``), ``tweedie_time``,
      ``alignment_steps``: the differentiable draw of :math:`G_\phi` in the forward alignment.
    - ``score_source``: ``"reference"`` (one-cycle residuals) or ``"unrolled"`` (residuals of the
      unrolled cycles after spin-up; needs ``unroll``).
    - ``progress``, ``chunk``, ``desc``: tqdm bar, steps per jitted scan, its label.

    **Returns:** :class:`JointFit` ``(forward, analysis, residual, history)``.
    """
    check_positive_int(n_steps, "n_steps")
    check_positive_int(batch_size, "batch_size")
    w = check_weights(weights)
    unroll, unroll_discard = int(unroll), int(unroll_discard)
    if score_source not in ("reference", "unrolled"):
        raise ValueError(f"score_source must be 'reference' or 'unrolled', got {score_source!r}")
    uses_windows = w["unrolled"] > 0 or (w["score"] > 0 and score_source == "unrolled")
    if uses_windows and unroll <= unroll_discard:
        raise ValueError(f"the unrolled cycles need unroll > unroll_discard >= 0, "
                         f"got unroll={unroll}, unroll_discard={unroll_discard}")
    if unroll < 0 or unroll_discard < 0:
        raise ValueError(f"unroll and unroll_discard must be >= 0, got {unroll}, {unroll_discard}")
    if perturb_std < 0 or unroll_std < 0:
        raise ValueError(f"perturb_std and unroll_std must be >= 0, got {perturb_std}, {unroll_std}")
    if alignment_sample not in ("tweedie", "sampler"):
        raise ValueError(f"alignment_sample must be 'tweedie' or 'sampler', got {alignment_sample!r}")
    if w["score"] > 0 and residual is None:
        raise ValueError("a positive score weight needs a residual model")
    arrays = _check_data(data, unroll if uses_windows else 0)
    d, m = arrays[1].shape[2], arrays[2].shape[2]
    if residual is not None and (residual.dim != d or residual.cond_dim != m + d):
        raise ValueError(f"residual model must have dim={d} and cond_dim={m + d}, got {residual.dim}, {residual.cond_dim}")
    k_unroll = unroll if uses_windows else 0
    k_std, k_train = jax.random.split(key)
    if residual is not None:
        residual = _standardise_residual(residual, forward, analysis, arrays, perturb_std, k_std)
    if optimizer is None:
        optimizer = adam_cosine(float(learning_rate), int(n_steps))
    models = strong_types((forward, analysis, residual))
    opt_state = optimizer.init(eqx.filter(models, eqx.is_inexact_array))
    # hashable settings: the module-level jitted step compiles once per setting and data shape
    setting = (tuple(w.items()), float(perturb_std), float(unroll_std), unroll_discard, alignment_sample,
               float(tweedie_time), int(alignment_steps), score_source)
    record = []

    def chunk_run(state, k, n):
        mods, s, vals = _joint_steps(*state, arrays, k, n, optimizer, int(batch_size), k_unroll, setting)
        record.append(np.asarray(vals))
        return (mods, s), vals[:, 0]

    (models, _), _ = run_chunked(chunk_run, (models, opt_state), k_train, n_steps, chunk=chunk, progress=progress,
                                 desc=desc)
    vals = np.concatenate(record)
    history = {"total": vals[:, 0], **{nm: vals[:, 1 + i] for i, nm in enumerate(TERMS)}}
    return JointFit(models[0], models[1], models[2], history)


def state_sensitivity(analysis, u_f: Float[Array, "n d"], ys: Float[Array, "n m"]):
    r"""Mean Frobenius norm of the Jacobian of the analysis with respect to its state input,
    :math:`\frac1n\sum_i \|\partial T_\psi(u^F_i, y_i)/\partial u^F\|_F/\sqrt d`, and the same
    with respect to the observation (``(s_state, s_obs)``). A :math:`T_\psi` that ignores
    :math:`u^F` has ``s_state = 0``; the Kalman analysis has
    :math:`\|I - KH\|_F/\sqrt d` and :math:`\|K\|_F/\sqrt d`."""
    u_f, ys = jnp.asarray(u_f), jnp.asarray(ys)
    if u_f.ndim != 2 or ys.ndim != 2 or u_f.shape[0] != ys.shape[0]:
        raise ValueError(f"u_f and ys must be (n, d) and (n, m) with the same n, got {u_f.shape}, {ys.shape}")
    d = u_f.shape[1]
    Jx = jax.vmap(jax.jacfwd(analysis, argnums=0))(u_f, ys)
    Jy = jax.vmap(jax.jacfwd(analysis, argnums=1))(u_f, ys)
    nrm = lambda J: jnp.mean(jnp.sqrt(jnp.sum(J**2, axis=(1, 2)) / d))
    return nrm(Jx), nrm(Jy)


__all__ = ["TERMS", "DEFAULT_WEIGHTS", "JointBatch", "JointFit", "check_weights", "sample_batch", "residual_draw",
           "joint_loss_terms", "fit_joint", "state_sensitivity"]
