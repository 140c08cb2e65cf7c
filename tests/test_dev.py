"""``./dev``'s first set-up says what it is doing while pip works, and what to run next; later calls are silent.
Checked on a tiny project (the real install is PyTorch-sized), with the real script, venv and pip."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

from conftest import REPO

PYPROJECT = textwrap.dedent("""
    [build-system]
    requires = ["setuptools>=64"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "tiny-dev-check"
    version = "0.0.1"

    [project.optional-dependencies]
    test = []

    [tool.setuptools]
    py-modules = ["tiny"]
""")


def test_first_setup_reports_each_phase_and_the_next_command_then_stays_quiet(tmp_path):
    shutil.copy(REPO / "dev", tmp_path / "dev")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "tiny.py").write_text("ANSWER = 42\n")
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}, "HARNESS_VENV": str(tmp_path / "venv"), "DEV_HEARTBEAT": "0"}

    first = subprocess.run(["./dev"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 2, first.stderr  # no command: set up, then the usage line
    err = first.stderr
    for phase in ("setting up", f"full log: {tmp_path / 'venv' / 'install.log'}", "creating the virtual environment",
                  "upgrading pip", "installing the project and its dependencies", "still installing", "ready ("):
        assert phase in err, err
    assert "next: ./dev python -m harness loss=huber data=outliers" in err and "./dev pytest" in err
    assert err.index("creating") < err.index("upgrading pip") < err.index("installing the project") < err.index("ready (")

    again = subprocess.run(["./dev", "python", "-c", "import tiny; print(tiny.ANSWER)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == "42" and "[dev]" not in again.stderr
