"""A first look at forgetting: the numbers quoted in the README.

Trains SFT, EWC, DGR, JTR, RA and JT on the embedded MNIST digits, small preset, 5 tasks
(digits 0..4), seed 0, then asks the evaluator (a real-data CNN) what share of the images
generated for digit 0 (task 1) it still recognises as 0 after task 5, and the average over
digits 0..4. Writes bench/results/first_look.json.

    python bench/first_look.py [--iterations 400] [--methods sft,ewc,dgr,jtr,ra,jt] [--samples 500] [--threads 1]

Several processes may run it at once with different --methods (one torch thread each is much
faster than oversubscribed threads on a busy machine); each adds its rows under a file lock.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import time
from pathlib import Path

import torch

from mergan.config import build_config
from mergan.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--methods", default="sft,ewc,dgr,jtr,ra,jt")
    parser.add_argument("--samples", type=int, default=500, help="generated images per class")
    parser.add_argument("--out", default="runs/first_look")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for method in args.methods.split(","):
        config = build_config("small", dict(method=method, tasks="0|1|2|3|4", iterations_per_task=args.iterations,
                                            eval_when="final", eval_samples_per_class=args.samples,
                                            out_dir=f"{args.out}/{method}", seed=args.seed, device="cpu"))
        started = time.perf_counter()
        results = Trainer(config).fit()
        final = results[-1]
        row = {
            "first_task_recognised": final.metrics["acc_task_1"],
            "average_accuracy": final.metrics["avg_acc"],
            "per_task": [final.metrics[f"acc_task_{j}"] for j in range(1, 6)],
            "seconds": round(time.perf_counter() - started, 1),
            "iterations_per_task": args.iterations,
            "lambda_ra": config.method.lambda_ra if "ra" in method else None,
            "lambda_ewc": config.method.lambda_ewc if "ewc" in method else None,
            "evaluator_test_accuracy": final.extra["evaluator_test_accuracy"],
        }
        print(method, json.dumps(row), flush=True)
        record(method, row)


def record(method: str, row: dict) -> None:
    """Add one method's row to bench/results/first_look.json (locked: other processes add theirs)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "first_look.json"
    with open(RESULTS / ".first_look.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = json.loads(path.read_text()) if path.exists() else {}
        table[method] = row
        path.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
