"""The class-incremental task stream: which classes each task trains on."""

from __future__ import annotations

from mergan.config import ConfigError, DataConfig, parse_tasks
from mergan.data.dataset import ClassDataset


def task_stream(ds: ClassDataset, data_config: DataConfig) -> list[list[int]]:
    """``data.tasks`` (e.g. "0,1|2,3|4") or one class per task in label order; first ``data.num_tasks`` kept.

    Refuses, with a ``ConfigError``, a class the dataset lacks or more tasks than the stream has.
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
    if data_config.num_tasks is not None:
        if not 0 < data_config.num_tasks <= len(tasks):
            raise ConfigError(f"data.num_tasks: {data_config.num_tasks} is not allowed; the task stream "
                              f"has {len(tasks)} tasks, allowed: 1..{len(tasks)}")
        tasks = tasks[:data_config.num_tasks]
    return tasks
