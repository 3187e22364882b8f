"""The trainer callback that logs one mergan run to MLflow, through the outbox.

Where runs go: ``tracking_uri`` when given, else ``MLFLOW_TRACKING_URI``, else an SQLite store
``mlflow.db`` in the working folder (artifacts beside it in ``mlartifacts/``). The same code
talks to a remote ``mlflow server`` (``platform/mlflow_server.py`` starts one).

What a run holds (see ``docs/interfaces.md`` for the metric names):
- params: ``ExperimentConfig.flat()`` plus the evaluator's identity; tags: method, dataset,
  git commit, mergan version, device, sweep and trial ids;
- metrics at ``step = task`` (``acc_task_{j}``, ``avg_acc``, ``bwt`` ... everything in
  ``TaskResult.metrics``) and at ``step = global training step`` (losses, steps_per_second);
- artifacts: ``config.yaml``, ``accuracy/accuracy_matrix.{csv,json,png}``,
  ``samples/task_{t}.png``, ``checkpoint/checkpoint.pt`` (final, optional).

Sweeps nest: :func:`tracking.sweep_run.start_sweep_run` makes the parent, each trial's :class:`MLflowCallback`
gets ``parent_run_id`` and ``trial_id`` and so a child run; :func:`~tracking.sweep_run.finish_sweep_run` records the
best trial. A restarted trial finds its run again (by ``run_id`` or the trial-id tag) and skips
what it holds already. When the tracking store cannot be reached, records go to an outbox
folder (``<out_dir>/mlflow_outbox`` by default) and are sent when it answers again, or by
``mergan sync``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mergan.callbacks import Callback, StepInfo, TaskResult
from mergan.config import FIELDS, ExperimentConfig, save_yaml
from mergan.settings import value_text
from tracking.artifacts import square_matrix, write_matrix_csv, write_matrix_json, write_matrix_png
from tracking.outbox import (
    PLACEHOLDER,
    TAG_RUN_KEY,
    FlushResult,
    Op,
    Outbox,
    Sender,
    TrackingWarning,
    flush_file,
    is_number,
    is_permanent,
    now_ms,
    outbox_files,
    read_file,
)
from tracking.provenance import git_commit, mergan_version
from tracking.store import (
    DEFAULT_EXPERIMENT,
    configure_http_client,
    default_artifact_location,
    probe,
    resolve_tracking_uri,
    short_error,
)

logger = logging.getLogger("tracking.callback")

OUTBOX_ENV = "MERGAN_MLFLOW_OUTBOX"  # a folder for every run's outbox instead of <out_dir>/mlflow_outbox
RUN_FILE = "mlflow_run.json"  # written in out_dir: which MLflow run holds this out_dir's records


# -- naming -------------------------------------------------------------------------------
def trial_run_name(method: str, values: Mapping[str, Any]) -> str:
    """``trial_run_name("ra", {"lambda_ra": 3e-3, "seed": 0})`` -> ``"ra lambda_ra=3e-3 seed=0"``."""
    parts = [method] + [f"{key.rsplit('.', 1)[-1]}={value_text(value)}" for key, value in values.items()]
    return " ".join(parts)


def _name_values(config: ExperimentConfig, keys: Sequence[str] | None) -> dict[str, Any]:
    """The values that name ``config``'s run: ``keys`` (default: its methods' ``name_knobs``), less
    the method fields that do not act in this run (an SFT trial of a sweep over lambda_ra), and the seed."""
    from mergan.methods import acting_knobs, name_knobs  # the methods import torch: only when a run is named

    bare = {name.rsplit(".", 1)[-1]: value for name, value in config.flat().items()}
    if keys is None:
        keys = name_knobs(config.methods, config.method.modules)
    acting = set(acting_knobs(config))
    method_fields = {*config.method.knobs(), *(name for name, (section, _) in FIELDS.items() if section == "method")}
    chosen = {}
    for key in keys:
        name = key.rsplit(".", 1)[-1]
        if name in bare and name not in ("method", "seed") and (name in acting or name not in method_fields):
            chosen[name] = bare[name]
    return {**chosen, "seed": config.run.seed}


# -- the trainer callback -----------------------------------------------------------------
class MLflowCallback(Callback):
    """Logs one mergan run to MLflow; see the module docstring for what the run holds.

    Arguments: ``tracking_uri`` (see :func:`resolve_tracking_uri`); ``experiment`` (default
    ``MLFLOW_EXPERIMENT_NAME`` or "mergan"; a child run uses its parent's); ``run_id`` to continue
    an existing run; ``parent_run_id``, ``sweep_id``, ``trial_id`` inside a sweep (a run with the
    same trial id under the same parent is continued); ``run_name`` (default: method, the key
    hyperparameters ``name_keys`` and the seed); ``config`` (default ``trainer.config``);
    ``outbox_dir`` (default ``MERGAN_MLFLOW_OUTBOX`` or ``<out_dir>/mlflow_outbox``); step metrics
    are sent at most every ``flush_interval_s``; while the store is unreachable, it is probed at
    most every ``probe_interval_s`` (and always at the end of a task and of the run).

    Use it as a context manager to mark the run FAILED/KILLED when training raises.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, *,
                 run_id: str | None = None, parent_run_id: str | None = None, sweep_id: str | None = None,
                 trial_id: str | None = None, run_name: str | None = None,
                 name_keys: Sequence[str] | None = None, tags: Mapping[str, Any] | None = None,
                 config: ExperimentConfig | None = None, outbox_dir: str | os.PathLike | None = None,
                 log_checkpoint: bool = True, log_samples: bool = True,
                 flush_interval_s: float = 10.0, probe_interval_s: float = 10.0, skip_params: Sequence[str] = ()):
        configure_http_client()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        self.parent_run_id = parent_run_id
        self.sweep_id, self.trial_id = sweep_id, trial_id
        self.run_name, self.name_keys = run_name, name_keys
        self.extra_tags = dict(tags or {})
        self.config = config
        self.log_checkpoint, self.log_samples = log_checkpoint, log_samples
        self.flush_interval_s, self.probe_interval_s = flush_interval_s, probe_interval_s
        self.session = uuid.uuid4().hex
        self._run_ref: str | None = run_id  # a real run id, or a placeholder while offline
        self._outbox_dir = outbox_dir
        self._outbox: Outbox | None = None
        self._sender: Sender | None = None
        self._online = True
        self._last_probe = 0.0
        # [key, value, timestamp, step] waiting to be batched. Not MLflow's async logging
        # (``log_batch(synchronous=False)``, MLFLOW_ENABLE_ASYNC_LOGGING), which batches too: its queue
        # lives in memory and drops what the store refuses after its retries, where these records must
        # go to the outbox file in order, each batch before the ``mergan.last_step`` tag that covers it.
        self._steps: list[list[Any]] = []
        self._last_flush = time.monotonic()
        self._skip_task = 0  # tasks (and steps) the run held already when this session started
        self._skip_step = 0
        self._logged_params: set[str] = set()
        self._checkpoint: str | None = None
        self._out_dir: Path | None = None
        self._finished = False
        # Config fields this session leaves out of the params: a PBT trial's knobs change when it continues
        # from a checkpoint, and MLflow params cannot (their values per task are metrics, knob/<name>).
        self._skip_params = {name.rsplit(".", 1)[-1] for name in skip_params}

    # -- public state --------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        """The MLflow run id (None, or a ``local:`` placeholder, until the store answered)."""
        if self._sender is not None and self._run_ref:
            return self._sender.resolve(self._run_ref)
        return self._run_ref

    @property
    def online(self) -> bool:
        return self._online

    @property
    def outbox_path(self) -> Path | None:
        return self._outbox.path if self._outbox else None

    def pending_records(self) -> int:
        """Records waiting in this run's outbox folder (0 when everything reached the store)."""
        if self._outbox is None:
            return 0
        return sum(len(read_file(p)[1]) for p in outbox_files([self._outbox.directory]))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags on this run (e.g. ``diverged``), kept in the outbox like any record while offline."""
        if self._sender is None or self._run_ref is None:
            self.extra_tags.update({k: str(v) for k, v in tags.items()})  # set when the run starts
            return
        self._emit([{"op": "batch", "run": self._run_ref, "tags": [[k, str(v)[:5000]] for k, v in tags.items()]}])

    # -- hooks ---------------------------------------------------------------------------
    def on_run_start(self, trainer: Any) -> None:
        config = self.config = self.config or trainer.config
        self._out_dir = Path(config.run.out_dir).resolve()
        outbox_dir = Path(self._outbox_dir or os.environ.get(OUTBOX_ENV) or self._out_dir / "mlflow_outbox")
        self._outbox = Outbox(outbox_dir, self.session, self.tracking_uri)
        self._sender = Sender(self.tracking_uri)
        self._finished = False
        self._flush_earlier_sessions()
        flat = config.flat()
        tags = self._tags(config, trainer)
        ops: list[Op] = []
        if self._run_ref is None:
            self._run_ref = self._pending_trial_run() or self._create_run_op(config, tags, ops)
        else:
            ops.append({"op": "status", "run": self._run_ref, "status": "RUNNING"})
        staged = self._stage_dir("config")
        save_yaml(config, staged / "config.yaml")
        ops.append(self._artifact_op(staged / "config.yaml", None, staged=True))
        ops.append({"op": "batch", "run": self._run_ref, "params": [[k, str(v)] for k, v in flat.items()
                                                                    if k.rsplit(".", 1)[-1] not in self._skip_params],
                    "tags": [[k, v] for k, v in tags.items()]})
        self._emit(ops)
        if self._online and self.run_id and not self.run_id.startswith(PLACEHOLDER):
            state = self._sender.state(self.run_id)
            self._skip_task, self._skip_step = state.last_task, state.last_step
            if self._skip_task or self._skip_step:
                logger.info("MLflow run %s holds tasks 1..%d and steps up to %d already; skipping those",
                            self.run_id, self._skip_task, self._skip_step)
        self._write_run_file()

    def on_step(self, trainer: Any, info: StepInfo) -> None:
        if info.global_step <= self._skip_step or self._sender is None:
            return
        stamp = now_ms()
        values = {**info.losses, "steps_per_second": info.steps_per_second}
        self._steps.extend([key, float(value), stamp, info.global_step]
                           for key, value in values.items() if is_number(value))
        if len(self._steps) >= 900 or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self._flush_steps()
        if not self._online:
            self._reconnect()

    def on_task_end(self, trainer: Any, result: TaskResult) -> None:
        if self._sender is None:
            return
        self._flush_steps()
        if result.checkpoint_path:
            self._checkpoint = result.checkpoint_path
        if result.task <= self._skip_task:
            return
        self._emit(self._task_ops(result))
        self._reconnect(force=True)

    def on_run_end(self, trainer: Any, results: list[TaskResult]) -> None:
        for result in results:
            if result.checkpoint_path:
                self._checkpoint = result.checkpoint_path
        self.close("FINISHED")

    def close(self, status: str = "FINISHED") -> None:
        """Send what is buffered, log the final checkpoint (FINISHED only) and end the run."""
        if self._sender is None or self._finished:
            return
        self._finished = True
        self._flush_steps()
        ops: list[Op] = []
        if status == "FINISHED" and self.log_checkpoint and self._checkpoint:
            path = Path(self._checkpoint) / "checkpoint.pt"
            if path.is_file():
                ops.append(self._artifact_op(path, "checkpoint"))
        ops.append({"op": "status", "run": self._run_ref, "status": status, "time": now_ms()})
        self._emit(ops)
        if self._reconnect(force=True):
            self._tidy()
        else:
            warnings.warn(f"MLflow at {self.tracking_uri} could not be reached: {self.pending_records()} "
                          f"records of this run wait in {self._outbox.directory}; send them with "
                          f"`mergan sync --outbox {self._outbox.directory}`", TrackingWarning, stacklevel=2)

    def _tidy(self) -> None:
        """Remove this session's empty staging folder, and the outbox folder once it holds nothing."""
        shutil.rmtree(self._outbox.files, ignore_errors=True)
        folder = self._outbox.directory
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {".lock"}:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close("FINISHED")
        else:
            self.close("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    # -- building records ----------------------------------------------------------------
    def _tags(self, config: ExperimentConfig, trainer: Any) -> dict[str, str]:
        tags = {"method": config.method.method, "dataset": config.data.dataset, "preset": config.preset,
                "mergan_version": mergan_version(),
                "device": str(getattr(trainer, "device", None) or config.run.device),
                "out_dir": str(self._out_dir)}
        commit = git_commit()
        if commit:
            tags.update({"git_commit": commit, "mlflow.source.git.commit": commit})
        if self.sweep_id:
            tags["sweep_id"] = self.sweep_id
        if self.trial_id:
            tags["trial_id"] = self.trial_id
        tags.update({k: str(v) for k, v in self.extra_tags.items()})
        return tags

    def _create_run_op(self, config: ExperimentConfig, tags: dict[str, str], ops: list[Op]) -> str:
        placeholder = PLACEHOLDER + self.session
        name = self.run_name or trial_run_name(config.method.method, _name_values(config, self.name_keys))
        ops.append({
            "op": "create_run", "run": placeholder, "experiment": self.experiment,
            "artifact_location": default_artifact_location(self.tracking_uri, self.experiment),
            "parent": self.parent_run_id, "run_name": name, "time": now_ms(),
            "tags": {**tags, TAG_RUN_KEY: self.session, "mlflow.runName": name},
            "find_tags": {"trial_id": self.trial_id} if self.trial_id else None,
        })
        return placeholder

    def _task_ops(self, result: TaskResult) -> list[Op]:
        """Artifacts first, then one batch whose marker tag says the task is stored."""
        t = result.task
        stamp = now_ms()
        ops: list[Op] = []
        staged = self._stage_dir(f"task_{t}")
        matrix = square_matrix(result.accuracy_matrix, result.num_tasks)
        if result.accuracy_matrix:
            summary = {"after_task": t, "num_tasks": result.num_tasks, "metrics": result.metrics,
                       "class_accuracy": {str(c): a for c, a in result.class_accuracy.items()}}
            files = [write_matrix_csv(matrix, staged / "accuracy_matrix.csv"),
                     write_matrix_json(matrix, staged / "accuracy_matrix.json", **summary),
                     write_matrix_png(matrix, staged / "accuracy_matrix.png",
                                      title=f"{self.config.method.method}: accuracy after task {t}")]
            ops += [self._artifact_op(f, "accuracy", staged=True, task=t) for f in files]
        if self.log_samples and result.samples_path and os.path.isfile(result.samples_path):
            copy = staged / f"task_{t}{Path(result.samples_path).suffix or '.png'}"
            shutil.copyfile(result.samples_path, copy)
            ops.append(self._artifact_op(copy, "samples", staged=True, task=t))
        metrics = {k: v for k, v in result.metrics.items() if is_number(v)}
        for label, accuracy in result.class_accuracy.items():
            metrics.setdefault(f"acc_class_{label}", accuracy)
        metrics.update(train_seconds=result.train_seconds, eval_seconds=result.eval_seconds)
        params, tags = [], []
        for key in ("evaluator_cache_key", "evaluator_test_accuracy"):
            value = result.extra.get(key)
            if value is not None and key not in self._logged_params:
                params.append([key, str(value)])
                tags.append([key, str(value)])
                self._logged_params.add(key)
        ops.append({"op": "batch", "run": self._run_ref, "task": t, "params": params, "tags": tags,
                    "metrics": [[k, float(v), stamp, t] for k, v in metrics.items() if is_number(v)]})
        return ops

    def _artifact_op(self, path: Path, artifact_path: str | None, staged: bool = False,
                     task: int | None = None) -> Op:
        return {"op": "artifact", "run": self._run_ref, "path": str(path), "artifact_path": artifact_path,
                "staged": staged, "task": task}

    def _stage_dir(self, name: str) -> Path:
        folder = self._outbox.files / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _flush_steps(self) -> None:
        self._last_flush = time.monotonic()
        if self._steps:
            steps, self._steps = self._steps, []
            self._emit([{"op": "batch", "run": self._run_ref, "kind": "step", "metrics": steps}])

    # -- sending and the outbox ----------------------------------------------------------
    def _emit(self, ops: list[Op]) -> None:
        """Send now when the store answers; otherwise (or on a failure) keep in the outbox."""
        if not self._online:
            self._outbox.append(ops)
            return
        for index, op in enumerate(ops):
            try:
                self._sender.send(op)
            except Exception as error:  # noqa: BLE001 - training must go on whatever the store does
                if is_permanent(error):
                    self._outbox.reject(op, error)
                    continue
                self._go_offline(ops[index:], error)
                return
            if op.get("op") == "artifact" and op.get("staged"):
                Path(op["path"]).unlink(missing_ok=True)

    def _go_offline(self, ops: list[Op], error: BaseException) -> None:
        self._online = False
        self._last_probe = time.monotonic()
        self._outbox.append(ops)
        warnings.warn(f"MLflow at {self.tracking_uri} failed ({type(error).__name__}: {short_error(error)}); "
                      f"training goes on and its records are kept in {self._outbox.path}. They are sent "
                      f"when the store answers again, or by `mergan sync --outbox {self._outbox.directory}`",
                      TrackingWarning, stacklevel=3)

    def _reconnect(self, force: bool = False) -> bool:
        """While offline: probe (at most every probe_interval_s unless forced) and flush the outbox."""
        if self._online:
            return True
        if not force and time.monotonic() - self._last_probe < self.probe_interval_s:
            return False
        self._last_probe = time.monotonic()
        if not probe(self.tracking_uri):
            return False
        results = self._flush_files()
        if any(r.left for r in results):
            return False
        self._online = True
        logger.warning("MLflow at %s answers again: sent %d kept records", self.tracking_uri,
                       sum(r.sent for r in results))
        self._write_run_file()
        return True

    def _flush_earlier_sessions(self) -> None:
        """Send what an earlier attempt of this run left in the outbox folder (if reachable)."""
        if any(True for _ in outbox_files([self._outbox.directory])) and probe(self.tracking_uri):
            results = self._flush_files()
            if any(r.left for r in results):
                warnings.warn(f"{sum(r.left for r in results)} earlier records in {self._outbox.directory} "
                              f"could not be sent yet", TrackingWarning, stacklevel=3)

    def _flush_files(self) -> list[FlushResult]:
        """Flush this folder's outbox files meant for our tracking URI, oldest first."""
        files = [(read_file(p)[0], p) for p in outbox_files([self._outbox.directory])]
        files = sorted((h.get("created", 0), p) for h, p in files if h.get("tracking_uri") == self.tracking_uri)
        results = []
        for _, path in files:
            results.append(flush_file(path, self._sender))
            if results[-1].left:
                break
        return results

    def _pending_trial_run(self) -> str | None:
        """The placeholder of this trial's run if an earlier attempt created it offline, still unsent."""
        if not self.trial_id:
            return None
        for path in outbox_files([self._outbox.directory]):
            for op in read_file(path)[1]:
                if (op.get("op") == "create_run" and (op.get("find_tags") or {}).get("trial_id") == self.trial_id
                        and op.get("parent") == self.parent_run_id):
                    return op["run"]
        return None

    def _write_run_file(self) -> None:
        run_id = self.run_id
        if self._out_dir is None or not run_id or run_id.startswith(PLACEHOLDER):
            return
        self._out_dir.mkdir(parents=True, exist_ok=True)
        (self._out_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id, "tracking_uri": self.tracking_uri}))


def run_id_from_out_dir(out_dir: str | os.PathLike, tracking_uri: str | None = None) -> str | None:
    """The MLflow run that logged ``out_dir`` (from its ``mlflow_run.json``), for resuming a CLI run."""
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if tracking_uri and resolve_tracking_uri(tracking_uri) != record.get("tracking_uri"):
        return None
    return record.get("run_id")

