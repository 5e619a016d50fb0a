"""The durable outbound queue: atomic writes, END markers, outcomes that survive a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simsmtp.net.queue import (
    END_MARKER,
    QUEUE_MAGIC,
    Queue,
    QueueError,
    RecipientResult,
    RecipientStatus,
)
from simsmtp.trace import Trace
from tests.conftest import posix_only

MESSAGE = b"From: alice@example.com\r\nTo: bob@anotherdomain.org\r\n\r\nHello Bob\r\n"
ROOT = Path(__file__).resolve().parents[2]


def _enqueue(queue: Queue, queue_id: str = "4F2A1B3C5D", **kw: object) -> None:
    queue.enqueue("alice@example.com", ["bob@anotherdomain.org", "carol@anotherdomain.org"],
                  MESSAGE, queue_id=queue_id, arrival=1000.0,
                  params={"BODY": "8BITMIME"}, **kw)  # type: ignore[arg-type]


def test_enqueue_writes_one_complete_file_and_reload_round_trips(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue, rcpt_params={"bob@anotherdomain.org": {"NOTIFY": "FAILURE"}})
    files = list((tmp_path / "active").iterdir())
    assert [f.name for f in files] == ["4F2A1B3C5D"]
    data = files[0].read_bytes()
    assert data.startswith(QUEUE_MAGIC) and data.endswith(END_MARKER)
    assert list((tmp_path / "tmp").iterdir()) == []

    again = Queue(tmp_path)
    msg = again.get("4F2A1B3C5D")
    assert msg.sender == "alice@example.com"
    assert [r.address for r in msg.recipients] == ["bob@anotherdomain.org",
                                                   "carol@anotherdomain.org"]
    assert all(r.status is RecipientStatus.PENDING and r.attempts == 0 for r in msg.recipients)
    assert msg.message == MESSAGE
    assert msg.arrival == 1000.0
    assert msg.params == {"BODY": "8BITMIME"}
    assert msg.recipient("bob@anotherdomain.org").params == {"NOTIFY": "FAILURE"}
    assert again.discarded == []


def test_message_containing_end_marker_and_null_sender_round_trip(tmp_path: Path) -> None:
    body = b"Subject: x\r\n\r\nline\nEND\n" + END_MARKER
    Queue(tmp_path).enqueue("", ["bob@b.org"], body, queue_id="A1", arrival=5.0)
    msg = Queue(tmp_path).get("A1")
    assert msg.message == body and msg.sender == ""


def test_duplicate_recipients_dropped_and_bad_input_refused(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    msg = queue.enqueue("a@x.org", ["b@y.org", "b@y.org"], b"x", queue_id="A1", arrival=0.0)
    assert [r.address for r in msg.recipients] == ["b@y.org"]
    with pytest.raises(QueueError):
        queue.enqueue("a@x.org", ["b@y.org"], b"x", queue_id="A1", arrival=0.0)
    with pytest.raises(QueueError):
        queue.enqueue("a@x.org", ["b@y.org"], b"x", queue_id="../evil", arrival=0.0)
    with pytest.raises(QueueError):
        queue.enqueue("a@x.org", [], b"x", queue_id="A2", arrival=0.0)
    with pytest.raises(QueueError):
        queue.enqueue("a@x.org", ["b@y.org\r\nRCPT TO:<c@z>"], b"x", queue_id="A3", arrival=0.0)
    assert sorted(p.name for p in (tmp_path / "active").iterdir()) == ["A1"]


@pytest.mark.parametrize("cut", [0, 5, len(QUEUE_MAGIC) + 3, -len(END_MARKER), -1])
def test_truncated_queue_file_is_discarded(tmp_path: Path, cut: int) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    path = tmp_path / "active" / "4F2A1B3C5D"
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    trace = Trace()
    again = Queue(tmp_path, trace=trace)
    assert len(again) == 0
    assert not path.exists()
    assert [d.path.name for d in again.discarded] == ["4F2A1B3C5D"]
    assert trace.events("queue.discard")[0]["path"] == str(path)
    assert again.due(10**9) == []


def test_leftovers_in_tmp_and_orphan_journals_are_removed(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    (tmp_path / "tmp" / "DEAD.123").write_bytes(QUEUE_MAGIC + b'{"queue_id": "DEAD"')
    (tmp_path / "status" / "GONE").write_bytes(b'{"notified": []}\n')
    again = Queue(tmp_path)
    assert [m.queue_id for m in again] == ["4F2A1B3C5D"]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "status" / "GONE").exists()
    assert {d.path.name for d in again.discarded} == {"DEAD.123", "GONE"}


def test_results_survive_reopening(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    queue.record_results("4F2A1B3C5D", [
        RecipientResult("bob@anotherdomain.org", RecipientStatus.DELIVERED,
                        reply="250 2.0.0 Ok: queued as 77AA", status_code="2.0.0",
                        remote_mta="mail.anotherdomain.org", when=1001.0),
        RecipientResult("carol@anotherdomain.org", RecipientStatus.DEFERRED,
                        reply="450 4.7.1 Greylisted", status_code="4.7.1",
                        remote_mta="mail.anotherdomain.org", when=1001.0,
                        next_attempt=1301.0),
    ])
    again = Queue(tmp_path)
    msg = again.get("4F2A1B3C5D")
    bob, carol = msg.recipients
    assert bob.status is RecipientStatus.DELIVERED and bob.final
    assert bob.reply == "250 2.0.0 Ok: queued as 77AA"
    assert bob.remote_mta == "mail.anotherdomain.org" and bob.attempts == 1
    assert carol.status is RecipientStatus.DEFERRED and carol.next_attempt == 1301.0
    assert carol.reply.startswith("450") and carol.last_attempt == 1001.0
    assert [m.queue_id for m in again.deferred()] == ["4F2A1B3C5D"]
    # due(): not before the next attempt, and then only carol
    assert again.due(1300.0) == []
    assert [m.queue_id for m in again.due(1301.0)] == ["4F2A1B3C5D"]
    assert [r.address for r in msg.due_recipients(1301.0)] == ["carol@anotherdomain.org"]


def test_due_orders_by_due_time_and_pending_is_due_at_arrival(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    queue.enqueue("a@x.org", ["b@y.org"], b"1", queue_id="LATE", arrival=50.0)
    queue.enqueue("a@x.org", ["b@y.org"], b"2", queue_id="EARLY", arrival=10.0)
    assert queue.due(5.0) == []
    assert [m.queue_id for m in queue.due(20.0)] == ["EARLY"]
    assert [m.queue_id for m in queue.due(60.0)] == ["EARLY", "LATE"]
    queue.record_result("EARLY", "b@y.org", "deferred", when=60.0, next_attempt=400.0)
    assert [m.queue_id for m in queue.due(60.0)] == ["LATE"]
    assert queue.next_due() == 50.0


def test_remove_only_when_final_and_notified(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    with pytest.raises(QueueError):
        queue.remove("4F2A1B3C5D")
    queue.record_result("4F2A1B3C5D", "bob@anotherdomain.org", "delivered", when=1.0)
    queue.record_result("4F2A1B3C5D", "carol@anotherdomain.org", "failed",
                        reply="550 5.1.1 User unknown", status_code="5.1.1", when=1.0)
    msg = queue.get("4F2A1B3C5D")
    assert msg.final and not msg.complete
    assert [r.address for r in msg.unnotified] == ["carol@anotherdomain.org"]
    with pytest.raises(QueueError):
        queue.remove("4F2A1B3C5D")
    queue.mark_notified("4F2A1B3C5D", ["carol@anotherdomain.org"])
    assert Queue(tmp_path).get("4F2A1B3C5D").complete  # notification is durable too
    queue.remove("4F2A1B3C5D")
    assert "4F2A1B3C5D" not in queue
    assert list((tmp_path / "active").iterdir()) == []
    assert list((tmp_path / "status").iterdir()) == []
    assert len(Queue(tmp_path)) == 0


def test_null_sender_failures_need_no_notification(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    queue.enqueue("", ["b@y.org"], b"dsn", queue_id="B1", arrival=0.0)
    queue.record_result("B1", "b@y.org", "failed", reply="550 5.1.1 no", when=1.0)
    assert queue.get("B1").complete
    assert "B1" not in Queue(tmp_path)  # done: its deleted queue file recorded that


def test_the_last_outcome_is_recorded_by_deleting_the_queue_file(
        tmp_path: Path, fsynced: list[str]) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    fsynced.clear()
    queue.record_result("4F2A1B3C5D", "bob@anotherdomain.org", "delivered", when=1.0)
    journal = tmp_path / "status" / "4F2A1B3C5D"
    assert fsynced == [str(journal), str(tmp_path / "status")]  # carol is still to do
    fsynced.clear()
    queue.record_result("4F2A1B3C5D", "carol@anotherdomain.org", "delivered", when=2.0)
    assert fsynced == [str(tmp_path / "active")]  # one fsync: the file is gone for good
    assert not journal.exists() and not (tmp_path / "active" / "4F2A1B3C5D").exists()
    assert queue.get("4F2A1B3C5D").complete  # still known until the agent removes it
    queue.remove("4F2A1B3C5D")
    assert fsynced == [str(tmp_path / "active")] and "4F2A1B3C5D" not in queue


def test_torn_journal_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    queue.record_result("4F2A1B3C5D", "bob@anotherdomain.org", "delivered", when=1.0)
    journal = tmp_path / "status" / "4F2A1B3C5D"
    torn = json.dumps({"recipient": "carol@anotherdomain.org", "status": "delivered"})[:30]
    with open(journal, "ab") as f:
        f.write(torn.encode())
    again = Queue(tmp_path)
    msg = again.get("4F2A1B3C5D")
    assert msg.recipient("bob@anotherdomain.org").status is RecipientStatus.DELIVERED
    assert msg.recipient("carol@anotherdomain.org").status is RecipientStatus.PENDING
    assert journal.read_bytes().endswith(b"\n")
    again.record_result("4F2A1B3C5D", "carol@anotherdomain.org", "delivered", when=2.0)
    assert "4F2A1B3C5D" not in Queue(tmp_path)  # every recipient delivered: the files went
    assert not journal.exists() and not (tmp_path / "active" / "4F2A1B3C5D").exists()


def test_record_result_for_unknown_recipient_writes_nothing(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    with pytest.raises(KeyError):
        queue.record_result("4F2A1B3C5D", "mallory@evil.example", "delivered")
    assert not (tmp_path / "status" / "4F2A1B3C5D").exists()
    with pytest.raises(QueueError):
        queue.record_result("NOPE", "bob@anotherdomain.org", "delivered")


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    queue = Queue(tmp_path)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        _enqueue(queue)
    monkeypatch.undo()
    assert "4F2A1B3C5D" not in queue
    assert list((tmp_path / "active").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_trace_records_queue_events(tmp_path: Path) -> None:
    trace = Trace()
    queue = Queue(tmp_path, trace=trace, host="mail.example.com")
    _enqueue(queue)
    queue.record_result("4F2A1B3C5D", "bob@anotherdomain.org", "delivered", when=1.0)
    kinds = [e.kind for e in trace.events("queue")]
    assert kinds == ["queue.load", "queue.enqueue", "queue.result"]
    assert trace.events("queue.enqueue")[0].host == "mail.example.com"
    assert trace.events("queue.enqueue")[0]["size"] == len(MESSAGE)


# ---------------------------------------------------------------- crash tests (SIGKILL)

_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from simsmtp.net.queue import Queue
    q = Queue({directory!r})
    mode = sys.argv[1]
    if mode == "midwrite":
        real_write = os.write
        def stall(fd, data):
            real_write(fd, bytes(data[:len(data) // 2]))  # half the file reaches the disk
            print("writing", flush=True)
            time.sleep(60)
        os.write = stall
    q.enqueue("alice@example.com", ["bob@anotherdomain.org", "carol@anotherdomain.org"],
              b"Subject: crash\\r\\n\\r\\n" + b"x" * 100000, queue_id="C0FFEE", arrival=1.0)
    if mode == "result":
        q.record_result("C0FFEE", "bob@anotherdomain.org", "delivered",
                        reply="250 2.0.0 Ok", when=2.0)
    print("done", flush=True)
    time.sleep(60)
""")


def _run_and_kill(tmp_path: Path, mode: str) -> str:
    script = _CHILD.format(root=str(ROOT), directory=str(tmp_path / "q"))
    child = subprocess.Popen([sys.executable, "-c", script, mode], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)  # a hard stop: no cleanup, no atexit
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return line


@posix_only
def test_sigkill_right_after_enqueue_returns_keeps_the_message(tmp_path: Path) -> None:
    assert _run_and_kill(tmp_path, "enqueue") == "done"
    queue = Queue(tmp_path / "q")
    msg = queue.get("C0FFEE")
    assert msg.message.endswith(b"x" * 100000)
    assert [r.status for r in msg.recipients] == [RecipientStatus.PENDING] * 2


@posix_only
def test_sigkill_after_recorded_250_never_delivers_that_recipient_again(
        tmp_path: Path) -> None:
    assert _run_and_kill(tmp_path, "result") == "done"
    queue = Queue(tmp_path / "q")
    due = queue.due(10.0)
    assert [m.queue_id for m in due] == ["C0FFEE"]
    assert [r.address for r in due[0].due_recipients(10.0)] == ["carol@anotherdomain.org"]


@posix_only
def test_sigkill_halfway_through_writing_is_never_delivered(tmp_path: Path) -> None:
    assert _run_and_kill(tmp_path, "midwrite") == "writing"
    (partial,) = (tmp_path / "q" / "tmp").iterdir()  # the partial file is there...
    assert not partial.read_bytes().endswith(END_MARKER)
    queue = Queue(tmp_path / "q")
    assert len(queue) == 0  # ...and is discarded, never delivered
    assert list((tmp_path / "q" / "tmp").iterdir()) == []
    assert len(queue.discarded) == 1


def test_delay_warning_mark_survives_reopening(tmp_path: Path) -> None:
    queue = Queue(tmp_path)
    _enqueue(queue)
    assert not queue.get("4F2A1B3C5D").warned
    queue.mark_warned("4F2A1B3C5D")
    assert Queue(tmp_path).get("4F2A1B3C5D").warned


def test_contents_past_the_memory_budget_stay_on_disk_and_read_back(tmp_path: Path) -> None:
    queue = Queue(tmp_path, fsync=False)
    queue.memory_budget = 250
    bodies = {f"Q{i}": f"Subject: {i}\r\n\r\n{'x' * 90}\r\n".encode() for i in range(10)}
    for qid, body in bodies.items():
        queue.enqueue("alice@example.com", ["bob@anotherdomain.org"], body, queue_id=qid,
                      arrival=1.0)
        assert queue.held_bytes <= 250  # a backlog holds its envelopes, not its contents
    assert all(queue.get(qid).message == body for qid, body in bodies.items())
    again = Queue(tmp_path, fsync=False)  # reloading keeps to the default budget
    assert all(again.get(qid).message == body for qid, body in bodies.items())
    for qid in bodies:
        queue.record_result(qid, "bob@anotherdomain.org", "delivered", reply="250 ok",
                            when=2.0)
        queue.remove(qid)
    assert queue.held_bytes == 0 and len(queue) == 0
