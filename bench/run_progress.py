"""How far each run folder got, from its record (``record.jsonl``): tasks finished, the last step logged, the rate,
and the final average accuracy when there is one. One line per run; ``--json FILE`` also writes them as JSON.

    python bench/run_progress.py RUN_FOLDER... [--json progress.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def progress(folder: Path) -> dict[str, Any]:
    """What the record of one run folder says of its progress (an empty record: nothing started)."""
    entry: dict[str, Any] = {"run": folder.name, "status": "not started", "tasks_done": 0}
    record = folder / "record.jsonl"
    if not record.is_file():
        return entry
    for line in record.read_text().splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the budget's kill
            continue
        kind = item.get("kind")
        if kind == "start":
            entry["status"] = "running"
        elif kind == "step":
            entry.update(task=item["task"], step=item["step"], it_per_s=item.get("values", {}).get("steps_per_second"))
        elif kind == "task":
            entry.update(tasks_done=item["task"], num_tasks=item["num_tasks"],
                         avg_acc=item.get("metrics", {}).get("avg_acc"))
        elif kind == "end":
            entry["status"] = item.get("status", "ended").lower()
    return entry


def describe(entry: dict[str, Any]) -> str:
    text = f"{entry['run']}: {entry['status']}, {entry['tasks_done']}/{entry.get('num_tasks', '?')} tasks done"
    if "step" in entry:
        text += f", last logged in task {entry['task']} at iteration {entry['step']} of the run"
    if entry.get("it_per_s"):
        text += f" at {entry['it_per_s']:.1f} it/s"
    if entry.get("avg_acc") is not None:
        text += f", avg_acc {entry['avg_acc']:.3f} after task {entry['tasks_done']}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the entries to this file")
    args = parser.parse_args(argv)
    entries = [progress(folder) for folder in args.folders]
    for entry in entries:
        print(describe(entry))
    if args.json:
        args.json.write_text(json.dumps(entries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
