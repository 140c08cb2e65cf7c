"""What a new user meets first: a mistyped option or key is one line with the closest names (exit 2, also inside a
sweep), a run leaves only the store and Hydra's outputs where it started, and progress written to a log file is one
line per epoch."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, harness_cli

FAST = ["trainer.epochs=3", "tracking.log_plots=false"]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return harness_cli(cwd, *args, timeout=180)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["loss=hubber"], "loss=hubber is not an option of group 'loss'; did you mean 'huber'? (all options: python -m harness --help, or python -c 'import losses; print(losses.available())')"),
        (["loss=nosuchloss"], "loss=nosuchloss is not an option of group 'loss'; (all options:"),
        (["data=mnst"], "data=mnst is not an option of group 'data'; did you mean 'mnist'?"),
        (["model=cnnn"], "model=cnnn is not an option of group 'model'; did you mean 'cnn'?"),
        (["optim=adamm"], "optim=adamm is not an option of group 'optim'; did you mean 'adam'?"),
        (["trainer.epoch=5"], "trainer.epoch is not a key of the config; did you mean 'trainer.epochs'? (add a new key with +trainer.epoch=..."),
        (["data=mnist", "data.labl_noise=0.3"], "data.labl_noise is not a key of the config; did you mean 'data.label_noise'?"),
        (["loss.delta=["], "cannot parse the override 'loss.delta=['"),
        (["-m", "trainer.epoch=5", "seed=0,1"], "trainer.epoch is not a key of the config; did you mean 'trainer.epochs'?"),
    ],
)
def test_a_mistyped_option_or_key_is_one_line_with_the_closest_name(tmp_path, args, message):
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[len('error: '):]}"]
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_mistyped_option_inside_a_sweep_stops_it_before_any_job(tmp_path):
    proc = cli(tmp_path, "-m", "loss=mse,hubber", "seed=0,1", *FAST)
    assert proc.returncode == 2
    assert "error: 2 of 4 sweep jobs cannot run; nothing was started" in proc.stderr
    assert proc.stderr.count("error: loss=hubber is not an option of group 'loss'; did you mean 'huber'?") == 2
    assert not (tmp_path / "mlflow.db").exists()


def test_jobs_differing_only_in_seed_are_validated_once_but_each_seed_is_checked(tmp_path):
    from harness.callbacks import seedless

    assert seedless(["loss=mse", "seed=3"]) == (("loss=mse",), 3)
    assert seedless(["loss=mse"]) == (("loss=mse",), None)
    proc = cli(tmp_path, "-m", "loss=mse,huber", "seed=0,-2,1", *FAST)
    assert proc.returncode == 2
    assert "error: 2 of 6 sweep jobs cannot run; nothing was started" in proc.stderr
    assert proc.stderr.count("error: seed=-2 is not allowed: seed must be an integer >= 0") == 2
    assert not (tmp_path / "mlflow.db").exists()


def test_a_run_leaves_only_the_store_and_hydras_outputs(tmp_path):
    proc = cli(tmp_path, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mlflow.db.lock", "mlflow.db", "mlruns", "outputs"]
    ignored = subprocess.run(["git", "check-ignore", ".mlflow.db.lock", "mlflow.db"], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == [".mlflow.db.lock", "mlflow.db"]  # hidden by .gitignore when a run starts in the checkout


def test_progress_to_a_log_file_is_one_line_per_epoch(tmp_path):
    with open(tmp_path / "job.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "harness", *FAST], cwd=tmp_path, stderr=log, stdout=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, timeout=180)
    assert proc.returncode == 0
    text = (tmp_path / "job.log").read_text()
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all("train/loss" in line and "val/rmse" in line and line.endswith("s") for line in epochs)
    assert "\r" not in text and "step/s" not in text  # no progress bar redraws


def test_progress_on_a_terminal_is_the_bar(tmp_path):
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "harness", *FAST], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=child,
                            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    os.close(child)
    chunks, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        if not select.select([main], [], [], 1.0)[0]:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=180) == 0
    os.close(main)
    text = b"".join(chunks).decode(errors="replace")
    assert "step/s" in text and "\r" in text and "epoch 1/3  train/loss" not in text


def test_progress_can_be_forced_either_way(tmp_path):
    on = cli(tmp_path, *FAST, "trainer.progress=true")
    off = cli(tmp_path, *FAST, "trainer.progress=false")
    assert on.returncode == off.returncode == 0
    assert "step/s" in on.stderr and "epoch 1/3" not in on.stderr
    assert "step/s" not in off.stderr and "epoch 1/3" not in off.stderr
