"""Forward+backward time of each loss against the closest reference implementation, at realistic sizes.

    python -m benchmarks.losses [--repeats 15] [--device cpu|cuda]

Ours and the reference are timed alternately in the same process (so machine noise hits both alike); each
cell is the median of ``--repeats`` timings, each timing the mean of a few calls. Prints a Markdown table with the
ratio ours/reference (target <= 1.2) and the spread (interquartile range of the ratio over repeats).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

import losses


def reference_dice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook soft Dice a user would write: softmax/sigmoid, one-hot, sums over batch and pixels."""
    if x.shape[1] == 1:
        p, g = torch.sigmoid(x), y
    else:
        p, g = F.softmax(x, 1), F.one_hot(y, x.shape[1]).permute(0, 3, 1, 2).to(x.dtype)
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    return (1 - (2 * inter + 1) / (p.sum(dims) + g.sum(dims) + 1)).mean()


def reference_softmax_focal(x: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """The usual hand-written softmax focal loss: ``p_t = exp(-ce)``, ``alpha (1 - p_t)**gamma ce``."""
    ce = F.cross_entropy(x, y, reduction="none")
    return (alpha * (1 - torch.exp(-ce)) ** gamma * ce).mean()


def cases(device: str) -> list[tuple[str, str, Callable, Callable, tuple]]:
    g = torch.Generator(device="cpu").manual_seed(0)

    def t(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    n = 1_000_000
    x, y = t(n), t(n)
    counts = torch.poisson(torch.rand(n, generator=g) * 4).to(device)
    zb, yb = t(n, scale=3), torch.randint(0, 2, (n,), generator=g).float().to(device)
    z10, y10 = t(4096, 10, scale=3), torch.randint(0, 10, (4096,), generator=g).to(device)
    z1k, y1k = t(4096, 1000, scale=3), torch.randint(0, 1000, (4096,), generator=g).to(device)
    soft1k = F.softmax(t(4096, 1000), 1)
    mb, tb = t(8, 1, 256, 256), torch.randint(0, 2, (8, 1, 256, 256), generator=g).float().to(device)
    m21, t21 = t(8, 21, 128, 128), torch.randint(0, 21, (8, 128, 128), generator=g).to(device)
    R, B, M, S = losses.regression, losses.binary, losses.multiclass, losses.segmentation
    return [
        ("mse", "F.mse_loss", R.mse, F.mse_loss, (x, y)),
        ("mae", "F.l1_loss", R.mae, F.l1_loss, (x, y)),
        ("huber", "F.huber_loss", R.huber, F.huber_loss, (x, y)),
        ("smooth_l1", "F.smooth_l1_loss", R.smooth_l1, F.smooth_l1_loss, (x, y)),
        ("log_cosh", "log(cosh(r)).mean()", R.log_cosh, lambda a, b: torch.log(torch.cosh(a - b)).mean(), (x, y)),
        ("poisson (log input)", "F.poisson_nll_loss", lambda a, b: R.poisson(a, b, log_input=True), F.poisson_nll_loss, (x, counts)),
        ("bce", "F.binary_cross_entropy_with_logits", B.bce, F.binary_cross_entropy_with_logits, (zb, yb)),
        ("focal", "torchvision sigmoid_focal_loss", B.focal, lambda a, b: sigmoid_focal_loss(a, b, reduction="mean"), (zb, yb)),
        ("ce 4096x10", "F.cross_entropy", M.ce, F.cross_entropy, (z10, y10)),
        ("ce 4096x1000", "F.cross_entropy", M.ce, F.cross_entropy, (z1k, y1k)),
        ("ce label_smoothing 4096x1000", "F.cross_entropy", lambda a, b: M.ce(a, b, label_smoothing=0.1), lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1), (z1k, y1k)),
        ("categorical_ce 4096x1000", "F.cross_entropy (prob. targets)", M.categorical_ce, F.cross_entropy, (z1k, soft1k)),
        ("kl_div 4096x1000", "F.kl_div(log_softmax, batchmean)", M.kl_div, lambda a, b: F.kl_div(F.log_softmax(a, 1), b, reduction="batchmean"), (z1k, soft1k)),
        ("multi_margin 4096x10", "F.multi_margin_loss", M.multi_margin, F.multi_margin_loss, (z10, y10)),
        ("categorical_focal 4096x1000", "hand-written softmax focal", M.categorical_focal, reference_softmax_focal, (z1k, y1k)),
        ("dice 8x1x256x256", "textbook soft Dice", S.dice, reference_dice, (mb, tb)),
        ("dice 8x21x128x128", "textbook soft Dice", S.dice, reference_dice, (m21, t21)),
        ("ce 8x21x128x128", "F.cross_entropy", M.ce, F.cross_entropy, (m21, t21)),
    ]


def time_call(fn: Callable, args: tuple, calls: int, device: str) -> float:
    inp = args[0].detach().clone().requires_grad_(True)
    rest = args[1:]
    start = time.perf_counter()
    for _ in range(calls):
        fn(inp, *rest).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    print(f"loss kernels, forward+backward, {args.device}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {date.today()}\n")
    print("| loss | reference | ours (ms) | reference (ms) | ours/ref (median) | IQR of ratio |")
    print("|---|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, ref_name, ours, ref, inputs in cases(args.device):
        for _ in range(2):  # warm-up
            time_call(ours, inputs, 1, args.device), time_call(ref, inputs, 1, args.device)
        t_ours, t_ref, ratios = [], [], []
        for _ in range(args.repeats):
            a = time_call(ours, inputs, args.calls, args.device)
            b = time_call(ref, inputs, args.calls, args.device)
            t_ours.append(a), t_ref.append(b), ratios.append(a / b)
        q = statistics.quantiles(ratios, n=4)
        ratio = statistics.median(ratios)
        worst = max(worst, ratio)
        print(f"| {name} | {ref_name} | {statistics.median(t_ours) * 1e3:.2f} | {statistics.median(t_ref) * 1e3:.2f} "
              f"| {ratio:.2f} | {q[0]:.2f}-{q[2]:.2f} |", flush=True)
    print(f"\nworst ours/reference ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
