"""One field, several leaves: one answer from the photos of a visit.

A farmer photographs several leaves of one field. Each photo the out-of-distribution gate accepts
(verdict ``ok`` or ``unsure``) votes with its calibrated log-probabilities ``l_i = log softmax(z_i / T)``,
and the visit's answer is one of two rules, renormalised:

- ``mean``: ``p_visit = softmax(mean_i l_i)``, a geometric mean. Photos that disagree cancel, but
  photos that agree are no surer together than one alone.
- ``product``: ``p_visit = softmax(sum_i l_i)``, Bayes' rule for leaves that are independent given
  the disease (with a uniform prior). Agreeing photos add up to a surer answer.

The same ``unsure`` rule as for one photo then applies to ``p_visit``. A visit none of whose photos
is accepted is ``out_of_distribution``. For one photo both rules give that photo's own verdict.
``paddyclf benchmark visit`` measures both (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, softmax

from .verdict import OK, OUT_OF_DISTRIBUTION, UNSURE, Trust


@dataclass(frozen=True)
class VisitAnswer:
    probabilities: np.ndarray  # (K,) the combination, or the mean of all photos when none is accepted
    status: str
    accepted: int  # photos the OOD gate let vote


def accepted_mask(ood_scores: np.ndarray | None, trust: Trust, count: int) -> np.ndarray:
    """(N,) True where the OOD gate accepts the photo (every photo when the model has no gate)."""
    if trust.ood_score is None or ood_scores is None:
        return np.ones(count, dtype=bool)
    return np.asarray(ood_scores) <= trust.ood_threshold


RULES = ("mean", "product")


def combine_visit(logits: np.ndarray, ood_scores: np.ndarray | None, trust: Trust, rule: str = "mean") -> VisitAnswer:
    """The answer of a visit from its photos' logits (N, K) and OOD scores (N,), by ``rule`` (:data:`RULES`)."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / trust.temperature, axis=1)
    return combine_log_probabilities(log_p, accepted_mask(ood_scores, trust, len(log_p)), trust.unsure_below, rule)


def combine_log_probabilities(
    log_p: np.ndarray, accepted: np.ndarray, unsure_below: float, rule: str = "mean"
) -> VisitAnswer:
    """:func:`combine_visit` from calibrated log-probabilities (N, K) and the OOD gate's verdicts (N,) bools.

    The web app stores each photo's calibrated probabilities and combines a visit from them.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    log_p, accepted = np.asarray(log_p, dtype=np.float64), np.asarray(accepted, dtype=bool)
    if not accepted.any():
        return VisitAnswer(softmax(log_p.mean(0)), OUT_OF_DISTRIBUTION, 0)
    votes = log_p[accepted]
    combined = softmax(votes.mean(0) if rule == "mean" else votes.sum(0))
    status = UNSURE if combined.max() < unsure_below else OK
    return VisitAnswer(combined, status, int(accepted.sum()))
