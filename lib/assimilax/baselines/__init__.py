r"""NumPyro state-space models whose NUTS posteriors are gold standards on small problems.

The model is the state-space model of the book,

.. math::
    x_0 \sim \mathcal N(m_0, P_0), \qquad
    x_t = \mathcal M^{k}(x_{t-1}) + \varepsilon_t,\; \varepsilon_t \sim \mathcal N(0, Q), \qquad
    y_t \sim \mathcal N(h(x_t), R),

written non-centred (the sampler sees standard normals :math:`z_t` with
:math:`x_t = \mathcal M^k(x_{t-1}) + L_Q z_t`), which keeps NUTS
:cite:`hoffman2014nuts` efficient when the posterior is much narrower than the prior. With a
deterministic model (``noise_cov is None``) only :math:`x_0` is latent (the strong-constraint
smoothing posterior). NumPyro :cite:`phan2019numpyro` needs float64 for agreement with the
Kalman smoother at 1e-3 relative; enable ``jax_enable_x64`` before calling.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from .._validation import check_covariance, check_observations, check_positive_int, check_shape


def state_space_model(model, observation, ys, mean0, cov0, steps_per_obs: int = 1):
    """NumPyro model function of the state-space model above (see module docstring).

    Records the deterministic site ``"states"`` of shape ``(T + 1, d)`` holding
    :math:`x_0, \\dots, x_T`.
    """
    d = mean0.shape[0]
    T = ys.shape[0]
    L0 = jnp.linalg.cholesky(cov0)
    z0 = numpyro.sample("z0", dist.Normal(jnp.zeros(d), 1.0).to_event(1))
    x0 = mean0 + L0 @ z0
    stochastic = model.noise_cov is not None
    if stochastic:
        if steps_per_obs != 1:
            raise ValueError("a stochastic model in the NUTS baseline needs steps_per_obs=1 (noise per cycle = Q)")
        LQ = jnp.linalg.cholesky(model.noise_cov)
        z = numpyro.sample("z", dist.Normal(jnp.zeros((T, d)), 1.0).to_event(2))
    else:
        z = jnp.zeros((T, d))

    def body(x, inp):
        t, zt = inp
        x_next = model.integrate(x, steps_per_obs, t * steps_per_obs * model.dt)
        if stochastic:
            x_next = x_next + LQ @ zt
        return x_next, x_next

    _, xs = jax.lax.scan(body, x0, (jnp.arange(T), z))
    states = numpyro.deterministic("states", jnp.concatenate([x0[None], xs], axis=0))
    hx = jax.vmap(observation)(states[1:])
    numpyro.sample("y", dist.MultivariateNormal(hx, scale_tril=jnp.linalg.cholesky(observation.R)).to_event(1), obs=ys)


def smoothing_nuts(model, observation, ys, mean0, cov0, *, key, steps_per_obs: int = 1,
                   num_warmup: int = 500, num_samples: int = 1000, num_chains: int = 1,
                   progress_bar: bool = False):
    """NUTS samples of the smoothing posterior :math:`p(x_{0:T} \\mid y_{1:T})`.

    **Arguments:** ``model`` any :class:`~assimilax.models.DynamicalModel`; ``observation`` any
    observation operator; ``ys`` ``(T, m)``; ``mean0`` ``(d,)``; ``cov0`` ``(d, d)``.

    **Returns:** samples of the states, shape ``(num_chains * num_samples, T + 1, d)``
    (row 0 is :math:`x_0`).
    """
    ys = jnp.asarray(ys)
    mean0 = jnp.asarray(mean0)
    d = model.dim
    check_shape(mean0, (d,), "mean0")
    check_covariance(cov0, d, "cov0")
    check_observations(ys, observation.obs_dim)
    check_positive_int(num_samples, "num_samples")
    if observation.state_dim != d:
        raise ValueError(f"observation operator expects states of dimension {observation.state_dim}, model has {d}")
    kernel = NUTS(state_space_model)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                progress_bar=progress_bar, chain_method="sequential")
    mcmc.run(key, model, observation, ys, mean0, jnp.asarray(cov0), steps_per_obs)
    return mcmc.get_samples()["states"]


def linear_gaussian_smoothing_nuts(model, observation, ys, mean0, cov0, *, key, num_warmup: int = 500,
                                   num_samples: int = 1000, num_chains: int = 1, progress_bar: bool = False):
    """:func:`smoothing_nuts` for a :class:`~assimilax.models.LinearGaussian` model with linear
    observations: the reference against which the Kalman smoother is checked."""
    return smoothing_nuts(model, observation, ys, mean0, cov0, key=key, num_warmup=num_warmup,
                          num_samples=num_samples, num_chains=num_chains, progress_bar=progress_bar)


from .langford import LangfordPosterior, langford_nuts, langford_window_model  # noqa: E402

__all__ = ["state_space_model", "smoothing_nuts", "linear_gaussian_smoothing_nuts",
           "LangfordPosterior", "langford_nuts", "langford_window_model"]
