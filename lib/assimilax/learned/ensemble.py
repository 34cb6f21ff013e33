r"""An ensemble-aware learned analysis, trained through the cycle.

The analyses of :mod:`assimilax.learned.analysis` map one state and one observation,
:math:`T_\psi(u^F, y)`: whatever they know of the forecast error is a fixed function of
:math:`(u^F, y)`, the same on every day. The forecast *ensemble* carries the flow-dependent error
statistics that a Kalman analysis uses. :class:`EnsembleStencilAnalysis` gives them to the
network, and can start from a classical analysis:

.. math::
    E^b = B(E^F, y) \quad(\text{the LETKF, or } E^b = E^F), \qquad
    x^a_{n,i} = \bar x^b_i + s\,\delta_\phi(z_i) + e^{\kappa_\phi(z_i)}\,\big(x^b_{n,i} - \bar x^b_i\big),

where, at every site :math:`i` of a periodic ring, :math:`z_i` holds the window of radius
:math:`r` of permutation-invariant statistics of the ensembles:

* the forecast mean and spread, and (with a base) the base analysis mean and spread;
* the observation, its mask, the innovation of the forecast mean :math:`y - h(\bar x^F)` and
  the observation-space forecast spread, at the observed sites;
* the local ensemble covariances with the observed neighbours,
  :math:`c_{ik} = \tfrac1{N-1}\sum_n a_{n,i}\, b_{n,i+k}` (:math:`a` the state anomalies,
  :math:`b` the observed anomalies at their sites, :math:`|k| \le r`), and the
  covariance-weighted innovation
  :math:`g_i = \sum_k c_{ik}\,(y - h(\bar x^F))_{i+k} / (\operatorname{var} b_{i+k} + \sigma^2_{i+k})`,
  a diagonal-gain EnKF increment, so that a Kalman-like update is one layer away;
* a learned pooled encoding :math:`\tfrac1N \sum_n \varphi(\text{window of } a_n, b_n)`
  (Deep Sets :cite:`zaheer2017deep`), the permutation-invariant encoder of the anomalies.

:math:`\delta_\phi` moves the mean and :math:`\kappa_\phi` rescales the anomalies site by site (a
learned local inflation); both come from the same network, whose last layer starts at zero, so an
untrained :class:`EnsembleStencilAnalysis` *is* its base: with the LETKF as base it cannot start
worse than it. Training a learned analysis through the cycle against reference states is the
approach of :cite:`bocquet2024accurate`, whose analysis sees no ensemble; here it does.

:func:`fit_ensemble_analysis` trains it through :math:`k` cycles of the filter
(truncated backpropagation through time; the LETKF is differentiable through
:func:`~assimilax.filters.local_etkf_transform`) on the fair CRPS of the analysis ensemble
(or the squared error of its mean) against the reference states, after :math:`k_0` cycles of
spin-up. It cycles in :func:`~assimilax.learned.learned_filter` like any analysis.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .._ensemble import member_mean
from .._training import adam_cosine, run_chunked, strong_types
from .._validation import check_positive_int
from ..filters import LETKFAnalysis, observation_locations
from ..metrics import crps_ensemble
from .data import TrajectoryData
from .forward import ModelForward, as_forward, ring_windows


def _zero_last_layer(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
    last = mlp.layers[-1]
    return eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))


class EnsembleStencilAnalysis(eqx.Module):
    r"""Ensemble-aware local analysis ``G(E^F (N, d), y (m,)) -> E^a (N, d)`` on a periodic ring
    (module docstring).

    **Arguments:**

    - ``observation``: the observation operator (element-wise, located at state components:
      :class:`~assimilax.observations.LinearObservation` selecting components, or a nonlinear
      operator with ``indices``); it gives :math:`h`, the observed sites and :math:`\sigma^2`.
    - ``dim`` :math:`d`; ``base``: an ensemble analysis (e.g.
      :class:`~assimilax.filters.LETKFAnalysis`) or ``None`` (:math:`E^b = E^F`).
    - ``radius`` :math:`r` of the windows, ``width``/``depth`` of the head MLP, ``features``
      :math:`p` of the Deep Sets encoder (``0``: none), ``scale`` :math:`s` of the states,
      ``obs_scale`` of the observations, ``key``, ``dtype`` of the weights.
    """

    head: eqx.nn.MLP
    encoder: eqx.nn.MLP | None
    base: object
    observation: object
    obs_indices: tuple = eqx.field(static=True)
    noise_var: tuple = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    radius: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    obs_scale: float = eqx.field(static=True)
    acts_on_ensemble: bool = eqx.field(static=True, default=True)

    def __init__(self, observation, dim: int, *, base=None, radius: int = 3, width: int = 32, depth: int = 2,
                 features: int = 8, scale: float = 1.0, obs_scale: float = 1.0, key, dtype=None):
        check_positive_int(dim, "dim")
        check_positive_int(radius, "radius")
        if observation.state_dim != dim:
            raise ValueError(f"observation operator expects states of dimension {observation.state_dim}, got dim={dim}")
        if base is not None and not getattr(base, "acts_on_ensemble", False):
            raise ValueError(f"base must be an ensemble analysis (E, y) -> E such as LETKFAnalysis, "
                             f"got {type(base).__name__}")
        if features < 0:
            raise ValueError(f"features must be >= 0, got {features}")
        locs = np.asarray(observation_locations(observation), dtype=int)
        if len(np.unique(locs)) != len(locs):
            raise ValueError("EnsembleStencilAnalysis needs at most one observation per site")
        var = np.broadcast_to(np.asarray(jnp.diagonal(jnp.atleast_2d(observation.R))), locs.shape)
        self.obs_indices, self.noise_var = tuple(int(i) for i in locs), tuple(float(v) for v in var)
        self.dim, self.radius, self.scale, self.obs_scale = int(dim), int(radius), float(scale), float(obs_scale)
        self.base, self.observation = base, observation
        n_fields = 8 if base is None else 10  # windowed statistics per site
        w = 2 * radius + 1
        ke, kh = jax.random.split(key)
        self.encoder = (None if features == 0 else
                        eqx.nn.MLP(2 * w, features, width, 1, activation=jax.nn.silu, key=ke, dtype=dtype))
        n_in = n_fields * w + w + features
        self.head = _zero_last_layer(eqx.nn.MLP(n_in, 2, width, depth, activation=jax.nn.silu, key=kh, dtype=dtype))

    def statistics(self, E: Float[Array, "N d"], y: Float[Array, " m"]):
        r"""The per-site inputs :math:`z_i` ``(d, n_in)`` and the base ensemble ``(N, d)``."""
        s, sy = self.scale, self.obs_scale
        N, d = E.shape
        dt = E.dtype
        idx = jnp.asarray(self.obs_indices)
        obs = jax.tree_util.tree_map(lambda z: jax.lax.stop_gradient(z).astype(dt) if eqx.is_inexact_array(z) else z,
                                     self.observation)
        scatter = lambda v: jnp.zeros(d, dt).at[idx].set(v.astype(dt))  # noqa: E731
        mu = member_mean(E)
        A = E - mu[None, :]
        Eo = jax.vmap(obs)(E)
        B = Eo - member_mean(Eo)[None, :]
        innov = y.astype(dt) - obs(mu)
        var_b = jnp.sum(B**2, axis=0) / (N - 1)
        r2 = jnp.asarray(self.noise_var, dt)
        Bs = jnp.zeros((N, d), dt).at[:, idx].set(B)  # observed anomalies at their sites
        gain_innov = scatter(innov / (var_b + r2))
        covs = jnp.stack([jnp.sum(A * jnp.roll(Bs, -k, axis=1), axis=0) / (N - 1)
                          for k in range(-self.radius, self.radius + 1)], axis=1)  # (d, 2r+1)
        g = jnp.sum(covs * ring_windows(gain_innov[None, :], self.radius), axis=1)
        spread = jnp.sqrt(jnp.sum(A**2, axis=0) / (N - 1))
        fields = [mu / s, spread / s, scatter(y) / sy, scatter(jnp.ones_like(y)), scatter(innov) / sy,
                  scatter(jnp.sqrt(var_b)) / sy, g / s, jnp.log(spread / s + 1e-3)]
        Eb = E if self.base is None else self.base(E, y).astype(dt)
        if self.base is not None:
            mub = member_mean(Eb)
            spb = jnp.sqrt(jnp.sum((Eb - mub[None, :]) ** 2, axis=0) / (N - 1))
            fields += [mub / s, spb / s]
        z = [ring_windows(jnp.stack(fields), self.radius), covs / (s * sy)]
        if self.encoder is not None:
            per_member = jax.vmap(lambda a, b: ring_windows(jnp.stack([a / s, b / sy]), self.radius))(A, Bs)
            z.append(member_mean(jax.vmap(jax.vmap(self.encoder))(per_member)))
        return jnp.concatenate(z, axis=1), Eb

    def __call__(self, E: Float[Array, "N d"], y: Float[Array, " m"]) -> Float[Array, "N d"]:
        z, Eb = self.statistics(E, y)
        out = jax.vmap(self.head)(z.astype(self.head.layers[0].weight.dtype)).astype(E.dtype)  # (d, 2)
        mub = member_mean(Eb)
        return (mub + self.scale * out[:, 0])[None, :] + jnp.exp(out[:, 1])[None, :] * (Eb - mub[None, :])


class EnsembleFit(NamedTuple):
    """Result of :func:`fit_ensemble_analysis`: the trained analysis and the loss per step."""

    analysis: EnsembleStencilAnalysis
    history: np.ndarray


def unrolled_ensemble_loss(analysis, forward, E0: Float[Array, "N d"], states: Float[Array, "k d"],
                           ys: Float[Array, "k m"], *, discard: int, loss: str = "crps"):
    r"""Loss of one window: the ensemble ``E0`` cycled :math:`E^A_j = G(F(E^A_{j-1}), y_j)` through
    the ``k`` reference states and observations; the mean over cycles :math:`j > k_0`
    (``discard``) of the fair CRPS (:func:`~assimilax.metrics.crps_ensemble`) or, with
    ``loss="mse"``, of the squared error of the analysis mean."""

    def step(E, inp):
        truth, y = inp
        E = analysis(jax.vmap(forward)(E), y)
        if loss == "crps":
            val = crps_ensemble(E, truth)
        else:
            val = jnp.mean((member_mean(E) - truth) ** 2)
        return E, val

    _, vals = jax.lax.scan(step, E0, (states, ys))
    return jnp.mean(vals[discard:])


def ensemble_windows(data: TrajectoryData, ensembles, key, batch_size: int, unroll: int, *, n_members: int,
                     init_std: float):
    r"""``batch_size`` windows of ``unroll`` cycles, with their initial ensembles ``(B, N, d)``.

    With ``ensembles`` ``(n, T, N, d)`` (analysis ensembles of a filter cycled on the
    trajectories, times ``1..T``) a window starts from the stored ensemble at a time
    :math:`t_0 \in [1, T-k]`, so the network is trained on the ensembles it will meet when
    cycling; with ``None`` it starts at :math:`t_0 \in [0, T-k]` from ``n_members`` draws
    :math:`u^{ref}_{t_0} + \sigma_0\xi`. Returns ``(E0, states (B, k, d), ys (B, k, m))``. Jit-able.
    """
    x0, S, Y = data
    n, T, d = S.shape
    ki, kt, kz = jax.random.split(key, 3)
    i = jax.random.randint(ki, (batch_size,), 0, n)
    if ensembles is None:
        t0 = jax.random.randint(kt, (batch_size,), 0, T - unroll + 1)
        full = jnp.concatenate([x0[:, None, :], S], axis=1)
        E0 = full[i, t0][:, None, :] + init_std * jax.random.normal(kz, (batch_size, n_members, d), S.dtype)
    else:
        t0 = jax.random.randint(kt, (batch_size,), 1, T - unroll + 1)
        E0 = ensembles[i, t0 - 1]
    offs = t0[:, None] + jnp.arange(unroll)[None, :]  # rows of S and Y for times t0+1 .. t0+k
    return E0, S[i[:, None], offs], Y[i[:, None], offs]


@eqx.filter_jit
def _ensemble_steps(model, opt_state, forward, arrays, ensembles, key, n, optimizer, setting):
    # n Adam steps of fit_ensemble_analysis in one scan (static: n, the optimiser, the setting)
    batch_size, unroll, n_members, init_std, discard, loss = setting
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(p, batch):
        G = eqx.combine(p, static)
        per = jax.vmap(lambda E0, xs, ys: unrolled_ensemble_loss(G, forward, E0, xs, ys, discard=discard,
                                                                 loss=loss))(*batch)
        return jnp.mean(per)

    def step(carry, k):
        p, s = carry
        batch = ensemble_windows(arrays, ensembles, k, batch_size, unroll, n_members=n_members, init_std=init_std)
        val, grads = jax.value_and_grad(loss_fn)(p, batch)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), val

    (params, opt_state), vals = jax.lax.scan(step, (params, opt_state), jax.random.split(key, n))
    return eqx.combine(params, static), opt_state, vals


def fit_ensemble_analysis(analysis: EnsembleStencilAnalysis, forward, data: TrajectoryData, *, key,
                          n_members: int = 20, unroll: int = 8, unroll_discard: int = 3, init_std: float = 1.0,
                          loss: str = "crps", n_steps: int = 500, batch_size: int = 8, learning_rate: float = 1e-3,
                          steps_per_obs: int = 1, ensembles=None, optimizer=None, progress: bool = True,
                          chunk: int = 50,
                          desc: str = "ensemble analysis") -> EnsembleFit:
    r"""Train an ensemble analysis through ``unroll`` cycles of the filter (module docstring).

    **Arguments:** ``analysis``; ``forward`` (a learned ``F(x) -> x`` or a
    :class:`~assimilax.models.DynamicalModel`, run ``steps_per_obs`` steps, not trained);
    ``data`` (:class:`~assimilax.learned.TrajectoryData`); ``key`` (same key, same numbers);
    ``n_members`` :math:`N`; ``unroll`` :math:`k`; ``unroll_discard`` :math:`k_0`; ``init_std``
    (spread of the initial members around the reference state); ``ensembles`` (optional
    ``(n, T, N, d)`` analysis ensembles of a filter cycled on ``data``, e.g. the LETKF's or the
    previous round's, from which the windows start instead, :func:`ensemble_windows`); ``loss`` (``"crps"`` or
    ``"mse"``); ``n_steps``, ``batch_size`` (windows per step), ``learning_rate`` (Adam with cosine
    decay unless ``optimizer``); ``progress``, ``chunk``, ``desc`` (tqdm bar, steps per jitted
    scan, label).

    **Returns:** :class:`EnsembleFit` ``(analysis, history)``.
    """
    check_positive_int(n_steps, "n_steps")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(unroll, "unroll")
    if n_members < 2:
        raise ValueError(f"n_members must be >= 2, got {n_members}")
    if not 0 <= unroll_discard < unroll:
        raise ValueError(f"need 0 <= unroll_discard < unroll, got unroll={unroll}, unroll_discard={unroll_discard}")
    if loss not in ("crps", "mse"):
        raise ValueError(f"loss must be 'crps' or 'mse', got {loss!r}")
    if not init_std >= 0:
        raise ValueError(f"init_std must be >= 0, got {init_std}")
    if not getattr(analysis, "acts_on_ensemble", False):
        raise ValueError(f"analysis must act on ensembles (E, y) -> E, got {type(analysis).__name__}")
    if not isinstance(data, TrajectoryData):
        raise ValueError(f"data must be a TrajectoryData, got {type(data).__name__}")
    x0, S, Y = (jnp.asarray(a) for a in data)
    if S.ndim != 3 or Y.ndim != 3 or x0.shape != (S.shape[0], S.shape[2]) or Y.shape[:2] != S.shape[:2]:
        raise ValueError(f"mismatched trajectory shapes: x0 {x0.shape}, states {S.shape}, observations {Y.shape}")
    if S.shape[2] != analysis.dim:
        raise ValueError(f"trajectories have dimension {S.shape[2]}, the analysis {analysis.dim}")
    if unroll > S.shape[1] - 1:
        raise ValueError(f"unroll={unroll} needs trajectories of more than {unroll} cycles, got {S.shape[1]}")
    for a, name in ((x0, "data.x0"), (S, "data.states"), (Y, "data.observations")):
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"{name} contains non-finite values")
    forward = as_forward(forward, steps_per_obs)
    if isinstance(forward, ModelForward) and forward.model.dim != analysis.dim:
        raise ValueError(f"the model has dimension {forward.model.dim}, the analysis {analysis.dim}")
    arrays = TrajectoryData(x0, S, Y)
    if ensembles is not None:
        ensembles = jnp.asarray(ensembles, S.dtype)
        if ensembles.shape[:2] != S.shape[:2] or ensembles.shape[3:] != S.shape[2:] or ensembles.ndim != 4:
            raise ValueError(f"ensembles must have shape (n, T, N, d) = {S.shape[:2] + ('N',) + S.shape[2:]}, "
                             f"got {ensembles.shape}")
        n_members = ensembles.shape[2]
        if not bool(jnp.all(jnp.isfinite(ensembles))):
            raise ValueError("ensembles contains non-finite values")
    if optimizer is None:
        optimizer = adam_cosine(float(learning_rate), int(n_steps))
    analysis = strong_types(analysis)
    opt_state = optimizer.init(eqx.filter(analysis, eqx.is_inexact_array))
    # hashable settings: the module-level jitted step compiles once per setting and data shape (a
    # second DAgger round of the same analysis reuses the first round's program)
    setting = (int(batch_size), int(unroll), int(n_members), float(init_std), int(unroll_discard), loss)

    def chunk_run(state, k, n):
        model, s, vals = _ensemble_steps(*state, forward, arrays, ensembles, k, n, optimizer, setting)
        return (model, s), vals

    (analysis, _), history = run_chunked(chunk_run, (analysis, opt_state), key, n_steps, chunk=chunk,
                                         progress=progress, desc=desc)
    return EnsembleFit(analysis, history)


__all__ = ["EnsembleStencilAnalysis", "EnsembleFit", "fit_ensemble_analysis", "unrolled_ensemble_loss",
           "ensemble_windows"]
