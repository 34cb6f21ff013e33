"""Online learners against independent NumPy re-implementations and the paper's bounds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assimilax.online import (
    AdaptiveEta, Ball, LastValue, Simplex, adaptive_eta_bound, fixed_eta_bound, ftrl,
    mirror_descent, optimistic_mirror_descent, tuned_eta,
)


def _np_optimistic_hedge(xs, ms, eta):
    """Two-step entropic OMD written out as multiplicative weights (NumPy)."""
    T, n = xs.shape
    g = np.full(n, 1.0 / n)
    fs = []
    for t in range(T):
        f = g * np.exp(-eta * ms[t])
        fs.append(f / f.sum())
        g = g * np.exp(-eta * xs[t])
        g = g / g.sum()
    return np.array(fs)


def _np_ball_proj(y, radius):
    n = np.linalg.norm(y)
    return y if n <= radius else y * radius / n


def _np_optimistic_ogd(xs, ms, eta, radius):
    g = np.zeros(xs.shape[1])
    fs = []
    for t in range(len(xs)):
        fs.append(_np_ball_proj(g - eta * ms[t], radius))
        g = _np_ball_proj(g - eta * xs[t], radius)
    return np.array(fs)


def _np_regret(fs, xs, geometry):
    L = xs.sum(0)
    best = L.min() if isinstance(geometry, Simplex) else -geometry.radius * np.linalg.norm(L)
    return float(np.sum(fs * xs) - best)


def _data(seed, T, n, ball=False):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, 1, (T, n))
    ms = np.clip(xs + 0.3 * rng.normal(size=(T, n)), 0, 1)
    if ball:
        xs, ms = xs - 0.5, ms - 0.5
        xs /= np.maximum(1.0, np.linalg.norm(xs, axis=1, keepdims=True))
        ms /= np.maximum(1.0, np.linalg.norm(ms, axis=1, keepdims=True))
    return xs, ms


def test_entropic_step_is_multiplicative_weights_with_hint():
    xs, ms = _data(0, 60, 5)
    res = optimistic_mirror_descent(Simplex(5), jnp.asarray(xs), jnp.asarray(ms), eta=0.7)
    ref = _np_optimistic_hedge(xs, ms, 0.7)
    np.testing.assert_allclose(res.actions, ref, rtol=1e-10, atol=1e-12)
    assert abs(float(res.regret) - _np_regret(ref, xs, Simplex(5))) < 1e-9
    # closed form f_t ∝ exp(-eta (sum_{s<t} x_s + M_t)); the lazy (FTRL) form must agree
    lazy = ftrl(Simplex(5), jnp.asarray(xs), jnp.asarray(ms), eta=0.7)
    cum = np.vstack([np.zeros(5), np.cumsum(xs, 0)[:-1]])
    w = np.exp(-0.7 * (cum + ms))
    np.testing.assert_allclose(lazy.actions, w / w.sum(1, keepdims=True), rtol=1e-10)


def test_euclidean_step_is_projection_onto_ball():
    xs, ms = _data(1, 80, 3, ball=True)
    geo = Ball(3, radius=0.4)
    res = optimistic_mirror_descent(geo, jnp.asarray(xs), jnp.asarray(ms), eta=0.5)
    ref = _np_optimistic_ogd(xs, ms, 0.5, 0.4)
    np.testing.assert_allclose(res.actions, ref, rtol=1e-10, atol=1e-12)
    assert np.all(np.linalg.norm(np.asarray(res.actions), axis=1) <= 0.4 + 1e-12)
    # the projection really is the nearest point of the ball: no random ball point is closer
    rng = np.random.default_rng(2)
    y = 3 * rng.normal(size=3)
    p = np.asarray(geo.project(jnp.asarray(y)))
    cand = rng.normal(size=(20000, 3))
    cand *= 0.4 * rng.uniform(0, 1, (20000, 1)) ** (1 / 3) / np.linalg.norm(cand, axis=1, keepdims=True)
    assert np.linalg.norm(y - p) <= np.linalg.norm(y[None] - cand, axis=1).min() + 1e-12


@pytest.mark.parametrize("geometry", [Simplex(4), Ball(4, 2.0)])
@pytest.mark.parametrize("eta", [0.05, 0.5, 5.0])
def test_perfect_hint_regret_at_most_rmax_over_eta(geometry, eta):
    xs, _ = _data(3, 200, 4, ball=isinstance(geometry, Ball))
    xs = jnp.asarray(xs)
    res = optimistic_mirror_descent(geometry, xs, xs, eta=eta)
    assert float(res.regret) <= geometry.r_max_sq / eta + 1e-9
    assert float(jnp.sum(res.hint_errors)) == 0.0


def test_mirror_descent_is_hedge():
    xs, _ = _data(4, 50, 3)
    res = mirror_descent(Simplex(3), jnp.asarray(xs), eta=0.3)
    cum = np.vstack([np.zeros(3), np.cumsum(xs, 0)[:-1]])
    w = np.exp(-0.3 * cum)
    np.testing.assert_allclose(res.actions, w / w.sum(1, keepdims=True), rtol=1e-10)


@settings(max_examples=10)
@given(seed=st.integers(0, 10**6), T=st.sampled_from([1, 2, 37, 300]), n=st.sampled_from([2, 3, 9]),
       log_eta=st.floats(-3, 1.5), noise=st.floats(0, 1), ball=st.booleans())
def test_bounds_hold_on_random_sequences(seed, T, n, log_eta, noise, ball):
    rng = np.random.default_rng(seed)
    if ball:
        geo = Ball(n, radius=float(rng.choice([0.2, 1.0, 3.0])))
        xs = rng.normal(size=(T, n))
        xs /= np.maximum(1.0, np.linalg.norm(xs, axis=1, keepdims=True))
        ms = xs + noise * rng.normal(size=(T, n))
        ms /= np.maximum(1.0, np.linalg.norm(ms, axis=1, keepdims=True))
        B = 2.0
    else:
        geo = Simplex(n)
        xs = rng.uniform(0, 1, (T, n)) * (rng.uniform() < 0.5) + (rng.uniform(size=(T, n)) < 0.5)
        xs = np.clip(xs, 0, 1)
        ms = np.clip(xs + noise * rng.normal(size=(T, n)), 0, 1)
        B = 1.0
    xs, ms = jnp.asarray(xs), jnp.asarray(ms)
    eta = float(np.exp(log_eta))
    for algo in (optimistic_mirror_descent, ftrl):
        res = algo(geo, xs, ms, eta=eta)
        # fixed eta: Lemma 1, recomputed here from its definition
        a = np.max(np.abs(np.asarray(xs - ms)), 1) ** 2 if not ball else np.sum(np.asarray(xs - ms) ** 2, 1)
        lemma1 = geo.r_max_sq / eta + 0.5 * eta * a.sum()
        assert float(res.regret) <= lemma1 + 1e-9
        assert abs(float(fixed_eta_bound(geo, xs, ms, eta)) - lemma1) < 1e-9 * max(1, lemma1)
        assert np.all(np.asarray(res.regret_path) <= np.asarray(res.bound_path) + 1e-9)
        # adaptive eta and its closed-form bound
        form = "lazy" if (algo is ftrl or not ball) else "greedy"
        c = geo.r_max_sq if form == "lazy" else geo.bregman_sup
        ad = algo(geo, xs, ms, eta=AdaptiveEta(B))
        closed = np.sqrt(c) * (np.sqrt(B**2 + a.sum() - a[-1]) + np.sqrt(a.sum()))
        assert float(ad.regret) <= float(ad.bound) + 1e-9
        assert float(ad.bound) <= closed + 1e-9
        assert abs(float(adaptive_eta_bound(geo, xs, ms, B, form)) - closed) < 1e-9 * max(1, closed)
        assert np.all(np.diff(np.asarray(ad.etas)) <= 1e-15)


def test_vmap_over_sequences_matches_loop():
    rng = np.random.default_rng(5)
    X = jnp.asarray(rng.uniform(0, 1, (6, 40, 3)))
    batched = jax.vmap(lambda x: optimistic_mirror_descent(Simplex(3), x, LastValue(), eta=0.4).regret)(X)
    single = [float(optimistic_mirror_descent(Simplex(3), x, LastValue(), eta=0.4).regret) for x in X]
    np.testing.assert_allclose(batched, single, rtol=1e-12)
    # and against the NumPy reference with M_t = x_{t-1}
    x0 = np.asarray(X[0])
    ms = np.vstack([np.zeros(3), x0[:-1]])
    assert abs(single[0] - _np_regret(_np_optimistic_hedge(x0, ms, 0.4), x0, Simplex(3))) < 1e-9


def test_tuned_eta_minimises_the_bound():
    xs, ms = _data(6, 100, 4)
    geo = Simplex(4)
    s = float(np.sum(np.max(np.abs(xs - ms), 1) ** 2))
    e = float(tuned_eta(geo, s))
    b = float(fixed_eta_bound(geo, jnp.asarray(xs), jnp.asarray(ms), e))
    assert abs(b - np.sqrt(2 * np.log(4) * s)) < 1e-9
    for f in (0.5, 0.9, 1.1, 2.0):
        assert float(fixed_eta_bound(geo, jnp.asarray(xs), jnp.asarray(ms), e * f)) > b


def test_bad_input_is_refused():
    geo = Simplex(3)
    with pytest.raises(ValueError, match=r"\(\?, 3\)"):
        mirror_descent(geo, jnp.ones((5, 4)), eta=0.1)
    with pytest.raises(ValueError, match="hints"):
        optimistic_mirror_descent(geo, jnp.ones((5, 3)), jnp.ones((4, 3)), eta=0.1)
    with pytest.raises(ValueError, match="positive"):
        mirror_descent(geo, jnp.ones((5, 3)), eta=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        mirror_descent(geo, jnp.full((5, 3), jnp.nan), eta=0.1)
    with pytest.raises(ValueError):
        Simplex(1)
