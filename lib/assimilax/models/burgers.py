"""Viscous Burgers equation on a periodic domain, pseudo-spectral with 2/3 dealiasing."""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from ._base import DynamicalModel
from ._spectral import (check_grid_size, check_nonnegative, check_time_step, dealias_cutoff,
                        if_rk4, integer_wavenumbers, spectral_integrate, spectral_trajectory)


def _default_float():
    return jnp.zeros(()).dtype  # float32, or float64 when the caller enabled x64


class Burgers1D(DynamicalModel):
    r"""Viscous Burgers equation, periodic on :math:`[0, L)`, pseudo-spectral in space.

    .. math::
        u_t + u\,u_x = \nu\, u_{xx}
        \quad\Longleftrightarrow\quad
        \hat u_t(k) = -\nu k^2\, \hat u(k) - \tfrac{i k}{2}\, \widehat{P_K(u^2)}(k),
        \qquad k = \tfrac{2\pi m}{L},\; |m| \le K,

    with the nonlinear term in conservative form :math:`(u^2/2)_x`, its product formed on the
    grid and dealiased by the 2/3 rule (:math:`P_K` keeps :math:`|m| \le K = \lfloor (n-1)/3
    \rfloor` and zeroes the rest, :cite:`orszag1971elimination`). Time stepping is
    integrating-factor RK4 (:func:`!if_rk4`,
    :cite:`kassam2005fourth`): diffusion is integrated exactly, so the step is limited by the
    advective CFL condition only. One step costs one ``rfft``/``irfft`` pair to enter and leave
    Fourier space and one pair per RK stage.

    *Convention.* The viscosity multiplies :math:`u_{xx}` directly. PDEBench
    :cite:`takamoto2022pdebench` writes :math:`u_t + (u^2/2)_x = (\nu_{\rm PB}/\pi) u_{xx}` on
    :math:`[0, 1)`; rescaling :math:`x \to 2\pi x`, :math:`t \to 2\pi t` maps it to this form on
    :math:`[0, 2\pi)` with :math:`\nu = 2 \nu_{\rm PB}` (the default :math:`\nu = 0.02` is
    PDEBench's :math:`\nu_{\rm PB} = 0.01`). A shock of jump :math:`\Delta u` has width about
    :math:`4\nu/\Delta u`; its spectrum falls like :math:`e^{-\pi k \nu}` for :math:`\Delta u = 2`,
    so resolving it to :math:`10^{-3}` at the cut-off needs about :math:`\nu \gtrsim 7/K`
    (in units where :math:`L = 2\pi`).

    The state is the vector of grid values :math:`u(x_j)`, :math:`x_j = jL/n`, shape ``(n,)``.
    Every step first projects it onto the kept modes. All methods act on one state; batch
    with ``jax.vmap``.

    **Arguments:**

    - ``n``: grid points (even, ``>= 4``; default 256).
    - ``nu``: viscosity :math:`\nu \ge 0` (default 0.02; 0 is the inviscid, Galerkin-truncated
      equation).
    - ``dt``: time step (default ``0.25 L / n``: Courant number :math:`|u| \Delta t / \Delta x`
      of 0.25 per unit velocity).
    - ``length``: domain length :math:`L` (default :math:`2\pi`).
    - ``noise_cov``: ``(n, n)`` model-noise covariance or ``None``.
    """

    n: int = eqx.field(static=True, default=256)
    nu: float = 0.02
    length: float = eqx.field(static=True, default=2 * math.pi)
    dt: float = eqx.field(static=True, default=0.25 * 2 * math.pi / 256)
    noise_cov: object = None

    def __init__(self, n: int = 256, nu: float = 0.02, dt: float | None = None,
                 length: float = 2 * math.pi, noise_cov=None):
        self.n = check_grid_size(n)
        self.nu = check_nonnegative(nu, "nu")
        length = float(length)
        if not np.isfinite(length) or length <= 0:
            raise ValueError(f"length must be a finite number > 0, got {length!r}")
        self.length = length
        self.dt = check_time_step(0.25 * length / self.n if dt is None else dt)
        self.noise_cov = noise_cov

    @property
    def dim(self) -> int:
        return self.n

    @property
    def field_shape(self) -> tuple:
        """Shape of the field on the grid, ``(n,)`` (the state itself)."""
        return (self.n,)

    @property
    def cutoff(self) -> int:
        r"""Largest integer wavenumber kept by the 2/3 rule, :math:`K = \lfloor (n-1)/3 \rfloor`."""
        return dealias_cutoff(self.n)

    @property
    def grid(self) -> np.ndarray:
        """Grid points :math:`x_j = jL/n`, shape ``(n,)`` (NumPy, float64)."""
        return np.arange(self.n) * (self.length / self.n)

    def _wavenumbers(self, dtype):
        m = integer_wavenumbers(self.n, real=True)
        k = m * (2 * np.pi / self.length)
        mask = (np.abs(m) <= self.cutoff).astype(np.float64)
        return jnp.asarray(k, dtype=dtype), jnp.asarray(mask, dtype=dtype)

    def nonlinear(self, u_hat: Complex[Array, " m"]) -> Complex[Array, " m"]:
        r"""Dealiased nonlinear term :math:`-\tfrac{ik}{2} P_K\widehat{(u^2)}` of a spectrum.

        **Arguments:** ``u_hat``: ``jnp.fft.rfft`` of the field, shape ``(n // 2 + 1,)``, assumed
        zero beyond the cut-off (as the step keeps it).

        **Returns:** the term in the same layout, zero beyond the cut-off.
        """
        k, mask = self._wavenumbers(u_hat.real.dtype)
        u = jnp.fft.irfft(u_hat, n=self.n)
        return (-0.5j * k * mask) * jnp.fft.rfft(u * u)

    def vector_field(self, x: Float[Array, " n"], t=0.0) -> Float[Array, " n"]:
        r"""Semi-discrete tendency :math:`-\nu k^2 \hat u - \tfrac{ik}{2} P_K\widehat{(u^2)}` of
        the projected state, on the grid, shape ``(n,)``."""
        k, mask = self._wavenumbers(x.dtype)
        u_hat = mask * jnp.fft.rfft(x)
        return jnp.fft.irfft(-self.nu * k * k * u_hat + self.nonlinear(u_hat), n=self.n)

    def to_spectral(self, x: Float[Array, " n"]) -> Complex[Array, " m"]:
        """``rfft`` of the state projected on the kept modes, shape ``(n // 2 + 1,)``."""
        mask = self._wavenumbers(x.dtype)[1]
        return mask * jnp.fft.rfft(x)

    def from_spectral(self, u_hat: Complex[Array, " m"]) -> Float[Array, " n"]:
        """The grid state ``(n,)`` of an ``rfft`` spectrum."""
        return jnp.fft.irfft(u_hat, n=self.n)

    def step_spectral(self, u_hat: Complex[Array, " m"]) -> Complex[Array, " m"]:
        """One integrating-factor RK4 step of a spectrum (zero beyond the cut-off), same layout."""
        k = self._wavenumbers(u_hat.real.dtype)[0]
        e_half = jnp.exp((-0.5 * self.dt * self.nu) * (k * k))
        return if_rk4(self.nonlinear, u_hat, e_half, self.dt)

    def step(self, x: Float[Array, " n"], t=0.0) -> Float[Array, " n"]:
        """One integrating-factor RK4 step of length ``dt``, shape ``(n,)`` to ``(n,)``."""
        return self.from_spectral(self.step_spectral(self.to_spectral(x)))

    def integrate(self, x: Float[Array, " n"], n_steps: int, t0=0.0) -> Float[Array, " n"]:
        """State after ``n_steps`` steps, kept in Fourier space in between (one transform pair in
        all; in float32 also more accurate than repeated :meth:`step`)."""
        return spectral_integrate(self.to_spectral, self.from_spectral, self.step_spectral, x, n_steps)

    def trajectory(self, x0: Float[Array, " n"], n_steps: int, t0=0.0) -> Float[Array, "T n"]:
        """Every state, shape ``(n_steps + 1, n)`` with ``x0`` first, stepped in Fourier space."""
        return spectral_trajectory(self.to_spectral, self.from_spectral, self.step_spectral, x0, n_steps)

    def random_initial_condition(self, key: PRNGKeyArray, n_waves: int = 2, max_wavenumber: int = 4,
                                 amplitude: float = 1.0, dtype=None) -> Float[Array, " n"]:
        r"""A sum of random sinusoids (the PDEBench recipe :cite:`takamoto2022pdebench`, written anew).

        .. math::
            u_0(x) = \sum_{j=1}^{J} A_j \sin\!\big(2\pi m_j x / L + \phi_j\big),\qquad
            m_j \sim \mathcal U\{1, \dots, m_{\max}\},\; A_j \sim \mathcal U(0, A),\;
            \phi_j \sim \mathcal U(0, 2\pi).

        **Arguments:** ``key``; ``n_waves`` :math:`J` (default 2); ``max_wavenumber``
        :math:`m_{\max}` (default 4, at most the cut-off :math:`K`); ``amplitude`` :math:`A`;
        ``dtype`` (default: JAX's default float).

        **Returns:** the grid values, shape ``(n,)``. Vmap over keys for a batch.
        """
        if not isinstance(n_waves, (int, np.integer)) or n_waves < 1:
            raise ValueError(f"n_waves must be a positive integer, got {n_waves!r}")
        if not isinstance(max_wavenumber, (int, np.integer)) or not 1 <= max_wavenumber <= self.cutoff:
            raise ValueError(f"max_wavenumber must be an integer in [1, {self.cutoff}] "
                             f"(the cut-off for n={self.n}), got {max_wavenumber!r}")
        dtype = _default_float() if dtype is None else dtype
        k_m, k_a, k_p = jax.random.split(key, 3)
        m = jax.random.randint(k_m, (n_waves,), 1, max_wavenumber + 1)
        amp = jax.random.uniform(k_a, (n_waves,), dtype, 0.0, amplitude)
        phase = jax.random.uniform(k_p, (n_waves,), dtype, 0.0, 2 * np.pi)
        x = jnp.asarray(self.grid, dtype)
        arg = (2 * np.pi / self.length) * m.astype(dtype)[:, None] * x[None, :] + phase[:, None]
        return jnp.sum(amp[:, None] * jnp.sin(arg), axis=0)
