"""``mergan sync``'s work: send every outbox file kept while the store could not be reached."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tracking.outbox import FlushResult, Sender, flush_file, outbox_files, read_file
from tracking.store import configure_http_client, resolve_tracking_uri


def sync_outbox(paths: Sequence[str | os.PathLike], tracking_uri: str | None = None
                ) -> list[tuple[Path, FlushResult]]:
    """Send every outbox file in or below ``paths`` to its tracking URI (or ``tracking_uri``)."""
    configure_http_client()
    senders: dict[str, Sender] = {}
    files = sorted(((read_file(p)[0], p) for p in outbox_files(list(paths))),
                   key=lambda item: item[0].get("created", 0))
    results = []
    for header, path in files:
        uri = resolve_tracking_uri(tracking_uri or header.get("tracking_uri"))
        sender = senders.setdefault(uri, Sender(uri))
        results.append((path, flush_file(path, sender)))
    return results

