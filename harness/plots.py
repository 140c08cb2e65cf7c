"""Figures logged as MLflow artifacts (matplotlib, headless Agg backend, imported only when plotting)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict[str, float]], title: str) -> Any:
    """Training loss and every validation metric per epoch, one panel each."""
    plt = _pyplot()
    keys = ["train/loss"] + sorted(k for k in history[0] if k.startswith("val/"))
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


def regression_fit(
    test_true: Tensor, test_pred: Tensor, train_true: Tensor, train_pred: Tensor, outlier_mask: Tensor, title: str
) -> Any:
    """Left: clean test predictions against truth. Right: training residuals against fitted values, outliers marked."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    t, p = test_true.cpu().numpy(), test_pred.cpu().numpy()
    left.scatter(t, p, s=6, alpha=0.5)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    left.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    left.set(xlabel="true (clean test)", ylabel="predicted", title="test: predicted vs true")
    left.legend(loc="upper left")

    fitted = train_pred.cpu().numpy()
    resid = (train_true - train_pred).cpu().numpy()
    mask = outlier_mask.cpu().numpy()
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
