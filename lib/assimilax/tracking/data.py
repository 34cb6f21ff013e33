r"""Truth and noisy observations for the Langford phase-tracking problem.

``n_series`` independent trajectories of the Langford system :cite:`langford1984numerical`
(:class:`~assimilax.models.Langford`, rotation rate :math:`\omega(t) = \omega_0 + a\sin(2\pi t/P + \varphi)`),
each started at its own point of the attractor, observed in :math:`(x, y)` every
``steps_per_obs`` RK4 steps. With :math:`x^\star` a point on the attractor (default: the
autonomous burn-in of :math:`(0.1, 0, 0)`, :meth:`~assimilax.models.Langford.burn_in`),
:math:`B^n` the autonomous (:math:`a = 0`) flow over :math:`n` steps and
:math:`\mathcal M^k` the flow over :math:`k` steps with :math:`\omega(t)`,

.. math::
    u^{(s)}_0 = B^{n_b}\big(x^\star + \epsilon\,\zeta_s\big),\qquad
    u^{(s)}_t = \mathcal M^{k}\big(u^{(s)}_{t-1}\big),\qquad
    \tilde y^{(s)}_t = \big(x^{(s)}_t, y^{(s)}_t\big) + \sigma\,\eta^{(s)}_t,

:math:`\zeta_s \sim \mathcal N(0, I_3)`, :math:`\eta^{(s)}_t \sim \mathcal N(0, I_2)`, for
:math:`t = 1, \dots, T` at times :math:`t k\,\Delta t`. The noise is drawn with unit standard
deviation and scaled by :math:`\sigma` afterwards, so calls with the same key and model share
trajectories and standardised noise at every :math:`\sigma`: settings that differ only in the noise
level are paired series by series. The targets of the trackers of :mod:`assimilax.tracking` come
with the data: phase :math:`\theta_t = \operatorname{atan2}(y_t, x_t)`, amplitude
:math:`r_t = \sqrt{x_t^2 + y_t^2}` and rate :math:`\omega(t)`.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..models.langford import Langford
from ..observations import LinearObservation
from ..simulate import Simulation, simulate
from .._validation import check_positive_int, check_shape, is_concrete


class TrackingData(NamedTuple):
    r"""Series of the tracking problem and their targets.

    ``simulation`` a :class:`~assimilax.simulate.Simulation` batched over series: ``x0`` ``(S, 3)``,
    ``states`` ``(S, T, 3)``, ``observations`` ``(S, T, 2)`` (noisy :math:`(x, y)`), ``times``
    ``(S, T)`` (the same row for every series); ``phase`` ``(S, T)`` :math:`\theta_t`;
    ``amplitude`` ``(S, T)`` :math:`r_t`; ``rate`` ``(S, T)`` :math:`\omega(t)`.
    """

    simulation: Simulation
    phase: jax.Array
    amplitude: jax.Array
    rate: jax.Array


@functools.partial(jax.jit, static_argnames=("n_series", "n_obs", "steps_per_obs", "burn_in_steps"))
def _unit_noise_series(model, start, key, start_spread, n_series, n_obs, steps_per_obs, burn_in_steps):
    k0, k1 = jax.random.split(key)
    x0s = jax.vmap(lambda k: model.burn_in(start + start_spread * jax.random.normal(k, (3,)), burn_in_steps))(
        jax.random.split(k0, n_series))
    obs = LinearObservation.partial([0, 1], 3, 1.0)  # unit noise; scaled by sigma outside
    return jax.vmap(lambda x0, k: simulate(model, obs, x0, n_obs, key=k, steps_per_obs=steps_per_obs))(
        x0s, jax.random.split(k1, n_series))


def langford_tracking_data(model: Langford, sigma: float, n_series: int, n_obs: int, *, key: PRNGKeyArray,
                           steps_per_obs: int = 10, start: Optional[Float[Array, " 3"]] = None,
                           start_spread: float = 0.2, burn_in_steps: int = 1000) -> TrackingData:
    r"""``n_series`` Langford trajectories of ``n_obs`` noisy :math:`(x, y)` observations (module docstring).

    **Arguments:**

    - `model`: the :class:`~assimilax.models.Langford` system that makes the truth (its ``a``,
      ``period`` and ``phi`` set :math:`\omega(t)`; e.g. ``LANGFORD_NOTES.model(a=a, period=P)``
      from :mod:`assimilax.configs`). One compilation serves every model with the same ``dt``.
    - `sigma`: observation-noise standard deviation :math:`\sigma \ge 0`.
    - `n_series`: :math:`S` trajectories; `n_obs`: :math:`T` observations each.
    - `key`: a ``jax.random`` key (the starts, then the trajectories' observation noise).
    - `steps_per_obs`: RK4 steps :math:`k` between observations.
    - `start`: ``(3,)`` the point :math:`x^\star` the starts are scattered around; default
      ``model.burn_in()`` (the autonomous burn-in of :math:`(0.1, 0, 0)`).
    - `start_spread`: :math:`\epsilon \ge 0`, the standard deviation of the scatter.
    - `burn_in_steps`: :math:`n_b`, autonomous steps from each scattered start onto the attractor.

    **Returns:** :class:`TrackingData`. Same key and model, same trajectories and standardised
    noise, whatever ``sigma``. Run in float64 for the chapter's numbers (the trajectories are
    chaotic in :math:`z`).
    """
    if not isinstance(model, Langford):
        raise ValueError(f"model must be an assimilax.models.Langford, got {type(model).__name__}")
    check_positive_int(n_series, "n_series")
    check_positive_int(n_obs, "n_obs")
    check_positive_int(steps_per_obs, "steps_per_obs")
    if not (isinstance(burn_in_steps, int) and burn_in_steps >= 0):
        raise ValueError(f"burn_in_steps must be a non-negative integer, got {burn_in_steps!r}")
    for name, v in (("sigma", sigma), ("start_spread", start_spread)):
        if is_concrete(v) and not float(v) >= 0.0:
            raise ValueError(f"{name} must be non-negative, got {v!r}")
    start = model.burn_in() if start is None else jnp.asarray(start)
    check_shape(start, (3,), "start")
    sims = _unit_noise_series(model, start, key, start_spread, n_series, n_obs, steps_per_obs, burn_in_steps)
    xy = sims.states[..., :2]
    sims = sims._replace(observations=xy + sigma * (sims.observations - xy))
    phase = jnp.arctan2(sims.states[..., 1], sims.states[..., 0])
    amplitude = jnp.hypot(sims.states[..., 0], sims.states[..., 1])
    return TrackingData(sims, phase, amplitude, model.omega(sims.times))


__all__ = ["TrackingData", "langford_tracking_data"]
