"""The ensemble-aware learned analysis: an untrained one is its base exactly, it is
permutation-equivariant in the members, its covariance statistics agree with NumPy, the LETKF
cycled by ``learned_filter`` is the LETKF filter, and training through the cycle is reproducible,
lowers a held-out loss, and refuses bad input."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import simulate
from assimilax.filters import LETKFAnalysis, ensemble_kalman_filter
from assimilax.learned import (EnsembleStencilAnalysis, TrajectoryData, ensemble_windows, fit_ensemble_analysis,
                               generate_trajectories, learned_filter, unrolled_ensemble_loss)
from assimilax.models import Lorenz96
from assimilax.observations import LinearObservation

D, N = 16, 8


@pytest.fixture(scope="module")
def setup():
    l96 = Lorenz96(dim=D, forcing=8.0, dt=0.05)
    obs = LinearObservation.every_kth(D, 2, 1.0)
    x0s = 8.0 + jax.random.normal(jax.random.PRNGKey(0), (4, D))
    data = generate_trajectories(l96, obs, x0s, 40, key=jax.random.PRNGKey(1), burn_in=300)
    sim = simulate(l96, obs, x0s[0], 30, key=jax.random.PRNGKey(2), burn_in=300)
    E0 = sim.x0[None, :] + jax.random.normal(jax.random.PRNGKey(3), (N, D))
    base = LETKFAnalysis(obs, D, inflation=1.05, localization_radius=3.0, n_members=N)
    return l96, obs, data, sim, E0, base


def _randomised(G, key):
    """G with a non-zero last layer (so that it is not its base)."""
    last = G.head.layers[-1]
    return eqx.tree_at(lambda g: g.head.layers[-1].weight, G, 0.05 * jax.random.normal(key, last.weight.shape))


def test_untrained_analysis_is_its_base(setup):
    l96, obs, _, sim, E0, base = setup
    EF = jax.vmap(lambda x: l96.integrate(x, 1, 0.0))(E0)
    y = sim.observations[0]
    G = EnsembleStencilAnalysis(obs, D, base=base, radius=2, width=16, key=jax.random.PRNGKey(4))
    np.testing.assert_allclose(G(EF, y), base(EF, y), rtol=0, atol=1e-12)
    G0 = EnsembleStencilAnalysis(obs, D, base=None, radius=2, width=16, key=jax.random.PRNGKey(4))
    np.testing.assert_allclose(G0(EF, y), EF, rtol=0, atol=1e-12)


def test_learned_filter_cycles_the_letkf_as_the_filter_does(setup):
    l96, obs, _, sim, E0, base = setup
    a = learned_filter(l96, obs, sim.observations, E0, analysis=base, key=jax.random.PRNGKey(0))
    b = ensemble_kalman_filter(l96, obs, sim.observations, E0, key=jax.random.PRNGKey(0), inflation=1.05,
                               localization_radius=3.0)
    np.testing.assert_allclose(a.analysis_mean, b.analysis_mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.analysis_spread, b.analysis_spread, rtol=0, atol=1e-9)


def test_permutation_equivariant_in_members(setup):
    l96, obs, _, sim, E0, base = setup
    EF = jax.vmap(lambda x: l96.integrate(x, 1, 0.0))(E0)
    G = _randomised(EnsembleStencilAnalysis(obs, D, base=base, radius=2, width=16, key=jax.random.PRNGKey(5)),
                    jax.random.PRNGKey(6))
    perm = np.random.default_rng(0).permutation(N)
    out = G(EF, sim.observations[0])
    assert float(jnp.max(jnp.abs(out - base(EF, sim.observations[0])))) > 1e-3
    np.testing.assert_allclose(G(EF[perm], sim.observations[0]), out[perm], rtol=0, atol=1e-10)


def test_covariance_statistics_equal_numpy(setup):
    l96, obs, _, sim, E0, _ = setup
    r = 2
    G = EnsembleStencilAnalysis(obs, D, base=None, radius=r, width=16, features=0, key=jax.random.PRNGKey(7))
    EF = np.asarray(jax.vmap(lambda x: l96.integrate(x, 1, 0.0))(E0))
    y = np.asarray(sim.observations[0])
    z, _ = G.statistics(jnp.asarray(EF), jnp.asarray(y))
    z = np.asarray(z)
    idx = np.arange(0, D, 2)
    A = EF - EF.mean(0)
    Bs = np.zeros_like(EF)
    Bs[:, idx] = EF[:, idx] - EF[:, idx].mean(0)
    innov = np.zeros(D)
    innov[idx] = y - EF.mean(0)[idx]
    var_b = np.zeros(D)
    var_b[idx] = Bs[:, idx].var(0, ddof=1)
    covs = np.array([[A[:, i] @ Bs[:, (i + k) % D] / (N - 1) for k in range(-r, r + 1)] for i in range(D)])
    w = 2 * r + 1
    np.testing.assert_allclose(z[:, 8 * w:9 * w], covs, rtol=1e-10, atol=1e-12)  # scale 1, obs_scale 1
    gain = np.where(var_b > 0, innov / (var_b + 1.0), 0.0)
    g = np.array([sum(covs[i, k + r] * gain[(i + k) % D] for k in range(-r, r + 1)) for i in range(D)])
    np.testing.assert_allclose(z[:, 6 * w + r], g, rtol=1e-10, atol=1e-12)  # window centre of the g channel


def test_training_is_reproducible_and_lowers_a_held_out_loss(setup):
    l96, obs, data, _, _, base = setup
    train = TrajectoryData(data.x0[:3], data.states[:3], data.observations[:3])
    held = TrajectoryData(data.x0[3:], data.states[3:], data.observations[3:])
    ens = jax.vmap(lambda ys, x0, k: ensemble_kalman_filter(
        l96, obs, ys, x0[None, :] + jax.random.normal(k, (N, D)), key=k, inflation=1.05,
        localization_radius=3.0).ensembles)(data.observations, data.x0, jax.random.split(jax.random.PRNGKey(8), 4))
    G = EnsembleStencilAnalysis(obs, D, base=None, radius=2, width=16, features=4, scale=4.0, obs_scale=4.0,
                                key=jax.random.PRNGKey(9))
    kw = dict(unroll=8, unroll_discard=0, n_steps=100, batch_size=4, learning_rate=1e-2, progress=False, chunk=50)
    fit1 = fit_ensemble_analysis(G, l96, train, key=jax.random.PRNGKey(10), ensembles=ens[:3], **kw)
    fit2 = fit_ensemble_analysis(G, l96, train, key=jax.random.PRNGKey(10), ensembles=ens[:3], **kw)
    np.testing.assert_array_equal(fit1.history, fit2.history)
    assert fit1.history.shape == (100,) and np.all(np.isfinite(fit1.history))
    E0, xs, ys = ensemble_windows(held, ens[3:], jax.random.PRNGKey(11), 16, 8, n_members=N, init_std=1.0)
    fwd = lambda x: l96.integrate(x, 1, 0.0)  # noqa: E731

    def held_loss(G):
        return float(jnp.mean(jax.vmap(lambda e, s, o: unrolled_ensemble_loss(G, fwd, e, s, o, discard=0))(E0, xs, ys)))
    before, after = held_loss(G), held_loss(fit1.analysis)
    assert after < 0.8 * before, (before, after)  # from no update at all to a learned one


def test_bad_input_is_refused(setup):
    l96, obs, data, sim, E0, base = setup
    G = EnsembleStencilAnalysis(obs, D, base=base, radius=2, width=16, key=jax.random.PRNGKey(12))
    with pytest.raises(ValueError, match="cycle='members'"):
        learned_filter(l96, obs, sim.observations, E0, analysis=G, key=jax.random.PRNGKey(0), cycle="analysis")
    with pytest.raises(ValueError, match="ensemble analysis"):
        EnsembleStencilAnalysis(obs, D, base=lambda u, y: u, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="dimension"):
        EnsembleStencilAnalysis(obs, D + 2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="loss"):
        fit_ensemble_analysis(G, l96, data, key=jax.random.PRNGKey(0), loss="nll", n_steps=1)
    with pytest.raises(ValueError, match="unroll_discard"):
        fit_ensemble_analysis(G, l96, data, key=jax.random.PRNGKey(0), unroll=3, unroll_discard=3, n_steps=1)
    with pytest.raises(ValueError, match="ensembles must have shape"):
        fit_ensemble_analysis(G, l96, data, key=jax.random.PRNGKey(0), ensembles=jnp.zeros((4, 40, N)), n_steps=1)
    bad = TrajectoryData(data.x0, data.states.at[0, 3, 1].set(jnp.nan), data.observations)
    with pytest.raises(ValueError, match="non-finite"):
        fit_ensemble_analysis(G, l96, bad, key=jax.random.PRNGKey(0), n_steps=1)
    with pytest.raises(ValueError, match="act on ensembles"):
        fit_ensemble_analysis(lambda u, y: u, l96, data, key=jax.random.PRNGKey(0), n_steps=1)



def test_a_refit_reuses_the_compiled_step(setup, count_compiles):
    """A second round from the first round's result (DAgger) hits the compilation cache, although the
    first round's input held a weakly typed observation covariance and its output does not."""
    l96, obs, data, _, _, base = setup
    G = EnsembleStencilAnalysis(obs, D, base=base, radius=2, width=8, features=2, scale=4.0, obs_scale=4.0,
                                key=jax.random.PRNGKey(9))
    kw = dict(n_members=N, unroll=2, unroll_discard=0, n_steps=4, batch_size=2, learning_rate=1e-3, progress=False)
    fit1 = fit_ensemble_analysis(G, l96, data, key=jax.random.PRNGKey(1), **kw)
    assert count_compiles(lambda: fit_ensemble_analysis(fit1.analysis, l96, data, key=jax.random.PRNGKey(2),
                                                        **kw)) == 0
