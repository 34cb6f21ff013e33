r"""Learned forward models :math:`F_\theta`, :math:`u^F_t = F_\theta(u_{t-1})`, and a wrapper
that lets a known :class:`~assimilax.models.DynamicalModel` play the same role.

All are unbatched equinox Modules ``F(x (d,)) -> (d,)`` (``jax.vmap`` them). The nonlinear
ones are residual, :math:`F_\theta(u) = u + s\,g_\theta(u/s)` with a fixed scale ``s``, so an
untrained network is the persistence forecast. Trained with
:func:`assimilax.learned.fit_regression` on pairs :math:`(u^{ref}_{t-1}, u^{ref}_t)`
:cite:`brajard2020combining,bocquet2020bayesian`.

:class:`StencilForward` is translation-equivariant on a periodic 1-D ring (Lorenz-96): the same
small MLP :math:`g_\theta` maps the window :math:`(u_{i-r},\dots,u_{i+r})` to the increment at
site :math:`i`, for every :math:`i`; the windows are built with ``jnp.roll``, so the cost is
:math:`O(d)` and the parameter count does not depend on :math:`d`.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..models import DynamicalModel
from ..simulate import propagate


def ring_windows(fields, radius: int):
    r"""Periodic windows of a stack of fields on a ring.

    ``fields`` ``(C, d)`` -> ``(d, C * (2r + 1))``: row ``i`` holds
    :math:`(f_c(i + k))_{c, k=-r..r}` (indices mod ``d``).
    """
    shifts = [jnp.roll(fields, -k, axis=-1) for k in range(-radius, radius + 1)]  # each (C, d)
    win = jnp.stack(shifts, axis=-1)  # (C, d, 2r+1)
    return jnp.transpose(win, (1, 0, 2)).reshape(fields.shape[-1], -1)


class ModelForward(eqx.Module):
    r"""A known model as forward operator: ``steps_per_obs`` deterministic model steps
    (:math:`u^F = \mathcal M^k(u)`), or with model noise drawn when called with ``key=``.

    **Arguments:** ``model`` (:class:`~assimilax.models.DynamicalModel`), ``steps_per_obs``.
    """

    model: DynamicalModel
    steps_per_obs: int = eqx.field(static=True, default=1)

    def __call__(self, x, t0=0.0, *, key=None):
        if key is None:
            return self.model.integrate(x, self.steps_per_obs, t0)
        return propagate(self.model, x, self.steps_per_obs, t0, key)


class LinearForward(eqx.Module):
    r"""Affine forward model :math:`F_\theta(u) = W u + b`, initialised at persistence (``W = I``).

    **Arguments:** ``dim``; ``key`` (unused, kept for a uniform constructor).
    """

    W: jax.Array
    b: jax.Array

    def __init__(self, dim: int, *, key=None, dtype=None):
        self.W = jnp.eye(dim, dtype=dtype)
        self.b = jnp.zeros(dim, dtype=dtype)

    def __call__(self, x):
        return self.W @ x + self.b


class DiagonalForward(eqx.Module):
    r"""Diagonal affine forward model :math:`F_\theta(u) = w \odot u + b`, initialised at
    persistence (``w = 1``): a deliberately restricted class (it cannot rotate the state), the
    misspecified forward model of chapter 15's linear study.

    **Arguments:** ``dim``; ``key`` (unused, kept for a uniform constructor).
    """

    w: jax.Array
    b: jax.Array

    def __init__(self, dim: int, *, key=None, dtype=None):
        self.w = jnp.ones(dim, dtype=dtype)
        self.b = jnp.zeros(dim, dtype=dtype)

    @property
    def W(self):
        r"""The forward matrix :math:`\operatorname{diag}(w)`."""
        return jnp.diag(self.w)

    def __call__(self, x):
        return self.w * x + self.b


class MLPForward(eqx.Module):
    r"""Residual MLP forward model :math:`F_\theta(u) = u + s\, g_\theta(u / s)`.

    **Arguments:** ``dim``; ``width=128``; ``depth=2``; ``scale`` :math:`s` (typical state
    magnitude); ``key``.
    """

    mlp: eqx.nn.MLP
    scale: float = eqx.field(static=True)

    def __init__(self, dim: int, width: int = 128, depth: int = 2, scale: float = 1.0, *, key):
        self.mlp = eqx.nn.MLP(dim, dim, width, depth, activation=jax.nn.silu, key=key)
        self.scale = float(scale)

    def __call__(self, x):
        return x + self.scale * self.mlp(x / self.scale)


class StencilForward(eqx.Module):
    r"""Translation-equivariant local forward model on a periodic ring,

    .. math:: F_\theta(u)_i = u_i + s\, g_\theta\big(u_{i-r}/s, \dots, u_{i+r}/s\big), \qquad i = 1..d,

    one MLP :math:`g_\theta: \mathbb R^{2r+1}\to\mathbb R` shared by all sites.

    **Arguments:** ``radius`` r (2 covers Lorenz-96's :math:`u_{i-2}, u_{i-1}, u_{i+1}`);
    ``width=32``; ``depth=2``; ``scale`` s; ``key``; ``dtype`` of the weights. Works for any ring
    size ``d``.
    """

    mlp: eqx.nn.MLP
    radius: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, radius: int = 2, width: int = 32, depth: int = 2, scale: float = 1.0, *, key, dtype=None):
        self.mlp = eqx.nn.MLP(2 * radius + 1, "scalar", width, depth, activation=jax.nn.silu, key=key, dtype=dtype)
        self.radius, self.scale = int(radius), float(scale)

    def __call__(self, x):
        win = ring_windows(x[None, :] / self.scale, self.radius)  # (d, 2r+1)
        return x + self.scale * jax.vmap(self.mlp)(win)


class LearnedDynamics(DynamicalModel):
    r"""A learned one-cycle map :math:`F_\theta` as a deterministic discrete-time
    :class:`~assimilax.models.DynamicalModel`: one model step is one call,
    :math:`x_{k+1} = F_\theta(x_k)`, so that the ensemble filters
    (:func:`~assimilax.filters.ensemble_kalman_filter`, ...) can forecast with it
    (``steps_per_obs=1`` there when :math:`F_\theta` maps one observation time to the next).

    **Arguments:** ``forward`` a callable ``x (d,) -> (d,)`` that is a pytree of arrays, i.e. an
    equinox Module (e.g. :class:`StencilForward`, :class:`ModelForward`): the filters pass the
    model through ``jax.jit``, so a plain Python function is refused;
    ``dim`` the state dimension :math:`d`; ``dt`` the time one call spans (bookkeeping only).
    No model noise (``noise_cov=None``).
    """

    params: object = None                           # the arrays of ``forward`` (traced under jit)
    rest: object = eqx.field(static=True, default=None)  # everything else (activations, static fields)
    dim_: int = eqx.field(static=True, default=1)
    dt: float = eqx.field(static=True, default=1.0)
    noise_cov: object = None

    def __init__(self, forward, dim: int, dt: float = 1.0):
        if not callable(forward) or not isinstance(forward, eqx.Module):
            raise ValueError("forward must be an equinox Module x (d,) -> (d,) (a pytree the filters can jit), "
                             f"got {type(forward).__name__}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        # split, so that the filters' jax.jit sees arrays only (an MLP's activation is a function)
        self.params, self.rest = eqx.partition(forward, eqx.is_array)
        self.dim_, self.dt, self.noise_cov = int(dim), float(dt), None

    @property
    def forward(self):
        """The wrapped ``forward``, reassembled."""
        return eqx.combine(self.params, self.rest)

    @property
    def dim(self) -> int:
        return self.dim_

    def step(self, x, t=0.0):
        out = self.forward(x)
        return out.astype(x.dtype) if hasattr(out, "astype") else out


def as_forward(forward, steps_per_obs: int = 1):
    """Wrap a :class:`~assimilax.models.DynamicalModel` in :class:`ModelForward`; pass anything
    else (a callable ``x -> x``) through."""
    if isinstance(forward, DynamicalModel):
        return ModelForward(forward, int(steps_per_obs))
    return forward


__all__ = ["ring_windows", "ModelForward", "LearnedDynamics", "LinearForward", "MLPForward", "StencilForward", "as_forward"]
