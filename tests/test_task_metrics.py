"""Task metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from harness import tasks


def test_binary_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(500, generator=g) < 0.1).long()
    score = torch.randn(500, generator=g) + 2.0 * y
    m = tasks.get("binary").compute(score, y, 2)
    prob = torch.sigmoid(score.double()).numpy()
    pred = (score > 0).long().numpy()
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, prob))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, prob))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["recall_minority"] == pytest.approx(skm.recall_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, prob), rel=1e-6)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))


def test_f1_threshold_by_hand():
    from harness.tasks.binary import f1_threshold

    score = torch.tensor([-2.0, -1.0, 0.5, 1.0, 3.0, 4.0])
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    # predictions score >= t, F1 by hand: t=-2 2/3 (P 3/6, R 1); t=-1 3/4 (P 3/5, R 1); t=0.5 4/7; t=1 2/3; t=3 2/5; t=4 0
    assert f1_threshold(score, y) == -1.0
    assert f1_threshold(score, torch.zeros(6, dtype=torch.long)) == 0.0


def test_tuned_threshold_metrics_use_the_validation_split():
    """A model whose scores are all shifted by -5 has F1 0 at score 0; the threshold chosen on validation undoes the
    shift, so the tuned F1 on test equals the F1 of the unshifted scores at their own best threshold."""
    from types import SimpleNamespace

    from harness.evaluation import evaluate
    from harness.tasks.binary import f1_threshold

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 3, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(2000, generator=g) > 1.5).long()
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        model.bias.fill_(-5.0)
    split = lambda a, b: SimpleNamespace(x=x[a:b], y=y[a:b])  # noqa: E731
    data = SimpleNamespace(val=split(0, 1000), test=split(1000, 2000), num_classes=2)
    test = evaluate(model, data.test.x, data.test.y)
    m = tasks.get("binary").test_metrics(test, data, model)
    assert m["f1"] == 0.0 and m["recall_minority"] == 0.0
    t = f1_threshold(x[:1000, 0] - 5.0, y[:1000])
    assert m["tuned_threshold"] == pytest.approx(t)
    pred = ((x[1000:, 0] - 5.0) >= t).long()
    assert m["tuned_f1"] == pytest.approx(skm.f1_score(y[1000:], pred)) and m["tuned_f1"] > 0.5
    assert m["tuned_recall"] == pytest.approx(skm.recall_score(y[1000:], pred))
    assert m["tuned_precision"] == pytest.approx(skm.precision_score(y[1000:], pred))


def test_multiclass_metrics_and_ece_by_hand():
    scores = torch.log(torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]))
    y = torch.tensor([0, 1, 1, 2])
    m = tasks.get("multiclass").compute(scores, y, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)  # recalls: class 0 1/1, class 1 1/2, class 2 1/1
    assert m["macro_f1"] == pytest.approx(skm.f1_score([0, 1, 1, 2], [0, 0, 1, 2], average="macro"))
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.3, 0.7, 0.8])), rel=1e-6)
    # 15 bins: confidences 0.9, 0.6, 0.7, 0.8 fall in separate bins; |acc - conf| = 0.1, 0.6, 0.3, 0.2
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4, rel=1e-6)


def test_segmentation_metrics_by_hand():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 0, 0, 1]]])
    logits = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    m = tasks.get("segmentation").compute(logits, target, 2)
    # class 0: tp 3, fp 1, fn 1 -> IoU 3/5; class 1: tp 3, fp 1, fn 1 -> IoU 3/5, Dice 6/8
    assert m["miou"] == pytest.approx(0.6)
    assert m["dice"] == pytest.approx(0.75)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 4)
    # foreground predicted nowhere: recall 0, precision 0 (no predictions), Dice 0
    none = tasks.get("segmentation").compute(-torch.ones(1, 1, 2, 4), target, 2)
    assert (none["precision"], none["recall"], none["dice"]) == (0.0, 0.0, 0.0)
    over = tasks.get("segmentation").compute(torch.ones(1, 1, 2, 4), target, 2)  # everything foreground
    assert over["precision"] == pytest.approx(4 / 8) and over["recall"] == 1.0
    binary = tasks.get("segmentation").compute((2 * pred.float() - 1).unsqueeze(1), target, 2)
    assert binary == m
