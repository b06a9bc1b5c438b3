"""`paddyclf retrain`: reviewed field photos -> a candidate, never trained on a copy of a base test photo,
with a field test split that only grows, judged beside the champion and registered as its child."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("mlflow")
pytest.importorskip("fastapi")

from conftest import REVIEW_TOKEN, tiny_args  # noqa: E402
from serve_helpers import upload  # noqa: E402

from paddyclf.cli import main  # noqa: E402
from paddyclf.data.synthetic import make_dataset  # noqa: E402
from paddyclf.lifecycle.field_split import EXCLUDED, FIELD_TEST, TRAIN, ReviewedPhoto, assign_roles  # noqa: E402
from paddyclf.registry import ModelRegistry, NewVersion, register_checkpoint  # noqa: E402

AUTH = {"authorization": f"Bearer {REVIEW_TOKEN}"}


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def resized_jpeg(path: Path, scale: float = 1.5, quality: int = 80) -> bytes:
    """A near-copy as a phone would send it again: resized and re-encoded."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_roles_follow_copies_and_the_field_test_split_only_grows():
    photos = [ReviewedPhoto(s, g) for s, g in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "4")]]
    base = {"1": {"test"}, "2": {"train"}, "3": {"valid"}}
    roles = assign_roles(photos, base, previous={"d": FIELD_TEST, "e": TRAIN}, fraction=0.5)
    # a copy of a base test or valid photo never trains; one of a train photo trains, never tests;
    # a group tested before stays in test, and its member trained on before is trained on no more
    assert roles == {"a": EXCLUDED, "b": TRAIN, "c": EXCLUDED, "d": FIELD_TEST, "e": EXCLUDED}
    many = [ReviewedPhoto(f"{k:064x}", str(k)) for k in range(400)]
    first = assign_roles(many, {}, {}, 0.2)
    assert 0.14 < sum(r == FIELD_TEST for r in first.values()) / 400 < 0.26
    assert assign_roles(many, {}, {}, 0.2) == first  # the same photos, the same split, on every run
    grown = assign_roles(many, {}, first, 0.5)
    assert all(grown[s] == FIELD_TEST for s, r in first.items() if r == FIELD_TEST)


@pytest.mark.slow
def test_retrain_excludes_copies_of_base_test_photos_and_registers_a_judged_child(
    served_checkpoint, tiny_data, make_client, tmp_path
):
    registry = ModelRegistry(tmp_path / "registry")
    register_checkpoint(registry, served_checkpoint, "rice", NewVersion(base_test=tiny_data / "metadata.csv"))
    client = make_client(model=None, registry=str(registry.target), name="rice")
    base = rows(tiny_data / "metadata.csv")
    test_photo = next(r for r in base if r["split"] == "test")
    train_photo = next(r for r in base if r["split"] == "train")
    field = make_dataset(tmp_path / "field", per_class=5, size=64, seed=7).parent  # new leaves, never seen
    planted = {
        "copy_of_test": (resized_jpeg(tiny_data / test_photo["path"]), test_photo["label"]),
        "copy_of_train": (resized_jpeg(tiny_data / train_photo["path"]), train_photo["label"]),
    }
    uploads = {
        **planted,
        **{r["path"]: ((field / r["path"]).read_bytes(), r["label"]) for r in rows(field / "metadata.csv")},
    }
    stored = {}
    for name, (data, label) in uploads.items():
        item = client.post("/api/v1/diagnose", files=[upload(f"{Path(name).name}.jpg", data)]).json()["results"][0]
        assert (
            client.post(f"/api/v1/diagnoses/{item['id']}/review", json={"label": label}, headers=AUTH).status_code
            == 200
        )
        stored[name] = item["photo_sha256"]

    out = tmp_path / "retrain"
    args = ["retrain", "--registry", str(registry.target), "--name", "rice", "--data-dir", str(tmp_path / "data"),
            "--output-dir", str(out), "--field-test-fraction", "0.3"]  # fmt: skip
    flags = tiny_args(tiny_data, out, "--epochs", "1")
    flags = flags[: flags.index("--output-dir")]  # retrain chooses the candidate's folder
    assert main([*args, *flags]) == 0

    roles = {r["photo_sha256"]: r["role"] for r in rows(out / "report" / "field_assignment.csv")}
    assert roles[stored["copy_of_test"]] == EXCLUDED
    assert roles[stored["copy_of_train"]] == TRAIN
    trained = {Path(r["path"]).stem for r in rows(out / "candidate_metadata.csv")}
    tested = {Path(r["path"]).stem for r in rows(out / "field_test.csv")}
    assert stored["copy_of_test"] not in trained | tested
    assert stored["copy_of_train"] in trained and stored["copy_of_train"] not in tested
    assert tested and not tested & trained
    assert {sha for sha, role in roles.items() if role == FIELD_TEST} == tested

    candidate = registry.version("rice", 2)
    assert candidate.tag("parent_version") == "1" and not candidate.is_champion
    assert candidate.tag("field_test") == str((out / "field_test.csv").resolve())
    report = json.loads((out / "report" / "retrain.json").read_text())
    assert set(report["gate_preview"]["splits"]) == {"base_test", "field_test"}
    assert report["gate_preview"]["splits"]["field_test"]["photos"] == len(tested)
    assert (out / "report" / "retrain.png").is_file() and (out / "report" / "changed_base_test.csv").is_file()
    assert "field test" in (out / "report" / "retrain.md").read_text()

    # the candidate becomes champion; the next retrain keeps every field-test photo in the field test split
    assert main(["registry", "promote", "--registry", str(registry.target), "--name", "rice", "2", "--force",
                 "--reason", "test", "--output-dir", str(tmp_path / "gate")]) == 0  # fmt: skip
    again = tmp_path / "retrain2"
    args[args.index(str(out))] = str(again)
    assert main([*args, "--field-test-fraction", "0.9", *flags]) == 0
    roles_again = {r["photo_sha256"]: r["role"] for r in rows(again / "report" / "field_assignment.csv")}
    assert all(roles_again[sha] == FIELD_TEST for sha in tested)
    assert all(roles_again[sha] == role for sha, role in roles.items() if role == TRAIN)
    assert registry.version("rice", 3).tag("parent_version") == "2"


def test_retrain_refuses_a_registry_without_champion_or_a_base_without_test_rows(tmp_path, tiny_data, capsys):
    args = ["retrain", "--registry", str(tmp_path / "registry"), "--name", "rice", "--data-dir", str(tmp_path),
            "--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tiny_data / "label2id.json")]  # fmt: skip
    assert main(args) == 2
    assert "has no model named 'rice'" in capsys.readouterr().err
    assert main([*args, "--field-test-fraction", "1.5"]) == 2
    assert "--field-test-fraction must be in (0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_lifecycle_runs_the_loop_and_swaps_under_load_without_errors(tiny_data, tmp_path):
    """The whole loop on the tiny set: champion, field photos served, oracle review, retrain, gate, swap."""
    output = tmp_path / "lifecycle"
    flags = ["--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tiny_data / "label2id.json"),
             "--train-limit", "8", "--epochs", "1", "--image-size", "64", "--batch-size", "8", "--num-workers", "0",
             "--device", "cpu", "--seeds", "0", "--review", "10", "--clients", "2", "--settle", "0.5",
             "--output", str(output)]  # fmt: skip
    assert main(["benchmark", "lifecycle", *flags]) == 0
    result = json.loads(output.with_suffix(".json").read_text())
    assert result["setup"]["field_photos_posted"] == 16  # the 24 train photos less the 8 of the champion
    assert result["review"]["reviewed"] == 10
    photos = result["retrain"]["photos"]
    assert photos["train"] + photos["field_test"] + photos["excluded"] == 10
    assert set(result["retrain"]["evaluation"]["splits"]) >= {"base_test"}
    text = output.with_suffix(".md").read_text()
    if result["promoted"]:  # the tiny models mostly tie, so the gate passes them; then the swap is measured
        swap = result["swap"]
        assert swap["errors"] == 0 and swap["reload"]["status"] == "swapped" and swap["new_version_after_swap"]
        assert set(swap["answered_by"]) <= {"rice/v1", "rice/v2"} and swap["requests"] > swap["requests_during_swap"]
        assert "Swap under load" in text
    else:
        assert result["swap"] is None and "Gate: refused" in text


def test_init_from_refuses_weights_that_do_not_fit(served_checkpoint, tiny_data, tmp_path, capsys):
    flags = tiny_args(tiny_data, tmp_path, "--init-from", str(served_checkpoint))
    assert main(["train", *flags, "--image-size", "96"]) == 2
    assert "trained with other settings (image_size 64 vs 96)" in capsys.readouterr().err
