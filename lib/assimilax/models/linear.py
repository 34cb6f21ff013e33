"""Linear-Gaussian state-space dynamics."""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_covariance, check_shape
from ._base import DynamicalModel


class LinearGaussian(DynamicalModel):
    r"""Discrete-time linear dynamics with additive Gaussian noise.

    .. math:: u_{k+1} = A u_k + b + \varepsilon_k, \qquad \varepsilon_k \sim \mathcal N(0, Q).

    **Arguments:** ``A`` ``(d, d)``, ``Q`` ``(d, d)`` positive definite, ``b`` ``(d,)``
    (default zero). ``dt`` is 1 (one step per time index). Use
    :meth:`LinearGaussian.random_stable` for random test systems.
    """

    A: jax.Array
    b: jax.Array
    dt: float = eqx.field(static=True, default=1.0)
    noise_cov: jax.Array = None

    def __init__(self, A, Q, b=None):
        A = jnp.asarray(A)
        d = A.shape[0]
        check_shape(A, (d, d), "A")
        check_covariance(Q, d, "Q")
        self.A = A
        self.b = jnp.zeros(d, A.dtype) if b is None else jnp.asarray(b)
        check_shape(self.b, (d,), "b")
        self.noise_cov = jnp.asarray(Q)
        self.dt = 1.0

    @property
    def Q(self):
        return self.noise_cov

    @property
    def dim(self) -> int:
        return self.A.shape[0]

    def step(self, x, t=0.0):
        return self.A @ x + self.b

    def jacobian(self, x, t=0.0):
        return self.A

    @classmethod
    def random_stable(cls, dim: int, *, key, spectral_radius: float = 0.95, noise_scale: float = 0.1):
        r"""A random stable system: ``A`` a scaled random orthogonal-times-diagonal matrix with
        spectral radius at most ``spectral_radius``; ``Q = noise_scale^2 (I + W W^T / d)``."""
        k1, k2, k3 = jax.random.split(key, 3)
        M = jax.random.normal(k1, (dim, dim))
        Qo, _ = jnp.linalg.qr(M)
        s = jax.random.uniform(k2, (dim,), minval=0.3, maxval=1.0) * spectral_radius
        A = Qo @ jnp.diag(s) @ Qo.T  # symmetric: eigenvalues s, |s| <= radius
        W = jax.random.normal(k3, (dim, dim))
        Q = noise_scale**2 * (jnp.eye(dim) + W @ W.T / dim)
        return cls(A, Q)
