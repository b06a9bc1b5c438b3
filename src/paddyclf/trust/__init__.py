"""When the model does not know: calibration, out-of-distribution scores and the verdict.

- :mod:`.calibration`: temperature scaling, ECE, reliability, risk-coverage and the unsure threshold;
- :mod:`.ood`: out-of-distribution scores (MSP, energy, Mahalanobis) as modules in the model's graph;
- :mod:`.verdict`: :class:`Trust` (temperature and thresholds), the verdict of each prediction, and
  :class:`TrustedModel`, which every export runs;
- :mod:`.fit`: how a checkpoint learns its :class:`Trust` (``paddyclf calibrate``, and the end of ``train``).
"""

from .fit import Calibration, Outputs, calibrate_checkpoint, collect_outputs, describe_fit, fit_trust, run_calibrate
from .ood import FEATURE_SCORES, SCORES
from .verdict import (
    DEFAULT_OOD_SCORE,
    DEFAULT_TARGET_ACCURACY,
    MESSAGES,
    MIN_ERRORS_FOR_TEMPERATURE,
    OK,
    OUT_OF_DISTRIBUTION,
    UNSURE,
    VERDICTS,
    Trust,
    TrustedModel,
    check_trust_options,
    checkpoint_trust,
    score_module,
    trust_option_problems,
    trusted_model,
    verdicts,
)

__all__ = [
    "Calibration",
    "DEFAULT_OOD_SCORE",
    "DEFAULT_TARGET_ACCURACY",
    "FEATURE_SCORES",
    "MESSAGES",
    "MIN_ERRORS_FOR_TEMPERATURE",
    "OK",
    "OUT_OF_DISTRIBUTION",
    "SCORES",
    "UNSURE",
    "VERDICTS",
    "Outputs",
    "Trust",
    "TrustedModel",
    "calibrate_checkpoint",
    "check_trust_options",
    "checkpoint_trust",
    "collect_outputs",
    "describe_fit",
    "fit_trust",
    "run_calibrate",
    "score_module",
    "trust_option_problems",
    "trusted_model",
    "verdicts",
]
