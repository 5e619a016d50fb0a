"""The sans-IO IMAP server core (IMAP4rev2, RFC 9051, and what IMAP4rev1 clients need,
RFC 3501), in a Dovecot persona.

Same shape as the SMTP and POP3 cores (after h11), on the shared base
:class:`~simsmtp.protocol.connection.SansIOConnection`: feed what the client sent with
``receive_data`` (``b""`` is EOF), take one event per ``next_event()`` until
:data:`NEED_DATA`, put ``data_to_send()`` on the wire::

    conn = IMAPServerConnection(authenticator, IMAPConfig(allow_plaintext_auth=True))
    conn.receive_data(b"a LOGIN bob builder\\r\\nb SELECT INBOX\\r\\n")
    while (event := conn.next_event()) is not NEED_DATA:
        print(event)

Every state change is in ONE table, :data:`TRANSITIONS`; "not allowed in state X" replies
are derived from it. The mailbox lives behind
:class:`~simsmtp.protocol.imapaccount.IMAPAccount` (the network layer backs it with Maildir,
:mod:`simsmtp.net.store`; :class:`~simsmtp.protocol.imapaccount.MemoryAccount` is for tests).
The command grammar is :mod:`simsmtp.protocol.imapgrammar`; this module runs the commands
and renders their responses.

Commands: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN (SASL-IR), ENABLE,
ID, NAMESPACE, LIST, LSUB, SUBSCRIBE, UNSUBSCRIBE, STATUS, SELECT, EXAMINE, CREATE, DELETE,
RENAME, APPEND (literals, LITERAL+), IDLE, CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH, FETCH,
STORE, COPY, MOVE and UID FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE.

Policies chosen here (documented for learners):

* Texts are Dovecot 2.3's (``* OK [CAPABILITY ...] Dovecot ready.``, ``OK NOOP
  completed.``, ``NO [AUTHENTICATIONFAILED] Authentication failed.`` ...) without its
  timing suffix (``(0.001 + 0.000 secs)``) so a notebook repeats; where Dovecot 2.3 gives
  no response code the RFC 5530 one is added (``NO [NONEXISTENT] Mailbox doesn't exist``).
* Before TLS, LOGIN and AUTHENTICATE are refused and the capability list says
  ``STARTTLS LOGINDISABLED`` (RFC 9051 §6.2.3, §7.2.2) unless the config allows plaintext
  logins (a sniffing lesson). A LOGIN in clear still gets Dovecot's ``* BAD [ALERT]``: the
  password has crossed the wire by then.
* A command line may be 65,536 octets (Dovecot's ``imap_max_line_length``, RFC 9051 §4
  leaves it to the server; RFC 7162 §4 asks for at least 8,192); a longer one is dropped as
  it comes (memory stays bounded) and answered ``BAD [TOOBIG]``. A literal may be
  ``max_literal`` octets (APPEND) or ``max_line_length`` (any other command); a larger
  synchronizing literal is refused before the client sends it, a larger non-synchronizing
  one (LITERAL+, RFC 7888 §4) is read and thrown away, then refused.
* Only CRLF ends a line; a bare CR or LF inside one is refused (the SMTP core's strict rule).
* The 20th ``BAD`` (Dovecot's limit) is answered ``* BYE Too many invalid IMAP commands.``
  and the connection closes; so does the 3rd failed login.
* After ``OK Begin TLS negotiation now.`` plaintext buffered behind STARTTLS is discarded
  (:class:`PlaintextDiscarded`, the IMAP twin of CVE-2011-0411).
* Flags: the five system flags are permanent (stored in the Maildir file name); \\Recent is
  per session (RFC 3501 §2.3.2; gone in IMAP4rev2, and after ``ENABLE IMAP4rev2``);
  keywords are not kept (PERMANENTFLAGS has no ``\\*``).
* IDLE (RFC 2177): ``+ idling``; the network layer wakes the core when the mailbox
  changes, and the next ``next_event()`` reports ``* N EXISTS`` (:class:`UpdateSent`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from .connection import Edge, EdgeTable, TableConnection
from .errors import LocalProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionEvent,
    PlaintextDiscarded,
    TLSFailed,
    TLSStarted,
)
from .imapaccount import (
    Authenticator,
    FolderExists,
    FolderInfo,
    IMAPAccount,
    NoSuchFolder,
    folder_name,
)
from .imapgrammar import (
    SYSTEM_FLAGS,
    Args,
    BadCommand,
    FetchItem,
    flags_text,
    imap_date,
    in_set,
    normal_flags,
    parse_date,
    parse_datetime,
    parse_fetch_items,
    parse_set,
)
from .imapmessage import astring, body_structure, envelope, nstring, quoted, section_bytes
from .mailbox import MailboxError, to_crlf
from .tls import TLSLayer

__all__ = [
    "CAPABILITIES_AUTHENTICATED",
    "CAPABILITIES_PRE_LOGIN",
    "MAX_AUTH_FAILURES",
    "MAX_BAD_COMMANDS",
    "MAX_LINE_LENGTH",
    "NEED_DATA",
    "TRANSITIONS",
    "CommandReceived",
    "ConnectionClosed",
    "ConnectionOpened",
    "IMAPConfig",
    "IMAPEvent",
    "IMAPReply",
    "IMAPServerConnection",
    "IMAPState",
    "PlaintextDiscarded",
    "TLSFailed",
    "TLSStarted",
    "Transition",
    "UpdateSent",
    "allowed_commands",
    "transitions",
]

#: Longest command line without its literals (Dovecot's imap_max_line_length, 64 KiB).
MAX_LINE_LENGTH: Final = 65536
#: Largest literal of an APPEND (a message), by default.
MAX_LITERAL: Final = 16 * 1024 * 1024
#: BAD replies before ``* BYE`` (Dovecot's CLIENT_MAX_BAD_COMMANDS).
MAX_BAD_COMMANDS: Final = 20
#: Failed logins before the connection closes (policy, like the POP3 core).
MAX_AUTH_FAILURES: Final = 3

CRLF: Final = b"\r\n"

#: Dovecot 2.3's capability lists, cut to what this core implements, with IMAP4rev2.
CAPABILITIES_PRE_LOGIN: Final = ("IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE", "IDLE",
                                 "LITERAL+")
CAPABILITIES_AUTHENTICATED: Final = ("IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE",
                                     "IDLE", "UNSELECT", "CHILDREN", "NAMESPACE", "UIDPLUS",
                                     "MOVE", "LITERAL+", "SPECIAL-USE")
#: Dovecot's refusal of a LOGIN in clear (the untagged alert, then the tagged NO).
LOGIN_IN_CLEAR_ALERT: Final = ("[ALERT] Plaintext authentication not allowed without SSL/TLS, "
                               "but your client did it anyway. If anyone was listening, the "
                               "password was exposed.")
PLAINTEXT_DISALLOWED: Final = ("[PRIVACYREQUIRED] Plaintext authentication disallowed on "
                               "non-secure (SSL/TLS) connections.")


class IMAPState(enum.Enum):
    """The states of an IMAP session (RFC 9051 §3), plus TLS, IDLE and the end."""

    #: Before login: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE, ID.
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    #: Logged in, no mailbox selected (RFC 9051 §3.2).
    AUTHENTICATED = "AUTHENTICATED"
    #: A mailbox is selected (RFC 9051 §3.3).
    SELECTED = "SELECTED"
    #: After ``+ idling`` until ``DONE`` (RFC 2177).
    IDLE = "IDLE"
    #: After ``OK Begin TLS negotiation now.``: only TLS records flow (RFC 9051 §6.2.1).
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: After LOGOUT, BYE or EOF: nothing more is read (RFC 9051 §3.4).
    LOGOUT = "LOGOUT"


_N = IMAPState.NOT_AUTHENTICATED
_A = IMAPState.AUTHENTICATED
_S = IMAPState.SELECTED
_I = IMAPState.IDLE
_H = IMAPState.TLS_HANDSHAKE
_L = IMAPState.LOGOUT


#: One edge of the IMAP state machine: the shared :class:`~simsmtp.protocol.connection.Edge`
#: (state, trigger, target, outcome ``"OK"``/``"NO"`` or ``""``, rfc), as in the POP3 core.
Transition = Edge


def _loops(states: Iterable[IMAPState], verbs: str, rfc: str) -> tuple[Transition[IMAPState], ...]:
    return tuple(Transition(s, v, s, "", rfc) for s in states for v in verbs.split())


_ANY = (_N, _A, _S)
_AUTHED = (_A, _S)

#: THE transition table. A command without an edge from the current state is refused with
#: ``BAD`` and changes nothing.
TRANSITIONS: Final[tuple[Transition[IMAPState], ...]] = (
    *_loops(_ANY, "CAPABILITY NOOP ID", "RFC 9051 §6.1, RFC 2971"),
    *(Transition(s, "LOGOUT", _L, "", "RFC 9051 §6.1.3") for s in _ANY),
    Transition(_N, "STARTTLS", _H, "OK", "RFC 9051 §6.2.1"),
    Transition(_N, "STARTTLS", _N, "NO", "RFC 9051 §6.2.1"),
    Transition(_H, "tls-established", _N, "", "RFC 9051 §6.2.1"),
    Transition(_N, "LOGIN", _A, "OK", "RFC 9051 §6.2.3"),
    Transition(_N, "LOGIN", _N, "NO", "RFC 9051 §6.2.3"),
    Transition(_N, "AUTHENTICATE", _A, "OK", "RFC 9051 §6.2.2, RFC 4959"),
    Transition(_N, "AUTHENTICATE", _N, "NO", "RFC 9051 §6.2.2"),
    Transition(_A, "ENABLE", _A, "", "RFC 5161 §3.1"),
    *_loops(_AUTHED, "CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB NAMESPACE STATUS "
                     "APPEND", "RFC 9051 §6.3"),
    *(Transition(s, "SELECT", _S, "OK", "RFC 9051 §6.3.2") for s in _AUTHED),
    *(Transition(s, "EXAMINE", _S, "OK", "RFC 9051 §6.3.3") for s in _AUTHED),
    Transition(_A, "SELECT", _A, "NO", "RFC 9051 §6.3.2"),
    Transition(_A, "EXAMINE", _A, "NO", "RFC 9051 §6.3.3"),
    # RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected
    Transition(_S, "SELECT", _A, "NO", "RFC 9051 §6.3.2"),
    Transition(_S, "EXAMINE", _A, "NO", "RFC 9051 §6.3.3"),
    *(Transition(s, "IDLE", _I, "", "RFC 2177 §3") for s in _AUTHED),
    Transition(_I, "DONE", _S, "selected", "RFC 2177 §3"),
    Transition(_I, "DONE", _A, "authenticated", "RFC 2177 §3"),
    *_loops((_S,), "CHECK EXPUNGE SEARCH FETCH STORE COPY MOVE UID", "RFC 9051 §6.4"),
    Transition(_S, "CLOSE", _A, "", "RFC 9051 §6.4.1"),
    Transition(_S, "UNSELECT", _A, "", "RFC 9051 §6.4.2"),
    *(Transition(s, "too-many-errors", _L, "", "policy (Dovecot)") for s in (_N, _A, _S, _I)),
    *(Transition(s, "peer-closed", _L, "", "RFC 9051 §3.4") for s in (_N, _A, _S, _I, _H)),
    *(Transition(s, "tls-failed", _L, "", "RFC 8446 §6") for s in (_N, _A, _S, _I, _H)),
    *(Transition(s, "disconnect", _L, "", "RFC 9051 §7.1.5 (BYE)") for s in (_N, _A, _S, _I, _H)),
)

_TABLE: Final = EdgeTable[IMAPState](TRANSITIONS)
_VERBS: Final[frozenset[str]] = _TABLE.verbs





# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IMAPReply:
    """The tagged (or greeting/BYE) response a command got.

    Attributes:
        tag: the command's tag (``"*"`` for the greeting and an unsolicited BYE, ``"+"``
            for a continuation request).
        status: ``OK``, ``NO``, ``BAD``, ``BYE``, ``PREAUTH`` or ``""`` (continuation).
        text: the rest of the line, response code included.
        untagged: how many untagged lines came before it.
    """

    tag: str
    status: str
    text: str
    untagged: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("OK", "")

    @property
    def code(self) -> str | None:
        """The response code without brackets (``"AUTHENTICATIONFAILED"``), or None."""
        match = re.match(r"\[([^\]]*)\]", self.text)
        return match.group(1) if match else None

    def __str__(self) -> str:
        return " ".join(p for p in (self.tag, self.status, self.text) if p)


@dataclass(frozen=True, kw_only=True)
class ConnectionOpened(ConnectionEvent[IMAPState]):
    """The greeting was sent (``* OK [CAPABILITY ...] Dovecot ready.``)."""

    reply: IMAPReply


@dataclass(frozen=True, kw_only=True)
class CommandReceived(ConnectionEvent[IMAPState]):
    """One command and its tagged reply (or its continuation request).

    ``line`` is the command without CRLF, literals shown as ``{n}``, passwords and SASL
    responses masked; ``command`` is the verb (``"UID FETCH"``, ``""`` when unparsable).
    """

    tag: str
    command: str
    line: bytes
    reply: IMAPReply


@dataclass(frozen=True, kw_only=True)
class UpdateSent(ConnectionEvent[IMAPState]):
    """Untagged lines the server sent unprompted: ``* 3 EXISTS`` while idling, or a
    ``* BYE`` (timeout, shutdown)."""

    reply: IMAPReply
    lines: tuple[str, ...] = ()
    reason: str = ""


#: Every event the IMAP core gives (``next_event()``): narrow with ``isinstance``.
IMAPEvent: TypeAlias = (ConnectionOpened | CommandReceived | UpdateSent | TLSStarted[IMAPState]
                        | TLSFailed[IMAPState] | PlaintextDiscarded[IMAPState]
                        | ConnectionClosed[IMAPState])


@dataclass(frozen=True)
class IMAPConfig:
    """How an IMAP server behaves.

    Attributes:
        hostname: the server's name (in the ID response and logs).
        greeting: the greeting text (Dovecot's ``"Dovecot ready."``).
        allow_plaintext_auth: LOGIN/AUTHENTICATE before TLS (for sniffing lessons).
        tls_context: a server ``ssl.SSLContext``; STARTTLS is offered only when set.
        implicit_tls: IMAPS (port 993, RFC 8314 §3.3): TLS first, the greeting inside it.
        max_line_length: a command line's limit, literals aside.
        max_literal: an APPEND literal's limit (the message size limit).
        max_bad_commands: BAD replies before ``* BYE``.
        max_auth_failures: failed logins before the connection closes.
        now: the clock for INTERNALDATE of APPEND (seconds since the epoch).
    """

    hostname: str = "localhost"
    greeting: str = "Dovecot ready."
    allow_plaintext_auth: bool = False
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    max_line_length: int = MAX_LINE_LENGTH
    max_literal: int = MAX_LITERAL
    max_bad_commands: int = MAX_BAD_COMMANDS
    max_auth_failures: int = MAX_AUTH_FAILURES
    now: Callable[[], float] = field(default=time.time, compare=False)


# --- the connection --------------------------------------------------------------------------


@dataclass
class _Message:
    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    recent: bool


class IMAPServerConnection(TableConnection[IMAPState, IMAPEvent]):
    """The server side of one IMAP connection, without I/O.

    Args:
        authenticator: ``(user, password) -> IMAPAccount | None``.
        config: behaviour (default: plaintext logins refused, no TLS).

    The greeting is queued at once (or, with ``implicit_tls``, after the handshake).
    """

    CLOSED_STATE = IMAPState.LOGOUT
    TABLE = _TABLE
    NO_EDGE_STAYS = True  # a step without an edge changes nothing

    def __init__(self, authenticator: Authenticator, config: IMAPConfig | None = None) -> None:
        super().__init__()
        self.config = config or IMAPConfig()
        self._authenticator = authenticator
        self._state = _N
        #: The user logged in (None before).
        self.user: str | None = None
        self.account: IMAPAccount | None = None
        #: BAD replies so far; failed logins so far.
        self.bad_commands = 0
        self.auth_failures = 0
        self._greeted = False
        self._rev2 = False
        # the command being read: text so far, literals, a literal still to come
        self._text = bytearray()
        self._literals: list[bytes] = []
        self._literal_left = 0
        self._literal_buf = bytearray()
        self._discarding = 0  # > 0: dropping the rest of an overlong line / literal
        self._long_tag = b""
        # (tag, status, text) of a command refused while its literal is dropped
        self._refused: tuple[str, str, str] | None = None
        self._sasl_tag: str | None = None  # an AUTHENTICATE waits for its response line
        self._idle_tag: str | None = None
        self._idle_from = _S
        # the selected folder
        self._folder: str | None = None
        self._readonly = False
        self._messages: list[_Message] = []
        self._uidvalidity = 0
        self._uidnext = 1
        self._seen_generation = -1
        if self.config.implicit_tls:
            if self.config.tls_context is None:
                raise LocalProtocolError("implicit_tls needs a tls_context")
            self._state = _H
            self._tls = TLSLayer(self.config.tls_context, server_side=True)
            self._tls.start()
            self._pull_tls()
        else:
            self._events.append(self._greet())

    # --- public API --------------------------------------------------------------------------

    @property
    def state(self) -> IMAPState:
        """The current state."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the session is over: flush :meth:`data_to_send`, then close."""
        return self._state is _L

    @property
    def secure(self) -> bool:
        """True once TLS is up (STARTTLS done, or IMAPS)."""
        return self.tls_active

    @property
    def selected(self) -> str | None:
        """The selected folder (None when none is)."""
        return self._folder if self._state in (_S, _I) else None

    def send_timeout(self) -> None:
        """The autologout timer ran out (RFC 9051 §5.4): ``* BYE``, then close."""
        self._bye("Disconnected for inactivity.", "timeout")

    def send_shutdown(self) -> None:
        """The server stops: ``* BYE Server shutting down.``, then close."""
        self._bye("Server shutting down.", "shutdown")

    def _logout(self) -> None:
        """The session ends: forget the account, say close_notify inside TLS (RFC 8446
        §6.1), so that a client sees a clean end, not a cut."""
        self.account = None
        if self._tls is not None and self._tls.handshake_complete and not self._tls.closed:
            self._tls.close()
            self._pull_tls()

    def _bye(self, text: str, reason: str) -> None:
        if self.closed:
            return
        before = self._state
        if before is not _H:
            self._write(f"* BYE {text}".encode() + CRLF)
        self._state = self._next_state(before, "disconnect")
        self._logout()
        self._events.append(UpdateSent(reply=IMAPReply("*", "BYE", text), reason=reason,
                                       state_before=before, state_after=self._state))

    # --- greeting, TLS -----------------------------------------------------------------------

    def _capabilities(self) -> list[str]:
        if self._state in (_A, _S, _I):
            return list(CAPABILITIES_AUTHENTICATED)
        caps = list(CAPABILITIES_PRE_LOGIN)
        if self.config.tls_context is not None and not self.secure:
            caps.append("STARTTLS")  # RFC 9051 §6.2.1
        if self._login_ok():
            caps.append("AUTH=PLAIN")  # RFC 9051 §6.2.2
        else:
            caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3
        return caps

    def _login_ok(self) -> bool:
        return self.config.allow_plaintext_auth or self.secure

    def _greet(self) -> IMAPEvent:
        self._greeted = True
        text = f"[CAPABILITY {' '.join(self._capabilities())}] {self.config.greeting}"
        self._write(f"* OK {text}".encode() + CRLF)  # RFC 9051 §7.1.1
        return ConnectionOpened(reply=IMAPReply("*", "OK", text), state_before=self._state,
                                state_after=self._state)

    def _feed_tls(self) -> IMAPEvent | None:
        assert self._tls is not None
        before = self._state
        failure = self._decrypt()
        if failure is not None:
            self._state = _L
            self._in.clear()
            self._closed_reported = True
            if before is _H:
                return TLSFailed(reason=str(failure), state_before=before, state_after=_L)
            return ConnectionClosed(reason=str(failure), state_before=before, state_after=_L)
        if before is _H and self._tls.handshake_complete:
            self._state = self._next_state(_H, "tls-established")
            summary = self._tls.summary()
            event = TLSStarted(version=summary["version"], cipher=summary["cipher"],
                               peer=summary["peer"], state_before=_H, state_after=self._state)
            if not self._greeted:
                self._events.append(self._greet())  # IMAPS: greet inside TLS
            return event
        return None

    def _start_tls(self) -> None:
        """After ``OK Begin TLS negotiation now.``: drop buffered plaintext
        (CVE-2011-0411's IMAP twin), start the server side of the handshake."""
        assert self.config.tls_context is not None
        leftover = bytes(self._in)
        self._in.clear()
        if leftover:
            self._events.append(PlaintextDiscarded(data=leftover, state_before=_H,
                                                   state_after=_H))
        self._tls = TLSLayer(self.config.tls_context, server_side=True)
        self._tls.start()
        self._pull_tls()

    # --- framing -----------------------------------------------------------------------------

    def _step_open(self) -> IMAPEvent | None:
        if self._state is _H:
            if self._eof:
                return self._close("peer-closed", "client closed during the TLS handshake")
            return None
        if self._state is _I and self._idle_tag is not None:
            update = self._idle_update()
            if update is not None:
                return update
        line = self._read_command()
        if line is not None:
            return line
        if self._eof:
            return self._close("peer-closed", "client closed the connection")
        return None

    def _take_line(self) -> bytes | None:
        """One CRLF line from the input (without CRLF), or None; drops overlong ones."""
        limit = self.config.max_line_length
        while True:
            if self._discarding:
                end = self._in.find(CRLF)
                if end < 0:
                    keep = 1 if self._in.endswith(b"\r") else 0
                    self._discarding += len(self._in) - keep
                    del self._in[:len(self._in) - keep]
                    return None
                del self._in[:end + 2]
                self._discarding = 0
                return b"\0TOOLONG"
            end = self._in.find(CRLF)
            if end < 0:
                if len(self._in) + len(self._text) > limit:
                    self._long_tag = (bytes(self._text) or bytes(self._in[:65])).split(b" ", 1)[0]
                    self._discarding = len(self._in)
                    keep = 1 if self._in.endswith(b"\r") else 0
                    del self._in[:len(self._in) - keep]
                    continue
                return None
            if end + len(self._text) > limit:
                self._long_tag = (bytes(self._text) or bytes(self._in[:65])).split(b" ", 1)[0]
                del self._in[:end + 2]
                return b"\0TOOLONG"
            line = bytes(self._in[:end])
            del self._in[:end + 2]
            return line

    def _read_command(self) -> IMAPEvent | None:
        """Assemble one command (its lines and literals) and run it."""
        while True:
            if self._literal_left:
                take = min(self._literal_left, len(self._in))
                if self._refused is not None:
                    del self._in[:take]  # a refused LITERAL+: read and thrown away
                else:
                    self._literal_buf += self._in[:take]
                    del self._in[:take]
                self._literal_left -= take
                if self._literal_left:
                    return None
                if self._refused is None:
                    self._literals.append(bytes(self._literal_buf))
                    self._text += b"\0"
                self._literal_buf.clear()
            line = self._take_line()
            if line is None:
                return None
            if line == b"\0TOOLONG":
                head = self._long_tag
                tag = head.decode("ascii", "replace") if len(head) <= 64 else "*"
                if not re.fullmatch(r'[^\s(){%*"\\+\0]+', tag):
                    tag = "*"
                self._reset_command()
                return self._finish_bad(tag, "", b"<line too long>",
                                        "[TOOBIG] Error in IMAP command received by server: "
                                        "Too long argument.")
            if self._sasl_tag is not None:
                return self._sasl_line(line)
            if self._state is _I:
                return self._idle_done(line)
            if b"\0" in line:
                self._reset_command()  # NUL is never part of a command (RFC 9051 §4.1)
                tag = line.split(b" ", 1)[0].decode("ascii", "replace")
                return self._finish_bad(tag if "\0" not in tag and tag else "*", "",
                                        line[:512].replace(b"\0", b"\\0"),
                                        "Error in IMAP command received by server.")
            match = re.search(rb"\{(\d{1,10})(\+?)\}$", line)
            if match is None:
                self._text += line
                return self._dispatch()
            size, sync = int(match.group(1)), not match.group(2)
            self._text += line[:match.start()]
            tag = self._text.split(b" ", 1)[0].decode("ascii", "replace")
            words = self._text.split(b" ", 3)
            verb = words[1].upper().decode("ascii", "replace") if len(words) > 1 else ""
            if verb == "UID" and len(words) > 2:
                verb = words[2].upper().decode("ascii", "replace")
            is_append = verb == "APPEND"
            limit = self.config.max_literal if is_append else self.config.max_line_length
            if self._refused is None:
                if not self._may_take_literal(verb):
                    # not a command that may run now: refused before its literal comes
                    self._refused = (tag, "BAD", "Error in IMAP command received by server.")
                elif size > limit:
                    self._refused = (tag, "NO", "[TOOBIG] Literal too large" if not is_append
                                     else "[TOOBIG] Mail size is too large")  # RFC 7889
            if self._refused is not None:
                if sync:  # RFC 9051 §7.5: no "+": the client never sends the literal
                    refused_tag, status, text = self._refused
                    self._reset_command()
                    if status == "BAD":
                        return self._finish_bad(refused_tag, verb, b"<refused>", text)
                    return self._finish_no(refused_tag, text)
                self._literal_left = size  # LITERAL+: it comes anyway; read and dropped
                continue
            if sync:
                self._write(b"+ OK" + CRLF)  # RFC 9051 §7.5, Dovecot's text
            self._literal_left = size
            if size == 0:
                self._literals.append(b"")
                self._text += b"\0"

    def _may_take_literal(self, verb: str) -> bool:
        """Whether a command with this verb may run in the current state (the table)."""
        if verb not in _VERBS:
            return False
        return self.TABLE.allows(self._state, verb) or (
            self._state is _S and verb in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE",
                                           "EXPUNGE"))

    def _reset_command(self) -> None:
        self._text.clear()
        self._literals = []
        self._literal_left = 0
        self._literal_buf.clear()
        self._refused = None

    # --- replies ----------------------------------------------------------------------------

    def _event(self, tag: str, verb: str, line: bytes, reply: IMAPReply,
               before: IMAPState) -> CommandReceived:
        return CommandReceived(tag=tag, command=verb, line=line, reply=reply,
                               state_before=before, state_after=self._state)

    def _finish_bad(self, tag: str, verb: str, line: bytes, text: str,
                    untagged: int = 0, before: IMAPState | None = None) -> IMAPEvent:
        before = self._state if before is None else before
        self.bad_commands += 1
        self._write(f"{tag} BAD {text}".encode("utf-8", "replace") + CRLF)
        event = self._event(tag, verb, line, IMAPReply(tag, "BAD", text, untagged), before)
        if self.bad_commands >= self.config.max_bad_commands:
            self._write(b"* BYE Too many invalid IMAP commands." + CRLF)
            current = self._state
            self._state = self._next_state(current, "too-many-errors")
            self._logout()
            self._events.append(UpdateSent(
                reply=IMAPReply("*", "BYE", "Too many invalid IMAP commands."),
                reason="too many errors", state_before=current, state_after=self._state))
        return event

    def _finish_no(self, tag: str, text: str) -> IMAPEvent:
        before = self._state
        self._write(f"{tag} NO {text}".encode() + CRLF)
        return self._event(tag, "APPEND", b"<literal refused>", IMAPReply(tag, "NO", text),
                           before)

    def _close(self, trigger: str, reason: str) -> IMAPEvent:
        before = self._state
        self._state = self._next_state(before, trigger)
        self._closed_reported = True
        self.account = None
        return ConnectionClosed(reason=reason, state_before=before, state_after=self._state)

    # --- dispatch ---------------------------------------------------------------------------

    def _shown_line(self, verb: str, text: str) -> bytes:
        """The command as an event shows it: literals as {n}, secrets masked."""
        shown = text
        for literal in self._literals:
            shown = shown.replace("\0", "{" + str(len(literal)) + "}", 1)
        words = shown.split(" ")
        if verb in ("LOGIN", "AUTHENTICATE") and len(words) > 3:
            shown = " ".join([*words[:3], "***"])
        return shown.encode("utf-8", "surrogateescape")

    def _dispatch(self) -> IMAPEvent:
        raw = bytes(self._text)
        literals = self._literals
        refused = self._refused
        self._text = bytearray()
        self._literals = []
        self._refused = None
        text = raw.decode("utf-8", "surrogateescape")
        tag, _, rest = text.partition(" ")
        if refused is not None:  # its literals were dropped: only the first line is shown
            line = text.split("\0", 1)[0].encode("utf-8", "surrogateescape")
            return self._reply_event(refused[0], "", line, [], refused[1], refused[2])
        if not re.fullmatch(r'[^\s(){%*"\\+\0]+', tag or " ") or "\r" in text or "\n" in text:
            return self._finish_bad("*" if not tag or "\0" in tag else tag[:64], "",
                                    raw[:512], "Error in IMAP command received by server.")
        verb, _, args_text = rest.partition(" ")
        verb = verb.upper()
        if any(ord(c) < 0x20 and c != "\0" for c in text):
            return self._finish_bad(tag, verb, raw[:512],
                                    "Error in IMAP command received by server.")
        self._literals = literals
        line = self._shown_line(verb, text)
        self._literals = []
        if verb not in _VERBS or verb in ("DONE",):
            return self._finish_bad(tag, verb, line, "Error in IMAP command received by server.")
        state = self._state
        allowed = self.TABLE.states_allowing(verb)
        if state not in allowed:
            if allowed == [_S]:
                text_ = "No mailbox selected"  # Dovecot's text
            elif state is _N:
                text_ = f"{verb} is not allowed before login (only in " \
                        f"{' or '.join(s.name for s in allowed)})"
            else:
                text_ = f"{verb} is not allowed in the {state.name} state (only in " \
                        f"{' or '.join(s.name for s in allowed)})"
            return self._finish_bad(tag, verb, line, text_)
        args = Args(args_text if rest.find(" ") >= 0 else "", literals)
        uid = False
        shown_verb = verb
        if verb == "UID":
            try:
                sub = args.atom().upper()
            except BadCommand:
                sub = ""
            if sub not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"):
                return self._finish_bad(tag, verb, line,
                                        "Error in IMAP command UID: Unknown command")
            uid, verb, shown_verb = True, sub, f"UID {sub}"
            if not args.at_end():
                args.space()
        handler = getattr(self, f"_cmd_{verb.lower()}")
        before = self._state
        untagged: list[bytes] = []
        try:
            result = handler(tag, args, untagged, uid) if verb in (
                "FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE") else \
                handler(tag, args, untagged)
        except BadCommand as exc:
            self._write(b"".join(untagged))
            return self._finish_bad(tag, shown_verb, line,
                                    f"Error in IMAP command {shown_verb}: {exc}")
        except NoSuchFolder as exc:
            result = ("NO", f"[NONEXISTENT] {exc}")
        except FolderExists as exc:
            result = ("NO", f"[ALREADYEXISTS] {exc}")
        except MailboxError as exc:
            result = ("NO", f"[SERVERBUG] {exc}")
        if result is None:  # a continuation (AUTHENTICATE, IDLE) or a closing LOGOUT
            return self._pending_event
        status, reply_text = result
        if verb == "LOGOUT":
            untagged.insert(0, b"* BYE Logging out" + CRLF)
        outcome = status if status in ("OK", "NO") else ""
        trigger = verb
        after = self._next_state(before, trigger, outcome) if status != "BAD" else before
        if verb in ("SELECT", "EXAMINE") and status == "NO" and before is _S:
            self._folder = None
        return self._reply_event(tag, shown_verb, line, untagged, status, reply_text,
                                 after=after, before=before)

    def _reply_event(self, tag: str, verb: str, line: bytes, untagged: list[bytes],
                     status: str, text: str, *, after: IMAPState | None = None,
                     before: IMAPState | None = None) -> IMAPEvent:
        before = self._state if before is None else before
        self._write(b"".join(untagged))
        if status == "BAD":
            self._state = before
            return self._finish_bad(tag, verb, line, text, untagged=len(untagged))
        self._write(f"{tag} {status} {text}".encode() + CRLF)
        self._state = after if after is not None else before
        if self._state is _L:
            self._logout()
        if self._state is _H:
            self._start_tls()
        reply = IMAPReply(tag, status, text, untagged=len(untagged))
        event = self._event(tag, verb, line, reply, before)
        if status == "NO" and verb in ("LOGIN", "AUTHENTICATE") and \
                self.auth_failures >= self.config.max_auth_failures:
            # the 3rd failed login: Dovecot's farewell (RFC 9051 §7.1.5)
            self._write(b"* BYE Too many invalid commands." + CRLF)
            after_bye = self._next_state(self._state, "disconnect")
            self._events.append(UpdateSent(
                reply=IMAPReply("*", "BYE", "Too many invalid commands."),
                reason="too many failed logins", state_before=self._state,
                state_after=after_bye))
            self._state = after_bye
            self._logout()
        return event

    # --- login ------------------------------------------------------------------------------

    _pending_event: IMAPEvent

    def _cmd_capability(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        out.append(f"* CAPABILITY {' '.join(self._capabilities())}".encode() + CRLF)
        if self._state is _N:
            return "OK", "Pre-login capabilities listed, post-login capabilities have more."
        return "OK", "Capability completed."

    def _cmd_noop(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        if self._folder is not None and self._state is _S:
            out += self._refresh()
        return "OK", "NOOP completed."

    def _cmd_check(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        out += self._refresh()
        return "OK", "Check completed."

    def _cmd_logout(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        return "OK", "Logout completed."

    def _cmd_id(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        # RFC 2971: the client's fields (or NIL) are read and ignored
        if args.text[args.pos:].upper() != "NIL":
            args.paren_list()
        else:
            args.pos = len(args.text)
        args.end()
        out.append(b'* ID ("name" "Dovecot")' + CRLF)
        return "OK", "ID completed."

    def _cmd_starttls(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        if self.config.tls_context is None or self.secure:
            return "NO", "[CLIENTBUG] TLS is already active." if self.secure else \
                "TLS support isn't enabled."
        return "OK", "Begin TLS negotiation now."

    def _cmd_login(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        user = args.astring()
        args.space()
        password = args.astring()
        args.end()
        if not self._login_ok():
            out.append(f"* BAD {LOGIN_IN_CLEAR_ALERT}".encode() + CRLF)  # Dovecot
            return "NO", PLAINTEXT_DISALLOWED
        return self._login(user, password)

    def _login(self, user: str, password: str) -> tuple[str, str]:
        try:
            account = self._authenticator(user, password)
        except MailboxError:
            return "NO", "[UNAVAILABLE] Temporary authentication failure."  # RFC 5530
        if account is None:
            self.auth_failures += 1
            return "NO", "[AUTHENTICATIONFAILED] Authentication failed."  # RFC 5530
        self.user, self.account = user, account
        return "OK", f"[CAPABILITY {' '.join(CAPABILITIES_AUTHENTICATED)}] Logged in"

    def _cmd_authenticate(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str] | None:
        mechanism = args.atom().upper()
        initial = None
        if not args.at_end():
            args.space()
            initial = args.atom() if args.peek() != "=" else args.rest()
        args.end()
        if not self._login_ok():
            return "NO", "[PRIVACYREQUIRED] Plaintext authentication disabled."
        if mechanism != "PLAIN":
            return "NO", "Unsupported authentication mechanism."
        if initial is None:
            self._sasl_tag = tag
            self._write(b"+ " + CRLF)  # RFC 9051 §7.5: an empty challenge
            self._pending_event = self._event(tag, "AUTHENTICATE",
                                              f"{tag} AUTHENTICATE PLAIN".encode(),
                                              IMAPReply("+", "", ""), self._state)
            return None
        return self._sasl_result(initial)

    def _sasl_result(self, response: str) -> tuple[str, str]:
        from .sasl import Credentials, PlainServer, SASLError, decode_response

        try:
            result = PlainServer().step(decode_response(response))
        except SASLError as exc:
            if exc.reason == "auth_aborted":
                return "BAD", "Authentication aborted by client."
            if exc.reason == "auth_bad_base64":
                return "BAD", "Invalid base64 data in continued response"
            self.auth_failures += 1
            return "NO", "[AUTHENTICATIONFAILED] Authentication failed."
        assert isinstance(result, Credentials)
        if result.authzid and result.authzid != result.username:
            self.auth_failures += 1
            return "NO", "[AUTHORIZATIONFAILED] Authorization failed."
        return self._login(result.username, result.password)

    def _sasl_line(self, line: bytes) -> IMAPEvent:
        tag, self._sasl_tag = self._sasl_tag or "*", None
        before = self._state
        try:
            status, text = self._sasl_result(line.decode("ascii"))
        except UnicodeDecodeError:
            status, text = "BAD", "Invalid base64 data in continued response"
        after = self._next_state(before, "AUTHENTICATE", status) if status != "BAD" else before
        return self._finish_auth(tag, b"***", status, text, before, after)

    def _finish_auth(self, tag: str, line: bytes, status: str, text: str, before: IMAPState,
                     after: IMAPState) -> IMAPEvent:
        return self._reply_event(tag, "AUTHENTICATE", line, [], status, text, after=after,
                                 before=before)

    # --- authenticated ----------------------------------------------------------------------

    def _cmd_enable(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        names = [args.atom()]
        while not args.at_end():
            args.space()
            names.append(args.atom())
        enabled = [n for n in names if n.upper() == "IMAP4REV2"]
        if enabled:
            self._rev2 = True  # RFC 9051 §6.3.1: IMAP4rev2 rules from now on
            out.append(b"* ENABLED IMAP4rev2" + CRLF)
        return "OK", "Enabled."

    def _cmd_namespace(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        out.append(b'* NAMESPACE (("" ".")) NIL NIL' + CRLF)  # RFC 2342, Maildir++ "."
        return "OK", "Namespace completed."

    def _acct(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    def _cmd_create(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        name = args.astring().rstrip(".")
        args.end()
        if not name or name.upper() == "INBOX":
            return "NO", "[ALREADYEXISTS] Mailbox already exists"
        self._check_name(name)
        self._acct().create(name)
        return "OK", "Create completed."

    @staticmethod
    def _check_name(name: str) -> None:
        if not name or name.startswith(".") or ".." in name or "/" in name or "\\" in name \
                or any(ord(c) < 0x20 for c in name) or "*" in name or "%" in name:
            raise MailboxError(f"Invalid mailbox name: {name}")

    def _cmd_delete(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        name = folder_name(args.astring())
        args.end()
        if name == "INBOX":
            return "NO", "[CANNOT] INBOX can't be deleted."  # RFC 9051 §6.3.5
        if self._folder == name and self._state is _S:
            return "NO", "[CANNOT] Can't delete the selected mailbox."
        self._acct().delete(name)
        return "OK", "Delete completed."

    def _cmd_rename(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        old = folder_name(args.astring())
        args.space()
        new = args.astring()
        args.end()
        self._check_name(new)
        if old == "INBOX":
            return "NO", "[CANNOT] Renaming INBOX isn't supported."
        self._acct().rename(old, new)
        return "OK", "Rename completed."

    def _cmd_subscribe(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.astring()
        args.end()
        return "OK", "Subscribe completed."  # every folder is subscribed

    def _cmd_unsubscribe(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.astring()
        args.end()
        return "OK", "Unsubscribe completed."

    def _cmd_list(self, tag: str, args: Args, out: list[bytes],
                  verb: str = "LIST") -> tuple[str, str]:
        if args.peek() == "(":
            args.paren_list()  # LIST-EXTENDED selection options: ignored (all listed)
            args.space()
        reference = args.astring()
        args.space()
        pattern = args.list_mailbox()
        if not args.at_end():
            args.space()
            if args.atom().upper() != "RETURN":
                raise BadCommand("Invalid arguments")
            args.space()
            args.paren_list()
        args.end()
        if pattern == "":
            out.append(f'* {verb} (\\Noselect) "." ""'.encode() + CRLF)  # RFC 9051 §6.3.9
            return "OK", f"{verb.capitalize()} completed."
        full = reference + pattern
        regex = re.compile("".join(".*" if c == "*" else "[^.]*" if c == "%" else re.escape(c)
                                   for c in full) + r"\Z", re.I if full.upper().startswith(
                                       "INBOX") else 0)
        folders = self._acct().folders()
        names = [n for n, _ in folders]
        for name, special in folders:
            if not regex.match(name) and not (name == "INBOX" and regex.match("inbox")):
                continue
            children = any(other.startswith(name + ".") for other in names)
            attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
            if special:
                attrs.append(special)  # RFC 6154
            out.append(f'* {verb} ({" ".join(attrs)}) "." {astring(name)}'.encode()
                       + CRLF)
        return "OK", f"{verb.capitalize()} completed."

    def _cmd_lsub(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        return self._cmd_list(tag, args, out, "LSUB")

    def _cmd_status(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        name = folder_name(args.astring())
        args.space()
        items = [i.upper() for i in args.paren_list()]
        args.end()
        known = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE")
        if not items or any(i not in known for i in items):
            raise BadCommand("Invalid status item")
        info = self._acct().folder(name)
        values = {
            "MESSAGES": len(info.messages),
            "RECENT": sum(m.recent for m in info.messages),
            "UIDNEXT": info.uidnext,
            "UIDVALIDITY": info.uidvalidity,
            "UNSEEN": sum("\\Seen" not in m.flags for m in info.messages),
            "DELETED": sum("\\Deleted" in m.flags for m in info.messages),
            "SIZE": sum(m.size for m in info.messages),
        }
        shown = " ".join(f"{k} {values[k]}" for k in known if k in items)
        out.append(f"* STATUS {astring(name)} ({shown})".encode() + CRLF)
        return "OK", "Status completed."

    def _cmd_select(self, tag: str, args: Args, out: list[bytes],
                    readonly: bool = False) -> tuple[str, str]:
        name = folder_name(args.astring())
        if not args.at_end():
            args.space()
            args.paren_list()  # select parameters (CONDSTORE ...): none supported, ignored
        args.end()
        self._folder = None
        info = self._acct().folder(name, claim_recent=not readonly)
        self._folder, self._readonly = name, readonly
        self._load(info)
        flags = "(" + " ".join(SYSTEM_FLAGS) + ")"
        out.append(f"* FLAGS {flags}".encode() + CRLF)
        if readonly:
            out.append(b"* OK [PERMANENTFLAGS ()] Read-only mailbox." + CRLF)
        else:
            out.append(f"* OK [PERMANENTFLAGS {flags}] Flags permitted.".encode() + CRLF)
        out.append(f"* {len(self._messages)} EXISTS".encode() + CRLF)
        if not self._rev2:
            out.append(f"* {sum(m.recent for m in self._messages)} RECENT".encode() + CRLF)
            unseen = next((n for n, m in enumerate(self._messages, 1)
                           if "\\Seen" not in m.flags), None)
            if unseen is not None:
                out.append(f"* OK [UNSEEN {unseen}] First unseen.".encode() + CRLF)
        out.append(f"* OK [UIDVALIDITY {self._uidvalidity}] UIDs valid".encode() + CRLF)
        out.append(f"* OK [UIDNEXT {self._uidnext}] Predicted next UID".encode() + CRLF)
        if readonly:
            return "OK", "[READ-ONLY] Examine completed."
        return "OK", "[READ-WRITE] Select completed."

    def _cmd_examine(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        return self._cmd_select(tag, args, out, readonly=True)

    def _load(self, info: FolderInfo) -> None:
        self._uidvalidity, self._uidnext = info.uidvalidity, info.uidnext
        self._messages = [_Message(m.uid, m.flags, m.size, m.internaldate, m.recent)
                          for m in info.messages]
        self._seen_generation = self._acct().generation()

    def _cmd_append(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        name = folder_name(args.astring())
        args.space()
        flags: frozenset[str] = frozenset()
        date = None
        if args.peek() == "(":
            flags, _ = normal_flags(args.paren_list())
            args.space()
        if args.peek() == '"':
            date = parse_datetime(args.astring())
            args.space()
        data = args.literal()
        args.end()
        names = [n for n, _ in self._acct().folders()]
        if name not in names:
            return "NO", f"[TRYCREATE] Mailbox doesn't exist: {name}"  # RFC 9051 §6.3.12
        validity, uid = self._acct().append(name, to_crlf(data), flags,
                                            date if date is not None else self.config.now())
        if name == self._folder and self._state is _S:
            out += self._refresh()
        return "OK", f"[APPENDUID {validity} {uid}] Append completed."  # RFC 4315

    def _cmd_idle(self, tag: str, args: Args, out: list[bytes]) -> None:
        args.end()
        self._idle_tag = tag
        self._idle_from = self._state
        self._write(b"".join(out) + b"+ idling" + CRLF)  # Dovecot's text, RFC 2177 §3
        before = self._state
        self._state = _I
        self._pending_event = self._event(tag, "IDLE", f"{tag} IDLE".encode(),
                                          IMAPReply("+", "", "idling"), before)
        if self._folder is not None:
            self._seen_generation = -1  # report anything that came since the last look
        return None

    def _idle_update(self) -> IMAPEvent | None:
        if self.account is None or self._folder is None or self._idle_from is not _S:
            return None
        if self.account.generation() == self._seen_generation:
            return None
        lines = self._refresh()
        if not lines:
            return None
        self._write(b"".join(lines))
        first = lines[0].decode("utf-8", "replace")[2:].rstrip()
        return UpdateSent(reply=IMAPReply("*", "", first),
                          lines=tuple(x.decode("utf-8", "replace").rstrip() for x in lines),
                          reason="mailbox changed", state_before=_I, state_after=_I)

    def _idle_done(self, line: bytes) -> IMAPEvent:
        tag, self._idle_tag = self._idle_tag or "*", None
        before = _I
        target = "selected" if self._idle_from is _S else "authenticated"
        self._state = self._next_state(_I, "DONE", target)
        if line.upper() != b"DONE":
            return self._finish_bad(tag, "IDLE", line[:512], "Expected DONE.", before=_I)
        return self._reply_event(tag, "DONE", b"DONE", [], "OK", "Idle completed.",
                                 after=self._state, before=before)

    # --- selected ---------------------------------------------------------------------------

    def _refresh(self) -> list[bytes]:
        """What changed in the selected folder since we last looked: ``* n EXPUNGE``,
        ``* n FETCH (FLAGS ...)``, ``* N EXISTS`` (RFC 9051 §7.4, §7.3)."""
        if self.account is None or self._folder is None:
            return []
        try:
            info = self.account.folder(self._folder, claim_recent=not self._readonly)
        except MailboxError:
            return []
        self._seen_generation = self.account.generation()
        now = {m.uid: m for m in info.messages}
        lines: list[bytes] = []
        n = 0
        while n < len(self._messages):
            message = self._messages[n]
            if message.uid not in now:
                del self._messages[n]
                lines.append(f"* {n + 1} EXPUNGE".encode() + CRLF)
                continue
            fresh = now[message.uid]
            if fresh.flags != message.flags:
                message.flags = fresh.flags
                lines.append(f"* {n + 1} FETCH (FLAGS {self._flags_of(message)})".encode()
                             + CRLF)
            n += 1
        known = {m.uid for m in self._messages}
        added = [m for m in info.messages if m.uid not in known and m.uid >= self._uidnext]
        for m in added:
            self._messages.append(_Message(m.uid, m.flags, m.size, m.internaldate, m.recent))
        self._uidnext = max(self._uidnext, info.uidnext)
        if added:
            lines.append(f"* {len(self._messages)} EXISTS".encode() + CRLF)
            if not self._rev2:
                lines.append(f"* {sum(m.recent for m in self._messages)} RECENT".encode()
                             + CRLF)
        return lines

    def _flags_of(self, message: _Message) -> str:
        flags = set(message.flags)
        if message.recent and not self._rev2:
            flags.add("\\Recent")
        return flags_text(flags)

    def _numbers(self, text: str, uid: bool) -> list[int]:
        """The message numbers (1-based positions) a set names."""
        ranges = parse_set(text)
        if uid:
            star = self._messages[-1].uid if self._messages else 0
            return [n for n, m in enumerate(self._messages, 1) if in_set(m.uid, ranges, star)]
        count = len(self._messages)
        for a, b in ranges:
            for value in (a, b):
                if value is not None and value > count:
                    raise BadCommand("Invalid messageset")  # Dovecot's text
                if value is None and count == 0:
                    raise BadCommand("Invalid messageset")
        return [n for n in range(1, count + 1) if in_set(n, ranges, count)]

    def _cmd_close(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        if not self._readonly:
            self._expunge_deleted(None, [])  # RFC 9051 §6.4.1: silently
        self._folder = None
        return "OK", "Close completed."

    def _cmd_unselect(self, tag: str, args: Args, out: list[bytes]) -> tuple[str, str]:
        args.end()
        self._folder = None
        return "OK", "Unselect completed."

    def _expunge_deleted(self, only: list[int] | None, out: list[bytes]) -> None:
        doomed = [m.uid for m in self._messages if "\\Deleted" in m.flags
                  and (only is None or m.uid in only)]
        if not doomed:
            return
        self._acct().expunge(self._folder or "", doomed)
        self._drop(doomed, out)

    def _drop(self, uids: list[int], out: list[bytes]) -> None:
        gone = set(uids)
        n = 0
        while n < len(self._messages):
            if self._messages[n].uid in gone:
                del self._messages[n]
                out.append(f"* {n + 1} EXPUNGE".encode() + CRLF)  # RFC 9051 §7.4.1
            else:
                n += 1
        self._seen_generation = self._acct().generation()

    def _cmd_expunge(self, tag: str, args: Args, out: list[bytes],
                     uid: bool = False) -> tuple[str, str]:
        only = None
        if uid:  # RFC 4315 §2.1: UID EXPUNGE set
            only = [self._messages[n - 1].uid for n in self._numbers(args.seqset(), True)]
        args.end()
        if self._readonly:
            return "NO", "[READ-ONLY] Mailbox is read-only."
        self._expunge_deleted(only, out)
        return "OK", "Expunge completed."

    def _cmd_fetch(self, tag: str, args: Args, out: list[bytes],
                   uid: bool = False) -> tuple[str, str]:
        numbers = self._numbers(args.seqset(), uid)
        args.space()
        items = parse_fetch_items(args.rest())
        if uid and not any(i.kind == "UID" for i in items):
            items.insert(0, FetchItem("UID", "UID"))  # RFC 9051 §6.4.9
        for n in numbers:
            out.append(self._fetch_one(n, items))
        return "OK", "Fetch completed."

    def _fetch_one(self, n: int, items: list[FetchItem]) -> bytes:
        message = self._messages[n - 1]
        data: bytes | None = None
        parts: list[bytes] = []
        sets_seen = not self._readonly and "\\Seen" not in message.flags and any(
            (i.kind == "SECTION" and not i.peek) or i.kind in ("RFC822", "RFC822.TEXT")
            for i in items)
        if sets_seen:  # RFC 9051 §6.4.5: BODY[...] sets \Seen
            message.flags = message.flags | {"\\Seen"}
            self._acct().set_flags(self._folder or "", message.uid, message.flags)
            self._seen_generation = self._acct().generation()
            if not any(i.kind == "FLAGS" for i in items):
                items = [FetchItem("FLAGS", "FLAGS"), *items]
        for item in items:
            kind = item.kind
            if kind == "FLAGS":
                parts.append(f"FLAGS {self._flags_of(message)}".encode())
            elif kind == "UID":
                parts.append(f"UID {message.uid}".encode())
            elif kind == "INTERNALDATE":
                parts.append(f'INTERNALDATE "{imap_date(message.internaldate)}"'.encode())
            elif kind == "RFC822.SIZE":
                parts.append(f"RFC822.SIZE {message.size}".encode())
            else:
                if data is None:
                    data = self._acct().fetch(self._folder or "", message.uid)
                parts.append(self._fetch_data(item, data))
        return f"* {n} FETCH (".encode() + b" ".join(parts) + b")" + CRLF

    @staticmethod
    def _literal(name: str, value: bytes) -> bytes:
        return f"{name} {{{len(value)}}}".encode() + CRLF + value

    def _fetch_data(self, item: FetchItem, data: bytes) -> bytes:
        kind = item.kind
        if kind == "ENVELOPE":
            return f"ENVELOPE {envelope(data)}".encode("utf-8", "surrogateescape")
        if kind == "BODYSTRUCTURE":
            return f"BODYSTRUCTURE {body_structure(data)}".encode("utf-8", "surrogateescape")
        if kind == "BODY":
            return f"BODY {body_structure(data, extended=False)}".encode(
                "utf-8", "surrogateescape")
        if kind == "RFC822":
            return self._literal("RFC822", data)
        if kind == "RFC822.HEADER":
            return self._literal("RFC822.HEADER", section_bytes(data, "HEADER") or b"")
        if kind == "RFC822.TEXT":
            return self._literal("RFC822.TEXT", section_bytes(data, "TEXT") or b"")
        value = section_bytes(data, item.section)
        if value is None:
            return f"{item.name} NIL".encode()
        if item.partial is not None:
            start, length = item.partial
            value = value[start:] if length is None else value[start:start + length]
        return self._literal(item.name, value)

    def _cmd_store(self, tag: str, args: Args, out: list[bytes],
                   uid: bool = False) -> tuple[str, str]:
        numbers = self._numbers(args.seqset(), uid)
        args.space()
        action = args.atom().upper()
        args.space()
        match = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", action)
        if not match:
            raise BadCommand("Invalid arguments")
        names = args.paren_list() if args.peek() == "(" else args.rest().split()
        args.end()
        flags, bad = normal_flags(names)
        if bad:
            raise BadCommand("Invalid system flag")
        if self._readonly:
            return "NO", "[READ-ONLY] Mailbox is read-only."
        for n in numbers:
            message = self._messages[n - 1]
            if match.group(1) == "+":
                new = message.flags | flags
            elif match.group(1) == "-":
                new = message.flags - flags
            else:
                new = flags
            if new != message.flags:
                message.flags = new
                self._acct().set_flags(self._folder or "", message.uid, new)
            if not match.group(2):
                uid_part = f" UID {message.uid}" if uid else ""
                out.append(f"* {n} FETCH (FLAGS {self._flags_of(message)}{uid_part})".encode()
                           + CRLF)
        self._seen_generation = self._acct().generation()
        return "OK", "Store completed."

    def _copy_targets(self, args: Args, uid: bool) -> tuple[list[int], str]:
        numbers = self._numbers(args.seqset(), uid)
        args.space()
        target = folder_name(args.astring())
        args.end()
        return numbers, target

    def _cmd_copy(self, tag: str, args: Args, out: list[bytes],
                  uid: bool = False) -> tuple[str, str]:
        numbers, target = self._copy_targets(args, uid)
        if target not in [n for n, _ in self._acct().folders()]:
            return "NO", f"[TRYCREATE] Mailbox doesn't exist: {target}"
        if not numbers:
            return "OK", "No messages found."
        uids = [self._messages[n - 1].uid for n in numbers]
        validity, new = self._acct().copy(self._folder or "", uids, target)
        self._seen_generation = self._acct().generation()
        return "OK", f"[COPYUID {validity} {_uid_set(uids)} {_uid_set(new)}] Copy completed."

    def _cmd_move(self, tag: str, args: Args, out: list[bytes],
                  uid: bool = False) -> tuple[str, str]:
        numbers, target = self._copy_targets(args, uid)
        if target not in [n for n, _ in self._acct().folders()]:
            return "NO", f"[TRYCREATE] Mailbox doesn't exist: {target}"
        if self._readonly:
            return "NO", "[READ-ONLY] Mailbox is read-only."
        if not numbers:
            return "OK", "No messages found."
        uids = [self._messages[n - 1].uid for n in numbers]
        validity, new = self._acct().copy(self._folder or "", uids, target)
        out.append(f"* OK [COPYUID {validity} {_uid_set(uids)} {_uid_set(new)}] Moved UIDs."
                   .encode() + CRLF)  # RFC 6851 §4.3
        self._acct().expunge(self._folder or "", uids)
        self._drop(uids, out)
        return "OK", "Move completed."

    def _cmd_search(self, tag: str, args: Args, out: list[bytes],
                    uid: bool = False) -> tuple[str, str]:
        returns: list[str] | None = None
        if args.text[args.pos:].upper().startswith("RETURN "):
            args.atom()
            args.space()
            returns = [r.upper() for r in args.paren_list()] or ["ALL"]  # RFC 4731 §3.1
            if any(r not in ("MIN", "MAX", "COUNT", "ALL") for r in returns):
                raise BadCommand("Unknown RETURN option")
            args.space()
        if args.text[args.pos:].upper().startswith("CHARSET "):
            args.atom()
            args.space()
            charset = args.astring().upper()
            if charset not in ("UTF-8", "US-ASCII"):
                return "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"  # RFC 5530
            args.space()
        keys = self._search_keys(args)
        if not keys:
            raise BadCommand("Missing search parameters")
        args.end()
        found = []
        cache: dict[int, bytes] = {}
        for n, message in enumerate(self._messages, 1):
            if all(self._matches(k, n, message, cache) for k in keys):
                found.append(message.uid if uid else n)
        if returns is None and self._rev2:
            returns = ["ALL"]  # RFC 9051 §6.4.4: IMAP4rev2 answers with ESEARCH
        if returns is not None:  # RFC 4731 §3.1 / RFC 9051 §7.3.4
            parts = []
            if found and "MIN" in returns:
                parts.append(f"MIN {min(found)}")
            if found and "MAX" in returns:
                parts.append(f"MAX {max(found)}")
            if "COUNT" in returns:
                parts.append(f"COUNT {len(found)}")
            if found and "ALL" in returns:
                parts.append(f"ALL {_uid_set(found)}")
            tail = "".join(f" {p}" for p in parts)
            out.append(f'* ESEARCH (TAG "{tag}"){" UID" if uid else ""}{tail}'.encode() + CRLF)
        else:
            out.append(("* SEARCH" + "".join(f" {x}" for x in found)).encode() + CRLF)
        return "OK", "Search completed."

    def _search_keys(self, args: Args, until_paren: bool = False) -> list[Any]:
        keys: list[Any] = []
        while not args.at_end():
            if args.peek() == ")":
                if until_paren:
                    return keys
                raise BadCommand("Unexpected ')'")
            if keys:
                args.space()
            keys.append(self._search_key(args))
        if until_paren:
            raise BadCommand("Missing ')'")
        return keys

    def _search_key(self, args: Args) -> Any:
        if args.peek() == "(":
            args.pos += 1
            inner = self._search_keys(args, until_paren=True)
            args.pos += 1
            return ("AND", inner)
        if args.peek().isdigit() or args.peek() in ("*", "$"):
            return ("SET", parse_set(args.seqset()))
        word = args.atom().upper()
        simple = {"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT",
                  "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"}
        if word in simple:
            return (word,)
        if word in ("FROM", "TO", "CC", "BCC", "SUBJECT", "BODY", "TEXT", "KEYWORD",
                    "UNKEYWORD"):
            args.space()
            return (word, args.astring())
        if word == "HEADER":
            args.space()
            name = args.astring()
            args.space()
            return (word, name, args.astring())
        if word in ("LARGER", "SMALLER"):
            args.space()
            value = args.atom()
            if not value.isdigit():
                raise BadCommand("Invalid size")
            return (word, int(value))
        if word in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            args.space()
            return (word, parse_date(args.astring()))
        if word == "UID":
            args.space()
            return (word, parse_set(args.seqset()))
        if word == "NOT":
            args.space()
            return (word, self._search_key(args))
        if word == "OR":
            args.space()
            first = self._search_key(args)
            args.space()
            return (word, first, self._search_key(args))
        raise BadCommand(f"Unknown argument {word}")

    def _matches(self, key: Any, n: int, m: _Message, cache: dict[int, bytes]) -> bool:
        op = key[0]
        flag = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft",
                "FLAGGED": "\\Flagged", "SEEN": "\\Seen"}
        if op == "ALL":
            return True
        if op in flag:
            return flag[op] in m.flags
        if op.startswith("UN") and op[2:] in flag:
            return flag[op[2:]] not in m.flags
        if op == "NEW":
            return m.recent and "\\Seen" not in m.flags
        if op == "RECENT":
            return m.recent
        if op == "OLD":
            return not m.recent
        if op == "KEYWORD":
            return False  # keywords are not kept
        if op == "UNKEYWORD":
            return True
        if op == "LARGER":
            return bool(m.size > key[1])
        if op == "SMALLER":
            return bool(m.size < key[1])
        if op == "UID":
            star = self._messages[-1].uid if self._messages else 0
            return in_set(m.uid, key[1], star)
        if op == "SET":
            return in_set(n, key[1], len(self._messages))
        if op == "NOT":
            return not self._matches(key[1], n, m, cache)
        if op == "OR":
            return self._matches(key[1], n, m, cache) or self._matches(key[2], n, m, cache)
        if op == "AND":
            return all(self._matches(k, n, m, cache) for k in key[1])
        if op in ("BEFORE", "ON", "SINCE"):
            day = time.gmtime(m.internaldate)[:3]
            return _compare_day(op, day, key[1])
        data = cache.get(m.uid)
        if data is None:
            try:
                data = cache[m.uid] = self._acct().fetch(self._folder or "", m.uid)
            except MailboxError:
                return False
        header = (section_bytes(data, "HEADER") or b"").decode("utf-8", "replace")
        if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            from email.utils import parsedate_tz

            found = re.search(r"(?im)^date:(.*)$", header)
            parsed = parsedate_tz(found.group(1).strip()) if found else None
            if parsed is None:
                return False
            return _compare_day(op[4:], tuple(parsed[:3]), key[1])
        if op in ("FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER"):
            name, needle = (key[1], key[2]) if op == "HEADER" else (op, key[1])
            values = re.findall(rf"(?im)^{re.escape(name)}:((?:.*)(?:\r?\n[ \t].*)*)", header)
            if op == "HEADER" and needle == "":
                return bool(values)
            return any(needle.lower() in v.lower() for v in values)
        if op == "BODY":
            body = (section_bytes(data, "TEXT") or b"").decode("utf-8", "replace")
            return key[1].lower() in body.lower()
        if op == "TEXT":
            return key[1].lower() in data.decode("utf-8", "replace").lower()
        return False


def _compare_day(op: str, day: tuple[int, ...], wanted: tuple[int, int, int]) -> bool:
    if op == "BEFORE":
        return tuple(day) < wanted
    if op == "ON":
        return tuple(day) == wanted
    return tuple(day) >= wanted  # SINCE


def _uid_set(uids: Sequence[int]) -> str:
    """``1,2,3,7`` as ``1:3,7`` (RFC 9051 §9 sequence-set)."""
    out: list[str] = []
    start = prev = None
    for uid in uids:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            out.append(f"{start}" if start == prev else f"{start}:{prev}")
            start = prev = uid
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}:{prev}")
    return ",".join(out)


def decode_plain(response: str) -> tuple[str, str] | None:
    """``(user, password)`` of a base64 SASL PLAIN response, or None (for tools)."""
    try:
        parts = base64.b64decode(response, validate=True).split(b"\0")
    except (binascii.Error, ValueError):
        return None
    if len(parts) != 3:
        return None
    return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")


_ = (nstring, quoted)


#: The state machine as data (for a notebook's state diagram).
transitions = IMAPServerConnection.transitions
#: The commands a client may send in a state, in table order.
allowed_commands = IMAPServerConnection.allowed_commands
