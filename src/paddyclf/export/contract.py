"""What an app needs to run an exported model: the sidecar ``<file>.json`` every export writes.

The preprocessing contract is the project's eval transform, written out so that an app can
reproduce it without Python::

    resize the short side to ``resize_short_side`` (bilinear, antialiased), centre-crop
    ``image_size`` x ``image_size``, RGB, scale to [0, 1], subtract ``mean``, divide by ``std``,
    lay out as ``layout`` (NCHW: (1, 3, S, S); NHWC: (1, S, S, 3)), float32.

Outputs: ``logits`` (B, K) in ``classes`` order and, for a calibrated checkpoint, ``ood_score``
(B,). The verdict: ``p = softmax(logits / temperature)``; ``out_of_distribution`` when
``ood_score > ood_threshold``, else ``unsure`` when ``max(p) < unsure_below``, else ``ok``.
"""

from __future__ import annotations

from ..checkpoint import class_names
from ..trust import checkpoint_trust


def export_metadata(ckpt: dict, fmt: str = "onnx", layout: str = "NCHW", batch: int | None = None, **extra) -> dict:
    """Classes, input size and layout, preprocessing, outputs, temperature and thresholds of ``ckpt``'s export."""
    size, norm = ckpt["config"]["image_size"], ckpt["normalization"]
    trust = checkpoint_trust(ckpt)
    shape = [batch or "batch", 3, size, size] if layout == "NCHW" else [batch or "batch", size, size, 3]
    return {
        "format": fmt,
        "classes": class_names(ckpt["label2id"]),
        "image_size": size,
        "layout": layout,
        "input": {"name": "input", "dtype": "float32", "shape": shape},
        "outputs": ["logits"] + (["ood_score"] if trust.ood_score else []),
        "preprocessing": {
            "resize_short_side": int(size / norm["crop_pct"]),
            "interpolation": "bilinear",
            "center_crop": size,
            "channel_order": "RGB",
            "scale": 1 / 255,
            "mean": list(norm["mean"]),
            "std": list(norm["std"]),
        },
        "normalization": norm,
        "architecture": ckpt["config"]["architecture"],
        "seed": ckpt.get("seed", 42),
        "trust": trust.to_dict(),
        **extra,
    }
