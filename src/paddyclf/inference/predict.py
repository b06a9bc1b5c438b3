"""``paddyclf predict``: top-k classes for image files and folders, batched, as a CSV.

Every row has a ``status``: the verdict (``ok``, ``unsure``, ``out_of_distribution``; see
:mod:`paddyclf.trust`) with a ``message`` in plain words, and the top-k classes with their
calibrated probabilities either way. An unreadable file gets ``error: ...``; it never stops the run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import Sample, collect_images, make_loader
from ..errors import UserError
from ..fileio import atomic_path
from ..trust import MESSAGES
from .loading import load_predictor


def predict_files(
    model_path: str | Path,
    paths: list[str | Path],
    top_k: int = 3,
    batch_size: int = 32,
    backend: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> list[dict]:
    """One dict per file: path, label_1..k, prob_1..k, status (a verdict or ``error: ...``), message, ood_score."""
    predictor = load_predictor(model_path, backend)
    if not 1 <= top_k <= len(predictor.classes):
        raise UserError(f"--top-k must be between 1 and the number of classes ({len(predictor.classes)}); got {top_k}.")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1 (got {batch_size}).")
    files = collect_images(paths)
    size, norm = predictor.image_size, predictor.norm
    loader = make_loader([Sample(p, -1) for p in files], size, norm, False, batch_size, num_workers, seed=0)
    rows: list[dict | None] = [None] * len(files)
    for batch in tqdm(loader, desc="predict", disable=not progress, dynamic_ncols=True):
        for index, failure in zip(batch.failed_indices, batch.failures, strict=True):
            error = failure.removeprefix(f"{files[index]}: ")
            rows[index] = {"path": str(files[index]), "status": f"error: {error}"}
        if batch.images is None:
            continue
        diagnosis = predictor.diagnose(batch.images)
        top_p, top_i = torch.from_numpy(diagnosis.probabilities).topk(top_k, dim=1)
        for index, p_row, i_row, status, score in zip(
            batch.indices.tolist(), top_p.tolist(), top_i.tolist(), diagnosis.statuses, diagnosis.scores(), strict=True
        ):
            row = {"path": str(files[index]), "status": status, "message": MESSAGES[status]}
            row["ood_score"] = "" if score is None else round(score, 6)
            for rank, (p, i) in enumerate(zip(p_row, i_row, strict=True), 1):
                row[f"label_{rank}"], row[f"prob_{rank}"] = predictor.classes[i], round(p, 6)
            rows[index] = row
    return [r for r in rows if r is not None]


def write_predictions(rows: list[dict], output: str | Path, top_k: int) -> Path:
    ranks = [f"{kind}_{r}" for r in range(1, top_k + 1) for kind in ("label", "prob")]
    fields = ["path", *ranks, "status", "message", "ood_score"]
    with atomic_path(output) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return Path(output)
