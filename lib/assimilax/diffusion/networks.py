r"""Score networks (equinox Modules).

:class:`MLPScore` maps a state :math:`x\in\mathbb R^d`, a diffusion time ``t`` and an optional
conditioning vector ``c`` to :math:`s_\theta(x, t, c) \approx \nabla_x \log p_t(x\mid c)`.
Time enters through random Fourier features :math:`[\sin(2\pi\omega t), \cos(2\pi\omega t)]`,
:math:`\omega\sim\mathcal N(0, \text{scale}^2)` fixed at initialisation
:cite:`song2021scorebased`. With ``sde`` given, the network predicts the noise and the score is
:math:`-\hat\varepsilon_\theta/\sigma_t` (plus the exact Gaussian term
:math:`-x/(\alpha_t^2+\sigma_t^2)` of a standard-normal reference when ``gaussian_skip``), which
keeps the regression target :math:`O(1)` at every noise level.
"""
from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp


class FourierTimeEmbedding(eqx.Module):
    """Random Fourier features of a scalar time, output ``(2 * n_freq,)``."""

    freqs: jax.Array

    def __init__(self, n_freq: int = 16, scale: float = 4.0, *, key):
        self.freqs = scale * jax.random.normal(key, (n_freq,))

    def __call__(self, t):
        ang = 2 * jnp.pi * jax.lax.stop_gradient(self.freqs) * t
        return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)])


class MLPScore(eqx.Module):
    r"""MLP score network :math:`s_\theta(x, t, c)`.

    **Arguments:** ``dim`` (state dimension d), ``cond_dim`` (0: unconditional), ``width=128``,
    ``depth=3`` hidden layers, ``n_freq=16``, ``time_scale=4``, ``sde`` (optional: noise
    parametrisation, see the module docstring), ``key`` (keyword-only).

    ``__call__(x (d,), t (), cond (cond_dim,) | None) -> (d,)``; unbatched (``jax.vmap`` it).
    """

    embed: FourierTimeEmbedding
    mlp: eqx.nn.MLP
    sde: Optional[eqx.Module]
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    gaussian_skip: bool = eqx.field(static=True)

    def __init__(self, dim: int, cond_dim: int = 0, width: int = 128, depth: int = 3, n_freq: int = 16,
                 time_scale: float = 4.0, sde=None, gaussian_skip: bool = True, *, key):
        k1, k2 = jax.random.split(key)
        self.embed = FourierTimeEmbedding(n_freq, time_scale, key=k1)
        self.mlp = eqx.nn.MLP(dim + cond_dim + 2 * n_freq, dim, width, depth, activation=jax.nn.silu, key=k2)
        self.sde, self.dim, self.cond_dim, self.gaussian_skip = sde, int(dim), int(cond_dim), bool(gaussian_skip)

    def __call__(self, x, t, cond=None):
        parts = [x, self.embed(t)]
        if self.cond_dim:
            if cond is None:
                raise ValueError(f"this network expects a conditioning input of size {self.cond_dim}")
            parts.append(cond)
        return output_to_score(self.mlp(jnp.concatenate(parts)), x, t, self.sde, self.gaussian_skip)


def output_to_score(out, x, t, sde=None, gaussian_skip: bool = True):
    r"""A network's raw output as a score: ``out`` itself without ``sde``; otherwise ``out`` is read
    as the predicted noise, :math:`s = -\text{out}/\sigma_t`, minus
    :math:`x/(\alpha_t^2+\sigma_t^2)` (the exact score of a diffused standard normal) when
    ``gaussian_skip``. Shared by :class:`MLPScore` and :class:`~assimilax.diffusion.UNet`."""
    if sde is None:
        return out
    a, s2 = sde.alpha(t), sde.sigma2(t)
    score = -out / jnp.sqrt(s2)
    if gaussian_skip:
        score = score - x / (a**2 + s2)
    return score


def batch_score(net, cond=None):
    """Wrap an unbatched network as a batched ``score_fn(x (n, ...), t) -> (n, ...)`` for the
    samplers; ``cond`` with one axis fewer than ``x`` (``(cond_dim,)`` for vectors, ``(c, L)`` for
    1-D fields) is shared by all samples, with as many axes as ``x`` it is one per sample."""
    if cond is None:
        return lambda x, t: jax.vmap(lambda xi: net(xi, t))(x)
    cond = jnp.asarray(cond)

    def score(x, t):
        if cond.ndim < x.ndim:  # one conditioning input shared by all samples
            return jax.vmap(lambda xi: net(xi, t, cond))(x)
        return jax.vmap(lambda xi, ci: net(xi, t, ci))(x, cond)

    return score


__all__ = ["FourierTimeEmbedding", "MLPScore", "batch_score", "output_to_score"]
