"""Classification metrics (scikit-learn): accuracy, macro-F1, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(
    targets: np.ndarray, predictions: np.ndarray, num_classes: int, class_names: Sequence[str] | None = None
) -> dict:
    """Summary over all classes 0..num_classes-1 (absent classes count with zero support).

    Returns ``accuracy``, ``macro_f1``, ``per_class`` ({name: precision, recall, f1, support})
    and ``confusion_matrix`` (rows = true class, columns = predicted class).
    """
    labels = list(range(num_classes))
    names = list(class_names) if class_names is not None else [str(i) for i in labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(targets, predictions)),
        "macro_f1": float(f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(targets, predictions, labels=labels).tolist(),
    }
