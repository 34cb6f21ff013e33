r"""The controlled 1-D heat equation with a thermal load, solved implicitly.

.. math::
   :label: ctl-heat

   \partial_t u = \kappa\,\partial_{xx} u + q(x, t) + b(x)\,c(t), \qquad
   u(0, t) = u(L, t) = 0, \qquad x \in (0, L),

with a thermal load :math:`q`, an actuator profile :math:`b` and a scalar control :math:`c(t)`
(a distributed heater/cooler). Space is discretised by second-order finite differences on the
``n`` interior points :math:`x_i = i\,\Delta x`, :math:`\Delta x = L/(n+1)`, which gives the
tridiagonal Dirichlet Laplacian :math:`\Delta_h`; time by Crank--Nicolson (second order) or
backward Euler (first order, and positivity preserving: :math:`(I-\Delta t\,\kappa\Delta_h)^{-1}`
is entrywise non-negative, the discrete comparison principle). With the forcing
:math:`f_k = q(\cdot, t_{k+1/2}) + b\,c_k` held constant over step :math:`k`,

.. math::

   (I - \theta\Delta t\,\kappa\Delta_h)\,u_{k+1} = (I + (1-\theta)\Delta t\,\kappa\Delta_h)\,u_k
   + \Delta t\, f_k, \qquad \theta = \tfrac12 \text{ (CN)},\ 1 \text{ (BE)}.

The sine vectors :math:`\sin(m\pi x_i/L)` are exact eigenvectors of :math:`\Delta_h` with
eigenvalues :math:`-\tfrac{4}{\Delta x^2}\sin^2\!\big(\tfrac{m\pi\Delta x}{2L}\big)`, so the
modal decay :math:`e^{-\kappa (m\pi/L)^2 t}` of the continuous problem is the reference of the
tests. The solver is a ``lax.scan`` of matrix--vector products with the two precomputed
propagators :math:`M = A_-^{-1}A_+` and :math:`G = \Delta t\,A_-^{-1}`; it jits, vmaps and is
differentiable with respect to the controls, the load and the initial state.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_finite, check_shape

SCHEMES = ("crank_nicolson", "backward_euler")


class Propagators(NamedTuple):
    """One implicit step as :math:`u_{k+1} = M u_k + G f_k`: ``M`` and ``G`` of shape ``(n, n)``."""

    M: Float[Array, "n n"]
    G: Float[Array, "n n"]


class HeatEquation1D(eqx.Module):
    r"""The heat equation :eq:`ctl-heat` on :math:`(0, L)` with homogeneous Dirichlet ends.

    **Fields:**

    - `n`: interior grid points (static).
    - `kappa`: diffusivity :math:`\kappa > 0`.
    - `length`: domain length :math:`L > 0`.
    - `dt`: time step :math:`\Delta t > 0`.
    - `scheme`: ``"crank_nicolson"`` or ``"backward_euler"`` (static).

    Raises ``ValueError`` for a non-positive ``n``, ``kappa``, ``length`` or ``dt`` or an unknown
    scheme.
    """

    n: int = eqx.field(static=True)
    kappa: float
    length: float
    dt: float
    scheme: str = eqx.field(static=True)

    def __init__(self, n: int = 63, kappa: float = 1.0, length: float = 1.0, dt: float = 0.005,
                 scheme: str = "crank_nicolson"):
        if int(n) != n or int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        for name, value in (("kappa", kappa), ("length", length), ("dt", dt)):
            if not isinstance(value, jax.core.Tracer) and not float(value) > 0.0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.n, self.kappa, self.length, self.dt, self.scheme = int(n), kappa, length, dt, scheme

    @property
    def dx(self):
        """Grid spacing :math:`L/(n+1)`."""
        return self.length / (self.n + 1)

    def grid(self) -> Float[Array, " n"]:
        """The interior points :math:`x_i = i\\,\\Delta x`, ``i = 1..n``."""
        return jnp.arange(1, self.n + 1) * self.dx

    def laplacian(self) -> Float[Array, "n n"]:
        r"""The dense Dirichlet finite-difference Laplacian :math:`\Delta_h` (tridiagonal
        :math:`(1, -2, 1)/\Delta x^2`)."""
        off = jnp.ones(self.n - 1)
        return (jnp.diag(off, 1) + jnp.diag(off, -1) - 2.0 * jnp.eye(self.n)) / self.dx ** 2

    def eigenvalue(self, m: int):
        r"""Eigenvalue of :math:`\Delta_h` for the sine mode ``m``:
        :math:`-\tfrac{4}{\Delta x^2}\sin^2(m\pi\Delta x/(2L))`."""
        return -4.0 / self.dx ** 2 * jnp.sin(m * jnp.pi * self.dx / (2 * self.length)) ** 2

    def propagators(self) -> Propagators:
        r"""``M`` and ``G`` of one step :math:`u_{k+1} = M u_k + G f_k` (see the module)."""
        theta = 0.5 if self.scheme == "crank_nicolson" else 1.0
        lap = self.kappa * self.laplacian()
        eye = jnp.eye(self.n)
        a_minus = eye - theta * self.dt * lap
        a_plus = eye + (1.0 - theta) * self.dt * lap
        return Propagators(jnp.linalg.solve(a_minus, a_plus), self.dt * jnp.linalg.solve(a_minus, eye))

    def solve(self, u0: Float[Array, " n"], forcing: Float[Array, "K n"]) -> Float[Array, "K+1 n"]:
        r"""Integrate from ``u0`` with the per-step forcing :math:`f_k` (``forcing[k]``, held
        over :math:`[t_k, t_{k+1}]`); returns :math:`u_0, \dots, u_K`, shape ``(K+1, n)``.

        Raises ``ValueError`` for a wrong shape or NaN/inf in concrete inputs.
        """
        check_shape(u0, (self.n,), "u0")
        check_shape(forcing, (None, self.n), "forcing")
        check_finite(u0, "u0")
        check_finite(forcing, "forcing")
        M, G = self.propagators()

        def step(u, f):
            u_next = M @ u + G @ f
            return u_next, u_next

        _, us = jax.lax.scan(step, u0, forcing, unroll=8)
        return jnp.concatenate([u0[None], us], axis=0)


def gaussian_profile(model: HeatEquation1D, centre: float, width: float, *, normalise: bool = False) -> Float[Array, " n"]:
    r"""A Gaussian bump :math:`\exp(-(x-x_0)^2/(2w^2))` on the grid; with ``normalise=True`` its
    grid weights sum to one (a sensor that averages the temperature around :math:`x_0`).

    Raises ``ValueError`` for a non-positive ``width``.
    """
    if not isinstance(width, jax.core.Tracer) and not float(width) > 0.0:
        raise ValueError(f"width must be positive, got {width!r}")
    x = model.grid()
    g = jnp.exp(-0.5 * ((x - centre) / width) ** 2)
    return g / jnp.sum(g) if normalise else g


def thermal_load(model: HeatEquation1D, n_steps: int, *, key: jax.Array,
                 centre_range: tuple = (0.45, 0.75), amplitude_range: tuple = (20.0, 40.0),
                 width: float = 0.06, modulation: float = 0.5) -> Float[Array, "K n"]:
    r"""A random thermal load on the step midpoints :math:`t_{k+1/2}`:

    .. math::

       q(x, t) = a\,\exp\!\big(-(x-x_0)^2/(2w^2)\big)\,\big(1 + \mu\sin(2\pi\nu t + \phi)\big),

    with :math:`x_0 \sim U(\text{centre\_range})`, :math:`a \sim U(\text{amplitude\_range})`,
    :math:`\nu \sim U(1, 4)` cycles per unit time and :math:`\phi \sim U(0, 2\pi)`, all drawn from
    ``key``; :math:`\mu` is ``modulation`` in :math:`[0, 1]` (the load stays non-negative).
    Returns shape ``(n_steps, n)``. Use ``jax.vmap`` over keys for a batch of loads.
    """
    if int(n_steps) != n_steps or int(n_steps) < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if not 0.0 <= float(modulation) <= 1.0:
        raise ValueError(f"modulation must be in [0, 1], got {modulation!r}")
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x0 = jax.random.uniform(k1, (), minval=centre_range[0], maxval=centre_range[1])
    amp = jax.random.uniform(k2, (), minval=amplitude_range[0], maxval=amplitude_range[1])
    freq = jax.random.uniform(k3, (), minval=1.0, maxval=4.0)
    phase = jax.random.uniform(k4, (), minval=0.0, maxval=2 * np.pi)
    t_mid = (jnp.arange(int(n_steps)) + 0.5) * model.dt
    shape = jnp.exp(-0.5 * ((model.grid() - x0) / width) ** 2)
    return amp * (1.0 + modulation * jnp.sin(2 * np.pi * freq * t_mid + phase))[:, None] * shape[None, :]
