"""Model construction, shapes, parameter counts and pretrained loading."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED_WEIGHTS
from safetensors.torch import load_file

from paddyclf.errors import UserError
from paddyclf.models import (
    MobileNetV3_Small,
    MobileNetV3_Small_BoT,
    MobileNetV3_Small_BoT_Linear,
    MobileNetV3_Small_Hybrid,
    create_model,
    list_models,
)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forwards_at_224_320_and_non_square(name):
    model = create_model(name, num_classes=4, heads=4, image_size=224).eval()
    with torch.no_grad():
        for hw in [(224, 224), (320, 320), (256, 320)]:
            out = model(torch.randn(1, 3, *hw))
            assert out.shape == (1, 4)
            assert torch.isfinite(out).all()


def test_constructors_take_the_documented_arguments():
    MobileNetV3_Small(num_classes=3, pretrained=False, dropout=0.2)
    MobileNetV3_Small_BoT_Linear(num_classes=3, heads=4, pretrained=False, dropout=0.1)
    MobileNetV3_Small_BoT(num_classes=3, heads=2, pretrained=False, dropout=0.1, image_size=320)
    MobileNetV3_Small_Hybrid(num_classes=3, heads=4, pretrained=False, dropout=0.1, image_size=224, reduction=16)


def test_bot_linear_counts_only_what_runs():
    model = MobileNetV3_Small_BoT_Linear(num_classes=4, heads=4)
    num_params = sum(p.numel() for p in model.parameters())
    assert 1.15e6 < num_params < 1.17e6  # the guide's 1.75M counted timm's unused conv_head
    assert not any("conv_head" in n for n, _ in model.named_parameters())


def test_channels_come_from_the_backbone():
    model = create_model("MobileNetV3_Small_BoT_Linear", num_classes=2, backbone="mobilenetv3_large_100")
    assert model.num_features == 960
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_position_tables_are_excluded_from_weight_decay():
    assert MobileNetV3_Small_BoT(num_classes=2).no_weight_decay() == {
        "head.attention.rel_h",
        "head.attention.rel_w",
    }


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason="shared ImageNet weights not present")
def test_pretrained_weights_file_loads_through_timm():
    model = MobileNetV3_Small_BoT_Linear(num_classes=4, pretrained_weights=SHARED_WEIGHTS)
    file = load_file(SHARED_WEIGHTS)
    state = model.backbone.state_dict()
    loaded = [k for k in state if k in file]
    assert len(loaded) > 100
    for key in loaded:
        torch.testing.assert_close(state[key], file[key])


def test_failed_download_names_the_local_weights_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--pretrained-weights"):
        MobileNetV3_Small_BoT_Linear(num_classes=4, pretrained=True)


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        MobileNetV3_Small_BoT_Linear(num_classes=4, pretrained_weights=tmp_path / "nope.safetensors")
