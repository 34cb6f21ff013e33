"""Dynamical systems as equinox Modules (RK4 under ``lax`` loops)."""
from ._base import DynamicalModel, rk4_step
from .burgers import Burgers1D
from .kraichnan import Kraichnan2D
from .langford import AugmentedLangford, Langford
from .linear import LinearGaussian
from .lorenz import Lorenz63, Lorenz96
from .switching import SwitchingLorenz63, dwell_lengths, simulate_switching

__all__ = ["DynamicalModel", "rk4_step", "LinearGaussian", "Lorenz63", "Lorenz96", "Langford", "AugmentedLangford",
           "Burgers1D", "Kraichnan2D", "SwitchingLorenz63", "dwell_lengths", "simulate_switching"]
