r"""Increments for the reverse-SDE samplers: how the :math:`z` of
:math:`x \leftarrow x - \Delta t\,[f x - g^2 s] + g\sqrt{\Delta t}\,z` is drawn.

On a CPU a sampler step of the ensemble score filter is a handful of flops per component, so
drawing :math:`z` decides its cost. ``jax.random.normal`` costs many times the rest of such a
step on XLA's CPU backend: it evaluates Threefry-2x32 :cite:`salmon2011parallel` in a rolled
loop on a counter array that it splits in halves and concatenates again (which blocks fusion),
and then an inverse error function. Even fused and vectorised, Threefry-2x32-20 stays the
dominant cost of a Gaussian step on CPU (``benchmarks/ensf_scaling.py`` times both kinds).
The generators here draw the increments of **several consecutive steps at once**, elementwise
from one counter per array element, so that the increments of a block of steps and the steps
themselves fuse into one loop:

* ``"gaussian"`` (2 steps per block): Threefry-2x32 with 20 rounds -- the generator behind
  ``jax.random`` -- evaluated on the counter pair (element index, 0) under a 64-bit key drawn
  from the block's key. Its two words :math:`(w_0, w_1)` give one Box--Muller pair
  :cite:`box1958note`

  .. math:: z_1 = r\cos 2\pi u_2,\quad z_2 = r\sin 2\pi u_2,\qquad r = \sqrt{-2\log u_1},

  with :math:`u_1 = (\lfloor w_0/2\rfloor + \tfrac12)\,2^{-31} \in (0, 1)` and
  :math:`u_2 = \lfloor w_1/2^8\rfloor\,2^{-24} \in [0, 1)`: two independent exact
  :math:`\mathcal N(0, 1)` draws, up to the resolution of :math:`u_1 \ge 2^{-32}`, which
  truncates :math:`r` at :math:`\sqrt{64\log 2} \approx 6.66` (a Gaussian exceeds it with
  probability :math:`3\times10^{-11}`). In float32 the sine and cosine are the Cephes
  ``sinf``/``cosf`` polynomials after an exact reduction to :math:`[-\pi/4, \pi/4]`
  :cite:`moshier1989methods` (XLA's CPU ``sin``/``cos`` are scalar library calls); float64
  uses ``jnp.sin``/``jnp.cos``.
* ``"rademacher"`` (32 steps per block): :math:`z_i=\pm1` with probability 1/2, bit ``j`` of the
  element's Threefry word giving step ``j``: the simplified weak Euler scheme
  :cite:`kloeden1992numerical` (Sec. 14.1). It matches the first moments of the Gaussian
  increments and keeps Euler--Maruyama's weak order 1 -- the law of the samples at ``t_min``,
  which is all a sampler returns, converges at the same rate -- but individual paths are not
  Brownian.

Both are reproducible from one key and independent of how arrays are sharded (each element's
increments depend only on the key and its flat index). :func:`noise_block` returns a
:class:`NoiseBlock`: ``draw`` makes one block's payload, ``take`` one step's increments from it.

(Earlier attempts, kept here so they are not repeated: a Philox4x32-10 generator whose four
Box--Muller outputs were *concatenated* into the state's shape made XLA's CPU fusion run
hundreds of times slower; packing the outputs along *time*, one array per step as here, avoids
the concatenation altogether.)
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_U32 = jnp.uint32
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)


def _rotl(x, r: int):
    return (x << _U32(r)) | (x >> _U32(32 - r))


def threefry2x32(k0, k1, x0, x1, rounds: int = 20):
    r"""Threefry-2x32 block cipher :cite:`salmon2011parallel`, elementwise on ``uint32`` arrays.

    Key :math:`(k_0, k_1)`, counter :math:`(x_0, x_1)` (broadcastable ``uint32``). Each round
    :math:`x_0 \mathrel{+}= x_1,\ x_1 \leftarrow \operatorname{rotl}(x_1, R_r) \oplus x_0` with
    the rotation constants :math:`R = (13, 15, 26, 6, 17, 29, 16, 24)`; the key schedule
    :math:`k_2 = k_0 \oplus k_1 \oplus \texttt{0x1BD11BDA}` is injected every four rounds.
    Same function as ``jax.random``'s default PRNG. **Returns:** ``(y0, y1)``."""
    k0, k1 = jnp.asarray(k0, _U32), jnp.asarray(k1, _U32)
    ks = (k0, k1, k0 ^ k1 ^ _U32(0x1BD11BDA))
    x0 = jnp.asarray(x0, _U32) + ks[0]
    x1 = jnp.asarray(x1, _U32) + ks[1]
    for r in range(rounds):
        x0 = x0 + x1
        x1 = _rotl(x1, _ROTATIONS[r % 8]) ^ x0
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + _U32(s)
    return x0, x1


def _element_words(key, shape):
    """Two Threefry words per element of ``shape``, keyed by 64 bits drawn from ``key``
    (any PRNG implementation) and counted by the element's flat index."""
    n = math.prod(shape)
    if n >= 2**32:
        raise ValueError(f"arrays of more than 2**32 - 1 elements are not supported, got shape {shape}")
    kw = jax.random.bits(key, (2,), _U32)
    idx = jax.lax.iota(_U32, n).reshape(shape) if shape else _U32(0)
    return threefry2x32(kw[0], kw[1], idx, _U32(0))


_PI_2 = np.float32(np.pi / 2)


def sincos_2pi(u):
    r""":math:`(\sin 2\pi u, \cos 2\pi u)` for float32 ``u`` in :math:`[0, 1]`, vectorisable:
    :math:`q = \operatorname{round}(4u)`, :math:`f = (4u - q)\pi/2 \in [-\pi/4, \pi/4]` (exact
    reduction, no :math:`\pi` rounding), the Cephes ``sinf``/``cosf`` polynomials on :math:`f`
    :cite:`moshier1989methods`, and a rotation by the quadrant :math:`q \bmod 4`. Absolute error
    below :math:`3\times10^{-7}`."""
    q = jnp.floor(u * 4.0 + 0.5)
    f = (u * 4.0 - q) * _PI_2
    f2 = f * f
    s = f + f * f2 * (-1.6666654611e-1 + f2 * (8.3321608736e-3 + f2 * -1.9515295891e-4))
    c = 1.0 - 0.5 * f2 + f2 * f2 * (4.166664568298827e-2 + f2 * (-1.388731625493765e-3 + f2 * 2.443315711809948e-5))
    qi = q.astype(jnp.int32) & 3
    odd = (qi & 1) == 1
    sin_ = jnp.where(odd, c, s)
    cos_ = jnp.where(odd, s, c)
    sin_ = jnp.where(qi >= 2, -sin_, sin_)
    cos_ = jnp.where((qi == 1) | (qi == 2), -cos_, cos_)
    return sin_, cos_


def box_muller(w0, w1, dtype=jnp.float32):
    r"""Two independent standard normals from two ``uint32`` words (see the module docstring
    for the uniforms). **Returns:** ``(r cos 2 pi u2, r sin 2 pi u2)`` in ``dtype``."""
    dtype = jnp.dtype(dtype)
    u1 = ((w0 >> _U32(1)).astype(jnp.int32).astype(dtype) + 0.5) * dtype.type(2.0**-31)
    u2 = (w1 >> _U32(8)).astype(jnp.int32).astype(dtype) * dtype.type(2.0**-24)
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    if dtype == jnp.float32:
        s, c = sincos_2pi(u2)
    else:
        s, c = jnp.sin(2 * np.pi * u2), jnp.cos(2 * np.pi * u2)
    return r * c, r * s


def gaussian_block(key, shape, dtype=jnp.float32):
    r"""Standard-normal increments for **two** consecutive steps: one Threefry-2x32 evaluation
    and one Box--Muller pair per element. **Returns:** a tuple of two ``shape`` arrays."""
    w0, w1 = _element_words(key, tuple(shape))
    return box_muller(w0, w1, dtype)


RADEMACHER_STEPS = 32


def rademacher_words(key, shape):
    r"""One ``uint32`` Threefry word per element: bit ``j`` is the sign of step ``j`` of a block
    of 32 :math:`\pm1` increments (see :func:`rademacher_bit`)."""
    return _element_words(key, tuple(shape))[0]


def rademacher_bit(words, j, dtype=jnp.float32):
    r""":math:`2 b_j - 1` for bit ``j`` (``0 <= j < 32``, may be traced) of ``words``."""
    bit = (words >> jnp.asarray(j).astype(_U32)) & _U32(1)
    return bit.astype(jnp.int32).astype(dtype) * 2 - 1


def rademacher_block(key, shape, dtype=jnp.float32):
    r""":math:`\pm1` increments for **32** consecutive steps: step ``j`` takes bit ``j`` of the
    element's Threefry word. **Returns:** a tuple of 32 ``shape`` arrays."""
    w = rademacher_words(key, shape)
    return tuple(rademacher_bit(w, j, dtype) for j in range(RADEMACHER_STEPS))


def rademacher(key, shape, dtype=jnp.float32):
    r"""Independent :math:`\pm 1` entries with probability 1/2 each (a single step's draw).
    **Returns:** ``shape`` array."""
    return rademacher_bit(rademacher_words(key, shape), 0, dtype)


def gaussian(key, shape, dtype=jnp.float32):
    r"""Independent standard normals (a single step's draw: the cosine half of
    :func:`gaussian_block`). **Returns:** ``shape`` array."""
    return gaussian_block(key, shape, dtype)[0]


class NoiseBlock(NamedTuple):
    r"""How a sampler draws the increments of ``steps`` consecutive steps.

    ``draw(key, shape, dtype)`` returns a payload; ``take(payload, j, dtype)`` the increments of
    step ``j`` of the block. With ``unroll=True`` the sampler unrolls the block's steps in Python
    (``j`` a Python int; the payload is a tuple of arrays: XLA's CPU backend fuses the Box--Muller
    pair and both steps into one loop, whereas stacking the pair into one array runs about 20
    times slower); otherwise it runs them in an inner ``lax.scan`` (``j`` traced) over a
    payload kept in memory (the packed sign words: one ``uint32`` per element for 32 steps)."""
    steps: int
    draw: Callable
    take: Callable
    unroll: bool


_BLOCKS = {
    "gaussian": NoiseBlock(2, gaussian_block, lambda zs, j, dtype: zs[j], True),
    "rademacher": NoiseBlock(RADEMACHER_STEPS, lambda key, shape, dtype: rademacher_words(key, shape), rademacher_bit,
                             False),
}
NOISE_KINDS = tuple(sorted(_BLOCKS))


def noise_block(kind: str) -> NoiseBlock:
    """The :class:`NoiseBlock` for ``kind`` in :data:`NOISE_KINDS`; a clear ``ValueError``
    otherwise."""
    if kind not in _BLOCKS:
        raise ValueError(f"noise must be one of {list(NOISE_KINDS)}, got {kind!r}")
    return _BLOCKS[kind]


__all__ = ["threefry2x32", "sincos_2pi", "box_muller", "gaussian_block", "rademacher_block", "rademacher_words",
           "rademacher_bit", "gaussian", "rademacher",
           "NoiseBlock", "noise_block", "NOISE_KINDS", "RADEMACHER_STEPS"]
