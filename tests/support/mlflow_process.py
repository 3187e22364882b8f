"""A real ``mlflow server`` for tests: free 127.0.0.1 port, SQLite store in a tmp folder, lean mode.

It goes through ``platform/mlflow_server.py`` (start/stop), so tests also exercise that script::

    from tests.support.mlflow_process import start_mlflow_server

    @pytest.fixture(scope="module")
    def mlflow_server(tmp_path_factory):
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
        yield server
        server.stop()

``server.uri`` is ``http://127.0.0.1:<port>``; ``stop()`` and ``start()`` restart it on the same
port with the same store (to test a store that goes away mid-run).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "platform" / "mlflow_server.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    root: Path
    port: int
    options: tuple[str, ...] = ()  # more `start` options, e.g. ("--auth",)
    env: dict[str, str] | None = None  # the script's environment (default: this process's)
    running: bool = False

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([sys.executable, str(SCRIPT), *args, "--root", str(self.root)], env=self.env,
                              check=False, capture_output=True, text=True, timeout=150)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"mlflow_server.py {args[0]} failed:\n{done.stdout}{done.stderr}\n{tail}")

    def start(self) -> Server:
        self._run("start", "--port", str(self.port), "--wait", "120", *self.options)
        self.running = True
        return self

    def stop(self) -> None:
        self._run("stop")
        self.running = False


def start_mlflow_server(tmp_path: str | Path, port: int | None = None, options: tuple[str, ...] = (),
                        env: dict[str, str] | None = None) -> Server:
    """Start a server whose store, artifacts, pid file and log live in ``tmp_path``; returns it running."""
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    return Server(root=root, port=port or free_port(), options=options, env=env).start()
