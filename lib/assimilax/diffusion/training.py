r"""Denoising score matching :cite:`vincent2011connection,song2021scorebased` and its training loop.

With :math:`x_t = \alpha_t x_0 + \sigma_t\varepsilon` and weighting
:math:`\lambda(t) = \sigma_t^2`, the loss is

.. math::
    \mathcal L(\theta) = \mathbb E_{t\sim U[t_{\min},t_{\max}],\,x_0,\,\varepsilon}
    \big\|\sigma_t\, s_\theta(x_t, t, c) + \varepsilon\big\|^2
    = \mathbb E\,\lambda(t)\big\|s_\theta(x_t,t,c) - \nabla_{x_t}\log p(x_t\mid x_0)\big\|^2 .
"""
from __future__ import annotations

import json
import os
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._training import run_chunked


def dsm_loss(net, sde, x0, key, cond=None):
    r"""Monte Carlo DSM loss on a batch ``x0`` ``(B, *sample_shape)``: vectors ``(B, d)`` or fields
    ``(B, C, L)``, ``(B, C, H, W)`` (``cond`` ``(B, ...)`` or ``None``). The squared error is summed
    over all non-batch axes and averaged over the batch."""
    kt, ke = jax.random.split(key)
    B = x0.shape[0]
    t = jax.random.uniform(kt, (B,), dtype=x0.dtype, minval=sde.t_min, maxval=sde.t_max)
    eps = jax.random.normal(ke, x0.shape, dtype=x0.dtype)
    bshape = (B,) + (1,) * (x0.ndim - 1)
    a, s = sde.alpha(t).reshape(bshape), sde.sigma(t).reshape(bshape)
    xt = a * x0 + s * eps
    if cond is None:
        pred = jax.vmap(net)(xt, t)
    else:
        pred = jax.vmap(net)(xt, t, cond)
    return jnp.mean(jnp.sum((s * pred + eps) ** 2, axis=tuple(range(1, x0.ndim))))


def fit_steps(net, opt_state, optimizer, sde, data, key, n_steps: int, batch_size: int, cond=None):
    """``n_steps`` optimiser steps under ``lax.scan`` (jit-able; used inside filters).

    **Returns:** ``(net, opt_state, losses (n_steps,))``.
    """
    params, static = eqx.partition(net, eqx.is_inexact_array)
    n = data.shape[0]

    def loss_fn(p, xb, cb, k):
        return dsm_loss(eqx.combine(p, static), sde, xb, k, cb)

    def step(carry, k):
        p, s = carry
        ki, kl = jax.random.split(k)
        idx = jax.random.randint(ki, (batch_size,), 0, n)
        cb = None if cond is None else cond[idx]
        loss, grads = jax.value_and_grad(loss_fn)(p, data[idx], cb, kl)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, n_steps))
    return eqx.combine(params, static), opt_state, losses


def train_score_network(net, sde, data, *, key, n_steps: int = 2000, batch_size: int = 256, learning_rate: float = 1e-3,
                        cond=None, optimizer=None, progress: bool = True, chunk: int = 100):
    r"""Train (or warm-start, by passing a previously trained ``net``) a score network by DSM.

    **Arguments:** ``net`` (e.g. :class:`~assimilax.diffusion.MLPScore` or
    :class:`~assimilax.diffusion.UNet`); ``sde``; ``data`` ``(n, d)`` samples of :math:`p_0`
    (fields ``(n, C, *spatial)`` for a ``UNet``); ``key``; ``n_steps``; ``batch_size``;
    ``learning_rate`` (Adam with cosine decay unless ``optimizer`` is given); ``cond`` ``(n, c)``
    (or ``(n, c, *spatial)``) conditioning inputs paired with ``data``; ``progress`` shows a tqdm
    bar (chunks of ``chunk`` steps run under one jitted ``lax.scan``).

    **Returns:** ``(net, losses)`` with ``losses`` ``(n_steps,)`` (NumPy).
    """
    data = jnp.asarray(data)
    if hasattr(net, "check_sample_shape"):  # field networks (UNet): data (n, C, *spatial)
        if data.ndim < 2:
            raise ValueError(f"data must have shape (n, C, *spatial), got {data.shape}")
        net.check_sample_shape(data.shape[1:], name="each sample of data")
    elif data.ndim != 2 or data.shape[1] != net.dim:
        raise ValueError(f"data must have shape (n, {net.dim}), got {data.shape}")
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, n_steps, alpha=0.05))
    opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def run(net, opt_state, key, m):
        return fit_steps(net, opt_state, optimizer, sde, data, key, m, batch_size, cond)

    def chunk_run(state, k, m):
        net, opt_state, ls = run(*state, k, m)
        return (net, opt_state), ls

    (net, _), losses = run_chunked(chunk_run, (net, opt_state), key, n_steps, chunk=chunk, progress=progress, desc="DSM")
    return net, losses


def save_network(path: str, net, hyperparameters: dict) -> None:
    """Write ``net`` with ``equinox.tree_serialise_leaves`` to ``path`` and its hyperparameters to
    ``path + '.json'``, each through a temporary file and an atomic rename."""
    directory = os.path.dirname(os.path.abspath(path))
    for target, writer in ((path + ".json", lambda f: f.write(json.dumps(hyperparameters, indent=2).encode())),
                           (path, lambda f: eqx.tree_serialise_leaves(f, net))):
        fd, tmp = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as f:
            writer(f)
        os.replace(tmp, target)


def load_network(path: str, like):
    """Read leaves saved by :func:`save_network` into the skeleton ``like``."""
    return eqx.tree_deserialise_leaves(path, like)


__all__ = ["dsm_loss", "fit_steps", "train_score_network", "save_network", "load_network"]
