"""Truth trajectories and their observations, with explicit keys."""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._validation import check_positive_int, check_shape


class Simulation(NamedTuple):
    """``states[t]`` is the truth at observation time ``t = 1..T`` (shape ``(T, d)``);
    ``observations[t]`` observes ``states[t]`` (``(T, m)``); ``x0`` the initial state;
    ``times`` the physical times ``(T,)``."""

    x0: jax.Array
    states: jax.Array
    observations: jax.Array
    times: jax.Array


def propagate(model, x, n_steps: int, t0, key):
    """Advance one state ``x`` ``(d,)`` by ``n_steps`` model steps, drawing model noise when the
    model has it (the truth of :func:`simulate`). Ensembles are forecast by the filters' one
    ensemble forecast, :func:`!assimilax.filters._core.forecast_ensemble`."""
    if model.noise_cov is None:
        return model.integrate(x, n_steps, t0)

    def body(i, carry):
        x, key = carry
        key, sub = jax.random.split(key)
        return model.noisy_step(x, t0 + i * model.dt, key=sub), key

    x, _ = jax.lax.fori_loop(0, n_steps, body, (x, key))
    return x


def simulate(model, observation, x0, n_cycles: int, *, key, steps_per_obs: int = 1, burn_in: int = 0):
    r"""Simulate the truth :math:`u_{t} = \mathcal M^{k}(u_{t-1})` (``k = steps_per_obs`` model
    steps, with model noise if any) and observations :math:`y_t = h(u_t) + \eta_t`.

    **Arguments:** ``x0`` ``(d,)``; ``n_cycles`` T; ``key``; ``burn_in`` model steps run first
    (deterministically, then ``x0`` is replaced by the burnt-in state).

    **Returns:** :class:`Simulation`.
    """
    check_positive_int(n_cycles, "n_cycles")
    check_positive_int(steps_per_obs, "steps_per_obs")
    x0 = jnp.asarray(x0)
    check_shape(x0, (model.dim,), "x0")
    if observation.state_dim != model.dim:
        raise ValueError(f"observation operator expects states of dimension {observation.state_dim}, model has {model.dim}")
    return _simulate(model, observation, x0, n_cycles, key, steps_per_obs, burn_in)


@functools.partial(jax.jit, static_argnums=(3, 5, 6))
def _simulate(model, observation, x0, n_cycles, key, steps_per_obs, burn_in):
    if burn_in:
        x0 = model.integrate(x0, burn_in)

    def cycle(x, inp):
        t_idx, k = inp
        k1, k2 = jax.random.split(k)
        x = propagate(model, x, steps_per_obs, t_idx * steps_per_obs * model.dt, k1)
        y = observation.sample(x, key=k2)
        return x, (x, y)

    keys = jax.random.split(key, n_cycles)
    _, (xs, ys) = jax.lax.scan(cycle, x0, (jnp.arange(n_cycles), keys))
    times = (jnp.arange(1, n_cycles + 1) * steps_per_obs) * model.dt
    return Simulation(x0, xs, ys, times)
