"""The hooks a continual-learning method plugs into the trainer's one training loop.

A method changes training only through these hooks (Avalanche-style plugins):
- ``real_classes(t)``: whose real images task t trains on (JT: every task so far);
- ``before_task`` / ``after_task``: freeze a generator copy, draw a replay set, estimate a Fisher;
- ``replay(n_real)``: images (and labels) joined to the real batch, scored and classified as real;
- ``generator_terms`` / ``critic_terms``: extra named loss terms added to each step;
- ``norm_groups``: which samples of a training batch the generator's batch norm pools (default: each class);
- ``sampler``: how the evaluation draws images of a class;
- ``state_dict`` / ``load_state_dict``: what a checkpoint keeps.
Task indices ``t`` are 0-based here; user-facing task numbers are ``t + 1``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from mergan.config import MethodConfig
from mergan.models.norm import NormGroups, consecutive_groups, groups_of_size

if TYPE_CHECKING:
    from mergan.trainer import Trainer


def frozen_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy with no gradients: the generator as it was at the end of the previous task."""
    clone = copy.deepcopy(module).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


def earlier_classes(trainer: Trainer, t: int) -> list[int]:
    return [c for task in trainer.tasks[:t] for c in task]


def reduces_batch(trainer: Trainer) -> bool:
    """The authors' ``REDUCE_BATCH``: True for digits (one batch split over the earlier classes,
    replay terms summed), False for LSUN (a whole batch per earlier class, terms divided by their number)."""
    value = trainer.config.method.reduce_batch
    return trainer.config.data.dataset != "lsun" if value is None else value


def per_class_replay_count(trainer: Trainer, t: int, n_real: int) -> int:
    """Replayed images per earlier class in a step whose real batch holds ``n_real`` images.

    Default (the authors' code): ``n_real // class_count`` with ``class_count`` the number of
    EARLIER classes (64, 32, ..., 7 at the tenth one-digit task), or ``n_real`` per earlier class
    when the batch is not reduced (LSUN). With ``method.replay_share`` s, the replayed part is a
    share s of the whole step instead.
    """
    share = trainer.config.method.replay_share
    n_earlier = len(earlier_classes(trainer, t))
    if share is None:
        return max(1, n_real // n_earlier) if reduces_batch(trainer) else n_real
    return max(1, round(n_real * share / (1 - share) / n_earlier))


def replayed_labels(trainer: Trainer, t: int, per_class: int) -> torch.Tensor:
    """Every earlier class, ``per_class`` times each, grouped by class: [c0, c0, ..., c1, c1, ...]."""
    return torch.tensor(earlier_classes(trainer, t), device=trainer.device).repeat_interleave(per_class)


class Method:
    """The plain sequential baseline (SFT): every hook does nothing."""

    name = "sft"
    conditional = True  # False: the generator and critic are unconditional (one class)
    needs_previous_task = False
    resets_optimizers = True  # fresh Adam state at every task (the authors' mergan.py); JT keeps one
    # The method.* fields the method reads, its main knob first. Every other method field does nothing in
    # its runs, so a run's name leaves it out (see mergan.methods.acting_knobs).
    knobs: ClassVar[tuple[str, ...]] = ()
    # A knob that acts only when another field has a value: knob -> (field, value).
    knob_conditions: ClassVar[Mapping[str, tuple[str, Any]]] = {}
    # The knobs that name a run outside a sweep (the seed is always added); the numeric ones are what
    # analysis draws a hyperparameter response for.
    name_knobs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else MethodConfig()  # the run's method section, shared

    def setup(self, trainer: Trainer) -> None:
        pass

    def real_classes(self, trainer: Trainer, t: int) -> list[int]:
        return list(trainer.tasks[t])

    def before_task(self, trainer: Trainer, t: int) -> None:
        pass

    def after_task(self, trainer: Trainer, t: int) -> None:
        pass

    def replay(self, trainer: Trainer, t: int, n_real: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def replay_labels(self, trainer: Trainer, t: int, n_real: int) -> torch.Tensor | None:
        """Labels of a replayed batch without drawing its images (the generator step only needs labels)."""
        return None

    def generator_terms(self, trainer: Trainer, t: int) -> dict[str, torch.Tensor]:
        return {}

    def critic_terms(self, trainer: Trainer, t: int) -> dict[str, torch.Tensor]:
        return {}

    def norm_groups(self, trainer: Trainer, labels: torch.Tensor) -> NormGroups | None:
        """The batch-norm groups of a training batch of ``labels``; None: each class its own group (the
        authors' ``mergan.py``, whose every generator call holds one class)."""
        return None

    def sampler(self, trainer: Trainer) -> GeneratorSampler:
        return GeneratorSampler(trainer.generator, trainer.config.model.z_dim, trainer.config.optim.batch_size)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, trainer: Trainer) -> None:
        pass


class PreviousGeneratorMethod(Method):
    """A method that keeps G_{t-1}: a frozen copy of the generator taken before every task t > 1."""

    needs_previous_task = True

    def __init__(self, config: MethodConfig | None = None):
        super().__init__(config)
        self.previous_generator: nn.Module | None = None

    def before_task(self, trainer: Trainer, t: int) -> None:
        self.previous_generator = frozen_copy(trainer.generator) if t > 0 else None

    def state_dict(self) -> dict:
        return {"previous_generator": self.previous_generator.state_dict() if self.previous_generator else None}

    def load_state_dict(self, state: dict, trainer: Trainer) -> None:
        if state.get("previous_generator") is not None:
            self.previous_generator = frozen_copy(trainer.generator)
            self.previous_generator.load_state_dict(state["previous_generator"])


class GeneratorSampler:
    """Draws class c from a class-conditional generator: ``sample(labels, z)``.

    As in the authors' evaluation, each class's images are normalised in groups of the training
    batch size (64 of one class per call there), so a class's images never depend on which other
    classes are asked for at the same time, nor on how many (models/norm.py)."""

    def __init__(self, generator: nn.Module, z_dim: int, group_size: int):
        self.generator, self.z_dim, self.group_size = generator, z_dim, group_size

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        groups = groups_of_size(labels, self.generator.num_classes, self.group_size)
        return self.generator(z, labels, groups)


class MixedClassSampler(GeneratorSampler):
    """Draws from a generator trained on mixed-class batches (JT): each group of ``group_size``
    consecutive samples is normalised as one, whatever its classes, as in ``joint.py``'s training and
    evaluation; the evaluation feeds it the classes in turns (``mixes_classes``)."""

    mixes_classes = True

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, labels, consecutive_groups(labels.shape[0], self.group_size, labels.device))


class CompositeMethod(Method):
    """Several methods acting on different parts of training (``jtr+ra``, ``ra+ewc``)."""

    def __init__(self, methods: list[Method]):
        super().__init__(methods[0].config)
        self.methods = methods
        self.name = "+".join(m.name for m in methods)
        self.conditional = all(m.conditional for m in methods)
        self.needs_previous_task = any(m.needs_previous_task for m in methods)
        self.resets_optimizers = all(m.resets_optimizers for m in methods)

    def setup(self, trainer: Trainer) -> None:
        for method in self.methods:
            method.setup(trainer)

    def real_classes(self, trainer: Trainer, t: int) -> list[int]:
        return self.methods[0].real_classes(trainer, t)

    def before_task(self, trainer: Trainer, t: int) -> None:
        for method in self.methods:
            method.before_task(trainer, t)

    def after_task(self, trainer: Trainer, t: int) -> None:
        for method in self.methods:
            method.after_task(trainer, t)

    def replay(self, trainer, t, n_real):
        batches = [b for b in (m.replay(trainer, t, n_real) for m in self.methods) if b is not None]
        if not batches:
            return None
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    def replay_labels(self, trainer, t, n_real):
        labels = [y for y in (m.replay_labels(trainer, t, n_real) for m in self.methods) if y is not None]
        return torch.cat(labels) if labels else None

    def generator_terms(self, trainer, t):
        return {k: v for m in self.methods for k, v in m.generator_terms(trainer, t).items()}

    def critic_terms(self, trainer, t):
        return {k: v for m in self.methods for k, v in m.critic_terms(trainer, t).items()}

    def state_dict(self) -> dict:
        return {m.name: m.state_dict() for m in self.methods}

    def load_state_dict(self, state: dict, trainer: Trainer) -> None:
        for method in self.methods:
            method.load_state_dict(state.get(method.name, {}), trainer)
