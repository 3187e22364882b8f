"""DGR, deep generative replay (Shin et al. 2017), as the MeRGAN paper compares against it.

An unconditional WGAN-GP generator (one class, no auxiliary loss) trains on the current task's
real images plus images replayed by its frozen previous copy (the same share of each batch as
JTR's replay). A separate solver classifier, after each task, trains on the task's real images
(true labels) plus images replayed by the previous generator, labelled by the previous solver.

So that DGR is evaluated like the conditional methods, drawing "class c" from DGR means drawing
unconditional samples and keeping those the solver labels c (rejection sampling). If after
``_MAX_ROUNDS`` rounds a class still has too few, the rest are the samples the solver finds most
c-like: the evaluator then judges how c-like they really are, so a DGR that forgot c scores low
on c instead of failing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergan.methods.base import REDUCE_BATCH, REPLAY_SHARE, PreviousGeneratorMethod, frozen_copy
from mergan.methods.context import TaskContext, Training
from mergan.models.norm import groups_of_size
from mergan.settings import POSITIVE, Knob

DGR_SOLVER_ITERATIONS = Knob("dgr_solver_iterations", 500, "training steps of the solver per task", POSITIVE)
DGR_SOLVER_LR = Knob("dgr_solver_lr", 1e-3, "learning rate of the solver", POSITIVE)

_MAX_ROUNDS = 20


class Solver(nn.Module):
    """A small CNN classifier over every class of the dataset."""

    def __init__(self, num_classes: int, channels: int, image_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (image_size // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class DeepGenerativeReplay(PreviousGeneratorMethod):
    name = "dgr"
    summary = "deep generative replay: an unconditional G replays earlier tasks, a solver labels the replay"
    alone = ("dgr trains an unconditional generator with its own solver; the conditional methods act on a "
             "class-conditional generator")
    conditional = False
    knobs = (DGR_SOLVER_ITERATIONS, DGR_SOLVER_LR, REPLAY_SHARE, REDUCE_BATCH)

    def __init__(self, config=None):
        super().__init__(config)
        self.previous_solver = None
        self.solver: Solver | None = None

    def setup(self, training: Training) -> None:
        ds = training.dataset
        self.solver = Solver(ds.num_classes, ds.channels, training.config.model.image_size).to(training.device)

    def before_task(self, training: Training, task: TaskContext) -> None:
        super().before_task(training, task)
        self.previous_solver = None if task.first else frozen_copy(self.solver)

    def replay_labels(self, training: Training, task: TaskContext) -> torch.Tensor | None:
        if self.previous_generator is None:
            return None
        return torch.zeros_like(task.replay_labels)  # unconditional: one class, as many as the earlier classes get

    def replay(self, training: Training, task: TaskContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        labels = self.replay_labels(training, task)
        if labels is None:
            return None
        z = training.draws.normal("dgr.z", (labels.shape[0], training.config.model.z_dim))
        return self._draw_previous(training, labels.shape[0], z), labels

    def _draw_previous(self, training: Training, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            z = torch.randn(n, training.config.model.z_dim, device=training.device)
        with torch.no_grad():
            return self.previous_generator(z, torch.zeros(n, dtype=torch.long, device=training.device))

    def replay_for_solver(self, training: Training, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of the previous generator with the labels the previous solver gives them."""
        images = self._draw_previous(training, n)
        with torch.no_grad():
            return images, self.previous_solver(images).argmax(1)

    def after_task(self, training: Training, task: TaskContext) -> None:
        """Train the solver on the task's real images plus replay labelled by the previous solver."""
        optimizer = torch.optim.Adam(self.solver.parameters(), lr=self.config.dgr_solver_lr)
        batches = training.real_batches(list(task.classes), conditional_labels=True)
        self.solver.train()
        for _ in range(self.config.dgr_solver_iterations):
            images, labels = batches.next()
            if self.previous_solver is not None:
                replay_images, replay_labels = self.replay_for_solver(training, task.replay_labels.shape[0])
                images, labels = torch.cat([images, replay_images]), torch.cat([labels, replay_labels])
            loss = F.cross_entropy(self.solver(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.solver.eval()

    def sampler(self, training: Training) -> SolverFilteredSampler:
        return SolverFilteredSampler(training.generator, self.solver, training.config.model.z_dim,
                                     training.config.optim.batch_size)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "solver": self.solver.state_dict(),
            "previous_solver": self.previous_solver.state_dict() if self.previous_solver else None,
        }

    def load_state_dict(self, state: dict, training: Training) -> None:
        super().load_state_dict(state, training)
        self.solver.load_state_dict(state["solver"])
        if state.get("previous_solver") is not None:
            self.previous_solver = frozen_copy(self.solver)
            self.previous_solver.load_state_dict(state["previous_solver"])


class SolverFilteredSampler:
    """Draws "class c" from an unconditional generator by keeping samples the solver labels c."""

    def __init__(self, generator: nn.Module, solver: nn.Module, z_dim: int, group_size: int):
        self.generator, self.solver, self.z_dim, self.group_size = generator, solver, z_dim, group_size

    def unconditional(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the unconditional generator, normalised in groups of the training batch size."""
        labels = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        return self.generator(z, labels, groups_of_size(labels, 1, self.group_size))

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        device = z.device
        # Extra noise comes from a generator seeded by z, so the same z gives the same images and
        # the global RNG (training's) is never touched.
        rng = torch.Generator(device=device).manual_seed(int(z.flatten()[:8].abs().sum().item() * 1e6) % 2**31)
        self.solver.eval()
        wanted = {int(c): int((labels == c).sum()) for c in labels.unique()}
        kept: dict[int, list[torch.Tensor]] = {c: [] for c in wanted}
        best: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        noise = z
        for _ in range(_MAX_ROUNDS):
            images = self.unconditional(noise)
            probs = F.softmax(self.solver(images), dim=1)
            predicted = probs.argmax(1)
            for c, count in wanted.items():
                have = sum(x.shape[0] for x in kept[c])
                if have < count:
                    kept[c].append(images[predicted == c][: count - have])
                scores = probs[:, c]
                pool_images = images if c not in best else torch.cat([best[c][0], images])
                pool_scores = scores if c not in best else torch.cat([best[c][1], scores])
                top = pool_scores.topk(min(count, pool_scores.shape[0])).indices
                best[c] = (pool_images[top], pool_scores[top])
            if all(sum(x.shape[0] for x in kept[c]) >= wanted[c] for c in wanted):
                break
            noise = torch.randn(z.shape, generator=rng, device=device)
        out = torch.empty((labels.shape[0], *images.shape[1:]), device=device, dtype=images.dtype)
        for c, n in wanted.items():
            chosen = torch.cat(kept[c]) if kept[c] else images[:0]
            if chosen.shape[0] < n:
                chosen = torch.cat([chosen, best[c][0][: n - chosen.shape[0]]])
            out[labels == c] = chosen[:n]
        return out
