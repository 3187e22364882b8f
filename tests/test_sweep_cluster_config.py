"""The Ray cluster launcher configs in platform/: valid for Ray's own schema, and they install this project
on every node, point trials at a shared MLflow server, and start Ray as the sweep expects."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.local.config import prepare_local
from ray.autoscaler._private.util import fillout_defaults

import sweep

PLATFORM = Path(__file__).resolve().parents[1] / "platform"
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
GPU_INSTANCES = re.compile(r"^(g4dn|g5|g6|g6e|p3|p4d|p5)\.")


def load(name: str) -> dict:
    config = yaml.safe_load((PLATFORM / name).read_text())
    jsonschema.validate(config, SCHEMA)  # what `ray up` checks first
    return config


def commands(config: dict, key: str) -> str:
    return "\n".join(config.get(key, []))


def check_installs_the_project_and_points_at_mlflow(config: dict) -> None:
    mounts = {local: remote for remote, local in config["file_mounts"].items()}
    remote = mounts["."]
    # `ray submit` runs ~/sweep.py: a ~/mergan folder beside it would shadow the installed mergan package.
    assert not Path(remote).name.isidentifier()
    assert ".gitignore" in config["rsync_filter"] and ".venv" in config["rsync_exclude"]
    assert mounts["~/.mlflow/credentials"].endswith("/.mlflow/credentials")  # every node's MLflow login
    setup = commands(config, "setup_commands")
    assert f"install -e {remote}" in setup or f"install --user -e {remote}" in setup
    assert '"ray[default,tune]==' in setup  # one Ray version on every node
    head = commands(config, "head_start_ray_commands")
    assert f"cd {remote} && " in head and "platform/mlflow_server.py start --auth --host 0.0.0.0" in head
    # MLflow answers requests addressed to the head (its address, its name) and to localhost (`ray attach -p`).
    allowed = re.search(r'--allowed-hosts "([^"]+)"', head).group(1).split(",")
    assert allowed == ["$(hostname -I | awk '{print $1}'):5000", "$(hostname):5000", "localhost:5000",
                       "127.0.0.1:5000"]
    assert "export MLFLOW_TRACKING_URI=http://$(hostname -I | awk '{print $1}'):5000" in head
    # Ray's dashboard takes jobs, that is code: on the head's loopback, reached through `ray dashboard`.
    assert "ray start --head --port=6379" in head and "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head.replace("mlflow_server.py start --auth --host 0.0.0.0", "")
    assert "ray start --address=$RAY_HEAD_IP:6379" in commands(config, "worker_start_ray_commands")


def check_every_bashrc_line_is_added_once(config: dict) -> None:
    """`ray up` runs these commands every time: each appends its line only when ~/.bashrc lacks it."""
    appending = [c for key in ("setup_commands", "head_setup_commands", "head_start_ray_commands")
                 for c in config.get(key, []) if ">> ~/.bashrc" in c]
    assert appending
    for command in appending:
        guard = re.fullmatch(r"grep -q (\S+) ~/\.bashrc \|\| echo (.+) >> ~/\.bashrc", command)
        assert guard and guard.group(1) in guard.group(2), command


def check_the_example_sweep_command_parses(name: str) -> None:
    header = (PLATFORM / name).read_text().split("\ncluster_name")[0]
    example = re.search(r"ray submit platform/\S+ sweep\.py -- (.*?)\n#\s+ray (exec|down)", header, re.DOTALL).group(1)
    args = sweep.parse_args(shlex.split(example.replace("\\\n#", " ")))
    assert args.address == "auto" and args.storage_path and args.gpus_per_trial > 0
    # `ray submit` hands its arguments to the head's shell unquoted: the quoting the header advises survives
    # this machine's shell and then the head's.
    advised = re.search(r"(--tasks \S+)", header).group(1)
    on_the_head = shlex.split(" ".join(shlex.split(advised)))
    assert sweep.parse_args(["--space", "methods", *on_the_head]).tasks == "0|1|2"


def test_the_aws_cluster_has_a_cpu_head_and_gpu_workers_and_installs_the_project():
    config = load("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never land on the head
    assert not GPU_INSTANCES.match(head["node_config"]["InstanceType"])
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(GPU_INSTANCES.match(t["node_config"]["InstanceType"]) for t in workers)
    # At least one GPU node from the start: the sweep checks that a node can hold a GPU trial before it starts.
    assert all(1 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"] for t in workers)
    check_installs_the_project_and_points_at_mlflow(config)
    check_every_bashrc_line_is_added_once(config)
    check_the_example_sweep_command_parses("cluster.yaml")


def test_the_lab_cluster_uses_the_machines_it_names():
    config = load("cluster-local.yaml")
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and len(provider["worker_ips"]) >= 1
    assert config["auth"]["ssh_user"] and config["max_workers"] == len(provider["worker_ips"])
    prepared, _ = prepare_local(fillout_defaults(config))  # what `ray up` makes of it
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(provider["worker_ips"])
    check_installs_the_project_and_points_at_mlflow(config)
    check_every_bashrc_line_is_added_once(config)
    check_the_example_sweep_command_parses("cluster-local.yaml")


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_platform_stays_a_folder_of_files_not_a_python_package(name):
    assert (PLATFORM / name).is_file() and not (PLATFORM / "__init__.py").exists()
