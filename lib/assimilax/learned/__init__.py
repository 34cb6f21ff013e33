r"""Learned forward models and analysis operators (the 11/13/25 proposal): a forward model
:math:`F_\theta`, a coarse deterministic analysis :math:`T_\psi` and a probabilistic residual
:math:`p_\phi` built on :mod:`assimilax.diffusion`, cycled by :func:`learned_filter`."""
from .analysis import (CycleError, ForecastAnalysis, LinearAnalysis, MLPAnalysis, ResidualDiffusion, StencilAnalysis,
                       StencilScore, fit_linear_analysis, fit_residual_diffusion, linear_cycle_error,
                       minimize_cycle_error, residual_condition)
from .cycling import learned_filter
from .data import (TrajectoryData, analysis_pairs, cycled_analysis_pairs, forward_pairs, generate_trajectories,
                   shifted_pairs, split_trajectories)
from .joint import (DEFAULT_WEIGHTS, TERMS, JointBatch, JointFit, fit_joint, joint_loss_terms, residual_draw,
                    sample_batch, state_sensitivity)
from .forward import (DiagonalForward, LearnedDynamics, LinearForward, MLPForward, ModelForward, StencilForward,
                      as_forward, ring_windows)
from .training import fit_cycled_analysis, fit_regression
from .ensemble import (EnsembleFit, EnsembleStencilAnalysis, ensemble_windows, fit_ensemble_analysis,
                       unrolled_ensemble_loss)

__all__ = [
    "LinearForward", "DiagonalForward", "MLPForward", "StencilForward", "ModelForward", "LearnedDynamics", "as_forward",
    "ring_windows",
    "ForecastAnalysis", "LinearAnalysis", "fit_linear_analysis", "linear_cycle_error", "CycleError",
    "minimize_cycle_error", "MLPAnalysis",
    "StencilAnalysis", "StencilScore",
    "ResidualDiffusion", "fit_residual_diffusion", "residual_condition",
    "learned_filter", "fit_regression", "fit_cycled_analysis",
    "TrajectoryData", "generate_trajectories", "split_trajectories", "forward_pairs", "analysis_pairs",
    "cycled_analysis_pairs", "shifted_pairs",
    "fit_joint", "joint_loss_terms", "JointFit", "JointBatch", "sample_batch", "residual_draw", "state_sensitivity",
    "TERMS", "DEFAULT_WEIGHTS",
    "EnsembleStencilAnalysis", "EnsembleFit", "fit_ensemble_analysis", "unrolled_ensemble_loss",
    "ensemble_windows",
]

# Mixtures of experts for switching dynamics (issue 18).
from . import moe  # noqa: E402
from .moe import (AttentionRouter, GateRouter, MixtureOfExperts, MoELossWeights, Routing, SwitchingData,  # noqa: E402
                  comparison_model, epsilon_net_bound, fit_moe, moe_loss, switching_data)

__all__ += ["moe", "MixtureOfExperts", "GateRouter", "AttentionRouter", "Routing", "MoELossWeights", "fit_moe",
            "moe_loss", "epsilon_net_bound", "SwitchingData", "switching_data",
            "comparison_model"]
