"""What can be simulated of Windows on Linux: no directory fsync, ``!`` in Maildir names,
the event loop connecting client sockets itself, and fewer signals for ``up``.

Windows cannot ``os.open`` a directory (and has no ``os.O_DIRECTORY``), refuses ``:`` in
file names, and its proactor event loop connects sockets with ``ConnectEx`` (a connect
started by hand first would break it). Each test takes those properties away from this
machine and checks that mail is still stored, listed, read and removed.
"""

from __future__ import annotations

import os
import poplib
import signal
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from simsmtp import cli
from simsmtp.net import channel, store
from simsmtp.net.queue import Queue
from simsmtp.net.store import MaildirStore, open_maildir
from simsmtp.world import World

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
MSG = b"From: alice@example.com\nTo: bob@anotherdomain.org\nSubject: hi\n\nhello\n"


@pytest.fixture
def bang(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maildir names as on Windows: ``<key>!2,<flags>`` (Dovecot's choice)."""
    monkeypatch.setattr(store, "INFO_SEPARATOR", "!")


@pytest.fixture
def no_directory_fsync(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No ``os.O_DIRECTORY``, and ``os.open`` of a directory fails as on Windows; returns
    the directories something tried to open."""
    monkeypatch.delattr(os, "O_DIRECTORY", raising=False)
    tried: list[str] = []
    real_open = os.open

    def windows_open(path: object, flags: int, *args: object, **kw: object) -> int:
        if os.path.isdir(str(path)):
            tried.append(str(path))
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", windows_open)
    return tried


@pytest.fixture
def proactor_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client sockets are connected by the event loop, never by hand (Windows)."""
    monkeypatch.setattr(channel, "_CONNECT_BY_HAND", False)


def _names(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*")]


def test_flags_use_the_platform_separator_and_every_reader_follows(
        tmp_path: Path, bang: None) -> None:
    keys = iter(["k1", "k1", "k2"])  # a restarted key factory repeats k1
    maildir = MaildirStore(tmp_path / "mail", key_factory=lambda: next(keys))
    assert maildir.deliver(BOB, MSG) == "k1"
    md = open_maildir(maildir.path(BOB))
    message = md.get_message("k1")
    message.set_subdir("cur")
    message.add_flag("S")  # read, as a mail client marks it
    md["k1"] = message
    assert sorted(os.listdir(maildir.path(BOB) / "cur")) == ["k1!2,S"]
    # The repeated key is found in cur/ under the Windows name: the next one is taken.
    assert maildir.deliver(BOB, MSG) == "k2"
    assert not any(":" in name for name in _names(tmp_path))
    assert maildir.keys(BOB) == ["k1", "k2"]
    assert maildir.get_bytes(BOB, "k1") == MSG
    pop = maildir.mailbox(BOB)
    assert [m.uid for m in pop.list_messages()] == ["k1", "k2"]
    pop.delete(["k1"])
    assert maildir.keys(BOB) == ["k2"]


def test_a_failed_delivery_removes_its_copy_under_the_platform_separator(
        tmp_path: Path, bang: None) -> None:
    maildir = MaildirStore(tmp_path / "mail")
    maildir.fail_next(1, after=1)
    with pytest.raises(store.StorageError):
        maildir.deliver_many([ALICE, BOB], MSG)
    assert maildir.keys(ALICE) == [] and maildir.keys(BOB) == []


def test_without_directory_fsync_mail_is_stored_queued_and_removed(
        tmp_path: Path, no_directory_fsync: list[str]) -> None:
    maildir = MaildirStore(tmp_path / "mail")
    key = maildir.deliver(BOB, MSG)
    assert maildir.get_bytes(BOB, key) == MSG
    maildir.mailbox(BOB).delete([key])
    assert maildir.keys(BOB) == []
    queue = Queue(tmp_path / "queue")
    queue.enqueue(ALICE, [BOB], MSG, queue_id="4F1A2B3C4D", arrival=0.0)
    assert [m.queue_id for m in Queue(tmp_path / "queue").load()] == ["4F1A2B3C4D"]
    assert no_directory_fsync == []  # never even tried


@pytest.fixture
def world_on_windows_ways(bang: None, no_directory_fsync: list[str],
                          proactor_connects: None, tmp_path: Path) -> Iterator[object]:
    with World.seed_world().start(directory=tmp_path / "world") as net:
        yield net


def test_a_whole_world_on_windows_ways_delivers_and_serves_pop3(
        world_on_windows_ways: object, tmp_path: Path) -> None:
    net = world_on_windows_ways
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, "from Windows"
    msg.set_content("Hello Bob.\n")
    steps = net.submit(msg.as_bytes(), sender=ALICE, recipients=BOB,  # type: ignore[attr-defined]
                       user=ALICE, password="wonderland")
    assert steps[-2].code == 250
    net.deliver()  # type: ignore[attr-defined]
    assert net.wait(lambda: len(net.mailbox(BOB)) == 1)  # type: ignore[attr-defined]
    pop = poplib.POP3(*net.address("mail.anotherdomain.org", 110))  # type: ignore[attr-defined]
    try:
        pop.stls(net.ca.client_context(verify=True))  # type: ignore[attr-defined]
        pop.user(BOB)
        pop.pass_("builder")
        assert pop.stat()[0] == 1
        assert b"Subject: from Windows" in b"\n".join(pop.retr(1)[1])
        pop.dele(1)
    finally:
        pop.quit()
    assert net.mailbox(BOB) == []  # type: ignore[attr-defined]
    assert not any(":" in name for name in _names(tmp_path / "world" / "mail"))


def test_up_catches_the_stop_signals_the_platform_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(signal, "SIGTERM", raising=False)  # as if it did not exist
    monkeypatch.delattr(signal, "SIGBREAK", raising=False)  # (Windows only)

    def handler(signum: int, frame: object) -> None: ...

    previous = cli._catch_stop_signals(handler)
    try:
        assert list(previous) == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    # Outside the main thread Python allows no handler: nothing is installed, no error.
    seen: list[dict[object, object]] = []
    thread = threading.Thread(target=lambda: seen.append(cli._catch_stop_signals(handler)))
    thread.start()
    thread.join()
    assert seen == [{}]
