"""Recipe flags: each runs, the recipe table resolves, EMA is what is saved, mixing, warm-up, the ablation command."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_args

from paddyclf.benchmarks.recipe import run_recipe_benchmark
from paddyclf.cli import build_parser, main
from paddyclf.options import config_from_args
from paddyclf.training.config import TrainConfig
from paddyclf.training.recipe import RECIPES, BatchMixer, make_scheduler

NAME = "MobileNetV3_Small_BoT_Linear"
FAST = ("--epochs", "1", "--train-limit", "16", "--valid-limit", "8", "--patience", "0")


@pytest.mark.parametrize(
    "flags",
    [
        ["--label-smoothing", "0.1"],
        ["--ema-decay", "0.9"],
        ["--mixup", "0.2"],
        ["--cutmix", "1.0"],
        ["--mixup", "0.2", "--cutmix", "1.0"],
        ["--augment", "trivial"],
        ["--augment", "randaugment"],
        ["--random-erasing", "0.5"],
        ["--warmup-epochs", "1"],
        ["--recipe", "field"],
    ],
    ids=lambda flags: "_".join(f.strip("-") for f in flags),
)
def test_every_recipe_flag_trains(tiny_data, tmp_path, flags):
    """Each with the decoded cache and channels_last (the defaults' fast path) too."""
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["train", *tiny_args(tiny_data, tmp_path, *FAST, *cache, *flags)]) == 0
    assert (tmp_path / f"{NAME}_best.pt").is_file()


def test_recipes_fill_only_the_fields_not_given():
    assert {k: getattr(TrainConfig(), k) for k in RECIPES["guide"]} == RECIPES["guide"]
    field = TrainConfig(recipe="field")
    assert {k: getattr(field, k) for k in RECIPES["field"]} == RECIPES["field"]
    assert RECIPES["field"]["head_lr"] != RECIPES["guide"]["head_lr"]
    explicit = TrainConfig(recipe="field", base_lr=1e-4)
    assert explicit.base_lr == 1e-4 and explicit.head_lr == RECIPES["field"]["head_lr"]
    args = build_parser().parse_args(["train", "--recipe", "field", "--head-lr", "1e-3", "--ema-decay", "0.5"])
    config = config_from_args(args, TrainConfig())
    assert (config.head_lr, config.ema_decay, config.base_lr) == (1e-3, 0.5, RECIPES["field"]["base_lr"])


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--label-smoothing", "1.0", "--label-smoothing"),
        ("--ema-decay", "1.0", "--ema-decay"),
        ("--mixup", "-1", "--mixup"),
        ("--random-erasing", "2", "--random-erasing"),
        ("--warmup-epochs", "-1", "--warmup-epochs"),
    ],
)
def test_invalid_recipe_values_are_clear_errors(tiny_data, tmp_path, capsys, flag, value, needle):
    assert main(["train", *tiny_args(tiny_data, tmp_path, flag, value)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_ema_weights_differ_from_the_raw_weights_and_are_what_the_checkpoint_holds(tiny_data, tmp_path):
    assert main(["train", *tiny_args(tiny_data, tmp_path, "--epochs", "1", "--ema-decay", "0.9")]) == 0
    best = torch.load(tmp_path / f"{NAME}_best.pt", weights_only=True)
    last = torch.load(tmp_path / f"{NAME}_last.pt", weights_only=True)
    assert best["ema"] is True
    ema, raw = last["ema"]["state_dict"], last["state_dict"]
    assert all(torch.equal(best["state_dict"][k], ema[k]) for k in ema)
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())
    assert last["ema"]["updates"] == 3  # 24 training images, batch 8


@pytest.mark.parametrize("batch", [8, 5])
def test_mixup_and_cutmix_targets_sum_to_one(batch):
    torch.manual_seed(0)
    mixer = BatchMixer(mixup_alpha=0.4, cutmix_alpha=1.0, num_classes=4)
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 4, (batch,))
    changed = 0
    for _ in range(6):  # both ops get drawn
        mixed, targets = mixer(images, labels)
        assert mixed.shape == images.shape and targets.shape == (batch, 4)
        assert torch.allclose(targets.sum(1), torch.ones(batch))
        changed += not torch.equal(mixed, images)
    assert changed >= 5


def test_warmup_ramps_linearly_then_follows_the_cosine():
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW(params, lr=1.0)
    scheduler = make_scheduler(optimizer, epochs=6, warmup_epochs=2)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert lrs[3] < 1.0 and lrs[3] > lrs[4] > lrs[5]


@pytest.mark.slow
def test_benchmark_recipe_end_to_end_on_tiny_data(tiny_data, tmp_path):
    base = TrainConfig(
        metadata=str(tiny_data / "metadata.csv"),
        label2id=str(tiny_data / "label2id.json"),
        image_size=64,
        batch_size=8,
        epochs=1,
        patience=0,
        num_workers=0,
        device="cpu",
        head_lr=2e-3,
        base_lr=1e-3,
        train_limit=16,
    )
    result = run_recipe_benchmark(base, ["guide", "ema", "field"], [0, 1], tmp_path / "rb", log=lambda *a: None)
    assert set(result["variants"]) == {"guide", "ema", "field"}
    assert result["train_images"] == 16
    field = result["variants"]["field"]
    assert len(field["runs"]) == 2 and {"valid_acc", "test_acc", "valid_nll"} <= set(field["summary"])
    assert result["variants"]["guide"]["valid_acc_error_change"] in (0.0, None)
    saved = json.loads((tmp_path / "rb.json").read_text())
    assert saved["variants"]["ema"]["overrides"] == {"ema_decay": 0.998}
    assert "| field | recipe=field |" in (tmp_path / "rb.md").read_text()
    assert (tmp_path / "rb.png").stat().st_size > 5_000
