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

from .._training import run_chunked
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

    vlosses, vsteps = [], []

    def chunk_run(state, k, m):
        model, opt_state, ls = run(*state, k, m)
        return (model, opt_state), ls

    def on_chunk(state, done):
        if val is None:
            return {}
        vlosses.append(float(val_loss(state[0], vxs, vz)))
        vsteps.append(done)
        return {"val": vlosses[-1]}

    (model, _), losses = run_chunked(chunk_run, (model, opt_state), key, n_steps, chunk=chunk, progress=progress,
                                     desc=desc, on_chunk=on_chunk)
    history = {"loss": losses, "val_loss": np.asarray(vlosses), "val_step": np.asarray(vsteps)}
    return model, history


def fit_cycled_analysis(analysis, forward, data, *, key, perturb_std=0.0, n_rounds: int = 2, n_steps: int = 2000,
                        round_steps: int | None = None, batch_size: int = 64, learning_rate: float = 3e-3,
                        round_learning_rate: float | None = None, discard: int = 5, steps_per_obs: int = 1,
                        progress: bool = True):
    r"""Train an analysis operator :math:`T_\psi` on the forecasts it will see when cycled.

    The notes' objective fits :math:`T_\psi(F(u^{ref}_{t-1}), y_t) \approx u^{ref}_t`, but a
    cycled filter forecasts from its previous *analysis*, whose error is much larger than
    :math:`F`'s one-step error; an operator trained on forecasts from the truth learns to trust
    the forecast and drifts away when cycled (distribution shift). This routine

    1. fits ``analysis`` on pairs from *perturbed* references,
       :math:`u^F_t = F(u^{ref}_{t-1} + \sigma\xi)` (:func:`~assimilax.learned.analysis_pairs`
       with ``perturb_std``; ``0`` gives the notes' pairs);
    2. for each of ``n_rounds`` rounds, cycles the current operator deterministically over the
       training trajectories (:func:`~assimilax.learned.cycled_analysis_pairs`), *adds* those
       forecasts to the training set and re-fits (warm start) — dataset aggregation, DAgger
       :cite:`ross2011reduction`. Aggregating rather than replacing keeps a round whose cycle
       drifted from undoing the previous one.

    **Arguments:** ``analysis`` (unbatched ``T(u_f, y)``); ``forward`` (learned model or
    :class:`~assimilax.models.DynamicalModel`); ``data`` (:class:`~assimilax.learned.TrajectoryData`);
    ``key``; ``perturb_std`` (scalar or levels); ``n_rounds``; ``n_steps`` (first fit) and
    ``round_steps`` (each round, default ``n_steps // 2``); ``batch_size``; ``learning_rate`` and
    ``round_learning_rate`` (default ``learning_rate / 3``); ``discard`` spin-up cycles;
    ``steps_per_obs``; ``progress``.

    **Returns:** ``(analysis, history)``, ``history = {"loss": (total steps,), "round_steps":
    [...], "cycled_forecast_rmse": [...], "pairs": (forecasts, observations, targets)}``: the
    forecast RMSE of the cycle at the start of each round, and the aggregated training set (it
    covers the range of forecast errors an analysis meets, e.g. for a one-stage model). A round
    whose cycle produced non-finite forecasts is skipped and recorded as ``nan``.
    """
    from .data import analysis_pairs, cycled_analysis_pairs

    check_positive_int(n_steps, "n_steps")
    if n_rounds < 0:
        raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
    round_steps = max(1, n_steps // 2) if round_steps is None else round_steps
    round_lr = learning_rate / 3 if round_learning_rate is None else round_learning_rate
    keys = jax.random.split(key, 2 * n_rounds + 2)
    pairs = analysis_pairs(forward, data, steps_per_obs=steps_per_obs, perturb_std=perturb_std, key=keys[0])
    T, hist = fit_regression(analysis, pairs[:2], pairs[2], key=keys[1], n_steps=n_steps, batch_size=batch_size,
                             learning_rate=learning_rate, progress=progress, desc="T_psi")
    losses, steps, fc_rmse = [hist["loss"]], [n_steps], []
    for r in range(n_rounds):
        new = cycled_analysis_pairs(forward, T, data, key=keys[2 + 2 * r], steps_per_obs=steps_per_obs,
                                    discard=discard)
        if not bool(jnp.all(jnp.isfinite(new[0]))):
            fc_rmse.append(float("nan"))
            continue
        fc_rmse.append(float(jnp.sqrt(jnp.mean((new[0] - new[2]) ** 2))))
        pairs = tuple(jnp.concatenate([a, b.astype(a.dtype)]) for a, b in zip(pairs, new))
        T, hist = fit_regression(T, pairs[:2], pairs[2], key=keys[3 + 2 * r], n_steps=round_steps,
                                 batch_size=batch_size, learning_rate=round_lr, progress=progress,
                                 desc=f"T_psi round {r + 1}")
        losses.append(hist["loss"])
        steps.append(round_steps)
    return T, {"loss": np.concatenate(losses), "round_steps": steps, "cycled_forecast_rmse": fc_rmse, "pairs": pairs}


__all__ = ["fit_regression", "fit_cycled_analysis"]
