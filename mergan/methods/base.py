"""The class every continual-learning method is, built in or a plugin: its definition and its hooks.

A method declares in its own class (Mammoth's one-file-per-method, Avalanche's plugins on one loop):
- ``name`` (``--method NAME``), ``summary`` (one line for ``--help``);
- how it combines with others (``'jtr+ra'``): ``changes``, the part of training it changes (two methods
  that change the same part do not combine), or, for a method that never combines, ``alone`` (why);
- ``knobs``: its settings (:class:`~mergan.settings.Knob`: name, default, allowed values, one line of
  meaning), which become ``method.<knob>`` config fields, flags, YAML keys, search-space parameters and
  MLflow params; ``knob_conditions``: a knob that acts only while another has a value; ``name_knobs``:
  those that name a run outside a sweep.

It changes training only through these hooks, each handed ``training`` (what a hook may use of the
trainer, :class:`~mergan.methods.context.Training`) and ``task`` (the :class:`TaskContext` built once
per task):
- ``real_classes``: whose real images the task trains on (JT: every class of the stream);
- ``before_task`` / ``after_task``: freeze a generator copy, draw a replay set, estimate a Fisher;
- ``replay``: images (and labels) joined to each real batch, scored and classified as real;
  ``replay_labels``: the labels alone, for the generator step;
- ``generator_terms`` / ``critic_terms``: extra named loss terms added to each step;
- ``norm_groups``: which samples of a training batch the generator's batch norm pools (default: each class);
- ``sampler``: how the evaluation draws images of a class;
- ``state_dict`` / ``load_state_dict``: what a checkpoint keeps.
Its knob values are ``self.config`` (the run's ``method`` section: ``self.config.lambda_ra``).

The hooks called inside an iteration (``replay``, ``replay_labels``, ``*_terms``, ``norm_groups``) are captured in
a CUDA graph on CUDA (``mergan.graphs``): they draw their random numbers on the device, best through
``training.draws`` (``training.draws.normal("my.z", (n, z_dim))``, a static buffer refilled at each draw), never
with Python's or numpy's generators (a capture would freeze them), and never read a tensor on the host
(``.item()``, ``if tensor``). A method whose hooks must do either sets ``capturable = False`` and runs eagerly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from mergan.methods.context import TaskContext, Training
from mergan.models.norm import NormGroups, consecutive_groups, groups_of_size
from mergan.settings import POSITIVE, Allowed, Knob

if TYPE_CHECKING:
    from mergan.config import MethodConfig

# Knobs that several methods read: one definition each, listed in every method's ``knobs`` that uses it.
REPLAY_SHARE = Knob("replay_share", None, "share of each step replayed (empty: the authors' batch // number of "
                                          "earlier classes, per earlier class)", Allowed(above=0, below=1),
                    type="float")
REDUCE_BATCH = Knob("reduce_batch", None, "the authors' REDUCE_BATCH: split one batch over the earlier classes and "
                                          "sum their terms (empty: yes, except for lsun, which replays a batch per "
                                          "earlier class and divides)", type="bool")
REPLAY_SIZE_PER_CLASS = Knob("replay_size_per_class", 1000, "images kept per earlier class in a fixed replay set",
                             POSITIVE)


def frozen_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy with no gradients: the generator as it was at the end of the previous task."""
    clone = copy.deepcopy(module).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


class Method:
    """A method whose hooks all do nothing: plain sequential fine-tuning. Subclass it for a method of your own."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # Combining: the part of training the method changes (e.g. "replay"), or None when the method never
    # combines, with ``alone`` saying why.
    changes: ClassVar[str | None] = None
    alone: ClassVar[str] = ""
    knobs: ClassVar[tuple[Knob, ...]] = ()
    # A knob that acts in this method only while another of its knobs has a value: knob -> (knob, value).
    knob_conditions: ClassVar[Mapping[str, tuple[str, Any]]] = {}
    # The knobs that name a run outside a sweep (the seed is always added); the numeric ones are what
    # analysis draws a hyperparameter response for.
    name_knobs: ClassVar[tuple[str, ...]] = ()
    conditional: bool = True  # False: the generator and critic are unconditional (one class)
    needs_previous_task: bool = False  # True: refuses a stream of one task (there is nothing to protect)
    resets_optimizers: bool = True  # fresh Adam state at every task (the authors' mergan.py); JT keeps one
    capturable: bool = True  # False: its iteration hooks read tensors on the host; never captured in a CUDA graph

    def __init__(self, config: MethodConfig | Any = None):
        # The run's method section, shared; any object with the knobs as attributes will do.
        self.config = config if config is not None else KnobValues(type(self).knobs)

    def setup(self, training: Training) -> None:
        pass

    def real_classes(self, training: Training, task: TaskContext) -> list[int]:
        return list(task.classes)

    def before_task(self, training: Training, task: TaskContext) -> None:
        pass

    def after_task(self, training: Training, task: TaskContext) -> None:
        pass

    def replay(self, training: Training, task: TaskContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def replay_labels(self, training: Training, task: TaskContext) -> torch.Tensor | None:
        """Labels of a replayed batch without drawing its images (the generator step only needs labels)."""
        return None

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        return {}

    def critic_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        return {}

    def norm_groups(self, training: Training, labels: torch.Tensor) -> NormGroups | None:
        """The batch-norm groups of a training batch of ``labels``; None: each class its own group (the
        authors' ``mergan.py``, whose every generator call holds one class)."""
        return None

    def sampler(self, training: Training) -> GeneratorSampler:
        return GeneratorSampler(training.generator, training.config.model.z_dim, training.config.optim.batch_size)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, training: Training) -> None:
        pass


class KnobValues:
    """A method's knobs at their defaults, as attributes (for a method built without a run's config)."""

    def __init__(self, knobs: tuple[Knob, ...]):
        for knob in knobs:
            setattr(self, knob.name, knob.default)


class PreviousGeneratorMethod(Method):
    """A method that keeps G_{t-1}: a frozen copy of the generator taken before every task t > 1."""

    needs_previous_task = True

    def __init__(self, config: MethodConfig | Any = None):
        super().__init__(config)
        self.previous_generator: nn.Module | None = None

    def before_task(self, training: Training, task: TaskContext) -> None:
        self.previous_generator = None if task.first else frozen_copy(training.generator)

    def state_dict(self) -> dict:
        return {"previous_generator": self.previous_generator.state_dict() if self.previous_generator else None}

    def load_state_dict(self, state: dict, training: Training) -> None:
        if state.get("previous_generator") is not None:
            self.previous_generator = frozen_copy(training.generator)
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
    """Several methods acting on different parts of training (``jtr+ra``, ``ra+ewc``): each hook calls them all."""

    def __init__(self, methods: list[Method]):
        super().__init__(methods[0].config)
        self.methods = methods
        self.name = "+".join(m.name for m in methods)
        self.conditional = all(m.conditional for m in methods)
        self.needs_previous_task = any(m.needs_previous_task for m in methods)
        self.resets_optimizers = all(m.resets_optimizers for m in methods)
        self.capturable = all(m.capturable for m in methods)

    def setup(self, training: Training) -> None:
        for method in self.methods:
            method.setup(training)

    def real_classes(self, training: Training, task: TaskContext) -> list[int]:
        return self.methods[0].real_classes(training, task)

    def before_task(self, training: Training, task: TaskContext) -> None:
        for method in self.methods:
            method.before_task(training, task)

    def after_task(self, training: Training, task: TaskContext) -> None:
        for method in self.methods:
            method.after_task(training, task)

    def replay(self, training: Training, task: TaskContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        batches = [b for b in (m.replay(training, task) for m in self.methods) if b is not None]
        if not batches:
            return None
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    def replay_labels(self, training: Training, task: TaskContext) -> torch.Tensor | None:
        labels = [y for y in (m.replay_labels(training, task) for m in self.methods) if y is not None]
        return torch.cat(labels) if labels else None

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        return {k: v for m in self.methods for k, v in m.generator_terms(training, task).items()}

    def critic_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        return {k: v for m in self.methods for k, v in m.critic_terms(training, task).items()}

    def state_dict(self) -> dict:
        return {m.name: m.state_dict() for m in self.methods}

    def load_state_dict(self, state: dict, training: Training) -> None:
        for method in self.methods:
            method.load_state_dict(state.get(method.name, {}), training)
