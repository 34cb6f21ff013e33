r"""Hint processes (predictable sequences) :math:`M_t = M_t(x_1, \dots, x_{t-1})`.

A hint is an equinox Module with three pure methods, so that hints nest (a learned
combination holds other hints) and run under ``lax.scan``/``vmap``:

* ``init(dim, dtype)`` -> state (a pytree);
* ``predict(state)`` -> :math:`M_t` of shape ``(d,)``, using only what ``update`` has seen;
* ``update(state, x)`` -> state after observing :math:`x_t`.

``hint.sequence(losses)`` returns all hints ``(T, d)`` with ``M_t`` computed before ``x_t``
is seen (``M_1`` is the hint's ``initial`` value). The examples follow the March 26 notes and
:cite:`rakhlin2013online`: last value (path length, :cite:`chiang2012online`), empirical mean,
fading-memory averages, an AR(p) model fitted online, an external forecast (e.g. a dynamical
model), and a learned combination over a finite class.
"""
from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp


class Hint(eqx.Module):
    """Base class: subclasses define ``init``, ``predict`` and ``update``."""

    def init(self, dim: int, dtype=jnp.float32):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, state, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def sequence(self, losses):
        """Hints ``(T, d)`` for the loss sequence ``losses`` ``(T, d)`` (causal)."""
        losses = jnp.asarray(losses)
        if losses.ndim != 2:
            raise ValueError(f"losses must have shape (T, d), got {losses.shape}")

        def body(state, x):
            m = self.predict(state)
            return self.update(state, x), m

        _, ms = jax.lax.scan(body, self.init(losses.shape[1], losses.dtype), losses)
        return ms


class Zero(Hint):
    r""":math:`M_t = 0` (plain mirror descent / FTRL)."""

    def init(self, dim, dtype=jnp.float32):
        return jnp.zeros((dim,), dtype)

    def predict(self, state):
        return state

    def update(self, state, x):
        return state


class LastValue(Hint):
    r""":math:`M_t = x_{t-1}` (:math:`M_1` = ``initial``): the path-length / gradual-variation
    hint of :cite:`chiang2012online`."""

    initial: float = 0.0

    def init(self, dim, dtype=jnp.float32):
        return jnp.full((dim,), self.initial, dtype)

    def predict(self, state):
        return state

    def update(self, state, x):
        return x


class EmpiricalMean(Hint):
    r""":math:`M_t = \frac{1}{t-1}\sum_{s<t} x_s` (:math:`M_1` = ``initial``)."""

    initial: float = 0.0

    def init(self, dim, dtype=jnp.float32):
        return jnp.zeros((dim,), dtype), jnp.zeros((), dtype)

    def predict(self, state):
        total, n = state
        return jnp.where(n > 0, total / jnp.maximum(n, 1.0), self.initial)

    def update(self, state, x):
        total, n = state
        return total + x, n + 1.0


class FadingMemory(Hint):
    r"""Exponentially fading average :math:`M_t = \sum_{s<t}\lambda^{t-1-s}x_s \big/
    \sum_{s<t}\lambda^{t-1-s}` with ``decay`` :math:`\lambda\in[0,1]` (:math:`\lambda=1`: the
    empirical mean, :math:`\lambda = 0`: the last value)."""

    decay: float = 0.9
    initial: float = 0.0

    def init(self, dim, dtype=jnp.float32):
        return jnp.zeros((dim,), dtype), jnp.zeros((), dtype)

    def predict(self, state):
        total, w = state
        return jnp.where(w > 0, total / jnp.maximum(w, 1e-300), self.initial)

    def update(self, state, x):
        total, w = state
        return self.decay * total + x, self.decay * w + 1.0


class WeightedAverage(Hint):
    r"""General fading-memory weights: :math:`M_t = \sum_{k=1}^{K}\alpha_k x_{t-k} \big/
    \sum_{k \le \min(K, t-1)} \alpha_k` over the available lags (``weights`` :math:`\alpha`,
    shape ``(K,)``, non-negative, lag 1 first)."""

    weights: jax.Array
    initial: float = 0.0

    def __init__(self, weights, initial: float = 0.0):
        w = jnp.asarray(weights)
        if w.ndim != 1 or w.shape[0] < 1:
            raise ValueError(f"weights must have shape (K,), got {w.shape}")
        self.weights = w
        self.initial = initial

    def init(self, dim, dtype=jnp.float32):
        return jnp.zeros((self.weights.shape[0], dim), dtype), jnp.zeros((), jnp.int32)

    def predict(self, state):
        buf, n = state
        k = jnp.arange(self.weights.shape[0])
        w = jnp.where(k < n, self.weights, 0.0).astype(buf.dtype)
        tot = jnp.sum(w)
        return jnp.where(tot > 0, (w @ buf) / jnp.where(tot > 0, tot, 1.0), self.initial)

    def update(self, state, x):
        buf, n = state
        buf = jnp.concatenate([x[None, :], buf[:-1]], axis=0)
        return buf, n + 1


class AutoRegressive(Hint):
    r"""AR(p) per coordinate, fitted online by recursive least squares (RLS).

    For each coordinate :math:`i`, :math:`M_{t,i} = \theta_i^\top \phi_{t,i}` with regressor
    :math:`\phi_{t,i} = (1, x_{t-1,i}, \dots, x_{t-p,i})`; after :math:`x_t` is revealed,

    .. math::
        k = \frac{P\phi}{\lambda + \phi^\top P\phi},\quad
        \theta \leftarrow \theta + k\,(x_{t,i} - \theta^\top\phi),\quad
        P \leftarrow (P - k\phi^\top P)/\lambda .

    Initialised at the random walk (:math:`\theta = e_{\text{lag }1}`, :math:`P = \delta I`);
    before :math:`p` values are seen the hint is the last value. ``lo``/``hi`` clip the
    prediction (keeps :math:`\|x_t - M_t\|_*` bounded). **Arguments:** ``order`` :math:`p`,
    ``forgetting`` :math:`\lambda\in(0,1]`, ``delta`` :math:`\delta`, ``lo``, ``hi``, ``initial``.
    """

    order: int = eqx.field(static=True, default=2)
    forgetting: float = 1.0
    delta: float = 1e4
    lo: float = -jnp.inf
    hi: float = jnp.inf
    initial: float = 0.0

    def init(self, dim, dtype=jnp.float32):
        p = self.order
        theta = jnp.zeros((dim, p + 1), dtype).at[:, 1].set(1.0)
        P = jnp.broadcast_to(self.delta * jnp.eye(p + 1, dtype=dtype), (dim, p + 1, p + 1))
        buf = jnp.full((p, dim), self.initial, dtype)
        return theta, P, buf, jnp.zeros((), jnp.int32)

    def _phi(self, buf):
        ones = jnp.ones((1, buf.shape[1]), buf.dtype)
        return jnp.concatenate([ones, buf], axis=0).T  # (d, p+1)

    def predict(self, state):
        theta, _, buf, n = state
        ar = jnp.sum(theta * self._phi(buf), axis=-1)
        m = jnp.where(n >= self.order, ar, buf[0])
        return jnp.clip(m, self.lo, self.hi)

    def update(self, state, x):
        theta, P, buf, n = state
        phi = self._phi(buf)
        lam = self.forgetting

        def rls(th, Pi, ph, y):
            Pph = Pi @ ph
            k = Pph / (lam + ph @ Pph)
            th_new = th + k * (y - th @ ph)
            P_new = (Pi - jnp.outer(k, Pph)) / lam
            return th_new, 0.5 * (P_new + P_new.T)

        th_new, P_new = jax.vmap(rls)(theta, P, phi, x)
        ready = n >= self.order
        theta = jnp.where(ready, th_new, theta)
        P = jnp.where(ready, P_new, P)
        buf = jnp.concatenate([x[None, :], buf[:-1]], axis=0)
        return theta, P, buf, n + 1


class ExternalForecast(Hint):
    r"""An external forecast :math:`M_t = F(x_{t-1})` (:math:`M_1` = ``initial``), e.g. a
    dynamical model run from the state behind :math:`x_{t-1}`. ``fn`` maps ``(d,) -> (d,)``
    and must be traceable by JAX."""

    fn: Callable
    initial: float = 0.0

    def init(self, dim, dtype=jnp.float32):
        return jnp.full((dim,), self.initial, dtype), jnp.zeros((), jnp.bool_)

    def predict(self, state):
        last, seen = state
        return jnp.where(seen, self.fn(last), last)

    def update(self, state, x):
        return x, jnp.ones((), jnp.bool_)


class Clip(Hint):
    """Clip another hint's prediction to ``[lo, hi]`` componentwise."""

    hint: Hint
    lo: float = 0.0
    hi: float = 1.0

    def init(self, dim, dtype=jnp.float32):
        return self.hint.init(dim, dtype)

    def predict(self, state):
        return jnp.clip(self.hint.predict(state), self.lo, self.hi)

    def update(self, state, x):
        return self.hint.update(state, x)


class HedgeOverHints(Hint):
    r"""Learned combination over a finite class :math:`\mathcal M = \{M^1, \dots, M^N\}`.

    Exponentially weighted average of the hints with weights
    :math:`q_t(j) \propto \exp(-\alpha\sum_{s<t}\|x_s - M^j_s\|_*^2)`, :math:`\alpha = 1/(2B^2)`,
    :math:`M_t = \sum_j q_t(j) M^j_t`. Because :math:`\exp(-\alpha\|x - M\|_*^2)` is concave in
    :math:`M` when :math:`\|x - M\|_* \le B` (for :math:`\|\cdot\|_\infty` a minimum of concave
    coordinate functions), the forecaster for exp-concave losses
    (:cite:`cesabianchi2006prediction`, Proposition 3.1) gives

    .. math:: \sum_t\|x_t - M_t\|_*^2 \le \min_j \sum_t\|x_t - M^j_t\|_*^2 + 2B^2\log N,

    so that plugging it into the optimistic bound costs the additive :math:`2B^2\log|\mathcal M|`
    inside the square root (the notes' "log-cost").

    **Arguments:** ``hints`` (tuple of hints), ``geometry`` (for the dual norm), ``bound``
    :math:`B \ge \|x_t - M^j_t\|_*`, ``rate`` (default :math:`1/(2B^2)`).
    """

    hints: tuple
    geometry: eqx.Module
    bound: float = 1.0
    rate: float | None = None

    @property
    def alpha(self):
        return 1.0 / (2.0 * self.bound**2) if self.rate is None else self.rate

    def init(self, dim, dtype=jnp.float32):
        subs = tuple(h.init(dim, dtype) for h in self.hints)
        n = len(self.hints)
        return subs, jnp.full((n,), -jnp.log(n), dtype)

    def _members(self, subs):
        return jnp.stack([h.predict(s) for h, s in zip(self.hints, subs)])  # (N, d)

    def predict(self, state):
        subs, logw = state
        return jax.nn.softmax(logw) @ self._members(subs)

    def update(self, state, x):
        subs, logw = state
        ms = self._members(subs)
        loss = self.geometry.dual_norm(x[None, :] - ms) ** 2
        logw = logw - self.alpha * loss
        logw = logw - jax.nn.logsumexp(logw)
        subs = tuple(h.update(s, x) for h, s in zip(self.hints, subs))
        return subs, logw

    def weights_sequence(self, losses):
        """The weights :math:`q_t` ``(T, N)`` used at each round."""
        losses = jnp.asarray(losses)

        def body(state, x):
            q = jax.nn.softmax(state[1])
            return self.update(state, x), q

        _, qs = jax.lax.scan(body, self.init(losses.shape[1], losses.dtype), losses)
        return qs
