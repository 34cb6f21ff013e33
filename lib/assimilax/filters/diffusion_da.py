r"""The three kinds of diffusion data assimilation, sorted by what the model is trained on
:cite:`hodyss2025diffusion`, SOAD :cite:`li2025soad`, and their exact Gaussian targets.

1. **Climatology-trained** (:func:`climatology_diffusion_filter`): one model trained once on a
   long free run samples

   .. math:: \pi^{\mathrm{clim}}_t(x) \propto p_{\mathrm{clim}}(x)\,p(y_t\mid x),

   forgetting every earlier observation; either an amortised conditional model
   :math:`s_\theta(x, t, y)` trained on pairs :math:`(x_t, y_t)`, or an unconditional prior score
   with likelihood guidance (damped, DPS, or the Tweedie-covariance guidance that is exact for a
   Gaussian prior and linear :math:`h`).
2. **Cycle-trained** (:func:`cycled_diffusion_filter`): retrained every cycle on the forecast
   ensemble, warm-started (the score filter :func:`~assimilax.filters.score_filter`
   :cite:`bao2024score`), it samples the filtering posterior

   .. math:: \pi^{\mathrm{cyc}}_t(x) \propto p(x\mid y_{1:t-1})\,p(y_t\mid x) = p(x\mid y_{1:t}).

3. **Hybrid** (:func:`hybrid_diffusion_filter`): a conditional model :math:`G(x^f, y)` trained
   offline on (forecast, observation, truth) triplets samples

   .. math:: \pi^{\mathrm{hyb}}_t(x) \propto p_{\mathrm{model}}(x\mid x^f_t)\,p(y_t\mid x),
      \qquad x^f_t = \mathcal M(\bar x^a_{t-1}),

   where :math:`p_{\mathrm{model}}(x\mid x^f)` is the forecast-error distribution of its training
   data: forecasts from reference states, :math:`x^f = \mathcal M(x^{\mathrm{ref}}_{t-1})`, carry
   the model error alone; forecasts from the system's own cycled analyses (DAgger rounds,
   ``train_hybrid_network``) carry the analysis error too.

SOAD (:func:`soad_filter`) diffuses the augmented state :math:`z = (x, h(x))`; the nonlinear
observation of :math:`x` is the linear observation :math:`y = [0\ I]\,z + \eta` of :math:`z`.

**Exact targets** (:func:`diffusion_targets`). For :math:`x' = A x + b + w`, :math:`w\sim\mathcal
N(0, Q)`, :math:`y = H x + v`, :math:`v\sim\mathcal N(0, R)` every target is Gaussian. With
:math:`K(B) = B H^\top (H B H^\top + R)^{-1}`:

- climatology: prior :math:`\mathcal N(\mu_c, P_c)`, :math:`\mu_c = (I - A)^{-1} b`,
  :math:`P_c = A P_c A^\top + Q` (the discrete Lyapunov equation); posterior mean
  :math:`\mu_c + K(P_c)(y_t - H\mu_c)`, covariance :math:`(I - K(P_c) H) P_c`;
- cycle-trained: the Kalman filter :cite:`kalman1960new` (equal to the true filtering posterior);
- hybrid with forecast-error covariance :math:`B`: mean :math:`m_t = x^f_t + K(B)(y_t - H x^f_t)`,
  :math:`x^f_t = A m_{t-1} + b`, covariance :math:`(I - K(B) H) B`; reference forecasts give
  :math:`B = Q` (per cycle: :math:`\sum_{i<k} A^i Q A^{i\top}` for ``steps_per_obs`` :math:`=k`),
  and DAgger's fixed point (training on its own analyses until the forecast-error covariance it
  learns is the one it produces) is the steady-state Kalman forecast covariance
  :math:`B = A(I - K(B)H)BA^\top + Q`, the discrete algebraic Riccati equation.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla
from jaxtyping import Array, Float

from .._ensemble import mean_and_spread
from .._validation import (check_covariance, check_ensemble, check_observations, check_positive_int, check_shape,
                           raise_if_diverged)
from ..diffusion.conditional import GaussianScore, classifier_free_score, fit_conditional_score
from ..diffusion.guidance import (damped_guidance, dps_guidance, gaussian_likelihood_score, linear_damping,
                                  tweedie_covariance_guidance)
from ..diffusion.networks import batch_score
from ..diffusion.samplers import euler_maruyama
from ..diffusion.sde import VPSDE
from ..observations import LinearObservation
from ._core import check_model_observation, forecast_ensemble, scan_cycles
from ._types import EnsembleFilterResult
from .score_filter import score_filter

GUIDANCE_KINDS = ("damped", "dps", "tweedie")


# ----------------------------------------------------------------------------- exact targets
class GaussianTarget(NamedTuple):
    """One kind's Gaussian target at every time: ``means`` ``(T, d)``, ``covs`` ``(T, d, d)`` of
    the distribution it samples; ``prior_means``/``prior_covs`` those of the prior it combines
    with :math:`p(y_t\\mid x)`."""

    means: jax.Array
    covs: jax.Array
    prior_means: jax.Array
    prior_covs: jax.Array


class DiffusionTargets(NamedTuple):
    """Output of :func:`diffusion_targets`: a ``GaussianTarget`` per kind (``cycled`` equals
    ``posterior``, the true filtering posterior), the climatological moments ``clim_mean``
    ``(d,)``, ``clim_cov`` ``(d, d)`` and the hybrid forecast-error covariances
    ``reference_cov`` and ``cycled_cov`` ``(d, d)`` (the Riccati fixed point)."""

    climatology: GaussianTarget
    cycled: GaussianTarget
    hybrid_reference: GaussianTarget
    hybrid_cycled: GaussianTarget
    posterior: GaussianTarget
    clim_mean: jax.Array
    clim_cov: jax.Array
    reference_cov: jax.Array
    cycled_cov: jax.Array


def _linear_parts(model, observation, steps_per_obs):
    """``A, b, Q`` of one cycle (``steps_per_obs`` model steps) and ``H, R`` in float64 NumPy."""
    if not hasattr(model, "A") or model.noise_cov is None:
        raise ValueError("diffusion_targets needs a linear-Gaussian model (A, b, noise_cov), e.g. LinearGaussian")
    if not hasattr(observation, "H"):
        raise ValueError("diffusion_targets needs a linear observation operator (LinearObservation)")
    A1, b1, Q1 = (np.asarray(v, dtype=np.float64) for v in (model.A, model.b, model.noise_cov))
    A, b, Q = np.eye(A1.shape[0]), np.zeros_like(b1), np.zeros_like(Q1)
    for _ in range(steps_per_obs):
        A, b, Q = A1 @ A, A1 @ b + b1, A1 @ Q @ A1.T + Q1
    return A, b, Q, np.asarray(observation.H, np.float64), np.asarray(observation.R, np.float64)


def _gain(B, H, R):
    return np.linalg.solve(H @ B @ H.T + R, H @ B).T


def _sym(P):
    return 0.5 * (P + P.T)


def climatology_moments(model, *, steps_per_obs: int = 1):
    r"""Stationary mean :math:`\mu_c = (I - A)^{-1} b` and covariance :math:`P_c` solving the
    discrete Lyapunov equation :math:`P_c = A P_c A^\top + Q` (float64 NumPy); refuses an
    unstable :math:`A` (spectral radius :math:`\ge 1`: no climatology)."""
    check_positive_int(steps_per_obs, "steps_per_obs")
    A = np.asarray(model.A, np.float64)
    rho = float(np.max(np.abs(np.linalg.eigvals(A))))
    if rho >= 1.0:
        raise ValueError(f"the model has no stationary distribution: spectral radius of A is {rho:.4g} >= 1")
    Q = np.asarray(model.noise_cov, np.float64)
    b = np.asarray(model.b, np.float64)
    return np.linalg.solve(np.eye(A.shape[0]) - A, b), _sym(sla.solve_discrete_lyapunov(A, Q))


def diffusion_targets(model, observation, ys: Float[Array, "T m"], mean0: Float[Array, " d"], cov0: Float[Array, "d d"],
                      *, steps_per_obs: int = 1) -> DiffusionTargets:
    r"""The exact Gaussian target of each kind of diffusion DA at every time (see the module
    docstring), for a linear-Gaussian model and a linear observation, float64.

    **Arguments:** ``model`` (:class:`~assimilax.models.LinearGaussian`, stable ``A``),
    ``observation`` (:class:`~assimilax.observations.LinearObservation`), ``ys`` ``(T, m)``,
    ``mean0`` ``(d,)``, ``cov0`` ``(d, d)`` the prior of :math:`x_0` (the hybrid recursions start
    from ``mean0``), ``steps_per_obs``.

    **Returns:** ``DiffusionTargets``.
    """
    check_model_observation(model, observation)
    check_positive_int(steps_per_obs, "steps_per_obs")
    d = model.dim
    check_shape(mean0, (d,), "mean0")
    check_covariance(cov0, d, "cov0")
    check_observations(ys, observation.obs_dim, "ys")
    A, b, Q, H, R = _linear_parts(model, observation, steps_per_obs)
    Y = np.asarray(ys, np.float64)
    T = Y.shape[0]
    I = np.eye(d)
    mc, Pc = climatology_moments(model)

    def bcast(v):
        return np.broadcast_to(v, (T,) + v.shape).copy()

    # climatology
    Kc = _gain(Pc, H, R)
    clim = GaussianTarget(mc[None] + (Y - H @ mc) @ Kc.T, bcast(_sym((I - Kc @ H) @ Pc)), bcast(mc), bcast(Pc))
    # Kalman filter (cycled target = true filtering posterior)
    m, P = np.asarray(mean0, np.float64), np.asarray(cov0, np.float64)
    kf = [[], [], [], []]
    for t in range(T):
        mp, Pp = A @ m + b, _sym(A @ P @ A.T + Q)
        K = _gain(Pp, H, R)
        m, P = mp + K @ (Y[t] - H @ mp), _sym((I - K @ H) @ Pp)
        for lst, v in zip(kf, (m, P, mp, Pp)):
            lst.append(v)
    post = GaussianTarget(*(np.stack(v) for v in kf))
    # hybrids
    B_cyc = _sym(sla.solve_discrete_are(A.T, H.T, Q, R))

    def hybrid(B):
        K = _gain(B, H, R)
        m = np.asarray(mean0, np.float64)
        means, pm = [], []
        for t in range(T):
            xf = A @ m + b
            m = xf + K @ (Y[t] - H @ xf)
            means.append(m)
            pm.append(xf)
        return GaussianTarget(np.stack(means), bcast(_sym((I - K @ H) @ B)), np.stack(pm), bcast(B))

    dtype = jnp.result_type(float)
    to = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), tree)  # noqa: E731
    return DiffusionTargets(to(clim), to(post), to(hybrid(Q)), to(hybrid(B_cyc)), to(post), to(mc), to(Pc), to(Q),
                            to(B_cyc))


def exact_scores(targets: DiffusionTargets, observation, sde):
    r"""Exact (Gaussian) score models of each kind's target, for driving the filters with the score
    no training can improve: ``{"climatology_prior": s(x, t)}`` (the prior
    :math:`\mathcal N(\mu_c, P_c)`), ``"climatology": s(x, t, y)`` (:math:`p_c(x\mid y)`),
    ``"hybrid_reference"``/``"hybrid_cycled": s(x, t, [x^f, y])``
    (:class:`~assimilax.diffusion.GaussianScore` each)."""
    H, R = jnp.asarray(observation.H), jnp.asarray(observation.R)
    d = H.shape[1]
    eye = jnp.eye(d, dtype=H.dtype)

    def gain(B):
        return jnp.linalg.solve(H @ B @ H.T + R, H @ B).T

    Kc = gain(targets.clim_cov)
    out = {"climatology_prior": GaussianScore(targets.clim_mean, targets.clim_cov, sde),
           "climatology": GaussianScore((eye - Kc @ H) @ targets.clim_mean, (eye - Kc @ H) @ targets.clim_cov, sde, gain=Kc)}
    for name, B in (("hybrid_reference", targets.reference_cov), ("hybrid_cycled", targets.cycled_cov)):
        K = gain(B)
        out[name] = GaussianScore(jnp.zeros(d, H.dtype), 0.5 * ((eye - K @ H) @ B + ((eye - K @ H) @ B).T), sde,
                                  gain=jnp.concatenate([eye - K @ H, K], axis=1))
    return out


# ----------------------------------------------------------------------------- shared pieces
def _check_common(model, observation, ys, ensemble0, steps_per_obs, n_sde_steps):
    """The shared bad-input checks of every filter here (as every ensemble filter does)."""
    check_model_observation(model, observation)
    check_ensemble(ensemble0, model.dim, "ensemble0")
    check_observations(ys, observation.obs_dim, "ys")
    check_positive_int(steps_per_obs, "steps_per_obs")
    check_positive_int(n_sde_steps, "n_sde_steps")


def _check_guidance(guidance, observation, allowed=GUIDANCE_KINDS):
    if guidance not in allowed:
        raise ValueError(f"guidance must be one of {allowed}, got {guidance!r}")
    if guidance == "tweedie" and not hasattr(observation, "H"):
        raise ValueError("guidance='tweedie' needs a linear observation operator with a matrix H")


def guided_posterior_score(guidance: str, sde, prior_score, observation, y, *, scale: float = 1.0,
                           damping=linear_damping):
    r"""Batched posterior score from a prior score and a likelihood: ``"damped"``
    (:func:`~assimilax.diffusion.damped_guidance` with ``damping``), ``"dps"``
    (:func:`~assimilax.diffusion.dps_guidance`, step ``scale``) or ``"tweedie"``
    (:func:`~assimilax.diffusion.tweedie_covariance_guidance`, linear ``H``; exact for a Gaussian
    prior)."""
    if guidance == "damped":
        return damped_guidance(prior_score, gaussian_likelihood_score(observation, y), damping)
    if guidance == "dps":
        return dps_guidance(sde, prior_score, observation, y, scale)
    if guidance == "tweedie":
        return tweedie_covariance_guidance(sde, prior_score, observation.H, observation.R, y)
    raise ValueError(f"guidance must be one of {GUIDANCE_KINDS}, got {guidance!r}")


@eqx.filter_jit
def _sampling_filter(model, observation, ys, E0, key, network, sde, mode, guidance, scale, damping, cfg_weight,
                     steps_per_obs, n_sde_steps, store):
    """The cycle of the sampling filters: forecast (for the forecast statistics and the hybrid's
    condition), then one reverse-SDE run of ``N`` samples of the analysis distribution."""
    d = E0.shape[1]

    def cycle(E, inp):
        kf, k0, ks = jax.random.split(inp.key, 3)
        Ef = forecast_ensemble(model, E, inp.t0, kf, steps_per_obs)
        if mode == "conditional":
            score = (batch_score(network, inp.y) if cfg_weight is None
                     else classifier_free_score(network, inp.y, cfg_weight))
        elif mode == "hybrid":
            xf = model.integrate(jnp.mean(E, 0), steps_per_obs, inp.t0)
            score = batch_score(network, jnp.concatenate([xf, inp.y.astype(xf.dtype)]))
        else:  # guided prior (climatology) or augmented prior (SOAD: observation acts on z)
            score = guided_posterior_score(guidance, sde, batch_score(network), observation, inp.y, scale=scale,
                                           damping=damping)
        z_T = jax.random.normal(k0, (E.shape[0], network.dim), dtype=E.dtype)
        Ea = euler_maruyama(sde, score, z_T, key=ks, n_steps=n_sde_steps)[:, :d]
        out = mean_and_spread(Ea) + mean_and_spread(Ef) + (Ea if store else None,)
        return Ea, out

    _, (am, asp, fm, fsp, ens) = scan_cycles(cycle, E0, ys, key=key, steps_per_obs=steps_per_obs, dt=model.dt)
    return EnsembleFilterResult(am, asp, fm, fsp, ens if store else None)


def _network_dim(network, expected, what):
    dim = getattr(network, "dim", None)
    if dim != expected:
        raise ValueError(f"network must act on {what} of dimension {expected}, got a network of dimension {dim}")


# ----------------------------------------------------------------------------- the filters
def climatology_diffusion_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *, key,
                                 network, steps_per_obs: int = 1, sde=None, guidance: Optional[str] = "damped",
                                 scale: float = 1.0, damping=linear_damping, cfg_weight: Optional[float] = None,
                                 n_sde_steps: int = 200, store_ensembles: bool = True) -> EnsembleFilterResult:
    r"""Climatology-trained diffusion DA, (the first kind of the module docstring): every cycle draws ``N`` samples
    of :math:`p_{\mathrm{clim}}(x\mid y_t)` from one model trained offline (the forecast ensemble is
    computed for ``forecast_mean``/``forecast_spread`` only: the analysis forgets it).

    **Arguments:** ``model``, ``observation``, ``ys`` ``(T, m)``, ``ensemble0`` ``(N, d)`` (its size
    is the analysis ensemble size), ``key``, ``steps_per_obs`` as every filter; ``network``:

    - ``guidance=None``: an amortised conditional score ``network(x, t, y)`` (e.g.
      :func:`~assimilax.diffusion.fit_conditional_score` on pairs :math:`(x_t, y_t)`), with
      ``cfg_weight`` not ``None`` a classifier-free one (:func:`~assimilax.diffusion.classifier_free_score`);
    - ``guidance`` ``"damped"`` | ``"dps"`` | ``"tweedie"``: an unconditional prior score
      ``network(x, t)`` and ``guided_posterior_score`` (``scale``, ``damping``);

    ``sde`` (default :class:`~assimilax.diffusion.VPSDE`, the network's training SDE),
    ``n_sde_steps`` Euler--Maruyama steps.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult`.
    """
    _check_common(model, observation, ys, ensemble0, steps_per_obs, n_sde_steps)
    _network_dim(network, model.dim, "states")
    if guidance is None:
        want = observation.obs_dim + (0 if cfg_weight is None else 1)
        if getattr(network, "cond_dim", None) != want:
            raise ValueError(f"guidance=None needs a conditional network with cond_dim {want}, "
                             f"got {getattr(network, 'cond_dim', None)}")
    else:
        _check_guidance(guidance, observation)
    sde = VPSDE() if sde is None else sde
    E0 = jnp.asarray(ensemble0)
    res = _sampling_filter(model, observation, jnp.asarray(ys, E0.dtype), E0, key, network, sde,
                           "conditional" if guidance is None else "guided", guidance, scale, damping, cfg_weight,
                           steps_per_obs, n_sde_steps, store_ensembles)
    raise_if_diverged(res.analysis_mean, "climatology_diffusion_filter")
    return res


def cycled_diffusion_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *, key,
                            steps_per_obs: int = 1, guidance: str = "damped", scale: float = 1.0, damping=linear_damping,
                            n_train_steps: int = 200, **score_filter_options):
    r"""Cycle-trained diffusion DA, (the second kind of the module docstring): the score network is retrained every
    cycle on the forecast ensemble, warm-started from the previous cycle's network and optimiser
    state (:func:`~assimilax.filters.score_filter`, whose cycle this is), and the posterior is
    sampled with ``guidance`` ``"damped"`` (the score filter's own), ``"dps"`` or ``"tweedie"``
    (``guided_posterior_score``). The training cost per cycle is ``n_train_steps`` Adam steps
    on batches of ``batch_size`` members (measure the seconds with the result's
    ``analysis_mean.block_until_ready()``).

    **Arguments:** as :func:`~assimilax.filters.score_filter` (``n_sde_steps``, ``eps_a``,
    ``eps_b``, ``batch_size``, ``learning_rate``, ``width``, ``depth``, ``network``,
    ``store_ensembles`` pass through), plus ``guidance``, ``scale``.

    **Returns:** :class:`~assimilax.filters.ScoreFilterResult` (the fields of
    :class:`~assimilax.filters.EnsembleFilterResult` and the last cycle's ``network``).
    """
    _check_common(model, observation, ys, ensemble0, steps_per_obs, score_filter_options.get("n_sde_steps", 100))
    _check_guidance(guidance, observation)
    if guidance == "damped":
        hook = None
    else:
        def hook(sde, prior_score, obs, y):
            return guided_posterior_score(guidance, sde, prior_score, obs, y, scale=scale, damping=damping)
    return score_filter(model, observation, ys, ensemble0, key=key, steps_per_obs=steps_per_obs, damping=damping,
                        n_train_steps=n_train_steps, guidance=hook, **score_filter_options)


def hybrid_diffusion_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *, key, network,
                            steps_per_obs: int = 1, sde=None, n_sde_steps: int = 200,
                            store_ensembles: bool = True) -> EnsembleFilterResult:
    r"""Hybrid diffusion DA, (the third kind of the module docstring): every cycle forecasts the previous analysis
    mean deterministically, :math:`x^f_t = \mathcal M(\bar x^a_{t-1})`, and draws ``N`` samples of
    :math:`G(x^f_t, y_t)`, the conditional ``network(x, t, [x^f, y])`` trained offline
    (``train_hybrid_network``).

    **Arguments:** as :func:`climatology_diffusion_filter`; ``network`` with ``cond_dim = d + m``.

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult`.
    """
    _check_common(model, observation, ys, ensemble0, steps_per_obs, n_sde_steps)
    _network_dim(network, model.dim, "states")
    want = model.dim + observation.obs_dim
    if getattr(network, "cond_dim", None) != want:
        raise ValueError(f"the hybrid network must be conditioned on [x^f, y] of size {want}, "
                         f"got cond_dim {getattr(network, 'cond_dim', None)}")
    sde = VPSDE() if sde is None else sde
    E0 = jnp.asarray(ensemble0)
    res = _sampling_filter(model, observation, jnp.asarray(ys, E0.dtype), E0, key, network, sde, "hybrid", None, 1.0,
                           linear_damping, None, steps_per_obs, n_sde_steps, store_ensembles)
    raise_if_diverged(res.analysis_mean, "hybrid_diffusion_filter")
    return res


def augmented_observation(observation) -> LinearObservation:
    r"""SOAD's observation of the augmented state :math:`z = (x, h(x))`: :math:`y = [0\ I]\,z + \eta`
    with the noise covariance of ``observation``."""
    m, d = observation.obs_dim, observation.state_dim
    H = jnp.concatenate([jnp.zeros((m, d)), jnp.eye(m)], axis=1).astype(observation.R.dtype)
    return LinearObservation(H, observation.R)


def augment_states(observation, x: Float[Array, "n d"]) -> Float[Array, "n d+m"]:
    """SOAD's training states :math:`z = (x, h(x))` from states ``x`` ``(n, d)``."""
    x = jnp.asarray(x)
    return jnp.concatenate([x, jax.vmap(observation)(x)], axis=1)


def soad_filter(model, observation, ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *, key, network,
                steps_per_obs: int = 1, sde=None, guidance: str = "tweedie", scale: float = 1.0,
                damping=linear_damping, n_sde_steps: int = 200, store_ensembles: bool = True) -> EnsembleFilterResult:
    r"""State-observation augmented diffusion (SOAD) :cite:`li2025soad`: ``network`` is a score of
    the augmented state :math:`z = (x, h(x)) \in \mathbb R^{d+m}`, trained offline on
    ``augment_states`` of climatological states (as SOAD's repository trains its prior); the
    posterior of :math:`z` given the *linear* observation ``augmented_observation`` is sampled
    with ``guidance`` ``"tweedie"`` (exact for a Gaussian prior), ``"damped"`` or ``"dps"`` (step
    ``scale``; the same guidance as a climatological prior of :math:`x` alone, so that the two
    differ only by the augmentation), and the analysis
    ensemble is its :math:`x`-part. With a linear :math:`h = H` and a Gaussian prior this is the
    standard posterior (the :math:`x`-marginal of the degenerate joint Gaussian of :math:`(x, Hx)`).

    **Arguments:** as :func:`climatology_diffusion_filter` (``network`` of dimension ``d + m``).

    **Returns:** :class:`~assimilax.filters.EnsembleFilterResult`.
    """
    _check_common(model, observation, ys, ensemble0, steps_per_obs, n_sde_steps)
    _network_dim(network, model.dim + observation.obs_dim, "augmented states (x, h(x))")
    _check_guidance(guidance, augmented_observation(observation))
    sde = VPSDE() if sde is None else sde
    E0 = jnp.asarray(ensemble0)
    aug = augmented_observation(observation)
    res = _sampling_filter(model, aug, jnp.asarray(ys, E0.dtype), E0, key, network, sde, "guided", guidance, scale,
                           damping, None, steps_per_obs, n_sde_steps, store_ensembles)
    raise_if_diverged(res.analysis_mean, "soad_filter")
    return res


# ----------------------------------------------------------------------------- hybrid training
def hybrid_training_pairs(model, states: Float[Array, "T d"], ys: Float[Array, "T m"], references: Float[Array, "T d"],
                          *, steps_per_obs: int = 1):
    r"""Hybrid training triplets: truth ``states[t]``, condition :math:`[x^f_t, y_t]` with
    :math:`x^f_t = \mathcal M(\text{references}[t])` (``steps_per_obs`` deterministic model steps),
    ``references[t]`` the state estimate one cycle before ``states[t]`` (the previous true state:
    reference forecasts; the previous analysis mean: cycled forecasts).

    **Returns:** ``(x (T, d), cond (T, d + m))``.
    """
    states, ys, references = jnp.asarray(states), jnp.asarray(ys), jnp.asarray(references)
    T, d = states.shape
    check_shape(references, (T, d), "references")
    check_observations(ys, ys.shape[1] if ys.ndim == 2 else -1, "ys")
    if ys.shape[0] != T:
        raise ValueError(f"ys must have {T} rows like states, got {ys.shape[0]}")
    t0 = jnp.arange(T) * steps_per_obs * model.dt
    xf = jax.vmap(lambda x, t: model.integrate(x, steps_per_obs, t))(references, t0)
    return states, jnp.concatenate([xf, ys.astype(xf.dtype)], axis=1)


def train_hybrid_network(model, observation, x0: Float[Array, " d"], states: Float[Array, "T d"],
                         ys: Float[Array, "T m"], ensemble0: Float[Array, "N d"], *, key, scheme: str = "reference",
                         n_rounds: int = 2, steps_per_obs: int = 1, sde=None, n_train_steps: int = 1000,
                         n_sde_steps: int = 100, **fit_options):
    r"""Train the hybrid model :math:`G(x^f, y)` on a training trajectory ``states`` (times
    :math:`1..T`, started from ``x0``) with observations ``ys``.

    ``scheme="reference"``: one fit on forecasts from the previous true states (the notes' pairs
    :math:`\mathcal M(x^{\mathrm{ref}}_{t-1})`). ``scheme="cycled"``: that fit, then ``n_rounds``
    DAgger rounds :cite:`ross2011reduction`: run :func:`hybrid_diffusion_filter` with the current
    network over the training observations (from ``ensemble0``), add the pairs whose forecasts
    start from its own analysis means to the training set, and continue training (warm start).

    **Returns:** ``(network, losses)`` (losses of every fit, concatenated).
    """
    if scheme not in ("reference", "cycled"):
        raise ValueError(f"scheme must be 'reference' or 'cycled', got {scheme!r}")
    check_positive_int(n_rounds, "n_rounds")
    sde = VPSDE() if sde is None else sde
    x0, states = jnp.asarray(x0), jnp.asarray(states)
    refs = jnp.concatenate([x0[None], states[:-1]])
    X, C = hybrid_training_pairs(model, states, ys, refs, steps_per_obs=steps_per_obs)
    key, k = jax.random.split(key)
    net, losses = fit_conditional_score(X, C, sde, key=k, n_steps=n_train_steps, **fit_options)
    all_losses = [np.asarray(losses)]
    if scheme == "cycled":
        for _ in range(n_rounds):
            key, kf, kt = jax.random.split(key, 3)
            res = hybrid_diffusion_filter(model, observation, ys, ensemble0, key=kf, network=net,
                                          steps_per_obs=steps_per_obs, sde=sde, n_sde_steps=n_sde_steps,
                                          store_ensembles=False)
            refs = jnp.concatenate([jnp.mean(jnp.asarray(ensemble0), 0)[None], res.analysis_mean[:-1]])
            Xn, Cn = hybrid_training_pairs(model, states, ys, refs, steps_per_obs=steps_per_obs)
            X, C = jnp.concatenate([X, Xn]), jnp.concatenate([C, Cn])
            opts = {k_: v for k_, v in fit_options.items() if k_ not in ("width", "depth")}
            net, losses = fit_conditional_score(X, C, sde, key=kt, n_steps=n_train_steps, network=net, **opts)
            all_losses.append(np.asarray(losses))
    return net, np.concatenate(all_losses)


__all__ = ["GaussianTarget", "DiffusionTargets", "diffusion_targets", "climatology_moments", "exact_scores",
           "guided_posterior_score", "climatology_diffusion_filter", "cycled_diffusion_filter",
           "hybrid_diffusion_filter", "soad_filter", "augmented_observation", "augment_states",
           "hybrid_training_pairs", "train_hybrid_network"]
