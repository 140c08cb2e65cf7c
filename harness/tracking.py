"""MLflow tracking through ``MlflowClient`` with explicit run ids (no global active run).

- The store: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow's default ``sqlite:///mlflow.db`` in the
  working directory. Creating a fresh SQLite store runs migrations, which race when several processes do it at
  once, so store and experiment are set up under an exclusive file lock next to the database.
- An HTTP server is checked (``/health``, 5 s timeout) before training instead of retrying for minutes.
- Metrics are buffered and sent with ``log_batch``: every 5 s or 500 values, and when the run ends.
- A server that goes away mid-run, for longer than MLflow's client retries, does not cost the training: the run's
  writes are kept in a local spool and sent when it answers again, or by ``python -m harness.upload`` (:class:`Run`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlflow.db"
FLUSH_SECONDS = 5.0
FLUSH_VALUES = 500
MLFLOW_BATCH_PARAMS = 100


class TrackingError(RuntimeError):
    """The tracking store cannot be used; raised before training."""


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else ``None``."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def ui_command(uri: str) -> str:
    """The command that serves a local store's runs in the MLflow UI."""
    return "mlflow ui" if uri == DEFAULT_URI else f"mlflow ui --backend-store-uri {uri}"


def lock_path(db: Path) -> Path:
    """The lock file of a SQLite store: hidden, beside it (``.mlflow.db.lock``). It is never deleted: removing a lock
    file that another process may have opened and be waiting on would let two processes hold "the" lock."""
    return db.with_name(f".{db.name}.lock")


def see_it(uri: str, experiment_id: str, run_id: str) -> str:
    """The line telling where a run's page is: the server's URL, or the command serving a local store. MLflow 3's UI
    opens in its GenAI view; ``workflowType=machine_learning`` shows the training runs."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"see it: {uri.rstrip('/')}/{page}"
    return f"see it: {ui_command(uri)}  then http://127.0.0.1:5000/{page}"


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as err:
        raise TrackingError(
            f"tracking server {uri} is not reachable ({type(err).__name__}); start it (mlflow server ...) or "
            f"set tracking.uri to a reachable server or a sqlite:/// file"
        ) from None


def open_store(uri: str) -> MlflowClient:
    """A client for ``uri`` whose store has been created (or found complete) under the store's lock, so that reading
    a SQLite store while another process creates it (a first run, ``mlflow ui``) cannot interleave their migrations."""
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    return client


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """Client for ``uri`` and the id of experiment ``name`` (created if missing)."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    with _store_lock(uri):
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    return client, client.create_experiment(name)
                except MlflowException as err:
                    # a server has no store lock: another process (a sweep worker, a job) created it meanwhile
                    if err.error_code != "RESOURCE_ALREADY_EXISTS" or (experiment := client.get_experiment_by_name(name)) is None:
                        raise
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"cannot open tracking store {uri}: {err}") from err
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment '{name}' in {uri} is deleted; restore it (mlflow experiments restore) or set tracking.experiment"
        )
    return client, experiment.experiment_id


@lru_cache(maxsize=1)
def source_version() -> dict[str, str]:
    """The harness source's git commit and whether its tree has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        sha = git("rev-parse", "HEAD") or "unknown"
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "unknown", "unknown"
    return {"git_sha": sha, "git_dirty": dirty}


def library_versions() -> dict[str, str]:
    import hydra
    import mlflow
    import torch

    return {
        "version.python": platform.python_version(),
        "version.torch": torch.__version__,
        "version.mlflow": mlflow.__version__,
        "version.hydra": hydra.__version__,
    }


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists are kept as their string form."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@contextlib.contextmanager
def signal_handlers(handler: Callable[[int, Any], None]) -> Iterator[dict[int, Any] | None]:
    """Install ``handler`` for SIGINT and SIGTERM, restoring the previous handlers on exit; yields those previous
    handlers, or ``None`` outside the main thread (where Python cannot set handlers, and nothing is changed)."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield None
        return
    try:
        yield previous
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while writing to the store, then deliver them to the handlers that were in place.

    An interrupt inside a SQLite write leaves its transaction's lock held, and closing the run afterwards then
    waits out the 20 s busy timeout and fails: so Ctrl-C must land between writes, never inside one. Also keeps a
    second Ctrl-C from cutting off the closing of a run. Python-level (not a signal mask), so a signal that arrived
    just before the write but is handled during it is deferred too.
    """
    caught: list[int] = []
    try:
        with signal_handlers(lambda signum, frame: caught.append(signum)) as previous:
            yield
    finally:
        if caught and previous:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def _held(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with signals_held():
            return method(*args, **kwargs)

    return wrapper


def server_unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the tracking server could not be reached or answered with a server error after MLflow's
    retries (a connection error somewhere in its chain), as opposed to the server refusing the write itself."""
    import requests
    from mlflow.exceptions import RestException

    if isinstance(err, RestException):
        return False
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (requests.RequestException, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _answers(uri: str) -> bool:
    import requests

    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=2).ok
    except requests.RequestException:
        return False


class Run:
    """One MLflow run: buffered metrics, artifacts, and a terminal status set exactly once. Every write holds
    SIGINT/SIGTERM until it is done (:func:`signals_held`).

    With a ``spool`` directory (runs on a tracking server), a write that fails because the server is unreachable
    (after MLflow's own retries) does not end the run: that write and the ones after it go to the spool
    (:mod:`harness.upload`), and are sent as soon as the server answers again (checked at each flush); if the run
    ends first, :meth:`end` prints the one-line command that uploads them."""

    def __init__(self, client: MlflowClient, run_id: str, spool: Path | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self.status: str | None = None
        self.spool_dir = spool
        self.offline: Any = None  # the harness.upload.Spool in use while the server is unreachable
        self._last_probe = 0.0

    def _write(self, online: Callable[[], Any], record: Callable[[Any], None]) -> None:
        """``online()`` against the store, or ``record(spool)`` while the server is unreachable."""
        if self.offline is None:
            try:
                online()
                return
            except Exception as err:
                if self.spool_dir is None or not server_unreachable(err):
                    raise
                self._go_offline(err)
        record(self.offline)

    def _go_offline(self, err: BaseException) -> None:
        from .upload import Spool

        reason = " ".join(str(err).split())[:300]
        self.offline = Spool.create(self.spool_dir, self.client.tracking_uri, self.run_id, reason)
        self._last_probe = time.monotonic()
        print(f"warning: tracking server {self.client.tracking_uri} unreachable; keeping run {self.run_id}'s writes "
              f"in {self.offline.path} until it answers", file=sys.stderr, flush=True)

    def _reconnect(self) -> bool:
        """Send the spooled writes if the server answers again; back online when all are sent."""
        from .upload import replay

        self._last_probe = time.monotonic()
        if not _answers(self.client.tracking_uri):
            return False
        try:
            sent = replay(self.offline, self.client)
        except Exception as err:  # noqa: BLE001 - down again: stay offline, progress kept in the spool
            if not server_unreachable(err):
                raise
            return False
        print(f"tracking server {self.client.tracking_uri} answers again: {sent} kept writes of run {self.run_id} sent",
              file=sys.stderr, flush=True)
        shutil.rmtree(self.offline.path, ignore_errors=True)
        self.offline = None
        return True

    @_held
    def log_params(self, params: Mapping[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MLFLOW_BATCH_PARAMS):
            chunk = items[i : i + MLFLOW_BATCH_PARAMS]
            self._write(lambda: self.client.log_batch(self.run_id, params=chunk),
                        lambda spool: spool.add({"op": "batch", "params": [[p.key, p.value] for p in chunk]}))

    @_held
    def set_tags(self, tags: Mapping[str, str]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._write(lambda: self.client.log_batch(self.run_id, tags=items),
                    lambda spool: spool.add({"op": "batch", "tags": [[t.key, t.value] for t in items]}))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if len(self._buffer) >= FLUSH_VALUES or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    @_held
    def flush(self) -> None:
        if self.offline is not None and time.monotonic() - self._last_probe >= FLUSH_SECONDS:
            self._reconnect()
        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self._write(lambda: self.client.log_batch(self.run_id, metrics=batch),
                        lambda spool: spool.add({"op": "batch", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in batch]}))
        self._last_flush = time.monotonic()

    @_held
    def log_text(self, text: str, path: str) -> None:
        self._write(lambda: self.client.log_text(self.run_id, text, path),
                    lambda spool: spool.add({"op": "text", "text": text, "path": path}))

    @_held
    def log_figure(self, figure: Any, path: str) -> None:
        self._write(lambda: self.client.log_figure(self.run_id, figure, path),
                    lambda spool: spool.add_file(None, path, figure=figure))

    @_held
    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any]) -> None:
        """Record the training data as an MLflow dataset input (the UI's "Datasets used" column)."""
        import json

        from .upload import apply

        fields = dict(name=name, digest=digest, source_type="local" if source.startswith(("/", ".")) else "code",
                      source=json.dumps({"uri": source}), profile=json.dumps(dict(profile)))
        op = {"op": "inputs", "dataset": fields, "context": "train"}
        self._write(lambda: apply(self.client, self.run_id, op), lambda spool: spool.add(op))

    @_held
    def end(self, status: str) -> None:
        """Flush what is buffered, then mark the run ``FINISHED``, ``FAILED`` or ``KILLED``. With the server
        unreachable, one last try to send the kept writes; failing that, one line naming the upload command."""
        if self.status is not None:
            return
        try:
            self.flush()
        finally:
            self._write(lambda: self.client.set_terminated(self.run_id, status),
                        lambda spool: spool.add({"op": "end", "status": status}))
            self.status = status
            if self.offline is not None and not self._reconnect():
                print(f"warning: run {self.run_id} ended {status} but tracking server {self.client.tracking_uri} is "
                      f"unreachable; nothing is lost: its writes are kept in {self.offline.path}; once the server is "
                      f"back, send them with: python -m harness.upload {self.offline.path}", file=sys.stderr, flush=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this experiment started on this host by a process that no longer exists
    (killed with SIGKILL, out of memory, machine reset): no handler could close them. Returns their ids."""
    host = socket.gethostname()
    stale = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'", max_results=1000
    )
    reaped = []
    for run in stale:
        pid = run.data.tags.get("pid", "")
        spool = Path(run.data.tags.get("tracking.spool", "") or "/nonexistent")
        if (spool / "run.json").is_file() and not (spool / "uploaded").is_file():
            print(f"note: run {run.info.run_id} has writes waiting in {spool}: python -m harness.upload {spool}",
                  file=sys.stderr, flush=True)
            continue
        # a parent run shared by several sweep workers (harness.tuning) is an orphan only when all of them are
        # processes of this host that no longer exist
        workers = [key.split("/")[1:] for key in run.data.tags if key.startswith("sweep.worker/")]
        if workers and all(len(w) == 2 and w[0] == host and w[1].isdigit() for w in workers):
            pids = [int(w[1]) for w in workers]
            if os.getpid() not in pids and not any(map(process_alive, pids)):
                client.set_tag(run.info.run_id, "failure_reason", f"sweep workers {pids} on {host} ended without closing the run")
                client.set_terminated(run.info.run_id, "FAILED")
                reaped.append(run.info.run_id)
            continue
        if workers:
            continue
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            client.set_tag(run.info.run_id, "failure_reason", f"process {pid} on {host} ended without closing the run")
            client.set_terminated(run.info.run_id, "FAILED")
            reaped.append(run.info.run_id)
    return reaped


def start_run(
    client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> Run:
    """Create a run tagged with this host and process id (see :func:`reap_orphans`), and its SLURM job id in a
    SLURM job (:func:`harness.slurm.slurm_tags`). On a tracking server, the run
    also gets the directory where its writes would be kept while the server is unreachable (tag ``tracking.spool``:
    :func:`spool_root`/``mlflow-spool/<run id>``)."""
    from .slurm import slurm_tags

    all_tags = {**tags, "host": socket.gethostname(), "pid": str(os.getpid()), **slurm_tags()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    remote = str(client.tracking_uri).startswith(("http://", "https://"))
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    if not remote:
        return Run(client, run.info.run_id)
    spool = spool_root() / "mlflow-spool" / run.info.run_id
    client.set_tag(run.info.run_id, "tracking.spool", str(spool))
    return Run(client, run.info.run_id, spool=spool)


def spool_root() -> Path:
    """Where a run keeps writes its server cannot take: Hydra's output directory of the job, else the working
    directory."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        with contextlib.suppress(Exception):
            return Path(HydraConfig.get().runtime.output_dir).resolve()
    return Path.cwd().resolve()
