r"""Mixtures of experts for one-step and multi-step prediction from a window of observations.

A :class:`MixtureOfExperts` maps a window :math:`w_t = (y_{t-W+1}, \dots, y_t)` to

.. math::
    \hat y_{t+1} = y_t + s\sum_{i=1}^K g_i(w_t)\, E_i(\phi(w_t)),

with :math:`K` MLP experts :math:`E_i`, features :math:`\phi` (the standardised window and its
scaled increments), an output scale :math:`s` and gates :math:`g` from a router: a softmax
gate (linear or with one hidden layer) or a small attention router over the window (the "MoE-transformer" of the
April 16 notes), sparsified to the top :math:`k` experts :cite:`shazeer2017outrageously`. With
:math:`k = 1` the gate is the router probability of the chosen expert, as in the Switch
Transformer :cite:`fedus2022switch`; with :math:`k > 1` the kept probabilities are renormalised.

The training loss (:func:`moe_loss`) adds to the normalised squared error the regularisers

- load balancing :cite:`fedus2022switch`: :math:`K \sum_i f_i P_i`, :math:`f_i` the fraction of
  windows whose top expert is :math:`i`, :math:`P_i` the mean router probability of :math:`i`;
- router z-loss :cite:`zoph2022st`: :math:`\frac1B\sum_b (\log\sum_i e^{z_{b,i}})^2`;
- supervised routing alignment (regime labels :math:`k_t` known): :math:`-\frac1B\sum_b \log p_{k_b}(w_b)`,
  the router's cross-entropy with expert :math:`k` assigned to regime :math:`k`;
- unsupervised temporal consistency (no labels): over consecutive windows of a training segment,
  :math:`\frac{1}{B(L-1)}\sum_{b,l} \tfrac12\lVert p(w_{b,l+1}) - p(w_{b,l})\rVert^2`: routes that
  change rarely, as a regime does; with load balancing it cannot collapse onto one expert;
- unsupervised information maximisation (no labels): :math:`-\hat I(\text{route}; w) =
  \frac1B\sum_b H(p(w_b)) - H(\bar p)`, :math:`\bar p = \frac1B\sum_b p(w_b)`
  (:func:`routing_information`): routes confident per window and balanced over the batch, the
  objective of regularised information maximisation :cite:`krause2010rim` and of invariant
  information clustering :cite:`ji2019iic`; it combines with the consistency term.

Each has its own weight in :class:`MoELossWeights`; the weights are arrays, so variants of the
loss vmap together. ``oracle=True`` replaces the gates by the one-hot true regime (the oracle
that knows the switch). ``regime_input=True`` builds one MLP that takes the gate vector as
:math:`K` extra inputs, :math:`\hat y_{t+1} = y_t + s\,E(\phi(w_t), g)`; with ``oracle=True``
that is a single network conditioned on the one-hot true regime, which shares its weights (and
the data) across regimes.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from .._training import run_chunked
from .._validation import check_finite


class GateRouter(eqx.Module):
    r"""Softmax gate on the window's features: logits :math:`z = A\phi(w) + c` (``hidden=0``,
    the linear gate of :cite:`shazeer2017outrageously`) or :math:`z = A_2\tanh(A_1\phi(w) + c_1) + c_2`
    (``hidden > 0`` units: a regime that is a nonlinear function of the window can be routed)."""

    layers: tuple

    def __init__(self, in_size: int, n_experts: int, *, hidden: int = 0, key):
        if not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"hidden must be a non-negative integer, got {hidden!r}")
        k1, k2 = jax.random.split(key)
        if hidden == 0:
            self.layers = (eqx.nn.Linear(in_size, n_experts, key=k1),)
        else:
            self.layers = (eqx.nn.Linear(in_size, hidden, key=k1), eqx.nn.Linear(hidden, n_experts, key=k2))

    def __call__(self, features: Float[Array, " f"], window: Float[Array, "W c"]) -> Float[Array, " K"]:
        h = self.layers[0](features)
        return h if len(self.layers) == 1 else self.layers[1](jnp.tanh(h))


class AttentionRouter(eqx.Module):
    r"""A one-layer attention router over the window :cite:`vaswani2017attention`: each
    standardised observation and its increment are embedded (:math:`e` channels) with a learned
    position vector, one multi-head self-attention layer with a residual connection and layer
    normalisation mixes the window, and the mean over positions gives the logits through a
    linear read-out."""

    embed: eqx.nn.Linear
    position: Float[Array, "W e"]
    attention: eqx.nn.MultiheadAttention
    norm: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __init__(self, window: int, obs_dim: int, n_experts: int, *, embed_size: int = 16, n_heads: int = 2, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.embed = eqx.nn.Linear(2 * obs_dim, embed_size, key=k1)
        self.position = 0.1 * jax.random.normal(k2, (window, embed_size))
        self.attention = eqx.nn.MultiheadAttention(n_heads, embed_size, key=k3)
        self.norm = eqx.nn.LayerNorm(embed_size)
        self.readout = eqx.nn.Linear(embed_size, n_experts, key=k4)

    def __call__(self, features, window_tokens: Float[Array, "W c"]) -> Float[Array, " K"]:
        h = jax.vmap(self.embed)(window_tokens) + self.position
        h = jax.vmap(self.norm)(h + self.attention(h, h, h))
        return self.readout(jnp.mean(h, axis=0))


class Routing(NamedTuple):
    """Router output for one window: ``logits`` and ``probs`` ``(K,)``, sparse ``gates`` ``(K,)``."""

    logits: jax.Array
    probs: jax.Array
    gates: jax.Array


class MixtureOfExperts(eqx.Module):
    r"""``K`` MLP experts with a router; see the module docstring for the prediction.

    **Arguments:**

    - ``window``: :math:`W`, observations per input window; ``obs_dim``: :math:`m`.
    - ``n_experts``: :math:`K` (``1`` gives a single MLP: the equal-parameter baseline).
    - ``width``, ``depth``: hidden width and number of hidden layers of each expert (tanh).
    - ``top_k``: experts kept per window (``1 <= top_k <= K``).
    - ``router``: ``"gate"`` (:class:`GateRouter` with ``router_hidden`` units; ``0``: linear)
      or ``"attention"`` (:class:`AttentionRouter` with ``embed_size`` channels).
    - ``loc``, ``scale``: standardisation of the observations (floats); ``step_scale``: the
      scale :math:`s` of one-step increments (also scales the input increments).
    - ``regime_input``: one MLP (not ``K``) that takes the gates as ``K`` extra inputs; with the
      one-hot true regime as gates (``oracle``) it is the regime-conditioned network.
    - ``key``: PRNG key.

    ``__call__`` acts on one window ``(W, m)``; use ``jax.vmap`` for a batch.
    """

    experts: eqx.nn.MLP
    router: eqx.Module
    window: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)
    n_experts: int = eqx.field(static=True)
    top_k: int = eqx.field(static=True)
    loc: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    step_scale: float = eqx.field(static=True)
    regime_input: bool = eqx.field(static=True)

    def __init__(self, window: int, obs_dim: int, n_experts: int, *, width: int = 32, depth: int = 2,
                 top_k: int = 1, router: str = "gate", router_hidden: int = 16, loc: float = 0.0, scale: float = 1.0,
                 step_scale: float = 1.0, embed_size: int = 16, regime_input: bool = False, key):
        for v, name in ((window, "window"), (obs_dim, "obs_dim"), (n_experts, "n_experts"), (width, "width"),
                        (depth, "depth")):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if window < 2:
            raise ValueError(f"window must be at least 2 (the increments need two observations), got {window}")
        if not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be an integer in [1, n_experts={n_experts}], got {top_k!r}")
        if not (scale > 0 and step_scale > 0):
            raise ValueError(f"scale and step_scale must be positive, got {scale} and {step_scale}")
        self.window, self.obs_dim, self.n_experts, self.top_k = window, obs_dim, n_experts, top_k
        self.loc, self.scale, self.step_scale = float(loc), float(scale), float(step_scale)
        self.regime_input = bool(regime_input)
        n_feat = (2 * window - 1) * obs_dim
        k_exp, k_rt = jax.random.split(key)
        n_in = n_feat + n_experts if self.regime_input else n_feat
        make = lambda k: eqx.nn.MLP(n_in, obs_dim, width, depth, activation=jnp.tanh, key=k)  # noqa: E731
        self.experts = eqx.filter_vmap(make)(jax.random.split(k_exp, 1 if self.regime_input else n_experts))
        if router == "gate":
            self.router = GateRouter(n_feat, n_experts, hidden=router_hidden, key=k_rt)
        elif router == "attention":
            self.router = AttentionRouter(window, obs_dim, n_experts, embed_size=embed_size, key=k_rt)
        else:
            raise ValueError(f"router must be 'gate' or 'attention', got {router!r}")

    def _tokens(self, window):
        z = (window - self.loc) / self.scale
        dz = jnp.diff(window, axis=0) / self.step_scale
        return z, jnp.concatenate([jnp.zeros_like(dz[:1]), dz], axis=0)

    def features(self, window: Float[Array, "W m"]) -> Float[Array, " f"]:
        r""":math:`\phi(w)`: the standardised window and its increments over ``step_scale``, flattened."""
        z, dz = self._tokens(window)
        return jnp.concatenate([z.reshape(-1), dz[1:].reshape(-1)])

    def route(self, window: Float[Array, "W m"]) -> Routing:
        """Router logits, probabilities and top-k gates for one window."""
        z, dz = self._tokens(window)
        feats = jnp.concatenate([z.reshape(-1), dz[1:].reshape(-1)])
        logits = self.router(feats, jnp.concatenate([z, dz], axis=1))
        probs = jax.nn.softmax(logits)
        if self.top_k == self.n_experts and self.n_experts > 1:
            gates = probs
        else:
            vals, idx = jax.lax.top_k(probs, self.top_k)
            if self.top_k > 1:
                vals = vals / jnp.sum(vals)
            gates = jnp.zeros_like(probs).at[idx].set(vals)
            if self.n_experts == 1:
                gates = jnp.ones_like(probs)
        return Routing(logits, probs, gates)

    def expert_outputs(self, window: Float[Array, "W m"]) -> Float[Array, "K m"]:
        """Every expert's scaled increment for one window (dense: all ``K`` are evaluated);
        with ``regime_input``, the network's increment for each one-hot regime."""
        feats = self.features(window)
        if self.regime_input:
            eye = jnp.eye(self.n_experts, dtype=feats.dtype)
            return jax.vmap(lambda g: self._conditioned(feats, g))(eye)
        return eqx.filter_vmap(lambda e: e(feats))(self.experts) * self.step_scale

    def _conditioned(self, feats, gates):
        net = jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, self.experts)
        return net(jnp.concatenate([feats, gates])) * self.step_scale

    def combine(self, window: Float[Array, "W m"], gates: Float[Array, " K"]) -> Float[Array, " m"]:
        """The prediction :math:`y_t + s\\sum_i g_i E_i` for given gates (with ``regime_input``,
        :math:`y_t + s E(\\phi, g)`)."""
        if self.regime_input:
            return window[-1] + self._conditioned(self.features(window), gates)
        return window[-1] + gates @ self.expert_outputs(window)

    def __call__(self, window: Float[Array, "W m"], gates: Optional[Float[Array, " K"]] = None):
        """One-step prediction ``(m,)`` and the :class:`Routing`; ``gates`` overrides the router's."""
        routing = self.route(window)
        return self.combine(window, routing.gates if gates is None else gates), routing


def count_parameters(module) -> int:
    """Number of scalar parameters (inexact array leaves) of an equinox module."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_inexact_array))))


def equal_parameter_width(n_params: int, window: int, obs_dim: int, *, depth: int = 2) -> int:
    """The hidden width of a single-expert :class:`MixtureOfExperts` (linear gate,
    ``router_hidden=0``) whose parameter count is closest to ``n_params``."""
    if not isinstance(n_params, int) or n_params < 1:
        raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
    f = (2 * window - 1) * obs_dim

    def count(w):  # experts: f*w + w + (depth-1)(w*w + w) + w*m + m; router: f + 1
        return f * w + w + (depth - 1) * (w * w + w) + w * obs_dim + obs_dim + f + 1

    widths = np.arange(1, 4096)
    return int(widths[np.argmin(np.abs(np.array([count(w) for w in widths]) - n_params))])


COMPARISON_KINDS = ("gate", "attention", "mlp", "wide", "conditioned")


def comparison_model(kind: str, window: int, obs_dim: int, n_regimes: int, *, width: int, depth: int = 2,
                     router_hidden: int = 16, loc: float = 0.0, scale: float = 1.0, step_scale: float = 1.0,
                     key) -> MixtureOfExperts:
    """One model of the MoE comparison (chapter 45), all with ``depth``-layer tanh MLP experts:

    - ``"gate"``: ``n_regimes`` experts of ``width`` with the softmax gate (``router_hidden`` units);
    - ``"attention"``: the same experts with the attention router;
    - ``"mlp"``: one expert whose width (``moe.equal_parameter_width``) matches the gate MoE's
      parameter count, linear gate over one expert (a single MLP of equal size);
    - ``"wide"``: ``n_regimes`` experts each as wide as ``"mlp"`` (the oracle with ``n_regimes``
      times the capacity);
    - ``"conditioned"``: one network of the ``"mlp"`` width that takes the gates (the one-hot
      regime under ``oracle=True``) as extra inputs (``regime_input=True``).
    """
    if kind not in COMPARISON_KINDS:
        raise ValueError(f"kind must be one of {COMPARISON_KINDS}, got {kind!r}")
    common = dict(depth=depth, loc=loc, scale=scale, step_scale=step_scale, key=key)
    if kind in ("gate", "attention"):
        return MixtureOfExperts(window, obs_dim, n_regimes, width=width, router=kind, router_hidden=router_hidden,
                                **common)
    gate = MixtureOfExperts(window, obs_dim, n_regimes, width=width, router_hidden=router_hidden, **common)
    w = equal_parameter_width(count_parameters(gate), window, obs_dim, depth=depth)
    if kind == "mlp":
        return MixtureOfExperts(window, obs_dim, 1, width=w, router_hidden=0, **common)
    if kind == "wide":
        return MixtureOfExperts(window, obs_dim, n_regimes, width=w, router_hidden=router_hidden, **common)
    return MixtureOfExperts(window, obs_dim, n_regimes, width=w, router_hidden=0, regime_input=True, **common)


class MoELossWeights(NamedTuple):
    """Weights of the regularisers in :func:`moe_loss` (floats or arrays; vmap over them)."""

    balance: float = 0.0
    z_loss: float = 0.0
    alignment: float = 0.0
    consistency: float = 0.0
    information: float = 0.0


class MoELossTerms(NamedTuple):
    """The unweighted terms of :func:`moe_loss` (scalars)."""

    prediction: jax.Array
    balance: jax.Array
    z_loss: jax.Array
    alignment: jax.Array
    consistency: jax.Array
    information: jax.Array


def load_balancing_loss(probs: Float[Array, "n K"]) -> jax.Array:
    r"""Switch Transformer auxiliary loss :math:`K\sum_i f_i P_i` :cite:`fedus2022switch`
    (1 at uniform routing; :math:`f_i` from the argmax, so its gradient flows through :math:`P_i`)."""
    k = probs.shape[-1]
    f = jnp.mean(jax.nn.one_hot(jnp.argmax(probs, axis=-1), k), axis=0)
    return k * jnp.sum(f * jnp.mean(probs, axis=0))


def router_z_loss(logits: Float[Array, "n K"]) -> jax.Array:
    r"""ST-MoE router z-loss :math:`\frac1n\sum_b (\log\sum_i e^{z_{b,i}})^2` :cite:`zoph2022st`."""
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) ** 2)


def routing_information(probs: Float[Array, "n K"]) -> jax.Array:
    r"""The mutual information between the route and the input under the batch's empirical
    distribution, :math:`\hat I = H(\bar p) - \frac1n\sum_b H(p_b)` with :math:`\bar p` the
    mean of the rows ``probs`` :math:`p_b` and :math:`H(p) = -\sum_i p_i\log p_i` (nats).

    It lies in :math:`[0, \log K]`: 0 when every window has the same route distribution (one
    expert for all, or uniform for each), :math:`\log K` exactly when each window is routed with
    certainty and the experts are used equally often :cite:`krause2010rim,ji2019iic`.
    """
    ent = lambda p: -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)  # noqa: E731
    return ent(jnp.mean(probs, axis=0)) - jnp.mean(ent(probs))


def moe_loss(model: MixtureOfExperts, windows: Float[Array, "B L W m"], targets: Float[Array, "B L m"],
             labels: Int[Array, "B L"], weights: MoELossWeights, oracle=False):
    r"""Training loss on ``B`` segments of ``L`` consecutive windows:

    .. math::
        \mathcal L = \frac{1}{BLm}\sum \frac{(\hat y - y)^2}{s^2} + \lambda_{b} K\sum_i f_i P_i
        + \lambda_z \overline{(\log\textstyle\sum e^{z})^2} - \lambda_a \overline{\log p_{k}}
        + \lambda_c \overline{\tfrac12\lVert p_{l+1} - p_l\rVert^2} - \lambda_i \hat I(\text{route}; w),

    :math:`\hat I` from ``moe.routing_information`` over all ``B L`` windows of the batch.

    ``oracle`` (bool or 0-d array): use the one-hot regime ``labels`` as gates.
    **Returns:** ``(total, MoELossTerms)``.
    """
    flat_w = windows.reshape((-1,) + windows.shape[2:])
    routing = jax.vmap(model.route)(flat_w)
    onehot = jax.nn.one_hot(labels.reshape(-1), model.n_experts)
    gates = jnp.where(jnp.asarray(oracle), onehot, routing.gates)
    pred = jax.vmap(model.combine)(flat_w, gates)
    err = jnp.mean(((pred - targets.reshape(pred.shape)) / model.step_scale) ** 2)
    probs = routing.probs
    bal = load_balancing_loss(probs)
    zl = router_z_loss(routing.logits)
    align = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(routing.logits), axis=-1))
    p_seq = probs.reshape(windows.shape[:2] + (model.n_experts,))
    cons = 0.5 * jnp.mean(jnp.sum(jnp.diff(p_seq, axis=1) ** 2, axis=-1)) if windows.shape[1] > 1 else 0.0 * err
    info = -routing_information(probs)
    total = (err + weights.balance * bal + weights.z_loss * zl + weights.alignment * align
             + weights.consistency * cons + weights.information * info)
    return total, MoELossTerms(err, bal, zl, align, cons, info)


def observation_regimes(regimes: Int[Array, " n_steps"], steps_per_obs: int) -> Int[Array, " T"]:
    """Regime of each observation interval: observation ``t`` (after ``(t+1) steps_per_obs``
    model steps) gets the regime of the last model step before it, ``regimes[(t+1) k - 1]``."""
    regimes = jnp.asarray(regimes)
    if not isinstance(steps_per_obs, int) or steps_per_obs < 1:
        raise ValueError(f"steps_per_obs must be a positive integer, got {steps_per_obs!r}")
    n = regimes.shape[-1] // steps_per_obs
    return regimes[..., steps_per_obs - 1:n * steps_per_obs:steps_per_obs]


class SwitchingData(NamedTuple):
    """One switching trajectory for the MoE experiments (see :func:`switching_data`)."""

    states: Float[Array, "T 3"]
    observations: Float[Array, "T m"]
    labels: Int[Array, " T"]
    regimes: Int[Array, " n_steps"]
    x0: Float[Array, " 3"]


def switching_data(key, dwell_time, forcing, n_obs: int, *, observation, n_regimes: int, dt: float = 0.01,
                   steps_per_obs: int = 5, burn_in: int = 300, x0_std: float = 2.0) -> SwitchingData:
    r"""Simulate one trajectory of :class:`assimilax.models.SwitchingLorenz63` with ``n_regimes``
    Palmer forcings of magnitude ``forcing`` and mean dwell time ``dwell_time``, observed by
    ``observation`` every ``steps_per_obs`` RK4 steps of ``dt``.

    The start is :math:`(1, 1, 25) + \sigma_0 z`, :math:`z \sim N(0, I)` (first half of ``key``);
    the regime path and the noise come from the second half through
    :func:`assimilax.models.simulate_switching` with ``burn_in`` steps. ``labels`` are the
    per-observation regimes (``moe.observation_regimes``), ``regimes`` the per-step path.
    Jittable with ``n_obs`` static; vmaps over ``key``, ``dwell_time`` and ``forcing``.
    """
    from ..models import SwitchingLorenz63, simulate_switching

    if not isinstance(n_obs, int) or n_obs < 1:
        raise ValueError(f"n_obs must be a positive integer, got {n_obs!r}")
    base = SwitchingLorenz63(SwitchingLorenz63.palmer_forcings(n_regimes, forcing), dwell_time=dwell_time, dt=dt)
    k_x0, k_sim = jax.random.split(key)
    x0 = jnp.array([1.0, 1.0, 25.0]) + x0_std * jax.random.normal(k_x0, (3,))
    sim, _, regimes = simulate_switching(base, observation, x0, n_obs, key=k_sim, steps_per_obs=steps_per_obs,
                                         burn_in=burn_in)
    return SwitchingData(sim.states, sim.observations, observation_regimes(regimes, steps_per_obs), regimes, sim.x0)


def window_arrays(observations: Float[Array, "T m"], labels: Int[Array, " T"], window: int):
    """All windows of a sequence: ``windows`` ``(T-W, W, m)`` (rows ``t..t+W-1``), ``targets``
    ``(T-W, m)`` (row ``t+W``) and the target's label ``(T-W,)``."""
    observations, labels = jnp.asarray(observations), jnp.asarray(labels)
    t = observations.shape[0]
    if observations.ndim != 2 or labels.shape != (t,):
        raise ValueError(f"observations must be (T, m) and labels (T,), got {observations.shape} and {labels.shape}")
    if not isinstance(window, int) or not 2 <= window < t:
        raise ValueError(f"window must be an integer in [2, T={t}), got {window!r}")
    idx = jnp.arange(t - window)[:, None] + jnp.arange(window)[None]
    return observations[idx], observations[window:], labels[window:]


def _segments(observations, labels, start, window: int, segment: int):
    rows = start + jnp.arange(segment + window)
    obs = observations[rows]
    lab = labels[rows]
    idx = jnp.arange(segment)[:, None] + jnp.arange(window)[None]
    return obs[idx], obs[window:], lab[window:]


class MoETrainState(NamedTuple):
    model: MixtureOfExperts
    opt_state: object


def fit_moe(models: MixtureOfExperts, observations: Float[Array, "S T m"], labels: Int[Array, "S T"],
            weights: MoELossWeights, *, key, n_steps: int = 1000, batch_size: int = 32, segment: int = 8,
            learning_rate=3e-3, n_windows=None, oracle=False, progress: bool = True, chunk: int = 250):
    r"""Train a *batch* of ``S`` mixtures (leading axis of every array leaf of ``models``, e.g.
    from ``eqx.filter_vmap`` over keys) with Adam :cite:`kingma2015adam`, one vmapped optimiser
    step per iteration, each model on its own sequence ``observations[s]``.

    Each step draws ``batch_size`` segments of ``segment`` consecutive windows per model, the
    segment starts uniform over the first ``n_windows[s]`` windows of the sequence (all of them
    by default), and minimises :func:`moe_loss`. ``weights`` fields and ``oracle`` may have a
    leading axis ``S`` (variants trained side by side) or be scalars; ``n_windows`` ``(S,)`` or a
    scalar (the training-set size :math:`n` of the excess-risk experiment). ``learning_rate`` is
    Adam's step size :math:`\eta`, a scalar or ``(S,)`` (one rate per model, so a learning-rate
    grid trains in one program): the update is :math:`-\eta_s\,\hat m_s/(\sqrt{\hat v_s}+\epsilon)`
    with the moment estimates of ``optax.scale_by_adam``, which for a scalar is ``optax.adam``.

    **Returns:** ``(models, losses)`` with ``losses`` ``(n_steps,)``: the total loss per step,
    averaged over the ``S`` models.
    """
    observations, labels = jnp.asarray(observations), jnp.asarray(labels)
    check_finite(observations, "observations")
    if observations.ndim != 3 or labels.shape != observations.shape[:2]:
        raise ValueError(f"observations must be (S, T, m) and labels (S, T), got {observations.shape} and {labels.shape}")
    s, t, _ = observations.shape
    leaves = jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))
    if not leaves or any(x.shape[:1] != (s,) for x in leaves):
        raise ValueError(f"every array leaf of models needs a leading axis of size S = {s} (vmap the constructor)")
    if not isinstance(segment, int) or segment < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"segment and batch_size must be positive integers, got {segment!r} and {batch_size!r}")
    w = models.window
    max_windows = t - w
    n_windows = jnp.broadcast_to(jnp.asarray(max_windows if n_windows is None else n_windows), (s,))
    if int(jnp.min(n_windows)) < segment or int(jnp.max(n_windows)) > max_windows:
        raise ValueError(f"n_windows must lie in [segment={segment}, T - window={max_windows}]")
    weights = MoELossWeights(*(jnp.broadcast_to(jnp.asarray(v, jnp.float32), (s,)) for v in weights))
    oracle = jnp.broadcast_to(jnp.asarray(oracle), (s,))
    lr = jnp.asarray(learning_rate)
    if lr.ndim > 1 or (lr.ndim == 1 and lr.shape != (s,)) or not bool(jnp.all(jnp.isfinite(lr) & (lr > 0))):
        raise ValueError(f"learning_rate must be a positive scalar or (S,) = ({s},) array, got {learning_rate!r}")
    lr = jnp.broadcast_to(lr, (s,))
    optimizer = optax.scale_by_adam()
    params, static = eqx.partition(models, eqx.is_array)
    opt_state = jax.vmap(optimizer.init)(params)

    def one_loss(p, obs, lab, wts, orc, nwin, k):
        starts = jax.random.randint(k, (batch_size,), 0, nwin - segment + 1)
        win, tar, lb = jax.vmap(lambda st: _segments(obs, lab, st, w, segment))(starts)
        return moe_loss(eqx.combine(p, static), win, tar, lb, wts, orc)[0]

    def one_step(p, o, obs, lab, wts, orc, nwin, eta, k):
        loss, g = jax.value_and_grad(one_loss)(p, obs, lab, wts, orc, nwin, k)
        upd, o = optimizer.update(g, o, p)
        upd = jax.tree_util.tree_map(lambda u: (-eta).astype(u.dtype) * u, upd)
        return optax.apply_updates(p, upd), o, loss

    vstep = jax.vmap(one_step)

    @functools.partial(jax.jit, static_argnums=2)
    def run(state, k, m):
        def body(st, kk):
            p, o = st
            p, o, loss = vstep(p, o, observations, labels, weights, oracle, n_windows, lr, jax.random.split(kk, s))
            return (p, o), jnp.mean(loss)
        return jax.lax.scan(body, state, jax.random.split(k, m))

    (params, _), losses = run_chunked(run, (params, opt_state), key, n_steps, chunk=chunk, progress=progress,
                                      desc="moe")
    return eqx.combine(params, static), losses


def routes(model: MixtureOfExperts, windows: Float[Array, "n W m"]) -> Int[Array, " n"]:
    """The top expert of each window, ``argmax`` of the router probabilities."""
    return jnp.argmax(jax.vmap(model.route)(windows).probs, axis=-1)


def predict(model: MixtureOfExperts, windows: Float[Array, "n W m"], labels: Optional[Int[Array, " n"]] = None):
    """One-step predictions ``(n, m)``; with ``labels`` the one-hot regime replaces the gates (oracle)."""
    if labels is None:
        return jax.vmap(lambda x: model(x)[0])(windows)
    return jax.vmap(lambda x, k: model.combine(x, jax.nn.one_hot(k, model.n_experts)))(windows, labels)


def rollout(model: MixtureOfExperts, window: Float[Array, "W m"], n_steps: int,
            labels: Optional[Int[Array, " h"]] = None) -> Float[Array, "h m"]:
    r"""Multi-step prediction: ``n_steps`` one-step predictions, each fed back into the window
    (routing recomputed at every step; with ``labels`` ``(n_steps,)`` the oracle's gates)."""
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if labels is None:
        def body(win, _):
            y = model(win)[0]
            return jnp.concatenate([win[1:], y[None]], axis=0), y
        xs = jnp.zeros((n_steps,), jnp.int32)
    else:
        def body(win, k):
            y = model.combine(win, jax.nn.one_hot(k, model.n_experts))
            return jnp.concatenate([win[1:], y[None]], axis=0), y
        xs = jnp.asarray(labels)
        if xs.shape != (n_steps,):
            raise ValueError(f"labels must have shape ({n_steps},), got {xs.shape}")
    return jax.lax.scan(body, window, xs)[1]


def window_losses(model: MixtureOfExperts, windows: Float[Array, "n W m"], targets: Float[Array, "n m"],
                  labels: Optional[Int[Array, " n"]] = None) -> Float[Array, " n"]:
    r"""Per-window prediction loss :math:`\frac1m\lVert(\hat y - y)/s\rVert^2` (the prediction term
    of :func:`moe_loss`; oracle gates with ``labels``)."""
    return jnp.mean(((predict(model, windows, labels) - targets) / model.step_scale) ** 2, axis=-1)


class PredictionScores(NamedTuple):
    """Scores of :func:`prediction_scores` (scalars)."""

    one_step_rmse: jax.Array
    horizon_rmse: jax.Array
    nmi: jax.Array
    ari: jax.Array


def prediction_scores(model: MixtureOfExperts, observations: Float[Array, "T m"], states: Float[Array, "T d"],
                      labels: Int[Array, " T"], *, horizon: int, oracle=False, stride: int = 5) -> PredictionScores:
    r"""One-step and ``horizon``-step RMSE against the true ``states`` and agreement of routes with
    regimes on one sequence (observations of the full state, ``m = d``).

    Window :math:`j` covers observations :math:`j..j+W-1`; its one-step prediction is scored
    against ``states[j+W]``, its :func:`rollout` of ``horizon`` steps (every ``stride``-th window)
    against ``states[j+W+horizon-1]``. Agreement: ``assimilax.metrics.normalized_mutual_information``
    and ``assimilax.metrics.adjusted_rand_index`` of :func:`routes` and the target's regime.
    ``oracle`` (bool, may be traced) uses the one-hot true regime as gates.
    """
    from ..metrics.clustering import adjusted_rand_index, normalized_mutual_information

    if observations.shape != states.shape:
        raise ValueError(f"observations and states must have the same shape, got {observations.shape} and {states.shape}")
    w = model.window
    win, _, lab = window_arrays(observations, labels, w)
    pred = jnp.where(oracle, predict(model, win, lab), predict(model, win))
    one = jnp.sqrt(jnp.mean((pred - states[w:]) ** 2))
    starts = jnp.arange(0, win.shape[0] - horizon, stride)
    lab_h = jax.vmap(lambda s: jax.lax.dynamic_slice(labels, (s + w,), (horizon,)))(starts)
    last = jax.vmap(lambda s, lh: jnp.where(oracle, rollout(model, win[s], horizon, lh)[-1],
                                            rollout(model, win[s], horizon)[-1]))(starts, lab_h)
    hor = jnp.sqrt(jnp.mean((last - states[starts + w + horizon - 1]) ** 2))
    r = routes(model, win)
    k = model.n_experts
    return PredictionScores(one, hor, normalized_mutual_information(r, lab, k, k), adjusted_rand_index(r, lab, k, k))


def epsilon_net_bound(n, n_params: int, loss_bound: float, *, delta: float = 0.05, lipschitz: float = 0.0,
                      radius: float = 1.0):
    r"""The :math:`\varepsilon`-net excess-risk bound for empirical risk minimisation over
    :math:`\Theta = \{\theta \in \mathbb R^p : \lVert\theta\rVert \le B\}`.

    For a loss :math:`\ell_\theta \in [0, M]` that is :math:`L`-Lipschitz in :math:`\theta`, a
    covering of :math:`\Theta` by :math:`N(\varepsilon) \le (3B/\varepsilon)^p` balls of radius
    :math:`\varepsilon \le B` :cite:`vershynin2018high`, Hoeffding's inequality and a union bound give,
    with probability at least :math:`1 - \delta` over :math:`n` i.i.d. samples,
    :math:`\sup_\theta |\hat R_n(\theta) - R(\theta)| \le M\sqrt{(\log N(\varepsilon) + \log(2/\delta))/(2n)} + 2L\varepsilon`,
    and for the empirical risk minimiser :math:`\hat\theta_n`, with :math:`\varepsilon = B/n`,

    .. math::
        R(\hat\theta_n) - \inf_{\Theta} R \le 2M\sqrt{\frac{p\log(3n) + \log(2/\delta)}{2n}} + \frac{4LB}{n}.

    **Arguments:** ``n`` (array of sample sizes), ``n_params`` :math:`p`, ``loss_bound`` :math:`M`,
    ``delta``, ``lipschitz`` :math:`L`, ``radius`` :math:`B`. **Returns:** the bound, shaped like ``n``.
    """
    n = np.asarray(n, dtype=float)
    if np.any(n < 1) or n_params < 1 or not loss_bound > 0 or not 0 < delta < 1:
        raise ValueError("need n >= 1, n_params >= 1, loss_bound > 0 and delta in (0, 1)")
    return 2 * loss_bound * np.sqrt((n_params * np.log(3 * n) + math.log(2 / delta)) / (2 * n)) \
        + 4 * lipschitz * radius / n


def loglog_slope(n, values) -> float:
    """Least-squares slope of ``log values`` against ``log n`` (positive values)."""
    n, v = np.asarray(n, float), np.asarray(values, float)
    if n.shape != v.shape or n.ndim != 1 or n.size < 2 or np.any(v <= 0) or np.any(n <= 0):
        raise ValueError("n and values must be 1-D, of the same length >= 2, and positive")
    return float(np.polyfit(np.log(n), np.log(v), 1)[0])


__all__ = ["MixtureOfExperts", "GateRouter", "AttentionRouter", "Routing", "MoELossWeights", "MoELossTerms",
           "moe_loss", "load_balancing_loss", "routing_information", "router_z_loss", "fit_moe", "count_parameters", "equal_parameter_width",
           "observation_regimes", "window_arrays", "routes", "predict", "rollout", "window_losses", "PredictionScores", "prediction_scores", "epsilon_net_bound", "loglog_slope"]
