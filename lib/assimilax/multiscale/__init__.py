"""Multiscale structure: nested resolution projections and what they measure."""
from .projections import (KINDS, Hierarchy, gaussian_lift_matrix, lift, mean_power, restrict, restriction_matrix,
                          stationary_lift, stationary_lift_weights, transfer_function)
from .ir import (Cost, LevelwiseModel, ReconstructionScores, RefinementModel, levelwise_model, matched_batch_size,
                 reconstruction_scores, refine, refinement_loss, refinement_model, refinement_pairs, sampling_cost,
                 super_resolved_filter, train_levelwise, train_refinement, training_cost)
from .structure import (ConditionalGain, LevelStructure, StructureComparison, TailFractions, conditional_gain,
                        gaussian_twin, lag_correlation, level_structure, tail_flatness, tail_fractions)

from . import functional_inequalities, theory  # exact Gaussian-mixture theory of IR (chapter 70)

__all__ = ["Cost", "LevelwiseModel", "ReconstructionScores", "RefinementModel", "levelwise_model", "train_levelwise", "matched_batch_size", "reconstruction_scores", "refine",
           "refinement_loss", "refinement_model", "refinement_pairs", "sampling_cost", "super_resolved_filter", "train_refinement", "training_cost",
           "ConditionalGain", "LevelStructure", "StructureComparison", "TailFractions", "conditional_gain",
           "gaussian_twin", "lag_correlation", "level_structure", "tail_flatness", "tail_fractions",
           "KINDS", "Hierarchy", "gaussian_lift_matrix", "lift", "mean_power", "restrict", "restriction_matrix",
           "stationary_lift", "stationary_lift_weights", "transfer_function"]
