"""Intervals and paired tests for comparing models: the statistics under ``cv`` and ``compare --test``.

Three questions, each answered by a well-known procedure on top of scipy:

- *How good is one model?* :func:`mean_interval`: the mean of its per-fold scores with a
  Student-t 95% interval.
- *Is model A better than model B over cross-validation?* :func:`corrected_resampled_ttest`: the
  Nadeau-Bengio corrected resampled t-test. Folds share most of their training photos, so their
  scores are correlated and the plain paired t-test's variance ``s^2 / J`` is far too small (it
  finds differences that are not there). Nadeau and Bengio (2003, *Machine Learning* 52:239-281)
  inflate it to ``(1 / J + n_test / n_train) s^2``; scikit-learn's example "Statistical comparison
  of models using grid search" uses the same correction.
- *Is A better than B on one test split?* :func:`mcnemar_exact`: McNemar's exact test on the paired
  answers, a two-sided binomial test of the discordant photos (scipy's ``binomtest``).

Every function takes plain numbers and returns a small dataclass; the wording of a result is
:func:`difference_verdict`, shared by both commands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided ``confidence`` interval (Student t with n - 1 degrees of freedom)."""

    mean: float
    low: float
    high: float
    std: float
    n: int
    confidence: float = 0.95

    def as_dict(self) -> dict:
        return asdict(self)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` and its t interval ``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)``.

    One value gives the mean with an infinite interval (nothing is known about its spread).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, -math.inf, math.inf, math.nan, 1, confidence)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, std, int(x.size), confidence)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison: the mean difference (A - B), its interval, the statistic and the p-value."""

    test: str
    mean_difference: float
    low: float
    high: float
    statistic: float
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        return self.p_value <= ALPHA

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def corrected_resampled_ttest(
    differences: Sequence[float], n_train: float, n_test: float, confidence: float = 0.95
) -> PairedTest:
    """Nadeau-Bengio corrected resampled t-test of the per-fold differences ``d_j = score_A - score_B``.

    Over J = folds x repeats resamples, with mean ``d̄`` and sample variance ``s^2`` (ddof 1)::

        var = (1 / J + n_test / n_train) * s^2,   t = d̄ / sqrt(var),   df = J - 1

    The p-value is two-sided, ``2 * P(T_{J-1} > |t|)``, and the interval ``d̄ ± t_{(1+c)/2, J-1}
    * sqrt(var)``. ``n_train`` and ``n_test`` are the photos trained on and tested on per fold (their
    mean over folds when folds differ). All differences equal (``s = 0``): p is 1 when they are 0,
    else 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        raise ValueError("the corrected t-test needs at least 2 resamples")
    if n_train <= 0 or n_test <= 0:
        raise ValueError("n_train and n_test must be > 0")
    mean, var = float(d.mean()), float(d.var(ddof=1))
    corrected_std = math.sqrt((1 / d.size + n_test / n_train) * var)
    df = d.size - 1
    if np.ptp(d) == 0:  # no spread (the variance of equal floats can round to 1e-34, not 0)
        corrected_std = 0.0
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / corrected_std
        p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * corrected_std
    return PairedTest("nadeau-bengio corrected resampled t-test", mean, mean - half, mean + half, t, p, int(d.size))


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on one shared test split.

    ``table`` is the paired 2x2 table ``[[both right, only A right], [only B right, both wrong]]``;
    ``only_a`` and ``only_b`` are its discordant cells, the only ones the test uses.
    """

    table: tuple[tuple[int, int], tuple[int, int]]
    p_value: float

    @property
    def only_a(self) -> int:
        return self.table[0][1]

    @property
    def only_b(self) -> int:
        return self.table[1][0]

    @property
    def n(self) -> int:
        return sum(map(sum, self.table))

    @property
    def accuracy_difference(self) -> float:
        """accuracy(A) - accuracy(B) = (only A right - only B right) / n."""
        return (self.only_a - self.only_b) / self.n if self.n else 0.0

    @property
    def significant(self) -> bool:
        return self.p_value <= ALPHA

    def as_dict(self) -> dict:
        return {
            "test": "mcnemar exact",
            "table": [list(row) for row in self.table],
            "only_a_right": self.only_a,
            "only_b_right": self.only_b,
            "accuracy_difference": self.accuracy_difference,
            "p_value": self.p_value,
            "significant": self.significant,
            "n": self.n,
        }


def mcnemar_table(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The paired 2x2 table of two models' right/wrong answers on the same photos."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired answers differ in length: {a.shape} vs {b.shape}")
    return (int((a & b).sum()), int((a & ~b).sum())), (int((~a & b).sum()), int((~a & ~b).sum()))


def mcnemar_exact(table: tuple[tuple[int, int], tuple[int, int]]) -> McNemar:
    """McNemar's exact (conditional) test: given the ``b + c`` discordant photos, is A's share ``b``
    unusual for a fair coin? Two-sided p = ``min(1, 2 * P(Binomial(b + c, 1/2) <= min(b, c)))``,
    which is scipy's two-sided ``binomtest`` at p = 1/2 (the distribution is symmetric).
    No discordant photo: p = 1.
    """
    (_, b), (c, _) = table
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return McNemar(((int(table[0][0]), int(b)), (int(c), int(table[1][1]))), min(p, 1.0))


def difference_verdict(name_a: str, name_b: str, difference: float, p_value: float, what: str = "accuracy") -> str:
    """One sentence a reader can act on: which model is better, or that the data do not show it."""
    if p_value > ALPHA:
        return (
            f"The data do not show a difference in {what} between {name_a} and {name_b} "
            f"(p = {p_value:.3g} > {ALPHA}): this evidence does not tell them apart, so neither is shown to be "
            "better (more folds, repeats or photos may)."
        )
    better, worse = (name_a, name_b) if difference > 0 else (name_b, name_a)
    return f"{better} has the higher {what} (difference {abs(difference):.4f}, p = {p_value:.3g} <= {ALPHA})."
