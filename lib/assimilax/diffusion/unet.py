r"""A small convolutional U-Net score network for 1-D and 2-D fields.

:class:`UNet` maps a field :math:`x\in\mathbb R^{C\times L}` (``spatial_dims=1``) or
:math:`x\in\mathbb R^{C\times H\times W}` (``spatial_dims=2``), a diffusion time ``t`` and an
optional conditioning field ``c`` on the same grid to

.. math::
    s_\theta(x, t, c) \approx \nabla_x \log p_t(x \mid c),

the score of the forward-noised marginal :math:`p_t` of :cite:`song2021scorebased`. It is the
field analogue of :class:`~assimilax.diffusion.MLPScore` and follows the same call convention
(unbatched ``__call__(x, t, cond=None)``, batching by ``jax.vmap``), so it drops into
:func:`~assimilax.diffusion.batch_score`, :func:`~assimilax.diffusion.dsm_loss` and
:func:`~assimilax.diffusion.train_score_network` unchanged.

Architecture (a reduced version of the U-Net of :cite:`ronneberger2015unet` as used for DDPM
score models :cite:`ho2020denoising`), with widths :math:`w_0,\dots,w_{K}` (``widths``, so
:math:`K` = ``len(widths) - 1`` halvings of the grid):

* **input**: :math:`[x; c]` concatenated along channels, a :math:`3^n` convolution to :math:`w_0`;
* **time**: random Fourier features :math:`\gamma(t) = [\sin 2\pi\omega t, \cos 2\pi\omega t]`
  (:class:`~assimilax.diffusion.FourierTimeEmbedding`) followed by a two-layer SiLU MLP give
  :math:`e(t)`; every residual block injects it by FiLM,
  :math:`h \leftarrow h\,(1 + a_\ell(e)) + b_\ell(e)` with per-channel affine maps
  :math:`a_\ell, b_\ell` broadcast over space;
* **residual block**: :math:`h = \mathrm{conv}(\phi(\mathrm{GN}(x)))`, FiLM,
  :math:`h = \mathrm{conv}(\phi(\mathrm{GN}(h)))`, output :math:`h + \mathrm{proj}(x)`
  (:math:`\phi` = SiLU, GN = GroupNorm (optional, off by default) or the identity,
  proj = :math:`1^n` convolution when the widths differ);
* **encoder**: at level :math:`k = 0..K` a residual block to width :math:`w_k`, its output kept
  as a skip connection, then (for :math:`k<K`) average pooling by 2 in every spatial direction;
* **bottleneck**: one residual block at width :math:`w_K`;
* **decoder**: at level :math:`k = K..0` (after nearest-neighbour upsampling by 2 for
  :math:`k<K`) the skip of level :math:`k` is concatenated and a residual block maps to
  :math:`w_k`;
* **output**: GN, SiLU and a :math:`3^n` convolution back to :math:`C` channels, initialised to
  zero.

All convolutions are VALID convolutions of explicitly padded inputs: ``padding="circular"``
wraps the field (``jnp.pad(mode="wrap")``; periodic domains such as the Lorenz-96 ring), and the
whole network is then exactly equivariant to circular shifts by multiples of
:math:`2^K` (pooling, upsampling, GroupNorm and pointwise maps all commute with them);
``padding="zeros"`` pads with zeros. Every spatial size must be divisible by :math:`2^K`.

Output parametrisation, as in :class:`~assimilax.diffusion.MLPScore`: without ``sde`` the
network output *is* the score; with ``sde`` it predicts the noise :math:`\hat\varepsilon_\theta`
and the score is :math:`-\hat\varepsilon_\theta/\sigma_t`, plus the exact score
:math:`-x/(\alpha_t^2+\sigma_t^2)` of a standard-normal :math:`p_0` when ``gaussian_skip``.
Because the last convolution starts at zero, an untrained network with ``sde`` and
``gaussian_skip`` returns exactly that Gaussian reference score.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .networks import FourierTimeEmbedding, output_to_score

_PAD_MODES = {"circular": "wrap", "zeros": "constant"}


def _pad(x, width: int, padding: str):
    """Pad all spatial axes (axes 1..) of ``x`` ``(C, *spatial)`` by ``width`` on both sides."""
    if width == 0:
        return x
    return jnp.pad(x, [(0, 0)] + [(width, width)] * (x.ndim - 1), mode=_PAD_MODES[padding])


def _avg_pool2(x):
    """Average over non-overlapping blocks of 2 in every spatial direction."""
    c, *sp = x.shape
    shape = [c]
    for n in sp:
        shape += [n // 2, 2]
    return jnp.mean(x.reshape(shape), axis=tuple(range(2, 2 * len(sp) + 1, 2)))


def _upsample2(x):
    """Nearest-neighbour upsampling by 2 in every spatial direction."""
    for ax in range(1, x.ndim):
        x = jnp.repeat(x, 2, axis=ax)
    return x


def _per_channel(v, ndim: int):
    """Reshape a channel vector ``(C,)`` to ``(C, 1, ..., 1)`` for explicit broadcasting."""
    return v.reshape(v.shape + (1,) * (ndim - 1))


class _PaddedConv(eqx.Module):
    """A :math:`k^n` convolution applied to a ``padding``-padded input (same spatial size out)."""

    conv: eqx.nn.Conv
    padding: str = eqx.field(static=True)

    def __init__(self, spatial_dims: int, c_in: int, c_out: int, kernel: int, padding: str, *, key):
        self.conv = eqx.nn.Conv(spatial_dims, c_in, c_out, kernel, padding=0, key=key)
        self.padding = padding

    def __call__(self, x):
        return self.conv(_pad(x, self.conv.kernel_size[0] // 2, self.padding))


def _norm(channels: int, groups: int):
    """GroupNorm with ``gcd(groups, channels)`` groups, or the identity when ``groups == 0``."""
    if groups <= 0:
        return eqx.nn.Identity()
    return eqx.nn.GroupNorm(math.gcd(groups, channels), channels)


class _ResBlock(eqx.Module):
    """Residual block with FiLM time conditioning (see the module docstring)."""

    norm1: eqx.Module
    conv1: _PaddedConv
    film: eqx.nn.Linear
    norm2: eqx.Module
    conv2: _PaddedConv
    proj: Optional[eqx.nn.Conv]

    def __init__(self, spatial_dims, c_in, c_out, emb_dim, padding, groups, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1 = _norm(c_in, groups)
        self.conv1 = _PaddedConv(spatial_dims, c_in, c_out, 3, padding, key=k1)
        self.film = eqx.nn.Linear(emb_dim, 2 * c_out, key=k2)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = _PaddedConv(spatial_dims, c_out, c_out, 3, padding, key=k3)
        self.proj = None if c_in == c_out else eqx.nn.Conv(spatial_dims, c_in, c_out, 1, key=k4)

    def __call__(self, x, emb):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        scale, shift = jnp.split(self.film(emb), 2)
        h = h * (1.0 + _per_channel(scale, h.ndim)) + _per_channel(shift, h.ndim)
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return h + (x if self.proj is None else self.proj(x))


def _build_parts(spatial_dims, channels, cond_channels, widths, emb_dim, n_freq, time_scale, padding, norm_groups,
                 key):
    """The layers of :class:`UNet` (see there), with equinox's default initialisation."""
    K = len(widths) - 1
    keys = iter(jax.random.split(key, 2 * K + 7))
    embed = FourierTimeEmbedding(n_freq, time_scale, key=next(keys))
    emb_mlp = eqx.nn.MLP(2 * n_freq, emb_dim, emb_dim, 1, activation=jax.nn.silu, final_activation=jax.nn.silu,
                         key=next(keys))
    block = lambda c_in, c_out: _ResBlock(spatial_dims, c_in, c_out, emb_dim, padding, norm_groups, key=next(keys))
    stem = _PaddedConv(spatial_dims, channels + cond_channels, widths[0], 3, padding, key=next(keys))
    down = [block(widths[max(k - 1, 0)], widths[k]) for k in range(K + 1)]
    mid = block(widths[K], widths[K])
    up = [block(widths[min(k + 1, K)] + widths[k], widths[k]) for k in range(K + 1)]
    out_norm = _norm(widths[0], norm_groups)
    out_conv = _PaddedConv(spatial_dims, widths[0], channels, 3, padding, key=next(keys))
    return embed, emb_mlp, stem, down, mid, up, out_norm, out_conv


def _is_layer(m):
    return isinstance(m, (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.GroupNorm, FourierTimeEmbedding))


_BLOCK = 2**14


@functools.partial(jax.jit, static_argnums=2)
def _uniform_block(key, i, dtype):
    """Block ``i`` of a stream of :math:`U(-1, 1)` numbers: one compiled kernel for every network size."""
    return jax.random.uniform(jax.random.fold_in(key, i), (_BLOCK,), dtype=dtype, minval=-1.0, maxval=1.0)


def _uniform_pieces(shapes_and_limits, dtype, key):
    """Pieces ``U(-lim, lim)`` of the given shapes cut from one stream of uniforms (NumPy slicing
    when the key is concrete, so that no per-shape kernel is compiled; traced slicing under jit)."""
    sizes = [math.prod(shape) for shape, _ in shapes_and_limits]
    n_blocks = max(1, -(-sum(sizes) // _BLOCK))
    blocks = [_uniform_block(key, i, dtype) for i in range(n_blocks)]
    try:
        u = np.concatenate([np.asarray(b) for b in blocks])
    except jax.errors.TracerArrayConversionError:  # constructed inside a trace
        u = jnp.concatenate(blocks)
    pieces, o = [], 0
    for (shape, lim), n in zip(shapes_and_limits, sizes):
        piece = lim * u[o:o + n].reshape(shape)
        pieces.append(jnp.asarray(piece, dtype=dtype))
        o += n
    return pieces


def _initialise(skeleton, time_scale, key):
    r"""Fill the abstract layers of ``skeleton`` (``ShapeDtypeStruct`` leaves) with equinox's default
    initialisation -- weights and biases :math:`U(\pm 1/\sqrt{\text{fan-in}})`, GroupNorm affine
    ``(1, 0)``, Fourier frequencies :math:`\mathcal N(0, \text{scale}^2)`. The uniforms come
    from fixed-size blocks of one stream: initialising layer by layer eagerly compiles a random
    kernel for every parameter shape (seconds to tens of seconds on a small CPU)."""
    k_freq, k_unif = jax.random.split(key)
    layers = [m for m in jax.tree_util.tree_leaves(skeleton, is_leaf=_is_layer) if _is_layer(m)]
    requests = []
    for m in layers:
        if isinstance(m, (eqx.nn.Linear, eqx.nn.Conv)):
            lim = 1.0 / math.sqrt(math.prod(m.weight.shape[1:]))
            requests.append((tuple(m.weight.shape), lim))
            if m.bias is not None:
                requests.append((tuple(m.bias.shape), lim))
    dtype = jnp.dtype(next(m.weight.dtype for m in layers if isinstance(m, (eqx.nn.Linear, eqx.nn.Conv))))
    pieces = iter(_uniform_pieces(requests, dtype, k_unif))
    new = []
    for m in layers:
        if isinstance(m, FourierTimeEmbedding):
            m = FourierTimeEmbedding(m.freqs.shape[0], time_scale, key=k_freq)
        elif isinstance(m, eqx.nn.GroupNorm):
            m = eqx.tree_at(lambda g: (g.weight, g.bias), m,
                            (jnp.asarray(np.ones(m.weight.shape, m.weight.dtype)),
                             jnp.asarray(np.zeros(m.bias.shape, m.bias.dtype))))
        elif m.bias is None:
            m = eqx.tree_at(lambda c: c.weight, m, next(pieces))
        else:
            w = next(pieces)
            m = eqx.tree_at(lambda c: (c.weight, c.bias), m, (w, next(pieces)))
        new.append(m)
    return eqx.tree_at(lambda t: [m for m in jax.tree_util.tree_leaves(t, is_leaf=_is_layer) if _is_layer(m)],
                       skeleton, new)


class UNet(eqx.Module):
    r"""Convolutional U-Net score network :math:`s_\theta(x, t, c)` on 1-D or 2-D fields.

    See the module docstring for the architecture and the maths; references
    :cite:`ronneberger2015unet,song2021scorebased`.

    **Arguments:**

    - ``spatial_dims``: 1 (fields ``(C, L)``) or 2 (fields ``(C, H, W)``).
    - ``channels``: number ``C`` of field channels (input and output).
    - ``cond_channels``: channels of the conditioning field (0: unconditional).
    - ``widths``: feature widths per resolution level, e.g. ``(16, 32)``; ``len(widths) - 1``
      halvings, so spatial sizes must be divisible by ``2 ** (len(widths) - 1)``.
    - ``emb_dim``: width of the time embedding MLP (default ``4 * widths[0]``).
    - ``n_freq``, ``time_scale``: random Fourier features of ``t`` (as in ``MLPScore``).
    - ``padding``: ``"circular"`` (periodic domain) or ``"zeros"``.
    - ``norm_groups``: GroupNorm groups (``gcd`` with each width is used); 0 (default) disables
      it. On small fields GroupNorm hurts: its per-sample rescaling fights the amplitude
      dependence of the score (on the Gaussian-random-field test of ``tests/diffusion/test_unet.py``
      the score error was 2.3x larger with 4 groups) and it slows compilation.
    - ``sde``, ``gaussian_skip``: noise parametrisation, as in ``MLPScore``.
    - ``key``: keyword-only PRNG key.

    ``__call__(x (C, *spatial), t (), cond (cond_channels, *spatial) | None) -> (C, *spatial)``;
    unbatched (``jax.vmap`` it, or use :func:`~assimilax.diffusion.batch_score`).
    """

    embed: FourierTimeEmbedding
    emb_mlp: eqx.nn.MLP
    stem: _PaddedConv
    down: list
    mid: _ResBlock
    up: list
    out_norm: eqx.Module
    out_conv: _PaddedConv
    sde: Optional[eqx.Module]
    spatial_dims: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    widths: tuple = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    gaussian_skip: bool = eqx.field(static=True)

    def __init__(self, spatial_dims: int, channels: int, cond_channels: int = 0, widths: Sequence[int] = (16, 32),
                 emb_dim: Optional[int] = None, n_freq: int = 16, time_scale: float = 4.0, padding: str = "circular",
                 norm_groups: int = 0, sde=None, gaussian_skip: bool = True, *, key):
        if spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims!r}")
        if padding not in _PAD_MODES:
            raise ValueError(f"padding must be 'circular' or 'zeros', got {padding!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1 or int(channels) < 1 or int(cond_channels) < 0:
            raise ValueError(f"need channels >= 1, cond_channels >= 0 and positive widths, got "
                             f"{channels}, {cond_channels}, {widths}")
        emb_dim = int(emb_dim) if emb_dim is not None else 4 * widths[0]
        config = (int(spatial_dims), int(channels), int(cond_channels), widths, emb_dim, int(n_freq),
                  float(time_scale), padding, int(norm_groups))
        skeleton = eqx.filter_eval_shape(_build_parts, *config, key)
        parts = _initialise(skeleton, float(time_scale), key)
        out_conv = parts[-1]  # the last convolution starts at zero
        zero = lambda a: jnp.asarray(np.zeros(a.shape, a.dtype))
        out_conv = eqx.tree_at(lambda c: (c.conv.weight, c.conv.bias), out_conv,
                               (zero(out_conv.conv.weight), zero(out_conv.conv.bias)))
        (self.embed, self.emb_mlp, self.stem, self.down, self.mid, self.up, self.out_norm) = parts[:-1]
        self.out_conv = out_conv
        self.sde, self.spatial_dims, self.channels = sde, int(spatial_dims), int(channels)
        self.cond_channels, self.widths, self.padding = int(cond_channels), widths, padding
        self.gaussian_skip = bool(gaussian_skip)

    @property
    def factor(self) -> int:
        """Every spatial size must be a multiple of this (``2 ** (len(widths) - 1)``)."""
        return 2 ** (len(self.widths) - 1)

    def check_sample_shape(self, shape, name: str = "x"):
        """Raise ``ValueError`` unless ``shape`` is a valid single-field shape ``(C, *spatial)``."""
        shape = tuple(shape)
        if len(shape) != 1 + self.spatial_dims or shape[0] != self.channels:
            sp = "L" if self.spatial_dims == 1 else "H, W"
            raise ValueError(f"{name} must have shape ({self.channels}, {sp}) (one field with {self.channels} "
                             f"channel(s)), got {shape}")
        if any(n % self.factor or n == 0 for n in shape[1:]):
            K = len(self.widths) - 1
            raise ValueError(f"spatial size {shape[1:]} of {name} must be a positive multiple of 2**{K} = "
                             f"{self.factor} (widths={self.widths} halve the grid {K} times)")

    def __call__(self, x, t, cond=None):
        self.check_sample_shape(x.shape)
        h = x
        if self.cond_channels:
            if cond is None:
                raise ValueError(f"this network expects a conditioning field with {self.cond_channels} channel(s)")
            if cond.shape != (self.cond_channels,) + x.shape[1:]:
                raise ValueError(f"cond must have shape {(self.cond_channels,) + x.shape[1:]}, got {cond.shape}")
            h = jnp.concatenate([x, cond.astype(x.dtype)], axis=0)
        elif cond is not None:
            raise ValueError("this network was built with cond_channels=0 but got a conditioning field")
        emb = self.emb_mlp(self.embed(t))
        h = self.stem(h)
        skips = []
        K = len(self.widths) - 1
        for k, blk in enumerate(self.down):
            h = blk(h, emb)
            skips.append(h)
            if k < K:
                h = _avg_pool2(h)
        h = self.mid(h, emb)
        for k in range(K, -1, -1):
            if k < K:
                h = _upsample2(h)
            h = self.up[k](jnp.concatenate([h, skips[k]], axis=0), emb)
        return output_to_score(self.out_conv(jax.nn.silu(self.out_norm(h))), x, t, self.sde, self.gaussian_skip)


__all__ = ["UNet"]
