"""Filters: Kalman, RTS, EKF, ensemble Kalman (perturbed-obs, ETKF, LETKF), particle filter,
score-based filters (EnSF, SF). All share the time convention and result types of ``_types``."""
from ._types import EnsembleFilterResult, GaussianFilterResult, ScoreFilterResult, SmootherResult
from .diffusion_da import (DiffusionTargets, GaussianTarget, climatology_diffusion_filter, cycled_diffusion_filter,
                           diffusion_targets, hybrid_diffusion_filter, soad_filter)
from .ekf import extended_kalman_filter
from . import localization
from .enkf import LETKFAnalysis, ensemble_kalman_filter, gaspari_cohn, local_etkf_transform
from .ensf import ensemble_score_filter
from .ienks import iterative_ensemble_kalman_smoother
from .kalman import kalman_filter, rts_smoother
from .localization import Locations, PeriodicGrid2D, PeriodicRing, observation_locations
from .particle import particle_filter, systematic_resample
from .score_filter import PreconditionedScore, score_filter

__all__ = [
    "EnsembleFilterResult",
    "GaussianFilterResult",
    "SmootherResult",
    "ScoreFilterResult",
    "PreconditionedScore",
    "kalman_filter",
    "rts_smoother",
    "extended_kalman_filter",
    "ensemble_kalman_filter",
    "LETKFAnalysis",
    "local_etkf_transform",
    "iterative_ensemble_kalman_smoother",
    "gaspari_cohn",
    "localization",
    "PeriodicRing",
    "PeriodicGrid2D",
    "Locations",
    "observation_locations",
    "particle_filter",
    "systematic_resample",
    "ensemble_score_filter",
    "score_filter",
    "climatology_diffusion_filter",
    "cycled_diffusion_filter",
    "hybrid_diffusion_filter",
    "soad_filter",
    "diffusion_targets",
    "DiffusionTargets",
    "GaussianTarget",
    "PreconditionedScore",
]
