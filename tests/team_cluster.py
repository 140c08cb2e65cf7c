"""Session fixtures for the team/cluster tests (a pytest plugin: ``pytest_plugins = ["team_cluster"]``), shared by
tests/test_team_*.py so that one PostgreSQL, one MLflow server and one SLURM cluster serve them all:

- ``postgres``: a private PostgreSQL cluster (``harness.server.start_cluster``) on a free port in a temporary dir;
- ``server``: ``python -m harness.server --db ...`` on it, a :class:`Server` that tests may stop and restart;
- ``relay``: a :class:`Relay` to that server on a port of its own, which a test cuts and restores at once (an outage
  of any length without the server's 20-40 s restart);
- ``slurm``: a one-node SLURM cluster (``munged``, ``slurmctld``, ``slurmd``) with its own ``slurm.conf``.

Each skips with the Debian package to install when its programs are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import server as team


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m harness.server --db ...`` in the background, stoppable and restartable on the same port."""

    def __init__(self, db: str, root: Path) -> None:
        self.db, self.root, self.port = db, root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = root / "server.log"
        self.output = ""

    def start(self, timeout: float = 180) -> float:
        started = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.server", "--db", self.db, "--artifacts", str(self.root / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        while time.monotonic() - started < timeout:
            self.output = self.log.read_bytes()[offset:].decode(errors="replace")
            if "tracking URI:" in self.output and ("Optuna storage" in self.output or "Optuna database" in self.output):
                return time.monotonic() - started
            assert self.process.poll() is None, f"harness.server exited: {self.output[-2000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no tracking URI within {timeout} s: {self.output[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


class Relay:
    """A TCP relay on its own port to a server's port. ``cut()`` closes the port and drops every open connection,
    as a server that goes away does (new connections are refused, open ones reset); ``restore()`` opens it again."""

    def __init__(self, target_port: int) -> None:
        self.target, self.port = target_port, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        assert self._listener is None, "the relay is already open"
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            dropped, self._open = self._open, set()
        if listener is not None:
            listener.close()
        for sock in dropped:
            _drop(sock)

    def _accept(self, listener: socket.socket) -> None:
        while listener.fileno() != -1:
            try:
                near, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            near.settimeout(None)
            try:
                far = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                _drop(near)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while this connection was being made
                    _drop(near)
                    _drop(far)
                    return
                self._open |= {near, far}
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open -= {src, dst}
        _drop(src)
        _drop(dst)


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture(scope="session")
def postgres():
    """URI of a private PostgreSQL cluster's ``postgres`` database; the cluster is stopped and deleted at the end."""
    try:
        team.pg_bin("initdb")
    except team.ServerError:
        pytest.skip("PostgreSQL not found: install Debian's postgresql package (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg 3 missing: pip install '.[team]'")
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    root.chmod(0o755)  # initdb and postgres run as user postgres when we are root
    pgdata = root / "pgdata"
    uri = team.start_cluster(pgdata, free_port())
    yield uri
    team.stop_cluster(pgdata)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(postgres, tmp_path_factory):
    """The team's tracking server (database ``mlflow_team``, created by harness.server)."""
    srv = Server(postgres.rsplit("/", 1)[0] + "/mlflow_team", tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def relay(server):
    """A :class:`Relay` to the session's server, cut at the end of the test."""
    rel = Relay(server.port)
    yield rel
    rel.cut()


def _sbin(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.is_file()), None)


def _wait(predicate, timeout: float, what: str) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f} s")


SLURM_CONF = """\
ClusterName=harness
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm():
    """A one-node SLURM cluster of this machine's cores and memory; yields the environment that points ``sbatch``,
    ``squeue``, ``scancel`` (and submitit) at it. Daemons stopped and files deleted at the end."""
    missing = sorted({pkg for pkg, prog in (("slurm-wlm", "slurmctld"), ("slurm-wlm", "slurmd"), ("munge", "munged"))
                      if _sbin(prog) is None})
    if missing:
        pytest.skip(f"SLURM not found: install Debian's {' and '.join(missing)} (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster starts slurmd and munged, which needs root")
    root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
    root.chmod(0o755)
    munge = root / "munge"
    munge.mkdir(mode=0o711)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "plugstack.conf").touch()
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge, key):
        shutil.chown(path, "munge", "munge")
    munge.chmod(0o711)  # clients need to reach the socket
    subprocess.run([_sbin("munged"), f"--socket={munge}/munge.socket.2", f"--key-file={key}",
                    f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
                   check=True, user="munge", group="munge")
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 512
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname(), root=root, ctld_port=free_port(), d_port=free_port(),
                                      cpus=os.cpu_count(), memory=memory))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        subprocess.run([_sbin("slurmctld"), "-f", str(conf)], check=True, env=env)
        subprocess.run([_sbin("slurmd"), "-f", str(conf)], check=True, env=env)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, env=env)
            return out.stdout.strip() == "idle"

        _wait(idle, 60, f"the SLURM node was not idle (see {root}/slurmctld.log, slurmd.log)")
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", munge / "munged.pid"):
            if pid_file.is_file():
                pid = int(pid_file.read_text().split()[0])
                try:
                    os.kill(pid, signal.SIGTERM)
                    _wait(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 30, f"process {pid} did not stop")
                except ProcessLookupError:
                    pass
        shutil.rmtree(root, ignore_errors=True)
