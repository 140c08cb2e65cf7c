"""Class weights: computed from training labels, handed to each loss in the form it takes, logged as params."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness.config import ConfigError
from harness.criterion import build_criterion, class_weights
from harness.run import execute


def test_weight_formulas():
    assert class_weights("balanced", [90, 10], 0.9) == pytest.approx([100 / 180, 100 / 20])
    raw = [(1 - 0.99) / (1 - 0.99**90), (1 - 0.99) / (1 - 0.99**10)]
    assert class_weights("effective", [90, 10], 0.99) == pytest.approx([2 * r / sum(raw) for r in raw])
    assert class_weights([1, 3], [90, 10], 0.9) == [1.0, 3.0]
    assert class_weights(None, [90, 10], 0.9) is None
    with pytest.raises(ConfigError, match="2 classes"):
        class_weights([1, 2, 3], [90, 10], 0.9)


@pytest.mark.parametrize(
    "loss, task, classes, form, check",
    [
        ("bce", "binary", 2, "pos_weight", lambda c: c.module.pos_weight.item() == pytest.approx(9.0)),
        ("focal", "binary", 2, "alpha", lambda c: c.module.params["alpha"] == pytest.approx(0.9)),
        ("hinge", "binary", 2, "per-example weight", lambda c: c.sample_weights.tolist() == pytest.approx([100 / 180, 5.0])),
        ("ce", "multiclass", 2, "weight", lambda c: c.module.weight.tolist() == pytest.approx([100 / 180, 5.0])),
        ("dice_bce", "segmentation", 2, "pos_weight", lambda c: c.module.pos_weight.item() == pytest.approx(9.0)),
        ("dice", "segmentation", 3, "weight", lambda c: c.module.weight.shape == (3,)),
    ],
)
def test_weights_reach_the_loss_in_its_form(make_cfg, loss, task, classes, form, check):
    data = {"binary": "imbalanced", "multiclass": "mnist", "segmentation": "segmentation"}[task]
    cfg = make_cfg(f"data={data}", f"loss={loss}", "data.class_weights=balanced")
    counts = [90, 10] if classes == 2 else [80, 10, 10]
    criterion = build_criterion(cfg, task, classes, counts)
    assert criterion.weight_form == form and check(criterion)


def test_weighted_loss_changes_the_value_as_expected(make_cfg):
    cfg = make_cfg("data=imbalanced", "loss=hinge", "data.class_weights=[1.0,4.0]")
    criterion = build_criterion(cfg, "binary", 2, [90, 10])
    out, y = torch.tensor([[0.0], [0.0]]), torch.tensor([0, 1])
    # hinge at 0 is 1 for both; weighted mean = (1*1 + 4*1) / 5
    assert criterion(out, y).item() == pytest.approx(1.0)
    out2 = torch.tensor([[-1.0], [0.0]])  # negative now correct (loss 0), positive still 1
    assert criterion(out2, y).item() == pytest.approx(4.0 / 5.0)


def test_losses_without_weights_are_refused(make_cfg):
    cfg = make_cfg("data=segmentation", "loss=dice", "data.class_weights=balanced")
    with pytest.raises(ConfigError, match="no class weights in this form"):
        build_criterion(cfg, "segmentation", 2, [90, 10])
    cfg = make_cfg("data=mnist", "loss=kl_div", "data.class_weights=balanced")
    with pytest.raises(ConfigError, match="loss=kl_div takes no class weights"):
        build_criterion(cfg, "multiclass", 10, [10] * 10)


def test_weights_used_are_logged_as_params(make_cfg, store):
    result = execute(make_cfg("data=imbalanced", "data.n_samples=2000", "data.positive_fraction=0.1",
                              "loss=bce", "data.class_weights=balanced", "trainer.epochs=1"))
    params = MlflowClient(tracking_uri=store).get_run(result.run_id).data.params
    assert params["data.class_weights"] == "balanced" and params["class_weights.form"] == "pos_weight"
    w0, w1 = eval(params["class_weights.values"])  # noqa: S307 - our own logged list
    assert w1 / w0 == pytest.approx(9.0, rel=0.01)
    assert float(params["loss.pos_weight"]) == pytest.approx(w1 / w0, rel=1e-5)


def test_focal_logs_the_alpha_its_class_weights_gave(make_cfg, store):
    """Class weights reach binary focal as alpha = w1 / (w0 + w1); the run records that alpha, not the config's."""
    result = execute(make_cfg("data=imbalanced", "data.n_samples=2000", "data.positive_fraction=0.1",
                              "loss=focal", "loss.alpha=0.25", "data.class_weights=balanced", "trainer.epochs=1"))
    params = MlflowClient(tracking_uri=store).get_run(result.run_id).data.params
    w0, w1 = eval(params["class_weights.values"])  # noqa: S307 - our own logged list
    assert params["class_weights.form"] == "alpha"
    assert float(params["loss.alpha"]) == pytest.approx(w1 / (w0 + w1), rel=1e-5) and float(params["loss.alpha"]) > 0.85
