"""Colour jitter as one affine map of RGB, applied in a single pass.

torchvision's ``ColorJitter`` runs four separate image ops; on a Pillow image its hue step alone
converts RGB -> HSV -> RGB and costs about 3.4 of its 4.2 ms on a 224 px crop (measured on the
2-core CPU of docs/BENCHMARKS.md), more than the rest of the training augmentation together.
Every op is affine in RGB except the exact HSV hue shift, so :class:`LinearColorJitter` composes
them into one 3x4 matrix and applies it with Pillow's C ``Image.convert(matrix=...)``. The hue
shift becomes a rotation about the grey axis, the approximation NVIDIA DALI uses for its ``hsv``
operator "for performance reasons".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageStat
from torchvision import tv_tensors
from torchvision.transforms import v2

# ITU-R 601-2 luma weights: those of Pillow's "L" mode and torchvision's rgb_to_grayscale.
LUMA = np.array([0.299, 0.587, 0.114])
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def hue_rotation(hue: float) -> np.ndarray:
    """(3, 3) RGB matrix turning colours by ``hue`` of a full turn about the grey axis.

    In YIQ space luma Y is kept and the chroma plane (I, Q) is rotated. The angle is negative in
    (I, Q) so that a positive ``hue`` moves colours the way torchvision's HSV hue shift does
    (red -> yellow -> green).
    """
    cos, sin = math.cos(-2 * math.pi * hue), math.sin(-2 * math.pi * hue)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return YIQ_TO_RGB @ rotation @ RGB_TO_YIQ


def jitter_matrix(params: dict[str, Any], channel_means: np.ndarray) -> np.ndarray:
    """(3, 4) affine map [A | t] (x -> A x + t) equal to ColorJitter's ops in ``params``' order.

    brightness b: x -> b x; saturation s: x -> s x + (1 - s) (luma . x);
    contrast c: x -> c x + (1 - c) mu, where mu is the mean luma of the image *at that point*:
    the image there is A x + t, so its channel means are A m + t (m = ``channel_means`` of the
    input) and mu needs no extra pass over the pixels. ``channel_means`` and t are in the units of
    the pixels (0-255 for uint8, 0-1 for float).
    """
    matrix, offset, identity = np.eye(3), np.zeros(3), np.eye(3)
    brightness, contrast = params["brightness_factor"], params["contrast_factor"]
    saturation, hue = params["saturation_factor"], params["hue_factor"]
    for fn_id in params["fn_idx"].tolist():
        if fn_id == 0 and brightness is not None:
            step, shift = brightness * identity, 0.0
        elif fn_id == 1 and contrast is not None:
            mean_luma = LUMA @ (matrix @ channel_means + offset)
            step, shift = contrast * identity, (1 - contrast) * mean_luma
        elif fn_id == 2 and saturation is not None:
            step, shift = saturation * identity + (1 - saturation) * np.outer(np.ones(3), LUMA), 0.0
        elif fn_id == 3 and hue is not None:
            step, shift = hue_rotation(hue), 0.0
        else:
            continue
        matrix, offset = step @ matrix, step @ offset + shift
    return np.hstack([matrix, offset[:, None]])


class LinearColorJitter(v2.ColorJitter):
    """``v2.ColorJitter`` with the same arguments, random factors and random op order, applied as
    one affine colour map (see :func:`jitter_matrix`).

    It differs from ColorJitter in two ways: pixels are clipped to the valid range once, at the end,
    not after every op; and hue turns colours about the grey axis in YIQ space instead of shifting
    the HSV hue (for the same angle, leaf greens move about 2/3 as far in HSV hue). RGB Pillow
    images and 3-channel tensors take the fast path; anything else (grey images, videos) is
    handed to ColorJitter unchanged.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, Image.Image) and inpt.mode == "RGB":
            affine = jitter_matrix(params, np.asarray(ImageStat.Stat(inpt).mean))
            return inpt.convert("RGB", tuple(affine.ravel().tolist()))
        if _is_rgb_image_tensor(inpt):
            return _apply_to_tensor(inpt, params)
        return super().transform(inpt, params)


def _is_rgb_image_tensor(inpt: Any) -> bool:
    plain_or_image = type(inpt) is torch.Tensor or isinstance(inpt, tv_tensors.Image)
    return plain_or_image and inpt.ndim >= 3 and inpt.shape[-3] == 3


def _apply_to_tensor(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """(..., 3, H, W) uint8 or float in [0, 1] -> same shape and dtype; one set of factors for all."""
    pixels = image.float()
    means = pixels.mean(dim=(*range(pixels.ndim - 3), -2, -1)).double().numpy()
    affine = torch.from_numpy(jitter_matrix(params, means)).float()
    out = torch.einsum("ij,...jhw->...ihw", affine[:, :3], pixels) + affine[:, 3, None, None]
    out = out.clamp_(0, 1) if image.is_floating_point() else out.round_().clamp_(0, 255)
    out = out.to(image.dtype)
    return tv_tensors.wrap(out, like=image) if isinstance(image, tv_tensors.Image) else out
