"""The common output of every phase/amplitude tracker."""
from __future__ import annotations

from typing import NamedTuple

import jax


class TrackingEstimate(NamedTuple):
    r"""Phase, amplitude and rotation-rate estimates, time-major and aligned with the observations.

    ``phase`` ``(T,)`` estimate of :math:`\theta_t = \operatorname{atan2}(y_t, x_t)` given
    :math:`y_{1:t}` (in :math:`(-\pi, \pi]`); ``amplitude`` ``(T,)`` of :math:`r_t = \sqrt{x_t^2+y_t^2}`;
    ``rate`` ``(T,)`` of :math:`\omega(t)`; ``prediction`` ``(T, 2)``: the one-step-ahead forecast of
    the observed :math:`(x, y)` at time ``t`` made from :math:`y_{1:t-1}` (row 0 comes from the prior
    alone), so ``ys - prediction`` are the innovations.
    """

    phase: jax.Array
    amplitude: jax.Array
    rate: jax.Array
    prediction: jax.Array
