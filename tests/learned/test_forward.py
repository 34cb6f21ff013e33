"""Forward models, the regression loop and the data helpers."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learned import (LinearForward, StencilAnalysis, StencilForward, fit_regression, forward_pairs,
                               generate_trajectories, ring_windows, split_trajectories)
from assimilax.models import Lorenz96
from assimilax.observations import LinearObservation


def test_ring_windows_against_explicit_indexing():
    x = np.arange(7.0)
    W = np.asarray(ring_windows(jnp.asarray(x)[None, :], 2))
    ref = np.array([[x[(i + k) % 7] for k in range(-2, 3)] for i in range(7)])
    np.testing.assert_array_equal(W, ref)


def test_stencil_networks_are_translation_equivariant():
    f = StencilForward(radius=2, width=8, scale=3.0, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (12,))
    np.testing.assert_allclose(f(jnp.roll(x, 3)), jnp.roll(f(x), 3), atol=1e-12)
    # the analysis is equivariant under shifts that map the observed set to itself (every other site)
    T = StencilAnalysis(12, np.arange(0, 12, 2), radius=2, width=8, key=jax.random.PRNGKey(2))
    y = jax.random.normal(jax.random.PRNGKey(3), (6,))
    np.testing.assert_allclose(T(jnp.roll(x, 2), jnp.roll(y, 1)), jnp.roll(T(x, y), 2), atol=1e-12)
    # ...and a generic network is not: the test can fail
    assert not np.allclose(T(jnp.roll(x, 1), y), jnp.roll(T(x, y), 1))


def test_fit_regression_recovers_linear_map_and_is_reproducible():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 4)) * 0.5
    X = rng.normal(size=(2000, 4))
    Y = X @ W.T + 0.3
    runs = [fit_regression(LinearForward(4), X, Y, key=jax.random.PRNGKey(1), n_steps=600, batch_size=128,
                           learning_rate=3e-2, val=(X[:200], Y[:200]), progress=False) for _ in range(2)]
    (m1, h1), (m2, h2) = runs
    np.testing.assert_allclose(m1.W, W, atol=2e-3)
    np.testing.assert_allclose(m1.b, 0.3, atol=2e-3)
    assert h1["loss"].shape == (600,) and h1["val_loss"].shape == (6,) and h1["val_loss"][-1] < 1e-5
    leaves1, leaves2 = jax.tree_util.tree_leaves(eqx.filter(m1, eqx.is_array)), jax.tree_util.tree_leaves(eqx.filter(m2, eqx.is_array))
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(leaves1, leaves2))
    with pytest.raises(ValueError, match="rows"):
        fit_regression(LinearForward(4), X[:10], Y[:9], key=jax.random.PRNGKey(0), n_steps=1)


def test_stencil_forward_learns_lorenz96_step():
    """A radius-2 stencil MLP fitted on L96 pairs beats persistence by a wide margin."""
    model = Lorenz96(dim=20)
    obs = LinearObservation.every_kth(20, 2, 1.0)
    x0s = 8.0 + jax.random.normal(jax.random.PRNGKey(0), (8, 20))
    data = generate_trajectories(model, obs, x0s, 100, key=jax.random.PRNGKey(1), burn_in=200)
    train, val, test = split_trajectories(data, (0.6, 0.2, 0.2), key=jax.random.PRNGKey(2))
    ids = [set(map(tuple, np.asarray(p.x0).round(8).tolist())) for p in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert train.n_trajectories + val.n_trajectories + test.n_trajectories == 8
    X, Y = forward_pairs(train)
    F, hist = fit_regression(StencilForward(radius=2, width=32, scale=4.0, key=jax.random.PRNGKey(3)), X, Y,
                             key=jax.random.PRNGKey(4), n_steps=600, batch_size=64, learning_rate=3e-3, progress=False)
    Xt, Yt = forward_pairs(test)
    err = float(jnp.sqrt(jnp.mean((jax.vmap(F)(Xt) - Yt) ** 2)))
    persistence = float(jnp.sqrt(jnp.mean((Xt - Yt) ** 2)))
    assert err < 0.2 * persistence, (err, persistence)


def test_stencil_score_and_innovation_analysis_are_equivariant():
    """The residual score network and the innovation-channel analysis commute with the shifts that
    map the observed set (every other site) to itself; a wrong cond_dim is refused."""
    from assimilax.diffusion import VPSDE
    from assimilax.learned import ResidualDiffusion, StencilScore
    d, idx = 12, np.arange(0, 12, 2)
    net = StencilScore(d, idx, VPSDE(), radius=2, width=8, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (d,))
    y = jax.random.normal(jax.random.PRNGKey(2), (6,))
    u = jax.random.normal(jax.random.PRNGKey(3), (d,))
    c, c_shift = jnp.concatenate([y, u]), jnp.concatenate([jnp.roll(y, 1), jnp.roll(u, 2)])
    np.testing.assert_allclose(net(jnp.roll(x, 2), 0.3, c_shift), jnp.roll(net(x, 0.3, c), 2), atol=1e-12)
    assert not np.allclose(net(jnp.roll(x, 1), 0.3, c), jnp.roll(net(x, 0.3, c), 1))
    T = StencilAnalysis(d, idx, radius=2, width=8, obs_fn="arctan", key=jax.random.PRNGKey(4))
    np.testing.assert_allclose(T(jnp.roll(u, 2), jnp.roll(y, 1)), jnp.roll(T(u, y), 2), atol=1e-12)
    T_lin = StencilAnalysis(d, idx, radius=2, width=8, obs_fn="identity", key=jax.random.PRNGKey(4))
    assert T_lin.mlp.layers[0].weight.shape[1] == 4 * 5
    with pytest.raises(ValueError, match="obs_fn"):
        StencilAnalysis(d, idx, obs_fn="tanh", key=jax.random.PRNGKey(4))
    rd = ResidualDiffusion(d, 6 + d, width=8, depth=1, n_sample_steps=3, obs_indices=idx, radius=2,
                           key=jax.random.PRNGKey(5))
    assert rd.sample(jnp.tile(c, (4, 1)), key=jax.random.PRNGKey(6)).shape == (4, d)
    with pytest.raises(ValueError, match="cond_dim"):
        ResidualDiffusion(d, d, obs_indices=idx, key=jax.random.PRNGKey(5))
