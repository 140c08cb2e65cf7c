"""Region losses on masks: the mode, void labels, target checks and the averaging options, each against a reference
computed another way (the kept pixels alone, a per-class loop, the counts by hand)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import binary as B
from losses import multiclass as M
from losses import segmentation as S
from losses.lovasz import lovasz_extension

REGION = ["dice", "jaccard", "tversky", "focal_tversky", "lovasz", "generalized_dice"]
VOID = 255


def binary_with_void(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    y = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).to(torch.float64)
    void = torch.rand(3, 1, 8, 8, generator=g) < 0.25
    return x, torch.where(void, torch.full_like(y, VOID), y), void


# ------------------------------------------------------------------------------ 1. void labels on binary masks


@pytest.mark.parametrize("name", REGION + ["dice_bce", "dice_focal", "bce", "focal"])
def test_binary_void_pixels_are_left_out(name):
    """The loss over the batch with void pixels equals the loss over the kept pixels alone (one flat image), and
    void pixels get no gradient: the defect was a negative Dice and a Lovasz in the hundreds."""
    fn = losses.spec(name).fn
    x, y, void = binary_with_void()
    keep = ~void
    a = x.clone().requires_grad_(True)
    value = fn(a, y, ignore_index=VOID)
    reference = fn(x[keep].reshape(1, 1, -1), y[keep].reshape(1, 1, -1))
    torch.testing.assert_close(value, reference)
    value.backward()
    assert torch.all(a.grad[void] == 0) and a.grad[keep].abs().sum() > 0
    if name in REGION:
        assert 0.0 <= value.item() <= 1.0 or name == "lovasz" and 0.0 <= value.item() < 10.0


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "lovasz"])
def test_multilabel_void_elements_are_left_out_per_channel(name):
    fn = losses.spec(name).fn
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 3, 6, 6, generator=g) > 0.5).to(torch.float64)
    void = torch.rand(2, 3, 6, 6, generator=g) < 0.3
    y[void] = VOID
    per_channel = fn(x, y, mode="multilabel", ignore_index=VOID, reduction="none", **({"classes": "all"} if name == "lovasz" else {}))
    for c in range(3):
        keep = ~void[:, c]
        one = fn(x[:, c][keep].reshape(1, 1, -1), y[:, c][keep].reshape(1, 1, -1))
        torch.testing.assert_close(per_channel[c], one)


# --------------------------------------------------------------------- 2. (N, H, W) logits with a same-shaped mask


@pytest.mark.parametrize("name", REGION)
def test_channel_less_binary_masks_need_the_mode_and_then_are_binary(name):
    fn = losses.spec(name).fn
    x = torch.randn(2, 6, 6, dtype=torch.float64)
    y = (torch.rand(2, 6, 6) > 0.5).to(torch.float64)
    with pytest.raises(ValueError, match=r"ambiguous; pass mode='binary'"):
        fn(x, y)  # it was a softmax over H
    torch.testing.assert_close(fn(x, y, mode="binary"), fn(x.unsqueeze(1), y.unsqueeze(1)))


def test_mode_is_inferred_only_where_the_shapes_tell():
    x3 = torch.randn(2, 3, 4, 4)
    assert S.dice(torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4)).float()) >= 0  # binary, target without channel
    assert S.dice(x3, torch.randint(0, 3, (2, 4, 4))) >= 0  # multiclass from integer indices
    one_hot = F.one_hot(torch.randint(0, 3, (2, 4, 4)), 3).movedim(-1, 1).float()
    with pytest.raises(ValueError, match="ambiguous"):
        S.dice(x3, one_hot)
    assert not torch.allclose(S.dice(x3, one_hot, mode="multiclass"), S.dice(x3, one_hot, mode="multilabel"))
    with pytest.raises(ValueError, match="mode must be one of"):
        S.dice(x3, one_hot, mode="multi")
    with pytest.raises(ValueError, match="multilabel mode needs a target of the input's shape"):
        S.dice(x3, torch.randint(0, 3, (2, 4, 4)), mode="multilabel")


def test_multilabel_is_a_sigmoid_per_channel():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 3, 5, 5, generator=g) > 0.5).to(torch.float64)
    per_channel = torch.stack([S.dice(x[:, c:c + 1], y[:, c:c + 1]) for c in range(3)])
    torch.testing.assert_close(S.dice(x, y, mode="multilabel", reduction="none"), per_channel)


# ------------------------------------------------------------------------------------ 3. targets a mode cannot hold


def test_targets_outside_the_mode_raise_naming_the_values():
    x = torch.randn(2, 1, 4, 4)
    y = torch.zeros(2, 1, 4, 4)
    y[0, 0, 0, 0] = 255
    for name in ("dice", "lovasz", "dice_bce", "generalized_dice"):
        with pytest.raises(ValueError, match=r"binary targets must hold values in \[0, 1\]; got \[255.0\]"):
            losses.spec(name).fn(x, y)
    assert torch.isfinite(S.dice(x, y, ignore_index=255))
    x3, idx = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    idx[1, 2, 2], idx[0, 0, 1] = 5, -1
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]; got \[-1, 5\]"):
        S.dice(x3, idx)
    with pytest.raises(ValueError, match=r"\(or ignore_index=-1\); got \[5\]"):
        S.jaccard(x3, idx, ignore_index=-1)
    with pytest.raises(ValueError, match=r"got \[5\]"):
        S.dice_ce(x3, idx, ignore_index=-1)
    idx[1, 2, 2] = 2
    assert torch.isfinite(S.dice(x3, idx, ignore_index=-1))


def test_the_target_check_can_be_turned_off():
    x, y = torch.randn(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0)
    with pytest.raises(ValueError):
        S.dice(x, y)
    S.dice(x, y, check_target=False)  # the user's promise: no reduction, no host sync


def test_soft_binary_targets_are_accepted():
    x, y = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    assert torch.isfinite(S.dice(x, y)) and torch.isfinite(S.dice_bce(x, y))


# ------------------------------------------------------------------------------------------------------ 4. kl_div


def test_kl_div_averages_over_examples_and_positions_as_documented():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    y = F.softmax(torch.randn(4, 3, 5, generator=g, dtype=torch.float64), 1)
    total = F.kl_div(F.log_softmax(x, 1), y, reduction="sum")
    torch.testing.assert_close(M.kl_div(x, y), total / (4 * 5))
    x2, y2 = x[..., 0], y[..., 0]
    torch.testing.assert_close(M.kl_div(x2, y2), F.kl_div(F.log_softmax(x2, 1), y2, reduction="batchmean"))
    assert "sum / (N * d...)" in M.kl_div.__doc__


# -------------------------------------------------------------------------------------------------------- options


def test_smooth_nr_and_smooth_dr_by_hand():
    x = torch.tensor([[[2.0, -1.0, 0.5]]], dtype=torch.float64)
    y = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    p = torch.sigmoid(x)
    i, ps, gs = (p * y).sum(), p.sum(), y.sum()
    torch.testing.assert_close(S.dice(x, y, smooth_nr=0.3, smooth_dr=0.7), 1 - (2 * i + 0.3) / (ps + gs + 0.7))
    torch.testing.assert_close(S.dice(x, y, smooth=0.4), S.dice(x, y, smooth_nr=0.4, smooth_dr=0.4))
    torch.testing.assert_close(S.dice(x, y, smooth=0.0, squared=True), 1 - 2 * i / ((p * p).sum() + gs))
    torch.testing.assert_close(S.jaccard(x, y, smooth_nr=0.1, smooth_dr=0.2), 1 - (i + 0.1) / (ps + gs - i + 0.2))


def _multiclass_with_absent_class(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 5, 5), generator=g)  # class 3 absent
    return x, y


def test_averaging_all_present_micro():
    x, y = _multiclass_with_absent_class()
    per_class = S.dice(x, y, reduction="none")
    assert per_class.shape == (4,)
    torch.testing.assert_close(S.dice(x, y, average="all"), per_class.mean())
    torch.testing.assert_close(S.dice(x, y, average="present"), per_class[:3].mean())
    assert S.dice(x, y, average="present", reduction="none")[3] == 0
    p, g = F.softmax(x, 1), F.one_hot(y, 4).movedim(-1, 1).double()
    micro = 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1)
    torch.testing.assert_close(S.dice(x, y, average="micro"), micro)
    # per image: presence is per image
    x1, y1 = x.clone(), y.clone()
    y1[0] = 0
    per_image = S.dice(x1, y1, per_image=True, average="present", reduction="none")
    assert per_image.shape == (2, 4) and torch.all(per_image[0, 1:] == 0) and per_image[0, 0] > 0


def test_weight_norms_and_background():
    x, y = _multiclass_with_absent_class(1)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    per_class = S.dice(x, y, reduction="none")
    torch.testing.assert_close(S.dice(x, y, weight=w), (w * per_class).sum() / w.sum())
    torch.testing.assert_close(S.dice(x, y, weight=w, weight_norm="count"), (w * per_class).mean())
    torch.testing.assert_close(S.dice(x, y, weight=w, include_background=False), (w[1:] * per_class[1:]).sum() / w[1:].sum())
    torch.testing.assert_close(S.dice(x, y, weight=w, average="present"), (w[:3] * per_class[:3]).sum() / w[:3].sum())


def test_generalized_dice_by_hand():
    x, y = _multiclass_with_absent_class(2)
    p, g = F.softmax(x, 1), F.one_hot(y, 4).movedim(-1, 1).double()
    i, ps, gs = ((p * g).sum((0, 2, 3)), p.sum((0, 2, 3)), g.sum((0, 2, 3)))
    w = 1 / gs**2
    w[3] = w[:3].max()  # the absent class takes the largest finite weight
    expected = 1 - (2 * (w * i).sum() + 1e-5) / ((w * (ps + gs)).sum() + 1e-5)
    torch.testing.assert_close(S.generalized_dice(x, y), expected)
    u = 1 - (2 * i.sum() + 1e-5) / ((ps + gs).sum() + 1e-5)
    torch.testing.assert_close(S.generalized_dice(x, y, weight_type="uniform"), u)


def test_compounds_pass_every_option_through():
    x, y = _multiclass_with_absent_class(3)
    w = torch.tensor([0.5, 1.0, 2.0, 1.0], dtype=torch.float64)
    kw = dict(smooth_nr=0.2, smooth_dr=0.5, squared=True, per_image=True, include_background=False, average="present", weight=w)
    torch.testing.assert_close(
        S.dice_ce(x, y, label_smoothing=0.1, **kw),
        S.dice(x, y, **kw) + F.cross_entropy(x, y, weight=w, label_smoothing=0.1),
    )
    torch.testing.assert_close(
        S.dice_focal(x, y, gamma=1.0, **kw), S.dice(x, y, **kw) + M.categorical_focal(x, y, alpha=None, gamma=1.0, weight=w)
    )
    xb = x[:, :1]
    yb = (y[:, None] > 0).double()
    kb = dict(smooth=0.5, per_image=True, squared=True)
    torch.testing.assert_close(
        S.dice_bce(xb, yb, pos_weight=3.0, label_smoothing=0.2, **kb),
        S.dice(xb, yb, **kb) + B.bce(xb, yb, pos_weight=3.0, label_smoothing=0.2),
    )


def test_binary_focal_pos_weight():
    x = torch.tensor([[1.5], [-0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    p = torch.sigmoid(x)
    pos = -0.25 * 3.0 * (1 - p[0]) ** 2 * torch.log(p[0])
    neg = -0.75 * p[1] ** 2 * torch.log(1 - p[1])
    torch.testing.assert_close(B.focal(x, y, pos_weight=3.0, reduction="none"), torch.stack([pos, neg]))


# -------------------------------------------------------------------------------------------------------- lovasz


def _lovasz_loop(probs, labels, classes):
    """Berman et al.'s reference: one sort per present class, in a Python loop (the implementation before this one)."""
    values = []
    for c in classes:
        fg = (labels == c).double()
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        values.append(lovasz_extension(errors, fg))
    return torch.stack(values).mean()


def test_lovasz_classes_and_weights():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 6, 6), generator=g)  # class 4 absent
    probs = F.softmax(x, 1).movedim(1, -1).reshape(-1, 5)
    flat = y.reshape(-1)
    torch.testing.assert_close(S.lovasz(x, y), _lovasz_loop(probs, flat, range(5)))
    torch.testing.assert_close(S.lovasz(x, y, classes=[1, 3]), _lovasz_loop(probs, flat, [1, 3]))
    per_class = S.lovasz(x, y, classes="all", reduction="none")
    assert per_class[4] > 0  # an absent class still costs what is predicted for it
    torch.testing.assert_close(S.lovasz(x, y, classes="all"), per_class.mean())
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(S.lovasz(x, y, weight=w), (w[:4] * per_class[:4]).sum() / w[:4].sum())
    with pytest.raises(ValueError, match="classes \\[7\\] out of range"):
        S.lovasz(x, y, classes=[7])
    with pytest.raises(ValueError, match="classes must be 'present', 'all' or a list"):
        S.lovasz(x, y, classes="some")


def test_harness_sets_the_mode_from_the_task(make_cfg):
    from harness.criterion import build_criterion

    two = build_criterion(make_cfg("data=segmentation", "loss=dice"), "segmentation", 2, None)
    four = build_criterion(make_cfg("data=segmentation", "loss=lovasz", "data.num_classes=4"), "segmentation", 4, None)
    assert two.module.params["mode"] == "binary" and four.module.params["mode"] == "multiclass"
    assert two.module.params["check_target"] is False  # the data layer checks mask values once
    mine = build_criterion(make_cfg("data=segmentation", "loss=dice", "+loss.check_target=true"), "segmentation", 2, None)
    assert mine.module.params["check_target"] is True


# ---------------------------------------------------------------------------------------------------- devices

MODES_OF = {
    "dice_bce": ("binary", "multilabel"),
    "dice_ce": ("multiclass",),
}


def _device_cases():
    for name in REGION + ["dice_bce", "dice_ce", "dice_focal"]:
        for mode in MODES_OF.get(name, ("binary", "multiclass", "multilabel")):
            for void in (False, True):
                yield name, mode, void


def _example(mode, void, seed=7):
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        x, y = torch.randn(4, 5, 16, 16, generator=g), torch.randint(0, 5, (4, 16, 16), generator=g)
    else:
        c = 1 if mode == "binary" else 3
        x = torch.randn(4, c, 16, 16, generator=g)
        y = (torch.rand(4, c, 16, 16, generator=g) > 0.7).float()
    if void:
        y = y.clone()
        y.view(-1)[::5] = VOID
    return x, y


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,mode,void", list(_device_cases()))
def test_region_losses_agree_on_cpu_and_cuda(name, mode, void):
    """float32: CUDA equals CPU within rtol 1e-4, atol 1e-5; bf16 inputs under bf16 autocast (what a bf16 run feeds
    the loss) equal the CPU float32 value of the same rounded inputs within 2e-3: the losses compute in float32."""
    fn = losses.spec(name).fn
    kw = {"mode": mode} if "mode" in losses.spec(name).params else {}
    kw.update({"ignore_index": VOID} if void else {})
    x, y = _example(mode, void)
    cpu = fn(x, y, **kw)
    torch.testing.assert_close(fn(x.cuda(), y.cuda(), **kw).cpu(), cpu, rtol=1e-4, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = fn(x.cuda().bfloat16(), y.cuda(), **kw)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.cpu(), fn(x.bfloat16().float(), y, **kw), rtol=2e-3, atol=2e-3)


def test_compounds_take_probabilities():
    x, y = _multiclass_with_absent_class(6)
    p = F.softmax(x, 1)
    torch.testing.assert_close(
        S.dice_ce(p, y, from_logits=False), S.dice(p, y, from_logits=False) + M.ce(p, y, from_logits=False)
    )
    xb, yb = x[:, :1], (y[:, None] > 0).double()
    pb = torch.sigmoid(xb)
    torch.testing.assert_close(
        S.dice_focal(pb, yb, from_logits=False), S.dice(pb, yb, from_logits=False) + B.focal(pb, yb, alpha=None, from_logits=False)
    )


@pytest.mark.parametrize("name", ["softmax_mse", "softmax_mae", "generalized_ce", "symmetric_ce", "categorical_focal", "poly1"])
@pytest.mark.parametrize("weighted", [False, True])
def test_ignored_positions_count_for_nothing_even_with_non_finite_logits(name, weighted):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(12, 4, generator=g), torch.randint(0, 4, (12,), generator=g)
    y[:3] = -100
    broken = x.clone()
    broken[:3] = float("nan")  # as F.cross_entropy: an ignored position's logits never reach the result
    kwargs = {"weight": torch.tensor([1.0, 2.0, 0.5, 3.0])} if weighted else {}
    for reduction in ("mean", "sum", "none"):
        clean = losses.get(name, reduction=reduction, **kwargs)(x, y)
        assert torch.equal(losses.get(name, reduction=reduction, **kwargs)(broken, y), clean), reduction
    kept = losses.get(name, reduction="none", **kwargs)(x[3:], y[3:])
    if not weighted:
        assert torch.allclose(losses.get(name, **kwargs)(broken, y), kept.mean())


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky"])
def test_a_denormal_smooth_dr_keeps_the_denominator_floor(name):
    x = torch.full((1, 1, 4, 4), -200.0)  # sigmoid underflows to 0: P = G = I = 0, the denominator is smooth_dr alone
    t = torch.zeros(1, 1, 4, 4)
    value = losses.get(name, smooth_nr=1.0, smooth_dr=1e-40)(x, t)  # 1 / 1e-40 overflows float32 without the floor
    tiny = torch.finfo(torch.float32).tiny
    assert torch.isfinite(value) and value.item() == pytest.approx(1.0 - 1.0 / tiny)
