"""``paddyclf retrain``: the experts' reviews become a candidate model, judged beside the champion.

Top to bottom:

1. the reviewed photos of the serve history (``serve-export``'s dataset, in ``OUT/reviewed``);
2. the audit over the base dataset and those photos together: copies of base valid or test photos
   never enter training (:mod:`.field_split`);
3. the new photos, by group, into train and a field test split that only grows;
4. a candidate fine-tuned from the champion's weights (``--from-scratch``: from ImageNet's) on the base
   train split plus the new train photos, selected and calibrated on the base valid split (``train``);
5. champion and candidate on the same photos, paired: the base test split and the field test split,
   McNemar's exact test (:func:`paddyclf.registry.run_gate`, which ``registry promote`` runs again);
6. the report (``retrain.md``, ``retrain.json``, ``retrain.png``, ``changed_<split>.csv``), and the
   candidate registered as the next version, its parent the champion. Promoting it is a separate,
   gated step: ``paddyclf registry promote``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import class_names, load_checkpoint
from ..data import load_label2id, read_metadata, resolve_samples
from ..data.audit import audit_images
from ..errors import UserError
from ..fileio import write_csv, write_json
from ..options import option
from ..registry import (
    DEFAULT_MAX_DROP,
    DEFAULT_MAX_FIELD_DROP,
    ModelRegistry,
    NewVersion,
    register_checkpoint,
    run_gate,
)
from ..serve.export import export_reviewed
from ..training.config import TrainConfig
from ..training.run import train
from .field_split import EXCLUDED, FIELD_TEST, TRAIN, ReviewedPhoto, assign_roles, assignment_rows, read_assignment
from .report import write_report

ASSIGNMENT_ARTIFACT = "report/field_assignment.csv"
# the architecture a fine-tuned candidate inherits from its champion (TrainConfig field -> checkpoint key)
INHERITED = {"model": "architecture", "image_size": "image_size", "heads": "heads", "reduction": "reduction",
             "backbone": "backbone"}  # fmt: skip


@dataclass
class RetrainConfig:
    registry: str = option(None, "MLflow model registry (a folder or a tracking URI) holding --name", required=True)
    name: str = option(None, "registered model name; its champion is fine-tuned and judged against", required=True)
    data_dir: str = option(None, "the serve history (`paddyclf serve --data-dir`) with the experts' reviews",
                           required=True)  # fmt: skip
    field_test_fraction: float = option(0.2, "share of new photo groups that join the field test split")
    from_scratch: bool = option(
        False,
        "train the candidate from ImageNet weights instead of fine-tuning the champion (fine-tuning keeps the "
        "champion's architecture and image size, whatever --model and --image-size say)",
    )
    output_dir: str = option("retrain", "where the candidate, its data and the report go")

    def validate(self) -> None:
        if not 0 < self.field_test_fraction < 1:
            raise UserError(f"--field-test-fraction must be in (0, 1) (got {self.field_test_fraction}).")


@dataclass
class BasePhoto:
    path: Path
    label: str
    split: str


def base_photos(metadata: Path, label2id: dict[str, int]) -> list[BasePhoto]:
    names = class_names(label2id)
    tagged = resolve_samples(read_metadata(metadata), metadata.resolve().parent, label2id)
    if not any(split == "test" for _, split in tagged):
        raise UserError(f"{metadata} has no test rows: the gate judges both models on a base test split.")
    return [BasePhoto(s.path, names[s.label], split or TRAIN) for s, split in tagged]


def previous_assignment(registry: ModelRegistry, champion, folder: Path) -> dict[str, str]:
    """The champion's field assignment (empty when it was not made by retrain)."""
    try:
        path = registry.client.download_artifacts(champion.run_id, ASSIGNMENT_ARTIFACT, str(folder))
    except Exception:  # noqa: BLE001 - MLflow raises its own or OSError for a missing artifact: no history yet
        return {}
    return read_assignment(Path(path))


def reviewed_dataset(data_dir: str, out: Path, classes: list[str]) -> list[dict]:
    """``serve-export`` of the history into ``out``; its rows, each with the photo's sha256."""
    shutil.rmtree(out, ignore_errors=True)
    export_reviewed(data_dir, out)
    rows = read_metadata(out / "metadata.csv")
    unknown = sorted({r["label"] for r in rows} - set(classes))
    if unknown:
        raise UserError(f"Reviewed labels {', '.join(unknown)} are not classes of the base label map.")
    return [{"path": (out / r["path"]).resolve(), "label": r["label"], "sha256": Path(r["path"]).stem} for r in rows]


def split_reviewed(
    base: list[BasePhoto], reviewed: list[dict], previous: dict[str, str], fraction: float, cache: Path, log
) -> dict[str, str]:
    """The audit over base and reviewed photos, then :func:`.field_split.assign_roles`."""
    log(f"Auditing {len(reviewed)} reviewed photos against {len(base)} base photos ...")
    audit = audit_images(
        [p.path for p in base] + [r["path"] for r in reviewed],
        [p.label for p in base] + [r["label"] for r in reviewed],
        [p.split for p in base] + ["field"] * len(reviewed),
        cache,
        progress=False,
    )
    groups = [str(im.group) if im.group >= 0 else f"unreadable-{k}" for k, im in enumerate(audit.images)]
    base_splits: dict[str, set[str]] = {}
    for photo, group in zip(base, groups, strict=False):
        base_splits.setdefault(group, set()).add(photo.split)
    photos = [ReviewedPhoto(r["sha256"], g) for r, g in zip(reviewed, groups[len(base) :], strict=True)]
    return assign_roles(photos, base_splits, previous, fraction)


def write_datasets(out: Path, base: list[BasePhoto], reviewed: list[dict], roles: dict[str, str]) -> dict[str, Path]:
    """``candidate_metadata.csv`` (base train + new train, base valid) and ``field_test.csv``."""
    fields = ["path", "label", "split"]
    learn = [{"path": str(p.path.resolve()), "label": p.label, "split": p.split} for p in base if p.split != "test"]
    learn += [{"path": str(r["path"]), "label": r["label"], "split": "train"} for r in reviewed
              if roles[r["sha256"]] == TRAIN]  # fmt: skip
    field = [{"path": str(r["path"]), "label": r["label"], "split": "test"} for r in reviewed
             if roles[r["sha256"]] == FIELD_TEST]  # fmt: skip
    paths = {"candidate": out / "candidate_metadata.csv", "field_test": out / "field_test.csv"}
    write_csv(paths["candidate"], fields, learn)
    write_csv(paths["field_test"], fields, field)
    return paths


def candidate_config(train_config: TrainConfig, retrain: RetrainConfig, champion_ckpt: dict, paths: dict,
                     label2id: Path, champion_path: Path) -> TrainConfig:  # fmt: skip
    changes = {"metadata": str(paths["candidate"]), "label2id": str(label2id),
               "output_dir": str(Path(retrain.output_dir) / "candidate"), "resume": None}  # fmt: skip
    if not retrain.from_scratch:
        changes["init_from"] = str(champion_path)
        changes.update({field: champion_ckpt["config"][key] for field, key in INHERITED.items()})
    return dataclasses.replace(train_config, **changes)


def run_retrain(retrain: RetrainConfig, train_config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """The whole of ``retrain`` (module docstring); returns the report's dict."""
    retrain.validate()
    out = Path(retrain.output_dir)
    registry = ModelRegistry(retrain.registry)
    champion = registry.champion(retrain.name)
    if champion is None:
        raise UserError(f"{retrain.name!r} has no champion to retrain: `paddyclf registry add` a model first.")
    base_csv, label2id_path = Path(train_config.metadata), Path(train_config.label2id)
    label2id = load_label2id(label2id_path)
    champion_path = registry.checkpoint(champion)
    champion_ckpt = load_checkpoint(champion_path)
    if class_names(champion_ckpt["label2id"]) != class_names(label2id):
        raise UserError(f"The champion answers other classes than {label2id_path}: retrain on its own label map.")
    base = base_photos(base_csv, label2id)
    reviewed = reviewed_dataset(retrain.data_dir, out / "reviewed", class_names(label2id))
    previous = previous_assignment(registry, champion, out / "previous")
    roles = split_reviewed(base, reviewed, previous, retrain.field_test_fraction, out / "fingerprints", log)
    paths = write_datasets(out, base, reviewed, roles)
    counts = {role: sum(r == role for r in roles.values()) for role in (TRAIN, FIELD_TEST, EXCLUDED)}
    log(f"Reviewed photos: {counts[TRAIN]} to train, {counts[FIELD_TEST]} to the field test split, "
        f"{counts[EXCLUDED]} excluded (copies of base valid or test photos).")  # fmt: skip
    config = candidate_config(train_config, retrain, champion_ckpt, paths, label2id_path, champion_path)
    metrics = train(config)
    candidate_path = Path(metrics["ckpt_path"])
    tests = {"base_test": base_csv} | ({"field_test": paths["field_test"]} if counts[FIELD_TEST] else {})
    drops = {"base_test": DEFAULT_MAX_DROP, "field_test": DEFAULT_MAX_FIELD_DROP}
    decision = run_gate(champion_path, candidate_path, tests, drops, out / "evaluation")
    report_dir = out / "report"
    write_csv(report_dir / "field_assignment.csv", ["photo_sha256", "role"], assignment_rows(roles))
    report = {
        "champion": {"name": retrain.name, "version": champion.version, "path": str(champion_path)},
        "candidate": {"path": str(candidate_path), "from_scratch": retrain.from_scratch, "epochs": config.epochs},
        "photos": {
            "reviewed": len(reviewed),
            **counts,
            "field_test_before": sum(r == FIELD_TEST for r in previous.values()),
        },
        "gate_preview": decision.as_dict(),
    }
    write_report(report, out / "evaluation", report_dir)
    new = NewVersion(parent=champion.version, metadata=paths["candidate"], label2id=label2id_path, base_test=base_csv,
                     field_test=paths["field_test"] if counts[FIELD_TEST] else None, report_dir=report_dir)  # fmt: skip
    version = register_checkpoint(registry, candidate_path, retrain.name, new)
    report["candidate"]["version"] = version.version
    write_json(report_dir / "retrain.json", report)
    return report
