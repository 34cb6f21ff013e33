r"""Regret, the best fixed action in hindsight, and the right-hand sides of the regret bounds.

Online linear optimisation :cite:`rakhlin2013online`: at round :math:`t` the learner plays
:math:`f_t \in \mathcal F`, nature reveals :math:`x_t`, the loss is :math:`\langle f_t, x_t\rangle`,
and

.. math::
    \mathrm{Reg}_T = \sum_{t=1}^T \langle f_t, x_t\rangle - \min_{f\in\mathcal F}
    \Big\langle f, \sum_{t=1}^T x_t \Big\rangle .

With a hint (predictable process) :math:`M_t` and :math:`a_t = \|x_t - M_t\|_*^2`,
:math:`S_T = \sum_{t\le T} a_t`, the bounds used throughout are

* fixed :math:`\eta` (Lemma 1 of :cite:`rakhlin2013online`; also optimistic FTRL):
  :math:`\mathrm{Reg}_T \le R_{\max}^2/\eta + \tfrac{\eta}{2} S_T`, minimised by
  :math:`\eta^* = R_{\max}\sqrt{2/S_T}` at :math:`\sqrt{2 R_{\max}^2 S_T}`;
* any non-increasing :math:`\eta_t` that is fixed before round :math:`t`:
  :math:`\mathrm{Reg}_T \le C/\eta_T + \sum_t \tfrac{\eta_t}{2} a_t`, where :math:`C = R_{\max}^2`
  for the lazy (FTRL / dual-averaging) form and :math:`C = \sup_{f,g} D_R(f,g)` for the greedy
  two-step form;
* the adaptive rule :math:`\eta_t = \sqrt{C}/\sqrt{B^2 + S_{t-1}}`, valid when
  :math:`a_t \le B^2`: :math:`\mathrm{Reg}_T \le \sqrt{C}\,(\sqrt{B^2 + S_{T-1}} + \sqrt{S_T})
  \le \sqrt C\,(B + 2\sqrt{S_T})` (from :math:`\sum_t a_t/\sqrt{S_t} \le 2\sqrt{S_T}`).

The derivations are written out in the chapter ``40_predictable_sequences``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .._validation import check_finite, check_shape


def _check_losses(geometry, losses, name="losses"):
    check_shape(losses, (None, geometry.dim), name)
    check_finite(losses, name)


def best_fixed_action(geometry, losses):
    r"""Best fixed action in hindsight :math:`\arg\min_{f\in\mathcal F}\langle f, \sum_t x_t\rangle`.

    Exact: a vertex of the simplex, :math:`-D L/\|L\|_2` for the ball.

    **Arguments:** ``geometry`` (:class:`Simplex` or :class:`Ball`), ``losses`` ``(T, d)``.

    **Returns:** ``(action (d,), cumulative loss of that action (scalar))``.
    """
    _check_losses(geometry, losses)
    return geometry.best_fixed_action(jnp.sum(losses, axis=0))


def best_fixed_loss_path(geometry, losses):
    r""":math:`\min_f \langle f, \sum_{s\le t} x_s\rangle` for every prefix ``t`` (shape ``(T,)``)."""
    cum = jnp.cumsum(losses, axis=0)
    return jax.vmap(lambda c: geometry.best_fixed_action(c)[1])(cum)


def regret(geometry, actions, losses):
    r"""Final regret :math:`\sum_t\langle f_t, x_t\rangle - \min_f\langle f, \sum_t x_t\rangle`.

    **Arguments:** ``actions`` ``(T, d)`` (the learner's :math:`f_t`), ``losses`` ``(T, d)``.
    """
    _check_losses(geometry, losses)
    check_shape(actions, tuple(losses.shape), "actions")
    return jnp.sum(actions * losses) - geometry.best_fixed_action(jnp.sum(losses, axis=0))[1]


def regret_path(geometry, actions, losses):
    """Regret of every prefix of the run (shape ``(T,)``); the algorithms are anytime."""
    learner = jnp.cumsum(jnp.sum(actions * losses, axis=-1))
    return learner - best_fixed_loss_path(geometry, losses)


def hint_errors(geometry, losses, hints):
    r"""Squared dual-norm hint errors :math:`a_t = \|x_t - M_t\|_*^2`, shape ``(T,)``."""
    return geometry.dual_norm(losses - hints) ** 2


def fixed_eta_bound(geometry, losses, hints, eta):
    r"""Lemma 1 of :cite:`rakhlin2013online`: :math:`R_{\max}^2/\eta + \tfrac\eta2\sum_t\|x_t-M_t\|_*^2`.

    :math:`R_{\max}^2 = \log n` (simplex, negative entropy) or :math:`D^2/2` (ball,
    :math:`\tfrac12\|\cdot\|_2^2`). Holds for optimistic mirror descent and optimistic FTRL
    with constant step ``eta``; with ``hints = 0`` it is the classical mirror-descent bound.
    """
    _check_losses(geometry, losses)
    check_shape(hints, tuple(losses.shape), "hints")
    return geometry.r_max_sq / eta + 0.5 * eta * jnp.sum(hint_errors(geometry, losses, hints))


def tuned_eta(geometry, budget):
    r"""The step :math:`\eta^* = R_{\max}\sqrt{2/S}` minimising the fixed-step bound for a
    budget :math:`S \ge \sum_t \|x_t - M_t\|_*^2`."""
    return jnp.sqrt(2.0 * geometry.r_max_sq / jnp.maximum(budget, 1e-12))


def tuned_bound(geometry, sum_sq_errors):
    r"""The bound at the tuned step: :math:`\sqrt{2R_{\max}^2 S}` (the notes' :math:`c\sqrt{S}`,
    :math:`c = \sqrt2 R_{\max}`)."""
    return jnp.sqrt(2.0 * geometry.r_max_sq * sum_sq_errors)


def adaptive_constant(geometry, form: str) -> float:
    r"""The constant :math:`C` of the adaptive bound: :math:`R_{\max}^2` for the lazy form,
    :math:`\sup D_R` for the greedy form (infinite on the simplex, which therefore always runs
    the lazy form when :math:`\eta` adapts)."""
    if form == "lazy":
        return geometry.r_max_sq
    if form == "greedy":
        return geometry.bregman_sup
    raise ValueError(f"form must be 'lazy' or 'greedy', got {form!r}")


def adaptive_eta_bound(geometry, losses, hints, bound, form: str = "lazy"):
    r"""Closed-form bound of the adaptive rule :math:`\eta_t = \sqrt C/\sqrt{B^2 + S_{t-1}}`:

    .. math:: \mathrm{Reg}_T \le \sqrt C\,\big(\sqrt{B^2 + S_{T-1}} + \sqrt{S_T}\big),

    valid whenever every :math:`\|x_t - M_t\|_* \le B` (``bound``).
    """
    _check_losses(geometry, losses)
    check_shape(hints, tuple(losses.shape), "hints")
    a = hint_errors(geometry, losses, hints)
    s_t = jnp.sum(a)
    c = adaptive_constant(geometry, form)
    return jnp.sqrt(c) * (jnp.sqrt(bound**2 + s_t - a[-1]) + jnp.sqrt(s_t))
