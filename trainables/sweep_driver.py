"""Which process drives a sweep, and the processes it started: so that ``--stop`` and ``--resume`` can end them.

The driver writes ``<storage>/<name>/driver.json`` (host, process id and start time, a token) and puts
the token in its environment before it starts a local Ray, whose processes (GCS, raylet, dashboard, agents,
trial workers) inherit it. Finding the token in a process's environment then says that the
sweep's driver started it, whatever Ray names its processes and whoever their parent is now,
and never matches another user's Ray. ``sweep.py --stop`` asks a running driver to stop as Ctrl-C
does (Tune saves its state; ``--resume`` continues), then ends whatever the sweep left running;
``--resume`` ends the leftovers of a driver that was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field

import psutil

from trainables.plan import PlanError, SweepPlan, join, read_text, write_text

DRIVER_FILE = "driver.json"
TOKEN_ENV = "MERGAN_SWEEP_DRIVER"  # in the environment of the driver and of every process it starts


@dataclass
class DriverRecord:
    """A sweep's driver as ``driver.json`` records it."""

    host: str
    pid: int
    started: float  # the process's start time: with the pid, it names one process (pids are reused)
    token: str

    @classmethod
    def load(cls, plan: SweepPlan) -> DriverRecord | None:
        try:
            return cls(**json.loads(read_text(join(plan.experiment_path, DRIVER_FILE))))
        except FileNotFoundError:
            return None

    def save(self, plan: SweepPlan) -> None:
        write_text(join(plan.experiment_path, DRIVER_FILE), json.dumps(self.__dict__))


@dataclass
class StopReport:
    """What ``stop_sweep`` did."""

    driver_stopped: bool = False  # a running driver was asked to stop, and did
    ended: list[str] = field(default_factory=list)  # leftover processes ended, by description


def mark_driver(plan: SweepPlan) -> DriverRecord:
    """This process as the sweep's driver; the processes it starts from now on carry its token.
    (``save`` it once the sweep is sure to run.)"""
    record = DriverRecord(host=socket.gethostname(), pid=os.getpid(), started=psutil.Process().create_time(),
                          token=f"{plan.name}-{uuid.uuid4().hex[:12]}")
    os.environ[TOKEN_ENV] = record.token
    return record


def processes_of(token: str) -> list[psutil.Process]:
    """Live processes (other than this one) whose environment carries ``token``."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(TOKEN_ENV) == token:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} ({' '.join(process.cmdline())[:80] or process.name()})"
    except psutil.Error:
        return str(process.pid)


def _end(processes: list[psutil.Process], grace_s: float) -> list[str]:
    """SIGTERM, then SIGKILL for what is still alive after ``grace_s``; returns the processes' descriptions."""
    described = [_describe(p) for p in processes]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return described


def _running_driver(record: DriverRecord) -> psutil.Process | None:
    """The recorded driver if it still runs. (Not found by its token: a process's environment as the
    system shows it is the one it started with, and the driver sets the token after it started.)"""
    try:
        process = psutil.Process(record.pid)
        return process if process.create_time() == record.started and process.is_running() else None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _ended(process: psutil.Process, timeout_s: float) -> bool:
    """Whether ``process`` ends within ``timeout_s``; an exited process its parent has not reaped yet (a
    zombie) has ended too."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def end_leftovers(plan: SweepPlan, grace_s: float = 5.0) -> list[str]:
    """Before a resume: end what a killed driver of this sweep left running (refused while it still runs)."""
    record = DriverRecord.load(plan)
    if record is None or record.host != socket.gethostname():
        return []
    driver = _running_driver(record)
    if driver is not None:
        raise PlanError(f"--resume: sweep {plan.name!r} is still running (driver process {driver.pid}); stop it "
                        f"first with: python sweep.py --stop --name {plan.name} --storage-path {plan.storage_path}")
    return _end(processes_of(record.token), grace_s)


def stop_sweep(plan: SweepPlan, wait_s: float = 120.0, grace_s: float = 5.0) -> StopReport:
    """Stop a sweep as Ctrl-C in its terminal would (its state saved), then end what it left running.

    A driver that does not stop within ``wait_s`` is interrupted again (stop at once), then terminated.
    """
    record = DriverRecord.load(plan)
    if record is None:
        raise PlanError(f"--stop: sweep {plan.name!r} has no {DRIVER_FILE} in {plan.experiment_path}; it never "
                        f"started a trial")
    if record.host != socket.gethostname():
        raise PlanError(f"--stop: sweep {plan.name!r} is driven from host {record.host}; run this there")
    report = StopReport()
    driver = _running_driver(record)
    if driver is not None:
        for signal_number, timeout in ((signal.SIGINT, wait_s), (signal.SIGINT, grace_s), (signal.SIGTERM, grace_s)):
            with contextlib.suppress(psutil.NoSuchProcess):
                driver.send_signal(signal_number)
            if _ended(driver, timeout):
                break
        report.driver_stopped = _ended(driver, 0)
    time.sleep(0.5)  # let the driver's own shutdown of Ray finish before looking for leftovers
    report.ended = _end(processes_of(record.token), grace_s)
    return report
