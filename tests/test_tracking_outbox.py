"""The outbox's flush, unit by unit: order, where it stops, what it keeps, refuses and removes."""

from __future__ import annotations

import json

import pytest

from tracking.outbox import PLACEHOLDER, Outbox, PermanentError, TrackingWarning, flush_file, read_file


class FakeSender:
    """Records what it is sent; fails transiently at ``down_at`` (an op index) and for good on ``refuse``."""

    def __init__(self, down_at: int | None = None, refuse: tuple[str, ...] = ()):
        self.sent: list[dict] = []
        self.ids: dict[str, str] = {}
        self.down_at, self.refuse = down_at, refuse

    def send(self, op: dict) -> None:
        if self.down_at is not None and len(self.sent) == self.down_at:
            raise ConnectionError("store down")
        if op.get("name") in self.refuse:
            raise PermanentError("refused")
        if op["op"] == "create_run":
            self.ids[op["run"]] = "real-id"
        self.sent.append(op)


def ops(*names: str) -> list[dict]:
    return [{"op": "batch", "run": f"{PLACEHOLDER}s", "name": name} for name in names]


@pytest.fixture
def outbox(tmp_path):
    return Outbox(tmp_path / "outbox", "session", "sqlite:///store.db")


def test_a_full_flush_sends_in_order_and_removes_the_file_and_its_staged_files(outbox):
    outbox.append(ops("a", "b", "c"))
    outbox.files.mkdir(parents=True)
    sender = FakeSender()
    result = flush_file(outbox.path, sender)
    assert [op["name"] for op in sender.sent] == ["a", "b", "c"]
    assert (result.sent, result.left, result.rejected, result.error) == (3, 0, 0, None)
    assert not outbox.path.exists() and not outbox.files.exists()


def test_a_transient_failure_stops_the_flush_and_keeps_the_rest_with_the_header(outbox):
    outbox.append(ops("a", "b", "c"))
    result = flush_file(outbox.path, FakeSender(down_at=1))
    assert (result.sent, result.left) == (1, 2) and "store down" in result.error
    header, left = read_file(outbox.path)
    assert header["tracking_uri"] == "sqlite:///store.db"
    assert [op["name"] for op in left] == ["b", "c"]
    sender = FakeSender()
    assert flush_file(outbox.path, sender).sent == 2  # the next flush goes on where this one stopped
    assert [op["name"] for op in sender.sent] == ["b", "c"]


def test_a_refused_record_goes_to_the_rejected_file_and_does_not_block_the_rest(outbox):
    outbox.append(ops("a", "bad", "c"))
    sender = FakeSender(refuse=("bad",))
    with pytest.warns(TrackingWarning, match="refused"):
        result = flush_file(outbox.path, sender)
    assert (result.sent, result.rejected, result.left) == (2, 1, 0)
    rejected = outbox.directory / "session.rejected.jsonl"
    header, kept = read_file(rejected)
    assert header["tracking_uri"] == "sqlite:///store.db"
    assert kept[0]["name"] == "bad" and "refused" in kept[0]["error"]


def test_the_records_left_name_runs_created_before_the_stop_by_their_real_id(outbox):
    outbox.append([{"op": "create_run", "run": f"{PLACEHOLDER}s"}, *ops("a")])
    flush_file(outbox.path, FakeSender(down_at=1))
    _, left = read_file(outbox.path)
    assert left == [{"op": "batch", "run": "real-id", "name": "a"}]


def test_a_staged_artifact_is_removed_once_sent_and_kept_while_unsent(outbox, tmp_path):
    staged = [tmp_path / "one.png", tmp_path / "two.png"]
    for path in staged:
        path.write_bytes(b"png")
    outbox.append([{"op": "artifact", "run": "r", "path": str(p), "staged": True} for p in staged])
    flush_file(outbox.path, FakeSender(down_at=1))
    assert not staged[0].exists() and staged[1].exists()


def test_a_torn_last_line_is_skipped(outbox):
    outbox.append(ops("a"))
    with open(outbox.path, "a") as handle:
        handle.write(json.dumps({"op": "batch", "name": "b"})[:10])
    sender = FakeSender()
    assert flush_file(outbox.path, sender).sent == 1


def test_flushing_a_missing_file_sends_nothing(outbox):
    assert flush_file(outbox.path, FakeSender()).sent == 0
