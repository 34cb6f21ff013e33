r"""Learned analysis operators: the coarse deterministic :math:`T_\psi` and the probabilistic
residual :math:`p_\phi`.

The two-stage analysis of the 11/13/25 notes is

.. math::
    \tilde u_t = T_\psi(u^F_t, y_t) \approx u^{ref}_t, \qquad
    r_t = u^{ref}_t - \tilde u_t \sim p_\phi(r \mid y_t, \tilde u_t), \qquad
    u^A_t = \tilde u_t + r_t .

The same split (a regression network for the conditional mean, a diffusion model for the
residual) is CorrDiff's :cite:`mardani2025residual`. In the linear-Gaussian case the optimal
:math:`T` is the Kalman analysis :math:`u^F + K(y - H u^F)` :cite:`kalman1960new`, which
:class:`LinearAnalysis` contains, and the optimal :math:`p_\phi` is
:math:`\mathcal N(0, P^a)`.

Every operator is an unbatched equinox Module ``T(u_f (d,), y (m,)) -> (d,)``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validation import check_finite, check_positive_int, check_shape
from ..diffusion import (FourierTimeEmbedding, MLPScore, VPSDE, batch_score, euler_maruyama, probability_flow_heun,
                         train_score_network)
from .forward import ring_windows


# ----------------------------------------------------------------------------- deterministic T
class ForecastAnalysis(eqx.Module):
    r"""The trivial analysis :math:`T(u^F, y) = u^F` (ignores ``y``). With a
    :class:`ResidualDiffusion` on top it gives the *one-stage* conditional diffusion analysis
    :math:`u^A \sim p_\phi(u - u^F \mid y, u^F)`; alone it is free-running forecasting."""

    def __call__(self, u_f, y):
        return u_f


class LinearAnalysis(eqx.Module):
    r"""Affine analysis :math:`T_\psi(u^F, y) = W_f u^F + W_y y + b`.

    The Kalman analysis is the special case :math:`W_f = I - KH`, :math:`W_y = K`, :math:`b = 0`
    (:meth:`from_gain`). Fit in closed form with :func:`fit_linear_analysis` or by gradient
    descent with :func:`~assimilax.learned.fit_regression`.

    **Arguments:** ``dim`` d, ``obs_dim`` m; ``key`` unused (initialised at :math:`T = u^F`).
    """

    Wf: jax.Array
    Wy: jax.Array
    b: jax.Array

    def __init__(self, dim: int, obs_dim: int, *, key=None, Wf=None, Wy=None, b=None, dtype=None):
        self.Wf = jnp.eye(dim, dtype=dtype) if Wf is None else jnp.asarray(Wf)
        self.Wy = jnp.zeros((dim, obs_dim), dtype=dtype) if Wy is None else jnp.asarray(Wy)
        self.b = jnp.zeros(dim, dtype=dtype) if b is None else jnp.asarray(b)
        check_shape(self.Wf, (dim, dim), "Wf")
        check_shape(self.Wy, (dim, obs_dim), "Wy")
        check_shape(self.b, (dim,), "b")

    @classmethod
    def from_gain(cls, K, H):
        r"""The Kalman analysis map with gain ``K`` ``(d, m)`` and observation matrix ``H`` ``(m, d)``."""
        K, H = jnp.asarray(K), jnp.asarray(H)
        d, m = K.shape
        check_shape(H, (m, d), "H")
        return cls(d, m, Wf=jnp.eye(d, dtype=K.dtype) - K @ H, Wy=K, b=jnp.zeros(d, K.dtype))

    def __call__(self, u_f, y):
        return self.Wf @ u_f + self.Wy @ y + self.b


class CycleError(NamedTuple):
    """Stationary errors of a cycled affine forecast/analysis pair (:func:`linear_cycle_error`)."""

    analysis_mse: jax.Array       # E|u^a - x|^2 / d
    forecast_mse: jax.Array       # E|u^f - x|^2 / d
    analysis_bias: jax.Array      # (d,) E[u^a - x]
    analysis_cov: jax.Array       # (d, d) Cov[u^a - x]
    spectral_radius: jax.Array    # of the cycle matrix W_f W (< 1: the cycle forgets its start)


def linear_cycle_error(A, Q, H, R, W, c, analysis: "LinearAnalysis") -> CycleError:
    r"""The exact stationary error of the filter :math:`u^f_t = W u^a_{t-1} + c`,
    :math:`u^a_t = W_f u^f_t + W_y y_t + b` cycled on the truth :math:`x_t = A x_{t-1} + w_t`,
    :math:`y_t = H x_t + v_t`, :math:`w \sim N(0, Q)`, :math:`v \sim N(0, R)`.

    The pair :math:`z_t = (x_t, u^a_t)` is the linear system

    .. math::
        z_t = M z_{t-1} + \begin{pmatrix} 0 \\ W_f c + b \end{pmatrix} + \begin{pmatrix} w_t \\ W_y H w_t + W_y v_t \end{pmatrix},
        \qquad M = \begin{pmatrix} A & 0 \\ W_y H A & W_f W \end{pmatrix},

    so with both :math:`A` and :math:`W_f W` stable its stationary mean solves
    :math:`(I - M)\mu = (0, W_f c + b)` and its covariance the discrete Lyapunov equation
    :math:`S = M S M^\top + N` (solved by vectorisation, :math:`\operatorname{vec} S = (I - M\otimes M)^{-1}\operatorname{vec} N`).
    The analysis error is :math:`e^a = C z` with :math:`C = (-I, I)`, the forecast error
    :math:`e^f_t = W u^a_{t-1} + c - A x_{t-1} - w_t`. With :math:`W = A`, :math:`c = 0` and the
    Kalman analysis (:meth:`LinearAnalysis.from_gain` with :math:`K_\infty`) the analysis
    covariance is the steady-state :math:`P^a` and the forecast covariance :math:`P^f`.

    Returns ``inf`` errors when the cycle or the truth is not stable (spectral radius ≥ 1).
    Jittable and differentiable in every argument.
    """
    A, Q, H, R, W = (jnp.asarray(v) for v in (A, Q, H, R, W))
    d = A.shape[0]
    c = jnp.broadcast_to(jnp.asarray(c, A.dtype), (d,))
    check_shape(W, (d, d), "W")
    check_shape(Q, (d, d), "Q")
    m = H.shape[0]
    check_shape(H, (m, d), "H")
    check_shape(R, (m, m), "R")
    Wf, Wy, b = analysis.Wf, analysis.Wy, analysis.b
    check_shape(Wy, (d, m), "analysis.Wy")
    cyc = Wf @ W
    Z = jnp.zeros((d, d), A.dtype)
    M = jnp.block([[A, Z], [Wy @ H @ A, cyc]])
    G = jnp.concatenate([jnp.eye(d, dtype=A.dtype), Wy @ H])          # noise w enters both
    N = G @ Q @ G.T + jnp.block([[Z, Z], [Z, Wy @ R @ Wy.T]])
    n = 2 * d
    S = jnp.linalg.solve(jnp.eye(n * n, dtype=A.dtype) - jnp.kron(M, M), N.reshape(-1)).reshape(n, n)
    S = 0.5 * (S + S.T)
    mu = jnp.linalg.solve(jnp.eye(n, dtype=A.dtype) - M, jnp.concatenate([jnp.zeros(d, A.dtype), Wf @ c + b]))
    C = jnp.concatenate([-jnp.eye(d, dtype=A.dtype), jnp.eye(d, dtype=A.dtype)], axis=1)
    cov_a = C @ S @ C.T
    bias_a = C @ mu
    # forecast error: W u^a_{t-1} + c - A x_{t-1} - w_t = D z_{t-1} + c - w_t, D = (-A, W)
    D = jnp.concatenate([-A, W], axis=1)
    cov_f = D @ S @ D.T + Q
    bias_f = D @ mu + c
    rho = jnp.maximum(jnp.max(jnp.abs(jnp.linalg.eigvals(cyc))), jnp.max(jnp.abs(jnp.linalg.eigvals(A))))
    stable = rho < 1
    inf = jnp.asarray(jnp.inf, A.dtype)
    mse_a = jnp.where(stable, (jnp.trace(cov_a) + bias_a @ bias_a) / d, inf)
    mse_f = jnp.where(stable, (jnp.trace(cov_f) + bias_f @ bias_f) / d, inf)
    return CycleError(mse_a, mse_f, bias_a, cov_a, rho)


def minimize_cycle_error(forward, analysis: "LinearAnalysis", A, Q, H, R, *, n_steps: int = 3000,
                         learning_rate: float = 1e-2):
    r"""Minimise the exact stationary analysis error of the cycled pair (:func:`linear_cycle_error`)
    directly over the parameters of an affine ``forward`` model (anything with ``W`` and ``b``,
    e.g. :class:`~assimilax.learned.LinearForward` or :class:`~assimilax.learned.DiagonalForward`)
    and ``analysis``, by Adam from the given pair: the best pair of a class, the reference against
    which a training loss is judged.

    The start must be a stable cycle (the error is infinite otherwise, and so is its gradient).
    **Returns:** ``(forward, analysis, history)``, ``history`` the analysis MSE per step.
    """
    check_positive_int(n_steps, "n_steps")
    start = linear_cycle_error(A, Q, H, R, forward.W, forward.b, analysis)
    if not bool(jnp.isfinite(start.analysis_mse)):
        raise ValueError(f"the start is not a stable cycle (spectral radius {float(start.spectral_radius):.3g})")
    A, Q, H, R = (jnp.asarray(a) for a in (A, Q, H, R))
    pair, history = _cycle_error_steps((forward, analysis), A, Q, H, R, _adam(float(learning_rate)), int(n_steps))
    return pair[0], pair[1], history


@functools.lru_cache(maxsize=32)
def _adam(learning_rate: float):
    # one optimiser object per rate, so that _cycle_error_steps compiles once per setting
    return optax.adam(learning_rate)


@eqx.filter_jit
def _cycle_error_steps(pair, A, Q, H, R, opt, n_steps):
    # n_steps Adam steps on the exact stationary analysis error (static: the optimiser and n_steps)
    objective = lambda p: linear_cycle_error(A, Q, H, R, p[0].W, p[0].b, p[1]).analysis_mse  # noqa: E731

    def step(carry, _):
        p, state = carry
        value, grad = jax.value_and_grad(objective)(p)
        updates, state = opt.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    (pair, _), history = jax.lax.scan(step, (pair, opt.init(pair)), None, length=n_steps)
    return pair, history


def fit_linear_analysis(forecasts, observations, targets, *, ridge: float = 0.0, H=None) -> LinearAnalysis:
    r"""Least-squares fit of :class:`LinearAnalysis` on pairs ``(u^F_i, y_i) -> u^{ref}_i``:

    .. math:: \min_{W_f, W_y, b} \sum_i \big\| W_f u^F_i + W_y y_i + b - u^{ref}_i \big\|^2
        + \lambda (\|W_f\|_F^2 + \|W_y\|_F^2).

    Solved with ``lstsq`` on the design matrix :math:`[u^F, y, 1]`. Use float64.

    With ``H`` ``(m, d)`` given, the *gain form* :math:`T(u^F, y) = u^F + W(y - H u^F) + b` is
    fitted instead (regression of :math:`u^{ref} - u^F` on the innovation
    :math:`y - H u^F`), so that :math:`W_f = I - W H`, :math:`W_y = W`. It has
    :math:`d(m+1)` instead of :math:`d(d+m+1)` coefficients and, cycled, stays a filter.

    **Arguments:** ``forecasts`` ``(n, d)``, ``observations`` ``(n, m)``, ``targets`` ``(n, d)``;
    ``ridge`` :math:`\lambda \ge 0`; ``H`` optional. **Returns:** :class:`LinearAnalysis`.
    """
    F, Y, Z = (jnp.asarray(a) for a in (forecasts, observations, targets))
    if F.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"forecasts and observations must be 2-D, got {F.shape} and {Y.shape}")
    n, d = F.shape
    m = Y.shape[1]
    check_shape(Y, (n, m), "observations")
    check_shape(Z, (n, d), "targets")
    for a, name in ((F, "forecasts"), (Y, "observations"), (Z, "targets")):
        check_finite(a, name)
    if H is not None:
        H = jnp.asarray(H)
        check_shape(H, (m, d), "H")
        if n < m + 1 and ridge == 0.0:
            raise ValueError(f"need at least m + 1 = {m + 1} pairs for an unregularised fit, got {n}")
        X = jnp.concatenate([Y - F @ H.T, jnp.ones((n, 1), F.dtype)], axis=1)
        Zi = Z - F
        if ridge > 0.0:
            X = jnp.concatenate([X, jnp.sqrt(ridge) * jnp.eye(m + 1, dtype=X.dtype)[:m]], axis=0)
            Zi = jnp.concatenate([Zi, jnp.zeros((m, d), Zi.dtype)], axis=0)
        beta = jnp.linalg.lstsq(X, Zi)[0]  # (m + 1, d)
        W = beta[:m].T
        return LinearAnalysis(d, m, Wf=jnp.eye(d, dtype=W.dtype) - W @ H, Wy=W, b=beta[-1])
    if n < d + m + 1 and ridge == 0.0:
        raise ValueError(f"need at least d + m + 1 = {d + m + 1} pairs for an unregularised fit, got {n}")
    X = jnp.concatenate([F, Y, jnp.ones((n, 1), F.dtype)], axis=1)
    if ridge > 0.0:
        reg = jnp.sqrt(ridge) * jnp.eye(d + m + 1, dtype=X.dtype)[: d + m]
        X = jnp.concatenate([X, reg], axis=0)
        Z = jnp.concatenate([Z, jnp.zeros((d + m, d), Z.dtype)], axis=0)
    beta = jnp.linalg.lstsq(X, Z)[0]  # (d + m + 1, d)
    return LinearAnalysis(d, m, Wf=beta[:d].T, Wy=beta[d:d + m].T, b=beta[-1])


class MLPAnalysis(eqx.Module):
    r"""Residual MLP analysis :math:`T_\psi(u^F, y) = u^F + s\,g_\psi(u^F/s, y/s_y)`.

    **Arguments:** ``dim``, ``obs_dim``, ``width=128``, ``depth=2``, ``scale`` s,
    ``obs_scale`` :math:`s_y`, ``key``.
    """

    mlp: eqx.nn.MLP
    scale: float = eqx.field(static=True)
    obs_scale: float = eqx.field(static=True)

    def __init__(self, dim: int, obs_dim: int, width: int = 128, depth: int = 2, scale: float = 1.0,
                 obs_scale: float = 1.0, *, key):
        self.mlp = eqx.nn.MLP(dim + obs_dim, dim, width, depth, activation=jax.nn.silu, key=key)
        self.scale, self.obs_scale = float(scale), float(obs_scale)

    def __call__(self, u_f, y):
        return u_f + self.scale * self.mlp(jnp.concatenate([u_f / self.scale, y / self.obs_scale]))


_ELEMENTWISE = {"identity": lambda z: z, "arctan": jnp.arctan, "cubic": lambda z: z**3}


class StencilAnalysis(eqx.Module):
    r"""Translation-equivariant local analysis on a periodic ring.

    The observations are scattered onto the grid (``obs_indices``; zero elsewhere) beside a mask
    channel :math:`\mathbb 1[i \text{ observed}]`; the same MLP maps the window of radius ``r``
    of the channels :math:`(u^F/s,\ y/s_y,\ \text{mask})` to the increment at each site:

    .. math:: T_\psi(u^F, y)_i = u^F_i + s\, g_\psi\big(\text{window}_i\big).

    With ``obs_fn`` (the observation operator acting *element-wise* on the observed sites,
    ``"identity"``, ``"arctan"``, ``"cubic"`` or a callable) a fourth channel holds the
    innovation :math:`(y - h(u^F))/s_y` at the observed sites, the input of the Kalman analysis
    :eq:`kalman-analysis`; a linear gain is then one layer away, and training needs far fewer
    steps. Without it the network has to learn :math:`h` itself.

    **Arguments:** ``dim`` d, ``obs_indices`` (grid index of each observed component, length m),
    ``radius=3``, ``width=32``, ``depth=2``, ``scale``, ``obs_scale``, ``obs_fn=None``, ``key``,
    ``dtype`` of the weights (``None``: JAX's default; ``jnp.float32`` halves the CPU cost under
    x64).
    """

    mlp: eqx.nn.MLP
    obs_indices: tuple = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    radius: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    obs_scale: float = eqx.field(static=True)
    obs_fn: object = eqx.field(static=True)

    def __init__(self, dim: int, obs_indices: Sequence[int], radius: int = 3, width: int = 32, depth: int = 2,
                 scale: float = 1.0, obs_scale: float = 1.0, obs_fn=None, *, key, dtype=None):
        idx = _check_indices(obs_indices, dim)
        if isinstance(obs_fn, str):
            if obs_fn not in _ELEMENTWISE:
                raise ValueError(f"obs_fn must be one of {sorted(_ELEMENTWISE)} or a callable, got {obs_fn!r}")
            obs_fn = _ELEMENTWISE[obs_fn]
        n_ch = 3 if obs_fn is None else 4
        self.mlp = eqx.nn.MLP(n_ch * (2 * radius + 1), "scalar", width, depth, activation=jax.nn.silu, key=key,
                              dtype=dtype)
        self.obs_indices, self.dim, self.radius = idx, int(dim), int(radius)
        self.scale, self.obs_scale, self.obs_fn = float(scale), float(obs_scale), obs_fn

    def __call__(self, u_f, y):
        idx = jnp.asarray(self.obs_indices)
        yfield = jnp.zeros(self.dim, u_f.dtype).at[idx].set(y / self.obs_scale)
        mask = jnp.zeros(self.dim, u_f.dtype).at[idx].set(1.0)
        chans = [u_f / self.scale, yfield, mask]
        if self.obs_fn is not None:
            innov = (y - self.obs_fn(u_f[idx])) / self.obs_scale
            chans.append(jnp.zeros(self.dim, u_f.dtype).at[idx].set(innov.astype(u_f.dtype)))
        win = ring_windows(jnp.stack(chans), self.radius)
        return u_f + self.scale * jax.vmap(self.mlp)(win)


def _check_indices(obs_indices, dim):
    idx = tuple(int(i) for i in np.asarray(obs_indices).reshape(-1))
    if not idx or min(idx) < 0 or max(idx) >= dim:
        raise ValueError(f"obs_indices must be non-empty and within [0, {dim}), got {obs_indices!r}")
    return idx


# ----------------------------------------------------------------------------- probabilistic p_phi
class StencilScore(eqx.Module):
    r"""Local, translation-equivariant conditional score network on a periodic ring, for the
    residual model :math:`p_\phi(r \mid y, \tilde u)` of a spatially extended state (Lorenz-96).

    The conditioning vector is :func:`residual_condition`'s :math:`c = (y, \tilde u)`; the
    observations are scattered onto the grid (``obs_indices``) beside a mask. One MLP, shared by
    all sites, maps the window of radius ``r`` of the four channels
    :math:`(x_t, \tilde u, y, \text{mask})` and Fourier features of the diffusion time to the
    noise prediction :math:`\hat\varepsilon_i` at site :math:`i`, and (as
    :class:`~assimilax.diffusion.MLPScore` with ``sde``)

    .. math:: s_\theta(x_t, t, c)_i = -\hat\varepsilon_i/\sigma_t - x_{t,i}/(\alpha_t^2+\sigma_t^2).

    The parameter count does not depend on ``d``, and every site is a training example, so a
    few hundred states train it where a dense ``d``-dimensional MLP score is far harder to learn.

    **Arguments:** ``dim`` d, ``obs_indices`` (length m), ``sde``, ``radius=3``, ``width=64``,
    ``depth=2``, ``n_freq=8``, ``key``, ``dtype``. ``__call__(x (d,), t, cond (m + d,)) -> (d,)``.
    """

    embed: FourierTimeEmbedding
    mlp: eqx.nn.MLP
    sde: eqx.Module
    obs_indices: tuple = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    radius: int = eqx.field(static=True)

    def __init__(self, dim: int, obs_indices: Sequence[int], sde, radius: int = 3, width: int = 64, depth: int = 2,
                 n_freq: int = 8, *, key, dtype=None):
        idx = _check_indices(obs_indices, dim)
        k1, k2 = jax.random.split(key)
        self.embed = FourierTimeEmbedding(n_freq, 4.0, key=k1)
        self.mlp = eqx.nn.MLP(4 * (2 * radius + 1) + 2 * n_freq, "scalar", width, depth, activation=jax.nn.silu,
                              key=k2, dtype=dtype)
        self.sde, self.obs_indices, self.dim, self.radius = sde, idx, int(dim), int(radius)
        self.cond_dim = len(idx) + int(dim)

    def __call__(self, x, t, cond):
        m = len(self.obs_indices)
        idx = jnp.asarray(self.obs_indices)
        wd = self.mlp.layers[0].weight.dtype  # compute in the weights' dtype
        xw, cw = x.astype(wd), cond.astype(wd)
        yfield = jnp.zeros(self.dim, wd).at[idx].set(cw[:m])
        mask = jnp.zeros(self.dim, wd).at[idx].set(1.0)
        win = ring_windows(jnp.stack([xw, cw[m:], yfield, mask]), self.radius)
        emb = jnp.broadcast_to(self.embed(t).astype(wd), (self.dim, self.embed.freqs.shape[0] * 2))
        eps = jax.vmap(self.mlp)(jnp.concatenate([win, emb], axis=1)).astype(x.dtype)
        a, s2 = self.sde.alpha(t), self.sde.sigma2(t)
        return (-eps / jnp.sqrt(s2) - x / (a**2 + s2)).astype(x.dtype)


def residual_condition(y, u_tilde):
    r"""The conditioning vector of :math:`p_\phi`: :math:`c = (y, \tilde u)`, ``(m + d,)``."""
    return jnp.concatenate([y, u_tilde], axis=-1)


class ResidualDiffusion(eqx.Module):
    r"""Conditional score-based model of the analysis residual,
    :math:`p_\phi(r \mid c)`, :math:`c = (y_t, \tilde u_t)` :cite:`mardani2025residual,song2021scorebased`.

    Built on :mod:`assimilax.diffusion`: an :class:`~assimilax.diffusion.MLPScore` with
    ``cond_dim = m + d`` (or, with ``obs_indices`` given, the local :class:`StencilScore` of
    window ``radius``) learns the score of the *standardised* residual
    :math:`(r - \mu_r)/\sigma_r` given the standardised condition, trained by denoising score
    matching (:func:`fit_residual_diffusion`) and sampled with reverse-time Euler--Maruyama
    (:meth:`sample`). Standardisation constants are stored in the Module.

    **Arguments:** ``dim`` d (residual dimension), ``cond_dim`` (``m + d`` for
    :func:`residual_condition`), ``width=128``, ``depth=3``, ``sde`` (default
    ``VPSDE()``), ``n_sample_steps=50`` (reverse-time steps per draw), ``sampler`` (``"heun"``:
    Heun on the probability-flow ODE from a Gaussian draw at ``t_max``, two score evaluations per
    step and far less discretisation bias at few steps; ``"em"``: reverse-SDE Euler--Maruyama),
    ``key``; ``obs_indices``, ``radius``: use :class:`StencilScore` (ring-shaped states);
    ``dtype`` of the weights and standardisation constants.
    """

    net: MLPScore
    sde: eqx.Module
    r_mean: jax.Array
    r_std: jax.Array
    c_mean: jax.Array
    c_std: jax.Array
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    n_sample_steps: int = eqx.field(static=True)
    sampler: str = eqx.field(static=True)

    def __init__(self, dim: int, cond_dim: int, width: int = 128, depth: int = 3, sde=None,
                 n_sample_steps: int = 50, sampler: str = "heun", *, key, obs_indices=None, radius: int = 3,
                 dtype=None):
        if sampler not in ("heun", "em"):
            raise ValueError(f"sampler must be 'heun' or 'em', got {sampler!r}")
        self.sampler = sampler
        sde = VPSDE() if sde is None else sde
        if obs_indices is None:
            self.net = MLPScore(dim, cond_dim, width=width, depth=depth, sde=sde, key=key)
        else:
            self.net = StencilScore(dim, obs_indices, sde, radius=radius, width=width, depth=depth, key=key,
                                    dtype=dtype)
            if self.net.cond_dim != cond_dim:
                raise ValueError(f"a stencil residual model is conditioned on (y, u_tilde): cond_dim must be "
                                 f"len(obs_indices) + dim = {self.net.cond_dim}, got {cond_dim}")
        self.sde = sde
        self.r_mean, self.r_std = jnp.zeros(dim, dtype), jnp.ones(dim, dtype)
        self.c_mean, self.c_std = jnp.zeros(cond_dim, dtype), jnp.ones(cond_dim, dtype)
        self.dim, self.cond_dim, self.n_sample_steps = int(dim), int(cond_dim), int(n_sample_steps)

    def sample(self, conds, *, key, n_steps: int | None = None):
        r"""One residual per condition. ``conds`` ``(n, cond_dim)`` -> ``(n, dim)``."""
        n_steps = self.n_sample_steps if n_steps is None else n_steps
        # the samplers' SDE coefficients come in JAX's default float; integrate in it (the
        # network casts to its own weights' dtype) so that the scan carry keeps one dtype
        dtype = jnp.promote_types(self.r_std.dtype, jnp.result_type(float))
        c = ((conds - self.c_mean[None, :]) / self.c_std[None, :]).astype(dtype)
        k1, k2 = jax.random.split(key)
        std_T = self.sde.prior_std(1.0)
        x_T = std_T * jax.random.normal(k1, (c.shape[0], self.dim), dtype=dtype)
        if self.sampler == "heun":
            x = probability_flow_heun(self.sde, batch_score(self.net, c), x_T, n_steps=n_steps)
        else:
            x = euler_maruyama(self.sde, batch_score(self.net, c), x_T, key=k2, n_steps=n_steps, noise_last=False)
        return self.r_mean[None, :] + self.r_std[None, :] * x


def fit_residual_diffusion(model: ResidualDiffusion, residuals, conds, *, key, n_steps: int = 2000,
                           batch_size: int = 256, learning_rate: float = 1e-3, progress: bool = True):
    r"""Standardise ``residuals`` ``(n, d)`` and ``conds`` ``(n, c)``, store the constants in
    ``model`` and train its score network by denoising score matching with
    :func:`assimilax.diffusion.train_score_network`.

    **Returns:** ``(model, losses (n_steps,))``.
    """
    check_positive_int(n_steps, "n_steps")
    r, c = jnp.asarray(residuals), jnp.asarray(conds)
    check_shape(r, (None, model.dim), "residuals")
    check_shape(c, (r.shape[0], model.cond_dim), "conds")
    check_finite(r, "residuals")
    check_finite(c, "conds")
    dt = model.r_std.dtype
    r, c = r.astype(dt), c.astype(dt)
    r_mean, r_std = jnp.mean(r, axis=0), jnp.std(r, axis=0) + 1e-8
    c_mean, c_std = jnp.mean(c, axis=0), jnp.std(c, axis=0) + 1e-8
    net, losses = train_score_network(model.net, model.sde, (r - r_mean[None, :]) / r_std[None, :], key=key,
                                      n_steps=n_steps, batch_size=batch_size, learning_rate=learning_rate,
                                      cond=(c - c_mean[None, :]) / c_std[None, :], progress=progress)
    model = eqx.tree_at(lambda mdl: (mdl.net, mdl.r_mean, mdl.r_std, mdl.c_mean, mdl.c_std), model,
                        (net, r_mean, r_std, c_mean, c_std))
    return model, losses


__all__ = ["ForecastAnalysis", "LinearAnalysis", "fit_linear_analysis", "MLPAnalysis", "StencilAnalysis",
           "StencilScore", "residual_condition", "ResidualDiffusion", "fit_residual_diffusion"]
