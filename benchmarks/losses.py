"""Forward+backward time of each loss against the closest reference implementation, at realistic sizes.

    python -m benchmarks.losses [--repeats 15] [--device cpu|cuda] [--only dice lovasz]

Ours and the reference are timed alternately in the same process, each going first in every other repeat (so
machine noise hits both alike); each cell is the median of ``--repeats`` timings, each timing the mean of a few calls. Prints a Markdown table with the
ratio ours/reference (target <= 1.2), the spread (interquartile range of the ratio over repeats), and whether both
compute the same value on the benchmark's inputs.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from datetime import date
from typing import Callable

import torch
import torch.nn.functional as F
from scipy import special
from torchvision.ops import sigmoid_focal_loss

import losses


def _probs_one_hot(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[1] == 1:
        return torch.sigmoid(x), y
    return F.softmax(x, 1), F.one_hot(y, x.shape[1]).movedim(-1, 1).to(x.dtype)


def reference_dice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook soft Dice a user would write: softmax/sigmoid, one-hot, sums over batch and pixels."""
    p, g = _probs_one_hot(x, y)
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    return (1 - (2 * inter + 1) / (p.sum(dims) + g.sum(dims) + 1)).mean()


def reference_jaccard(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p, g = _probs_one_hot(x, y)
    inter, total = (p * g).sum((0, 2, 3)), (p + g).sum((0, 2, 3))
    return (1 - (inter + 1) / (total - inter + 1)).mean()


def reference_tversky_index(x: torch.Tensor, y: torch.Tensor, alpha: float = 0.3, beta: float = 0.7) -> torch.Tensor:
    p, g = _probs_one_hot(x, y)
    tp, fp, fn = (p * g).sum((0, 2, 3)), (p * (1 - g)).sum((0, 2, 3)), ((1 - p) * g).sum((0, 2, 3))
    return (tp + 1) / (tp + alpha * fp + beta * fn + 1)


def reference_lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Berman et al.'s reference code (``lovasz_losses.py``), transcribed."""
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.float().cumsum(0)
    union = gts + (1 - gt_sorted).float().cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def reference_lovasz(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Berman et al.'s ``lovasz_hinge(per_image=False)`` / ``lovasz_softmax(classes='present', per_image=False)``."""
    if x.shape[1] == 1:
        logits, labels = x.reshape(-1), y.reshape(-1)
        errors = 1.0 - logits * (2.0 * labels - 1.0)
        errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
        return torch.dot(F.relu(errors_sorted), reference_lovasz_grad(labels[perm]))
    probas = F.softmax(x, 1).permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    labels = y.reshape(-1)
    losses_ = []
    for c in range(x.shape[1]):
        fg = (labels == c).float()
        if fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses_.append(torch.dot(errors_sorted, reference_lovasz_grad(fg[perm])))
    return torch.stack(losses_).mean()


def reference_generalized_dice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sudre et al.'s GDL with ``1 / G**2`` weights over the batch (every class present in the benchmark's masks)."""
    p, g = _probs_one_hot(x, y)
    inter, total, gsum = (p * g).sum((0, 2, 3)), (p + g).sum((0, 2, 3)), g.sum((0, 2, 3))
    w = 1.0 / gsum**2
    return 1 - (2 * (w * inter).sum() + 1e-5) / ((w * total).sum() + 1e-5)


def reference_nce_rce(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, beta: float = 10.0) -> torch.Tensor:
    """Ma et al.'s NCE + RCE as their code writes it, with RCE's log 0 = -4 (the paper's A)."""
    logp = F.log_softmax(x, 1)
    nce = -logp.gather(1, y[:, None]).squeeze(1) / -logp.sum(1)
    rce = -(F.softmax(x, 1) * torch.log(F.one_hot(y, x.shape[1]).float().clamp(math.exp(-4.0), 1.0))).sum(1)
    return (alpha * nce + beta * rce).mean()


def reference_agce(x: torch.Tensor, y: torch.Tensor, a: float = 4.0, q: float = 0.2) -> torch.Tensor:
    """Zhou et al.'s AGCE as their code writes it."""
    p_y = (F.one_hot(y, x.shape[1]) * F.softmax(x, 1)).sum(1)
    return (((a + 1) ** q - (a + p_y) ** q) / q).mean()


def reference_topk(x: torch.Tensor, y: torch.Tensor, k: float = 10.0) -> torch.Tensor:
    """SegLoss's TopKLoss (Ma et al.): per-pixel CE, the top k percent, mean."""
    res = F.cross_entropy(x, y, reduction="none").reshape(-1)
    return res.topk(int(res.numel() * k / 100), sorted=False).values.mean()


def reference_mcc(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """smp's MCCLoss on ``sigmoid(x)``."""
    p = torch.sigmoid(x)
    tp, tn = (p * y).sum() + eps, ((1 - p) * (1 - y)).sum() + eps
    fp, fn = (p * (1 - y)).sum() + eps, ((1 - p) * y).sum() + eps
    return 1 - (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


def reference_tukey(x: torch.Tensor, y: torch.Tensor, c: float = 4.685) -> torch.Tensor:
    """Belagiannis et al.'s biweight on residuals over 1.4826 MAD (MAD held constant)."""
    r = x - y
    with torch.no_grad():
        s = 1.4826 * (r - r.median()).abs().median()
    u = r / s
    return torch.where(u.abs() <= c, c**2 / 6 * (1 - (1 - (u / c) ** 2) ** 3), torch.full_like(u, c**2 / 6)).mean()


def reference_softmax_focal(x: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """The usual hand-written softmax focal loss: ``p_t = exp(-ce)``, ``alpha (1 - p_t)**gamma ce``."""
    ce = F.cross_entropy(x, y, reduction="none")
    return (alpha * (1 - torch.exp(-ce)) ** gamma * ce).mean()


def reference_poly1(x: torch.Tensor, y: torch.Tensor, epsilon: float = 1.0) -> torch.Tensor:
    """Leng et al. (2022)'s listing: ``CE + epsilon * (1 - sum(labels * softmax(logits)))``."""
    labels = F.one_hot(y, x.shape[1]).to(x.dtype)
    pt = (labels * F.softmax(x, -1)).sum(-1)
    return (F.cross_entropy(x, y, reduction="none") + epsilon * (1 - pt)).mean()


def reference_gce(x: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Zhang & Sabuncu (2018)'s GCE as commonly implemented: ``(1 - gather(softmax, y)**q) / q``."""
    yg = torch.gather(F.softmax(x, 1), 1, y.unsqueeze(1))
    return ((1 - yg**q) / q).mean()


def reference_sce(x: torch.Tensor, y: torch.Tensor, alpha: float = 0.1, beta: float = 1.0) -> torch.Tensor:
    """Wang et al. (2019)'s ``SCELoss``: ``alpha CE + beta RCE``, one-hot clamped at 1e-4 inside the log."""
    ce = F.cross_entropy(x, y)
    pred = F.softmax(x, dim=1).clamp(min=1e-7, max=1.0)
    one_hot = F.one_hot(y, x.shape[1]).float().clamp(min=1e-4, max=1.0)
    rce = -1 * torch.sum(pred * torch.log(one_hot), dim=1)
    return alpha * ce + beta * rce.mean()


def reference_barron(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """The general robust loss as the paper's formula reads, ``|a-2|/a (((r/c)^2/|a-2| + 1)^(a/2) - 1)``."""
    b = abs(alpha - 2.0)
    return (b / alpha * (((x - y) / scale) ** 2 / b + 1) ** (alpha / 2) - b / alpha).mean()


LOG_Z_ALPHA_1 = math.log(2 * math.e * special.kv(1, 1))  # Barron 2019: Z(1) = 2 e K_1(1)


def reference_barron_nll(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """``reference_barron`` plus ``log c + log Z(1)``, ``log Z`` a precomputed constant (a lower bound on any lookup)."""
    return reference_barron(x, y, alpha, scale) + math.log(scale) + LOG_Z_ALPHA_1


def reference_learned_barron(device: str) -> Callable:
    """The paper's formula with ``alpha`` and ``scale`` as leaf tensors that get gradients, and ``log Z(0.7)`` as a
    precomputed constant: what the module computes, minus computing ``log Z``."""
    alpha = torch.tensor(0.7, device=device, requires_grad=True)
    scale = torch.tensor(1.3, device=device, requires_grad=True)
    log_z = float(losses.regression.barron_log_partition(0.7))

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b = (alpha - 2).abs()
        return (b / alpha * ((((x - y) / scale) ** 2 / b + 1) ** (alpha / 2) - 1) + torch.log(scale) + log_z).mean()

    return fn


def cases(device: str) -> list[tuple[str, str, Callable, Callable, tuple]]:
    g = torch.Generator(device="cpu").manual_seed(0)
    LT, NL = losses.long_tail, losses.noisy_labels

    def t(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    n = 1_000_000
    x, y = t(n), t(n)
    counts = torch.poisson(torch.rand(n, generator=g) * 4).to(device)
    rates = (torch.rand(n, generator=g) * 4 + 0.1).to(device)
    zb, yb = t(n, scale=3), torch.randint(0, 2, (n,), generator=g).float().to(device)
    z10, y10 = t(4096, 10, scale=3), torch.randint(0, 10, (4096,), generator=g).to(device)
    z1k, y1k = t(4096, 1000, scale=3), torch.randint(0, 1000, (4096,), generator=g).to(device)
    soft1k = F.softmax(t(4096, 1000), 1)
    onehot1k = F.one_hot(y1k, 1000).float()
    mb, tb = t(8, 1, 256, 256), torch.randint(0, 2, (8, 1, 256, 256), generator=g).float().to(device)
    m21, t21 = t(8, 21, 128, 128), torch.randint(0, 21, (8, 128, 128), generator=g).to(device)
    big, tbig = t(16, 21, 256, 256), torch.randint(0, 21, (16, 256, 256), generator=g).to(device)
    learned_barron = losses.get("barron_adaptive", alpha=0.7, scale=1.3).to(device)
    counts10 = torch.bincount(y10, minlength=10).float().clamp_min(1) ** 2  # a skewed prior
    log_prior10 = torch.log(counts10 / counts10.sum())
    noise10 = NL.uniform_noise_matrix(0.3, 10).to(device)
    R, B, M, S, A = losses.regression, losses.binary, losses.multiclass, losses.segmentation, losses.adversarial
    keras_hinge = lambda a, b: torch.clamp(1 - (2 * b - 1) * a, min=0)  # noqa: E731
    return [
        ("mse", "F.mse_loss", R.mse, F.mse_loss, (x, y)),
        ("mae", "F.l1_loss", R.mae, F.l1_loss, (x, y)),
        ("huber", "F.huber_loss", R.huber, F.huber_loss, (x, y)),
        ("smooth_l1", "F.smooth_l1_loss", R.smooth_l1, F.smooth_l1_loss, (x, y)),
        ("log_cosh", "log(cosh(r)).mean()", R.log_cosh, lambda a, b: torch.log(torch.cosh(a - b)).mean(), (x, y)),
        ("msle", "Keras formula (log1p of clipped values)", R.msle, lambda a, b: (torch.log1p(a.clamp_min(1e-7)) - torch.log1p(b.clamp_min(1e-7))).square().mean(), (rates, counts)),
        ("msle, unclipped reference", "F.mse_loss(log1p, log1p)", R.msle, lambda a, b: F.mse_loss(torch.log1p(a), torch.log1p(b)), (rates, counts)),
        ("mape", "Keras formula", R.mape, lambda a, b: (100 * (b - a).abs() / b.abs().clamp_min(1e-7)).mean(), (x, y)),
        ("poisson (log input)", "F.poisson_nll_loss", lambda a, b: R.poisson(a, b, log_input=True), F.poisson_nll_loss, (x, counts)),
        ("quantile q=0.9", "max(q r, (q-1) r)", lambda a, b: R.quantile(a, b, q=0.9), lambda a, b: torch.max(0.9 * (b - a), -0.1 * (b - a)).mean(), (x, y)),
        ("cauchy", "log1p(0.5 r^2)", R.cauchy, lambda a, b: torch.log1p(0.5 * (a - b) ** 2).mean(), (x, y)),
        ("barron alpha=1", "the paper's formula", R.barron, reference_barron, (x, y)),
        ("barron alpha=0.5", "the paper's formula", lambda a, b: R.barron(a, b, alpha=0.5), lambda a, b: reference_barron(a, b, 0.5), (x, y)),
        ("barron_adaptive (fixed alpha, scale)", "formula + log c + constant log Z", R.barron_adaptive, reference_barron_nll, (x, y)),
        ("barron_adaptive (module: alpha, scale learned)", "formula with alpha, scale tensors + constant log Z", learned_barron, reference_learned_barron(device), (x, y)),
        ("bce", "F.binary_cross_entropy_with_logits", B.bce, F.binary_cross_entropy_with_logits, (zb, yb)),
        ("focal", "torchvision sigmoid_focal_loss", B.focal, lambda a, b: sigmoid_focal_loss(a, b, reduction="mean"), (zb, yb)),
        ("hinge", "Keras formula", B.hinge, lambda a, b: keras_hinge(a, b).mean(), (zb, yb)),
        ("squared_hinge", "Keras formula", B.squared_hinge, lambda a, b: keras_hinge(a, b).square().mean(), (zb, yb)),
        ("ce 4096x10", "F.cross_entropy", M.ce, F.cross_entropy, (z10, y10)),
        ("ce 4096x1000", "F.cross_entropy", M.ce, F.cross_entropy, (z1k, y1k)),
        ("ce label_smoothing 4096x1000", "F.cross_entropy", lambda a, b: M.ce(a, b, label_smoothing=0.1), lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1), (z1k, y1k)),
        ("categorical_ce 4096x1000", "F.cross_entropy (prob. targets)", M.categorical_ce, F.cross_entropy, (z1k, soft1k)),
        ("kl_div 4096x1000", "F.kl_div(log_softmax, batchmean)", M.kl_div, lambda a, b: F.kl_div(F.log_softmax(a, 1), b, reduction="batchmean"), (z1k, soft1k)),
        ("multi_margin 4096x10", "F.multi_margin_loss", M.multi_margin, F.multi_margin_loss, (z10, y10)),
        ("categorical_focal 4096x1000", "hand-written softmax focal", M.categorical_focal, reference_softmax_focal, (z1k, y1k)),
        ("categorical_hinge 4096x1000", "Keras formula", M.categorical_hinge, lambda a, b: F.relu(((1 - b) * a).amax(1) - (b * a).sum(1) + 1).mean(), (z1k, onehot1k)),
        ("cosine_similarity 4096x1000", "-F.cosine_similarity(softmax)", M.cosine_similarity, lambda a, b: -F.cosine_similarity(F.softmax(a, 1), b, dim=1).mean(), (z1k, onehot1k)),
        ("poly1 4096x1000", "Leng et al.'s listing", M.poly1, reference_poly1, (z1k, y1k)),
        ("softmax_mse 4096x1000", "(softmax - one_hot)^2", M.softmax_mse, lambda a, b: (F.softmax(a, 1) - F.one_hot(b, a.shape[1])).square().sum(1).mean(), (z1k, y1k)),
        ("softmax_mae 4096x1000", "|softmax - one_hot|", M.softmax_mae, lambda a, b: (F.softmax(a, 1) - F.one_hot(b, a.shape[1])).abs().sum(1).mean(), (z1k, y1k)),
        ("generalized_ce 4096x1000", "Zhang & Sabuncu's GCE", M.generalized_ce, reference_gce, (z1k, y1k)),
        ("symmetric_ce 4096x1000", "Wang et al.'s SCELoss", lambda a, b: M.symmetric_ce(a, b, log_zero=math.log(1e-4)), reference_sce, (z1k, y1k)),
        ("dice 8x1x256x256", "textbook soft Dice", S.dice, reference_dice, (mb, tb)),
        ("dice 8x1x256x256, check_target=False", "textbook soft Dice", lambda a, b: S.dice(a, b, check_target=False), reference_dice, (mb, tb)),
        ("dice 8x21x128x128", "textbook soft Dice", S.dice, reference_dice, (m21, t21)),
        ("jaccard 8x21x128x128", "textbook soft IoU", S.jaccard, reference_jaccard, (m21, t21)),
        ("tversky 8x21x128x128", "textbook Tversky", S.tversky, lambda a, b: (1 - reference_tversky_index(a, b)).mean(), (m21, t21)),
        ("focal_tversky 8x21x128x128", "textbook focal Tversky", S.focal_tversky, lambda a, b: ((1 - reference_tversky_index(a, b)) ** 0.75).mean(), (m21, t21)),
        ("lovasz 8x1x256x256", "Berman et al.'s lovasz_hinge", S.lovasz, reference_lovasz, (mb, tb)),
        ("lovasz 8x21x128x128", "Berman et al.'s lovasz_softmax", S.lovasz, reference_lovasz, (m21, t21)),
        ("lovasz 16x21x256x256", "Berman et al.'s lovasz_softmax (our loop before round 2)", S.lovasz, reference_lovasz, (big, tbig)),
        ("generalized_dice 8x21x128x128", "Sudre et al.'s GDL, 1/G^2", S.generalized_dice, reference_generalized_dice, (m21, t21)),
        ("dice_bce 8x1x256x256", "textbook Dice + F.bce_with_logits", S.dice_bce, lambda a, b: reference_dice(a, b) + F.binary_cross_entropy_with_logits(a, b), (mb, tb)),
        ("dice_ce 8x21x128x128", "textbook Dice + F.cross_entropy", S.dice_ce, lambda a, b: reference_dice(a, b) + F.cross_entropy(a, b), (m21, t21)),
        ("ce 8x21x128x128", "F.cross_entropy", M.ce, F.cross_entropy, (m21, t21)),
        ("tukey", "the paper's biweight on MAD-scaled residuals", R.tukey, reference_tukey, (x, y)),
        ("welsch", "1 - exp(-r^2 / 2)", R.welsch, lambda a, b: (1 - torch.exp(-0.5 * (a - b) ** 2)).mean(), (x, y)),
        ("nce_rce 4096x10", "Ma et al.'s NCEandRCE", NL.nce_rce, reference_nce_rce, (z10, y10)),
        ("agce 4096x10", "Zhou et al.'s AGCELoss", NL.agce, reference_agce, (z10, y10)),
        ("logit_adjusted_ce 4096x10", "F.cross_entropy(z + log prior)", lambda a, b: LT.logit_adjusted_ce(a, b, class_counts=counts10), lambda a, b: F.cross_entropy(a + log_prior10, b), (z10, y10)),
        ("forward_corrected_ce 4096x10", "-log((softmax @ T)_y)", lambda a, b: NL.forward_corrected_ce(a, b, noise_matrix=noise10), lambda a, b: -torch.log((F.softmax(a, 1) @ noise10).gather(1, b[:, None])).mean(), (z10, y10)),
        ("topk_ce 8x21x128x128", "SegLoss TopKLoss", S.topk_ce, reference_topk, (m21, t21)),
        ("mcc 8x1x256x256", "smp MCCLoss on sigmoid", S.mcc, reference_mcc, (mb, tb)),
        ("gan_discriminator", "F.binary_cross_entropy_with_logits", A.gan_discriminator, F.binary_cross_entropy_with_logits, (zb, yb)),
        ("gan_generator", "F.softplus(-x).mean()", lambda a: A.gan_generator(a), lambda a: F.softplus(-a).mean(), (zb,)),
    ]


# Rows shown for transparency, not held to the target: the reference drops a convention ours keeps (Keras's clip).
INFORMATIONAL = {"msle, unclipped reference"}


def agree(ours: Callable, ref: Callable, args: tuple) -> bool:
    """Both compute the same value on these inputs (so the timing compares like with like)."""
    with torch.no_grad():
        return bool(torch.allclose(ours(*args), ref(*args), rtol=1e-4, atol=1e-5))


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
    parser.add_argument("--only", nargs="*", help="substrings of the cases to run (default: all)")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the spread needs two ratios)")

    print(f"loss kernels, forward+backward, {args.device}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {date.today()}\n")
    print("| loss | reference | same value | ours (ms) | reference (ms) | ours/ref (median) | IQR of ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    worst = 0.0
    selected = [c for c in cases(args.device) if not args.only or any(k in c[0] for k in args.only)]
    for name, ref_name, ours, ref, inputs in selected:
        same = "yes" if agree(ours, ref, inputs) else "NO"
        for _ in range(2):  # warm-up
            time_call(ours, inputs, 1, args.device), time_call(ref, inputs, 1, args.device)
        t_ours, t_ref, ratios = [], [], []
        for r in range(args.repeats):  # alternate which goes first, so neither always pays for the other's frees
            if r % 2:
                b = time_call(ref, inputs, args.calls, args.device)
                a = time_call(ours, inputs, args.calls, args.device)
            else:
                a = time_call(ours, inputs, args.calls, args.device)
                b = time_call(ref, inputs, args.calls, args.device)
            t_ours.append(a), t_ref.append(b), ratios.append(a / b)
        q = statistics.quantiles(ratios, n=4)
        ratio = statistics.median(ratios)
        if name not in INFORMATIONAL:
            worst = max(worst, ratio)
        print(f"| {name} | {ref_name} | {same} | {statistics.median(t_ours) * 1e3:.2f} | {statistics.median(t_ref) * 1e3:.2f} "
              f"| {ratio:.2f} | {q[0]:.2f}-{q[2]:.2f} |", flush=True)
    print(f"\nworst ours/reference ratio: {worst:.2f} (rows held to the target; not {sorted(INFORMATIONAL)})")


if __name__ == "__main__":
    main()
