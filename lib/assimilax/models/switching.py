r"""Lorenz-63 systems that switch between constant external forcings by a Markov chain.

The forced Lorenz-63 system of :cite:`palmer1999nonlinear` adds a constant vector
:math:`f` to the Lorenz vector field; here :math:`K` such systems :math:`S_1, \dots, S_K`
(forcings :math:`f_1, \dots, f_K`) take turns, the active index :math:`k_i` following a Markov
chain over model steps with a prescribed mean dwell time.
"""
from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._validation import check_finite, is_concrete
from ._base import DynamicalModel, rk4_step


class SwitchingLorenz63(DynamicalModel):
    r"""Markov-switching forced Lorenz-63 :cite:`lorenz1963deterministic,palmer1999nonlinear`.

    On model step :math:`i` (time :math:`t_i = i\,\Delta t`) the regime :math:`k_i` is held fixed
    and the state is advanced by one RK4 step of

    .. math::
        \dot x = \sigma (y - x) + f_{k,1},\quad \dot y = x(\rho - z) - y + f_{k,2},\quad
        \dot z = xy - \beta z + f_{k,3}.

    The regimes form a Markov chain, uniform at the start, with transition matrix

    .. math::
        P_{jj} = 1 - \frac{\Delta t}{\tau},\qquad P_{jl} = \frac{\Delta t}{\tau (K-1)}\ (l \ne j),

    so a stay has a geometric length of mean :math:`\tau/\Delta t` steps: the mean dwell time is
    :math:`\tau` (``dwell_time``) in model time units. :meth:`sample_regimes` draws a path and
    :meth:`with_schedule` returns the model that follows it; ``step(x, t)`` uses the regime
    ``schedule[round(t / dt)]`` (clipped to the schedule's ends), so ``assimilax.simulate``
    and ``assimilax.filters.ensemble_kalman_filter`` run the switching system unchanged, and
    without a schedule the model is the forced system of regime 0. With ``K = 1`` and
    :math:`f_1 = 0` it is :class:`~assimilax.models.Lorenz63`.

    **Arguments:**

    - ``forcings``: ``(K, 3)`` forcing vectors :math:`f_k` (:meth:`palmer_forcings` gives
      Palmer's :math:`F(\cos\theta_k, \sin\theta_k, 0)`).
    - ``dwell_time``: :math:`\tau > \Delta t` (ignored for ``K = 1``).
    - ``sigma=10``, ``rho=28``, ``beta=8/3``, ``dt=0.01``, ``noise_cov`` as in ``Lorenz63``.
    - ``schedule``: ``(n_steps,)`` integer regimes or ``None``.
    """

    forcings: Float[Array, "K 3"]
    dwell_time: float = 1.0
    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0
    dt: float = eqx.field(static=True, default=0.01)
    noise_cov: object = None
    schedule: Optional[Int[Array, " n"]] = None

    def __init__(self, forcings, dwell_time: float = 1.0, sigma: float = 10.0, rho: float = 28.0,
                 beta: float = 8.0 / 3.0, dt: float = 0.01, noise_cov=None, schedule=None):
        f = jnp.asarray(forcings)
        if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
            raise ValueError(f"forcings must have shape (K, 3) with K >= 1, got {f.shape}")
        check_finite(f, "forcings")
        if f.shape[0] > 1 and is_concrete(dwell_time) and not float(dwell_time) > float(dt):
            raise ValueError(f"dwell_time must exceed dt = {dt}, got {dwell_time}")
        self.forcings = f
        self.dwell_time = dwell_time
        self.sigma, self.rho, self.beta = sigma, rho, beta
        self.dt = dt
        self.noise_cov = noise_cov
        if schedule is not None:
            schedule = jnp.asarray(schedule)
            if schedule.ndim != 1 or not jnp.issubdtype(schedule.dtype, jnp.integer):
                raise ValueError(f"schedule must be a 1-D integer array, got shape {schedule.shape}, "
                                 f"dtype {schedule.dtype}")
        self.schedule = schedule

    @staticmethod
    def palmer_forcings(n_regimes: int, magnitude: float, phase: float = 0.0) -> Float[Array, "K 3"]:
        r"""Forcings :math:`f_k = F(\cos\theta_k, \sin\theta_k, 0)`, :math:`\theta_k = \theta_0 + 2\pi k/K`
        (Palmer's forcing direction in the :math:`x`--:math:`y` plane :cite:`palmer1999nonlinear`)."""
        if int(n_regimes) < 1:
            raise ValueError(f"n_regimes must be a positive integer, got {n_regimes}")
        th = phase + 2 * jnp.pi * jnp.arange(int(n_regimes)) / int(n_regimes)
        return magnitude * jnp.stack([jnp.cos(th), jnp.sin(th), jnp.zeros_like(th)], axis=1)

    @property
    def dim(self) -> int:
        return 3

    @property
    def n_regimes(self) -> int:
        return int(self.forcings.shape[0])

    def transition_matrix(self) -> Float[Array, "K K"]:
        r"""The per-model-step transition matrix :math:`P` (rows sum to one)."""
        k = self.n_regimes
        if k == 1:
            return jnp.ones((1, 1))
        p = self.dt / self.dwell_time
        return (1.0 - p) * jnp.eye(k) + (p / (k - 1)) * (1.0 - jnp.eye(k))

    def regime_vector_field(self, x: Float[Array, " 3"], regime) -> Float[Array, " 3"]:
        """The forced vector field of regime ``regime`` (an integer, may be traced)."""
        lor = jnp.stack([
            self.sigma * (x[1] - x[0]),
            x[0] * (self.rho - x[2]) - x[1],
            x[0] * x[1] - self.beta * x[2],
        ])
        return lor + self.forcings[regime].astype(x.dtype)

    def regime_at(self, t):
        """Regime index active on the model step starting at time ``t``."""
        if self.schedule is None:
            return jnp.zeros((), jnp.int32)
        i = jnp.clip(jnp.round(t / self.dt).astype(jnp.int32), 0, self.schedule.shape[0] - 1)
        return self.schedule[i]

    def vector_field(self, x, t=0.0):
        return self.regime_vector_field(x, self.regime_at(t))

    def step(self, x, t=0.0):
        """One RK4 step with the regime of the step's start held fixed over the step."""
        k = self.regime_at(t)
        return rk4_step(lambda y, s: self.regime_vector_field(y, k), x, t, self.dt)

    def sample_regimes(self, n_steps: int, *, key, initial=None) -> Int[Array, " n_steps"]:
        r"""A path :math:`k_0, \dots, k_{n-1}` of the regime chain (uniform :math:`k_0` unless
        ``initial`` is given). Jittable for a static ``n_steps``; vmap over keys."""
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        k = self.n_regimes
        k0_key, key = jax.random.split(key)
        k0 = jax.random.randint(k0_key, (), 0, k) if initial is None else jnp.asarray(initial, jnp.int32)
        if k == 1:
            return jnp.zeros((n_steps,), jnp.int32)
        p = self.dt / self.dwell_time
        u_switch, u_to = jax.random.split(key)
        switch = jax.random.uniform(u_switch, (n_steps - 1,)) < p
        # a switch moves to one of the K - 1 other regimes uniformly: an offset in 1..K-1
        offset = jax.random.randint(u_to, (n_steps - 1,), 1, k)

        def body(s, inp):
            sw, off = inp
            s = jnp.where(sw, (s + off) % k, s)
            return s, s

        _, rest = jax.lax.scan(body, k0.astype(jnp.int32), (switch, offset.astype(jnp.int32)))
        return jnp.concatenate([k0[None].astype(jnp.int32), rest])

    def with_schedule(self, schedule) -> "SwitchingLorenz63":
        """This model following the regime path ``schedule`` ``(n_steps,)`` (one entry per model step)."""
        schedule = jnp.asarray(schedule)
        if schedule.ndim != 1 or not jnp.issubdtype(schedule.dtype, jnp.integer):
            raise ValueError(f"schedule must be a 1-D integer array, got shape {schedule.shape}")
        if self.schedule is None:
            return SwitchingLorenz63(self.forcings, self.dwell_time, self.sigma, self.rho, self.beta, self.dt,
                                     self.noise_cov, schedule)
        return eqx.tree_at(lambda m: m.schedule, self, schedule)


def simulate_switching(model: SwitchingLorenz63, observation, x0, n_cycles: int, *, key, steps_per_obs: int = 1,
                       burn_in: int = 0):
    r"""Draw a regime path and simulate the switching truth and its observations.

    The path covers the ``burn_in`` steps and the ``n_cycles * steps_per_obs`` steps after them
    (:meth:`SwitchingLorenz63.sample_regimes` with the first key split); the burn-in follows the
    path's first ``burn_in`` entries, and the cycles, which restart the clock at 0, the entries
    from 0 on (so the regime of observation interval :math:`t` is ``regimes[(t+1) k - 1]``, see
    ``assimilax.learned.moe.observation_regimes``). Jittable (``n_cycles``,
    ``steps_per_obs``, ``burn_in`` static), vmaps over keys and over the model's ``forcings`` and
    ``dwell_time``.

    **Returns:** ``(simulation, schedule_model, regimes)``: the
    ``assimilax.Simulation``, the model following the path (the true model of a
    filter) and the path ``(n_cycles * steps_per_obs,)``.
    """
    from ..simulate import simulate

    if not isinstance(model, SwitchingLorenz63):
        raise ValueError(f"model must be a SwitchingLorenz63, got {type(model).__name__}")
    n = max(int(n_cycles) * int(steps_per_obs), int(burn_in))
    k_reg, k_sim = jax.random.split(key)
    regimes = model.sample_regimes(n, key=k_reg)
    truth_model = model.with_schedule(regimes)
    sim = simulate(truth_model, observation, x0, n_cycles, key=k_sim, steps_per_obs=steps_per_obs, burn_in=burn_in)
    return sim, truth_model, regimes[:int(n_cycles) * int(steps_per_obs)]


def dwell_lengths(regimes) -> np.ndarray:
    """Lengths of the maximal constant runs of a regime path (NumPy, host side); the first and
    last runs are dropped (they are censored by the ends of the path)."""
    r = np.asarray(regimes)
    if r.ndim != 1:
        raise ValueError(f"regimes must be 1-D, got shape {r.shape}")
    change = np.flatnonzero(np.diff(r) != 0)
    return np.diff(change)


__all__ = ["SwitchingLorenz63", "simulate_switching", "dwell_lengths"]
