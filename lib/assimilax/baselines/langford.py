r"""NumPyro reference posterior for the Langford system over a short window of observations.

The generative model (for one window of :math:`W` observations of :math:`(x, y)` every
:math:`k` RK4 steps of :math:`\Delta t`, times :math:`s_j = j k \Delta t` from the first one):

.. math::
    u_0 &\sim \mathcal N(\mu_0, \mathrm{diag}(\sigma_0^2)), \qquad
    \omega_c \sim \mathcal N(\bar\omega, \sigma_\omega^2), \qquad
    \omega_1 \sim \mathcal N(0, \sigma_{\dot\omega}^2)\ \text{(optional)},\\
    u_{j+1} &= \mathrm{RK4}^k\big(u_j;\ \omega(s) = \omega_c + \omega_1 (s - \bar s)\big), \qquad
    \tilde y_j \sim \mathcal N\big((u_{j,x}, u_{j,y}), \sigma^2 I\big),

where :math:`u = (x, y, z)` follows the Langford drift (:class:`~assimilax.models.langford.Langford`)
exactly, with the rotation rate constant (or linear in time) over the window. NUTS
:cite:`hoffman2014nuts` in NumPyro :cite:`bingham2019pyro,phan2019numpyro` returns the
posterior of the phase :math:`\operatorname{atan2}(y, x)` and amplitude at the window's last
observation: the best any estimator can do with the same observations and the true physics.

A leading batch axis of ``ys`` ``(B, W, 2)`` treats ``B`` independent windows (e.g. seeds) as one
joint posterior of independent blocks, sampled in a single NUTS run.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_value

from .._validation import check_finite, check_positive_int
from ..models._base import rk4_step
from ..models.langford import Langford, langford_field


def _integrate_window(u0, omega_c, omega_1, n_obs, steps_per_obs, model):
    dt = model.dt
    s_mid = 0.5 * (n_obs - 1) * steps_per_obs * dt

    def field(u, s):
        om = omega_c + omega_1 * (s - s_mid)
        return langford_field(u[0], u[1], u[2], om, model.alpha, model.beta, model.lam, model.rho, model.epsilon)

    def obs_step(u, j):
        def body(i, u):
            return rk4_step(field, u, (j * steps_per_obs + i) * dt, dt)
        u = jax.lax.fori_loop(0, steps_per_obs, body, u)
        return u, u

    _, us = jax.lax.scan(obs_step, u0, jnp.arange(n_obs - 1))
    return jnp.concatenate([u0[None], us], axis=0)


def langford_window_model(ys, *, sigma: float, steps_per_obs: int = 10, model: Langford = Langford(),
                          prior_mean=(0.0, 0.0, 0.8), prior_std=(1.0, 1.0, 0.8), omega_mean: float = 3.5,
                          omega_std: float = 1.0, omega_drift_std: float = 0.0):
    r"""NumPyro model (see the module docstring). ``ys`` ``(W, 2)`` or ``(B, W, 2)``; sites ``u0``
    (state at the first observation), ``omega`` (:math:`\omega_c`), ``omega_drift`` (if
    ``omega_drift_std > 0``), deterministic ``phase``/``amplitude`` (last observation) and ``obs``."""
    ys = jnp.asarray(ys)
    batch = ys.shape[:-2]
    n_obs = ys.shape[-2]
    pm = jnp.asarray(prior_mean, ys.dtype)
    ps = jnp.asarray(prior_std, ys.dtype)
    pm, ps = jnp.broadcast_to(pm, batch + (3,)), jnp.broadcast_to(ps, batch + (3,))
    u0 = numpyro.sample("u0", dist.Normal(pm, ps).to_event(len(batch) + 1))
    omega = numpyro.sample("omega", dist.Normal(omega_mean, omega_std).expand(batch).to_event(len(batch)))
    if omega_drift_std > 0:
        drift = numpyro.sample("omega_drift", dist.Normal(0.0, omega_drift_std).expand(batch).to_event(len(batch)))
    else:
        drift = jnp.zeros_like(omega)
    integ = lambda u, w, d: _integrate_window(u, w, d, n_obs, steps_per_obs, model)  # noqa: E731
    for _ in batch:
        integ = jax.vmap(integ)
    states = integ(u0, omega, drift)  # batch + (W, 3)
    last = states[..., -1, :]
    numpyro.deterministic("phase", jnp.arctan2(last[..., 1], last[..., 0]))
    numpyro.deterministic("amplitude", jnp.hypot(last[..., 0], last[..., 1]))
    numpyro.sample("obs", dist.Normal(states[..., :2], sigma).to_event(len(batch) + 2), obs=ys)


class LangfordPosterior(NamedTuple):
    """Posterior draws at the window's last observation: ``phase`` ``(S,)`` (or ``(S, B)``),
    ``amplitude``, ``omega`` (:math:`\\omega_c`), ``u0`` ``(S, [B,] 3)`` and NUTS diagnostics
    ``num_divergences`` and ``max_rhat``-free ``accept_prob`` mean."""

    phase: jax.Array
    amplitude: jax.Array
    omega: jax.Array
    u0: jax.Array
    num_divergences: int
    accept_prob: float


def langford_nuts(ys, *, key, sigma: float, steps_per_obs: int = 10, model: Langford = Langford(),
                  num_warmup: int = 300, num_samples: int = 300, omega_mean: float = 3.5, omega_std: float = 1.0,
                  omega_drift_std: float = 0.0, prior_mean=(0.0, 0.0, 0.8), prior_std=(1.0, 1.0, 0.8),
                  max_tree_depth: int = 6, dense_mass: bool = True, progress_bar: bool = False) -> LangfordPosterior:
    r"""NUTS :cite:`hoffman2014nuts` on :func:`langford_window_model` for a short window ``ys``
    ``(W, 2)`` (or ``(B, W, 2)`` independent windows). Initialised at :math:`u_0 = (\tilde y_0, \mu_{0,z})`,
    :math:`\omega = \bar\omega`. Use float64.

    **Returns:** :class:`LangfordPosterior`.
    """
    ys = jnp.asarray(ys)
    if ys.ndim not in (2, 3) or ys.shape[-1] != 2 or ys.shape[-2] < 2:
        raise ValueError(f"ys must have shape (W, 2) or (B, W, 2) with W >= 2, got {ys.shape}")
    check_finite(ys, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    check_positive_int(num_samples, "num_samples")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    batch = ys.shape[:-2]
    z0 = jnp.full(batch + (1,), prior_mean[2], ys.dtype)
    init = {"u0": jnp.concatenate([ys[..., 0, :], z0], axis=-1), "omega": jnp.full(batch, omega_mean, ys.dtype)}
    if omega_drift_std > 0:
        init["omega_drift"] = jnp.zeros(batch, ys.dtype)
    kernel = NUTS(langford_window_model, init_strategy=init_to_value(values=init), max_tree_depth=max_tree_depth,
                  dense_mass=dense_mass)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=progress_bar)
    mcmc.run(key, ys, sigma=sigma, steps_per_obs=steps_per_obs, model=model, prior_mean=prior_mean,
             prior_std=prior_std, omega_mean=omega_mean, omega_std=omega_std, omega_drift_std=omega_drift_std,
             extra_fields=("diverging", "accept_prob"))
    s = mcmc.get_samples()
    ex = mcmc.get_extra_fields()
    return LangfordPosterior(s["phase"], s["amplitude"], s["omega"], s["u0"], int(jnp.sum(ex["diverging"])),
                             float(jnp.mean(ex["accept_prob"])))


__all__ = ["langford_window_model", "langford_nuts", "LangfordPosterior"]
