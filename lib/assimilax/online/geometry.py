r"""Decision sets with their regularisers for online linear optimisation.

Two geometries, each an equinox Module holding only its static sizes:

* :class:`Simplex` -- the probability simplex :math:`\Delta_n` with the negative entropy
  :math:`R(f) = \sum_i f_i \log f_i`, which is 1-strongly convex w.r.t. :math:`\|\cdot\|_1`
  on :math:`\Delta_n` (Pinsker). Dual norm :math:`\|\cdot\|_\infty`. Range
  :math:`R_{\max}^2 = \max_{\Delta_n} R - \min_{\Delta_n} R = \log n`; the Bregman
  divergence (KL) is unbounded, :math:`\sup D_R = \infty`.
* :class:`Ball` -- the Euclidean ball :math:`\{f: \|f\|_2 \le D\}` with
  :math:`R(f) = \tfrac12 \|f\|_2^2`, 1-strongly convex w.r.t. :math:`\|\cdot\|_2` (self-dual).
  :math:`R_{\max}^2 = D^2/2` and :math:`\sup_{f,g} D_R(f, g) = \tfrac12 (2D)^2 = 2D^2`.

Every geometry provides the two proximal maps that the algorithms need, both written on an
internal *state* (log-weights for the simplex, to avoid underflow on long runs; the point
itself for the ball):

* ``md_step(state, x, eta)`` -- :math:`\arg\min_{g \in \mathcal F} \eta\langle g, x\rangle +
  D_R(g, g_{\rm prev})` (multiplicative weights / projected gradient step);
* ``lazy_point(theta, eta)`` -- :math:`\arg\min_{f \in \mathcal F} \eta\langle f, \theta\rangle
  + R(f)` (softmax / projection of :math:`-\eta\theta`), the FTRL map.

References: :cite:`rakhlin2013online` (Section 2), :cite:`cesabianchi2006prediction`,
:cite:`hazan2016introduction`.
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp


class Simplex(eqx.Module):
    r"""Probability simplex :math:`\Delta_n` with the negative-entropy regulariser.

    **Arguments:** ``dim`` -- the number :math:`n \ge 2` of actions.

    Constants: ``r_max_sq`` :math:`= \log n` (range of :math:`R` over :math:`\Delta_n`),
    ``bregman_sup`` :math:`= \infty`, dual norm :math:`\|x\|_\infty`.
    """

    dim: int = eqx.field(static=True)

    def __init__(self, dim: int):
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"Simplex needs an integer dim >= 2, got {dim!r}")
        self.dim = dim

    @property
    def r_max_sq(self) -> float:
        return math.log(self.dim)

    @property
    def bregman_sup(self) -> float:
        return math.inf

    def dual_norm(self, x):
        r""":math:`\|x\|_\infty` over the last axis."""
        return jnp.max(jnp.abs(x), axis=-1)

    def init_state(self):
        """Log-weights of the uniform distribution (the minimiser of R)."""
        return jnp.full((self.dim,), -math.log(self.dim))

    def point(self, state):
        return jnp.exp(state)

    def md_step(self, state, x, eta):
        r"""Entropic mirror step :math:`g_i \propto g_{{\rm prev},i}\, e^{-\eta x_i}` (log domain)."""
        z = state - eta * x
        return z - jax.nn.logsumexp(z)

    def lazy_point(self, theta, eta):
        r"""FTRL map :math:`f \propto e^{-\eta\theta}` (softmax)."""
        return jax.nn.softmax(-eta * theta)

    def best_fixed_action(self, cumulative_loss):
        r"""The vertex :math:`e_{i^*}`, :math:`i^* = \arg\min_i L_i`, and its loss :math:`\min_i L_i`."""
        i = jnp.argmin(cumulative_loss)
        return jax.nn.one_hot(i, self.dim, dtype=cumulative_loss.dtype), jnp.min(cumulative_loss)


class Ball(eqx.Module):
    r"""Euclidean ball of radius :math:`D` with :math:`R(f) = \tfrac12\|f\|_2^2`.

    **Arguments:** ``dim`` (:math:`\ge 1`), ``radius`` :math:`D > 0` (default 1).

    Constants: ``r_max_sq`` :math:`= D^2/2`, ``bregman_sup`` :math:`= 2D^2`, dual norm
    :math:`\|x\|_2`.
    """

    dim: int = eqx.field(static=True)
    radius: float = eqx.field(static=True)

    def __init__(self, dim: int, radius: float = 1.0):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Ball needs an integer dim >= 1, got {dim!r}")
        if not radius > 0:
            raise ValueError(f"Ball radius must be positive, got {radius!r}")
        self.dim = dim
        self.radius = float(radius)

    @property
    def r_max_sq(self) -> float:
        return 0.5 * self.radius**2

    @property
    def bregman_sup(self) -> float:
        return 2.0 * self.radius**2

    def dual_norm(self, x):
        return jnp.sqrt(jnp.sum(x * x, axis=-1))

    def project(self, y):
        r"""Euclidean projection :math:`y \min(1, D/\|y\|_2)` onto the ball."""
        n = jnp.sqrt(jnp.sum(y * y))
        return y * jnp.minimum(1.0, self.radius / jnp.maximum(n, 1e-300))

    def init_state(self):
        return jnp.zeros((self.dim,))

    def point(self, state):
        return state

    def md_step(self, state, x, eta):
        r"""Projected gradient step :math:`\Pi(g_{\rm prev} - \eta x)`."""
        return self.project(state - eta * x)

    def lazy_point(self, theta, eta):
        r"""FTRL map :math:`\Pi(-\eta\theta)` (lazy projection)."""
        return self.project(-eta * theta)

    def best_fixed_action(self, cumulative_loss):
        r"""The boundary point :math:`-D L/\|L\|_2` and its loss :math:`-D\|L\|_2`."""
        n = jnp.sqrt(jnp.sum(cumulative_loss**2))
        u = -self.radius * cumulative_loss / jnp.maximum(n, 1e-300)
        return u, -self.radius * n


Geometry = Simplex | Ball
