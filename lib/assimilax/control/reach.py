r"""Reaching a target state in a given time, with or without a one-sided control constraint.

Lohéac, Trélat & Zuazua :cite:`loheac2017minimal` show that although the heat equation is
controllable in arbitrarily short time, steering it between two steady states under a
*unilateral* constraint (non-negative state, or non-negative control) needs a positive minimal
time :math:`T_{\min}`. Here the control is the distributed one of
:class:`~assimilax.control.heat.HeatEquation1D`, :math:`b(x)c(t)` with :math:`b \ge 0`, and the
one-sided constraint is :math:`c \ge 0` (a heater that cannot cool). The steady state of a
constant control :math:`\bar c` is :math:`\bar u = \bar c\,(-\kappa\Delta_h)^{-1} b`.

For a horizon :math:`T` split into ``n_steps`` backward-Euler steps, the final state is affine
in the controls, :math:`u_K = \Phi_T u_0 + S_T c`, and the *reach error*

.. math::

   e(T) = \min_{c \in \mathcal C}\ \lVert \Phi_T u_0 + S_T c - u_1 \rVert / \lVert u_1 - u_0 \rVert

is a least-squares problem (:math:`\mathcal C = \mathbb R^K`) or a non-negative least-squares
problem (:math:`\mathcal C = \mathbb R^K_{\ge 0}`, solved exactly by the active-set method of
Lawson and Hanson, ``scipy.optimize.nnls``). The minimal time to reach :math:`u_1` within a
tolerance :math:`\varepsilon` is :math:`T^\ast(\varepsilon) = \inf\{T : e(T) \le \varepsilon\}`.

**A certificate.** Backward Euler is positivity preserving, so with :math:`b \ge 0` and
:math:`c \ge 0` every reachable state satisfies :math:`u_K \ge \Phi_T u_0` entrywise, and

.. math::

   e(T) \ge e_{\rm lb}(T) = \lVert (\Phi_T u_0 - u_1)_+ \rVert / \lVert u_1 - u_0 \rVert ,

which involves no optimisation: the free decay must bring :math:`u_0` below :math:`u_1`. When
:math:`u_1 < u_0` (cooling) the bound is positive for small :math:`T`, so
:math:`T^\ast(\varepsilon) \ge \inf\{T : e_{\rm lb}(T) \le \varepsilon\} > 0` for every
:math:`\varepsilon < 1`: the positive minimal time, independently of the solver.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.optimize import nnls

from .._validation import check_finite, check_shape
from .heat import HeatEquation1D


def steady_state(model: HeatEquation1D, actuator: Float[Array, " n"], level: float) -> Float[Array, " n"]:
    r"""The steady state :math:`\bar c\,(-\kappa\Delta_h)^{-1} b` of the constant control ``level``
    (no load)."""
    check_shape(actuator, (model.n,), "actuator")
    return level * jnp.linalg.solve(-model.kappa * model.laplacian(), actuator)


def _check_horizon(horizon, n_steps):
    if not float(horizon) > 0.0:
        raise ValueError(f"horizon must be positive, got {horizon!r}")
    if int(n_steps) != n_steps or int(n_steps) < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")


def transfer(model: HeatEquation1D, actuator: Float[Array, " n"], u0: Float[Array, " n"], horizon: float,
             n_steps: int):
    r"""``(free, S)``: the final state of the free evolution :math:`\Phi_T u_0`, shape ``(n,)``, and
    the Jacobian :math:`S_T = \partial u_K/\partial c`, shape ``(n, n_steps)``, by ``jax.jacfwd``
    through a backward-Euler solver with :math:`\Delta t = T/K` (the ``dt`` and ``scheme`` of
    ``model`` are replaced)."""
    _check_horizon(horizon, n_steps)
    check_shape(actuator, (model.n,), "actuator")
    check_shape(u0, (model.n,), "u0")
    check_finite(u0, "u0")
    m = HeatEquation1D(model.n, model.kappa, model.length, jnp.asarray(float(horizon) / int(n_steps)), "backward_euler")
    return _transfer(m, jnp.asarray(actuator), jnp.asarray(u0), int(n_steps))


@eqx.filter_jit
def _transfer(m, actuator, u0, n_steps):
    final = lambda c: m.solve(u0, c[:, None] * actuator[None, :])[-1]  # noqa: E731
    zeros = jnp.zeros(n_steps, dtype=u0.dtype)
    return final(zeros), jax.jacfwd(final)(zeros)


class Reach(NamedTuple):
    """Relative reach error ``error``, its comparison lower bound ``lower_bound`` (valid for
    non-negative controls), and the optimal control ``controls`` ``(n_steps,)``."""

    error: float
    lower_bound: float
    controls: np.ndarray


def reach(model: HeatEquation1D, actuator, u0, u1, horizon: float, n_steps: int = 40, *,
          nonnegative: bool = True) -> Reach:
    r"""The reach error :math:`e(T)` of the module, exactly (least squares, or NNLS when
    ``nonnegative``), and the certificate :math:`e_{\rm lb}(T)`. Host-side (NumPy/SciPy) on the
    JAX-computed transfer matrix; float64 advised. Raises ``ValueError`` when ``u0 == u1``."""
    check_shape(u1, (model.n,), "u1")
    check_finite(u1, "u1")
    free, S = transfer(model, actuator, u0, horizon, n_steps)
    free, S = np.asarray(free, dtype=np.float64), np.asarray(S, dtype=np.float64)
    u1 = np.asarray(u1, dtype=np.float64)
    scale = float(np.linalg.norm(u1 - np.asarray(u0, dtype=np.float64)))
    if scale == 0.0:
        raise ValueError("u0 and u1 are equal: nothing to reach")
    rhs = u1 - free
    if nonnegative:
        c, _ = nnls(S, rhs, maxiter=50 * S.shape[1])
    else:
        c = np.linalg.lstsq(S, rhs, rcond=None)[0]
    err = float(np.linalg.norm(S @ c - rhs)) / scale
    lb = float(np.linalg.norm(np.maximum(free - u1, 0.0))) / scale
    return Reach(err, lb, c)


def minimal_time(model: HeatEquation1D, actuator, u0, u1, tolerance: float, *, nonnegative: bool = True,
                 n_steps: int = 40, t_low: float = 1e-4, t_high: float = 2.0, iterations: int = 30,
                 bound_only: bool = False) -> float:
    r"""Bisection for :math:`T^\ast(\varepsilon) = \inf\{T : e(T) \le \varepsilon\}` on
    ``[t_low, t_high]`` (``iterations`` geometric halvings of :math:`\log T`; :math:`e` is non-increasing in :math:`T` between
    steady states, since holding the initial steady control first is always admissible). With
    ``bound_only=True`` it bisects the certificate :math:`e_{\rm lb}` instead, which gives a lower
    bound of the constrained :math:`T^\ast`. Returns ``t_low`` if already reached there and
    ``inf`` if not reached by ``t_high``. Raises ``ValueError`` unless ``0 < tolerance < 1`` and
    ``0 < t_low < t_high``."""
    if not 0.0 < float(tolerance) < 1.0:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if not 0.0 < float(t_low) < float(t_high):
        raise ValueError(f"need 0 < t_low < t_high, got {t_low!r}, {t_high!r}")

    def ok(T):
        r = reach(model, actuator, u0, u1, T, n_steps, nonnegative=nonnegative)
        return (r.lower_bound if bound_only else r.error) <= tolerance

    lo, hi = float(t_low), float(t_high)
    if ok(lo):
        return lo
    if not ok(hi):
        return float("inf")
    for _ in range(int(iterations)):
        mid = float(np.sqrt(lo * hi))  # geometric: relative precision (hi/lo)^(2^-iterations)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
