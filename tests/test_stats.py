"""The statistics under `cv` and `compare --test`, checked against worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from paddyclf.stats import (
    corrected_resampled_ttest,
    difference_verdict,
    mcnemar_exact,
    mcnemar_table,
    mean_interval,
)


def test_corrected_ttest_reproduces_scikit_learns_worked_example():
    """scikit-learn's gallery example "Statistical comparison of models using grid search" (1.6 docs)
    compares an RBF and a linear SVC over 10 x 10-fold CV of make_moons and prints "Corrected t-value:
    0.750, Corrected p-value: 0.227" (one-sided; ours is two-sided) and "Uncorrected t-value: 2.611"."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    x, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    rbf, linear = (
        cross_val_score(SVC(kernel=k, random_state=0), x, y, scoring="roc_auc", cv=cv) for k in ("rbf", "linear")
    )
    result = corrected_resampled_ttest(rbf - linear, n_train=90, n_test=10)
    assert result.n == 100
    assert result.statistic == pytest.approx(0.750, abs=5e-4)
    assert result.p_value / 2 == pytest.approx(0.227, abs=5e-4)
    assert not result.significant
    uncorrected = np.mean(rbf - linear) / (np.std(rbf - linear, ddof=1) / 10)
    assert uncorrected == pytest.approx(2.611, abs=5e-4)  # the plain t-test would call it significant
    # the interval is the same corrected spread: it holds 0 exactly when p > 0.05
    assert result.low < 0 < result.high


def test_corrected_ttest_of_equal_differences_is_certain_or_null():
    assert corrected_resampled_ttest([0.0, 0.0, 0.0], 80, 20).p_value == 1.0
    assert corrected_resampled_ttest([0.1, 0.1, 0.1], 80, 20).p_value == 0.0
    with pytest.raises(ValueError):
        corrected_resampled_ttest([0.1], 80, 20)


def test_mcnemar_exact_reproduces_the_bentur_example():
    """Fagerland, Lydersen and Laake (2013, BMC Medical Research Methodology 13:91), Bentur et al.'s
    airway hyper-responsiveness data: discordant pairs 1 and 7 give an exact conditional p of 0.0703
    (= 2 * (1 + 8) / 2**8)."""
    result = mcnemar_exact(((1, 1), (7, 12)))
    assert result.p_value == pytest.approx(0.0703125, abs=1e-9)
    assert (result.only_a, result.only_b, result.n) == (1, 7, 21)
    assert result.accuracy_difference == pytest.approx(-6 / 21)
    assert mcnemar_exact(((5, 0), (0, 3))).p_value == 1.0  # no discordant photo: nothing to test


def test_mcnemar_table_counts_the_paired_answers():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert mcnemar_table(a, b) == ((1, 2), (1, 1))
    with pytest.raises(ValueError):
        mcnemar_table([True], [True, False])


def test_mean_interval_is_scipys_t_interval():
    values = [0.81, 0.78, 0.85, 0.80, 0.83]
    interval = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    single = mean_interval([0.5])
    assert single.mean == 0.5 and math.isinf(single.high) and single.n == 1


def test_the_verdict_says_in_words_when_the_data_show_no_difference():
    assert "do not show a difference" in difference_verdict("A", "B", 0.01, 0.4)
    assert difference_verdict("A", "B", -0.05, 0.01).startswith("B has the higher accuracy")
