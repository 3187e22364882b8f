"""GPU speed of the trainer's iteration: eager against whole-iteration CUDA graphs, packed processes, and the knobs
worth measuring before anything is built on them. Writes bench/results/gpu_speed.json (or --out).

Sections, in this order (each measurement runs ``--seconds`` of timed iterations after its warm-up; a section
that would start after ``--budget`` seconds is skipped and listed under ``skipped``):
- ``per_method``: generator iterations/s of one trial of each Table-1 method on its second task (replay on),
  eager and graph-captured (``mergan.graphs``), with the speed-up;
- ``processes``: K = 1, 4, 8, 16 trials (SFT, graphs) as separate processes on the one GPU, without and with
  CUDA MPS (``platform/mps.py``), each timed over the same window: iterations/s in total;
- ``options``: SFT under graphs with deterministic algorithms off, cudnn.benchmark, channels_last and bf16
  autocast, beside the deterministic fp32 baseline (and eager, deterministic on and off).

``--scale paper`` is the paper's ``dcgan32`` nets and batch (what the targets are about); ``--scale tiny`` narrow
nets, for a rehearsal on CPU, where only the eager measurements run (graphs and MPS need CUDA).

    python bench/gpu_speed.py [--budget 150] [--seconds 3] [--scale paper] [--process-counts 1,4,8,16]
    python bench/gpu_speed.py --device cpu --scale tiny --budget 20 --seconds 0.3 --process-counts 1,2  # rehearsal
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a copy of the repository where nothing is installed (the GPU machine)

from mergan.graphs import WARMUP_ITERATIONS, GraphedIteration
from mergan.presets import build_config
from mergan.trainer import Trainer, make_cuda_deterministic

RESULTS = ROOT / "bench" / "results"
TABLE1_METHODS = ("sft", "ra", "jtr", "ewc", "dgr", "jt")  # the ones the 3x target names first
SCALES = {
    "paper": dict(preset="dcgan32"),
    "tiny": dict(preset="dcgan32", g_width=8, d_width=8, z_dim=16, batch_size=16, critic_steps=2),
}


def config_values(scale: str, method: str, device: str, out_dir: str) -> dict[str, Any]:
    """A two-task run of ``method`` at ``scale``: what is timed is task 2's iteration (replay on)."""
    return {**SCALES[scale], "method": method, "device": device, "tasks": "0|1", "iterations_per_task": 4,
            "eval_when": "none", "save_checkpoints": False, "log_every": 1000, "out_dir": out_dir,
            "dgr_solver_iterations": 20, "ewc_fisher_samples": 64, "replay_size_per_class": 100}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def set_deterministic(device: torch.device, on: bool) -> None:
    if device.type != "cuda":
        return
    if on:
        make_cuda_deterministic()
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = False


class Timed:
    """A trainer past its first task, whose second task's iteration can be timed eager or captured."""

    def __init__(self, scale: str, method: str, device: str, task: int = 1):
        self.folder = tempfile.TemporaryDirectory()
        config = build_config(overrides=config_values(scale, method, device, self.folder.name))
        config.optim.cuda_graph = "off"
        self.trainer = Trainer(config)
        for t in range(task):
            self.trainer.run_task(t)
        self.task = self.trainer.task_context(task)
        self.trainer.method.before_task(self.trainer, self.task)

    def rate(self, graphs: bool, seconds: float, channels_last: bool = False, precision: str = "fp32"
             ) -> dict[str, Any]:
        """Iterations/s over ``seconds`` of timed iterations, after the warm-up (and the capture, with graphs)."""
        trainer = self.trainer
        if channels_last:
            trainer.generator.to(memory_format=torch.channels_last)
            trainer.critic.to(memory_format=torch.channels_last)
        trainer.config.optim.precision = precision
        trainer.cuda_graph = graphs  # the optimizers the iteration builds are capturable under graphs
        trainer.optimizers = None
        iteration = trainer.task_iteration(self.task)
        run = GraphedIteration(iteration) if graphs else iteration
        for _ in range(WARMUP_ITERATIONS + 2):  # with graphs: the warm-up, the capture and a replay
            run()
        iteration.sums.take(1)
        synchronize(trainer.device)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(5):
                run()
            count += 5
            synchronize(trainer.device)
        elapsed = time.perf_counter() - started
        losses = iteration.sums.take(count)
        result = {"it_per_s": round(count / elapsed, 2), "iterations": count, "seconds": round(elapsed, 2),
                  "finite": all(math.isfinite(v) for v in losses.values())}
        if graphs:
            result["captured"] = run.captured
            if run.failure:
                result["capture_failure"] = run.failure
        if channels_last:
            trainer.generator.to(memory_format=torch.contiguous_format)
            trainer.critic.to(memory_format=torch.contiguous_format)
        trainer.config.optim.precision = "fp32"
        return result


def per_method(args, device: torch.device, deadline: float, skipped: list[str], results: dict[str, Any]) -> None:
    for method in args.methods.split(","):
        if time.monotonic() > deadline:
            skipped.append(f"per_method {method}")
            continue
        set_deterministic(device, True)
        timed = Timed(args.scale, method, str(device))
        entry = {"eager": timed.rate(False, args.seconds)}
        if device.type == "cuda":
            entry["graphs"] = timed.rate(True, args.seconds)
            entry["speedup"] = round(entry["graphs"]["it_per_s"] / entry["eager"]["it_per_s"], 2)
        results[method] = entry
        args.save()
        print(f"per_method {method}: {json.dumps(entry)}", flush=True)


def options(args, device: torch.device, deadline: float, skipped: list[str], results: dict[str, Any]) -> None:
    """SFT under graphs with each knob, beside the deterministic fp32 baseline; eager with determinism on/off."""
    if device.type != "cuda":
        skipped.append("options (graphs, cudnn, bf16: CUDA only)")
        return
    timed = Timed(args.scale, "sft", str(device))
    runs = {  # name: (deterministic, benchmark, graphs, channels_last, precision)
        "graphs_deterministic": (True, False, True, False, "fp32"),
        "graphs_nondeterministic": (False, False, True, False, "fp32"),
        "graphs_cudnn_benchmark": (False, True, True, False, "fp32"),
        "graphs_channels_last": (True, False, True, True, "fp32"),
        "graphs_bf16": (True, False, True, False, "bf16"),
        "eager_deterministic": (True, False, False, False, "fp32"),
        "eager_nondeterministic": (False, False, False, False, "fp32"),
    }
    for name, (deterministic, benchmark, graphs, channels_last, precision) in runs.items():
        if time.monotonic() > deadline:
            skipped.append(f"options {name}")
            continue
        set_deterministic(device, deterministic)
        torch.backends.cudnn.benchmark = benchmark
        results[name] = timed.rate(graphs, args.seconds, channels_last=channels_last, precision=precision)
        args.save()
        print(f"options {name}: {json.dumps(results[name])}", flush=True)
    set_deterministic(device, True)


def mps_module():
    """platform/mps.py (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("mergan_platform_mps", ROOT / "platform" / "mps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packed(args, count: int, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """``count`` worker processes timed over one window (each waits for the others to be warm, then a signal)."""
    go = workdir / f"go-{count}-{time.monotonic_ns()}"
    spec = {"scale": args.scale, "device": args.device, "seconds": args.seconds, "go": str(go)}
    workers = []
    for index in range(count):
        ready = go.with_name(f"{go.name}.ready{index}")
        workers.append((ready, subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps({**spec, "ready": str(ready)})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})))
    limit = time.monotonic() + args.worker_start_seconds
    while time.monotonic() < limit and not all(r.exists() or p.poll() is not None for r, p in workers):
        time.sleep(0.05)
    go.touch()
    rates, problems = [], []
    for ready, process in workers:
        if not ready.exists():  # not warm within --worker-start-seconds: not part of the timed window
            process.kill()
        try:
            out, err = process.communicate(timeout=args.seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        if not ready.exists():
            problems.append(f"not warm within {args.worker_start_seconds:g} s")
            continue
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode == 0 and lines:
            rates.append(json.loads(lines[-1])["it_per_s"])
        else:
            problems.append((err.strip().splitlines() or [f"exit {process.returncode}"])[-1])
    result = {"total_it_per_s": round(sum(rates), 2), "per_process": rates}
    if problems:
        result["failed"] = problems
    return result


def processes(args, device: torch.device, deadline: float, skipped: list[str], results: dict[str, Any]) -> None:
    counts = [int(k) for k in args.process_counts.split(",") if k]
    mps = mps_module()
    with tempfile.TemporaryDirectory() as folder:
        modes = [("without_mps", {})]
        if device.type == "cuda":  # MPS first: packing under it is what the Table-1 target rests on
            root = Path(folder) / "mps"
            modes.insert(0, ("with_mps", mps.environment(root)))
        else:
            skipped.append("processes with_mps (CUDA only)")
        for mode, env in modes:
            if mode == "with_mps":
                started = subprocess.run([sys.executable, str(ROOT / "platform" / "mps.py"), "start", "--dir",
                                          str(root)], capture_output=True, text=True, check=False)
                if started.returncode != 0:
                    results[mode] = {"unavailable": (started.stderr or started.stdout).strip()[-300:]}
                    continue
            try:
                for count in counts:
                    if time.monotonic() > deadline:
                        skipped.append(f"processes {mode} K={count}")
                        continue
                    results.setdefault(mode, {})[str(count)] = packed(args, count, env, Path(folder))
                    args.save()
                    print(f"processes {mode} K={count}: {json.dumps(results[mode][str(count)])}", flush=True)
            finally:
                if mode == "with_mps":
                    subprocess.run([sys.executable, str(ROOT / "platform" / "mps.py"), "stop", "--dir", str(root)],
                                   capture_output=True, text=True, check=False)


def worker(spec: dict[str, Any]) -> None:
    """One packed trial: SFT on its first task (graphs on CUDA), warm, then timed from the common signal."""
    device = torch.device(spec["device"] if spec["device"] != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    set_deterministic(device, True)
    timed = Timed(spec["scale"], "sft", str(device), task=0)
    trainer = timed.trainer
    trainer.cuda_graph = device.type == "cuda"
    iteration = trainer.task_iteration(timed.task)
    run = GraphedIteration(iteration) if trainer.cuda_graph else iteration
    for _ in range(WARMUP_ITERATIONS + 2):
        run()
    synchronize(device)
    Path(spec["ready"]).touch()
    go = Path(spec["go"])
    while not go.exists():
        time.sleep(0.01)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < spec["seconds"]:
        for _ in range(5):
            run()
        count += 5
        synchronize(device)
    print(json.dumps({"it_per_s": round(count / (time.perf_counter() - started), 2)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=150.0, help="seconds; later measurements are skipped")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--scale", choices=tuple(SCALES), default="paper")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--methods", default=",".join(TABLE1_METHODS))
    parser.add_argument("--process-counts", default="1,4,8,16")
    parser.add_argument("--worker-start-seconds", type=float, default=90.0, help="how long workers may take to warm")
    parser.add_argument("--sections", default="per_method,processes,options")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_speed.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    args.device = device.type
    begun = time.monotonic()
    deadline = begun + args.budget
    skipped: list[str] = []
    report: dict[str, Any] = {
        "command": "python bench/gpu_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "scale": args.scale, "seconds_per_measurement": args.seconds,
        "budget_seconds": args.budget,
    }
    report["skipped"] = skipped

    def save() -> None:  # after every measurement: a run stopped from outside keeps what it measured
        report["elapsed_seconds"] = round(time.monotonic() - begun, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    args.save = save
    sections = {"per_method": per_method, "processes": processes, "options": options}
    for name in args.sections.split(","):
        if time.monotonic() > deadline:
            skipped.append(name)
            continue
        report[name] = {}
        sections[name](args, device, deadline, skipped, report[name])
    save()
    print(f"wrote {args.out} ({report['elapsed_seconds']} s; skipped: {', '.join(skipped) or 'nothing'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
