"""The task stream as a config writes it (``data.tasks``, ``data.task_order``) read into class lists.

Torch-free, so that validating a config needs no dataset; ``mergan/data/tasks.py`` applies them to the data.
"""

from __future__ import annotations

from mergan.settings import ConfigError

TASK_ORDERS = ("label", "random")  # or an explicit order of the stream's classes


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
