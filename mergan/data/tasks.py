"""The class-incremental task stream: which classes each task trains on."""

from __future__ import annotations

from mergan.config import ConfigError, DataConfig, parse_tasks
from mergan.data.dataset import ClassDataset


def task_stream(ds: ClassDataset, data_config: DataConfig) -> list[list[int]]:
    """``data.tasks`` (e.g. "0,1|2,3|4") or one class per task in label order; first ``data.num_tasks`` kept.

    Refuses, with a ``ConfigError``, a class the dataset lacks or more tasks than the stream has.
    """
    if data_config.tasks is not None:
        tasks = parse_tasks(data_config.tasks)
    else:
        tasks = [[c] for c in range(ds.num_classes)]
    for task in tasks:
        for cls in task:
            if not 0 <= cls < ds.num_classes:
                names = ", ".join(f"{i}={n}" for i, n in enumerate(ds.class_names))
                raise ConfigError(f"data.tasks: class {cls} is not in dataset {ds.name!r}; allowed: "
                                  f"0..{ds.num_classes - 1} ({names})")
    if data_config.num_tasks is not None:
        if not 0 < data_config.num_tasks <= len(tasks):
            raise ConfigError(f"data.num_tasks: {data_config.num_tasks} is not allowed; the task stream "
                              f"has {len(tasks)} tasks, allowed: 1..{len(tasks)}")
        tasks = tasks[:data_config.num_tasks]
    return tasks
