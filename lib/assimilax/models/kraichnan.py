"""Two-dimensional incompressible Navier--Stokes in vorticity form (forced or decaying Kraichnan
turbulence), pseudo-spectral on :math:`[0, 2\\pi)^2` with 2/3 dealiasing."""
from __future__ import annotations

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


class Kraichnan2D(DynamicalModel):
    r"""2-D incompressible Navier--Stokes in vorticity form on the periodic square :math:`[0, 2\pi)^2`.

    .. math::
        \omega_t + \mathbf u \cdot \nabla \omega = \nu \Delta \omega - \mu \omega + f,
        \qquad \mathbf u = \nabla^\perp \psi = (\psi_y, -\psi_x),\qquad \Delta \psi = -\omega,

    with the steady Kolmogorov forcing :math:`f = -A k_f \cos(k_f y)` (the curl of the body
    force :math:`(A \sin k_f y, 0)`, as jax-cfd's ``ForcedNavierStokes2D`` of
    :cite:`kochkov2021machine`, after :cite:`boffetta2012two`) when ``forced``; unforced
    and without drag it is decaying turbulence, started from
    :meth:`random_initial_condition`. Forced with drag, energy injected at :math:`k_f` cascades
    to large scales (inverse cascade, arrested by the drag :math:`\mu`) and enstrophy to small
    scales (direct cascade, :math:`E(k) \sim k^{-3}`, steeper with drag)
    :cite:`kraichnan1967inertial,boffetta2012two`.

    *Discretisation.* Fourier in both directions, the state kept in ``rfft2`` layout inside a
    step. The advection term is written in the form of :cite:`basdevant1983technical`, which
    needs only two products:

    .. math::
        \widehat{\mathbf u\cdot\nabla\omega} = -(k_x^2 - k_y^2)\, \widehat{uv}
        - k_x k_y\, \widehat{(v^2 - u^2)}
        \qquad\Big(= \widehat{\partial_x^2 - \partial_y^2}\,(uv) + \widehat{\partial_x\partial_y}(v^2-u^2)\Big),

    so one RK stage costs two inverse and two forward FFTs; the products are dealiased by the 2/3
    rule (all modes with :math:`|k_x| > K` or :math:`|k_y| > K`, :math:`K = \lfloor (n-1)/3 \rfloor`,
    are zeroed: a symmetric square mask :cite:`orszag1971elimination`). The linear terms
    :math:`-(\nu |k|^2 + \mu)` are integrated exactly by integrating-factor RK4
    :cite:`kassam2005fourth`; the forcing is part of the explicit term.

    *Layout.* The state is the vorticity on the grid :math:`x_i = 2\pi i/n`, :math:`y_j = 2\pi
    j/n`, as ``omega[i, j]`` (``indexing="ij"``: axis 0 is :math:`x`, as in jax-cfd), flattened
    row-major to ``(n * n,)``. Every step first projects it onto the kept modes. Methods act on
    one state; batch with ``jax.vmap``.

    *Batching on the CPU.* A vmapped batch computes the same numbers as one trajectory at a time
    (to rounding) but is not reliably cheaper per trajectory from :math:`64^2` up: XLA runs each
    FFT single-threaded, so a batch shares only the fixed dispatch cost of a step, while XLA
    splits the batch's larger elementwise fusions over its thread pool (a loss on a busy machine)
    and transforms all fields of a batch axis by axis, which leaves the core's cache at
    :math:`256^2` (``benchmarks/spectral_batching.py`` measures both).

    **Arguments:**

    - ``n``: grid points per side (even, ``>= 4``; default 64).
    - ``nu``: viscosity :math:`\nu \ge 0` (default ``1e-3``).
    - ``drag``: linear drag :math:`\mu \ge 0` (default 0.1 when ``forced``, else 0).
    - ``forcing_wavenumber``: :math:`k_f` (integer in :math:`[1, K]` when ``forced``, default 4).
    - ``forcing_amplitude``: :math:`A` (default 1, jax-cfd's Kolmogorov ``scale``).
    - ``dt``: time step (default :math:`0.5\,\Delta x / 7`, jax-cfd's ``stable_time_step`` for a
      maximum velocity of 7 and Courant number 0.5, the configuration of
      :cite:`kochkov2021machine`).
    - ``forced``: Kolmogorov forcing on (default) or off.
    - ``noise_cov``: ``(n*n, n*n)`` model-noise covariance or ``None``.
    """

    n: int = eqx.field(static=True, default=64)
    nu: float = 1e-3
    drag: float = 0.1
    forcing_wavenumber: int = eqx.field(static=True, default=4)
    forcing_amplitude: float = 1.0
    dt: float = eqx.field(static=True, default=0.5 * 2 * np.pi / 64 / 7.0)
    forced: bool = eqx.field(static=True, default=True)
    noise_cov: object = None

    def __init__(self, n: int = 64, nu: float = 1e-3, drag: float | None = None,
                 forcing_wavenumber: int = 4, forcing_amplitude: float = 1.0,
                 dt: float | None = None, forced: bool = True, noise_cov=None):
        self.n = check_grid_size(n)
        self.nu = check_nonnegative(nu, "nu")
        self.forced = bool(forced)
        self.drag = check_nonnegative((0.1 if self.forced else 0.0) if drag is None else drag, "drag")
        cut = dealias_cutoff(self.n)
        if (isinstance(forcing_wavenumber, bool) or not isinstance(forcing_wavenumber, (int, np.integer))
                or not 1 <= forcing_wavenumber <= max(cut, 0 if self.forced else forcing_wavenumber)):
            raise ValueError(f"forcing_wavenumber must be an integer in [1, {cut}] (the 2/3 cut-off "
                             f"for n={self.n}), got {forcing_wavenumber!r}")
        self.forcing_wavenumber = int(forcing_wavenumber)
        self.forcing_amplitude = forcing_amplitude
        self.dt = check_time_step(0.5 * (2 * np.pi / self.n) / 7.0 if dt is None else dt)
        self.noise_cov = noise_cov

    # -- geometry -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.n * self.n

    @property
    def field_shape(self) -> tuple:
        """Shape of the vorticity field on the grid, ``(n, n)`` (axis 0 is :math:`x`)."""
        return (self.n, self.n)

    @property
    def cutoff(self) -> int:
        r"""Largest integer wavenumber kept per direction, :math:`K = \lfloor (n-1)/3 \rfloor`."""
        return dealias_cutoff(self.n)

    @property
    def grid(self) -> tuple:
        """Grid coordinates ``(x, y)``, each ``(n, n)`` with ``indexing="ij"`` (NumPy, float64)."""
        s = np.arange(self.n) * (2 * np.pi / self.n)
        return tuple(np.meshgrid(s, s, indexing="ij"))

    def _spectral_constants(self, dtype):
        """``kx, ky`` (``(n, 1)``, ``(1, n//2+1)``), the 2/3 mask and ``|k|^2`` (``(n, n//2+1)``)."""
        kx = integer_wavenumbers(self.n, real=False)[:, None]
        ky = integer_wavenumbers(self.n, real=True)[None, :]
        mask = ((np.abs(kx) <= self.cutoff) & (np.abs(ky) <= self.cutoff)).astype(np.float64)
        k2 = kx ** 2 + ky ** 2
        c = lambda a: jnp.asarray(a, dtype=dtype)  # noqa: E731
        return c(kx), c(ky), c(mask), c(k2)

    def forcing(self, dtype=None) -> Float[Array, "n n"]:
        r"""The vorticity forcing :math:`f(x, y) = -A k_f \cos(k_f y)` on the grid, ``(n, n)``
        (zeros when not ``forced``)."""
        dtype = _default_float() if dtype is None else dtype
        y = jnp.asarray(self.grid[1], dtype)
        if not self.forced:
            return jnp.zeros_like(y)
        kf = self.forcing_wavenumber
        return (-self.forcing_amplitude * kf) * jnp.cos(kf * y)

    def _forcing_hat(self, dtype):
        """``rfft2`` of the forcing, built in NumPy (one mode pair at :math:`(0, \\pm k_f)`)."""
        f_hat = np.zeros((self.n, self.n // 2 + 1), np.complex128)
        if self.forced:
            # -A k_f cos(k_f y): rfft2 puts n^2 / 2 at (kx, ky) = (0, k_f)
            f_hat[0, self.forcing_wavenumber] = -0.5 * self.forcing_wavenumber * self.n ** 2
        return jnp.asarray(f_hat, dtype=jnp.result_type(dtype, jnp.complex64)) * self.forcing_amplitude

    # -- the equation ---------------------------------------------------------------------------
    def _velocity_hat(self, omega_hat, kx, ky, k2):
        psi_hat = omega_hat / jnp.where(k2 == 0, 1.0, k2)  # Δψ = -ω; the mean of ψ is zero
        return 1j * ky * psi_hat, -1j * kx * psi_hat

    def nonlinear(self, omega_hat: Complex[Array, "n m"]) -> Complex[Array, "n m"]:
        r"""Explicit term :math:`-P_K\widehat{\mathbf u\cdot\nabla\omega} + \hat f` of a spectrum.

        **Arguments:** ``omega_hat``: ``jnp.fft.rfft2`` of the vorticity, shape
        ``(n, n // 2 + 1)``, assumed zero beyond the cut-off (as the step keeps it).

        **Returns:** the term in the same layout (the advection part zero beyond the cut-off).
        """
        dtype = omega_hat.real.dtype
        kx, ky, mask, k2 = self._spectral_constants(dtype)
        u_hat, v_hat = self._velocity_hat(omega_hat, kx, ky, k2)
        uv = jnp.fft.irfft2(jnp.stack([u_hat, v_hat]), s=(self.n, self.n))
        u, v = uv[0], uv[1]
        prods = jnp.fft.rfft2(jnp.stack([u * v, v * v - u * u]))
        adv = (kx * kx - ky * ky) * prods[0] + (kx * ky) * prods[1]  # = -(u·∇ω)^
        out = mask * adv
        if self.forced:
            out = out + self._forcing_hat(dtype)
        return out

    def vector_field(self, x: Float[Array, " d"], t=0.0) -> Float[Array, " d"]:
        r"""Semi-discrete tendency :math:`-(\nu|k|^2 + \mu)\hat\omega - P_K\widehat{\mathbf u\cdot
        \nabla\omega} + \hat f` of the projected state, on the grid, flat ``(n * n,)``."""
        n = self.n
        kx, ky, mask, k2 = self._spectral_constants(x.dtype)
        w_hat = mask * jnp.fft.rfft2(x.reshape(n, n))
        rhs = -(self.nu * k2 + self.drag) * w_hat + self.nonlinear(w_hat)
        return jnp.fft.irfft2(rhs, s=(n, n)).reshape(n * n)

    def to_spectral(self, x: Float[Array, " d"]) -> Complex[Array, "n m"]:
        """``rfft2`` of the flat state projected on the kept modes, shape ``(n, n // 2 + 1)``."""
        mask = self._spectral_constants(x.dtype)[2]
        return mask * jnp.fft.rfft2(x.reshape(self.n, self.n))

    def from_spectral(self, omega_hat: Complex[Array, "n m"]) -> Float[Array, " d"]:
        """The flat grid state ``(n * n,)`` of an ``rfft2`` spectrum."""
        return jnp.fft.irfft2(omega_hat, s=(self.n, self.n)).reshape(self.n * self.n)

    def step_spectral(self, omega_hat: Complex[Array, "n m"]) -> Complex[Array, "n m"]:
        """One integrating-factor RK4 step of a spectrum (zero beyond the cut-off), same layout."""
        k2 = self._spectral_constants(omega_hat.real.dtype)[3]
        e_half = jnp.exp((-0.5 * self.dt) * (self.nu * k2 + self.drag))
        return if_rk4(self.nonlinear, omega_hat, e_half, self.dt)

    def step(self, x: Float[Array, " d"], t=0.0) -> Float[Array, " d"]:
        """One integrating-factor RK4 step of length ``dt``; flat ``(n * n,)`` to ``(n * n,)``."""
        return self.from_spectral(self.step_spectral(self.to_spectral(x)))

    def integrate(self, x: Float[Array, " d"], n_steps: int, t0=0.0) -> Float[Array, " d"]:
        """State after ``n_steps`` steps, kept in Fourier space in between (one transform pair in
        all; in float32 also more accurate than repeated :meth:`step`, see
        :func:`!assimilax.models._spectral.spectral_integrate`)."""
        return spectral_integrate(self.to_spectral, self.from_spectral, self.step_spectral, x, n_steps)

    def trajectory(self, x0: Float[Array, " d"], n_steps: int, t0=0.0) -> Float[Array, "T d"]:
        """Every state, shape ``(n_steps + 1, n * n)`` with ``x0`` first, stepped in Fourier space."""
        return spectral_trajectory(self.to_spectral, self.from_spectral, self.step_spectral, x0, n_steps)

    # -- helpers --------------------------------------------------------------------------------
    def velocity(self, omega: Float[Array, " d"]) -> tuple:
        r"""Velocity :math:`(u, v) = (\psi_y, -\psi_x)` of a vorticity field, with
        :math:`\Delta\psi = -\omega` and zero-mean :math:`\psi`.

        **Arguments:** ``omega``: flat ``(n * n,)`` or ``(n, n)``.

        **Returns:** ``(u, v)``, each ``(n, n)``.
        """
        n = self.n
        kx, ky, _, k2 = self._spectral_constants(omega.dtype)
        u_hat, v_hat = self._velocity_hat(jnp.fft.rfft2(omega.reshape(n, n)), kx, ky, k2)
        return jnp.fft.irfft2(u_hat, s=(n, n)), jnp.fft.irfft2(v_hat, s=(n, n))

    def random_initial_condition(self, key: PRNGKeyArray, k0: float = 10.0, energy: float = 0.5,
                                 dtype=None) -> Float[Array, " d"]:
        r"""A random vorticity field with the Kraichnan-type energy spectrum
        :math:`E(k) \propto k^4 e^{-(k/k_0)^2}` :cite:`san2012high` and kinetic energy ``energy``.

        Gaussian white noise on the grid is shaped in Fourier space by
        :math:`|\hat\omega(\mathbf k)| \propto \sqrt{|\mathbf k|\, E(|\mathbf k|)}` (a shell of
        radius :math:`k` holds about :math:`2\pi k` modes and :math:`|\hat\omega|^2 =
        k^2 |\hat{\mathbf u}|^2`), so the phases are uniform and the shell-summed spectrum is
        :math:`E(k)` in expectation; the field is then truncated to the kept modes, given zero
        mean, and scaled so that :math:`\tfrac12 \langle |\mathbf u|^2 \rangle = ` ``energy``
        exactly (mean over the grid).

        **Arguments:** ``key``; ``k0`` :math:`k_0` (default 10, the peak of :math:`E` being at
        :math:`\sqrt 2 k_0`); ``energy`` (default 0.5); ``dtype`` (default: JAX's default float).

        **Returns:** flat ``(n * n,)``. Vmap over keys for a batch.
        """
        if not np.isfinite(k0) or k0 <= 0:
            raise ValueError(f"k0 must be a finite number > 0, got {k0!r}")
        if not np.isfinite(energy) or energy <= 0:
            raise ValueError(f"energy must be a finite number > 0, got {energy!r}")
        n = self.n
        dtype = _default_float() if dtype is None else dtype
        kx, ky, mask, k2 = self._spectral_constants(dtype)
        kmag = jnp.sqrt(k2)
        shape = jnp.sqrt(kmag * kmag ** 4 * jnp.exp(-(kmag / k0) ** 2)) * mask
        noise = jax.random.normal(key, (n, n), dtype)
        w_hat = shape * jnp.fft.rfft2(noise)
        w_hat = w_hat.at[0, 0].set(0.0)
        u_hat, v_hat = self._velocity_hat(w_hat, kx, ky, k2)
        # Parseval for rfft2: mean over the grid of |u|^2 = sum over all modes |u_hat|^2 / n^4,
        # the columns 1 .. n/2 - 1 standing for two modes each
        weight = jnp.asarray(np.where((np.arange(n // 2 + 1) == 0) | (np.arange(n // 2 + 1) == n // 2),
                                      1.0, 2.0)[None, :], dtype)
        e = 0.5 * jnp.sum(weight * (jnp.abs(u_hat) ** 2 + jnp.abs(v_hat) ** 2)) / float(n) ** 4
        w_hat = w_hat * jnp.sqrt(energy / e)
        return jnp.fft.irfft2(w_hat, s=(n, n)).reshape(n * n)
