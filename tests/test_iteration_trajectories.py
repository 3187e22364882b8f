"""The capturable iteration (static draw buffers, in-place loss sums, grads zeroed in place) trains bit for bit as
the loop it replaced, for every built-in method and combination, on the ``small`` and ``dcgan32`` nets.

``support/iteration_trajectories.json`` was recorded with the code of commit 4aaa412 (the eager loop before the
iteration became capturable) by ``python -m tests.test_iteration_trajectories --record``: for each case, every
logged loss of a tiny three-task run (two critic steps per iteration, so the draw buffers are refilled within
an iteration, and ``log_every: 2``, so the loss sums span several steps and a last partial window) and the final
weights (a SHA-256 of their bytes, and their sum and sum of squares). With the same seed the restructured loop
draws the same random numbers in the same order, so on the torch build of the recording every loss and every
weight must be equal to the bit; on another build (whose CPU kernels may round differently), to 1e-5.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path

import pytest
import torch

from mergan.callbacks import Callback

FIXTURE = Path(__file__).parent / "support" / "iteration_trajectories.json"
RUN = dict(device="cpu", iterations_per_task=3, batch_size=16, critic_steps=2, z_dim=16, g_width=8, d_width=8,
           log_every=2, eval_when="none", ewc_fisher_samples=16, dgr_solver_iterations=3, save_checkpoints=False,
           tasks="0|1|2")
ARCHITECTURES = {"small": dict(preset="small"), "dcgan32": dict(preset="dcgan32")}
SINGLE = {
    "sft": dict(method="sft"), "jt": dict(method="jt"), "jt-stream": dict(method="jt-stream"),
    "ewc": dict(method="ewc"), "ewc-sum": dict(method="ewc", ewc_reduction="sum", lambda_ewc=1e3),
    "l2": dict(method="l2"), "dgr": dict(method="dgr"), "dgr-share": dict(method="dgr", replay_share=0.25),
    "jtr": dict(method="jtr"), "jtr-fixed": dict(method="jtr", replay_mode="fixed", replay_size_per_class=5),
    "jtr-concatenated": dict(method="jtr", jtr_loss="concatenated"),
    "jtr-share": dict(method="jtr", replay_share=0.5, reduce_batch=False),
    "ra": dict(method="ra"), "ra-batch": dict(method="ra", ra_batch_size=6, reduce_batch=False),
    "er": dict(method="er", replay_size_per_class=5), "sft-bf16": dict(method="sft", precision="bf16"),
}
# Every combination the registry allows: at most one method per part of training changed.
PARTS = (("jtr", "er"), ("ra",), ("ewc", "l2"))
COMBINATIONS = {"+".join(names): dict(method="+".join(names), replay_size_per_class=5)
                for size in (2, 3) for chosen in itertools.combinations(PARTS, size)
                for names in itertools.product(*chosen)}
CASES = {f"{arch}/{name}": {**ARCHITECTURES[arch], **values}
         for arch in ARCHITECTURES for name, values in {**SINGLE, **COMBINATIONS}.items()}


class StepLosses(Callback):
    def __init__(self):
        self.losses: list[dict[str, float]] = []

    def on_step(self, trainer, info) -> None:
        self.losses.append(dict(sorted(info.losses.items())))


def weights(module: torch.nn.Module) -> dict[str, object]:
    """The weights' exact bytes (hashed) and two statistics to compare across torch builds."""
    flat = torch.cat([p.detach().flatten() for p in module.parameters()])
    digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
    return {"sha256": digest, "stats": [float(flat.double().sum()), float(flat.double().pow(2).sum())]}


def run_case(case: str, out_dir: Path, dataset) -> dict[str, object]:
    from mergan.presets import build_config
    from mergan.trainer import Trainer

    steps = StepLosses()
    config = build_config(overrides={**RUN, **CASES[case], "out_dir": str(out_dir)})
    trainer = Trainer(config, callbacks=[steps], dataset=dataset)
    trainer.fit()
    return {"losses": steps.losses, "generator": weights(trainer.generator), "critic": weights(trainer.critic)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_capturable_iteration_trains_bit_for_bit_as_the_old_loop(case, tmp_path, monkeypatch, mnist5k):
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    recorded_all = json.loads(FIXTURE.read_text())
    recorded = recorded_all["cases"][case]
    got = run_case(case, tmp_path / "run", mnist5k)
    same_build = torch.__version__ == recorded_all["torch"]

    def close(value, expected):
        return value == expected if same_build else value == pytest.approx(expected, rel=1e-5, abs=1e-7)

    assert [sorted(step) for step in got["losses"]] == [sorted(step) for step in recorded["losses"]]
    for number, (step, expected) in enumerate(zip(got["losses"], recorded["losses"]), start=1):
        assert all(close(step[k], expected[k]) for k in expected), f"read {number}: {step} != {expected}"
    for net in ("generator", "critic"):
        if same_build:
            assert got[net]["sha256"] == recorded[net]["sha256"], f"{net} weights differ from the recording"
        assert close(got[net]["stats"], recorded[net]["stats"])


def record() -> None:
    """Write the fixture with the code checked out now (run it at the commit the docstring names)."""
    import subprocess
    import tempfile

    from mergan.config import DataConfig
    from mergan.data import load_dataset

    torch.set_num_threads(1)
    dataset = load_dataset(DataConfig(dataset="mnist5k"), image_size=32)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            cases[case] = run_case(case, Path(tmp) / case.replace("/", "_"), dataset)
            print(case, "done", flush=True)
    FIXTURE.write_text(json.dumps({"torch": torch.__version__, "commit": commit, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__" and "--record" in sys.argv:
    record()
