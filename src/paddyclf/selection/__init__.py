"""Choosing between models with numbers a reviewer accepts: grouped cross-validation and paired tests.

- :mod:`.folds`: the pool, its duplicate groups, and grouped stratified folds (scikit-learn's
  ``StratifiedGroupKFold``);
- :mod:`.cv`: ``paddyclf cv``, every model trained and tested on the same folds, resumable;
- :mod:`.summary`: intervals and the Nadeau-Bengio corrected t-test from the stored runs;
- :mod:`.report`: ``cv.md`` and ``cv_scores.png``;
- :mod:`.tune`: ``paddyclf tune``, an Optuna search over the declared space.

The statistics themselves are :mod:`paddyclf.stats` (also used by ``compare --test``).
"""

from .cv import CrossValidationConfig, run_cv
from .folds import grouped_folds

__all__ = ["CrossValidationConfig", "grouped_folds", "run_cv"]
