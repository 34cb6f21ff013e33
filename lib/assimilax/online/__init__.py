"""Online linear optimisation with predictable sequences :cite:`rakhlin2013online`.

Geometries (:class:`Simplex`, :class:`Ball`), learners (:func:`mirror_descent`, :func:`ftrl`,
:func:`optimistic_mirror_descent`, with constant or :class:`AdaptiveEta` steps), hint processes
(:mod:`assimilax.online.hints`), regret / bound functions (:mod:`assimilax.online.regret`) and
synthetic loss sequences to run them on (:func:`loss_sequences`).
"""
from .algorithms import AdaptiveEta, OnlineResult, ftrl, mirror_descent, optimistic_mirror_descent
from .geometry import Ball, Simplex
from .hints import (
    AutoRegressive,
    Clip,
    EmpiricalMean,
    ExternalForecast,
    FadingMemory,
    HedgeOverHints,
    Hint,
    LastValue,
    WeightedAverage,
    Zero,
)
from .sequences import LOSS_KINDS, loss_sequences
from .regret import (
    adaptive_eta_bound,
    best_fixed_action,
    fixed_eta_bound,
    hint_errors,
    regret,
    regret_path,
    tuned_bound,
    tuned_eta,
)

__all__ = [
    "AdaptiveEta", "OnlineResult", "ftrl", "mirror_descent", "optimistic_mirror_descent",
    "Ball", "Simplex",
    "AutoRegressive", "Clip", "EmpiricalMean", "ExternalForecast", "FadingMemory",
    "HedgeOverHints", "Hint", "LastValue", "WeightedAverage", "Zero",
    "adaptive_eta_bound", "best_fixed_action", "fixed_eta_bound", "hint_errors", "regret",
    "regret_path", "tuned_bound", "tuned_eta", "LOSS_KINDS", "loss_sequences",
]
