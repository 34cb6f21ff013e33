r"""Twin experiments in batches: many truths at once, every filter run on all of them in one
``jax.vmap``-ed program, and a filter's knobs tuned on a grid with common random numbers.

A twin experiment draws truths :math:`x^{(r)}_{1:T}` from the model, observes them,
:math:`y^{(r)}_t = h(x^{(r)}_t) + \eta^{(r)}_t`, and starts every filter from the same initial
ensembles :math:`E^{(r)}_0 = x^{(r)}_0 \mathbf 1^\top + \sigma_0 Z^{(r)}`, :math:`Z^{(r)}_{ij}
\sim \mathcal N(0, 1)`. Scores are averaged over the cycles after a spin-up (``burn``) and kept
per truth, so that two methods run on the same truths can be compared pair by pair
(:func:`assimilax.metrics.compare_runs`).

Tuning (:func:`tune_grid`) runs every setting of a product grid on the same truths *with the
same keys* (common random numbers: the differences between settings are not blurred by
different noise draws), scores each setting by its mean time-mean RMSE over the truths, and
counts a setting that lost a truth (a non-finite score, or one above ``failed_above``) as
infinitely bad, so that a setting which diverges on one truth never wins on the others.

:func:`score_row` turns one method's per-truth scores into the cells of a results table (the RMSE
with its interval over truths, the means of the other scores, nothing but the failure where a
run failed).

For learned analyses (:mod:`assimilax.learned`): :func:`learned_cycle_rmse` scores a deterministic
learned cycle :math:`\tilde u_t = T(F(\tilde u_{t-1}), y_t)` on each truth, one truth at a time
(a truth on which it diverges is NaN, the others are kept), and :func:`learned_filter_batched`
cycles :func:`~assimilax.learned.learned_filter` (e.g. an ensemble analysis) on all truths in one
batched program.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional, Sequence

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._validation import check_positive_int
from .metrics import rmse
from .metrics import describe_runs, ensemble_scores, failed_runs


class TwinTruths(NamedTuple):
    """``R`` truths of a twin experiment: ``states`` ``(R, T, d)`` (the truth at observation
    times 1..T), ``observations`` ``(R, T, m)``, ``x0`` ``(R, d)`` (each truth's initial state, after
    the burn-in) and ``ensembles0`` ``(R, N, d)`` (each filter's initial ensemble)."""

    states: jax.Array
    observations: jax.Array
    x0: jax.Array
    ensembles0: jax.Array

    @property
    def n_truths(self) -> int:
        return self.states.shape[0]


def twin_truths(model, observation, starts: Float[Array, "R d"], n_cycles: int, *, key, n_members: int,
                ensemble_std: float = 1.0, steps_per_obs: int = 1, burn_in: int = 0,
                ensemble_key=None) -> TwinTruths:
    r"""``R`` truths of ``n_cycles`` observation cycles from the initial states ``starts`` (one row
    each; each spun up ``burn_in`` model steps first: :func:`assimilax.learned.generate_trajectories`), and initial
    ensembles :math:`E^{(r)}_0 = x^{(r)}_0 + \sigma_0 Z^{(r)}` of ``n_members`` members.

    **Keys:** truth ``r`` is simulated with ``jax.random.split(key, R)[r]``; the ensembles are one
    draw ``jax.random.normal(ensemble_key, (R, n_members, d))``, with ``ensemble_key`` defaulting to
    ``jax.random.fold_in(key, R)``. Give ``ensemble_key`` to start the same truths from several
    independent initial ensembles.

    **Returns** :class:`TwinTruths`; the ensembles have the dtype of the states.
    """
    starts = jnp.asarray(starts)
    if starts.ndim != 2 or starts.shape[1] != model.dim:
        raise ValueError(f"starts must have shape (R, {model.dim}) (one initial state per truth), got {starts.shape}")
    check_positive_int(n_members, "n_members")
    if not np.isfinite(ensemble_std) or ensemble_std < 0:
        raise ValueError(f"ensemble_std must be finite and >= 0, got {ensemble_std}")
    R = starts.shape[0]
    from .learned.data import generate_trajectories  # the learned package imports the filters: import on use

    sims = generate_trajectories(model, observation, starts, n_cycles, key=key, steps_per_obs=steps_per_obs,
                                 burn_in=burn_in)  # truth r keyed jax.random.split(key, R)[r]
    k_ens = jax.random.fold_in(key, R) if ensemble_key is None else ensemble_key
    noise = jax.random.normal(k_ens, (R, n_members, model.dim), sims.x0.dtype)
    E0 = sims.x0[:, None, :] + ensemble_std * noise
    return TwinTruths(sims.states, sims.observations, sims.x0, E0)


def run_batched(run: Callable, truths: TwinTruths, *, key):
    """``run(observations, ensemble0, key)`` on every truth at once (``jax.vmap``; truth ``r``
    gets ``jax.random.split(key, R)[r]``). **Returns** whatever ``run`` returns, with a leading
    axis of length ``R``. Not jitted here: wrap it (or time it with
    :func:`assimilax.metrics.timed_call`) as you need."""
    keys = jax.random.split(key, truths.n_truths)
    return jax.vmap(run)(truths.observations, truths.ensembles0, keys)


def score_runs(analysis_means: Float[Array, "R T d"], ensembles: Optional[Float[Array, "R T N d"]],
               truths: TwinTruths, *, burn: int = 0, level: float = 0.9) -> dict:
    """Per-truth scores of batched analyses (:func:`assimilax.metrics.ensemble_scores` over the
    cycles ``burn:``); ensembles of one member, or ``None``, are scored as a point analysis.
    **Returns** a dict of NumPy arrays ``(R,)``."""
    if ensembles is not None and ensembles.shape[2] <= 1:
        ensembles = None
    return ensemble_scores(analysis_means, ensembles, truths.states, burn=burn, level=level)


class GridTuning(NamedTuple):
    """The outcome of :func:`tune_grid` on a grid of shape ``S = (len(axis_1), ..., len(axis_k))``.

    - ``axes``: the grid's axes, as given;
    - ``scores``: ``S + (R,)``, each truth's time-mean analysis RMSE (NaN where it diverged);
    - ``mean``: ``S``, the mean over truths, ``inf`` where a truth failed;
    - ``best``: the index (a tuple of length k) of the lowest ``mean``; ``best_setting`` its values;
    - ``on_edge``: whether ``best`` lies on the boundary of an axis of more than one value (the
      optimum may lie outside the grid);
    - ``seconds``: wall time of the batched run, compilation excluded.
    """

    axes: tuple
    scores: np.ndarray
    mean: np.ndarray
    best: tuple
    best_setting: tuple
    on_edge: bool
    seconds: float


def tune_grid(run: Callable, axes: Sequence[Sequence[float]], truths: TwinTruths, *, key, burn: int = 0,
              failed_above: Optional[float] = None, dtype=None) -> GridTuning:
    r"""Tune a filter over the product grid of ``axes`` on ``truths``, in one batched program.

    ``run(*setting, observations, ensemble0, key)`` returns the analysis means ``(T, d)`` of one
    truth for one setting (one scalar per axis, traced: the knobs must be JAX values, e.g.
    inflation and localisation radius). Every setting sees the same truths and the same keys
    (truth ``r`` gets ``jax.random.split(key, R)[r]``, as in :func:`run_batched`), and is scored by

    .. math:: \bar e(s) = \frac1R \sum_r \frac{1}{T - b} \sum_{t > b} \mathrm{RMSE}_t^{(r)}(s),

    with :math:`\bar e(s) = \infty` when a truth's score is not finite or exceeds ``failed_above``
    (:func:`assimilax.metrics.failed_runs`). The grid axes are cast to ``dtype`` (default: JAX's
    default float type).

    **Returns** :class:`GridTuning`.
    """
    axes = tuple(tuple(float(v) for v in a) for a in axes)
    if not axes or any(len(a) == 0 for a in axes):
        raise ValueError("axes must be a non-empty sequence of non-empty sequences of values")
    shape = tuple(len(a) for a in axes)
    if not 0 <= burn < truths.states.shape[1]:
        raise ValueError(f"burn must be in [0, {truths.states.shape[1]}), got {burn}")
    settings = list(itertools.product(*axes))
    columns = [jnp.asarray([s[j] for s in settings], dtype=dtype) for j in range(len(axes))]
    keys = jax.random.split(key, truths.n_truths)

    def one_setting(*values):
        return jax.vmap(lambda y, e, k: run(*values, y, e, k))(truths.observations, truths.ensembles0, keys)

    compiled = jax.jit(jax.vmap(one_setting)).lower(*columns).compile()
    t0 = time.perf_counter()
    means = jax.block_until_ready(compiled(*columns))
    seconds = time.perf_counter() - t0
    if means.shape[1:] != truths.states.shape:
        raise ValueError(f"run must return analysis means of shape {truths.states.shape[1:]} per truth, "
                         f"got {means.shape[2:]}")
    per = np.asarray(rmse(means, jnp.broadcast_to(truths.states, means.shape)))[..., burn:].mean(-1).astype(np.float64)
    per = np.where(np.isfinite(per), per, np.nan)
    mean = np.array([np.inf if failed_runs(row, failed_above).any() else row.mean() for row in per])
    best_flat = int(np.argmin(mean))
    best = tuple(int(i) for i in np.unravel_index(best_flat, shape))
    on_edge = any(n > 1 and i in (0, n - 1) for i, n in zip(best, shape))
    return GridTuning(axes, per.reshape(shape + (truths.n_truths,)), mean.reshape(shape), best,
                      tuple(a[i] for a, i in zip(axes, best)), on_edge, seconds)


def score_row(scores: dict, *, level: float = 0.9, failed_above: Optional[float] = None, digits: int = 3,
              missing: str = "—") -> dict:
    r"""The table cells of one method's per-truth scores (a dict of :func:`score_runs` or
    :func:`assimilax.metrics.ensemble_scores`, each ``(R,)``):

    - ``"RMSE"``: :func:`assimilax.metrics.describe_runs`, the mean over truths with its 95 %
      t interval, ``"mean [low, high]"`` (``digits`` decimals), or ``"failed on k of R"``;
    - ``"CRPS"``: the mean over truths :math:`\frac1R \sum_r \mathrm{CRPS}^{(r)}`, ``digits``
      significant digits;
    - ``"<100 level> % coverage"`` and ``"spread / error"``: the means over truths of the central
      ``level`` interval coverage and of the spread/error ratio, two decimals.

    When a run failed (:func:`assimilax.metrics.failed_runs` of the RMSE, with ``failed_above``)
    every cell but the RMSE is ``missing`` (a mean over truths would hide the failure), and so is
    a score that does not exist (all NaN: the coverage and spread of a point analysis).
    ``level`` only names the coverage column: it must be the level the scores were computed at.

    **Returns** a dict of strings, in the column order above.
    """
    need = ("rmse", "crps", "coverage", "spread_error")
    absent = [k for k in need if k not in scores]
    if absent:
        raise ValueError(f"scores lacks {absent} (expected the dict of score_runs / ensemble_scores)")
    v = {k: np.asarray(scores[k], dtype=np.float64) for k in need}
    n = v["rmse"].shape
    if len(n) != 1 or any(a.shape != n for a in v.values()):
        raise ValueError(f"every score must have the same shape (R,), got {[v[k].shape for k in need]}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    check_positive_int(digits, "digits")
    ok = not failed_runs(v["rmse"], failed_above).any()

    def cell(values, fmt):
        return fmt.format(float(np.mean(values))) if ok and not np.all(np.isnan(values)) else missing

    return {"RMSE": describe_runs(v["rmse"], failed_above=failed_above, digits=digits, missing=missing),
            "CRPS": cell(v["crps"], f"{{:.{digits}g}}"),
            f"{100 * level:g} % coverage": cell(v["coverage"], "{:.2f}"),
            "spread / error": cell(v["spread_error"], "{:.2f}")}


def learned_cycle_rmse(forward, observation, truths: TwinTruths, *, analysis, burn: int = 0) -> np.ndarray:
    r"""Time-mean analysis RMSE of a *deterministic* learned cycle on each truth, one truth at a
    time, so that a truth on which the cycle diverges costs only its own score.

    Truth ``r`` is cycled from its initial state :math:`\tilde u_0 = x^{(r)}_0` (``truths.x0``, not
    the ensemble) by :func:`assimilax.learned.learned_filter` with one member and no residual,

    .. math:: \tilde u_t = T\big(F(\tilde u_{t-1}), y^{(r)}_t\big), \qquad
              e^{(r)} = \frac{1}{T - b} \sum_{t > b} \frac{\lVert \tilde u_t - x^{(r)}_t \rVert}{\sqrt d},

    with :math:`b` = ``burn``. Nothing is drawn (no residual, no model noise), so no key is needed.
    The cycle runs in the dtype of ``truths`` (cast them, e.g. to float32, to cycle a float32
    network).

    **Returns** a NumPy array ``(R,)`` of :math:`e^{(r)}`, NaN where the cycle diverged
    (:class:`~assimilax.FilterDivergenceError`).
    """
    from .learned import learned_filter  # the learned package imports the filters: import on use

    T = truths.states.shape[1]
    if not 0 <= burn < T:
        raise ValueError(f"burn must be in [0, {T}), got {burn}")
    if truths.x0.shape != (truths.n_truths, truths.states.shape[2]):
        raise ValueError(f"truths.x0 must have shape {(truths.n_truths, truths.states.shape[2])} (one initial "
                         f"state per truth), got {truths.x0.shape}")
    out = []
    for r in range(truths.n_truths):
        try:
            res = learned_filter(forward, observation, truths.observations[r], truths.x0[r], analysis=analysis,
                                 key=jax.random.PRNGKey(0))
            out.append(float(jnp.mean(rmse(res.analysis_mean, truths.states[r])[burn:])))
        except FloatingPointError:
            out.append(float("nan"))
    return np.asarray(out)


def learned_filter_batched(forward, observation, truths: TwinTruths, *, analysis, key, jit: bool = True,
                           **filter_kwargs):
    r""":func:`assimilax.learned.learned_filter` on every truth at once, each from its initial
    ensemble :math:`E^{(r)}_0` (``truths.ensembles0``), in one ``jax.vmap``-ed (by default jitted)
    program: :func:`run_batched` of

    .. math:: r \mapsto \texttt{learned\_filter}(F, h, y^{(r)}_{1:T}, E^{(r)}_0;\ \text{analysis},
              \text{key} = k_r), \qquad k_r = \texttt{jax.random.split(key, R)[r]} .

    An ensemble analysis (:class:`~assimilax.learned.EnsembleStencilAnalysis`,
    :class:`~assimilax.filters.LETKFAnalysis`) is cycled on its whole ensemble; ``filter_kwargs``
    (``residual``, ``cycle``, ``store_ensembles``, ``model_noise``, ...) go to ``learned_filter``.
    Under ``vmap`` a diverged run is not raised: its analysis holds NaN/inf (score it with
    :func:`score_runs`).

    **Returns** the batched :class:`~assimilax.filters.EnsembleFilterResult` (leading axis ``R``).
    """
    from .learned import learned_filter

    if "ensemble0" in filter_kwargs or "ys" in filter_kwargs:
        raise ValueError("the observations and initial ensembles come from truths; do not pass ys or ensemble0")
    R = truths.n_truths
    if truths.observations.shape[0] != R or truths.ensembles0.ndim != 3 or truths.ensembles0.shape[0] != R:
        raise ValueError(f"truths must hold observations (R, T, m) and ensembles0 (R, N, d) for the same R = {R}, "
                         f"got {truths.observations.shape} and {truths.ensembles0.shape}")

    def batch(observations, ensembles0, key_):
        return run_batched(lambda y, e, k: learned_filter(forward, observation, y, e, analysis=analysis, key=k,
                                                          **filter_kwargs),
                           TwinTruths(truths.states, observations, truths.x0, ensembles0), key=key_)

    return (jax.jit(batch) if jit else batch)(truths.observations, truths.ensembles0, key)


__all__ = ["TwinTruths", "twin_truths", "run_batched", "score_runs", "GridTuning", "tune_grid", "score_row",
           "learned_cycle_rmse", "learned_filter_batched"]
