"""The team path: python -m harness.server (a real PostgreSQL and a real ``mlflow server``), runs, sweeps, compare
and reproduce through HTTP, 16 parallel jobs, and the server going away mid-run: a short outage (the server stopped
and restarted), and outages past the client's retries (a relay in front of the server cut and restored)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import harness_cli
from harness import server as team

pytest.register_assert_rewrite("team_cluster")
from team_cluster import free_port  # noqa: E402

pytest_plugins = ["team_cluster"]  # the session's PostgreSQL and MLflow server, shared with tests/test_team_*.py
pytestmark = pytest.mark.cluster

QUICK = ["trainer.progress=false", "trainer.threads=1"]
# the client's retries, short: 2 tries about a second apart, then the run keeps its writes locally
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@pytest.fixture
def client(server) -> MlflowClient:
    """A client of the server, restarted first if an outage test failed before bringing it back."""
    if server.process.poll() is not None:
        server.start()
    return MlflowClient(tracking_uri=server.uri)


def runs_of(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_server_creates_its_database_and_prints_the_uri(server):
    import psycopg

    assert f"tracking URI: {server.uri}" in server.output
    assert f"python -m harness tracking.uri={server.uri}" in server.output
    kwargs = team._connect_kwargs(team.sqlalchemy_uri(server.db), "mlflow_team")
    with psycopg.connect(**kwargs) as conn:  # MLflow's tables are in the database the server created
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"experiments", "runs", "metrics", "params", "tags"} <= tables


def test_unreachable_database_is_one_line(tmp_path):
    pytest.importorskip("psycopg", reason="psycopg 3 missing: pip install '.[team]'")
    proc = subprocess.run([sys.executable, "-m", "harness.server", "--db", f"postgresql://nobody@127.0.0.1:{free_port()}/x",
                           "--artifacts", str(tmp_path / "a"), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot reach PostgreSQL at postgresql+psycopg://nobody@127.0.0.1:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_run_arrives_complete_through_http(server, client, tmp_path):
    proc = harness_cli(tmp_path, "loss=huber", "data=outliers", "trainer.epochs=4", "seed=3", *QUICK,
                       f"tracking.uri={server.uri}", "tracking.experiment=team-one")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs_of(client, "team-one")
    assert run.info.status == "FINISHED" and run.info.run_id in proc.stdout
    assert f"see it: {server.uri}/#/experiments/" in proc.stdout
    assert (run.data.tags["loss"], run.data.tags["seed"]) == ("huber", "3")
    assert run.data.params["loss.delta"] == "1.0" and run.data.params["trainer.epochs"] == "4"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4]
    assert f"test/rmse       {run.data.metrics['test/rmse']:.4f}" in proc.stdout
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/learning_curves.png", "plots/regression_fit.png"}
    # proxied artifacts: the client reads them back through the server, and they live in its --artifacts dir
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert "delta: 1.0" in config
    assert list((server.root / "artifacts").rglob(f"{run.info.run_id}/artifacts/plots/learning_curves.png"))
    assert client.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset.name == "outliers"
    assert not Path(run.data.tags["tracking.spool"]).exists()  # nothing had to be kept locally


def test_sweep_compare_and_reproduce_against_the_server(server, client, tmp_path):
    proc = harness_cli(tmp_path, "-m", "loss=mse,huber", "seed=0,1", "trainer.epochs=5", "tracking.log_plots=false",
                       *QUICK, f"tracking.uri={server.uri}", "tracking.experiment=team-sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep: 4 of 4 jobs finished" in proc.stdout
    runs = runs_of(client, "team-sweep")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep") != "parent"]
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert all(r.info.status == "FINISHED" and "test/rmse" in r.data.metrics for r in children)

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = tmp_path / "cmp"
    cmp = subprocess.run([sys.executable, "-m", "harness.compare", "--experiment", "team-sweep", "--tracking-uri",
                          server.uri, "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    import pandas as pd

    table = pd.read_csv(out / "comparison.csv")
    assert list(table["loss"]) == ["huber", "mse"] and list(table["n"]) == [2, 2]  # Huber wins on outliers
    huber = [r.data.metrics["test/rmse"] for r in children if r.data.tags["loss"] == "huber"]
    assert table.iloc[0]["mean"] == pytest.approx(sum(huber) / 2)

    child = next(r for r in children if r.data.tags["loss"] == "huber")
    rep = subprocess.run([sys.executable, "-m", "harness.reproduce", child.info.run_id, "--tracking-uri", server.uri],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "all test metrics match" in rep.stdout
    (repro,) = [r for r in runs_of(client, "team-sweep") if r.data.tags.get("reproduces") == child.info.run_id]
    assert repro.data.metrics["test/rmse"] == child.data.metrics["test/rmse"]


def test_sixteen_parallel_jobs_all_arrive_under_one_parent(server, client, tmp_path):
    started = time.monotonic()
    proc = harness_cli(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
                       "loss=mse,mae,huber,log_cosh", "seed=0,1,2,3", "trainer.epochs=3", *QUICK,
                       f"tracking.uri={server.uri}", "tracking.experiment=team-load", timeout=600)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep: 16 of 16 jobs finished" in proc.stdout
    runs = runs_of(client, "team-load")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep") != "parent"]
    assert len(children) == 16 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {(r.data.tags["loss"], r.data.tags["seed"]) for r in children} == {
        (loss, str(seed)) for loss in ("mse", "mae", "huber", "log_cosh") for seed in range(4)}
    for r in children:  # nothing lost: every epoch of every run, and its plots
        assert len(client.get_metric_history(r.info.run_id, "val/rmse")) == 3
        assert len(client.list_artifacts(r.info.run_id, "plots")) == 2
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.finished"] == "16"
    print(f"16 jobs, 4 workers: {seconds:.0f} s")


def test_runs_logging_one_new_dataset_at_once_all_record_it(client):
    """MLflow looks a dataset up, then inserts it: runs logging the same new dataset at once (the jobs of a sweep
    on one dataset) race on its key; each run still records it, and no job fails."""
    import threading
    import uuid

    from harness.upload import apply

    experiment = client.create_experiment(f"team-datasets-{uuid.uuid4().hex[:8]}")
    runs = [client.create_run(experiment).info.run_id for _ in range(8)]
    errors: list[BaseException] = []
    for round in range(4):
        fields = dict(name="outliers", digest=uuid.uuid4().hex[:8], source_type="code", source='{"uri": "x"}',
                      profile='{"train": 2000}')
        barrier = threading.Barrier(len(runs))

        def log(run_id: str) -> None:
            barrier.wait()
            try:
                apply(client, run_id, {"op": "inputs", "dataset": fields, "context": "train"})
            except BaseException as err:  # noqa: BLE001 - collected and asserted below
                errors.append(err)

        threads = [threading.Thread(target=log, args=(run_id,)) for run_id in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        for run_id in runs:
            assert fields["digest"] in {d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs}


@pytest.fixture
def spawned():
    """Processes a test starts in the background; killed at its end if still running (a failed assertion)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_long_run(uri: str, cwd: Path, experiment: str, epochs: int, env_extra: dict[str, str],
                   spawned: list[subprocess.Popen]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    env.update(env_extra)
    spawned.append(subprocess.Popen(
        [sys.executable, "-m", "harness", "loss=huber", "data.n_train=4000", f"trainer.epochs={epochs}", *QUICK,
         f"tracking.uri={uri}", f"tracking.experiment={experiment}"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return spawned[-1]


def wait_for_metrics(client: MlflowClient, experiment: str, proc: subprocess.Popen, timeout: float = 120):
    """The run once the server holds some of its epochs (the run flushes every 5 s)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, proc.communicate()
        exp = client.get_experiment_by_name(experiment)
        found = client.search_runs([exp.experiment_id]) if exp else []
        if found and found[0].data.metrics.get("train/loss") is not None:
            return found[0]
        time.sleep(0.5)
    raise AssertionError("the run logged no metrics")


def wait_for_spool(spool: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Once the run has found the server gone and keeps its writes in ``spool``."""
    started = time.monotonic()
    while not (spool / "run.json").is_file():
        assert proc.poll() is None, "the run ended before it found the server gone: raise epochs"
        assert time.monotonic() - started < timeout, f"no spool at {spool} within {timeout} s"
        time.sleep(0.2)


def test_short_outage_is_retried_and_nothing_is_lost(server, client, tmp_path, spawned):
    # the client's retries (about 1+2+4+8+16+32 s) outlast the outage: the run waits, then goes on
    retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    epochs = 1500
    proc = start_long_run(server.uri, tmp_path, "team-short-outage", epochs, retries, spawned)
    run = wait_for_metrics(client, "team-short-outage", proc)
    server.stop()
    assert proc.poll() is None, "the run ended before the outage: raise epochs"
    time.sleep(3)
    server.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, epochs + 1))
    assert "test/rmse" in run.data.metrics and len(client.list_artifacts(run.info.run_id, "plots")) == 2
    assert "unreachable" not in err and not Path(run.data.tags["tracking.spool"]).exists()


def test_outage_past_the_retries_keeps_writes_until_the_server_is_back(server, relay, client, tmp_path, spawned):
    # the run reaches the server through the relay: cutting it is the server going away, restoring it coming back
    epochs = 2000
    proc = start_long_run(relay.uri, tmp_path, "team-mid-outage", epochs, SHORT_RETRIES, spawned)
    run = wait_for_metrics(client, "team-mid-outage", proc)
    spool = Path(run.data.tags["tracking.spool"])
    relay.cut()
    wait_for_spool(spool, proc)
    relay.restore()
    assert proc.poll() is None, "the run ended before the server was back: raise epochs"
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert f"warning: tracking server {relay.uri} unreachable; keeping run {run.info.run_id}'s writes in {spool}" in err
    assert f"tracking server {relay.uri} answers again: " in err and "harness.upload" not in err
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "test/rmse" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, epochs + 1))
    assert not spool.exists()  # all sent: nothing left behind


def test_long_outage_keeps_the_run_and_upload_completes_it(server, relay, client, tmp_path, spawned):
    epochs = 1000
    proc = start_long_run(relay.uri, tmp_path, "team-long-outage", epochs, SHORT_RETRIES, spawned)
    run = wait_for_metrics(client, "team-long-outage", proc)
    relay.cut()
    assert proc.poll() is None, "the run ended before the outage: raise epochs"
    try:
        out, err = proc.communicate(timeout=300)  # the whole rest of the run with the server out of reach
    finally:
        relay.restore()
    assert proc.returncode == 0, err[-3000:]
    spool = Path(run.data.tags["tracking.spool"])
    last = err.strip().splitlines()[-1]
    assert last == (f"warning: run {run.info.run_id} ended FINISHED but tracking server {relay.uri} is unreachable; "
                    f"nothing is lost: its writes are kept in {spool}; once the server is back, send them with: "
                    f"python -m harness.upload {spool}")
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # the server could not be told
    # another run on this host before the upload: it leaves the waiting run alone (no "process ended" FAILED)
    other = harness_cli(tmp_path, "trainer.epochs=2", *QUICK, "tracking.log_plots=false", f"tracking.uri={server.uri}",
                        "tracking.experiment=team-long-outage")
    assert other.returncode == 0, other.stderr[-2000:]
    assert f"note: run {run.info.run_id} has writes waiting in {spool}: python -m harness.upload {spool}" in other.stderr
    assert client.get_run(run.info.run_id).info.status == "RUNNING"

    up = subprocess.run([sys.executable, "-m", "harness.upload", str(spool)], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"run {run.info.run_id}: ") and up.stdout.strip().endswith(f"to {relay.uri}, run FINISHED")
    assert len(up.stdout.strip().splitlines()) == 1
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, epochs + 1))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/rmse")] == list(range(1, epochs + 1))
    assert f"test/rmse       {run.data.metrics['test/rmse']:.4f}" in out
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/learning_curves.png", "plots/regression_fit.png"}
    again = subprocess.run([sys.executable, "-m", "harness.upload", str(spool)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already uploaded" in again.stdout  # sending twice sends nothing twice


STOP_AT_SWEEP_END = '''
import os, signal, socket, time
from hydra.experimental.callback import Callback


class StopServer(Callback):
    """Runs before the harness's own end-of-sweep step (Hydra calls on_multirun_end in reverse order)."""

    def on_multirun_end(self, config, **kwargs):
        os.killpg(int(os.environ["TEST_SERVER_PGID"]), signal.SIGTERM)
        port = int(os.environ["TEST_SERVER_PORT"])
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return
            time.sleep(0.1)
'''


def test_server_gone_at_the_end_of_a_sweep_ends_its_parent_run_when_uploaded(server, client, tmp_path, monkeypatch):
    (tmp_path / "stop_server.py").write_text(STOP_AT_SWEEP_END)
    env = {**SHORT_RETRIES, "TEST_SERVER_PGID": str(os.getpgid(server.process.pid)), "TEST_SERVER_PORT": str(server.port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        proc = harness_cli(tmp_path, "-m", "loss=mse,mae", "trainer.epochs=2", *QUICK, "tracking.log_plots=false",
                           f"tracking.uri={server.uri}", "tracking.experiment=team-end-outage",
                           "+hydra.callbacks.stop_server._target_=stop_server.StopServer", pythonpath=tmp_path)
    finally:
        server.process.wait(30)
        server.start()
    assert proc.returncode == 1, proc.stderr[-3000:]
    (parent,) = [r for r in runs_of(client, "team-end-outage") if r.data.tags.get("sweep") == "parent"]
    spool = Path(parent.data.tags["tracking.spool"])
    assert ("sweep: tracking server unreachable at the end of the sweep: the jobs' runs were not counted or compared "
            f"(once it is back: python -m harness.compare --parent {parent.info.run_id})") in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].endswith(f"python -m harness.upload {spool}")
    assert parent.info.status == "RUNNING"
    up = subprocess.run([sys.executable, "-m", "harness.upload", str(spool)], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"].startswith("tracking server unreachable")
    children = [r for r in runs_of(client, "team-end-outage") if r.data.tags.get("sweep") != "parent"]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)  # the training is all there
