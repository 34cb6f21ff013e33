r"""The papers' configurations as named objects, with their published reference numbers beside them.

One object per configuration, in the spirit of DAPPER's ``mods/Lorenz63/sakov2012.py``
:cite:`raanes2024dapper`: the model, its time stepping, the observation operator and its noise,
the length of the experiment, the initial-condition distribution, and the reference numbers that
a run of the configuration should reproduce, each with its source. Tests, chapters and benchmarks
build their models and observation operators from these objects instead of retyping them.

- :data:`LORENZ63_SAKOV2012`: Lorenz-63 of :cite:`sakov2012iterative` as set up in DAPPER
  (``dapper/mods/Lorenz63/sakov2012.py``).
- :data:`LORENZ96_SAKOV2008`: Lorenz-96 with :math:`d = 40` of :cite:`sakov2008deterministic` as
  set up in DAPPER (``dapper/mods/Lorenz96/sakov2008.py``).
- :data:`LORENZ96_ARCTAN`: Lorenz-96 with arctan observations of the full state, the ensemble
  score filter's setting :cite:`bao2024ensemble` (the chapter :doc:`/chapters/20_score_based_filters`
  and the arctan rows of the benchmark appendix :doc:`/chapters/99_benchmarks`).
- :data:`LANGFORD_NOTES`: the Langford system :cite:`langford1984numerical` with the values of the
  March 5 meeting notes and the main tracking configuration of the Langford chapter.

Every object is a frozen dataclass: read its fields, build the library's objects with
``config.model()`` and ``config.observation()``, and change a field with
``dataclasses.replace`` (or :meth:`TwinExperiment.with_dim`).
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping, Optional

import numpy as np

from .models import Langford, Lorenz63, Lorenz96
from .observations import LinearObservation, NonlinearObservation

#: DAPPER's file of a configuration, at the version the benchmarks run (1.7.1).
_DAPPER = "DAPPER 1.7.1, dapper/mods/{}"


def _frozen(mapping) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclasses.dataclass(frozen=True)
class Reference:
    """One method's reference number on a configuration.

    **Fields:**

    - ``method``: the method as its source spells it (DAPPER's call, e.g.
      ``"EnKF('Sqrt', N=10, infl=1.02, rot=True)"``).
    - ``rmse``: the reference time-mean analysis RMSE.
    - ``source``: where the number is published (file, table, or measurement).
    - ``filter``: the function of :mod:`assimilax.filters` that runs the same method, or ``None``
      where the library has no counterpart (3D-Var, EnKF-N, iEnKS, ...).
    - ``ensemble_size``: ``N`` (``None`` for the extended Kalman filter).
    - ``options``: keyword arguments of ``filter`` that make it the same method.
    - ``dapper``: ``(class name, args, kwargs)`` of the DAPPER call, or ``None``.
    - ``rmse_std``: a standard deviation over repeats where the source gives one.
    - ``published``: ``False`` for a number measured by this project (with ``source`` saying how),
      not printed by the source.
    """

    method: str
    rmse: float
    source: str
    filter: Optional[str] = None
    ensemble_size: Optional[int] = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dapper: Optional[tuple] = None
    rmse_std: Optional[float] = None
    published: bool = True

    def __post_init__(self):
        object.__setattr__(self, "options", _frozen(self.options))


@dataclasses.dataclass(frozen=True)
class TwinExperiment:
    r"""A twin experiment on a Lorenz system: truth and observations
    :math:`y_t = h(u_t) + \eta_t`, :math:`\eta_t \sim \mathcal N(0, \sigma^2 I)`, every
    ``steps_per_obs`` RK4 steps of ``dt``, for ``n_cycles`` analyses.

    **Fields:** ``name``; ``citation`` (a key of the book's bibliography); ``source`` (the file
    the setting is read from); ``model_class`` (:class:`~assimilax.models.Lorenz63` or
    :class:`~assimilax.models.Lorenz96`) with ``model_params`` (its parameters other than ``dim``
    and ``dt``); ``dim``; ``dt``; ``steps_per_obs``; ``observe`` (``"linear"`` for
    :math:`h(u) = u`, ``"arctan"`` for :math:`h(u) = \arctan u`); ``obs_std`` :math:`\sigma`
    (:math:`R = \sigma^2 I`); ``n_cycles`` (analyses: DAPPER's ``Ko + 1``); ``burn_in_time``
    (analyses at times :math:`\le` this are left out of the time mean, DAPPER's ``BurnIn``) or
    ``average_last`` (the time mean is over the last this many analyses); ``x0`` (the mean of the
    initial-condition distribution, or ``None`` where the truth starts from a spun-up random
    state); ``x0_var`` (its variance per component: :math:`X_0 = \mathcal N(x_0, v I)`);
    ``spinup_steps`` (model steps from ``forcing + N(0, I)`` to the truth's start where ``x0`` is
    ``None``); ``references`` (:class:`Reference` s); ``settings`` (other named values of the
    configuration, e.g. the tuned LETKF or the score filter's schedule).
    """

    name: str
    citation: str
    source: str
    model_class: type
    model_params: Mapping[str, Any]
    dim: int
    dt: float
    steps_per_obs: int
    observe: str
    obs_std: float
    n_cycles: int
    references: tuple = ()
    burn_in_time: Optional[float] = None
    average_last: Optional[int] = None
    x0: Optional[tuple] = None
    x0_var: float = 1.0
    spinup_steps: int = 0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "model_params", _frozen(self.model_params))
        object.__setattr__(self, "settings", _frozen(self.settings))
        if self.observe not in ("linear", "arctan"):
            raise ValueError(f"observe must be 'linear' or 'arctan', got {self.observe!r}")
        if (self.burn_in_time is None) == (self.average_last is None):
            raise ValueError("give exactly one of burn_in_time and average_last")
        if self.x0 is not None and len(self.x0) != self.dim:
            raise ValueError(f"x0 must have {self.dim} components, got {len(self.x0)}")

    def with_dim(self, dim: int) -> "TwinExperiment":
        """The same configuration on ``dim`` grid points (Lorenz-96 only, and only where ``x0`` is
        not fixed)."""
        if dim == self.dim:
            return self
        if self.model_class is not Lorenz96 or self.x0 is not None:
            raise ValueError(f"{self.name} has a fixed dimension {self.dim}; got dim={dim}")
        return dataclasses.replace(self, dim=int(dim))

    def model(self, **overrides):
        """The configuration's model (a :mod:`assimilax.models` object); ``overrides`` replace
        its parameters."""
        params = dict(self.model_params, dt=self.dt)
        params.update(overrides)
        if self.model_class is Lorenz96:
            params.setdefault("dim", self.dim)
        return self.model_class(**params)

    def observation(self):
        """The observation operator: :class:`~assimilax.observations.LinearObservation` of the
        full state or :class:`~assimilax.observations.NonlinearObservation` ``"arctan"``, with
        :math:`R = \\sigma^2 I`."""
        if self.observe == "linear":
            return LinearObservation.full(self.dim, self.obs_std)
        return NonlinearObservation("arctan", self.dim, self.obs_std)

    @property
    def obs_cov(self) -> np.ndarray:
        """:math:`R = \\sigma^2 I`, ``(d, d)`` (NumPy, float64)."""
        return self.obs_std**2 * np.eye(self.dim)

    def prior(self):
        """Mean ``(d,)`` and covariance ``(d, d)`` of the initial-condition distribution
        :math:`X_0` (NumPy, float64); only where ``x0`` is fixed."""
        if self.x0 is None:
            raise ValueError(f"{self.name}: the truth starts from a spun-up random state; x0 is drawn per run")
        return np.asarray(self.x0, dtype=float), self.x0_var * np.eye(self.dim)

    def analysis_times(self) -> np.ndarray:
        """Model time of each analysis, ``(n_cycles,)``: :math:`t_k = k\\,\\Delta t\\,` ``steps_per_obs``."""
        return np.arange(1, self.n_cycles + 1) * self.steps_per_obs * self.dt

    def averaged(self) -> np.ndarray:
        """Boolean mask ``(n_cycles,)`` of the analyses that enter the time-mean RMSE: after
        ``burn_in_time`` (DAPPER's ``tto > BurnIn``) or the last ``average_last``."""
        if self.burn_in_time is not None:
            return self.analysis_times() > self.burn_in_time
        mask = np.zeros(self.n_cycles, dtype=bool)
        mask[-self.average_last:] = True
        return mask

    def reference(self, method: str) -> Reference:
        """The :class:`Reference` whose ``method`` is ``method`` (exact spelling)."""
        for ref in self.references:
            if ref.method == method:
                return ref
        raise KeyError(f"{self.name} has no reference {method!r}; it has {[r.method for r in self.references]}")


def _dapper_ref(file, name, rmse, dapper, filter=None, ensemble_size=None, **options):
    return Reference(method=name, rmse=rmse, source=_DAPPER.format(file) + ", 'Suggested tuning'",
                     filter=filter, ensemble_size=ensemble_size, options=options, dapper=dapper)


_L63 = "Lorenz63/sakov2012.py"
#: Lorenz-63, :cite:`sakov2012iterative` Table 1 as set up in DAPPER: RK4 ``dt = 0.01``, all three
#: components observed every 25 steps with :math:`R = 2I`, 1,001 analyses (``Ko = 1000``), burn-in
#: 16 time units (``4 * Tplot``), :math:`X_0 = \mathcal N(x_0, 2I)` with DAPPER's ``x0``.
LORENZ63_SAKOV2012 = TwinExperiment(
    name="Lorenz63 sakov2012",
    citation="sakov2012iterative",
    source=_DAPPER.format(_L63),
    model_class=Lorenz63,
    model_params=dict(sigma=10.0, rho=28.0, beta=8.0 / 3.0),
    dim=3, dt=0.01, steps_per_obs=25, observe="linear", obs_std=2.0 ** 0.5,
    n_cycles=1001, burn_in_time=16.0, x0=(1.509, -1.531, 25.46), x0_var=2.0,
    references=(
        _dapper_ref(_L63, "Var3D(xB=0.1)", 1.04, ("Var3D", (), {"xB": 0.1})),
        _dapper_ref(_L63, "ExtKF(infl=180)", 0.92, ("ExtKF", (), {"infl": 180}),
                    "extended_kalman_filter", None, inflation_rate=180.0),
        _dapper_ref(_L63, "EnKF('Sqrt', N=10, infl=1.02, rot=True)", 0.60,
                    ("EnKF", ("Sqrt",), {"N": 10, "infl": 1.02, "rot": True}),
                    "ensemble_kalman_filter", 10, method="sqrt", inflation=1.02, rotate=True),
        _dapper_ref(_L63, "EnKF('PertObs', N=10, infl=1.04)", 0.65,
                    ("EnKF", ("PertObs",), {"N": 10, "infl": 1.04}),
                    "ensemble_kalman_filter", 10, method="pertobs", inflation=1.04),
        _dapper_ref(_L63, "EnKF_N(N=10, rot=True)", 0.54, ("EnKF_N", (), {"N": 10, "rot": True})),
        _dapper_ref(_L63, "iEnKS('Sqrt', N=10, infl=1.02, rot=True)", 0.31,
                    ("iEnKS", ("Sqrt",), {"N": 10, "infl": 1.02, "rot": True}),
                    # DAPPER's defaults made explicit: Lag=1, nIter=10, wtol=0, MDA=False
                    "iterative_ensemble_kalman_smoother", 10, lag=1, n_iterations=10, tolerance=0.0,
                    inflation=1.02, rotate=True),
        _dapper_ref(_L63, "PartFilt(N=100, reg=2.4, NER=0.3)", 0.38,
                    ("PartFilt", (), {"N": 100, "reg": 2.4, "NER": 0.3}),
                    "particle_filter", 100, resample_threshold=0.3, jitter=2.4),
        _dapper_ref(_L63, "PartFilt(N=800, reg=0.9, NER=0.2)", 0.28,
                    ("PartFilt", (), {"N": 800, "reg": 0.9, "NER": 0.2}),
                    "particle_filter", 800, resample_threshold=0.2, jitter=0.9),
    ),
)

_L96 = "Lorenz96/sakov2008.py"
#: Lorenz-96, :cite:`sakov2008deterministic` Table 1 as set up in DAPPER: :math:`d = 40`, forcing
#: 8, RK4 ``dt = 0.05``, every component observed at every step with :math:`R = I`, 1,001 analyses
#: (``Ko = 1000``), burn-in 20 time units (``2 * Tplot``), :math:`X_0 = \mathcal N(x_0, 0.001 I)`
#: with DAPPER's ``x0(40)`` (the first unit vector). DAPPER localises in batches of 2 grid points
#: (``nd_Id_localization((40,), (2,))``, in ``settings``).
LORENZ96_SAKOV2008 = TwinExperiment(
    name="Lorenz96 sakov2008",
    citation="sakov2008deterministic",
    source=_DAPPER.format(_L96),
    model_class=Lorenz96,
    model_params=dict(forcing=8.0),
    dim=40, dt=0.05, steps_per_obs=1, observe="linear", obs_std=1.0,
    n_cycles=1001, burn_in_time=20.0, x0=(1.0,) + (0.0,) * 39, x0_var=0.001,
    settings=dict(dapper_localization_batch=2),
    references=(
        _dapper_ref(_L96, "Var3D(xB=0.02)", 0.41, ("Var3D", (), {"xB": 0.02})),
        _dapper_ref(_L96, "ExtKF(infl=10)", 0.24, ("ExtKF", (), {"infl": 10}),
                    "extended_kalman_filter", None, inflation_rate=10.0),
        _dapper_ref(_L96, "EnKF('PertObs', N=40, infl=1.06)", 0.22,
                    ("EnKF", ("PertObs",), {"N": 40, "infl": 1.06}),
                    "ensemble_kalman_filter", 40, method="pertobs", inflation=1.06),
        _dapper_ref(_L96, "EnKF('DEnKF', N=40, infl=1.01)", 0.18,
                    ("EnKF", ("DEnKF",), {"N": 40, "infl": 1.01})),
        _dapper_ref(_L96, "EnKF('Sqrt', N=28, infl=1.02, rot=True)", 0.18,
                    ("EnKF", ("Sqrt",), {"N": 28, "infl": 1.02, "rot": True}),
                    "ensemble_kalman_filter", 28, method="sqrt", inflation=1.02, rotate=True),
        _dapper_ref(_L96, "LETKF(N=7, rot=True, infl=1.04, loc_rad=4)", 0.22,
                    ("LETKF", (), {"N": 7, "rot": True, "infl": 1.04, "loc_rad": 4}),
                    "ensemble_kalman_filter", 7, method="sqrt", inflation=1.04, rotate=True,
                    localization_radius=4.0),
    ),
)

#: Lorenz-96 with arctan observations of the full state, the ensemble score filter's setting
#: :cite:`bao2024ensemble` (its public repository's protocol): forcing 8, RK4 ``dt = 0.01``,
#: :math:`y = \arctan(x) + \mathcal N(0, 0.05^2 I)` every 10 steps, :math:`N = 20`, 150 analyses,
#: RMSE over the last 50; the truth spun up 1,000 steps from :math:`8 + \mathcal N(0, I)` and the
#: initial ensemble :math:`x_0 + \mathcal N(0, I)`. ``dim`` is 100 (the protocol's); use
#: :meth:`TwinExperiment.with_dim` for others. ``settings`` holds the score filter's schedule
#: (:math:`\varepsilon_\alpha = 0.5`, :math:`\varepsilon_\beta = 0.025`, 200 reverse-SDE steps)
#: and the LETKF tuned on a grid at :math:`d = 40` (inflation 1.02, radius 8; the benchmark
#: appendix). The reference is the public PyTorch code run on this project's machine type (it is
#: not printed in the paper), with the repository's stored value in its ``source``.
LORENZ96_ARCTAN = TwinExperiment(
    name="Lorenz96 arctan (EnSF)",
    citation="bao2024ensemble",
    source="the EnSF paper's public code (PyTorch), Lorenz-96 arctan protocol",
    model_class=Lorenz96,
    model_params=dict(forcing=8.0),
    dim=100, dt=0.01, steps_per_obs=10, observe="arctan", obs_std=0.05,
    n_cycles=150, average_last=50, x0=None, x0_var=1.0, spinup_steps=1000,
    settings=dict(members=20, eps_alpha=0.5, eps_beta=0.025, sde_steps=200,
                  letkf_inflation=1.02, letkf_radius=8.0, dims=(40, 100)),
    references=(
        Reference(method="EnSF (PyTorch reference, 200 SDE steps)", rmse=0.203, rmse_std=0.030,
                  source="public PyTorch code, d = 100, 10 repeats, measured on this project's machine "
                         "type (shared/ANCHORS.md); its repository stores 0.193",
                  filter="ensemble_score_filter", ensemble_size=20,
                  options=dict(prior_score="per_member", n_sde_steps=200), published=False),
    ),
)


@dataclasses.dataclass(frozen=True)
class LangfordSetting:
    r"""The Langford system of the March 5 notes, observed in :math:`(x, y)` with noise.

    **Fields:** the notes' constants ``alpha`` :math:`\alpha = 0.95`, ``beta``
    :math:`\beta = 0.7`, ``lam`` :math:`\lambda = 0.6`, ``omega0`` :math:`\omega(0) = 3.5`, ``rho``
    :math:`\rho = 0.25`, ``epsilon`` :math:`\varepsilon = 0.1`; the rotation-rate modulation
    :math:`\omega(t) = \omega_0 + a\sin(2\pi t/P + \varphi)` (``a``, ``period``, ``phi``; the
    notes vary :math:`\omega` sinusoidally, and the Langford chapter's main configuration is
    :math:`a = 1`, :math:`P = 10`); ``dt`` (RK4 step); ``steps_per_obs``; ``obs_indices``
    (observed components, :math:`(x, y)`); ``obs_std`` :math:`\sigma`; ``x0`` (the notes' initial
    state :math:`(0.1, 0, 0)`).
    """

    name: str = "Langford (March 5 notes)"
    citation: str = "langford1984numerical"
    source: str = "meeting notes of March 5 (shared/seed/meeting-notes.txt); Langford chapter"
    alpha: float = 0.95
    beta: float = 0.7
    lam: float = 0.6
    omega0: float = 3.5
    rho: float = 0.25
    epsilon: float = 0.1
    a: float = 1.0
    period: float = 10.0
    phi: float = 0.0
    dt: float = 0.01
    steps_per_obs: int = 10
    obs_indices: tuple = (0, 1)
    obs_std: float = 0.1
    x0: tuple = (0.1, 0.0, 0.0)

    @property
    def dim(self) -> int:
        return 3

    @property
    def obs_interval(self) -> float:
        """Model time between observations, ``steps_per_obs * dt``."""
        return self.steps_per_obs * self.dt

    def model(self, **overrides) -> Langford:
        """:class:`~assimilax.models.Langford` with these values; ``overrides`` (e.g. ``a=0`` for
        the autonomous system, ``period=20``) replace them."""
        params = dict(alpha=self.alpha, beta=self.beta, lam=self.lam, omega0=self.omega0, rho=self.rho,
                      epsilon=self.epsilon, a=self.a, period=self.period, phi=self.phi, dt=self.dt)
        params.update(overrides)
        return Langford(**params)

    def observation(self, obs_std: Optional[float] = None) -> LinearObservation:
        """:math:`(x, y)` observed with noise standard deviation ``obs_std`` (default
        ``obs_std``)."""
        return LinearObservation.partial(list(self.obs_indices), self.dim,
                                         self.obs_std if obs_std is None else obs_std)


#: The Langford system with the March 5 notes' values and the Langford chapter's main tracking
#: configuration (:math:`a = 1`, :math:`P = 10`, :math:`\sigma = 0.1`, observed every 10 RK4 steps
#: of 0.01).
LANGFORD_NOTES = LangfordSetting()

#: Every configuration of this module, by name.
ALL = {c.name: c for c in (LORENZ63_SAKOV2012, LORENZ96_SAKOV2008, LORENZ96_ARCTAN, LANGFORD_NOTES)}

__all__ = ["Reference", "TwinExperiment", "LangfordSetting", "LORENZ63_SAKOV2012", "LORENZ96_SAKOV2008",
           "LORENZ96_ARCTAN", "LANGFORD_NOTES", "ALL"]
