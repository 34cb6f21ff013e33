"""Filters: Kalman, RTS, EKF, ensemble Kalman (perturbed-obs, ETKF, LETKF), particle filter."""
from ._types import EnsembleFilterResult, GaussianFilterResult, SmootherResult

__all__ = ["EnsembleFilterResult", "GaussianFilterResult", "SmootherResult"]
