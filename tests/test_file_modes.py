"""Files the package writes get the permissions a plain ``open()`` would give them under the umask.

``mkstemp`` creates 0o600 and ``mkdtemp`` 0o700: written through them and renamed into place, a
checkpoint, a ``_last.pt`` or an export's sidecar could not be read by the rest of a lab group, or by a
web server running as another user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from conftest import tiny_args

from paddyclf.cli import main
from paddyclf.fileio import save_torch, staging_folder, write_bytes_durably, write_json


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=["umask022", "umask002", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_writes_get_the_mode_a_plain_open_gives(umask, tmp_path):
    with (tmp_path / "plain.txt").open("w") as fh:
        fh.write("x")
    expected = mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~umask
    written = [
        write_json(tmp_path / "a.json", {"a": 1}),
        save_torch(tmp_path / "b.pt", {"w": torch.zeros(2)}),
        write_bytes_durably(tmp_path / "sub" / "c.jpg", b"\xff\xd8\xff"),
    ]
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_a_replaced_file_keeps_its_own_mode(tmp_path):
    target = tmp_path / "shared.json"
    target.write_text("{}")
    target.chmod(0o640)
    write_json(target, {"new": True})
    assert mode(target) == 0o640 and "new" in target.read_text()


def test_a_staging_folder_has_the_mode_of_a_plain_mkdir(umask, tmp_path):
    (tmp_path / "plain").mkdir()
    folder = staging_folder(tmp_path / "dataset")
    assert folder.parent == tmp_path and folder.name.startswith(".dataset.")
    assert mode(folder) == mode(tmp_path / "plain") == 0o777 & ~umask


def test_checkpoints_run_state_and_export_files_are_readable_by_the_group(tiny_data, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["train", *tiny_args(tiny_data, out, "--epochs", "1", "--save-history")]) == 0
        best, last = out / "MobileNetV3_Small_BoT_Linear_best.pt", out / "MobileNetV3_Small_BoT_Linear_last.pt"
        onnx = tmp_path / "leaf.onnx"
        assert main(["export", "--checkpoint", str(best), "--output", str(onnx)]) == 0
        written = [best, last, onnx, onnx.with_name("leaf.onnx.json"), *sorted((out / "results").iterdir())]
        assert {p.name: oct(mode(p)) for p in written} == {p.name: "0o644" for p in written}
    finally:
        os.umask(old)
