"""``paddyclf explain``: Grad-CAM over the last feature map, overlaid on the photo.

Uses the maintained ``grad-cam`` package (``pytorch_grad_cam``). The target layer is the module
that produces the map the classifier pools (the attention head, or the backbone for the plain
model), so the heat map shows where the evidence for the predicted class lies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import class_names, load_checkpoint, model_from_checkpoint
from .data import Normalization, build_transform, load_image
from .errors import UserError


def gradcam_target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last module before pooling: the attention head, or the backbone when there is none."""
    return model.backbone if isinstance(model.head, torch.nn.Identity) else model.head


def explain_images(
    checkpoint: str | Path, images: list[str | Path], output_dir: str | Path = "explanations"
) -> list[Path]:
    """One ``<stem>_gradcam.png`` per image: photo, heat map overlay, predicted class and probability."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .plots import plt, save_figure

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    names = class_names(ckpt["label2id"])
    size, norm = ckpt["config"]["image_size"], Normalization(**ckpt["normalization"])
    transform = build_transform(size, norm, train=False)
    written = []
    # the backbone returns a list of maps; Grad-CAM wants the tensor
    target = gradcam_target_layer(model)
    reshape = (lambda out: out[-1]) if target is model.backbone else None
    with GradCAM(model=model, target_layers=[target], reshape_transform=reshape) as cam:
        for raw in images:
            path = Path(raw)
            if not path.is_file():
                raise UserError(f"Image {path} does not exist.")
            try:
                photo = load_image(path)
            except Exception as exc:  # noqa: BLE001 - any decoder error
                raise UserError(f"Image {path} could not be read ({type(exc).__name__}: {exc}).") from None
            x = transform(photo).unsqueeze(0)
            with torch.no_grad():
                probs = model(x).softmax(1)[0]
            pred = int(probs.argmax())
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(pred)])[0]
            shown = x[0].permute(1, 2, 0).numpy() * np.array(norm.std) + np.array(norm.mean)
            overlay = show_cam_on_image(np.clip(shown, 0, 1).astype(np.float32), heat, use_rgb=True)
            fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
            axes[0].imshow(np.clip(shown, 0, 1))
            axes[0].set_title("input (eval crop)")
            axes[1].imshow(overlay)
            axes[1].set_title(f"Grad-CAM: {names[pred]} (p = {probs[pred]:.3f})")
            for ax in axes:
                ax.axis("off")
            fig.suptitle(path.name)
            written.append(save_figure(fig, Path(output_dir) / f"{path.stem}_gradcam.png"))
    return written
