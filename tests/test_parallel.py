"""Sharded runs equal single-device runs (4 host CPU devices, set in conftest)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.models import Lorenz96
from assimilax.observations import LinearObservation
from assimilax.parallel import device_mesh, shard_ensemble, shard_state


def test_four_host_devices_are_available():
    assert len(jax.devices()) >= 4, "tests/conftest.py must set --xla_force_host_platform_device_count=4 before importing jax"


@pytest.mark.parametrize("place", [shard_ensemble, shard_state])
def test_sharded_enkf_equals_single_device(place):
    from assimilax.filters import ensemble_kalman_filter

    model = Lorenz96(16, dt=0.05)
    obs = LinearObservation.every_kth(16, 2, 1.0)
    x0 = jnp.full(16, 8.0).at[0].add(0.01)
    sim = simulate(model, obs, x0, 30, key=jax.random.PRNGKey(0), burn_in=200)
    ens0 = sim.x0[None, :] + jax.random.normal(jax.random.PRNGKey(1), (8, 16))
    kw = dict(key=jax.random.PRNGKey(2), method="sqrt", inflation=1.02)
    ref = ensemble_kalman_filter(model, obs, sim.observations, ens0, **kw)
    sharded0 = place(ens0, device_mesh(4))
    assert len(sharded0.sharding.device_set) == 4
    out = ensemble_kalman_filter(model, obs, sim.observations, sharded0, **kw)
    np.testing.assert_allclose(out.analysis_mean, ref.analysis_mean, rtol=1e-9, atol=1e-9)


def test_bad_mesh_requests_are_refused():
    with pytest.raises(ValueError, match="not divisible"):
        shard_ensemble(jnp.zeros((6, 4)), device_mesh(4))
    with pytest.raises(ValueError, match="n_devices"):
        device_mesh(1000)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        shard_state(jnp.zeros(4))
