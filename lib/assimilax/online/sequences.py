r"""Synthetic loss sequences in :math:`[0, 1]^n` for online linear optimisation.

Four kinds of sequence, from benign to adversarial for a given hint, used to test the regret
bounds of :mod:`assimilax.online.regret` (chapter ``40_predictable_sequences``). With
:math:`\xi_{s,t,i} \sim \mathcal N(0, 1)` and a random phase
:math:`\varphi_s \sim \mathcal U(0, 1)` per sequence, the phase of action :math:`i` is
:math:`\phi_{s,i} = 2\pi(i/n + \varphi_s)` and, before clipping to :math:`[0, 1]`,

* ``"iid"``: :math:`x_{s,t,i} = \mu_i + \sigma\xi_{s,t,i}`, :math:`\mu_i` evenly spaced from 0.45
  to 0.6 (a gap between the actions: a best action exists);
* ``"drift"``: :math:`x_{s,t,i} = 0.5 + 0.35\sin(2\pi t/T + \phi_{s,i}) + 0.02\,\xi_{s,t,i}`, one
  slow cycle over the horizon;
* ``"periodic"``: the same with :math:`2\pi t/p` (period :math:`p`, default 12);
* ``"adversarial"``: :math:`x_{t,i} = (i \bmod 2)` at even :math:`t` and :math:`1 - (i \bmod 2)`
  at odd :math:`t`, no noise: the last value :math:`x_{t-1}` always points to the worst action.

:math:`t = 0, \dots, T-1`, :math:`i = 0, \dots, n-1`. The noise and the phases come from
``jax.random.split(key)``: the same key gives the same sequences.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_positive_int, is_concrete

#: The kinds :func:`loss_sequences` generates.
LOSS_KINDS = ("iid", "drift", "periodic", "adversarial")


def loss_sequences(kind: str, key: PRNGKeyArray, T: int, n_seq: int, *, sigma: float = 0.1, n: int = 4,
                   period: float = 12.0) -> Float[Array, "n_seq T n"]:
    r"""``n_seq`` loss sequences of length ``T`` in :math:`[0, 1]^n` of one kind (module docstring).

    **Arguments:**

    - `kind`: ``"iid"``, ``"drift"``, ``"periodic"`` or ``"adversarial"``.
    - `key`: a ``jax.random`` key.
    - `T`: rounds; `n_seq`: independent sequences; `n`: actions (the simplex dimension).
    - `sigma`: noise standard deviation of the ``"iid"`` kind (:math:`\sigma \ge 0`; unused otherwise).
    - `period`: period :math:`p > 0` of the ``"periodic"`` kind, in rounds.

    **Returns:** ``(n_seq, T, n)`` losses, clipped to :math:`[0, 1]`, in the default float dtype.
    Feed one row ``(T, n)`` to the learners of :mod:`assimilax.online`, or ``jax.vmap`` over the
    first axis.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
    check_positive_int(T, "T")
    check_positive_int(n_seq, "n_seq")
    check_positive_int(n, "n")
    if is_concrete(sigma) and not float(sigma) >= 0.0:
        raise ValueError(f"sigma must be non-negative, got {sigma!r}")
    if is_concrete(period) and not float(period) > 0.0:
        raise ValueError(f"period must be positive, got {period!r}")
    k1, k2 = jax.random.split(key)
    noise = jax.random.normal(k1, (n_seq, T, n))
    t = jnp.arange(T, dtype=noise.dtype)[None, :, None]
    phase = 2 * jnp.pi * (jnp.arange(n)[None, None, :] / n + jax.random.uniform(k2, (n_seq, 1, 1)))
    if kind == "iid":
        x = jnp.linspace(0.45, 0.6, n)[None, None, :] + sigma * noise
    elif kind == "drift":
        x = 0.5 + 0.35 * jnp.sin(2 * jnp.pi * t / T + phase) + 0.02 * noise
    elif kind == "periodic":
        x = 0.5 + 0.35 * jnp.sin(2 * jnp.pi * t / period + phase) + 0.02 * noise
    else:  # adversarial
        pattern = (jnp.arange(n) % 2)[None, None, :]
        x = jnp.where((jnp.arange(T) % 2)[None, :, None] == 0, pattern, 1 - pattern) + 0.0 * noise
    return jnp.clip(x, 0.0, 1.0)


__all__ = ["LOSS_KINDS", "loss_sequences"]
