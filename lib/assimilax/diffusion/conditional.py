r"""Conditional diffusion models :math:`p(x\mid c)`: exact Gaussian conditional scores, conditional
denoising score matching with classifier-free conditioning dropout, and amortised sampling over
many conditions at once.

A conditional model is trained on pairs :math:`(x_i, c_i)` with the DSM loss of
:func:`~assimilax.diffusion.dsm_loss` (its ``cond=`` argument),

.. math::
    \mathcal L(\theta) = \mathbb E_{t,\,(x_0, c),\,\varepsilon}
    \big\|\sigma_t\, s_\theta(\alpha_t x_0 + \sigma_t\varepsilon, t, c) + \varepsilon\big\|^2 ,

whose minimiser is :math:`\nabla_x\log p_t(x\mid c)` for every :math:`c` seen in training, so one
network samples the posterior of every condition (amortisation, as the climatology-trained and
hybrid kinds of diffusion DA do :cite:`hodyss2025diffusion`).

**Classifier-free dropout** :cite:`ho2022classifier`: with probability ``p_uncond`` a pair also
appears with its condition replaced by the null condition (zeros and a presence flag 0; every
real condition carries the flag 1), so that the same network learns :math:`\nabla\log p_t(x)`
too, and the guided score

.. math:: s_w(x, t, c) = (1 + w)\, s_\theta(x, t, [c, 1]) - w\, s_\theta(x, t, [0, 0])

(:func:`classifier_free_score`) sharpens (:math:`w > 0`) or keeps (:math:`w = 0`) the
conditional. The dropout is drawn once per training set (:func:`classifier_free_dataset`), so
:func:`~assimilax.diffusion.fit_steps` and :func:`~assimilax.diffusion.train_score_network` train
it unchanged.

**Amortised sampling** (:func:`sample_conditional`): ``K`` conditions with ``n`` samples each go
through one reverse-time SDE run of :func:`~assimilax.diffusion.euler_maruyama` on the
``(K n, d)`` batch, each row with its own condition.

:class:`GaussianScore` is the exact score of a diffused Gaussian whose mean is affine in the
condition, :math:`x_0\mid c \sim \mathcal N(\mu + G c, \Sigma)`:

.. math::
    \nabla_x \log p_t(x\mid c) = -\big(\alpha_t^2\Sigma + \sigma_t^2 I\big)^{-1}\big(x - \alpha_t(\mu + G c)\big),

the reference every trained model of the linear-Gaussian testbed is measured against.
"""
from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._training import adam_cosine, run_chunked
from .networks import MLPScore, batch_score
from .samplers import euler_maruyama
from .training import fit_steps


class GaussianScore(eqx.Module):
    r"""Exact score of the diffused Gaussian :math:`\mathcal N(\alpha_t(\mu + G c),\ \alpha_t^2\Sigma + \sigma_t^2 I)`
    (see the module docstring).

    **Arguments:** ``mean`` :math:`\mu` ``(d,)``, ``cov`` :math:`\Sigma` ``(d, d)`` (positive
    semi-definite: a singular :math:`\Sigma`, as for the augmented states of SOAD, is fine for
    :math:`\sigma_t > 0`), ``sde``, ``gain`` :math:`G` ``(d, c)`` or ``None`` (unconditional).

    ``__call__(x (d,), t, cond (c,) | None) -> (d,)``; unbatched (``jax.vmap`` it, or
    :func:`~assimilax.diffusion.batch_score`).
    """

    mean: jax.Array
    cov: jax.Array
    sde: eqx.Module
    gain: Optional[jax.Array] = None

    def __init__(self, mean: Float[Array, " d"], cov: Float[Array, "d d"], sde, gain: Optional[Float[Array, "d c"]] = None):
        mean, cov = jnp.asarray(mean), jnp.asarray(cov)
        d = mean.shape[0] if mean.ndim == 1 else -1
        if mean.ndim != 1 or cov.shape != (d, d):
            raise ValueError(f"mean must have shape (d,) and cov (d, d), got {mean.shape} and {cov.shape}")
        if gain is not None:
            gain = jnp.asarray(gain)
            if gain.ndim != 2 or gain.shape[0] != d:
                raise ValueError(f"gain must have shape ({d}, c), got {gain.shape}")
        self.mean, self.cov, self.sde, self.gain = mean, cov, sde, gain

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def cond_dim(self) -> int:
        return 0 if self.gain is None else self.gain.shape[1]

    def __call__(self, x, t, cond=None):
        if self.gain is None:
            m = self.mean
        else:
            if cond is None:
                raise ValueError(f"this score expects a conditioning input of size {self.cond_dim}")
            m = self.mean + self.gain @ cond
        a, s2 = self.sde.alpha(t), self.sde.sigma2(t)
        C = a**2 * self.cov + s2 * jnp.eye(self.dim, dtype=self.cov.dtype)
        return -jnp.linalg.solve(C, x - a * m)


def with_condition_flag(cond: Float[Array, "n c"]) -> Float[Array, "n c+1"]:
    """Append the presence flag 1 to every condition (the layout a classifier-free network expects)."""
    cond = jnp.asarray(cond)
    return jnp.concatenate([cond, jnp.ones(cond.shape[:-1] + (1,), cond.dtype)], axis=-1)


def classifier_free_dataset(x: Float[Array, "n d"], cond: Float[Array, "n c"], *, key, p_uncond: float = 0.1):
    r"""Training pairs for classifier-free conditioning :cite:`ho2022classifier`: every pair with its
    condition and flag 1, plus a random ``p_uncond`` fraction of the pairs again with the null
    condition (zeros, flag 0).

    **Returns:** ``(x_aug (n + k, d), cond_aug (n + k, c + 1))`` with :math:`k \sim \mathrm{Bin}(n, p)`
    decided by ``key`` (concrete sizes: call outside ``jit``).
    """
    x, cond = jnp.asarray(x), jnp.asarray(cond)
    if x.ndim != 2 or cond.ndim != 2 or x.shape[0] != cond.shape[0]:
        raise ValueError(f"x (n, d) and cond (n, c) must pair row by row, got {x.shape} and {cond.shape}")
    if not 0.0 <= float(p_uncond) < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond!r}")
    keep = jax.random.uniform(key, (x.shape[0],)) < p_uncond
    xu = x[keep]
    null = jnp.zeros((xu.shape[0], cond.shape[1] + 1), cond.dtype)
    return jnp.concatenate([x, xu]), jnp.concatenate([with_condition_flag(cond), null])


def classifier_free_score(net, cond, weight: float = 0.0):
    r"""Batched guided score :math:`(1+w)\,s(x,t,[c,1]) - w\,s(x,t,[0,0])` of a network trained on
    :func:`classifier_free_dataset` pairs; ``cond`` ``(c,)`` shared or ``(n, c)`` one per sample
    (without the flag). ``weight = 0`` is the plain conditional score."""
    cond = jnp.asarray(cond)
    flagged = with_condition_flag(cond)
    cond_score = batch_score(net, flagged)
    if weight == 0.0:
        return cond_score
    null_score = batch_score(net, jnp.zeros_like(flagged))

    def score(x, t):
        return (1.0 + weight) * cond_score(x, t) - weight * null_score(x, t)

    return score


def sample_conditional(net, sde, conds: Float[Array, "K c"], n_per_condition: int, *, key, n_steps: int = 200,
                       cfg_weight: Optional[float] = None) -> Float[Array, "K n d"]:
    r"""Amortised sampling: ``n_per_condition`` draws of :math:`p(x\mid c_k)` for each of the ``K``
    rows of ``conds``, all in one :func:`~assimilax.diffusion.euler_maruyama` run over the
    ``(K n, d)`` batch (rows of one condition are contiguous). ``cfg_weight`` (not ``None``):
    ``net`` is a classifier-free network and ``conds`` carry no flag (:func:`classifier_free_score`).

    **Returns:** ``(K, n_per_condition, d)`` samples.
    """
    conds = jnp.asarray(conds)
    if conds.ndim != 2:
        raise ValueError(f"conds must have shape (K, c), got {conds.shape}")
    if not isinstance(n_per_condition, int) or n_per_condition < 1:
        raise ValueError(f"n_per_condition must be a positive int, got {n_per_condition!r}")
    return _sample_conditional(net, sde, conds, n_per_condition, key, n_steps, cfg_weight)


@eqx.filter_jit
def _sample_conditional(net, sde, conds, n_per_condition, key, n_steps, cfg_weight):
    K = conds.shape[0]
    rows = jnp.repeat(conds, n_per_condition, axis=0)
    score = batch_score(net, rows) if cfg_weight is None else classifier_free_score(net, rows, cfg_weight)
    k0, ks = jax.random.split(key)
    d = net.dim
    x_T = jax.random.normal(k0, (K * n_per_condition, d), dtype=conds.dtype)
    x = euler_maruyama(sde, score, x_T, key=ks, n_steps=n_steps)
    return x.reshape(K, n_per_condition, d)


def fit_conditional_score(x: Float[Array, "n d"], cond: Optional[Float[Array, "n c"]], sde, *, key, width: int = 64,
                          depth: int = 2, n_steps: int = 1000, batch_size: int = 256, learning_rate: float = 2e-3,
                          p_uncond: float = 0.0, network=None, progress: bool = False):
    r"""Train a (conditional) :class:`~assimilax.diffusion.MLPScore` with the noise
    parametrisation of ``sde`` on pairs ``(x, cond)`` by DSM: the steps, optimiser (Adam, cosine
    decay) and chunks of :func:`~assimilax.diffusion.train_score_network` through
    :func:`~assimilax.diffusion.fit_steps`, compiled once per data shape and setting, so that many
    fits (seeds, training sizes, DAgger rounds) do not recompile; ``cond=None`` trains an unconditional
    prior score. ``p_uncond > 0`` adds classifier-free dropout (:func:`classifier_free_dataset`:
    the network then expects flagged conditions; sample it with :func:`classifier_free_score`).
    ``network`` warm-starts a previous result.

    **Returns:** ``(net, losses (n_steps,))``.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    kd, kn, kt = jax.random.split(key, 3)
    c = None
    if cond is not None:
        cond = jnp.asarray(cond, dtype=x.dtype)
        if p_uncond > 0:
            x, c = classifier_free_dataset(x, cond, key=kd, p_uncond=p_uncond)
        else:
            if cond.ndim != 2 or cond.shape[0] != x.shape[0]:
                raise ValueError(f"x (n, d) and cond (n, c) must pair row by row, got {x.shape} and {cond.shape}")
            c = cond
    if network is None:
        network = MLPScore(x.shape[1], cond_dim=0 if c is None else c.shape[1], width=width, depth=depth, sde=sde, key=kn)
        network = jax.tree_util.tree_map(lambda a: a.astype(x.dtype) if eqx.is_inexact_array(a) else a, network)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    optimizer = adam_cosine(float(learning_rate), n_steps)
    opt_state = optimizer.init(eqx.filter(network, eqx.is_inexact_array))

    def chunk_run(state, k, m):
        net, opt_state, ls = _fit_chunk(*state, optimizer, sde, x, c, k, m, batch_size)
        return (net, opt_state), ls

    (network, _), losses = run_chunked(chunk_run, (network, opt_state), kt, n_steps, chunk=100, progress=progress,
                                       desc="conditional DSM")
    return network, losses


@eqx.filter_jit
def _fit_chunk(net, opt_state, optimizer, sde, data, cond, key, n_steps, batch_size):
    return fit_steps(net, opt_state, optimizer, sde, data, key, n_steps, batch_size, cond)


__all__ = ["GaussianScore", "with_condition_flag", "classifier_free_dataset", "classifier_free_score",
           "sample_conditional", "fit_conditional_score"]
