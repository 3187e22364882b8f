"""Refusing a config that cannot run, before any compute: each field against its definition, then the rules
between fields (a dataset's files, an architecture's image size, a method combination, the task stream).

Torch-free, so that validating a config needs no dataset: the task stream as a config writes it
(``data.tasks``, ``data.task_order``) is read into class lists here, and ``mergan/data/tasks.py`` applies
them to the data."""

from __future__ import annotations

import os

from mergan.config import NEAREST_K, PAPER_EVALUATOR_DATASETS, ExperimentConfig, method_registry, section_knobs
from mergan.settings import ConfigError

TASK_ORDERS = ("label", "random")  # or an explicit order of the stream's classes


def validate_config(config: ExperimentConfig) -> ExperimentConfig:
    """Refuse any value that cannot run; data-dependent checks (classes) live in the data layer."""
    data, model, method, ev = config.data, config.model, config.method, config.eval
    for section_name, section in config.sections().items():  # each field against its own definition
        for name, knob in section_knobs(section).items():
            knob.check(getattr(section, name), f"{section_name}.{name}")
    method_registry().parse(method.method, method.modules)  # unknown or contradictory combinations
    if data.dataset in ("mnist", "svhn", "lsun", "folder") and not data.data_root:
        raise ConfigError(f"data.data_root: dataset {data.dataset!r} reads its standard files from a folder; "
                          f"give it with --data-root (only mnist5k is embedded)")
    sizes = {"small": (32,), "dcgan": (32,), "resnet": (64,)}[model.arch]
    if model.image_size not in sizes:
        raise ConfigError(f"model.image_size: the {model.arch} architecture makes "
                          f"{' or '.join(map(str, sizes))}x{sizes[0]} images, not {model.image_size}; "
                          f"allowed: {', '.join(map(str, sizes))}")
    if data.tasks is not None:
        parse_tasks(data.tasks)
    parse_task_order(data.task_order)
    if ev.evaluator == "paper" and data.dataset not in PAPER_EVALUATOR_DATASETS:
        raise ConfigError(f"eval.evaluator: 'paper' means the authors' evaluator of the dataset, and they published "
                          f"one for {', '.join(PAPER_EVALUATOR_DATASETS)} only, not {data.dataset!r}; use 'cnn'")
    if ev.drift_alarm > 1:
        raise ConfigError(f"eval.drift_alarm: {ev.drift_alarm} is not allowed; allowed: in (0, 1], the share of a "
                          f"class's first recall or coverage it may lose before the alarm (1: never)")
    wanted = {"fast": 2, "full": NEAREST_K + 1}.get(ev.quality, 0)
    if ev.eval_when != "none" and ev.eval_samples_per_class < wanted:
        neighbours = ", and k=5 nearest neighbours" if ev.quality == "full" else ""
        raise ConfigError(f"eval.eval_samples_per_class: eval.quality {ev.quality} needs at least {wanted} generated "
                          f"images per class (a covariance{neighbours}), not {ev.eval_samples_per_class}; raise it "
                          f"or set eval.quality to {'fast or ' if ev.quality == 'full' else ''}none")
    for name in ("inception_weights", "evaluator_weights", "jt_results"):
        path = getattr(ev, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"eval.{name}: {path} is not a file")
    return config


def parse_task_order(text: str) -> list[int] | None:
    """``"label"`` / ``"random"`` -> None; ``"3,1,4"`` -> [3, 1, 4] (which classes it must hold is the data's check)."""
    if text in TASK_ORDERS:
        return None
    try:
        order = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        order = []
    if not order or len(set(order)) != len(order):
        raise ConfigError(f"data.task_order: {text!r} is not allowed; allowed: {', '.join(TASK_ORDERS)}, or every "
                          f"class of the stream once, in the order wanted, e.g. 3,1,4,0,2")
    return order


def parse_tasks(text: str) -> list[list[int]]:
    """``"0,1|2,3|4"`` -> [[0, 1], [2, 3], [4]]; a class may appear in one task only."""
    tasks: list[list[int]] = []
    for chunk in str(text).split("|"):
        try:
            classes = [int(c) for c in chunk.split(",") if c.strip()]
        except ValueError:
            raise ConfigError(f"data.tasks: {text!r} is not a task split; write class indices, "
                              f"',' within a task and '|' between tasks, e.g. '0,1|2,3|4'") from None
        if not classes:
            raise ConfigError(f"data.tasks: {text!r} has an empty task")
        tasks.append(classes)
    seen = [c for task in tasks for c in task]
    if len(seen) != len(set(seen)):
        raise ConfigError(f"data.tasks: {text!r} puts a class in more than one task")
    if min(seen) < 0:
        raise ConfigError(f"data.tasks: {text!r} names a negative class")
    return tasks
