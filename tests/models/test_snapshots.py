"""DynamicalModel.snapshots: every k-th state of the trajectory, nothing else."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.models import Burgers1D, Langford, Lorenz96


def test_snapshots_are_every_kth_trajectory_state():
    m = Lorenz96(dim=8)
    x0 = 8.0 + jax.random.normal(jax.random.key(0), (8,))
    traj = m.trajectory(x0, 12)  # (13, d), x0 included
    snaps = m.snapshots(x0, 4, 3)
    np.testing.assert_allclose(snaps, traj[3::3], rtol=1e-12, atol=1e-12)


def test_snapshots_pass_physical_time_to_nonautonomous_models():
    m = Langford(a=1.0)  # omega(t) varies: a wrong t0 per frame changes the states
    x0 = jnp.array([0.1, 0.0, 0.0])
    traj = m.trajectory(x0, 40)
    np.testing.assert_allclose(m.snapshots(x0, 4, 10), traj[10::10], rtol=1e-10, atol=1e-12)


def test_snapshots_of_spectral_model_and_vmap():
    m = Burgers1D(n=64, nu=0.05)
    u0 = jax.vmap(m.random_initial_condition)(jax.random.split(jax.random.key(1), 3))
    snaps = jax.vmap(lambda u: m.snapshots(u, 2, 5))(u0)
    assert snaps.shape == (3, 2, 64)
    np.testing.assert_allclose(snaps[:, 1], jax.vmap(lambda u: m.integrate(u, 10))(u0), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n_frames,steps", [(0, 1), (2, 0), (2.0, 1)])
def test_snapshots_refuse_bad_counts(n_frames, steps):
    with pytest.raises(ValueError):
        Lorenz96(dim=8).snapshots(jnp.zeros(8), n_frames, steps)
