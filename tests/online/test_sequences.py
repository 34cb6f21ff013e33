"""Synthetic loss sequences against a NumPy transcription of their definitions, drawn from the same keys."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.online import LOSS_KINDS, loss_sequences


def _numpy_reference(kind, key, T, n_seq, sigma, n, period):
    """The module docstring's formulas in NumPy, with the standard normals and phases drawn from
    the same split of ``key`` (the draws are JAX's; everything after them is independent)."""
    k1, k2 = jax.random.split(key)
    xi = np.asarray(jax.random.normal(k1, (n_seq, T, n)))
    u = np.asarray(jax.random.uniform(k2, (n_seq, 1, 1)))
    t = np.arange(T)[None, :, None]
    i = np.arange(n)[None, None, :]
    ph = 2 * np.pi * (i / n + u)
    if kind == "iid":
        x = np.linspace(0.45, 0.6, n) + sigma * xi
    elif kind == "drift":
        x = 0.5 + 0.35 * np.sin(2 * np.pi * t / T + ph) + 0.02 * xi
    elif kind == "periodic":
        x = 0.5 + 0.35 * np.sin(2 * np.pi * t / period + ph) + 0.02 * xi
    else:
        x = np.where(t % 2 == 0, i % 2, 1 - i % 2) * np.ones((n_seq, 1, 1))
    return np.clip(x, 0.0, 1.0)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_matches_numpy_transcription(kind):
    key = jax.random.PRNGKey(11)
    got = np.asarray(loss_sequences(kind, key, 50, 3, sigma=0.3, n=5, period=7.0))
    assert got.shape == (3, 50, 5)
    np.testing.assert_allclose(got, _numpy_reference(kind, key, 50, 3, 0.3, 5, 7.0), rtol=0, atol=1e-12)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_same_as_the_chapter_code_it_replaced():
    """chapters/40_predictable_sequences.md defined ``make_losses`` before it moved here: its draws
    on the chapter's key (first rows) are reproduced exactly, so the chapter's numbers do not move."""
    def make_losses(kind, key, T, n_seq, sigma=0.1, n=4):  # verbatim from the chapter (at b993af8)
        k1, k2 = jax.random.split(key)
        t = jnp.arange(T, dtype=jnp.float64)[None, :, None]
        noise = jax.random.normal(k1, (n_seq, T, n))
        phase = 2 * jnp.pi * (jnp.arange(n)[None, None, :] / n + jax.random.uniform(k2, (n_seq, 1, 1)))
        if kind == "iid":
            x = jnp.linspace(0.45, 0.6, n)[None, None, :] + sigma * noise
        elif kind == "drift":
            x = 0.5 + 0.35 * jnp.sin(2 * jnp.pi * t / T + phase) + 0.02 * noise
        elif kind == "periodic":
            x = 0.5 + 0.35 * jnp.sin(2 * jnp.pi * t / 12 + phase) + 0.02 * noise
        else:
            pattern = (jnp.arange(n) % 2)[None, None, :]
            x = jnp.where((jnp.arange(T) % 2)[None, :, None] == 0, pattern, 1 - pattern) + 0.0 * noise
        return jnp.clip(x, 0.0, 1.0)

    key = jax.random.PRNGKey(40)
    for i, kind in enumerate(LOSS_KINDS):
        k = jax.random.fold_in(key, i)
        np.testing.assert_array_equal(np.asarray(loss_sequences(kind, k, 256, 4)), np.asarray(make_losses(kind, k, 256, 4)))
    k = jax.random.fold_in(key, 100)
    np.testing.assert_array_equal(np.asarray(loss_sequences("iid", k, 64, 4, sigma=0.01)),
                                  np.asarray(make_losses("iid", k, 64, 4, sigma=0.01)))


def test_structure_of_each_kind():
    key = jax.random.PRNGKey(0)
    per = np.asarray(loss_sequences("periodic", key, 120, 2))
    noiseless = np.asarray(loss_sequences("periodic", key, 120, 2)) - 0.02 * np.asarray(
        jax.random.normal(jax.random.split(key)[0], (2, 120, 4)))
    np.testing.assert_allclose(noiseless[:, 12:], noiseless[:, :-12], atol=1e-9)  # period 12 (no clipping here)
    assert per.min() > 0.0 and per.max() < 1.0
    adv = np.asarray(loss_sequences("adversarial", key, 10, 2, n=3))
    np.testing.assert_array_equal(adv[:, 0], [[0, 1, 0]] * 2)
    np.testing.assert_array_equal(adv[:, 1:], 1 - adv[:, :-1])  # the last value always points the wrong way
    iid = np.asarray(loss_sequences("iid", key, 20000, 1, sigma=0.05))
    np.testing.assert_allclose(iid[0].mean(0), np.linspace(0.45, 0.6, 4), atol=4 * 0.05 / np.sqrt(20000))
    np.testing.assert_allclose(iid[0].std(0), 0.05, rtol=0.03)


@pytest.mark.parametrize("kwargs, match", [(dict(kind="sine"), "kind must be one of"), (dict(T=0), "T"),
                                           (dict(n_seq=2.5), "n_seq"), (dict(n=0), "n"),
                                           (dict(sigma=-0.1), "sigma"), (dict(period=0.0), "period")])
def test_bad_input(kwargs, match):
    args = dict(kind="iid", key=jax.random.PRNGKey(0), T=10, n_seq=2) | kwargs
    with pytest.raises(ValueError, match=match):
        loss_sequences(args.pop("kind"), args.pop("key"), args.pop("T"), args.pop("n_seq"), **args)
