"""A throwaway PostgreSQL server, as a team server's backend store, for tests and benchmarks.

Debian's ``postgresql`` package (``.ci/install-test-tools`` installs it) provides the binaries; each server
gets its own data folder, listens on 127.0.0.1 only, on a free port, and trusts its one user there.
PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user the package creates::

    server = start_postgres(durable=False)      # None when PostgreSQL is not installed
    uri = server.create_database("mlflow")       # postgresql://mergan@127.0.0.1:PORT/mlflow
    ...
    server.stop()                                # and its data folder is removed
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.mlflow_process import free_port

USER = "mergan"  # the database's superuser (trusted on the loopback interface only)
SERVICE_ACCOUNT = "postgres"  # who runs the server when this process is root


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``postgres`` (Debian keeps them out of PATH), or None."""
    found = shutil.which("pg_config")
    if found:
        folder = Path(subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip())
        if (folder / "initdb").is_file():
            return folder
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    root: Path
    port: int
    process: subprocess.Popen
    bindir: Path
    run_as: dict

    def uri(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URI."""
        subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
                       check=True, capture_output=True, text=True, timeout=60)
        return self.uri(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its data folder."""
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown; SIGINT would be "fast"
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(durable: bool = True, timeout: float = 60.0) -> Postgres | None:
    """Start a PostgreSQL server in a new data folder; None when PostgreSQL is not installed here.

    ``durable=False`` turns off fsync (tests only: a benchmark of a team's server keeps it on).
    """
    bindir = postgres_bin()
    if bindir is None:
        return None
    run_as: dict = {}
    root = Path(tempfile.mkdtemp(prefix="mergan-postgres-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            return None
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, sockets = root / "data", root / "sockets"
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, text=True, timeout=120, cwd=root, **run_as)
    subprocess.run(["mkdir", str(sockets)], check=True, cwd=root, **run_as)
    port = free_port()
    options = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(sockets)]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = open(root / "server.log", "ab")  # noqa: SIM115 - the server's output, for as long as it runs
    process = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), *options], stdout=log,
                               stderr=subprocess.STDOUT, cwd=root, start_new_session=True, **run_as)
    server = Postgres(root, port, process, bindir, run_as)
    deadline = time.monotonic() + timeout
    while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True, check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            text = (root / "server.log").read_text(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n{text}")
        time.sleep(0.2)
    return server
