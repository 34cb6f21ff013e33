"""Langford model: the notes' formula, the omega schedule, time passing in simulate."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.models.langford import AugmentedLangford, Langford
from assimilax.observations import LinearObservation


def np_field(u, t, al=0.95, be=0.7, la=0.6, om0=3.5, rho=0.25, eps=0.1, a=0.0, P=10.0, phi=0.0):
    x, y, z = u
    w = om0 + a * np.sin(2 * np.pi * t / P + phi)
    return np.array([(z - be) * x - w * y, w * x + (z - be) * y,
                     la + al * z - z**3 / 3 - (x * x + y * y) * (1 + rho * z) + eps * z * x**3])


def np_rk4(u, t, dt, **kw):
    k1 = np_field(u, t, **kw)
    k2 = np_field(u + dt / 2 * k1, t + dt / 2, **kw)
    k3 = np_field(u + dt / 2 * k2, t + dt / 2, **kw)
    k4 = np_field(u + dt * k3, t + dt, **kw)
    return u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def test_defaults_are_the_notes_values():
    m = Langford()
    assert (m.alpha, m.beta, m.lam, m.omega0, m.rho, m.epsilon, m.a, m.dt) == (0.95, 0.7, 0.6, 3.5, 0.25, 0.1, 0.0, 0.01)
    np.testing.assert_array_equal(Langford.default_initial_state(), [0.1, 0.0, 0.0])
    assert m.dim == 3


@pytest.mark.parametrize("a,P,phi", [(0.0, 10.0, 0.0), (1.3, 7.0, 0.4), (-0.5, 2.5, 2.0)])
def test_vector_field_matches_formula(a, P, phi):
    rng = np.random.default_rng(0)
    m = Langford(a=a, period=P, phi=phi)
    for _ in range(20):
        u, t = rng.normal(size=3) * 1.5, rng.uniform(0, 30)
        np.testing.assert_allclose(m.vector_field(jnp.asarray(u), t), np_field(u, t, a=a, P=P, phi=phi),
                                   rtol=1e-12, atol=1e-12)


def test_omega_schedule():
    m = Langford(a=0.8, period=4.0, phi=0.3)
    t = np.linspace(0, 20, 101)
    np.testing.assert_allclose(m.omega(t), 3.5 + 0.8 * np.sin(2 * np.pi * t / 4.0 + 0.3), rtol=1e-13)
    np.testing.assert_allclose(Langford().omega(t), np.full_like(t, 3.5))
    # phase_increment is the integral of omega (trapezoid on a fine grid)
    s = np.linspace(1.0, 6.0, 20001)
    w = 3.5 + 0.8 * np.sin(2 * np.pi * s / 4.0 + 0.3)
    np.testing.assert_allclose(m.phase_increment(1.0, 6.0), np.sum((w[1:] + w[:-1]) / 2 * np.diff(s)), rtol=1e-8)


def test_simulate_passes_time_and_phase_rotates_at_omega():
    """Truth from ``simulate`` equals a NumPy RK4 loop with the schedule evaluated at the physical
    time, and the unwrapped phase advances by the integral of omega (theta' = omega exactly)."""
    m = Langford(a=1.0, period=3.0, phi=0.2)
    x0 = np.array([0.5, -0.2, 0.9])
    sim = simulate(m, LinearObservation.partial([0, 1], 3, 0.1), jnp.asarray(x0), 12, key=jax.random.PRNGKey(0),
                   steps_per_obs=7)
    u, ref = x0.copy(), []
    for n in range(12 * 7):
        u = np_rk4(u, n * 0.01, 0.01, a=1.0, P=3.0, phi=0.2)
        if (n + 1) % 7 == 0:
            ref.append(u)
    np.testing.assert_allclose(sim.states, np.array(ref), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sim.times, 0.07 * np.arange(1, 13))
    th = np.unwrap(np.concatenate([[np.arctan2(x0[1], x0[0])], np.arctan2(sim.states[:, 1], sim.states[:, 0])]))
    expected = th[0] + 3.5 * sim.times - 1.0 * 3.0 / (2 * np.pi) * (np.cos(2 * np.pi * sim.times / 3.0 + 0.2) - np.cos(0.2))
    np.testing.assert_allclose(th[1:], expected, atol=1e-8)


def test_augmented_model():
    rng = np.random.default_rng(1)
    m = AugmentedLangford.with_noise(q_state=0.1, q_omega=0.5, dt=0.01)
    assert m.dim == 4
    np.testing.assert_allclose(np.diag(m.noise_cov), [1e-4 + 1e-12, 1e-4 + 1e-12, 1e-4 + 1e-12, 2.5e-3 + 1e-12])
    for _ in range(5):
        u, w = rng.normal(size=3), rng.uniform(2, 5)
        f = m.vector_field(jnp.asarray(np.append(u, w)))
        np.testing.assert_allclose(f, np.append(np_field(u, 0.0, om0=w), 0.0), rtol=1e-12, atol=1e-12)


def test_burn_in_reaches_the_attractor():
    m = Langford(a=2.0)  # burn-in uses the autonomous system whatever a is
    x = m.burn_in(n_steps=3000)
    y = Langford().burn_in(n_steps=3000)
    np.testing.assert_allclose(x, y)
    traj = np.asarray(Langford().trajectory(x, 2000))
    r = np.hypot(traj[:, 0], traj[:, 1])
    assert np.all(np.isfinite(traj)) and 0.05 < r.min() and r.max() < 2.0 and r.std() > 0.1
