"""ER, experience replay of real images: the reference for generated replay at a given memory (not in the paper).

After each task a buffer keeps ``replay_size_per_class`` real training images of each of its classes (all
of a class's images when it has fewer), drawn at random; the buffer only grows, one block per class. At
every later step each earlier class gets the authors' per-class count of images (``batch // class_count``
for digits, a batch for LSUN, or ``replay_share``), drawn from its block with replacement, and they train
the GAN exactly as MeRGAN-JTR's replayed images do (``per_class_replay_loss``: a Wasserstein and class
term per earlier class, the buffer's images as "real", G_t's as "fake"). So ER and JTR with
``replay_mode: fixed`` and the same ``replay_size_per_class`` differ in one thing only: the replayed
images are real ones kept in memory, not G_{t-1}'s (the ``replay-size`` space compares them).

The buffer holds positions in the training set, not pixels: a checkpoint keeps a few kilobytes, and
the images come from the same dataset on resume.
"""

from __future__ import annotations

import torch

from mergan.methods.base import REDUCE_BATCH, REPLAY_SHARE, REPLAY_SIZE_PER_CLASS, Method
from mergan.methods.context import TaskContext, Training
from mergan.methods.joint_retraining import per_class_replay_loss


class ExperienceReplay(Method):
    name = "er"
    summary = ("experience replay (not in the paper): replay_size_per_class real images of each earlier class, "
               "replayed as JTR replays G_{t-1}'s")
    changes = "replay"
    needs_previous_task = True
    knobs = (REPLAY_SIZE_PER_CLASS, REPLAY_SHARE, REDUCE_BATCH)
    name_knobs = ("replay_size_per_class",)

    def __init__(self, config=None):
        super().__init__(config)
        self.buffer: dict[int, torch.Tensor] = {}  # class -> positions of its kept images in the training set
        self.rows: torch.Tensor | None = None  # per replayed sample: its class's block in the stacked buffer
        self.stacked: torch.Tensor | None = None  # [earlier classes, largest block] positions, padded
        self.block_sizes: torch.Tensor | None = None  # per replayed sample: how many images its class keeps

    def after_task(self, training: Training, task: TaskContext) -> None:
        """Keep ``replay_size_per_class`` random training images of each class of the task just learned."""
        for cls in task.classes:
            members = training.train_set.indices_of([cls])
            self.buffer[cls] = members[torch.randperm(members.numel())[: self.config.replay_size_per_class]]

    def before_task(self, training: Training, task: TaskContext) -> None:
        """Lay the earlier classes' blocks out once, so that each step only draws offsets on the device."""
        self.rows = self.stacked = self.block_sizes = None
        if task.first:
            return
        blocks = [self.buffer[c] for c in task.earlier_classes]
        width = max(block.numel() for block in blocks)
        stacked = torch.stack([torch.cat([b, b[:1].expand(width - b.numel())]) for b in blocks])
        where = training.device if training.train_set.in_memory else torch.device("cpu")
        self.stacked = stacked.to(where)
        self.rows = torch.arange(len(blocks), device=where).repeat_interleave(task.replay_per_class)
        self.block_sizes = torch.tensor([b.numel() for b in blocks], device=where)[self.rows]

    def replayed_images(self, training: Training) -> torch.Tensor:
        """One step's real images of the earlier classes, grouped by class as ``task.replay_labels``."""
        offsets = (training.draws.uniform("er.offsets", tuple(self.rows.shape), self.rows.device)
                   * self.block_sizes).long()
        return training.train_set.get(self.stacked[self.rows, offsets]).to(training.device, non_blocking=True)

    def critic_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.rows is None:
            return {}
        real = self.replayed_images(training)
        z = training.draws.normal("er.critic.z", (task.replay_labels.shape[0], training.config.model.z_dim))
        with torch.no_grad():
            generated = training.generator(z, task.replay_labels)
        loss = per_class_replay_loss(training.critic, generated, task.replay_labels, len(task.earlier_classes),
                                     training.config.optim.lambda_cls, replayed=real)
        return {"loss_er_d": loss if task.reduces_batch else loss / len(task.earlier_classes)}

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.rows is None:
            return {}
        z = training.draws.normal("er.generator.z", (task.replay_labels.shape[0], training.config.model.z_dim))
        loss = per_class_replay_loss(training.critic, training.generator(z, task.replay_labels), task.replay_labels,
                                     len(task.earlier_classes), training.config.optim.lambda_cls)
        return {"loss_er_g": loss if task.reduces_batch else loss / len(task.earlier_classes)}

    def state_dict(self) -> dict:
        return {"classes": list(self.buffer), "buffer": [block.cpu() for block in self.buffer.values()]}

    def load_state_dict(self, state: dict, training: Training) -> None:
        self.buffer = {int(c): block for c, block in zip(state.get("classes", []), state.get("buffer", []))}
