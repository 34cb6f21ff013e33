r"""Optimal tracking control of the heat equation under a directional safety constraint.

**The problem.** On the heat equation :eq:`ctl-heat` (:class:`~assimilax.control.heat.HeatEquation1D`)
with a known thermal load :math:`q`, choose the control sequence :math:`c_0, \dots, c_{K-1}`
(bounded, :math:`c_{\min} \le c_k \le c_{\max}`) that minimises the quadratic tracking cost

.. math::
   :label: ctl-cost

   J(c) = \Delta t\,\Delta x \sum_{k=1}^{K} \lVert u_k - u^\star \rVert^2
          + \alpha\,\Delta t \sum_{k=0}^{K-1} c_k^2 .

**The directional constraint.** A sensor :math:`s` (grid weights) reads :math:`s^\top u`; the
safety function is :math:`h(u) = T_{\max} - s^\top u` (positive while the sensed temperature is
below :math:`T_{\max}`). Instead of only :math:`h \ge 0`, the constraint restricts the
*direction* of change near the boundary, :math:`\dot h \ge -\gamma_c h`, the control-barrier
condition of :cite:`ames2017control,ames2019control`, in the discrete form of
:cite:`agrawal2017discrete`:

.. math::
   :label: ctl-dcbf

   h(u_{k+1}) \ge (1-\gamma)\,h(u_k), \qquad 0 < \gamma \le 1 .

It implies :math:`h(u_k) \ge (1-\gamma)^k h(u_0) > 0`: the sensed temperature may approach
:math:`T_{\max}` at most geometrically, and :math:`\gamma = 1` is the plain one-step constraint
:math:`h(u_{k+1}) \ge 0`. Because the step is affine in the control,
:math:`u_{k+1} = M u_k + G q_k + (G b)\,c_k`, :eq:`ctl-dcbf` is one linear inequality
:math:`a\,c_k \le \beta_k` with

.. math::

   a = s^\top G b, \qquad
   \beta_k = T_{\max} - s^\top (M u_k + G q_k) - (1-\gamma)\,h(u_k).

**The safety filter** is the closed-form solution of the one-dimensional quadratic programme
:math:`\min_c (c - c^{\rm nom}_k)^2` subject to :math:`a c \le \beta_k` and the control bounds
(:func:`safety_filter`). When the bounds and the barrier inequality cannot both hold (the load
alone pushes the sensor too fast), the step is *infeasible*: the filter says so, applies the
admissible control that comes closest (smallest violation of :eq:`ctl-dcbf`), and reports the
slack.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float
from tqdm.auto import tqdm

from .._validation import check_finite, check_shape
from .heat import HeatEquation1D

METHODS = ("unconstrained", "penalised", "filtered")


class SafeTrackingProblem(NamedTuple):
    r"""The tracking problem :eq:`ctl-cost` with the directional constraint :eq:`ctl-dcbf`.

    - `model`: the :class:`~assimilax.control.heat.HeatEquation1D` (its ``dt`` is the control period).
    - `actuator`: :math:`b`, shape ``(n,)``.
    - `sensor`: :math:`s`, shape ``(n,)`` (weights of the sensed temperature :math:`s^\top u`).
    - `target`: :math:`u^\star`, shape ``(n,)``.
    - `t_max`: :math:`T_{\max}`.
    - `gamma`: :math:`\gamma \in (0, 1]` per control step (a continuous rate :math:`\gamma_c`
      corresponds to :math:`\gamma \approx \gamma_c \Delta t`).
    - `control_weight`: :math:`\alpha \ge 0`.
    - `control_lower`, `control_upper`: the actuator bounds :math:`c_{\min} < c_{\max}`.

    Build it with :func:`make_problem`, which checks the input.
    """

    model: HeatEquation1D
    actuator: Float[Array, " n"]
    sensor: Float[Array, " n"]
    target: Float[Array, " n"]
    t_max: float
    gamma: float
    control_weight: float
    control_lower: float
    control_upper: float


def make_problem(model: HeatEquation1D, actuator, sensor, target, *, t_max: float, gamma: float,
                 control_weight: float = 1e-5, control_lower: float = -np.inf,
                 control_upper: float = np.inf) -> SafeTrackingProblem:
    """A checked :class:`SafeTrackingProblem`: shapes ``(n,)``, finite profiles,
    ``0 < gamma <= 1``, ``control_weight >= 0``, ``control_lower < control_upper``; otherwise
    ``ValueError``."""
    if not isinstance(model, HeatEquation1D):
        raise ValueError(f"model must be a HeatEquation1D, got {type(model).__name__}")
    arrays = []
    for name, v in (("actuator", actuator), ("sensor", sensor), ("target", target)):
        v = jnp.asarray(v)
        check_shape(v, (model.n,), name)
        check_finite(v, name)
        arrays.append(v)
    if not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if not float(control_weight) >= 0.0:
        raise ValueError(f"control_weight must be non-negative, got {control_weight!r}")
    if not float(control_lower) < float(control_upper):
        raise ValueError(f"control_lower must be below control_upper, got {control_lower!r} >= {control_upper!r}")
    if not np.isfinite(float(t_max)):
        raise ValueError(f"t_max must be finite, got {t_max!r}")
    return SafeTrackingProblem(model, *arrays, float(t_max), float(gamma), float(control_weight),
                               float(control_lower), float(control_upper))


class FilterResult(NamedTuple):
    """The filtered control, whether the step was infeasible, and the slack
    :math:`\\max(0, a c - \\beta)` left in the barrier inequality (0 when feasible)."""

    control: Float[Array, "*batch"]
    infeasible: Bool[Array, "*batch"]
    slack: Float[Array, "*batch"]


def safety_filter(nominal: Float[Array, "*batch"], a: Float[Array, "*batch"], beta: Float[Array, "*batch"],
                  lower: float, upper: float) -> FilterResult:
    r"""Closed-form solution of :math:`\min_c (c - c^{\rm nom})^2` s.t. :math:`a c \le \beta`,
    :math:`\ell \le c \le u`.

    The barrier inequality is a half-line: :math:`c \le \beta/a` for :math:`a > 0`,
    :math:`c \ge \beta/a` for :math:`a < 0`, all of :math:`\mathbb R` (or nothing) for
    :math:`a = 0`. Its intersection with :math:`[\ell, u]` is an interval; the minimiser is the
    projection of :math:`c^{\rm nom}` onto it. When the intersection is empty the step is
    infeasible and the filter returns :math:`\arg\min_{\ell \le c \le u} a c` (the bound that
    minimises the violation), with ``infeasible=True`` and the slack :math:`a c - \beta > 0`.
    Elementwise; broadcasts over batch shapes. Raises ``ValueError`` if ``lower >= upper``.
    """
    if not isinstance(lower, jax.core.Tracer) and not isinstance(upper, jax.core.Tracer) \
            and not float(lower) < float(upper):
        raise ValueError(f"lower must be below upper, got {lower!r} >= {upper!r}")
    nominal, a, beta = jnp.asarray(nominal), jnp.asarray(a), jnp.asarray(beta)
    safe_a = jnp.where(a == 0, 1.0, a)
    bound = beta / safe_a
    hi = jnp.where(a > 0, jnp.minimum(upper, bound), upper)
    lo = jnp.where(a < 0, jnp.maximum(lower, bound), lower)
    feasible = jnp.where(a == 0, beta >= 0, lo <= hi)
    projected = jnp.clip(nominal, lo, hi)
    fallback = jnp.where(a > 0, lower, upper)
    control = jnp.where(feasible, projected, jnp.where(a == 0, jnp.clip(nominal, lower, upper), fallback))
    slack = jnp.maximum(a * control - beta, 0.0)
    return FilterResult(control, ~feasible, jnp.where(feasible, 0.0, slack))


def barrier(problem: SafeTrackingProblem, states: Float[Array, "*batch n"]) -> Float[Array, "*batch"]:
    r"""The safety function :math:`h(u) = T_{\max} - s^\top u` of each state."""
    return problem.t_max - states @ problem.sensor


def _forcing(problem: SafeTrackingProblem, controls, load):
    return load + controls[:, None] * problem.actuator[None, :]


def _check_run(problem, u0, controls, load):
    n = problem.model.n
    check_shape(u0, (n,), "u0")
    check_shape(load, (None, n), "load")
    check_shape(controls, (np.shape(load)[0],), "controls")
    for name, v in (("u0", u0), ("controls", controls), ("load", load)):
        check_finite(v, name)


def rollout(problem: SafeTrackingProblem, u0: Float[Array, " n"], controls: Float[Array, " K"],
            load: Float[Array, "K n"]) -> Float[Array, "K+1 n"]:
    """States :math:`u_0..u_K` under the open-loop controls (no filter, no bounds applied)."""
    _check_run(problem, u0, controls, load)
    return problem.model.solve(u0, _forcing(problem, controls, load))


class FilteredRollout(NamedTuple):
    """States ``(K+1, n)``, applied controls ``(K,)``, per-step infeasibility flags and slacks ``(K,)``."""

    states: Float[Array, "K+1 n"]
    controls: Float[Array, " K"]
    infeasible: Bool[Array, " K"]
    slack: Float[Array, " K"]


def filtered_rollout(problem: SafeTrackingProblem, u0: Float[Array, " n"], nominal: Float[Array, " K"],
                     load: Float[Array, "K n"]) -> FilteredRollout:
    r"""Closed loop: at every step the :func:`safety_filter` turns the nominal control into the
    one applied, from the current state (feedback), enforcing :eq:`ctl-dcbf` and the bounds."""
    _check_run(problem, u0, nominal, load)
    M, G = problem.model.propagators()
    g = G @ problem.actuator
    a = problem.sensor @ g

    def step(u, inp):
        c_nom, q = inp
        free = M @ u + G @ q
        h = problem.t_max - problem.sensor @ u
        beta = problem.t_max - problem.sensor @ free - (1.0 - problem.gamma) * h
        res = safety_filter(c_nom, a, beta, problem.control_lower, problem.control_upper)
        u_next = free + g * res.control
        return u_next, (u_next, res.control, res.infeasible, res.slack)

    _, (us, cs, inf, slack) = jax.lax.scan(step, u0, (nominal, load), unroll=8)
    return FilteredRollout(jnp.concatenate([u0[None], us], axis=0), cs, inf, slack)


def tracking_cost(problem: SafeTrackingProblem, states: Float[Array, "K+1 n"], controls: Float[Array, " K"]):
    """The cost :eq:`ctl-cost` of a trajectory (``states[0]`` is the fixed initial state)."""
    m = problem.model
    err = states[1:] - problem.target[None, :]
    return m.dt * m.dx * jnp.sum(err ** 2) + problem.control_weight * m.dt * jnp.sum(controls ** 2)


def directional_violation(problem: SafeTrackingProblem, states: Float[Array, "K+1 n"]) -> Float[Array, " K"]:
    r"""Per-step violation :math:`\max(0, (1-\gamma) h(u_k) - h(u_{k+1}))` of :eq:`ctl-dcbf`."""
    h = barrier(problem, states)
    return jnp.maximum((1.0 - problem.gamma) * h[:-1] - h[1:], 0.0)


def state_violation(problem: SafeTrackingProblem, states: Float[Array, "K+1 n"]) -> Float[Array, " K+1"]:
    r"""Overshoot :math:`\max(0, s^\top u_k - T_{\max})` of the sensed temperature."""
    return jnp.maximum(-barrier(problem, states), 0.0)


def tracking_least_squares(problem: SafeTrackingProblem, u0: Float[Array, " n"],
                           load: Float[Array, "K n"]) -> Float[Array, " K"]:
    r"""The exact minimiser of :eq:`ctl-cost` without bounds or safety constraint.

    The states are affine in the controls, :math:`u = u^{\rm free} + S c` with
    :math:`S = \partial u/\partial c` (computed by ``jax.jacfwd`` through the solver), so the
    optimum solves the normal equations
    :math:`(\Delta x\, S^\top S + \alpha I)\, c = \Delta x\, S^\top (u^\star - u^{\rm free})`.
    An independent reference for the gradient-based :func:`optimise_controls` (float64 advised).
    """
    K = np.shape(load)[0]
    _check_run(problem, u0, jnp.zeros(K), load)
    f = lambda c: problem.model.solve(u0, _forcing(problem, c, load))[1:].reshape(-1)  # noqa: E731
    free = f(jnp.zeros(K, dtype=load.dtype))
    S = jax.jacfwd(f)(jnp.zeros(K, dtype=load.dtype))
    resid = jnp.tile(problem.target, K) - free
    dx = problem.model.dx
    lhs = dx * S.T @ S + problem.control_weight * jnp.eye(K)
    return jnp.linalg.solve(lhs, dx * S.T @ resid)



class ConstrainedOptimum(NamedTuple):
    """:func:`constrained_tracking_optimum`: the controls, their cost :eq:`ctl-cost`, the largest
    violation of :eq:`ctl-dcbf` and of the bounds, and whether the QP solver reported success."""

    controls: np.ndarray
    cost: float
    violation: float
    success: bool



@jax.jit
def _affine_states(problem: SafeTrackingProblem, u0, load):
    """The states :math:`u_{1..K}` (flattened) as :math:`u^{\rm free} + S c`: ``(free, S)``."""
    f = lambda c: problem.model.solve(u0, _forcing(problem, c, load))[1:].reshape(-1)  # noqa: E731
    zero = jnp.zeros(load.shape[0], dtype=load.dtype)
    return f(zero), jax.jacfwd(f)(zero)


def _tracking_qp(problem: SafeTrackingProblem, u0, load):
    """The cost as :math:`\\tfrac12 c^\\top H c + g^\\top c + r_0` and the constraint rows :math:`A c \\le b`."""
    K, n = np.shape(load)[0], problem.model.n
    free, S = (np.asarray(v, dtype=float) for v in _affine_states(problem, jnp.asarray(u0), jnp.asarray(load)))
    m = problem.model
    w = float(m.dt) * float(m.dx)
    r = np.tile(np.asarray(problem.target, dtype=float), K) - free
    H = 2.0 * (w * S.T @ S + problem.control_weight * float(m.dt) * np.eye(K))
    g = -2.0 * w * S.T @ r
    s = np.asarray(problem.sensor, dtype=float)
    D = np.concatenate([np.zeros((1, K)), np.einsum("i,kij->kj", s, S.reshape(K, n, K))])  # s^T du_k/dc, k = 0..K
    sf = np.concatenate([[float(s @ np.asarray(u0, dtype=float))], free.reshape(K, n) @ s])
    gam, T = problem.gamma, problem.t_max
    A = D[1:] - (1.0 - gam) * D[:-1]
    b = (T - sf[1:]) - (1.0 - gam) * (T - sf[:-1])
    return H, g, w * float(r @ r), A, b


def constrained_tracking_optimum(problem: SafeTrackingProblem, u0: Float[Array, " n"],
                                 load: Float[Array, "K n"], *, maxiter: int = 2000) -> ConstrainedOptimum:
    r"""The exact minimiser of :eq:`ctl-cost` under the directional constraint :eq:`ctl-dcbf` at
    every step and the control bounds: a convex quadratic programme.

    The states are affine in the controls (:func:`tracking_least_squares`), so the cost is
    :math:`\tfrac12 c^\top H c + g^\top c + r_0` and :eq:`ctl-dcbf` for :math:`k = 0..K-1` is
    :math:`K` linear inequalities :math:`A c \le b`, with rows
    :math:`(1-\gamma)\,\partial h_k/\partial c - \partial h_{k+1}/\partial c` (the hard-constrained
    problem that optimising through the safety filter solves when no step is infeasible). Solved on
    the host by SLSQP (``scipy.optimize.minimize``, :cite:`nocedal2006numerical`) in float64 from
    the zero control: an independent reference for :func:`optimise_controls` with
    ``method="filtered"`` and ``"penalised"``. The tests check its KKT conditions.

    **Returns:** a :class:`ConstrainedOptimum` (``violation`` is the largest of the barrier
    violations :math:`\max(0, (A c - b)_k)` and the bound violations).
    """
    from scipy.optimize import minimize

    K = np.shape(load)[0]
    _check_run(problem, u0, jnp.zeros(K), load)
    H, g, r0, A, b = _tracking_qp(problem, u0, load)
    lo, hi = problem.control_lower, problem.control_upper
    c0 = np.clip(np.zeros(K), lo, hi)
    res = minimize(lambda c: 0.5 * c @ H @ c + g @ c, c0, jac=lambda c: H @ c + g, method="SLSQP",
                   constraints=[dict(type="ineq", fun=lambda c: b - A @ c, jac=lambda c: -A)],
                   bounds=[(None if not np.isfinite(lo) else lo, None if not np.isfinite(hi) else hi)] * K,
                   options=dict(ftol=1e-16, maxiter=int(maxiter)))
    c = np.asarray(res.x)
    states = rollout(problem, u0, jnp.asarray(c, dtype=jnp.asarray(load).dtype), load)
    cost = float(tracking_cost(problem, states, jnp.asarray(c)))
    viol = float(max(np.max(A @ c - b, initial=0.0), np.max(lo - c, initial=0.0), np.max(c - hi, initial=0.0)))
    return ConstrainedOptimum(c, cost, max(viol, 0.0), bool(res.success))


class ControlSolution(NamedTuple):
    """An optimised controller on a batch of loads.

    - `controls`: the applied controls ``(*batch, K)`` (after the filter for ``"filtered"``).
    - `states`: the trajectories ``(*batch, K+1, n)``.
    - `cost`: :eq:`ctl-cost` of each trajectory ``(*batch,)``.
    - `history`: the optimised objective per iteration ``(steps, *batch)``.
    """

    controls: Float[Array, "*batch K"]
    states: Float[Array, "*batch K+1 n"]
    cost: Float[Array, "*batch"]
    history: Float[Array, "steps *batch"]


def optimise_controls(problem: SafeTrackingProblem, u0: Float[Array, " n"], loads: Float[Array, "*batch K n"], *,
                      method: str = "unconstrained", penalty=0.0, steps: int = 100, optimizer: str = "lbfgs",
                      learning_rate: float = 1.0, init: Optional[Float[Array, "*batch K"]] = None,
                      progress: bool = True) -> ControlSolution:
    r"""Optimise the control sequence by gradients through the solver, independently for every
    load of the batch (the optimiser is ``jax.vmap``-ed: one state and one line search per load).

    - ``"unconstrained"``: minimise :eq:`ctl-cost` over :math:`c_{\min} \le c \le c_{\max}`
      (the bounds by projection: clip after each step). The safety constraint is ignored.
    - ``"penalised"``: minimise :math:`J(c) + \rho \sum_k \max(0, (1-\gamma)h_k - h_{k+1})^2`,
      the soft (quadratic-penalty) form of :eq:`ctl-dcbf`; ``penalty`` is :math:`\rho`, a scalar
      or an array broadcastable to the batch shape (a penalty grid in one call).
    - ``"filtered"``: minimise :math:`J` of the *closed-loop* trajectory of
      :func:`filtered_rollout`: optimise the nominal sequence that the safety filter corrects,
      differentiating through the filter. After each step the nominal sequence is replaced by
      the applied one; this leaves the trajectory unchanged (the filter returns a control that
      already satisfies the constraint unchanged) and keeps the gradient from vanishing where the
      filter clips. Every feasible control sequence passes the filter unchanged, so when no step
      is infeasible this solves the hard-constrained problem.

    ``optimizer="lbfgs"`` uses ``optax.lbfgs`` (zoom line search, :cite:`nocedal2006numerical`);
    ``"adam"`` uses Adam :cite:`kingma2015adam` with a cosine-decayed step ``learning_rate``.

    **Arguments:** `u0` ``(n,)``; `loads` ``(*batch, K, n)``; `penalty` as above; `steps`
    iterations; `init` initial controls ``(*batch, K)`` (default zeros); `progress` shows a
    tqdm bar.

    **Returns:** a :class:`ControlSolution`. Deterministic (no randomness is involved).
    Raises ``ValueError`` for an unknown method or optimiser, a wrong shape, NaN input, or a
    negative penalty.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if int(steps) != steps or int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not float(learning_rate) > 0.0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    loads = jnp.asarray(loads)
    n = problem.model.n
    if loads.ndim < 2 or loads.shape[-1] != n:
        raise ValueError(f"loads must have shape (*batch, K, {n}), got {loads.shape}")
    check_shape(u0, (n,), "u0")
    check_finite(u0, "u0")
    check_finite(loads, "loads")
    batch, K = loads.shape[:-2], loads.shape[-2]
    pen = np.asarray(penalty, dtype=float)
    if np.any(pen < 0) or not np.all(np.isfinite(pen)):
        raise ValueError(f"penalty must be finite and non-negative, got {penalty!r}")
    try:
        pen = jnp.broadcast_to(jnp.asarray(pen, dtype=loads.dtype), batch).reshape(-1)
    except ValueError as err:
        raise ValueError(f"penalty of shape {np.shape(penalty)} does not broadcast to the batch shape {batch}") from err
    flat = loads.reshape((-1, K, n))
    if init is None:
        c = jnp.zeros(flat.shape[:2], dtype=loads.dtype)
    else:
        check_shape(init, tuple(batch) + (K,), "init")
        check_finite(init, "init")
        c = jnp.asarray(init, dtype=loads.dtype).reshape(flat.shape[:2])
    c = jnp.clip(c, problem.control_lower, problem.control_upper)
    model = problem.model

    def closed(cn, q):
        return filtered_rollout(problem, u0, cn, q)

    def objective(cn, q, rho):
        if method == "filtered":
            r = closed(cn, q)
            return tracking_cost(problem, r.states, r.controls)
        states = model.solve(u0, _forcing(problem, cn, q))
        j = tracking_cost(problem, states, cn)
        if method == "penalised":
            j = j + rho * jnp.sum(directional_violation(problem, states) ** 2)
        return j

    if optimizer == "lbfgs":
        opt = optax.lbfgs()
    else:
        opt = optax.adam(optax.cosine_decay_schedule(float(learning_rate), int(steps), alpha=0.01))

    def project(cn, q):
        cn = jnp.clip(cn, problem.control_lower, problem.control_upper)
        return closed(cn, q).controls if method == "filtered" else cn

    def one_step(cn, state, q, rho):
        fun = lambda v: objective(v, q, rho)  # noqa: E731
        value, grad = jax.value_and_grad(fun)(cn)
        if optimizer == "lbfgs":
            upd, state = opt.update(grad, state, cn, value=value, grad=grad, value_fn=fun)
        else:
            upd, state = opt.update(grad, state, cn)
        return project(optax.apply_updates(cn, upd), q), state, value

    update = jax.jit(jax.vmap(one_step))
    state = jax.vmap(opt.init)(c)
    history = []
    for _ in tqdm(range(int(steps)), disable=not progress, desc=f"control ({method}, {optimizer})"):
        c, state, value = update(c, state, flat, pen)
        history.append(value)

    @jax.jit
    def final(cs):
        if method == "filtered":
            r = jax.vmap(closed)(cs, flat)
            states, applied = r.states, r.controls
        else:
            states = jax.vmap(lambda cn, q: model.solve(u0, _forcing(problem, cn, q)))(cs, flat)
            applied = cs
        cost = jax.vmap(lambda s, a: tracking_cost(problem, s, a))(states, applied)
        return states, applied, cost

    states, applied, cost = final(c)
    return ControlSolution(applied.reshape(batch + (K,)), states.reshape(batch + (K + 1, n)),
                           cost.reshape(batch), jnp.stack(history).reshape((int(steps),) + batch))
