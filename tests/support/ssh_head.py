"""A real SSH head node on this machine, for running the README's `ray up` / `ray submit` / `ray down`.

Debian's ``sshd`` listens on 127.0.0.1 at a free unprivileged port and logs the current user in
with a key made for the test; clients reach it with ``ssh_proxy_command: nc %h PORT`` (Ray's local
provider has no port option). It runs in its own PID namespace (``unshare``), so that the ``ray
stop`` of the cluster YAML sees, and ends, only the head's processes, never another Ray of this
user on the machine; and so that ending the namespace ends everything started on the head.

What a lab's head machine would have, the test gives it in a temporary folder: a HOME (sshd sets
it for every session, with Ray's and Python's temporary folders), a ``~/.bashrc`` that starts
sessions there, a pip that works offline, and ``~/mergan-venv`` (which the YAML creates only when
missing) holding this test environment's packages, so that the YAML's ``pip install`` commands
run for real but find everything installed already. Usage::

    head = start_ssh_head()          # raises HeadUnavailable(reason) when this machine cannot
    head.ssh("ray status")           # a command on the head, as its user, in a login shell
    head.stop()                      # ends sshd and every process started through it
"""

from __future__ import annotations

import fcntl
import getpass
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.mlflow_process import free_port

TOOLS = ("sshd", "ssh", "ssh-keygen", "rsync", "nc", "unshare", "setpriv")
APT_PACKAGES = "openssh-server rsync netcat-openbsd"
# What the shipped YAMLs' head binds: MLflow, Ray's GCS, dashboard and client server.
HEAD_PORTS = (5000, 6379, 8265, 10001)
LOCK_FILE = Path(tempfile.gettempdir()) / "mergan-ssh-head.lock"  # one such head per machine at a time
PROJECT_DISTRIBUTION = "mergan-platform"  # installed on the head by the YAML itself
PRIVSEP_DIR = Path("/run/sshd")


class HeadUnavailable(Exception):
    """This machine cannot host the test head (the reason says what is missing)."""


@dataclass
class SSHHead:
    base: Path  # everything of the head: its HOME, Ray's temporary folder, keys, sshd's config and log
    port: int
    user: str
    process: subprocess.Popen  # `unshare ... sshd`: killing it ends the namespace and all in it
    lock: object = field(repr=False, default=None)
    made_privsep_dir: bool = False  # /run/sshd did not exist before

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def key(self) -> Path:
        return self.base / "ssh" / "client_key"

    @property
    def proxy_command(self) -> str:
        return f"nc %h {self.port}"

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``command`` on the head in a login shell (as Ray runs its commands)."""
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={self.proxy_command}", f"{self.user}@127.0.0.1",
             f"bash --login -c {shell_quote('source ~/.bashrc; ' + command)}"],
            capture_output=True, text=True, timeout=timeout, check=False)

    def log(self) -> str:
        path = self.base / "sshd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """End sshd, the namespace's first process: the kernel then ends every process in it."""
        if self.process.poll() is None:
            self.process.kill()  # unshare --kill-child passes SIGKILL on to sshd
            self.process.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)
        if self.made_privsep_dir:
            PRIVSEP_DIR.rmdir()
        if self.lock is not None:
            self.lock.close()


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "needs root: sshd logs users in and unshare makes the head's PID namespace only as root"
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install {APT_PACKAGES})"
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                      check=False).returncode != 0:
        return "unshare cannot make a PID namespace here (the head's `ray stop` would end every Ray of this user)"
    for port in HEAD_PORTS:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"port {port} is in use on this machine, and the cluster YAML's head needs it"
    return None


def make_head_venv(venv: Path) -> None:
    """``~/mergan-venv`` as `python3 -m venv` would make it, with this environment's packages.

    They come through a ``.pth`` path (not copied: seconds, not minutes, and no network); their
    console scripts (``ray``, ``pip``, ``mlflow`` ...) are written for the venv's own Python, as pip
    would. The project itself is left to the YAML's ``pip install -e ~/mergan-platform``.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    head_site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (head_site / "test_environment.pth").write_text(f"{site}\n")
    python = venv / "bin" / "python"
    for distribution in importlib.metadata.distributions(path=[str(site)]):
        if distribution.metadata["Name"] == PROJECT_DISTRIBUTION:
            continue
        for entry in distribution.entry_points.select(group="console_scripts"):
            script = venv / "bin" / entry.name
            script.write_text(f"#!{python}\nimport sys\nfrom {entry.module} import {entry.attr.split('.')[0]}\n"
                              f"sys.exit({entry.attr}())\n")
            script.chmod(0o755)


def prepare_home(home: Path) -> None:
    home.mkdir(parents=True)
    # sshd starts a session in the user's home of /etc/passwd; a lab user's session starts in $HOME.
    (home / ".bashrc").write_text('cd "$HOME"\n')
    pip = home / ".config" / "pip"
    pip.mkdir(parents=True)
    # Offline: every package is in ~/mergan-venv already; builds use its setuptools.
    (pip / "pip.conf").write_text("[global]\nno-index = true\nno-build-isolation = false\n")
    make_head_venv(home / "mergan-venv")


def start_ssh_head(wait: float = 30.0) -> SSHHead:
    """Start the head (see the module docstring); HeadUnavailable says why this machine cannot."""
    reason = _missing_requirement()
    if reason:
        raise HeadUnavailable(reason)
    lock = open(LOCK_FILE, "a")  # noqa: SIM115 - held until stop()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise HeadUnavailable(f"another test head runs on this machine ({LOCK_FILE} is locked)") from None
    # Short: Ray's socket paths under RAY_TMPDIR must stay below 108 characters.
    base = Path(tempfile.mkdtemp(prefix="mgn-", dir="/tmp"))
    keys = base / "ssh"
    keys.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "client_key.pub", keys / "authorized_keys")
    for folder in ("r", "t", "c"):
        (base / folder).mkdir()
    prepare_home(base / "home")
    port, user = free_port(), getpass.getuser()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nAllowUsers {user}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
        f"SetEnv HOME={base / 'home'} RAY_TMPDIR={base / 'r'} TMPDIR={base / 't'} RAY_USAGE_STATS_ENABLED=0\n")
    made_privsep_dir = not PRIVSEP_DIR.exists()
    PRIVSEP_DIR.mkdir(exist_ok=True)  # sshd's privilege-separation folder, which its service makes
    sshd = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin")
    with open(base / "sshd.log", "ab") as log:
        # setpriv: killed with the test process; --kill-child: sshd (and so the namespace) with unshare.
        process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
             sshd, "-D", "-e", "-f", str(base / "sshd_config")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    head = SSHHead(base=base, port=port, user=user, process=process, lock=lock, made_privsep_dir=made_privsep_dir)
    deadline = time.monotonic() + wait
    while True:
        if process.poll() is not None:
            log_text = head.log()
            head.stop()
            raise RuntimeError(f"sshd exited with code {process.returncode}:\n{log_text}")
        if head.ssh("true", timeout=10).returncode == 0:
            return head
        if time.monotonic() > deadline:
            log_text = head.log()
            head.stop()
            raise RuntimeError(f"sshd did not let the test key in within {wait:g} s:\n{log_text}")
        time.sleep(0.3)
