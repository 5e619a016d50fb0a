"""The sans-IO IMAP server core: bytes in, bytes and events out (RFC 9051, RFC 3501, RFC
2177, RFC 4315, RFC 6851, RFC 7888), with Dovecot 2.3's texts.

The expected lines marked "Dovecot" were read from a throwaway Dovecot 2.3.19 on a loopback
port (its timing suffix "(0.001 + 0.000 secs)" left out, as the core does).
"""

from __future__ import annotations

import base64
import ssl
import tracemalloc

import pytest
import trustme

from simsmtp.protocol.events import NEED_DATA, ConnectionClosed, PlaintextDiscarded, TLSStarted
from simsmtp.protocol.imap import (
    CAPABILITIES_AUTHENTICATED,
    CommandReceived,
    ConnectionOpened,
    IMAPConfig,
    IMAPServerConnection,
    IMAPState,
    UpdateSent,
    allowed_commands,
    transitions,
)
from simsmtp.protocol.imapaccount import MemoryAccount
from simsmtp.protocol.tls import TLSLayer

S = IMAPState
MSG = b"Subject: hi\r\nFrom: Alice <a@b.c>\r\nTo: bob@x.org\r\n\r\nHello there\r\n"
WHEN = 1796650677.0  # 07-Dec-2026 13:37:57 +0000


class Client:
    """An IMAP server core fed by hand."""

    def __init__(self, *messages: bytes, **config: object) -> None:
        self.account = MemoryAccount(messages or (MSG,), uidvalidity=1796650636,
                                     now=lambda: WHEN)
        config.setdefault("allow_plaintext_auth", True)
        self.conn = IMAPServerConnection(
            lambda u, p: self.account if (u, p) == ("bob", "builder") else None,
            IMAPConfig(now=lambda: WHEN, **config))  # type: ignore[arg-type]
        self.events: list[object] = []
        self.greeting = self.say(b"")

    def say(self, data: bytes) -> bytes:
        if data:
            self.conn.receive_data(data)
        events = []
        while (event := self.conn.next_event()) is not NEED_DATA:
            events.append(event)
        self.last = events
        self.events += events
        return self.conn.data_to_send()

    def login(self) -> None:
        assert self.say(b"L LOGIN bob builder\r\n").startswith(b"L OK [CAPABILITY ")

    def select(self) -> bytes:
        self.login()
        return self.say(b"S SELECT INBOX\r\n")


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")[:-1]


# --- greeting, capabilities, login -----------------------------------------------------------


def test_greeting_and_capabilities_before_tls(server_context: ssl.SSLContext) -> None:
    c = Client(tls_context=server_context, allow_plaintext_auth=False)
    caps = b"IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED"
    assert c.greeting == b"* OK [CAPABILITY " + caps + b"] Dovecot ready.\r\n"
    assert isinstance(c.last[0], ConnectionOpened)
    assert c.say(b"a CAPABILITY\r\n") == (
        b"* CAPABILITY " + caps + b"\r\n"
        b"a OK Pre-login capabilities listed, post-login capabilities have more.\r\n")


def test_login_in_clear_is_refused_and_says_the_password_was_exposed(
        server_context: ssl.SSLContext) -> None:
    c = Client(tls_context=server_context, allow_plaintext_auth=False)
    out = c.say(b"b LOGIN bob builder\r\n")
    assert out == (  # Dovecot, word for word
        b"* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client "
        b"did it anyway. If anyone was listening, the password was exposed.\r\n"
        b"b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
        b"connections.\r\n")
    assert c.conn.state is S.NOT_AUTHENTICATED
    (event,) = c.last
    assert isinstance(event, CommandReceived) and event.line == b"b LOGIN bob ***"
    assert "builder" not in repr(c.events)
    assert c.say(b"c AUTHENTICATE PLAIN\r\n") == (
        b"c NO [PRIVACYREQUIRED] Plaintext authentication disabled.\r\n")


def test_login_then_capabilities_after_login() -> None:
    c = Client()
    out = c.say(b"a LOGIN bob builder\r\n")
    assert out == (b"a OK [CAPABILITY " + " ".join(CAPABILITIES_AUTHENTICATED).encode()
                   + b"] Logged in\r\n")
    assert c.conn.state is S.AUTHENTICATED and c.conn.user == "bob"
    event = c.last[0]
    assert isinstance(event, CommandReceived)
    assert (event.state_before, event.state_after) == (S.NOT_AUTHENTICATED, S.AUTHENTICATED)
    assert c.say(b"b CAPABILITY\r\n").endswith(b"b OK Capability completed.\r\n")


def test_login_with_quoted_and_literal_arguments() -> None:
    c = Client()
    assert c.say(b'a LOGIN "bob" {7}\r\n') == b"+ OK\r\n"  # RFC 9051 §7.5
    assert c.say(b"builder\r\n").startswith(b"a OK [CAPABILITY")
    assert c.events[-1].line == b'a LOGIN "bob" ***'  # type: ignore[attr-defined]


def test_wrong_password_then_third_failure_says_bye() -> None:
    c = Client()
    assert c.say(b"a LOGIN bob nope\r\n") == (
        b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")  # Dovecot
    c.say(b"b LOGIN bob nope\r\n")
    out = c.say(b"c LOGIN bob nope\r\n")
    assert out.endswith(b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                        b"* BYE Too many invalid commands.\r\n")
    assert c.conn.closed and isinstance(c.last[-1], UpdateSent)


def test_authenticate_plain_with_initial_response_and_with_continuation() -> None:
    token = base64.b64encode(b"\0bob\0builder")
    c = Client()
    assert c.say(b"a AUTHENTICATE PLAIN " + token + b"\r\n").startswith(b"a OK [CAPABILITY")
    assert c.conn.state is S.AUTHENTICATED
    assert token.decode() not in repr(c.events)
    c = Client()
    assert c.say(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert c.say(token + b"\r\n").startswith(b"a OK [CAPABILITY")
    assert token.decode() not in repr(c.events)
    c = Client()
    c.say(b"a AUTHENTICATE PLAIN\r\n")
    assert c.say(b"*\r\n") == b"a BAD Authentication aborted by client.\r\n"
    assert c.say(b"b AUTHENTICATE CRAM-MD5\r\n") == (
        b"b NO Unsupported authentication mechanism.\r\n")


# --- selecting, fetching -----------------------------------------------------------------------


def test_select_is_dovecots() -> None:
    c = Client()
    assert lines(c.select()) == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] Flags permitted.",
        b"* 1 EXISTS", b"* 1 RECENT", b"* OK [UNSEEN 1] First unseen.",
        b"* OK [UIDVALIDITY 1796650636] UIDs valid", b"* OK [UIDNEXT 2] Predicted next UID",
        b"S OK [READ-WRITE] Select completed."]
    assert c.conn.state is S.SELECTED and c.conn.selected == "INBOX"
    # a second session does not see the message as \Recent any more (RFC 3501 §2.3.2)
    assert b"* 0 RECENT" in c.say(b"T EXAMINE INBOX\r\n")


def test_fetch_attributes_are_dovecots() -> None:
    c = Client()
    c.select()
    out = c.say(b"f FETCH 1:* (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n")
    assert out == (  # Dovecot, the same message
        b'* 1 FETCH (FLAGS (\\Recent) UID 1 INTERNALDATE "07-Dec-2026 13:37:57 +0000" '
        b'RFC822.SIZE 64 ENVELOPE (NIL "hi" (("Alice" NIL "a" "b.c")) (("Alice" NIL "a" '
        b'"b.c")) (("Alice" NIL "a" "b.c")) ((NIL NIL "bob" "x.org")) NIL NIL NIL NIL) '
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL '
        b'NIL NIL))\r\nf OK Fetch completed.\r\n')


def test_fetch_sections_partials_and_the_seen_flag() -> None:
    c = Client()
    c.select()
    out = c.say(b"g FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.5> RFC822.HEADER "
                b"BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    header = b"Subject: hi\r\nFrom: Alice <a@b.c>\r\nTo: bob@x.org\r\n\r\n"
    assert out == (b"* 1 FETCH (BODY[HEADER] {51}\r\n" + header + b" BODY[TEXT]<0> {5}\r\n"
                   b"Hello RFC822.HEADER {51}\r\n" + header + b" BODY[1] {13}\r\n"
                   b"Hello there\r\n BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n"
                   b")\r\ng OK Fetch completed.\r\n")
    assert b"\\Seen" not in c.say(b"h FETCH 1 FLAGS\r\n")  # PEEK leaves \Seen alone
    out = c.say(b"i FETCH 1 BODY[]\r\n")  # RFC 9051 §6.4.5: BODY[] sets \Seen
    assert out.startswith(b"* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {64}\r\n" + MSG)
    assert b"\\Seen" in c.say(b"j FETCH 1 FLAGS\r\n")


def test_uid_fetch_always_includes_the_uid_and_bad_sets_are_bad() -> None:
    c = Client(MSG, MSG)
    c.select()
    assert c.say(b"a UID FETCH 2 FLAGS\r\n").startswith(b"* 2 FETCH (UID 2 FLAGS (\\Recent))")
    assert c.say(b"b UID FETCH 9:* FLAGS\r\n").startswith(b"* 2 FETCH (UID 2 ")  # * = 2
    assert c.say(b"c FETCH 5 FLAGS\r\n") == (
        b"c BAD Error in IMAP command FETCH: Invalid messageset\r\n")  # Dovecot
    assert c.say(b"d FETCH 1 (NONSENSE)\r\n").startswith(b"d BAD Error in IMAP command FETCH")


def test_store_flags_silent_and_uid_store() -> None:
    c = Client(MSG, MSG)
    c.select()
    assert c.say(b"h STORE 2 +FLAGS (\\Deleted)\r\n") == (
        b"* 2 FETCH (FLAGS (\\Deleted \\Recent))\r\nh OK Store completed.\r\n")  # Dovecot
    assert c.say(b"h2 STORE 1 -FLAGS.SILENT (\\Seen)\r\n") == b"h2 OK Store completed.\r\n"
    assert c.say(b"h3 UID STORE 1 FLAGS (\\Flagged \\Seen)\r\n") == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent) UID 1)\r\nh3 OK Store completed.\r\n")
    assert c.account.folder("INBOX").messages[0].flags == {"\\Flagged", "\\Seen"}
    assert c.say(b"h4 STORE 1 +FLAGS (\\Recent)\r\n").startswith(b"h4 BAD ")


def test_search_keys() -> None:
    other = b"Subject: lunch\r\nFrom: Carol <carol@c.example>\r\n\r\nsoup?\r\n"
    c = Client(MSG, other)
    c.select()
    c.say(b"a STORE 1 +FLAGS (\\Seen)\r\n")
    assert c.say(b"i SEARCH UNSEEN\r\n") == b"* SEARCH 2\r\ni OK Search completed.\r\n"
    assert c.say(b"j UID SEARCH ALL\r\n").startswith(b"* SEARCH 1 2\r\n")
    assert c.say(b"k SEARCH FROM carol\r\n").startswith(b"* SEARCH 2\r\n")
    assert c.say(b'l SEARCH SUBJECT "HI" SEEN\r\n').startswith(b"* SEARCH 1\r\n")
    assert c.say(b"m SEARCH OR BODY soup TEXT nothing\r\n").startswith(b"* SEARCH 2\r\n")
    assert c.say(b"n SEARCH NOT (FROM alice)\r\n").startswith(b"* SEARCH 2\r\n")
    assert c.say(b"o SEARCH LARGER 50 2:*\r\n").startswith(b"* SEARCH 2\r\n")
    assert c.say(b"p SEARCH UID 1 HEADER To bob\r\n").startswith(b"* SEARCH 1\r\n")
    assert c.say(b"q SEARCH SINCE 1-Dec-2026 BEFORE 8-Dec-2026\r\n").startswith(
        b"* SEARCH 1 2\r\n")
    assert c.say(b"r SEARCH CHARSET KOI8-R ALL\r\n").startswith(b"r NO [BADCHARSET")
    assert c.say(b"s SEARCH FOO\r\n").startswith(b"s BAD Error in IMAP command SEARCH")


def test_enable_imap4rev2_gives_esearch_and_no_recent() -> None:
    c = Client()
    c.login()
    assert c.say(b"e ENABLE IMAP4rev2\r\n") == b"* ENABLED IMAP4rev2\r\ne OK Enabled.\r\n"
    out = c.say(b"s SELECT INBOX\r\n")
    assert b"RECENT" not in out and b"* 1 EXISTS" in out
    assert c.say(b"t SEARCH ALL\r\n") == b'* ESEARCH (TAG "t") ALL 1\r\nt OK Search completed.\r\n'
    assert c.say(b"u FETCH 1 FLAGS\r\n").startswith(b"* 1 FETCH (FLAGS ())")


def test_copy_move_and_expunge_sequence_numbers() -> None:
    c = Client(MSG, MSG, MSG)
    c.select()
    assert c.say(b"p COPY 1 Junk\r\n") == (
        b"p OK [COPYUID 1796650637 1 1] Copy completed.\r\n")  # Dovecot
    assert c.say(b"q MOVE 1 Junk\r\n") == (  # Dovecot (RFC 6851)
        b"* OK [COPYUID 1796650637 1 2] Moved UIDs.\r\n* 1 EXPUNGE\r\nq OK Move completed.\r\n")
    c.say(b"r STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n")
    assert c.say(b"s EXPUNGE\r\n") == (
        b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\ns OK Expunge completed.\r\n")
    assert c.account.folder("INBOX").messages == ()
    assert len(c.account.folder("Junk").messages) == 2
    assert c.say(b"t COPY 1 Nowhere\r\n").startswith(b"t BAD")  # no message 1 any more


def test_uid_expunge_only_expunges_the_named_uids() -> None:
    c = Client(MSG, MSG)
    c.select()
    c.say(b"a STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n")
    assert c.say(b"b UID EXPUNGE 2\r\n") == b"* 2 EXPUNGE\r\nb OK Expunge completed.\r\n"
    assert [m.uid for m in c.account.folder("INBOX").messages] == [1]


def test_close_expunges_unselect_does_not() -> None:
    c = Client(MSG, MSG)
    c.select()
    c.say(b"a STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    assert c.say(b"b UNSELECT\r\n") == b"b OK Unselect completed.\r\n"
    assert c.conn.state is S.AUTHENTICATED
    assert len(c.account.folder("INBOX").messages) == 2
    c.say(b"c SELECT INBOX\r\n")
    assert c.say(b"d CLOSE\r\n") == b"d OK Close completed.\r\n"  # no EXPUNGE lines
    assert len(c.account.folder("INBOX").messages) == 1


def test_append_with_a_synchronizing_literal_and_with_literal_plus() -> None:
    c = Client()
    c.select()
    assert c.say(b"d APPEND INBOX (\\Seen) {14}\r\n") == b"+ OK\r\n"  # Dovecot
    out = c.say(b"Subject: x\r\n\r\n\r\n")
    assert out == (b"* 2 EXISTS\r\n* 2 RECENT\r\n"
                   b"d OK [APPENDUID 1796650636 2] Append completed.\r\n")  # Dovecot
    out = c.say(b'e APPEND Sent "07-Dec-2026 14:00:00 +0100" {14+}\r\nSubject: y\r\n\r\n\r\n')
    assert out == b"e OK [APPENDUID 1796650638 1] Append completed.\r\n"
    sent = c.account.folder("Sent").messages[0]
    assert sent.internaldate == WHEN - 37 * 60 - 57 and sent.size == 14
    assert c.say(b"u APPEND Nope {3+}\r\nabc\r\n") == (
        b"u NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n")  # Dovecot
    assert c.events[-1].line == b"u APPEND Nope {3}"  # type: ignore[attr-defined]


def test_folders_list_create_rename_delete_status() -> None:
    c = Client()
    c.login()
    assert c.say(b'c LIST "" *\r\n') == (
        b'* LIST (\\HasNoChildren) "." INBOX\r\n* LIST (\\HasNoChildren \\Junk) "." Junk\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "." Sent\r\nc OK List completed.\r\n')
    assert c.say(b"o CREATE Work\r\n") == b"o OK Create completed.\r\n"
    assert c.say(b"o2 CREATE Work\r\n") == b"o2 NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.say(b"v RENAME Work Play\r\n") == b"v OK Rename completed.\r\n"
    assert c.say(b'l LIST "" %\r\n').count(b"* LIST") == 4
    assert c.say(b"w DELETE Play\r\n") == b"w OK Delete completed.\r\n"
    assert c.say(b"x SELECT nosuch\r\n") == (
        b"x NO [NONEXISTENT] Mailbox doesn't exist: nosuch\r\n")
    assert c.say(b"y DELETE INBOX\r\n").startswith(b"y NO [CANNOT]")
    assert c.say(b"k STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)\r\n") == (
        b"* STATUS INBOX (MESSAGES 1 RECENT 1 UIDNEXT 2 UIDVALIDITY 1796650636 UNSEEN 1)\r\n"
        b"k OK Status completed.\r\n")  # Dovecot's order
    assert c.say(b'z LIST "" ""\r\n').startswith(b'* LIST (\\Noselect) "." ""\r\n')


def test_id_namespace_noop_and_logout() -> None:
    c = Client()
    assert c.say(b'm ID ("name" "x")\r\n') == b'* ID ("name" "Dovecot")\r\nm OK ID completed.\r\n'
    assert c.say(b"d NOOP\r\n") == b"d OK NOOP completed.\r\n"
    c.login()
    assert c.say(b"n NAMESPACE\r\n").startswith(b'* NAMESPACE (("" ".")) NIL NIL\r\n')
    assert c.say(b"z LOGOUT\r\n") == b"* BYE Logging out\r\nz OK Logout completed.\r\n"
    assert c.conn.closed and c.conn.state is S.LOGOUT
    c.conn.receive_data(b"")
    assert isinstance(c.conn.next_event(), ConnectionClosed)


# --- IDLE --------------------------------------------------------------------------------------


def test_idle_reports_a_new_delivery_as_exists() -> None:
    c = Client()
    c.select()
    assert c.say(b"t IDLE\r\n") == b"+ idling\r\n"  # Dovecot
    assert c.conn.state is S.IDLE
    assert c.say(b"") == b""  # nothing new, nothing said
    c.account.deliver(b"Subject: new\r\n\r\nhey\r\n")
    assert c.say(b"") == b"* 2 EXISTS\r\n* 2 RECENT\r\n"  # RFC 2177: pushed while idling
    (update,) = c.last
    assert isinstance(update, UpdateSent) and update.state_after is S.IDLE
    assert str(update.reply) == "* 2 EXISTS"
    assert c.say(b"DONE\r\n") == b"t OK Idle completed.\r\n"
    assert c.conn.state is S.SELECTED
    assert c.say(b"f FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n").startswith(
        b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: new\r\n")


def test_idle_ended_by_anything_but_done_is_bad() -> None:
    c = Client()
    c.select()
    c.say(b"t IDLE\r\n")
    assert c.say(b"NOOP\r\n") == b"t BAD Expected DONE.\r\n"
    assert c.conn.state is S.SELECTED


def test_noop_reports_changes_made_by_another_session() -> None:
    c = Client()
    c.select()
    c.account.deliver(MSG)
    c.account.set_flags("INBOX", 1, frozenset({"\\Flagged"}))
    assert c.say(b"n NOOP\r\n") == (b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n* 2 EXISTS\r\n"
                                    b"* 2 RECENT\r\nn OK NOOP completed.\r\n")


# --- states, errors, limits --------------------------------------------------------------------


def test_the_table_decides_what_is_allowed() -> None:
    assert allowed_commands(S.NOT_AUTHENTICATED) == [
        "CAPABILITY", "NOOP", "ID", "LOGOUT", "STARTTLS", "LOGIN", "AUTHENTICATE"]
    assert "FETCH" in allowed_commands(S.SELECTED) and "FETCH" not in allowed_commands(
        S.AUTHENTICATED)
    assert any(t.trigger == "DONE" for t in transitions())
    c = Client()
    assert c.say(b"a SELECT INBOX\r\n").startswith(b"a BAD SELECT is not allowed before login")
    c.login()
    assert c.say(b"y FETCH 1 FLAGS\r\n") == b"y BAD No mailbox selected\r\n"  # Dovecot
    assert c.say(b"e FOO\r\n") == b"e BAD Error in IMAP command received by server.\r\n"


def test_a_failed_select_leaves_no_mailbox_selected() -> None:
    c = Client()
    c.select()
    c.say(b"x SELECT nosuch\r\n")
    assert c.conn.state is S.AUTHENTICATED and c.conn.selected is None


def test_twenty_bad_commands_say_bye_and_close() -> None:
    c = Client()
    out = c.say(b"x FOO\r\n" * 25)
    assert out.count(b"x BAD ") == 20
    assert out.endswith(b"* BYE Too many invalid IMAP commands.\r\n")
    assert c.conn.closed
    assert isinstance(c.events[-2], CommandReceived) and isinstance(c.events[-1], UpdateSent)
    assert c.events[-1].state_before is S.NOT_AUTHENTICATED  # type: ignore[attr-defined]


def test_bare_lf_nul_and_missing_tag_are_bad() -> None:
    c = Client()
    assert c.say(b"a NOOP\nb NOOP\r\n").startswith(b"a BAD")
    assert c.say(b"a NO\0OP\r\n").startswith(b"a BAD")
    assert c.say(b"\r\n").startswith(b"* BAD")
    assert c.say(b"c NOOP\r\n") == b"c OK NOOP completed.\r\n"  # still talking


def test_overlong_line_is_dropped_as_it_comes_and_refused() -> None:
    c = Client(max_line_length=1000)
    tracemalloc.start()
    try:
        for _ in range(200):
            assert c.say(b"a" * 5000) == b""
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size < 200_000  # one megabyte went by, nothing kept
    assert c.say(b"\r\n") == (b"* BAD [TOOBIG] Error in IMAP command received by server: "
                              b"Too long argument.\r\n")
    assert c.say(b"t " + b"x" * 2000 + b"\r\n").startswith(b"t BAD [TOOBIG]")
    assert c.say(b"c NOOP\r\n") == b"c OK NOOP completed.\r\n"


def test_too_large_literals() -> None:
    c = Client(max_literal=100)
    c.login()
    # synchronizing: refused before the client sends it (no "+")
    assert c.say(b"a APPEND INBOX {1000}\r\n") == (
        b"a NO [TOOBIG] Mail size is too large\r\n")
    # LITERAL+: already on its way, so it is read, thrown away, then refused
    out = c.say(b"b APPEND INBOX {150+}\r\n" + b"z" * 150 + b"\r\n")
    assert out == b"b NO [TOOBIG] Mail size is too large\r\n"
    assert c.say(b"c NOOP\r\n") == b"c OK NOOP completed.\r\n"
    assert len(c.account.folder("INBOX").messages) == 1  # nothing was stored


def test_eof_closes_once() -> None:
    c = Client()
    c.conn.receive_data(b"a NOOP\r\n")
    c.conn.receive_data(b"")
    events = [c.conn.next_event() for _ in range(4)]
    assert isinstance(events[0], CommandReceived) and isinstance(events[1], ConnectionClosed)
    assert events[2:] == [NEED_DATA, NEED_DATA] and c.conn.closed


def test_timeout_and_shutdown_say_bye() -> None:
    c = Client()
    c.conn.send_timeout()
    assert c.say(b"") == b"* BYE Disconnected for inactivity.\r\n" and c.conn.closed


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_client(ca: trustme.CA) -> TLSLayer:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return TLSLayer(ctx, server_side=False, server_hostname="mail.anotherdomain.org")


def handshake(c: Client, client: TLSLayer) -> bytes:
    client.start()
    plaintext = b""
    for _ in range(20):
        to_server = client.data_to_send()
        if to_server:
            c.conn.receive_data(to_server)
        events = []
        while (event := c.conn.next_event()) is not NEED_DATA:
            events.append(event)
        c.events += events
        to_client = c.conn.data_to_send()
        if to_client:
            plaintext += client.receive(to_client)
        if not to_server and not to_client and client.handshake_complete:
            break
    return plaintext


def tls_say(c: Client, client: TLSLayer, data: bytes) -> bytes:
    client.send(data)
    c.conn.receive_data(client.data_to_send())
    while c.conn.next_event() is not NEED_DATA:
        pass
    return client.receive(c.conn.data_to_send())


def test_starttls_discards_injected_plaintext_then_login_works(
        server_context: ssl.SSLContext, tls_client: TLSLayer) -> None:
    c = Client(tls_context=server_context, allow_plaintext_auth=False)
    out = c.say(b"f STARTTLS\r\ng LOGIN bob builder\r\n")  # the second line: an injection
    assert out == b"f OK Begin TLS negotiation now.\r\n"  # Dovecot
    assert c.conn.state is S.TLS_HANDSHAKE
    assert any(isinstance(e, PlaintextDiscarded) for e in c.events)
    assert handshake(c, tls_client) == b""  # no second greeting
    assert any(isinstance(e, TLSStarted) for e in c.events) and c.conn.secure
    caps = tls_say(c, tls_client, b"g CAPABILITY\r\n")
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    assert tls_say(c, tls_client, b"h LOGIN bob builder\r\n").startswith(b"h OK [CAPABILITY")
    assert c.conn.state is S.AUTHENTICATED


def test_imaps_greets_inside_tls(server_context: ssl.SSLContext, tls_client: TLSLayer) -> None:
    c = Client(tls_context=server_context, implicit_tls=True, allow_plaintext_auth=False)
    assert c.greeting == b"" or not c.greeting.startswith(b"* OK")  # nothing in clear
    plaintext = handshake(c, tls_client)
    assert plaintext.startswith(b"* OK [CAPABILITY IMAP4rev1 ") and b"AUTH=PLAIN" in plaintext
    assert b"STARTTLS" not in plaintext
    assert tls_say(c, tls_client, b"a LOGIN bob builder\r\n").startswith(b"a OK")


def test_a_literal_for_a_command_not_allowed_now_gets_no_go_ahead() -> None:
    c = Client()
    # before login an APPEND may not run: no "+ OK", so its literal never comes
    assert c.say(b"l APPEND INBOX {5}\r\n") == (
        b"l BAD Error in IMAP command received by server.\r\n")
    # LITERAL+ already on its way: read, thrown away, refused; the next command is fine
    assert c.say(b"m APPEND INBOX {5+}\r\nhello\r\nn NOOP\r\n") == (
        b"m BAD Error in IMAP command received by server.\r\nn OK NOOP completed.\r\n")
    assert c.conn.state is S.NOT_AUTHENTICATED


def test_search_return_options_give_esearch() -> None:
    c = Client(MSG, MSG, MSG)
    c.select()
    c.say(b"a STORE 2 +FLAGS.SILENT (\\Seen)\r\n")
    assert c.say(b"b SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n") == (
        b'* ESEARCH (TAG "b") MIN 1 MAX 3 COUNT 2\r\nb OK Search completed.\r\n')  # RFC 4731
    assert c.say(b"c UID SEARCH RETURN () ALL\r\n") == (
        b'* ESEARCH (TAG "c") UID ALL 1:3\r\nc OK Search completed.\r\n')
    assert c.say(b"d SEARCH RETURN (COUNT) DRAFT\r\n").startswith(
        b'* ESEARCH (TAG "d") COUNT 0\r\n')
    assert c.say(b"e SEARCH RETURN (SAVE) ALL\r\n").startswith(b"e BAD")
