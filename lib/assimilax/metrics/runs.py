r"""Scores and verdicts over repeated runs (test truths, seeds), for experiments whose runs can fail.

An experiment in this book runs a filter on many truths at once (``jax.vmap``), scores each run
over its cycles, and compares methods run by run. The helpers here are that pipeline:

- :func:`timed_call`: compile a function ahead of time and time one call (compilation and
  execution separately, so that a cost per cycle excludes compilation);
- :func:`ensemble_scores`: per run, the time means of the RMSE of the analysis mean, the CRPS,
  the central-interval coverage, the spread and the spread/error ratio; a run whose analysis is
  not finite gets NaN in every score;
- :func:`failed_runs` and :func:`describe_runs`: which runs failed (not finite, or above a
  threshold), and a table cell "mean [low, high]" or "failed on k of n";
- :func:`compare_runs`: :func:`~assimilax.metrics.compare` when no run failed; otherwise the
  side that failed where the other did not is the worse one (a failure is not a number a mean can
  absorb), and two sides that both failed are not compared.
"""
from __future__ import annotations

import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import crps_ensemble, interval_coverage, rmse, spread
from .stats import Verdict, compare, format_interval, mean_interval


def timed_call(fn, *args):
    """``jax.jit(fn)`` compiled ahead of time for ``args`` (``lower(...).compile()``), then called
    once and waited for. **Returns** ``(output, compile seconds, run seconds)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, t1 - t0, time.perf_counter() - t1


def ensemble_scores(means: Float[Array, "R T d"], ensembles: Optional[Float[Array, "R T N d"]],
                    truth: Float[Array, "R T d"], *, burn: int = 0, level: float = 0.9) -> dict:
    r"""Per-run scores of ``R`` runs over the cycles ``burn:``, each a time mean:

    - ``rmse``: :math:`\overline{\lVert \bar x_t - x_t\rVert / \sqrt d}` (:func:`rmse`);
    - ``crps``: :func:`crps_ensemble` (a point analysis, ``ensembles=None``: the mean absolute error,
      which is its CRPS);
    - ``coverage``: :func:`interval_coverage` of the central ``level`` interval, pooled over cycles
      and components (NaN for a point analysis);
    - ``spread``: :func:`spread` (NaN for a point analysis) and ``spread_error``: spread / rmse.

    **Returns** a dict of NumPy arrays ``(R,)``; a run whose scores are not all finite (the filter
    diverged) has NaN in every score.
    """
    means, truth = jnp.asarray(means), jnp.asarray(truth)
    if means.ndim != 3 or means.shape != truth.shape:
        raise ValueError(f"means and truth must both have shape (runs, T, d), got {means.shape} and {truth.shape}")
    if not 0 <= burn < means.shape[1]:
        raise ValueError(f"burn must be in [0, {means.shape[1]}), got {burn}")
    m, x = means[:, burn:], truth[:, burn:]
    out = {"rmse": jnp.mean(rmse(m, x), axis=1)}
    if ensembles is None:
        out["crps"] = jnp.mean(jnp.abs(m - x), axis=(1, 2))
        nan = jnp.full(m.shape[0], jnp.nan)
        out.update(coverage=nan, spread=nan)
    else:
        E = jnp.asarray(ensembles)
        if E.ndim != 4 or E.shape[:2] != means.shape[:2] or E.shape[3] != means.shape[2]:
            raise ValueError(f"ensembles must have shape (runs, T, N, d) matching means {means.shape}, got {E.shape}")
        E = E[:, burn:]
        out.update(crps=jnp.mean(crps_ensemble(E, x), axis=1),
                   coverage=jax.vmap(lambda e, t: interval_coverage(e, t, level))(E, x),
                   spread=jnp.mean(spread(E), axis=1))
    out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    out["spread_error"] = out["spread"] / out["rmse"]
    ok = np.isfinite(out["rmse"]) & np.isfinite(out["crps"])
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}


def failed_runs(values: Float[Array, " n"], failed_above: Optional[float] = None) -> np.ndarray:
    """Boolean ``(n,)``: the runs whose score is not finite, or above ``failed_above`` (e.g. an
    error no better than an unrelated state) when given."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if failed_above is not None:
        bad |= np.where(np.isfinite(v), v, 0.0) > failed_above
    return bad


def describe_runs(values: Float[Array, " n"], *, failed_above: Optional[float] = None, digits: int = 3,
                  missing: str = "—") -> str:
    """A table cell for a per-run score: ``"mean [low, high]"`` (95 % t interval,
    :func:`~assimilax.metrics.format_interval`), ``"failed on k of n"`` when some run failed
    (:func:`failed_runs`), ``missing`` when the score does not exist (all NaN, e.g. the coverage
    of a point analysis) and no run failed otherwise."""
    v = np.asarray(values, dtype=np.float64)
    if v.size and np.all(np.isnan(v)):
        return missing
    bad = failed_runs(v, failed_above)
    if bad.any():
        return f"failed on {int(bad.sum())} of {v.size}"
    return format_interval(mean_interval(v), digits)


def compare_runs(a: Float[Array, " n"], b: Float[Array, " n"], *, lower_is_better: bool = True,
                 failed_above: Optional[float] = None, level: float = 0.95, digits: int = 3) -> Verdict:
    """The verdict on per-run scores ``a`` against ``b`` (paired by run) when runs can fail.

    No failed run (:func:`failed_runs`) on either side: :func:`~assimilax.metrics.compare`. Runs
    failed on one side only: that side is ``"worse than"`` the other (``"better than"`` read from
    the other side). Both sides failed somewhere: ``"not comparable with"`` (word
    ``"not comparable"``). In the last two cases ``comparison``, ``a`` and ``b`` are ``None`` and
    ``summary`` says which side failed on how many runs.
    """
    fa, fb = failed_runs(a, failed_above), failed_runs(b, failed_above)
    if not fa.any() and not fb.any():
        return compare(a, b, lower_is_better=lower_is_better, level=level, digits=digits)
    n = fa.size
    if fa.any() and fb.any():
        return Verdict("not comparable with", "not comparable", None, None, None,
                       f"both failed: the first on {int(fa.sum())}, the second on {int(fb.sum())} of {n} runs")
    if fb.any():
        return Verdict("better than", "better", None, None, None, f"the second failed on {int(fb.sum())} of {n} runs")
    return Verdict("worse than", "worse", None, None, None, f"the first failed on {int(fa.sum())} of {n} runs")


__all__ = ["timed_call", "ensemble_scores", "failed_runs", "describe_runs", "compare_runs"]
