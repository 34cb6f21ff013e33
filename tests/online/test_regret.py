"""Best fixed action in hindsight against brute force, an LP and a dense random search."""
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from assimilax.online import Ball, Simplex, best_fixed_action, regret, regret_path


@given(seed=st.integers(0, 10**6), T=st.integers(1, 50), n=st.integers(2, 8))
def test_simplex_best_action_matches_vertices_and_lp(seed, T, n):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, n))
    u, val = best_fixed_action(Simplex(n), jnp.asarray(xs))
    L = xs.sum(0)
    vertex_losses = [np.eye(n)[i] @ L for i in range(n)]  # brute force over all vertices
    assert abs(float(val) - min(vertex_losses)) < 1e-10
    lp = linprog(L, A_eq=np.ones((1, n)), b_eq=[1.0], bounds=[(0, None)] * n, method="highs")
    assert abs(float(val) - lp.fun) < 1e-8
    assert abs(float(np.asarray(u) @ L) - lp.fun) < 1e-8


@given(seed=st.integers(0, 10**6), n=st.integers(1, 4), radius=st.floats(0.1, 5.0))
def test_ball_best_action_matches_dense_search(seed, n, radius):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(20, n))
    u, val = best_fixed_action(Ball(n, radius), jnp.asarray(xs))
    L = xs.sum(0)
    assert abs(float(val) + radius * np.linalg.norm(L)) < 1e-10
    cand = rng.normal(size=(20000, n))
    cand *= radius * rng.uniform(0, 1, (20000, 1)) ** (1 / n) / np.linalg.norm(cand, axis=1, keepdims=True)
    search = (cand @ L).min()
    assert float(val) <= search + 1e-10  # nothing in the ball beats it
    assert search - float(val) < 0.1 * radius * np.linalg.norm(L)  # and the search gets close
    assert np.linalg.norm(np.asarray(u)) <= radius + 1e-10


def test_regret_and_path_by_hand():
    xs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    fs = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    # learner 0.5 + 0 + 0 ; best fixed: e_2 with loss 1
    assert abs(float(regret(Simplex(2), jnp.asarray(fs), jnp.asarray(xs))) - (0.5 - 1.0)) < 1e-12
    path = np.asarray(regret_path(Simplex(2), jnp.asarray(fs), jnp.asarray(xs)))
    np.testing.assert_allclose(path, [0.5 - 0.0, 0.5 - 1.0, 0.5 - 1.0])
