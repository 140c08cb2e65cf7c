"""Classification, segmentation and adversarial losses against Keras's documented values, torch built-ins,
torchvision's focal loss, and identities that hold by construction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

import losses
from losses import adversarial, binary as B, multiclass as M, regression as R, segmentation as S

Y_TRUE = torch.tensor([1.0, 1.0, 0.0])
Y_PRED = torch.tensor([0.9, 0.75, 0.7])
REDUCTIONS = ("mean", "sum", "none")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- the seed documents' worked examples (Keras) ------------------------------------------------------------


def test_keras_binary_examples():
    assert B.bce(Y_PRED, Y_TRUE, from_logits=False).item() == pytest.approx(0.5323385, abs=1e-6)
    assert B.bce(torch.tensor([15.0, 1.0, 0.0]), Y_TRUE).item() == pytest.approx(0.3354697, abs=1e-6)
    assert B.focal(Y_PRED, Y_TRUE, from_logits=False, alpha=None, gamma=2).item() == pytest.approx(0.2029934, abs=1e-6)
    assert B.hinge(Y_PRED, Y_TRUE).item() == pytest.approx(0.6833334, abs=1e-6)
    assert B.squared_hinge(Y_PRED, Y_TRUE).item() == pytest.approx(0.9875, abs=1e-6)


def test_keras_categorical_examples():
    # Keras normalises probability input by its sum: [0.9, 0.75, 0.7] against the soft target [1, 1, 0]
    assert M.categorical_ce(Y_PRED[None], Y_TRUE[None], from_logits=False).item() == pytest.approx(2.1018732, abs=1e-6)
    p = torch.tensor([[0.1, 0.7, 0.2]])
    assert M.ce(p, torch.tensor([1]), from_logits=False).item() == pytest.approx(-math.log(0.7), rel=1e-6)
    assert M.categorical_ce(p, torch.tensor([[0.0, 1.0, 0.0]]), from_logits=False).item() == pytest.approx(-math.log(0.7), rel=1e-6)
    # Keras CategoricalHinge docs: 1.4, which depends on its masking-by-multiplication convention
    out = M.categorical_hinge(torch.tensor([[0.6, 0.4], [0.4, 0.6]]), torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert out.item() == pytest.approx(1.4, abs=1e-6)


# --- agreement with torch and torchvision -------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_matches_torchvision(reduction, gamma):
    x, y = torch.randn(64, 3, generator=gen()) * 4, torch.randint(0, 2, (64, 3), generator=gen(1)).float()
    for alpha, tv_alpha in ((0.25, 0.25), (0.8, 0.8), (None, -1)):
        ours = B.focal(x, y, alpha=alpha, gamma=gamma, reduction=reduction)
        theirs = sigmoid_focal_loss(x, y, alpha=tv_alpha, gamma=gamma, reduction=reduction)
        torch.testing.assert_close(ours, theirs)


def test_focal_is_finite_where_torchvision_is_not():
    x = torch.tensor([[40.0], [-40.0]], requires_grad=True)
    y = torch.tensor([[1.0], [0.0]])
    B.focal(x, y, gamma=0.5).backward()
    assert torch.isfinite(x.grad).all()
    x2 = x.detach().clone().requires_grad_(True)
    sigmoid_focal_loss(x2, y, gamma=0.5, reduction="mean").backward()
    assert not torch.isfinite(x2.grad).all()  # (1 - p_t)**(gamma - 1) at p_t == 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_torch(reduction):
    x, y = torch.randn(32, 1, generator=gen()) * 3, torch.randint(0, 2, (32, 1), generator=gen(1)).float()
    pw = torch.tensor([3.0])
    torch.testing.assert_close(B.bce(x, y, pos_weight=pw, reduction=reduction), F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=reduction))
    torch.testing.assert_close(B.bce(x, y, pos_weight=3.0, reduction=reduction), F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=reduction))
    p = torch.sigmoid(x)
    torch.testing.assert_close(B.bce(p, y, from_logits=False, reduction=reduction), F.binary_cross_entropy(p, y, reduction=reduction), rtol=1e-5, atol=1e-5)
    smoothed = B.bce(x, y, label_smoothing=0.2)
    torch.testing.assert_close(smoothed, F.binary_cross_entropy_with_logits(x, y * 0.8 + 0.1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_family_matches_torch(reduction):
    x, y = torch.randn(32, 5, generator=gen()) * 3, torch.randint(0, 5, (32,), generator=gen(1))
    w = torch.rand(5, generator=gen(2)) + 0.5
    y_ign = y.clone()
    y_ign[::4] = -100
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.1}, {"weight": w, "label_smoothing": 0.1}):
        torch.testing.assert_close(M.ce(x, y_ign, reduction=reduction, **kw), F.cross_entropy(x, y_ign, reduction=reduction, **kw))
    one_hot = F.one_hot(y, 5).float()
    torch.testing.assert_close(M.categorical_ce(x, one_hot, reduction=reduction), F.cross_entropy(x, y, reduction=reduction))
    torch.testing.assert_close(
        M.categorical_ce(x, one_hot, label_smoothing=0.1, reduction=reduction),
        F.cross_entropy(x, y, label_smoothing=0.1, reduction=reduction),
    )
    torch.testing.assert_close(
        M.multi_margin(x, y, weight=w, reduction=reduction), F.multi_margin_loss(x, y, weight=w, reduction=reduction)
    )
    target = F.softmax(torch.randn(32, 5, generator=gen(3)), 1)
    expected = F.kl_div(F.log_softmax(x, 1), target, reduction="none").sum(1)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    torch.testing.assert_close(M.kl_div(x, target, reduction=reduction), expected)


def test_ce_on_segmentation_maps_matches_torch():
    x, y = torch.randn(2, 3, 6, 6, generator=gen()), torch.randint(0, 3, (2, 6, 6), generator=gen(1))
    torch.testing.assert_close(M.ce(x, y), F.cross_entropy(x, y))


def test_regression_extras_match_torch():
    x, y = torch.randn(50, generator=gen()) * 3, torch.randn(50, generator=gen(1))
    torch.testing.assert_close(R.smooth_l1(x, y, beta=0.5), F.smooth_l1_loss(x, y, beta=0.5))
    counts = torch.poisson(torch.rand(50, generator=gen(2)) * 4, generator=gen(3))
    torch.testing.assert_close(R.poisson(x, counts, log_input=True), F.poisson_nll_loss(x, counts, log_input=True))
    rate = x.abs() + 0.1
    torch.testing.assert_close(R.poisson(rate, counts), F.poisson_nll_loss(rate, counts, log_input=False, eps=1e-7))
    torch.testing.assert_close(R.quantile(x, y, q=0.5), 0.5 * R.mae(x, y))
    torch.testing.assert_close(R.mape(x, y), 100 * ((y - x).abs() / y.abs()).mean())


def test_cosine_similarity_matches_torch():
    x, y = torch.randn(16, 4, generator=gen()), F.one_hot(torch.randint(0, 4, (16,), generator=gen(1)), 4).float()
    torch.testing.assert_close(M.cosine_similarity(x, y), -F.cosine_similarity(F.softmax(x, 1), y, dim=1).mean())


# --- identities -----------------------------------------------------------------------------------------------


def test_barron_special_cases():
    x, y = torch.randn(200, generator=gen(), dtype=torch.float64) * 5, torch.zeros(200, dtype=torch.float64)
    c = 1.7
    r = x / c
    torch.testing.assert_close(R.barron(x, y, alpha=2, scale=c, reduction="none"), 0.5 * r**2)
    torch.testing.assert_close(R.barron(x, y, alpha=1, scale=c, reduction="none"), torch.sqrt(r**2 + 1) - 1)
    torch.testing.assert_close(R.barron(x, y, alpha=0, scale=c), R.cauchy(x, y, scale=c))
    torch.testing.assert_close(R.barron(x, y, alpha=-2, scale=c, reduction="none"), 2 * r**2 / (r**2 + 4))
    torch.testing.assert_close(R.barron(x, y, alpha=-math.inf, scale=c, reduction="none"), 1 - torch.exp(-0.5 * r**2))
    # continuous in alpha around the special values
    for special in (2.0, 0.0):
        near = R.barron(x, y, alpha=special + 1e-6, scale=c)
        torch.testing.assert_close(near, R.barron(x, y, alpha=special, scale=c), rtol=1e-4, atol=1e-6)


def test_expectation_losses_and_poly1_equal_their_one_hot_definitions():
    """Ours skip building one-hot tensors; the definitions build them."""
    x, y = torch.randn(32, 5, generator=gen(), dtype=torch.float64), torch.randint(0, 5, (32,), generator=gen(1))
    p, one_hot = F.softmax(x, 1), F.one_hot(y, 5).to(x.dtype)
    torch.testing.assert_close(M.softmax_mse(x, y, reduction="none"), (p - one_hot).square().sum(1))
    torch.testing.assert_close(M.softmax_mae(x, y, reduction="none"), (p - one_hot).abs().sum(1))
    smoothed = one_hot * 0.9 + 0.1 / 5
    poly = -(smoothed * F.log_softmax(x, 1)).sum(1) + 1.5 * (1 - (smoothed * p).sum(1))
    torch.testing.assert_close(M.poly1(x, y, epsilon=1.5, label_smoothing=0.1, reduction="none"), poly)


def test_noisy_label_losses_reduce_to_known_ones():
    x, y = torch.randn(32, 5, generator=gen()), torch.randint(0, 5, (32,), generator=gen(1))
    p_y = F.softmax(x, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(M.poly1(x, y, epsilon=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(M.poly1(x, y, epsilon=2.0), F.cross_entropy(x, y) + 2 * (1 - p_y).mean())
    torch.testing.assert_close(M.generalized_ce(x, y, q=1.0), (1 - p_y).mean())
    torch.testing.assert_close(M.generalized_ce(x.double(), y, q=1e-6), F.cross_entropy(x.double(), y), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(M.symmetric_ce(x, y, alpha=1.0, beta=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(M.symmetric_ce(x, y, alpha=0.0, beta=1.0), (4 * (1 - p_y)).mean())
    torch.testing.assert_close(M.softmax_mae(x, y), (2 * (1 - p_y)).mean())
    torch.testing.assert_close(M.categorical_focal(x, y, alpha=None, gamma=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(
        M.categorical_focal(x, y, alpha=None, gamma=2.0), (-(1 - p_y) ** 2 * torch.log(p_y)).mean()
    )
    alpha = [0.1, 0.2, 0.3, 0.4, 0.5]
    torch.testing.assert_close(
        M.categorical_focal(x, y, alpha=alpha, gamma=2.0),
        (-torch.tensor(alpha)[y] * (1 - p_y) ** 2 * torch.log(p_y)).mean(),
    )


def test_region_losses_by_hand_and_identities():
    # one image, binary: p = sigmoid(x); I = sum p g, P = sum p, G = sum g
    x = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    g = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    p = torch.sigmoid(x)
    inter, psum, gsum = (p * g).sum(), p.sum(), g.sum()
    torch.testing.assert_close(S.dice(x, g, smooth=0.0), 1 - 2 * inter / (psum + gsum))
    torch.testing.assert_close(S.dice(x, g, smooth=0.0, log=True), -torch.log(2 * inter / (psum + gsum)))
    torch.testing.assert_close(S.jaccard(x, g, smooth=0.0), 1 - inter / (psum + gsum - inter))
    fp, fn = psum - inter, gsum - inter
    torch.testing.assert_close(S.tversky(x, g, alpha=0.3, beta=0.7, smooth=0.0), 1 - inter / (inter + 0.3 * fp + 0.7 * fn))
    torch.testing.assert_close(S.focal_tversky(x, g, smooth=0.0), (1 - inter / (inter + 0.3 * fp + 0.7 * fn)) ** 0.75)

    xm, ym = torch.randn(2, 3, 6, 6, generator=gen()), torch.randint(0, 3, (2, 6, 6), generator=gen(1))
    torch.testing.assert_close(S.tversky(xm, ym, alpha=0.5, beta=0.5, smooth=0.0), S.dice(xm, ym, smooth=0.0))
    torch.testing.assert_close(S.tversky(xm, ym, alpha=1.0, beta=1.0), S.jaccard(xm, ym))
    one_hot = F.one_hot(ym, 3).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(S.dice(xm, one_hot, mode="multiclass"), S.dice(xm, ym))
    torch.testing.assert_close(S.dice_ce(xm, ym), S.dice(xm, ym) + F.cross_entropy(xm, ym))
    xb, yb = torch.randn(2, 1, 6, 6, generator=gen(2)), torch.randint(0, 2, (2, 1, 6, 6), generator=gen(3)).float()
    torch.testing.assert_close(S.dice_bce(xb, yb), S.dice(xb, yb) + F.binary_cross_entropy_with_logits(xb, yb))
    per_image = S.dice(xm, ym, per_image=True, reduction="none")
    assert per_image.shape == (2, 3)
    assert S.dice(xm, ym, include_background=False, reduction="none").shape == (2,)


def test_empty_masks():
    empty = torch.zeros(1, 1, 4, 4)
    assert S.dice(torch.full((1, 1, 4, 4), -100.0), empty).item() == pytest.approx(0.0, abs=1e-6)  # empty predicted empty
    assert S.dice(torch.full((1, 1, 4, 4), 100.0), empty).item() == pytest.approx(16 / 17, abs=1e-6)  # all wrong
    assert S.dice(torch.full((1, 1, 4, 4), -100.0), empty, smooth=0.0).item() == pytest.approx(1.0)  # 0/0 guarded to 0


def test_lovasz_equals_jaccard_loss_on_hard_predictions():
    g = torch.randint(0, 3, (2, 8, 8), generator=gen())
    pred = torch.randint(0, 3, (2, 8, 8), generator=gen(1))
    logits = 1e4 * F.one_hot(pred, 3).permute(0, 3, 1, 2).float()  # softmax is exactly one-hot
    expected = []
    for c in range(3):
        a, b = pred == c, g == c
        if b.any():
            expected.append(1 - (a & b).sum() / (a | b).sum())
    torch.testing.assert_close(S.lovasz(logits, g), torch.stack(expected).mean())
    # binary hinge: scores beyond the margin on the right side give zero loss
    yb = torch.randint(0, 2, (2, 1, 8, 8), generator=gen(2)).float()
    assert S.lovasz(3.0 * (2 * yb - 1), yb).item() == 0.0
    assert S.lovasz(-3.0 * (2 * yb - 1), yb).item() > 1.0


def test_adversarial_losses():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([-3.0, 0.5])
    assert adversarial.discriminator_loss(real, fake).item() == pytest.approx(
        (F.softplus(-real).mean() + F.softplus(fake).mean()).item()
    )
    assert adversarial.discriminator_loss(real, fake, "hinge").item() == pytest.approx((0 + 2) / 2 + (0 + 1.5) / 2)
    assert adversarial.generator_loss(fake, "hinge").item() == pytest.approx(1.25)
    assert adversarial.generator_loss(fake).item() == pytest.approx(F.softplus(-fake).mean().item())
    assert adversarial.generator_loss(fake, "minimax").item() == pytest.approx(-F.softplus(fake).mean().item())
    with pytest.raises(ValueError, match="kind must be one of"):
        adversarial.generator_loss(fake, "wgan")


def test_wrong_target_format_names_the_right_loss():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="use 'ce'"):
        M.categorical_ce(x, torch.tensor([0, 1, 2, 0]))  # categorical CE with integer labels
    with pytest.raises(ValueError, match="use 'categorical_ce'"):
        M.ce(x, F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float())
    with pytest.raises(ValueError, match=r"binary.*use 'ce'"):
        B.bce(torch.randn(4, 10), torch.tensor([1.0, 0.0, 1.0, 1.0]))  # binary loss on 10-class logits


@pytest.mark.parametrize(
    "name, kwargs, pattern",
    [
        ("focal", {"gamma": -1}, "gamma must be a number >= 0"),
        ("focal", {"alpha": 1.5}, r"alpha must be a number in \[0.0, 1.0\]"),
        ("quantile", {"q": 1.0}, r"q must be a number in \(0.0, 1.0\)"),
        ("tversky", {"alpha": -0.1}, "alpha must be a number >= 0"),
        ("categorical_focal", {"alpha": [0.2, 2.0]}, "alpha must be"),
        ("ce", {"label_smoothing": 1.5}, "label_smoothing"),
        ("bce", {"delta": 1.0}, "no argument 'delta'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(name, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        losses.get(name, **kwargs)
