"""Shared pieces of the pseudo-spectral models (:mod:`.burgers`, :mod:`.kraichnan`).

The 2/3-rule cut-off, angular wavenumbers of an ``rfft`` layout, the integrating-factor RK4 step
in Fourier space, and the eager checks of the models' parameters.
"""
from __future__ import annotations

import numbers

import numpy as np


def dealias_cutoff(n: int) -> int:
    r"""Largest wavenumber kept by the 2/3 rule on ``n`` points: :math:`K = \lfloor (n-1)/3 \rfloor`.

    :math:`K` is the largest integer with :math:`3K < n`: a product of two modes
    :math:`|k_1|, |k_2| \le K` has :math:`|k_1 + k_2| \le 2K`, and its alias
    :math:`k_1 + k_2 \mp n` satisfies :math:`|k_1 + k_2 \mp n| \ge n - 2K > K`, so every
    aliased contribution lands on a mode that the mask removes :cite:`orszag1971elimination`.
    """
    return (int(n) - 1) // 3


def integer_wavenumbers(n: int, *, real: bool) -> np.ndarray:
    """Integer wavenumbers of an ``fft`` (``real=False``) or ``rfft`` (``real=True``) axis of ``n``."""
    return np.fft.rfftfreq(n, 1.0 / n) if real else np.fft.fftfreq(n, 1.0 / n)


def if_rk4(nonlinear, v, e_half, h):
    r"""One integrating-factor RK4 step of :math:`\dot v = L v + N(v)` with diagonal :math:`L`.

    With :math:`E_{1/2} = e^{L h / 2}` (``e_half``) and :math:`E = E_{1/2}^2`
    :cite:`kassam2005fourth`:

    .. math::
        a &= N(v), & b &= N\big(E_{1/2}(v + \tfrac h2 a)\big), &
        c &= N\big(E_{1/2} v + \tfrac h2 b\big), & d &= N\big(E v + h E_{1/2} c\big), \\
        v_+ &= E v + \tfrac h6\big(E a + 2 E_{1/2}(b + c) + d\big).

    The linear part is integrated exactly (a single Fourier mode of a linear problem decays at
    exactly :math:`e^{L h}` per step); ``nonlinear`` is evaluated four times.
    """
    e_full = e_half * e_half
    a = nonlinear(v)
    v_half = e_half * v
    b = nonlinear(v_half + (0.5 * h) * (e_half * a))
    c = nonlinear(v_half + (0.5 * h) * b)
    d = nonlinear(e_full * v + h * (e_half * c))
    return e_full * v + (h / 6.0) * (e_full * a + 2.0 * e_half * (b + c) + d)


def check_grid_size(n, name: str = "n", minimum: int = 4) -> int:
    """Refuse a grid size that is not an even integer ``>= minimum``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum or n % 2:
        raise ValueError(f"{name} must be an even integer >= {minimum}, got {n!r}")
    return int(n)


def check_nonnegative(value, name: str) -> float:
    """Refuse a coefficient that is negative or not finite (traced values pass unchecked)."""
    try:
        v = float(value)
    except (TypeError, ValueError, Exception):  # a tracer: cannot check its value
        return value
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_time_step(dt) -> float:
    """Refuse a time step that is not a finite number ``> 0``."""
    try:
        v = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    return v


def spectral_integrate(to_hat, from_hat, step_hat, x, n_steps: int):
    """``n_steps`` steps of ``step_hat`` with the state kept in Fourier space between steps: one
    forward transform in, one inverse out (``lax.fori_loop``).

    Besides saving a transform pair per step, this keeps every Fourier mode in its own floating-
    point scale: a float32 grid field rounded once per step carries white rounding noise of
    relative size ~1e-7 of its largest value into the small high-wavenumber modes, which chaotic
    dynamics then amplify."""
    import jax
    v = jax.lax.fori_loop(0, n_steps, lambda i, v: step_hat(v), to_hat(x))
    return from_hat(v)


def spectral_trajectory(to_hat, from_hat, step_hat, x0, n_steps: int):
    """Like :func:`spectral_integrate`, returning every state, shape ``(n_steps + 1, d)`` with
    ``x0`` first (one inverse transform per stored state)."""
    import jax
    import jax.numpy as jnp

    def body(v, _):
        v = step_hat(v)
        return v, from_hat(v)
    _, xs = jax.lax.scan(body, to_hat(x0), None, length=n_steps)
    return jnp.concatenate([x0[None], xs], axis=0)
