"""How mergan replaces a file whole: write a temporary file beside it, then rename it into place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_name(name: str) -> str:
    """The name of the temporary file :func:`atomic_path` writes beside ``name`` (a run folder lists it)."""
    return name + ".tmp"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write, renamed onto it when the block ends: a crash never leaves half a
    file, a failure (a full disk) removes the temporary file, and an OSError names the file it failed on.
    Writers of one file in several processes at once must hold a lock (they share the temporary file)."""
    temporary = path.with_name(temporary_name(path.name))
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(error.filename or temporary)) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
