"""What a method's hooks are handed: the training they act on (a protocol) and the task at hand (a context).

A method never sees the ``Trainer`` class. Its hooks get ``training``, anything with the attributes of
:class:`Training` (the trainer is one; a test may hand a smaller object), and ``task``, a
:class:`TaskContext` that the trainer builds ONCE per task: the task's classes, the earlier classes (as
a list and as a tensor on the device), how many replayed samples each earlier class gets per step and
their labels. Hooks read these instead of re-deriving them every step, so an iteration holds no Python
work that depends on the task, and no host read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:  # type hints only: the methods stand below the config and the data
    from mergan.config import ExperimentConfig
    from mergan.data import ClassDataset, ImageSet
    from mergan.iteration import Draws


class Batches(Protocol):
    """Random batches of real images of some classes (the trainer's ``RealBatches``)."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: (images, labels) on the training device."""

    def labels(self, n: int) -> torch.Tensor:
        """``n`` labels drawn like a batch's, without loading images."""


class Training(Protocol):
    """What a method's hooks may use of the training they are part of."""

    config: ExperimentConfig
    device: torch.device
    generator: nn.Module
    critic: nn.Module
    tasks: list[list[int]]  # the task stream: classes of each task, in training order
    dataset: ClassDataset
    train_set: ImageSet  # the dataset's training images, on the device when they fit in memory
    draws: Draws  # static buffers for the random draws of an iteration (see mergan.iteration.Draws)

    def real_batches(self, classes: list[int], conditional_labels: bool | None = None) -> Batches:
        """Batches of the training images of ``classes``."""


def reduces_batch(dataset: str, reduce_batch: bool | None) -> bool:
    """The authors' ``REDUCE_BATCH``: True for digits (one batch split over the earlier classes,
    replay terms summed), False for LSUN (a whole batch per earlier class, terms divided by their number).
    ``reduce_batch`` (the method knob) overrides it when not empty."""
    return dataset != "lsun" if reduce_batch is None else reduce_batch


def per_class_replay_count(n_real: int, n_earlier: int, reduce: bool, share: float | None = None) -> int:
    """Replayed images per earlier class in a step whose real batch holds ``n_real`` images.

    Default (the authors' code): ``n_real // class_count`` with ``class_count`` the number of EARLIER
    classes (64, 32, ..., 7 at the tenth one-digit task), or ``n_real`` per earlier class when the batch
    is not reduced (LSUN). With a replay ``share`` s, the replayed part is a share s of the whole step.
    """
    if share is None:
        return max(1, n_real // n_earlier) if reduce else n_real
    return max(1, round(n_real * share / (1 - share) / n_earlier))


def class_runs(classes: Sequence[int], per_class: int, device: torch.device | str) -> torch.Tensor:
    """Every class of ``classes``, ``per_class`` times each, grouped by class: [c0, c0, ..., c1, c1, ...]."""
    return torch.tensor(list(classes), dtype=torch.long, device=device).repeat_interleave(per_class)


@dataclass(frozen=True)
class TaskContext:
    """Task ``index`` (0-based; users see ``index + 1``) and the facts about it every method needs."""

    index: int
    classes: tuple[int, ...]  # this task's classes
    earlier_classes: tuple[int, ...]  # classes of tasks 0..index-1, in stream order
    earlier: torch.Tensor  # the same as a LongTensor on the device
    replay_per_class: int  # replayed samples per earlier class in one step (0 at the first task)
    replay_labels: torch.Tensor  # each earlier class replay_per_class times, grouped by class
    reduces_batch: bool  # the authors' REDUCE_BATCH for this run (see reduces_batch)

    @property
    def seen_classes(self) -> tuple[int, ...]:
        """Classes of tasks 0..index: the earlier ones and this task's."""
        return self.earlier_classes + self.classes

    @property
    def first(self) -> bool:
        """True for the first task, which has nothing earlier to protect."""
        return not self.earlier_classes


def task_context(tasks: Sequence[Sequence[int]], index: int, config: ExperimentConfig,
                 device: torch.device | str) -> TaskContext:
    """The context of task ``index`` of the stream ``tasks`` under ``config`` (its batch size, dataset and
    the replay knobs ``replay_share`` and ``reduce_batch``)."""
    earlier = tuple(c for task in tasks[:index] for c in task)
    reduce = reduces_batch(config.data.dataset, config.method.reduce_batch)
    per_class = (per_class_replay_count(config.optim.batch_size, len(earlier), reduce, config.method.replay_share)
                 if earlier else 0)
    return TaskContext(index=index, classes=tuple(tasks[index]), earlier_classes=earlier,
                       earlier=torch.tensor(earlier, dtype=torch.long, device=device),
                       replay_per_class=per_class, replay_labels=class_runs(earlier, per_class, device),
                       reduces_batch=reduce)
