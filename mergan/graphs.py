"""Whole-iteration CUDA graphs: each task's training iteration captured once in one ``torch.cuda.graph``, then replayed.

An iteration of the paper's nets launches about 1,500 small kernels (5 critic steps with the gradient penalty's
double backward, the generator step, two Adam updates): on a GPU it is launch-bound, and replaying it as one
graph ran 3x faster on an H100 (../shared/MEASURED.md). The recipe (PyTorch's "whole network capture"):
the iteration keeps its inputs and outputs in static memory (``mergan.iteration``), Adam is ``capturable`` (its
step counts on the device), a few eager iterations run first on a side stream (they allocate the gradients, the
optimizer state, the draw buffers and loss sums, and warm up cuDNN), then one iteration is captured and every
later one is a ``replay()``. Shapes change with the task (the replay share, the earlier classes), so each task
captures its own graph. torch.compile stays out: it cannot differentiate the penalty twice.

``optim.cuda_graph``: ``auto`` captures on CUDA and runs eagerly elsewhere; ``on`` insists on CUDA (refused on
another device); ``off`` never captures. A run whose iteration cannot be captured runs eagerly with a note naming
why (``graph_blocker``): images streamed from disk (their batches are read on the host), or a method that
declares ``capturable = False``. A capture that fails anyway (a plugin that reads a tensor on the host) warns
once and the task goes on eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from mergan.settings import ConfigError

if TYPE_CHECKING:
    from mergan.data import ImageSet
    from mergan.methods import Method

WARMUP_ITERATIONS = 3  # eager iterations before the capture (PyTorch's recipe: a few, on a side stream)


def check_graph_mode(mode: str, device: torch.device) -> None:
    """Refuse ``optim.cuda_graph: on`` on a device without CUDA graphs, before anything is loaded."""
    if mode == "on" and device.type != "cuda":
        raise ConfigError(f"optim.cuda_graph: 'on' captures training in CUDA graphs, but the run's device is "
                          f"{device.type}; use 'auto' (graphs on CUDA, eager elsewhere) or 'off'")


def graph_blocker(method: Method, train_set: ImageSet, dataset: str) -> str | None:
    """Why this run's iteration cannot be captured in a CUDA graph; None when it can."""
    if not train_set.in_memory:
        return f"data.dataset {dataset!r} streams its images from disk, so each batch is read on the host"
    parts = getattr(method, "methods", [method])  # a combined method's parts
    eager = [m.name for m in parts if not getattr(m, "capturable", True)]
    if eager:
        return f"method {', '.join(eager)} is not capturable (its class sets capturable = False)"
    return None


def uses_graphs(mode: str, device: torch.device, blocker: str | None) -> bool:
    """Whether the run captures its iterations: ``on`` or ``auto`` on CUDA, when nothing blocks it."""
    return mode != "off" and device.type == "cuda" and blocker is None


class GraphedIteration:
    """Runs a task's iteration: the first ``warmup`` calls eagerly on a side stream, the next one captures it in a
    CUDA graph (and replays it once), every later call replays the graph. Each call is one training iteration."""

    def __init__(self, iteration: Callable[[], None], warmup: int | None = None):
        self.iteration = iteration
        self.warmup = WARMUP_ITERATIONS if warmup is None else warmup
        self.eager_calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failure: str | None = None  # why the capture failed; the task then runs eagerly
        self.side_stream = torch.cuda.Stream()

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.failure is not None:
            self.iteration()
        elif self.eager_calls < self.warmup:
            self._warm_up()
        else:
            self._capture()

    def _warm_up(self) -> None:
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream):
            self.iteration()
        torch.cuda.current_stream().wait_stream(self.side_stream)
        self.eager_calls += 1

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.iteration()
        except RuntimeError as error:  # nothing ran during the capture: the iteration is still to do
            self.failure = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"optim.cuda_graph: the iteration could not be captured ({self.failure}); this task "
                          f"runs eagerly", RuntimeWarning, stacklevel=2)
            torch.cuda.synchronize()
            self.iteration()
            return
        self.graph = graph
        graph.replay()
