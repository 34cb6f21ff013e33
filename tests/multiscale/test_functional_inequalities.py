"""The mixture log-Sobolev bound of Chen, Chewi & Niles-Weed (theory.mixture_lsi_bound) checked
against what it bounds: the numerically computed constants of 1-D Gaussian mixtures (a valid
upper bound is never below them), its ingredients recomputed by quadrature (which chi-squared,
which component constant), and the degenerate case where every component is the same Gaussian
(the bound is then the closed form lambda_max(Sigma)); and the Poincare bound derived in
theory.mixture_poincare_bound checked the same way, with its closed form for two Gaussians."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from assimilax.diffusion import GaussianMixture
from assimilax.multiscale.functional_inequalities import box_grid, log_sobolev_constant, mixture_box, poincare_constant
from assimilax.multiscale.theory import (linear_image, mixture_lsi_bound, mixture_poincare_bound, target_structure,
                                        transition_joint)


def _mix1d(weights, means, variances):
    return GaussianMixture(jnp.asarray(weights, float), jnp.asarray(means, float)[:, None],
                           jnp.asarray(variances, float)[:, None, None])


# two and three components: separations from overlapping to well apart, balanced and lopsided
# weights, equal and unequal variances (variance ratios inside (1/2, 2): chi-squared finite both ways)
FAMILY = [((p, 1 - p), (-m, m), (1.0, v)) for m, p, v in itertools.product((0.5, 1.0, 2.0, 3.0), (0.5, 0.2, 0.03), (1.0, 1.6))]
FAMILY += [((0.2, 0.5, 0.3), (-2.5, 0.0, 1.5), (0.7, 1.0, 1.2)), ((1 / 3, 1 / 3, 1 / 3), (-3.0, 0.0, 3.0), (1.0, 1.0, 1.0)),
           ((0.6, 0.1, 0.3), (-1.0, 0.5, 2.0), (0.5, 0.8, 0.6))]


@pytest.mark.parametrize("weights, means, variances", FAMILY)
def test_bound_is_never_below_the_computed_constants(weights, means, variances):
    mix = _mix1d(weights, means, variances)
    g = box_grid(*mixture_box(mix, 8.0), 801)
    P = poincare_constant(mix.log_prob, g)
    L = log_sobolev_constant(mix.log_prob, g, poincare=P)
    bound = np.exp(mixture_lsi_bound(mix))
    p_bound = np.exp(mixture_poincare_bound(mix))
    assert L.value >= P.value * (1 - 1e-9)
    assert bound >= L.value * (1 - 1e-6), (bound, L.value)
    assert bound >= P.value * (1 - 1e-6)
    assert p_bound >= P.value * (1 - 1e-6), (p_bound, P.value)  # the derived Poincare bound holds
    assert p_bound <= bound * (1 + 1e-12)                       # and is never weaker than the weight-free form


def _chi2_quad(m1, v1, m2, v2):
    f = lambda x: np.exp(-(x - m1) ** 2 / v1 + (x - m2) ** 2 / (2 * v2)) / (2 * np.pi * v1) * np.sqrt(2 * np.pi * v2)  # noqa: E731
    return scipy.integrate.quad(f, -40, 40, limit=400, epsabs=0, epsrel=1e-11)[0] - 1.0


@pytest.mark.parametrize("weights, means, variances", [FAMILY[7], FAMILY[-3], FAMILY[-1]])
def test_bound_is_max_component_constant_times_one_plus_max_ordered_chi2(weights, means, variances):
    # chi^2(p_i || p_j) = int p_i^2 / p_j - 1 over ordered pairs (it is not symmetric for unequal
    # variances), the component constant of N(m, v) is v, the largest one enters
    mix = _mix1d(weights, means, variances)
    K = len(weights)
    chi = max(_chi2_quad(means[i], variances[i], means[j], variances[j]) for i in range(K) for j in range(K) if i != j)
    np.testing.assert_allclose(np.exp(mixture_lsi_bound(mix)), max(variances) * (1 + chi), rtol=1e-6)
    if len(set(variances)) > 1:  # the two directions differ, and the larger one is the one used
        a, b = _chi2_quad(means[0], variances[0], means[1], variances[1]), _chi2_quad(means[1], variances[1], means[0], variances[0])
        assert abs(a - b) > 1e-3 * max(a, b)


def test_degenerate_mixture_gives_the_gaussian_closed_form():
    # identical components (any weights) are one Gaussian: chi^2 = 0 and the bound is lambda_max
    # exactly, which is also the constant itself (computed numerically here)
    mix = _mix1d((0.3, 0.7), (0.4, 0.4), (2.5, 2.5))
    np.testing.assert_allclose(np.exp(mixture_lsi_bound(mix)), 2.5, rtol=1e-12)
    g = box_grid(*mixture_box(mix, 8.0), 801)
    np.testing.assert_allclose(log_sobolev_constant(mix.log_prob, g).value, 2.5, rtol=2e-3)
    S = jnp.array([[2.0, 0.8], [0.8, 0.7]])
    mix2 = GaussianMixture(jnp.ones(3), jnp.tile(jnp.array([[0.3, -0.2]]), (3, 1)), jnp.stack([S] * 3))
    np.testing.assert_allclose(np.exp(mixture_lsi_bound(mix2)), float(jnp.linalg.eigvalsh(S)[-1]), rtol=1e-10)


def test_infinite_chi2_gives_an_infinite_bound():
    # variance ratio 2.5 > 2: int p_1^2 / p_2 diverges, the bound says nothing (inf)
    assert np.isinf(mixture_lsi_bound(_mix1d((0.5, 0.5), (0.0, 1.0), (2.5, 1.0))))


def test_target_structure_bound_matches_mixture_lsi_bound():
    # target_structure recomputes the bound in NumPy: the same number as mixture_lsi_bound
    p0 = _mix1d((0.3, 0.7), (-1.5, 1.0), (0.4, 0.3))
    joint = transition_joint(p0, jnp.array([[0.8]]), jnp.array([0.2]), jnp.array([[0.1]]))
    T = jnp.array([[0.0, 1.0]])
    st = target_structure(joint, T, None, joint.sample(jax.random.PRNGKey(0), 2), grid_points=201)
    np.testing.assert_allclose(st.log10_bound[0], mixture_lsi_bound(linear_image(joint, T)) / np.log(10), rtol=1e-10)
    np.testing.assert_allclose(st.log10_poincare_bound[0], mixture_poincare_bound(linear_image(joint, T)) / np.log(10),
                               rtol=1e-10)


def test_poincare_bound_closed_form_and_weights():
    # two unit Gaussians at -m, m, equal weights: chi2 = e^{4 m^2} - 1 both ways, the bound is
    # 1 + (e^{4 m^2} - 1) / 4; with weights (p, 1 - p) it is max_j (1 + (1 - w_j) chi2 / 2)
    for m in (0.5, 1.0, 2.0):
        chi = np.expm1(4 * m * m)
        np.testing.assert_allclose(np.exp(mixture_poincare_bound(_mix1d((0.5, 0.5), (-m, m), (1.0, 1.0)))),
                                   1 + chi / 4, rtol=1e-9)
        np.testing.assert_allclose(np.exp(mixture_poincare_bound(_mix1d((0.03, 0.97), (-m, m), (1.0, 1.0)))),
                                   1 + 0.97 * chi / 2, rtol=1e-9)
    # a weighted sum over the other components: three components, quadrature chi-squared
    w, mu, v = (0.2, 0.5, 0.3), (-2.5, 0.0, 1.5), (0.7, 1.0, 1.2)
    want = max(v[j] * (1 + 0.5 * sum(w[i] * _chi2_quad(mu[i], v[i], mu[j], v[j]) for i in range(3) if i != j))
               for j in range(3))
    np.testing.assert_allclose(np.exp(mixture_poincare_bound(_mix1d(w, mu, v))), want, rtol=1e-6)
    # identical components: lambda_max; a zero-weight component far away does not count
    np.testing.assert_allclose(np.exp(mixture_poincare_bound(_mix1d((0.3, 0.7), (0.4, 0.4), (2.5, 2.5)))), 2.5,
                               rtol=1e-12)
    np.testing.assert_allclose(np.exp(mixture_poincare_bound(_mix1d((1.0, 0.0), (0.0, 9.0), (1.0, 1.0)))), 1.0,
                               rtol=1e-12)
    assert np.isinf(mixture_poincare_bound(_mix1d((0.5, 0.5), (0.0, 1.0), (1.0, 2.5))))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        mixture_poincare_bound(_mix1d((-0.5, 1.5), (0.0, 1.0), (1.0, 1.0)))
