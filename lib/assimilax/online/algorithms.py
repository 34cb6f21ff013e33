r"""Mirror descent, FTRL and optimistic mirror descent for online linear optimisation.

All algorithms take a geometry (:class:`~assimilax.online.Simplex` or
:class:`~assimilax.online.Ball`), a loss sequence ``losses`` of shape ``(T, d)`` and hints
``(T, d)`` (an array, or a hint process from :mod:`assimilax.online.hints`, turned into the
array ``M_1..M_T`` with ``M_t`` a function of ``x_1..x_{t-1}`` only). Linear losses are oblivious
to the learner, so precomputing the hints is exact. Every round is one step of
``jax.lax.scan``; the functions jit and ``vmap`` over many sequences (and over ``eta``).

Optimistic mirror descent :cite:`rakhlin2013online` (Section 2), with :math:`g_0 = \arg\min R`:

.. math::
    f_t = \arg\min_{f\in\mathcal F} \eta_t\langle f, M_t\rangle + D_R(f, g_{t-1}),\qquad
    g_t = \arg\min_{g\in\mathcal F} \eta_t\langle g, x_t\rangle + D_R(g, g_{t-1}).

Optimistic FTRL (lazy form): :math:`f_t = \arg\min_f \eta_t\langle f, \sum_{s<t}x_s + M_t\rangle
+ R(f)`. On the simplex with constant :math:`\eta` both are the same algorithm
(optimistic Hedge, :math:`f_t \propto \exp(-\eta(\sum_{s<t}x_s + M_t))`).

Step sizes: a number (constant :math:`\eta`), or :class:`AdaptiveEta` (``bound`` :math:`B`):
:math:`\eta_t = \sqrt{C}/\sqrt{B^2 + \sum_{s<t}\|x_s - M_s\|_*^2}` with :math:`C` from
:func:`~assimilax.online.regret.adaptive_constant`. Every result carries the bound of its own
run (see :class:`OnlineResult`).
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_finite, check_shape, is_concrete
from .regret import adaptive_constant, best_fixed_loss_path


class AdaptiveEta(eqx.Module):
    r"""Adaptive step :math:`\eta_t = \sqrt C / \sqrt{B^2 + \sum_{s<t}\|x_s - M_s\|_*^2}`.

    ``bound`` is :math:`B \ge \max_t\|x_t - M_t\|_*` (e.g. 1 for losses and hints in
    :math:`[0,1]^n` on the simplex, :math:`2G` on the ball when :math:`\|x_t\|,\|M_t\| \le G`).
    Guarantee: :math:`\mathrm{Reg}_T \le \sqrt C(\sqrt{B^2 + S_{T-1}} + \sqrt{S_T})`.
    """

    bound: float = 1.0


class OnlineResult(NamedTuple):
    r"""Output of an online learner on one sequence.

    * ``actions`` ``(T, d)``: :math:`f_t`;
    * ``losses`` ``(T,)``: :math:`\langle f_t, x_t\rangle`;
    * ``etas`` ``(T,)``: the step used in round :math:`t`;
    * ``hint_errors`` ``(T,)``: :math:`a_t = \|x_t - M_t\|_*^2`;
    * ``regret_path`` ``(T,)``: regret of every prefix (the learners are anytime);
    * ``bound_path`` ``(T,)``: :math:`C/\eta_t + \sum_{s\le t}\tfrac{\eta_s}{2}a_s`, the bound
      for every prefix (Lemma 1 of :cite:`rakhlin2013online` for constant :math:`\eta`);
    * ``regret``, ``bound``: the final values.
    """

    actions: jax.Array
    losses: jax.Array
    etas: jax.Array
    hint_errors: jax.Array
    regret_path: jax.Array
    bound_path: jax.Array
    regret: jax.Array
    bound: jax.Array


def _prepare(geometry, losses, hints):
    if hasattr(hints, "sequence"):
        check_shape(losses, (None, geometry.dim), "losses")
        hints = hints.sequence(losses)
    if hints is None:
        hints = jnp.zeros_like(losses)
    check_shape(losses, (None, geometry.dim), "losses")
    check_shape(hints, tuple(jnp.shape(losses)), "hints")
    check_finite(losses, "losses")
    check_finite(hints, "hints")
    if is_concrete(losses) and jnp.shape(losses)[0] < 1:
        raise ValueError("losses must hold at least one round")
    return jnp.asarray(losses), jnp.asarray(hints, dtype=jnp.result_type(losses))


def _as_eta(eta, losses):
    if isinstance(eta, AdaptiveEta):
        return eta
    if is_concrete(eta) and not jnp.all(jnp.asarray(eta) > 0):
        raise ValueError(f"eta must be positive, got {eta!r}")
    eta = jnp.asarray(eta, dtype=jnp.result_type(losses))
    if eta.ndim != 0:
        raise ValueError(f"eta must be a scalar (vmap over it for several), got shape {eta.shape}")
    return eta


def _eta_schedule(eta, const):
    if isinstance(eta, AdaptiveEta):
        if is_concrete(eta.bound) and not eta.bound > 0:
            raise ValueError(f"AdaptiveEta.bound must be positive, got {eta.bound!r}")
        c = jnp.sqrt(const)
        return lambda s_prev: c / jnp.sqrt(eta.bound**2 + s_prev)
    return lambda s_prev: eta + 0.0 * s_prev


def _finish(geometry, losses, actions, etas, a, const):
    inst = jnp.sum(actions * losses, axis=-1)
    reg_path = jnp.cumsum(inst) - best_fixed_loss_path(geometry, losses)
    bound_path = const / etas + jnp.cumsum(0.5 * etas * a)
    return OnlineResult(actions, inst, etas, a, reg_path, bound_path, reg_path[-1], bound_path[-1])


@eqx.filter_jit
def _greedy(geometry, losses, hints, eta, const):
    sched = _eta_schedule(eta, const)

    def body(carry, xm):
        g, s = carry
        x, m = xm
        e = sched(s)
        f = geometry.point(geometry.md_step(g, m, e))
        g_new = geometry.md_step(g, x, e)
        a = geometry.dual_norm(x - m) ** 2
        return (g_new, s + a), (f, e, a)

    s0 = jnp.zeros((), losses.dtype)
    _, (fs, etas, a) = jax.lax.scan(body, (geometry.init_state().astype(losses.dtype), s0), (losses, hints))
    return _finish(geometry, losses, fs, etas, a, const)


@eqx.filter_jit
def _lazy(geometry, losses, hints, eta, const):
    sched = _eta_schedule(eta, const)

    def body(carry, xm):
        cum, s = carry
        x, m = xm
        e = sched(s)
        f = geometry.lazy_point(cum + m, e)
        a = geometry.dual_norm(x - m) ** 2
        return (cum + x, s + a), (f, e, a)

    init = (jnp.zeros((geometry.dim,), losses.dtype), jnp.zeros((), losses.dtype))
    _, (fs, etas, a) = jax.lax.scan(body, init, (losses, hints))
    return _finish(geometry, losses, fs, etas, a, const)


def optimistic_mirror_descent(geometry, losses, hints=None, *, eta) -> OnlineResult:
    r"""Optimistic mirror descent :cite:`rakhlin2013online` with hints :math:`M_t`.

    **Arguments:**

    - ``geometry``: :class:`Simplex` (optimistic Hedge) or :class:`Ball` (optimistic projected
      gradient).
    - ``losses``: ``(T, d)`` loss vectors :math:`x_t`.
    - ``hints``: ``(T, d)`` array of :math:`M_t`, a hint process (``.sequence(losses)``), or
      ``None`` (:math:`M_t = 0`: plain mirror descent).
    - ``eta``: a positive number, or :class:`AdaptiveEta`.

    **Returns:** :class:`OnlineResult`. Constant :math:`\eta`: two-step (greedy) update above,
    bound :math:`R_{\max}^2/\eta + \tfrac\eta2\sum_t a_t` (Lemma 1). Adaptive :math:`\eta`: on
    the ball the greedy update with :math:`C = \sup D_R = 2D^2`; on the simplex, where the KL
    divergence is unbounded, the lazy form (identical to greedy for constant :math:`\eta`) with
    :math:`C = \log n`.
    """
    losses, hints = _prepare(geometry, losses, hints)
    eta = _as_eta(eta, losses)
    if isinstance(eta, AdaptiveEta):
        if geometry.bregman_sup == float("inf"):
            return _lazy(geometry, losses, hints, eta, adaptive_constant(geometry, "lazy"))
        return _greedy(geometry, losses, hints, eta, adaptive_constant(geometry, "greedy"))
    return _greedy(geometry, losses, hints, eta, geometry.r_max_sq)


def mirror_descent(geometry, losses, *, eta) -> OnlineResult:
    r"""Online mirror descent (Hedge on the simplex, projected online gradient descent on the
    ball): :math:`f_{t+1} = \arg\min_f \eta_t\langle f, x_t\rangle + D_R(f, f_t)`.

    Equal to :func:`optimistic_mirror_descent` with :math:`M_t = 0`; bound
    :math:`R_{\max}^2/\eta + \tfrac\eta2\sum_t\|x_t\|_*^2` :cite:`cesabianchi2006prediction`.
    """
    return optimistic_mirror_descent(geometry, losses, None, eta=eta)


def ftrl(geometry, losses, hints=None, *, eta) -> OnlineResult:
    r"""(Optimistic) follow the regularised leader, lazy form:

    .. math:: f_t = \arg\min_{f\in\mathcal F}\ \eta_t\Big\langle f, \sum_{s<t}x_s + M_t\Big\rangle + R(f).

    With non-increasing :math:`\eta_t`: :math:`\mathrm{Reg}_T \le R_{\max}^2/\eta_T +
    \sum_t\tfrac{\eta_t}{2}\|x_t - M_t\|_*^2` (be-the-leader argument, written out in the
    chapter). ``hints=None`` gives plain FTRL. ``eta``: number or :class:`AdaptiveEta`.
    """
    losses, hints = _prepare(geometry, losses, hints)
    eta = _as_eta(eta, losses)
    return _lazy(geometry, losses, hints, eta, geometry.r_max_sq)
