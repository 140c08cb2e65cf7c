"""Figures logged as MLflow artifacts (matplotlib, headless Agg backend, imported only when plotting)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .evaluation import require_host
from .grad_share import PREFIX as GRAD_SHARE


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict[str, float]], title: str) -> Any:
    """Training loss, every validation metric and every learned loss parameter (``loss/alpha``) per epoch, one panel each."""
    plt = _pyplot()
    keys = ["train/loss"] + sorted(k for k in history[0] if k.startswith(("val/", "loss/")))
    epochs = range(1, len(history) + 1)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, [h[key] for h in history], marker="." if len(history) <= 30 else None)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def grad_share(history: list[dict[str, float]], fractions: dict[str, float], title: str) -> Any:
    """Each group's share of the loss gradient per epoch (``grad_share/<group>``), with its share of the training
    data dashed: a group above its dashed line gets more gradient than its size (harness.grad_share)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    epochs = range(1, len(history) + 1)
    for name, fraction in fractions.items():
        line = ax.plot(epochs, [h[GRAD_SHARE + name] for h in history], label=f"{name} ({fraction:.1%} of the data)")[0]
        ax.axhline(fraction, color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of |dL/d output|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def regression_fit(
    test_true: Tensor, test_pred: Tensor, train_true: Tensor, train_pred: Tensor, outlier_mask: Tensor, title: str
) -> Any:
    """Left: clean test predictions against truth. Right: training residuals against fitted values, outliers marked."""
    require_host("plots.regression_fit", test_true, test_pred, train_true, train_pred, outlier_mask)
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    t, p = test_true.numpy(), test_pred.numpy()
    left.scatter(t, p, s=6, alpha=0.5)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    left.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    left.set(xlabel="true (clean test)", ylabel="predicted", title="test: predicted vs true")
    left.legend(loc="upper left")

    fitted = train_pred.numpy()
    resid = (train_true - train_pred).numpy()
    mask = outlier_mask.numpy()
    right.scatter(fitted[~mask], resid[~mask], s=6, alpha=0.5, label=f"clean ({(~mask).sum()})")
    right.scatter(fitted[mask], resid[mask], s=10, alpha=0.8, color="tab:red", label=f"outliers ({mask.sum()})")
    right.axhline(0, color="black", lw=1)
    right.set(xlabel="fitted", ylabel="residual (true - fitted)", title="training residuals")
    right.legend(loc="best")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pr_curve(score: Tensor, target: Tensor, title: str) -> Any:
    """Precision-recall curve of the positive class, with the chance level (the positive rate)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    require_host("plots.pr_curve", score, target)
    plt = _pyplot()
    y, s = target.numpy(), score.detach().float().numpy()
    precision, recall, _ = precision_recall_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot(recall, precision, label=f"AP = {average_precision_score(y, s):.3f}")
    ax.axhline(y.mean(), color="gray", ls="--", lw=1, label=f"chance ({y.mean():.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{title}: test PR curve")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(counts: Tensor, title: str) -> Any:
    """Counts with row-normalised shading (rows: true class, columns: predicted)."""
    require_host("plots.confusion_matrix", counts)
    plt = _pyplot()
    cm = counts.double()
    rates = (cm / cm.sum(1, keepdim=True).clamp_min(1)).numpy()
    n = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * max(n, 4), 1.0 + 0.5 * max(n, 4)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=f"{title}: test confusion")
    fig.tight_layout()
    return fig


def reliability_diagram(prob: Tensor, target: Tensor, title: str, bins: int = 15) -> Any:
    """Accuracy against confidence in equal-width bins (Guo et al. 2017); the diagonal is perfect calibration."""
    require_host("plots.reliability_diagram", prob, target)
    plt = _pyplot()
    conf, pred = prob.max(1)
    correct = (pred == target).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.clamp((conf * bins).long(), max=bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    acc = torch.bincount(which, weights=correct, minlength=bins) / count.clamp_min(1)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    centers = ((edges[:-1] + edges[1:]) / 2).numpy()
    ax.bar(centers, acc.numpy(), width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], color="tab:red", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"{title}: reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def mask_grid(images: Tensor, true: Tensor, pred: Tensor, title: str) -> Any:
    """One row per image: input, true mask, predicted mask."""
    require_host("plots.mask_grid", images, true, pred)
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    vmax = max(int(true.max()), int(pred.max()), 1)
    for i in range(n):
        img = images[i].float()
        img = img[0] if img.shape[0] == 1 else ((img - img.min()) / (img.max() - img.min() + 1e-8)).permute(1, 2, 0)
        for ax, content, name in zip(axes[i], (img, true[i], pred[i]), ("input", "true mask", "predicted")):
            ax.imshow(content.numpy(), cmap="gray" if name == "input" else "viridis", vmin=None if name == "input" else 0, vmax=None if name == "input" else vmax)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
