"""MLflow as a mirror of run folders: each folder's record (``mergan/record.py``) copied into one MLflow run.

:func:`mirror_folder` brings a folder's MLflow run up to date with its record, and only that: the
run holds marker tags (``mergan.last_task``, ``mergan.last_step``, ``mergan.starts``), each sent in
the same batch as what it covers, and what lies at or below them is never sent again; metrics carry
the record's own timestamps, so even a batch repeated after a crash stores nothing twice in an SQL
store. The run is found by the record's ``run_key`` (tag ``mergan.run_key``) or created. Where a
folder's records go is kept in ``<run>/mirrors/mlflow.json`` (:class:`Target`); ``mergan sync``
replays folders with it. :class:`MLflowMirror` is the trainer callback that mirrors while a run
goes; when MLflow cannot be reached, nothing is lost or queued: the record already holds it all.

What a run holds: params = the config's fields and the tasks' ``extra`` values; tags = method,
dataset, preset, version, commit, device, folder, the record's labels; metrics at ``step = task``
and training values at ``step = global step`` (``docs/interfaces.md``); artifacts ``config.yaml``,
``accuracy/accuracy_matrix.{csv,json,png}``, ``samples/task_{t}.png``, ``checkpoint/checkpoint.pt``
(the final one, when the run finished).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mergan.callbacks import Callback
from mergan.evaluation.metrics import LOWER_IS_BETTER
from mergan.files import atomic_path
from mergan.record import CONFIG_FILE, RECORD_FILE, Line, Record, read_record, run_folders
from mergan.run_folder import MIRRORS
from tracking.artifacts import square_matrix, write_matrix_csv, write_matrix_json, write_matrix_png
from tracking.store import (
    DEFAULT_EXPERIMENT,
    configure_http_client,
    default_artifact_location,
    file_lock,
    get_or_create_experiment,
    is_permanent,
    open_client,
    probe,
    quote,
    refusal_advice,
    resolve_tracking_uri,
    short_error,
)

logger = logging.getLogger("tracking.mirror")

STATE_FILE = "mlflow.json"  # in <run>/mirrors/: the folder's Target
TAG_RUN_KEY, TAG_LAST_TASK, TAG_LAST_STEP, TAG_STARTS = "mergan.run_key", "mergan.last_task", "mergan.last_step", \
    "mergan.starts"
MAX_METRICS, MAX_PARAMS, MAX_VALUE = 1000, 100, 6000  # MLflow's limits per log_batch, and on a param's text


class TrackingWarning(UserWarning):
    """MLflow could not take a run's records now; they wait in the run folder's record."""


@dataclass
class Target:
    """Where a run folder's record goes in MLflow; saved in ``<run>/mirrors/mlflow.json``."""

    tracking_uri: str
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None
    log_checkpoint: bool = True
    run_id: str | None = None  # once the run exists
    mirrored_sha256: str | None = None  # of the record's bytes that the run holds

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Target | None:
        path = Path(folder) / MIRRORS / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def save(self, folder: str | os.PathLike) -> None:
        path = Path(folder) / MIRRORS / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(asdict(self), indent=1))


@dataclass
class MirrorResult:
    run_id: str
    steps: int = 0  # step lines sent now
    tasks: int = 0
    status: str = ""


def unsent(folder: str | os.PathLike) -> bool:
    """True when the folder's record holds lines its MLflow run (if it has a target) has not received."""
    target = Target.load(folder)
    path = Path(folder) / RECORD_FILE
    return target is not None and path.is_file() and _complete_digest(path.read_bytes()) != target.mirrored_sha256


def run_id_of(folder: str | os.PathLike, tracking_uri: str | None = None) -> str | None:
    """The MLflow run that mirrors ``folder`` (in ``tracking_uri``'s store, when given)."""
    target = Target.load(folder)
    if target is None or (tracking_uri and resolve_tracking_uri(tracking_uri) != target.tracking_uri):
        return None
    return target.run_id


def _complete_digest(data: bytes) -> str:
    return hashlib.sha256(data[: data.rfind(b"\n") + 1]).hexdigest()


# -- one pass -----------------------------------------------------------------------------
def mirror_folder(folder: str | os.PathLike, target: Target | None = None, client: Any = None) -> MirrorResult:
    """Send what ``folder``'s record holds and its MLflow run lacks; returns what was sent. Raises on failure."""
    folder = Path(folder)
    target = target or Target.load(folder) or Target(resolve_tracking_uri())
    with file_lock(folder / MIRRORS / "mlflow.lock"):  # the trainer's mirror and `mergan sync` may meet here
        data = (folder / RECORD_FILE).read_bytes() if (folder / RECORD_FILE).is_file() else b""
        record = read_record(folder)
        client = client or open_client(target.tracking_uri)
        run = _find_or_create_run(client, record, target)
        target.run_id = run.info.run_id
        result = _send(client, run, record, target)
        target.mirrored_sha256 = _complete_digest(data)
        target.save(folder)
    return result


def _find_or_create_run(client: Any, record: Record, target: Target) -> Any:
    if target.run_id:
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(target.run_id)
        except MlflowException as error:
            if error.get_http_status_code() != 404:
                raise
        else:
            if run.info.lifecycle_stage == "active" and run.data.tags.get(TAG_RUN_KEY) == record.run_key:
                return run
    if target.parent_run_id:
        experiment_id = client.get_run(target.parent_run_id).info.experiment_id
    else:
        location = default_artifact_location(target.tracking_uri, target.experiment)
        experiment_id = get_or_create_experiment(client, target.experiment, location)
    found = client.search_runs([experiment_id], f"tags.`{TAG_RUN_KEY}` = {quote(record.run_key)}", max_results=1,
                               order_by=["attributes.start_time ASC"])
    if found:
        logger.info("continuing MLflow run %s", found[0].info.run_id)
        return found[0]
    parent = {"mlflow.parentRunId": target.parent_run_id} if target.parent_run_id else {}
    tags = {TAG_RUN_KEY: record.run_key, **parent}
    return client.create_run(experiment_id, start_time=record.start_time, tags=tags, run_name=record.name)


def _send(client: Any, run: Any, record: Record, target: Target) -> MirrorResult:
    from mlflow.entities import Metric, Param, RunTag

    run_id, held = run.info.run_id, run.data.tags
    last_task, last_step = int(held.get(TAG_LAST_TASK, 0)), int(held.get(TAG_LAST_STEP, 0))
    result = MirrorResult(run_id)
    params = [Param(k, str(v)[:MAX_VALUE]) for k, v in record.params().items() if k not in run.data.params]
    for start in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[start:start + MAX_PARAMS], synchronous=True)
    tags = record.tags()
    if "git_commit" in tags:
        tags["mlflow.source.git.commit"] = tags["git_commit"]
    tags = [RunTag(k, v[:MAX_VALUE]) for k, v in tags.items() if held.get(k) != v[:MAX_VALUE]]
    if len(record.starts) > int(held.get(TAG_STARTS, 0)):  # a start or resumption not sent yet: its config
        if (record.folder / CONFIG_FILE).is_file():
            client.log_artifact(run_id, str(record.folder / CONFIG_FILE))
        tags.append(RunTag(TAG_STARTS, str(len(record.starts))))
    if tags:
        client.log_batch(run_id, tags=tags, synchronous=True)

    # Training values, whole steps per batch, each batch with the marker of its last step.
    batch: list[Metric] = []
    for line in [s for s in record.steps if s["step"] > last_step]:
        values = [Metric(k, float(v), line["time"], line["step"]) for k, v in line["values"].items()]
        if batch and len(batch) + len(values) >= MAX_METRICS:
            client.log_batch(run_id, metrics=batch, tags=[RunTag(TAG_LAST_STEP, str(batch[-1].step))], synchronous=True)
            batch = []
        batch += values
        result.steps += 1
    if batch:
        client.log_batch(run_id, metrics=batch, tags=[RunTag(TAG_LAST_STEP, str(batch[-1].step))], synchronous=True)

    # Each task: its files first, then its values with the marker that says it is stored.
    for line in [t for t in record.tasks if t["task"] > last_task]:
        _log_task_files(client, run_id, record, line)
        metrics = [Metric(k, v, line.get("time") or 0, line["task"]) for k, v in record.task_values(line).items()]
        for start in range(0, len(metrics), MAX_METRICS - 1):
            done = start + MAX_METRICS - 1 >= len(metrics)
            client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS - 1], synchronous=True,
                             tags=[RunTag(TAG_LAST_TASK, str(line["task"]))] if done else [])
        result.tasks += 1

    result.status = record.status
    if result.status == "RUNNING":
        # Running again only after a start later than the run's end: a driver that marked it KILLED meanwhile
        # (a stopped sweep) is not contradicted by a sync of what came before.
        resumed = record.starts and (run.info.end_time or 0) < record.starts[-1]["time"]
        if run.info.status != "RUNNING" and resumed:
            client.update_run(run_id, status="RUNNING")
    elif run.info.status != result.status:
        checkpoint = record.path(record.tasks[-1].get("checkpoint_path")) if record.tasks else None
        if (result.status == "FINISHED" and target.log_checkpoint and checkpoint
                and (checkpoint / "checkpoint.pt").is_file()):
            client.log_artifact(run_id, str(checkpoint / "checkpoint.pt"), "checkpoint")
        client.set_terminated(run_id, result.status, end_time=record.end_time)
    return result


def _log_task_files(client: Any, run_id: str, record: Record, line: Line) -> None:
    """The task's accuracy and quality matrices (CSV, JSON, heatmap) and sample grid, made in a temporary folder."""
    task = line["task"]
    with tempfile.TemporaryDirectory() as folder:
        accuracy = Path(folder) / "accuracy"
        accuracy.mkdir()
        matrix = square_matrix(line["accuracy_matrix"], line["num_tasks"])
        summary = {"after_task": task, "num_tasks": line["num_tasks"], "metrics": line["metrics"],
                   "class_accuracy": line["class_accuracy"]}
        write_matrix_csv(matrix, accuracy / "accuracy_matrix.csv")
        write_matrix_json(matrix, accuracy / "accuracy_matrix.json", **summary)
        write_matrix_png(matrix, accuracy / "accuracy_matrix.png",
                         title=f"{record.config.get('method.method')}: accuracy after task {task}")
        client.log_artifacts(run_id, str(accuracy), "accuracy")
        quality_matrices = line.get("quality_matrices") or {}
        if quality_matrices:
            quality = Path(folder) / "quality"
            quality.mkdir()
            for name, values in quality_matrices.items():
                matrix = square_matrix(values, line["num_tasks"])
                scaled = name.split("_")[0] in LOWER_IS_BETTER  # FID, KID: unbounded; the others are shares
                write_matrix_csv(matrix, quality / f"{name}_matrix.csv")
                write_matrix_json(matrix, quality / f"{name}_matrix.json", matrix_key=f"{name}_matrix",
                                  after_task=task, num_tasks=line["num_tasks"])
                write_matrix_png(matrix, quality / f"{name}_matrix.png", measure=name,
                                 value_range=None if scaled else (0.0, 1.0),
                                 title=f"{record.config.get('method.method')}: {name} after task {task}")
            client.log_artifacts(run_id, str(quality), "quality")
        samples = record.path(line.get("samples_path"))
        if samples is not None and samples.is_file():
            copy = Path(folder) / f"task_{task}{samples.suffix or '.png'}"
            shutil.copyfile(samples, copy)
            client.log_artifact(run_id, str(copy), "samples")


def sync_folders(paths: list[str | os.PathLike], tracking_uri: str | None = None,
                 experiment: str | None = None) -> list[tuple[Path, MirrorResult | str]]:
    """``mergan sync``: mirror every run folder at or below ``paths`` (to its own target unless told another)."""
    configure_http_client()
    done: list[tuple[Path, MirrorResult | str]] = []
    for folder in run_folders(paths):
        target = Target.load(folder) or Target(resolve_tracking_uri(tracking_uri))
        if tracking_uri or experiment:  # elsewhere: the run there is found anew (by its key) or made
            target = Target(resolve_tracking_uri(tracking_uri or target.tracking_uri), experiment or target.experiment,
                            log_checkpoint=target.log_checkpoint)
        try:
            done.append((folder, mirror_folder(folder, target)))
        except Exception as error:  # noqa: BLE001 - one folder's failure is reported; the others go on
            reason = refusal_advice(target.tracking_uri, error) if is_permanent(error) else short_error(error)
            done.append((folder, f"{type(error).__name__}: {reason}"))
    return done


# -- while a run goes ---------------------------------------------------------------------
class MLflowMirror(Callback):
    """Mirrors the run folder's record to MLflow as the run goes; place it after the trainer's ``RunRecord``.

    Syncs at the start, at most every ``interval_s`` while steps come in, after every task and at the
    end. While MLflow cannot be reached it is tried again every ``interval_s`` (a quick ``/health``
    probe first); a refusal (login, permission) stops it for the run. Use it as a context manager
    around ``record.ending()`` so that the record's last word (FINISHED, FAILED, KILLED) is sent too.
    """

    def __init__(self, target: Target, interval_s: float = 10.0):
        configure_http_client()
        self.target, self.interval_s = target, interval_s
        self.folder: Path | None = None
        self.online, self.refused = True, False
        self._client: Any = None
        self._last_try = 0.0

    @property
    def run_id(self) -> str | None:
        return self.target.run_id

    def on_run_start(self, trainer: Any) -> None:
        self.folder = Path(trainer.out_dir)
        self.target.save(self.folder)  # a resumed run finds its MLflow run again by the record's run key
        self.sync(force=True)

    def on_step(self, trainer: Any, info: Any) -> None:
        self.sync()

    def on_task_end(self, trainer: Any, result: Any) -> None:
        self.sync(force=True)

    def on_run_end(self, trainer: Any, results: list) -> None:
        self.sync(force=True)

    def sync(self, force: bool = False) -> bool:
        """Mirror what is new (when due, or ``force``); True when MLflow holds the whole record."""
        if self.folder is None or self.refused:
            return False
        if not force and time.monotonic() - self._last_try < self.interval_s:
            return False
        self._last_try = time.monotonic()
        if not self.online and not probe(self.target.tracking_uri):
            return False
        try:
            self._client = self._client or open_client(self.target.tracking_uri)
            mirror_folder(self.folder, self.target, self._client)
        except Exception as error:  # noqa: BLE001 - training goes on whatever the store does
            self._fail(error)
            return False
        if not self.online:
            logger.warning("MLflow at %s answers again; run %s is up to date", self.target.tracking_uri, self.run_id)
        self.online = True
        return True

    def _fail(self, error: BaseException) -> None:
        if is_permanent(error):
            self.refused = True
            warnings.warn(f"MLflow refuses this run's records: {refusal_advice(self.target.tracking_uri, error)}; "
                          f"training goes on and its record stays in {self.folder}", TrackingWarning, stacklevel=3)
        elif self.online:
            warnings.warn(f"MLflow at {self.target.tracking_uri} failed ({type(error).__name__}: "
                          f"{short_error(error)}); training goes on and its record in {self.folder} is sent when "
                          f"the store answers again", TrackingWarning, stacklevel=3)
        self.online = False

    def finish(self) -> bool:
        """A last sync; a warning with the command that sends the rest when MLflow does not hold it all."""
        if self.folder is None or self.sync(force=True):
            return True
        warnings.warn(f"MLflow at {self.target.tracking_uri} does not hold all of this run yet; its record waits in "
                      f"{self.folder}: send it with `mergan sync {self.folder}`", TrackingWarning, stacklevel=2)
        return False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.finish()
