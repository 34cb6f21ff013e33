"""Hint processes against NumPy formulas; causality; the log|M| price of learning the hint."""
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from assimilax.online import (
    AutoRegressive, Ball, Clip, EmpiricalMean, ExternalForecast, FadingMemory, HedgeOverHints,
    LastValue, Simplex, WeightedAverage, Zero,
)


def _xs(seed=0, T=30, d=3):
    return np.random.default_rng(seed).uniform(0, 1, (T, d))


def test_simple_hints_match_numpy():
    xs = _xs()
    T = len(xs)
    lv = np.asarray(LastValue(initial=0.25).sequence(jnp.asarray(xs)))
    np.testing.assert_allclose(lv[0], 0.25)
    np.testing.assert_allclose(lv[1:], xs[:-1])
    em = np.asarray(EmpiricalMean(initial=0.5).sequence(jnp.asarray(xs)))
    np.testing.assert_allclose(em[0], 0.5)
    for t in range(1, T):
        np.testing.assert_allclose(em[t], xs[:t].mean(0), rtol=1e-12)
    lam = 0.7
    fm = np.asarray(FadingMemory(lam).sequence(jnp.asarray(xs)))
    for t in range(1, T):
        w = lam ** np.arange(t - 1, -1, -1)
        np.testing.assert_allclose(fm[t], w @ xs[:t] / w.sum(), rtol=1e-12)
    alpha = np.array([0.5, 0.3, 0.2])
    wa = np.asarray(WeightedAverage(jnp.asarray(alpha)).sequence(jnp.asarray(xs)))
    for t in range(1, T):
        k = min(3, t)
        lags = xs[t - 1::-1][:k]
        np.testing.assert_allclose(wa[t], alpha[:k] @ lags / alpha[:k].sum(), rtol=1e-12)
    assert np.all(np.asarray(Zero().sequence(jnp.asarray(xs))) == 0)
    ef = np.asarray(ExternalForecast(lambda x: 2 * x + 1).sequence(jnp.asarray(xs)))
    np.testing.assert_allclose(ef[1:], 2 * xs[:-1] + 1)
    cl = np.asarray(Clip(ExternalForecast(lambda x: 2 * x + 1), 0.0, 1.5).sequence(jnp.asarray(xs)))
    assert cl.max() <= 1.5


def test_hints_are_causal():
    xs = _xs(1, 25, 2)
    ys = xs.copy()
    ys[12:] = 10.0  # change the future
    for h in (LastValue(), EmpiricalMean(), FadingMemory(0.8), AutoRegressive(2),
              HedgeOverHints((LastValue(), EmpiricalMean()), Simplex(2), 20.0)):
        a = np.asarray(h.sequence(jnp.asarray(xs)))
        b = np.asarray(h.sequence(jnp.asarray(ys)))
        np.testing.assert_allclose(a[:13], b[:13], err_msg=type(h).__name__)
        assert not np.allclose(a[13:], b[13:])


def test_autoregressive_learns_a_sinusoid():
    t = np.arange(300)
    xs = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * t / 17), 0.5 + 0.3 * np.cos(2 * np.pi * t / 9)], 1)
    ar = np.asarray(AutoRegressive(2).sequence(jnp.asarray(xs)))
    err = np.abs(ar - xs)[100:].max()
    lv_err = np.abs(xs[99:-1] - xs[100:]).max()
    assert err < 1e-4 < lv_err
    # an AR(1) cannot represent the oscillation
    ar1 = np.asarray(AutoRegressive(1).sequence(jnp.asarray(xs)))
    assert np.abs(ar1 - xs)[100:].max() > 1e-2


@settings(max_examples=8)
@given(seed=st.integers(0, 10**6), N=st.integers(1, 6), T=st.sampled_from([1, 60, 200]), ball=st.booleans())
def test_hedge_over_hints_pays_at_most_2B2_logN(seed, N, T, ball):
    rng = np.random.default_rng(seed)
    d = 3
    xs = rng.uniform(0, 1, (T, d))
    members = tuple(ExternalForecast(lambda x, c=float(c): jnp.clip(x + c, 0.0, 1.0)) for c in rng.uniform(-0.5, 0.5, N))
    geo = Ball(d) if ball else Simplex(d)
    B = float(np.sqrt(d)) if ball else 1.0
    mix = HedgeOverHints(members, geo, B)
    m = np.asarray(mix.sequence(jnp.asarray(xs)))
    seqs = np.stack([np.asarray(h.sequence(jnp.asarray(xs))) for h in members])
    norm = (lambda v: np.sum(v**2, -1)) if ball else (lambda v: np.max(np.abs(v), -1) ** 2)
    s_mix = norm(xs - m).sum()
    s_best = norm(xs[None] - seqs).sum(1).min()
    assert s_mix <= s_best + 2 * B**2 * np.log(N) + 1e-9
    q = np.asarray(mix.weights_sequence(jnp.asarray(xs)))
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(m, np.einsum("tn,ntd->td", q, seqs), rtol=1e-10, atol=1e-12)
