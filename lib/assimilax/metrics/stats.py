r"""Intervals, paired comparisons and computed verdicts for the book's comparisons.

Every comparative sentence in a chapter ("better than", "within noise of", "worse than") is
chosen by :func:`compare` from a paired comparison over the same seeds or test truths, and its
numbers are formatted by the same object, so that the sentence and the figures quoted with it
cannot disagree.

The Student-t interval of a mean of :math:`n` values with sample mean :math:`\bar v` and
unbiased standard deviation :math:`s` is

.. math:: \bar v \pm t_{n-1,\,(1+\ell)/2}\, \frac{s}{\sqrt n},

and the paired comparison applies it to the differences :math:`a_i - b_i`
(the paired t-test, :cite:`student1908probable`). The bootstrap option is the percentile
bootstrap of the mean :cite:`efron1993introduction`. These are post-processing helpers: they
take concrete (NumPy-convertible) values, not traced ones, and return Python floats.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import numpy as np
from jaxtyping import Array, Float
from scipy.special import stdtrit


class MeanInterval(NamedTuple):
    """Mean of ``n`` values and its two-sided confidence interval ``(low, high)``."""

    mean: float
    low: float
    high: float
    n: int


class PairedComparison(NamedTuple):
    """Paired differences ``a - b``: their mean, its t interval, ``n`` pairs, and how many
    pairs have ``a < b`` (``n_a_lower``), ``a > b`` (``n_a_higher``) and ``a == b`` (``n_ties``)."""

    mean_difference: float
    low: float
    high: float
    n: int
    n_a_lower: int
    n_a_higher: int
    n_ties: int


class TwoSampleComparison(NamedTuple):
    """Unpaired (Welch) comparison: mean of ``a`` minus mean of ``b``, its interval, the sample
    sizes and the Welch--Satterthwaite degrees of freedom ``df``."""

    mean_difference: float
    low: float
    high: float
    n_a: int
    n_b: int
    df: float


class Verdict(NamedTuple):
    """The phrase a paired comparison supports and its numbers, ready to glue.

    ``phrase`` is one of ``"better than"``, ``"within noise of"``, ``"worse than"`` (``a``
    relative to ``b``); ``word`` is ``"better"``, ``"indistinguishable"`` or ``"worse"``;
    ``comparison`` holds the underlying :class:`PairedComparison` (or
    :class:`TwoSampleComparison` when unpaired), ``a`` and ``b`` the two
    :class:`MeanInterval`; ``summary`` is a formatted sentence fragment, e.g.
    ``"0.12 [0.10, 0.14] vs 0.20 [0.18, 0.22]; difference -0.08 [-0.10, -0.06], 5 of 5 pairs"``.
    """

    phrase: str
    word: str
    comparison: PairedComparison
    a: MeanInterval
    b: MeanInterval
    summary: str


def _values(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (n,), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 values for an interval, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf (first at index {int(np.argmin(np.isfinite(arr)))})")
    return arr


def _level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def _t_interval(arr: np.ndarray, level: float) -> tuple[float, float, float]:
    n = arr.shape[0]
    mean = float(np.mean(arr))
    sem = float(np.std(arr, ddof=1)) / np.sqrt(n)
    half = float(stdtrit(n - 1, 0.5 + level / 2.0)) * sem
    return mean, mean - half, mean + half


def mean_interval(values: Float[Array, " n"], level: float = 0.95, method: str = "t", *,
                  key: Optional[jax.Array] = None, n_resamples: int = 9999) -> MeanInterval:
    r"""Mean of ``values`` with a two-sided ``level`` confidence interval.

    ``method="t"``: :math:`\bar v \pm t_{n-1,(1+\ell)/2}\, s/\sqrt n` (Student t,
    :cite:`student1908probable`). ``method="bootstrap"``: the percentile bootstrap
    :cite:`efron1993introduction`, the :math:`(1\mp\ell)/2` quantiles of the means of
    ``n_resamples`` resamples drawn with replacement using ``key`` (required).

    **Arguments:**

    - `values`: shape ``(n,)``, ``n >= 2``, finite.
    - `level`: confidence level in ``(0, 1)``.
    - `method`: ``"t"`` or ``"bootstrap"``.
    - `key`: a ``jax.random`` key, needed for the bootstrap.
    - `n_resamples`: bootstrap resamples.

    **Returns:** a :class:`MeanInterval` ``(mean, low, high, n)`` of Python numbers.
    """
    arr = _values(values, "values")
    level = _level(level)
    n = arr.shape[0]
    if method == "t":
        mean, low, high = _t_interval(arr, level)
        return MeanInterval(mean, low, high, n)
    if method == "bootstrap":
        if key is None:
            raise ValueError("method='bootstrap' needs an explicit key=jax.random.key(...)")
        if int(n_resamples) < 1:
            raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
        idx = np.asarray(jax.random.randint(key, (int(n_resamples), n), 0, n))
        means = arr[idx].mean(axis=1)
        low, high = np.quantile(means, [0.5 - level / 2.0, 0.5 + level / 2.0])
        return MeanInterval(float(np.mean(arr)), float(low), float(high), n)
    raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")


def paired_comparison(a: Float[Array, " n"], b: Float[Array, " n"], level: float = 0.95) -> PairedComparison:
    r"""Paired comparison of ``a`` and ``b`` measured on the same seeds or test truths.

    The differences :math:`d_i = a_i - b_i` get the Student-t interval of their mean (the paired
    t-test's interval, :cite:`student1908probable`); the counts say how many pairs favour each
    side.

    **Arguments:**

    - `a`, `b`: shape ``(n,)`` each, ``n >= 2``, finite, pair ``i`` from the same seed.
    - `level`: confidence level in ``(0, 1)``.

    **Returns:** a :class:`PairedComparison`.
    """
    a_arr, b_arr = _values(a, "a"), _values(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must have the same shape (n,), got {a_arr.shape} and {b_arr.shape}")
    level = _level(level)
    d = a_arr - b_arr
    mean, low, high = _t_interval(d, level)
    return PairedComparison(mean, low, high, int(d.shape[0]), int(np.sum(d < 0)), int(np.sum(d > 0)),
                            int(np.sum(d == 0)))


def welch_comparison(a: Float[Array, " n"], b: Float[Array, " m"], level: float = 0.95) -> TwoSampleComparison:
    r"""Unpaired comparison of two independent samples: :math:`\bar a - \bar b \pm t_{\nu,(1+\ell)/2}
    \sqrt{s_a^2/n_a + s_b^2/n_b}` with the Welch--Satterthwaite degrees of freedom
    :math:`\nu = (s_a^2/n_a + s_b^2/n_b)^2 / \big(\frac{(s_a^2/n_a)^2}{n_a-1} + \frac{(s_b^2/n_b)^2}{n_b-1}\big)`
    :cite:`welch1947generalization`. Use when the two sides do not share seeds (two systems).

    **Arguments:** `a` shape ``(n,)``, `b` shape ``(m,)``, both ``>= 2`` finite values; `level`.

    **Returns:** a :class:`TwoSampleComparison`.
    """
    a_arr, b_arr = _values(a, "a"), _values(b, "b")
    level = _level(level)
    va, vb = np.var(a_arr, ddof=1) / a_arr.size, np.var(b_arr, ddof=1) / b_arr.size
    diff = float(np.mean(a_arr) - np.mean(b_arr))
    se2 = va + vb
    if se2 == 0:
        return TwoSampleComparison(diff, diff, diff, a_arr.size, b_arr.size, float("inf"))
    df = se2 ** 2 / (va ** 2 / (a_arr.size - 1) + vb ** 2 / (b_arr.size - 1))
    half = float(stdtrit(df, 0.5 + level / 2.0)) * np.sqrt(se2)
    return TwoSampleComparison(diff, diff - half, diff + half, int(a_arr.size), int(b_arr.size), float(df))


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}g}" if digits > 0 else f"{x}"


def compare(a: Float[Array, " n"], b: Float[Array, " n"], *, lower_is_better: bool = True,
            level: float = 0.95, digits: int = 3, paired: bool = True) -> Verdict:
    r"""The verdict a paired comparison of ``a`` with ``b`` supports.

    With :math:`[\ell, h]` the paired t interval of the mean of :math:`a_i - b_i`
    (:func:`paired_comparison`), ``a`` is

    - ``"better than"`` ``b`` when the whole interval lies on the better side of 0
      (:math:`h < 0` if lower is better, :math:`\ell > 0` otherwise),
    - ``"worse than"`` ``b`` when it lies wholly on the other side,
    - ``"within noise of"`` ``b`` when it contains 0.

    **Arguments:**

    - `a`, `b`: shape ``(n,)``, paired by seed (e.g. RMSEs of two methods on the same truths).
    - `lower_is_better`: ``True`` for errors and costs, ``False`` for scores.
    - `level`: confidence level of the interval.
    - `digits`: significant digits of the numbers in ``summary``.
    - `paired`: ``True`` (same seeds on both sides: :func:`paired_comparison`) or ``False``
      (independent samples, possibly of different sizes: :func:`welch_comparison`).

    **Returns:** a :class:`Verdict`; glue ``verdict.phrase`` into the sentence.
    """
    pc = paired_comparison(a, b, level) if paired else welch_comparison(a, b, level)
    if lower_is_better:
        better, worse = pc.high < 0.0, pc.low > 0.0
    else:
        better, worse = pc.low > 0.0, pc.high < 0.0
    if better:
        phrase, word = "better than", "better"
    elif worse:
        phrase, word = "worse than", "worse"
    else:
        phrase, word = "within noise of", "indistinguishable"
    ia, ib = mean_interval(a, level), mean_interval(b, level)
    f = lambda x: _fmt(x, digits)  # noqa: E731
    summary = (f"{f(ia.mean)} [{f(ia.low)}, {f(ia.high)}] vs {f(ib.mean)} [{f(ib.low)}, {f(ib.high)}]; "
               f"difference {f(pc.mean_difference)} [{f(pc.low)}, {f(pc.high)}]")
    if paired:
        n_fav = pc.n_a_lower if lower_is_better else pc.n_a_higher
        summary += f", {n_fav} of {pc.n} pairs favour the first"
    return Verdict(phrase, word, pc, ia, ib, summary)


def format_interval(interval: MeanInterval, digits: int = 3) -> str:
    """``"mean [low, high]"`` with ``digits`` significant digits, for glue."""
    return f"{_fmt(interval.mean, digits)} [{_fmt(interval.low, digits)}, {_fmt(interval.high, digits)}]"


def interval_position(interval: MeanInterval, low: float, high: Optional[float] = None) -> str:
    r"""Where a confidence interval :math:`[\ell, h]` lies against a predicted value or band
    :math:`[a, b]` (``high=None``: the value :math:`a = b =` ``low``): ``"below"`` if
    :math:`h < a`, ``"above"`` if :math:`\ell > b`, ``"inside"`` otherwise (the interval meets the
    band, so the measurement is consistent with the prediction). Raises ``ValueError`` if
    :math:`a > b`."""
    high = low if high is None else high
    if not low <= high:
        raise ValueError(f"the band needs low <= high, got [{low}, {high}]")
    if interval.high < low:
        return "below"
    if interval.low > high:
        return "above"
    return "inside"


def loglog_slope(x: Float[Array, " L *batch"], y: Float[Array, " L *batch"], *,
                 nonpositive: str = "raise") -> np.ndarray:
    r"""Least-squares slope :math:`\hat b` of :math:`\log y = a + b \log x` along axis 0 (the points
    of the fit), one slope per remaining index: ``x`` ``(L,)`` shared by every column of ``y``
    ``(L, *batch)``, or ``x`` with the shape of ``y`` (one abscissa per column, e.g. per seed),

    .. math:: \hat b = \frac{\sum_l (u_l - \bar u)(v_l - \bar v)}{\sum_l (u_l - \bar u)^2},
       \qquad u = \log x,\ v = \log y .

    A power law :math:`y = c\,x^b` has no slope where some :math:`y \le 0` (a negative regret, say):
    ``nonpositive="raise"`` (default) refuses such input, ``nonpositive="nan"`` returns NaN for
    each column of ``y`` that holds a value :math:`\le 0` (and the slope of the others), e.g. for
    a table cell that should read "no slope". ``x`` must be positive either way.

    Raises ``ValueError`` for fewer than two points, non-positive ``x`` (or ``y`` unless
    ``nonpositive="nan"``), or a constant ``x``."""
    if nonpositive not in ("raise", "nan"):
        raise ValueError(f"nonpositive must be 'raise' or 'nan', got {nonpositive!r}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim == 1 and y.ndim > 1:
        x = x.reshape((-1,) + (1,) * (y.ndim - 1))
    if y.ndim < 1 or y.shape[0] < 2 or x.shape[0] != y.shape[0] or np.broadcast_shapes(x.shape, y.shape) != y.shape:
        raise ValueError(f"x must have shape (L,) or y's shape, y (L >= 2, ...), got {x.shape} and {y.shape}")
    bad = ~np.all(y > 0, axis=0)  # columns without a slope
    if not np.all(x > 0) or (nonpositive == "raise" and np.any(bad)):
        raise ValueError("a log-log slope needs positive x and y")
    u, v = np.log(x), np.log(np.where(bad, 1.0, y))
    u, v = u - u.mean(0), v - v.mean(0)
    den = np.sum(np.broadcast_to(u, v.shape) ** 2, axis=0)
    if np.any(den == 0):
        raise ValueError("x is constant along axis 0: the slope is undefined")
    return np.where(bad, np.nan, np.sum(u * v, axis=0) / den)[()]  # a NumPy scalar for one column




class PowerLawFit(NamedTuple):
    """:func:`offset_power_law_fit`: :math:`y \\approx` ``offset`` :math:`+` ``scale`` :math:`x^{\\,b}`
    with ``exponent`` :math:`b`; ``residual`` is the sum of squared log-ratios of data and fit."""

    offset: float
    scale: float
    exponent: float
    residual: float


def offset_power_law_fit(x: Float[Array, " L"], y: Float[Array, " L"], *, n_grid: int = 200) -> PowerLawFit:
    r"""Fit :math:`y = y_\infty + c\,x^{b}` (:math:`c > 0`, :math:`0 \le y_\infty < \min y`) to a
    positive curve, e.g. a test risk against the training-set size, where the limit
    :math:`y_\infty` (:math:`\inf_\Theta R`) is unknown.

    The log--log slope of :math:`y - y_{\rm ref}` with a proxy :math:`y_{\rm ref}` (the value at
    the largest :math:`x`) is steeper than :math:`b` near :math:`x_{\rm ref}`; here
    :math:`y_\infty` is a parameter. The criterion is relative,
    :math:`\sum_l \big(\log y_l - \log(y_\infty + c\,x_l^{b})\big)^2`, so small and large values
    count alike. Start: for each :math:`y_\infty` on a grid of ``n_grid`` points in
    :math:`[0, \min y)`, the line of :math:`\log(y - y_\infty)` on :math:`\log x`; the best start
    is refined by ``scipy.optimize.least_squares`` in :math:`(y_\infty/\min y, \log c, b)`
    within the bounds.

    **Arguments:** ``x`` ``(L,)`` positive and not constant, ``y`` ``(L,)`` positive, :math:`L \ge 3`.
    **Returns:** a :class:`PowerLawFit`. Raises ``ValueError`` otherwise.
    """
    from scipy.optimize import least_squares

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise ValueError(f"x and y must be 1-D of the same length >= 3, got {x.shape} and {y.shape}")
    if not np.all(x > 0) or np.ptp(np.log(x)) == 0 or not np.all(np.isfinite(y)) or not np.all(y > 0):
        raise ValueError("x must be positive and not constant, y finite and positive")
    u, ly, ymin = np.log(x), np.log(y), float(y.min())

    def resid(p):
        return ly - np.log(p[0] * ymin + np.exp(p[1] + p[2] * u))

    best = None
    for frac in np.linspace(0.0, 1.0, int(n_grid), endpoint=False):
        b, a = np.polyfit(u, np.log(y - frac * ymin), 1)
        r = float(np.sum(resid(np.array([frac, a, b])) ** 2))
        if best is None or r < best[0]:
            best = (r, np.array([frac, a, b]))
    lo, hi = np.array([0.0, -np.inf, -np.inf]), np.array([1.0 - 1e-12, np.inf, np.inf])
    p = least_squares(resid, np.clip(best[1], lo, hi), bounds=(lo, hi), xtol=1e-14, ftol=1e-14, gtol=1e-14).x
    r = float(np.sum(resid(p) ** 2))
    if r > best[0]:
        p, r = best[1], best[0]
    return PowerLawFit(float(p[0] * ymin), float(np.exp(p[1])), float(p[2]), r)


def verdicts_by_setting(verdicts: Sequence[Verdict], settings: Sequence, reference: str, *,
                        name: str = "σ", digits: int = 2) -> str:
    r"""One sentence for a sweep of verdicts: the settings grouped by the phrase that holds there.

    For verdicts :math:`v_1, \dots, v_L` of a method against ``reference`` at settings
    :math:`s_1, \dots, s_L` (noise levels, sizes, ...), the settings are grouped by
    ``v.phrase`` in the order the phrases first appear, and each group becomes
    ``"<phrase> <reference> at <name> = s_i, s_j"`` (the reference named in the first group,
    ``"it"`` in the later ones), the groups joined by ``"; "``. E.g. ``"better than AR(2) at
    σ = 0.03, 0.08; within noise of it at σ = 0.2"``. Numbers are written with ``digits``
    significant digits, other settings with ``str``. Plain text, safe to glue (glued text is not
    parsed as MyST).

    **Arguments:**

    - `verdicts`: :class:`Verdict` objects (from :func:`compare` or
      :func:`~assimilax.metrics.compare_runs`), one per setting.
    - `settings`: the ``L`` settings, in sweep order.
    - `reference`: how the sentence names the other side of the comparisons.
    - `name`: the setting's symbol; `digits`: significant digits of numeric settings.

    **Returns:** the sentence (a ``str``). Raises ``ValueError`` when the lengths differ or there
    is no verdict.
    """
    verdicts, settings = list(verdicts), list(settings)
    if len(verdicts) != len(settings):
        raise ValueError(f"one setting per verdict: got {len(verdicts)} verdicts and {len(settings)} settings")
    if not verdicts:
        raise ValueError("verdicts_by_setting needs at least one verdict")
    groups: dict = {}
    for v, s in zip(verdicts, settings):
        text = s if isinstance(s, str) else f"{s:.{digits}g}"
        groups.setdefault(v.phrase, []).append(text)
    return "; ".join(f"{phrase} {reference if k == 0 else 'it'} at {name} = {', '.join(texts)}"
                     for k, (phrase, texts) in enumerate(groups.items()))


def largest_with_verdict(values: Float[Array, " L"], verdicts: Sequence[Verdict], word: str = "better") -> Optional[float]:
    r"""The largest of ``values`` :math:`q_i` at which verdict :math:`v_i` has ``v.word == word``:
    :math:`\max\{q_i : v_i = \text{word}\}`, or ``None`` if no verdict has that word.

    For a sweep of a quality variable (e.g. the analysis RMSE behind a forecast used as a hint),
    the largest value at which a method is still ``"better"`` than its reference: how bad the
    input may get before the advantage stops being distinguishable.

    **Arguments:** `values` shape ``(L,)``, finite; `verdicts` ``L`` :class:`Verdict` objects;
    `word` one of ``"better"``, ``"indistinguishable"``, ``"worse"`` (or ``"not comparable"``,
    from :func:`~assimilax.metrics.compare_runs`).

    **Returns:** a Python float or ``None``. Raises ``ValueError`` for mismatched lengths, an
    unknown word, or non-finite values.
    """
    q = np.asarray(values, dtype=np.float64)
    verdicts = list(verdicts)
    if q.ndim != 1 or q.shape[0] != len(verdicts):
        raise ValueError(f"values must have shape (L,) with one verdict each, got {q.shape} and {len(verdicts)} verdicts")
    if word not in ("better", "indistinguishable", "worse", "not comparable"):
        raise ValueError(f"word must be 'better', 'indistinguishable', 'worse' or 'not comparable', got {word!r}")
    if not np.all(np.isfinite(q)):
        raise ValueError("values contains NaN or inf")
    hits = [float(x) for x, v in zip(q, verdicts) if v.word == word]
    return max(hits) if hits else None


def gaussian_w2(samples: Float[Array, "... n"], mean: Float[Array, "..."], var: Float[Array, "..."]) -> np.ndarray:
    r"""Wasserstein-2 distance between the Gaussian fit of 1-D samples and :math:`\mathcal N(\mu, \sigma^2)`.

    The samples :math:`x_1, \dots, x_n` along the last axis are fitted by maximum likelihood,
    :math:`\hat\mu = \frac1n \sum_i x_i` and :math:`\hat\sigma^2 = \frac1n \sum_i (x_i - \hat\mu)^2`,
    and compared in closed form: between two 1-D Gaussians the optimal coupling is the monotone
    map of their quantile functions, so that

    .. math:: W_2\bigl(\mathcal N(\hat\mu, \hat\sigma^2), \mathcal N(\mu, \sigma^2)\bigr)
              = \Bigl(\int_0^1 \bigl(F^{-1}_{\hat\mu,\hat\sigma}(u) - F^{-1}_{\mu,\sigma}(u)\bigr)^2 du\Bigr)^{1/2}
              = \sqrt{(\hat\mu - \mu)^2 + (\hat\sigma - \sigma)^2}.

    It measures a sampler's first two moments against an exact Gaussian target (e.g. a diffusion
    model's conditional samples against the exact linear-Gaussian posterior); it is blind to
    higher moments of the samples.

    **Arguments:** ``samples`` ``(..., n)``, ``n >= 1``, finite; ``mean`` and ``var`` (the target's
    variance, :math:`\sigma^2 \ge 0`, finite) broadcastable to ``samples.shape[:-1]``.

    **Returns:** a NumPy float64 array of shape ``samples.shape[:-1]`` (a 0-d array for 1-D
    ``samples``), elementwise over the leading axes.
    """
    x = np.asarray(samples, dtype=np.float64)
    mu, v = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"samples must have shape (..., n) with n >= 1, got {x.shape}")
    for name, arr in (("samples", x), ("mean", mu), ("var", v)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf")
    if np.any(v < 0):
        raise ValueError(f"var must be >= 0, got a minimum of {float(v.min())}")
    try:
        shape = np.broadcast_shapes(mu.shape, v.shape, x.shape[:-1])
    except ValueError:
        shape = None
    if shape != x.shape[:-1]:
        raise ValueError(f"mean {mu.shape} and var {v.shape} must broadcast to samples.shape[:-1] = {x.shape[:-1]}")
    return np.sqrt((x.mean(-1) - mu) ** 2 + (x.std(-1) - np.sqrt(v)) ** 2)


__all__ = ["MeanInterval", "PairedComparison", "TwoSampleComparison", "Verdict", "welch_comparison", "mean_interval", "paired_comparison", "compare",
           "format_interval", "interval_position", "loglog_slope", "verdicts_by_setting", "largest_with_verdict",
           "PowerLawFit", "offset_power_law_fit", "gaussian_w2"]
