"""A small MLP trained by denoising score matching learns the exact mixture score."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.diffusion import GaussianMixture, MLPScore, VPSDE, load_network, mixture_score, save_network, train_score_network


def test_trained_mlp_matches_exact_score(tmp_path):
    mix = GaussianMixture(jnp.array([0.5, 0.3, 0.2]), jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                          jnp.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]], [[0.4, 0.0], [0.0, 0.2]]]))
    sde = VPSDE(t_min=1e-2)
    data = mix.sample(jax.random.PRNGKey(0), 20000)
    net0 = MLPScore(2, width=128, depth=3, sde=sde, key=jax.random.PRNGKey(1))
    net, losses = train_score_network(net0, sde, data, key=jax.random.PRNGKey(2), n_steps=2500, batch_size=512,
                                      learning_rate=3e-3, progress=False)
    assert losses.shape == (2500,)
    assert losses[-200:].mean() < losses[:50].mean()

    # held-out noisy points from the forward process
    kx, kt, ke = jax.random.split(jax.random.PRNGKey(9), 3)
    x0 = mix.sample(kx, 4000)
    t = jax.random.uniform(kt, (4000,), minval=sde.t_min, maxval=sde.t_max)
    xt = sde.alpha(t)[:, None] * x0 + sde.sigma(t)[:, None] * jax.random.normal(ke, x0.shape)
    exact = jax.vmap(lambda x, tt: mixture_score(sde, mix)(x[None], tt)[0])(xt, t)
    w = sde.sigma2(t)[:, None]  # the DSM weighting lambda(t) = sigma_t^2

    def rel_err(model):
        pred = jax.vmap(model)(xt, t)
        return float(jnp.sqrt(jnp.sum(w * (pred - exact) ** 2) / jnp.sum(w * exact**2)))

    assert rel_err(net) < 0.05
    assert rel_err(net0) > 0.2  # the untrained network is far off: the metric can fail

    # warm start continues from the trained weights; serialisation round-trips
    net2, losses2 = train_score_network(net, sde, data, key=jax.random.PRNGKey(3), n_steps=100, batch_size=512,
                                        learning_rate=1e-4, progress=False)
    assert losses2[:20].mean() < 0.8 * losses[:20].mean()
    save_network(str(tmp_path / "net.eqx"), net2, {"width": 128, "depth": 3})
    net3 = load_network(str(tmp_path / "net.eqx"), net0)
    np.testing.assert_array_equal(jax.vmap(net3)(xt[:5], t[:5]), jax.vmap(net2)(xt[:5], t[:5]))
