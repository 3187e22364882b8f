"""bench/table1_merge.py: Table 1 over seeds measured in separate ``mergan reproduce table1`` runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "bench" / "results" / "table1_small_runs.csv"


def merge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "table1_merge.py"), *args], check=False,
                          cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_seeds_from_separate_files_make_one_table(tmp_path):
    runs = pd.read_csv(MEASURED)
    finished = runs[runs["status"] == "FINISHED"]
    seeds = sorted(finished["seed"].unique())
    files = []
    for seed in seeds:  # one file per seed, as two sessions' reports would write them
        files.append(tmp_path / f"seed{seed}.csv")
        runs[runs["seed"] == seed].to_csv(files[-1], index=False)
    done = merge(*map(str, files), "--out", str(tmp_path / "t.md"), "--runs-out", str(tmp_path / "all.csv"))
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "t.md").read_text()
    jt = finished[finished["method"] == "jt"]["avg_acc"] * 100
    assert f"| JT | {jt.mean():.2f} ± {jt.std():.2f}" in table  # mean ± sample std over the files' seeds
    assert "| MeRGAN-RA |" in table and "97.66" in table  # every method, the paper beside
    assert len(pd.read_csv(tmp_path / "all.csv")) == len(finished)  # unfinished runs are left out


def test_a_seed_measured_twice_is_refused(tmp_path):
    done = merge(str(MEASURED), str(MEASURED))
    assert done.returncode != 0 and "measured twice" in done.stderr
    assert merge(str(tmp_path / "nope.csv")).returncode == 2
