"""LinearColorJitter: torchvision's ColorJitter parameters applied as one affine colour map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from paddyclf.data.augment import LinearColorJitter
from paddyclf.data.synthetic import render_image

JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.15, "hue": 0.02}


@pytest.fixture(scope="module")
def leaf():
    return render_image("blast", seed=0, index=3, size=96)


def both(image, seed: int, **kwargs):
    """(torchvision ColorJitter output, LinearColorJitter output) for the same random factors."""
    torch.manual_seed(seed)
    params = v2.ColorJitter(**kwargs).make_params([image])
    return v2.ColorJitter(**kwargs).transform(image, params), LinearColorJitter(**kwargs).transform(image, params)


@pytest.mark.parametrize("op", [{"brightness": 0.4}, {"contrast": 0.4}, {"saturation": 0.4}])
def test_each_affine_op_equals_torchvision(leaf, op):
    image = F.pil_to_tensor(leaf).float() / 255
    for seed in range(8):
        torch.testing.assert_close(*both(image, seed, **op), atol=1e-4, rtol=0)
        reference, ours = both(leaf, seed, **op)  # Pillow rounds down after each of its ops
        assert np.abs(np.asarray(reference, dtype=float) - np.asarray(ours, dtype=float)).max() <= 1.0


def test_composed_ops_in_random_order_equal_torchvision_except_where_it_clips_between_ops(leaf):
    image = F.pil_to_tensor(leaf).float() / 255
    for seed in range(8):
        reference, ours = both(image, seed, **(JITTER | {"hue": None}))
        assert (reference - ours).abs().mean() < 0.1 / 255
        reference, ours = both(image, seed, **JITTER)  # and the hue approximation stays small
        assert (reference - ours).abs().mean() < 0.3 * (reference - image).abs().mean()


@pytest.mark.parametrize("hue", [0.05, -0.05])
def test_hue_turns_colours_the_way_torchvision_does_and_keeps_luma(leaf, hue):
    image = F.pil_to_tensor(leaf).float() / 255
    params = {"fn_idx": torch.arange(4), "brightness_factor": None, "contrast_factor": None}
    params |= {"saturation_factor": None, "hue_factor": hue}
    ours = LinearColorJitter(hue=0.5).transform(image, params)
    reference = F.adjust_hue(image, hue)

    def hue_shift(out):
        shift = (v2.functional._color._rgb_to_hsv(out)[0] - v2.functional._color._rgb_to_hsv(image)[0] + 0.5) % 1
        return (shift - 0.5)[v2.functional._color._rgb_to_hsv(image)[1] > 0.2].median().item()

    assert np.sign(hue_shift(ours)) == np.sign(hue_shift(reference)) == np.sign(hue)
    assert 0.3 < hue_shift(ours) / hue_shift(reference) < 1.5
    luma = F.rgb_to_grayscale
    assert (luma(ours) - luma(image)).abs().mean() < 1 / 255


def test_pil_and_tensor_inputs_get_the_same_pixels(leaf):
    torch.manual_seed(0)
    jitter = LinearColorJitter(**JITTER)
    params = jitter.make_params([leaf])
    from_pil = F.pil_to_tensor(jitter.transform(leaf, params)).int()
    as_uint8 = F.pil_to_tensor(leaf)
    from_uint8 = jitter.transform(as_uint8, params)
    from_float = jitter.transform(as_uint8.float() / 255, params)
    assert from_uint8.dtype == torch.uint8 and from_float.dtype == torch.float32
    assert (from_pil - from_uint8.int()).abs().max() <= 1
    assert (from_float * 255 - from_uint8.float()).abs().max() <= 1


def test_grey_images_fall_back_to_torchvision(leaf):
    grey = leaf.convert("L")
    torch.manual_seed(1)
    params = v2.ColorJitter(**JITTER).make_params([grey])
    ours = LinearColorJitter(**JITTER).transform(grey, params)
    assert ours.mode == "L"
    assert np.array_equal(np.asarray(ours), np.asarray(v2.ColorJitter(**JITTER).transform(grey, params)))
