"""Captured iterations train as the same iterations run eagerly (CUDA only; skipped elsewhere).

For every built-in method (and a combination of each kind), a two-task run of 25 iterations per task (50 in all,
5 critic steps each, the paper's ``dcgan32`` nets made narrow) with ``optim.cuda_graph: on`` captures both tasks'
iterations and replays them; its logged losses must equal, to float rounding, those of the same run whose
iterations all stay eager (the graph runner's warm-up stretched over the whole task: the same capturable Adam,
the same draws). CUDA's generator gives a graph the offsets eager kernels would have had, so the random draws are
the same too. The first losses must also agree with a run that never asked for graphs (plain Adam)."""

from __future__ import annotations

import pytest
import torch

from mergan.callbacks import Callback
from mergan.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")

RUN = dict(preset="dcgan32", device="cuda", tasks="0|1", iterations_per_task=25, batch_size=16, critic_steps=5,
           z_dim=16, g_width=8, d_width=8, log_every=5, eval_when="none", ewc_fisher_samples=16,
           dgr_solver_iterations=3, replay_size_per_class=5)
CASES = {
    "sft": dict(method="sft"), "jt": dict(method="jt"), "jt-stream": dict(method="jt-stream"),
    "ewc": dict(method="ewc"), "l2": dict(method="l2"), "dgr": dict(method="dgr"), "jtr": dict(method="jtr"),
    "jtr-fixed": dict(method="jtr", replay_mode="fixed"),
    "jtr-concatenated": dict(method="jtr", jtr_loss="concatenated"),
    "ra": dict(method="ra"), "er": dict(method="er"), "jtr+ra+ewc": dict(method="jtr+ra+ewc"),
    "er+ra+l2": dict(method="er+ra+l2"), "small-sft": dict(method="sft", preset="small"),
    "sft-bf16": dict(method="sft", precision="bf16"),
}


class StepLosses(Callback):
    def __init__(self):
        self.losses: list[dict[str, float]] = []

    def on_step(self, trainer, info) -> None:
        self.losses.append(dict(info.losses))


def train(tiny_config, mnist5k, case: str, cuda_graph: str) -> tuple[Trainer, list[dict[str, float]]]:
    steps = StepLosses()
    trainer = Trainer(tiny_config(**{**RUN, **CASES[case], "cuda_graph": cuda_graph}), callbacks=[steps],
                      dataset=mnist5k)
    trainer.fit()
    return trainer, steps.losses


@pytest.mark.parametrize("case", list(CASES))
def test_captured_iterations_give_the_losses_of_eager_ones(case, tiny_config, mnist5k, monkeypatch):
    captured, graph_losses = train(tiny_config, mnist5k, case, "on")
    assert captured.graph_failures == {} and captured.captured_tasks == [1, 2]
    with monkeypatch.context() as patch:
        patch.setattr("mergan.graphs.WARMUP_ITERATIONS", 10**9)  # never captures: the same iterations, eager
        eager, eager_losses = train(tiny_config, mnist5k, case, "on")
    assert eager.captured_tasks == []
    assert len(graph_losses) == len(eager_losses) == 10
    for read, (graph_read, eager_read) in enumerate(zip(graph_losses, eager_losses), start=1):
        assert graph_read.keys() == eager_read.keys()
        assert all(torch.isfinite(torch.tensor(v)) for v in graph_read.values()), f"read {read}: {graph_read}"
        assert graph_read == pytest.approx(eager_read, rel=1e-4, abs=1e-5), f"read {read}"
    plain, plain_losses = train(tiny_config, mnist5k, case, "off")
    assert plain.captured_tasks == [] and not plain.cuda_graph
    assert graph_losses[0] == pytest.approx(plain_losses[0], rel=1e-3, abs=1e-3)  # Adam, capturable or not


def test_auto_captures_on_cuda(tiny_config, mnist5k):
    trainer, _ = train(tiny_config, mnist5k, "ra", "auto")
    assert trainer.cuda_graph and trainer.captured_tasks == [1, 2] and trainer.graph_note is None
