"""evaluate / predict / explain / export / compare / benchmark speed on a checkpoint trained here."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from conftest import tiny_args

from paddyclf.cli import main

NAME = "MobileNetV3_Small_BoT_Linear"


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", *tiny_args(tiny_data, out, "--save-history")]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--checkpoint", str(trained / f"{NAME}_best.pt"), "--output", str(path)]) == 0
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_onnx_export_is_parity_checked_and_carries_metadata(onnx_file, capsys):
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    info = json.loads(meta["paddyclf"])
    assert info["classes"] == ["healthy", "brown_spot", "blast", "leaf_blight"]
    assert info["image_size"] == 64 and len(info["normalization"]["mean"]) == 3
    batch_dim = onnx.load(str(onnx_file)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # dynamic batch axis


def test_torchscript_export_matches_pytorch(trained, tmp_path, capsys):
    out = tmp_path / "model.ts"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(trained / f"{NAME}_best.pt"),
                "--format",
                "torchscript",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert "max abs logit difference" in capsys.readouterr().out
    x = torch.randn(2, 3, 64, 64)
    from paddyclf.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(trained / f"{NAME}_best.pt"))
    with torch.no_grad():
        logits, ood_score = torch.jit.load(str(out))(x)  # a calibrated checkpoint: the score is in the graph
        torch.testing.assert_close(logits, model(x), atol=1e-4, rtol=1e-4)
        assert ood_score.shape == (2,)


def test_predict_folder_with_corrupt_file_agrees_across_backends(trained, onnx_file, tiny_data, tmp_path):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for src in sorted((tiny_data / "images" / "blast").glob("*.jpg"))[:3]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    results = {}
    for backend, model in (("torch", trained / f"{NAME}_best.pt"), ("onnxruntime", onnx_file)):
        out = tmp_path / f"{backend}.csv"
        assert (
            main(
                [
                    "predict",
                    "--checkpoint",
                    str(model),
                    str(tmp_path / "photos"),
                    "--output",
                    str(out),
                    "--top-k",
                    "2",
                    "--backend",
                    backend,
                ]
            )
            == 0
        )
        results[backend] = read_csv(out)
    rows = results["torch"]
    assert list(rows[0]) == ["path", "label_1", "prob_1", "label_2", "prob_2", "status", "message", "ood_score"]
    assert len(rows) == 4
    broken = [r for r in rows if r["path"].endswith("broken.jpg")][0]
    assert broken["status"].startswith("error:")
    assert [r["label_1"] for r in rows] == [r["label_1"] for r in results["onnxruntime"]]
    assert [r["status"] for r in rows] == [r["status"] for r in results["onnxruntime"]]
    assert all(r["status"] in ("ok", "unsure", "out_of_distribution") for r in rows if r is not broken)


def evaluate_cli(trained: Path, data: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "evaluate",
            "--checkpoint",
            str(trained / f"{NAME}_best.pt"),
            "--metadata",
            str(data / "metadata.csv"),
            "--output-dir",
            str(out),
            *extra,
        ]
    )


def test_evaluate_matches_the_trainer_and_writes_its_files(trained, tiny_data, tmp_path):
    out = tmp_path / "eval"
    assert evaluate_cli(trained, tiny_data, out, "--split", "valid") == 0
    report = json.loads((out / "evaluation.json").read_text())
    metrics = json.loads((trained / "results" / f"{NAME}_metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["valid_acc"])
    assert report["macro_f1"] == pytest.approx(metrics["valid_f1"])
    assert sum(map(sum, report["confusion_matrix"])) == 8
    wrong = read_csv(out / "misclassified.csv")
    assert len(wrong) == round(8 * (1 - report["accuracy"]))
    assert (out / "confusion_matrix.png").stat().st_size > 10_000
    assert len(read_csv(out / "per_class.csv")) == 4


def test_evaluate_with_tta(trained, tiny_data, tmp_path):
    assert evaluate_cli(trained, tiny_data, tmp_path, "--split", "test", "--tta") == 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["tta"] is True


def test_explain_writes_an_overlay(trained, tiny_data, tmp_path):
    image = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    assert (
        main(
            [
                "explain",
                "--checkpoint",
                str(trained / f"{NAME}_best.pt"),
                str(image),
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / f"{image.stem}_gradcam.png").stat().st_size > 10_000


def test_compare_builds_its_table_from_two_metrics_files(trained, tmp_path):
    first = trained / "results" / f"{NAME}_metrics.json"
    second = tmp_path / "other_metrics.json"
    second.write_text(json.dumps({**json.loads(first.read_text()), "model_name": "Other", "fps": 1.5}))
    assert main(["compare", str(first), str(second), "--output", str(tmp_path / "cmp")]) == 0
    rows = read_csv(tmp_path / "cmp" / "comparison.csv")
    assert [r["model"] for r in rows] == [NAME, "Other"]
    assert "| Other |" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "accuracy_vs_fps.png").is_file() and (tmp_path / "cmp" / "size.png").is_file()


def test_benchmark_speed_reports_three_backends(trained, capsys):
    assert (
        main(
            [
                "benchmark",
                "speed",
                "--checkpoint",
                str(trained / f"{NAME}_best.pt"),
                "--batch-size",
                "2",
                "--repeats",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for backend in ("torch_eager_nchw", "torch_channels_last", "onnxruntime"):
        assert out.count(backend) == 2  # the checkpoint's model and the plain MobileNetV3-Small reference


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_bad_checkpoint_files(tmp_path, capsys, content, trained):
    path = tmp_path / "ckpt.pt"
    if content is None:  # a valid torch file of another format
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    assert main(["predict", "--checkpoint", str(path), str(tmp_path)]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_truncated_checkpoint(trained, tmp_path, capsys):
    path = tmp_path / "cut.pt"
    data = (trained / f"{NAME}_best.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["evaluate", "--checkpoint", str(path), "--metadata", "x.csv"]) == 2
    assert "truncated" in capsys.readouterr().err


def test_onnx_without_our_metadata(onnx_file, tmp_path, capsys):
    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    assert main(["predict", "--checkpoint", str(plain), str(tmp_path)]) == 2
    assert "no paddyclf metadata" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing_path", "empty_folder", "top_k"])
def test_predict_bad_input(trained, tmp_path, capsys, case, tiny_data):
    image = str(sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0])
    (tmp_path / "empty").mkdir()
    args = {
        "missing_path": [str(tmp_path / "nope.jpg")],
        "empty_folder": [str(tmp_path / "empty")],
        "top_k": [image, "--top-k", "5"],
    }[case]
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(trained / f"{NAME}_best.pt"),
                *args,
                "--output",
                str(tmp_path / "p.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert {"missing_path": "does not exist", "empty_folder": "no images", "top_k": "--top-k"}[case] in err
    assert not (tmp_path / "p.csv").exists()
