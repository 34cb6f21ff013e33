"""The chapter's central claims at small scale (chapters/40_predictable_sequences.md)."""
import jax
import jax.numpy as jnp
import numpy as np

from assimilax.online import (
    AdaptiveEta, EmpiricalMean, LastValue, Simplex, hint_errors, optimistic_mirror_descent,
    tuned_bound, tuned_eta,
)


def _iid(sigma, T=512, n_seq=8, seed=0):
    rng = np.random.default_rng(seed)
    mu = np.linspace(0.45, 0.6, 4)
    return jnp.asarray(np.clip(mu + sigma * rng.normal(size=(n_seq, T, 4)), 0, 1))


def test_regret_bound_is_order_sigma_sqrt_T_and_vanishes_with_sigma():
    geo = Simplex(4)
    bounds, regrets, md = [], [], []
    for sigma in (0.01, 0.04, 0.16):
        xs = _iid(sigma)
        ms = jax.vmap(EmpiricalMean(initial=0.5).sequence)(xs)
        s = jnp.sum(jax.vmap(lambda x, m: hint_errors(geo, x, m))(xs, ms), axis=1)
        res = jax.vmap(lambda x, m, e: optimistic_mirror_descent(geo, x, m, eta=e))(xs, ms, tuned_eta(geo, s))
        plain = jax.vmap(lambda x: optimistic_mirror_descent(geo, x, None, eta=AdaptiveEta(1.0)))(xs)
        assert np.all(np.asarray(res.regret) <= np.asarray(tuned_bound(geo, s)) + 1e-9)
        bounds.append(float(tuned_bound(geo, s).mean()))
        regrets.append(float(res.regret.mean()))
        md.append(float(plain.regret.mean()))
    slope = np.polyfit(np.log([0.01, 0.04, 0.16]), np.log(bounds), 1)[0]
    assert 0.8 < slope < 1.1  # bound ∝ sigma (the first-round error keeps it from exactly 1)
    assert regrets[0] < 0.2 * md[0]  # with a good hint the regret is a fraction of plain MD's


def test_last_value_hint_hurts_on_alternating_sequence_but_bound_holds():
    geo = Simplex(2)
    T = 400
    xs = jnp.asarray(np.where((np.arange(T) % 2)[:, None] == 0, [[1.0, 0.0]], [[0.0, 1.0]]))
    plain = optimistic_mirror_descent(geo, xs, None, eta=AdaptiveEta(1.0))
    last = optimistic_mirror_descent(geo, xs, LastValue(), eta=AdaptiveEta(1.0))
    assert float(last.regret) > 2 * float(plain.regret)
    assert float(last.regret) <= float(last.bound)
