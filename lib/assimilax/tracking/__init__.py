r"""Phase and amplitude tracking of rotating signals (the Langford chapter).

Estimators of the phase :math:`\theta_t = \operatorname{atan2}(y_t, x_t)`, amplitude
:math:`r_t = \sqrt{x_t^2 + y_t^2}` and rotation rate :math:`\omega(t)` from noisy observations of
:math:`(x, y)`: the sliding :func:`window_estimator`, the phase/amplitude EKF
(:func:`track_phase_ekf`), the EKF and bootstrap particle filter on the augmented Langford state
(:func:`track_augmented_ekf`, :func:`track_augmented_pf`), and circular error metrics. All return
a :class:`TrackingEstimate`. The tracking problem itself, truth and noisy observations of many
Langford trajectories, comes from :func:`langford_tracking_data`; :func:`tune_trackers` scores the
window and both EKFs on their grids and tunes each by oracle (the Langford chapter's protocol).
"""
from ._types import TrackingEstimate
from .circular import circular_error, circular_interval_contains, circular_mean, circular_rmse, wrap_angle
from .filters import (PhaseAmplitudeModel, PolarObservation, augmented_prior, phase_amplitude_prior,
                      track_augmented_ekf, track_augmented_pf, track_phase_ekf)
from .window import window_estimator
from .data import TrackingData, langford_tracking_data
from .tuning import TunedTrackers, tune_trackers

__all__ = ["TrackingEstimate", "window_estimator", "PhaseAmplitudeModel", "PolarObservation",
           "phase_amplitude_prior", "augmented_prior", "track_phase_ekf", "track_augmented_ekf",
           "track_augmented_pf", "wrap_angle", "circular_error", "circular_rmse", "circular_mean",
           "circular_interval_contains", "TrackingData", "langford_tracking_data", "TunedTrackers", "tune_trackers"]
