r"""Forward noising SDEs with Gaussian transition kernels.

Every SDE here is linear, :math:`\mathrm dx_t = f(t)\,x_t\,\mathrm dt + g(t)\,\mathrm dW_t`, so
its transition kernel is Gaussian,

.. math::
    x_t \mid x_0 \sim \mathcal N\big(\alpha_t x_0,\ \sigma_t^2 I\big), \qquad
    f(t) = \frac{\mathrm d \log \alpha_t}{\mathrm dt}, \qquad
    g(t)^2 = \frac{\mathrm d \sigma_t^2}{\mathrm dt} - 2 f(t)\, \sigma_t^2 .

A subclass defines :math:`\log\alpha_t` and :math:`\sigma_t^2`; :math:`f` and :math:`g^2` follow
by forward-mode differentiation, so the drift, the diffusion and the marginals can never
disagree. The reverse-time SDE and the probability-flow ODE of :cite:`song2021scorebased` are

.. math::
    \mathrm dx = \big[f x - g^2 \nabla \log p_t(x)\big]\mathrm dt + g\,\mathrm d\bar W, \qquad
    \frac{\mathrm dx}{\mathrm dt} = f x - \tfrac12 g^2 \nabla \log p_t(x).

Times run over ``[t_min, t_max]``; the samplers integrate from ``t_max`` down to ``t_min``.
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp


def _float_time(t):
    """``t`` as a floating array, keeping its float dtype (so float32 samplers stay float32 when
    float64 is enabled); integers and Python scalars get the default float dtype."""
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.floating) else t.astype(jnp.result_type(float))


class SDE(eqx.Module):
    """Base class: subclasses implement ``log_alpha(t)`` and ``sigma2(t)`` (element-wise in t)."""

    t_min: float = eqx.field(static=True, default=1e-3)
    t_max: float = eqx.field(static=True, default=1.0)

    def log_alpha(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma2(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def alpha(self, t):
        r""":math:`\alpha_t`, the mean scaling of the kernel."""
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        r""":math:`\sigma_t`, the standard deviation of the kernel."""
        return jnp.sqrt(self.sigma2(t))

    def f(self, t):
        r"""Drift coefficient :math:`f(t) = \mathrm d\log\alpha_t/\mathrm dt`."""
        t = _float_time(t)
        return jax.jvp(self.log_alpha, (t,), (jnp.ones_like(t),))[1]

    def g2(self, t):
        r"""Squared diffusion :math:`g(t)^2 = \dot{\sigma^2_t} - 2 f(t)\sigma_t^2`."""
        t = _float_time(t)
        dsig2 = jax.jvp(self.sigma2, (t,), (jnp.ones_like(t),))[1]
        return dsig2 - 2.0 * self.f(t) * self.sigma2(t)

    def drift(self, x, t):
        """Forward drift :math:`f(t)\\,x`."""
        return self.f(t) * x

    def diffusion(self, t):
        """Forward diffusion :math:`g(t)`."""
        return jnp.sqrt(self.g2(t))

    def marginal(self, x0, t):
        r"""Mean :math:`\alpha_t x_0` and standard deviation :math:`\sigma_t` of :math:`x_t\mid x_0`."""
        return self.alpha(t) * x0, self.sigma(t)

    def prior_std(self, data_std: float = 1.0):
        r"""Std of the Gaussian that approximates :math:`p_{t_\max}` for data of scale ``data_std``:
        :math:`\sqrt{\alpha_T^2 s^2 + \sigma_T^2}`."""
        return jnp.sqrt(self.alpha(self.t_max) ** 2 * data_std**2 + self.sigma2(self.t_max))


class VPSDE(SDE):
    r"""Variance-preserving SDE :cite:`song2021scorebased,ho2020denoising`,
    :math:`\sigma_t^2 = 1 - \alpha_t^2`.

    ``schedule="linear"``: :math:`\beta(t) = \beta_{\min} + t(\beta_{\max}-\beta_{\min})`,
    :math:`\log\alpha_t = -\tfrac12\int_0^t\beta`. ``schedule="cosine"`` :cite:`nichol2021improved`:
    :math:`\alpha_t^2 = \cos^2\!\big(\tfrac{t+s}{1+s}\tfrac\pi2\big)/\cos^2\!\big(\tfrac{s}{1+s}\tfrac\pi2\big)`
    with ``s = 0.008``; its ``t_max`` defaults to 0.99 because :math:`\beta(t)\to\infty` at ``t = 1``.
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)
    schedule: str = eqx.field(static=True, default="linear")
    cosine_s: float = eqx.field(static=True, default=0.008)

    def __init__(self, beta_min=0.1, beta_max=20.0, schedule="linear", t_min=1e-3, t_max=None, cosine_s=0.008):
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        self.beta_min, self.beta_max, self.schedule, self.cosine_s = float(beta_min), float(beta_max), schedule, float(cosine_s)
        self.t_min = float(t_min)
        self.t_max = float(t_max if t_max is not None else (1.0 if schedule == "linear" else 0.99))

    def log_alpha(self, t):
        if self.schedule == "linear":
            return -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        s = self.cosine_s
        return jnp.log(jnp.cos((t + s) / (1 + s) * (jnp.pi / 2))) - math.log(math.cos(s / (1 + s) * math.pi / 2))

    def sigma2(self, t):
        return -jnp.expm1(2.0 * self.log_alpha(t))

    def beta(self, t):
        r""":math:`\beta(t) = g(t)^2 = -2 f(t)`."""
        return -2.0 * self.f(t)


class VESDE(SDE):
    r"""Variance-exploding SDE :cite:`song2021scorebased`: :math:`\alpha_t = 1`,
    :math:`\sigma_t = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t`."""

    sigma_min: float = eqx.field(static=True, default=0.01)
    sigma_max: float = eqx.field(static=True, default=50.0)

    def __init__(self, sigma_min=0.01, sigma_max=50.0, t_min=0.0, t_max=1.0):
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = float(t_min), float(t_max)

    def log_alpha(self, t):
        return jnp.zeros_like(_float_time(t))

    def sigma2(self, t):
        return self.sigma_min**2 * (self.sigma_max / self.sigma_min) ** (2.0 * t)


class EnSFSDE(SDE):
    r"""The linear-interpolation schedule of the ensemble score filter :cite:`bao2024ensemble`:

    .. math:: \alpha_t = 1 - (1-\varepsilon_\alpha)\,t, \qquad \sigma_t^2 = \varepsilon_\beta + (1-\varepsilon_\beta)\,t,

    on ``[0, 1]``. ``eps_a`` is :math:`\alpha_1` (the signal kept at ``t = 1``) and ``eps_b`` is
    :math:`\sigma_0^2`, the kernel *variance* left at ``t = 0`` (so the sampled analysis carries
    noise of variance ``eps_b``).
    """

    eps_a: float = eqx.field(static=True, default=0.5)
    eps_b: float = eqx.field(static=True, default=0.025)

    def __init__(self, eps_a=0.5, eps_b=0.025, t_min=0.0, t_max=1.0):
        if not (0.0 < eps_a <= 1.0) or not (0.0 <= eps_b < 1.0):
            raise ValueError(f"need 0 < eps_a <= 1 and 0 <= eps_b < 1, got {eps_a}, {eps_b}")
        self.eps_a, self.eps_b = float(eps_a), float(eps_b)
        self.t_min, self.t_max = float(t_min), float(t_max)

    def log_alpha(self, t):
        return jnp.log1p(-(1.0 - self.eps_a) * t)

    def sigma2(self, t):
        return self.eps_b + (1.0 - self.eps_b) * t


__all__ = ["SDE", "VPSDE", "VESDE", "EnSFSDE"]
