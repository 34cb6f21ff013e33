"""Dynamical models: the common interface and the RK4 integrator.

A model advances a state ``x`` of shape ``(d,)`` by one *model step*. Continuous-time models
define :meth:`DynamicalModel.vector_field` and step with classical fourth-order Runge--Kutta of
step ``dt``; discrete-time models (e.g. :class:`~assimilax.models.LinearGaussian`) override
:meth:`DynamicalModel.step` directly. Additive Gaussian model noise
:math:`u_{k+1} = F(u_k) + \\varepsilon_k`, :math:`\\varepsilon_k \\sim \\mathcal N(0, Q)`, is
added after every model step when ``noise_cov`` is set. All methods act on a single state;
batch over ensembles with ``jax.vmap``.
"""
from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def rk4_step(f, x, t, dt):
    r"""One classical Runge--Kutta step of :math:`\dot x = f(x, t)`.

    .. math::
        k_1 = f(x, t),\; k_2 = f(x + \tfrac{h}{2}k_1, t + \tfrac h2),\;
        k_3 = f(x + \tfrac{h}{2}k_2, t + \tfrac h2),\; k_4 = f(x + h k_3, t + h),\\
        x_{+} = x + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4).
    """
    k1 = f(x, t)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(x + dt * k3, t + dt)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class DynamicalModel(eqx.Module):
    """Base class of all dynamical models.

    Subclasses set ``dt`` (time per model step), ``dim`` and either ``vector_field`` (ODEs,
    integrated with RK4) or ``step`` (discrete maps). ``noise_cov`` is the covariance ``Q`` of
    additive Gaussian noise per model step (``None``: deterministic).
    """

    dt: float = eqx.field(static=True, default=0.01)
    noise_cov: Optional[Float[Array, "d d"]] = None

    @property
    def dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def vector_field(self, x: Float[Array, " d"], t) -> Float[Array, " d"]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} is a discrete-time model")

    def step(self, x: Float[Array, " d"], t=0.0) -> Float[Array, " d"]:
        """Deterministic part of one model step (RK4 of ``vector_field``)."""
        return rk4_step(self.vector_field, x, t, self.dt)

    def noisy_step(self, x, t=0.0, *, key):
        """One model step plus a draw of the additive noise (if any)."""
        x_next = self.step(x, t)
        if self.noise_cov is None:
            return x_next
        chol = jnp.linalg.cholesky(self.noise_cov)
        return x_next + chol @ jax.random.normal(key, x.shape, dtype=x.dtype)

    def integrate(self, x, n_steps: int, t0=0.0):
        """State after ``n_steps`` deterministic model steps (``lax.fori_loop``)."""
        def body(i, x):
            return self.step(x, t0 + i * self.dt)
        return jax.lax.fori_loop(0, n_steps, body, x)

    def trajectory(self, x0, n_steps: int, t0=0.0):
        """Deterministic trajectory, shape ``(n_steps + 1, d)``, including ``x0``."""
        def body(x, i):
            x_next = self.step(x, t0 + i * self.dt)
            return x_next, x_next
        _, xs = jax.lax.scan(body, x0, jnp.arange(n_steps))
        return jnp.concatenate([x0[None], xs], axis=0)

    def snapshots(self, x0, n_frames: int, steps_per_frame: int, t0=0.0):
        r"""Deterministic states every ``steps_per_frame`` model steps, ``n_frames`` times:
        row :math:`j` is the state after :math:`(j+1)` ``steps_per_frame`` steps from ``x0``
        (``x0`` itself is not included). Uses ``integrate``, so models that keep their state
        in another representation between steps (the pseudo-spectral PDEs) keep it within a frame.
        Only the frames are stored, not every step (cf. ``trajectory``).

        **Arguments:** ``x0`` ``(d,)``; ``n_frames``, ``steps_per_frame`` positive integers (static
        under ``jit``); ``t0`` physical time of ``x0``. **Returns:** ``(n_frames, d)``.
        """
        if not isinstance(n_frames, int) or n_frames < 1:
            raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
        if not isinstance(steps_per_frame, int) or steps_per_frame < 1:
            raise ValueError(f"steps_per_frame must be a positive integer, got {steps_per_frame!r}")

        def body(x, j):
            x = self.integrate(x, steps_per_frame, t0 + j * steps_per_frame * self.dt)
            return x, x

        return jax.lax.scan(body, x0, jnp.arange(n_frames))[1]

    def jacobian(self, x, t=0.0):
        """Jacobian of one deterministic step, ``jax.jacfwd(step)``, shape ``(d, d)``."""
        return jax.jacfwd(self.step)(x, t)
