"""platform/slurm/: the batch script's syntax, the commands it runs for a fake allocation, and its node wait.

No SLURM here: the script runs with an allocation's SLURM_* variables and stand-ins for ``srun``,
``scontrol`` and the virtual environment's ``python`` that record each command (with the environment
it saw) instead of running it. ``wait_for_ray.py`` runs for real against a local Ray.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mlflow_process import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "platform" / "slurm" / "mergan-sweep.sbatch"
WAIT = REPO / "platform" / "slurm" / "wait_for_ray.py"
# Each stand-in writes one JSON line: the program, its arguments, and what it saw of the job's state.
RECORDER = f'''#!{sys.executable}
import json, os, sys
token = os.environ.get("RAY_AUTH_TOKEN_PATH", "")
record = {{"program": os.path.basename(sys.argv[0]), "args": sys.argv[1:],
          "auth_mode": os.environ.get("RAY_AUTH_MODE"),
          "token_mode": oct(os.stat(token).st_mode & 0o777) if token and os.path.exists(token) else None,
          "token_length": os.path.getsize(token) if token and os.path.exists(token) else None,
          "mlflow": os.environ.get("MLFLOW_TRACKING_URI")}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if record["program"] == "scontrol":
    print("\\n".join(os.environ["FAKE_NODES"].split()))
elif record["program"] == "srun" and "hostname" in sys.argv:
    print(os.environ["FAKE_HEAD_ADDRESSES"])
elif record["program"] == "python" and "--dry-run" in sys.argv:
    sys.exit(int(os.environ.get("FAKE_DRY_RUN_STATUS", "0")))
elif record["program"] == "python" and any(arg.endswith("wait_for_ray.py") for arg in sys.argv):
    sys.exit(int(os.environ.get("FAKE_WAIT_STATUS", "0")))
'''


@dataclass
class Job:
    status: int
    output: str
    commands: list[dict]
    checkout: Path

    def calls(self, program: str, containing: str = "") -> list[list[str]]:
        return [c["args"] for c in self.commands if c["program"] == program and containing in " ".join(c["args"])]

    def ray_starts(self) -> list[list[str]]:
        return [args for args in self.calls("srun") if "ray" in args]


def run_job(tmp_path: Path, *sweep_args: str, job_id: int = 4242, nodes: str = "gpu01 gpu02 gpu03",
            head_addresses: str = "10.1.2.3", **env: str) -> Job:
    """The batch script on a fake allocation of ``nodes`` (8 CPUs and 2 GPUs each)."""
    checkout = tmp_path / f"checkout{job_id}"
    (checkout / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (checkout / "sweep.py").write_text("")
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for path in (tools / "srun", tools / "scontrol", checkout / ".venv" / "bin" / "python"):
        path.write_text(RECORDER)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (checkout / ".venv" / "bin" / "activate").write_text(f'export PATH="{checkout / ".venv" / "bin"}:$PATH"\n')
    log = tmp_path / f"commands{job_id}.jsonl"
    log.write_text("")
    count = len(nodes.split())
    environment = {
        "PATH": f"{tools}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_LOG": str(log), "FAKE_NODES": nodes,
        "FAKE_HEAD_ADDRESSES": head_addresses, "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_NODELIST": f"gpu[01-{count:02d}]", "SLURM_JOB_NUM_NODES": str(count),
        "SLURM_CPUS_PER_TASK": "8", "SLURM_GPUS_ON_NODE": "2", "SLURM_SUBMIT_DIR": str(checkout),
        "MLFLOW_TRACKING_URI": "http://mlflow.lab:5000", **env}
    environment = {k: v for k, v in environment.items() if v is not None}
    done = subprocess.run(["bash", str(SCRIPT), *sweep_args], env=environment, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    return Job(done.returncode, done.stdout + done.stderr, commands, checkout)


def option(args: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in ``args``."""
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[index + 1]
    raise AssertionError(f"{name} not in {args}")


def test_the_batch_script_is_valid_bash_and_asks_slurm_for_one_task_per_node():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    directives = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --ntasks-per-node=1" in directives and any("--nodes=" in d for d in directives)
    assert os.access(SCRIPT, os.X_OK) or SCRIPT.read_text().startswith("#!/usr/bin/env bash")


def test_ray_starts_on_every_node_of_the_allocation_then_the_sweep_joins_it(tmp_path):
    job = run_job(tmp_path, "--space", "mergan", "--num-samples", "4", head_addresses="fe80::1 10.1.2.3")
    assert job.status == 0, job.output
    port = 20000 + 4242 % 400 * 100  # 44200: this job's block of ports
    address = f"10.1.2.3:{port}"  # the head's IPv4 address, though it also has an IPv6 one

    # The sweep's arguments are checked first, before any node starts Ray.
    programs = [(c["program"], " ".join(c["args"])) for c in job.commands]
    first_srun = next(i for i, (program, _) in enumerate(programs) if program == "srun")
    assert any("sweep.py --dry-run" in args for _, args in programs[:first_srun])
    assert job.calls("scontrol") == [["show", "hostnames", "gpu[01-03]"]]

    (head,) = [args for args in job.ray_starts() if "--head" in args]
    workers = [args for args in job.ray_starts() if "--head" not in args]
    assert head[:6] == ["--nodes=1", "--ntasks=1", "-w", "gpu01", "ray", "start"] and "--head" in head
    assert option(head, "--node-ip-address") == "10.1.2.3" and option(head, "--port") == str(port)
    assert option(head, "--dashboard-host") == "127.0.0.1", "the dashboard runs code: the head's loopback only"
    assert sorted(w[3] for w in workers) == ["gpu02", "gpu03"]  # started together, in the background
    for args in (head, *workers):
        assert "--block" in args and option(args, "--num-cpus") == "8" and option(args, "--num-gpus") == "2"
        ports = (option(args, "--min-worker-port"), option(args, "--max-worker-port"))
        assert ports == (str(port + 10), str(port + 99))
        assert option(args, "--temp-dir") == "/tmp/ray-4242"
    for args in workers:
        assert option(args, "--address") == address and "--head" not in args

    # The sweep starts once all three nodes have joined, on that Ray, with the user's arguments.
    waits = [args[2:] for args in job.calls("python", "wait_for_ray.py")]
    assert waits == [[address, "1", "--timeout", "300"], [address, "3", "--timeout", "300"]]
    sweeps = [args for args in job.calls("python", "sweep.py") if "--dry-run" not in args]
    assert sweeps == [["-u", "sweep.py", "--address", address, "--storage-path",
                       str(job.checkout / "runs" / "sweeps"), "--space", "mergan", "--num-samples", "4"]]
    assert programs.index(("python", " ".join(sweeps[0]))) > programs.index(("python", " ".join(
        ["-u", "platform/slurm/wait_for_ray.py", *waits[1]])))

    # Every Ray process of the job ran with a token of its own, readable by this user only, gone afterwards.
    for record in job.commands:
        if record["program"] == "srun" and "ray" in record["args"]:
            assert record["auth_mode"] == "token" and record["token_mode"] == "0o600" and record["token_length"] == 32
    assert not list((job.checkout / "runs" / "slurm" / "4242").glob("ray_auth_token"))
    assert "ssh -N -L 8265:127.0.0.1:" in job.output


def test_jobs_sharing_a_node_get_ports_that_do_not_overlap(tmp_path):
    blocks = []
    for job_id in (4242, 4243, 8642):  # 8642 is 4242 + 4400: the 400 blocks come round again
        (head,) = [args for args in run_job(tmp_path, job_id=job_id).ray_starts() if "--head" in args]
        ports = [int(arg.split("=")[1]) for arg in head if arg.startswith("--") and "port=" in arg]
        blocks.append((min(ports), max(ports)))
    assert blocks[0][1] - blocks[0][0] < 100 and blocks[0][1] < blocks[1][0], "consecutive jobs: disjoint blocks"
    assert blocks[2] == blocks[0]
    chosen = run_job(tmp_path, job_id=5, RAY_PORT_BASE="31000").ray_starts()
    assert [option(args, "--port") for args in chosen if "--head" in args] == ["31000"]


def test_several_nodes_without_a_tracking_server_are_refused_before_ray_starts(tmp_path):
    job = run_job(tmp_path, MLFLOW_TRACKING_URI=None)
    assert job.status == 2 and "MLFLOW_TRACKING_URI is not set" in job.output and "MERGAN_JOB_MLFLOW=1" in job.output
    assert job.calls("srun") == []

    single = run_job(tmp_path, nodes="gpu01", job_id=77, MLFLOW_TRACKING_URI=None)
    assert single.status == 0, "one node: the SQLite store in the checkout, as on a laptop"


def test_a_job_mlflow_server_runs_on_the_head_for_the_sweep_and_stops_with_the_job(tmp_path):
    job = run_job(tmp_path, MLFLOW_TRACKING_URI=None, MERGAN_JOB_MLFLOW="1")
    assert job.status == 0, job.output
    port = 20000 + 4242 % 400 * 100 + 9
    (start,) = job.calls("python", "mlflow_server.py start")
    assert option(start, "--host") == "10.1.2.3" and option(start, "--port") == str(port)
    (sweep,) = [c for c in job.commands if c["program"] == "python" and "--address" in c["args"]]
    assert sweep["mlflow"] == f"http://10.1.2.3:{port}"
    assert job.calls("python", "mlflow_server.py stop"), "stopped when the job ends"


def test_refused_sweep_arguments_start_nothing_and_nodes_that_never_join_stop_the_job(tmp_path):
    refused = run_job(tmp_path, "--space", "nope", FAKE_DRY_RUN_STATUS="2")
    assert refused.status == 2 and "sweep.py refused its arguments" in refused.output and not refused.calls("srun")

    stranded = run_job(tmp_path, job_id=99, FAKE_WAIT_STATUS="1")
    assert stranded.status == 1
    assert not [args for args in stranded.calls("python", "sweep.py") if "--address" in args]
    assert not (stranded.checkout / "runs" / "slurm" / "99" / "ray_auth_token").exists()

    outside = subprocess.run(["bash", str(SCRIPT)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                             timeout=30, check=False)
    assert outside.returncode != 0 and "run this with sbatch" in outside.stderr


# -- wait_for_ray.py against a real Ray -------------------------------------------------------
@pytest.mark.slow
def test_wait_for_ray_returns_once_the_nodes_are_there_and_says_which_are_missing(local_ray):
    import ray

    address = ray.get_runtime_context().gcs_address

    def wait(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(WAIT), *args], capture_output=True, text=True, timeout=120,
                              check=False)

    done = wait(address, "1", "--timeout", "60")
    assert done.returncode == 0 and f"1 of 1 nodes alive at {address}" in done.stdout, done.stderr
    started = time.monotonic()
    missing = wait(address, "2", "--timeout", "5")
    assert missing.returncode == 1 and f"only 1 of 2 nodes joined the Ray head at {address}" in missing.stderr
    assert time.monotonic() - started < 60
    nobody = wait(f"127.0.0.1:{free_port()}", "1", "--timeout", "3")
    assert nobody.returncode == 1 and "no Ray head answers at 127.0.0.1:" in nobody.stderr
