"""One training iteration over static state, so that it can be captured whole in a CUDA graph (``mergan.graphs``).

A captured iteration replays the same kernels on the same memory, so everything it reads or writes must stay
where it was at capture: the random inputs live in static buffers refilled in place on the device
(:class:`Draws`: real-batch indices, noise, the penalty's interpolation weights, the methods' replay noise), the
loss sums in device tensors added to in place (:class:`LossSums`, read every ``log_every`` steps outside the
iteration), the gradients are zeroed in place rather than set to None. Nothing inside reads a tensor on the host
or branches on a tensor's value; the Python branches it has (is there replay, is ``lambda_cls`` zero) are fixed
for the whole task. On CPU, and on CUDA without graphs, the same iteration runs eagerly.

The draws come in the order the eager loop always drew them, one in-place fill where each used to allocate, so
a seeded run trains bit for bit as before (tests/test_iteration_trajectories.py); a captured graph draws the
same numbers too, since CUDA's generator hands a graph the offsets eager kernels would have had.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from mergan.losses import critic_loss, generator_loss

if TYPE_CHECKING:
    from mergan.methods import Method, TaskContext
    from mergan.methods.context import Batches


class Draws:
    """Static buffers for random draws: ``normal("jtr.z", (n, d))`` fills buffer "jtr.z" in place and returns it.

    A name is one draw site: its buffer is allocated at the first draw (or when the shape changes) and refilled
    by every later one, so a draw overwrites the previous draw of its name. Each fill draws from the global
    generator of its device exactly as ``torch.randn``/``rand``/``randint`` of that shape would.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.buffers: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | None
                ) -> torch.Tensor:
        device = self.device if device is None else torch.device(device)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype or buffer.device != device:
            buffer = torch.empty(shape, dtype=dtype, device=device)
            self.buffers[name] = buffer
        return buffer

    def normal(self, name: str, shape: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
        """Standard normal noise (``torch.randn``)."""
        return self._buffer(name, tuple(shape), torch.float32, device).normal_()

    def uniform(self, name: str, shape: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
        """Uniform in [0, 1) (``torch.rand``)."""
        return self._buffer(name, tuple(shape), torch.float32, device).uniform_()

    def integers(self, name: str, high: int, shape: tuple[int, ...], device: torch.device | None = None
                 ) -> torch.Tensor:
        """Integers in [0, high) (``torch.randint``)."""
        return self._buffer(name, tuple(shape), torch.long, device).random_(0, high)


class LossSums:
    """Each loss term's sum since the last read, in a device tensor that the iteration adds to in place."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            total = self.sums.get(name)
            if total is None:  # the first iteration of a task names the terms; a capture finds them all here
                total = self.sums[name] = torch.zeros((), dtype=torch.float32, device=value.device)
            total.add_(value.detach())

    def take(self, count: int) -> dict[str, float]:
        """The mean of each term over the last ``count`` iterations (one host sync), and the sums back to zero."""
        names = list(self.sums)
        means = (torch.stack([self.sums[n] for n in names]) / count).tolist()
        for total in self.sums.values():
            total.zero_()
        return dict(zip(names, means))


class TaskIteration:
    """One generator iteration of a task: ``critic_steps`` critic steps on real batches (plus the method's replay),
    then the generator step; each call trains once and adds its losses to ``sums``. Built once per task."""

    def __init__(self, training, method: Method, task: TaskContext, batches: Batches,
                 optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer], draws: Draws,
                 autocast: Callable[[], contextlib.AbstractContextManager]):
        self.training, self.method, self.task, self.batches, self.draws = training, method, task, batches, draws
        self.optimizer_g, self.optimizer_d = optimizers
        self.autocast = autocast
        self.sums = LossSums()
        optim = training.config.optim
        self.critic_steps, self.batch_size = optim.critic_steps, optim.batch_size
        self.z_dim = training.config.model.z_dim
        self.lambda_gp, self.lambda_cls = optim.lambda_gp, optim.lambda_cls

    def __call__(self) -> None:
        training, method, task, draws = self.training, self.method, self.task, self.draws
        generator, critic = training.generator, training.critic
        critic.requires_grad_(True)
        for _ in range(self.critic_steps):
            real, labels = self.batches.next()
            replay = method.replay(training, task)
            scored, scored_labels = ((torch.cat([real, replay[0]]), torch.cat([labels, replay[1]]))
                                     if replay is not None else (real, labels))
            z = draws.normal("critic.z", (scored_labels.shape[0], self.z_dim))
            alpha = draws.uniform("penalty.alpha", (real.shape[0], 1, 1, 1)) if self.lambda_gp else None
            with self.autocast():
                with torch.no_grad():
                    fake = generator(z, scored_labels, method.norm_groups(training, scored_labels))
                loss_d, parts = critic_loss(critic, scored, scored_labels, fake, self.lambda_gp, self.lambda_cls,
                                            penalty_real=real, alpha=alpha)
                extra_d = method.critic_terms(training, task)
                total_d = loss_d + sum(extra_d.values()) if extra_d else loss_d
            self.optimizer_d.zero_grad(set_to_none=False)  # in place: a captured backward writes the same memory
            total_d.backward()
            self.optimizer_d.step()
        critic.requires_grad_(False)  # the generator step needs no critic weight gradients
        replay_labels = method.replay_labels(training, task)
        labels = self.batches.labels(self.batch_size)
        if replay_labels is not None:
            labels = torch.cat([labels, replay_labels])
        z = draws.normal("generator.z", (labels.shape[0], self.z_dim))
        with self.autocast():
            fake = generator(z, labels, method.norm_groups(training, labels))
            loss_g, parts_g = generator_loss(critic, fake, labels, self.lambda_cls)
            extra_g = method.generator_terms(training, task)
            total_g = loss_g + sum(extra_g.values()) if extra_g else loss_g
        self.optimizer_g.zero_grad(set_to_none=False)
        total_g.backward()
        self.optimizer_g.step()
        critic.requires_grad_(True)
        self.sums.add({"loss_d": total_d, "loss_g": total_g, **parts, **parts_g, **extra_d, **extra_g})
