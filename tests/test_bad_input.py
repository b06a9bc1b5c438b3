"""Bad input: one clear paragraph on stderr, exit code 2, nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import tiny_args

from paddyclf.cli import main


def run_expecting_error(args: list[str], out: Path, capsys, *needles: str) -> str:
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert not out.exists() or not any(out.rglob("*")), "nothing may be written"
    return err


def copy_data(src: Path, dst: Path, edit_rows=None, label2id=None) -> Path:
    shutil.copytree(src, dst)
    if edit_rows is not None:
        with (dst / "metadata.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        rows, fields = edit_rows(rows)
        with (dst / "metadata.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    if label2id is not None:
        (dst / "label2id.json").write_text(json.dumps(label2id))
    return dst


def test_missing_metadata_says_how_to_get_data(tiny_data, tmp_path, capsys):
    args = tiny_args(tiny_data, tmp_path / "out")
    args[1] = str(tmp_path / "nope.csv")
    run_expecting_error(args, tmp_path / "out", capsys, "nope.csv", "paddyclf demo", "paddyclf prepare")


def test_missing_label2id(tiny_data, tmp_path, capsys):
    args = tiny_args(tiny_data, tmp_path / "out")
    args[3] = str(tmp_path / "nope.json")
    run_expecting_error(args, tmp_path / "out", capsys, "nope.json", "paddyclf demo")


def test_csv_without_path_or_label_column(tiny_data, tmp_path, capsys):
    data = copy_data(tiny_data, tmp_path / "d", lambda rows: ([{"file": r["path"]} for r in rows], ["file"]))
    run_expecting_error(tiny_args(data, tmp_path / "out"), tmp_path / "out", capsys, "path", "label", "missing")


def test_labels_missing_from_label2id_are_listed(tiny_data, tmp_path, capsys):
    data = copy_data(tiny_data, tmp_path / "d", label2id={"healthy": 0, "blast": 1})
    run_expecting_error(tiny_args(data, tmp_path / "out"), tmp_path / "out", capsys, "brown_spot", "leaf_blight")


def test_missing_image_files_are_counted_with_the_first_five(tiny_data, tmp_path, capsys):
    data = copy_data(tiny_data, tmp_path / "d")
    removed = sorted((data / "images" / "blast").glob("*.jpg"))[:7]
    for path in removed:
        path.unlink()
    err = run_expecting_error(tiny_args(data, tmp_path / "out"), tmp_path / "out", capsys, "do not exist")
    assert "first 5" in err and removed[0].name in err


@pytest.mark.parametrize("split", ["train", "valid"])
def test_empty_split(tiny_data, tmp_path, capsys, split):
    def drop(rows):
        return [r for r in rows if r["split"] != split], ["path", "label", "split"]

    data = copy_data(tiny_data, tmp_path / "d", drop)
    run_expecting_error(tiny_args(data, tmp_path / "out"), tmp_path / "out", capsys, f"{split} split", "empty")


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--epochs", "0", "--epochs must be >= 1"),
        ("--batch-size", "0", "--batch-size must be >= 1"),
        ("--base-lr", "0", "--base-lr must be > 0"),
        ("--head-lr", "-0.001", "--head-lr must be > 0"),
        ("--dropout", "1.0", "--dropout must be in [0, 1)"),
        ("--dropout", "-0.1", "--dropout must be in [0, 1)"),
        ("--heads", "5", "divide the attention width 144"),
        ("--image-size", "16", "--image-size must be >= 32"),
    ],
)
def test_invalid_values(tiny_data, tmp_path, capsys, flag, value, needle):
    run_expecting_error([*tiny_args(tiny_data, tmp_path / "out"), flag, value], tmp_path / "out", capsys, needle)


def test_unavailable_cuda_is_a_clear_error(tiny_data, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = [*tiny_args(tiny_data, tmp_path / "out"), "--device", "cuda"]
    run_expecting_error(args, tmp_path / "out", capsys, "no CUDA GPU")


def test_unreadable_image_during_training_is_skipped_and_reported(tiny_data, tmp_path, capsys):
    data = copy_data(tiny_data, tmp_path / "d")
    victim = sorted((data / "images" / "healthy").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG: exists, cannot be decoded
    assert main(["train", *tiny_args(data, tmp_path / "out", "--epochs", "1")]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image(s) this epoch" in out and victim.name in out
    assert (tmp_path / "out" / "MobileNetV3_Small_BoT_Linear_best.pt").is_file()


def test_the_console_entry_exits_with_the_commands_code_and_its_output_flushed(tmp_path):
    """``python -m paddyclf`` ends with ``os._exit`` after the command (cli.entry): the exit code, the
    files and every line printed to a pipe must survive it."""
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "paddyclf", *args], capture_output=True, text=True, timeout=120)

    done = run("nonleaf", "--out", str(tmp_path / "nonleaf"), "--per-kind", "1", "--size", "32")
    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "nonleaf").rglob("*.*"))
    assert len(written) == 7 and done.stdout.strip()  # one photo per kind, and what the command printed
    refused = run("audit", "--metadata", str(tmp_path / "missing.csv"))
    assert refused.returncode == 2 and "missing.csv" in refused.stderr and "Traceback" not in refused.stderr
