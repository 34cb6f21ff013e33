"""Bootstrap particle filter on the augmented Langford model (own file: its compilation is slow)."""
import jax
import jax.numpy as jnp

from assimilax import simulate
from assimilax.models.langford import Langford
from assimilax.observations import LinearObservation
from assimilax.tracking import circular_rmse, track_augmented_pf


def test_augmented_particle_filter_learns_omega():
    m = Langford()
    x0 = m.burn_in(n_steps=3000)
    sim = simulate(m, LinearObservation.partial([0, 1], 3, 0.05), x0, 150, key=jax.random.PRNGKey(4), steps_per_obs=10)
    th = jnp.arctan2(sim.states[:, 1], sim.states[:, 0])
    est, res = track_augmented_pf(sim.observations, 0.05, key=jax.random.PRNGKey(0), n_particles=300,
                                  q_omega=0.3, q_state=0.03, omega_guess=3.0)
    assert abs(float(jnp.mean(est.rate[-30:])) - 3.5) < 0.15
    raw = circular_rmse(jnp.arctan2(sim.observations[50:, 1], sim.observations[50:, 0]), th[50:])
    assert float(circular_rmse(est.phase[50:], th[50:])) < 0.7 * float(raw)
    assert res.ess.shape == (150,)


def test_jitter_is_passed_through_and_can_be_vmapped():
    """jitter = 0 is the default filter (same key, same particles); a traced jitter grid runs under vmap."""
    m = Langford()
    sim = simulate(m, LinearObservation.partial([0, 1], 3, 0.1), m.burn_in(n_steps=1000), 30,
                   key=jax.random.PRNGKey(1), steps_per_obs=10)
    run = lambda h: track_augmented_pf(sim.observations, 0.1, key=jax.random.PRNGKey(2), n_particles=64,  # noqa: E731
                                       q_state=0.05, q_omega=0.5, jitter=h)[0].phase
    base = track_augmented_pf(sim.observations, 0.1, key=jax.random.PRNGKey(2), n_particles=64,
                              q_state=0.05, q_omega=0.5)[0].phase
    grid = jax.vmap(run)(jnp.array([0.0, 1.0]))
    assert jnp.allclose(grid[0], base, atol=1e-12)
    assert not jnp.allclose(grid[1], base)  # the regularisation moved the particles
