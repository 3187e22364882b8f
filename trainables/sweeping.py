"""Running a planned sweep with Ray Tune: searcher, scheduler, resources, storage, resume, results.

``run_sweep(plan)`` builds the Tuner (OptunaSearch over the plan's space with its study in an
SQLite file, or a grid; ASHA whose time unit is tasks; a fraction of a CPU/GPU per trial;
retries from the last checkpoint), runs it, and returns one :class:`TrialRow` per trial.
``resume=True`` restores the Tuner, searcher state included, from the sweep's storage.
``connect_ray`` starts or joins Ray for a plan first (``sweep.py`` and ``mergan reproduce`` call it).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace
from tracking.store import resolve_tracking_uri
from tracking.sweep_run import (
    chart_view_target,
    chart_view_url,
    close_stopped_trial,
    finish_sweep_run,
    log_sweep_files,
    mark_sweep_killed,
    retire_orphan_runs,
    run_page_url,
    save_chart_view,
    start_sweep_run,
    trial_run_id,
)
from trainables import pbt
from trainables.gpu_sharing import sharing_warning
from trainables.plan import PlanError, SweepPlan, check_resources, concurrent_trials, is_uri
from trainables.progress import TaskBoundaryReport, TrialLabeller, quiet_tune, trial_dirname
from trainables.progress import format_table as progress_table
from trainables.trainable import CONFIGURATION_ERROR, TrialSettings, train_trial

logger = logging.getLogger("trainables.sweeping")

CRASH_ENV = "MERGAN_TEST_CRASH_AFTER_TASK"  # test-only: trials raise once after this task (first attempt)
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"  # Ray's switch: 1 leaves SIGINT to us (see StopOnCtrlC)
RAY_CONNECT_TIMEOUT_S = 5.0  # ray.init retries an address where nothing answers for minutes
RAY_DEFAULT_PORT = 6379
CHECKPOINTS_KEPT = 2  # per trial, in Tune's storage: the latest to resume from, one before it
ReportBuilder = Callable[..., Any]  # analysis.report.build_report(experiment, tracking_uri, out, sweep_run=...)
SUMMARY_FOLDER = "sweep"  # the parent run's artifact folder for the sweep's own files (settings, best, trials)
LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves an SQLite store by default


class SweepOptunaSearch(OptunaSearch):
    """OptunaSearch for sweeps that diverge and resume.

    A diverged trial, or one whose configuration cannot run, is recorded as FAILED in the study instead of
    scored: it reports what it had learned (so that Tune's table shows it), but that is not the value of
    its hyperparameters, and telling Optuna a score would pull the sampler toward them.

    A resumed sweep may re-run the last tasks of a trial that the study already holds as finished
    (the driver died after the trial ended but before Tune saved its state): its reports are then
    not the study's news, and Optuna would refuse them (``UpdateFinishedTrialError``).
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(CONFIGURATION_ERROR):
            return  # no score to report: the trial could not run
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.info("Optuna already holds trial %s as finished; result of task %s not reported again",
                        trial_id, result.get("tasks_done"))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and (result.get("diverged") or result.get(CONFIGURATION_ERROR)):
            super().on_trial_complete(trial_id, result=None, error=True)
        else:
            super().on_trial_complete(trial_id, result=result, error=error)


def check_ray_answers(address: str, flag: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout_s``, a Ray address (``host:port``, ``ray://host:port``) where nothing answers."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host:  # no port given: Ray's default
        host, port = port, str(RAY_DEFAULT_PORT)
    advice = ("start one with `ray start --head` (and give the address it prints), or "
              + ("leave out --address" if flag == "--address" else "unset RAY_ADDRESS") + " for a local Ray")
    if not port.isdigit():
        raise PlanError(f"{flag} {address}: not a Ray address; write host:port (e.g. 10.0.0.5:6379), ray://host:port "
                        f"or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise PlanError(f"{flag} {address}: no Ray cluster answers at {host}:{port} ({reason} within "
                        f"{timeout_s:g} s); {advice}") from None


def connect_ray(address: str | None, plan: SweepPlan, verbose: int = 0) -> str:
    """Start or join Ray after checking the plan's resources fit; returns a description of where.

    ``verbose`` 0: Ray's INFO logs and the workers' output stay out of the terminal (Tune keeps every
    trial's error, and the sweep prints it)."""
    import ray

    logs = {"log_to_driver": verbose > 0, "logging_level": logging.INFO if verbose else logging.ERROR}

    if ray.is_initialized():
        where = "the running Ray"
    elif address or os.environ.get("RAY_ADDRESS"):
        target, flag = (address, "--address") if address else (os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
        if target != "auto":
            check_ray_answers(target, flag)
        try:
            ray.init(address=target, **logs)
        except ConnectionError as error:  # 'auto' with no cluster on this machine, or a cluster that went away
            raise PlanError(f"{flag} {target}: no Ray cluster answers ({error}); start one with `ray start --head`, "
                            f"or leave out {'--address' if address else 'RAY_ADDRESS'} for a local Ray") from None
        where = f"the Ray cluster at {target}"
    else:
        import torch

        local = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
        check_resources(plan, [local], "this machine")  # refused before Ray starts
        ray.init(address="local", num_cpus=int(local["CPU"]), include_dashboard=False, **logs)
        where = "a local Ray"
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    check_resources(plan, nodes, where)
    if len(nodes) > 1 and "://" not in plan.storage_path:
        print(f"note: {len(nodes)} nodes share --storage-path {plan.storage_path}: every node must see "
              f"that folder at the same path (an NFS/EFS mount), or give s3://bucket/path", file=sys.stderr)
    if plan.max_concurrent is None:
        plan.max_concurrent = concurrent_trials(plan, nodes)
    warning = sharing_warning(plan.gpus_per_trial)
    if warning:
        print(warning, file=sys.stderr)
    return where


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that Tune can pickle with its searcher (to save the sweep's state for ``--resume``).

    Since Optuna 5.1 the genetic samplers hold a ``threading.Lock`` around their generation cache,
    and a lock cannot be pickled. The lock guards only in-process threads, so a copy gets a new one.
    """

    _LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        locks = [name for name, value in state.items() if isinstance(value, self._LOCK_TYPES)]
        for name in locks:
            state[name] = None
        state["_picklable_locks"] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        locks = state.pop("_picklable_locks", [])
        self.__dict__.update(state)
        for name in locks:
            setattr(self, name, threading.Lock())


def optuna_sampler(plan: SweepPlan) -> optuna.samplers.BaseSampler:
    """TPE for one objective, NSGA-II for several; both seeded on the driver with the sweep's seed."""
    if len(plan.objective) == 1:
        return optuna.samplers.TPESampler(seed=plan.seed)
    population = min(50, max(4, plan.num_samples // 4))
    return PicklableNSGAIISampler(seed=plan.seed, population_size=population)


def open_study_storage(plan: SweepPlan) -> optuna.storages.BaseStorage:
    """The plan's Optuna RDB storage (an SQLite file by default), its folder created."""
    url = plan.optuna_storage
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url)


def build_searcher(plan: SweepPlan, space: SearchSpace) -> OptunaSearch | None:
    """An OptunaSearch over the space's define-by-run function, or None for a grid (Tune's own generator)."""
    if space.kind == "grid":
        return None
    if plan.scheduler == pbt.SCHEDULER:  # PBT refuses a searcher: Tune draws the initial population
        return pbt.initial_population(space, plan.seed)
    single = len(plan.objective) == 1
    return SweepOptunaSearch(
        space=space.define, metric=plan.metrics[0] if single else plan.metrics,
        mode=plan.modes[0] if single else plan.modes, points_to_evaluate=space.points_to_evaluate or None,
        sampler=optuna_sampler(plan), study_name=plan.name, storage=open_study_storage(plan))


def build_scheduler(plan: SweepPlan) -> ASHAScheduler | None:
    """ASHA in units of tasks (``training_iteration`` = tasks done), never stopping before ``grace_period``;
    or PBT at task boundaries (trainables/pbt.py)."""
    if plan.scheduler == pbt.SCHEDULER:
        return pbt.build_scheduler(plan.load_space(), *plan.objective[0], seed=plan.seed)
    if plan.scheduler != "asha":
        return None
    metric, mode = plan.objective[0]
    return ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode,
                         max_t=plan.num_tasks or 10**6, grace_period=plan.grace_period, reduction_factor=2)


def param_space(space: SearchSpace) -> dict[str, Any]:
    """A grid as ``tune.grid_search`` values; an Optuna space lives in its searcher instead."""
    return {name: tune.grid_search(values) for name, values in (space.grid or {}).items()}


def trial_settings(plan: SweepPlan) -> TrialSettings:
    crash = os.environ.get(CRASH_ENV)
    return TrialSettings(preset=plan.preset, defaults=dict(plan.defaults), fixed=dict(plan.fixed),
                         cpus_per_trial=plan.cpus_per_trial, tracking_uri=plan.tracking_uri,
                         experiment=plan.experiment, parent_run_id=plan.parent_run_id, sweep_id=plan.sweep_id,
                         name_keys=tuple(plan.name_keys) or None, crash_after_task=int(crash) if crash else None,
                         pbt_knobs=tuple(k.name for k in pbt.space_knobs(plan.load_space(), plan.seed)[0])
                         if plan.scheduler == pbt.SCHEDULER else (), objective=tuple(plan.metrics))


def trainable(plan: SweepPlan):
    """``train_trial`` with the sweep's shared settings and each trial's resource request."""
    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_trial, settings=trial_settings(plan)), resources)


class CloseStoppedRuns(tune.Callback):
    """Ends the MLflow runs of trials a scheduler stopped early, in case the worker could not.

    Tune stops such a trial by ending its process right after its last report; the trial's own
    callback may not get to close its run, which would stay RUNNING.
    """

    def __init__(self, tracking_uri: str, parent_run_id: str | None):
        self.tracking_uri, self.parent_run_id = tracking_uri, parent_run_id

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if (not self.parent_run_id or result.get("diverged") or result.get(CONFIGURATION_ERROR)
                or "tasks_done" not in result):
            return
        if result["tasks_done"] >= result.get("num_tasks", math.inf):
            return
        try:
            close_stopped_trial(self.tracking_uri, self.parent_run_id, trial.trial_id)
        except Exception as error:  # noqa: BLE001 - bookkeeping must not stop the sweep
            logger.warning("could not close the MLflow run of stopped trial %s: %s", trial.trial_id, error)


def trial_labeller(plan: SweepPlan) -> TrialLabeller:
    """How the plan's trials are named and shown (as MLflow names their runs)."""
    return TrialLabeller(plan.preset, dict(plan.defaults), dict(plan.fixed), tuple(plan.name_keys))


def new_tuner(plan: SweepPlan, verbose: int = 0) -> tune.Tuner:
    """``verbose`` is Tune's own verbosity (0: only this sweep's rows at task boundaries, see trainables.progress)."""
    space = plan.load_space()
    population = plan.scheduler == pbt.SCHEDULER
    labeller = trial_labeller(plan)
    run_config = tune.RunConfig(
        name=plan.name, storage_path=plan.storage_path, verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=pbt.CHECKPOINTS_KEPT if population else CHECKPOINTS_KEPT),
        sync_config=tune.SyncConfig(sync_artifacts=True),  # each trial's run folder (its record) to the storage
        stop=pbt.stop_after_last_task(plan.num_tasks) if population else None,
        callbacks=[CloseStoppedRuns(plan.tracking_uri, plan.parent_run_id), TaskBoundaryReport(labeller, plan.metrics)])
    tune_config = tune.TuneConfig(search_alg=build_searcher(plan, space), scheduler=build_scheduler(plan),
                                  num_samples=plan.num_samples, reuse_actors=True,
                                  trial_name_creator=labeller, trial_dirname_creator=trial_dirname,
                                  # PBT runs what the CPUs hold; the rest of the population waits, paused
                                  max_concurrent_trials=None if population else plan.max_concurrent)
    return tune.Tuner(trainable(plan), param_space=pbt.param_space(space, plan.seed) if population
                      else param_space(space), tune_config=tune_config, run_config=run_config)


def restored_tuner(plan: SweepPlan) -> tune.Tuner:
    """The sweep's Tuner from storage: finished trials kept, unfinished and errored ones resumed."""
    plan.load_space()  # a user's .py space must be importable again before Tune unpickles the searcher
    if not tune.Tuner.can_restore(plan.experiment_path):
        raise FileNotFoundError(f"{plan.experiment_path} holds no Tune experiment state to resume (the sweep "
                                f"may have been stopped before its first trial started); start it again")
    return tune.Tuner.restore(plan.experiment_path, trainable(plan), resume_unfinished=True, resume_errored=True)


# -- results ------------------------------------------------------------------------------
@dataclass
class TrialRow:
    """One trial as the sweep's table shows it."""

    trial_id: str
    status: str  # finished | stopped early | diverged | error
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Nothing left to run: every task reported, or the trial diverged or could not run."""
        if self.metrics.get("diverged") or self.metrics.get(CONFIGURATION_ERROR):
            return True
        return 0 < self.metrics.get("num_tasks", 0) <= self.metrics.get("tasks_done", 0)

    def value(self, metric: str) -> float | None:
        value = self.metrics.get(metric)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize(results: tune.ResultGrid) -> list[TrialRow]:
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        trial_id = str(metrics.get("trial_id") or Path(result.path).name)
        if result.error is not None or metrics.get(CONFIGURATION_ERROR):
            status = "error"
        elif metrics.get("diverged"):
            status = "diverged"
        elif metrics.get("tasks_done", 0) < metrics.get("num_tasks", 0):
            status = "stopped early"
        else:
            status = "finished"
        error = (str(result.error).strip().splitlines()[-1] if result.error is not None
                 else metrics.get(CONFIGURATION_ERROR) or metrics.get("divergence"))
        rows.append(TrialRow(trial_id, status, dict(result.config or {}), metrics, error))
    return sorted(rows, key=lambda r: r.trial_id)


def best_rows(rows: list[TrialRow], plan: SweepPlan) -> list[TrialRow]:
    """The best finished trial by the first objective, or the Pareto front for several objectives."""
    candidates = [r for r in rows if r.status in ("finished", "stopped early")
                  and all(r.value(m) is not None for m in plan.metrics)]
    if not candidates:
        return []
    signs = [1.0 if mode == "max" else -1.0 for mode in plan.modes]
    scores = {r.trial_id: [s * r.value(m) for s, m in zip(signs, plan.metrics)] for r in candidates}
    if len(plan.objective) == 1:
        return [max(candidates, key=lambda r: scores[r.trial_id][0])]

    def dominated(a: TrialRow) -> bool:
        return any(all(x >= y for x, y in zip(scores[b.trial_id], scores[a.trial_id]))
                   and scores[b.trial_id] != scores[a.trial_id] for b in candidates)

    return [r for r in candidates if not dominated(r)]


def format_table(rows: list[TrialRow], plan: SweepPlan) -> str:
    """The sweep's outcome, one row per trial (see :func:`trainables.progress.format_table`)."""
    return progress_table(rows, trial_labeller(plan), plan.metrics)


# -- running -----------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    rows: list[TrialRow]
    best: list[TrialRow]
    experiment_path: str
    parent_run_id: str | None
    interrupted: bool = False  # stopped by Ctrl-C: Tune saved its state, ``--resume`` continues


class StopOnCtrlC:
    """Ctrl-C while Tune runs: the first asks Tune for the stop its own SIGINT handler makes (running
    trials stop, the experiment state is saved, so the sweep can resume); a second stops at once.

    Tune's handler is switched off (``TUNE_DISABLE_SIGINT_HANDLER``) so that the sweep knows it was
    interrupted: a stopped ``Tuner.fit()`` returns like a finished one. Tune's stop is asked for with
    SIGUSR1, which Tune always handles that way.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._previous_env: str | None = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._previous_env = os.environ.get(TUNE_SIGINT_ENV)
            os.environ[TUNE_SIGINT_ENV] = "1"
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nCtrl-C: stopping the trials and saving the sweep's state to resume from (Ctrl-C again to stop "
              "at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is None:
            return
        signal.signal(signal.SIGINT, self._previous)
        if self._previous_env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = self._previous_env


def mark_runs_killed(plan: SweepPlan, unfinished: set[str] | None = None) -> None:
    """After Ctrl-C: the sweep's MLflow run and its trials' unfinished runs end KILLED; a resume continues them.

    ``unfinished``: the ids of trials with work left, whose runs end KILLED even if the trial closed its
    run itself (Tune stops a trial as a scheduler does, so the trial took it for an early stop).
    """
    if not plan.parent_run_id:
        return
    try:
        mark_sweep_killed(plan.tracking_uri, plan.parent_run_id, unfinished or set())
    except Exception as error:  # noqa: BLE001 - the store may be what is down; resuming fixes the statuses
        logger.warning("could not mark the sweep's MLflow runs KILLED: %s", error)


def space_for_mlflow(space: SearchSpace) -> Any:
    """What the sweep's parent run records of the space: a grid's values, a function's source, a YAML mapping."""
    if space.grid is not None:
        return dict(space.grid)
    params = getattr(space.define, "params", None)
    return dict(params) if isinstance(params, dict) else space.define


def sweep_settings(plan: SweepPlan) -> dict[str, Any]:
    """The parent run's params: how the sweep ran (identical on resume, as MLflow params must be)."""
    settings = {"question": plan.question, "preset": plan.preset,
                "num_samples": plan.num_samples, "max_concurrent": plan.max_concurrent,
                "cpus_per_trial": plan.cpus_per_trial, "gpus_per_trial": plan.gpus_per_trial,
                "objective": ",".join(f"{m}:{mode}" for m, mode in plan.objective), "scheduler": plan.scheduler,
                "seed": plan.seed, "storage_path": plan.storage_path, "optuna_storage": plan.optuna_storage}
    settings.update({f"set.{k}": v for k, v in {**plan.defaults, **plan.fixed}.items()})
    return settings


def start_tracking(plan: SweepPlan) -> str:
    """Create (or on resume, continue) the sweep's MLflow parent run; returns its id."""
    space = plan.load_space()
    run_id = start_sweep_run(plan.tracking_uri, plan.experiment, plan.name, space_for_mlflow(space),
                             sweep_settings(plan), sweep_id=plan.sweep_id,
                             tags={"space": plan.space, "storage": plan.experiment_path})
    plan.parent_run_id = run_id
    save_chart_view(plan.tracking_uri, plan.parent_run_id, plan.sweep_id)  # at the start, so the trials can be watched while they run
    return run_id


def run_sweep(plan: SweepPlan, resume: bool = False, verbose: int = 0,
              build_report: ReportBuilder | None = None) -> SweepOutcome:
    """Run (or resume) the planned sweep to the end; every trial's row, the best, where it all is.

    Ctrl-C stops it with its state saved (``SweepOutcome.interrupted``); a second Ctrl-C raises
    KeyboardInterrupt. Either way the sweep's MLflow runs end KILLED, and ``--resume`` continues them.
    ``build_report``: see :func:`record_summary`. ``verbose``: Tune's own output (see :func:`quiet_tune`).
    """
    with quiet_tune(verbose):
        return _run_sweep(plan, resume, verbose, build_report)


def _run_sweep(plan: SweepPlan, resume: bool, verbose: int, build_report: ReportBuilder | None) -> SweepOutcome:
    plan.parent_run_id = start_tracking(plan)  # on resume: the same parent run, continued
    if not resume:
        plan.save()  # before any trial starts: --resume needs it even if this driver dies at once
    if not is_uri(plan.storage_path):
        # Save Tune's experiment state every 2 s (default: at most every 10 s): a driver killed
        # between a trial's start and the next save would otherwise lose that trial's record.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Snapshots after checkpoints are what makes a resume exact; Tune's warning about them is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tuner = restored_tuner(plan) if resume else new_tuner(plan, verbose)
    try:
        with StopOnCtrlC() as ctrl_c:
            results = tuner.fit()
    except KeyboardInterrupt:
        mark_runs_killed(plan)
        raise
    rows = summarize(results)
    if ctrl_c.pressed:
        mark_runs_killed(plan, {row.trial_id for row in rows if not row.complete})
        return SweepOutcome(rows, [], plan.experiment_path, plan.parent_run_id, interrupted=True)
    reconcile(plan, {r.trial_id for r in rows})
    best = best_rows(rows, plan)
    record_summary(plan, rows, build_report)
    record_best(plan, best)
    return SweepOutcome(rows, best, plan.experiment_path, plan.parent_run_id)


def record_best(plan: SweepPlan, best: list[TrialRow]) -> None:
    if not plan.parent_run_id:
        return
    if len(best) == 1:
        row = best[0]
        summary = {"trial_id": row.trial_id, "run_id": trial_run_id(plan.tracking_uri, plan.parent_run_id, row.trial_id),
                   "config": row.params, "metrics": {m: row.value(m) for m in plan.metrics}}
    else:
        summary = {"pareto_front": [{"trial_id": r.trial_id, "config": r.params,
                                     "metrics": {m: r.value(m) for m in plan.metrics}} for r in best]}
    finish_sweep_run(plan.tracking_uri, plan.parent_run_id, summary if best else None)


def record_summary(plan: SweepPlan, rows: list[TrialRow], build_report: ReportBuilder | None = None) -> None:
    """The sweep's results as artifacts of its parent run, at the top of the run's page in the MLflow UI:
    the trials table the sweep prints (``sweep/trials.txt``) and, given ``build_report`` (``mergan report``'s
    ``analysis.report.build_report``, handed in by the command that runs the sweep: analysis sits beside
    trainables, not below it), its figures as PNG (forgetting curves, accuracy matrices ...), its results
    table (``results.md``) and ``report.html``.
    """
    if not plan.parent_run_id:
        return
    try:
        texts = {f"{SUMMARY_FOLDER}/trials.txt": format_table(rows, plan) + "\n"}
        if build_report is None:
            log_sweep_files(plan.tracking_uri, plan.parent_run_id, texts)
            return
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            # Trials that diverged or failed before their first task have no per-task metrics, and
            # analysis warns about them; the trials table printed beside this says what became of each.
            warnings.simplefilter("ignore", UserWarning)
            report = build_report(None, plan.tracking_uri, folder, sweep_run=plan.parent_run_id)
            files = [p for p in report.figure_files if p.suffix == ".png"]
            files += sorted((report.out_dir / "tables").glob("*.md")) + [report.html_path]
            log_sweep_files(plan.tracking_uri, plan.parent_run_id, texts, files)
    except Exception as error:  # noqa: BLE001 - the trials are done and recorded; a summary must not undo that
        logger.warning("could not add the sweep's figures and tables to its MLflow run %s (%s: %s); "
                       "`mergan report --sweep-run %s` draws them", plan.parent_run_id, type(error).__name__,
                       error, plan.parent_run_id)


def reconcile(plan: SweepPlan, trial_ids: set[str]) -> None:
    """After a resumed sweep: records of trials Tune never saved (a driver killed in between) are retired.

    Their MLflow runs are deleted (MLflow keeps them restorable) and their Optuna trials marked
    FAILED, so every trial in Tune's results appears exactly once in MLflow and in the study.
    """
    if plan.parent_run_id:
        retire_orphan_runs(plan.tracking_uri, plan.parent_run_id, trial_ids)
    if plan.space_kind == "optuna" and plan.optuna_storage:
        study = optuna.load_study(study_name=plan.name, storage=plan.optuna_storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            logger.warning("marked Optuna trial %d FAILED: no Tune trial finished it", trial.number)


def mlflow_hint(plan: SweepPlan) -> str:
    """Where to look in MLflow (and at the Optuna study) once the sweep is done."""
    uri = resolve_tracking_uri(plan.tracking_uri)
    lines = [(f"MLflow: tracking URI {uri}, experiment {plan.experiment!r}, sweep run {plan.parent_run_id} "
              f"({plan.name}; trials are its child runs)")]
    served = uri.startswith(("http://", "https://"))
    ui_url = uri if served else LOCAL_UI_URL
    if not served:
        lines.append(f"  mlflow ui --backend-store-uri {uri}    # serves {LOCAL_UI_URL}")
    experiment_id, share_key = chart_view_target(plan.tracking_uri, plan.parent_run_id, plan.sweep_id)
    if experiment_id and plan.parent_run_id:
        lines.append(f"  every trial's forgetting curves: {chart_view_url(ui_url, experiment_id, share_key)}")
        lines.append(f"  the sweep's figures and tables:  "
                     f"{run_page_url(ui_url, experiment_id, plan.parent_run_id, 'forgetting_curves.png')}")
    else:
        lines.append(f"  open {ui_url} in a browser")
    if plan.optuna_storage:
        lines.append(f"Optuna study {plan.name!r}: optuna-dashboard {plan.optuna_storage}")
    lines.append(f"Tune results: {plan.experiment_path}")
    return "\n".join(lines)
