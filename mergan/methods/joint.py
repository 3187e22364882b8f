"""JT, joint training: the upper bound, as the authors' ``joint.py`` trains it; and its streamed variant.

``jt`` trains ONE model on the real images of every class of the stream from the first step, with
one pair of optimizers for the whole run (no reset between tasks). The trainer still runs it in
``iterations_per_task`` segments, so it is evaluated at the same points as the sequential methods:
after k segments (the budget of tasks 1..k) on the classes of tasks 1..k. After the last segment
it has had the whole budget, tasks x iterations_per_task, on all classes at once.

``jt-stream`` trains task t on the real images of tasks 1..t (fresh optimizers per task, like the
sequential methods): a model that has seen all the data so far at every point, the reference
that intransigence (Chaudhry et al. 2018) compares against.

Both normalise each mixed-class training batch as one (the generator's batch norm pools all its classes,
as in ``joint.py``), and are evaluated on mixed batches of the training batch size in which the classes
take turns, as ``joint.py``'s evaluation labels ``[0, ..., 9] * 10`` do.
"""

from __future__ import annotations

import torch

from mergan.methods.base import Method, MixedClassSampler
from mergan.methods.context import TaskContext, Training
from mergan.models.norm import NormGroups, consecutive_groups


class MixedBatchMethod(Method):
    """Trains on batches that mix classes and normalises each batch as one, as ``joint.py`` does (its
    generator calls hold 64 samples of random classes); evaluated the same way (``MixedClassSampler``)."""

    def norm_groups(self, training: Training, labels: torch.Tensor) -> NormGroups:
        return consecutive_groups(labels.shape[0], labels.shape[0], labels.device)

    def sampler(self, training: Training) -> MixedClassSampler:
        return MixedClassSampler(training.generator, training.config.model.z_dim, training.config.optim.batch_size)


class JointTraining(MixedBatchMethod):
    name = "jt"
    summary = "joint training, the upper bound: one model on every class of the stream from the first step"
    alone = "jt trains on all real data jointly, so there is nothing to protect or replay"
    resets_optimizers = False

    def real_classes(self, training: Training, task: TaskContext) -> list[int]:
        return [c for stream_task in training.tasks for c in stream_task]


class StreamedJointTraining(MixedBatchMethod):
    name = "jt-stream"
    summary = "streamed joint training: task t trains on the real images of tasks 1..t (intransigence's reference)"
    alone = "jt-stream trains on the real data of every task so far, so there is nothing to protect or replay"

    def real_classes(self, training: Training, task: TaskContext) -> list[int]:
        return list(task.seen_classes)


class SequentialFineTuning(Method):
    """SFT, the lower bound: each task starts from the previous weights and sees only its own classes."""

    name = "sft"
    summary = "sequential fine-tuning, the lower bound: each task starts from the last weights, no protection"
    alone = "sft is the plain baseline that the others extend; write the other method alone"
