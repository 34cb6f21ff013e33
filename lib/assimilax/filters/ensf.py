r"""Ensemble score filter (EnSF) :cite:`bao2024ensemble`: a training-free score-based filter.

The forecast ensemble :math:`\{x^f_j\}_{j=1}^N` defines, through the forward SDE
:math:`x_t\mid x_0\sim\mathcal N(\alpha_t x_0, \sigma_t^2 I)`, the Monte Carlo prior score

.. math::
    \hat s(x, t) = \nabla_x \log \frac1N\sum_{j=1}^N \mathcal N\big(x;\ \alpha_t x^f_j,\ \sigma_t^2 I\big)
    = \sum_{j} w_j(x)\,\frac{\alpha_t x^f_j - x}{\sigma_t^2},\qquad
    w_j(x) = \operatorname{softmax}_j\!\Big(-\frac{\|x-\alpha_t x^f_j\|^2}{2\sigma_t^2}\Big),

and the analysis samples the reverse-time SDE from :math:`x_1\sim\mathcal N(0, I)` to ``t = 0``
with the posterior score

.. math:: s(x, t\mid y) = \hat s(x, t) + h(t)\,\nabla_x \log p(y\mid x),\qquad h(t) = 1 - t .

The schedule is the paper's :math:`\alpha_t = 1-(1-\varepsilon_\alpha)t`,
:math:`\sigma_t^2 = \varepsilon_\beta + (1-\varepsilon_\beta)t` (:class:`~assimilax.diffusion.EnSFSDE`).
``prior_score="per_member"`` is the variant of the public code's default (``gm_var_ratio = 0``):
particle ``i`` is pulled only towards its own member, :math:`(\alpha_t x^f_i - x_i)/\sigma_t^2`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._ensemble import mean_and_spread, member_mean
from .._validation import (check_ensemble, check_observations, check_positive_int, is_concrete, raise_if_diverged)
from ..diffusion.noise import ARS_STEPS, NOISE_KINDS, gaussian
from ..diffusion.guidance import damped_guidance, gaussian_likelihood_score, linear_damping, noise_precision
from ..diffusion.samplers import euler_maruyama, time_grid
from ..diffusion.sde import EnSFSDE
from ._core import check_model_observation, forecast_ensemble, scan_cycles
from ._types import EnsembleFilterResult


def ensemble_mixture_score(members: Float[Array, "N d"], alpha, sigma2, x: Float[Array, " d"]):
    r"""Score of :math:`\frac1N\sum_j\mathcal N(\alpha x_j, \sigma^2 I)` at ``x`` ``(n, d)``;
    ``members`` ``(N, d)``. Memory :math:`O((n+N)d + nN)`: squared distances come from one
    ``(n, N)`` matrix product after centring both sets on :math:`\alpha\bar x`."""
    c = alpha * member_mean(members)
    xm = alpha * members - c[None, :]
    xc = x - c[None, :]
    d2 = jnp.sum(xc**2, -1)[:, None] - 2.0 * (xc @ xm.T) + jnp.sum(xm**2, -1)[None, :]
    w = jax.nn.softmax(-0.5 * d2 / sigma2, axis=1)  # (n, N)
    return (w @ xm - xc) / sigma2


def ensemble_score_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *,
                          key: PRNGKeyArray, steps_per_obs: int = 1, n_sde_steps: int = 100,
                          eps_a: float = 0.5, eps_b: float = 0.025, prior_score: str = "mixture", damping=linear_damping,
                          sde_noise: str = "gaussian", store_ensembles: bool = True, sharding=None,
                          native: bool = True) -> EnsembleFilterResult:
    r"""Ensemble score filter :cite:`bao2024ensemble` (see the module docstring for the maths).

    **Arguments:**

    - ``model``, ``observation``: as for every filter (``observation`` needs a Gaussian noise
      ``R``; a diagonal ``R`` or a ``noise_var`` ``(m,)`` attribute is used as a vector).
    - ``ys`` ``(T, m)``; ``ensemble0`` ``(N, d)`` (sample of the prior on :math:`x_0`); ``key``.
    - ``steps_per_obs``: model steps per cycle; ``n_sde_steps``: Euler--Maruyama steps of the
      reverse SDE per analysis; ``eps_a`` :math:`=\alpha_1`, ``eps_b`` :math:`=\sigma_0^2`.
    - ``prior_score``: ``"mixture"`` (the paper's estimator) or ``"per_member"``.
    - ``damping``: :math:`h(t)`, default :math:`1-t`.
    - ``sde_noise``: increments of the reverse-SDE steps: ``"gaussian"`` (Euler--Maruyama as in
      the paper; Threefry-2x32 words and Box--Muller pairs, two steps per draw),
      ``"gaussian_ars"`` (the same Euler--Maruyama with ARS-4x32-7 words, four steps per draw) or
      ``"rademacher"`` (the simplified weak Euler scheme, same weak order, about twice as cheap
      on CPU); see :mod:`assimilax.diffusion.noise`.
    - ``native``: with ``sde_noise="gaussian_ars"``, ``prior_score="per_member"``, float32,
      full arctan observations with diagonal noise and no ``sharding``, run the analysis on CPU
      in the fused C++ kernel of :mod:`!assimilax._native` when it is available (same increments,
      same result up to float rounding; GPUs take the XLA path). ``False`` forces the XLA path.
    - ``store_ensembles``: keep the ``(T, N, d)`` analysis ensembles.
    - ``sharding``: optional :class:`jax.sharding.Sharding` for ``(N, d)`` arrays (e.g.
      ``NamedSharding(mesh, P(None, "x"))`` shards the state axis, ``P("x", None)`` the members);
      ensembles are constrained to it inside every step.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult` (``ess``, ``log_likelihood`` ``None``).

    Per SDE step the cost is :math:`O(N^2 d)` (mixture) or :math:`O(Nd)` (per member) and the
    memory :math:`O(Nd + N^2)`. Works in the dtype of ``ensemble0`` (float32 is fine).
    """
    check_model_observation(model, observation)
    check_ensemble(ensemble0, model.dim, "ensemble0")
    check_observations(ys, observation.obs_dim, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    check_positive_int(n_sde_steps, "n_sde_steps")
    if sde_noise not in NOISE_KINDS:
        raise ValueError(f"sde_noise must be one of {list(NOISE_KINDS)}, got {sde_noise!r}")
    if prior_score not in ("mixture", "per_member"):
        raise ValueError(f"prior_score must be 'mixture' or 'per_member', got {prior_score!r}")
    sde = EnSFSDE(eps_a, eps_b)
    E0 = jnp.asarray(ensemble0)
    ys = jnp.asarray(ys, dtype=E0.dtype)
    prec, diag = noise_precision(observation)
    prec = jnp.asarray(prec, dtype=E0.dtype)
    if sharding is not None:
        E0 = jax.device_put(E0, sharding)
    mixture = prior_score == "mixture"
    use_native = bool(native) and _native_applies(observation, E0, prec, diag, mixture, sharding, sde_noise)
    res = _ensf(model, observation, ys, E0, key, prec, sde, damping, steps_per_obs=steps_per_obs, n_sde_steps=n_sde_steps,
                diag=diag, mixture=mixture, store=store_ensembles, sharding=sharding, noise=sde_noise,
                use_native=use_native)
    raise_if_diverged(res.analysis_mean, "ensemble_score_filter")
    return res


def _native_analysis(sde, damping, Ef, y, prec, x_T, key, n_steps):
    r"""The reverse-SDE analysis of :func:`euler_maruyama` with ``noise="gaussian_ars"`` for the
    per-member prior score and arctan observations, as one call of the fused CPU kernel
    (:func:`assimilax._native.ensf_em_arctan`). Step :math:`k` at :math:`t = t_k` is
    :math:`x \leftarrow x - \Delta t\,[f x - g^2((\alpha x^f - x)/\sigma^2 + h\,\ell(x))] + s z`,
    i.e. :math:`c_x x + c_e x^f + c_\ell \ell(x) + s z` with :math:`c_x = 1 - \Delta t f - \Delta t g^2/\sigma^2`,
    :math:`c_e = \Delta t g^2\alpha/\sigma^2`, :math:`c_\ell = \Delta t g^2 h`; the key words of each
    block of 4 steps are those :func:`euler_maruyama` draws."""
    from .. import _native

    ts, dt = time_grid(sde, n_steps, dtype=jnp.float32)
    t = ts[:-1]
    g2, f, a, s2 = sde.g2(t), sde.f(t), sde.alpha(t), sde.sigma2(t)
    h = jnp.broadcast_to(damping(t), t.shape)
    coef = jnp.stack([1.0 - dt * f - dt * g2 / s2, dt * g2 * a / s2, dt * g2 * h, jnp.sqrt(g2 * dt)], axis=1)
    n_blocks, rem = divmod(n_steps, ARS_STEPS)
    keys = jax.random.split(key, n_blocks + 1)
    keys = keys if rem else keys[:-1]
    words = jax.vmap(lambda kk: jax.random.bits(kk, (4,), jnp.uint32))(keys)
    d = Ef.shape[-1]
    out = _native.ensf_em_arctan(x_T, Ef, jnp.broadcast_to(y, (d,)), jnp.broadcast_to(prec, (d,)), coef, words)
    return out.astype(Ef.dtype)


def _native_applies(observation, E0, prec, diag, mixture, sharding, noise) -> bool:
    """Whether the fused CPU kernel computes this analysis (else the XLA path does)."""
    from .. import _native
    from ..observations import NonlinearObservation

    return (noise == "gaussian_ars" and not mixture and sharding is None and diag and E0.dtype == jnp.float32
            and isinstance(observation, NonlinearObservation) and observation.name == "arctan"
            and observation.all_components and jnp.ndim(prec) <= 1 and _native.available())


@functools.partial(jax.jit, static_argnames=("steps_per_obs", "n_sde_steps", "diag", "mixture", "store", "sharding", "damping",
                                                 "noise", "use_native"))
def _ensf(model, observation, ys, E0, key, prec, sde, damping, *, steps_per_obs, n_sde_steps, diag, mixture, store, sharding,
          noise, use_native=False):
    constrain = (lambda a: a) if sharding is None else (lambda a: jax.lax.with_sharding_constraint(a, sharding))

    def analysis(Ef, y, k):
        def prior(x, t):
            a, s2 = sde.alpha(t), sde.sigma2(t)
            return ensemble_mixture_score(Ef, a, s2, x) if mixture else (a * Ef - x) / s2

        posterior = damped_guidance(prior, gaussian_likelihood_score(observation, y, (prec, diag)), damping)
        score = lambda x, t: constrain(posterior(constrain(x), t))

        k0, k1 = jax.random.split(k)
        x_T = constrain(gaussian(k0, Ef.shape, Ef.dtype))  # fused Threefry + Box-Muller: no full-size uint32 buffers
        xla = lambda: constrain(euler_maruyama(sde, score, x_T, key=k1, n_steps=n_sde_steps, noise=noise))
        if not use_native:
            return xla()
        # same analysis as `xla` (same increments), fused into one C++ loop on CPU
        fused = lambda: _native_analysis(sde, damping, Ef, y, prec, x_T, k1, n_sde_steps)
        return jax.lax.platform_dependent(cpu=fused, default=xla)

    def cycle(E, inp):
        kf, ka = jax.random.split(inp.key)
        # with a sharding, one vmap over the members keeps it (no batching under lax.map)
        Ef = forecast_ensemble(model, E, inp.t0, kf, steps_per_obs,
                               **({} if sharding is None else {"max_elements": None}))
        Ef = constrain(Ef)
        Ea = analysis(Ef, inp.y, ka)
        out = mean_and_spread(Ea) + mean_and_spread(Ef) + (Ea if store else None,)
        return Ea, out

    _, (am, asp, fm, fsp, ens) = scan_cycles(cycle, E0, ys, key=key, steps_per_obs=steps_per_obs, dt=model.dt)
    return EnsembleFilterResult(am, asp, fm, fsp, ens if store else None)


__all__ = ["ensemble_score_filter", "ensemble_mixture_score"]
