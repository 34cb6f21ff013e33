r"""Gaussian mixtures and their exact scores under a forward SDE (the test oracle).

If :math:`p_0 = \sum_k w_k \mathcal N(\mu_k, \Sigma_k)` and :math:`x_t\mid x_0 \sim
\mathcal N(\alpha_t x_0, \sigma_t^2 I)`, then
:math:`p_t = \sum_k w_k \mathcal N(\alpha_t\mu_k,\ \alpha_t^2\Sigma_k + \sigma_t^2 I)` and

.. math::
    \nabla\log p_t(x) = \sum_k r_k(x)\, \big(\alpha_t^2\Sigma_k + \sigma_t^2 I\big)^{-1}(\alpha_t\mu_k - x),
    \qquad r_k(x) = \frac{w_k\,\mathcal N_k(x)}{\sum_j w_j\,\mathcal N_j(x)} ,

with the responsibilities computed by ``logsumexp``.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class GaussianMixture(eqx.Module):
    """``weights`` ``(K,)`` (normalised on construction), ``means`` ``(K, d)``, ``covs`` ``(K, d, d)``."""

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    def __init__(self, weights, means, covs):
        w = jnp.asarray(weights)
        self.weights = w / jnp.sum(w)
        self.means = jnp.asarray(means)
        self.covs = jnp.asarray(covs)
        K, d = self.means.shape
        if self.weights.shape != (K,) or self.covs.shape != (K, d, d):
            raise ValueError(f"weights (K,), means (K, d), covs (K, d, d) expected; got {self.weights.shape}, {self.means.shape}, {self.covs.shape}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self):
        return self.weights @ self.means

    def cov(self):
        """Total covariance :math:`\\sum_k w_k(\\Sigma_k + \\mu_k\\mu_k^T) - \\bar\\mu\\bar\\mu^T`."""
        m = self.mean()
        second = jnp.einsum("k,kij->ij", self.weights, self.covs) + jnp.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - jnp.outer(m, m)

    def diffused(self, sde, t) -> "GaussianMixture":
        """The marginal :math:`p_t` under ``sde`` (a mixture again)."""
        a, s2 = sde.alpha(t), sde.sigma2(t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, a * self.means, a**2 * self.covs + s2 * eye[None])

    def sample(self, key, n: int):
        """``n`` draws, shape ``(n, d)``."""
        k1, k2 = jax.random.split(key)
        comp = jax.random.choice(k1, self.weights.shape[0], (n,), p=self.weights)
        chol = jnp.linalg.cholesky(self.covs)
        z = jax.random.normal(k2, (n, self.dim), dtype=self.means.dtype)
        return self.means[comp] + jnp.einsum("nij,nj->ni", chol[comp], z)

    def _component_terms(self, x):
        # x (n, d) -> log w_k N_k(x) (n, K) and precision-times-residual (n, K, d)
        chol = jnp.linalg.cholesky(self.covs)  # (K, d, d)
        diff = self.means[None, :, :] - x[:, None, :]  # (n, K, d)
        z = jax.vmap(lambda L, D: jax.scipy.linalg.solve_triangular(L, D.T, lower=True).T, in_axes=(0, 1), out_axes=1)(chol, diff)
        prec_diff = jax.vmap(lambda L, Z: jax.scipy.linalg.solve_triangular(L.T, Z.T, lower=False).T, in_axes=(0, 1), out_axes=1)(chol, z)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        logp = jnp.log(self.weights)[None, :] - 0.5 * jnp.sum(z**2, -1) - 0.5 * logdet[None, :] - 0.5 * self.dim * jnp.log(2 * jnp.pi)
        return logp, prec_diff

    def log_prob(self, x):
        """Log density at ``x`` ``(n, d)`` -> ``(n,)``."""
        logp, _ = self._component_terms(x)
        return jax.scipy.special.logsumexp(logp, axis=1)

    def responsibilities(self, x):
        """Posterior mode probabilities ``(n, K)``."""
        logp, _ = self._component_terms(x)
        return jax.nn.softmax(logp, axis=1)

    def score(self, x):
        """:math:`\\nabla \\log p(x)` for ``x`` ``(n, d)``."""
        logp, prec_diff = self._component_terms(x)
        r = jax.nn.softmax(logp, axis=1)
        return jnp.einsum("nk,nkd->nd", r, prec_diff)


def mixture_score(sde, mixture: GaussianMixture):
    r"""Exact score function ``score(x, t)`` of :math:`p_t` (``x`` ``(n, d)``, scalar ``t``).

    The component covariances are diagonalised once, :math:`\Sigma_k = U_k\Lambda_k U_k^\top`, so
    that :math:`(\alpha_t^2\Sigma_k+\sigma_t^2 I)^{-1} = U_k(\alpha_t^2\Lambda_k+\sigma_t^2)^{-1}U_k^\top`
    costs matrix products only inside a sampler loop."""
    lam, U = jnp.linalg.eigh(mixture.covs)  # (K, d), (K, d, d)
    logw = jnp.log(mixture.weights)
    d = mixture.dim

    def score(x, t):
        a, s2 = sde.alpha(t), sde.sigma2(t)
        v = a**2 * lam + s2  # (K, d)
        diff = a * mixture.means[None, :, :] - x[:, None, :]  # (n, K, d)
        z = jnp.einsum("nkd,kde->nke", diff, U)  # coordinates in the eigenbasis
        logp = logw[None, :] - 0.5 * jnp.sum(z**2 / v[None], -1) - 0.5 * jnp.sum(jnp.log(v), -1)[None, :] - 0.5 * d * jnp.log(2 * jnp.pi)
        r = jax.nn.softmax(logp, axis=1)
        return jnp.einsum("nk,nke,kde->nd", r, z / v[None], U)

    return score


__all__ = ["GaussianMixture", "mixture_score"]
