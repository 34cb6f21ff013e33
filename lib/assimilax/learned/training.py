r"""A generic regression training loop for the deterministic learned parts (forward models
:math:`F_\theta` and coarse analysis operators :math:`T_\psi`).

Minimises the mean squared error

.. math:: \mathcal L(\theta) = \frac1B \sum_{b=1}^B \frac1d \big\| m_\theta(x_b) - z_b \big\|^2

with Adam (cosine-decayed learning rate) on minibatches drawn with replacement; ``chunk``
optimiser steps run inside one jitted :func:`jax.lax.scan`, and a tqdm bar advances per chunk
(the same structure as :func:`assimilax.diffusion.train_score_network`).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validation import check_finite, check_positive_int


def _as_tuple(inputs):
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _mse(model, xs, z):
    pred = jax.vmap(model)(*xs)
    return jnp.mean((pred - z) ** 2)


def fit_regression(model, inputs, targets, *, key, n_steps: int = 2000, batch_size: int = 256,
                   learning_rate: float = 1e-3, val=None, progress: bool = True, chunk: int = 100,
                   optimizer=None, desc: str = "fit"):
    r"""Train an unbatched equinox ``model`` so that ``model(*inputs[i]) ≈ targets[i]``.

    **Arguments:**

    - ``model``: equinox Module, called unbatched as ``model(*x)``.
    - ``inputs``: an array ``(n, ...)`` or a tuple of arrays with a common leading ``n``
      (e.g. ``(forecasts (n, d), observations (n, m))`` for an analysis operator).
    - ``targets``: ``(n, d_out)``.
    - ``key``: PRNG key (minibatch indices); same key, same weights.
    - ``n_steps``, ``batch_size``, ``learning_rate`` (Adam with cosine decay unless
      ``optimizer`` is given).
    - ``val``: optional ``(inputs, targets)`` held-out pair; its loss is recorded per chunk.
    - ``progress``: tqdm bar; ``chunk`` steps per jitted scan.

    **Returns:** ``(model, history)`` with ``history = {"loss": (n_steps,), "val_loss": (n_chunks,),
    "val_step": (n_chunks,)}`` (NumPy; the validation entries are empty without ``val``).
    """
    check_positive_int(n_steps, "n_steps")
    check_positive_int(batch_size, "batch_size")
    xs = tuple(jnp.asarray(x) for x in _as_tuple(inputs))
    z = jnp.asarray(targets)
    n = z.shape[0]
    for i, x in enumerate(xs):
        if x.shape[0] != n:
            raise ValueError(f"inputs[{i}] has {x.shape[0]} rows but targets has {n}")
        check_finite(x, f"inputs[{i}]")
    check_finite(z, "targets")
    if val is not None:
        vxs = tuple(jnp.asarray(x) for x in _as_tuple(val[0]))
        vz = jnp.asarray(val[1])
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, n_steps, alpha=0.05))
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def run(model, opt_state, key, m):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss_fn(p, xb, zb):
            return _mse(eqx.combine(p, static), xb, zb)

        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (batch_size,), 0, n)
            loss, grads = jax.value_and_grad(loss_fn)(p, tuple(x[idx] for x in xs), z[idx])
            updates, s = optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, m))
        return eqx.combine(params, static), opt_state, losses

    val_loss = eqx.filter_jit(_mse)

    from tqdm.auto import tqdm

    losses, vlosses, vsteps = [], [], []
    done = 0
    with tqdm(total=n_steps, disable=not progress, desc=desc) as bar:
        while done < n_steps:
            m = min(chunk, n_steps - done)
            key, sub = jax.random.split(key)
            model, opt_state, ls = run(model, opt_state, sub, m)
            losses.append(np.asarray(ls))
            done += m
            post = {"loss": float(ls[-1])}
            if val is not None:
                vlosses.append(float(val_loss(model, vxs, vz)))
                vsteps.append(done)
                post["val"] = vlosses[-1]
            bar.update(m)
            bar.set_postfix(**post)
    history = {"loss": np.concatenate(losses), "val_loss": np.asarray(vlosses), "val_step": np.asarray(vsteps)}
    return model, history


__all__ = ["fit_regression"]
