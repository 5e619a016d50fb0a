"""The IMAP view of the store: Maildir flags in ``:2,``, ``new/`` vs ``cur/``, UIDs and
UIDVALIDITY that survive a restart, INBOX/Junk/Sent from the start (RFC 9051 §2.3.1.1,
Dovecot's Maildir layout); the same behaviour in memory."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from simsmtp.net.store import (
    FolderAccount,
    MaildirStore,
    MemoryStore,
    MessageStore,
    maildir_name,
    parse_maildir_name,
)
from simsmtp.protocol.imap import (
    NEED_DATA,
    IMAPConfig,
    IMAPServerConnection,
)
from simsmtp.protocol.imapaccount import FolderExists, NoSuchFolder
from simsmtp.protocol.mailbox import MailboxError

BOB = "bob@anotherdomain.org"
MSG = b"Subject: hi\r\nFrom: Alice <alice@example.com>\r\n\r\nHello\r\n"


@pytest.fixture(params=["maildir", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MessageStore:
    clock = iter(range(1796650000, 1796660000)).__next__
    if request.param == "maildir":
        return MaildirStore(tmp_path / "mail", hostname="mx", clock=lambda: float(clock()))
    return MemoryStore(clock=lambda: float(clock()))


def test_maildir_names_round_trip() -> None:
    assert parse_maildir_name("123.abc") == ("123.abc", None)
    assert parse_maildir_name("123.abc:2,FS") == ("123.abc", frozenset({"\\Flagged", "\\Seen"}))
    assert parse_maildir_name("123.abc:2,SRTDFx") == ("123.abc", frozenset(
        {"\\Seen", "\\Answered", "\\Deleted", "\\Draft", "\\Flagged"}))  # x: not ours
    assert parse_maildir_name("123.abc:1,experimental")[1] is None
    assert maildir_name("k", frozenset({"\\Seen", "\\Draft", "\\Answered"})) == "k:2,DRS"
    assert maildir_name("k", frozenset()) == "k:2," and maildir_name("k", None) == "k"


def test_inbox_junk_and_sent_exist_from_the_start(store: MessageStore) -> None:
    account = store.imap_account(BOB)
    assert account.folders() == [("INBOX", None), ("Junk", "\\Junk"), ("Sent", "\\Sent")]
    assert account.folder("INBOX").messages == ()


def test_uids_in_delivery_order_and_recent_claimed_once(store: MessageStore) -> None:
    store.deliver(BOB, MSG)
    store.deliver(BOB, MSG.replace(b"hi", b"two"))
    account = store.imap_account(BOB)
    first = account.folder("INBOX", claim_recent=True)
    assert [(m.uid, m.recent, m.flags) for m in first.messages] == [
        (1, True, frozenset()), (2, True, frozenset())]
    assert first.uidnext == 3 and first.uidvalidity > 0
    again = account.folder("INBOX")
    assert [m.recent for m in again.messages] == [False, False]  # \Recent: one session
    assert again.uidvalidity == first.uidvalidity
    assert account.fetch("INBOX", 2) == MSG.replace(b"hi", b"two")
    # INTERNALDATE: the store's clock at delivery (the world's virtual clock in a world)
    assert [m.internaldate for m in first.messages] == [1796650000.0, 1796650001.0]


def test_flags_live_in_the_maildir_file_name(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", hostname="mx")
    key = store.deliver(BOB, MSG)
    box = store.path(BOB)
    assert os.listdir(box / "new") == [key] and os.listdir(box / "cur") == []
    account = store.imap_account(BOB)
    account.folder("INBOX", claim_recent=True)  # Dovecot: new/ -> cur/ as key:2,
    assert os.listdir(box / "new") == [] and os.listdir(box / "cur") == [f"{key}:2,"]
    account.set_flags("INBOX", 1, frozenset({"\\Seen", "\\Flagged"}))
    assert os.listdir(box / "cur") == [f"{key}:2,FS"]
    # mutt and the stdlib read the same flags
    assert mailbox.Maildir(box, create=False).get_message(key).get_flags() == "FS"
    # POP3 still sees the message (new/ and cur/ alike)
    assert [i.uid for i in store.mailbox(BOB).list_messages()] == [key]


def test_uids_and_uidvalidity_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    store = MaildirStore(root, hostname="mx")
    for n in range(3):
        store.deliver(BOB, MSG + str(n).encode())
    account = store.imap_account(BOB)
    before = account.folder("INBOX")
    account.expunge("INBOX", [2])
    assert (store.path(BOB) / "dovecot-uidlist").read_text().startswith(
        f"3 V{before.uidvalidity} N4\n")
    restarted = MaildirStore(root, hostname="mx").imap_account(BOB)  # a new process
    after = restarted.folder("INBOX")
    assert after.uidvalidity == before.uidvalidity
    assert [m.uid for m in after.messages] == [1, 3] and after.uidnext == 4
    store.deliver(BOB, MSG)
    assert [m.uid for m in restarted.folder("INBOX").messages] == [1, 3, 4]  # never reused


def test_append_copy_expunge_and_folders(store: MessageStore) -> None:
    account = store.imap_account(BOB)
    validity, uid = account.append("Sent", MSG, frozenset({"\\Seen"}), 1796000000.0)
    sent = account.folder("Sent")
    assert (uid, sent.uidvalidity) == (1, validity)
    assert sent.messages[0].flags == {"\\Seen"} and sent.messages[0].internaldate == 1796000000.0
    account.create("Work")
    with pytest.raises(FolderExists):
        account.create("Work")
    target_validity, new = account.copy("Sent", [1], "Work")
    assert new == [1] and account.folder("Work").messages[0].flags == {"\\Seen"}
    account.rename("Work", "Play")
    assert [n for n, _ in account.folders()] == ["INBOX", "Junk", "Play", "Sent"]
    assert account.folder("Play").uidvalidity == target_validity  # RFC 9051 §6.3.6
    account.expunge("Play", [1])
    assert account.folder("Play").messages == ()
    account.delete("Play")
    with pytest.raises(NoSuchFolder):
        account.folder("Play")
    with pytest.raises(MailboxError):
        account.delete("INBOX")
    with pytest.raises(NoSuchFolder):
        account.folder("../etc")


def test_a_delivery_wakes_the_accounts_of_that_user_only(store: MessageStore) -> None:
    bobs, alices = store.imap_account(BOB), store.imap_account("alice@example.com")
    woken: list[str] = []
    bobs.on_change = lambda: woken.append("bob")
    alices.on_change = lambda: woken.append("alice")
    generation = bobs.generation()
    store.deliver(BOB, MSG)
    assert woken == ["bob"] and bobs.generation() > generation


def test_the_imap_core_over_a_maildir(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", hostname="mx")
    store.deliver(BOB, MSG)
    store.deliver(BOB, MSG, folder="Junk")  # where DMARC quarantine files mail
    account: FolderAccount = store.imap_account(BOB)
    conn = IMAPServerConnection(lambda u, p: account, IMAPConfig(allow_plaintext_auth=True))
    conn.receive_data(b"a LOGIN bob x\r\nb STATUS Junk (MESSAGES)\r\nc SELECT INBOX\r\n"
                      b"d FETCH 1 BODY[]\r\ne STORE 1 +FLAGS (\\Answered)\r\nf LOGOUT\r\n")
    while conn.next_event() is not NEED_DATA:
        pass
    out = conn.data_to_send()
    assert b"* STATUS Junk (MESSAGES 1)" in out and b"* 1 EXISTS" in out
    assert b"BODY[] {" in out and b"f OK Logout completed." in out
    assert [name.split(":")[1] for name in os.listdir(store.path(BOB) / "cur")] == ["2,RS"]


def test_a_pop3_deletion_wakes_the_imap_sessions(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", hostname="mx")
    store.deliver(BOB, MSG)
    account = store.imap_account(BOB)
    woken: list[int] = []
    account.on_change = lambda: woken.append(account.generation())
    pop = store.mailbox(BOB)
    pop.delete([info.uid for info in pop.list_messages()])  # POP3's UPDATE state
    assert woken and account.folder("INBOX").messages == ()
