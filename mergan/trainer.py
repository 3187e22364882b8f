"""The sequential trainer: one loop over tasks and steps, methods as plugins, progress via callbacks.

Each task (``run_task``): its context (``mergan.methods.context``, built once: classes, earlier classes,
replay counts and labels); the method's ``before_task``; fresh Adam optimizers (the paper resets them per
task); ``iterations_per_task`` generator steps, each after ``critic_steps`` critic steps on a real batch
of the task's classes (plus the method's replay); the method's ``after_task``. Then (``finish_task``)
evaluation, a checkpoint and the callbacks' ``on_task_end``. The iteration is capturable (``mergan.iteration``:
static draw buffers, loss sums on the device) and, on CUDA, captured once per task in a CUDA graph and replayed
(``mergan.graphs``, ``optim.cuda_graph``). The loop never syncs with the device except every ``log_every``
steps, when losses are read, checked for NaN/inf and handed to ``on_step``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mergan.callbacks import Callback, CallbackList, DivergenceError, StepInfo, TaskResult
from mergan.checkpoint import (
    FORMAT,
    CheckpointError,
    check_resume_changes,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from mergan.config import ExperimentConfig
from mergan.config_io import config_from_dict, save_yaml
from mergan.data import ClassDataset, ImageSet, load_dataset, task_stream
from mergan.graphs import GraphedIteration, check_graph_mode, graph_blocker, uses_graphs
from mergan.iteration import Draws, TaskIteration
from mergan.methods import REGISTRY, TaskContext, build_method
from mergan.methods.context import task_context
from mergan.models import build_models
from mergan.record import RunRecord
from mergan.results import read_matrix, write_results
from mergan.settings import ConfigError
from mergan.validation import validate_config

drift_log = logging.getLogger("mergan.drift")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: 'cuda' was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        import psutil

        return psutil.virtual_memory().available
    return None


def check_batch_fits(batch_size: int, channels: int, image_size: int, device: torch.device) -> None:
    """Refuse, before anything is written, a batch whose images alone exceed the free memory: every critic
    step holds a real, a generated and an interpolated batch (the gradient penalty's) at once, and the
    nets' activations come on top, so this floor never refuses a batch that fits."""
    floor = 3 * batch_size * channels * image_size * image_size * 4  # float32
    free = free_memory_bytes(device)
    if free is not None and floor > free:
        raise ConfigError(f"optim.batch_size: {batch_size} images of {channels}x{image_size}x{image_size} need at "
                          f"least {floor / 2**30:.3g} GiB per step (real, generated and interpolated batches), more "
                          f"than the {free / 2**30:.3g} GiB free on {device}; lower optim.batch_size")


def make_cuda_deterministic() -> None:
    """Deterministic cuDNN and algorithms, so a seeded CUDA run (and a resumed one) repeats exactly.

    cuBLAS needs its workspace size fixed before its first use (``CUBLAS_WORKSPACE_CONFIG``); a
    process that already used cuBLAS keeps whatever it had, so set it in the environment to be sure.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng():
    """Whatever runs inside (evaluation) leaves the training RNG exactly as it found it."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class RealBatches:
    """Random batches of real images of some classes; indices and labels live where the images do.

    The indices are drawn into a static buffer (``Draws``), so that a captured iteration redraws them."""

    def __init__(self, images: ImageSet, classes: list[int], batch_size: int, device: torch.device,
                 conditional: bool = True):
        index_device = device if images.in_memory else torch.device("cpu")
        labels = images.labels
        members = images.indices_of(classes)
        if members.numel() == 0:
            raise ConfigError(f"data.tasks: no training images of classes {classes}")
        self.images, self.batch_size, self.conditional = images, batch_size, conditional
        self.members = members.to(index_device)
        self.member_labels = labels[members].to(device)
        self.device = device
        self.draws = Draws(index_device)

    def _draw(self, n: int) -> torch.Tensor:
        return self.draws.integers("index", self.members.shape[0], (n,))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        picks = self._draw(self.batch_size)
        images = self.images.get(self.members[picks]).to(self.device, non_blocking=True)
        labels = self.member_labels[picks.to(self.device)]
        return images, labels if self.conditional else torch.zeros_like(labels)

    def labels(self, n: int) -> torch.Tensor:
        """Labels drawn like a real batch's, without loading images (for the generator step)."""
        labels = self.member_labels[self._draw(n).to(self.device)]
        return labels if self.conditional else torch.zeros_like(labels)


def _task_result_from_json(record: dict[str, Any]) -> TaskResult:
    """A TaskResult read back from JSON, whose object keys are strings: class ids become ints again."""
    record = dict(record, class_accuracy={int(k): v for k, v in record.get("class_accuracy", {}).items()})
    return TaskResult(**record)


class Trainer:
    def __init__(self, config: ExperimentConfig, callbacks: list[Callback] | None = None,
                 dataset: ClassDataset | None = None):
        validate_config(config)
        self.config = config
        self.device = resolve_device(config.run.device)
        check_graph_mode(config.optim.cuda_graph, self.device)
        if self.device.type == "cuda" and config.run.deterministic:
            make_cuda_deterministic()
        # The run folder's durable record comes first unless the caller placed it (after callbacks that add
        # to a TaskResult, before those that hand the checkpoint on): trackers and reports read it.
        callbacks = [c for c in callbacks or [] if c is not None]
        self.record = next((c for c in callbacks if isinstance(c, RunRecord)), None)
        if self.record is None:
            self.record = RunRecord()
            callbacks.insert(0, self.record)
        self.callbacks = CallbackList(callbacks)
        self.out_dir = Path(config.run.out_dir)
        self.dataset = dataset if dataset is not None else load_dataset(config.data, config.model.image_size)
        self.tasks = task_stream(self.dataset, config.data)
        check_batch_fits(config.optim.batch_size, self.dataset.channels, config.model.image_size, self.device)
        self.method = build_method(config.method.method, config.method, config.method.modules)
        if self.method.needs_previous_task and len(self.tasks) < 2:
            raise ConfigError(f"method.method: {config.method.method!r} protects earlier tasks, but the task "
                              f"stream has only {len(self.tasks)} task ({self.tasks}); give at least two tasks")
        seed_everything(config.run.seed)
        self.train_set = self.dataset.train.to(self.device)
        # Why the iterations cannot be captured (None: they can), and whether they will be.
        self.graph_blocker = graph_blocker(self.method, self.train_set, config.data.dataset)
        self.cuda_graph = uses_graphs(config.optim.cuda_graph, self.device, self.graph_blocker)
        self.draws = Draws(self.device)  # the static buffers of the methods' random draws (``training.draws``)
        self.captured_tasks: list[int] = []  # tasks (1-based) whose iteration ran as a replayed CUDA graph
        self.graph_failures: dict[int, str] = {}  # task -> why its capture failed (it then ran eagerly)
        num_classes = self.dataset.num_classes if self.method.conditional else 1
        generator, critic = build_models(config.model, num_classes, self.dataset.channels)
        self.generator, self.critic = generator.to(self.device), critic.to(self.device)
        self.method.setup(self)
        self.tasks_done = 0
        self.global_step = 0
        self.accuracy_matrix: list[list[float | None]] = []
        self.quality_matrices: dict[str, list[list[float | None]]] = {}  # by name, rows as the accuracy matrix's
        self.results: list[TaskResult] = []
        self.optimizers: tuple[torch.optim.Adam, torch.optim.Adam] | None = None  # (generator's, critic's)
        self._evaluator = None

    # -- construction from a checkpoint ---------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, callbacks: list[Callback] | None = None,
                        overrides: dict[str, Any] | None = None,
                        dataset: ClassDataset | None = None, may_change: tuple[str, ...] = ()) -> Trainer:
        """A trainer at the end of the checkpoint's task; ``fit()`` continues with the next one.

        ``overrides`` may change where and how the run goes on (``checkpoint.RESUMABLE_FIELDS``: device,
        out_dir, eval settings ...) and the fields named in ``may_change`` (PBT's knobs); any other change
        is refused, naming the field."""
        file = find_checkpoint(path)
        state = load_checkpoint(file)
        try:
            saved = config_from_dict(state["config"])
        except ConfigError as error:
            method = state["config"].get("method", {}).get("method")
            sources = "; ".join(f"{name}: {origin}" for name, origin in state.get("method_origins", {}).items())
            raise ConfigError(f"{file}: the checkpoint's run cannot be rebuilt here: {error}"
                              + (f". The run's method {method!r} came from: {sources}; install that plugin (or make "
                                 f"its module importable) to continue or evaluate it" if sources else "")) from None
        config = saved.copy()
        for key, value in (overrides or {}).items():
            config.set(key, value)
        check_resume_changes(saved, config, file, may_change)
        trainer = cls(config, callbacks=callbacks, dataset=dataset)
        if [list(t) for t in trainer.tasks] != state["tasks"]:
            raise ConfigError(f"{file}: the checkpoint's task stream {state['tasks']} differs from the "
                              f"config's {trainer.tasks}")
        try:
            trainer.generator.load_state_dict(state["generator"])
            trainer.critic.load_state_dict(state["critic"])
            trainer.method.load_state_dict(state["method"], trainer)
            if state.get("optimizers") is not None:  # a method that keeps its optimizers across tasks (JT)
                trainer.optimizers = trainer.new_optimizers()
                for optimizer, optimizer_state in zip(trainer.optimizers, state["optimizers"]):
                    optimizer.load_state_dict(optimizer_state)
            trainer.record.adopt_checkpoint(file.parent)
            trainer.tasks_done = int(state["task"])
            trainer.global_step = int(state["global_step"])
            trainer.accuracy_matrix = [list(row) for row in state["accuracy_matrix"]]
            trainer.results = [_task_result_from_json(r) for r in json.loads(state["results_json"])]
            trainer.quality_matrices = {name: [list(row) for row in matrix]
                                        for name, matrix in state.get("quality_matrices", {}).items()}
            set_rng_state(state["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as error:
            # The state does not fit the config it carries: the file was edited, or mixed from two runs.
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{file}: its saved state does not fit the config it holds ({type(error).__name__}: "
                                  f"{problem[:200]}); it was edited or is damaged: resume from another task's "
                                  f"checkpoint") from None
        return trainer

    @property
    def graph_note(self) -> str | None:
        """One line when CUDA graphs were asked for (or would be, by ``auto``) but this run cannot use them."""
        if self.config.optim.cuda_graph == "off" or self.device.type != "cuda" or self.graph_blocker is None:
            return None
        return f"optim.cuda_graph: training runs eagerly, without CUDA graphs: {self.graph_blocker}"

    # -- the run ----------------------------------------------------------------------------
    def fit(self) -> list[TaskResult]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(self.config, self.out_dir / "config.yaml")
        if self.config.eval.eval_when != "none":
            self.evaluator()  # trained (or loaded) up front, so task 1's eval time is evaluation only
        self.callbacks.on_run_start(self)
        for t in range(self.tasks_done, len(self.tasks)):
            seconds = self.run_task(t)
            self.finish_task(t, train_seconds=seconds)
        self.callbacks.on_run_end(self, self.results)
        return self.results

    def task_context(self, t: int) -> TaskContext:
        """What the method's hooks know of task t (0-based): its classes, the earlier ones, replay counts."""
        return task_context(self.tasks, t, self.config, self.device)

    def real_batches(self, classes: list[int], conditional_labels: bool | None = None) -> RealBatches:
        conditional = self.method.conditional if conditional_labels is None else conditional_labels
        return RealBatches(self.train_set, classes, self.config.optim.batch_size, self.device, conditional)

    def new_optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """Adam for the generator and the critic; ``capturable`` (step counts on the device) under CUDA graphs."""
        cfg = self.config.optim
        capturable = self.cuda_graph
        return (torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2),
                                 capturable=capturable),
                torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                                 capturable=capturable))

    def run_task(self, t: int) -> float:
        """Train task t (0-based): the method's ``before_task``, ``iterations_per_task`` generator steps (each
        after ``critic_steps`` critic steps), its ``after_task``; counts the task done. Returns the seconds taken.

        Evaluation, the checkpoint and the callbacks' ``on_task_end`` are ``finish_task``'s (``fit`` runs both)."""
        started = time.perf_counter()
        task = self.task_context(t)
        self.method.before_task(self, task)
        self._train_steps(task)
        self.method.after_task(self, task)
        self.tasks_done = t + 1
        return time.perf_counter() - started

    def task_iteration(self, task: TaskContext) -> TaskIteration:
        """Task t's training iteration over static state (its optimizers, real batches and draw buffers)."""
        cfg = self.config.optim
        if self.method.resets_optimizers or self.optimizers is None:
            self.optimizers = self.new_optimizers()
        batches = self.real_batches(self.method.real_classes(self, task))
        # Autocast's cache of cast weights would live across a capture's end: off under graphs.
        autocast = ((lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.cuda_graph))
                    if cfg.precision == "bf16" else contextlib.nullcontext)
        self.draws = Draws(self.device)
        return TaskIteration(self, self.method, task, batches, self.optimizers, self.draws, autocast)

    def _train_steps(self, task: TaskContext) -> None:
        cfg = self.config.optim
        t = task.index
        iteration = self.task_iteration(task)
        run_iteration = GraphedIteration(iteration) if self.cuda_graph else iteration
        self.generator.train()
        self.critic.train()
        since, window_start = 0, time.perf_counter()
        log_every = self.config.run.log_every
        for step in range(1, cfg.iterations_per_task + 1):
            run_iteration()
            self.global_step += 1
            since += 1
            if step % log_every == 0 or step == cfg.iterations_per_task:
                losses = self._read_losses(iteration.sums.take(since), t, step)
                now = time.perf_counter()
                info = StepInfo(task=t + 1, step=step, steps_in_task=cfg.iterations_per_task,
                                global_step=self.global_step, losses=losses,
                                steps_per_second=since / max(now - window_start, 1e-9))
                self.callbacks.on_step(self, info)
                since, window_start = 0, time.perf_counter()
        if isinstance(run_iteration, GraphedIteration):
            if run_iteration.captured:
                self.captured_tasks.append(t + 1)
            elif run_iteration.failure is not None:
                self.graph_failures[t + 1] = run_iteration.failure

    def _read_losses(self, losses: dict[str, float], t: int, step: int) -> dict[str, float]:
        """The mean losses since the last read (the loop's only host sync), checked: NaN/inf stops the run."""
        bad = [n for n, v in losses.items() if not np.isfinite(v)]
        if bad:
            raise DivergenceError(f"training diverged: {', '.join(bad)} became {losses[bad[0]]} in task {t + 1} "
                                  f"before step {step} (lr_g={self.config.optim.lr_g}, "
                                  f"lr_d={self.config.optim.lr_d}); lower the learning rates or the method's lambda")
        return losses

    # -- after each task ----------------------------------------------------------------------
    def sampler(self):
        """What the evaluation draws images from (``sample(labels, z)``)."""
        return self.method.sampler(self)

    def seen_classes(self, tasks_done: int | None = None) -> list[int]:
        done = self.tasks_done if tasks_done is None else tasks_done
        return [c for task in self.tasks[:done] for c in task]

    def should_evaluate(self, t: int) -> bool:
        when = self.config.eval.eval_when
        return when == "every" or (when == "final" and t == len(self.tasks) - 1)

    def evaluator(self):
        if self._evaluator is None:
            from mergan.evaluation import get_evaluator

            with preserved_rng():
                self._evaluator = get_evaluator(self.dataset, self.config.eval, self.device,
                                                data_config=self.config.data)
        return self._evaluator

    def evaluate(self, t: int):
        """Evaluate the generator after task t (0-based); leaves the training RNG untouched."""
        from mergan.evaluation import evaluate_after_task

        jt_results = self.config.eval.jt_results
        with preserved_rng():
            return evaluate_after_task(self.sampler(), self.dataset, self.tasks, t, self.config.eval,
                                       self.evaluator(), self.device, self.accuracy_matrix,
                                       jt_matrix=read_matrix(jt_results) if jt_results else None,
                                       seed=self.config.run.seed, samples_dir=self.out_dir / "samples",
                                       previous_quality=self.quality_matrices)

    def finish_task(self, t: int, train_seconds: float) -> TaskResult:
        result = TaskResult(task=t + 1, num_tasks=len(self.tasks), classes=list(self.tasks[t]),
                            seen_classes=self.seen_classes(), train_seconds=train_seconds,
                            # per task: a resumed run may train its later tasks longer or shorter
                            extra={"iterations": self.config.optim.iterations_per_task})
        if self.should_evaluate(t):
            started = time.perf_counter()
            evaluation = self.evaluate(t)
            result.eval_seconds = time.perf_counter() - started
            result.metrics = dict(evaluation.metrics)
            result.class_accuracy = {int(k): float(v) for k, v in evaluation.class_accuracy.items()}
            result.samples_path = str(evaluation.samples_path) if evaluation.samples_path else None
            self.accuracy_matrix.append([float(v) for v in evaluation.row])
            self.quality_matrices = evaluation.quality_matrices or self._pad_quality(t)
            result.extra.update(self.evaluator().result_fields())
            result.drift_alarms = self.drift_alarms(result.metrics)
            result.metrics["drift_alarms"] = float(len(result.drift_alarms))
        else:
            self.accuracy_matrix.append([None] * (t + 1))
            self.quality_matrices = self._pad_quality(t)
            result.samples_path = self.save_samples(t)
        result.accuracy_matrix = [list(row) for row in self.accuracy_matrix]
        result.quality_matrices = {name: [list(row) for row in matrix]
                                   for name, matrix in self.quality_matrices.items()}
        self.results.append(result)
        if self.config.run.save_checkpoints:
            result.checkpoint_path = str(self.save_checkpoint())
        write_results(self.out_dir, self.tasks, self.accuracy_matrix, self.results, self.quality_matrices)
        self.callbacks.on_task_end(self, result)
        return result

    def _pad_quality(self, t: int) -> dict[str, list[list[float | None]]]:
        """The quality matrices with an unmeasured row for task t (0-based), as the accuracy matrix gets one."""
        return {name: [list(row) for row in matrix[:t]] + [[None] * (t + 1)]
                for name, matrix in self.quality_matrices.items()}

    def drift_alarms(self, metrics: dict[str, float]) -> list[dict[str, Any]]:
        """Replayed classes that lost more than ``eval.drift_alarm`` of their first recall or coverage, each
        warned about in one line (``mergan.drift`` logger)."""
        from mergan.evaluation.metrics import drift_alarm_message, drift_alarms

        threshold = self.config.eval.drift_alarm
        alarms = drift_alarms([r.metrics for r in self.results] + [metrics], self.tasks, threshold)
        for alarm in alarms:
            drift_log.warning("%s", drift_alarm_message(alarm, threshold))
        return alarms

    def save_samples(self, t: int) -> str:
        """The per-class sample grid (same fixed z every task) when no evaluation made one."""
        from mergan.evaluation.grids import save_class_grid

        path = self.out_dir / "samples" / f"samples_task_{t + 1}.png"
        with preserved_rng():
            return save_class_grid(self.sampler(), self.seen_classes(), self.config.eval.grid_per_class,
                                   self.config.run.seed, self.device, path)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "task": self.tasks_done,
            "tasks": [list(t) for t in self.tasks],
            "global_step": self.global_step,
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "method": self.method.state_dict(),
            "method_origins": {name: REGISTRY.origin(name, self.config.method.modules) for name in self.config.methods},
            "optimizers": (None if self.method.resets_optimizers or self.optimizers is None
                           else [optimizer.state_dict() for optimizer in self.optimizers]),
            "rng": rng_state(),
            "accuracy_matrix": self.accuracy_matrix,
            "quality_matrices": self.quality_matrices,
            "results_json": json.dumps([asdict(r) for r in self.results]),
        }

    def save_checkpoint(self) -> Path:
        """Write ``<out_dir>/task_<t>/checkpoint.pt`` atomically; returns its directory."""
        directory = self.out_dir / f"task_{self.tasks_done}"
        save_checkpoint(self.checkpoint_state(), directory / "checkpoint.pt")
        save_yaml(self.config, directory / "config.yaml")
        return directory
