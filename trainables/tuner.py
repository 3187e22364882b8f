"""A sweep's Tune Tuner, new or restored: searcher (Optuna over the plan's space with its study in an RDB
storage, or a grid), scheduler (ASHA whose time unit is tasks, or PBT), resources, storage and retries."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace
from trainables import pbt
from trainables.plan import SweepPlan
from trainables.progress import TaskBoundaryReport, trial_dirname
from trainables.results import trial_labeller
from trainables.sweep_mlflow import CloseStoppedRuns
from trainables.trainable import CONFIGURATION_ERROR, TrialSettings, train_trial

logger = logging.getLogger("trainables.tuner")

CHECKPOINTS_KEPT = 2  # per trial, in Tune's storage: the latest to resume from, one before it


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


def build_searcher(plan: SweepPlan, space: SearchSpace) -> OptunaSearch | None:
    """An OptunaSearch over the space's define-by-run function, or None for a grid (Tune's own generator)."""
    if space.kind == "grid":
        return None
    if plan.scheduler == pbt.SCHEDULER:  # PBT refuses a searcher: Tune draws the initial population
        return pbt.initial_population(space, plan.seed)
    url = plan.optuna_storage
    if url.startswith("sqlite:///"):  # the default: an SQLite file, in a folder that may not exist yet
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    single = len(plan.objective) == 1
    return SweepOptunaSearch(
        space=space.define, metric=plan.metrics[0] if single else plan.metrics,
        mode=plan.modes[0] if single else plan.modes, points_to_evaluate=space.points_to_evaluate or None,
        sampler=optuna_sampler(plan), study_name=plan.name, storage=optuna.storages.RDBStorage(url))


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
    return TrialSettings(preset=plan.preset, defaults=dict(plan.defaults), fixed=dict(plan.fixed),
                         cpus_per_trial=plan.cpus_per_trial, tracking_uri=plan.tracking_uri,
                         experiment=plan.experiment, parent_run_id=plan.parent_run_id, sweep_id=plan.sweep_id,
                         name_keys=tuple(plan.name_keys) or None,
                         pbt_knobs=tuple(k.name for k in pbt.space_knobs(plan.load_space(), plan.seed)[0])
                         if plan.scheduler == pbt.SCHEDULER else (), objective=tuple(plan.metrics))


def trainable(plan: SweepPlan):
    """``train_trial`` with the sweep's shared settings and each trial's resource request."""
    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_trial, settings=trial_settings(plan)), resources)


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
