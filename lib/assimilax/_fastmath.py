r"""Vectorisable elementwise kernels where XLA's CPU lowering is slow.

XLA lowers ``atan`` on CPU to a scalar library call, which does not vectorise: in the
EnSF analysis (one ``arctan`` and one likelihood score per state component, per member, per
reverse-SDE step) it costs more than everything else together. :func:`arctan` evaluates the
float32 arctangent branch-free with the range reduction and minimax polynomial of the Cephes
``atanf`` routine :cite:`moshier1989methods`:

.. math::
    \arctan x = \operatorname{sign}(x)\Big(y_0 + u + u z\,P(z)\Big),\quad z = u^2,

with :math:`(y_0, u) = (\pi/2, -1/|x|)` for :math:`|x| > \tan\tfrac{3\pi}{8}`,
:math:`(\pi/4, \tfrac{|x|-1}{|x|+1})` for :math:`\tan\tfrac{\pi}{8} < |x| \le \tan\tfrac{3\pi}{8}`
and :math:`(0, |x|)` otherwise, and :math:`P` of degree 3 (relative error about
:math:`10^{-7}`, the float32 resolution). All three branches are computed and selected, so the
loop vectorises. Float64 inputs use ``jnp.arctan`` (accuracy first). The derivative is the exact
:math:`1/(1+x^2)` through a custom JVP.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_TAN_3PI_8 = 2.414213562373095
_TAN_PI_8 = 0.4142135623730950


def _atan_f32(x):
    a = jnp.abs(x)
    big = a > _TAN_3PI_8
    mid = (a > _TAN_PI_8) & ~big
    safe = jnp.where(big, a, 1.0)  # avoid 1/0 in the unused branch
    u = jnp.where(big, -1.0 / safe, jnp.where(mid, (a - 1.0) / (a + 1.0), a))
    y0 = jnp.where(big, jnp.float32(jnp.pi / 2), jnp.where(mid, jnp.float32(jnp.pi / 4), jnp.float32(0.0)))
    z = u * u
    p = ((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1
    return jnp.sign(x) * (y0 + (p * z * u + u))


@jax.custom_jvp
def arctan(x):
    r"""Elementwise :math:`\arctan x`; vectorised polynomial for float32 (and lower), ``jnp.arctan``
    for float64. Same shape and dtype as ``x``."""
    x = jnp.asarray(x)
    if x.dtype == jnp.float64 or not jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.arctan(x)
    return _atan_f32(x.astype(jnp.float32)).astype(x.dtype)


@arctan.defjvp
def _arctan_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    x = jnp.asarray(x)
    return arctan(x), dx / (1.0 + x * x)


__all__ = ["arctan"]
