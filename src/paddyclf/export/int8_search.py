"""Accuracy-aware INT8: how many of the most sensitive layers to keep out of full INT8, within a budget.

The backends rank their quantizable layers by sensitivity once (most sensitive first) and can
build the model whose ``k`` most sensitive layers stay out of full INT8 (float, or INT8 weights
with float activations). :func:`search_kept_layers` finds the smallest ``k`` whose accuracy drop
``d(k) = 100 * (accuracy_float - accuracy_int8(k))`` (points, on the validation photos) is at most
the budget ``D``, spending at most ``budget`` evaluations of ``d``:

1. doubling: ``k = 1, 2, 4, ...`` (capped at ``n``, the number of layers) until ``d(k) <= D``;
   ``d(n)`` is the drop of a model with no layer fully INT8, so a budget the float model meets
   is met after at most ``ceil(log2 n) + 1`` evaluations;
2. bisection between the last failing ``k`` and the first passing one, while evaluations remain.

``d`` is not monotone in ``k`` in general (keeping one more layer out can move the verdict of a
photo either way), but it falls on average as ``k`` grows, which is all doubling and bisection
need to land on a small ``k``; the answer is always a ``k`` that was measured to pass. ``k = 0``
(the plain recipe) is measured before a search starts and is passed in, so a model that passes
the gate as it is costs no search at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SEARCH_EVALUATIONS = 8  # doubling reaches every layer of a 2**7-layer model within it


@dataclass(frozen=True)
class SearchRequest:
    """What a backend's search gets besides the model: the gate, its photos, its budget.

    ``drop(path)`` is the accuracy gate's measure of a written file (points below float on the
    validation photos, the float model's outputs computed once); ``images`` (N, 3, S, S) and
    ``labels`` are those photos, for searches that run the model themselves (NNCF).
    """

    drop: Callable[[Path], float]
    images: Any
    labels: Any
    max_drop: float
    budget: int
    plain_drop: float


@dataclass(frozen=True)
class Trial:
    """One measured model: its ``kept`` most sensitive layers out of full INT8, and its accuracy drop."""

    kept: int
    drop: float  # points


@dataclass
class SearchResult:
    """Every trial in order (the plain recipe's, ``kept == 0``, first) and the ones that matter."""

    layers: int  # n: how many layers could be kept out of INT8
    max_drop: float
    trials: list[Trial] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        """Evaluations spent by the search (the plain recipe's is not one of them)."""
        return len(self.trials) - 1

    @property
    def best(self) -> Trial | None:
        """The passing trial with the fewest layers kept out of INT8 (ties: the smaller drop), or None."""
        passing = [t for t in self.trials if t.drop <= self.max_drop]
        return min(passing, key=lambda t: (t.kept, t.drop)) if passing else None

    @property
    def closest(self) -> Trial:
        """The trial with the smallest drop (ties: fewer layers kept): what a failed search reports."""
        return min(self.trials, key=lambda t: (t.drop, t.kept))

    @property
    def chosen(self) -> Trial:
        """The model to write (or to name, when even it fails): the best, else the closest."""
        return self.best or self.closest


def search_kept_layers(
    layers: int, evaluate: Callable[[int], float], max_drop: float, budget: int, plain_drop: float
) -> SearchResult:
    """The smallest number of most-sensitive layers to keep out of INT8 so that ``evaluate(k) <= max_drop``.

    ``evaluate(k)`` builds and measures the model with the ``k`` most sensitive layers kept out of
    INT8 (``1 <= k <= layers``) and returns its accuracy drop in points; it is called at most
    ``budget`` times, never twice for the same ``k``. ``plain_drop`` is ``evaluate(0)``, already known.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    result = SearchResult(layers, max_drop, [Trial(0, plain_drop)])
    measured = {0: plain_drop}

    def measure(k: int) -> float:
        measured[k] = evaluate(k)
        result.trials.append(Trial(k, measured[k]))
        return measured[k]

    failing, passing = 0, None
    if plain_drop <= max_drop or layers < 1:
        return result
    k = 1
    while result.evaluations < budget:  # doubling
        if measure(k) <= max_drop:
            passing = k
            break
        failing = k
        if k == layers:
            return result  # nothing left to keep out of INT8: the closest trial is the answer
        k = min(2 * k, layers)
    while passing is not None and passing - failing > 1 and result.evaluations < budget:  # bisection
        k = (failing + passing) // 2
        if measure(k) <= max_drop:
            passing = k
        else:
            failing = k
    return result


def search_failure(record: dict, drop: float) -> str:
    """The sentence a failed search ends with: what the closest model (``record``'s, ``drop`` points) achieved."""
    return (
        f"The plain recipe was {record['plain_recipe_drop_points']:.2f} points below float; "
        f"the accuracy-aware search ({record['evaluations']} evaluation(s) of the validation photos) came closest "
        f"with {len(record['kept_layers'])} of {record['layers_total']} layers kept {record['kept_as']}: "
        f"{drop:.2f} points below float. Raise --search-evaluations or --max-accuracy-drop, or export the float format."
    )


def search_record(
    result: SearchResult, kept_names: list[str], kept_as: str, seconds: float, budget: int, method: str
) -> dict:
    """What the sidecar and the command report about a search (``kept_names``: the chosen model's layers)."""
    return {
        "searched": result.evaluations > 0,
        "method": method,
        "plain_recipe_drop_points": result.trials[0].drop,
        "kept_layers": kept_names,
        "kept_as": kept_as,
        "layers_total": result.layers,
        "evaluations": result.evaluations,
        "budget_evaluations": budget,
        "seconds": seconds,
        "trials": [{"kept": t.kept, "drop_points": t.drop} for t in result.trials],
    }
