"""Lorenz-63 and Lorenz-96."""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._base import DynamicalModel


class Lorenz63(DynamicalModel):
    r"""The Lorenz (1963) system :cite:`lorenz1963deterministic`.

    .. math::
        \dot x = \sigma (y - x),\quad \dot y = x(\rho - z) - y,\quad \dot z = xy - \beta z.

    **Arguments:** ``sigma=10``, ``rho=28``, ``beta=8/3``, ``dt=0.01`` (RK4 step),
    ``noise_cov`` (``(3, 3)`` or ``None``).
    """

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0
    dt: float = eqx.field(static=True, default=0.01)
    noise_cov: object = None

    @property
    def dim(self) -> int:
        return 3

    def vector_field(self, x, t=0.0):
        return jnp.stack([
            self.sigma * (x[1] - x[0]),
            x[0] * (self.rho - x[2]) - x[1],
            x[0] * x[1] - self.beta * x[2],
        ])


class Lorenz96(DynamicalModel):
    r"""The Lorenz (1996) model on a ring of ``dim`` sites :cite:`lorenz1996predictability`.

    .. math:: \dot x_i = (x_{i+1} - x_{i-2})\, x_{i-1} - x_i + F, \qquad i \in \mathbb Z_d .

    **Arguments:** ``dim=40`` (any ``d >= 4``), ``forcing=8``, ``dt=0.05``, ``noise_cov``.
    The state axis is the last axis; the periodic padding acts on it only, so a vmapped ensemble
    never couples members.
    """

    dim_: int = eqx.field(static=True, default=40)
    forcing: float = 8.0
    dt: float = eqx.field(static=True, default=0.05)
    noise_cov: object = None

    def __init__(self, dim: int = 40, forcing: float = 8.0, dt: float = 0.05, noise_cov=None):
        if dim < 4:
            raise ValueError(f"Lorenz96 needs dim >= 4, got {dim}")
        self.dim_ = int(dim)
        self.forcing = forcing
        self.dt = dt
        self.noise_cov = noise_cov

    @property
    def dim(self) -> int:
        return self.dim_

    def vector_field(self, x, t=0.0):
        # one periodic padding (x_{d-2}, x_{d-1} | x | x_0) instead of three rolls: the same
        # arithmetic, a third of the copies (XLA materialises each roll of a large ensemble)
        xp = jnp.concatenate([x[..., -2:], x, x[..., :1]], axis=-1)
        return (xp[..., 3:] - xp[..., :-3]) * xp[..., 1:-2] - x + self.forcing
