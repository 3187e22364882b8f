"""The built-in methods train exactly as they did before methods became plugins of one registry.

``support/method_trajectories.json`` holds, for each built-in method (and the knobs that change its
training), every logged loss of a tiny three-task run and statistics of the final weights, recorded
with the code of commit 51ccb10 (before the registry, the task context and the new hook signatures).
The same run today must give the same numbers: exactly on the torch build they were recorded with, to
1e-5 on another (whose CPU kernels may round differently). A change in what a method draws, in which
order, or how it sums its terms moves them far more than that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mergan.callbacks import Callback
from mergan.trainer import Trainer

RECORDED = json.loads((Path(__file__).parent / "support" / "method_trajectories.json").read_text())
RUN = dict(preset="small", device="cpu", iterations_per_task=3, batch_size=16, critic_steps=1, z_dim=16,
           g_width=16, d_width=8, log_every=1, eval_when="none", ewc_fisher_samples=16,
           dgr_solver_iterations=3, save_checkpoints=False, tasks="0|1|2")
CASES = {
    "sft": dict(method="sft"), "jt": dict(method="jt"), "jt-stream": dict(method="jt-stream"),
    "ewc": dict(method="ewc"), "ewc-sum": dict(method="ewc", ewc_reduction="sum", lambda_ewc=1e3),
    "dgr": dict(method="dgr"), "jtr": dict(method="jtr"),
    "jtr-fixed": dict(method="jtr", replay_mode="fixed", replay_size_per_class=5),
    "jtr-concatenated": dict(method="jtr", jtr_loss="concatenated"),
    "jtr-share": dict(method="jtr", replay_share=0.5, reduce_batch=False),
    "ra": dict(method="ra"), "ra-batch": dict(method="ra", ra_batch_size=6, reduce_batch=False),
    "jtr+ra+ewc": dict(method="jtr+ra+ewc"), "dgr-share": dict(method="dgr", replay_share=0.25),
}


class StepLosses(Callback):
    def __init__(self):
        self.losses: list[dict[str, float]] = []

    def on_step(self, trainer, info) -> None:
        self.losses.append(dict(sorted(info.losses.items())))


def weight_statistics(module: torch.nn.Module) -> list[float]:
    flat = torch.cat([p.detach().flatten().double() for p in module.parameters()])
    return [float(flat.sum()), float(flat.pow(2).sum())]


@pytest.mark.parametrize("case", list(CASES))
def test_a_built_in_method_trains_exactly_as_before(case, tiny_config, mnist5k):
    steps = StepLosses()
    trainer = Trainer(tiny_config(**RUN, **CASES[case]), callbacks=[steps], dataset=mnist5k)
    trainer.fit()
    recorded = RECORDED["cases"][case]
    same_build = torch.__version__ == RECORDED["torch"]

    def close(value, expected):
        return value == expected if same_build else value == pytest.approx(expected, rel=1e-5, abs=1e-7)

    assert [sorted(step) for step in steps.losses] == [sorted(step) for step in recorded["losses"]]
    for number, (step, expected) in enumerate(zip(steps.losses, recorded["losses"]), start=1):
        assert all(close(step[k], expected[k]) for k in expected), f"step {number}: {step} != {expected}"
    assert close(weight_statistics(trainer.generator), recorded["generator"])
    assert close(weight_statistics(trainer.critic), recorded["critic"])
