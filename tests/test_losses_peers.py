"""Region losses against MONAI and segmentation_models_pytorch (smp): values and gradients over a grid of 2D and 3D,
binary / multiclass / multilabel, index and one-hot targets, empty masks and empty classes, ignore_index,
per_image, include_background, smoothing and averaging. Where a convention differs, the test asserts the documented
mapping (the "Compared with" paragraphs of the docstrings)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from losses import binary as B
from losses import multiclass as M
from losses import segmentation as S

monai_losses = pytest.importorskip("monai.losses", reason="needs monai (the test extra: pip install -e '.[test]')")
smp_losses = pytest.importorskip(
    "segmentation_models_pytorch.losses", reason="needs segmentation-models-pytorch (the test extra: pip install -e '.[test]')"
)

SHAPES = {"2d": (6, 5), "3d": (4, 3, 5)}
C = 3
IGNORE = 255


def make(mode: str, dims: str, *, seed: int = 0, empty_class: bool = False, empty_mask: bool = False, ignore: bool = False):
    """``(logits, target)`` in float64 for ``mode``; class 2 absent with ``empty_class``; image 0 all background
    with ``empty_mask``; every 4th pixel ``IGNORE`` with ``ignore``."""
    g = torch.Generator().manual_seed(seed)
    spatial = SHAPES[dims]
    n = 2
    if mode == "multiclass":
        x = torch.randn(n, C, *spatial, generator=g, dtype=torch.float64)
        y = torch.randint(0, C, (n, *spatial), generator=g)
        if empty_class:
            y = y.clamp_max(1)
        if empty_mask:
            y[0] = 0
    else:
        c = 1 if mode == "binary" else C
        x = torch.randn(n, c, *spatial, generator=g, dtype=torch.float64)
        y = (torch.rand(n, c, *spatial, generator=g) > 0.6).to(torch.float64)
        if empty_class:
            y[:, -1] = 0
        if empty_mask:
            y[0] = 0
    if ignore:
        y = y.clone()
        y.view(-1)[::4] = IGNORE
    return x, y


def agree(ours, theirs, x, y, atol=1e-9):
    """Same value and same gradient with respect to the logits."""
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    va, vb = ours(a, y), theirs(b, y)
    torch.testing.assert_close(va, vb.to(va.dtype).reshape(va.shape), atol=atol, rtol=1e-7)
    va.sum().backward()
    vb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=atol, rtol=1e-6)


def monai_target(mode: str, y):
    """MONAI's target layout: a channel axis for class indices (with ``to_onehot_y``), else as is."""
    return y.unsqueeze(1) if mode == "multiclass" else y


def monai_act(mode: str) -> dict:
    return {"softmax": True, "to_onehot_y": True} if mode == "multiclass" else {"sigmoid": True}


GRID = list(itertools.product(("binary", "multiclass", "multilabel"), ("2d", "3d"), (False, True), (False, True)))


# ------------------------------------------------------------------------------------------------------------ MONAI


# MONAI's ignore_index masks pixels of label-encoded (or one-hot) targets and has no per-element form for
# multilabel masks; smp's has, and test_dice_jaccard_tversky_equal_smp checks ours against it.
MONAI_CASES = [
    (*g, case) for g in GRID for case in ("plain", "empty_class", "empty_mask", "ignore") if not (case == "ignore" and g[0] == "multilabel")
]


@pytest.mark.filterwarnings("ignore:single channel prediction")
@pytest.mark.parametrize("mode,dims,per_image,include_background,case", MONAI_CASES)
def test_dice_equals_monai(mode, dims, per_image, include_background, case):
    x, y = make(mode, dims, empty_class=case == "empty_class", empty_mask=case == "empty_mask", ignore=case == "ignore")
    ignore = IGNORE if case == "ignore" else None
    for nr, dr, squared in ((1e-5, 1e-5, False), (0.0, 1.0, False), (1.0, 1.0, True)):
        theirs = monai_losses.DiceLoss(
            **monai_act(mode), include_background=include_background, smooth_nr=nr, smooth_dr=dr, batch=not per_image,
            squared_pred=squared, ignore_index=ignore,
        )
        agree(
            lambda a, t: S.dice(a, t, mode=mode, smooth_nr=nr, smooth_dr=dr, squared=squared, per_image=per_image,
                                include_background=include_background, ignore_index=ignore, weight_norm="count"),
            lambda b, t: theirs(b, monai_target(mode, t)), x, y,
        )
        if mode == "multiclass" and ignore is None:  # one-hot targets: MONAI without to_onehot_y
            one_hot = F.one_hot(y, C).movedim(-1, 1).to(x.dtype)
            theirs = monai_losses.DiceLoss(softmax=True, include_background=include_background, smooth_nr=nr,
                                           smooth_dr=dr, batch=not per_image, squared_pred=squared)
            agree(
                lambda a, t: S.dice(a, t, mode="multiclass", smooth_nr=nr, smooth_dr=dr, squared=squared,
                                    per_image=per_image, include_background=include_background, weight_norm="count"),
                theirs, x, one_hot,
            )


@pytest.mark.filterwarnings("ignore:single channel prediction")
@pytest.mark.parametrize("mode,dims,per_image,include_background", GRID)
def test_jaccard_and_tversky_equal_monai(mode, dims, per_image, include_background):
    x, y = make(mode, dims, empty_class=True)
    jac = monai_losses.DiceLoss(**monai_act(mode), include_background=include_background, jaccard=True, smooth_nr=1.0,
                                smooth_dr=0.5, batch=not per_image)
    agree(  # MONAI's Jaccard is (2 I + nr) / (2 U + dr): ours with half the smoothing
        lambda a, t: S.jaccard(a, t, mode=mode, smooth_nr=0.5, smooth_dr=0.25, per_image=per_image, include_background=include_background),
        lambda b, t: jac(b, monai_target(mode, t)), x, y,
    )
    tv = monai_losses.TverskyLoss(**monai_act(mode), include_background=include_background, alpha=0.3, beta=0.7,
                                  smooth_nr=1e-5, smooth_dr=1e-5, batch=not per_image)
    agree(
        lambda a, t: S.tversky(a, t, mode=mode, alpha=0.3, beta=0.7, smooth=1e-5, per_image=per_image, include_background=include_background),
        lambda b, t: tv(b, monai_target(mode, t)), x, y,
    )


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("include_background", [True, False])
def test_class_weights_equal_monai_with_count_normalisation(dims, include_background):
    """MONAI's weighted mean divides by the number of terms (``weight_norm='count'``) and takes weights without the
    background class when it is dropped; ours always takes ``C`` weights."""
    x, y = make("multiclass", dims)
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    theirs = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=include_background,
                                   weight=w if include_background else w[1:])
    agree(lambda a, t: S.dice(a, t, smooth=1e-5, include_background=include_background, per_image=True, weight=w,
                              weight_norm="count"),
          lambda b, t: theirs(b, t.unsqueeze(1)), x, y)
    # the default normalisation (sum of weights) is the weighted mean: the two differ by mean(w) / C-term count
    ours_sum = S.dice(x, y, smooth=1e-5, include_background=include_background, per_image=True, weight=w)
    kept = w if include_background else w[1:]
    torch.testing.assert_close(ours_sum * kept.mean(), theirs(x, y.unsqueeze(1)))


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("weight_type", ["square", "simple", "uniform"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("case", ["plain", "empty_class", "empty_mask"])
def test_generalized_dice_equals_monai(dims, weight_type, per_image, case):
    x, y = make("multiclass", dims, empty_class=case == "empty_class", empty_mask=case == "empty_mask")
    theirs = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, w_type=weight_type, batch=not per_image)
    agree(lambda a, t: S.generalized_dice(a, t, weight_type=weight_type, per_image=per_image),
          lambda b, t: theirs(b, t.unsqueeze(1)), x, y)
    xb, yb = make("multilabel", dims, empty_class=case == "empty_class")
    theirs = monai_losses.GeneralizedDiceLoss(sigmoid=True, w_type=weight_type, batch=not per_image)
    agree(lambda a, t: S.generalized_dice(a, t, mode="multilabel", weight_type=weight_type, per_image=per_image), theirs, xb, yb)


def test_generalized_dice_with_every_class_absent_is_zero():
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    assert S.generalized_dice(x, torch.zeros_like(x)).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("per_image", [False, True])
def test_compounds_equal_monai(dims, per_image):
    x, y = make("multiclass", dims)
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    dce = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, batch=not per_image, smooth_nr=1e-5, smooth_dr=1e-5,
                                  lambda_dice=0.7, lambda_ce=1.3, weight=w, label_smoothing=0.1)
    agree(lambda a, t: S.dice_ce(a, t, smooth=1e-5, per_image=per_image, dice_weight=0.7, ce_weight=1.3, weight=w,
                                 weight_norm="count", label_smoothing=0.1),
          lambda b, t: dce(b, t.unsqueeze(1)), x, y)
    for mode in ("binary", "multilabel"):
        xb, yb = make(mode, dims)
        bce = monai_losses.DiceCELoss(sigmoid=True, batch=not per_image, smooth_nr=1.0, smooth_dr=1.0)
        if mode == "binary":
            agree(lambda a, t: S.dice_bce(a, t, mode=mode, per_image=per_image), bce, xb, yb)
        else:  # MONAI's CE term is a softmax cross-entropy over the channels whenever C > 1, even with sigmoid=True
            agree(lambda a, t: S.dice(a, t, mode=mode, per_image=per_image) + M.categorical_ce(a, t), bce, xb, yb)
            assert not torch.allclose(S.dice_bce(xb, yb, mode=mode, per_image=per_image), bce(xb, yb))
        dfl = monai_losses.DiceFocalLoss(sigmoid=True, batch=not per_image, smooth_nr=1.0, smooth_dr=1.0, gamma=1.5,
                                         alpha=0.3, lambda_focal=2.0)
        agree(lambda a, t: S.dice_focal(a, t, mode=mode, per_image=per_image, gamma=1.5, alpha=0.3, focal_weight=2.0), dfl, xb, yb)


def test_dice_focal_multiclass_mapping_to_monai():
    """MONAI's DiceFocalLoss(softmax=True) puts a sigmoid focal term on the one-hot channels; ours uses the softmax
    focal term in multiclass mode, and equals MONAI's as softmax Dice + our multilabel focal on the one-hot target."""
    x, y = make("multiclass", "2d")
    one_hot = F.one_hot(y, C).movedim(-1, 1).to(x.dtype)
    theirs = monai_losses.DiceFocalLoss(softmax=True, to_onehot_y=True, smooth_nr=1.0, smooth_dr=1.0, batch=True)
    agree(lambda a, t: S.dice(a, t) + B.focal(a, one_hot, alpha=None, gamma=2.0),
          lambda b, t: theirs(b, t.unsqueeze(1)), x, y)
    assert not torch.allclose(S.dice_focal(x, y), theirs(x, y.unsqueeze(1)))


# -------------------------------------------------------------------------------------------------------------- smp


@pytest.mark.parametrize("mode,dims", list(itertools.product(("binary", "multiclass", "multilabel"), SHAPES)))
@pytest.mark.parametrize("case", ["plain", "empty_class", "empty_mask", "ignore"])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_jaccard_tversky_equal_smp(mode, dims, case, smooth):
    """smp zeroes classes absent from the batch target and divides by all C: ours with average='present' and
    reduction='none', then mean."""
    x, y = make(mode, dims, empty_class=case == "empty_class", empty_mask=case == "empty_mask", ignore=case == "ignore")
    ignore = IGNORE if case == "ignore" else None
    target = y.long() if mode == "multiclass" else y

    def ours(fn, scale=1.0, **kw):
        return lambda a, t: fn(a, t, mode=mode, smooth=scale * smooth, ignore_index=ignore, average="present", reduction="none", **kw).mean()

    # smp's Dice is its Tversky score at alpha = beta = 0.5, (I + s) / ((P + G) / 2 + s): ours with smooth = 2 s
    agree(ours(S.dice, 2.0), lambda b, t: smp_losses.DiceLoss(mode, smooth=smooth, ignore_index=ignore)(b, t), x, target)
    agree(ours(S.dice, 2.0, log=True), lambda b, t: smp_losses.DiceLoss(mode, smooth=smooth, ignore_index=ignore, log_loss=True)(b, t), x, target)
    agree(ours(S.jaccard), lambda b, t: smp_losses.JaccardLoss(mode, smooth=smooth, ignore_index=ignore)(b, t), x, target)
    agree(ours(S.tversky, alpha=0.3, beta=0.7),
          lambda b, t: smp_losses.TverskyLoss(mode, smooth=smooth, ignore_index=ignore, alpha=0.3, beta=0.7)(b, t), x, target)


def test_class_weights_equal_smp():
    """smp divides the weighted sum (absent classes zeroed) by the sum of all weights."""
    x, y = make("multiclass", "2d", empty_class=True)
    w = [0.5, 2.0, 1.0]
    wt = torch.tensor(w, dtype=torch.float64)
    agree(lambda a, t: S.dice(a, t, smooth=0.0, average="present", weight=wt, reduction="none").sum() / wt.sum(),
          lambda b, t: smp_losses.DiceLoss("multiclass", class_weights=w)(b, t), x, y)
    # with every class present, smp's weighted loss is ours
    x, y = make("multiclass", "2d")
    agree(lambda a, t: S.dice(a, t, smooth=0.0, weight=wt),
          lambda b, t: smp_losses.DiceLoss("multiclass", class_weights=w)(b, t), x, y)


def test_focal_tversky_equals_smp_for_one_class():
    """smp raises the class mean to gamma, ours each class's loss: the same with one class."""
    x, y = make("binary", "2d")
    agree(lambda a, t: S.focal_tversky(a, t, alpha=0.4, beta=0.6, gamma=1.5, smooth=0.0),
          lambda b, t: smp_losses.TverskyLoss("binary", alpha=0.4, beta=0.6, gamma=1.5)(b, t), x, y)


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("case", ["plain", "empty_mask", "ignore"])
def test_lovasz_equals_smp(dims, per_image, case):
    """In float32: smp's hinge casts the labels to float32."""
    ignore = IGNORE if case == "ignore" else None
    for mode in ("binary", "multiclass"):
        x, y = make(mode, dims, empty_mask=case == "empty_mask", ignore=case == "ignore", empty_class=mode == "multiclass")
        target = y.long() if mode == "multiclass" else y.float()
        theirs = smp_losses.LovaszLoss(mode, per_image=per_image, ignore_index=ignore)
        agree(lambda a, t: S.lovasz(a, t, mode=mode, per_image=per_image, ignore_index=ignore), theirs, x.float(), target, atol=1e-6)
    # smp's multilabel mode is one hinge over all channels: ours in binary mode on the flattened channels
    x, y = make("multilabel", dims, ignore=case == "ignore")
    theirs = smp_losses.LovaszLoss("multilabel", per_image=per_image, ignore_index=ignore)
    agree(lambda a, t: S.lovasz(a.reshape(2, 1, -1), t.reshape(2, 1, -1), per_image=per_image, ignore_index=ignore),
          theirs, x.float(), y.float(), atol=1e-6)


@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_binary_focal_equals_smp_and_torchvision(ignore):
    from torchvision.ops import sigmoid_focal_loss

    x, y = make("binary", "2d", ignore=ignore is not None)
    for alpha in (None, 0.25, 0.8):
        theirs = smp_losses.FocalLoss("binary", alpha=alpha, gamma=2.0, ignore_index=ignore)
        agree(lambda a, t: B.focal(a, t, alpha=alpha, ignore_index=ignore), theirs, x, y)
    x, y = make("binary", "2d")
    agree(lambda a, t: B.focal(a, t, alpha=None), lambda b, t: sigmoid_focal_loss(b, t, alpha=-1, reduction="mean"), x, y)
    agree(lambda a, t: B.focal(a, t), lambda b, t: sigmoid_focal_loss(b, t, reduction="mean"), x, y)


@pytest.mark.filterwarnings("ignore:single channel prediction")
@pytest.mark.parametrize("mode,dims", list(itertools.product(("binary", "multiclass", "multilabel"), SHAPES)))
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("case", ["plain", "empty_mask"])
def test_hausdorff_dt_equals_monai(mode, dims, include_background, case):
    """Distance maps in float32 on both sides (MONAI casts them): agreement to 1e-6 relative."""
    x, y = make(mode, dims, empty_mask=case == "empty_mask")
    for per_image in (False, True):
        theirs = monai_losses.HausdorffDTLoss(**monai_act(mode), include_background=include_background, batch=not per_image)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ours = S.hausdorff_dt(a, y, mode=mode, include_background=include_background, per_image=per_image)
        ref = theirs(b, monai_target(mode, y))
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
        ours.backward()
        ref.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
