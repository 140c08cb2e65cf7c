"""Re-run a logged run from its stored config and say whether its test metrics match.

    python -m harness.reproduce RUN_ID [--tracking-uri URI] [--tolerance 0]

Downloads the run's ``config.yaml`` (the resolved config), runs it again into the same store (tagged
``reproduces=RUN_ID``), and compares every ``test/`` metric. On CPU the same config and seed give identical
numbers, so the default tolerance is 0 (exact); across devices or library versions pass a relative tolerance. A run
trained in a stack (``trainer.vectorize``, tag ``vectorize.members``) is re-run alone, which equals it to float rounding:
its default tolerance is 1e-5 (``harness/vectorize.py``).
Exit status 0 when all match, 1 otherwise. Warns when the code (git commit) or library versions differ.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

STACKED_TOLERANCE = 1e-5  # tests/test_vectorize.py holds stacked runs to it


def default_tolerance(tags: dict[str, str], params: dict[str, str]) -> tuple[float, str]:
    """The default relative tolerance for re-running a run with these tags and params, and a note saying why
    (empty for a plain CPU run: exact). A run trained on CUDA gets the same default, with a note that GPU kernels do
    not promise bitwise-equal results (cuDNN's algorithm choice, atomics in backward passes; on an H200 stacked
    members' test metrics differed from their runs alone by up to 9e-4 relative in RMSE and 0.0055 in accuracy,
    benchmarks/README.md), so a tolerance is the user's."""
    stacked = tags.get("vectorize.members")
    tolerance = STACKED_TOLERANCE if stacked else 0.0
    notes = []
    if stacked:
        notes.append(f"was trained in a stack of {stacked} runs; it is re-run alone, which equals it to float rounding on "
                     f"a CPU: relative tolerance {tolerance:g}")
    if params.get("device", "").startswith("cuda"):
        notes.append("was trained on CUDA, whose kernels do not promise bitwise-equal results from run to run (nor "
                     "stacked against alone): pass --tolerance (the GPU check holds fp32 runs to 1e-3 relative on "
                     "RMSE, 0.01 on PR-AUC and 0.02 on accuracy and mIoU)")
    return tolerance, "; it ".join(notes)


def same_cpu_setting(cfg: DictConfig, threads: str | None) -> str:
    """Set ``cfg`` to re-run a CPU run on the CPU (not on a GPU that ``trainer.device=auto`` would find) and on the
    run's thread count (tag ``torch.threads``), unless its config names one: CPU kernels split their sums by thread.
    Returns a note when that count differs from this machine's default or was not recorded, else an empty string."""
    import torch

    cfg.trainer.device = "cpu"
    if cfg.trainer.get("threads"):
        return ""
    if threads is None or not threads.isdigit():
        return (f"did not record its CPU thread count (runs before torch.threads was tagged); it is re-run on this "
                f"machine's {torch.get_num_threads()}, and its last digits can differ on another count")
    cfg.trainer.threads = int(threads)
    if int(threads) == torch.get_num_threads():
        return ""
    return f"ran on {threads} CPU threads (this machine's default: {torch.get_num_threads()}); it is re-run on {threads}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="relative tolerance per metric (default 0: exact; 1e-5 for a run trained in a stack)")
    args = parser.parse_args(argv)

    from .data import DataError
    from .errors import ConfigError
    from .run import execute
    from .tracking import TrackingError
    from .tracking import library_versions, open_store, resolve_uri, source_version

    uri = resolve_uri(args.tracking_uri)
    client = open_store(uri)
    original = client.get_run(args.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = OmegaConf.load(Path(client.download_artifacts(args.run_id, "config.yaml", tmp)))
    cfg.tracking.uri = uri
    cfg.tracking.run_name = f"{original.info.run_name}-repro"
    cfg.trainer.progress = False

    on_cpu = original.data.params.get("device") == "cpu"
    cpu_note = same_cpu_setting(cfg, original.data.tags.get("torch.threads")) if on_cpu else ""
    default, tolerance_note = default_tolerance(original.data.tags, original.data.params)
    if args.tolerance is None:
        args.tolerance = default
    for note in (cpu_note, tolerance_note):
        if note:
            print(f"note: {args.run_id} {note}", file=sys.stderr)
    for key, now in {**source_version(), **library_versions()}.items():
        then = original.data.tags.get(key)
        if then is not None and then != now:
            print(f"warning: {key} was {then}, is {now}", file=sys.stderr)

    try:
        result = execute(cfg)
    except (ConfigError, DataError, TrackingError) as err:  # e.g. a user's loss no longer importable, a moved file
        print(f"error: cannot re-run {args.run_id}: {err}", file=sys.stderr)
        return 2
    client.set_tag(result.run_id, "reproduces", args.run_id)
    before = {k[len("test/"):]: v for k, v in original.data.metrics.items() if k.startswith("test/")}
    rows, all_match = [], True
    for name, old in sorted(before.items()):
        new = result.test.get(name, math.nan)
        match = new == old or (args.tolerance > 0 and math.isclose(new, old, rel_tol=args.tolerance))
        all_match &= match
        rows.append(f"  test/{name:<20} {old:<12.6g} {new:<12.6g} {'match' if match else 'DIFFERS'}")
    print(f"reproduced {original.info.run_name} ({args.run_id}) as run {result.run_id}")
    print(f"  {'metric':<25} {'logged':<12} {'now':<12}")
    print("\n".join(rows))
    print("all test metrics match" if all_match else "some test metrics differ")
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
