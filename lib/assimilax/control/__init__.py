"""Optimal control with constraints: the 1-D heat equation with a thermal load, a directional
(control-barrier) safety constraint with its closed-form filter, and minimal-time reachability
under a one-sided control constraint."""
from .heat import HeatEquation1D, Propagators, gaussian_profile, thermal_load
from .reach import Reach, minimal_time, reach, steady_state, transfer
from .safety import (ConstrainedOptimum, ControlSolution, FilteredRollout, FilterResult, SafeTrackingProblem, barrier,
                     constrained_tracking_optimum, directional_violation, filtered_rollout, make_problem,
                     optimise_controls, rollout, safety_filter, state_violation, tracking_cost,
                     tracking_least_squares)

__all__ = ["HeatEquation1D", "Propagators", "gaussian_profile", "thermal_load", "Reach", "minimal_time", "reach",
           "steady_state", "transfer", "ConstrainedOptimum", "ControlSolution", "FilteredRollout", "FilterResult",
           "SafeTrackingProblem", "barrier", "constrained_tracking_optimum", "directional_violation",
           "filtered_rollout", "make_problem", "optimise_controls", "rollout", "safety_filter", "state_violation",
           "tracking_cost", "tracking_least_squares"]
