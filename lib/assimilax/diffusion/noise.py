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
* ``"gaussian_ars"`` (4 steps per block): the same Box--Muller normals from the four words of
  ARS-4x32-7 :cite:`salmon2011parallel` -- AES rounds :cite:`nist2001aes` under a Weyl key
  schedule -- of the counter (element index, 0, 0, 0): two pairs per draw. In plain XLA the AES
  S-box costs table lookups, so this kind is slower than ``"gaussian"`` there; it exists for the
  fused CPU kernel of :mod:`!assimilax._native`, which evaluates the same words with the x86
  AES instructions (bit for bit: ``tests/test_native.py``) and runs the ensemble score filter's
  analysis about 1.7 times faster than the XLA ``"gaussian"`` path on a 2-core CPU
  (``benchmarks/ensf_scaling.py``). ARS with 5 or more rounds passes TestU01's BigCrush
  :cite:`salmon2011parallel`; 7 is Random123's default.
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


def _aes_tables():
    """The AES S-box (FIPS-197: inverse in GF(2^8) followed by the affine map) and the four
    little-endian T-tables of SubBytes + MixColumns, computed rather than typed."""
    def mul(a, b):
        p = 0
        for _ in range(8):
            if b & 1:
                p ^= a
            a = ((a << 1) ^ (0x1B if a & 0x80 else 0)) & 0xFF
            b >>= 1
        return p

    inv = [0] * 256
    for a in range(1, 256):
        inv[a] = next(b for b in range(1, 256) if mul(a, b) == 1)
    rotl8 = lambda v, r: ((v << r) | (v >> (8 - r))) & 0xFF
    sbox = np.array([inv[a] ^ rotl8(inv[a], 1) ^ rotl8(inv[a], 2) ^ rotl8(inv[a], 3) ^ rotl8(inv[a], 4) ^ 0x63
                     for a in range(256)], dtype=np.uint32)
    s2 = np.array([mul(int(v), 2) for v in sbox], dtype=np.uint32)
    s3 = np.array([mul(int(v), 3) for v in sbox], dtype=np.uint32)
    # MixColumns: contribution of input row r to the output rows (little-endian word = column)
    t0 = s2 | sbox << 8 | sbox << 16 | s3 << 24
    t1 = s3 | s2 << 8 | sbox << 16 | sbox << 24
    t2 = sbox | s3 << 8 | s2 << 16 | sbox << 24
    t3 = sbox | sbox << 8 | s3 << 16 | s2 << 24
    return sbox, np.stack([t0, t1, t2, t3])


_SBOX, _TTABLES = _aes_tables()
_ARS_WEYL = (0x7F4A7C15, 0x9E3779B9, 0x84CAA73B, 0xBB67AE85)  # (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B) as words


def _byte(w, r):
    return (w >> _U32(8 * r)) & _U32(0xFF)


def aes_round(state, round_key, last: bool = False):
    r"""One AES encryption round on 128-bit blocks held as four little-endian ``uint32`` columns
    (the semantics of the x86 ``aesenc``/``aesenclast`` instructions): SubBytes, ShiftRows,
    MixColumns (omitted when ``last``), then XOR with ``round_key``. ``state`` and
    ``round_key`` are 4-tuples of broadcastable ``uint32`` arrays. **Returns:** the new 4-tuple."""
    out = []
    for c in range(4):
        b = [_byte(state[(c + r) % 4], r) for r in range(4)]  # ShiftRows: row r from column c + r
        if last:
            sb = jnp.asarray(_SBOX)
            w = sb[b[0]] | sb[b[1]] << _U32(8) | sb[b[2]] << _U32(16) | sb[b[3]] << _U32(24)
        else:
            T = jnp.asarray(_TTABLES)
            w = T[0][b[0]] ^ T[1][b[1]] ^ T[2][b[2]] ^ T[3][b[3]]
        out.append(w ^ round_key[c])
    return tuple(out)


def ars_round_keys(key_words, rounds: int = 7):
    r"""The ARS key schedule :cite:`salmon2011parallel`: :math:`k_{r+1} = k_r + W` in two 64-bit
    lanes, with the Weyl increments :math:`W = (\lfloor 2^{64}(\varphi-1)\rfloor,
    \lfloor 2^{64}(\sqrt3-1)\rfloor)` = ``(0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)``.
    ``key_words``: four ``uint32`` (little-endian 128-bit key). **Returns:** ``rounds + 1`` 4-tuples."""
    k = tuple(jnp.asarray(key_words[i], _U32) for i in range(4))
    keys = [k]
    for _ in range(rounds):
        lo = k[0] + _U32(_ARS_WEYL[0])
        hi = k[1] + _U32(_ARS_WEYL[1]) + (lo < k[0]).astype(_U32)
        lo2 = k[2] + _U32(_ARS_WEYL[2])
        hi2 = k[3] + _U32(_ARS_WEYL[3]) + (lo2 < k[2]).astype(_U32)
        k = (lo, hi, lo2, hi2)
        keys.append(k)
    return keys


def ars4x32(key_words, counter, rounds: int = 7):
    r"""ARS-4x32 :cite:`salmon2011parallel`, the AES-round counter-based generator, elementwise.

    ``key_words``: four ``uint32`` scalars; ``counter``: a 4-tuple of broadcastable ``uint32``
    arrays. :math:`v \leftarrow c \oplus k_0`, then ``rounds - 1`` AES rounds and a last round
    (no MixColumns) with the round keys of :func:`ars_round_keys`. ARS-5 and more rounds pass
    TestU01's BigCrush; 7 is Random123's default. This is the portable definition (table lookups);
    the native CPU kernel of :mod:`!assimilax._native` computes the same words with AES-NI.
    **Returns:** 4-tuple of ``uint32`` arrays."""
    ks = ars_round_keys(key_words, rounds)
    shape = jnp.broadcast_shapes(*(jnp.shape(c) for c in counter))
    v = tuple(jnp.broadcast_to(jnp.asarray(counter[i], _U32) ^ ks[0][i], shape) for i in range(4))
    if rounds > 1:  # a rolled loop over the middle rounds keeps the program (and its compile time) small
        mid = jnp.stack([jnp.stack(k) for k in ks[1:rounds]])
        v = jax.lax.fori_loop(0, rounds - 1, lambda r, v: aes_round(v, tuple(mid[r, i] for i in range(4))), v)
    return aes_round(v, ks[rounds], last=True)


ARS_STEPS = 4


def gaussian_ars_block(key, shape, dtype=jnp.float32):
    r"""Standard-normal increments for **four** consecutive steps: ARS-4x32-7 of the counter
    (element index, 0, 0, 0) under a 128-bit key drawn from ``key``, and two Box--Muller pairs
    of its words ``(w0, w1)``, ``(w2, w3)``. **Returns:** a tuple of four ``shape`` arrays."""
    shape = tuple(shape)
    n = math.prod(shape)
    if n >= 2**32:
        raise ValueError(f"arrays of more than 2**32 - 1 elements are not supported, got shape {shape}")
    kw = jax.random.bits(key, (4,), _U32)
    idx = jax.lax.iota(_U32, n).reshape(shape) if shape else _U32(0)
    zero = jnp.zeros((), _U32)
    w = ars4x32(kw, (idx, zero, zero, zero))
    return box_muller(w[0], w[1], dtype) + box_muller(w[2], w[3], dtype)


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
    "gaussian_ars": NoiseBlock(ARS_STEPS, gaussian_ars_block, lambda zs, j, dtype: zs[j], True),
    "rademacher": NoiseBlock(RADEMACHER_STEPS, lambda key, shape, dtype: rademacher_words(key, shape), rademacher_bit,
                             False),
}
NOISE_KINDS = tuple(sorted(_BLOCKS))


def noise_block(kind: str) -> NoiseBlock:
    """The :class:`NoiseBlock` for ``kind`` in ``NOISE_KINDS``; a clear ``ValueError``
    otherwise."""
    if kind not in _BLOCKS:
        raise ValueError(f"noise must be one of {list(NOISE_KINDS)}, got {kind!r}")
    return _BLOCKS[kind]


__all__ = ["threefry2x32", "sincos_2pi", "box_muller", "gaussian_block", "aes_round", "ars_round_keys", "ars4x32",
           "gaussian_ars_block", "ARS_STEPS", "rademacher_block", "rademacher_words",
           "rademacher_bit", "gaussian", "rademacher",
           "NoiseBlock", "noise_block", "NOISE_KINDS", "RADEMACHER_STEPS"]
