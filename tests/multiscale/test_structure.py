"""Tail energies, conditional explained variance and the Gaussian control, against closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.multiscale import (Hierarchy, conditional_gain, gaussian_twin, lag_correlation, mean_power,
                                  restriction_matrix, tail_flatness, tail_fractions)


def _power(n, slope, ndim=1):
    k = np.abs(np.fft.fftfreq(n, 1.0 / n))
    kk = k if ndim == 1 else np.hypot(k[:, None], k[None, :])
    return jnp.asarray(n ** ndim * (1.0 + kk) ** slope)


def test_tail_fractions_known_field():
    n = 32
    x = 2 * np.pi * np.arange(n) / n
    shifts = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    u = np.stack([np.cos(3 * (x + s)) + np.cos(10 * (x + 2 * s)) for s in shifts])
    h = Hierarchy((8, 16, 32), "spectral")
    tf = tail_fractions(jnp.asarray(u), h)
    np.testing.assert_allclose(tf.fraction, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(tf.tail, [0.5, 0.5], atol=1e-12)  # grid mean of cos^2(10 x)
    tz = tail_fractions(jnp.asarray(u), h, k_power=1.0)
    np.testing.assert_allclose(tz.fraction, [100 / 109, 100 / 109], atol=1e-12)
    assert tf.per_sample.shape == (2, 6)


def test_tail_fraction_is_gaussian_conditional_variance():
    n, S = 16, 4000
    power = _power(n, -2.0)
    key1, key2 = jax.random.split(jax.random.key(0))
    test = gaussian_twin(key1, power, S, 1)[:, 0]
    train = gaussian_twin(key2, power, S, 1)[:, 0]
    h = Hierarchy((4, 8, 16), "block")
    tf = tail_fractions(test, h, train=train)
    # closed form: tr(C - C P^T (P C P^T)^-1 P C) / tr(C) for the circulant covariance C of `power`
    F = np.fft.fft(np.eye(n), axis=0)
    C = (F.conj().T @ np.diag(np.asarray(power)) @ F).real / n ** 2
    for r, m in enumerate((4, 8)):
        P = np.asarray(restriction_matrix(n, n // m, kind="block"))
        cond = C - C @ P.T @ np.linalg.solve(P @ C @ P.T, P @ C)
        want = np.trace(cond) / np.trace(C)
        assert float(tf.fraction[r]) == pytest.approx(want, rel=0.05)
    default = tail_fractions(test, h, lift="default")
    assert np.all(np.asarray(default.fraction) > np.asarray(tf.fraction))


def test_conditional_gain_matches_ar1_closed_form():
    n, T, traj = 32, 60, 20
    power = _power(n, -2.0)
    k = np.fft.fftfreq(n, 1.0 / n)
    rho_np = 0.9 * np.exp(-np.abs(k) / 8.0) * np.exp(1j * 0.3 * k)  # decaying, advected (phase)
    rho_np[n // 2] = abs(rho_np[n // 2])  # the Nyquist mode is real
    rho = jnp.asarray(rho_np)
    xs = gaussian_twin(jax.random.key(1), power, traj, T, rho=rho)
    np.testing.assert_allclose(mean_power(xs), power, rtol=0.15)
    np.testing.assert_allclose(lag_correlation(xs[:, 1:], xs[:, :-1]), rho, atol=0.1)  # ~3 standard errors
    h = Hierarchy((8, 16, 32), "spectral")
    cur, prev = xs[:, 1:].reshape(-1, n), xs[:, :-1].reshape(-1, n)
    cg = conditional_gain(cur, prev, h, 1, n_train=(traj // 2) * (T - 1))
    band = np.abs(k) > 8
    p = np.asarray(power)
    # level 1 holds |k| < 8 and the cosine of k = 8: detail = |k| > 8 plus the sine part of k = 8
    detail = p[band].sum() + 0.5 * p[np.abs(k) == 8].sum()
    left = (p[band] * (1 - np.abs(rho_np[band]) ** 2)).sum() + 0.5 * (p[np.abs(k) == 8] * (1 - np.abs(rho_np[np.abs(k) == 8]) ** 2)).sum()
    assert cg.detail_fraction == pytest.approx(detail / p.sum(), rel=0.1)
    assert cg.variance_ratio == pytest.approx(left / detail, rel=0.1)
    assert cg.gain > 0 and cg.r2_both > cg.r2_coarse
    # per held-out trajectory: the groups partition the test pairs and agree with the pooled value
    cgg = conditional_gain(cur, prev, h, 1, n_train=(traj // 2) * (T - 1), groups=np.repeat(np.arange(traj // 2), T - 1))
    assert cgg.group_gain.shape == (traj // 2,) and cgg.gain == pytest.approx(cg.gain)
    assert np.min(cgg.group_gain) <= cg.gain <= np.max(cgg.group_gain)
    # independent frames: the previous frame explains nothing (the gain is sampling noise)
    xs0 = gaussian_twin(jax.random.key(2), power, traj, T)
    cg0 = conditional_gain(xs0[:, 1:].reshape(-1, n), xs0[:, :-1].reshape(-1, n), h, 1, n_train=(traj // 2) * (T - 1))
    assert abs(cg0.gain) < 0.02 and cg0.variance_ratio == pytest.approx(1.0, abs=0.03)


def test_conditional_gain_2d_block_runs_and_is_bounded():
    n = 16
    power = _power(n, -3.0, ndim=2)
    xs = gaussian_twin(jax.random.key(3), power, 6, 30, rho=jnp.full((n, n), 0.8 + 0j), ndim=2)
    h = Hierarchy((8, 16), "block", 2)
    cg = conditional_gain(xs[:, 1:].reshape(-1, n, n), xs[:, :-1].reshape(-1, n, n), h, 0, n_train=3 * 29)
    # uniform rho = 0.8: the unexplained detail shrinks by about 1 - 0.8^2 = 0.36
    assert cg.variance_ratio == pytest.approx(0.36, abs=0.06)
    assert 0 < cg.r2_coarse < cg.r2_both < 1


def test_flatness_gaussian_vs_shocks():
    n, S = 64, 400
    h = Hierarchy((16, 64), "spectral")
    g = gaussian_twin(jax.random.key(4), _power(n, -2.0), S, 1)[:, 0]
    assert tail_flatness(g, h, 0) == pytest.approx(3.0, abs=0.3)
    x = 2 * np.pi * np.arange(n) / n
    pos = np.random.default_rng(0).uniform(0, 2 * np.pi, S)
    saw = np.stack([np.mod(x - p0, 2 * np.pi) - np.pi for p0 in pos])  # one shock per period, k^-2 spectrum
    assert tail_flatness(jnp.asarray(saw), h, 0) > 6.0


def test_bad_input():
    h = Hierarchy((8, 16), "spectral")
    with pytest.raises(ValueError, match=r"\(S, 16\)"):
        tail_fractions(jnp.zeros((4, 8)), h)
    with pytest.raises(ValueError, match="n_train"):
        conditional_gain(jnp.ones((4, 16)), jnp.ones((4, 16)), h, 0, n_train=4)
    with pytest.raises(ValueError, match="level"):
        conditional_gain(jnp.ones((4, 16)), jnp.ones((4, 16)), h, 1, n_train=2)
    with pytest.raises(ValueError, match="lift"):
        tail_fractions(jnp.ones((4, 16)), h, lift="bilinear")
    with pytest.raises(ValueError, match="NaN"):
        tail_fractions(jnp.full((4, 16), jnp.nan), h)


def test_level_structure_assembles_the_measures_and_matches_a_gaussian_control():
    from assimilax.multiscale import level_structure
    n, J, T = 16, 8, 60
    power = _power(n, -2.0)
    rho = jnp.full((n,), 0.8)
    data = np.asarray(gaussian_twin(jax.random.key(3), power, J, T, rho=rho))
    h = Hierarchy((4, 8, 16), "block")
    out = level_structure(data, h, key=jax.random.key(4), energy_k_power=0.0, enstrophy_k_power=1.0)
    s = out.system
    assert s.tail_energy.shape == (2, J // 2) and s.variance_ratio.shape == (2, J // 2) and s.flatness.shape == (2,)
    # independent assembly of the same quantities from the primitives
    train, test = data[: J // 2].reshape(-1, n), data[J // 2:].reshape(-1, n)
    tf = tail_fractions(jnp.asarray(test), h, k_power=1.0, train=jnp.asarray(train))
    np.testing.assert_allclose(s.tail_enstrophy, np.asarray(tf.per_sample).reshape(2, J // 2, T).mean(-1), rtol=1e-6)
    cur, prev = data[:, 1:].reshape(-1, n), data[:, :-1].reshape(-1, n)
    cg = conditional_gain(h.restrict(jnp.asarray(cur), 1), h.restrict(jnp.asarray(prev), 1), h, 0,
                          n_train=(J // 2) * (T - 1), groups=np.repeat(np.arange(J // 2), T - 1))
    np.testing.assert_allclose(s.variance_ratio[0], cg.group_variance_ratio, rtol=1e-6)
    p_train = mean_power(jnp.asarray(data[: J // 2]))
    assert s.flatness[1] == pytest.approx(tail_flatness(jnp.asarray(test), h, 1, power=p_train), rel=1e-6)
    # the data are Gaussian AR(1) fields: system and twin agree, and the tails are Gaussian
    np.testing.assert_allclose(out.twin.flatness, 3.0, atol=0.35)
    np.testing.assert_allclose(s.flatness, 3.0, atol=0.35)
    np.testing.assert_allclose(s.variance_ratio.mean(1), out.twin.variance_ratio.mean(1), atol=0.1)
    # the previous frame explains detail of a rho = 0.8 field: ratio about 1 - 0.8^2
    assert np.all(s.variance_ratio.mean(1) < 0.55)


def test_level_structure_rejects_bad_input():
    from assimilax.multiscale import level_structure
    h = Hierarchy((4, 8), "block")
    with pytest.raises(ValueError, match="shape"):
        level_structure(np.zeros((4, 8)), h, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_train"):
        level_structure(np.zeros((4, 5, 8)), h, key=jax.random.key(0), n_train=4)
