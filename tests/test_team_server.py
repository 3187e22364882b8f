"""A team MLflow server from ``platform/mlflow_server.py``: a second `start` keeps the running server,
`--auth` asks for the login that `credentials` writes, `--allowed-hosts` replaces MLflow's list of
hosts it answers; and a sweep that such a server refuses, or that finds no server, stops before Ray
starts, saying why."""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from tests.support.mlflow_process import SCRIPT, free_port, start_mlflow_server

REPO = Path(__file__).resolve().parents[1]


def clean_env(home: Path) -> dict[str, str]:
    """A user's shell: its own HOME (``~/.mlflow/credentials``), no tracking URI or login from outside."""
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "RAY_ADDRESS"):
        env.pop(name, None)
    return env


def script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=150, check=False)


def search(uri: str, **headers: str) -> requests.Response:
    return requests.get(f"{uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                        headers=headers, timeout=10)


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    """`start --auth` with the admin login of its HOME, answering requests addressed to localhost only."""
    home = tmp_path_factory.mktemp("admin_home")
    env = clean_env(home)
    assert script(env, "credentials").returncode == 0
    server = start_mlflow_server(tmp_path_factory.mktemp("team_server"), env=env,
                                 options=("--auth", "--allowed-hosts", "localhost:*,mlflow.lab.example:*"))
    login = configparser.ConfigParser()
    login.read(home / ".mlflow" / "credentials")
    yield server, dict(login["mlflow"])
    server.stop()


@pytest.mark.slow
def test_start_keeps_a_running_server_of_the_same_settings_and_names_other_settings(tmp_path):
    env = clean_env(tmp_path)
    server = start_mlflow_server(tmp_path / "mlflow", env=env)
    try:
        pid = json.loads((server.root / "mlflow.pid").read_text())["pid"]
        again = script(env, "start", "--root", str(server.root), "--port", str(server.port))
        assert again.returncode == 0, again.stdout
        assert f"already running at {server.uri} (pid {pid}" in again.stdout
        assert json.loads((server.root / "mlflow.pid").read_text())["pid"] == pid

        other = script(env, "start", "--root", str(server.root), "--port", str(server.port + 1))
        assert other.returncode == 1
        assert f"url '{server.uri}' (asked: 'http://127.0.0.1:{server.port + 1}')" in other.stdout
        assert f"stop --root {server.root}" in other.stdout
        assert search(server.uri).ok  # still the first server, untouched
    finally:
        server.stop()


def test_credentials_are_written_once_for_their_owner_only(tmp_path):
    env = clean_env(tmp_path)
    made = script(env, "credentials", "--user", "lab")
    path = tmp_path / ".mlflow" / "credentials"
    assert made.returncode == 0 and str(path) in made.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "mlflow_tracking_username = lab" in text and len(text.split("mlflow_tracking_password = ")[1]) > 12
    assert script(env, "credentials").returncode == 0 and path.read_text() == text  # kept


def test_auth_without_a_login_to_make_the_admin_says_how_to_make_one(tmp_path):
    done = script(clean_env(tmp_path), "start", "--root", str(tmp_path / "mlflow"), "--auth")
    assert done.returncode == 2
    assert "MLFLOW_TRACKING_USERNAME" in done.stdout and "mlflow_server.py credentials" in done.stdout
    assert not (tmp_path / "mlflow" / "mlflow.pid").exists()


@pytest.mark.slow
def test_an_auth_server_answers_its_login_only_and_the_allowed_hosts_only(team_server, monkeypatch):
    server, login = team_server
    uri = f"http://localhost:{server.port}"
    assert search(uri).status_code == 401  # no login
    assert search(uri, Host=f"mlflow.lab.example:{server.port}").status_code == 401  # another allowed host
    # --allowed-hosts replaces MLflow's defaults (localhost and private addresses): 127.0.0.1 is not listed.
    refused = search(f"http://127.0.0.1:{server.port}")
    assert refused.status_code == 403 and "Invalid Host header" in refused.text
    for name, value in login.items():
        monkeypatch.setenv(name.upper(), value)
    assert MlflowClient(uri).search_experiments(max_results=1)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(Exception, match="401"):
        MlflowClient(uri).search_experiments(max_results=1)


def sweep(home: Path, uri: str) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(REPO / "sweep.py"), "--space", "ra-lambda", "--num-samples", "1",
                           "--tracking-uri", uri, "--storage-path", str(home / "sweeps")], cwd=home,
                          env=clean_env(home), capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_a_sweep_refused_for_its_host_stops_before_ray_with_the_server_the_uri_and_the_fix(team_server, tmp_path):
    server, _ = team_server
    uri = f"http://127.0.0.1:{server.port}"  # an address the server's --allowed-hosts does not list
    done = sweep(tmp_path, uri)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"sweep.py: error: the MLflow server at {uri} refuses requests addressed to "
                           f"127.0.0.1:{server.port} (403 Invalid Host header)")
    assert f"--allowed-hosts 127.0.0.1:{server.port}" in line
    assert "Starting" not in done.stdout and not (tmp_path / "sweeps").exists()  # nothing ran


@pytest.mark.slow
def test_a_sweep_without_the_login_of_an_auth_server_stops_before_ray_saying_where_it_goes(team_server, tmp_path):
    server, _ = team_server
    uri = f"http://localhost:{server.port}"
    done = sweep(tmp_path, uri)  # a HOME without ~/.mlflow/credentials
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"sweep.py: error: the MLflow server at {uri} asks for credentials (401)")
    assert "MLFLOW_TRACKING_USERNAME" in line and "~/.mlflow/credentials" in line
    assert "Starting" not in done.stdout and not (tmp_path / "sweeps").exists()


def test_a_sweep_whose_server_does_not_answer_stops_before_ray_saying_so(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = sweep(tmp_path, uri)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"sweep.py: error: the MLflow server at {uri} does not answer (")
    assert "mlflow_server.py start" in line and "--tracking-uri" in line
    assert "Starting" not in done.stdout and not (tmp_path / "sweeps").exists()


def test_a_sweep_with_a_tracking_uri_mlflow_has_no_store_for_stops_before_ray_leaving_nothing(tmp_path):
    done = sweep(tmp_path, "junk://x")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("sweep.py: error: tracking URI junk://x: MLflow has no store for the scheme 'junk'")
    assert "Starting" not in done.stdout and not (tmp_path / "sweeps").exists()  # no driver.json, no Ray


def modes(root: Path) -> dict[str, str]:
    """The permission bits of everything under ``root`` (and of ``root`` itself, as '.')."""
    return {str(p.relative_to(root)): f"{stat.S_IMODE(p.stat().st_mode):o}" for p in [root, *root.rglob("*")]}


@pytest.mark.slow
def test_the_team_servers_store_is_private_to_its_user_also_when_it_existed_open_to_all(tmp_path):
    root = tmp_path / "mlflow"
    (root / "mlartifacts" / "0").mkdir(parents=True)
    (root / "mlartifacts" / "0" / "old.txt").write_text("an artifact of an earlier server")
    (root / "mlflow.db").touch()  # an empty SQLite database, as an earlier start left it
    for path in (root, root / "mlartifacts"):
        path.chmod(0o755)
    (root / "mlflow.db").chmod(0o644)
    previous = os.umask(0o022)  # a usual login's: new files 0644, folders 0755
    try:
        server = start_mlflow_server(root, env=clean_env(tmp_path))
        try:
            assert MlflowClient(server.uri).create_experiment("team")  # the server writes its store
        finally:
            server.stop()
    finally:
        os.umask(previous)
    found = modes(root)
    assert found["."] == "700" and found["mlartifacts"] == "700" and found["mlflow.db"] == "600", found
    assert found["server.log"] == "600", found
    # What the server made itself (its umask 077) is private too; the rest is behind the 0700 root.
    made = {name: mode for name, mode in found.items() if name not in (".", "mlartifacts", "mlartifacts/0",
                                                                        "mlartifacts/0/old.txt")}
    assert all(mode in ("600", "700") for mode in made.values()), made


@pytest.mark.slow
def test_the_login_store_of_an_auth_server_is_private(team_server):
    server, _ = team_server
    found = modes(server.root)
    for name in (".", "basic_auth.db", "basic_auth.ini", "flask_secret_key", "mlflow.db", "mlflow.pid", "server.log"):
        assert found[name] == ("700" if name == "." else "600"), (name, found)


@pytest.mark.slow
def test_mergan_train_without_the_login_of_an_auth_server_stops_before_training(team_server, tmp_path):
    server, _ = team_server
    uri = f"http://localhost:{server.port}"
    tiny = ["--tasks", "0|1", "--iterations", "1", "--batch-size", "8", "--critic-steps", "1", "--eval-when", "none",
            "--device", "cpu"]
    # A HOME without ~/.mlflow/credentials.
    done = subprocess.run([sys.executable, "-m", "mergan_cli.main", "train", *tiny, "--tracking-uri", uri,
                           "--out-dir", str(tmp_path / "run")], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"mergan train: error: --tracking-uri: the MLflow server at {uri} asks for credentials "
                           f"(401)")
    assert "MLFLOW_TRACKING_USERNAME" in line and "--no-mlflow" in line
    assert not (tmp_path / "run").exists()  # refused before a folder was made, so nothing waits unsent
