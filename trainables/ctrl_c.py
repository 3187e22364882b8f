"""Ctrl-C during a sweep: the first stops the trials with Tune's state saved to resume from, a second at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Self

TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"  # Ray's switch: 1 leaves SIGINT to us (see StopOnCtrlC)


class StopOnCtrlC:
    """Ctrl-C while Tune runs: the first asks Tune for the stop its own SIGINT handler makes (running
    trials stop, the experiment state is saved, so the sweep can resume); a second stops at once.

    Tune's handler is switched off (``TUNE_DISABLE_SIGINT_HANDLER``) so that the sweep knows it was
    interrupted: a stopped ``Tuner.fit()`` returns like a finished one. Tune's stop is asked for with
    SIGUSR1, which Tune always handles that way.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._previous_env: str | None = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._previous_env = os.environ.get(TUNE_SIGINT_ENV)
            os.environ[TUNE_SIGINT_ENV] = "1"
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nCtrl-C: stopping the trials and saving the sweep's state to resume from (Ctrl-C again to stop "
              "at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is None:
            return
        signal.signal(signal.SIGINT, self._previous)
        if self._previous_env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = self._previous_env
