"""The model a browser runs: the served model as ONNX, exported once and cached by the checkpoint's sha256.

ONNX Runtime Web runs the graph ``paddyclf export --format onnx`` writes: calibrated logits and the
out-of-distribution score, with the temperature, thresholds, classes and preprocessing in its
sidecar JSON, so a browser can give the server's verdicts. A checkpoint is exported, and checked as
``paddyclf export`` checks it, the first time it is needed: ``<data-dir>/browser/<sha256>.onnx``.
Later starts and the other ``--workers`` reuse that file (a file lock keeps two processes from
exporting at once). An ONNX model is served as it is. OpenVINO, LiteRT and TorchScript models have
no browser model; the page then diagnoses through the API, as it always has.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from ..fileio import file_sha256
from ..inference.runtimes import read_sidecar

BROWSER_FOLDER = "browser"
CHECKPOINT_SUFFIXES = (".pt", ".pth")
_export_lock = threading.Lock()  # threads of one process; the file lock covers the other processes


@dataclass(frozen=True)
class BrowserModel:
    path: Path
    sha256: str
    size_bytes: int
    metadata: dict  # the export's sidecar: classes, preprocessing, trust, outputs

    def describe(self) -> dict:
        """What ``/api/v1/model`` says of it."""
        return {"url": "/browser/model.onnx", "sha256": self.sha256, "size_bytes": self.size_bytes}


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: one server process is the usual case there
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_onnx_path(data_dir: str | Path, checkpoint_sha256: str) -> Path:
    return Path(data_dir) / BROWSER_FOLDER / f"{checkpoint_sha256}.onnx"


def browser_model(model: str | Path, model_sha256: str, data_dir: str | Path) -> BrowserModel | None:
    """The browser's model for the served ``model`` (exporting a checkpoint the first time), or None."""
    suffix = Path(model).suffix.lower()
    if suffix == ".onnx":
        path = Path(model)
    elif suffix in CHECKPOINT_SUFFIXES:
        path = cached_onnx_path(data_dir, model_sha256)
        if not path.is_file():
            with _export_lock, _file_lock(path.with_suffix(".lock")):
                if not path.is_file():  # another process may have finished it while this one waited
                    from ..export import export_model

                    export_model(model, path, "onnx")
    else:
        return None
    return BrowserModel(path, file_sha256(path), path.stat().st_size, read_sidecar(path) or {})
