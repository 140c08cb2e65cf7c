"""Segmentation: per-pixel scores ``(N, 1, H, W)`` (binary masks, foreground where positive) against {0, 1} masks
when the masks are binary and the loss takes binary masks; otherwise ``(N, C, H, W)`` scores (argmax) against
integer masks, or one-hot masks for ``one_hot`` losses."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..evaluation import Evaluation
from .base import Figures, Task, register
from .binary import binary_target, confusion
from .multiclass import one_hot


def predictions(score: Tensor) -> Tensor:
    """Predicted class per pixel: foreground where the single channel is positive, else the argmax channel."""
    return (score[:, 0] > 0).long() if score.shape[1] == 1 else score.argmax(dim=1)


class Segmentation(Task):
    name = "segmentation"
    metrics = {"miou": False, "dice": False, "pixel_accuracy": False, "precision": False, "recall": False}
    monitor = "miou"
    target_format = "mask"
    target_formats = ("mask", "binary", "index", "one_hot")
    per_pixel = True

    def num_outputs(self, spec: Any, num_classes: int | None) -> int:
        assert num_classes is not None
        return 1 if num_classes == 2 and spec.target in ("binary", "mask") else num_classes

    def incompatibility(self, spec: Any, num_classes: int | None) -> str | None:
        reason = super().incompatibility(spec, num_classes)
        if reason is None and spec.target == "binary" and num_classes is not None and num_classes != 2:
            return f"it takes binary masks and this data has {num_classes} classes (binary masks have 2)"
        return reason

    def loss_settings(self, spec: Any, num_outputs: int) -> dict[str, Any]:
        """The mode the output implies (one channel: binary, else multiclass), and no per-batch target check: the
        data layer checks mask values once when it builds the masks (class indices in ``[0, num_classes)``)."""
        settings: dict[str, Any] = {}
        if "mode" in spec.params:
            settings["mode"] = "binary" if num_outputs == 1 else "multiclass"
        if "check_target" in spec.params:
            settings["check_target"] = False
        return settings

    def side_inputs(self, spec: Any, labels: Tensor, num_outputs: int) -> dict[str, Tensor]:
        """``distance``: the signed distance map of every training mask, in the layout :meth:`prepare` gives the
        target (one foreground channel, or one channel per class), for the losses that take one (``boundary``)."""
        if "distance" not in spec.params:
            return {}
        from losses.segmentation import signed_distance

        masks = (labels == 1).unsqueeze(1) if num_outputs == 1 else one_hot(labels.clamp(0, num_outputs - 1), num_outputs)
        return {"distance": signed_distance(masks.float())}

    def gradient_groups(self, data: Any) -> dict[str, Tensor]:
        """Foreground (any class but 0) and background pixels of the training masks."""
        masks = data.train.y
        return {"foreground": masks > 0, "background": masks == 0}

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        if num_outputs == 1:
            return output, binary_target(output, labels)
        return output, one_hot(labels, num_outputs) if target_format == "one_hot" else labels

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """Mean IoU over classes present in prediction or truth; mean Dice, precision and recall over the foreground
        classes (1 for a class in neither prediction nor truth, 0 for an empty denominator otherwise); pixel
        accuracy."""
        assert num_classes is not None
        self.check_host("metrics", output, target)
        cm = confusion(predictions(output), target, num_classes).double()
        tp = cm.diag()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        union = tp + fp + fn
        iou = tp[union > 0] / union[union > 0]
        fg = torch.arange(num_classes) > 0
        absent = (tp + fp + fn)[fg] == 0

        def ratio(num: Tensor, den: Tensor) -> float:
            return float(torch.where(absent, 1.0, num[fg] / den[fg].clamp_min(1)).mean())

        return {
            "miou": float(iou.mean()) if len(iou) else 1.0,
            "dice": ratio(2 * tp, 2 * tp + fp + fn),
            "pixel_accuracy": float(tp.sum() / cm.sum()),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
        }

    def figures(self, test: Evaluation, data: Any, evaluate: Callable[[str], Evaluation], title: str) -> Figures:
        from .. import plots

        return {"plots/masks.png": plots.mask_grid(data.test.x[:6], test.target[:6], predictions(test.output[:6]), title)}


TASK = register(Segmentation())
