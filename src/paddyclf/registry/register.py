"""``paddyclf registry add``: a trained checkpoint becomes the next version of a registered model.

The checkpoint is checked (it loads, and answers the classes of the name's other versions), exported
to ONNX with ``export``'s parity check, and logged with its lineage as the ``model/`` folder of a run;
MLflow then registers that folder as the next version. The first version of a name becomes its
champion.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import class_names, load_checkpoint
from ..errors import UserError
from ..export import export_checkpoint
from ..fileio import file_sha256
from .lineage import lineage
from .store import TAG_PREFIX, ModelRegistry, Version


@dataclass
class NewVersion:
    """What ``registry add`` (and ``retrain``) registers besides the checkpoint itself."""

    parent: int | None = None
    metadata: Path | None = None  # the dataset it was trained on (default: its run's own, when found)
    label2id: Path | None = None
    base_test: Path | None = None  # the CSVs its promotion gate judges it on
    field_test: Path | None = None
    report_dir: Path | None = None  # e.g. the retrain report, logged as ``report/``
    onnx: bool = True


def judging_set_tags(new: NewVersion) -> dict[str, str]:
    """The CSVs whose test rows the gate judges the version on, and their sha256."""
    tags = {}
    for key, path in (("base_test", new.base_test), ("field_test", new.field_test)):
        if path is None:
            continue
        if not Path(path).is_file():
            raise UserError(f"--{key.replace('_', '-')} {path} not found.")
        tags[key] = str(Path(path).resolve())
        tags[f"{key}_sha256"] = file_sha256(path)
    return tags


def check_classes(registry: ModelRegistry, name: str, classes: list[str]) -> None:
    if not registry.has_name(name):
        return
    for version in registry.versions(name)[-1:]:
        known = version.tag("classes")
        if known is not None and known != ",".join(classes):
            raise UserError(
                f"The checkpoint answers {', '.join(classes)}, but the versions of {name!r} answer {known}: "
                "a registered model's versions answer the same classes. Register it under a new --name."
            )


def stage_files(ckpt: dict, checkpoint: Path, new: NewVersion, staging: Path) -> dict[str, str]:
    """Copy and export the version's files into ``staging``; their tags."""
    model_dir = staging / "model"
    model_dir.mkdir(parents=True)
    stem = checkpoint.stem
    shutil.copy2(checkpoint, model_dir / checkpoint.name)
    tags = {"checkpoint": checkpoint.name, "checkpoint_sha256": file_sha256(checkpoint)}
    if new.onnx:
        export_checkpoint(ckpt, model_dir / f"{stem}.onnx", "onnx")
        tags.update(onnx=f"{stem}.onnx", onnx_sha256=file_sha256(model_dir / f"{stem}.onnx"))
    if new.report_dir is not None:
        shutil.copytree(new.report_dir, staging / "report")
    return tags


def register_checkpoint(registry: ModelRegistry, checkpoint: str | Path, name: str, new: NewVersion) -> Version:
    """Register ``checkpoint`` as the next version of ``name``; the first version becomes champion."""
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    classes = class_names(ckpt["label2id"])
    check_classes(registry, name, classes)
    if new.parent is not None:
        registry.version(name, new.parent)  # refuses an unknown parent before any work
    with tempfile.TemporaryDirectory(prefix="paddyclf-registry-") as tmp:
        staging = Path(tmp)
        tags = {
            **stage_files(ckpt, checkpoint, new, staging),
            **lineage(ckpt, checkpoint, new.metadata, new.label2id, new.parent, staging / "lineage"),
            **judging_set_tags(new),
            "classes": ",".join(classes),
            "model": ckpt["config"]["architecture"],
            "image_size": str(ckpt["config"]["image_size"]),
        }
        run_id = log_run(registry, name, staging, ckpt.get("metrics", {}))
    client = registry.client
    if not registry.has_name(name):
        registry.call("creating the model", client.create_registered_model, name,
                      description="paddyclf rice leaf-disease classifier")  # fmt: skip
    source = registry.call("reading the run", client.get_run, run_id).info.artifact_uri + "/model"
    mv = registry.call("registering the version", client.create_model_version, name, source, run_id,
                       tags={TAG_PREFIX + k: v for k, v in tags.items()})  # fmt: skip
    version = registry.version(name, int(mv.version))
    if registry.champion(name) is None:
        from .promotion import Event, move_champion

        move_champion(registry, name, Event("register", None, version.version, reason="the first version of the name"))
        version = registry.version(name, version.version)
    return version


def log_run(registry: ModelRegistry, name: str, staging: Path, metrics: dict) -> str:
    """A finished run in the registry's experiment holding the staged folders as artifacts."""
    client = registry.client
    run = registry.call("starting a run", client.create_run, registry.experiment_id(),
                        run_name=f"{name}-version", tags={"paddyclf.registered_model": name})  # fmt: skip
    run_id = run.info.run_id
    for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
        registry.call("uploading files", client.log_artifacts, run_id, str(folder), folder.name)
    for key, value in metrics.items():
        if isinstance(value, int | float):
            registry.call("logging metrics", client.log_metric, run_id, f"checkpoint/{key}", float(value))
    registry.call("finishing the run", client.set_terminated, run_id)
    return run_id
