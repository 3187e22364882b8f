"""How long evaluation takes per task, next to the training of that task.

On mnist5k with the trainer's own generator (freshly initialised: timing only, its accuracy is
meaningless): trains the evaluator in a fresh cache (its real test accuracy and seconds), then
times ``evaluate_after_task`` with the preset's default sample count after the first task (1
class) and after the tenth (10 classes), with and without reverse accuracy, and after the tenth
with each ``eval.quality`` level, taking turns (none, fast, full: ``quality_overhead`` is what fast and
full add to an evaluation without them, in CPU time and in wall time; the target is at most 25% for
full), and times the training of one
task by the trainer (a few iterations, scaled to the preset's iterations per task). Writes
bench/results/eval_speed.json.

    python bench/eval_speed.py [--preset small] [--device auto] [--train-iterations 40] [--rounds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from mergan.evaluation import evaluate_after_task, get_evaluator
from mergan.files import atomic_path
from mergan.presets import build_config
from mergan.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def time_evaluation(trainer: Trainer, evaluator, task_index0: int, rounds: int, **eval_values) -> dict:
    """Best of ``rounds`` evaluations after task ``task_index0`` (0-based), with their part timings.

    ``cpu_seconds`` is the process's CPU time (``time.process_time``): on a machine that other work loads, it
    stays what the evaluation costs, where the wall time grows with the others' load."""
    config = trainer.config.eval
    for key, value in eval_values.items():
        setattr(config, key, value)
    best, best_cpu = None, None
    with tempfile.TemporaryDirectory() as samples_dir:
        for _ in range(rounds):
            cpu = time.process_time()
            result = evaluate_after_task(trainer.sampler(), trainer.dataset, trainer.tasks, task_index0, config,
                                         evaluator, trainer.device, previous_matrix=None,
                                         seed=trainer.config.run.seed, samples_dir=samples_dir)
            cpu = time.process_time() - cpu
            if best is None or cpu < best_cpu:
                best, best_cpu = result, cpu
    return {"seen_classes": sum(len(t) for t in trainer.tasks[: task_index0 + 1]),
            "samples_per_class": config.eval_samples_per_class, "seconds": round(best.seconds, 3),
            "cpu_seconds": round(best_cpu, 3), "parts_seconds": {k: round(v, 3) for k, v in best.timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-iterations", type=int, default=40, help="iterations timed (then scaled)")
    parser.add_argument("--rounds", type=int, default=2, help="evaluation rounds (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:  # and numpy's BLAS (the Frechet distances' matrix roots): oversubscribed, it is many times slower
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass

    with tempfile.TemporaryDirectory() as work:
        config = build_config(args.preset, overrides={
            "device": args.device, "dataset": "mnist5k", "out_dir": os.path.join(work, "run"), "eval_when": "none",
            "cache_dir": os.path.join(work, "cache"), "save_checkpoints": False})
        iterations_per_task = config.optim.iterations_per_task
        trainer = Trainer(config)

        started = time.perf_counter()
        evaluator = get_evaluator(trainer.dataset, config.eval, trainer.device)
        evaluator_seconds = time.perf_counter() - started

        last = len(trainer.tasks) - 1
        evaluation = {
            "after_task_1": time_evaluation(trainer, evaluator, 0, args.rounds, reverse_accuracy=False),
            "after_task_10": time_evaluation(trainer, evaluator, last, args.rounds),
        }
        # The quality levels take turns round by round (best of each kept), so a load that comes and goes on a
        # shared machine falls on all three alike.
        levels = ("none", "fast", "full")
        timed = [{level: time_evaluation(trainer, evaluator, last, 1, quality=level) for level in levels}
                 for _ in range(args.rounds)]
        for level in levels:
            evaluation[f"after_task_10_quality_{level}"] = min((r[level] for r in timed),
                                                               key=lambda e: e["cpu_seconds"])
        evaluation["after_task_10_with_reverse_accuracy"] = time_evaluation(trainer, evaluator, last, 1,
                                                                            quality="full", reverse_accuracy=True)
        # In CPU time (one thread: the cost on a quiet machine), and in wall time as measured.
        quality_overhead = {f"{level}{suffix}": round(evaluation[f"after_task_10_quality_{level}"][key]
                                                      / evaluation["after_task_10_quality_none"][key] - 1, 4)
                            for level in ("fast", "full")
                            for key, suffix in (("cpu_seconds", ""), ("seconds", "_wall"))}

        trainer.config.optim.iterations_per_task = args.train_iterations
        trainer.run_task(0)  # warm-up (first-call allocations), not timed
        started = time.perf_counter()
        trainer.run_task(0)
        seconds_per_iteration = (time.perf_counter() - started) / args.train_iterations
    train_seconds = seconds_per_iteration * iterations_per_task

    report = {
        "command": f"python bench/eval_speed.py --preset {args.preset} --device {args.device} "
                   f"--train-iterations {args.train_iterations} --rounds {args.rounds}"
                   + (f" --threads {args.threads}" if args.threads else ""),
        "device": str(trainer.device),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "evaluator": {"train_seconds": round(evaluator_seconds, 2), "real_test_accuracy": evaluator.test_accuracy,
                      "cache_key": evaluator.cache_key},
        "evaluation": evaluation,
        "quality_overhead": quality_overhead,  # share added to an evaluation after task 10 (target: full <= 0.25)
        "training": {"preset": args.preset, "method": config.method.method,
                     "iterations_per_task": iterations_per_task,
                     "seconds_per_iteration": round(seconds_per_iteration, 4),
                     "seconds_per_task": round(train_seconds, 2)},
        "eval_share_of_task_training": {
            name: round(entry["seconds"] / train_seconds, 4) for name, entry in evaluation.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "eval_speed.json"
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
