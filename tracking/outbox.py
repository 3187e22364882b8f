"""Sending tracking records to MLflow, and keeping them in a local outbox while it cannot be reached.

A record is a plain JSON-able dict (an "op"): ``create_run``, ``batch`` (metrics, params, tags),
``artifact`` or ``status``. :class:`Sender` applies ops to one tracking URI and is what makes
re-sending safe: it remembers, per run, the last task and the last training step already stored
(the run tags ``mergan.last_task`` / ``mergan.last_step``, written in the same batch as the
metrics they cover) and drops anything at or below them, so a (metric, step) is never logged
twice, whether an op is re-sent from the outbox or a restarted trial trains a task again.

The outbox is a folder of append-only JSONL files, one per logging session, each starting with
a header naming the tracking URI. :func:`flush_file` sends a file's ops in order, stops at the
first transient failure and rewrites the remainder; ops the server refuses for good (a 4xx,
a missing local file) go to ``<session>.rejected.jsonl`` with the reason, so one bad record
never blocks the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

logger = logging.getLogger("tracking.outbox")

Op = dict[str, Any]
PLACEHOLDER = "local:"  # prefix of run ids made up while the server could not be reached
TAG_RUN_KEY = "mergan.run_key"
TAG_LAST_TASK = "mergan.last_task"
TAG_LAST_STEP = "mergan.last_step"
OUTBOX_SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected.jsonl"
# MLflow's log_batch limits per request.
MAX_METRICS, MAX_PARAMS, MAX_ENTITIES = 1000, 100, 1000


class TrackingWarning(UserWarning):
    """The tracking store could not take a record; it was kept locally (or dropped, if refused)."""


class PermanentError(Exception):
    """An op that will never succeed (refused by the server, local file gone)."""


def is_permanent(error: BaseException) -> bool:
    """True for errors a retry cannot fix: MLflow 4xx answers other than timeouts and rate limits."""
    if isinstance(error, PermanentError):
        return True
    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        return 400 <= status < 500 and status not in (408, 429)
    return False


def now_ms() -> int:
    return int(time.time() * 1000)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool: what MLflow takes as a metric value."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class RunState:
    """What a run already holds, as far as re-sending is concerned."""

    last_task: int = 0
    last_step: int = 0
    params: dict[str, str] = field(default_factory=dict)
    experiment_id: str | None = None


class Sender:
    """Applies ops to one tracking URI; raises on failure (see :func:`is_permanent`).

    The MLflow client is made on first use, so that a store that cannot be opened fails a send
    (and the records go to the outbox) instead of the run's start.
    """

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self._client: MlflowClient | None = None
        self.ids: dict[str, str] = {}  # placeholder -> real run id
        self.runs: dict[str, RunState] = {}
        self.refused: set[str] = set()  # placeholders whose create_run was refused for good

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = open_client(self.tracking_uri)
        return self._client

    def resolve(self, run: str | None) -> str | None:
        return self.ids.get(run, run) if run else run

    def state(self, run_id: str) -> RunState:
        """The run's dedup state, read from its tags and params the first time it is needed."""
        if run_id not in self.runs:
            run = self.client.get_run(run_id)
            self.runs[run_id] = RunState(
                last_task=int(run.data.tags.get(TAG_LAST_TASK, 0)),
                last_step=int(run.data.tags.get(TAG_LAST_STEP, 0)),
                params=dict(run.data.params),
                experiment_id=run.info.experiment_id,
            )
        return self.runs[run_id]

    def send(self, op: Op) -> None:
        handler = getattr(self, f"_send_{op['op']}", None)
        if handler is None:
            raise PermanentError(f"unknown record type {op['op']!r}")
        try:
            handler(op)
        except Exception as error:
            if op["op"] == "create_run" and is_permanent(error):
                self.refused.add(op["run"])  # so that its run's other records are refused too
            raise

    # -- ops ------------------------------------------------------------------------------
    def _send_create_run(self, op: Op) -> None:
        placeholder = op["run"]
        if placeholder in self.ids:
            return
        parent = self.resolve(op.get("parent"))
        if parent and parent.startswith(PLACEHOLDER):
            raise PermanentError(f"parent run {parent} was never created")
        experiment_id = (self.state(parent).experiment_id if parent
                         else get_or_create_experiment(self.client, op["experiment"],
                                                       op.get("artifact_location")))
        tags = {**op["tags"], **({"mlflow.parentRunId": parent} if parent else {})}
        run_id = self._find_existing(experiment_id, op, parent)
        if run_id is not None:
            # The run keeps its first key; this session's key becomes an alias, found by _lookup.
            key = tags.pop(TAG_RUN_KEY)
            tags[_alias(key)] = "1"
            self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                                  synchronous=True)
            logger.info("continuing MLflow run %s", run_id)
        else:
            run = self.client.create_run(experiment_id, start_time=op.get("time"), tags=tags,
                                         run_name=op.get("run_name"))
            run_id = run.info.run_id
            self.runs[run_id] = RunState(experiment_id=experiment_id)
        self.ids[placeholder] = run_id

    def _find_existing(self, experiment_id: str, op: Op, parent: str | None) -> str | None:
        """The run this op created before (same run key), or else one with all of ``find_tags``."""
        key = op["tags"][TAG_RUN_KEY]
        searches = [{TAG_RUN_KEY: key}, {_alias(key): "1"}]
        if op.get("find_tags"):
            searches.append({**op["find_tags"], **({"mlflow.parentRunId": parent} if parent else {})})
        for tags in searches:
            filter_string = " and ".join(f"tags.`{k}` = {quote(v)}" for k, v in tags.items())
            runs = self.client.search_runs([experiment_id], filter_string, max_results=1,
                                           order_by=["attributes.start_time ASC"])
            if runs:
                return runs[0].info.run_id
        return None

    def _send_batch(self, op: Op) -> None:
        run_id = self._real(op["run"])
        state = self.state(run_id)
        task = op.get("task")
        if task is not None and task <= state.last_task:
            return  # this task's records are stored already
        metrics = [Metric(k, float(v), int(ts), int(s)) for k, v, ts, s in op.get("metrics", [])]
        if op.get("kind") == "step":
            metrics = [m for m in metrics if m.step > state.last_step]
        params = []
        for key, value in op.get("params", []):
            value = str(value)[:6000]
            if key not in state.params:
                params.append(Param(key, value))
            elif state.params[key] != value:
                logger.warning("run %s already has param %s=%r; not changing it to %r",
                               run_id, key, state.params[key], value)
        tags = [RunTag(k, str(v)) for k, v in op.get("tags", [])]
        if op.get("kind") == "step" and metrics:
            tags.append(RunTag(TAG_LAST_STEP, str(max(m.step for m in metrics))))
        if task is not None:
            tags.append(RunTag(TAG_LAST_TASK, str(task)))
        # Metrics and params first, the marker tags last: a marker is stored only after what it covers.
        for chunk in _chunks(metrics, MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)
        for chunk in _chunks(params, MAX_PARAMS):
            self.client.log_batch(run_id, params=chunk, synchronous=True)
        for chunk in _chunks(tags, MAX_ENTITIES):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)
        state.params.update({p.key: p.value for p in params})
        if op.get("kind") == "step" and metrics:
            state.last_step = max(state.last_step, max(m.step for m in metrics))
        if task is not None:
            state.last_task = max(state.last_task, task)

    def _send_artifact(self, op: Op) -> None:
        run_id = self._real(op["run"])
        task = op.get("task")
        if task is not None and task <= self.state(run_id).last_task:
            return
        path = op["path"]
        if not os.path.exists(path):
            raise PermanentError(f"artifact file {path} no longer exists")
        if os.path.isdir(path):
            self.client.log_artifacts(run_id, path, op.get("artifact_path"))
        else:
            self.client.log_artifact(run_id, path, op.get("artifact_path"))

    def _send_status(self, op: Op) -> None:
        run_id = self._real(op["run"])
        if op["status"] == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        else:
            self.client.set_terminated(run_id, op["status"], end_time=op.get("time"))

    def _real(self, run: str) -> str:
        """The real id of ``run``; a placeholder made by another process is looked up by its run key."""
        run_id = self.resolve(run)
        if run_id is None or run_id in self.refused:
            raise PermanentError(f"run {run} could not be created (its create_run record was refused)")
        if run_id.startswith(PLACEHOLDER):
            found = self._lookup(run_id[len(PLACEHOLDER):])
            if found is None:  # its create_run record is still on its way (another outbox file)
                raise RuntimeError(f"run {run} is not created yet; its create_run record has not been sent")
            self.ids[run] = run_id = found
        return run_id

    def _lookup(self, run_key: str) -> str | None:
        """The run created (or continued) by the session ``run_key``, in any experiment."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        for filter_string in (f"tags.`{TAG_RUN_KEY}` = {quote(run_key)}", f"tags.`{_alias(run_key)}` = '1'"):
            for start in range(0, len(experiments), 100):
                runs = self.client.search_runs(experiments[start:start + 100], filter_string, max_results=1)
                if runs:
                    return runs[0].info.run_id
        return None


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client for ``tracking_uri``; a new SQLite store's tables are created by one process at a time.

    MLflow creates (and migrates) an SQLite store's schema when a client first opens it; several
    processes doing that at once on a fresh file fail with "table ... already exists". The lock
    file ``<database>.lock`` beside the database serialises it; later opens find the tables made.
    """
    if not tracking_uri.startswith("sqlite:///") or ":memory:" in tracking_uri:
        return MlflowClient(tracking_uri=tracking_uri)
    database = Path(tracking_uri[len("sqlite:///"):])
    with _file_lock(database.with_name(database.name + ".lock")):
        return MlflowClient(tracking_uri=tracking_uri)


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing; race-safe."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another trial created it first
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise PermanentError(f"MLflow experiment {name!r} is deleted; restore it "
                             f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                             f"or choose another name")
    return experiment.experiment_id


def _alias(run_key: str) -> str:
    return f"{TAG_RUN_KEY}.{run_key}"


def quote(value: Any) -> str:
    """``value`` as a quoted string literal of MLflow's search filter syntax."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- the outbox on disk -------------------------------------------------------------------
@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock between processes, held on ``path`` (created if missing, never removed:
    removing a lock file while another process waits on it would let a third one in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(directory: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock over one outbox folder (the trainer and ``mergan sync`` may both flush)."""
    return _file_lock(directory / ".lock")


class Outbox:
    """One session's file of records that did not reach the tracking store yet."""

    def __init__(self, directory: str | os.PathLike, session: str, tracking_uri: str):
        self.directory = Path(directory)
        self.session = session
        self.tracking_uri = tracking_uri
        self.path = self.directory / f"{session}{OUTBOX_SUFFIX}"
        self.files = self.directory / f"{session}.files"  # artifacts staged by the logger

    def append(self, ops: list[Op]) -> None:
        if not ops:
            return
        with _locked(self.directory):
            new = not self.path.exists()
            with open(self.path, "a") as handle:
                if new:
                    handle.write(json.dumps(_header(self.tracking_uri)) + "\n")
                handle.writelines(json.dumps(op) + "\n" for op in ops)
                handle.flush()
                os.fsync(handle.fileno())

    def reject(self, op: Op, error: BaseException) -> None:
        """Keep an op the store refused for good in ``<session>.rejected.jsonl``, with a warning."""
        _reject(self.path, _header(self.tracking_uri), op, error)

    def pending(self) -> list[Op]:
        return read_file(self.path)[1] if self.path.exists() else []

    def __len__(self) -> int:
        return len(self.pending())

    def flush(self, sender: Sender) -> FlushResult:
        return flush_file(self.path, sender)


def _header(tracking_uri: str) -> Op:
    return {"op": "header", "version": 1, "tracking_uri": tracking_uri, "created": now_ms()}


def read_file(path: Path) -> tuple[Op, list[Op]]:
    """(header, ops) of one outbox file; a torn last line (a crash mid-write) is skipped."""
    header: Op = {}
    ops: list[Op] = []
    with open(path) as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s line %d is not complete JSON; skipping it", path, number + 1)
                continue
            if record.get("op") == "header":
                header = record
            else:
                ops.append(record)
    return header, ops


@dataclass
class FlushResult:
    sent: int = 0
    left: int = 0
    rejected: int = 0
    error: str | None = None  # the transient error that stopped the flush


def flush_file(path: Path, sender: Sender) -> FlushResult:
    """Send one outbox file's ops in order; keep what is left; remove the file when all went."""
    path = Path(path)
    result = FlushResult()
    with _locked(path.parent):
        if not path.exists():
            return result
        header, ops = read_file(path)
        index = 0
        while index < len(ops):
            op = ops[index]
            try:
                sender.send(op)
            except Exception as error:  # noqa: BLE001 - any failure must leave the op in the outbox
                if not is_permanent(error):
                    result.error = f"{type(error).__name__}: {error}"
                    break
                _reject(path, header, op, error)
                result.rejected += 1
            else:
                result.sent += 1
                _discard_staged(op)
            index += 1
        remaining = [_substitute(op, sender.ids) for op in ops[index:]]
        result.left = len(remaining)
        if remaining:
            _rewrite(path, header, remaining)
        else:
            path.unlink()
            staged = path.with_name(path.name[: -len(OUTBOX_SUFFIX)] + ".files")
            shutil.rmtree(staged, ignore_errors=True)
    return result


def _substitute(op: Op, ids: dict[str, str]) -> Op:
    op = dict(op)
    for key in ("run", "parent"):
        if op.get(key) in ids:
            op[key] = ids[op[key]]
    return op


def _rewrite(path: Path, header: Op, ops: list[Op]) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        for record in [header, *ops]:
            out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def _reject(path: Path, header: Op, op: Op, error: BaseException) -> None:
    rejected = path.with_name(path.name[: -len(OUTBOX_SUFFIX)] + REJECTED_SUFFIX)
    with open(rejected, "a") as handle:
        if rejected.stat().st_size == 0:
            handle.write(json.dumps(header) + "\n")
        handle.write(json.dumps({**op, "error": f"{type(error).__name__}: {error}"}) + "\n")
    warnings.warn(f"MLflow refused a {op['op']} record for good ({error}); kept it in {rejected}",
                  TrackingWarning, stacklevel=2)


def _discard_staged(op: Op) -> None:
    if op.get("op") == "artifact" and op.get("staged"):
        with contextlib.suppress(OSError):
            os.remove(op["path"])


def outbox_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Every outbox file in or below the given folders (or the given files themselves)."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_file() and item.name.endswith(OUTBOX_SUFFIX):
            found.append(item)
        elif item.is_dir():
            found.extend(p for p in sorted(item.rglob(f"*{OUTBOX_SUFFIX}"))
                         if not p.name.endswith(REJECTED_SUFFIX))
    return found
