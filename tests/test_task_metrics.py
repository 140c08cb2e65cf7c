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
    binary = tasks.get("segmentation").compute((2 * pred.float() - 1).unsqueeze(1), target, 2)
    assert binary == m
