"""assimilax: learned data assimilation and multiscale scientific ML in JAX.

Importing the library never changes global JAX configuration. Algorithms that need float64
(Kalman covariances, likelihoods) say so in their docstrings; enable it with
``jax.config.update("jax_enable_x64", True)`` in your script.
"""
from . import filters, metrics, models, observations
from ._validation import FilterDivergenceError
from .simulate import Simulation, simulate
from . import learned  # noqa: E402  (after filters: the learned driver returns their result type)
from .learned import learned_filter  # noqa: E402

__version__ = "0.1.0"
__all__ = ["filters", "metrics", "models", "observations", "learned", "learned_filter", "simulate", "Simulation", "FilterDivergenceError"]
