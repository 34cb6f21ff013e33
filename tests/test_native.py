"""The fused CPU kernel of the EnSF analysis (``assimilax._native``) against the XLA path it
replaces: the AES-NI ARS words bit for bit, the whole filter up to float rounding (with a ragged
last tile, a partial last block of steps and per-component noise), and under ``vmap``."""
import os
import platform
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import _native
from assimilax.diffusion.noise import ars4x32
from assimilax.filters.ensf import ensemble_score_filter
from assimilax.models import Lorenz96
from assimilax.observations import NonlinearObservation


def _supported() -> bool:
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return (platform.system() == "Linux" and platform.machine() == "x86_64" and shutil.which("g++") is not None
            and {"avx2", "aes"} <= set(flags) and os.environ.get("ASSIMILAX_NATIVE", "1") != "0")


needs_native = pytest.mark.skipif(not _supported(), reason="no g++, AVX2 or AES-NI here (the XLA path is used)")


def test_native_kernel_builds_where_supported():
    """Where the prerequisites exist the kernel must build: a silent fallback would hide a broken build."""
    if _supported():
        assert _native.available(), _native.status()
    else:
        assert not _native.available()


@needs_native
def test_ars_words_equal_the_jax_definition():
    rng = np.random.default_rng(1)
    for _ in range(4):
        kw = rng.integers(0, 2**32, size=4, dtype=np.uint32)
        got = np.asarray(_native.ars_words(jnp.asarray(kw), 1024))
        idx = jnp.arange(1024, dtype=jnp.uint32)
        zero = jnp.zeros((), jnp.uint32)
        ref = np.stack([np.asarray(w) for w in ars4x32(kw, (idx, zero, zero, zero))], axis=1)
        np.testing.assert_array_equal(got, ref)


def _problem(d=13, N=5, T=3, seed=0):
    model = Lorenz96(d, dt=0.01)
    sig = jnp.linspace(0.04, 0.2, d, dtype=jnp.float32)  # per-component noise
    obs = NonlinearObservation("arctan", d, sig)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = model.integrate(8.0 + jax.random.normal(k[0], (d,), jnp.float32), 300)
    xs, ys = [], []
    for kk in jax.random.split(k[1], T):
        x = model.integrate(x, 10)
        xs.append(x)
        ys.append(jnp.arctan(x) + sig * jax.random.normal(kk, (d,), jnp.float32))
    E0 = x[None] + jax.random.normal(k[2], (N, d), jnp.float32)
    return model, obs, jnp.stack(ys), jnp.stack(xs), E0, k[3]


@needs_native
def test_fused_analysis_equals_the_xla_path():
    """N * d = 65 elements (the last tile of 32 is ragged) and 37 reverse-SDE steps (the last
    block of 4 is partial): the native and the XLA analyses draw the same increments, so the
    ensembles agree to float32 rounding accumulated over 37 steps and 3 cycles."""
    model, obs, ys, xs, E0, key = _problem()
    kw = dict(steps_per_obs=10, n_sde_steps=37, prior_score="per_member", sde_noise="gaussian_ars")
    fused = ensemble_score_filter(model, obs, ys, E0, key=key, native=True, **kw)
    xla = ensemble_score_filter(model, obs, ys, E0, key=key, native=False, **kw)
    a, b = np.asarray(fused.ensembles), np.asarray(xla.ensembles)
    assert np.abs(a - b).max() < 2e-4, np.abs(a - b).max()
    # and the analysis is not trivially equal to the forecast or the prior draw
    assert np.abs(a - np.asarray(xla.forecast_mean)[:, None]).max() > 1e-2
    # a different key changes the increments
    other = ensemble_score_filter(model, obs, ys, E0, key=jax.random.PRNGKey(99), native=True, **kw)
    assert np.abs(np.asarray(other.ensembles) - a).max() > 1e-2


@needs_native
def test_fused_kernel_under_vmap_equals_separate_calls():
    rng = np.random.default_rng(2)
    B, N, d, K = 3, 4, 10, 9
    x = jnp.asarray(rng.normal(size=(B, N, d)), jnp.float32)
    xf = jnp.asarray(rng.normal(size=(B, N, d)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(B, d)) * 0.5, jnp.float32)
    prec = jnp.asarray(rng.uniform(10, 400, size=(B, d)), jnp.float32)
    coef = jnp.asarray(np.tile([0.98, 0.01, 1e-3, 0.05], (B, K, 1)), jnp.float32)
    keys = jnp.asarray(rng.integers(0, 2**32, size=(B, 3, 4), dtype=np.uint32))
    batched = np.asarray(jax.vmap(_native.ensf_em_arctan)(x, xf, y, prec, coef, keys))
    for b in range(B):
        np.testing.assert_array_equal(batched[b], np.asarray(_native.ensf_em_arctan(x[b], xf[b], y[b], prec[b], coef[b],
                                                                                    keys[b])))


@needs_native
def test_fused_kernel_rejects_inconsistent_shapes():
    x = jnp.zeros((2, 8), jnp.float32)
    with pytest.raises(Exception, match="keys must be"):
        jax.block_until_ready(_native.ensf_em_arctan(x, x, jnp.zeros(8), jnp.ones(8), jnp.zeros((9, 4)),
                                                     jnp.zeros((2, 4), jnp.uint32)))


def test_cache_folder_falls_back_when_home_is_read_only(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIMILAX_NATIVE_CACHE", str(tmp_path / "cache"))
    assert _native._cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("ASSIMILAX_NATIVE_CACHE", "/proc/assimilax-unwritable")
    monkeypatch.setenv("HOME", "/proc")
    monkeypatch.setattr(_native.tempfile, "gettempdir", lambda: str(tmp_path))
    assert _native._cache_dir() == tmp_path / f"assimilax-native-{os.getuid()}"
