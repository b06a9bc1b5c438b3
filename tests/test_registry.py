"""The model registry (MLflow's, in a local folder): versions with lineage, the gate, rollback, crashes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("mlflow")

from paddyclf.cli import main  # noqa: E402
from paddyclf.fileio import file_sha256  # noqa: E402
from paddyclf.registry import (  # noqa: E402
    GateRefusedError,
    ModelRegistry,
    NewVersion,
    PromotionRequest,
    events,
    promote,
    register_checkpoint,
    rollback,
)
from paddyclf.registry import promotion as promotion_module  # noqa: E402
from paddyclf.registry.lineage import photos_fingerprint  # noqa: E402


def wrong_checkpoint(checkpoint: Path, out: Path) -> Path:
    """The same model with its classifier's rows rolled by one: every answer moves to the next class."""
    ckpt = torch.load(checkpoint, weights_only=True)
    for key in ("classifier.weight", "classifier.bias"):
        ckpt["state_dict"][key] = ckpt["state_dict"][key].roll(1, dims=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def answers_as_labels(checkpoint: Path, data: Path, out: Path) -> Path:
    """A test CSV of ``data``'s test photos labelled with ``checkpoint``'s own answers: on it that model
    scores 1.0 and its rolled copy 0.0, so the gate's decision is known in advance."""
    from paddyclf.data import build_transform, load_image
    from paddyclf.inference import load_predictor

    predictor = load_predictor(checkpoint)
    transform = build_transform(predictor.image_size, predictor.norm, train=False)
    rows = [r for r in csv.DictReader((data / "metadata.csv").open()) if r["split"] == "test"]
    paths = [str(data / r["path"]) for r in rows]
    batch = torch.stack([transform(load_image(p)) for p in paths])
    answers = [predictor.classes[i] for i in predictor.logits(batch).argmax(1)]
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows([p, label, "test"] for p, label in zip(paths, answers, strict=True))
    return out


@pytest.fixture(scope="module")
def models(served_checkpoint, tiny_data, tmp_path_factory):
    """(good checkpoint, its rolled copy, a test CSV the good one gets right and the copy gets wrong)."""
    root = tmp_path_factory.mktemp("registry_models")
    wrong = wrong_checkpoint(served_checkpoint, root / "wrong" / "MobileNetV3_Small_BoT_Linear_best.pt")
    return served_checkpoint, wrong, answers_as_labels(served_checkpoint, tiny_data, root / "judge.csv")


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory) -> Path:
    """An empty local registry's database, made once: MLflow creates its tables in about a second."""
    folder = tmp_path_factory.mktemp("empty_registry")
    ModelRegistry(folder).names()
    return folder / "mlflow.db"


@pytest.fixture()
def reg(empty_database, tmp_path) -> Path:
    """A new, empty local registry folder for the test."""
    (tmp_path / "reg").mkdir()
    shutil.copyfile(empty_database, tmp_path / "reg" / "mlflow.db")
    return tmp_path / "reg"


def add(registry_dir: Path, checkpoint: Path, *extra: str) -> None:
    assert main(["registry", "add", str(checkpoint), "--registry", str(registry_dir), "--name", "rice", *extra]) == 0


def test_first_version_is_champion_with_its_files_and_lineage(models, tiny_data, tmp_path, capsys, reg):
    good, _, judge = models
    add(tmp_path / "reg", good, "--metadata", str(tiny_data / "metadata.csv"), "--base-test", str(judge))
    assert "version 1 of 'rice' (champion" in capsys.readouterr().out
    registry = ModelRegistry(tmp_path / "reg")
    version = registry.champion("rice")
    assert version.version == 1 and version.tag("parent_version") == ""
    files = registry.files(version)
    assert file_sha256(files / good.name) == file_sha256(good)
    assert (files / f"{good.stem}.onnx").is_file() and (files / f"{good.stem}.onnx.json").is_file()
    # lineage: the train and valid photos of the metadata, each by its sha256
    rows = [r for r in csv.DictReader((tiny_data / "metadata.csv").open()) if r["split"] in ("train", "valid")]
    expected = [{"split": r["split"], "sha256": file_sha256(tiny_data / r["path"])} for r in rows]
    assert version.tag("photos") == str(len(rows)) == "32"
    assert version.tag("photos_sha256") == photos_fingerprint(expected)
    assert version.tag("metadata_sha256") == file_sha256(tiny_data / "metadata.csv")
    assert version.tag("base_test") == str(judge.resolve())
    assert json.loads(version.tag("config"))["architecture"]["architecture"] == "MobileNetV3_Small_BoT_Linear"
    lineage = registry.client.download_artifacts(version.run_id, "lineage/photos.csv", str(tmp_path))
    with open(lineage) as f:
        assert len(list(csv.DictReader(f))) == 32


def test_gate_refuses_a_worse_candidate_and_accepts_a_better_one(models, tmp_path, capsys, reg):
    good, wrong, judge = models
    registry = ModelRegistry(tmp_path / "reg")
    base = NewVersion(base_test=judge, onnx=False)
    register_checkpoint(registry, good, "rice", base)
    register_checkpoint(registry, wrong, "rice", NewVersion(parent=1, base_test=judge, onnx=False))
    code = main(["registry", "promote", "--registry", str(tmp_path / "reg"), "--name", "rice", "2",
                 "--output-dir", str(tmp_path / "gate")])  # fmt: skip
    assert code == GateRefusedError.exit_code == 1
    assert "refused version 2" in capsys.readouterr().err
    assert registry.champion("rice").version == 1
    refused = events(registry, "rice")[-1]
    assert (refused.action, refused.state, refused.to_version) == ("promote", "refused", 2)
    assert refused.gate["splits"]["base_test"]["candidate_accuracy"] == 0.0
    assert refused.gate["splits"]["base_test"]["champion_accuracy"] == 1.0
    assert json.loads((tmp_path / "gate" / "v1-vs-v2" / "gate.json").read_text())["passed"] is False

    # the other way round: the rolled model is champion, the good one the candidate
    register_checkpoint(registry, wrong, "reversed", base)
    register_checkpoint(registry, good, "reversed", NewVersion(parent=1, base_test=judge, onnx=False))
    result = promote(registry, "reversed", PromotionRequest(2, output_dir=tmp_path / "gate2"))
    assert result["gate"]["passed"] and registry.champion("reversed").version == 2
    assert registry.version("reversed", 2).tag("gate.passed") == "true"
    assert [e.action for e in events(registry, "reversed")] == ["register", "promote"]


def test_force_overrides_the_gate_only_with_a_reason_that_is_kept(models, tmp_path, reg):
    good, wrong, judge = models
    registry = ModelRegistry(tmp_path / "reg")
    register_checkpoint(registry, good, "rice", NewVersion(base_test=judge, onnx=False))
    register_checkpoint(registry, wrong, "rice", NewVersion(base_test=judge, onnx=False))
    with pytest.raises(Exception, match="--force needs --reason"):
        promote(registry, "rice", PromotionRequest(2, force=True))
    promote(registry, "rice", PromotionRequest(2, force=True, reason="field trial", by="lan", output_dir=tmp_path))
    assert registry.champion("rice").version == 2
    assert registry.version("rice", 2).tag("forced_reason") == "field trial"
    last = events(registry, "rice")[-1]
    assert (last.forced, last.by, last.reason) == (True, "lan", "field trial")


def test_rollback_restores_the_previous_champion_and_is_recorded(models, tmp_path, capsys, reg):
    good, _, _ = models
    registry = ModelRegistry(tmp_path / "reg")
    for _ in range(3):
        register_checkpoint(registry, good, "rice", NewVersion(onnx=False))
    promote(registry, "rice", PromotionRequest(2, force=True, reason="a", output_dir=tmp_path))
    promote(registry, "rice", PromotionRequest(3, force=True, reason="b", output_dir=tmp_path))
    assert main(["registry", "rollback", "--registry", str(tmp_path / "reg"), "--name", "rice",
                 "--reason", "farmers report wrong answers"]) == 0  # fmt: skip
    assert registry.champion("rice").version == 2
    last = events(registry, "rice")[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", 3, 2)
    rollback(registry, "rice", 1, "back to the first")
    assert registry.champion("rice").version == 1
    capsys.readouterr()
    assert main(["registry", "list", "--registry", str(tmp_path / "reg")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "rice" and listed[1].startswith("  * v1 ") and listed[3].startswith("    v3 ")
    assert main(["registry", "show", "--registry", str(tmp_path / "reg"), "--name", "rice", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and [e["action"] for e in shown["events"]][-2:] == ["rollback", "rollback"]
    assert shown["events"][-2]["reason"] == "farmers report wrong answers"
    assert main(["registry", "rollback", "--registry", str(tmp_path / "reg"), "--name", "rice", "--to", "9",
                 "--reason", "x"]) == 2  # fmt: skip


def test_a_crash_before_the_alias_moves_leaves_the_old_champion(models, tmp_path, monkeypatch, reg):
    good, _, _ = models
    registry = ModelRegistry(tmp_path / "reg")
    register_checkpoint(registry, good, "rice", NewVersion(onnx=False))
    register_checkpoint(registry, good, "rice", NewVersion(onnx=False))

    def crash(*args):
        raise SystemExit("power cut")

    monkeypatch.setattr(registry, "set_champion", crash)
    with pytest.raises(SystemExit):
        promote(registry, "rice", PromotionRequest(2, force=True, reason="r", output_dir=tmp_path))
    monkeypatch.undo()
    assert registry.champion("rice").version == 1
    assert events(registry, "rice")[-1].state == "interrupted"
    # a crash after the alias moved but before the record says so: the alias is the truth
    real_record = promotion_module.record_event
    calls = []

    def record_then_crash(reg, name, event):
        calls.append(event.state)
        if event.state == "done" and len(calls) > 1:
            raise SystemExit("power cut")
        return real_record(reg, name, event)

    monkeypatch.setattr(promotion_module, "record_event", record_then_crash)
    with pytest.raises(SystemExit):
        promote(registry, "rice", PromotionRequest(2, force=True, reason="r", output_dir=tmp_path))
    monkeypatch.undo()
    assert registry.champion("rice").version == 2
    assert [e.state for e in events(registry, "rice")] == ["done", "interrupted", "done"]
    rollback(registry, "rice", None, "settles the record")
    assert [e.state for e in events(registry, "rice")] == ["done", "interrupted", "done", "done"]
    assert registry.champion("rice").version == 1


@pytest.mark.slow
def test_sigkill_during_promotion_leaves_a_consistent_registry(models, tmp_path, reg):
    good, wrong, judge = models
    registry = ModelRegistry(tmp_path / "reg")
    register_checkpoint(registry, good, "rice", NewVersion(base_test=judge, onnx=False))
    register_checkpoint(registry, good, "rice", NewVersion(base_test=judge, onnx=False))
    database = tmp_path / "reg" / "mlflow.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "paddyclf", "registry", "promote", "--registry", str(tmp_path / "reg"),
         "--name", "rice", "2", "--output-dir", str(tmp_path / "gate")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    # kill it the moment its move begins (the pending event is written), or mid-gate if we miss that
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            pending = db.execute(
                "SELECT count(*) FROM registered_model_tags WHERE key LIKE 'paddyclf.event.%' AND value LIKE "
                "'%\"pending\"%'"
            ).fetchone()[0]
        if pending:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    fresh = ModelRegistry(tmp_path / "reg")
    champion = fresh.champion("rice").version
    assert champion in (1, 2)
    states = [e.state for e in events(fresh, "rice")]
    assert states[0] == "done" and all(s in ("done", "interrupted") for s in states)
    promoted = [e for e in events(fresh, "rice") if e.action == "promote" and e.state == "done"]
    assert bool(promoted) == (champion == 2)
    assert fresh.checkpoint(fresh.champion("rice")).is_file()
