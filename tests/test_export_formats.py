"""Every export format: written only after its check, its metadata round trip, and every tool running it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("litert_torch")

from paddyclf.checkpoint import load_checkpoint  # noqa: E402
from paddyclf.cli import main  # noqa: E402
from paddyclf.data import Sample, make_loader  # noqa: E402
from paddyclf.data.nonleaf import make_nonleaf_images  # noqa: E402
from paddyclf.errors import UserError  # noqa: E402
from paddyclf.export import FORMATS, ExportOptions, export_model  # noqa: E402
from paddyclf.inference import load_predictor  # noqa: E402
from paddyclf.inference.runtimes import read_sidecar, sidecar_path  # noqa: E402

pytestmark = pytest.mark.slow  # every format exported once (about a minute): `make test`, not `make test-fast`

FLOAT_FORMATS = [f for f, spec in FORMATS.items() if not spec.int8]
INT8_FORMATS = [f for f, spec in FORMATS.items() if spec.int8]


@pytest.fixture(scope="module")
def checkpoint(served_checkpoint) -> Path:
    """A calibrated BoT-Linear (training calibrates by default): the session's, trained once for every module."""
    return served_checkpoint


@pytest.fixture(scope="module")
def exported(checkpoint, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """Every format, exported once through the CLI (INT8 calibrated and gated on the tiny data)."""
    out = tmp_path_factory.mktemp("exports")
    paths = {}
    for fmt, spec in FORMATS.items():
        path = out / f"model-{fmt}{spec.suffixes[0]}"
        args = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--output", str(path)]
        if spec.int8:  # 8 valid photos of a 2-epoch model: the gate is tested on its own below
            args += ["--calibration", str(tiny_data / "metadata.csv"), "--max-accuracy-drop", "100"]
        assert main(args) == 0, fmt
        paths[fmt] = path
    return paths


@pytest.fixture(scope="module")
def photos(tiny_data, tmp_path_factory) -> list[Path]:
    nonleaf = tmp_path_factory.mktemp("nonleaf")
    make_nonleaf_images(nonleaf, per_kind=1, size=64)
    return sorted((tiny_data / "images").rglob("*.jpg"))[:12] + sorted(nonleaf.rglob("*.png"))


def diagnose(path: Path, photos: list[Path]):
    predictor = load_predictor(path)
    batch = next(iter(make_loader([Sample(p, 0) for p in photos], 64, predictor.norm, False, 64, 0, seed=0)))
    return predictor.diagnose(batch.images)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_writes_its_file_and_the_app_contract_beside_it(exported, checkpoint, fmt):
    path = exported[fmt]
    meta = read_sidecar(path)
    ckpt = load_checkpoint(checkpoint)
    assert meta["format"] == fmt and meta["classes"] == ["healthy", "brown_spot", "blast", "leaf_blight"]
    assert meta["image_size"] == 64 and meta["layout"] == FORMATS[fmt].layout
    assert meta["preprocessing"]["center_crop"] == 64 and len(meta["preprocessing"]["mean"]) == 3
    assert meta["trust"] == ckpt["trust"] and meta["outputs"] == ["logits", "ood_score"]
    assert meta["precision"] == ("int8" if FORMATS[fmt].int8 else "float32")
    if FORMATS[fmt].int8:  # the gate passed the plain recipe: no search; sizes against the float ONNX's
        files = [path.with_suffix(s) for s in (path.suffix, *FORMATS[fmt].companions)]
        assert meta["int8"]["searched"] is False and meta["int8"]["evaluations"] == 0
        assert meta["int8"]["size_bytes"] == sum(f.stat().st_size for f in files)
        assert meta["int8"]["size_vs_float_onnx"] == meta["int8"]["size_bytes"] / meta["int8"]["float_onnx_bytes"]
    for companion in FORMATS[fmt].companions:
        assert path.with_suffix(companion).is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_float_formats_give_pytorchs_logits_and_verdicts(exported, checkpoint, photos, fmt):
    expected, actual = diagnose(checkpoint, photos), diagnose(exported[fmt], photos)
    np.testing.assert_allclose(actual.probabilities, expected.probabilities, atol=1e-4)
    assert actual.statuses == expected.statuses
    np.testing.assert_allclose(actual.ood_scores, expected.ood_scores, rtol=1e-3)


@pytest.mark.parametrize("fmt", INT8_FORMATS)
def test_int8_formats_stay_close_to_pytorch(exported, checkpoint, photos, fmt):
    expected, actual = diagnose(checkpoint, photos), diagnose(exported[fmt], photos)
    agreement = np.mean(expected.probabilities.argmax(1) == actual.probabilities.argmax(1))
    assert agreement >= 0.75, agreement
    assert len(actual.statuses) == len(photos)


@pytest.mark.parametrize("fmt", ["onnx", "openvino-int8", "tflite", "torchscript"])
def test_predict_and_evaluate_run_through_an_exported_file(exported, checkpoint, tiny_data, tmp_path, fmt):
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(exported[fmt]), str(tiny_data / "images"), "--output", str(preds)]) == 0
    with preds.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and all(r["status"] in ("ok", "unsure", "out_of_distribution") for r in rows)
    reports = {}
    for name, model in (("checkpoint", checkpoint), (fmt, exported[fmt])):
        out = tmp_path / name
        assert main(["evaluate", "--checkpoint", str(model), "--metadata", str(tiny_data / "metadata.csv"),
                     "--output-dir", str(out)]) == 0  # fmt: skip
        reports[name] = json.loads((out / "evaluation.json").read_text())
    assert reports[fmt]["num_images"] == reports["checkpoint"]["num_images"] == 8
    if not FORMATS[fmt].int8:
        assert reports[fmt]["accuracy"] == reports["checkpoint"]["accuracy"]
        assert reports[fmt]["trust"]["verdicts"] == reports["checkpoint"]["trust"]["verdicts"]


class ScaledLinear(torch.nn.Module):
    """A small module with a parameter, a buffer and a plain attribute (pickled by name: module level)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("mean", torch.zeros(2))
        self.temperature = 1.0


def test_a_litert_conversion_is_reused_only_for_the_same_module_and_input_shape():
    """``write_tflite`` reuses a conversion by this key: anything that changes the graph changes it."""
    from paddyclf.export.to_tflite import module_key

    torch.manual_seed(0)
    model, example = ScaledLinear(), torch.zeros(1, 8, 8, 3)
    key = module_key(model, example)
    twin = ScaledLinear()
    twin.load_state_dict(model.state_dict())
    assert key is not None and module_key(twin, example) == key  # built again with the same state
    changed = [ScaledLinear(), ScaledLinear(), ScaledLinear()]
    for other in changed:
        other.load_state_dict(model.state_dict())
    changed[0].mean += 1  # a buffer
    changed[1].temperature = 2.0  # a plain attribute
    with torch.no_grad():
        changed[2].linear.weight[0, 0] += 1e-6  # one weight, a little
    assert len({key, *(module_key(other, example) for other in changed)}) == 4
    assert module_key(model, torch.zeros(1, 16, 16, 3)) != key
    model.hook = lambda x: x  # a lambda cannot be pickled: no key, so nothing is cached
    assert module_key(model, example) is None


def test_a_failed_int8_gate_searches_then_names_the_closest_model_and_writes_nothing(checkpoint, tiny_data, tmp_path):
    output = tmp_path / "model.tflite"
    options = ExportOptions(calibration=tiny_data / "metadata.csv", max_accuracy_drop=-100.0, search_evaluations=2)
    with pytest.raises(UserError, match="Nothing was written") as refused:  # -100 points: no model can pass
        export_model(checkpoint, output, "tflite-int8", options)
    message = str(refused.value)  # every trial ties at the same drop on 8 photos: the closest may be any of them
    assert re.search(r"\(2 evaluation\(s\) of the validation photos\) came closest with \d+ of \d+ layers", message)
    assert list(tmp_path.iterdir()) == []  # no model, no sidecar, no staging folder


def test_export_refuses_a_wrong_suffix_and_int8_without_calibration(checkpoint, tmp_path, capsys):
    base = ["export", "--checkpoint", str(checkpoint)]
    assert main([*base, "--format", "openvino", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "writes a .xml file" in capsys.readouterr().err
    assert main([*base, "--format", "tflite-int8", "--output", str(tmp_path / "m.tflite")]) == 2
    assert "needs --calibration" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_model_file_without_its_metadata_is_a_clear_error(exported, tmp_path, capsys):
    lonely = tmp_path / "model.tflite"
    lonely.write_bytes(exported["tflite"].read_bytes())
    assert not sidecar_path(lonely).exists()
    assert main(["predict", "--checkpoint", str(lonely), str(tmp_path)]) == 2
    assert "model.tflite.json" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(exported["onnx"]), "--backend", "openvino", str(tmp_path)]) == 2


def test_benchmark_export_end_to_end(checkpoint, tiny_data, tmp_path):
    prefix = tmp_path / "bench"
    args = ["benchmark", "export", "--checkpoint", str(checkpoint), "--metadata", str(tiny_data / "metadata.csv")]
    args += ["--formats", "onnx", "openvino-int8", "--rounds", "1", "--batch-size", "2", "--output", str(prefix)]
    args += ["--calibration-images", "8", "--max-accuracy-drop", "100"]
    assert main(args) == 0
    result = json.loads(prefix.with_suffix(".json").read_text())
    assert set(result["rows"]) == {"pytorch", "onnx", "openvino-int8"}
    for row in result["rows"].values():
        assert row["throughput_ratio"] > 0 and row["latency_ratio"] > 0 and 0 <= row["valid_accuracy"] <= 1
    assert result["rows"]["pytorch"]["throughput_ratio"] == 1.0
    assert "| openvino-int8 |" in prefix.with_suffix(".md").read_text()
    assert "| INT8 format | plain-recipe drop" in prefix.with_suffix(".md").read_text()
    assert prefix.with_suffix(".png").stat().st_size > 10_000


def test_the_readme_tflite_example_runs_and_agrees_with_predict(exported, tiny_data, tmp_path):
    import shutil
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = re.search(r"exactly as an app runs it:\n\n```python\n(.*?)```", readme, re.S).group(1)
    shutil.copy(exported["tflite"], tmp_path / "leaf.tflite")
    shutil.copy(sidecar_path(exported["tflite"]), tmp_path / "leaf.tflite.json")
    photo = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    shutil.copy(photo, tmp_path / "photo.jpg")
    (tmp_path / "app.py").write_text(snippet)
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.strip().splitlines()[-1]
    diagnosis = diagnose(exported["tflite"], [photo])
    status, probs = diagnosis.statuses[0], diagnosis.probabilities[0]
    meta = read_sidecar(exported["tflite"])
    if status == "ok":
        label, prob = printed.split()
        assert label == meta["classes"][int(probs.argmax())] and float(prob) == pytest.approx(probs.max(), abs=0.01)
    else:
        assert printed == {"unsure": "not sure: take a closer photo of one leaf, in daylight",
                           "out_of_distribution": "does not look like the training photos"}[status]  # fmt: skip


@pytest.mark.parametrize("fmt", ["openvino", "tflite-int8"])
def test_benchmark_speed_times_an_exported_file_on_its_runtime(exported, fmt, capsys):
    args = ["benchmark", "speed", "--checkpoint", str(exported[fmt]), "--batch-size", "2", "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert exported[fmt].name in out and ("openvino" if fmt == "openvino" else "litert") in out
