"""What a person sees in the MLflow UI after a sweep, checked in a real browser.

A small real sweep fills a store; ``mlflow ui`` serves it on loopback; Debian's Chromium, driven by Playwright's
Python package, opens the experiment (the sweep's parent run with its children nested), the parent run (the
comparison table as its description, its plots as artifacts) and a child run (its params, metrics and plots).
Screenshots go to a temporary folder, and also to ``$HARNESS_SCREENSHOTS`` when set; the parent run's page is
``parent-run.png`` (the README's ``docs/dashboard-parent-run.png``). Skips, naming the package, without Chromium
(``apt-get install chromium``) or without Playwright (``pip install playwright``; its own browser download is not
used).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
SHOTS_ENV = "HARNESS_SCREENSHOTS"
SWEEP = ["loss=mse,mae", "seed=0,1,2", "data=outliers", "trainer.epochs=2", "trainer.progress=false",
         "tracking.log_plots=true"]
WAIT_MS = 20_000


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "needs Debian's Chromium at /usr/bin/chromium: apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright's Python package: pip install playwright"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real sweep (2 losses x 3 seeds, plots on) into ``<tmp>/mlflow.db``: its parent run and children."""
    folder = tmp_path_factory.mktemp("dashboard")
    proc = subprocess.run([sys.executable, "-m", "harness", "-m", *SWEEP], cwd=folder, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("loss-harness")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("sweep") != "parent"}
    assert len(children) == 6
    return {"folder": folder, "store": store, "experiment": experiment.experiment_id, "parent": parent,
            "children": children}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(sweep):
    """``mlflow ui`` over the sweep's store on a free loopback port; its base URL once it answers ``/health``."""
    port = _free_port()
    log = open(sweep["folder"] / "mlflow-ui.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", sweep["store"], "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=sweep["folder"], env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow ui exited with {server.returncode}:\n" + (sweep["folder"] / "mlflow-ui.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow ui did not answer in 90 s:\n" + (sweep["folder"] / "mlflow-ui.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    """Where screenshots go: a temporary folder, and ``$HARNESS_SCREENSHOTS`` when set."""
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get(SHOTS_ENV):
        folders.append(Path(os.environ[SHOTS_ENV]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            context.set_default_timeout(WAIT_MS)
            yield context.new_page()
        finally:
            browser.close()


def shot(page, shots: list[Path], name: str) -> Path:
    path = shots[0] / f"{name}.png"
    page.screenshot(path=str(path))
    for folder in shots[1:]:
        shutil.copy(path, folder / path.name)
    return path


def see(page, shots: list[Path], locator, what: str):
    """Wait until ``locator`` is visible; else save a screenshot and fail naming what is missing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.first.wait_for(state="visible", timeout=WAIT_MS)
    except PlaywrightTimeout:
        path = shot(page, shots, "missing-" + re.sub(r"\W+", "-", what).strip("-")[:60])
        pytest.fail(f"the MLflow UI does not show {what} (screenshot: {path})")
    return locator.first


def open_page(page, shots: list[Path], ui: str, path: str, ready, what: str):
    """Open a UI route in the classic-ML view (MLflow 3 starts in its GenAI view), wait for ``ready`` (a locator
    of ``page``), and close the assistant panel if it opened. Returns the first match of ``ready``."""
    page.goto(f"{ui}/#/{path}?workflowType=machine_learning")
    found = see(page, shots, ready, what)
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():
        close.first.click()
    return found


def see_image(page, shots: list[Path], path: str) -> None:
    """The artifact viewer shows the PNG artifact ``path``, decoded (not a broken image)."""
    name = path.rsplit("/", 1)[-1]
    see(page, shots, page.get_by_text(name, exact=True), f"the artifact {path}").click()
    image = see(page, shots, page.locator(f'img[alt="{path}"]'), f"the image {path}")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())


def test_the_experiment_shows_the_sweep_with_its_children_nested(sweep, ui, page, shots):
    parent = sweep["parent"].info.run_name
    row = open_page(page, shots, ui, f"experiments/{sweep['experiment']}/runs",
                    page.locator("[role=row]", has_text=parent), f"the parent run {parent} in the runs list")
    assert not page.get_by_text("mae-outliers-s0", exact=True).first.is_visible(), "children should sit under the parent"
    row.locator("button").first.click()  # the expander next to the parent's name
    for name in sweep["children"]:
        see(page, shots, page.get_by_text(name, exact=True), f"the child run {name} under {parent}")
    shot(page, shots, "experiment-runs")


def test_the_parent_run_page_shows_the_comparison_and_its_plots(sweep, ui, page, shots):
    parent = sweep["parent"]
    open_page(page, shots, ui, f"experiments/{sweep['experiment']}/runs/{parent.info.run_id}",
              page.get_by_text(parent.info.run_name, exact=True), "the parent run's name")
    expand = page.get_by_role("button", name="Expand description")
    if expand.count():
        expand.first.click()
    table = see(page, shots, page.locator("table", has_text="p (Wilcoxon)"), "the comparison table in the description")
    for text in ("test/rmse (mean ± std)", "seeds", "failed", "diff vs", "better on", "verdict"):
        see(page, shots, table.locator("th", has_text=text), f"the column '{text}' of the comparison table")
    for loss in ("mse", "mae"):
        see(page, shots, table.locator("td", has_text=re.compile(f"^{loss}$")), f"the row of {loss}")
    see(page, shots, page.get_by_text("Underpowered", exact=False), "the underpowered warning (3 seeds)")
    see(page, shots, page.get_by_text("t-based", exact=False), "the legend naming the interval's method")
    see(page, shots, page.get_by_role("link", name="mae-outliers-s0", exact=True), "the parent's list of child runs")
    page.get_by_role("heading", name="Description").first.scroll_into_view_if_needed()
    shot(page, shots, "parent-run")
    see(page, shots, page.get_by_text("arm/mae/test_rmse_mean", exact=True), "the per-arm metrics of the parent run")

    see(page, shots, page.get_by_role("tab", name="Artifacts"), "the Artifacts tab").click()
    see(page, shots, page.get_by_text("comparison", exact=True), "the comparison/ artifacts folder").click()
    for name in ("comparison.md", "comparison.csv", "bars.png", "curves.png", "paired.png"):
        see(page, shots, page.get_by_text(name, exact=True), f"the artifact comparison/{name}")
    see_image(page, shots, "comparison/bars.png")
    shot(page, shots, "parent-run-bars")
    see_image(page, shots, "comparison/paired.png")
    see_image(page, shots, "comparison/curves.png")


def test_a_child_run_page_shows_its_params_metrics_and_plots(sweep, ui, page, shots):
    child = sweep["children"]["mae-outliers-s0"]
    open_page(page, shots, ui, f"experiments/{sweep['experiment']}/runs/{child.info.run_id}",
              page.get_by_text("mae-outliers-s0", exact=True), "the child run's name")
    see(page, shots, page.get_by_text(sweep["parent"].info.run_name, exact=True), "the link to its parent run")
    rmse = child.data.metrics["test/rmse"]
    see(page, shots, page.get_by_text("test/rmse", exact=True), "the metric test/rmse")
    see(page, shots, page.get_by_text(repr(rmse), exact=True), f"the value of test/rmse ({rmse})")
    see(page, shots, page.get_by_placeholder("Search parameters"), "the params table").fill("data.outlier_fraction")
    see(page, shots, page.get_by_text("data.outlier_fraction", exact=True), "the param data.outlier_fraction")
    see(page, shots, page.get_by_text("0.1", exact=True), "the value of data.outlier_fraction (0.1)")
    shot(page, shots, "child-run")

    see(page, shots, page.get_by_role("tab", name="Artifacts"), "the Artifacts tab").click()
    see(page, shots, page.get_by_text("plots", exact=True), "the plots/ artifacts folder").click()
    see_image(page, shots, "plots/learning_curves.png")
    shot(page, shots, "child-run-plots")
    see_image(page, shots, "plots/regression_fit.png")
