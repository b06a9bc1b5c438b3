"""``paddyclf explain``: Grad-CAM over the last feature map, overlaid on the photo.

Uses the maintained ``grad-cam`` package (``pytorch_grad_cam``). The target layer is the module
that produces the map the classifier pools (the attention head, or the backbone for the plain
model), so the heat map shows where the evidence for the predicted class lies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import class_names, load_checkpoint, model_from_checkpoint
from ..data import Normalization, build_transform, load_image
from ..errors import UserError


def gradcam_target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last module before pooling: the attention head, or the backbone when there is none."""
    return model.backbone if isinstance(model.head, torch.nn.Identity) else model.head


class GradCamExplainer:
    """Grad-CAM of a checkpoint's predicted class on one photo (eval crop).

    ``explainer(photo)`` -> (shown (S, S, 3) float in [0, 1], overlay (S, S, 3) uint8, class index,
    probability). Not thread-safe (Grad-CAM hooks the model): one caller at a time.
    """

    def __init__(self, checkpoint: str | Path | dict) -> None:
        from pytorch_grad_cam import GradCAM

        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        self.model = model_from_checkpoint(ckpt)
        self.classes = class_names(ckpt["label2id"])
        self.norm = Normalization(**ckpt["normalization"])
        self.transform = build_transform(ckpt["config"]["image_size"], self.norm, train=False)
        target = gradcam_target_layer(self.model)
        # the backbone returns a list of maps; Grad-CAM wants the tensor
        reshape = (lambda out: out[-1]) if target is self.model.backbone else None
        self.cam = GradCAM(model=self.model, target_layers=[target], reshape_transform=reshape)

    def __call__(self, photo: Image.Image) -> tuple[np.ndarray, np.ndarray, int, float]:
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        x = self.transform(photo).unsqueeze(0)
        with torch.no_grad():
            probs = self.model(x).softmax(1)[0]
        pred = int(probs.argmax())
        heat = self.cam(input_tensor=x, targets=[ClassifierOutputTarget(pred)])[0]
        shown = np.clip(x[0].permute(1, 2, 0).numpy() * np.array(self.norm.std) + np.array(self.norm.mean), 0, 1)
        overlay = show_cam_on_image(shown.astype(np.float32), heat, use_rgb=True)
        return shown, overlay, pred, float(probs[pred])

    def close(self) -> None:
        self.cam.__exit__(None, None, None)


def explain_images(
    checkpoint: str | Path, images: list[str | Path], output_dir: str | Path = "explanations"
) -> list[Path]:
    """One ``<stem>_gradcam.png`` per image: photo, heat map overlay, predicted class and probability."""
    from ..plots import plt, save_figure

    explainer = GradCamExplainer(checkpoint)
    written = []
    try:
        for raw in images:
            path = Path(raw)
            if not path.is_file():
                raise UserError(f"Image {path} does not exist.")
            try:
                photo = load_image(path)
            except Exception as exc:  # noqa: BLE001 - any decoder error
                raise UserError(f"Image {path} could not be read ({type(exc).__name__}: {exc}).") from None
            shown, overlay, pred, prob = explainer(photo)
            fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
            axes[0].imshow(shown)
            axes[0].set_title("input (eval crop)")
            axes[1].imshow(overlay)
            axes[1].set_title(f"Grad-CAM: {explainer.classes[pred]} (p = {prob:.3f})")
            for ax in axes:
                ax.axis("off")
            fig.suptitle(path.name)
            written.append(save_figure(fig, Path(output_dir) / f"{path.stem}_gradcam.png"))
    finally:
        explainer.close()
    return written
