"""The fast input path (draft decode, decoded cache) gives the pixels of the plain path; speed flags train."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_args
from PIL import Image

from paddyclf.cli import main
from paddyclf.data import (
    DecodedCache,
    Normalization,
    Sample,
    build_transform,
    load_image,
    make_loader,
    stack_images,
)
from paddyclf.data.loaders import _single_thread_worker
from paddyclf.data.synthetic import make_photo_folder
from paddyclf.training.engine import to_device

ROOT = Path(__file__).resolve().parents[1]
NORM = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    root = make_photo_folder(tmp_path_factory.mktemp("photos"), 4)
    return sorted(root.rglob("*.jpg"))


def test_draft_decode_gives_the_size_and_mode_of_a_full_decode_after_resize(photos):
    eval_tf = build_transform(224, NORM, train=False)
    for path in photos:
        full, draft = load_image(path), load_image(path, min_size=224)
        assert full.size == (480, 640) and draft.size == (240, 320)  # libjpeg scaled by 1/2
        assert draft.mode == full.mode == "RGB"
        a, b = eval_tf(full), eval_tf(draft)
        assert a.shape == b.shape == (3, 224, 224) and a.dtype == b.dtype
        assert (a - b).abs().mean() < 0.1  # same picture; only resampling differs


def test_cache_round_trip_gives_the_pixels_of_a_fresh_decode(photos, tmp_path):
    eval_tf = build_transform(224, NORM, train=False)
    cache = DecodedCache(tmp_path / "cache", short_side=256)
    for path in photos:
        first = cache.load(path)  # decodes and stores
        again = cache.load(path)  # memory-mapped read
        assert first.mode == "RGB" and min(first.size) == 256
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert torch.equal(eval_tf(again), eval_tf(load_image(path, 256)))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(photos)


def test_a_changed_file_is_decoded_again(photos, tmp_path):
    path = tmp_path / "leaf.jpg"
    shutil.copy(photos[0], path)
    cache = DecodedCache(tmp_path / "cache", short_side=256)
    before = cache.load(path)
    Image.new("RGB", (480, 640), (255, 0, 0)).save(path, quality=95)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = np.asarray(cache.load(path))
    assert not np.array_equal(np.asarray(before), after)
    assert after[..., 0].mean() > 240 and after[..., 1].mean() < 15  # the new red image


def test_training_with_cache_skips_and_reports_a_truncated_jpeg(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    victim = sorted((data / "images" / "blast").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:300])
    args = tiny_args(data, tmp_path / "out", "--cache-dir", str(tmp_path / "cache"))
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image(s) this epoch" in out and victim.name in out
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 32 - 1  # train + valid, minus the broken one


# aot_eager: dynamo traces the model and AOT autograd builds the backward, without inductor's minutes of C++ codegen
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags", [["--no-channels-last"], ["--channels-last", "--compile", "--compile-backend", "aot_eager"]]
)
def test_speed_flags_run_a_training_step(tiny_data, tmp_path, flags):
    args = tiny_args(tiny_data, tmp_path, "--epochs", "1", "--train-limit", "8", "--valid-limit", "4", *flags)
    assert main(["train", *args]) == 0
    assert (tmp_path / "MobileNetV3_Small_BoT_Linear_best.pt").is_file()


def test_channels_last_and_nchw_train_the_same_model(tiny_data, tmp_path):
    for name, flag in (("cl", "--channels-last"), ("nchw", "--no-channels-last")):
        args = tiny_args(tiny_data, tmp_path / name, "--epochs", "1", "--train-limit", "8", flag)
        assert main(["train", *args]) == 0
    a, b = (
        torch.load(tmp_path / n / "MobileNetV3_Small_BoT_Linear_last.pt", weights_only=True)["state_dict"]
        for n in ("cl", "nchw")
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=1e-3)


def test_benchmark_train_command_runs_the_pipelines_asked_for(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--generate", "8", "--image-size", "64", "--batch-size", "4", "--num-workers", "0"]
    assert main(["benchmark", "train", *args, "--pipelines", "project", "--output", str(out)]) == 0
    assert "naive" not in capsys.readouterr().out
    (run,) = json.loads(out.read_text())["runs"]
    assert set(run["pipelines"]) == {"project"} and "ratios" not in run
    assert run["pipelines"]["project"]["memory_format"] == "channels_last"


@pytest.mark.slow
def test_benchmark_train_times_whole_runs_against_the_plain_timm_loop(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--generate", "10", "--image-size", "64", "--batch-size", "4", "--num-workers", "0", "--epochs", "2"]
    assert (
        main(["benchmark", "train", *args, "--pipelines", "plain", "project", "--whole-run", "--whole-run-rounds", "1",
              "--output", str(out)]) == 0
    )  # fmt: skip
    (run,) = json.loads(out.read_text())["runs"]
    assert "ratios_vs_plain" in run and "ratios" not in run
    whole = run["whole_run"]
    assert set(whole["seconds"]) == {"project", "plain"} and all(s > 0 for s in whole["seconds"].values())
    assert whole["project_over_plain_time"] == pytest.approx(whole["seconds"]["project"] / whole["seconds"]["plain"])
    assert [len(times) for times in whole["rounds"].values()] == [1, 1]


def test_whole_run_rounds_alternate_which_process_goes_first_and_average(tmp_path, monkeypatch):
    """Without processes: the order of the runs, a fresh cache per `train` run, the ratio of the means."""
    import subprocess

    from paddyclf.benchmarks import train_speed
    from paddyclf.data import Sample

    ran, clock = [], iter(range(100))
    monkeypatch.setattr(train_speed.time, "perf_counter", lambda: float(next(clock)) * 2)  # each run: 2 s
    monkeypatch.setattr(
        train_speed.subprocess, "run",
        lambda command, **_: ran.append(command) or subprocess.CompletedProcess(command, 0, "", ""),
    )  # fmt: skip
    samples = [Sample(tmp_path / f"{i}.jpg", i % 2) for i in range(10)]
    whole = train_speed.whole_run_seconds(samples, [], 2, 64, 4, 0, 2, tmp_path, 0, log=lambda *_: None, rounds=3)
    order = ["train" if "train" in command else "plain" for command in ran]
    assert order == ["train", "plain", "plain", "train", "train", "plain"]
    caches = [command[command.index("--cache-dir") + 1] for command in ran if "train" in command]
    assert len(set(caches)) == 3  # every `train` starts with an empty cache, as a first run
    assert whole["rounds"] == {"project": [2.0, 2.0, 2.0], "plain": [2.0, 2.0, 2.0]}
    assert whole["project_over_plain_time"] == 1.0


@pytest.mark.slow
def test_gpu_benchmark_script_runs_every_pipeline_at_each_batch_size(tmp_path):
    """The prepared device script, run on the CPU with tiny sizes: the same command line the GPU gets."""
    tiny = {"DEVICE": "cpu", "GENERATE": "8", "BATCH_SIZES": "4 6", "IMAGE_SIZE": "64", "EPOCHS": "2", "WORKERS": "0"}
    env = os.environ | tiny | {"PYTHON": sys.executable}
    subprocess.run([str(ROOT / "scripts" / "gpu_train_benchmark.sh"), str(tmp_path)], env=env, check=True)
    result = json.loads((tmp_path / "train_benchmark_cpu.json").read_text())
    assert result["train_images"] == 8
    assert [run["batch_size"] for run in result["runs"]] == [4, 6]
    for run in result["runs"]:
        assert set(run["pipelines"]) == {"naive", "plain", "project"}
        assert run["ratios"]["end_to_end_steady_images_per_s"] > 0
        assert run["ratios_vs_plain"]["end_to_end_steady_images_per_s"] > 0
    assert "project / naive" in (tmp_path / "train_benchmark_cpu.log").read_text()


def test_loader_workers_run_one_thread_at_idle_priority():
    context = multiprocessing.get_context("fork")  # as DataLoader workers are on Linux
    with context.Pool(1, initializer=_single_thread_worker, initargs=(0,)) as pool:
        policy, threads = pool.apply(_scheduling)
    assert threads == 1
    assert policy == (os.SCHED_IDLE if hasattr(os, "SCHED_IDLE") else os.SCHED_OTHER)


def _scheduling() -> tuple[int, int]:
    return os.sched_getscheduler(0), torch.get_num_threads()


def test_loader_batches_arrive_channels_last_with_the_pixels_of_each_item(photos):
    samples = [Sample(p, 0) for p in photos]
    loader = make_loader(samples, 64, NORM, train=False, batch_size=4, num_workers=0, seed=0)
    batch = next(iter(loader))
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    items = torch.stack([loader.dataset[i][0] for i in range(4)])
    assert torch.equal(batch.images, items)
    assert to_device(batch.images, torch.device("cpu"), channels_last=True).data_ptr() == batch.images.data_ptr()
    assert to_device(batch.images, torch.device("cpu"), channels_last=False).is_contiguous()


def test_classic_chw_tensors_stack_to_a_contiguous_batch():
    images = [torch.rand(3, 8, 8) for _ in range(2)]
    assert stack_images(images).is_contiguous()
    assert torch.equal(stack_images(images), torch.stack(images))


def test_photo_folder_rendered_on_all_cores_equals_one_rendered_serially(tmp_path):
    parallel = sorted(make_photo_folder(tmp_path / "parallel", 16, seed=3).rglob("*.jpg"))  # 16+ -> process pool
    serial = sorted(make_photo_folder(tmp_path / "serial", 5, seed=3).rglob("*.jpg"))  # < 16 -> this process
    assert len(parallel) == 16
    by_name = {p.name: p for p in parallel}
    assert all(p.read_bytes() == by_name[p.name].read_bytes() for p in serial)
    with Image.open(parallel[0]) as photo:
        assert (photo.format, photo.size) == ("JPEG", (480, 640))


def test_a_cache_entry_of_an_older_decode_is_not_reused(tmp_path, monkeypatch):
    from paddyclf.data import loaders

    photo = tmp_path / "leaf.jpg"
    Image.new("RGB", (80, 60), (40, 120, 40)).save(photo)
    cache = loaders.DecodedCache(tmp_path / "cache", 64)
    current = cache.entry(photo)
    monkeypatch.setattr(loaders, "DECODE_VERSION", "draft-decode-0")
    assert cache.entry(photo) != current
