"""The residual sampler p_phi on a problem with a known Gaussian residual, and reproducibility."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learned import ResidualDiffusion, fit_residual_diffusion
from assimilax.metrics import interval_coverage

D, C = 2, 3
B = np.array([[0.8, -0.5, 0.0], [0.0, 0.3, 1.0]])  # residual mean depends on the condition
L = np.array([[0.5, 0.0], [0.3, 0.2]])  # residual covariance L L^T


def draw(rng, n):
    c = rng.normal(size=(n, C))
    r = c @ B.T + rng.normal(size=(n, D)) @ L.T
    return c, r


@pytest.fixture(scope="module")
def trained():
    c, r = draw(np.random.default_rng(0), 6000)
    model = ResidualDiffusion(D, C, width=64, depth=2, n_sample_steps=50, key=jax.random.PRNGKey(0))
    model, losses = fit_residual_diffusion(model, r, c, key=jax.random.PRNGKey(1), n_steps=800, batch_size=256,
                                           learning_rate=3e-3, progress=False)
    return model, losses


def test_residual_sampler_is_calibrated(trained):
    """For n_c fresh conditions, draw N = 64 residuals from p_phi and one true residual; the true
    residual falls in the empirical central interval of level l with probability
    E[(#members strictly inside) / (N + 1)] = l to within 1/(N+1) (ranks are uniform when the
    sampler is exact). Pooled over n = 800 x 2 (condition, component) pairs that are independent
    across conditions, the coverage has Monte Carlo standard error sqrt(l(1-l)/n) (0.0125 at 50 %,
    0.0075 at 90 %, at most doubled by the within-condition correlation of the two components);
    we allow 4 such standard errors (x2 for the correlation) plus the 1/(N+1) quantile
    discretisation: 0.10 at 50 %, 0.07 at 90 %. A sampler that ignores the condition (the
    marginal spread is 1.5x the conditional one) or one with half the spread fails by far."""
    model, losses = trained
    assert np.isfinite(losses).all() and losses[-200:].mean() < losses[:100].mean()
    rng = np.random.default_rng(1)
    n, N = 800, 64
    c, r_true = draw(rng, n)
    samples = model.sample(jnp.repeat(jnp.asarray(c), N, axis=0), key=jax.random.PRNGKey(2)).reshape(n, N, D)
    for level, tol in ((0.5, 0.10), (0.9, 0.07)):
        cov = float(interval_coverage(samples, jnp.asarray(r_true), level))
        print(f"coverage {level}: {cov:.4f}")
        assert abs(cov - level) < tol, (level, cov)
    # the conditional mean is learned (error much smaller than the residual std 0.5 / 0.36)
    mean_err = np.abs(np.asarray(samples.mean(axis=1)) - c @ B.T)
    assert mean_err.mean() < 0.1
    # failure modes the test must see: half the spread under-covers
    shrunk = samples.mean(axis=1, keepdims=True) + 0.5 * (samples - samples.mean(axis=1, keepdims=True))
    assert float(interval_coverage(shrunk, jnp.asarray(r_true), 0.9)) < 0.9 - 0.07


def test_training_is_reproducible():
    c, r = draw(np.random.default_rng(3), 500)
    outs = []
    for _ in range(2):
        model = ResidualDiffusion(D, C, width=16, depth=1, key=jax.random.PRNGKey(4))
        model, _ = fit_residual_diffusion(model, r, c, key=jax.random.PRNGKey(5), n_steps=50, progress=False)
        outs.append(model)
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), eqx.filter(outs[0], eqx.is_array),
                                  eqx.filter(outs[1], eqx.is_array))
    assert all(jax.tree_util.tree_leaves(same))
    init = ResidualDiffusion(D, C, width=16, depth=1, key=jax.random.PRNGKey(4))
    assert not jnp.array_equal(init.net.mlp.layers[0].weight, outs[0].net.mlp.layers[0].weight)


def test_residual_shapes_are_checked():
    model = ResidualDiffusion(D, C, width=8, depth=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="conds"):
        fit_residual_diffusion(model, np.zeros((10, D)), np.zeros((10, C + 1)), key=jax.random.PRNGKey(0), n_steps=1)
    with pytest.raises(ValueError, match="residuals"):
        fit_residual_diffusion(model, np.full((10, D), np.nan), np.zeros((10, C)), key=jax.random.PRNGKey(0), n_steps=1)
