"""The INT8 search of the NNCF formats (ONNX, OpenVINO): NNCF's own ``quantize_with_accuracy_control``.

NNCF 3.4 runs it on both backends. It quantizes with the same recipe as the plain export (MIXED
preset, full bias correction), then, while the drop exceeds ``max_drop``: ranks every group of
quantizers by how much the validation accuracy recovers on a ranking subset (the photos the
float and INT8 models disagree on most) when that group alone is reverted to float, and reverts
the top group, one per iteration, measuring the whole validation split after each (it steps back
and re-ranks when a revert made things worse). ``--search-evaluations`` caps those iterations
(``max_num_iterations``): each costs one pass over the validation photos. The ranking is the
fixed cost on top: one ranking-subset pass per quantizer group, plus NNCF's own passes of the
float and fully quantized models. The counts of both kinds of pass are reported.

The metric handed to NNCF is top-1 accuracy with per-photo correctness (NNCF's "metric mode"),
so ``max_drop`` is the gate's, as a fraction: ``D / 100``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .int8_search import SearchRequest

RANKING_SUBSET = 64  # photos per ranking pass: the ones float and INT8 disagree on most
BATCH = 32


@dataclass
class PassCounter:
    """How many validation passes NNCF asked for: over every photo, and over a subset (ranking)."""

    photos: int
    full: int = 0
    subset: int = 0

    def count(self, seen: int) -> None:
        if seen >= self.photos:
            self.full += 1
        else:
            self.subset += 1


def quantize_with_accuracy_control(
    float_model,
    calibration: torch.Tensor,
    request: SearchRequest,
    run: Callable[[object, np.ndarray], np.ndarray],
    feed: Callable[[np.ndarray], object] = lambda images: images,
):
    """NNCF's accuracy-controlled INT8 of ``float_model`` (an ``onnx.ModelProto`` or ``ov.Model``).

    ``run(inference_model, images)`` returns the logits of NCHW float32 ``images`` under the model
    NNCF hands the validation function; ``feed(images)`` is the backend's input for NNCF's own
    inference (ONNX: ``{"input": images}``). Returns ``(quantized_model, counter, seconds)``.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    images, labels = request.images, request.labels
    counter = PassCounter(len(labels))

    def validate(inference_model, items: Iterable) -> tuple[float, list[float]]:
        items = list(items)
        batch = np.concatenate([image for image, _ in items])
        logits = np.concatenate([run(inference_model, batch[i : i + BATCH]) for i in range(0, len(batch), BATCH)])
        correct = (logits.argmax(1) == np.array([label for _, label in items])).astype(float)
        counter.count(len(items))
        return float(correct.mean()), correct.tolist()

    items = [(image[None].numpy(), int(label)) for image, label in zip(images, labels, strict=True)]
    start = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        float_model,
        nncf.Dataset([feed(image[None].numpy()) for image in calibration]),
        nncf.Dataset(items, lambda item: feed(item[0])),
        validate,
        max_drop=request.max_drop / 100,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
        fast_bias_correction=False,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=request.budget,
            ranking_subset_size=min(RANKING_SUBSET, len(labels)),
            num_ranking_workers=1,  # parallel ranking copies the model per worker; 2 cores gain nothing
        ),
    )
    return quantized, counter, time.perf_counter() - start


def nncf_search_record(
    request: SearchRequest, plain_layers: set[str], searched_layers: set[str], counter: PassCounter, seconds: float
) -> dict:
    """The search's record (see :func:`paddyclf.export.int8_search.search_record`) from NNCF's result."""
    kept = sorted(plain_layers - searched_layers)
    return {
        "searched": True,
        "method": "nncf.quantize_with_accuracy_control",
        "plain_recipe_drop_points": request.plain_drop,
        "kept_layers": kept,
        "kept_as": "float",
        "layers_total": len(plain_layers),
        "evaluations": counter.full,
        "ranking_evaluations": counter.subset,
        "budget_evaluations": request.budget,
        "seconds": seconds,
    }
