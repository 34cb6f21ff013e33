"""assimilax.control against independent references: exact modal decay of the heat equation
(and the schemes' convergence orders), the closed-form least-squares optimum, finite-difference
gradients, and the safety filter's guarantee over random loads."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assimilax.control import (HeatEquation1D, directional_violation, filtered_rollout, gaussian_profile,
                               make_problem, minimal_time, optimise_controls, reach, rollout, safety_filter,
                               steady_state, thermal_load, tracking_cost, tracking_least_squares)


def _mode_error(n, dt, scheme, t_end=0.1, m=2, continuous=False):
    model = HeatEquation1D(n=n, kappa=1.0, dt=dt, scheme=scheme)
    x = model.grid()
    u0 = jnp.sin(m * jnp.pi * x)
    K = int(round(t_end / dt))
    us = model.solve(u0, jnp.zeros((K, n)))
    rate = (m * np.pi) ** 2 if continuous else -float(model.eigenvalue(m))
    return float(jnp.max(jnp.abs(us[-1] - np.exp(-rate * K * dt) * u0)))


@pytest.mark.parametrize("scheme,order", [("crank_nicolson", 2.0), ("backward_euler", 1.0)])
def test_time_convergence_order_against_modal_decay(scheme, order):
    errs = [_mode_error(31, dt, scheme) for dt in (0.01, 0.005, 0.0025)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(rates, order, atol=0.15)


def test_space_convergence_order_against_continuous_decay():
    # tiny dt with CN: the time error is negligible, the spatial O(dx^2) error remains
    errs = [_mode_error(n, 1e-4, "crank_nicolson", t_end=0.02, continuous=True) for n in (15, 31, 63)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(rates, 2.0, atol=0.15)


def test_backward_euler_is_positivity_preserving_and_crank_nicolson_is_not_in_general():
    be = HeatEquation1D(n=31, dt=0.01, scheme="backward_euler").propagators()
    assert float(be.M.min()) >= 0.0 and float(be.G.min()) >= 0.0
    cn = HeatEquation1D(n=31, dt=0.01, scheme="crank_nicolson").propagators()
    assert float(cn.M.min()) < 0.0


def _problem(n=23, dt=0.01, gamma=0.2, lower=-60.0, upper=60.0):
    model = HeatEquation1D(n=n, kappa=1.0, dt=dt)
    x = model.grid()
    return make_problem(model, gaussian_profile(model, 0.35, 0.08), gaussian_profile(model, 0.5, 0.04, normalise=True),
                        jnp.exp(-0.5 * ((x - 0.35) / 0.12) ** 2), t_max=0.6, gamma=gamma, control_weight=1e-5,
                        control_lower=lower, control_upper=upper)


def test_gradient_through_solver_matches_finite_differences():
    prob = _problem()
    K = 20
    load = thermal_load(prob.model, K, key=jax.random.key(3))
    u0 = jnp.zeros(prob.model.n)
    c = jax.random.normal(jax.random.key(4), (K,)) * 5.0
    f = jax.jit(lambda v: tracking_cost(prob, rollout(prob, u0, v, load), v))
    g = jax.grad(f)(c)
    eps = 1e-5
    fd = np.array([(f(c.at[i].add(eps)) - f(c.at[i].add(-eps))) / (2 * eps) for i in range(0, K, 4)])
    np.testing.assert_allclose(np.asarray(g)[::4], fd, rtol=1e-6, atol=1e-12)


def test_gradient_through_filtered_rollout_matches_finite_differences():
    prob = _problem()
    K = 20
    load = thermal_load(prob.model, K, key=jax.random.key(5))
    u0 = jnp.zeros(prob.model.n)
    c = jnp.linspace(10.0, 40.0, K)
    f = jax.jit(lambda v: jnp.sum(filtered_rollout(prob, u0, v, load).states[-1] ** 2))
    g = jax.grad(f)(c)
    eps = 1e-6
    fd = np.array([(f(c.at[i].add(eps)) - f(c.at[i].add(-eps))) / (2 * eps) for i in range(K)])
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-5, atol=1e-9)


def test_optimised_unconstrained_controls_reach_the_least_squares_optimum():
    prob = _problem(lower=-1e3, upper=1e3)
    K = 30
    loads = jax.vmap(lambda k: thermal_load(prob.model, K, key=k))(jax.random.split(jax.random.key(0), 2))
    u0 = jnp.zeros(prob.model.n)
    sol = optimise_controls(prob, u0, loads, method="unconstrained", steps=60, progress=False)
    for i in range(2):
        c_ls = tracking_least_squares(prob, u0, loads[i])
        j_ls = tracking_cost(prob, rollout(prob, u0, c_ls, loads[i]), c_ls)
        assert float(sol.cost[i]) <= float(j_ls) * (1 + 1e-6)
        np.testing.assert_allclose(float(sol.cost[i]), float(j_ls), rtol=1e-6)


def test_filtered_optimum_is_safe_and_costs_at_least_the_unconstrained_optimum():
    prob = _problem()
    K = 30
    loads = jax.vmap(lambda k: thermal_load(prob.model, K, key=k))(jax.random.split(jax.random.key(1), 2))
    u0 = jnp.zeros(prob.model.n)
    # the exact unconstrained optimum (no bounds, no safety) is a lower bound of every cost
    c_ls = jax.vmap(lambda q: tracking_least_squares(prob, u0, q))(loads)
    s_ls = jax.vmap(lambda c, q: rollout(prob, u0, c, q))(c_ls, loads)
    j_ls = jax.vmap(lambda s, c: tracking_cost(prob, s, c))(s_ls, c_ls)
    safe = optimise_controls(prob, u0, loads, method="filtered", steps=60, optimizer="adam", learning_rate=2.0,
                             progress=False)
    assert float(jnp.max(jax.vmap(lambda s: directional_violation(prob, s))(s_ls))) > 1e-3  # constraint active
    assert float(jnp.max(jax.vmap(lambda s: directional_violation(prob, s))(safe.states))) <= 1e-12
    assert np.all(np.asarray(safe.cost) >= np.asarray(j_ls) - 1e-12)
    assert np.all(np.asarray(safe.history[-1]) < np.asarray(safe.history[0]))  # the optimiser made progress


_PROPERTY_K = 30


def _property_run(gamma):
    prob = _problem(gamma=gamma, lower=-200.0, upper=200.0)
    u0 = jnp.zeros(prob.model.n)

    @jax.jit
    def run(key):
        key_load, key_nom = jax.random.split(key)
        load = thermal_load(prob.model, _PROPERTY_K, key=key_load, amplitude_range=(10.0, 80.0))
        nominal = 150.0 * jax.random.uniform(key_nom, (_PROPERTY_K,))  # aggressive heating
        res = filtered_rollout(prob, u0, nominal, load)
        return (res, directional_violation(prob, res.states), nominal,
                directional_violation(prob, rollout(prob, u0, nominal, load)))
    return prob, run


_PROPERTY_RUNS = {}


@given(seed=st.integers(0, 2 ** 31 - 1), gamma=st.sampled_from([0.05, 0.2, 1.0]))
def test_safety_filter_never_violates_the_constraint_it_enforces(seed, gamma):
    if gamma not in _PROPERTY_RUNS:
        _PROPERTY_RUNS[gamma] = _property_run(gamma)
    prob, run = _PROPERTY_RUNS[gamma]
    res, viol, nominal, open_viol = run(jax.random.key(seed))
    feasible = ~np.asarray(res.infeasible)
    assert feasible.all(), "cooling authority of 200 always suffices for these loads"
    assert float(jnp.max(viol)) <= 1e-10
    assert float(jnp.min(res.controls)) >= prob.control_lower and float(jnp.max(res.controls)) <= prob.control_upper
    # the filter is minimal: where the nominal control is already safe it is applied unchanged
    if float(jnp.max(open_viol)) == 0.0:
        np.testing.assert_allclose(res.controls, nominal)


def test_safety_filter_closed_form_cases_and_infeasibility():
    r = safety_filter(jnp.array([5.0, 5.0, -5.0, 5.0, 5.0, 1.0]), jnp.array([1.0, 2.0, -1.0, 1.0, 0.0, 0.0]),
                      jnp.array([3.0, 3.0, 2.0, -20.0, -1.0, 1.0]), -10.0, 10.0)
    np.testing.assert_allclose(r.control, [3.0, 1.5, -2.0, -10.0, 5.0, 1.0])
    np.testing.assert_array_equal(r.infeasible, [False, False, False, True, True, False])
    np.testing.assert_allclose(r.slack, [0.0, 0.0, 0.0, 10.0, 1.0, 0.0])
    # a brute-force grid agrees with the closed form on feasible random instances
    rng = np.random.default_rng(0)
    grid = np.linspace(-10, 10, 200001)
    for _ in range(20):
        nom, a, beta = rng.normal(0, 8), rng.normal(), rng.normal(0, 5)
        ok = a * grid <= beta
        if not ok.any():
            continue
        best = grid[ok][np.argmin((grid[ok] - nom) ** 2)]
        assert abs(float(safety_filter(nom, a, beta, -10.0, 10.0).control) - best) < 2e-4


def test_reach_constrained_needs_positive_time_and_matches_certificate():
    model = HeatEquation1D(n=23)
    b = gaussian_profile(model, 0.35, 0.08)
    u0, u1 = steady_state(model, b, 30.0), steady_state(model, b, 10.0)
    # steady state solves the stationary equation
    np.testing.assert_allclose(model.kappa * model.laplacian() @ u0 + 30.0 * b, 0.0, atol=1e-9)
    short = reach(model, b, u0, u1, 0.01, 20, nonnegative=True)
    free = reach(model, b, u0, u1, 0.01, 20, nonnegative=False)
    assert short.error >= short.lower_bound - 1e-12 and short.lower_bound > 0.5
    assert free.error < 1e-2
    t_c = minimal_time(model, b, u0, u1, 0.1, n_steps=20, iterations=10)
    t_lb = minimal_time(model, b, u0, u1, 0.1, n_steps=20, iterations=10, bound_only=True)
    t_u = minimal_time(model, b, u0, u1, 0.1, n_steps=20, iterations=10, nonnegative=False)
    assert t_c >= t_lb * (1 - 1e-3) and t_lb > 0.05 and t_u < 0.2 * t_lb


def test_bad_input_is_refused():
    model = HeatEquation1D(n=11)
    with pytest.raises(ValueError, match="scheme"):
        HeatEquation1D(n=11, scheme="rk4")
    with pytest.raises(ValueError, match="dt must be positive"):
        HeatEquation1D(n=11, dt=-1.0)
    with pytest.raises(ValueError, match=r"u0 must have shape \(11,\)"):
        model.solve(jnp.zeros(5), jnp.zeros((3, 11)))
    with pytest.raises(ValueError, match="NaN"):
        model.solve(jnp.zeros(11).at[2].set(jnp.nan), jnp.zeros((3, 11)))
    with pytest.raises(ValueError, match="gamma"):
        make_problem(model, jnp.ones(11), jnp.ones(11), jnp.ones(11), t_max=1.0, gamma=0.0)
    with pytest.raises(ValueError, match="control_lower"):
        make_problem(model, jnp.ones(11), jnp.ones(11), jnp.ones(11), t_max=1.0, gamma=0.5, control_lower=1.0,
                     control_upper=0.0)
    with pytest.raises(ValueError, match="sensor must have shape"):
        make_problem(model, jnp.ones(11), jnp.ones(3), jnp.ones(11), t_max=1.0, gamma=0.5)
    prob = make_problem(model, jnp.ones(11), jnp.ones(11) / 11, jnp.ones(11), t_max=1.0, gamma=0.5)
    with pytest.raises(ValueError, match="method"):
        optimise_controls(prob, jnp.zeros(11), jnp.zeros((4, 11)), method="magic")
    with pytest.raises(ValueError, match="penalty"):
        optimise_controls(prob, jnp.zeros(11), jnp.zeros((4, 11)), method="penalised", penalty=-1.0)
    with pytest.raises(ValueError, match="tolerance"):
        minimal_time(model, jnp.ones(11), jnp.ones(11), jnp.zeros(11), 1.5)
    with pytest.raises(ValueError, match="lower must be below upper"):
        safety_filter(0.0, 1.0, 1.0, 1.0, -1.0)


def test_constrained_optimum_satisfies_the_kkt_conditions_and_bounds_the_filtered_optimiser():
    from scipy.optimize import nnls

    from assimilax.control import constrained_tracking_optimum
    from assimilax.control.safety import _tracking_qp

    prob = _problem()
    K = 30
    u0 = jnp.zeros(prob.model.n)
    loads = jax.vmap(lambda k: thermal_load(prob.model, K, key=k))(jax.random.split(jax.random.key(1), 2))
    safe = optimise_controls(prob, u0, loads, method="filtered", steps=60, optimizer="adam", learning_rate=2.0,
                             progress=False)
    for i in range(2):
        opt = constrained_tracking_optimum(prob, u0, loads[i])
        assert opt.success and opt.violation <= 1e-9
        st = rollout(prob, u0, jnp.asarray(opt.controls), loads[i])
        assert float(jnp.max(directional_violation(prob, st))) <= 1e-9
        # the quadratic form reproduces the cost
        H, g, r0, A, b = _tracking_qp(prob, u0, loads[i])
        c = opt.controls
        assert 0.5 * c @ H @ c + g @ c + r0 == pytest.approx(opt.cost, rel=1e-9)
        # KKT: grad J + A_act^T lam + bound multipliers = 0 with lam >= 0 (NNLS finds the multipliers)
        grad = H @ c + g
        act = np.flatnonzero(A @ c - b > -1e-7)
        assert act.size > 0  # the constraint is active (tested above: the free optimum violates it)
        cols = [A[j] for j in act]
        cols += [np.eye(K)[j] for j in np.flatnonzero(c >= prob.control_upper - 1e-7)]
        cols += [-np.eye(K)[j] for j in np.flatnonzero(c <= prob.control_lower + 1e-7)]
        lam, res = nnls(np.array(cols).T, -grad)
        assert res <= 1e-6 * np.linalg.norm(grad)
        # no feasible sequence costs less: the filtered optimiser's cost is an upper bound
        assert opt.cost <= float(safe.cost[i]) * (1 + 1e-9)
