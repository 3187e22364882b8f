"""The sweep platform's overhead: the same trials through sweep.py's machinery vs. Trainer.fit in one process.

Both sides train the same configs one after another with the same threads (sequential, for a fair
comparison): the sweep side is ``make_plan`` + ``run_sweep`` (Ray Tune, a grid searcher, a checkpoint
per task copied to Tune's storage, MLflow logging to an SQLite store), the direct side is
``Trainer(config).fit()`` with no callbacks. Also measured: starting Ray, and Ray's per-trial start-up
cost (a no-op trial, with a new worker process per trial and with reused workers). The evaluator is
trained before either side starts. Writes bench/results/sweep_overhead.json.

    python bench/sweep_overhead.py [--trials 3] [--iterations 400] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mergan.trainer import Trainer
from trainables.plan import make_plan
from trainables.ray_connection import connect_ray
from trainables.sweeping import run_sweep
from trainables.trainable import trial_config
from trainables.tuner import trial_settings

RESULTS = REPO / "bench" / "results" / "sweep_overhead.json"


def noop_trial(config: dict) -> None:
    """A trial that does nothing but report once: what Ray costs per trial."""
    from ray import tune

    tune.report({"done_at": time.time()})


def trial_startup_seconds(count: int, reuse_actors: bool, storage: Path) -> float:
    """Wall seconds per no-op trial, run one at a time."""
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(count)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=f"noop-{reuse_actors}", storage_path=str(storage), verbose=0))
    started = time.perf_counter()
    tuner.fit()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials on each side (default 3)")
    parser.add_argument("--iterations", type=int, default=400, help="generator steps per task (default 400)")
    parser.add_argument("--tasks", default="0|1", help="task stream of every trial (default '0|1')")
    parser.add_argument("--cpus", type=float, default=2, help="threads per trial on both sides (default 2)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep_overhead_"))
    os.environ.setdefault("MERGAN_CACHE_DIR", str(work / "cache"))
    grid = work / "seeds.yaml"
    grid.write_text(f"question: the same SFT trial over seeds\nmethod: sft\n"
                    f"seed: {{type: grid, values: {list(range(args.trials))}}}\n")
    sets = [f"iterations_per_task={args.iterations}", "eval_samples_per_class=200", "evaluator_epochs=6"]
    plan = make_plan(space=str(grid), tasks=args.tasks, sets=sets, max_concurrent=1, cpus_per_trial=args.cpus,
                     storage_path=str(work / "sweeps"), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                     name="overhead")
    points = list(plan.load_space().grid_points())
    settings = trial_settings(plan)
    load_before = os.getloadavg()

    # The evaluator both sides use, trained once before anything is timed.
    torch.set_num_threads(int(args.cpus))
    warm = trial_config(settings, {**points[0], "iterations_per_task": 1}, work / "warm")
    Trainer(warm).fit()

    direct = []
    for index, point in enumerate(points):
        started = time.perf_counter()
        Trainer(trial_config(settings, point, work / f"direct_{index}")).fit()
        direct.append(time.perf_counter() - started)
        print(f"direct trial {index}: {direct[-1]:.1f} s", flush=True)

    started = time.perf_counter()
    connect_ray(None, plan)
    ray_init = time.perf_counter() - started
    started = time.perf_counter()
    outcome = run_sweep(plan, verbose=0)
    sweep_seconds = time.perf_counter() - started
    assert all(row.status == "finished" for row in outcome.rows), [row.status for row in outcome.rows]
    in_trial = [row.value("time_total_s") for row in outcome.rows]
    print(f"sweep: {sweep_seconds:.1f} s for {len(points)} trials (+ {ray_init:.1f} s to start Ray)", flush=True)

    startup_new = trial_startup_seconds(4, reuse_actors=False, storage=work / "noop")
    startup_reused = trial_startup_seconds(4, reuse_actors=True, storage=work / "noop")
    direct_total = sum(direct)
    record = {
        "command": "python bench/sweep_overhead.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (shared machine)",
        "trials": len(points), "iterations_per_task": args.iterations, "tasks": args.tasks,
        "threads_per_trial": int(args.cpus),
        "direct_seconds": [round(s, 2) for s in direct], "direct_total_seconds": round(direct_total, 2),
        "sweep_total_seconds": round(sweep_seconds, 2),
        "sweep_trial_seconds_in_tune": [round(s, 2) for s in in_trial],
        "ray_init_seconds": round(ray_init, 2),
        "overhead_ratio": round(sweep_seconds / direct_total, 3),
        "overhead_ratio_with_ray_init": round((sweep_seconds + ray_init) / direct_total, 3),
        "trial_startup_seconds_new_worker": round(startup_new, 2),
        "trial_startup_seconds_reused_worker": round(startup_reused, 2),
        "notes": "sweep = Tune grid + per-task checkpoint copy to Tune storage + MLflow (SQLite) logging; "
                 "direct = Trainer.fit, no callbacks. Sequential on both sides, same threads per trial.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
