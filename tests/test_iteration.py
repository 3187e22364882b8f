"""The training iteration is capturable, checked on CPU: it reads no tensor on the host (Adam's own step aside,
which is ``capturable`` on CUDA), keeps everything it reads and writes at fixed addresses, redraws its random
inputs in place every call; ``optim.cuda_graph`` is validated before anything is loaded, and a run that cannot be
captured says why. (That the restructured iteration trains bit for bit as before: test_iteration_trajectories.py;
capture itself, on CUDA: test_cuda_graphs.py.)"""

from __future__ import annotations

import contextlib
import types

import pytest
import torch

from mergan.config import ConfigError
from mergan.graphs import graph_blocker, uses_graphs
from mergan.iteration import Draws, LossSums
from mergan.methods import Method, build_method
from mergan.trainer import Trainer
from mergan_cli.main import main

# Every built-in method that trains a generator step by step, with its replay switched on (task 3 of 3), and a
# combination of each kind.
METHODS = {
    "sft": {}, "jt": {}, "jt-stream": {}, "ewc": {}, "l2": {}, "dgr": {}, "jtr": {},
    "jtr-fixed": dict(method="jtr", replay_mode="fixed", replay_size_per_class=5),
    "jtr-concatenated": dict(method="jtr", jtr_loss="concatenated"), "ra": {},
    "er": dict(replay_size_per_class=5), "jtr+ra+ewc": {}, "er+ra+l2": dict(replay_size_per_class=5),
}
HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


def iteration_at_third_task(tiny_config, mnist5k, case: str, **overrides):
    values = {"method": case, **METHODS[case], **overrides}
    trainer = Trainer(tiny_config(tasks="0|1|2", critic_steps=2, **values), dataset=mnist5k)
    trainer.run_task(0)
    trainer.run_task(1)
    task = trainer.task_context(2)
    trainer.method.before_task(trainer, task)
    return trainer, trainer.task_iteration(task)


@contextlib.contextmanager
def host_reads_refused(optimizers):
    """Any read of a tensor's value on the host raises, except inside the optimizers' ``step``."""
    allowed = [0]
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def refusing(name):
        def read(self, *args, **kwargs):
            if allowed[0]:
                return originals[name](self, *args, **kwargs)
            raise AssertionError(f"the iteration read a tensor on the host (Tensor.{name})")
        return read

    def allowing(step):
        def run(*args, **kwargs):
            allowed[0] += 1
            try:
                return step(*args, **kwargs)
            finally:
                allowed[0] -= 1
        return run

    for optimizer in optimizers:
        optimizer.step = allowing(optimizer.step)
    for name in HOST_READS:
        setattr(torch.Tensor, name, refusing(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        for optimizer in optimizers:
            del optimizer.step


def addresses(trainer, iteration) -> dict[str, int]:
    """Where everything a captured iteration touches lives: draw buffers, loss sums, gradients, Adam's state."""
    found = {f"draw {name}": b.data_ptr() for draws in (trainer.draws, iteration.batches.draws)
             for name, b in draws.buffers.items()}
    found.update({f"sum {name}": s.data_ptr() for name, s in iteration.sums.sums.items()})
    for net in ("generator", "critic"):
        found.update({f"{net} grad {name}": p.grad.data_ptr() for name, p in getattr(trainer, net).named_parameters()
                      if p.grad is not None})
    for optimizer in trainer.optimizers:
        found.update({f"adam {id(p)} {key}": value.data_ptr() for p, state in optimizer.state.items()
                      for key, value in state.items()})
    return found


@pytest.mark.parametrize("case", list(METHODS))
def test_an_iteration_reads_no_tensor_on_the_host(case, tiny_config, mnist5k):
    trainer, iteration = iteration_at_third_task(tiny_config, mnist5k, case)
    iteration()  # the first call allocates (Adam's state, buffers), outside the check like a warm-up
    with host_reads_refused(trainer.optimizers):
        iteration()
        iteration()
    assert set(iteration.sums.sums) >= {"loss_d", "loss_g"}


@pytest.mark.parametrize("case", ["sft", "dgr", "jtr-fixed", "jtr+ra+ewc", "er+ra+l2"])
def test_an_iteration_keeps_its_state_at_fixed_addresses_and_redraws_in_place(case, tiny_config, mnist5k):
    trainer, iteration = iteration_at_third_task(tiny_config, mnist5k, case)
    iteration()
    before = addresses(trainer, iteration)
    drawn = {name: buffer.clone() for name, buffer in trainer.draws.buffers.items()}
    iteration()
    iteration()
    assert addresses(trainer, iteration) == before
    assert {"critic.z", "generator.z", "penalty.alpha"} <= set(drawn)
    for name, first in drawn.items():
        assert not torch.equal(trainer.draws.buffers[name], first), f"draw {name!r} was not redrawn"


def test_draws_fill_their_buffers_as_torch_would_draw_them():
    draws = Draws("cpu")
    torch.manual_seed(5)
    got = [draws.normal("z", (3, 4)).clone(), draws.uniform("a", (5,)).clone(), draws.integers("i", 7, (6,)).clone()]
    torch.manual_seed(5)
    assert all(torch.equal(a, b) for a, b in zip(got, [torch.randn(3, 4), torch.rand(5), torch.randint(7, (6,))]))
    buffer = draws.normal("z", (3, 4))
    assert draws.normal("z", (3, 4)) is buffer and draws.normal("z", (2, 4)) is not buffer


def test_loss_sums_add_in_place_and_take_the_mean_back_to_zero():
    sums = LossSums()
    sums.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    where = sums.sums["a"].data_ptr()
    sums.add({"a": torch.tensor(3.0), "b": torch.tensor(0.0)})
    assert sums.take(2) == {"a": 2.0, "b": 2.0}
    assert sums.sums["a"].data_ptr() == where and float(sums.sums["a"]) == 0.0


def test_cuda_graph_on_is_refused_on_cpu_before_the_data_is_loaded(tiny_config, monkeypatch):
    monkeypatch.setattr("mergan.trainer.load_dataset", lambda *a, **k: pytest.fail("the data was loaded"))
    with pytest.raises(ConfigError, match=r"optim\.cuda_graph: 'on' .* device is cpu; use 'auto'"):
        Trainer(tiny_config(cuda_graph="on"))


def test_cli_refuses_cuda_graph_on_without_cuda_in_one_line(capsys, tmp_path):
    assert main(["train", "--cuda-graph", "on", "--device", "cpu", "--no-mlflow", "--out-dir",
                 str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "optim.cuda_graph" in error and len(error.splitlines()) == 1


def test_auto_and_off_run_eagerly_on_cpu_with_nothing_to_say(tiny_config, mnist5k):
    for mode in ("auto", "off"):
        trainer = Trainer(tiny_config(cuda_graph=mode), dataset=mnist5k)
        assert not trainer.cuda_graph and trainer.graph_note is None
        trainer.fit()
        assert trainer.captured_tasks == []
        assert all(not o.defaults["capturable"] for o in trainer.optimizers)


class HostReadingMethod(Method):
    name = "host-reading"
    summary = "a method whose hooks read tensors on the host"
    capturable = False


def test_what_cannot_be_captured_is_named():
    in_memory, streamed = types.SimpleNamespace(in_memory=True), types.SimpleNamespace(in_memory=False)
    assert graph_blocker(build_method("jtr+ra+ewc"), in_memory, "mnist5k") is None
    assert "lsun" in graph_blocker(build_method("sft"), streamed, "lsun")
    blocker = graph_blocker(HostReadingMethod(), in_memory, "mnist5k")
    assert "host-reading is not capturable" in blocker
    cuda = torch.device("cuda")
    assert uses_graphs("auto", cuda, None) and uses_graphs("on", cuda, None)
    assert not uses_graphs("off", cuda, None) and not uses_graphs("auto", cuda, blocker)
    assert not uses_graphs("auto", torch.device("cpu"), None)


class FakeCuda:
    """Enough of torch.cuda for GraphedIteration's control flow on CPU: a capture records that it happened (the
    iteration runs once inside it, as Python runs during a real capture), a replay counts."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture, self.captures, self.replays, self.capturing = fail_capture, 0, 0, False
        cuda = self

        class Graph:
            def replay(self):
                cuda.replays += 1

        @contextlib.contextmanager
        def graph(_graph):
            cuda.capturing, cuda.captures = True, cuda.captures + 1
            try:
                yield
                if cuda.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing\nmore")
            finally:
                cuda.capturing = False

        self.CUDAGraph, self.graph = Graph, graph
        self.Stream = lambda: types.SimpleNamespace(wait_stream=lambda other: None)
        self.current_stream = self.Stream
        self.stream = lambda s: contextlib.nullcontext()
        self.synchronize = lambda: None


@pytest.mark.parametrize("fail_capture", [False, True])
def test_the_graph_runner_warms_up_captures_once_then_replays(monkeypatch, fail_capture):
    from mergan import graphs

    fake = FakeCuda(fail_capture)
    monkeypatch.setattr(graphs.torch, "cuda", fake)
    calls = []
    runner = graphs.GraphedIteration(lambda: calls.append("capture" if fake.capturing else "eager"))
    if fail_capture:
        for _ in range(3):
            runner()
        with pytest.warns(RuntimeWarning, match="could not be captured .operation not permitted.*runs eagerly"):
            runner()
        for _ in range(2):
            runner()
        assert calls == ["eager"] * 3 + ["capture"] + ["eager"] * 3 and fake.replays == 0
        assert runner.failure == "operation not permitted when stream is capturing" and not runner.captured
    else:
        for _ in range(6):
            runner()
        # 6 iterations trained: 3 warm-ups, then the capture's replay and 2 more replays.
        assert calls == ["eager"] * 3 + ["capture"] and fake.captures == 1 and fake.replays == 3
        assert runner.captured
