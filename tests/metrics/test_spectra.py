"""Spectra of known fields exactly, Parseval against an independent spectral velocity, bad input."""
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.metrics import (band_error, energy_spectrum_1d, energy_spectrum_2d, enstrophy, enstrophy_spectrum_2d,
                               kinetic_energy_2d, spectral_slope, structure_function)


def _grid(n):
    return 2 * np.pi * np.arange(n) / n


@pytest.mark.parametrize("n", [16, 17])
def test_1d_single_and_summed_modes(n):
    x = _grid(n)
    u = 0.7 + 2.0 * np.cos(3 * x) - 1.5 * np.sin(5 * x + 0.3)
    e = np.asarray(energy_spectrum_1d(jnp.asarray(u)))
    want = np.zeros(n // 2 + 1)
    want[0], want[3], want[5] = 0.7 ** 2 / 2, 2.0 ** 2 / 4, 1.5 ** 2 / 4
    np.testing.assert_allclose(e, want, atol=1e-12)
    np.testing.assert_allclose(e.sum(), 0.5 * np.mean(u ** 2), rtol=1e-12)


def test_1d_nyquist_and_parseval_batch():
    n = 16
    x = _grid(n)
    e = energy_spectrum_1d(jnp.asarray(np.cos(8 * x)))  # the Nyquist mode: u = (-1)^j
    assert float(e[-1]) == pytest.approx(0.5) and float(jnp.sum(e[:-1])) == pytest.approx(0.0, abs=1e-12)
    u = np.random.default_rng(0).normal(size=(3, 4, n))
    e = energy_spectrum_1d(jnp.asarray(u))
    assert e.shape == (3, 4, n // 2 + 1)
    np.testing.assert_allclose(e.sum(-1), 0.5 * np.mean(u ** 2, axis=-1), rtol=1e-12)


def test_2d_single_modes():
    n = 32
    x = _grid(n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    # stream function psi = A cos(3x + 4y): omega = -lap psi = 25 psi, KE = A^2 |k|^2 / 4 in shell 5
    A, B = 0.3, 1.1
    psi = A * np.cos(3 * X + 4 * Y) + B * np.sin(X + Y)  # |k| = sqrt 2 -> shell 1
    omega = 25 * A * np.cos(3 * X + 4 * Y) + 2 * B * np.sin(X + Y)
    e = np.asarray(energy_spectrum_2d(jnp.asarray(omega)))
    want = np.zeros_like(e)
    want[5], want[1] = A ** 2 * 25 / 4, B ** 2 * 2 / 4
    np.testing.assert_allclose(e, want, atol=1e-12)
    z = np.asarray(enstrophy_spectrum_2d(jnp.asarray(omega)))
    np.testing.assert_allclose(z[5], (25 * A) ** 2 / 4, rtol=1e-12)
    np.testing.assert_allclose(z.sum(), float(enstrophy(jnp.asarray(omega))), rtol=1e-12)
    # velocity by finite differences of psi on a fine grid would do; here the closed form
    u = -4 * A * np.sin(3 * X + 4 * Y) + B * np.cos(X + Y)   # u = d psi / dy
    v = 3 * A * np.sin(3 * X + 4 * Y) - B * np.cos(X + Y)    # v = -d psi / dx
    np.testing.assert_allclose(float(kinetic_energy_2d(jnp.asarray(omega))), 0.5 * np.mean(u ** 2 + v ** 2), rtol=1e-12)
    assert e.shape == (int(round(np.sqrt(2) * n / 2)) + 1,)


def test_2d_parseval_random_field():
    n = 24
    rng = np.random.default_rng(1)
    omega = rng.normal(size=(2, n, n))
    omega -= omega.mean(axis=(-2, -1), keepdims=True)
    # independent velocity: psi from a real FFT solve, u = psi_y, v = -psi_x spectrally
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, np.fft.rfftfreq(n, 1.0 / n), indexing="ij")
    k2 = kx ** 2 + ky ** 2
    w = np.fft.rfft2(omega)
    psi = np.where(k2 > 0, w / np.where(k2 > 0, k2, 1), 0)
    u = np.fft.irfft2(1j * ky * psi, s=(n, n))
    v = np.fft.irfft2(-1j * kx * psi, s=(n, n))
    ke = 0.5 * np.mean(u ** 2 + v ** 2, axis=(-2, -1))
    e = energy_spectrum_2d(jnp.asarray(omega))
    # the real-FFT velocity drops the odd Nyquist parts; compare on a field without Nyquist content
    omega2 = np.fft.irfft2(np.where((np.abs(kx) == n / 2) | (ky == n / 2), 0, w), s=(n, n))
    w2 = np.fft.rfft2(omega2)
    psi2 = np.where(k2 > 0, w2 / np.where(k2 > 0, k2, 1), 0)
    u2, v2 = np.fft.irfft2(1j * ky * psi2, s=(n, n)), np.fft.irfft2(-1j * kx * psi2, s=(n, n))
    np.testing.assert_allclose(energy_spectrum_2d(jnp.asarray(omega2)).sum(-1), 0.5 * np.mean(u2 ** 2 + v2 ** 2, axis=(-2, -1)),
                               rtol=1e-10)
    assert np.all(np.asarray(e.sum(-1)) >= ke - 1e-12)  # Nyquist energy counted by us, not by the rfft velocity
    np.testing.assert_allclose(e.sum(-1), kinetic_energy_2d(jnp.asarray(omega)), rtol=1e-12)


def test_band_error():
    n = 32
    x = _grid(n)
    truth = np.cos(2 * x) + 0.5 * np.cos(9 * x)
    est = np.cos(2 * x)  # misses the k = 9 mode entirely
    be = band_error(jnp.asarray(est), jnp.asarray(truth), [0, 4, 16, 17])
    np.testing.assert_allclose(be.error, [0.0, 0.25 / 4, 0.0], atol=1e-12)
    np.testing.assert_allclose(be.relative[:2], [0.0, 1.0], atol=1e-12)
    assert np.isnan(float(be.relative[2]))


def test_structure_function_closed_form():
    n = 64
    x = _grid(n)
    s2 = np.asarray(structure_function(jnp.asarray(np.cos(3 * x))))
    r = 2 * np.pi * np.arange(n // 2 + 1) / n
    np.testing.assert_allclose(s2, 1 - np.cos(3 * r), atol=1e-12)
    X, Y = np.meshgrid(x, x, indexing="ij")
    s2d = np.asarray(structure_function(jnp.asarray(np.cos(3 * X) + np.cos(5 * Y)), ndim=2))
    np.testing.assert_allclose(s2d, 0.5 * ((1 - np.cos(3 * r)) + 1 + (1 - np.cos(5 * r)) + 1) - 1 + 0 * r, atol=1e-12)
    # a step (shock) of height 2: S_1(r) = 2 * 2r/n grid steps -> linear in r
    step = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    s1 = np.asarray(structure_function(jnp.asarray(step), order=1))
    np.testing.assert_allclose(s1, 2 * 2 * np.arange(n // 2 + 1) / n, atol=1e-12)


def test_spectral_slope_exact_power_law():
    k = np.arange(40.0)
    e = np.stack([np.where(k > 0, 3.0 * np.maximum(k, 1) ** -3.0, 0.0), np.where(k > 0, np.maximum(k, 1) ** -2.0, 0.0)])
    np.testing.assert_allclose(spectral_slope(jnp.asarray(e), 4, 30), [-3.0, -2.0], atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        spectral_slope(jnp.zeros(40), 4, 30)
    with pytest.raises(ValueError, match="2 shells"):
        spectral_slope(jnp.asarray(e[0]), 50, 60)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
        energy_spectrum_2d(jnp.zeros((8, 4)))
    with pytest.raises(ValueError, match="NaN"):
        energy_spectrum_1d(jnp.array([1.0, jnp.nan, 0.0]))
    with pytest.raises(ValueError, match="real"):
        energy_spectrum_1d(jnp.ones(4, dtype=jnp.complex64))
    with pytest.raises(ValueError, match="same shape"):
        band_error(jnp.zeros(8), jnp.zeros(16), [0, 2])
    with pytest.raises(ValueError, match="increasing"):
        band_error(jnp.zeros(8), jnp.zeros(8), [2, 1])
    with pytest.raises(ValueError, match="ndim"):
        structure_function(jnp.zeros(8), ndim=3)
