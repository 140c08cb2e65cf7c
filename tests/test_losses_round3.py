"""Losses practitioners reach for in the four situations: each against its paper's formula on hand-computed cases,
its stated conventions, and (where a peer ships it) the peer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import long_tail as LT
from losses import noisy_labels as N
from losses import regression as R
from losses import segmentation as S

g = torch.Generator().manual_seed(0)
Z = torch.randn(6, 4, generator=g, dtype=torch.float64)
Y = torch.tensor([0, 1, 2, 3, 1, 0])
COUNTS = torch.tensor([500.0, 100.0, 20.0, 4.0])


# ------------------------------------------------------------------------------------------------------ regression


@pytest.mark.parametrize("name,alpha", [("welsch", -math.inf), ("geman_mcclure", -2.0), ("charbonnier", 1.0)])
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_barron_members_equal_barron(name, alpha, scale):
    x, y = torch.randn(50, generator=g, dtype=torch.float64) * 4, torch.randn(50, generator=g, dtype=torch.float64)
    torch.testing.assert_close(losses.spec(name).fn(x, y, scale=scale), R.barron(x, y, alpha=alpha, scale=scale))


def test_barron_members_by_hand():
    r = torch.tensor([0.0, 1.0, 2.0, 10.0], dtype=torch.float64)
    zero = torch.zeros(4, dtype=torch.float64)
    torch.testing.assert_close(R.welsch(r, zero, reduction="none"), 1 - torch.exp(-0.5 * r**2))
    torch.testing.assert_close(R.geman_mcclure(r, zero, reduction="none"), 2 * r**2 / (r**2 + 4))
    torch.testing.assert_close(R.geman_mcclure(r, zero, scale=0.5, reduction="none") / 2, r**2 / (r**2 + 1))  # G&M's form, c = 1
    torch.testing.assert_close(R.charbonnier(r, zero, reduction="none"), torch.sqrt(r**2 + 1) - 1)


def test_tukey_by_hand():
    r = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 30.0], dtype=torch.float64)
    zero = torch.zeros_like(r)
    mad = (r - r.median()).abs().median()  # torch.median: the lower median
    s = 1.4826 * mad
    u = r / s
    c = 4.685
    expected = torch.where(u.abs() <= c, c**2 / 6 * (1 - (1 - (u / c) ** 2) ** 3), torch.full_like(u, c**2 / 6))
    torch.testing.assert_close(R.tukey(r, zero, reduction="none"), expected)
    torch.testing.assert_close(R.tukey(r, zero, scale=2.0, reduction="none"),
                               torch.where((r / 2).abs() <= c, c**2 / 6 * (1 - (1 - (r / 2 / c) ** 2) ** 3), torch.full_like(r, c**2 / 6)))


def test_tukey_gives_gross_outliers_no_gradient_and_holds_the_mad_constant():
    x = torch.tensor([0.1, -0.2, 0.3, 0.0, 50.0], dtype=torch.float64, requires_grad=True)
    y = torch.zeros(5, dtype=torch.float64)
    R.tukey(x, y).backward()
    assert x.grad[4] == 0 and x.grad[:4].abs().sum() > 0
    flat = x.detach()
    s = float(1.4826 * (flat - flat.median()).abs().median())
    fixed = x.detach().clone().requires_grad_(True)
    R.tukey(fixed, y, scale=s).backward()
    torch.testing.assert_close(x.grad, fixed.grad)  # the default's gradient is that of the fixed-scale loss


# ------------------------------------------------------------------------------------------------------ noisy labels


def _p(z):
    return F.softmax(z, 1)


def test_nce_rce_by_hand_and_against_the_authors_formula():
    p = _p(Z)
    logp = p.log()
    nce = logp[range(6), Y] / logp.sum(1)
    rce = 4.0 * (1 - p[range(6), Y])
    torch.testing.assert_close(N.nce_rce(Z, Y, reduction="none"), nce + 10.0 * rce)
    # the released code: RCE against a one-hot clamped at 1e-4 (log_zero = log 1e-4), predictions clamped at 1e-7
    one_hot = F.one_hot(Y, 4).double().clamp(1e-4, 1.0)
    code_rce = -(p.clamp(1e-7, 1.0) * one_hot.log()).sum(1)
    torch.testing.assert_close(N.nce_rce(Z, Y, log_zero=math.log(1e-4)), (nce + 10.0 * code_rce).mean())
    assert (nce > 0).all() and (nce <= 1).all()


def test_nfl_rce_by_hand():
    p = _p(Z)
    fl = -((1 - p) ** 0.5) * p.log()
    nfl = fl[range(6), Y] / fl.sum(1)
    torch.testing.assert_close(N.nfl_rce(Z, Y, reduction="none"), nfl + 10.0 * 4.0 * (1 - p[range(6), Y]))
    torch.testing.assert_close(N.nfl_rce(Z, Y, gamma=0.0, beta=0.0), N.nce_rce(Z, Y, beta=0.0))  # gamma 0: NFL is NCE


def test_agce_by_hand():
    p_y = _p(Z)[range(6), Y]
    torch.testing.assert_close(N.agce(Z, Y, reduction="none"), ((4 + 1) ** 0.2 - (4 + p_y) ** 0.2) / 0.2)
    certain = torch.full((1, 4), -50.0, dtype=torch.float64)
    certain[0, 2] = 50.0
    assert N.agce(certain, torch.tensor([2])).item() == pytest.approx(0.0, abs=1e-12)
    assert N.agce(-certain, torch.tensor([2])).item() <= ((5**0.2) - 4**0.2) / 0.2 + 1e-12


def test_bootstrap_ce_by_hand_and_its_detached_target():
    p = _p(Z)
    expected = -(0.95 * F.one_hot(Y, 4) + 0.05 * p) * p.log()
    torch.testing.assert_close(N.bootstrap_ce(Z, Y, reduction="none"), expected.sum(1))
    torch.testing.assert_close(N.bootstrap_ce(Z, Y, beta=1.0), F.cross_entropy(Z, Y))
    a, b = Z.clone().requires_grad_(True), Z.clone().requires_grad_(True)
    N.bootstrap_ce(a, Y).backward()
    soft_target = (0.95 * F.one_hot(Y, 4) + 0.05 * _p(Z)).detach()
    F.cross_entropy(b, soft_target).backward()  # CE against a constant soft target
    torch.testing.assert_close(a.grad, b.grad)
    c = Z.clone().requires_grad_(True)
    N.bootstrap_ce(c, Y, detach=False).backward()
    assert not torch.allclose(c.grad, a.grad)


# --------------------------------------------------------------------------------------------------------- long tail


def test_logit_adjusted_ce_is_balanced_softmax_at_tau_1():
    prior = COUNTS / COUNTS.sum()
    torch.testing.assert_close(LT.logit_adjusted_ce(Z, Y, class_counts=COUNTS), F.cross_entropy(Z + prior.log(), Y))
    n = COUNTS.double()
    balanced = -torch.log(n[Y] * Z.exp()[range(6), Y] / (n * Z.exp()).sum(1))
    torch.testing.assert_close(LT.logit_adjusted_ce(Z, Y, class_counts=COUNTS, reduction="none"), balanced)
    torch.testing.assert_close(LT.logit_adjusted_ce(Z, Y, class_counts=COUNTS, tau=0.0), F.cross_entropy(Z, Y))
    with pytest.raises(ValueError, match="needs class_counts"):
        LT.logit_adjusted_ce(Z, Y)
    with pytest.raises(ValueError, match="3 values for 4 classes"):
        LT.logit_adjusted_ce(Z, Y, class_counts=[1.0, 2.0, 3.0])


def test_ldam_margins_and_deferred_weights():
    m = COUNTS.double() ** -0.25
    m = m * 0.5 / m.max()
    assert m[3] == pytest.approx(0.5) and m[0] == pytest.approx(0.5 * (4 / 500) ** 0.25)
    shifted = 30 * (Z - F.one_hot(Y, 4) * m)
    torch.testing.assert_close(LT.ldam(Z, Y, class_counts=COUNTS), F.cross_entropy(shifted, Y))
    w = LT.effective_number_weights(COUNTS, 0.9999)
    raw = (1 - 0.9999) / (1 - 0.9999 ** COUNTS.double())
    torch.testing.assert_close(w, raw * 4 / raw.sum())
    torch.testing.assert_close(LT.ldam(Z, Y, class_counts=COUNTS, drw=True, progress=0.79), F.cross_entropy(shifted, Y))
    torch.testing.assert_close(LT.ldam(Z, Y, class_counts=COUNTS, drw=True, progress=0.8), F.cross_entropy(shifted, Y, weight=w))
    module = losses.get("ldam", class_counts=COUNTS, drw=True)
    module.start_epoch(160, 200)  # 0-based epoch 159: still unweighted
    torch.testing.assert_close(module(Z, Y), F.cross_entropy(shifted, Y))
    module.start_epoch(161, 200)  # the paper's epoch 160 (0-based): weights on
    torch.testing.assert_close(module(Z, Y), F.cross_entropy(shifted, Y, weight=w))


def test_the_harness_passes_counts_and_starts_each_epoch(make_cfg):
    from harness.criterion import build_criterion

    criterion = build_criterion(make_cfg("data=mnist", "loss=ldam", "loss.drw=true"), "multiclass", 4, [500, 100, 20, 4])
    torch.testing.assert_close(criterion.module.class_counts, COUNTS)
    la = build_criterion(make_cfg("data=mnist", "loss=logit_adjusted_ce"), "multiclass", 4, [500, 100, 20, 4])
    torch.testing.assert_close(la.module(Z.float(), Y), LT.logit_adjusted_ce(Z.float(), Y, class_counts=COUNTS))


def test_cosine_head_emits_cosines(make_cfg):
    """``model.head=cosine``: the last layer gives the cosine of the features with each class's weight vector (LDAM's
    normalised classifier), so ``ldam``'s ``s`` scales values in [-1, 1]; a bad head is refused before any run."""
    from harness.config import validate
    from harness.errors import ConfigError
    from harness.models import CosineLinear, build_model

    model = build_model(make_cfg("data=mnist", "model.head=cosine").model, (1, 28, 28), 10)
    assert isinstance(model[-1], CosineLinear) and model[-1].bias is None
    features = model[:-1](torch.randn(5, 1, 28, 28, generator=g))
    out = model(torch.randn(5, 1, 28, 28, generator=g))
    assert out.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(model[-1](features), F.cosine_similarity(features[:, None], model[-1].weight[None], dim=-1))
    mlp = build_model(make_cfg("data=imbalanced", "model=mlp", "model.head=cosine").model, (20,), 2)
    assert isinstance(mlp[-1], CosineLinear)
    with pytest.raises(ConfigError, match=r"model.head='norm' is not allowed: model.head must be one of \['linear', 'cosine'\]"):
        validate(make_cfg("data=mnist", "model.head=norm"))


# ------------------------------------------------------------------------------------------------------ segmentation


def test_topk_ce_is_the_mean_of_the_hardest_pixels():
    x, y = torch.randn(2, 3, 10, 10, generator=g, dtype=torch.float64), torch.randint(0, 3, (2, 10, 10), generator=g)
    per_pixel = F.cross_entropy(x, y, reduction="none").reshape(-1).sort(descending=True).values
    torch.testing.assert_close(S.topk_ce(x, y), per_pixel[:20].mean())  # 10% of 200 pixels
    torch.testing.assert_close(S.topk_ce(x, y, k=100.0), F.cross_entropy(x, y))
    torch.testing.assert_close(S.topk_ce(x, y, k=2.5), per_pixel[:5].mean())  # ceil(2.5% of 200)
    torch.testing.assert_close(S.dice_topk(x, y, topk_weight=0.5), S.dice(x, y) + 0.5 * S.topk_ce(x, y))


def test_mcc_by_hand_and_against_smp():
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 1, 6, 6, generator=g) > 0.5).double()
    p = torch.sigmoid(x)
    tp, tn = (p * y).sum() + 1e-5, ((1 - p) * (1 - y)).sum() + 1e-5
    fp, fn = (p * (1 - y)).sum() + 1e-5, ((1 - p) * y).sum() + 1e-5
    expected = 1 - (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    torch.testing.assert_close(S.mcc(x, y), expected)
    assert S.mcc(100 * (2 * y - 1), y).item() == pytest.approx(0.0, abs=1e-6)
    assert S.mcc(-100 * (2 * y - 1), y).item() == pytest.approx(2.0, abs=1e-6)
    smp_losses = pytest.importorskip("segmentation_models_pytorch.losses", reason="needs segmentation-models-pytorch (the test extra)")
    torch.testing.assert_close(S.mcc(p, y, from_logits=False), smp_losses.MCCLoss()(p, y))  # smp takes probabilities


def test_forward_corrected_ce_by_hand_and_from_the_injected_noise(make_cfg):
    T = N.uniform_noise_matrix(0.3, 4).double()
    assert torch.allclose(T.sum(1), torch.ones(4, dtype=torch.float64)) and T[0, 0] == pytest.approx(0.7) and T[0, 1] == pytest.approx(0.1)
    p = _p(Z)
    torch.testing.assert_close(N.forward_corrected_ce(Z, Y, noise_matrix=T, reduction="none"), -torch.log((p @ T)[range(6), Y]))
    torch.testing.assert_close(N.forward_corrected_ce(Z, Y, noise_matrix=torch.eye(4)), F.cross_entropy(Z, Y))
    with pytest.raises(ValueError, match="needs noise_matrix"):
        N.forward_corrected_ce(Z, Y)
    from harness.criterion import build_criterion
    from harness.errors import ConfigError

    criterion = build_criterion(make_cfg("data=mnist", "loss=forward_corrected_ce", "data.label_noise=0.3"), "multiclass", 4,
                                [1, 1, 1, 1], N.uniform_noise_matrix(0.3, 4))
    torch.testing.assert_close(criterion.module(Z.float(), Y), N.forward_corrected_ce(Z.float(), Y, noise_matrix=T.float()))
    with pytest.raises(ConfigError, match="set data.label_noise"):
        build_criterion(make_cfg("data=mnist", "loss=forward_corrected_ce"), "multiclass", 4, [1, 1, 1, 1])
    from harness.config import validate

    with pytest.raises(ConfigError, match=r"loss=forward_corrected_ce needs the label noise matrix: set data.label_noise"):
        validate(make_cfg("data=mnist", "loss=forward_corrected_ce"))  # before any data is built
    validate(make_cfg("data=mnist", "loss=forward_corrected_ce", "data.label_noise=0.2"))


def test_fit_tells_a_scheduled_loss_each_epoch(make_cfg, tmp_path):
    from fixtures import write_idx_dataset
    from harness.data import build_data
    from harness.models import build_model
    from harness.train import fit

    write_idx_dataset(tmp_path / "MNIST" / "raw")
    cfg = make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=false", "loss=ldam", "loss.drw=true",
                   "trainer.epochs=3", "trainer.batch_size=64")
    data = build_data(cfg.data, cfg.seed)
    from harness.criterion import build_criterion

    criterion = build_criterion(cfg, "multiclass", data.num_classes, data.class_counts())
    seen = []
    original = criterion.module.start_epoch
    criterion.module.start_epoch = lambda epoch, epochs: (seen.append((epoch, epochs)), original(epoch, epochs))
    fit(build_model(cfg.model, data, criterion.num_outputs), criterion, data, cfg)
    assert seen == [(1, 3), (2, 3), (3, 3)] and criterion.module.params["progress"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------- heteroscedastic


def test_gaussian_nll_equals_torch_and_beta_nll_its_formula():
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    mean, var = R.mean_and_variance(x)
    torch.testing.assert_close(var, F.softplus(x[:, 1]) + 1e-6)
    torch.testing.assert_close(R.gaussian_nll(x, y), F.gaussian_nll_loss(mean, y, var))
    torch.testing.assert_close(R.gaussian_nll(x, y, full=True), F.gaussian_nll_loss(mean, y, var, full=True))
    nll = 0.5 * (var.log() + (y - mean) ** 2 / var)
    torch.testing.assert_close(R.beta_nll(x, y, reduction="none"), nll * var**0.5)
    torch.testing.assert_close(R.beta_nll(x, y, beta=0.0), R.gaussian_nll(x, y))
    a = x.clone().requires_grad_(True)
    R.beta_nll(a, y, beta=1.0, reduction="sum").backward()
    torch.testing.assert_close(a.grad[:, 0], mean - y)  # beta = 1: the mean gets the gradient of 0.5 (y - mean)**2
    with pytest.raises(ValueError, match=r"input \(\.\.\., 2\) with target \(\.\.\.\)"):
        R.gaussian_nll(torch.randn(20), y)


def test_regression_with_a_predicted_variance_reports_nll_and_interval_coverage():
    from harness import tasks

    task = tasks.get("regression")
    assert task.num_outputs(losses.spec("gaussian_nll"), None) == 2 and task.num_outputs(losses.spec("mse"), None) == 1
    target = torch.tensor([0.0, 0.5, -1.5, 3.0], dtype=torch.float64)
    raw = torch.full((4,), math.log(math.e - 1), dtype=torch.float64)  # softplus(raw) = 1: sd 1
    out = torch.stack([torch.zeros(4, dtype=torch.float64), raw], 1)
    m = task.compute(out, target, None)
    var = 1.0 + 1e-6
    assert m["rmse"] == pytest.approx(float(target.square().mean().sqrt()))
    assert m["nll"] == pytest.approx(float((0.5 * (math.log(2 * math.pi * var) + target**2 / var)).mean()))
    assert m["coverage_68"] == pytest.approx(0.5) and m["coverage_95"] == pytest.approx(0.75)  # |z| 0, 0.5 | 1.5 | 3
    assert m["interval_error"] == pytest.approx((abs(0.5 - 0.6827) + abs(0.75 - 0.9545)) / 2)
    assert "nll" not in task.compute(out[:, 0], target, None)


def test_heteroscedastic_run_end_to_end(make_cfg):
    from harness.run import execute

    result = execute(make_cfg("data=outliers", "loss=gaussian_nll", "model=mlp", "trainer.epochs=5"))
    assert {"rmse", "nll", "coverage_68", "coverage_95", "interval_error"} <= set(result.test)
    assert math.isfinite(result.test["nll"]) and 0 <= result.test["coverage_95"] <= 1


def test_distance_to_boundary_by_hand():
    mask = torch.zeros(1, 1, 1, 6)
    mask[..., 2:4] = 1  # 0 0 1 1 0 0
    torch.testing.assert_close(S.distance_to_boundary(mask)[0, 0, 0], torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, 2.0]))
    assert S.distance_to_boundary(torch.ones(1, 1, 3, 3)).abs().sum() == 0  # no boundary: 0 everywhere
    x = torch.full((1, 1, 1, 6), -20.0)
    x[..., 2:4] = 20.0  # the prediction equals the mask: no error, no loss
    assert S.hausdorff_dt(x, mask).item() == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------------ boundary


def test_signed_distance_by_hand():
    mask = torch.zeros(1, 1, 5, 5)
    mask[0, 0, 1:4, 1:4] = 1  # a 3x3 square: its edge pixels 0, its centre -1, the ring around it 1 (corners sqrt 2)
    r2 = math.sqrt(2)
    expected = torch.tensor([
        [r2, 1, 1, 1, r2], [1, 0, 0, 0, 1], [1, 0, -1, 0, 1], [1, 0, 0, 0, 1], [r2, 1, 1, 1, r2],
    ])
    torch.testing.assert_close(S.signed_distance(mask)[0, 0], expected)
    assert S.signed_distance(torch.zeros(2, 3, 4, 4)).abs().sum() == 0  # no object: 0
    assert S.signed_distance(torch.ones(1, 1, 4, 4)).abs().sum() == 0  # no background: 0
    far = torch.zeros(1, 1, 1, 7)
    far[..., 0] = 1
    torch.testing.assert_close(S.signed_distance(far)[0, 0, 0], torch.arange(7.0))


def test_boundary_by_hand_on_its_schedule():
    p = torch.tensor([[[[0.9, 0.2], [0.6, 0.1]]]], dtype=torch.float64)  # probabilities; one object pixel, top left
    y = torch.tensor([[[1, 0], [0, 0]]])
    surface = (0.2 * 1 + 0.6 * 1 + 0.1 * math.sqrt(2)) / 4  # phi: 0 on the object, 1, 1, sqrt 2 around it
    w_bg, w_fg = 1 / 9, 1.0  # 1 / G**2: 3 background pixels, 1 object pixel
    gdl = 1 - 2 * (w_bg * (0.8 + 0.4 + 0.9) + w_fg * 0.9) / (w_bg * (2.2 + 3) + w_fg * (1.8 + 1))
    loss = lambda **kw: S.boundary(p, y, from_logits=False, **kw).item()  # noqa: E731
    assert loss() == pytest.approx(gdl + 0.01 * surface, rel=1e-5)
    assert loss(epoch=30) == pytest.approx(0.71 * gdl + 0.30 * surface, rel=1e-5)
    assert loss(epoch=200) == pytest.approx(0.1 * gdl + 2.0 * surface, rel=1e-5)  # the region weight stops at floor
    assert S.boundary_weights(1, 0.01, 0.01, 0.1) == (1.0, 0.01)
    assert S.boundary_weights(101, 0.01, 0.01, 0.1) == pytest.approx((0.1, 1.01))
    assert loss(region="dice") == pytest.approx(S.dice(p, y, from_logits=False).item() + 0.01 * surface, rel=1e-5)


def test_boundary_term_is_the_authors_surface_loss_on_multiclass_masks():
    """The surface term against Kervadec et al.'s ``SurfaceLoss`` written out: softmax probabilities times the
    distance maps of the one-hot target, foreground classes (``idc=[1, 2]``), mean over batch, classes and pixels."""
    x = torch.randn(2, 3, 9, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 9, 9), generator=g)
    onehot = F.one_hot(y, 3).movedim(-1, 1).double()
    phi = S.signed_distance(onehot).double()
    surface = torch.einsum("bkwh,bkwh->bkwh", F.softmax(x, 1)[:, 1:], phi[:, 1:]).mean()
    start, step = 0.3, 0.0
    region = S.boundary(x, y, start=0.0, step=0.0)  # boundary weight 0: the region term alone
    torch.testing.assert_close(S.boundary(x, y, start=start, step=step), region + start * surface)
    torch.testing.assert_close(S.boundary(x, y, distance=phi, start=start, step=step), region + start * surface)
    with pytest.raises(ValueError, match=r"distance must be the target's signed distance map \(2, 3, 9, 9\)"):
        S.boundary(x, y, distance=phi[:, :2])


def test_boundary_pulls_predictions_onto_the_object():
    """Gradient of the boundary term alone: lowers the score of pixels outside the object, the more the farther;
    void pixels get none."""
    y = torch.zeros(1, 1, 1, 7, dtype=torch.long)
    y[..., :2] = 1
    y[..., 6] = 255
    x = torch.zeros(1, 1, 1, 7, dtype=torch.float64, requires_grad=True)
    S.boundary(x, y, start=1.0, step=0.0, floor=0.0, epoch=101, ignore_index=255).backward()  # region weight 0
    grad = x.grad[0, 0, 0]
    assert grad[6] == 0 and grad[0] < 0  # void: none; deep inside: raise it
    assert 0 < grad[2] < grad[3] < grad[4] < grad[5]  # outside: lower it, harder farther out


def test_the_harness_computes_distance_maps_once_and_logs_the_schedule(make_cfg):
    from harness.criterion import build_criterion
    from harness.data import build_data
    from harness.run import execute

    cfg = make_cfg("data=segmentation", "data.num_classes=3", "loss=boundary", "loss.step=0.25")
    data = build_data(cfg.data, cfg.seed)
    criterion = build_criterion(cfg, "segmentation", 3, data.class_counts(), None, data.train.y)
    maps = criterion.side["distance"]
    assert maps.shape == (len(data.train), 3, *data.train.y.shape[1:])
    torch.testing.assert_close(maps[:4], S.signed_distance(F.one_hot(data.train.y[:4], 3).movedim(-1, 1).float()))
    out = torch.randn(4, 3, *data.train.y.shape[1:], generator=g)
    idx = torch.tensor([3, 0, 7, 5])
    cached = criterion(out, data.train.y[idx], idx)
    torch.testing.assert_close(cached, criterion(out, data.train.y[idx]))  # per-call maps: the same value
    binary = build_criterion(make_cfg("data=segmentation", "loss=boundary"), "segmentation", 2, [9, 1], None, data.train.y.clamp(0, 1))
    assert binary.side["distance"].shape == (len(data.train), 1, *data.train.y.shape[1:])

    result = execute(make_cfg("data=segmentation", "loss=boundary", "loss.step=0.25", "trainer.epochs=3"))
    import mlflow

    client = mlflow.MlflowClient(cfg.tracking.uri)
    weights = [m.value for m in sorted(client.get_metric_history(result.run_id, "loss/boundary_weight"), key=lambda m: m.step)]
    assert weights == pytest.approx([0.01, 0.26, 0.51])
    assert 0.0 <= result.test["miou"] <= 1.0
