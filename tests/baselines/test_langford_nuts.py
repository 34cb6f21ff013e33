"""NUTS reference posterior of the Langford phase: calibration over repeated seeds.

Eight independent short windows (12 observations of (x, y) every 0.1 time units, sigma = 0.1,
autonomous truth, so the model is correctly specified) are sampled jointly in one NUTS run (a
posterior of independent blocks). The 90 % interval of the phase at the last observation must
cover the true phase at about the nominal rate: with 8 windows, P(at most 5 covered | p = 0.9)
is about 0.04, so we require at least 6.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.baselines.langford import langford_nuts
from assimilax.models.langford import Langford
from assimilax.observations import LinearObservation
from assimilax.tracking import circular_error, circular_interval_contains, circular_mean

B, W, SIGMA = 8, 12, 0.1


@pytest.fixture(scope="module")
def posterior():
    m = Langford()
    x0 = m.burn_in(n_steps=3000)
    keys = jax.random.split(jax.random.PRNGKey(11), B)
    sims = [simulate(m, LinearObservation.partial([0, 1], 3, SIGMA), m.integrate(x0, 53 * (i + 1)), W, key=keys[i],
                     steps_per_obs=10) for i in range(B)]
    ys = jnp.stack([s.observations for s in sims])
    last = jnp.stack([s.states[-1] for s in sims])
    # the sampler integrates with RK4 at dt = 0.05 (2 steps per observation): 5x cheaper than
    # the truth's dt = 0.01, with a discretisation error far below sigma
    post = langford_nuts(ys, key=jax.random.PRNGKey(0), sigma=SIGMA, steps_per_obs=2, model=Langford(dt=0.05),
                         num_warmup=150, num_samples=200, dense_mass=False, max_tree_depth=5)
    return post, last


def test_phase_interval_coverage(posterior):
    post, last = posterior
    truth = jnp.arctan2(last[:, 1], last[:, 0])
    assert post.phase.shape == (200, B)
    covered = [bool(circular_interval_contains(post.phase[:, b], truth[b], 0.9)) for b in range(B)]
    assert sum(covered) >= 6, covered
    assert post.num_divergences < 10


def test_posterior_is_informative(posterior):
    """The posterior phase sd is well below the single-observation error sigma / r (the window
    pools 12 observations), and the true omega = 3.5 lies within 3 posterior sds."""
    post, last = posterior
    r = np.asarray(jnp.hypot(last[:, 0], last[:, 1]))
    sd = np.sqrt(np.mean(np.asarray(circular_error(post.phase, jnp.broadcast_to(circular_mean(post.phase, axis=0), post.phase.shape))) ** 2, axis=0))
    assert np.median(sd / (SIGMA / r)) < 0.8
    om = np.asarray(post.omega)
    assert np.all(np.abs(om.mean(0) - 3.5) < 3 * om.std(0) + 0.05), (om.mean(0), om.std(0))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        langford_nuts(jnp.ones((5,)), key=jax.random.PRNGKey(0), sigma=0.1)
    with pytest.raises(ValueError, match="sigma"):
        langford_nuts(jnp.ones((5, 2)), key=jax.random.PRNGKey(0), sigma=-1.0)
