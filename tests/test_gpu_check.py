"""The GPU check's scripts rehearsed on CPU at a tiny scale, so that they cannot rot between the GPU sessions that
run them for real: bench/gpu_speed.py (its eager and packed-process measurements; graphs, MPS and the cuDNN/bf16
options are CUDA's and say so) and bench/gpu_check.sh (the tests, the speed bench, the packed Table-1 runs stopped
at the budget, how far each got)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("sft", "ra")


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_speed_rehearses_on_cpu_within_its_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "gpu_speed.json"
    speed = bench_module("gpu_speed")
    assert speed.main(["--device", "cpu", "--scale", "tiny", "--budget", "60", "--seconds", "0.2", "--methods",
                       ",".join(METHODS), "--process-counts", "1", "--worker-start-seconds", "240",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scale"] == "tiny" and report["command"].startswith("python bench/gpu_speed.py")
    for method in METHODS:
        eager = report["per_method"][method]["eager"]
        assert eager["it_per_s"] > 0 and eager["iterations"] >= 5 and eager["finite"]
        assert "graphs" not in report["per_method"][method]  # CUDA only
    assert report["processes"]["without_mps"]["1"]["total_it_per_s"] > 0
    assert "processes with_mps (CUDA only)" in report["skipped"] and not report.get("options")
    assert any(entry.startswith("options") for entry in report["skipped"])


def test_gpu_speed_skips_what_the_budget_leaves_no_time_for(tmp_path, monkeypatch):
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "gpu_speed.json"
    assert bench_module("gpu_speed").main(["--device", "cpu", "--scale", "tiny", "--budget", "0", "--out",
                                           str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["skipped"] == ["per_method", "processes", "options"]


def test_gpu_check_rehearses_on_cpu_and_reports_how_far_each_run_got(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_SCALE": "tiny", "GPU_CHECK_BUDGET": "240",
           "GPU_CHECK_TESTS_SECONDS": "60", "GPU_CHECK_SPEED_SECONDS": "90", "GPU_CHECK_METHODS": " ".join(METHODS),
           "PYTHON": sys.executable, "MERGAN_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=400, check=False)
    log = (out / "check.log").read_text()
    assert done.returncode == 0, log[-2000:]
    assert "1. CUDA tests" in log and "2. bench/gpu_speed.py" in log and "how far each run got" in log
    assert "skipped" in (out / "tests.log").read_text()  # the CUDA tests skip cleanly without CUDA
    assert json.loads((out / "gpu_speed.json").read_text())["per_method"]["sft"]["eager"]["it_per_s"] > 0
    progress = json.loads((out / "table1.json").read_text())
    assert [entry["run"] for entry in progress] == list(METHODS)
    assert all(f"{method}: " in (out / "progress.txt").read_text() for method in METHODS)
    assert not list(tmp_path.glob("gpu_check.*"))  # its work folder is gone; everything kept is under $OUT


def test_gpu_check_refuses_an_unknown_mode():
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "tabel1"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "unknown mode 'tabel1'; allowed: all, table1, prepare" in done.stderr


def test_run_progress_reads_a_finished_and_a_missing_run(tiny_config, mnist5k, tmp_path):
    from mergan.trainer import Trainer

    config = tiny_config(tasks="0|1", iterations_per_task=2, log_every=1)
    Trainer(config, dataset=mnist5k).fit()
    progress = bench_module("run_progress")
    finished = progress.progress(Path(config.run.out_dir))
    assert finished["status"] == "finished" and finished["tasks_done"] == 2 and finished["num_tasks"] == 2
    assert finished["task"] == 2 and finished["step"] == 4 and finished["it_per_s"] > 0
    missing = progress.progress(tmp_path / "never")
    assert missing == {"run": "never", "status": "not started", "tasks_done": 0}
    assert "0/? tasks done" in progress.describe(missing)
