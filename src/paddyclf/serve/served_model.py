"""The model a server answers with now, and its replacement by a newly promoted version without downtime.

A :class:`ServedModel` is one loaded model with its own dynamic batcher. A request holds the model it
started with from decoding to storing (:meth:`ServedModel.in_use`), so its photos are transformed,
batched and recorded by one model, and its reply names that model's version.

Swapping follows Triton's explicit model control: the new version is loaded *beside* the old one and
checked as ``paddyclf export`` checks a file (:func:`check_version`: its ONNX export against its
checkpoint on a probe batch: logits, out-of-distribution score and verdicts; all finite); a version
that fails keeps the old one serving. Then one reference is replaced: requests that began on the old
model finish on it, new ones start on the new one, and the old model's batcher closes after its last
request is answered (:meth:`ServedModel.retire`). Nothing waits for the load and nothing is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import class_names, load_checkpoint
from ..data import build_transform
from ..errors import UserError
from ..export import parity_problem
from ..export.graph import example_batch
from ..fileio import file_sha256
from ..inference import load_predictor
from ..trust.verdict import checkpoint_trust, trusted_model
from .batching import DynamicBatcher

PARITY_TOLERANCE = 1e-3  # as `paddyclf export` checks a float ONNX file
RETIRE_TIMEOUT_S = 120.0  # a request still on the old model after this is answered with an error


@dataclass(frozen=True)
class ModelSource:
    """Where a served model comes from: a file, or a version of a registered model."""

    path: Path
    version: str | None = None  # 'name/vN' for a registry version
    onnx: Path | None = None  # the version's checked ONNX export, if it has one


@dataclass
class ServedModel:
    source: ModelSource
    sha256: str
    predictor: object
    transform: Callable
    batcher: DynamicBatcher
    retired: bool = False
    _users: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    @property
    def version(self) -> str | None:
        return self.source.version

    @property
    def path(self) -> Path:
        return self.source.path

    @contextmanager
    def in_use(self) -> Iterator[ServedModel | None]:
        """Hold this model for one request, so that it is not retired under it; None when it was retired
        between the request reading the reference and holding it (the request takes the new model)."""
        with self._idle:
            held = not self.retired
            self._users += held
        try:
            yield self if held else None
        finally:
            if held:
                with self._idle:
                    self._users -= 1
                    self._idle.notify_all()

    def retire(self, timeout: float = RETIRE_TIMEOUT_S) -> None:
        """Refuse new holders, then close the batcher once every request that held it has its answer."""
        with self._idle:
            self.retired = True
            self._idle.wait_for(lambda: self._users == 0, timeout)
        self.batcher.close()


def run_batch(predictor, images: torch.Tensor) -> list[tuple[np.ndarray, float | None, str]]:
    diagnosis = predictor.diagnose(images)
    return list(zip(diagnosis.probabilities, diagnosis.scores(), diagnosis.statuses, strict=True))


def load_served_model(source: ModelSource, threads: int, max_batch: int, max_wait_s: float) -> ServedModel:
    predictor = load_predictor(source.path, threads=threads)
    transform = build_transform(predictor.image_size, predictor.norm, train=False)
    batcher = DynamicBatcher(partial(run_batch, predictor), max_batch, max_wait_s)
    return ServedModel(source, file_sha256(source.path), predictor, transform, batcher)


def check_version(source: ModelSource, classes: list[str] | None) -> None:
    """Refuse (UserError) a version that cannot replace the served one: other classes, outputs that are
    not finite, or an ONNX export that disagrees with its checkpoint (``export``'s parity check)."""
    where = source.version or str(source.path)
    if source.path.suffix.lower() not in (".pt", ".pth"):
        return  # an export file was checked when it was written; loading it is its check
    ckpt = load_checkpoint(source.path)
    found = class_names(ckpt["label2id"])
    if classes is not None and found != classes:
        raise UserError(f"{where} answers {', '.join(found)}, not the served classes {', '.join(classes)}.")
    model = trusted_model(ckpt)
    probe = example_batch(ckpt["config"]["image_size"], batch=3, seed=1)
    with torch.no_grad():
        expected = [t.numpy() for t in model(probe)]
    if not all(np.isfinite(t).all() for t in expected):
        raise UserError(f"{where} gives outputs that are not finite numbers (NaN or infinity): its weights are broken.")
    if source.onnx is not None:
        problem = parity_problem(expected, load_predictor(source.onnx).outputs(probe), checkpoint_trust(ckpt),
                                 PARITY_TOLERANCE)  # fmt: skip
        if problem:
            raise UserError(f"The ONNX export of {where} disagrees with its checkpoint: {problem}.")


def registry_champion(registry: str, name: str) -> ModelSource:
    """The champion of ``name`` in ``registry``, its files downloaded (once) and intact."""
    from ..registry import ModelRegistry

    store = ModelRegistry(registry)
    champion = store.champion(name)
    if champion is None:
        raise UserError(f"{name!r} in registry {registry} has no champion: `paddyclf registry promote` one.")
    return ModelSource(store.checkpoint(champion), f"{name}/v{champion.version}", store.onnx(champion))
