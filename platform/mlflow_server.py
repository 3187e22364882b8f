#!/usr/bin/env python3
"""Start, check and stop an MLflow tracking server for a team or a Ray cluster (stdlib only).

    python platform/mlflow_server.py start [--root DIR] [--host 127.0.0.1] [--port 5000] [--auth]
                                           [--allowed-hosts HOSTS] [--backend-store-uri URI]
                                           [--artifacts-destination URI]
    python platform/mlflow_server.py status [--root DIR]
    python platform/mlflow_server.py stop [--root DIR]
    python platform/mlflow_server.py credentials [--user NAME]

``--root`` (default ``./mlflow_server``) holds what the defaults need: the SQLite store
``mlflow.db``, the artifacts ``mlartifacts/``, the pid file ``mlflow.pid`` and ``server.log``.
Give ``--backend-store-uri postgresql://user:pass@host/db`` for PostgreSQL (psycopg2 installed),
``--artifacts-destination s3://bucket/path`` (or a shared folder) for artifacts: clients upload
them through the server (``mlflow-artifacts:/``), so nodes need no storage credentials.

``start`` is idempotent: a server already running from the same root with the same settings is
left running (exit 0); one with other settings is reported, with the ``stop`` to run first.

The server runs lean: one worker, no job-execution processes (MLFLOW_SERVER_ENABLE_JOB_EXECUTION
=false), about 0.5 GB instead of 3 GB. It binds 127.0.0.1 unless ``--host`` says otherwise. MLflow
answers only requests whose Host header is localhost or a private IP address; ``--allowed-hosts``
replaces that list (name every host:port clients use, localhost included). ``--auth`` requires a
user name and password (MLflow's basic-auth app): the admin account is the one clients read from
MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or ``~/.mlflow/credentials``, which the
``credentials`` command writes. Anything after ``--`` goes to ``mlflow server`` unchanged.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_ROOT = "mlflow_server"
PID_FILE = "mlflow.pid"
LOG_FILE = "server.log"
AUTH_CONFIG = "basic_auth.ini"  # in ROOT, with the user store basic_auth.db beside it
SECRET_KEY_FILE = "flask_secret_key"  # in ROOT: the auth app's CSRF key, the same across restarts
CREDENTIALS = Path("~/.mlflow/credentials")  # where MLflow clients read a user name and password
MIN_PASSWORD = 12  # MLflow's basic-auth app refuses shorter passwords
# The store (runs, password hashes, artifacts) is the server user's alone: its folders 0700, its files 0600,
# and the server runs with umask 077, so whatever it creates later is private too.
PRIVATE_FOLDER, PRIVATE_FILE, SERVER_UMASK = 0o700, 0o600, 0o077
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")  # what SQLite writes beside a database
# What a running server was started with; `start` with other values must not pass for it.
SETTINGS = ("url", "backend_store_uri", "artifacts_destination", "allowed_hosts", "auth")


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    root = Path(args.root).resolve()
    pid_file = Path(args.pid_file).resolve() if args.pid_file else root / PID_FILE
    log_file = Path(getattr(args, "log_file", None) or root / LOG_FILE).resolve()
    return root, pid_file, log_file


def _read_pid_file(pid_file: Path) -> dict | None:
    try:
        return json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return None


def _state(pid: int) -> str | None:
    """The process state letter from /proc (Z: zombie), 'R' where /proc is missing, None if gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "?"
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "R"


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group (the server and its uvicorn worker)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return [pgid] if _state(pgid) not in (None, "Z") else []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _mlflow_command() -> list[str]:
    """This Python's mlflow when it has one (e.g. run from the project's .venv), else `mlflow` on PATH."""
    if importlib.util.find_spec("mlflow") is not None:
        return [sys.executable, "-m", "mlflow"]
    found = shutil.which("mlflow")
    if found is None:
        raise SystemExit("mlflow is not installed for this Python and not on PATH; run this script with "
                         "the project's Python (.venv/bin/python platform/mlflow_server.py ...)")
    return [found]


def read_credentials() -> tuple[str | None, str | None]:
    """(user, password) as MLflow clients find them: the environment first, then ~/.mlflow/credentials."""
    parser = configparser.ConfigParser()
    parser.read(CREDENTIALS.expanduser())
    section = parser["mlflow"] if parser.has_section("mlflow") else {}
    return (os.environ.get("MLFLOW_TRACKING_USERNAME") or section.get("mlflow_tracking_username"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD") or section.get("mlflow_tracking_password"))


def _auth_environment(root: Path) -> dict[str, str] | str:
    """The basic-auth app's settings for a server in ``root``, or why they cannot be made."""
    user, password = read_credentials()
    if not user or not password:
        return (f"--auth needs the admin's user name and password: set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD, or write {CREDENTIALS} with `{Path(__file__).name} credentials`")
    if len(password) < MIN_PASSWORD:
        return f"--auth: the password of {user!r} is shorter than {MIN_PASSWORD} characters, which MLflow refuses"
    config = root / AUTH_CONFIG
    config.touch(mode=PRIVATE_FILE)
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    secret = root / SECRET_KEY_FILE
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_hex(32))
    # The admin is created from these on the first start only; later starts keep its password.
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_USERNAME": user,
            "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secret.read_text().strip()}


def make_private(path: Path, mode: int) -> str | None:
    """Tighten ``path`` (if it exists) to ``mode`` when it is open to others; why it cannot be, or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if not info.st_mode & 0o077:
        return None
    try:
        path.chmod(mode)
    except PermissionError:
        return (f"{path} is readable by other users (mode {info.st_mode & 0o777:o}) and belongs to uid "
                f"{info.st_uid}, not this user (uid {os.geteuid()}): the store must be private to the server's "
                f"user; run the server as its owner, or give another --root")
    return None


def private_store(root: Path, backend: str, artifacts: str, other_files: tuple[Path, ...] = ()) -> str | None:
    """Create ``root`` and a local artifact folder private to this user and tighten what exists of the store
    (databases, auth files, ``other_files``: pid file, log); why that cannot be done, or None."""
    folders = [root] + ([Path(artifacts)] if "://" not in artifacts else [])
    files = [root / name for name in ("basic_auth.db", AUTH_CONFIG, SECRET_KEY_FILE)] + list(other_files)
    if backend.startswith("sqlite:///"):
        database = Path(backend[len("sqlite:///"):])
        files += [database, *(database.with_name(database.name + side) for side in SQLITE_SIDE_FILES)]
    files += [root / f"basic_auth.db{side}" for side in SQLITE_SIDE_FILES]
    for folder in folders:
        try:
            folder.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create {folder} ({error.strerror})"
    problems = [make_private(folder, PRIVATE_FOLDER) for folder in folders]
    problems += [make_private(file, PRIVATE_FILE) for file in files]
    return next((problem for problem in problems if problem), None)


def _already_running(record: dict, wanted: dict, pid_file: Path, wait: float) -> int:
    """`start` when a server of this root runs: 0 if it has the wanted settings and answers, else 1."""
    differences = [f"{key} {record.get(key)!r} (asked: {wanted[key]!r})" for key in SETTINGS
                   if record.get(key) != wanted[key]]
    if differences:
        print(f"an MLflow server already runs from {pid_file} (pid {record['pid']}) with other settings: "
              f"{'; '.join(differences)}. Stop it first: {Path(__file__).name} stop --root {pid_file.parent}")
        return 1
    deadline = time.monotonic() + wait
    while not _healthy(record["url"]):
        if time.monotonic() > deadline:
            print(f"the MLflow server from {pid_file} (pid {record['pid']}) runs but does not answer at "
                  f"{record['url']}; see {record.get('log')}")
            return 1
        time.sleep(0.2)
    print(f"MLflow server already running at {record['url']} (pid {record['pid']}; pid file {pid_file})")
    return 0


def start(args: argparse.Namespace) -> int:
    root, pid_file, log_file = _paths(args)
    backend = args.backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    artifacts = args.artifacts_destination or str(root / "mlartifacts")
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{host}:{args.port}"
    settings = {"url": url, "backend_store_uri": backend, "artifacts_destination": artifacts,
                "allowed_hosts": args.allowed_hosts, "auth": args.auth}
    record = _read_pid_file(pid_file)
    if record and _group_members(record["pid"]):
        return _already_running(record, settings, pid_file, args.wait)
    problem = private_store(root, backend, artifacts, (pid_file, log_file))
    if problem:
        print(problem)
        return 2
    command = [*_mlflow_command(), "server", "--backend-store-uri", backend,
               "--artifacts-destination", artifacts, "--serve-artifacts",
               "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false" if not args.jobs else "true"}
    if not backend.startswith("sqlite:"):
        # A database server takes many writers at once; SQLAlchemy's default pool (5, overflow 10) is fewer
        # than a sweep's concurrent trials, and a request that waits 30 s for a connection is refused.
        env.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", str(args.db_connections))
        env.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", str(args.db_connections))
    if args.auth:
        auth = _auth_environment(root)
        if isinstance(auth, str):
            print(auth)
            return 2
        env.update(auth)
        command += ["--app-name", "basic-auth"]
    command += args.mlflow_args
    if args.foreground:
        print(f"MLflow server at {url} (backend {backend}, artifacts {artifacts})", flush=True)
        os.umask(SERVER_UMASK)
        os.execvpe(command[0], command, env)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE), "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True,  # its own group: stop ends all of it
                                   umask=SERVER_UMASK)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    # The settings may hold a database password (--backend-store-uri postgresql://user:pass@...).
    pid_file.touch(mode=PRIVATE_FILE)
    pid_file.write_text(json.dumps({"pid": process.pid, **settings, "log": str(log_file)}))
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"the MLflow server exited with code {process.returncode}; the end of {log_file}:")
            print("".join(log_file.read_text(errors="replace").splitlines(True)[-20:]))
            pid_file.unlink(missing_ok=True)
            return 1
        if _healthy(url):
            print(f"MLflow server running at {url} (pid {process.pid}; backend {backend}; "
                  f"artifacts {artifacts}; log {log_file}; pid file {pid_file}"
                  f"{'; basic auth' if args.auth else ''})")
            return 0
        time.sleep(0.2)
    print(f"the MLflow server did not answer at {url} within {args.wait:g} s; see {log_file} "
          f"(it keeps starting in the background; stop it with `{Path(__file__).name} stop`)")
    return 1


def credentials(args: argparse.Namespace) -> int:
    """Write ~/.mlflow/credentials (user and a random password, readable by its owner only) if missing."""
    path = CREDENTIALS.expanduser()
    if path.exists():
        user, password = read_credentials()
        print(f"{path} exists (user {user!r}); it is left as it is")
        return 0 if user and password else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(f"[mlflow]\nmlflow_tracking_username = {args.user}\n"
                    f"mlflow_tracking_password = {secrets.token_urlsafe(18)}\n")
    print(f"wrote {path}: user {args.user!r} with a random password (MLflow clients read it; "
          f"`start --auth` makes that user the server's admin)")
    return 0


def stop(args: argparse.Namespace) -> int:
    _, pid_file, _ = _paths(args)
    record = _read_pid_file(pid_file)
    if record is None:
        print(f"no pid file at {pid_file}: no server started from there")
        return 0
    pgid = record["pid"]
    for sig, wait in ((signal.SIGTERM, args.timeout), (signal.SIGKILL, 5.0)):
        if not _group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = _group_members(pgid)
    if left:
        print(f"processes {left} of the MLflow server did not stop")
        return 1
    pid_file.unlink(missing_ok=True)
    print(f"MLflow server {record['url']} (pid {pgid}) stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    _, pid_file, _ = _paths(args)
    record = _read_pid_file(pid_file)
    if record is None or not _group_members(record["pid"]):
        print(f"not running (pid file {pid_file})")
        return 3
    health = "healthy" if _healthy(record["url"]) else "not answering"
    print(f"running: pid {record['pid']} at {record['url']} ({health}); log {record['log']}")
    return 0 if health == "healthy" else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1:], argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("start", start, "start the server in the background, unless it runs already"),
                             ("stop", stop, "stop the server started from this root (SIGTERM, then SIGKILL)"),
                             ("status", status, "say whether it runs and answers")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--root", default=DEFAULT_ROOT,
                         help=f"folder for the default store, artifacts, pid file and log (default ./{DEFAULT_ROOT})")
        sub.add_argument("--pid-file", help="pid file (default ROOT/mlflow.pid)")
        sub.set_defaults(func=func)
        if name == "start":
            sub.add_argument("--backend-store-uri", help="sqlite:///path.db or postgresql://user:pass@host:5432/db "
                                                         "(default sqlite:///ROOT/mlflow.db)")
            sub.add_argument("--artifacts-destination", help="folder or s3://... the server stores artifacts in "
                                                             "(default ROOT/mlartifacts)")
            sub.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; "
                                                                 "0.0.0.0 for a cluster)")
            sub.add_argument("--port", type=int, default=5000)
            sub.add_argument("--workers", type=int, default=1, help="request worker processes (default 1)")
            sub.add_argument("--db-connections", type=int, default=32,
                             help="database connections per worker kept open, as many again on demand, for a "
                                  "backend other than SQLite (default 32: a sweep's concurrent trials; "
                                  "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE/_MAX_OVERFLOW win when set)")
            sub.add_argument("--allowed-hosts",
                             help="the Host headers MLflow accepts, replacing its default (localhost and private IP "
                                  "addresses), e.g. 'head-node:5000,10.0.0.5:5000,localhost:5000'")
            sub.add_argument("--auth", action="store_true",
                             help="require a user name and password (MLflow's basic-auth app); the admin is the "
                                  f"user of MLFLOW_TRACKING_USERNAME/_PASSWORD or {CREDENTIALS}")
            sub.add_argument("--jobs", action="store_true", help="keep MLflow's job-execution processes "
                                                                 "(off by default: they cost ~2.5 GB)")
            sub.add_argument("--log-file", help="server output (default ROOT/server.log)")
            sub.add_argument("--wait", type=float, default=90.0, help="seconds to wait for it to answer")
            sub.add_argument("--foreground", action="store_true",
                             help="run in this process (for systemd, containers); no pid file")
        if name == "stop":
            sub.add_argument("--timeout", type=float, default=15.0, help="seconds to wait after SIGTERM")
    text = f"write {CREDENTIALS} (a user and a random password) unless it exists"
    sub = commands.add_parser("credentials", help=text, description=text)
    sub.add_argument("--user", default="admin", help="the user name (default admin)")
    sub.set_defaults(func=credentials)
    args = parser.parse_args(argv)
    args.mlflow_args = extra
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
