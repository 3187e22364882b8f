"""What a user of ``mergan train`` relies on: a folder per run, a clean Ctrl-C, and a --help that says it all."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mergan.config import ExperimentConfig, section_knobs
from mergan.methods import REGISTRY
from mergan.presets import PRESETS
from mergan_cli.main import build_parser, main
from tests.support.blocked_imports import attempted, without_packages
from tests.support.fake_runs import empty_folders
from tests.support.mlflow_process import free_port
from tests.support.runs import TINY_RUN
from tracking.mirror import run_id_of


def test_each_new_run_gets_its_own_folder_and_runs_latest_links_the_newest(in_tmp, capsys):
    assert main(["train", *TINY_RUN, "--no-mlflow"]) == 0
    assert main(["train", *TINY_RUN, "--seed", "1", "--no-mlflow"]) == 0  # the same second, most likely
    folders = sorted(p for p in (in_tmp / "runs").iterdir() if not p.is_symlink())
    assert len(folders) == 2 and all(p.name.startswith("sft-") for p in folders)
    assert all((p / "task_2" / "checkpoint.pt").is_file() for p in folders)  # neither overwrote the other
    latest = in_tmp / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == max(folders, key=lambda p: p.stat().st_mtime_ns).resolve()
    capsys.readouterr()
    assert main(["train", "--resume", "runs/latest", "--no-mlflow"]) == 0  # the link resumes the newest run
    assert f"out runs/{latest.resolve().name}," in capsys.readouterr().err.replace("\n", ",")


def test_a_named_folder_holding_a_run_is_refused_unless_overwrite_clears_it(in_tmp, capsys):
    out = in_tmp / "exp"
    assert main(["train", *TINY_RUN, "--out-dir", str(out), "--no-mlflow"]) == 0
    first_checkpoint = (out / "task_2" / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    # A shorter second run would leave the first run's task_2 beside its own results.
    assert main(["train", *TINY_RUN, "--tasks", "0", "--out-dir", str(out), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert f"run.out_dir: {out} holds another run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "task_2" / "checkpoint.pt").read_bytes() == first_checkpoint  # nothing was touched

    # A record that its MLflow run has not received in full is not deleted by --overwrite.
    dead = f"http://127.0.0.1:{free_port()}"  # an MLflow server that does not answer: the run trains all the same
    assert main(["train", *TINY_RUN, "--tasks", "0", "--out-dir", str(out), "--overwrite", "--tracking-uri", dead]) == 0
    assert f"the MLflow server at {dead} does not answer" in capsys.readouterr().err
    assert main(["train", *TINY_RUN, "--tasks", "0", "--out-dir", str(out), "--overwrite", "--no-mlflow"]) == 2
    assert f"lacks part of its record; send it with `mergan sync {out}`" in capsys.readouterr().err
    assert main(["sync", str(out), "--tracking-uri", f"sqlite:///{in_tmp / 'mlflow.db'}"]) == 0

    (out / "notes.txt").write_text("mine")
    assert main(["train", *TINY_RUN, "--tasks", "0", "--out-dir", str(out), "--overwrite", "--no-mlflow"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "notes.txt", "record.jsonl", "results.json",
                                                     "samples", "task_1"]
    assert (out / "notes.txt").read_text() == "mine"  # only the old run's own files were deleted


def test_a_new_run_stopped_before_its_first_task_leaves_the_folder_free_unless_mlflow_lacks_its_record(
        in_tmp, monkeypatch, capsys):
    from mergan.trainer import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    out = in_tmp / "exp"
    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "run_task", interrupted)
        assert main(["train", *TINY_RUN, "--out-dir", str(out), "--no-mlflow"]) == 130
    assert not (out / "config.yaml").exists() and not (out / "record.jsonl").exists()
    assert main(["train", *TINY_RUN, "--tasks", "0", "--out-dir", str(out), "--no-mlflow"]) == 0  # not refused

    # MLflow did not get the stopped run's record: it stays for `mergan sync`, and the folder says so.
    dead = f"http://127.0.0.1:{free_port()}"
    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "run_task", interrupted)
        assert main(["train", *TINY_RUN, "--out-dir", str(in_tmp / "other"), "--tracking-uri", dead]) == 130
    assert (in_tmp / "other" / "record.jsonl").is_file() and not (in_tmp / "other" / "config.yaml").exists()
    capsys.readouterr()
    assert main(["train", *TINY_RUN, "--out-dir", str(in_tmp / "other"), "--no-mlflow"]) == 2
    assert "holds another run (mirrors, record.jsonl)" in capsys.readouterr().err


def test_train_without_mlflow_imports_neither_mlflow_nor_ray_nor_optuna(tmp_path):
    """A GPU machine with PyTorch and no tracking stack trains (and keeps its record) all the same."""
    env = {**without_packages(tmp_path, {"mlflow", "ray", "optuna"}), "MERGAN_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "mergan_cli.main", "train", *TINY_RUN, "--no-mlflow",
                           "--out-dir", str(tmp_path / "run")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert attempted(tmp_path) == []
    assert (tmp_path / "run" / "record.jsonl").is_file() and not (tmp_path / "run" / "mirrors").exists()


def test_a_tracking_uri_mlflow_cannot_use_is_refused_before_any_training(in_tmp, capsys):
    assert main(["train", *TINY_RUN, "--tracking-uri", "junk://x"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mergan train: error: --tracking-uri: tracking URI junk://x: MLflow has no store for the "
                           "scheme 'junk'") and line.endswith("(or train with --no-mlflow)")
    assert "sqlite:///" in line and "--no-mlflow" in line
    assert not (in_tmp / "runs").exists()  # refused before a folder was made


def test_resume_continues_in_the_runs_own_folder_even_from_elsewhere(in_tmp, monkeypatch, capsys):
    out = in_tmp / "exp"
    assert main(["train", *TINY_RUN, "--out-dir", "exp", "--no-mlflow"]) == 0  # a relative folder
    (in_tmp / "elsewhere").mkdir()
    monkeypatch.chdir(in_tmp / "elsewhere")
    assert main(["train", "--resume", str(out / "task_1"), "--no-mlflow"]) == 0
    assert not (in_tmp / "elsewhere" / "exp").exists()
    assert f"out {out}" in capsys.readouterr().err


def _resumable_run(tmp_path: Path, uri: str) -> Path:
    """A finished two-task run recorded in MLflow; resuming its task 1 trains task 2 again."""
    out = tmp_path / "run"
    assert main(["train", *TINY_RUN, "--log-every", "1", "--out-dir", str(out), "--tracking-uri", uri]) == 0
    return out


def test_ctrl_c_prints_where_it_stopped_and_how_to_resume_and_marks_the_mlflow_run_killed(in_tmp):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    out = _resumable_run(in_tmp, uri)
    run_id = run_id_of(out, uri)
    # Task 2 again, long enough to be interrupted in the middle. A shell that starts jobs in the background
    # makes them ignore SIGINT, and Python keeps that: so the child installs Python's usual handler itself.
    entry = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from mergan_cli.main import main; sys.exit(main())")
    command = [sys.executable, "-c", entry, "train", "--resume", str(out / "task_1"), "--iterations", "100000",
               "--tracking-uri", uri]
    process = subprocess.Popen(command, cwd=in_tmp, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "task 2/2:" not in seen or "it/s=" not in seen:  # a progress bar of task 2: training is on
        assert time.monotonic() < deadline and process.poll() is None, seen
        if select.select([process.stderr], [], [], 1.0)[0]:
            seen += os.read(process.stderr.fileno(), 4096).decode(errors="replace")
    process.send_signal(signal.SIGINT)
    err = seen + process.stderr.read()
    assert process.wait(60) == 130
    last_line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert last_line.startswith("mergan train: stopped by Ctrl-C in task 2/2, step ")
    assert f"task 1 is saved in {out}; continue with: mergan train --resume {out} --tracking-uri {uri}" in last_line
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    assert not empty_folders(out)  # no staging debris

    # The printed command continues the same MLflow run to the end.
    resume = last_line.split("continue with: ")[1].split()
    assert main([*resume[1:], "--iterations", "2"]) == 0
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_non_finite_numbers_are_refused_before_any_training(in_tmp, capsys):
    for flag, value in (("--lambda-ra", "nan"), ("--lambda-ra", "inf"), ("--lambda-ewc", "inf"), ("--lr-g", "nan")):
        assert main(["train", *TINY_RUN, flag, value, "--no-mlflow"]) == 2
        field = flag[2:].replace("-", "_")
        assert f"{field}: {float(value)!r} is not a finite number; allowed: " in capsys.readouterr().err
    assert not (in_tmp / "runs").exists()  # refused before a folder was made


def test_an_empty_resume_or_config_is_refused_not_ignored(in_tmp, capsys):
    for flag in ("--resume", "--config"):
        assert main(["train", *TINY_RUN, flag, "", "--no-mlflow"]) == 2
        assert f"{flag}: empty; give a value, or leave the flag out" in capsys.readouterr().err
    assert not (in_tmp / "runs").exists()  # not a new run in place of the resume


def test_help_lists_methods_presets_and_each_flags_meaning_and_allowed_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for method in REGISTRY.built_in:
        assert f" {method} " in text.split("methods (--method")[1]
    for preset in PRESETS:
        assert f" {preset} " in text.split("presets (--preset")[1]
    assert "iterations_per_task=20000" in text and "lambda_ewc=1e9" in text  # the presets' contents
    assert "--dataset DATASET the images: mnist5k is embedded" in text
    assert "allowed: mnist5k, mnist, svhn, lsun, folder" in text
    assert "--lr-g LR_G Adam learning rate of the generator; allowed: > 0 (default: 2e-4;" in text
    assert "--beta1 BETA1 Adam beta1 of both optimizers; allowed: in [0, 1) (default: 0)" in text
    assert "--lambda-ra LAMBDA_RA ra: weight of the replay-alignment loss; allowed: >= 0 (default: 0.01;" in text
    assert "--replay-share REPLAY_SHARE dgr, jtr, ra, er: share of each step replayed" in text  # a shared knob


def test_every_config_field_says_what_it_means():
    """The help is generated from the fields: a field added without a meaning would show none."""
    for section in ExperimentConfig().sections().values():
        for name, knob in section_knobs(section).items():
            assert knob.meaning, f"{type(section).__name__}.{name} has no meaning for --help"
