"""A sweep's plan: every setting resolved and validated before Ray starts, saved so ``--resume`` reuses it.

Validation refuses, with the name of the flag or field and what is allowed: an unknown space,
a space parameter the trainer's config does not have (checked on every grid point, or on the
space's starting points and 64 random draws, which reach its conditional branches), a
sampled configuration the config refuses, a ``--set`` value that collides with a searched
parameter, an unknown objective, and resource requests no node can satisfy.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mergan.config import is_module_key, resolve_key
from mergan.config_io import parse_assignment
from mergan.data import planned_task_stream
from mergan.evaluation.frechet import inception_weights_path
from mergan.evaluation.metrics import QUALITY_METRICS, QUALITY_SUMMARIES, TASK_METRICS
from mergan.methods import REGISTRY, build_method
from mergan.methods.registry import module_spec
from mergan.presets import build_config
from mergan.settings import ConfigError
from search_spaces import SearchSpace, SpaceError, load_space, sample_points
from tracking.store import DEFAULT_EXPERIMENT, resolve_tracking_uri
from trainables import pbt

PLAN_FILE = "sweep_plan.json"
OPTUNA_FILE = "optuna.db"
# Sweep-controlled fields: every trial writes its own run folder and keeps per-task checkpoints.
CONTROLLED_FIELDS = ("out_dir", "save_checkpoints")
# Named objectives: (metric, mode) pairs; the first one also drives ASHA and picks the best trial.
OBJECTIVES = {
    "acc": [("stream_avg_acc", "max")],
    "multi": [("stream_avg_acc", "max"), ("forgetting", "min"), ("train_seconds_total", "min")],
    # accuracy against image quality (CLoG's average final FID in the evaluator's space), with NSGA-II
    "quality": [("stream_avg_acc", "max"), ("afq_fid_classifier", "min")],
}
# What an objective may name: the evaluation's per-task metrics and the sweep's own (trainables/trainable.py).
METRICS = ("stream_avg_acc", *TASK_METRICS, "train_seconds_total", "eval_seconds_total")
# The main job on a 2-core laptop (small preset only): short tasks, fewer evaluation samples.
LAPTOP_DEFAULTS = {"iterations_per_task": 300, "eval_samples_per_class": 200}
SAMPLES_CHECKED = 64


class PlanError(ValueError):
    """A sweep setting that cannot run; the message names the flag and what is allowed."""


@dataclass
class SweepPlan:
    """Everything a sweep needs besides the cluster; written to ``<storage>/<name>/sweep_plan.json``."""

    name: str
    space: str  # preset name or file path
    space_text: str | None  # a user file's content, so a resumed sweep uses the same space
    space_kind: str
    question: str
    preset: str
    defaults: dict[str, Any]  # implicit trial values (seed, device, tasks, laptop defaults)
    fixed: dict[str, Any]  # the user's --set / --dataset / --tasks values
    num_samples: int
    max_concurrent: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    objective: list[tuple[str, str]]
    scheduler: str | None
    grace_period: int
    num_tasks: int | None
    seed: int
    max_failures: int
    storage_path: str
    optuna_storage: str | None
    tracking_uri: str
    experiment: str
    sweep_id: str
    name_keys: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    created: str = ""

    # -- where things are ---------------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        return join(self.storage_path, self.name)

    @property
    def plan_path(self) -> str:
        return join(self.experiment_path, PLAN_FILE)

    @property
    def metrics(self) -> list[str]:
        return [metric for metric, _ in self.objective]

    @property
    def modes(self) -> list[str]:
        return [mode for _, mode in self.objective]

    def load_space(self) -> SearchSpace:
        return load_space(self.space, self.space_text)

    # -- saving -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    def save(self) -> None:
        write_text(self.plan_path, self.to_json())

    @classmethod
    def load(cls, storage_path: str, name: str) -> SweepPlan:
        path = join(storage_path, name, PLAN_FILE)
        try:
            values = json.loads(read_text(path))
        except FileNotFoundError:
            raise PlanError(f"--resume: no sweep named {name!r} in {storage_path} (no {path}); sweeps there: "
                            f"{', '.join(list_sweeps(storage_path)) or 'none'}") from None
        values["objective"] = [tuple(pair) for pair in values["objective"]]
        return cls(**values)


# -- files on local disks or cloud storage (s3://, gs://) -----------------------------------
def is_uri(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else str(Path(base, *parts))


def _filesystem(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path)


def write_text(path: str, text: str) -> None:
    if not is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return
    filesystem, inner = _filesystem(path)
    with filesystem.open_output_stream(inner) as stream:
        stream.write(text.encode())


def read_text(path: str) -> str:
    if not is_uri(path):
        return Path(path).read_text()
    filesystem, inner = _filesystem(path)
    try:
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode()
    except OSError as error:
        raise FileNotFoundError(path) from error


def list_sweeps(storage_path: str) -> list[str]:
    """Names of the sweeps (folders holding a plan) under ``storage_path``, newest first."""
    if is_uri(storage_path):
        import pyarrow.fs

        filesystem, inner = _filesystem(storage_path)
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True))
        found = [(i.mtime_ns or 0, i.base_name) for i in infos if i.type == pyarrow.fs.FileType.Directory
                 and filesystem.get_file_info(f"{i.path}/{PLAN_FILE}").type == pyarrow.fs.FileType.File]
    else:
        root = Path(storage_path)
        found = [((p / PLAN_FILE).stat().st_mtime_ns, p.name) for p in root.glob("*") if (p / PLAN_FILE).is_file()]
    return [name for _, name in sorted(found, reverse=True)]


# -- building a plan ------------------------------------------------------------------------
def parse_objective(text: str) -> list[tuple[str, str]]:
    """``acc`` | ``multi`` | ``metric:max,metric:min`` -> [(metric, mode)]."""
    if text in OBJECTIVES:
        return list(OBJECTIVES[text])
    pairs = []
    for part in text.split(","):
        metric, _, mode = part.strip().partition(":")
        if mode not in ("min", "max"):
            raise PlanError(f"--objective {text!r}: write a named objective ({', '.join(OBJECTIVES)}) or "
                            f"metric:mode pairs such as stream_avg_acc:max,forgetting:min; {part!r} has no "
                            f"mode min or max")
        if metric not in METRICS and not re.fullmatch(r"acc_task_\d+", metric):
            raise PlanError(f"--objective: unknown metric {metric!r}; allowed: {', '.join(METRICS)}, acc_task_<j>")
        pairs.append((metric, mode))
    return pairs


def check_objective_measured(pairs: list[tuple[str, str]], config: Any) -> None:
    """Refuse an objective on a quality summary that the trials' ``eval.quality`` (or missing Inception weights)
    would never report, so that no trial runs to an end without its objective."""
    measured = QUALITY_METRICS[config.eval.quality]
    for metric, _ in pairs:
        if metric not in QUALITY_SUMMARIES:
            continue
        needs = "recall" if metric.startswith(("fr_recall", "fr_coverage")) else "fid"
        if needs not in measured:
            level = "full" if needs == "recall" else "fast or full"
            raise PlanError(f"--objective: {metric} is measured with eval.quality {level}, and the trials have "
                            f"{config.eval.quality!r}; remove --set quality=... or pick another objective")
        if metric.endswith("_inception") and not inception_weights_path(config.eval):
            raise PlanError(f"--objective: {metric} needs Inception weights (--set inception_weights=PATH or "
                            f"$MERGAN_INCEPTION_WEIGHTS on every node); or use the {metric[:-len('inception')]}"
                            f"classifier variant")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["lr_g=1e-4", "method=ra"]`` -> {"lr_g": "1e-4", ...}, field names checked (a method module's knobs
    once its module, which may come later in ``items``, is loaded)."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # key -> the item as written
    for item in items:
        try:
            key, value = parse_assignment(item, "iterations_per_task=200")
        except ConfigError as error:
            raise PlanError(str(error)) from None
        values[key], given[key] = value, item
    modules = tuple(module_spec(v) for k, v in values.items() if is_module_key(k) and v.strip())
    for key in sorted(values, key=lambda k: not is_module_key(k)):
        try:
            if is_module_key(key) and values[key].strip():
                REGISTRY.load_module(module_spec(values[key]))
            resolve_key(key, modules)
        except ConfigError as error:
            raise PlanError(f"--set {given[key]!r}: {error}") from None
    return {key: module_spec(value) if is_module_key(key) and value.strip() else value
            for key, value in values.items()}


def _same_field(a: str, b: str) -> bool:
    return resolve_key(a) == resolve_key(b)


def _count_tasks(config) -> int | None:
    """The number of tasks of a trial's stream (None when its dataset's classes cannot be known here: an image
    folder on the workers only); a PlanError names a class the dataset lacks, before Ray starts."""
    try:
        tasks = planned_task_stream(config.data)
    except ConfigError as error:
        raise PlanError(f"--tasks/--set: {error}") from None
    return None if tasks is None else len(tasks)


def check_space(space: SearchSpace, preset: str, defaults: dict[str, Any], fixed: dict[str, Any],
                seed: int) -> list[dict[str, Any]]:
    """Every point the plan can see of ``space`` builds a valid trial config; returns those points."""
    points = sample_points(space, SAMPLES_CHECKED, seed)
    where = f"space {space.name!r} ({space.source})"
    names = sorted({name for point in points for name in point})
    for name in names:
        try:
            resolve_key(name)
        except ConfigError:
            raise SpaceError(f"{where}: parameter {name!r} is not a field of the trainer's config (mergan.config); "
                             f"use a config field name such as lambda_ra, lambda_ewc, replay_size_per_class, "
                             f"method, lr_g, seed") from None
        if any(_same_field(name, controlled) for controlled in CONTROLLED_FIELDS):
            raise SpaceError(f"{where}: parameter {name!r} is set by the sweep itself; remove it from the space")
        clash = [key for key in fixed if _same_field(key, name)]
        if clash:
            raise PlanError(f"--set {clash[0]}: {where} searches {name!r}, so it cannot also be fixed; drop one")
    for point in points:
        try:
            config = build_config(preset, {**defaults, **fixed, **point})
        except ConfigError as error:
            raise SpaceError(f"{where}: the trainer's config refuses the sampled configuration {point}: {error}") \
                from None
        tasks = _count_tasks(config)
        if tasks is not None and tasks < 2 and build_method(config.method.method, config.method,
                                                            config.method.modules).needs_previous_task:
            raise PlanError(f"--tasks: method {config.method.method!r} (from {where}) protects earlier tasks, but "
                            f"the stream has {tasks} task; give at least two, e.g. --tasks '0|1'")
    return points


def make_plan(*, space: str, preset: str = "small", dataset: str | None = None, tasks: str | None = None,
              sets: list[str] | None = None, num_samples: int | None = None, max_concurrent: int | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, objective: str = "acc",
              scheduler: str | None = None, grace_period: int = 2, seed: int = 0, max_failures: int = 2,
              storage_path: str | None = None, optuna_storage: str | None = None, tracking_uri: str | None = None,
              experiment: str | None = None, name: str | None = None) -> SweepPlan:
    """Resolve and validate every setting of a new sweep (no Ray, no training)."""

    loaded = load_space(space)
    fixed = parse_sets(sets or [])
    for flag, key, value in (("--dataset", "dataset", dataset), ("--tasks", "tasks", tasks)):
        if value is not None:
            if any(_same_field(k, key) for k in fixed):
                raise PlanError(f"{flag} and --set {key}=... both given; use one")
            fixed[key] = value
    for key in list(fixed):
        if any(_same_field(key, controlled) for controlled in CONTROLLED_FIELDS):
            raise PlanError(f"--set {key}: set by the sweep itself (each trial writes its own run folder and "
                            f"keeps per-task checkpoints to resume from); remove it")
    if preset not in _presets():
        raise PlanError(f"--preset {preset!r}: unknown; allowed: {', '.join(_presets())}")
    check_resources_request(cpus_per_trial, gpus_per_trial)
    defaults: dict[str, Any] = {"seed": seed, "device": "cuda" if gpus_per_trial > 0 else "cpu"}
    if preset == "small":
        defaults.update(LAPTOP_DEFAULTS)
    try:
        probe = build_config(preset, {**defaults, **fixed})
    except ConfigError as error:
        raise PlanError(f"--set/--dataset/--tasks: the trainer's config refuses {fixed}: {error}") from None
    _count_tasks(probe)  # a class the dataset lacks, refused here rather than by every trial
    if probe.data.dataset == "mnist5k" and not probe.data.tasks and not any(_same_field(k, "tasks") for k in fixed):
        defaults["tasks"] = "0|1|2"
    pairs = parse_objective(objective)
    if scheduler not in (None, "asha", pbt.SCHEDULER):
        raise PlanError(f"--scheduler {scheduler!r}: allowed: asha, pbt (or leave it out: every trial runs to the end)")
    if scheduler == pbt.SCHEDULER:  # before the space's own checks: PBT's refusals name --scheduler pbt
        pairs = pbt.objective(pairs, objective)
        try:
            pbt.check_plan(loaded, num_tasks=_count_tasks(build_config(preset, {**defaults, **fixed})),
                           num_samples=num_samples, objective=pairs, seed=seed)
        except pbt.PBTError as error:
            raise PlanError(str(error)) from None
    if grace_period < 2:
        raise PlanError(f"--grace-period {grace_period}: ASHA must let every trial finish at least 2 tasks "
                        f"(forgetting needs a second task to exist); allowed: >= 2")
    points = check_space(loaded, preset, defaults, fixed, seed)
    config = build_config(preset, {**defaults, **fixed, **points[0]})
    check_objective_measured(pairs, config)
    if (loaded.kind == "optuna" or scheduler) and config.eval.eval_when != "every":
        raise PlanError(f"eval_when={config.eval.eval_when!r}: the searcher and ASHA read the metrics after every "
                        f"task, so a searched or scheduled sweep evaluates every task; remove --set eval_when "
                        f"(a grid space without --scheduler may use 'final')")
    if num_samples is None:
        num_samples = 1 if loaded.kind == "grid" else (pbt.POPULATION if scheduler == pbt.SCHEDULER else 6)
    if num_samples < 1:
        raise PlanError(f"--num-samples {num_samples}: allowed: >= 1")
    if max_concurrent is not None and max_concurrent < 1:
        raise PlanError(f"--max-concurrent {max_concurrent}: allowed: >= 1 (or leave it out: as many as fit)")
    if max_failures < 0:
        raise PlanError(f"--max-failures {max_failures}: allowed: >= 0")
    if name is None:
        name = f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise PlanError(f"--name {name!r}: allowed: letters, digits, '.', '_', '-' (it names a folder and a study)")
    for flag, value in (("--storage-path", storage_path), ("--experiment", experiment)):
        if value is not None and not value.strip():
            raise PlanError(f"{flag}: empty; give a value, or leave it out for the default")
    storage = str(Path.cwd() / "runs" / "sweeps") if storage_path is None else storage_path
    storage = storage if is_uri(storage) else str(Path(storage).expanduser().resolve())
    if optuna_storage is None and loaded.kind == "optuna" and scheduler != pbt.SCHEDULER:  # PBT: no study
        # Beside Tune's files on a disk; with cloud storage, in the driver's home (SQLite needs a local file).
        folder = Path(storage, name) if not is_uri(storage) else Path.home() / "mergan-sweeps" / name
        optuna_storage = f"sqlite:///{folder / OPTUNA_FILE}"
    name_keys = sorted({k for p in points for k in p if not _same_field(k, "method") and not _same_field(k, "seed")})
    return SweepPlan(
        name=name, space=space, space_text=loaded.text, space_kind=loaded.kind, question=loaded.question,
        preset=preset, defaults=defaults, fixed=fixed, num_samples=num_samples, max_concurrent=max_concurrent,
        cpus_per_trial=float(cpus_per_trial), gpus_per_trial=float(gpus_per_trial), objective=pairs,
        scheduler=scheduler, grace_period=grace_period, num_tasks=_count_tasks(config), seed=seed,
        max_failures=max_failures, storage_path=storage, optuna_storage=optuna_storage,
        tracking_uri=resolve_tracking_uri(tracking_uri),
        experiment=experiment if experiment is not None else (os.environ.get("MLFLOW_EXPERIMENT_NAME")
                                                               or DEFAULT_EXPERIMENT),
        sweep_id=f"{name}-{uuid.uuid4().hex[:8]}", name_keys=name_keys,
        created=time.strftime("%Y-%m-%d %H:%M:%S"))


def _presets() -> list[str]:
    from mergan.presets import PRESETS

    return list(PRESETS)


# -- resources ------------------------------------------------------------------------------
def check_resources_request(cpus: float, gpus: float) -> None:
    """Refuse requests Ray cannot express: no CPU, negative GPUs, fractions of more than one GPU."""
    if not cpus > 0:
        raise PlanError(f"--cpus-per-trial {cpus}: allowed: > 0 (fractions such as 0.5 share a core)")
    if gpus < 0:
        raise PlanError(f"--gpus-per-trial {gpus}: allowed: >= 0")
    if gpus > 1 and not float(gpus).is_integer():
        raise PlanError(f"--gpus-per-trial {gpus}: Ray shares a GPU only below one card; allowed: a fraction in "
                        f"(0, 1) such as 0.25 (four trials per card) or a whole number of GPUs")


def check_resources(plan: SweepPlan, nodes: list[dict[str, float]], where: str) -> None:
    """Refuse a trial that no node can hold (``nodes``: each node's total resources)."""
    best_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    best_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    fits = [n for n in nodes if n.get("CPU", 0.0) >= plan.cpus_per_trial and n.get("GPU", 0.0) >= plan.gpus_per_trial]
    if fits:
        return
    if plan.gpus_per_trial > best_gpu:
        raise PlanError(f"--gpus-per-trial {plan.gpus_per_trial:g}: {where} has no node with that many GPUs (the "
                        f"most on one node: {best_gpu:g}); ask for at most {best_gpu:g}, or 0 to train on CPU")
    if plan.cpus_per_trial > best_cpu:
        raise PlanError(f"--cpus-per-trial {plan.cpus_per_trial:g}: {where} has no node with that many CPUs (the "
                        f"most on one node: {best_cpu:g}); ask for at most {best_cpu:g}")
    raise PlanError(f"--cpus-per-trial {plan.cpus_per_trial:g} with --gpus-per-trial {plan.gpus_per_trial:g}: no "
                    f"node of {where} has both at once; nodes: {nodes}")


def concurrent_trials(plan: SweepPlan, nodes: list[dict[str, float]]) -> int:
    """How many trials fit on ``nodes`` at once (what ``--max-concurrent`` defaults to)."""
    total = 0
    for node in nodes:
        by_cpu = math.floor(node.get("CPU", 0.0) / plan.cpus_per_trial + 1e-9)
        by_gpu = math.floor(node.get("GPU", 0.0) / plan.gpus_per_trial + 1e-9) if plan.gpus_per_trial else by_cpu
        total += min(by_cpu, by_gpu)
    return max(1, total)
