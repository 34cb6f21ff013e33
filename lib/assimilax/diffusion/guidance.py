r"""Likelihood guidance: posterior scores :math:`\nabla\log p_t(x\mid y)` from a prior score.

Bayes' rule at diffusion time ``t`` gives
:math:`\nabla\log p_t(x\mid y) = \nabla\log p_t(x) + \nabla\log p_t(y\mid x)` with the intractable
:math:`p_t(y\mid x_t) = \int p(y\mid x_0)\,p(x_0\mid x_t)\,\mathrm dx_0`. Three approximations:

* :func:`damped_guidance` (the score filters :cite:`bao2024score,bao2024ensemble`):
  :math:`\nabla\log p_t(y\mid x) \approx h(t)\,\nabla_x\log p(y\mid x)`, the likelihood score of
  the *noisy* state damped by :math:`h(t)`, with :math:`h(0)=1` (default :math:`h(t)=1-t`).
* :func:`dps_guidance` (DPS :cite:`chung2023diffusion`): :math:`\nabla_{x_t}\log p(y\mid\hat x_0(x_t))`
  with the Tweedie denoiser :math:`\hat x_0 = (x_t + \sigma_t^2 s(x_t,t))/\alpha_t`, for any
  differentiable observation operator.
* :func:`tweedie_covariance_guidance`: for a linear operator ``H`` uses
  :math:`p_t(y\mid x_t)\approx\mathcal N(y;\,H\hat x_0,\ H C_t H^\top + R)` with the Tweedie
  covariance :math:`C_t = \frac{\sigma_t^2}{\alpha_t^2}(I + \sigma_t^2\nabla_x s)`; exact when the
  prior is Gaussian, so guided sampling then reproduces the Kalman posterior.

All return batched score functions ``score(x (n, d), t) -> (n, d)``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import is_concrete


def linear_damping(t):
    r"""The EnSF damping :math:`h(t) = 1 - t` :cite:`bao2024ensemble`."""
    return 1.0 - t


def no_damping(t):
    """:math:`h(t) = 1` (undamped likelihood score)."""
    return jnp.ones_like(t)


def noise_precision(observation):
    r"""``(prec, diagonal)``: the noise precision as a vector ``(m,)`` when ``R`` is diagonal
    (or the operator carries ``noise_var``), else the matrix :math:`R^{-1}` ``(m, m)``."""
    if getattr(observation, "noise_var", None) is not None:
        return 1.0 / jnp.asarray(observation.noise_var), True
    R = observation.R
    if is_concrete(R):
        Rn = np.asarray(R)
        if np.count_nonzero(Rn - np.diag(np.diag(Rn))) == 0:
            return jnp.asarray(1.0 / np.diag(Rn), dtype=R.dtype), True
    return jnp.linalg.inv(R), False


def gaussian_likelihood_score(observation, y, precision=None):
    r"""Batched :math:`\nabla_x\log\mathcal N(y;\,h(x), R) = J_h(x)^\top R^{-1}(y - h(x))`.

    **Arguments:** ``observation`` (any operator of :mod:`assimilax.observations`), ``y``
    ``(m,)``; ``precision`` optionally the output of :func:`noise_precision`.
    **Returns:** ``lik_score(x (n, d)) -> (n, d)``.
    """
    prec, diag = noise_precision(observation) if precision is None else precision

    def single(x):
        hx, vjp = jax.vjp(observation, x)
        r = y - hx
        w = prec * r if diag else prec @ r
        return vjp(w.astype(hx.dtype))[0]

    return jax.vmap(single)


def damped_guidance(prior_score, lik_score, damping=linear_damping):
    r"""The damped posterior score of the score filters :cite:`bao2024score,bao2024ensemble`,

    .. math:: s(x, t \mid y) = s(x, t) + h(t)\,\nabla_x \log p(y \mid x),

    used by both :func:`~assimilax.filters.ensemble_score_filter` (with the ensemble's mixture
    or per-member prior score) and :func:`~assimilax.filters.score_filter` (with the trained
    network's score).

    **Arguments:** ``prior_score(x (n, d), t) -> (n, d)``; ``lik_score(x (n, d)) -> (n, d)``
    (e.g. :func:`gaussian_likelihood_score`); ``damping`` :math:`h(t)`, default
    :func:`linear_damping` :math:`1 - t`.

    **Returns:** ``score(x (n, d), t) -> (n, d)``.
    """

    def score(x, t):
        return prior_score(x, t) + damping(t) * lik_score(x)

    return score


def dps_guidance(sde, prior_score, observation, y, scale: float = 1.0, precision=None):
    r"""DPS posterior score :math:`s(x_t,t) + \zeta\,\nabla_{x_t}\log\mathcal N(y;\,h(\hat x_0(x_t)), R)`,
    the gradient taken through the prior score (``prior_score`` must act row-wise)."""
    prec, diag = noise_precision(observation) if precision is None else precision

    def score(x, t):
        a, s2 = sde.alpha(t), sde.sigma2(t)

        def denoise(z):
            return (z + s2 * prior_score(z, t)) / a

        x0, vjp = jax.vjp(denoise, x)
        hx, vjp_h = jax.vjp(jax.vmap(observation), x0)
        r = y[None, :] - hx
        w = prec[None, :] * r if diag else r @ prec
        g = vjp(vjp_h(w.astype(hx.dtype))[0])[0]
        return prior_score(x, t) + scale * g

    return score


def tweedie_covariance_guidance(sde, prior_score, H, R, y):
    r"""Posterior score with the Gaussian (Tweedie mean and covariance) approximation of
    :math:`p_t(y\mid x_t)` for linear observations ``y = H x + N(0, R)``; exact for Gaussian priors.

    .. math::
        \nabla\log p_t(x\mid y) = s(x,t) + J^\top H^\top (H C_t H^\top + R)^{-1}(y - H\hat x_0),\quad
        J = \partial\hat x_0/\partial x = (I + \sigma_t^2\nabla_x s)/\alpha_t,\quad C_t = \sigma_t^2 J/\alpha_t .

    Costs a ``(d, d)`` Jacobian per sample (small ``d``)."""
    H, R, y = jnp.asarray(H), jnp.asarray(R), jnp.asarray(y)

    def score(x, t):
        a, s2 = sde.alpha(t), sde.sigma2(t)
        s = prior_score(x, t)
        jac = jax.vmap(jax.jacfwd(lambda xi: prior_score(xi[None], t)[0]))(x)  # (n, d, d)
        eye = jnp.eye(x.shape[1], dtype=x.dtype)
        J = (eye[None] + s2 * jac) / a
        C = s2 * J / a
        x0 = (x + s2 * s) / a
        S = jnp.einsum("md,nde,ke->nmk", H, C, H) + R[None]
        r = y[None, :] - x0 @ H.T
        w = jnp.linalg.solve(S, r[..., None])[..., 0]
        return s + jnp.einsum("nde,md,nm->ne", J, H, w)

    return score


__all__ = ["linear_damping", "no_damping", "noise_precision", "gaussian_likelihood_score", "damped_guidance",
           "dps_guidance", "tweedie_covariance_guidance"]
