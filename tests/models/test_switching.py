"""SwitchingLorenz63: reduction to Lorenz63, the forced field, dwell-time statistics of the
regime chain against the geometric law, and the schedule's time indexing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.models import Lorenz63, SwitchingLorenz63, dwell_lengths
from assimilax.observations import LinearObservation


def test_k1_unforced_is_lorenz63():
    m = SwitchingLorenz63(jnp.zeros((1, 3)))
    x0 = jnp.array([1.0, -2.0, 20.0])
    np.testing.assert_allclose(m.trajectory(x0, 300), Lorenz63().trajectory(x0, 300), rtol=0, atol=1e-12)
    sched = m.sample_regimes(50, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(sched), 0)


def test_forced_vector_field_closed_form():
    f = SwitchingLorenz63.palmer_forcings(3, 5.0, phase=0.3)
    np.testing.assert_allclose(np.asarray(f[1]), 5.0 * np.array([np.cos(0.3 + 2 * np.pi / 3), np.sin(0.3 + 2 * np.pi / 3), 0]),
                               atol=1e-12)
    m = SwitchingLorenz63(f, dwell_time=1.0)
    x = jnp.array([1.5, -0.5, 25.0])
    s, r, b = 10.0, 28.0, 8.0 / 3.0
    lor = np.array([s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]])
    for k in range(3):
        np.testing.assert_allclose(np.asarray(m.regime_vector_field(x, k)), lor + np.asarray(f[k]), atol=1e-12)


def test_transition_matrix():
    m = SwitchingLorenz63(SwitchingLorenz63.palmer_forcings(4, 1.0), dwell_time=0.5, dt=0.01)
    p = np.asarray(m.transition_matrix())
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(p), 1 - 0.02, atol=1e-12)
    np.testing.assert_allclose(p[0, 1:], 0.02 / 3, atol=1e-12)


def test_dwell_time_statistics():
    tau, dt, k = 0.5, 0.01, 3
    m = SwitchingLorenz63(SwitchingLorenz63.palmer_forcings(k, 1.0), dwell_time=tau, dt=dt)
    path = np.asarray(m.sample_regimes(300_000, key=jax.random.key(1)))
    runs = dwell_lengths(path)
    mean_steps = tau / dt  # geometric with success probability dt/tau: mean tau/dt, sd sqrt(1-p)/p
    p = dt / tau
    se = np.sqrt(1 - p) / p / np.sqrt(runs.size)
    assert abs(runs.mean() - mean_steps) < 4 * se
    # P(run > j) = (1 - p)^j (geometric tail), at j = mean_steps
    tail = np.mean(runs > mean_steps)
    q = (1 - p) ** mean_steps
    assert abs(tail - q) < 4 * np.sqrt(q * (1 - q) / runs.size)
    # a switch goes to each of the other K - 1 regimes equally often; occupancy near 1/K
    change = np.flatnonzero(np.diff(path) != 0)
    offsets = (path[change + 1] - path[change]) % k
    frac = np.mean(offsets == 1)
    assert abs(frac - 0.5) < 4 * np.sqrt(0.25 / offsets.size)
    occupancy = np.bincount(path, minlength=k) / path.size
    assert np.all(np.abs(occupancy - 1 / k) < 0.05)


def test_schedule_indexing_in_simulate():
    # regime 0 for the first 37 model steps, then regime 1: the simulated truth equals stepping
    # the constant-forcing systems by hand with the switch at step 37
    f = jnp.array([[0.0, 0.0, 0.0], [20.0, -10.0, 5.0]])
    m = SwitchingLorenz63(f, dwell_time=1.0)
    sched = jnp.where(jnp.arange(60) < 37, 0, 1).astype(jnp.int32)
    sm = m.with_schedule(sched)
    obs = LinearObservation.full(3, 1e-3)
    x0 = jnp.array([1.0, 1.0, 20.0])
    sim = simulate(sm, obs, x0, 12, key=jax.random.key(0), steps_per_obs=5)
    x = x0
    ref = []
    a, b = SwitchingLorenz63(f[:1]), SwitchingLorenz63(f[1:])
    for i in range(60):
        x = (a if i < 37 else b).step(x)
        if (i + 1) % 5 == 0:
            ref.append(x)
    np.testing.assert_allclose(np.asarray(sim.states), np.stack(ref), rtol=1e-10, atol=1e-10)
    # the forcing changes the trajectory (the test could fail if the schedule were ignored)
    assert float(jnp.max(jnp.abs(sim.states[-1] - a.integrate(x0, 60)))) > 1e-2


def test_errors():
    with pytest.raises(ValueError, match=r"shape \(K, 3\)"):
        SwitchingLorenz63(jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="dwell_time"):
        SwitchingLorenz63(jnp.zeros((2, 3)), dwell_time=0.001)
    with pytest.raises(ValueError, match="NaN"):
        SwitchingLorenz63(jnp.array([[0.0, jnp.nan, 0.0]]))
    with pytest.raises(ValueError, match="integer"):
        SwitchingLorenz63(jnp.zeros((2, 3))).with_schedule(jnp.zeros(4))
    with pytest.raises(ValueError, match="n_steps"):
        SwitchingLorenz63(jnp.zeros((2, 3))).sample_regimes(0, key=jax.random.key(0))


def test_simulate_switching_matches_schedule():
    from assimilax.models import simulate_switching

    m = SwitchingLorenz63(SwitchingLorenz63.palmer_forcings(2, 10.0), dwell_time=0.1)
    obs = LinearObservation.full(3, 0.1)
    x0 = jnp.array([1.0, 1.0, 20.0])
    sim, truth_model, reg = simulate_switching(m, obs, x0, 20, key=jax.random.key(3), steps_per_obs=3)
    assert reg.shape == (60,)
    ref = simulate(m.with_schedule(reg), obs, x0, 20, key=jax.random.split(jax.random.key(3))[1], steps_per_obs=3)
    np.testing.assert_allclose(np.asarray(sim.states), np.asarray(ref.states), atol=1e-12)
    assert len(np.unique(np.asarray(reg))) == 2  # dwell 10 steps over 60: both regimes visited
    with pytest.raises(ValueError, match="SwitchingLorenz63"):
        simulate_switching(Lorenz63(), obs, x0, 5, key=jax.random.key(0))
