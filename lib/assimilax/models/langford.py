r"""The Langford (1984) torus system, with a sinusoidally varying rotation rate.

.. math::
    \dot x &= (z - \beta)\,x - \omega(t)\,y,\\
    \dot y &= \omega(t)\,x + (z - \beta)\,y,\\
    \dot z &= \lambda + \alpha z - \tfrac13 z^3 - (x^2 + y^2)(1 + \rho z) + \varepsilon z x^3,

with :math:`\omega(t) = \omega_0 + a \sin(2\pi t / P + \varphi)` :cite:`langford1984numerical`.
In polar coordinates :math:`x = r\cos\theta,\ y = r\sin\theta` the first two equations read
:math:`\dot r = (z-\beta)\,r` and :math:`\dot\theta = \omega(t)`: the phase rotates at exactly the
(time-varying) rate :math:`\omega`, while the amplitude is driven by the unobserved :math:`z`.

:class:`Langford` is the truth model; :class:`AugmentedLangford` carries :math:`\omega` as a
fourth state component (a random-walk parameter) for joint state--parameter estimation.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._base import DynamicalModel


def langford_field(x, y, z, omega, alpha, beta, lam, rho, epsilon):
    r"""The Langford vector field at one rotation rate :math:`\omega` (the equations of the
    module docstring), shared by :class:`Langford`, :class:`AugmentedLangford` and the NumPyro
    baseline :mod:`assimilax.baselines.langford`. **Returns:** :math:`(\dot x, \dot y, \dot z)`."""
    return jnp.stack([
        (z - beta) * x - omega * y,
        omega * x + (z - beta) * y,
        lam + alpha * z - z**3 / 3.0 - (x**2 + y**2) * (1.0 + rho * z) + epsilon * z * x**3,
    ])


class Langford(DynamicalModel):
    r"""The Langford system with rotation rate :math:`\omega(t) = \omega_0 + a\sin(2\pi t/P + \varphi)`.

    **Arguments:** ``alpha=0.95``, ``beta=0.7``, ``lam=0.6`` (:math:`\lambda`), ``omega0=3.5``,
    ``rho=0.25``, ``epsilon=0.1`` (the March 5 notes' values), ``a=0`` (amplitude of the
    :math:`\omega` modulation; ``a=0`` is the autonomous system), ``period=10`` (:math:`P`, in model
    time units), ``phi=0`` (:math:`\varphi`), ``dt=0.01`` (RK4 step), ``noise_cov`` ``(3, 3)`` or
    ``None``. State ``(x, y, z)``; ``vector_field`` uses :math:`\omega(t)`, so ``step(x, t)``
    must receive the physical time (``assimilax.simulate`` and the filters pass it).

    Reference: :cite:`langford1984numerical`.
    """

    alpha: float = 0.95
    beta: float = 0.7
    lam: float = 0.6
    omega0: float = 3.5
    rho: float = 0.25
    epsilon: float = 0.1
    a: float = 0.0
    period: float = 10.0
    phi: float = 0.0
    dt: float = eqx.field(static=True, default=0.01)
    noise_cov: object = None

    @property
    def dim(self) -> int:
        return 3

    def omega(self, t):
        r""":math:`\omega(t) = \omega_0 + a \sin(2\pi t / P + \varphi)` (any array shape)."""
        return self.omega0 + self.a * jnp.sin(2.0 * jnp.pi * jnp.asarray(t) / self.period + self.phi)

    def phase_increment(self, t0, t1):
        r"""Exact :math:`\int_{t_0}^{t_1}\omega(s)\,ds` (the phase advance, since :math:`\dot\theta=\omega`)."""
        c = self.period / (2.0 * jnp.pi)
        return self.omega0 * (t1 - t0) - self.a * c * (
            jnp.cos(2.0 * jnp.pi * t1 / self.period + self.phi) - jnp.cos(2.0 * jnp.pi * t0 / self.period + self.phi))

    def vector_field(self, x, t=0.0):
        return langford_field(x[0], x[1], x[2], self.omega(t), self.alpha, self.beta, self.lam,
                               self.rho, self.epsilon)

    @staticmethod
    def default_initial_state(dtype=None):
        """The notes' initial state ``(0.1, 0, 0)``."""
        return jnp.array([0.1, 0.0, 0.0], dtype=dtype)

    def burn_in(self, x0=None, n_steps: int = 5000):
        """Integrate ``n_steps`` (default 5000, i.e. 50 time units at ``dt=0.01``) of the
        *autonomous* system (:math:`\\omega \\equiv \\omega_0`) from ``x0`` (default
        ``(0.1, 0, 0)``) onto the attractor. Use the result as ``x0`` of ``simulate(..., burn_in=0)``
        so that the schedule :math:`\\omega(t)` starts at ``t = 0`` with the state on the attractor.
        """
        x0 = self.default_initial_state() if x0 is None else jnp.asarray(x0)
        return eqx.tree_at(lambda m: m.a, self, 0.0).integrate(x0, n_steps)


class AugmentedLangford(DynamicalModel):
    r"""The Langford system with :math:`\omega` as a state: :math:`u = (x, y, z, \omega)`,
    :math:`\dot\omega = 0` in the drift and a random walk through ``noise_cov``.

    .. math:: u_{k+1} = \mathrm{RK4}(u_k) + \eta_k,\quad
              \eta_k \sim \mathcal N\big(0, \mathrm{diag}(q_x^2, q_x^2, q_z^2, q_\omega^2)\,\Delta t\big).

    **Arguments:** the physical parameters of :class:`Langford` (without the schedule), ``dt``, and
    ``noise_cov`` ``(4, 4)`` per model step (use :meth:`with_noise`). Used for joint
    state--parameter estimation with the EKF and the particle filter
    :cite:`jazwinski1970stochastic`.
    """

    alpha: float = 0.95
    beta: float = 0.7
    lam: float = 0.6
    rho: float = 0.25
    epsilon: float = 0.1
    dt: float = eqx.field(static=True, default=0.01)
    noise_cov: object = None

    @property
    def dim(self) -> int:
        return 4

    def vector_field(self, u, t=0.0):
        f = langford_field(u[0], u[1], u[2], u[3], self.alpha, self.beta, self.lam, self.rho, self.epsilon)
        return jnp.concatenate([f, jnp.zeros((1,), f.dtype)])

    @classmethod
    def with_noise(cls, q_state: float = 0.0, q_omega: float = 0.1, q_z=None, dt: float = 0.01, **params):
        r"""Build with diffusion coefficients: per-step covariance
        :math:`\mathrm{diag}(q_x^2, q_x^2, q_z^2, q_\omega^2)\,\Delta t` (``q_z`` defaults to ``q_state``;
        a tiny floor ``1e-12`` keeps it positive definite)."""
        q_z = q_state if q_z is None else q_z
        var = jnp.array([q_state**2, q_state**2, q_z**2, q_omega**2]) * dt + 1e-12
        return cls(dt=dt, noise_cov=jnp.diag(var), **params)


__all__ = ["Langford", "AugmentedLangford", "langford_field"]
