r"""Reverse-time samplers for linear forward SDEs :cite:`song2021scorebased`.

All samplers take a *batched* score ``score_fn(x, t)`` with ``x`` of shape ``(n, d)`` (or ``(n, C, *spatial)`` for fields) and a
scalar ``t``, returning ``(n, d)``, and integrate on the uniform grid
:math:`t_k = t_{\max} - k\,\Delta t`, :math:`\Delta t = (t_{\max}-t_{\min})/K`, ``k = 0..K``,
under ``lax.scan``. They return samples of :math:`p_{t_{\min}}` (which differs from
:math:`p_0` by a kernel of variance :math:`\sigma_{t_{\min}}^2`).

* :func:`euler_maruyama`: :math:`x \leftarrow x - \Delta t\,[f x - g^2 s(x,t)] + g\sqrt{\Delta t}\,z`,
  with :math:`z\sim\mathcal N(0, I)` (or :math:`z_i=\pm1`, the simplified weak Euler scheme)
  drawn for blocks of steps by :mod:`assimilax.diffusion.noise`.
* :func:`probability_flow_heun`: Heun's method on :math:`\dot x = f x - \tfrac12 g^2 s`.
* :func:`predictor_corrector`: an Euler--Maruyama predictor followed by ``n_corrector``
  Langevin steps :math:`x \leftarrow x + \epsilon s + \sqrt{2\epsilon}\,z` with
  :math:`\epsilon = 2(r\,\overline{\|z\|}/\overline{\|s\|})^2` (norms averaged over the batch,
  signal-to-noise ratio ``snr`` = :math:`r`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .noise import noise_block


def time_grid(sde, n_steps: int, t_max=None, t_min=None, dtype=None):
    r"""The decreasing time grid of the samplers: ``n_steps + 1`` equispaced times from ``t_max``
    (default ``sde.t_max``) to ``t_min`` (default ``sde.t_min``), and the step
    :math:`\Delta t = (t_{\max} - t_{\min}) / n`. **Returns:** ``(ts (n + 1,), dt)``."""
    t_max = sde.t_max if t_max is None else t_max
    t_min = sde.t_min if t_min is None else t_min
    ts = jnp.linspace(t_max, t_min, n_steps + 1, dtype=dtype)
    return ts, (t_max - t_min) / n_steps


def euler_maruyama(sde, score_fn, x_T, *, key, n_steps: int = 500, t_max=None, t_min=None, noise_last: bool = True,
                   noise: str = "gaussian"):
    r"""Euler--Maruyama on the reverse-time SDE.

    **Arguments:** ``sde``; ``score_fn(x (n, d), t) -> (n, d)``; ``x_T`` ``(n, d)`` draws of
    (an approximation of) :math:`p_{t_{\max}}`; ``key``; ``n_steps``; ``noise_last=False``
    drops the noise of the final step (a common "denoising" choice); ``noise``: how the
    increments are drawn, ``"gaussian"`` or ``"gaussian_ars"`` (standard normals from
    Threefry or ARS words) or ``"rademacher"`` (the
    simplified weak Euler scheme of :cite:`kloeden1992numerical`, same weak order); see
    :mod:`assimilax.diffusion.noise`.

    The increments of a block of consecutive steps (2 for ``"gaussian"``, 4 for
    ``"gaussian_ars"``, 32 for ``"rademacher"``) come from one draw (:class:`~assimilax.diffusion.noise.NoiseBlock`);
    ``n_steps`` need not be a multiple of the block.

    **Returns:** ``(n, d)`` samples at ``t_min``.
    """
    block = noise_block(noise)
    ts, dt = time_grid(sde, n_steps, t_max, t_min, x_T.dtype)
    scale = jnp.sqrt(sde.g2(ts[:-1]) * dt)
    if not noise_last:
        scale = scale.at[-1].set(0.0)
    K = block.steps
    n_blocks, rem = divmod(n_steps, K)
    keys = jax.random.split(key, n_blocks + 1)

    def step(x, t, s, z):
        return x - dt * (sde.f(t) * x - sde.g2(t) * score_fn(x, t)) + s * z

    def run(x, t_blk, s_blk, k, n):
        payload = block.draw(k, x.shape, x.dtype)
        if block.unroll:
            for j in range(n):
                x = step(x, t_blk[j], s_blk[j], block.take(payload, j, x.dtype))
            return x
        inner = lambda x, inp: (step(x, inp[0], inp[1], block.take(payload, inp[2], x.dtype)), None)
        return jax.lax.scan(inner, x, (t_blk, s_blk, jnp.arange(n)))[0]

    x = x_T
    if n_blocks:
        t_main = ts[: n_blocks * K].reshape(n_blocks, K)
        s_main = scale[: n_blocks * K].reshape(n_blocks, K)
        x, _ = jax.lax.scan(lambda x, inp: (run(x, *inp, K), None), x, (t_main, s_main, keys[:-1]))
    if rem:
        x = run(x, ts[n_blocks * K: n_steps], scale[n_blocks * K:], keys[-1], rem)
    return x


def probability_flow_heun(sde, score_fn, x_T, *, n_steps: int = 200, t_max=None, t_min=None):
    r"""Heun's (2nd-order) method on the probability-flow ODE
    :math:`\dot x = f(t)x - \tfrac12 g(t)^2 \nabla\log p_t(x)`, integrated from ``t_max`` to
    ``t_min``. Deterministic given ``x_T``. **Returns:** ``(n, d)``."""
    ts, dt = time_grid(sde, n_steps, t_max, t_min, x_T.dtype)

    def vel(x, t):
        return sde.f(t) * x - 0.5 * sde.g2(t) * score_fn(x, t)

    def body(x, inp):
        t0, t1 = inp
        v0 = vel(x, t0)
        x_pred = x - dt * v0
        v1 = vel(x_pred, t1)
        return x - 0.5 * dt * (v0 + v1), None

    x, _ = jax.lax.scan(body, x_T, (ts[:-1], ts[1:]))
    return x


def predictor_corrector(sde, score_fn, x_T, *, key, n_steps: int = 500, n_corrector: int = 1, snr: float = 0.1, t_max=None, t_min=None):
    r"""Predictor--corrector sampling (Euler--Maruyama predictor, Langevin corrector) at the
    new time after every predictor step. **Returns:** ``(n, d)``."""
    ts, dt = time_grid(sde, n_steps, t_max, t_min, x_T.dtype)
    keys = jax.random.split(key, n_steps)

    def langevin(x, inp, t):
        k = inp
        s = score_fn(x, t)
        z = jax.random.normal(k, x.shape, dtype=x.dtype)
        z_norm = jnp.mean(jnp.sqrt(jnp.sum(z**2, axis=-1)))
        s_norm = jnp.mean(jnp.sqrt(jnp.sum(s**2, axis=-1)))
        eps = 2.0 * (snr * z_norm / jnp.maximum(s_norm, 1e-12)) ** 2
        return x + eps * s + jnp.sqrt(2.0 * eps) * z, None

    def body(x, inp):
        t0, t1, k = inp
        kp, kc = jax.random.split(k)
        drift = sde.f(t0) * x - sde.g2(t0) * score_fn(x, t0)
        x = x - dt * drift + jnp.sqrt(sde.g2(t0) * dt) * jax.random.normal(kp, x.shape, dtype=x.dtype)
        x, _ = jax.lax.scan(lambda c, kk: langevin(c, kk, t1), x, jax.random.split(kc, n_corrector))
        return x, None

    x, _ = jax.lax.scan(body, x_T, (ts[:-1], ts[1:], keys))
    return x


__all__ = ["euler_maruyama", "probability_flow_heun", "predictor_corrector", "time_grid"]
