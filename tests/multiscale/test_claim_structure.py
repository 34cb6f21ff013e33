"""Chapter 50's claims at small scale: (1) the previous high-resolution frame leaves less than all of
the detail variance of Burgers (rho_r well below 1 on held-out trajectories, about 1 when the
pairs are shuffled); (2) second-order measures do
not separate Burgers from its Gaussian twin, the tail flatness does (shocks: flatness >> 3)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.models import Burgers1D
from assimilax.multiscale import (Hierarchy, conditional_gain, gaussian_twin, lag_correlation, mean_power,
                                  tail_flatness)


@pytest.fixture(scope="module")
def burgers():
    m = Burgers1D(n=256, nu=0.02)
    keys = jax.random.split(jax.random.key(0), 12)
    u0 = jax.vmap(lambda k: m.random_initial_condition(k, amplitude=1.0))(keys)

    def frames(x):
        def body(x, _):
            x = m.integrate(x, 8)  # 0.05 time units between frames, as in the chapter
            return x, x
        return jax.lax.scan(body, x, None, length=40)[1]

    return np.asarray(jax.jit(jax.vmap(frames))(u0))[:, 10:]  # (12, 30, 256), after the shocks form


def test_previous_frame_concentrates_the_detail(burgers):
    h = Hierarchy((16, 32, 64, 128, 256), "block")
    n_traj, T = burgers.shape[:2]
    cur, prev = burgers[:, 1:].reshape(-1, 256), burgers[:, :-1].reshape(-1, 256)
    cur, prev = h.restrict(jnp.asarray(cur), 1), h.restrict(jnp.asarray(prev), 1)
    cg = conditional_gain(cur, prev, h, 0, n_train=6 * (T - 1))
    assert cg.variance_ratio < 0.5 and cg.gain > 0
    # control: with the frames' order shuffled across trajectories the past carries nothing
    perm = np.random.default_rng(0).permutation(prev.shape[0] - 6 * (T - 1)) + 6 * (T - 1)
    prev_shuffled = jnp.concatenate([prev[:6 * (T - 1)], prev[perm]])
    cg0 = conditional_gain(cur, prev_shuffled, h, 0, n_train=6 * (T - 1))
    assert cg0.variance_ratio > 0.9


def test_flatness_separates_burgers_from_its_gaussian_twin(burgers):
    h = Hierarchy((64, 128, 256), "block")
    train, test = burgers[:6], burgers[6:]
    power = mean_power(jnp.asarray(train))
    rho = lag_correlation(jnp.asarray(train[:, 1:]), jnp.asarray(train[:, :-1]))
    twin = np.asarray(gaussian_twin(jax.random.key(1), power, 6, train.shape[1], rho=rho))
    f_sys = tail_flatness(jnp.asarray(test.reshape(-1, 256)), h, 1, power=power)
    f_twin = tail_flatness(jnp.asarray(twin.reshape(-1, 256)), h, 1, power=power)
    assert f_twin == pytest.approx(3.0, abs=0.5)
    assert f_sys > 3 * f_twin
