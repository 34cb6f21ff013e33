"""Numerical Poincaré / log-Sobolev constants against the Gaussian closed form
(lambda_max(Sigma)) and the double-well values measured in issue 17."""
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.diffusion import GaussianMixture
from assimilax.multiscale.functional_inequalities import box_grid, log_sobolev_constant, mixture_box, poincare_constant
from assimilax.multiscale.theory import mixture_lsi_bound


def _double_well(m, p=0.5):
    return GaussianMixture(jnp.array([p, 1 - p]), jnp.array([[-m], [m]], dtype=float), jnp.ones((2, 1, 1)))


@pytest.mark.parametrize("m, expected", [(0, 1.00), (1, 2.06), (2, 8.40), (3, 69.8), (4, 1612.0)])
def test_double_well_poincare(m, expected):
    mix = _double_well(m)
    g = box_grid(*mixture_box(mix, 8.0), 801)
    P = poincare_constant(mix.log_prob, g)
    np.testing.assert_allclose(P.value, expected, rtol=0.005)
    L = log_sobolev_constant(mix.log_prob, g, poincare=P)
    assert L.value >= P.value * (1 - 1e-9)
    assert np.exp(mixture_lsi_bound(mix)) >= L.value * (1 - 1e-6)  # the mixture bound is an upper bound


def test_gaussian_constants_1d_and_2d():
    mix = GaussianMixture(jnp.ones(1), jnp.array([[0.4]]), jnp.array([[[2.5]]]))
    g = box_grid(*mixture_box(mix, 8.0), 801)
    P = poincare_constant(mix.log_prob, g)
    np.testing.assert_allclose(P.value, 2.5, rtol=2e-3)
    np.testing.assert_allclose(log_sobolev_constant(mix.log_prob, g, poincare=P).value, 2.5, rtol=2e-3)
    S = jnp.array([[2.0, 0.8], [0.8, 0.7]])
    mix2 = GaussianMixture(jnp.ones(1), jnp.array([[0.3, -0.2]]), S[None])
    g2 = box_grid(*mixture_box(mix2, 7.0), 60)
    P2 = poincare_constant(mix2.log_prob, g2)
    np.testing.assert_allclose(P2.value, float(jnp.linalg.eigvalsh(S)[-1]), rtol=5e-3)
    np.testing.assert_allclose(log_sobolev_constant(mix2.log_prob, g2, poincare=P2).value, P2.value, rtol=5e-3)


def test_two_dimensional_double_well_matches_one_dimensional():
    # a product of the 1-D double well (m = 2) with N(0, 0.5): the constant of a product is the max
    mix = GaussianMixture(jnp.ones(2), jnp.array([[-2.0, 0.0], [2.0, 0.0]]), jnp.stack([jnp.diag(jnp.array([1.0, 0.5]))] * 2))
    g = box_grid(*mixture_box(mix, 7.0), 70)
    np.testing.assert_allclose(poincare_constant(mix.log_prob, g).value, 8.40, rtol=0.02)


def test_asymmetric_weights_raise_the_log_sobolev_constant_above_poincare():
    mix = _double_well(3.0, p=0.05)
    g = box_grid(*mixture_box(mix, 8.0), 801)
    P = poincare_constant(mix.log_prob, g)
    assert log_sobolev_constant(mix.log_prob, g, poincare=P).value > 1.1 * P.value


def test_bad_grid():
    with pytest.raises(ValueError, match="high must exceed"):
        box_grid([1.0], [0.0], 10)
    with pytest.raises(ValueError, match="n must be"):
        box_grid([0.0], [1.0], 2)
