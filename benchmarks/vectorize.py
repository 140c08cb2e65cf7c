"""Runs per second: members of a sweep trained stacked in one loop (``trainer.vectorize=true``) against the same runs
trained one by one, in one process, on the same machine.

    python -m benchmarks.vectorize [--members 4,16,64] [--cases outliers-linear,...] [--repeats 3] [--device cpu|cuda]

Each case is a config of the studies, shortened to a few epochs; member ``i`` is that config with ``seed=i``. Both
sides start from built members (data, loss and model made as ``harness.run.prepare`` makes them: building is the same
work either way) and time the training loop only, with what ``fit`` does every epoch (validation metrics, best-epoch
copy; no MLflow, no progress bar). One by one: ``harness.train.fit`` for each of ``--alone`` members (its runs per
second do not depend on how many there are); stacked: ``harness.vectorize.fit_stacked`` on all of them. Repeats
alternate the two; the medians are reported, with the speed-up (stacked runs/s over one-by-one runs/s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from harness.__main__ import CONF_DIR
from harness.run import prepare
from harness.train import BestEpoch, fit
from harness.vectorize import Member, _loss_function, fit_stacked, loss_form

COMMON = ["trainer.progress=false", "tracking.log_plots=false"]
CASES = {
    "outliers-linear": ["data=outliers", "model=linear", "trainer.grad_share=true"],
    "outliers-mlp": ["data=outliers", "model=mlp", "trainer.epochs=20"],
    "imbalanced-mlp": ["data=imbalanced", "data.class_weights=balanced", "trainer.epochs=2"],
    "mnist-cnn": ["data=mnist", "data.download=false", "data.train_size=2000", "trainer.epochs=1"],
    "segmentation-unet": ["data=segmentation", "data.n_train=256", "data.n_val=64", "data.n_test=64", "trainer.epochs=1"],
}


def quiet_prepare(cfg):
    """``prepare`` without its per-run notes (a local MNIST subset's, once per member)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return prepare(cfg)


def configs(case: str, count: int, device: str) -> list:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return [compose("config", overrides=[*CASES[case], *COMMON, f"trainer.device={device}", f"seed={s}"]) for s in range(count)]


def best_of(p) -> BestEpoch:
    return BestEpoch(p.task.monitor, p.task.metrics[p.task.monitor])


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_alone(cfgs: list, device: str) -> float:
    """Runs per second, one ``fit`` after another."""
    built = [quiet_prepare(c) for c in cfgs]
    sync(device)
    start = time.perf_counter()
    for p, c in zip(built, cfgs):
        fit(p.model, p.criterion, p.data, c, best=best_of(p))
    sync(device)
    return len(cfgs) / (time.perf_counter() - start)


def time_stacked(cfgs: list, device: str) -> tuple[float, str]:
    """Runs per second, all of ``cfgs`` in one ``fit_stacked``; and how their loss was computed."""
    built = [quiet_prepare(c) for c in cfgs]
    members = [Member(p.model, p.criterion, p.data, int(c.seed), best=best_of(p)) for p, c in zip(built, cfgs)]
    sync(device)
    start = time.perf_counter()
    fit_stacked(members, cfgs[0])
    sync(device)
    failed = [i for i, m in enumerate(members) if m.error is not None]
    assert not failed, f"members {failed} failed"
    return len(cfgs) / (time.perf_counter() - start), loss_form(_loss_function(members))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="4,16,64")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--alone", type=int, default=4, help="members timed one by one (runs/s does not depend on it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    sizes = [int(s) for s in args.members.split(",")]
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    print("| case | members | one by one (runs/s) | stacked (runs/s) | speed-up | loss |")
    print("|---|---:|---:|---:|---:|---|")
    for case in args.cases.split(","):
        alone_cfgs = configs(case, args.alone, args.device)
        time_alone(alone_cfgs[:1], args.device)  # warm-up
        alone: list[float] = []
        stacked: dict[int, list[float]] = {m: [] for m in sizes}
        how = ""
        for _ in range(args.repeats):
            alone.append(time_alone(alone_cfgs, args.device))
            for m in sizes:
                rate, how = time_stacked(configs(case, m, args.device), args.device)
                stacked[m].append(rate)
        base = statistics.median(alone)
        for m in sizes:
            rate = statistics.median(stacked[m])
            print(f"| {case} | {m} | {base:.2f} | {rate:.2f} | {rate / base:.1f}x | {how} |", flush=True)


if __name__ == "__main__":
    main()
