"""``python -m harness.server``: a team's MLflow tracking server on PostgreSQL, with proxied artifacts.

    python -m harness.server --pgdata team/pgdata --artifacts team/artifacts      # a private PostgreSQL cluster
    python -m harness.server --db postgresql://mlflow:secret@dbhost/mlflow --artifacts /srv/mlflow-artifacts

With ``--db`` the server uses that PostgreSQL database, creating it when it is missing; without it, a private
PostgreSQL cluster in ``--pgdata`` is created (``initdb``, the first time) and started (``pg_ctl``, as user
``postgres`` when run as root), listening on ``--pg-host``/``--pg-port`` only. Then ``mlflow server`` starts with that
backend store and ``--artifacts-destination`` (clients send artifacts through the server: they need no access to
the artifact directory), the command waits until it answers, prints the tracking URI to use and the Optuna storage
for studies that several workers share (database ``--optuna-database``, created beside the backend store), and serves
until Ctrl-C or SIGTERM, which stop the server (and the private cluster it started).
Needs Debian's ``postgresql`` package and the ``team`` extra (``pip install 'loss-harness[team]'``: psycopg 3).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

READY_TIMEOUT = 180.0  # a first start on an empty database runs MLflow's migrations: 30-40 s on 2 cores


class ServerError(RuntimeError):
    """The server or its database cannot be started; the message says what to do."""


def pg_bin(name: str) -> str:
    """The path of PostgreSQL program ``name`` (``initdb``, ``pg_ctl``): on ``PATH``, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    if not candidates:
        raise ServerError(f"PostgreSQL's {name} not found: install Debian's postgresql package (apt-get install postgresql)")
    return candidates[-1]


def sqlalchemy_uri(uri: str) -> str:
    """``postgresql://...`` with the psycopg 3 driver that MLflow's SQLAlchemy needs (``postgresql+psycopg://``)."""
    for scheme in ("postgresql://", "postgres://"):
        if uri.startswith(scheme):
            return "postgresql+psycopg://" + uri[len(scheme):]
    return uri


def _connect_kwargs(uri: str, dbname: str) -> dict[str, object]:
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    kwargs = {"host": url.host, "port": url.port, "user": url.username, "password": url.password, "dbname": dbname}
    kwargs.update(url.query)  # e.g. ?host=/run/postgresql or ?sslmode=require
    return {k: v for k, v in kwargs.items() if v is not None}


def ensure_database(uri: str) -> bool:
    """Create the database that ``uri`` names when it does not exist yet (connecting to the server's ``postgres``
    database to do it). Returns whether it was created."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise ServerError("the PostgreSQL driver is missing: pip install 'loss-harness[team]' (psycopg 3)") from None
    from sqlalchemy.engine import make_url

    name = make_url(uri).database
    if not name:
        raise ServerError(f"{uri} names no database (postgresql://user@host:port/DATABASE)")
    try:
        with psycopg.connect(**_connect_kwargs(uri, "postgres"), autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ServerError(f"cannot reach PostgreSQL at {make_url(uri).render_as_string(hide_password=True)}: {first}") from None


def optuna_storage(backend: str, database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the backend store's PostgreSQL server (created if missing), for Optuna
    studies that several workers share (``hydra.sweeper.storage``, :mod:`harness.tuning`)."""
    from sqlalchemy.engine import make_url

    uri = make_url(sqlalchemy_uri(backend)).set(database=database).render_as_string(hide_password=False)
    ensure_database(uri)
    return uri


def _as_postgres() -> dict[str, object]:
    """subprocess arguments that run a PostgreSQL program as user ``postgres`` when we are root (it refuses root)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _pg(args: list[str], what: str) -> None:
    out = subprocess.run(args, capture_output=True, text=True, **_as_postgres())
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise ServerError(f"{what} failed: {detail[-1] if detail else f'exit status {out.returncode}'}")


def cluster_running(pgdata: Path) -> bool:
    return subprocess.run([pg_bin("pg_ctl"), "status", "-D", str(pgdata)], capture_output=True,
                          **_as_postgres()).returncode == 0


def start_cluster(pgdata: Path, port: int, host: str = "127.0.0.1") -> str:
    """Create (``initdb``, trust authentication for this host only) and start a PostgreSQL cluster in ``pgdata``
    listening on ``host:port``; returns the URI of its ``postgres`` database. Reuses a cluster already running there."""
    pgdata = Path(pgdata).resolve()
    if not (pgdata / "PG_VERSION").is_file():
        pgdata.mkdir(parents=True, exist_ok=True)
        pgdata.chmod(0o700)
        if os.geteuid() == 0:
            shutil.chown(pgdata, "postgres", "postgres")
        _pg([pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions"],
            f"initdb {pgdata} (its parent directories must be readable by user postgres)"
            if os.geteuid() == 0 else f"initdb {pgdata}")
    if not cluster_running(pgdata):
        options = f"-p {port} -c listen_addresses={host} -k {pgdata}"
        _pg([pg_bin("pg_ctl"), "start", "-D", str(pgdata), "-l", str(pgdata / "server.log"), "-o", options, "-w", "-t", "60"],
            f"starting PostgreSQL in {pgdata} on port {port} (see {pgdata / 'server.log'})")
    return f"postgresql+psycopg://postgres@{host}:{port}/postgres"


def stop_cluster(pgdata: Path) -> None:
    if cluster_running(Path(pgdata)):
        _pg([pg_bin("pg_ctl"), "stop", "-D", str(Path(pgdata).resolve()), "-m", "fast", "-w", "-t", "60"], "stopping PostgreSQL")


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT) -> float:
    """Poll ``url``/health until the server answers; returns the seconds it took. Raises :class:`ServerError` when
    ``process`` exits first or ``timeout`` passes."""
    import requests

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise ServerError(f"mlflow server exited with status {process.returncode} before answering on {url}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url.rstrip("/") + "/health", timeout=2).ok:
                return time.monotonic() - started
        time.sleep(0.25)
    raise ServerError(f"mlflow server did not answer on {url} within {timeout:.0f} s")


def public_host(host: str) -> str:
    """The name clients use for a server bound to ``host`` (this machine's name for a wildcard address)."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def allowed_hosts(host: str, port: int) -> list[str]:
    """MLflow's default Host-header allow list (localhost, private addresses) plus this machine's names, so that
    clients on other machines may use ``http://<hostname>:<port>``."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = {public_host(host), socket.gethostname(), host}
    return [*get_default_allowed_hosts(), *(f"{n}{suffix}" for n in sorted(names) for suffix in ("", ":*"))]


def server_command(backend_uri: str, artifacts: Path, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", sqlalchemy_uri(backend_uri),
        "--artifacts-destination", str(Path(artifacts).resolve()), "--host", host, "--port", str(port),
        "--workers", str(workers), "--allowed-hosts", ",".join(allowed_hosts(host, port)),
    ]


@contextlib.contextmanager
def running_server(backend_uri: str, artifacts: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 2,
                   log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``mlflow server`` on ``backend_uri`` (database created if missing), wait until it answers, yield its
    tracking URI and process; stop it on exit."""
    ensure_database(sqlalchemy_uri(backend_uri))
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "ab")) if log else None
        process = subprocess.Popen(server_command(backend_uri, artifacts, host, port, workers), stdout=out,
                                   stderr=subprocess.STDOUT if out else None, start_new_session=True)
        try:
            uri = f"http://{public_host(host)}:{port}"
            wait_ready(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}", process)
            yield uri, process
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM ``process``'s whole session (the server and its workers), SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.server", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", help="PostgreSQL URI of the backend store (created if missing), e.g. "
                                    "postgresql://user:password@dbhost:5432/mlflow")
    where.add_argument("--pgdata", type=Path, help="directory of a private PostgreSQL cluster (default: mlflow-server/pgdata)")
    parser.add_argument("--pg-host", default="127.0.0.1", help="address the private cluster listens on (default 127.0.0.1)")
    parser.add_argument("--pg-port", type=int, default=5433, help="port of the private cluster (default 5433)")
    parser.add_argument("--database", default="mlflow", help="database of the private cluster (default mlflow)")
    parser.add_argument("--optuna-database", default="optuna",
                        help="database created beside the backend store for shared Optuna studies (default optuna; "
                             "'' for none)")
    parser.add_argument("--artifacts", type=Path, default=Path("mlflow-server/artifacts"),
                        help="where the server keeps artifacts (default mlflow-server/artifacts)")
    parser.add_argument("--host", default="0.0.0.0", help="address the server listens on (default 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    args = parser.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    pgdata = None if args.db else (args.pgdata or Path("mlflow-server/pgdata")).resolve()
    ours = False  # stop the private cluster at the end only if this command started it
    try:
        if pgdata is not None:
            ours = not ((pgdata / "PG_VERSION").is_file() and cluster_running(pgdata))
            base = start_cluster(pgdata, args.pg_port, args.pg_host)
            backend = base.rsplit("/", 1)[0] + f"/{args.database}"
            print(f"PostgreSQL cluster {pgdata} on {args.pg_host}:{args.pg_port}, database {args.database}", flush=True)
        else:
            backend = args.db
        started = time.monotonic()
        with running_server(backend, args.artifacts, args.host, args.port, args.workers) as (uri, process):
            print(f"mlflow server ready in {time.monotonic() - started:.0f}s: backend store "
                  f"{_hide_password(sqlalchemy_uri(backend))}, artifacts {args.artifacts.resolve()}", flush=True)
            print(f"tracking URI: {uri}", flush=True)
            print(f"point runs at it: python -m harness tracking.uri={uri} ...  (or export MLFLOW_TRACKING_URI={uri})",
                  flush=True)
            if args.optuna_database:
                try:
                    storage = _hide_password(optuna_storage(backend, args.optuna_database))
                    print(f"Optuna storage for tuning with several workers: hydra.sweeper.storage={storage}", flush=True)
                except ServerError as err:
                    print(f"warning: no Optuna database: {err}", file=sys.stderr, flush=True)
            process.wait()
            print(f"error: mlflow server exited with status {process.returncode}", file=sys.stderr, flush=True)
            return 1
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("stopping the server", flush=True)
        return 0
    finally:
        if ours:
            with contextlib.suppress(ServerError):
                stop_cluster(pgdata)


def _hide_password(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
