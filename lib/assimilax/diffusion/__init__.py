"""Diffusion machinery: forward SDEs, exact mixture scores, denoising score matching, score
networks, reverse-time samplers and likelihood guidance :cite:`song2021scorebased`."""
from .conditional import (GaussianScore, classifier_free_dataset, classifier_free_score, fit_conditional_score,
                          sample_conditional, with_condition_flag)
from .guidance import (damped_guidance, dps_guidance, gaussian_likelihood_score, linear_damping, no_damping,
                       noise_precision, tweedie_covariance_guidance)
from .mixture import GaussianMixture, mixture_score
from .networks import FourierTimeEmbedding, MLPScore, batch_score
from .samplers import euler_maruyama, predictor_corrector, probability_flow_heun
from .sde import SDE, VESDE, VPSDE, EnSFSDE
from .unet import UNet
from .training import dsm_loss, fit_steps, load_network, save_network, train_score_network

__all__ = [
    "SDE", "VPSDE", "VESDE", "EnSFSDE", "GaussianMixture", "mixture_score", "FourierTimeEmbedding", "MLPScore", "UNet",
    "batch_score", "dsm_loss", "fit_steps", "train_score_network", "save_network", "load_network", "euler_maruyama",
    "probability_flow_heun", "predictor_corrector", "linear_damping", "no_damping", "noise_precision",
    "gaussian_likelihood_score", "damped_guidance", "dps_guidance", "tweedie_covariance_guidance",
    "GaussianScore", "with_condition_flag", "classifier_free_dataset", "classifier_free_score", "sample_conditional",
    "fit_conditional_score",
]
