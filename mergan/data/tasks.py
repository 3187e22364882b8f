"""The class-incremental task stream: which classes each task trains on, and in which order."""

from __future__ import annotations

import numpy as np

from mergan.config import DataConfig
from mergan.data.dataset import ClassDataset
from mergan.settings import ConfigError
from mergan.validation import parse_task_order, parse_tasks


def ordered_tasks(tasks: list[list[int]], task_order: str, order_seed: int = 0) -> list[list[int]]:
    """The stream's classes put in ``task_order`` and cut into tasks of the stream's sizes.

    ``label``: as they are; ``random``: a permutation drawn from ``order_seed`` alone (numpy's PCG64, the
    same on every machine, and the training RNG untouched); ``"3,1,4,0,2"``: that order, which must hold
    every class of the stream once. With one class per task that is the order of the tasks.
    """
    classes = [c for task in tasks for c in task]
    explicit = parse_task_order(task_order)
    if explicit is None and task_order == "label":
        return [list(task) for task in tasks]
    if explicit is None:
        order = [classes[i] for i in np.random.default_rng(order_seed).permutation(len(classes))]
    elif sorted(explicit) != sorted(classes):
        raise ConfigError(f"data.task_order: {task_order!r} must hold every class of the stream once; the stream's "
                          f"classes are {','.join(map(str, sorted(classes)))}")
    else:
        order = explicit
    out, start = [], 0
    for task in tasks:
        out.append(order[start:start + len(task)])
        start += len(task)
    return out


def task_stream(ds: ClassDataset, data_config: DataConfig) -> list[list[int]]:
    """``data.tasks`` (e.g. "0,1|2,3|4") or one class per task in label order, put in ``data.task_order``; the
    first ``data.num_tasks`` kept.

    Refuses, with a ``ConfigError``, a class the dataset lacks, an order that is not one of the stream's
    classes, or more tasks than the stream has.
    """
    return tasks_of(ds.name, ds.class_names, data_config)


def tasks_of(dataset: str, class_names: list[str], data_config: DataConfig) -> list[list[int]]:
    """:func:`task_stream` for a dataset known by its class names only (e.g. before its images are read)."""
    if data_config.tasks is not None:
        tasks = parse_tasks(data_config.tasks)
    else:
        tasks = [[c] for c in range(len(class_names))]
    for task in tasks:
        for cls in task:
            if not 0 <= cls < len(class_names):
                names = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
                raise ConfigError(f"data.tasks: class {cls} is not in dataset {dataset!r}; allowed: "
                                  f"0..{len(class_names) - 1} ({names})")
    tasks = ordered_tasks(tasks, data_config.task_order, data_config.order_seed)
    if data_config.num_tasks is not None:
        if not 0 < data_config.num_tasks <= len(tasks):
            raise ConfigError(f"data.num_tasks: {data_config.num_tasks} is not allowed; the task stream "
                              f"has {len(tasks)} tasks, allowed: 1..{len(tasks)}")
        tasks = tasks[:data_config.num_tasks]
    return tasks
