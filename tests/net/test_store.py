"""Mail storage: durable Maildir delivery, all-or-nothing, faults, the POP3 view."""

from __future__ import annotations

import errno
import mailbox
import os
import threading
from pathlib import Path

import pytest

from simsmtp.net.store import (
    InvalidAddress,
    MaildirStore,
    MemoryStore,
    MessageStore,
    StorageError,
    split_address,
)
from simsmtp.protocol.mailbox import Mailbox, MailboxError, is_valid_uid
from simsmtp.protocol.pop3 import NEED_DATA, POP3Config, POP3ServerConnection

ALICE = "alice@example.org"
MSG = b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n.dot\r\n"
MSG_LF = MSG.replace(b"\r\n", b"\n")


@pytest.fixture(params=["maildir", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MessageStore:
    if request.param == "maildir":
        return MaildirStore(tmp_path / "mail", hostname="mx.example.org")
    return MemoryStore()


@pytest.fixture
def maildir(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", hostname="mx.example.org")


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


# --- addresses -----------------------------------------------------------------------------


def test_split_address_folds_case_and_refuses_escapes() -> None:
    assert split_address("Alice@Example.ORG") == ("example.org", "alice")
    assert split_address("<a.b+tag@mx.example.org.>") == ("mx.example.org", "a.b+tag")
    for bad in ["noat", "@example.org", "alice@", "../../etc@example.org", "a/b@example.org",
                "alice@../x", "alice@.hidden", "a\x00b@example.org", "a\\b@example.org"]:
        with pytest.raises(InvalidAddress):
            split_address(bad)
    assert issubclass(InvalidAddress, StorageError) and issubclass(InvalidAddress, ValueError)


def test_invalid_address_stores_nothing(maildir: MaildirStore) -> None:
    with pytest.raises(InvalidAddress):
        maildir.deliver("../../evil@example.org", MSG)
    assert files(maildir.root) == []


# --- Maildir delivery ----------------------------------------------------------------------


def test_deliver_writes_into_new_with_lf_and_returns_key(maildir: MaildirStore) -> None:
    key = maildir.deliver("Alice@Example.org", MSG)
    box = maildir.root / "example.org" / "alice"
    assert files(box / "new") == [key] and files(box / "tmp") == []
    assert (box / "new" / key).read_bytes() == MSG_LF  # Maildir convention: LF on disk
    assert maildir.path(ALICE) == box
    assert len(key) <= 70 and is_valid_uid(key) and key.endswith(".mx.example.org")
    # the stdlib reads what we wrote
    assert mailbox.Maildir(box, create=False).get_bytes(key) == MSG_LF
    (message,) = maildir.messages(ALICE)
    assert message["Subject"] == "hi" and message.get_content() == "hello\n.dot\n"


def test_deliver_fsyncs_file_before_rename_then_directory(
        maildir: MaildirStore, fsynced: list[str]) -> None:
    maildir.deliver(ALICE, MSG)  # create the Maildir first
    fsynced.clear()
    key = maildir.deliver(ALICE, MSG)
    box = (maildir.root / "example.org" / "alice").resolve()
    assert fsynced == [str(box / "tmp" / key), str(box / "new")]


def test_first_delivery_creates_the_maildir_durably(
        maildir: MaildirStore, fsynced: list[str]) -> None:
    key = maildir.deliver(ALICE, MSG)
    root = maildir.root.resolve()
    box = root / "example.org" / "alice"
    # each parent of a new directory once (user: tmp, cur, new; domain: user; root:
    # domain), deepest first; then the message file and new/
    assert fsynced == [str(box), str(root / "example.org"), str(root),
                       str(box / "tmp" / key), str(box / "new")]
    for sub in ("tmp", "new", "cur"):
        assert (maildir.root / "example.org" / "alice" / sub).is_dir()


def test_injected_failure_leaves_no_partial_file(maildir: MaildirStore) -> None:
    maildir.deliver(ALICE, MSG)
    box = maildir.root / "example.org" / "alice"
    maildir.fail_next()
    with pytest.raises(StorageError, match="disk full") as info:
        maildir.deliver(ALICE, MSG)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert len(files(box / "new")) == 1 and files(box / "tmp") == []
    maildir.deliver(ALICE, MSG)  # only the next one failed
    assert len(files(box / "new")) == 2


def test_fail_next_n_and_custom_error(store: MessageStore) -> None:
    store.fail_next(2, error=PermissionError("read-only"))
    for _ in range(2):
        with pytest.raises(StorageError, match="read-only"):
            store.deliver(ALICE, MSG)
    store.deliver(ALICE, MSG)
    store.fail_next(3)
    store.fail_next(0)  # cancelled
    store.deliver(ALICE, MSG)
    assert len(store.keys(ALICE)) == 2


def test_real_fsync_failure_is_a_storage_error(
        maildir: MaildirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    maildir.deliver(ALICE, MSG)
    box = maildir.root / "example.org" / "alice"

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StorageError, match="I/O error"):
        maildir.deliver(ALICE, MSG)
    assert len(files(box / "new")) == 1 and files(box / "tmp") == []


def test_directory_fsync_failure_after_rename_removes_the_new_file(
        maildir: MaildirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    maildir.deliver(ALICE, MSG)
    box = maildir.root / "example.org" / "alice"
    real_fsync = os.fsync
    count = {"n": 0}

    def second_fails(fd: int) -> None:
        count["n"] += 1
        if count["n"] == 2:  # the fsync of new/ after the rename
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(StorageError):
        maildir.deliver(ALICE, MSG)
    assert len(files(box / "new")) == 1 and files(box / "tmp") == []


def test_unwritable_place_is_a_storage_error(maildir: MaildirStore) -> None:
    (maildir.root / "example.org").write_bytes(b"a file where a directory should be")
    with pytest.raises(StorageError):
        maildir.deliver(ALICE, MSG)


def test_repeated_key_is_refused(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, key_factory=lambda: "fixed.key")
    assert store.deliver(ALICE, MSG) == "fixed.key"
    with pytest.raises(StorageError, match="already used"):
        store.deliver(ALICE, MSG)
    assert files(tmp_path / "example.org" / "alice" / "new") == ["fixed.key"]
    assert files(tmp_path / "example.org" / "alice" / "tmp") == []


def test_bad_key_from_factory_is_refused(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, key_factory=lambda: "../escape")
    with pytest.raises(StorageError, match="bad Maildir key"):
        store.deliver(ALICE, MSG)


@pytest.mark.parametrize("kind", ["maildir", "memory"])
def test_key_factory_gives_reproducible_keys(kind: str, tmp_path: Path) -> None:
    counter = iter(range(1, 100))

    def factory() -> str:
        return f"world.{next(counter)}"

    store: MessageStore = (MaildirStore(tmp_path, key_factory=factory) if kind == "maildir"
                           else MemoryStore(key_factory=factory))
    assert store.deliver(ALICE, MSG) == "world.1"
    assert store.deliver_many(["bob@example.org"], MSG) == {"bob@example.org": "world.2"}


def test_folder_created_on_demand(store: MessageStore) -> None:
    store.deliver(ALICE, MSG)
    junk = store.deliver(ALICE, b"Subject: spam\r\n\r\nbuy\r\n", folder="Junk")
    assert store.keys(ALICE, "Junk") == [junk]
    assert [m["Subject"] for m in store.messages(ALICE, folder="Junk")] == ["spam"]
    assert [m["Subject"] for m in store.messages(ALICE)] == ["hi"]
    assert store.messages(ALICE, folder="INBOX")[0]["Subject"] == "hi"
    assert store.folders(ALICE) == ["Junk"]  # type: ignore[attr-defined]
    assert len(store.mailbox(ALICE).list_messages()) == 1  # POP3 sees the INBOX only
    with pytest.raises(InvalidAddress):
        store.deliver(ALICE, MSG, folder="../x")


def test_maildir_folder_layout(maildir: MaildirStore) -> None:
    maildir.deliver(ALICE, MSG, folder="Junk")
    folder = maildir.root / "example.org" / "alice" / ".Junk"
    assert files(folder) == ["cur", "maildirfolder", "new", "tmp"]
    assert maildir.path(ALICE, "Junk") == folder


def test_unknown_user_has_no_messages(store: MessageStore) -> None:
    assert store.messages("nobody@example.org") == []
    assert store.keys("nobody@example.org") == []
    with pytest.raises(KeyError):
        store.get_bytes("nobody@example.org", "nokey")


# --- deliver_many --------------------------------------------------------------------------

RCPTS = ["alice@example.org", "bob@example.org", "carol@example.net"]


def test_deliver_many_returns_a_key_per_recipient(store: MessageStore) -> None:
    keys = store.deliver_many([*RCPTS, "ALICE@example.org"], MSG)
    assert list(keys) == [*RCPTS, "ALICE@example.org"]
    assert keys["ALICE@example.org"] == keys["alice@example.org"]  # stored once
    for rcpt in RCPTS:
        assert store.keys(rcpt) == [keys[rcpt]]


def test_deliver_many_is_all_or_nothing_on_injected_failure(store: MessageStore) -> None:
    store.fail_next(1, after=2)  # the third copy fails
    with pytest.raises(StorageError):
        store.deliver_many(RCPTS, MSG)
    for rcpt in RCPTS:
        assert store.keys(rcpt) == []
    if isinstance(store, MaildirStore):
        for rcpt in RCPTS:
            assert files(store.path(rcpt) / "tmp") == []


def test_deliver_many_is_all_or_nothing_on_real_failure(maildir: MaildirStore) -> None:
    maildir.deliver("carol@example.net", MSG)
    carol_new = maildir.path("carol@example.net") / "new"
    carol_new.rename(carol_new.with_name("new.moved"))
    carol_new.write_bytes(b"")  # new/ is now a file: carol's write fails
    with pytest.raises(StorageError):
        maildir.deliver_many(RCPTS, MSG)
    assert maildir.keys("alice@example.org") == [] and maildir.keys("bob@example.org") == []


def test_deliver_many_into_a_folder(store: MessageStore) -> None:
    """Quarantined mail (DMARC p=quarantine) goes to every recipient's Junk folder at once."""
    keys = store.deliver_many(RCPTS, MSG, "Junk")
    for rcpt in RCPTS:
        assert store.keys(rcpt, "Junk") == [keys[rcpt]]
        assert store.keys(rcpt) == []  # not the inbox
    assert store.deliver_many([ALICE], MSG, "INBOX")[ALICE] in store.keys(ALICE)


def test_deliver_many_into_a_folder_is_all_or_nothing(store: MessageStore) -> None:
    store.fail_next(1, after=2)  # the third copy fails
    with pytest.raises(StorageError):
        store.deliver_many(RCPTS, MSG, "Junk")
    for rcpt in RCPTS:
        assert store.keys(rcpt, "Junk") == []
    if isinstance(store, MaildirStore):
        for rcpt in RCPTS:
            assert files(store.path(rcpt, "Junk") / "tmp") == []
            assert files(store.path(rcpt, "Junk") / "new") == []


def test_deliver_many_refuses_a_bad_folder_and_stores_nothing(store: MessageStore) -> None:
    with pytest.raises(InvalidAddress):
        store.deliver_many(RCPTS, MSG, "../x")
    for rcpt in RCPTS:
        assert store.keys(rcpt) == []


def test_deliver_many_validates_every_address_first(store: MessageStore) -> None:
    with pytest.raises(InvalidAddress):
        store.deliver_many(["alice@example.org", "bad/one@example.org"], MSG)
    assert store.keys("alice@example.org") == []


# --- concurrency ---------------------------------------------------------------------------


def test_eight_threads_deliver_eight_distinct_files(store: MessageStore) -> None:
    barrier = threading.Barrier(8)
    keys: list[str] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            keys.append(store.deliver(ALICE, MSG + f"n={n}\r\n".encode()))
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(keys)) == 8 and sorted(keys) == store.keys(ALICE)
    bodies = {store.get_bytes(ALICE, k) for k in keys}
    assert len(bodies) == 8
    if isinstance(store, MaildirStore):
        assert len(files(store.path(ALICE) / "new")) == 8


# --- the POP3 view -------------------------------------------------------------------------


def test_pop3_view_lists_with_crlf_sizes_and_gets_crlf(store: MessageStore) -> None:
    k1 = store.deliver(ALICE, MSG_LF)
    k2 = store.deliver(ALICE, b"Subject: two\n\nsecond\n")
    box = store.mailbox(ALICE)
    assert isinstance(box, Mailbox)
    infos = box.list_messages()
    assert [i.uid for i in infos] == sorted([k1, k2])
    by_uid = {i.uid: i.size for i in infos}
    assert box.get(k1) == MSG and by_uid[k1] == len(MSG)
    assert box.get(k2) == b"Subject: two\r\n\r\nsecond\r\n"
    assert by_uid[k2] == len(b"Subject: two\r\n\r\nsecond\r\n")
    with pytest.raises(MailboxError):
        box.get("no-such-uid")


def test_pop3_view_delete_removes(store: MessageStore) -> None:
    k1 = store.deliver(ALICE, MSG)
    k2 = store.deliver(ALICE, MSG)
    box = store.mailbox(ALICE)
    box.list_messages()
    box.delete([k1, "unknown"])
    assert store.keys(ALICE) == [k2]
    box.delete([k1])  # already gone: fine
    if isinstance(store, MaildirStore):
        assert files(store.path(ALICE) / "new") == [k2]


def test_pop3_view_snapshot_hides_later_deliveries(store: MessageStore) -> None:
    store.deliver(ALICE, MSG)
    box = store.mailbox(ALICE)
    assert len(box.list_messages()) == 1
    store.deliver(ALICE, MSG)
    assert len(box.list_messages()) == 1  # the maildrop as it was at login
    assert len(store.mailbox(ALICE).list_messages()) == 2


def test_maildir_view_reads_cur_and_odd_keys(maildir: MaildirStore) -> None:
    key = maildir.deliver(ALICE, MSG)
    cur = maildir.path(ALICE) / "cur"
    (cur / "1700000000.seen.host:2,S").write_bytes(b"Subject: old\n\nread\n")
    odd = "x" * 80  # a foreign key too long for UIDL
    (cur / f"{odd}:2,").write_bytes(b"Subject: odd\n\n")
    box = maildir.mailbox(ALICE)
    uids = [i.uid for i in box.list_messages()]
    assert "1700000000.seen.host" in uids and key in uids and len(uids) == 3
    assert all(is_valid_uid(u) for u in uids)
    hashed = next(u for u in uids if u not in (key, "1700000000.seen.host"))
    assert box.get(hashed) == b"Subject: odd\r\n\r\n"
    box.delete(["1700000000.seen.host", hashed])
    assert files(cur) == []


def test_maildir_view_of_vanished_file(maildir: MaildirStore) -> None:
    key = maildir.deliver(ALICE, MSG)
    box = maildir.mailbox(ALICE)
    box.list_messages()
    os.unlink(maildir.path(ALICE) / "new" / key)
    with pytest.raises(MailboxError):
        box.get(key)
    box.delete([key])  # gone already: no error


def test_pop3_session_over_maildir(tmp_path: Path) -> None:
    """The store and the POP3 core together: RETR is CRLF and stuffed; DELE+QUIT removes."""
    names = iter(["1700000001.a.mx", "1700000002.b.mx"])
    maildir = MaildirStore(tmp_path, key_factory=lambda: next(names))
    first = maildir.deliver(ALICE, MSG_LF)
    second = maildir.deliver(ALICE, b"Subject: second\n\nbye\n")

    def authenticator(user: str, password: str) -> Mailbox | None:
        return maildir.mailbox(user) if password == "pw" else None

    conn = POP3ServerConnection(authenticator, POP3Config(allow_plaintext_auth=True))
    conn.receive_data(f"USER {ALICE}\r\nPASS pw\r\nUIDL\r\nRETR 1\r\nDELE 2\r\nQUIT\r\n"
                      .encode())
    while conn.next_event() is not NEED_DATA:
        pass
    out = conn.data_to_send()
    assert f"+OK unique-id listing follows\r\n1 {first}\r\n2 {second}\r\n.\r\n".encode() in out
    assert f"+OK {len(MSG)} octets\r\n".encode() + MSG.replace(b"\r\n.dot", b"\r\n..dot") \
        + b".\r\n" in out
    assert conn.closed
    assert maildir.keys(ALICE) == [first]
