r"""Iterative refinement (IR) across resolutions, its one-shot baseline, and super-resolved DA.

**The factorisation.** With nested restrictions :math:`x^r = P^r x` (:class:`~assimilax.multiscale.Hierarchy`,
levels :math:`r_0 < \dots < R`) the law of the full-resolution state given a coarse one and the
previous frame factorises over levels,

.. math:: p(x^R_t \mid x^{r_0}_t, x^R_{t-1})
   = \prod_{r=r_0}^{R-1} p(x^{r+1}_t \mid x^{r}_t, x^{R}_{t-1}),
   :label: ir-factorisation

because :math:`x^r_t = C^r x^{r+1}_t` is a function of the finer level. Iterative refinement
:cite:`saharia2021image,ho2021cascaded` learns the factors with *one* conditional model shared by
the levels, conditioned on the lifted coarse level, the previous frame restricted to the target
level (the Markov approximation :math:`x^R_{t-1} \to x^{r+1}_{t-1}` of the May 7 notes, exact when
the dynamics acts mode by mode on a homogeneous field) and a level embedding :math:`\phi(r)`:

.. math:: x^{r+1}_t \sim p_\theta\big(x^{r+1}_t \mid x^r_t,\, x^{r+1}_{t-1},\, \phi(r)\big).
   :label: ir-model

The one-shot baseline is the same model class on the two-level hierarchy :math:`(r_0, R)`: one
factor, :math:`p_\theta(x^R_t \mid x^{r_0}_t, x^R_{t-1})` (SR3-style conditional super-resolution
:cite:`saharia2021image`; :cite:`shu2023physics` reconstruct turbulence from low-fidelity fields with
a diffusion model trained on high-fidelity data only).

**The detail variable.** Level :math:`r+1` is written as the default lift of level :math:`r` plus a
detail, :math:`x^{r+1} = L x^r + \sigma_r\, \Pi d`, with :math:`\Pi = I - L C^r` the orthogonal
projector onto the fields that :math:`C^r` does not see and :math:`\sigma_r` the detail's
root-mean-square value in the training data. A diffusion model (a forward SDE with
:math:`d_\tau = \alpha_\tau d + \sigma_\tau \varepsilon`) learns the score of :math:`d` given the
conditions. Because :math:`\Pi d = d` holds exactly for the data, the diffused law splits into the
part in the range of :math:`\Pi` and an independent :math:`\mathcal N(0, \sigma_\tau^2)` part in its
complement, so the score used is

.. math:: s(d_\tau, \tau, c) = \Pi\, s_\theta(\Pi d_\tau, \tau, c) - (I - \Pi)\, d_\tau / \sigma_\tau^2 ,
   :label: ir-score

exact in the complement, and the sample is projected by :math:`\Pi` at the end: every refined
field restricts exactly to its condition, :math:`C^r x^{r+1} = x^r`.

**Conditioning.** The network (:class:`~assimilax.diffusion.UNet`) receives as extra channels on
the grid of level :math:`r+1`: the lifted coarse field :math:`L x^r / s` (:math:`s` the field's
standard deviation), the previous frame :math:`x^{r+1}_{t-1} / s` (optional: ``use_previous``),
the one-hot level embedding :math:`\phi(r)` as constant channels, and the conditioning
augmentation level :math:`a` as a constant channel. With *conditioning augmentation*
:cite:`ho2021cascaded` the training replaces :math:`L x^r/s` by :math:`L x^r/s + a\,\xi`,
:math:`\xi \sim \mathcal N(0, I)`, :math:`a \sim \mathcal U(0, a_{\max})`, so that the model tolerates
the imperfect coarse levels that the cascade feeds it at sampling time (where :math:`a = 0`
unless asked otherwise).

**Cost.** A convolutional network costs in proportion to the grid points it processes. Training
and sampling costs are counted in network evaluations and in point evaluations (evaluations
times grid points, :func:`~assimilax.multiscale.training_cost`, :func:`~assimilax.multiscale.sampling_cost`); equal training compute for the
one-shot model means a batch scaled by :math:`\sum_r (n_{r+1}/n_R)^{d}`
(:func:`~assimilax.multiscale.matched_batch_size`).

**Super-resolved DA** (:func:`~assimilax.multiscale.super_resolved_filter`): from a sequence of low-resolution
observations :math:`y_t = P^{r_0} x_t + \eta_t` each member :math:`i` of an ensemble is refined
from :math:`y_t`, conditioned on its own previous reconstruction :math:`x^{R,(i)}_{t-1}`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .._training import run_chunked
from .._validation import check_finite
from ..diffusion import UNet, dsm_loss, euler_maruyama
from ..filters import EnsembleFilterResult
from ..metrics import crps_ensemble, energy_spectrum_1d, energy_spectrum_2d
from .projections import Hierarchy


class Cost(NamedTuple):
    """Network evaluations and point evaluations (evaluations times grid points of each)."""

    evaluations: int
    point_evaluations: int


def _points(hierarchy: Hierarchy, level: int) -> int:
    return int(hierarchy.sizes[level]) ** hierarchy.ndim


def training_cost(hierarchy: Hierarchy, n_steps: int, batch_size: int) -> Cost:
    r"""Forward evaluations of a refinement model trained by :func:`train_refinement`:
    ``n_steps * batch_size`` per refinement step (level :math:`r \to r+1`), each on
    :math:`n_{r+1}^d` points."""
    levels = range(len(hierarchy.sizes) - 1)
    return Cost(int(n_steps) * int(batch_size) * len(levels),
                int(n_steps) * int(batch_size) * sum(_points(hierarchy, r + 1) for r in levels))


def sampling_cost(hierarchy: Hierarchy, n_steps: int, n_samples: int, level0: int = 0) -> Cost:
    r"""Network evaluations of :func:`refine`: ``n_steps`` per sample and refinement step from
    ``level0`` to the finest level, each on :math:`n_{r+1}^d` points."""
    levels = range(level0, len(hierarchy.sizes) - 1)
    return Cost(int(n_steps) * int(n_samples) * len(levels),
                int(n_steps) * int(n_samples) * sum(_points(hierarchy, r + 1) for r in levels))


def matched_batch_size(hierarchy: Hierarchy, batch_size: int, other: Hierarchy) -> int:
    r"""The batch size that gives a model trained on ``other`` (e.g. the one-shot hierarchy) the
    point evaluations of a model trained on ``hierarchy`` with ``batch_size`` per level and the
    same number of steps (rounded to the nearest integer, at least 1)."""
    a = training_cost(hierarchy, 1, batch_size).point_evaluations
    b = training_cost(other, 1, 1).point_evaluations
    return max(1, int(round(a / b)))


def detail(hierarchy: Hierarchy, fine: Float[Array, "*batch n"], level: int) -> Float[Array, "*batch n"]:
    r"""The detail :math:`\Pi x^{r+1} = x^{r+1} - L C^r x^{r+1}` of a field at level ``level + 1``."""
    return fine - hierarchy.lift(hierarchy.coarsen(fine, level), level, target=level + 1)


class RefinementModel(eqx.Module):
    r"""Conditional score model of the refinement factors :eq:`ir-model`, shared by the levels of
    ``hierarchy`` (the one-shot model: a two-level hierarchy). Build with :func:`refinement_model`.

    Fields: ``net`` (a :class:`~assimilax.diffusion.UNet` with one field channel and
    :meth:`cond_channels` conditioning channels), ``hierarchy``, ``field_scale`` :math:`s`,
    ``detail_scales`` :math:`\sigma_r` (one per refinement step), ``previous_gate`` (1: the
    previous-frame channel carries :math:`x^{r+1}_{t-1}/s`; 0: it is zero, the ablation without the
    previous frame; an array, not trained, so that both variants share one compilation).
    """

    net: UNet
    hierarchy: Hierarchy
    field_scale: float = eqx.field(static=True)
    detail_scales: tuple = eqx.field(static=True)
    previous_gate: Array

    @property
    def use_previous(self) -> bool:
        """Whether the model conditions on the previous frame (concrete gates only)."""
        return bool(np.asarray(self.previous_gate) > 0)

    @property
    def n_refinements(self) -> int:
        return len(self.hierarchy.sizes) - 1

    @staticmethod
    def cond_channels(n_refinements: int) -> int:
        """Conditioning channels: lifted coarse field, previous frame, one-hot level, augmentation level."""
        return 1 + 1 + n_refinements + 1

    def condition(self, level: int, coarse: Float[Array, " m"], previous: Optional[Float[Array, " n"]],
                  aug_level=0.0, aug_noise=None) -> Float[Array, "c n"]:
        r"""Conditioning channels ``(c, *spatial)`` on the grid of level ``level + 1`` for one
        coarse field ``coarse`` (level ``level``) and one previous frame ``previous`` (level
        ``level + 1``; ``None`` is a zero frame; multiplied by ``previous_gate``); ``aug_noise``
        (same shape as the fine field) times ``aug_level`` is added to the lifted coarse field."""
        h = self.hierarchy
        up = h.lift(coarse, level, target=level + 1) / self.field_scale
        if aug_noise is not None:
            up = up + aug_level * aug_noise
        gate = jax.lax.stop_gradient(self.previous_gate).astype(up.dtype)
        prev = jnp.zeros_like(up) if previous is None else jnp.asarray(previous, up.dtype) * (gate / self.field_scale)
        chans = [up, prev]
        ones = jnp.ones_like(up)
        chans += [ones * (1.0 if j == level else 0.0) for j in range(self.n_refinements)]
        chans.append(ones * aug_level)
        return jnp.stack(chans)

    def level_score(self, level: int, x: Float[Array, "1 n"], t, cond: Float[Array, "c n"]) -> Float[Array, "1 n"]:
        r"""The score :eq:`ir-score` of the normalised detail ``x`` ``(1, *spatial)`` at diffusion time
        ``t``, with conditioning ``cond`` from :meth:`condition`."""
        sde = self.net.sde
        px = detail(self.hierarchy, x, level)
        s = detail(self.hierarchy, self.net(px, t, cond), level)
        return s - (x - px) / sde.sigma2(t)


def refinement_model(hierarchy: Hierarchy, frames: Float[Array, "S T n"], sde, *, key, widths: Sequence[int] = (16, 32),
                     use_previous: bool = True, **unet_kwargs) -> RefinementModel:
    r"""A :class:`RefinementModel` for ``hierarchy`` with its scales estimated from training
    ``frames`` (``(S, T, *spatial)`` at the finest level): :math:`s` the standard deviation of the
    fields, :math:`\sigma_r` the root-mean-square detail of level :math:`r+1`. The U-Net
    (``widths``, further ``unet_kwargs``) predicts noise for ``sde`` with the Gaussian skip."""
    frames = jnp.asarray(frames)
    _check_frames(hierarchy, frames, "frames")
    flat = frames.reshape((-1,) + frames.shape[2:])
    scales = []
    for r in range(len(hierarchy.sizes) - 1):
        fine = hierarchy.restrict(flat, r + 1)
        scales.append(float(jnp.sqrt(jnp.mean(detail(hierarchy, fine, r) ** 2))))
    if min(scales) <= 0:
        raise ValueError(f"frames have no detail at some level (rms details {scales})")
    n_ref = len(hierarchy.sizes) - 1
    net = UNet(hierarchy.ndim, 1, RefinementModel.cond_channels(n_ref), widths=widths, sde=sde, key=key,
               **unet_kwargs)
    return RefinementModel(net, hierarchy, float(jnp.std(flat)), tuple(scales),
                           jnp.asarray(1.0 if use_previous else 0.0, flat.dtype))


def _check_frames(hierarchy: Hierarchy, frames, name: str):
    shape = (hierarchy.sizes[-1],) * hierarchy.ndim
    if frames.ndim != 2 + hierarchy.ndim or tuple(frames.shape[2:]) != shape or frames.shape[1] < 2:
        raise ValueError(f"{name} must have shape (S, T >= 2, {', '.join(map(str, shape))}) at the finest level, "
                         f"got {frames.shape}")


def refinement_pairs(hierarchy: Hierarchy, frames: Float[Array, "S T n"]) -> list:
    r"""Nested training pairs from trajectories ``frames`` ``(S, T, *spatial)`` (finest level):
    one tuple ``(coarse (P, *s_r), fine (P, *s_{r+1}), previous (P, *s_{r+1}))`` per refinement
    step :math:`r`, over all :math:`P = S(T-1)` frames :math:`t \ge 1`."""
    frames = jnp.asarray(frames)
    _check_frames(hierarchy, frames, "frames")
    cur = frames[:, 1:].reshape((-1,) + frames.shape[2:])
    prev = frames[:, :-1].reshape((-1,) + frames.shape[2:])
    out = []
    for r in range(len(hierarchy.sizes) - 1):
        out.append((hierarchy.restrict(cur, r), hierarchy.restrict(cur, r + 1), hierarchy.restrict(prev, r + 1)))
    return out


class _LevelScore(eqx.Module):
    """``model.level_score`` at a fixed level, with the call convention of dsm_loss."""

    model: RefinementModel
    level: int = eqx.field(static=True)

    def __call__(self, x, t, cond):
        return self.model.level_score(self.level, x, t, cond)


def refinement_loss(model: RefinementModel, pairs: Sequence, key, *, augmentation: float = 0.0):
    r"""Conditional DSM loss (:func:`~assimilax.diffusion.dsm_loss` of the score :eq:`ir-score`)
    summed over the refinement steps, on batches ``pairs`` as from :func:`refinement_pairs`.
    ``augmentation`` :math:`a_{\max}`: conditioning augmentation with
    :math:`a \sim \mathcal U(0, a_{\max})` per sample (0: off)."""
    total = 0.0
    for r, (coarse, fine, prev) in enumerate(pairs):
        key, k_a, k_n, k_l = jax.random.split(key, 4)
        B = fine.shape[0]
        a = jax.random.uniform(k_a, (B,), fine.dtype) * augmentation
        noise = jax.random.normal(k_n, fine.shape, fine.dtype)
        cond = jax.vmap(lambda c, p, ai, ni: model.condition(r, c, p, ai, ni))(coarse, prev, a, noise)
        x0 = (detail(model.hierarchy, fine, r) / model.detail_scales[r])[:, None]
        total = total + dsm_loss(_LevelScore(model, r), model.net.sde, x0, k_l, cond)
    return total


def train_refinement(model: RefinementModel, frames: Float[Array, "S T n"], *, key, n_steps: int = 1000,
                     batch_size: int = 32, learning_rate: float = 2e-3, augmentation: float = 0.0,
                     progress: bool = True, chunk: int = 100):
    r"""Train ``model`` by :func:`refinement_loss` on nested pairs of ``frames`` (Adam, cosine decay;
    every step draws ``batch_size`` pairs for each refinement step).

    **Returns:** ``(model, losses (n_steps,), cost)`` with ``cost`` the :class:`Cost` of the forward
    evaluations (:func:`training_cost`).
    """
    if int(n_steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"n_steps and batch_size must be positive, got {n_steps}, {batch_size}")
    if not augmentation >= 0:
        raise ValueError(f"augmentation must be >= 0, got {augmentation!r}")
    pairs = refinement_pairs(model.hierarchy, frames)
    opt_state = _ADAM.init(eqx.filter(model, eqx.is_inexact_array))
    dtype = pairs[0][0].dtype
    total, lr0, aug = (jnp.asarray(v, dtype) for v in (int(n_steps), learning_rate, augmentation))

    def chunk_run(state, k, m):
        model, opt_state, done = state
        model, opt_state, ls = _train_chunk(model, opt_state, pairs, jax.random.split(k, m), done, total, lr0, aug,
                                            int(batch_size))
        return (model, opt_state, done + m), ls

    (model, _, _), losses = run_chunked(chunk_run, (model, opt_state, jnp.asarray(0, dtype)), key, int(n_steps),
                                        chunk=chunk, progress=progress,
                                        desc="IR" if model.n_refinements > 1 else "one-shot")
    return model, losses, training_cost(model.hierarchy, n_steps, batch_size)


_ADAM = optax.scale_by_adam()


@eqx.filter_jit
def _train_chunk(model, opt_state, pairs, keys, done, total, lr0, augmentation, batch_size):
    r"""``len(keys)`` Adam steps with the cosine-decayed rate :math:`\eta_0 (0.05 + 0.95 \cdot
    \tfrac12 (1 + \cos(\pi i / n)))`, under one ``lax.scan``; module-level so that models of the
    same structure (e.g. with and without conditioning augmentation) share one compilation."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    n_pairs = pairs[0][0].shape[0]

    def loss_fn(p, k):
        ki, kl = jax.random.split(k)
        idx = jax.random.randint(ki, (len(pairs), batch_size), 0, n_pairs)
        batch = [tuple(a[idx[r]] for a in pr) for r, pr in enumerate(pairs)]
        return refinement_loss(eqx.combine(p, static), batch, kl, augmentation=augmentation)

    def step(carry, kk):
        p, s, i = carry
        loss, g = jax.value_and_grad(loss_fn)(p, kk)
        u, s = _ADAM.update(g, s, p)
        frac = jnp.minimum(i, total) / total
        lr = lr0 * (0.05 + 0.95 * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
        p = jax.tree_util.tree_map(lambda a, b: a - lr * b, p, u)
        return (p, s, i + 1), loss

    (params, opt_state, _), losses = jax.lax.scan(step, (params, opt_state, done), keys)
    return eqx.combine(params, static), opt_state, losses


def refine(model, coarse: Float[Array, "N m"], previous: Optional[Float[Array, "N n"]] = None, *, key,
           n_steps: int = 50, level0: int = 0, aug_level: float = 0.0) -> Float[Array, "N n"]:
    r"""Iterative refinement: from ``coarse`` fields at level ``level0`` (``(N, *s_{level0})``) to the
    finest level, one factor of :eq:`ir-factorisation` at a time, each by ``n_steps`` of
    Euler--Maruyama (:func:`~assimilax.diffusion.euler_maruyama`) on the score :eq:`ir-score`,
    conditioned on ``previous`` ``(N, *s_R)`` restricted to the target level. A one-shot model is a
    model on a two-level hierarchy: the same call does one refinement.

    ``model`` is a :class:`RefinementModel` or any object with its ``hierarchy``,
    ``detail_scales``, ``condition`` and ``level_score`` (e.g. exact Gaussian scores in the tests).

    **Returns:** ``(N, *s_R)`` samples; :func:`sampling_cost` counts the evaluations.
    """
    h = model.hierarchy
    coarse = jnp.asarray(coarse)
    n = coarse.shape[0]
    if coarse.ndim != 1 + h.ndim or tuple(coarse.shape[1:]) != h.shape(level0):
        raise ValueError(f"coarse must have shape (N, {', '.join(map(str, h.shape(level0)))}) at level {level0}, "
                         f"got {coarse.shape}")
    if previous is not None:
        previous = jnp.asarray(previous)
        if previous.shape != (n,) + h.shape(h.finest):
            raise ValueError(f"previous must have shape {(n,) + h.shape(h.finest)}, got {previous.shape}")
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps!r}")
    x = coarse
    for r, k in zip(range(level0, h.finest), jax.random.split(key, h.finest - level0)):
        prev_r = None if previous is None else h.restrict(previous, r + 1)
        if prev_r is None:
            cond = jax.vmap(lambda c: model.condition(r, c, None, aug_level))(x)
        else:
            cond = jax.vmap(lambda c, p: model.condition(r, c, p, aug_level))(x, prev_r)
        score = lambda d, t, r=r, cond=cond: jax.vmap(lambda di, ci: model.level_score(r, di, t, ci))(d, cond)
        k0, k1 = jax.random.split(k)
        d_T = jax.random.normal(k0, (n, 1) + h.shape(r + 1), x.dtype)
        d = euler_maruyama(model.net.sde if hasattr(model, "net") else model.sde, score, d_T, key=k1,
                           n_steps=int(n_steps))[:, 0]
        x = h.lift(x, r, target=r + 1) + model.detail_scales[r] * detail(h, d, r)
    return x


class LevelwiseModel(eqx.Module):
    r"""Separate networks per level: the ablation of the shared network with :math:`\phi(r)`.

    Level :math:`r \to r+1` of ``hierarchy`` is refined by ``models[r]``, a
    :class:`RefinementModel` on the two-level hierarchy :math:`(n_r, n_{r+1})` with its own
    network, scales and optimiser state (no level embedding: each network sees one level only),

    .. math:: x^{r+1}_t \sim p_{\theta_r}\big(x^{r+1}_t \mid x^r_t,\, x^{r+1}_{t-1}\big),
       \qquad r = r_0, \dots, R-1 .

    It has the interface :func:`refine` and :func:`super_resolved_filter` use (``hierarchy``,
    ``detail_scales``, ``sde``, ``condition``, ``level_score``), so the samplers are the same code
    as for the shared model. Build with :func:`levelwise_model`, train with :func:`train_levelwise`
    (the point evaluations of :func:`train_refinement` on ``hierarchy`` at the same steps and batch:
    equal training compute, about ``R - r_0`` times the parameters).
    """

    models: tuple
    hierarchy: Hierarchy

    def __check_init__(self):
        h = self.hierarchy
        if len(self.models) != h.finest:
            raise ValueError(f"LevelwiseModel needs one model per refinement step ({h.finest}), got {len(self.models)}")
        for r, m in enumerate(self.models):
            mh = m.hierarchy
            if tuple(mh.sizes) != (h.sizes[r], h.sizes[r + 1]) or mh.kind != h.kind or mh.ndim != h.ndim:
                raise ValueError(f"models[{r}] must be on the hierarchy ({h.sizes[r]}, {h.sizes[r + 1]}), "
                                 f"kind {h.kind!r}, ndim {h.ndim}; got sizes {mh.sizes}, kind {mh.kind!r}, ndim {mh.ndim}")

    @property
    def detail_scales(self) -> tuple:
        return tuple(m.detail_scales[0] for m in self.models)

    @property
    def sde(self):
        m = self.models[0]
        return m.net.sde if hasattr(m, "net") else m.sde

    @property
    def n_refinements(self) -> int:
        return self.hierarchy.finest

    def condition(self, level: int, coarse, previous, aug_level=0.0, aug_noise=None):
        """``models[level]``'s conditioning channels (``RefinementModel.condition`` at its level 0)."""
        return self.models[level].condition(0, coarse, previous, aug_level, aug_noise)

    def level_score(self, level: int, x, t, cond):
        """``models[level]``'s score :eq:`ir-score` (its level 0)."""
        return self.models[level].level_score(0, x, t, cond)


def _pair_hierarchy(hierarchy: Hierarchy, level: int) -> Hierarchy:
    return Hierarchy((hierarchy.sizes[level], hierarchy.sizes[level + 1]), hierarchy.kind, hierarchy.ndim)


def levelwise_model(hierarchy: Hierarchy, frames: Float[Array, "S T n"], sde, *, key, widths: Sequence[int] = (16, 32),
                    use_previous: bool = True, **unet_kwargs) -> LevelwiseModel:
    r"""A :class:`LevelwiseModel` for ``hierarchy``: one :func:`refinement_model` per refinement
    step on the two-level hierarchy :math:`(n_r, n_{r+1})`, its scales estimated from ``frames``
    ``(S, T, *spatial)`` (finest level) restricted to level :math:`r+1`; network ``r`` is
    initialised from ``jax.random.split(key, R)[r]``."""
    frames = jnp.asarray(frames)
    _check_frames(hierarchy, frames, "frames")
    if hierarchy.finest < 1:
        raise ValueError(f"hierarchy needs at least two levels, got sizes {hierarchy.sizes}")
    keys = jax.random.split(key, hierarchy.finest)
    return LevelwiseModel(tuple(
        refinement_model(_pair_hierarchy(hierarchy, r), hierarchy.restrict(frames, r + 1), sde, key=keys[r],
                         widths=widths, use_previous=use_previous, **unet_kwargs)
        for r in range(hierarchy.finest)), hierarchy)


def train_levelwise(model: LevelwiseModel, frames: Float[Array, "S T n"], *, key, n_steps: int = 1000,
                    batch_size: int = 32, learning_rate: float = 2e-3, augmentation: float = 0.0,
                    progress: bool = True, chunk: int = 100):
    r"""Train every network of a :class:`LevelwiseModel` by :func:`train_refinement` on ``frames``
    (finest level) restricted to its target level: ``n_steps`` Adam steps of ``batch_size`` pairs
    each, network ``r`` with ``jax.random.split(key, R)[r]``.

    **Returns:** ``(model, losses (n_steps,), cost)``: ``losses`` summed over the levels (the
    shared model's :func:`refinement_loss` is the same sum), ``cost`` the total :class:`Cost`,
    equal to :func:`training_cost` of ``model.hierarchy`` at ``n_steps`` and ``batch_size``.
    """
    if not isinstance(model, LevelwiseModel):
        raise TypeError(f"train_levelwise trains a LevelwiseModel, got {type(model).__name__}")
    frames = jnp.asarray(frames)
    h = model.hierarchy
    _check_frames(h, frames, "frames")
    fitted, losses, evals, points = [], 0.0, 0, 0
    for r, (m, k) in enumerate(zip(model.models, jax.random.split(key, h.finest))):
        m, ls, c = train_refinement(m, h.restrict(frames, r + 1), key=k, n_steps=n_steps, batch_size=batch_size,
                                    learning_rate=learning_rate, augmentation=augmentation, progress=progress,
                                    chunk=chunk)
        fitted.append(m)
        losses = losses + ls
        evals, points = evals + c.evaluations, points + c.point_evaluations
    return LevelwiseModel(tuple(fitted), h), losses, Cost(evals, points)


def super_resolved_filter(model, observations: Float[Array, "T m"], *, key, n_members: int = 8, n_steps: int = 50,
                          initial: Optional[Float[Array, "N n"]] = None, coarse_noise: float = 0.0,
                          aug_level: float = 0.0) -> EnsembleFilterResult:
    r"""Super-resolved data assimilation by refinement: for every low-resolution observation
    :math:`y_t` (level 0 of ``model.hierarchy``) each of ``n_members`` members is refined by
    :func:`refine` from :math:`y_t + \eta^{(i)}_t` (:math:`\eta \sim \mathcal N(0,` ``coarse_noise``
    :math:`^2)`: perturbed observations, 0 by default), conditioned on its own previous
    reconstruction; the first cycle conditions on ``initial`` ``(N, *s_R)`` (default: the
    spectral/default lift of :math:`y_1`). Under one ``lax.scan`` over cycles. A model without the
    previous frame (``previous_gate`` 0) ignores the feedback.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` with flattened states:
    ``analysis_mean`` ``(T, d)``, ``analysis_spread`` ``(T,)``, ``ensembles`` ``(T, N, d)``;
    ``forecast_mean`` is the default lift of :math:`y_t` (the input the refinement starts from)
    and ``forecast_spread`` zero.
    """
    h = model.hierarchy
    ys = jnp.asarray(observations)
    if ys.ndim != 1 + h.ndim or tuple(ys.shape[1:]) != h.shape(0) or ys.shape[0] < 1:
        raise ValueError(f"observations must have shape (T, {', '.join(map(str, h.shape(0)))}) at level 0, "
                         f"got {ys.shape}")
    check_finite(ys, "observations")
    if int(n_members) < 2:
        raise ValueError(f"n_members must be at least 2, got {n_members!r}")
    N = int(n_members)
    fine_shape = h.shape(h.finest)
    if initial is None:
        initial = jnp.broadcast_to(h.lift(ys[0], 0), (N,) + fine_shape)
    initial = jnp.asarray(initial, ys.dtype)
    if initial.shape != (N,) + fine_shape:
        raise ValueError(f"initial must have shape {(N,) + fine_shape}, got {initial.shape}")

    def cycle(prev, inp):
        y, k = inp
        k_n, k_s = jax.random.split(k)
        coarse = y[None] + coarse_noise * jax.random.normal(k_n, (N,) + y.shape, y.dtype)
        ens = refine(model, coarse, prev, key=k_s, n_steps=n_steps, aug_level=aug_level)
        return ens, ens

    _, ens = jax.lax.scan(cycle, initial, (ys, jax.random.split(key, ys.shape[0])))
    T = ys.shape[0]
    flat = ens.reshape(T, N, -1)
    mean = jnp.mean(flat, axis=1)
    spread = jnp.sqrt(jnp.mean(jnp.var(flat, axis=1, ddof=1), axis=-1))
    lifted = h.lift(ys, 0).reshape(T, -1)
    return EnsembleFilterResult(mean, spread, lifted, jnp.zeros_like(spread), flat)


class ReconstructionScores(NamedTuple):
    r"""Per-truth scores of reconstruction ensembles (:func:`reconstruction_scores`), each ``(S,)``
    except ``band_spectrum`` ``(S, B)``."""

    rel_l2: Array
    crps: Array
    spread_error: Array
    band_spectrum: Array


def reconstruction_scores(ensembles: Float[Array, "S M n"], truths: Float[Array, "S n"], edges: Sequence[float], *,
                          ndim: int = 1) -> ReconstructionScores:
    r"""Scores of ensembles ``(S, M, *spatial)`` of reconstructions of ``truths`` ``(S, *spatial)``:

    - ``rel_l2``: :math:`\|\bar x - x\| / \|x\|` of the ensemble mean;
    - ``crps``: :func:`~assimilax.metrics.crps_ensemble` averaged over grid points;
    - ``spread_error``: ensemble spread (root of the mean unbiased variance) over the RMSE of the mean
      (1 for a calibrated ensemble);
    - ``band_spectrum``: per band :math:`[e_b, e_{b+1})` of shell wavenumbers, the members' mean of
      :math:`|\log_{10}(E_{\rm member}(b)/E_{\rm truth}(b))|` with :math:`E` the energy spectrum
      (:func:`~assimilax.metrics.energy_spectrum_1d` of a velocity, ``energy_spectrum_2d`` of a vorticity):
      0 for matching band energies, 1 for a factor of 10 either way. (The relative form
      :math:`|E_{\rm member}/E_{\rm truth} - 1|` is unbounded above and bounded by 1 below, so one truth
      with little energy in a band dominates its mean.)
    """
    ens, truth = jnp.asarray(ensembles), jnp.asarray(truths)
    if ens.ndim != truth.ndim + 1 or ens.shape[0] != truth.shape[0] or ens.shape[2:] != truth.shape[1:] \
            or truth.ndim != 1 + ndim or ens.shape[1] < 2:
        raise ValueError(f"ensembles must have shape (S, M >= 2, *spatial) and truths (S, *spatial) with {ndim} "
                         f"spatial axes, got {ens.shape} and {truth.shape}")
    S, M = ens.shape[:2]
    fe, ft = ens.reshape(S, M, -1), truth.reshape(S, -1)
    mean = fe.mean(1)
    err = jnp.sqrt(jnp.mean((mean - ft) ** 2, -1))
    rel = jnp.linalg.norm(mean - ft, axis=-1) / jnp.linalg.norm(ft, axis=-1)
    spread = jnp.sqrt(jnp.mean(jnp.var(fe, axis=1, ddof=1), -1))
    crps = crps_ensemble(fe, ft)
    spec = energy_spectrum_1d if ndim == 1 else energy_spectrum_2d
    e_m, e_t = spec(ens), spec(truth)
    edges = np.asarray(edges, dtype=float)
    k = np.arange(e_t.shape[-1])
    member = jnp.asarray((k[:, None] >= edges[None, :-1]) & (k[:, None] < edges[None, 1:]), e_t.dtype)
    b_m, b_t = e_m @ member, e_t @ member
    band = jnp.mean(jnp.abs(jnp.log10(b_m / b_t[:, None])), axis=1)
    return ReconstructionScores(rel, crps, spread / err, band)


__all__ = ["Cost", "ReconstructionScores", "reconstruction_scores", "RefinementModel", "refinement_model", "refinement_pairs", "refinement_loss", "train_refinement",
           "refine", "super_resolved_filter", "training_cost", "sampling_cost", "matched_batch_size", "detail"]
