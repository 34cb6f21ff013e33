"""Intervals and paired comparisons against SciPy; the verdict flips exactly where the interval crosses 0."""
import jax
import numpy as np
import pytest
import scipy.stats

from assimilax.metrics import compare, format_interval, mean_interval, paired_comparison, welch_comparison


@pytest.mark.parametrize("n, level", [(2, 0.95), (5, 0.95), (12, 0.9), (40, 0.99)])
def test_t_interval_matches_scipy(n, level):
    v = np.random.default_rng(n).normal(1.0, 2.0, n)
    mi = mean_interval(v, level)
    lo, hi = scipy.stats.t.interval(level, n - 1, loc=v.mean(), scale=scipy.stats.sem(v))
    assert mi.n == n
    np.testing.assert_allclose([mi.mean, mi.low, mi.high], [v.mean(), lo, hi], rtol=1e-12)


def test_paired_matches_ttest_rel():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 9)
    b = a + rng.normal(0.3, 0.5, 9)
    pc = paired_comparison(a, b, 0.9)
    res = scipy.stats.ttest_rel(a, b)
    ci = res.confidence_interval(0.9)
    np.testing.assert_allclose([pc.low, pc.high], [ci.low, ci.high], rtol=1e-12)
    np.testing.assert_allclose(pc.mean_difference, np.mean(a - b), rtol=1e-12)
    # the interval excludes 0 exactly when the two-sided p-value is below 1 - level
    assert (pc.high < 0 or pc.low > 0) == (res.pvalue < 0.1)
    assert pc.n == 9 and pc.n_a_lower + pc.n_a_higher + pc.n_ties == 9
    assert pc.n_a_lower == int(np.sum(a < b))


def test_bootstrap_close_to_scipy_percentile():
    v = np.random.default_rng(3).exponential(1.0, 30)
    mi = mean_interval(v, 0.9, method="bootstrap", key=jax.random.key(0), n_resamples=20000)
    ref = scipy.stats.bootstrap((v,), np.mean, confidence_level=0.9, method="percentile", n_resamples=20000,
                                random_state=np.random.default_rng(1)).confidence_interval
    width = ref.high - ref.low
    assert abs(mi.low - ref.low) < 0.05 * width and abs(mi.high - ref.high) < 0.05 * width
    assert mi.mean == pytest.approx(v.mean())
    # same key, same interval
    assert mean_interval(v, 0.9, method="bootstrap", key=jax.random.key(0), n_resamples=20000) == mi


def test_verdict_flips_exactly_at_zero():
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 1.0, 8)
    noise = noise - noise.mean()
    b = rng.normal(5.0, 1.0, 8)
    half = mean_interval(noise, 0.95).high  # half-width of the interval of the differences
    for shift, lower_is_better, phrase in [(-1.01 * half, True, "better than"), (-0.99 * half, True, "within noise of"),
                                           (0.99 * half, True, "within noise of"), (1.01 * half, True, "worse than"),
                                           (-1.01 * half, False, "worse than"), (1.01 * half, False, "better than")]:
        v = compare(b + noise + shift, b, lower_is_better=lower_is_better)
        assert v.phrase == phrase, (shift, lower_is_better, v)
        assert (v.comparison.high < 0) == (shift < -half)
    v = compare(b - 1.0 + 0.01 * noise, b)
    assert v.word == "better" and "8 of 8 pairs" in v.summary
    assert format_interval(v.a, 2).count("[") == 1


def test_welch_matches_scipy_and_unpaired_verdict():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0.0, 1.0, 6), rng.normal(1.0, 3.0, 11)
    wc = welch_comparison(a, b, 0.9)
    ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    np.testing.assert_allclose([wc.low, wc.high], [ci.low, ci.high], rtol=1e-10)
    assert (wc.n_a, wc.n_b) == (6, 11)
    v = compare(a, b + 10.0, paired=False)
    assert v.phrase == "better than" and "pairs" not in v.summary
    assert compare(a, a[::-1] + 0.0, paired=False).phrase == "within noise of"


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        paired_comparison(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        mean_interval([1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        mean_interval(np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        mean_interval([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="key"):
        mean_interval([1.0, 2.0], method="bootstrap")
    with pytest.raises(ValueError, match="method"):
        mean_interval([1.0, 2.0], method="bca")


def test_interval_position_against_a_value_and_a_band():
    from assimilax.metrics import MeanInterval, interval_position, mean_interval
    iv = MeanInterval(1.0, 0.5, 1.5, 5)
    assert interval_position(iv, 2.0) == "below" and interval_position(iv, 0.2) == "above"
    assert interval_position(iv, 1.5) == "inside"  # an end point touching the value counts as consistent
    assert interval_position(iv, 1.6, 3.0) == "below" and interval_position(iv, -1.0, 0.4) == "above"
    assert interval_position(iv, 1.4, 9.0) == "inside" and interval_position(iv, 0.7, 0.8) == "inside"
    # with the t interval of real data: the interval of N(0, 1) draws lies below 10 and contains 0
    x = np.random.default_rng(0).standard_normal(50)
    assert interval_position(mean_interval(x), 10.0) == "below"
    assert interval_position(mean_interval(x), 0.0) == "inside"
    with pytest.raises(ValueError, match="low <= high"):
        interval_position(iv, 2.0, 1.0)


def test_loglog_slope_matches_numpy_polyfit_per_column():
    from assimilax.metrics import loglog_slope
    rng = np.random.default_rng(3)
    x = np.geomspace(0.1, 10.0, 7)
    y = np.exp(rng.normal(size=(7, 4))) * x[:, None] ** np.array([0.5, 1.0, 2.0, -1.0])
    np.testing.assert_allclose(loglog_slope(x, y), np.polyfit(np.log(x), np.log(y), 1)[0], rtol=1e-10)
    # one abscissa per column (e.g. a measured analysis error per seed)
    xs = np.exp(rng.normal(size=(7, 4)))
    ref = [np.polyfit(np.log(xs[:, j]), np.log(y[:, j]), 1)[0] for j in range(4)]
    np.testing.assert_allclose(loglog_slope(xs, y), ref, rtol=1e-10)
    assert np.isclose(float(loglog_slope(x, 3.0 * x ** 1.5)), 1.5)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, -x)
    with pytest.raises(ValueError, match="constant"):
        loglog_slope(np.ones(5), np.arange(1.0, 6.0))
    with pytest.raises(ValueError, match="shape"):
        loglog_slope(x[:3], y)


def test_loglog_slope_nan_for_columns_with_a_nonpositive_value():
    from assimilax.metrics import loglog_slope
    x = np.geomspace(1.0, 100.0, 6)
    y = np.stack([2.0 * x ** 0.5, x - 10.0, 0.3 * x ** -1.0], axis=1)  # the middle column crosses 0
    out = loglog_slope(x, y, nonpositive="nan")
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [np.polyfit(np.log(x), np.log(y[:, j]), 1)[0] for j in (0, 2)], rtol=1e-10)
    np.testing.assert_allclose(out[[0, 2]], [0.5, -1.0], rtol=1e-10)
    assert np.isnan(float(loglog_slope(x, -x, nonpositive="nan")))  # one column: a NumPy scalar
    assert float(loglog_slope(x, x ** 2, nonpositive="nan")) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, y)  # the default still refuses
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(-x, x, nonpositive="nan")  # x must be positive whatever the policy
    with pytest.raises(ValueError, match="nonpositive"):
        loglog_slope(x, x, nonpositive="clip")


def _verdict_with(word):
    """A real verdict with the given word: paired differences of a known sign (or centred on 0)."""
    d = {"better": -1.0, "worse": 1.0, "indistinguishable": 0.0}[word]
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    return compare(b + d + np.array([0.01, -0.01, 0.02, -0.02, 0.0]), b)


def test_verdicts_by_setting_groups_settings_by_phrase_in_order():
    from assimilax.metrics import verdicts_by_setting
    words = ["better", "better", "indistinguishable", "better", "worse"]
    verdicts = [_verdict_with(w) for w in words]
    assert [v.word for v in verdicts] == words
    sigmas = np.geomspace(0.03, 20.0, 5)
    got = verdicts_by_setting(verdicts, sigmas, "AR(2)")
    s = [f"{x:.2g}" for x in sigmas]
    assert got == (f"better than AR(2) at σ = {s[0]}, {s[1]}, {s[3]}; within noise of it at σ = {s[2]}; "
                   f"worse than it at σ = {s[4]}")
    assert verdicts_by_setting(verdicts[:1], ["small"], "the window", name="N") == "better than the window at N = small"
    assert verdicts_by_setting(verdicts[:2], [0.123456, 7.0], "x", digits=4) == "better than x at σ = 0.1235, 7"
    with pytest.raises(ValueError, match="one setting per verdict"):
        verdicts_by_setting(verdicts, sigmas[:2], "AR(2)")
    with pytest.raises(ValueError, match="at least one"):
        verdicts_by_setting([], [], "AR(2)")


def test_largest_with_verdict():
    from assimilax.metrics import largest_with_verdict
    words = ["better", "better", "indistinguishable", "better", "worse"]
    verdicts = [_verdict_with(w) for w in words]
    rmse = np.array([0.1, 0.4, 0.9, 0.3, 2.0])
    assert largest_with_verdict(rmse, verdicts) == 0.4  # not the last "better" in order: the largest value
    assert largest_with_verdict(rmse, verdicts, "worse") == 2.0
    assert largest_with_verdict(rmse[:2], verdicts[:2], "worse") is None
    with pytest.raises(ValueError, match="shape"):
        largest_with_verdict(rmse[:3], verdicts)
    with pytest.raises(ValueError, match="word"):
        largest_with_verdict(rmse, verdicts, "good")
    with pytest.raises(ValueError, match="NaN"):
        largest_with_verdict(np.array([np.nan, 1.0, 1.0, 1.0, 1.0]), verdicts)


def test_offset_power_law_fit_recovers_the_limit_and_the_exponent():
    from assimilax.metrics import offset_power_law_fit

    x = np.array([50.0, 100.0, 200.0, 400.0, 800.0, 2400.0])
    fit = offset_power_law_fit(x, 0.3 + 2.0 * x ** -0.7)
    assert fit.offset == pytest.approx(0.3, rel=1e-6)
    assert fit.scale == pytest.approx(2.0, rel=1e-5)
    assert fit.exponent == pytest.approx(-0.7, rel=1e-6)
    # no offset: the plain log-log slope
    pure = offset_power_law_fit(x, 5.0 * x ** -0.5)
    assert pure.offset == pytest.approx(0.0, abs=1e-8) and pure.exponent == pytest.approx(-0.5, rel=1e-6)
    # the proxy y - y(x_max) gives a steeper slope than the fitted exponent
    y = 0.3 + 2.0 * x ** -0.7
    from assimilax.metrics import loglog_slope
    assert loglog_slope(x[:-1], y[:-1] - y[-1]) < fit.exponent - 0.05


def test_offset_power_law_fit_is_a_least_squares_optimum_and_refuses_bad_input():
    from assimilax.metrics import offset_power_law_fit

    rng = np.random.default_rng(1)
    x = np.geomspace(10, 1e4, 7)
    y = (0.05 + 3.0 * x ** -0.8) * np.exp(0.05 * rng.normal(size=x.size))
    fit = offset_power_law_fit(x, y)

    def crit(off, c, b):
        return np.sum((np.log(y) - np.log(off + c * x ** b)) ** 2)

    assert fit.residual == pytest.approx(crit(fit.offset, fit.scale, fit.exponent), rel=1e-9)
    # no point of a brute-force grid around the fit is better
    for off in np.linspace(0, 0.999 * y.min(), 25):
        for b in np.linspace(-2.0, -0.1, 39):
            c = np.exp(np.mean(np.log(np.maximum(y - off, 1e-300)) - b * np.log(x)))
            assert crit(off, c, b) >= fit.residual - 1e-12
    with pytest.raises(ValueError):
        offset_power_law_fit(x[:2], y[:2])
    with pytest.raises(ValueError):
        offset_power_law_fit(x, -y)


def _w2_by_quantiles(m1, s1, m2, s2):
    """W2 between two 1-D Gaussians from its definition: the L2 distance of the quantile functions."""
    import scipy.integrate
    f = lambda u: (scipy.stats.norm.ppf(u, m1, s1) - scipy.stats.norm.ppf(u, m2, s2)) ** 2  # noqa: E731
    return np.sqrt(scipy.integrate.quad(f, 0.0, 1.0, limit=200)[0])


def test_gaussian_w2_matches_the_quantile_integral_of_the_scipy_fit():
    from assimilax.metrics import gaussian_w2
    rng = np.random.default_rng(3)
    X = rng.normal(0.5, 2.0, size=(4, 3, 50))
    mean = rng.normal(size=(4, 3))
    var = rng.uniform(0.2, 3.0, size=(4, 3))
    got = gaussian_w2(X, mean, var)
    assert got.shape == (4, 3) and got.dtype == np.float64
    for i in range(4):
        for j in range(3):
            loc, scale = scipy.stats.norm.fit(X[i, j])  # maximum likelihood: the n (not n - 1) variance
            want = _w2_by_quantiles(loc, scale, mean[i, j], np.sqrt(var[i, j]))
            np.testing.assert_allclose(got[i, j], want, rtol=1e-6)
    # broadcasting: one target for every row, and 1-D samples give a 0-d result
    np.testing.assert_allclose(gaussian_w2(X, 0.3, 1.5), [[float(gaussian_w2(x, 0.3, 1.5)) for x in row] for row in X],
                               rtol=1e-12)
    assert gaussian_w2(X[0, 0], 0.0, 1.0).shape == ()


def test_gaussian_w2_closed_form_values():
    from assimilax.metrics import gaussian_w2
    # samples -1, 1: fitted N(0, 1)
    np.testing.assert_allclose(gaussian_w2([-1.0, 1.0], 0.0, 1.0), 0.0, atol=1e-15)
    np.testing.assert_allclose(gaussian_w2([-1.0, 1.0], 2.0, 4.0), np.sqrt(2.0 ** 2 + (1.0 - 2.0) ** 2), rtol=1e-15)
    # one sample: a point mass at 3 against N(1, 9) is sqrt(2^2 + 3^2) away; a zero-variance target is allowed
    np.testing.assert_allclose(gaussian_w2([3.0], 1.0, 9.0), np.sqrt(13.0), rtol=1e-15)
    np.testing.assert_allclose(gaussian_w2([1.0, 3.0], 2.0, 0.0), 1.0, rtol=1e-15)


def test_gaussian_w2_refuses_bad_input():
    from assimilax.metrics import gaussian_w2
    with pytest.raises(ValueError, match="samples must have shape"):
        gaussian_w2(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="samples must have shape"):
        gaussian_w2(np.ones((3, 0)), 0.0, 1.0)
    with pytest.raises(ValueError, match="var must be >= 0"):
        gaussian_w2(np.ones((2, 5)), 0.0, [1.0, -0.5])
    with pytest.raises(ValueError, match="samples contains NaN"):
        gaussian_w2([1.0, np.nan], 0.0, 1.0)
    with pytest.raises(ValueError, match="var contains NaN"):
        gaussian_w2([1.0, 2.0], 0.0, np.inf)
    with pytest.raises(ValueError, match="broadcast"):
        gaussian_w2(np.ones((2, 5)), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="broadcast"):  # a target with more axes than the samples' leading ones
        gaussian_w2(np.ones(5), np.zeros(2), 1.0)
