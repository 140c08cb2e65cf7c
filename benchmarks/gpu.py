"""The GPU check (issue #19): what a CPU-only CI cannot see, in one command on one CUDA device, in under 5 minutes.

    python -m benchmarks.gpu [--out FILE] [--only SECTION ...] [--cases NAME ...] [--device cuda|cpu] [--budget S]

Without a CUDA device it says so and exits 0. ``--device cpu`` is a dry run of the same machinery on CPU with the
smallest settings (sections ``env``, ``e2e``, ``sync`` unless ``--only`` names others); ``tests/test_gpu_check.py``
uses it. Exit status: 0 when every row is ``yes``, ``info`` or ``skip``; 1 when any row is ``NO``.

Sections, in this order (each guarded: an exception inside one becomes a failed row and the others still run;
``--only`` picks some):

- ``env``: card, torch / CUDA / cuDNN versions, the TF32 and cuDNN settings every number below ran under (torch's
  defaults: the harness sets none of them), which data options are available offline.
- ``e2e``: every data option that needs no download (``outliers``, ``imbalanced``, ``breast_cancer``, ``segmentation``
  binary and ``data.num_classes=4``, ``mnist`` from the local copy ``../shared/datasets/MNIST/raw`` when present,
  ``fashion_mnist`` only when ``/usr/share/datasets/fashion-mnist`` exists; never ``pets``), each with its natural loss
  (the data option's default) and one or two others, x precision {32, bf16, 16-mixed}, end to end through
  ``harness.run.execute`` with plots on and short training (images 2-3 epochs; tabular 4-10, where the metric has
  levelled off, so the first steps a GradScaler may skip do not move it), into a temporary MLflow store. Each run
  must end FINISHED, with finite test metrics and its plots logged, and its test metric must match the CPU run of
  the same config and seed (CPU precision 32, the reference for every row: 16-mixed has no CPU form, and bf16
  kernels differ between CPU and GPU anyway) within:

  ============  ===================================  =================================================
  precision     regression (test/rmse), relative     pr_auc / accuracy / miou (in [0, 1]), absolute
  ============  ===================================  =================================================
  32            1e-3                                 0.02 (0.01 for pr_auc: an MLP, no TF32 involved)
  bf16          0.05                                 0.05
  16-mixed      0.05                                 0.05
  ============  ===================================  =================================================

  Why 0.02 for fp32 on images: training amplifies any rounding difference, and cuDNN convolutions run in TF32 by
  default (torch's default, kept: it is what users get). Measured on CPU, perturbing every convolution's output by
  relative noise of 1e-3 moved the U-Net's test mIoU after 3 epochs by up to 0.007 and the CNN's MNIST accuracy
  after 2 by 0.002; even noise of 1e-6 moved the lovasz U-Net's mIoU by 0.004. A wrong computation on the GPU (a
  lost class weight, a loss on the wrong axis, autocast reaching a loss) moves these metrics far more. Plus one run
  with ``trainer.device=auto``, which must pick ``cuda``.
- ``pytest``: ``pytest -m cuda`` on the test modules that hold such tests, as a subprocess: tests/test_cuda.py (CUDA end-to-end runs against CPU, half
  precision, auto device, no per-step sync) and tests/test_loss_checks.py's CPU/CUDA agreement of every loss.
- ``sync``: no host synchronisation inside the training step. For each task's natural loss, ``harness.train.fit`` runs
  one epoch under ``torch.cuda.set_sync_debug_mode("warn")``, the warnings are recorded and counted, at two batch
  sizes (default and a quarter of it: ~4x the steps); the count must not grow with the number of steps (it is the
  per-epoch syncs only: the batch order's host-to-device copy, the step losses read once, the validation metrics).
  Each count's source lines are listed. bf16 is held to the same bar on one image task; 16-mixed is reported only:
  ``torch.amp.GradScaler.step`` reads ``found_inf`` on the host every step by design. A positive control
  (``.item()`` of a CUDA tensor) proves the counting sees syncs at all.
- ``speed``: per-epoch training time (forward, loss, backward, step, plus the per-epoch validation), data resident on
  the device, GPU vs this machine's CPU, for the MNIST CNN, the U-Net at 64 and 128 px and the outliers MLP: the
  median of the epochs after the first (which pays one-time costs). Conv models must be faster on the GPU.
- ``vectorize``: stacked training (``trainer.vectorize``) on the device. For each case of ``benchmarks.vectorize``
  (linear and MLP on tabular data, the MNIST CNN, the U-Net), 16 members (seeds 0-15) trained stacked by
  ``harness.vectorize.fit_stacked`` and the first 4 of them trained alone by ``harness.train.fit``, built alike
  (``harness.run.prepare``). Each of the 4 must match its run alone: the test metric within the ``e2e`` fp32 bar
  (rmse relative 1e-3, pr_auc 0.01, accuracy/miou 0.02: batched kernels round differently, and TF32 convolutions
  more so), every member FINISHED; the largest relative difference over all logged per-epoch values is reported.
  Speed: runs per second stacked (16) over one by one, held to "stacked faster" (the harness stacks convolutional
  models only on a GPU: on CPU they are slower stacked).
- ``overhead``: ``python -m benchmarks.overhead --device cuda --repeats 3`` (harness/bare ratio, bar <= 1.05).
- ``losses``: ``python -m benchmarks.losses --device cuda --repeats 3 --calls 5`` (every row ours/reference, bar <= 1.2;
  the rows above it are listed; a row whose two sides disagree in value fails).

The table at the end (section, case, result, bar, ok) also goes to ``--out FILE``, rewritten after every section so a
run cut short still leaves what it measured. No section starts after ``--budget`` seconds (default 270; it becomes a
failed row naming the command that runs it alone). Progress lines are printed (flushed) as it goes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
MNIST_LOCAL = REPO.parent / "shared" / "datasets" / "MNIST" / "raw"
FASHION_LOCAL = Path("/usr/share/datasets/fashion-mnist")
EXPERIMENT = "gpu-check"

SECTIONS = ("env", "e2e", "pytest", "sync", "speed", "vectorize", "overhead", "losses")  # in the order they run
CPU_SECTIONS = ("env", "e2e", "sync")  # what --device cpu runs unless --only names others

OK, FAIL, SKIP, INFO = "yes", "NO", "skip", "info"

# (relative tolerance for the regression metric, absolute tolerance for metrics in [0, 1]) per precision; fp32 on
# image models is looser (TF32 convolutions, see the docstring), fp32 on the tabular MLPs is tighter.
TOLERANCE = {"32": (1e-3, 0.02), "bf16": (0.05, 0.05), "16-mixed": (0.05, 0.05)}
TOLERANCE_FP32_TABULAR = 0.01
PRECISIONS_CUDA = ("32", "bf16", "16-mixed")
PRECISIONS_CPU = ("32", "bf16")  # 16-mixed has no CPU form


@dataclass(frozen=True)
class Task:
    """What a data option poses: the compared test metric, relative (rmse) or absolute ([0, 1]) tolerance, the plots
    a run logs (learning curves + the task's own), and whether its model is an image model (TF32 convolutions)."""

    metric: str
    relative: bool
    plots: int
    images: bool


TASKS = {
    "outliers": Task("rmse", True, 2, False),
    "imbalanced": Task("pr_auc", False, 3, False),
    "breast_cancer": Task("pr_auc", False, 3, False),
    "mnist": Task("accuracy", False, 3, True),
    "fashion_mnist": Task("accuracy", False, 3, True),
    "segmentation": Task("miou", False, 2, True),
}


@dataclass
class Case:
    """One end-to-end config: ``label`` names the data setting, ``loss`` is None for the data option's own loss."""

    label: str
    data: str
    overrides: list[str]
    loss: str | None = None
    name: str = ""  # "<label>/<loss>", filled in once the config is composed

    def all_overrides(self) -> list[str]:
        return [*self.overrides, *([f"loss={self.loss}"] if self.loss else [])]


@dataclass
class Row:
    section: str
    case: str
    result: str
    bar: str
    ok: str


@dataclass
class Check:
    """The rows so far, the options, and the temporary MLflow store every run of this check goes to."""

    device: str
    cases: list[str] | None
    out: Path | None
    header: list[tuple[str, str]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    inject_failure: bool = False
    _tmp: Path | None = None

    @property
    def tmp(self) -> Path:
        """A temporary folder for the MLflow store and its artifacts, made on first use."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        return self._tmp

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.tmp / 'gpu.db'}"

    @property
    def dry(self) -> bool:
        return self.device == "cpu"

    def add(self, section: str, case: str, result: str, bar: str, ok: str) -> None:
        row = Row(section, case, result, bar, ok)
        self.rows.append(row)
        log(f"{'FAIL ' if ok == FAIL else ''}{section} | {case} | {result} | {bar} | {ok}")

    def wants(self, name: str) -> bool:
        """``--cases`` selects ``name``: equal to a filter, or starting with one followed by ``/`` or a space
        (``mnist`` selects ``mnist/ce`` and ``mnist cnn``, ``segmentation/dice`` not ``segmentation/dice_bce``)."""
        return not self.cases or any(name == c or name.startswith((c + "/", c + " ")) for c in self.cases)


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------------------ table, exit


def render_table(rows: list[Row]) -> str:
    """Markdown table of ``rows`` (pipes in cells escaped, newlines flattened)."""

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| section | case | result | bar | ok |", "|---|---|---|---|---|"]
    lines += [f"| {cell(r.section)} | {cell(r.case)} | {cell(r.result)} | {cell(r.bar)} | {cell(r.ok)} |" for r in rows]
    return "\n".join(lines)


def exit_code(rows: list[Row]) -> int:
    """1 if any row failed, else 0 (``info`` and ``skip`` rows do not fail the check)."""
    return 1 if any(r.ok == FAIL for r in rows) else 0


def report(check: Check, done: bool) -> str:
    failed = sum(r.ok == FAIL for r in check.rows)
    state = "complete" if done else "INCOMPLETE (still running or cut short)"
    lines = ["# GPU check (python -m benchmarks.gpu)", "", *[f"- {k}: {v}" for k, v in check.header], ""]
    lines += [render_table(check.rows), ""]
    lines.append(f"{len(check.rows)} rows, {failed} failed; {time.perf_counter() - check.started:.0f} s; {state}")
    return "\n".join(lines) + "\n"


def save(check: Check, done: bool) -> None:
    if check.out is not None:
        check.out.parent.mkdir(parents=True, exist_ok=True)
        check.out.write_text(report(check, done))


@contextlib.contextmanager
def guarded(check: Check, section: str, case: str = "section") -> Iterator[None]:
    """An exception inside becomes a failed row (``section``, ``case``) and is not raised further."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - any failure is a row, the check goes on
        check.add(section, case, f"{type(err).__name__}: {str(err)[:300]}", "no exception", FAIL)
        traceback.print_exc(limit=6, file=sys.stdout)
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------------ helpers


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def mnist_available() -> bool:
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    local = all((MNIST_LOCAL / f).is_file() or (MNIST_LOCAL / f"{f}.gz").is_file() for f in files)
    cached = (REPO / "data" / "MNIST" / "tensors.pt").is_file() or all((REPO / "data" / "MNIST" / "raw" / f).is_file() for f in files)
    return local or cached


def fashion_available() -> bool:
    return FASHION_LOCAL.is_dir() or (REPO / "data" / "FashionMNIST" / "tensors.pt").is_file()


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def fmt(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else str(v)


# ------------------------------------------------------------------------------------------------------ env


def env_lines(check: Check) -> list[tuple[str, str]]:
    import torch

    lines = [("date", f"{datetime.now().strftime('%Y-%m-%d %H:%M')}, host {platform.node()}, Python {platform.python_version()}")]
    if check.dry:
        lines.append(("device", f"CPU dry run ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"))
    else:
        p = torch.cuda.get_device_properties(0)
        lines.append(("card", f"{torch.cuda.get_device_name(0)}, compute capability {p.major}.{p.minor}, "
                              f"{p.total_memory / 2**30:.1f} GiB; CPU references with {torch.get_num_threads()} threads"))
    lines.append(("versions", f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"))
    lines.append((
        "TF32/cuDNN",
        f"torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
        f"torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"torch.backends.cudnn.benchmark={torch.backends.cudnn.benchmark}, "
        f"float32_matmul_precision={torch.get_float32_matmul_precision()} (torch's defaults: the harness sets none)",
    ))
    lines.append((
        "tolerances",
        "each run's test metric vs the CPU fp32 run of the same config and seed: fp32 rmse relative 1e-3, pr_auc "
        "absolute 0.01, accuracy/miou absolute 0.02 (TF32 convolutions); bf16 and 16-mixed rmse relative 0.05, "
        "pr_auc/accuracy/miou absolute 0.05",
    ))
    return lines


def section_env(check: Check) -> None:
    for key, value in check.header:
        check.add("env", key, value, "-", INFO)
    notes = [f"mnist: {'local copy ' + str(MNIST_LOCAL) if mnist_available() else 'ABSENT, skipped (no ' + str(MNIST_LOCAL) + ')'}",
             f"fashion_mnist: {'found' if fashion_available() else 'skipped (no ' + str(FASHION_LOCAL) + ')'}",
             "pets: skipped (needs a download)"]
    check.add("env", "data", "; ".join(notes), "-", INFO)


# ------------------------------------------------------------------------------------------------------ e2e


def e2e_cases(dry: bool) -> list[Case]:
    """The end-to-end matrix: full-size data with 2-3 epochs on the GPU; the smallest settings for the CPU dry run."""
    epochs = (lambda n: "trainer.epochs=1") if dry else (lambda n: f"trainer.epochs={n}")
    small_seg = ["data.n_train=64", "data.n_val=32", "data.n_test=32"] if dry else []
    settings = {
        # tabular: enough epochs for the metric to level off (cheap), so a few steps that a GradScaler skips at the
        # start (fp16 overflow of the first scaled gradients) do not move it; images: 2-3 epochs
        "outliers": ["data=outliers", epochs(10)],
        "imbalanced": ["data=imbalanced", epochs(4), *(["data.n_samples=2000"] if dry else [])],
        "breast_cancer": ["data=breast_cancer", epochs(6)],
        "segmentation": ["data=segmentation", epochs(3), *small_seg],
        "segmentation4": ["data=segmentation", "data.num_classes=4", epochs(3), *small_seg],
        "mnist": ["data=mnist", "data.download=false", epochs(2), *(["data.train_size=500"] if dry else [])],
        "fashion_mnist": ["data=fashion_mnist", "data.download=false", "data.train_size=500" if dry else "data.train_size=6000", epochs(2)],
    }
    losses = {
        "outliers": [None, "huber", "barron_adaptive"],
        "imbalanced": [None, "focal"],
        "breast_cancer": [None],
        "segmentation": [None, "dice_bce", "lovasz"],
        "segmentation4": [None, "dice_ce"],
        "mnist": [None, "categorical_focal"],
        "fashion_mnist": [None],
    }
    cases = []
    for label, overrides in settings.items():
        data = overrides[0].split("=", 1)[1]
        if data == "mnist" and not mnist_available():
            continue
        if data == "fashion_mnist" and not fashion_available():
            continue
        cases += [Case(label, data, overrides, loss) for loss in losses[label]]
    return cases


@dataclass
class Outcome:
    test: dict[str, float]
    status: str
    plots: int
    device: str
    seconds: float


def run_job(check: Check, overrides: list[str]) -> Outcome:
    """One run end to end in this process (``harness.run.execute``), plots on, into the check's store."""
    from mlflow import MlflowClient

    from harness.run import execute

    cfg = compose_cfg([*overrides, "trainer.progress=false", f"tracking.uri={check.uri}",
                       f"tracking.experiment={EXPERIMENT}", "tracking.log_plots=true"])
    started = time.perf_counter()
    result = execute(cfg)
    seconds = time.perf_counter() - started
    client = MlflowClient(tracking_uri=check.uri)
    run = client.get_run(result.run_id)
    plots = [a for a in client.list_artifacts(result.run_id, "plots") if a.path.endswith(".png")]
    return Outcome(dict(result.test), run.info.status, len(plots), run.data.params.get("device", "?"), seconds)


def create_store(check: Check) -> None:
    """The experiment with its artifacts inside the temporary folder (not ./mlruns of the working directory)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=check.uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=(check.tmp / "artifacts").as_uri())


def tolerance(task: Task, precision: str) -> tuple[str, Callable[[float, float], bool]]:
    """The bar for ``precision`` on ``task``: its text and the test ``(device_value, cpu_value) -> ok``."""
    rel, absolute = TOLERANCE[precision]
    if task.relative:
        return f"|d|/cpu <= {rel:g}", lambda a, b: abs(a - b) <= rel * abs(b)
    if precision == "32" and not task.images:
        absolute = TOLERANCE_FP32_TABULAR
    return f"|d| <= {absolute:g}", lambda a, b: abs(a - b) <= absolute


def judge(check: Check, case: Case, precision: str, out: Outcome, ref: Outcome | None) -> None:
    task = TASKS[case.data]
    bar_text, within = tolerance(task, precision)
    value = out.test.get(task.metric, float("nan"))
    problems = []
    if out.status != "FINISHED":
        problems.append(f"status {out.status}")
    bad = [k for k, v in out.test.items() if not math.isfinite(v)]
    if bad:
        problems.append(f"non-finite {bad}")
    if out.plots < task.plots:
        problems.append(f"{out.plots} plots, expected {task.plots}")
    if not out.device.startswith(check.device):
        problems.append(f"ran on {out.device}")
    if ref is None:
        problems.append("no CPU reference")
        compared = f"{task.metric} {fmt(value)} (no CPU reference)"
    else:
        cpu = ref.test.get(task.metric, float("nan"))
        compared = f"{task.metric} {check.device} {fmt(value)} / cpu {fmt(cpu)} (d {value - cpu:+.4f})"
        if not within(value, cpu):
            problems.append("outside tolerance")
    result = f"{compared}; {out.status}, {out.plots} plots, {out.seconds:.1f} s" + (f"; {', '.join(problems)}" if problems else "")
    check.add("e2e", f"{case.name} {precision}", result, f"FINISHED, plots, {bar_text}", FAIL if problems else OK)


def section_e2e(check: Check) -> None:
    create_store(check)
    precisions = PRECISIONS_CPU if check.dry else PRECISIONS_CUDA
    cases = e2e_cases(check.dry)
    if not mnist_available():
        check.add("e2e", "mnist", f"skipped: no local copy at {MNIST_LOCAL} (data=mnist needs the files offline)", "-", SKIP)
    if check.inject_failure:  # test-only: a case refused by the harness, to prove a failure gives a non-zero exit
        cases.insert(0, Case("injected-failure", "outliers", ["data=outliers", "trainer.epochs=1", "loss.delta=-1"], "huber"))
    for case in cases:
        with guarded(check, "e2e", f"{case.label}/{case.loss or 'default'}"):
            case.name = f"{case.label}/{compose_cfg(case.all_overrides()).loss.name}"
            if not check.wants(case.name) and case.label != "injected-failure":
                continue
            log(f"e2e {case.name}: cpu fp32 reference ...")
            ref = None
            with guarded(check, "e2e", f"{case.name} cpu reference"):
                ref = run_job(check, [*case.all_overrides(), "trainer.device=cpu", "trainer.precision=32"])
                log(f"  cpu: {TASKS[case.data].metric} {fmt(ref.test.get(TASKS[case.data].metric, float('nan')))} ({ref.seconds:.1f} s)")
            for precision in precisions:
                with guarded(check, "e2e", f"{case.name} {precision}"):
                    out = run_job(check, [*case.all_overrides(), f"trainer.device={check.device}", f"trainer.precision={precision}"])
                    judge(check, case, precision, out, ref)
    if not check.dry and check.wants("trainer.device=auto"):
        with guarded(check, "e2e", "trainer.device=auto"):
            out = run_job(check, ["data=outliers", "trainer.epochs=1", "trainer.device=auto"])
            ok = out.device.startswith("cuda") and out.status == "FINISHED"
            check.add("e2e", "trainer.device=auto", f"device {out.device}, {out.status}", "picks cuda", OK if ok else FAIL)


# ------------------------------------------------------------------------------------------------------ sync, speed


def fit_parts(overrides: list[str], device: str):
    """Config, data (on ``device``) and a factory of fresh ``(model, criterion)`` pairs for ``harness.train.fit``,
    built as ``benchmarks.overhead`` builds them."""
    import torch

    from harness.criterion import build_criterion
    from harness.data import build_data
    from harness.models import build_model

    cfg = compose_cfg([*overrides, "trainer.progress=false", f"trainer.device={device}"])
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.data, cfg.seed)
    counts = data.class_counts() if data.num_classes else None
    data = data.to(device)

    def fresh():
        criterion = build_criterion(cfg, data.task, data.num_classes, counts).to(torch.device(device))
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, data, criterion.num_outputs).to(device), criterion

    return cfg, data, fresh


def count_syncs(fn: Callable[[], Any], device: str) -> tuple[int, Counter]:
    """Run ``fn`` under ``torch.cuda.set_sync_debug_mode("warn")``: the number of synchronizing CUDA operations and
    where they were called from (``file:line`` of the Python frame). On CPU: runs ``fn``, counts nothing."""
    import torch

    if device != "cuda":
        fn()
        return 0, Counter()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "called a synchronizing" in str(w.message)]
    return len(syncs), Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)


def sync_cases(dry: bool) -> list[tuple[Case, str, bool]]:
    """(case, precision, held to the bar): every task's natural loss at fp32, bf16 and 16-mixed on one image task."""
    naturals = [c for c in e2e_cases(dry) if c.loss is None]
    rows = [(c, "32", True) for c in naturals]
    image = next((c for c in naturals if c.label == "mnist"), next((c for c in naturals if c.label == "segmentation"), None))
    if image is not None and not dry:
        rows += [(image, "bf16", True), (image, "16-mixed", False)]
    return rows


def section_sync(check: Check) -> None:
    import torch

    from harness.train import fit

    if not check.dry:
        control, _ = count_syncs(lambda: torch.ones(1, device="cuda").item(), "cuda")
        check.add("sync", "positive control: .item()", f"{control} sync(s) counted", ">= 1 (the counting works)", OK if control >= 1 else FAIL)
        if control < 1:
            return
    for case, precision, held in sync_cases(check.dry):
        with guarded(check, "sync", f"{case.label} {precision}"):
            name = f"{case.label}/{compose_cfg(case.all_overrides()).loss.name}"
            if not check.wants(name):
                continue
            label = f"{name} {precision}"
            cfg, data, fresh = fit_parts([*case.all_overrides(), "trainer.epochs=1", f"trainer.precision={precision}"], check.device)
            big = int(cfg.trainer.batch_size)
            small = max(1, big // 4)
            n = len(data.train)

            def one_epoch(batch_size: int) -> Callable[[], Any]:
                run_cfg = compose_cfg([*case.all_overrides(), "trainer.epochs=1", f"trainer.precision={precision}",
                                       "trainer.progress=false", f"trainer.device={check.device}", f"trainer.batch_size={batch_size}"])

                def go() -> None:  # fit ends each epoch reading the step losses and metrics: no sync needed after it
                    model, criterion = fresh()
                    fit(model, criterion, data, run_cfg)
                return go

            if not check.dry:
                for b in (big, small):  # warm-up: kernels, cuDNN handles, allocator, lazy initialisation
                    one_epoch(b)()
            w_big, where_big = count_syncs(one_epoch(big), check.device)
            w_small, where_small = count_syncs(one_epoch(small), check.device)
            s_big, s_small = math.ceil(n / big), math.ceil(n / small)
            grew = {k: v - where_big.get(k, 0) for k, v in where_small.items() if v > where_big.get(k, 0)}
            sources = ", ".join(f"{k} x{v}" for k, v in sorted(where_big.items())) or "-"
            result = (f"{w_big} syncs in the epoch at {s_big} steps (batch {big}), {w_small} at {s_small} steps (batch {small}); "
                      f"per-epoch ones from: {sources}")
            if grew:
                result += "; per-step: " + ", ".join(f"{k} +{v}" for k, v in sorted(grew.items()))
            if check.dry:
                result += " (CPU dry run: sync debug mode needs CUDA, nothing counted)"
            ok = w_small <= w_big
            bar = "count does not grow with steps" if held else "report (GradScaler.step reads found_inf each step)"
            check.add("sync", label, result, bar, (OK if ok else FAIL) if held else INFO)


SPEED_CASES = [
    # name, overrides, gpu epochs, cpu epochs, held to "GPU faster"
    ("mnist cnn", ["data=mnist", "data.download=false"], 3, 2, True),
    ("unet 64px", ["data=segmentation", "data.image_size=64"], 3, 2, True),
    ("unet 128px", ["data=segmentation", "data.image_size=128"], 3, 2, True),
    ("outliers mlp", ["data=outliers", "model=mlp"], 10, 5, False),
]


def epoch_seconds(overrides: list[str], device: str, epochs: int) -> tuple[float, int, int]:
    """Per-epoch wall time of ``fit`` (each epoch ends with a host sync: the step losses and validation metrics are
    read): the median of the epochs after the first (which pays one-time costs: lazy initialisation, the first
    optimizer step, kernel selection; 2.9 s against 0.1 s for the outliers MLP on CPU); and steps per epoch, batch."""
    from harness.train import fit

    cfg, data, fresh = fit_parts([*overrides, f"trainer.epochs={epochs}"], device)
    model, criterion = fresh()
    sync(device)
    stamps = [time.perf_counter()]
    fit(model, criterion, data, cfg, on_epoch=lambda epoch, metrics: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    per_epoch = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return per_epoch, math.ceil(len(data.train) / cfg.trainer.batch_size), int(cfg.trainer.batch_size)


def section_speed(check: Check) -> None:
    import torch

    settings = (f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}; "
                f"cudnn.benchmark {torch.backends.cudnn.benchmark}; CPU {torch.get_num_threads()} threads")
    for name, overrides, gpu_epochs, cpu_epochs, held in SPEED_CASES:
        if "data=mnist" in overrides and not mnist_available():
            check.add("speed", name, f"skipped: no MNIST at {MNIST_LOCAL}", "-", SKIP)
            continue
        if not check.wants(name):
            continue
        with guarded(check, "speed", name):
            log(f"speed {name} ...")
            if check.dry:
                cpu, steps, batch = epoch_seconds(overrides, "cpu", 2)
                check.add("speed", name, f"cpu {cpu:.3f} s/epoch ({steps} steps of {batch}); {settings}", "report", INFO)
                continue
            gpu, steps, batch = epoch_seconds(overrides, "cuda", gpu_epochs)
            cpu, _, _ = epoch_seconds(overrides, "cpu", cpu_epochs)
            result = (f"gpu {gpu:.3f} s/epoch, cpu {cpu:.3f} s/epoch, speed-up {cpu / gpu:.1f}x "
                      f"({steps} steps of {batch} + validation; {settings})")
            check.add("speed", name, result, "gpu faster" if held else "report", (OK if gpu < cpu else FAIL) if held else INFO)


VECTORIZE_MEMBERS, VECTORIZE_ALONE = 16, 4


def vectorize_cases(dry: bool) -> dict[str, list[str]]:
    """``benchmarks.vectorize``'s cases (the MNIST one only with a local copy); the dry run: the two tabular ones
    at one epoch."""
    from benchmarks.vectorize import CASES

    if dry:
        return {name: [*CASES[name], "trainer.epochs=1"] for name in ("outliers-linear", "imbalanced-mlp")}
    return {name: overrides for name, overrides in CASES.items() if name != "mnist-cnn" or mnist_available()}


def train_members(cfgs: list, stacked: bool) -> tuple[list[dict[str, Any]], float]:
    """Build each config as ``harness.run.prepare`` does and train them one by one (``fit``) or stacked
    (``fit_stacked``); each run's history, test metrics and status, and the training seconds."""
    from benchmarks.vectorize import best_of, quiet_prepare
    from harness.evaluation import evaluate
    from harness.train import fit
    from harness.vectorize import Member, fit_stacked

    device = str(cfgs[0].trainer.device)
    built = [quiet_prepare(c) for c in cfgs]
    members = [Member(p.model, p.criterion, p.data, int(c.seed), best=best_of(p)) for p, c in zip(built, cfgs)]
    sync(device)
    start = time.perf_counter()
    if stacked:
        fit_stacked(members, cfgs[0])
    else:
        for m, c in zip(members, cfgs):
            m.history = fit(m.model, m.criterion, m.data, c, best=m.best)
    sync(device)
    seconds = time.perf_counter() - start
    runs = []
    for m, p in zip(members, built):
        test = p.task.test_metrics(evaluate(p.model, p.data.test.x, p.data.test.y), p.host, p.model) if m.error is None else {}
        runs.append({"history": m.history, "test": test, "status": "FINISHED" if m.error is None else f"FAILED ({m.error})"})
    return runs, seconds


def largest_difference(alone: list[dict[str, Any]], stacked: list[dict[str, Any]]) -> float:
    """The largest relative difference ``|a - s| / max(|a|, 1e-12)`` over every per-epoch value of the paired runs;
    infinite where one is NaN and the other not, or their histories differ in length."""
    worst = 0.0
    for a, s in zip(alone, stacked):
        if len(a["history"]) != len(s["history"]):
            return math.inf
        for row_a, row_s in zip(a["history"], s["history"]):
            for key, value in row_a.items():
                other = row_s.get(key, math.nan)
                if math.isnan(value) and math.isnan(other):
                    continue
                gap = abs(value - other) / max(abs(value), 1e-12)
                worst = math.inf if math.isnan(gap) else max(worst, gap)  # max() would skip a NaN
    return worst


def section_vectorize(check: Check) -> None:
    from hydra import compose, initialize_config_dir

    members = 2 if check.dry else VECTORIZE_MEMBERS
    alone_count = 2 if check.dry else VECTORIZE_ALONE
    for name, overrides in vectorize_cases(check.dry).items():
        if not check.wants(name):
            continue
        with guarded(check, "vectorize", name):
            log(f"vectorize {name} ...")
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfgs = [compose("config", overrides=[*overrides, "trainer.progress=false", "tracking.log_plots=false",
                                                     f"trainer.device={check.device}", f"seed={s}"]) for s in range(members)]
            data = next(d for d in TASKS if f"data={d}" in overrides)
            task = TASKS[data]
            train_members(cfgs[:1], stacked=False)  # warm-up: kernels, cuDNN handles, allocator, lazy initialisation
            alone, alone_s = train_members(cfgs[:alone_count], stacked=False)
            stacked, stacked_s = train_members(cfgs, stacked=True)
            bar_text, within = tolerance(task, "32")
            problems = [f"member {i}: {r['status']}" for i, r in enumerate(stacked) if r["status"] != "FINISHED"]
            pairs = []
            for i, (a, s) in enumerate(zip(alone, stacked)):
                mine, theirs = s["test"].get(task.metric, float("nan")), a["test"].get(task.metric, float("nan"))
                pairs.append(f"{fmt(mine)}/{fmt(theirs)}")
                if not within(mine, theirs):
                    problems.append(f"member {i} outside tolerance")
            speedup = (members / stacked_s) / (alone_count / alone_s)
            result = (f"{task.metric} stacked/alone {', '.join(pairs)}; largest per-epoch relative difference "
                      f"{largest_difference(alone, stacked):.1e}; {members / stacked_s:.2f} runs/s stacked ({members}) vs "
                      f"{alone_count / alone_s:.2f} one by one: {speedup:.1f}x" + (f"; {', '.join(problems)}" if problems else ""))
            held = "" if check.dry else "; stacked faster"
            ok = not problems and (check.dry or speedup > 1)
            check.add("vectorize", name, result, f"FINISHED, test {bar_text}{held}", OK if ok else FAIL)


# ------------------------------------------------------------------------------------------------------ subprocesses


def run_module(args: list[str], timeout: int) -> tuple[int, str]:
    """``python <args>`` from the repository root; exit status and stdout + stderr."""
    log(f"$ python {' '.join(args)}")
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = proc.stdout + proc.stderr
    tail = "\n".join(output.strip().splitlines()[-25:])
    log(tail)
    return proc.returncode, output


def pytest_counts(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line (``3 passed, 1 skipped in 2.0s``)."""
    outcome = r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)"
    lines = [line for line in output.strip().splitlines() if re.search(outcome, line)]
    if not lines:
        return {}
    return {("error" if k.startswith("error") else k): int(n) for n, k in re.findall(outcome, lines[-1])}


def cuda_test_files() -> list[str]:
    """The test modules that hold ``cuda``-marked tests: collecting only these, the check needs none of the other
    modules' optional packages (Playwright, Optuna, PostgreSQL's driver) on the GPU machine."""
    return sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").glob("test_*.py") if "pytest.mark.cuda" in f.read_text())


def section_pytest(check: Check) -> None:
    if not cuda_test_files():  # pytest given no paths would collect the whole tests/ folder
        check.add("pytest", "pytest -m cuda tests/", "no test module holds a cuda-marked test", "some exist", FAIL)
        return
    runs = [
        # -o addopts=: in one process, without the suite's -n (pytest-xdist, which the GPU image may lack)
        ("pytest -m cuda tests/", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "cuda",
                                   *cuda_test_files()]),
    ]
    for name, args in runs:
        with guarded(check, "pytest", name):
            rc, output = run_module(args, timeout=240)
            counts = pytest_counts(output)
            passed, skipped = counts.get("passed", 0), counts.get("skipped", 0)
            failed = counts.get("failed", 0) + counts.get("error", 0)
            result = f"exit {rc}: {passed} passed, {failed} failed, {skipped} skipped"
            if skipped:
                reasons = sorted({m.strip() for m in re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)})
                result += f" ({'; '.join(reasons)[:200]})"
            if failed:
                names = re.findall(r"^FAILED (\S+)", output, flags=re.M)
                result += f"; failed: {', '.join(names)[:400]}"
            ok = rc == 0 and passed > 0 and failed == 0
            check.add("pytest", name, result, "exit 0, none failed, > 0 passed", OK if ok else FAIL)


def parse_overhead(output: str) -> tuple[list[tuple[str, float, float]], float | None]:
    """``benchmarks.overhead``'s per-case lines ``(case, harness/bare, without validation)`` and its final ratio."""
    cases = [(c, float(r), float(n)) for c, r, n in re.findall(
        r"^(\S+): harness/bare \(both validating\) median ([\d.]+).*?without validation ([\d.]+)", output, flags=re.M)]
    found = re.search(r"^harness/bare ratio: ([\d.]+)", output, flags=re.M)
    return cases, float(found.group(1)) if found else None


def section_overhead(check: Check) -> None:
    if not mnist_available():
        check.add("overhead", "benchmarks.overhead", f"skipped: its mnist-cnn case needs MNIST at {MNIST_LOCAL}", "-", SKIP)
        return
    rc, output = run_module(["-m", "benchmarks.overhead", "--device", check.device, "--repeats", "3"], timeout=180)
    cases, ratio = parse_overhead(output)
    for case, like, novalid in cases:
        check.add("overhead", case, f"harness/bare {like:.3f} (without validation {novalid:.3f})", "report (the bar is on the median)", INFO)
    if rc != 0 or ratio is None:
        check.add("overhead", "harness/bare ratio", f"exit {rc}, no ratio printed", "<= 1.05", FAIL)
        return
    check.add("overhead", "harness/bare ratio", f"{ratio:.3f} (median over repeats and cases)", "<= 1.05", OK if ratio <= 1.05 else FAIL)


def parse_losses(output: str) -> list[tuple[str, str, float, str]]:
    """``benchmarks.losses``'s table rows as ``(loss, same value, ours/ref, IQR)``; the reference column may hold
    pipes (``|softmax - one_hot|``), so the cells are read from the right."""
    rows = []
    for line in output.splitlines():
        if not line.startswith("| ") or line.startswith("| loss |"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        with contextlib.suppress(ValueError, IndexError):
            rows.append((cells[0], cells[-5], float(cells[-2]), cells[-1]))
    return rows


def section_losses(check: Check) -> None:
    try:
        from benchmarks.losses import INFORMATIONAL
    except Exception:  # noqa: BLE001 - the table still parses without it
        INFORMATIONAL = {"msle, unclipped reference"}
    rc, output = run_module(["-m", "benchmarks.losses", "--device", check.device, "--repeats", "3", "--calls", "5"], timeout=180)
    rows = parse_losses(output)
    held = [r for r in rows if r[0] not in INFORMATIONAL]
    if rc != 0 or not held:
        check.add("losses", "benchmarks.losses", f"exit {rc}, {len(rows)} rows parsed", "runs", FAIL)
        return
    over = [r for r in held if r[2] > 1.2]
    worst = max(held, key=lambda r: r[2])
    check.add("losses", "all rows", f"{len(rows)} rows, worst {worst[0]} {worst[2]:.2f}; above 1.2: "
              f"{', '.join(f'{r[0]} {r[2]:.2f}' for r in over) or 'none'}", "ours/ref <= 1.2 on every row", FAIL if over else OK)
    for name, _, ratio, iqr in sorted(over, key=lambda r: -r[2]):
        check.add("losses", name, f"ours/ref {ratio:.2f} (IQR {iqr})", "<= 1.2", FAIL)
    for name, same, _, _ in rows:
        if same != "yes":
            check.add("losses", name, f"same value: {same} (ours and the reference disagree on {check.device})", "same value", FAIL)
    for name, _, ratio, iqr in rows:
        if name in INFORMATIONAL:
            check.add("losses", name, f"ours/ref {ratio:.2f} (IQR {iqr})", "report (not held)", INFO)


# ------------------------------------------------------------------------------------------------------ main


SECTION_FUNCS: dict[str, Callable[[Check], None]] = {
    "env": section_env, "e2e": section_e2e, "sync": section_sync, "speed": section_speed, "vectorize": section_vectorize,
    "pytest": section_pytest, "overhead": section_overhead, "losses": section_losses,
}


def run_sections(check: Check, sections: list[str], budget: float = 0) -> None:
    """Each section guarded, the report rewritten after each; a section is not started once ``budget`` seconds
    (0: no limit) have been spent (a failed row says so: the check is meant to fit in 5 minutes)."""
    for name in sections:
        t0 = time.perf_counter()
        spent = t0 - check.started
        if budget and spent > budget:
            check.add(name, "section", f"not started: {spent:.0f} s spent of the {budget:.0f} s budget "
                      f"(run it alone: python -m benchmarks.gpu --only {name})", "fits the budget", FAIL)
            continue
        log(f"\n=== {name} ({spent:.0f} s so far) ===")
        with guarded(check, name):
            SECTION_FUNCS[name](check)
        if name != "env" and check.device == "cuda":
            with contextlib.suppress(Exception):
                import torch

                torch.cuda.empty_cache()
        log(f"=== {name} done in {time.perf_counter() - t0:.1f} s ===")
        save(check, done=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (the check); cpu: a dry run of the machinery with the smallest settings")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION", help=f"sections to run, of {list(SECTIONS)}")
    parser.add_argument("--cases", nargs="+", metavar="NAME",
                        help="e2e/sync/speed cases named so, or whose name starts with NAME/ or NAME and a space (outliers/mse, mnist)")
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument("--budget", type=float, default=270,
                        help="seconds after which no further section starts (default 270; 0: no limit)")
    parser.add_argument("--keep-store", action="store_true", help="keep the temporary MLflow store (runs, plots)")
    parser.add_argument("--inject-failure", action="store_true", help=argparse.SUPPRESS)  # tests: a case that must fail
    args = parser.parse_args(argv)
    if args.out is not None:
        args.out = args.out.resolve()
    os.chdir(REPO)  # data.root=data, the benchmarks and the tests are relative to the repository root

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        message = (f"benchmarks.gpu needs a CUDA device and found none (torch {torch.__version__}, "
                   f"torch.cuda.is_available() is False); nothing checked. On CPU: --device cpu runs a dry run of the machinery.")
        log(message)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(message + "\n")
        return 0
    warnings.filterwarnings("ignore", category=FutureWarning)
    check = Check(args.device, args.cases, args.out, inject_failure=args.inject_failure)
    sections = list(args.only) if args.only else list(CPU_SECTIONS if check.dry else SECTIONS)
    sections = [s for s in SECTIONS if s in sections]
    if "env" not in sections:
        sections.insert(0, "env")
    check.header = env_lines(check)
    for key, value in check.header:
        log(f"{key}: {value}")
    log(f"sections: {sections}; store {check.uri}")
    try:
        run_sections(check, sections, args.budget)
    finally:
        if not args.keep_store:
            shutil.rmtree(check.tmp, ignore_errors=True)
    text = report(check, done=True)
    log("\n" + text)
    save(check, done=True)
    code = exit_code(check.rows)
    log(f"exit {code}: {'all rows ok' if code == 0 else 'some rows failed (ok = NO)'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
