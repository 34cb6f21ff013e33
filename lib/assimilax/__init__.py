"""assimilax: learned data assimilation and multiscale scientific ML in JAX.

Importing the library never changes global JAX configuration. Algorithms that need float64
(Kalman covariances, likelihoods) say so in their docstrings; enable it with
``jax.config.update("jax_enable_x64", True)`` in your script.
"""
from . import filters, metrics, models, observations
from ._validation import FilterDivergenceError
from .simulate import Simulation, simulate

__version__ = "0.1.0"
__all__ = ["filters", "metrics", "models", "observations", "simulate", "Simulation", "FilterDivergenceError"]
