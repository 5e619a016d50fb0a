"""CATALOGUE.md G72-G79 over real sockets in a running world: the outbound agent's wire
hygiene, MX fallback, per-recipient outcomes, a lost 250, disk errors, and a 250 that
survives SIGKILL of the process running the world.

(The agent's routing, retry and bounce rules are unit-tested in tests/net/test_agent.py
against scripted servers; these cases add the real listener, DNS, store and queue.)
"""

from __future__ import annotations

import errno
import os
import select
import signal
import smtplib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from simsmtp.net.network import Network
from simsmtp.net.queue import Queue
from simsmtp.net.store import MaildirStore
from simsmtp.world import World
from simsmtp.world.model import Host, MXRecord
from tests.conftest import posix_only

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    MX,
    SUBMISSION,
    client_context,
    codes,
    hardening_world,
    message,
    send_recv,
    senders,
    smtp,
    stored,
    token,
)

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE = b"MAIL FROM:<a@relay.example>\r\nRCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n"


def submit(net: Network, content: bytes, rcpts: list[str] | None = None) -> dict[str, Any]:
    """Alice submits on 587 (STARTTLS, AUTH); the refused recipients."""
    with smtplib.SMTP(*net.address(SUBMISSION, 587)) as client:
        client.starttls(context=client_context(net))
        client.login(ALICE, ALICE_PASSWORD)
        refused: dict[str, Any] = client.sendmail(ALICE, rcpts or [BOB], content)
    return refused


def settle(net: Network, kind: str) -> None:
    """Wait until the agents are idle and at least one ``kind`` event happened."""
    assert net.wait(lambda: net.idle() and bool(net.world.trace.events(kind)), 10)


def test_g79_outbound_client_never_emits_bare_cr_or_lf() -> None:
    mark, smuggler = token(), f"smuggled-{token()}@evil.example"
    content = (f"From: {ALICE}\r\nSubject: {mark}\r\n\r\nline1\n.\r\nmail FROM:<{smuggler}>"
               f"\r\nrcpt TO:<{BOB}>\r\ndata\r\n\r\nSMUGGLED\r.\r\n.leading dot\rx\n"
               ).encode()
    with hardening_world(submission={"outbound_tls": "none"}).start() as net:
        queue = net.queues[SUBMISSION]
        queue.enqueue(ALICE, [BOB], content, queue_id="HARDEN79", arrival=net.world.clock.now())
        net.deliver()
        mx_conns = [c.id for c in net.tap.connections() if c.host == MX and c.service == "smtp"]
        wire = b"".join(net.tap.stream(conn, "c2s") for conn in mx_conns)
        assert wire.count(b"MAIL FROM:") == 1 and b"\r\n..leading dot" in wire
        assert b"\r" not in wire.replace(b"\r\n", b"")  # RFC 5321 §2.3.8
        assert b"\n" not in wire.replace(b"\r\n", b"")
        (stored_message,) = stored(net, BOB, mark)  # the next hop saw one message
        assert b"SMUGGLED" in stored_message and b"\n.leading dot" in stored_message
        assert smuggler not in senders(net)


def test_g72_primary_mx_down_goes_to_the_backup() -> None:
    mark = token()
    world = hardening_world()
    backup = "backup.anotherdomain.org"
    world.hosts[backup] = Host(backup, "anotherdomain.org", roles=["mx"])
    world.domains["anotherdomain.org"].mx.append(MXRecord(20, backup))
    with world.start() as net:
        net.take_down(MX)
        assert submit(net, message(mark, sender=ALICE)) == {}
        settle(net, "delivery.ok")
        (ok,) = net.world.trace.events("delivery.ok")
        assert ok["mx"] == backup  # RFC 5321 §5.1: the next MX in preference order
        assert len(stored(net, BOB, mark)) == 1


def test_g73_hard_and_soft_errors_per_recipient() -> None:
    mark = token()
    with hardening_world().start() as net:
        net.world.faults.add(MX, "RCPT", "450 4.2.0 <bob@anotherdomain.org>: Greylisted",
                             match="bob@*", times=1)
        rcpts = [BOB, "nobody@anotherdomain.org", "user001@anotherdomain.org"]
        assert submit(net, message(mark, sender=ALICE), rcpts) == {}
        settle(net, "delivery.deferred")
        trace = net.world.trace
        assert [e["recipient"] for e in trace.events("delivery.ok")] == [rcpts[2]]
        assert [e["recipient"] for e in trace.events("delivery.bounce")] == [rcpts[1]]
        assert [e["recipient"] for e in trace.events("delivery.deferred")] == [BOB]
        net.fast_forward(3600)
        assert len(stored(net, BOB, mark)) == len(stored(net, rcpts[2], mark)) == 1
        bounces = stored(net, ALICE)  # exactly one DSN, for nobody@ only
        assert len(bounces) == 1 and b"nobody@anotherdomain.org" in bounces[0]


def test_g77_lost_250_is_retried_never_bounced() -> None:
    mark = token()
    with hardening_world().start() as net:
        # the MX stores the message, then hangs up instead of saying 250
        net.world.faults.add(MX, "MESSAGE", None, drop=True, times=1)
        assert submit(net, message(mark, sender=ALICE)) == {}
        settle(net, "delivery.deferred")
        assert net.world.trace.events("delivery.bounce") == []
        net.fast_forward(3600)
        assert [e["recipient"] for e in net.world.trace.events("delivery.ok")] == [BOB]
        # RFC 5321 §4.5.3.2.6: the documented duplicate (the first copy was stored)
        assert len(stored(net, BOB, mark)) == 2
        assert stored(net, ALICE) == []


def test_g76_disk_error_answers_451_never_250(net: Network) -> None:
    mark = token()
    with smtp(net) as wire:
        net.store.fail_next(1)
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        (reply,) = send_recv(wire, message(mark) + b".\r\n")
        assert reply.startswith(b"451 4.3.0")  # RFC 5321 §6.1, RFC 3463
        assert stored(net, BOB, mark) == []
        # all or nothing: the second of two mailboxes fails, the first copy is removed
        net.store.fail_next(1, after=1)
        got = send_recv(wire, b"MAIL FROM:<a@relay.example>\r\nRCPT TO:<bob@anotherdomain.org>"
                              b"\r\nRCPT TO:<user002@anotherdomain.org>\r\nDATA\r\n", replies=4)
        assert codes(got) == [250, 250, 250, 354]
        assert codes(send_recv(wire, message(mark) + b".\r\n")) == [451]
        assert stored(net, BOB, mark) == stored(net, "user002@anotherdomain.org", mark) == []
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        assert codes(send_recv(wire, message(mark) + b".\r\n")) == [250]  # disk is back
    assert len(stored(net, BOB, mark)) == 1


def test_g76_queue_write_error_on_submission_answers_451(net: Network,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    queue = net.queues[SUBMISSION]
    before = len(queue)
    monkeypatch.setattr(queue, "enqueue", disk_full)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(net, message(token(), sender=ALICE))
    error = refused.value.smtp_error
    assert refused.value.smtp_code == 451 and isinstance(error, bytes)
    assert error.startswith(b"4.3.0")
    assert len(queue) == before


def test_maildir_keys_do_not_collide_after_a_restart(tmp_path: Path) -> None:
    # regression: the world's reproducible Maildir keys repeated after a restart over the
    # same directory, so the first delivery to a mailbox got 451 ("key already used")
    marks = [token(), token()]
    for mark in marks:
        with hardening_world().start(directory=tmp_path) as net, smtp(net) as wire:
            assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
            assert codes(send_recv(wire, message(mark) + b".\r\n")) == [250]
    with hardening_world().start(directory=tmp_path) as net:
        assert all(len(stored(net, BOB, mark)) == 1 for mark in marks)


SCRIPT = textwrap.dedent("""
    import sys, time, smtplib, ssl
    from simsmtp.world import World

    directory, mode, mark = sys.argv[1:4]
    net = World.seed_world().start(directory=directory).start()
    if mode == "queued":
        net.take_down("mail.anotherdomain.org")  # the message must wait in the queue
    context = ssl.create_default_context(cafile=str(net.ca_file))
    with smtplib.SMTP(*net.address("mail.example.com", 587)) as client:
        client.starttls(context=context)
        client.login("alice@example.com", "wonderland")
        client.sendmail("alice@example.com", ["bob@anotherdomain.org"],
                        f"Subject: {mark}\\r\\nMessage-ID: <{mark}@kill.test>\\r\\n\\r\\nhi\\r\\n")
    kind = "delivery.deferred" if mode == "queued" else "delivery.ok"
    net.wait(lambda: bool(net.world.trace.events(kind)), 20)
    print("250", mode, flush=True)
    time.sleep(60)  # SIGKILLed here: no stop(), no clean-up
""")


def _run_and_kill(tmp_path: Path, mode: str, mark: str) -> None:
    script = tmp_path / "world.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "world"), mode, mark],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else b""
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
        proc.wait(10)
    assert line == f"250 {mode}\n".encode(), proc.stderr.read().decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL


def _count_after_restart(tmp_path: Path, mark: str) -> int:
    with World.seed_world().start(directory=tmp_path / "world") as net:
        net.fast_forward(3600)
        assert net.wait(net.idle, 10)
        return len(stored(net, BOB, mark))


@pytest.mark.parametrize("mode", ["queued", "delivered"])
@posix_only
def test_g76_accepted_mail_survives_sigkill_and_is_delivered_exactly_once(
        tmp_path: Path, mode: str) -> None:
    # queued: 250 to the submission, then SIGKILL with the message still in the queue;
    # delivered: SIGKILL after the MX said 250 to the agent (no second delivery)
    mark = token()
    _run_and_kill(tmp_path, mode, mark)
    mail = MaildirStore(tmp_path / "world" / "mail")
    before = [k for k in mail.keys(BOB) if mark.encode() in mail.get_bytes(BOB, k)]
    assert len(before) == (0 if mode == "queued" else 1)
    queue = Queue(tmp_path / "world" / "queue" / SUBMISSION)
    # on disk, whatever the killed process had in memory (delivered: done and removed)
    assert len(queue) == (1 if mode == "queued" else 0)
    assert _count_after_restart(tmp_path, mark) == 1
    assert _count_after_restart(tmp_path, mark) == 1  # and a second restart adds nothing
