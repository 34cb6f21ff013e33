"""The paper configurations build the library's objects with the published values.

The expected values are typed here from their sources (DAPPER 1.7.1's ``mods/Lorenz63/__init__.py``
and ``sakov2012.py``, ``mods/Lorenz96/__init__.py`` and ``sakov2008.py``; the EnSF repository's
protocol; the March 5 notes), not read from :mod:`assimilax.configs`.
"""
import dataclasses
import inspect

import jax.numpy as jnp
import numpy as np
import pytest

from assimilax import configs, filters
from assimilax.models import Langford, Lorenz63, Lorenz96
from assimilax.observations import LinearObservation, NonlinearObservation

L63, L96, ARC, LANG = (configs.LORENZ63_SAKOV2012, configs.LORENZ96_SAKOV2008, configs.LORENZ96_ARCTAN,
                       configs.LANGFORD_NOTES)


def test_lorenz63_sakov2012_is_dappers_setting():
    m, o = L63.model(), L63.observation()
    assert isinstance(m, Lorenz63) and isinstance(o, LinearObservation)
    assert (m.sigma, m.rho, m.beta, m.dt) == (10.0, 28.0, 8.0 / 3, 0.01)
    assert m.dim == L63.dim == o.state_dim == o.obs_dim == 3
    np.testing.assert_array_equal(o.H, np.eye(3))
    np.testing.assert_allclose(o.R, 2.0 * np.eye(3), rtol=1e-15)
    np.testing.assert_allclose(L63.obs_cov, 2.0 * np.eye(3), rtol=1e-15)
    assert L63.steps_per_obs == 25 and L63.n_cycles == 1001  # Chronology(0.01, dko=25, Ko=1000)
    mean, cov = L63.prior()
    np.testing.assert_array_equal(mean, [1.509, -1.531, 25.46])
    np.testing.assert_array_equal(cov, 2.0 * np.eye(3))  # GaussRV(C=2, mu=x0)
    # BurnIn = 4 * Tplot = 16: DAPPER averages the analyses with t > 16 (937 of 1,001 in peers.json)
    assert L63.averaged().sum() == 937 and not L63.averaged()[63] and L63.averaged()[64]
    # the vector field is Lorenz-63 with these parameters at DAPPER's x0
    x, y, z = 1.509, -1.531, 25.46
    np.testing.assert_allclose(m.vector_field(jnp.asarray(mean)),
                               [10 * (y - x), 28 * x - y - x * z, x * y - 8 / 3 * z], rtol=1e-12)


def test_lorenz96_sakov2008_is_dappers_setting():
    m, o = L96.model(), L96.observation()
    assert isinstance(m, Lorenz96) and isinstance(o, LinearObservation)
    assert (m.dim, m.forcing, m.dt) == (40, 8.0, 0.05)
    assert o.obs_dim == o.state_dim == L96.dim == 40
    np.testing.assert_array_equal(o.R, np.eye(40))
    assert L96.steps_per_obs == 1 and L96.n_cycles == 1001
    mean, cov = L96.prior()
    np.testing.assert_array_equal(mean, np.eye(40)[0])  # x0(M): zeros with x[0] = 1
    np.testing.assert_array_equal(cov, 0.001 * np.eye(40))
    assert L96.averaged().sum() == 601  # BurnIn = 2 * Tplot = 20 time units
    assert L96.settings["dapper_localization_batch"] == 2
    x = np.random.default_rng(0).standard_normal(40)
    expected = (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + 8.0
    np.testing.assert_allclose(m.vector_field(jnp.asarray(x)), expected, rtol=1e-12)


def test_published_rmse_are_dappers():
    pub63 = {r.method: r.rmse for r in L63.references}
    assert pub63 == {"Var3D(xB=0.1)": 1.04, "ExtKF(infl=180)": 0.92, "EnKF('Sqrt', N=10, infl=1.02, rot=True)": 0.60,
                     "EnKF('PertObs', N=10, infl=1.04)": 0.65, "EnKF_N(N=10, rot=True)": 0.54,
                     "iEnKS('Sqrt', N=10, infl=1.02, rot=True)": 0.31, "PartFilt(N=100, reg=2.4, NER=0.3)": 0.38,
                     "PartFilt(N=800, reg=0.9, NER=0.2)": 0.28}
    pub96 = {r.method: r.rmse for r in L96.references}
    assert pub96 == {"Var3D(xB=0.02)": 0.41, "ExtKF(infl=10)": 0.24, "EnKF('PertObs', N=40, infl=1.06)": 0.22,
                     "EnKF('DEnKF', N=40, infl=1.01)": 0.18, "EnKF('Sqrt', N=28, infl=1.02, rot=True)": 0.18,
                     "LETKF(N=7, rot=True, infl=1.04, loc_rad=4)": 0.22}
    assert all(r.published for r in L63.references + L96.references)
    with pytest.raises(KeyError, match="no reference"):
        L63.reference("EnKF('Sqrt', N=28, infl=1.02, rot=True)")


@pytest.mark.parametrize("ref", L63.references + L96.references + ARC.references, ids=lambda r: r.method)
def test_reference_options_are_the_filters_keywords_and_match_the_dapper_call(ref):
    if ref.filter is None:  # a method the library does not have (3D-Var, EnKF-N, iEnKS, DEnKF)
        assert ref.options == {} and ref.ensemble_size is None
        return
    params = inspect.signature(getattr(filters, ref.filter)).parameters
    assert set(ref.options) <= set(params), set(ref.options) - set(params)
    if ref.dapper is None:
        return
    name, args, kw = ref.dapper
    assert ref.method.startswith(name + "(")
    assert ref.ensemble_size == kw.get("N")
    # the EKF's infl is a covariance factor per unit time (inflation_rate), the EnKF's one on the anomalies
    infl = ref.options.get("inflation_rate" if name == "ExtKF" else "inflation")
    assert infl == kw.get("infl", infl) and ref.options.get("rotate", False) == kw.get("rot", False)
    assert ref.options.get("localization_radius") == kw.get("loc_rad")
    if name == "EnKF":
        assert ref.options["method"] == {"Sqrt": "sqrt", "PertObs": "pertobs"}[args[0]]
    if name == "PartFilt":
        assert (ref.options["jitter"], ref.options["resample_threshold"]) == (kw["reg"], kw["NER"])


def test_arctan_setting_is_the_ensf_protocol_at_any_dimension():
    assert ARC.dim == 100
    for d in (40, 100, 1000):
        cfg = ARC.with_dim(d)
        m, o = cfg.model(), cfg.observation()
        assert isinstance(m, Lorenz96) and isinstance(o, NonlinearObservation)
        assert (m.dim, m.forcing, m.dt) == (d, 8.0, 0.01) and o.state_dim == o.obs_dim == d
        np.testing.assert_allclose(o.noise_var, np.full(d, 0.05**2), rtol=1e-6)
        assert o.R_full is None  # diagonal noise stored as a vector
        x = jnp.linspace(-3.0, 3.0, d)
        np.testing.assert_allclose(o(x), np.arctan(np.asarray(x)), rtol=1e-6, atol=1e-7)
    assert (ARC.steps_per_obs, ARC.n_cycles, ARC.average_last, ARC.spinup_steps) == (10, 150, 50, 1000)
    assert ARC.averaged().sum() == 50 and ARC.averaged()[-50:].all()
    s = ARC.settings
    assert (s["members"], s["eps_alpha"], s["eps_beta"], s["sde_steps"]) == (20, 0.5, 0.025, 200)
    ref = ARC.references[0]
    assert (ref.rmse, ref.rmse_std, ref.published) == (0.203, 0.030, False)
    with pytest.raises(ValueError, match="spun-up"):
        ARC.prior()
    with pytest.raises(ValueError, match="fixed dimension"):
        L63.with_dim(4)


def test_langford_values_are_the_notes():
    m = LANG.model()
    assert isinstance(m, Langford)
    assert (m.alpha, m.beta, m.lam, m.omega0, m.rho, m.epsilon) == (0.95, 0.7, 0.6, 3.5, 0.25, 0.1)
    assert (m.a, m.period, m.dt) == (1.0, 10.0, 0.01) and m.dim == LANG.dim == 3
    assert float(m.omega(0.0)) == 3.5  # omega(0) = 3.5, as in the notes
    assert LANG.model(a=0.0).a == 0.0 and LANG.model(period=20.0).period == 20.0
    np.testing.assert_array_equal(LANG.x0, [0.1, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(m.default_initial_state()), LANG.x0)
    o = LANG.observation()
    np.testing.assert_array_equal(o.H, np.eye(3)[:2])
    np.testing.assert_allclose(o.R, 0.01 * np.eye(2), rtol=1e-12)
    np.testing.assert_allclose(LANG.observation(0.3).R, 0.09 * np.eye(2), rtol=1e-12)
    assert LANG.obs_interval == pytest.approx(0.1)


def test_configs_are_frozen_and_refuse_inconsistent_fields():
    with pytest.raises(dataclasses.FrozenInstanceError):
        L63.dt = 0.02
    with pytest.raises(TypeError):
        L63.model_params["rho"] = 30.0
    with pytest.raises(ValueError, match="exactly one"):
        dataclasses.replace(L63, average_last=50)
    with pytest.raises(ValueError, match="x0 must have 3"):
        dataclasses.replace(L63, x0=(1.0, 2.0))
    with pytest.raises(ValueError, match="observe"):
        dataclasses.replace(L63, observe="cubic")
    assert set(configs.ALL) == {c.name for c in (L63, L96, ARC, LANG)}
