r"""Increments for the reverse-SDE samplers: how the :math:`z` of
:math:`x \leftarrow x - \Delta t\,[f x - g^2 s] + g\sqrt{\Delta t}\,z` is drawn.

On a CPU a sampler step of the ensemble score filter is a handful of flops per component, so
drawing :math:`z` dominates its cost: ``jax.random.normal`` (Threefry-2x32 bits, then an
inverse error function) costs several times the rest of the step. Two generators, both
reproducible from one key:

* ``"gaussian"``: ``jax.random.normal``, one key per step (the reference).
* ``"rademacher"``: :math:`z_i=\pm1` with probability 1/2 (32 per ``uint32`` word of
  ``jax.random.bits``): the simplified weak Euler scheme :cite:`kloeden1992numerical`
  (Sec. 14.1). It matches the first moments of the Gaussian increments and keeps
  Euler--Maruyama's weak order 1 -- the law of the samples at ``t_min``, which is all a sampler
  returns, converges at the same rate -- but individual paths are not Brownian.

Each is a function ``draw(key, shape, dtype)``; see :func:`noise_generator`.

(A Philox4x32-10 + Box--Muller Gaussian generator written in ``jax.numpy`` was tried: its words
cost a fifth of Threefry's, but XLA's CPU fusion of the concatenated Box--Muller outputs ran
hundreds of times slower than the unconcatenated kernel, so it was dropped.)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_U32 = jnp.uint32


def rademacher(key, shape, dtype=jnp.float32):
    r"""Independent :math:`\pm 1` entries with probability 1/2 each: 32 per ``uint32`` word of
    ``jax.random.bits`` (so the key's PRNG implementation is used). **Returns:** ``shape`` array."""
    n = math.prod(shape)
    words = jax.random.bits(key, (-(-n // 32),), _U32)
    bits = (words[:, None] >> jnp.arange(32, dtype=_U32)[None, :]) & _U32(1)
    return (2.0 * bits.astype(dtype) - 1.0).reshape(-1)[:n].reshape(shape)


_GENERATORS = {
    "gaussian": lambda key, shape, dtype: jax.random.normal(key, shape, dtype=dtype),
    "rademacher": rademacher,
}
NOISE_KINDS = tuple(sorted(_GENERATORS))


def noise_generator(kind: str):
    """``draw(key, shape, dtype)`` for ``kind`` in :data:`NOISE_KINDS`; a clear ``ValueError``
    otherwise."""
    if kind not in _GENERATORS:
        raise ValueError(f"noise must be one of {list(NOISE_KINDS)}, got {kind!r}")
    return _GENERATORS[kind]


__all__ = ["rademacher", "noise_generator", "NOISE_KINDS"]
