"""A run's tracking writes kept on local disk while its server was unreachable, and ``python -m harness.upload``.

    python -m harness.upload SPOOL [SPOOL ...] [--tracking-uri URI]

When the tracking server (``tracking.uri=http://...``) stops answering in the middle of a run, for longer than
MLflow's client retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ...), the run goes on and its writes (metrics,
params, tags, artifacts, its end) go to a spool directory instead: ``<run's output dir>/mlflow-spool/<run id>``.
The run re-sends them itself as soon as the server answers again; if it ends first, it prints the command above,
which sends them in order and closes the run with its real status. Each write is sent once: progress is kept in
the spool, so an upload cut short goes on where it stopped. Exit status 0 when every spool is uploaded, 1 otherwise.

Layout: ``run.json`` (tracking URI, run id, host, pid, why), ``ops.jsonl`` (one write per line), ``files/``
(artifacts), ``sent`` (how many writes the server has), ``uploaded`` (written once all are sent, with the end).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .tracking import process_alive


class Spool:
    """Append-only log of one run's writes, replayed in order by :func:`replay`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, tracking_uri: str, run_id: str, reason: str) -> "Spool":
        path = Path(path).resolve()
        (path / "files").mkdir(parents=True, exist_ok=True)
        info = {"tracking_uri": tracking_uri, "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "reason": reason}
        (path / "run.json").write_text(json.dumps(info, indent=1))
        (path / "ops.jsonl").touch()
        return cls(path)

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.path / "run.json").read_text())

    def add(self, op: dict[str, Any]) -> None:
        with open(self.path / "ops.jsonl", "a") as out:
            out.write(json.dumps(op) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def add_file(self, source: Path | None, artifact_path: str, figure: Any = None) -> None:
        """Keep an artifact (a file, or a matplotlib figure saved as ``artifact_path``) to log when uploading."""
        target = self.path / "files" / artifact_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if figure is not None:
            figure.savefig(target)
        else:
            target.write_bytes(Path(source).read_bytes())
        self.add({"op": "file", "file": artifact_path})

    def ops(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.path / "ops.jsonl").read_text().splitlines() if line.strip()]

    @property
    def sent(self) -> int:
        marker = self.path / "sent"
        return int(marker.read_text()) if marker.is_file() else 0

    def _mark_sent(self, count: int) -> None:
        tmp = self.path / "sent.tmp"
        tmp.write_text(str(count))
        tmp.replace(self.path / "sent")

    @property
    def uploaded(self) -> bool:
        return (self.path / "uploaded").is_file()

    @property
    def ended(self) -> bool:
        return any(op["op"] == "end" for op in self.ops())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while sending, so that the run itself and an upload command never send the same writes twice."""
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def apply(client: Any, run_id: str, op: dict[str, Any], spool: Path | None = None) -> None:
    """Send one write ``op`` for ``run_id`` through ``client`` (an ``MlflowClient``)."""
    from mlflow.entities import Metric, Param, RunTag

    kind = op["op"]
    if kind == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step) for k, v, ts, step in op.get("metrics", [])],
            params=[Param(k, v) for k, v in op.get("params", [])],
            tags=[RunTag(k, v) for k, v in op.get("tags", [])],
        )
    elif kind == "text":
        client.log_text(run_id, op["text"], op["path"])
    elif kind == "file":
        parent = os.path.dirname(op["file"])
        client.log_artifact(run_id, str(Path(spool) / "files" / op["file"]), artifact_path=parent or None)
    elif kind == "inputs":
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(**op["dataset"]), [InputTag("mlflow.data.context", op.get("context", "train"))])]
        for attempt in range(3):
            try:
                client.log_inputs(run_id, inputs)
                break
            except Exception as err:  # noqa: BLE001 - only the race below is retried
                if attempt == 2 or not _concurrent_insert(err):
                    raise
                time.sleep(0.2 * (attempt + 1))
    elif kind == "end":
        client.set_terminated(run_id, op["status"])
    else:
        raise ValueError(f"unknown spooled write {kind!r}")


def _concurrent_insert(err: BaseException) -> bool:
    """Whether ``err`` is the store's unique-key violation when two runs log the same new dataset at once: MLflow
    looks the dataset up, then inserts it, so the second insert fails; tried again, it finds the first one's row."""
    text = str(err)
    return any(s in text for s in ("UniqueViolation", "IntegrityError", "UNIQUE constraint failed", "duplicate key"))


def replay(spool: Spool, client: Any) -> int:
    """Send the writes of ``spool`` the server does not have yet, in order, recording progress after each one.
    Returns how many were sent; an error (server unreachable again) propagates, progress kept."""
    run_id = spool.info["run_id"]
    with spool.locked():
        ops, done = spool.ops(), spool.sent
        for index in range(done, len(ops)):
            apply(client, run_id, ops[index], spool.path)
            spool._mark_sent(index + 1)
        if ops and ops[-1]["op"] == "end":
            (spool.path / "uploaded").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        return len(ops) - done


def upload(path: Path, tracking_uri: str | None = None) -> str:
    """Upload one spool; returns a one-line report. Raises ``RuntimeError`` with the reason when it cannot."""
    from mlflow.tracking import MlflowClient

    spool = Spool(path)
    if not (spool.path / "run.json").is_file():
        raise RuntimeError(f"{path} is not a run's spool (no run.json)")
    info = spool.info
    if spool.uploaded:
        return f"run {info['run_id']}: already uploaded ({spool.sent} writes)"
    ended = spool.ended
    if not ended and info.get("host") == socket.gethostname() and process_alive(int(info.get("pid", 0))):
        raise RuntimeError(f"run {info['run_id']} is still going (process {info['pid']}): it sends its writes itself "
                           "once the server answers")
    uri = tracking_uri or info["tracking_uri"]
    client = MlflowClient(tracking_uri=uri)
    try:
        sent = replay(spool, client)
        if not ended:  # the process died while the server was down: nothing will close the run but us
            apply(client, info["run_id"], {"op": "batch", "tags": [["failure_reason", "the run's process ended while "
                                                                    "the tracking server was unreachable"]]})
            spool.add({"op": "end", "status": "FAILED"})
            sent += replay(spool, client)
    except Exception as err:  # noqa: BLE001 - reported in one line; progress is kept
        message = " ".join(str(err).split())[:300]
        raise RuntimeError(f"run {info['run_id']}: {spool.sent} of {len(spool.ops())} writes sent, then: {message}") from None
    status = next(op["status"] for op in reversed(spool.ops()) if op["op"] == "end")
    return f"run {info['run_id']}: {sent} writes uploaded to {uri}, run {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.upload", description=__doc__.split("\n\n")[0])
    parser.add_argument("spools", nargs="+", type=Path, help="spool directories (.../mlflow-spool/<run id>)")
    parser.add_argument("--tracking-uri", default=None, help="default: the server the run was logging to")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our own line says it
    failed = 0
    for path in args.spools:
        try:
            print(upload(path, args.tracking_uri), flush=True)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
