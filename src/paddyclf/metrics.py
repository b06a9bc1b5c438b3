"""Classification metrics from the confusion matrix: accuracy, macro-F1, per-class P/R/F1.

They follow scikit-learn's definitions (``precision_recall_fscore_support`` and ``f1_score(average=
"macro")`` over every class id, ``zero_division=0``), and ``tests/test_training.py`` checks that they
equal scikit-learn's on random labels with absent classes. They are NumPy rather than scikit-learn
because every training epoch needs them and the training process imports nothing else of
scikit-learn: its import was about 0.6 s of each `paddyclf train` run on 2 cores (docs/BENCHMARKS.md
section 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: rows are true classes, columns predicted ones, over class ids 0..K-1."""
    targets, predictions = np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    cells = np.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_metrics(
    targets: np.ndarray, predictions: np.ndarray, num_classes: int, class_names: Sequence[str] | None = None
) -> dict:
    """Summary over all classes 0..num_classes-1 (absent classes count with zero support).

    Returns ``accuracy``, ``macro_f1``, ``per_class`` ({name: precision, recall, f1, support})
    and ``confusion_matrix`` (rows = true class, columns = predicted class). Per class k, with
    TP the diagonal: precision = TP / predicted k, recall = TP / true k, F1 = 2 TP / (true k +
    predicted k); macro-F1 is the mean over all K classes.
    """
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    matrix = confusion_matrix(targets, predictions, num_classes)
    hits, support, predicted = np.diag(matrix).astype(np.float64), matrix.sum(1), matrix.sum(0)
    precision, recall, f1 = _ratio(hits, predicted), _ratio(hits, support), _ratio(2 * hits, support + predicted)
    return {
        "accuracy": float(hits.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": matrix.tolist(),
    }
