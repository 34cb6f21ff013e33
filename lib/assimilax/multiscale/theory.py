r"""Exact Gaussian-mixture computations behind iterative refinement (IR) across resolutions.

The setting of the May 14 notes: a high-resolution state :math:`x_0 \sim p_0 = \sum_k w_k
\mathcal N(\mu_k, \Sigma_k)` on :math:`\mathbb R^{d}`, affine dynamics with additive Gaussian noise

.. math:: x_{t+1} = A x_t + b + \eta_t, \qquad \eta_t \sim \mathcal N(0, Q),
   :label: th-dynamics

and nested linear restrictions :math:`P^r` (:math:`P^r = C^r P^{r+1}`, :math:`P^R = I`). Every
distribution of the IR construction is then a Gaussian mixture with the *same* component labels:

- the pushforward :math:`p_t = \sum_k w_k \mathcal N(A^t\mu_k + \textstyle\sum_{s<t}A^s b,\;
  A^t\Sigma_k A^{t\top} + \sum_{s<t} A^s Q A^{s\top})` (:func:`affine_pushforward`), and any linear
  image :math:`M x` of a mixture, :math:`\sum_k w_k\mathcal N(M\mu_k, M\Sigma_k M^\top)`
  (:func:`linear_image`);
- the joint law of two consecutive frames :math:`(x_{t-1}, x_t)` (:func:`transition_joint`), with
  component blocks :math:`\Sigma_k,\ \Sigma_k A^\top,\ A\Sigma_k A^\top + Q`;
- every conditional of a linear function given another (:func:`condition`), exactly: with
  :math:`z \sim \sum_k w_k \mathcal N(m_k, S_k)`, target :math:`u = Tz`, observation :math:`y = Oz`,

  .. math:: p(u \mid y) = \sum_k \tilde w_k(y)\, \mathcal N\big(T m_k + G_k (y - O m_k),\;
     T S_k T^\top - G_k O S_k T^\top\big), \qquad G_k = T S_k O^\top (O S_k O^\top)^{-1},
     \quad \tilde w_k(y) \propto w_k\, \mathcal N(y; O m_k, O S_k O^\top).
     :label: th-condition

  The conditional covariances do not depend on :math:`y`; the weights and means do.

The IR factor :math:`p(x^{r+1}_t \mid x^r_t, x^{r+1}_{t-1})` lives on the affine set
:math:`\{C^r x^{r+1} = x^r_t\}`; it is written in the detail coordinates
:math:`\xi_r = N_r^\top x^{r+1}` with :math:`N_r` an orthonormal basis of :math:`\ker C^r`
(:func:`detail_basis`), so that :math:`x^{r+1} = C^{r+}x^r + N_r\xi_r` and the factor is a
non-degenerate density in :math:`\xi_r`. :func:`hierarchy_coordinates` stacks
:math:`(x^{r_0}, \xi_{r_0}, \dots, \xi_{R-1})`, a linear bijection of :math:`x^R`, so that the
one-shot target :math:`p(x^R_t \mid x^{r_0}_t, x^R_{t-1})` and every IR factor are conditionals of
one mixture, and the chain rule

.. math:: p(\xi_{r_0},\dots,\xi_{R-1}\mid c) = \prod_{r=r_0}^{R-1} p(\xi_r \mid \xi_{<r}, c)
   :label: th-chain

holds exactly. As :math:`Q \to 0` the conditional given the *full* previous frame collapses:
:math:`x_t = A x_{t-1} + b` is a deterministic function of it, the conditional covariances
:math:`\to 0` and the IR problem degenerates (nothing is left to learn). With the previous frame
only at a coarser level, the part of :math:`x_t` that frame does not determine keeps its spread.

Exact scores of these conditionals under a forward SDE are the mixture scores of
:func:`assimilax.diffusion.mixture_score`; :func:`conditional_score` evaluates them for a batch of
conditions at once (the oracle of score-matching experiments).

Mode separation: the pairwise squared Mahalanobis distances
:math:`\Delta_{ij} = (\mu_i-\mu_j)^\top\bar\Sigma_{ij}^{-1}(\mu_i-\mu_j)`,
:math:`\bar\Sigma_{ij} = (\Sigma_i+\Sigma_j)/2` (:func:`mahalanobis_separation`), and the
pairwise :math:`\chi^2` divergences that bound the log-Sobolev constants of mixtures
:cite:`chen2021dimensionfree` (:func:`chi2_divergence`). For a shared covariance and any linear
:math:`P` of full row rank, :math:`\|P\delta\|^2_{(P\Sigma P^\top)^{-1}} \le \|\delta\|^2_{\Sigma^{-1}}`
(the squared Mahalanobis norm of a projection is the Schur-complement split
:math:`\delta^\top\Sigma^{-1}\delta = \|P\delta\|^2_{(P\Sigma P^\top)^{-1}} +
\|\delta_{\mid P}\|^2_{\Sigma_{\mid P}^{-1}}`), so coarsening along nested restrictions never
increases the separation; the same split shows that conditioning on :math:`y = Oz` can leave a
target's conditional components *more* separated than its marginal ones.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..diffusion.mixture import GaussianMixture


def _matrix(x, name: str, shape: Optional[tuple] = None):
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a matrix, got shape {x.shape}")
    if shape is not None:
        for i, s in enumerate(shape):
            if s is not None and x.shape[i] != s:
                raise ValueError(f"{name} must have shape {tuple('*' if v is None else v for v in shape)}, got {x.shape}")
    return x


def _psd_check(Q, name: str):
    Qn = np.asarray(Q)
    if not np.allclose(Qn, Qn.T, atol=1e-10 * max(1.0, np.abs(Qn).max())):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(Qn).min() < -1e-10 * max(1.0, np.abs(Qn).max()):
        raise ValueError(f"{name} must be positive semi-definite")


def linear_image(mixture: GaussianMixture, matrix: Float[Array, "k d"], offset: Optional[Float[Array, " k"]] = None,
                 noise: Optional[Float[Array, "k k"]] = None) -> GaussianMixture:
    r"""The law of :math:`Mx + c + \eta` for :math:`x \sim` ``mixture`` and
    :math:`\eta\sim\mathcal N(0, Q)` independent: components
    :math:`\mathcal N(M\mu_k + c,\ M\Sigma_k M^\top + Q)`, weights unchanged.

    **Arguments:** ``matrix`` :math:`M` ``(k, d)``; ``offset`` :math:`c` ``(k,)`` (default 0);
    ``noise`` :math:`Q` ``(k, k)`` symmetric positive semi-definite (default 0). The result must
    have positive definite component covariances to be used as a density (``M`` of full row rank
    or ``Q`` positive definite).
    """
    M = _matrix(matrix, "matrix", (None, mixture.dim))
    k = M.shape[0]
    means = mixture.means @ M.T
    if offset is not None:
        c = jnp.asarray(offset)
        if c.shape != (k,):
            raise ValueError(f"offset must have shape ({k},), got {c.shape}")
        means = means + c[None, :]
    covs = jnp.einsum("ij,kjl,ml->kim", M, mixture.covs, M)
    if noise is not None:
        Q = _matrix(noise, "noise", (k, k))
        _psd_check(Q, "noise")
        covs = covs + Q[None]
    return GaussianMixture(mixture.weights, means, 0.5 * (covs + jnp.swapaxes(covs, 1, 2)))


def affine_pushforward(mixture: GaussianMixture, A: Float[Array, "d d"], b: Optional[Float[Array, " d"]] = None,
                       Q: Optional[Float[Array, "d d"]] = None, steps: int = 1) -> GaussianMixture:
    r"""The law of :math:`x_t` after ``steps`` steps of :eq:`th-dynamics` from :math:`x_0 \sim`
    ``mixture`` (exact: each step is :func:`linear_image` with offset ``b`` and noise ``Q``).

    **Arguments:** ``A`` ``(d, d)``; ``b`` ``(d,)`` (default 0); ``Q`` ``(d, d)`` (default 0);
    ``steps`` a non-negative integer.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    _matrix(A, "A", (mixture.dim, mixture.dim))
    out = mixture
    for _ in range(int(steps)):
        out = linear_image(out, A, b, Q)
    return out


def transition_joint(mixture: GaussianMixture, A: Float[Array, "d d"], b: Optional[Float[Array, " d"]] = None,
                     Q: Optional[Float[Array, "d d"]] = None) -> GaussianMixture:
    r"""The joint law of :math:`z = (x_{t-1}, x_t)` ``(2d,)`` when :math:`x_{t-1} \sim` ``mixture``
    and :math:`x_t = A x_{t-1} + b + \eta`: components with mean :math:`(\mu_k, A\mu_k + b)` and
    covariance :math:`\begin{pmatrix}\Sigma_k & \Sigma_k A^\top\\ A\Sigma_k & A\Sigma_k A^\top + Q\end{pmatrix}`
    (same labels: the component of :math:`x_t` is the one of :math:`x_{t-1}`)."""
    d = mixture.dim
    A = _matrix(A, "A", (d, d))
    b = jnp.zeros(d, mixture.means.dtype) if b is None else jnp.asarray(b)
    if b.shape != (d,):
        raise ValueError(f"b must have shape ({d},), got {b.shape}")
    Q = jnp.zeros((d, d), mixture.covs.dtype) if Q is None else _matrix(Q, "Q", (d, d))
    _psd_check(Q, "Q")
    S = mixture.covs
    SA = jnp.einsum("kij,lj->kil", S, A)  # Sigma A^T
    top = jnp.concatenate([S, SA], axis=2)
    bottom = jnp.concatenate([jnp.swapaxes(SA, 1, 2), jnp.einsum("ij,kjl->kil", A, SA) + Q[None]], axis=2)
    covs = jnp.concatenate([top, bottom], axis=1)
    means = jnp.concatenate([mixture.means, mixture.means @ A.T + b[None, :]], axis=1)
    return GaussianMixture(mixture.weights, means, 0.5 * (covs + jnp.swapaxes(covs, 1, 2)))


class ConditionalMixture(NamedTuple):
    r"""The conditional :eq:`th-condition` in parametric form, for any observed value.

    ``log_weights`` ``(K,)`` prior log weights; ``obs_means`` ``(K, m)`` :math:`O m_k`;
    ``obs_covs`` ``(K, m, m)`` :math:`O S_k O^\top`; ``target_means`` ``(K, p)`` :math:`T m_k`;
    ``gains`` ``(K, p, m)`` :math:`G_k`; ``covs`` ``(K, p, p)`` the conditional covariances (the
    same for every value). :meth:`at` gives the mixture at one value."""

    log_weights: jax.Array
    obs_means: jax.Array
    obs_covs: jax.Array
    target_means: jax.Array
    gains: jax.Array
    covs: jax.Array

    def weights_means(self, value: Float[Array, "n m"]):
        r"""Conditional weights ``(n, K)`` and means ``(n, K, p)`` at ``value`` ``(n, m)``."""
        value = jnp.asarray(value)
        chol = jnp.linalg.cholesky(self.obs_covs)
        diff = value[:, None, :] - self.obs_means[None]  # (n, K, m)
        z = jax.vmap(lambda L, D: jax.scipy.linalg.solve_triangular(L, D.T, lower=True).T, in_axes=(0, 1), out_axes=1)(chol, diff)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        logp = self.log_weights[None, :] - 0.5 * jnp.sum(z**2, -1) - 0.5 * logdet[None, :]
        w = jax.nn.softmax(logp, axis=1)
        means = self.target_means[None] + jnp.einsum("kpm,nkm->nkp", self.gains, diff)
        return w, means

    def at(self, value: Float[Array, " m"]) -> GaussianMixture:
        """The conditional mixture at one observed value ``(m,)``."""
        w, means = self.weights_means(jnp.asarray(value)[None, :])
        return GaussianMixture(w[0], means[0], self.covs)


def condition(mixture: GaussianMixture, observe: Float[Array, "m d"], target: Float[Array, "p d"], *,
              jitter: float = 0.0) -> ConditionalMixture:
    r"""The exact conditional law of :math:`u = Tz` given :math:`y = Oz` under a mixture :eq:`th-condition`.

    **Arguments:** ``mixture`` the law of :math:`z` ``(d,)``; ``observe`` :math:`O` ``(m, d)`` with
    :math:`O S_k O^\top` positive definite; ``target`` :math:`T` ``(p, d)``; ``jitter`` added to the
    diagonal of the conditional covariances (0 by default; they must come out positive definite
    for a density, which fails when :math:`T z` is a function of :math:`Oz`, e.g. with
    :math:`Q = 0`).

    **Returns:** a :class:`ConditionalMixture`; ``.at(y)`` is the :class:`~assimilax.diffusion.GaussianMixture`
    :math:`p(u \mid y)`.
    """
    O = _matrix(observe, "observe", (None, mixture.dim))
    T = _matrix(target, "target", (None, mixture.dim))
    S = mixture.covs
    OSO = jnp.einsum("ij,kjl,ml->kim", O, S, O)
    OSO = 0.5 * (OSO + jnp.swapaxes(OSO, 1, 2))
    if not bool(jnp.all(jnp.linalg.eigvalsh(OSO)[:, 0] > 0)):
        raise ValueError("the observed covariances O S_k O^T must be positive definite (O of full row rank)")
    TSO = jnp.einsum("ij,kjl,ml->kim", T, S, O)
    TST = jnp.einsum("ij,kjl,ml->kim", T, S, T)
    gains = jnp.swapaxes(jnp.linalg.solve(OSO, jnp.swapaxes(TSO, 1, 2)), 1, 2)  # T S O^T (O S O^T)^-1
    covs = TST - jnp.einsum("kpm,kqm->kpq", gains, TSO)
    covs = 0.5 * (covs + jnp.swapaxes(covs, 1, 2)) + jitter * jnp.eye(T.shape[0], dtype=S.dtype)[None]
    return ConditionalMixture(jnp.log(mixture.weights), mixture.means @ O.T, OSO, mixture.means @ T.T, gains, covs)


def conditional_score(sde, conditional: ConditionalMixture):
    r"""Exact score of the diffused conditional, for a batch of conditions:
    ``score(u (n, p), t, value (n, m)) -> (n, p)``, :math:`\nabla_u \log p_t(u \mid y)` where
    :math:`p_t(\cdot\mid y)` is :math:`p(\cdot \mid y)` under ``sde`` (components
    :math:`\mathcal N(\alpha_t \mu_k(y), \alpha_t^2\Sigma_k + \sigma_t^2 I)` with weights
    :math:`\tilde w_k(y)`), the per-condition version of :func:`assimilax.diffusion.mixture_score`."""
    lam, U = jnp.linalg.eigh(conditional.covs)  # (K, p), (K, p, p)

    def score(u, t, value):
        w, means = conditional.weights_means(value)  # (n, K), (n, K, p)
        a, s2 = sde.alpha(t), sde.sigma2(t)
        v = a**2 * lam + s2
        diff = a * means - u[:, None, :]
        z = jnp.einsum("nkd,kde->nke", diff, U)
        logp = jnp.log(w) - 0.5 * jnp.sum(z**2 / v[None], -1) - 0.5 * jnp.sum(jnp.log(v), -1)[None, :]
        r = jax.nn.softmax(logp, axis=1)
        return jnp.einsum("nk,nke,kde->nd", r, z / v[None], U)

    return score


def conditional_sample(conditional: ConditionalMixture, value: Float[Array, "n m"], key) -> Float[Array, "n p"]:
    """One exact draw of :math:`u \\mid y` per row of ``value`` ``(n, m)``."""
    w, means = conditional.weights_means(value)
    k1, k2 = jax.random.split(key)
    comp = jax.random.categorical(k1, jnp.log(w), axis=1)
    chol = jnp.linalg.cholesky(conditional.covs)
    z = jax.random.normal(k2, (value.shape[0], conditional.covs.shape[1]), dtype=conditional.covs.dtype)
    mu = jnp.take_along_axis(means, comp[:, None, None], axis=1)[:, 0]
    return mu + jnp.einsum("nij,nj->ni", chol[comp], z)


def conditional_log_prob(conditional: ConditionalMixture, u: Float[Array, "n p"], value: Float[Array, "n m"]) -> Float[Array, " n"]:
    r""":math:`\log p(u_i \mid y_i)` for paired rows ``u`` ``(n, p)`` and ``value`` ``(n, m)``."""
    w, means = conditional.weights_means(value)
    chol = jnp.linalg.cholesky(conditional.covs)
    diff = jnp.asarray(u)[:, None, :] - means
    z = jax.vmap(lambda L, D: jax.scipy.linalg.solve_triangular(L, D.T, lower=True).T, in_axes=(0, 1), out_axes=1)(chol, diff)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    p = conditional.covs.shape[1]
    logp = jnp.log(w) - 0.5 * jnp.sum(z**2, -1) - 0.5 * logdet[None, :] - 0.5 * p * jnp.log(2 * jnp.pi)
    return jax.scipy.special.logsumexp(logp, axis=1)


def detail_basis(coarsening: Float[Array, "m n"]) -> Float[Array, "n k"]:
    r"""Orthonormal basis :math:`N` ``(n, n - m)`` of :math:`\ker C` for a coarsening :math:`C`
    ``(m, n)`` of full row rank (from the SVD). Then :math:`x = C^+ C x + N N^\top x`."""
    C = np.asarray(_matrix(coarsening, "coarsening"))
    m, n = C.shape
    _, s, vt = np.linalg.svd(C)
    if m > n or s.min() <= 1e-12 * s.max():
        raise ValueError(f"coarsening must have full row rank, shape {C.shape}, singular values {s}")
    return jnp.asarray(vt[m:].T)


class HierarchyCoordinates(NamedTuple):
    r"""Coordinates :math:`(x^{r_0}, \xi_{r_0}, \dots, \xi_{R-1})` of :math:`x^R`.

    ``forward`` ``(d_R, d_R)`` maps :math:`x^R` to the stacked coordinates and ``inverse`` back;
    ``slices[j]`` is the block of the ``j``-th coordinate group (group 0 is :math:`x^{r_0}`, group
    ``j >= 1`` is :math:`\xi_{r_0+j-1}`); ``restrictions`` the :math:`P^r` ``(d_r, d_R)``,
    ``coarsenings`` the :math:`C^r` ``(d_r, d_{r+1})``, ``bases`` the :math:`N_r` ``(d_{r+1}, d_{r+1}-d_r)``."""

    forward: jax.Array
    inverse: jax.Array
    slices: tuple
    restrictions: tuple
    coarsenings: tuple
    bases: tuple

    def level(self, j: int) -> jax.Array:
        """Rows of ``forward`` that give group ``j``, shape ``(size_j, d_R)``."""
        return self.forward[self.slices[j]]

    def up_to(self, j: int) -> jax.Array:
        """Rows of groups ``0..j`` (together equivalent to :math:`x^{r_0+j}`)."""
        return self.forward[: self.slices[j].stop]


def hierarchy_coordinates(restrictions: Sequence[Float[Array, "dr dR"]]) -> HierarchyCoordinates:
    r"""Build :class:`HierarchyCoordinates` from nested restrictions :math:`P^{r_0}, \dots, P^{R}`
    (coarse to fine; the last one may be the identity) with :math:`\ker P^{r+1} \subset \ker P^{r}`.

    :math:`C^r = P^r (P^{r+1})^+` (exact under nesting, which is checked), :math:`N_r` from
    :func:`detail_basis`, :math:`\xi_r = N_r^\top P^{r+1} x`.
    """
    Ps = [np.asarray(_matrix(P, f"restrictions[{i}]")) for i, P in enumerate(restrictions)]
    if len(Ps) < 2:
        raise ValueError("at least two levels are needed")
    dR = Ps[-1].shape[1]
    for i, P in enumerate(Ps):
        if P.shape[1] != dR:
            raise ValueError(f"every restriction must act on R^{dR}; restrictions[{i}] has shape {P.shape}")
    rows, slices, Cs, Ns, start = [Ps[0]], [slice(0, Ps[0].shape[0])], [], [], Ps[0].shape[0]
    for P, Pn in zip(Ps[:-1], Ps[1:]):
        C = P @ np.linalg.pinv(Pn)
        if not np.allclose(C @ Pn, P, atol=1e-9 * max(1.0, np.abs(P).max())):
            raise ValueError("restrictions are not nested: P^r is not a function of P^{r+1} x")
        N = np.asarray(detail_basis(C))
        Cs.append(jnp.asarray(C))
        Ns.append(jnp.asarray(N))
        rows.append(N.T @ Pn)
        slices.append(slice(start, start + N.shape[1]))
        start += N.shape[1]
    F = np.concatenate(rows, axis=0)
    if F.shape != (dR, dR) or np.linalg.matrix_rank(F) < dR:
        raise ValueError(f"the finest restriction must be invertible (the coordinates span R^{dR}); got {F.shape}")
    return HierarchyCoordinates(jnp.asarray(F), jnp.asarray(np.linalg.inv(F)), tuple(slices),
                                tuple(jnp.asarray(P) for P in Ps), tuple(Cs), tuple(Ns))


def mahalanobis_separation(mixture: GaussianMixture) -> Float[Array, "K K"]:
    r"""Pairwise squared Mahalanobis distances
    :math:`\Delta_{ij} = (\mu_i - \mu_j)^\top \bar\Sigma_{ij}^{-1} (\mu_i - \mu_j)`,
    :math:`\bar\Sigma_{ij} = (\Sigma_i + \Sigma_j)/2`, shape ``(K, K)`` (zero diagonal)."""
    d = mixture.means[:, None, :] - mixture.means[None, :, :]
    pooled = 0.5 * (mixture.covs[:, None] + mixture.covs[None, :])
    sol = jnp.linalg.solve(pooled, d[..., None])[..., 0]
    return jnp.sum(d * sol, -1)


def gaussian_chi2(mean1, cov1, mean2, cov2):
    r""":math:`\chi^2(\mathcal N(\mu_1,\Sigma_1)\,\|\,\mathcal N(\mu_2,\Sigma_2)) = \int p_1^2/p_2 - 1`,
    in closed form: with :math:`A = 2\Sigma_1^{-1} - \Sigma_2^{-1}` (infinite unless :math:`A \succ 0`),
    :math:`b = 2\Sigma_1^{-1}\mu_1 - \Sigma_2^{-1}\mu_2`,
    :math:`c = 2\mu_1^\top\Sigma_1^{-1}\mu_1 - \mu_2^\top\Sigma_2^{-1}\mu_2`,

    .. math:: \log(1+\chi^2) = \tfrac12\log|\Sigma_2| - \log|\Sigma_1| - \tfrac12\log|A|
       + \tfrac12 b^\top A^{-1} b - \tfrac12 c

    (:math:`= (\mu_1-\mu_2)^\top\Sigma^{-1}(\mu_1-\mu_2)` for a shared :math:`\Sigma`). Returns
    ``log(1 + chi2)`` (``inf`` when :math:`A` is not positive definite)."""
    P1, P2 = jnp.linalg.inv(cov1), jnp.linalg.inv(cov2)
    A = 2 * P1 - P2
    A = 0.5 * (A + A.T)
    ok = jnp.linalg.eigvalsh(A)[0] > 0
    b = 2 * P1 @ mean1 - P2 @ mean2
    c = 2 * mean1 @ P1 @ mean1 - mean2 @ P2 @ mean2
    out = (0.5 * jnp.linalg.slogdet(cov2)[1] - jnp.linalg.slogdet(cov1)[1] - 0.5 * jnp.linalg.slogdet(A)[1]
           + 0.5 * b @ jnp.linalg.solve(jnp.where(ok, A, jnp.eye(A.shape[0], dtype=A.dtype)), b) - 0.5 * c)
    return jnp.where(ok, out, jnp.inf)


def chi2_divergence(mixture: GaussianMixture) -> Float[Array, "K K"]:
    r"""Pairwise :math:`\log(1 + \chi^2(p_i \| p_j))` between the components, ``(K, K)``
    (:func:`gaussian_chi2`), the quantity :math:`\log(1+K_{\chi^2})` of :cite:`chen2021dimensionfree`."""
    f = jax.vmap(jax.vmap(gaussian_chi2, in_axes=(None, None, 0, 0)), in_axes=(0, 0, None, None))
    return f(mixture.means, mixture.covs, mixture.means, mixture.covs)


def mixture_lsi_bound(mixture: GaussianMixture) -> float:
    r"""The upper bound on the log-Sobolev (hence also the Poincaré) constant of a finite mixture
    in the form of :cite:`chen2021dimensionfree`: components with log-Sobolev constants
    :math:`C_k = \lambda_{\max}(\Sigma_k)` (Gaussians; the largest one enters) and
    :math:`K_{\chi^2} = \max_{i \ne j}\chi^2(p_i\|p_j)`, the largest :math:`\chi^2(p_i\|p_j) = \int p_i^2/p_j - 1`
    over *ordered* pairs of components (it is not symmetric when the covariances differ, and is
    infinite unless :math:`2\Sigma_i^{-1} - \Sigma_j^{-1} \succ 0`), give
    :math:`C_{\rm LS} \le \max_k C_k\,(1 + K_{\chi^2})`, whatever the weights. Returned as its
    logarithm, :math:`\log\max_k C_k + \max_{ij}\log(1+\chi^2_{ij})` (it overflows quickly), a float.

    Checks (``tests/multiscale/test_functional_inequalities.py``): it is never below the numerically
    computed :math:`C_{\rm P}` and :math:`C_{\rm LS}` on a family of 1-D mixtures of two and three
    components (balanced and lopsided weights, equal and unequal variances); its two ingredients
    agree with :math:`\chi^2` by quadrature and the largest component variance; for identical
    components it is :math:`\lambda_{\max}(\Sigma)`, the closed form of the Gaussian constant. The
    numerical factor in front of :math:`\max_k C_k(1 + K_{\chi^2})` has not been checked against the
    paper's theorem (its text could not be retrieved when these checks were written): a larger
    factor there would make this value smaller than the published bound, and the tests above are
    what it rests on."""
    w, lam, lchi = _bound_ingredients(mixture)
    return _log_bounds(w, lam, lchi)[0]


def mixture_poincare_bound(mixture: GaussianMixture) -> float:
    r"""An upper bound on the Poincaré constant of a finite Gaussian mixture
    :math:`\mu = \sum_j w_j p_j`, derived here (not taken from a paper), with its proof:

    .. math:: C_{\rm P}(\mu) \le \max_{j:\,w_j>0}\; \lambda_{\max}(\Sigma_j)
       \Big(1 + \tfrac12 \sum_{i \ne j} w_i\, \chi^2(p_i \| p_j)\Big)
       \;\le\; \max_k \lambda_{\max}(\Sigma_k)\,\big(1 + \tfrac12 K_{\chi^2}\big).

    *Proof.* The law of total variance over the component label gives
    :math:`\mathrm{Var}_\mu f = \sum_j w_j \mathrm{Var}_j f + \tfrac12\sum_{i,j} w_i w_j (E_i f - E_j f)^2`.
    By Cauchy--Schwarz under :math:`p_j`,
    :math:`(E_i f - E_j f)^2 = \big(E_j[(p_i/p_j - 1)(f - E_j f)]\big)^2 \le \chi^2(p_i\|p_j)\,\mathrm{Var}_j f`,
    so :math:`\mathrm{Var}_\mu f \le \sum_j w_j (1 + \tfrac12\kappa_j) \mathrm{Var}_j f` with
    :math:`\kappa_j = \sum_{i\ne j} w_i\chi^2(p_i\|p_j)`; each Gaussian component has
    :math:`\mathrm{Var}_j f \le \lambda_{\max}(\Sigma_j) E_j|\nabla f|^2`, and
    :math:`\sum_j w_j E_j|\nabla f|^2 = E_\mu|\nabla f|^2`. :math:`\square` It is at most
    :math:`\max_k\lambda_{\max}(\Sigma_k)(1 + K_{\chi^2}/2)`, so never above the weight-free form of
    :func:`mixture_lsi_bound` (which bounds the larger log-Sobolev constant); the maximum runs over
    every component with positive weight, so a rare component far from the others still counts. For two unit
    Gaussians at :math:`\pm m` with equal weights it is :math:`1 + \tfrac14(e^{4m^2} - 1)`.

    Returned as its logarithm (a float; ``inf`` when a needed :math:`\chi^2` is infinite).
    Checks (``tests/multiscale/test_functional_inequalities.py``): never below the computed
    :math:`C_{\rm P}` of the 1-D family, never above :func:`mixture_lsi_bound`, the closed form
    above, and :math:`\lambda_{\max}(\Sigma)` for identical components."""
    w, lam, lchi = _bound_ingredients(mixture)
    return _log_bounds(w, lam, lchi)[1]


def _bound_ingredients(mixture: GaussianMixture):
    """Normalised weights, component ``lambda_max`` and the ``log(1 + chi2)`` matrix, NumPy."""
    w = np.asarray(mixture.weights, float)
    if w.ndim != 1 or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"mixture weights must be non-negative with a positive sum, got {w}")
    lam = np.asarray(jnp.linalg.eigvalsh(mixture.covs)[:, -1], float)
    return w / w.sum(), lam, np.asarray(chi2_divergence(mixture), float)


def _log_bounds(w: np.ndarray, lam: np.ndarray, lchi: np.ndarray) -> tuple:
    """``(log LSI-form bound, log Poincaré bound)`` from weights ``w``, component constants ``lam``
    and ``lchi[i, j] = log(1 + chi2(p_i || p_j))`` (see :func:`mixture_lsi_bound`,
    :func:`mixture_poincare_bound`)."""
    K = w.size
    off = ~np.eye(K, dtype=bool)
    lsi = float(np.log(lam.max()) + (lchi[off].max() if K > 1 else 0.0))
    terms = []
    for j in np.flatnonzero(w > 0):
        others = [i for i in range(K) if i != j and w[i] > 0]
        if others and np.isinf(lchi[others, j]).any():
            return lsi, float("inf")
        # log(1 + 1/2 sum_i w_i (e^{L_ij} - 1)) = log(1/2 sum_i w_i e^{L_ij} + 1 - 1/2 sum_i w_i), in log space
        rest = 1.0 - 0.5 * sum(w[i] for i in others)
        a = [np.log(0.5 * w[i]) + lchi[i, j] for i in others] + [np.log(rest)]
        terms.append(np.log(lam[j]) + float(np.logaddexp.reduce(a)))
    return lsi, float(max(terms))


class TargetGeometry(NamedTuple):
    """Per condition (rows): ``cov_max`` the largest eigenvalue of the target's total covariance,
    ``diameter`` the largest distance between the means of components with weight above
    ``1e-6``; ``comp_min``, ``comp_max`` the extreme eigenvalues of the component covariances and
    ``shared`` whether all components share one covariance (to ``1e-10`` relative)."""

    cov_max: np.ndarray
    diameter: np.ndarray
    comp_min: float
    comp_max: float
    shared: bool


def target_geometry(conditional: ConditionalMixture, values: Float[Array, "n m"]) -> TargetGeometry:
    r"""Scales of the conditional mixture :math:`p(u\mid y)` at each row of ``values``: the largest
    eigenvalue of its covariance :math:`\sum_k\tilde w_k(\Sigma_k + \mu_k\mu_k^\top) - \bar\mu\bar\mu^\top`
    (every Poincaré constant is at least this, with equality for a Gaussian, since linear test
    functions are admissible), the diameter of its component means, and the component covariances'
    spectrum: the quantities the sample-complexity bounds of :cite:`koehler2023statistical` and
    :cite:`qin2023fit` are stated in. A :class:`TargetGeometry`."""
    w, mu = conditional.weights_means(jnp.asarray(values))
    w, mu, S = np.asarray(w), np.asarray(mu), np.asarray(conditional.covs)
    mbar = np.einsum("nk,nkp->np", w, mu)
    cov = np.einsum("nk,kpq->npq", w, S) + np.einsum("nk,nkp,nkq->npq", w, mu, mu) - np.einsum("np,nq->npq", mbar, mbar)
    keep = w > 1e-6
    dist = np.linalg.norm(mu[:, :, None, :] - mu[:, None, :, :], axis=-1)
    diameter = np.max(np.where(keep[:, :, None] & keep[:, None, :], dist, 0.0), axis=(1, 2))
    eig = np.linalg.eigvalsh(0.5 * (S + np.swapaxes(S, 1, 2)))
    shared = bool(np.abs(S - S[:1]).max() <= 1e-10 * max(np.abs(S).max(), 1e-300))
    return TargetGeometry(np.linalg.eigvalsh(0.5 * (cov + np.swapaxes(cov, 1, 2)))[:, -1], diameter,
                          float(eig.min()), float(eig.max()), shared)


def kl_monte_carlo(log_p, log_q, samples: Float[Array, "n d"]) -> tuple[float, float]:
    r"""Monte Carlo :math:`\mathrm{KL}(p\|q) \approx \frac1n\sum_i \log p(x_i) - \log q(x_i)`,
    :math:`x_i \sim p`; returns ``(estimate, standard error)``."""
    v = np.asarray(log_p(samples) - log_q(samples))
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


class TargetStructure(NamedTuple):
    """Per condition (rows): ``dim``, weighted mean pairwise separation ``separation``, effective
    number of modes ``modes``, Poincaré ``poincare`` and log-Sobolev ``log_sobolev`` constants,
    ``log10_bound`` the :func:`mixture_lsi_bound` and ``log10_poincare_bound`` the
    :func:`mixture_poincare_bound`, in decades; arrays ``(n,)``."""

    dim: int
    separation: np.ndarray
    modes: np.ndarray
    poincare: np.ndarray
    log_sobolev: np.ndarray
    log10_bound: np.ndarray
    log10_poincare_bound: np.ndarray


def target_structure(joint: GaussianMixture, target: Float[Array, "p d"], observe: Optional[Float[Array, "m d"]],
                     draws: Float[Array, "n d"], *, grid_points: int, width: float = 6.5) -> TargetStructure:
    r"""Separation and functional constants of the target :math:`u = Tz` given :math:`y = Oz`
    at the observed values of each row of ``draws`` (``observe=None``: the marginal of :math:`Tz`,
    computed once and repeated). Components with conditional weight below :math:`10^{-6}` are
    dropped; the separation is :math:`\sum_{i\ne j}\tilde w_i\tilde w_j\Delta_{ij}/\sum_{i\ne j}\tilde w_i\tilde w_j`
    (:func:`mahalanobis_separation`), the modes :math:`e^{H(\tilde w)}`, the constants from
    :mod:`assimilax.multiscale.functional_inequalities` on a box of ``width`` component standard
    deviations with ``grid_points`` points per axis (targets of dimension 1 to 3)."""
    from . import functional_inequalities as fi

    T = np.asarray(_matrix(target, "target", (None, joint.dim)))
    w0, m0, S0 = (np.asarray(a, float) for a in (joint.weights, joint.means, joint.covs))
    if observe is None:
        cw = lambda y: w0  # noqa: E731
        cmeans = lambda y: m0 @ T.T  # noqa: E731
        ccovs = np.einsum("ij,kjl,ml->kim", T, S0, T)
        values = np.asarray(draws)[:1]
    else:  # the same algebra as condition(), in NumPy (many small eager calls are slow in JAX)
        O = np.asarray(_matrix(observe, "observe", (None, joint.dim)))
        OSO = np.einsum("ij,kjl,ml->kim", O, S0, O)
        TSO = np.einsum("ij,kjl,ml->kim", T, S0, O)
        G = np.swapaxes(np.linalg.solve(OSO, np.swapaxes(TSO, 1, 2)), 1, 2)
        ccovs = np.einsum("ij,kjl,ml->kim", T, S0, T) - np.einsum("kpm,kqm->kpq", G, TSO)
        ld = np.linalg.slogdet(OSO)[1]

        def cw(y):
            r = y[None, :] - m0 @ O.T
            lp = np.log(w0) - 0.5 * np.einsum("km,km->k", r, np.linalg.solve(OSO, r[..., None])[..., 0]) - 0.5 * ld
            e = np.exp(lp - lp.max())
            return e / e.sum()

        cmeans = lambda y: m0 @ T.T + np.einsum("kpm,km->kp", G, y[None, :] - m0 @ O.T)  # noqa: E731
        values = np.asarray(draws) @ O.T
    ccovs = 0.5 * (ccovs + np.swapaxes(ccovs, 1, 2))
    recs = []
    for y in values:
        w, mu = cw(y), cmeans(y)
        keep = w > 1e-6
        w, mu, S = w[keep] / w[keep].sum(), mu[keep], ccovs[keep]
        K = w.size
        if K > 1:
            dlt = mu[:, None, :] - mu[None, :, :]
            pooled = 0.5 * (S[:, None] + S[None, :])
            D = np.einsum("ijp,ijp->ij", dlt, np.linalg.solve(pooled, dlt[..., None])[..., 0])
            W = np.outer(w, w) * (1 - np.eye(K))
            sep = float(np.sum(W * D) / np.sum(W))
        else:
            sep = 0.0
        modes = float(np.exp(-np.sum(w * np.log(w))))
        chol = np.linalg.cholesky(S)
        ldS = 2 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)

        def log_density(x, w=w, mu=mu, chol=chol, ldS=ldS):
            x = np.asarray(x)
            z = np.stack([np.linalg.solve(L, (x - m).T).T for L, m in zip(chol, mu)], axis=1)  # (n, K, p)
            lp = np.log(w)[None] - 0.5 * np.sum(z**2, -1) - 0.5 * ldS[None]
            mx = lp.max(1, keepdims=True)
            return (mx + np.log(np.exp(lp - mx).sum(1, keepdims=True)))[:, 0]

        sub = GaussianMixture(jnp.asarray(w), jnp.asarray(mu), jnp.asarray(S))
        g = fi.box_grid(*fi.mixture_box(sub, width), grid_points)
        P = fi.poincare_constant(log_density, g)
        L = fi.log_sobolev_constant(log_density, g, poincare=P)
        # the bounds from the closed-form log(1 + chi2_ij) (gaussian_chi2), in NumPy
        lchi = np.zeros((K, K))
        for i in range(K):
            for j in range(K):
                if i != j:
                    P1, P2 = np.linalg.inv(S[i]), np.linalg.inv(S[j])
                    A = 2 * P1 - P2
                    if np.linalg.eigvalsh(0.5 * (A + A.T))[0] <= 0:
                        lchi[i, j] = np.inf
                        continue
                    bb = 2 * P1 @ mu[i] - P2 @ mu[j]
                    cc = 2 * mu[i] @ P1 @ mu[i] - mu[j] @ P2 @ mu[j]
                    lchi[i, j] = (0.5 * np.linalg.slogdet(S[j])[1] - np.linalg.slogdet(S[i])[1]
                                  - 0.5 * np.linalg.slogdet(A)[1] + 0.5 * bb @ np.linalg.solve(A, bb) - 0.5 * cc)
        b_lsi, b_p = _log_bounds(w, np.linalg.eigvalsh(S)[:, -1], lchi)
        recs.append((sep, modes, P.value, L.value, b_lsi / np.log(10), b_p / np.log(10)))
    r = np.array(recs)
    if observe is None:
        r = np.repeat(r, np.asarray(draws).shape[0], axis=0)
    return TargetStructure(int(T.shape[0]), r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4], r[:, 5])


def energy_distance(x: Float[Array, "n p"], y: Float[Array, "m p"]) -> Float[Array, ""]:
    r"""Unbiased energy distance :cite:`szekely2013energy`
    :math:`2\mathbb E|X-Y| - \mathbb E|X-X'| - \mathbb E|Y-Y'|` (U-statistics), zero in
    expectation iff the two laws agree; ``x`` ``(n, p)``, ``y`` ``(m, p)``. ``jax.vmap`` it over
    conditions."""
    def mean_dist(a, b, same):
        d = jnp.sqrt(jnp.maximum(jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, -1), 1e-30))
        if same:
            n = a.shape[0]
            return (jnp.sum(d) - jnp.sum(jnp.diagonal(d))) / (n * (n - 1))
        return jnp.mean(d)

    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


def score_kl_bound(sde, score_fn, exact_score, x0: Float[Array, "n p"], value: Float[Array, "n m"], key,
                   n_times: int = 8) -> Float[Array, ""]:
    r"""The Girsanov bound on the KL divergence a score error costs the reverse SDE
    :cite:`song2021maximum`,

    .. math:: \tfrac12\int_{t_{\min}}^{t_{\max}} g(t)^2\, \mathbb E\,
       \big|s_\theta(x_t, t, c) - \nabla\log p_t(x_t\mid c)\big|^2 \,dt,

    estimated with ``n_times`` uniform times per sample and :math:`x_t = \alpha_t x_0 +
    \sigma_t\varepsilon`, :math:`(x_0, c)` the rows of ``x0`` ``(n, p)`` and ``value`` ``(n, m)``
    (draws of the joint). ``score_fn`` and ``exact_score`` map ``(u (n, p), t, value (n, m))`` to
    ``(n, p)`` (e.g. :func:`conditional_score`)."""
    kt, ke = jax.random.split(key)
    ts = jax.random.uniform(kt, (n_times,), dtype=x0.dtype, minval=sde.t_min, maxval=sde.t_max)
    eps = jax.random.normal(ke, (n_times,) + x0.shape, dtype=x0.dtype)

    def one(t, e):
        xt = sde.alpha(t) * x0 + sde.sigma(t) * e
        return sde.g2(t) * jnp.mean(jnp.sum((score_fn(xt, t, value) - exact_score(xt, t, value)) ** 2, -1))

    return 0.5 * (sde.t_max - sde.t_min) * jnp.mean(jax.vmap(one)(ts, eps))


def train_score_batch(sde, nets, data: Float[Array, "B n p"], cond: Float[Array, "B n c"], keys, *, n_steps: int,
                      batch_size: int = 128, learning_rate: float = 2e-3, progress: bool = True, chunk: int = 250):
    r"""Train a batch of ``B`` conditional score networks at once by denoising score matching
    (:func:`assimilax.diffusion.fit_steps` under ``equinox.filter_vmap``; Adam with cosine decay),
    network ``b`` on ``data[b]`` with ``cond[b]`` and key ``keys[b]``: the same budget for every
    member. Training sets of different sizes share one array by repetition (tiling ``N`` samples
    ``n / N`` times leaves uniform minibatch sampling over the ``N`` unchanged).

    **Arguments:** ``nets`` a batched :class:`~assimilax.diffusion.MLPScore` (built under
    ``equinox.filter_vmap``); ``data`` ``(B, n, p)``; ``cond`` ``(B, n, c)``; ``keys`` ``(B, 2)``;
    ``progress`` a tqdm bar (``False`` disables it).

    **Returns:** ``(nets, losses (n_steps,))``, the loss averaged over the batch.
    """
    import equinox as eqx
    import optax

    from .._training import run_chunked
    from ..diffusion.training import fit_steps

    data, cond = jnp.asarray(data), jnp.asarray(cond)
    B = data.shape[0]
    if data.ndim != 3 or cond.ndim != 3 or cond.shape[:2] != data.shape[:2]:
        raise ValueError(f"data (B, n, p) and cond (B, n, c) expected, got {data.shape} and {cond.shape}")
    if keys.shape[0] != B:
        raise ValueError(f"keys must have leading size {B}, got {keys.shape}")
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, n_steps, alpha=0.05))
    opt_states = eqx.filter_vmap(lambda n: optimizer.init(eqx.filter(n, eqx.is_inexact_array)))(nets)

    @eqx.filter_jit
    def run(nets, opt_states, key, m):
        ks = jax.random.split(key, B)
        out = eqx.filter_vmap(lambda n, s, d, c, k: fit_steps(n, s, optimizer, sde, d, k, m, batch_size, c))(
            nets, opt_states, data, cond, ks)
        return out

    def chunk_run(state, k, m):
        n, s, ls = run(*state, k, m)
        return (n, s), jnp.mean(ls, axis=0)

    (nets, _), losses = run_chunked(chunk_run, (nets, opt_states), keys[0], n_steps, chunk=chunk, progress=progress,
                                    desc="DSM batch")
    return nets, losses


__all__ = ["ConditionalMixture", "HierarchyCoordinates", "affine_pushforward", "chi2_divergence", "condition",
           "conditional_log_prob", "conditional_sample", "conditional_score", "detail_basis", "energy_distance",
           "score_kl_bound", "train_score_batch", "TargetGeometry", "TargetStructure", "target_geometry", "target_structure", "gaussian_chi2",
           "hierarchy_coordinates", "kl_monte_carlo", "linear_image", "mahalanobis_separation", "mixture_lsi_bound", "mixture_poincare_bound",
           "transition_joint"]
