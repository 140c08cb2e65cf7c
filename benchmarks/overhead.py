"""The harness's training loop against a bare hand-written PyTorch loop, measured side by side.

    python -m benchmarks.overhead [--repeats 7] [--device cpu|cuda]

Both loops train the same model (same init), on the same pre-loaded tensors, with the same optimiser, LR schedule,
batch size and number of steps. The bare loop is forward, loss, backward, step, plus, like the harness, a forward
pass over the validation set after each epoch (hand-written: eval mode, no_grad, in batches). The harness loop is
``harness.train.fit`` with everything it does (criterion adapter, NaN guard, per-epoch validation metrics; progress
bar off, no MLflow: tracking is measured by ``benchmarks.tracking``). Also reported: the ratio against a bare loop
without validation, i.e. what validating every epoch costs, and what ``trainer.grad_share=true`` costs (the harness
loop with it against without; the MNIST case injects label noise so that it has groups: flipped and clean labels).
Repeats alternate the loops; the last line is ``harness/bare ratio: X`` (like for like, median over repeats and
cases).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from harness import tasks
from harness.__main__ import CONF_DIR
from harness.criterion import build_criterion
from harness.data import build_data
from harness.models import build_model
from harness.train import build_optimizer, build_scheduler, fit

CASES = {
    "mnist-cnn": ["data=mnist", "data.download=false", "trainer.epochs=2", "data.label_noise=0.2"],
    "outliers-mlp": ["data=outliers", "model=mlp", "trainer.epochs=20"],
}


def bare_loop(model, x, y, loss_fn, optimizer, scheduler, epochs: int, batch_size: int, seed: int, x_val=None) -> None:
    order = torch.Generator().manual_seed(seed)
    n = len(x)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=order).to(x.device)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        if x_val is not None:
            model.eval()
            with torch.no_grad():
                torch.cat([model(x_val[i : i + 4096]) for i in range(0, len(x_val), 4096)])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(case: str, overrides: list[str], device: torch.device, repeats: int) -> list[float]:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "trainer.progress=false", f"trainer.device={device.type}"])
    data = build_data(cfg.data, cfg.seed)
    criterion = build_criterion(cfg, data.task, data.num_classes, data.class_counts() if data.num_classes else None).to(device)
    data = data.to(device)
    regression = data.task == "regression"

    def bare_loss(out, target):
        return F.mse_loss(out.squeeze(-1), target) if regression else F.cross_entropy(out, target)

    def fresh():
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, data, criterion.num_outputs).to(device)

    steps = cfg.trainer.epochs * -(-len(data.train) // cfg.trainer.batch_size)

    def time_bare(x_val) -> float:
        model = fresh()
        opt = build_optimizer(cfg.optim, model)
        sched = build_scheduler(cfg.optim, opt, steps)
        sync(device)
        t0 = time.perf_counter()
        bare_loop(model, data.train.x, data.train.y, bare_loss, opt, sched, cfg.trainer.epochs, cfg.trainer.batch_size, cfg.seed, x_val)
        sync(device)
        return time.perf_counter() - t0

    def time_harness(config) -> float:
        model = fresh()
        t0 = time.perf_counter()
        fit(model, criterion, data, config)
        sync(device)
        return time.perf_counter() - t0

    with_shares = cfg.copy()
    with_shares.trainer.grad_share = True
    like, novalid, shares = [], [], []
    for r in range(repeats + 1):  # the first round warms up all four
        bare_val = time_bare(data.val.x)
        bare = time_bare(None)
        harness = time_harness(cfg)
        shared = time_harness(with_shares) if tasks.get(data.task).gradient_groups(data) else float("nan")
        if r:
            like.append(harness / bare_val)
            novalid.append(harness / bare)
            shares.append(shared / harness)
            print(f"  {case}: bare {bare:.3f}s, bare+val {bare_val:.3f}s, harness {harness:.3f}s, "
                  f"harness with grad_share {shared:.3f}s", flush=True)
    return like, novalid, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    all_like = []
    for case, overrides in CASES.items():
        like, novalid, shares = measure(case, overrides, device, args.repeats)
        q = statistics.quantiles(like, n=4) if len(like) > 1 else [like[0]] * 3
        print(f"{case}: harness/bare (both validating) median {statistics.median(like):.3f} (IQR {q[0]:.3f}-{q[2]:.3f}); "
              f"harness/bare without validation {statistics.median(novalid):.3f}; "
              f"grad_share on/off {statistics.median(shares):.3f} ({min(shares):.3f}-{max(shares):.3f})", flush=True)
        all_like += like
    print(f"harness/bare ratio: {statistics.median(all_like):.3f}")

if __name__ == "__main__":
    main()
