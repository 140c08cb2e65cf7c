"""Lovasz loss (Berman et al. 2018), batched: one sort per call over every (image or batch) x class row."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import Constraint, check_reduction, reduce, register
from ._masks import MODE, class_mean, infer_mode, masks

_CLASSES = Constraint(
    "'present', 'all' or a list of class indices",
    lambda v: v in ("present", "all") or (isinstance(v, (list, tuple)) and all(isinstance(c, int) and not isinstance(c, bool) for c in v)),
)


def lovasz_extension(errors: Tensor, fg: Tensor) -> Tensor:
    """``<sort(errors), grad>`` per row of ``(..., S)`` tensors: the Lovasz extension of the Jaccard loss evaluated at
    ``errors`` (non-negative), with ``fg`` the {0, 1} ground truth of each element (Berman et al. 2018, Alg. 1)."""
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    fg_sorted = fg.gather(-1, order)
    gts = fg_sorted.sum(-1, keepdim=True)
    intersection = gts - fg_sorted.cumsum(-1)
    union = gts + (1.0 - fg_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return (errors_sorted * grad).sum(-1)


@register("lovasz", aliases=("lovasz_hinge", "lovasz_softmax"), constraints={"mode": MODE, "classes": _CLASSES}, tasks=("segmentation",), input="logits", target="mask")
def lovasz(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    per_image: bool = False,
    classes: str | list[int] = "present",
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Lovasz loss: a convex surrogate of the Jaccard loss, optimised directly (Berman et al. 2018).

    Binary masks: the Lovasz hinge on logits (errors ``relu(1 - x (2g - 1))``). Multiclass: the Lovasz-softmax on
    ``softmax(input)`` (errors ``|g - p|``). Multilabel: the Lovasz hinge per channel. Per image (``per_image``) or
    over the batch; ``classes``: ``'present'`` (classes in the target of the image or batch; the paper's default),
    ``'all'``, or a list of class indices; ``weight``: per-class weights of the mean (normalised by their sum).
    ``classes`` does not apply to binary masks (the hinge always counts their one class, as the paper's).
    ``ignore_index`` pixels are left out in every mode. ``reduction='none'`` returns one value per image
    (``per_image``; ``sum`` adds them), else one per class (zero for a class left out; ``sum`` adds them).

    Compared with smp ``LovaszLoss``: the same in binary and multiclass modes (``classes='present'``); smp's
    multilabel mode flattens all channels into one hinge, which is ours with ``mode='binary'`` on the flattened
    input. With no class present an image scores 0, as in smp.
    """
    check_reduction(reduction)
    mode = infer_mode("lovasz", input, target, mode)  # the hinge (binary, multilabel) reads the logits, not sigmoid(x)
    m = masks("lovasz", input, target, mode=mode, from_logits=mode == "multiclass", ignore_index=ignore_index, check_target=check_target)
    p, g, x = m.p, m.g, m.x
    if m.mode == "multiclass":
        errors = (g - p).abs()
    else:
        errors = F.relu(1.0 - x * (2.0 * g - 1.0))
        if m.valid is not None:
            errors = errors * m.valid
    if not per_image:  # (N, C, S) -> (1, C, N*S): one row per class over the whole batch
        errors, g = (t.transpose(0, 1).reshape(1, t.shape[1], -1) for t in (errors, g))
    loss = lovasz_extension(errors, g)  # (N or 1, C)
    num_classes = loss.shape[-1]
    if m.mode == "binary" or classes == "all":
        chosen = None
    elif classes == "present":
        chosen = g.sum(-1) > 0
    else:
        if any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"loss 'lovasz': classes {list(classes)} out of range for {num_classes} classes")
        chosen = torch.zeros(num_classes, dtype=torch.bool, device=loss.device)
        chosen[list(classes)] = True
        chosen = chosen.expand_as(loss)
    if per_image:
        return reduce(_row_mean(loss, weight, chosen), reduction)  # one value per image
    if reduction == "mean":
        return loss.sum() / loss.shape[-1] if weight is None and chosen is None else _row_mean(loss, weight, chosen)[0]
    return class_mean(loss[0], reduction, weight=weight, present=None if chosen is None else chosen[0], weight_norm="sum")


def _row_mean(loss: Tensor, weight: Tensor | None, chosen: Tensor | None) -> Tensor:
    """Weighted mean over the chosen classes of each row of ``(R, C)``; 0 for a row with none chosen."""
    if weight is None and chosen is None:
        return loss.sum(-1) / loss.shape[-1]  # a division, as the weighted form (CUDA's mean multiplies by 1/C)
    w = torch.ones_like(loss) if weight is None else torch.as_tensor(weight, dtype=loss.dtype, device=loss.device).expand_as(loss)
    if chosen is not None:
        w = w * chosen.to(loss.dtype)
    return (loss * w).sum(-1) / w.sum(-1).clamp_min(torch.finfo(loss.dtype).tiny)
