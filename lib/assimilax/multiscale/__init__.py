"""Multiscale structure: nested resolution projections and what they measure."""
from .projections import (KINDS, Hierarchy, gaussian_lift_matrix, lift, mean_power, restrict, restriction_matrix,
                          stationary_lift, stationary_lift_weights, transfer_function)

__all__ = ["KINDS", "Hierarchy", "gaussian_lift_matrix", "lift", "mean_power", "restrict", "restriction_matrix",
           "stationary_lift", "stationary_lift_weights", "transfer_function"]
