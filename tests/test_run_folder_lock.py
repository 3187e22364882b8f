"""A run folder is held for the whole ``mergan train`` run: a second run, or a ``--resume``, of the same folder
is refused in one line while the first goes on, and a run that was killed leaves nothing that blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mergan.checkpoint import load_checkpoint
from mergan_cli.main import main
from tests.support.runs import TINY_RUN

HOLD = ("import sys; from mergan.run_folder import RunFolderLock; lock = RunFolderLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); sys.stdin.read(); lock.release()")


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    """A process that holds ``folder`` as a running ``mergan train`` does, until its stdin closes (or it is killed)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_two_runs_started_together_on_one_folder_one_is_refused_and_the_other_is_whole(in_tmp, capsys):
    out = in_tmp / "exp"
    first = subprocess.Popen([sys.executable, "-m", "mergan_cli.main", "train", *TINY_RUN, "--iterations", "40",
                              "--out-dir", str(out), "--no-mlflow"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists():  # the first run has claimed its folder and is building its trainer
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    second = main(["train", *TINY_RUN, "--seed", "7", "--out-dir", str(out), "--no-mlflow"])
    first_err = first.communicate(timeout=300)[1]
    second_err = capsys.readouterr().err

    codes = sorted([first.returncode, second])
    assert codes == [0, 2], (first_err[-2000:], second_err[-2000:])
    refused = second_err if second == 2 else first_err
    assert refused.strip().splitlines()[-1].startswith(f"mergan train: error: run.out_dir: {out} is in use by "
                                                      f"another mergan train (")
    assert "Traceback" not in refused
    # What is in the folder is the one run that went on, whole: its own seed, every task, no lock left.
    seed = 0 if first.returncode == 0 else 7
    assert load_checkpoint(out / "task_2" / "checkpoint.pt")["config"]["run"]["seed"] == seed
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "record.jsonl", "results.json", "samples",
                                                    "task_1", "task_2"]


def test_resume_is_refused_while_another_process_holds_the_run_and_goes_on_once_that_one_is_killed(in_tmp, capsys):
    out = in_tmp / "exp"
    assert main(["train", *TINY_RUN, "--tasks", "0|1|2", "--out-dir", str(out), "--no-mlflow"]) == 0
    (out / "task_3").rename(in_tmp / "task_3_aside")  # as if the run had stopped after task 2
    capsys.readouterr()

    holder = hold_in_another_process(out)
    try:
        assert main(["train", "--resume", str(out), "--no-mlflow"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"mergan train: error: run.out_dir: {out} is in use by another mergan train (pid "
                       f"{holder.pid} on {os.uname().nodename} since {err.split(' since ')[1].split(')')[0]}); "
                       f"wait for it to end, or give this run another --out-dir")
        assert not (out / "task_3").exists()  # nothing was trained beside it
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a stale lock: its process is gone, its file stays
        holder.wait(30)
    assert (out / ".mergan.lock").exists()
    assert main(["train", "--resume", str(out), "--no-mlflow"]) == 0
    assert (out / "task_3" / "checkpoint.pt").is_file() and not (out / ".mergan.lock").exists()


def test_a_new_run_is_refused_while_the_folder_is_held_even_before_it_holds_any_file(in_tmp, capsys):
    out = in_tmp / "exp"
    out.mkdir()
    holder = hold_in_another_process(out)
    try:
        assert main(["train", *TINY_RUN, "--out-dir", str(out), "--no-mlflow"]) == 2
        assert f"run.out_dir: {out} is in use by another mergan train (pid {holder.pid} " in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [".mergan.lock"]  # nothing written beside it
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert not (out / ".mergan.lock").exists()  # released by its holder: removed
