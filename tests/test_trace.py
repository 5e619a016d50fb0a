"""The trace: a bounded window in memory, positions that survive it, a history on disk."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from simsmtp.trace import DEFAULT_WINDOW, Trace, read_history


def test_the_window_never_holds_more_than_its_size() -> None:
    trace = Trace(window=10)
    for i in range(25):
        trace.record("smtp.command", "mx", line=f"NOOP {i}")
        assert len(trace.events()) <= 10
    kept = trace.events()
    assert [e.seq for e in kept] == list(range(15, 25))
    assert len(trace) == 25 and trace.dropped == 15 and trace.first_seq == 15
    assert trace.left_out() == ("15 older events were left out (the trace keeps the newest "
                                "10 in memory).")


def test_nothing_left_out_says_nothing() -> None:
    trace = Trace()
    trace.record("a")
    assert trace.window == DEFAULT_WINDOW and trace.dropped == 0 and trace.left_out() == ""


def test_positions_stay_sequence_numbers_after_the_window_moved() -> None:
    trace = Trace(window=4)
    for i in range(6):
        trace.record("k", n=i)
    mark = len(trace)  # 6, though only 4 are kept
    trace.record("k", n=6)
    trace.record("k", n=7)
    assert [e["n"] for e in trace.since(mark)] == [6, 7]
    assert [e["n"] for e in trace.since(0)] == [4, 5, 6, 7]  # the rest left the window
    assert trace.get(7) is not None and trace.get(7)["n"] == 7  # type: ignore[index]
    assert trace.get(3) is None and trace.get(8) is None and trace.get(-1) is None


def test_shrinking_the_window_keeps_the_newest() -> None:
    trace = Trace(window=None)
    for i in range(50):
        trace.record("k", n=i)
    assert trace.dropped == 0
    trace.window = 5
    assert [e["n"] for e in trace.events()] == [45, 46, 47, 48, 49]
    assert trace.dropped == 45
    with pytest.raises(ValueError, match="positive number of events"):
        trace.window = 0


def test_concurrent_recording_stays_bounded_and_numbered() -> None:
    trace = Trace(window=100)

    def burst() -> None:
        for _ in range(500):
            trace.record("k")

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = trace.events()
    assert len(trace) == 2000 and len(kept) == 100
    assert [e.seq for e in kept] == list(range(1900, 2000))


def test_history_on_disk_has_every_event_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = Trace(window=3, history=path)
    trace.record("smtp.command", "mx", line="EHLO a", states=("a", "b"))
    trace.record("sasl.auth", "sub", password="wonderland", user="alice")
    for i in range(10):
        trace.record("delivery.ok", "out", n=i, raw=b"\x00")
    assert len(trace.events()) == 3
    everything = list(trace.history())
    assert [e.seq for e in everything] == list(range(12))
    assert everything[0]["states"] == ["a", "b"]  # JSON has lists, not tuples
    assert everything[1]["password"] == "***" and everything[1]["user"] == "alice"
    assert everything[2]["raw"] == "b'\\x00'"
    assert "wonderland" not in path.read_text()
    assert [e["n"] for e in trace.history("delivery", since=10)] == [8, 9]
    assert [e.kind for e in trace.history(host="mx")] == ["smtp.command"]
    trace.close()
    assert len(list(read_history(path, kind="delivery.ok"))) == 10


def test_history_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    trace = Trace(history=path)
    trace.record("a")
    trace.record("b")
    trace.close()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"seq": 2, "kind": "c"')  # a crash while writing
    assert [e.kind for e in read_history(path)] == ["a", "b"]


def test_history_without_a_file_is_the_window() -> None:
    trace = Trace(window=2)
    for kind in "abc":
        trace.record(kind)
    assert trace.history_path is None
    assert [e.kind for e in trace.history()] == ["b", "c"]
