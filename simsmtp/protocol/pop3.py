"""The sans-IO POP3 server core (RFC 1939, CAPA of RFC 2449, STLS of RFC 2595, SASL AUTH of
RFC 5034, POP3S of RFC 8314).

Same shape as the SMTP core (after h11): feed the bytes the client sent with
:meth:`POP3ServerConnection.receive_data` (``b""`` means the client closed), take events
one at a time with :meth:`~POP3ServerConnection.next_event` until it returns
:data:`NEED_DATA`, and put :meth:`~POP3ServerConnection.data_to_send` on the wire.
No socket, thread or event loop is involved::

    conn = POP3ServerConnection(authenticator, POP3Config(allow_plaintext_auth=True))
    conn.receive_data(b"USER alice\\r\\nPASS secret\\r\\nSTAT\\r\\n")
    while (event := conn.next_event()) is not NEED_DATA:
        print(event)
    wire = conn.data_to_send()

Every state change is in ONE table, :data:`TRANSITIONS` (see :func:`transitions`), of the
cores' shared :class:`~simsmtp.protocol.connection.Edge`; the "not allowed in state X"
replies are derived from it. The core stands on the shared base
(:class:`~simsmtp.protocol.connection.SansIOConnection`: buffers, TLS, one event per
``next_event()``) and speaks the shared event vocabulary: a command's answer is its
``reply``, the bytes thrown away behind STLS are ``data`` (secrets masked), and
:class:`TLSStarted`, :class:`TLSFailed`, :class:`PlaintextDiscarded` and
:class:`ConnectionClosed` are the SMTP and IMAP cores' own.

Policies chosen here (documented for learners):

* A command line may be at most 255 octets including CRLF (RFC 2449 §4). A longer one is
  answered ``-ERR line too long`` once its end arrives; its bytes are dropped as they come,
  so a megabyte without CRLF keeps memory bounded.
* Only CRLF ends a line (RFC 1939 §3), as in the SMTP core: ``QUIT\\n`` gets no reply
  until a CRLF comes, and then the whole line, holding a bare LF, is answered ``-ERR`` and
  never executed. A bare CR or another control character in a line is rejected the same
  way (the SMTP core's strict policy, RFC 5321 §4.1.1.4).
* Every ``-ERR`` except a failed login counts as an error; the 10th error is answered
  ``-ERR too many errors`` and the connection closes. The 3rd failed login closes too.
  Nothing else closes the session except QUIT.
* Plaintext USER/PASS is refused (Dovecot's text) unless the config allows it or TLS is
  active; CAPA lists ``USER`` only when it would be accepted.
* ``AUTH PLAIN`` (RFC 5034, RFC 4616) is accepted where USER/PASS would be (after STLS,
  or on POP3S from the first byte); with no initial response the server sends ``+ `` (a
  plus, a space) and reads the base64 response on the next line; ``*`` cancels. ``AUTH``
  alone lists the mechanisms, as Dovecot does. The response line never reaches an event.
* ``POP3Config(implicit_tls=True)`` is POP3S (port 995, RFC 8314 §3.3): the TLS handshake
  comes first and the greeting is the first thing said inside it.
* After ``+OK Begin TLS negotiation`` every plaintext byte already buffered behind the
  STLS line is discarded and reported as :class:`PlaintextDiscarded` (CVE-2021-38084, the
  POP3 twin of CVE-2011-0411); the session is back in AUTHORIZATION afterwards, and the
  server says nothing until the client speaks (RFC 2595 §4).
"""

from __future__ import annotations

import enum
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

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
from .mailbox import (
    Authenticator,
    Mailbox,
    MailboxError,
    MaildropInUse,
    MessageInfo,
    to_crlf,
)
from .tls import TLSLayer

__all__ = [
    "MAX_AUTH_FAILURES",
    "MAX_ERRORS",
    "MAX_LINE_LENGTH",
    "NEED_DATA",
    "PLAINTEXT_DISALLOWED",
    "TRANSITIONS",
    "CommandReceived",
    "ConnectionClosed",
    "ConnectionOpened",
    "Disconnect",
    "POP3Config",
    "POP3Event",
    "POP3Reply",
    "POP3ServerConnection",
    "POP3State",
    "PlaintextDiscarded",
    "TLSFailed",
    "TLSStarted",
    "Transition",
    "allowed_commands",
    "byte_stuff",
    "transitions",
]

#: Longest command line, CRLF included (RFC 2449 §4: "255 octets, including the
#: terminating CRLF").
MAX_LINE_LENGTH: Final = 255
#: Errors before the server gives up on a client (policy, like Dovecot's bad-command limit;
#: RFC 1939 §3 leaves it to the server).
MAX_ERRORS: Final = 10
#: Failed logins before the connection is closed (policy; RFC 1939 §13 suggests limiting
#: password guessing).
MAX_AUTH_FAILURES: Final = 3

CRLF: Final = b"\r\n"

#: Dovecot's refusal of USER/PASS on a plaintext connection ([AUTH] is RFC 3206 §5; the rule is
#: RFC 2595 §2.3: plaintext logins refused unless TLS is active, when so configured).
PLAINTEXT_DISALLOWED: Final = (
    "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
)


class POP3State(enum.Enum):
    """The states of a POP3 session (RFC 1939 §3), plus the TLS handshake and the end."""

    #: Before login: USER, PASS, CAPA, STLS, QUIT (RFC 1939 §4).
    AUTHORIZATION = "AUTHORIZATION"
    #: Logged in, maildrop open: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, CAPA,
    #: QUIT (RFC 1939 §5).
    TRANSACTION = "TRANSACTION"
    #: After QUIT in TRANSACTION: the messages marked deleted are removed (RFC 1939 §6).
    UPDATE = "UPDATE"
    #: After ``+OK Begin TLS negotiation``: only TLS records flow (RFC 2595 §4).
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: The session is over; nothing more is read.
    CLOSED = "CLOSED"


_A = POP3State.AUTHORIZATION
_T = POP3State.TRANSACTION
_U = POP3State.UPDATE
_H = POP3State.TLS_HANDSHAKE
_C = POP3State.CLOSED


#: One edge of the POP3 state machine: the shared :class:`~simsmtp.protocol.connection.Edge`
#: (state, trigger, target, outcome ``"+OK"``/``"-ERR"`` or ``""``, rfc), as in the IMAP core.
Transition = Edge


def _loops(state: POP3State, verbs: str, rfc: str) -> tuple[Transition[POP3State], ...]:
    return tuple(Transition(state, v, state, "", rfc) for v in verbs.split())


#: THE transition table (data, not if-chains). A command that has no edge from the current
#: state is answered ``-ERR <CMD> is not allowed in the <STATE> state`` and changes nothing.
TRANSITIONS: Final[tuple[Transition[POP3State], ...]] = (
    *_loops(_A, "CAPA", "RFC 2449 §5"),
    Transition(_A, "USER", _A, "", "RFC 1939 §7"),
    Transition(_A, "PASS", _T, "+OK", "RFC 1939 §7"),
    Transition(_A, "PASS", _A, "-ERR", "RFC 1939 §7"),
    Transition(_A, "AUTH", _T, "+OK", "RFC 5034 §4"),
    Transition(_A, "AUTH", _A, "-ERR", "RFC 5034 §4"),
    Transition(_A, "STLS", _H, "+OK", "RFC 2595 §4"),
    Transition(_A, "STLS", _A, "-ERR", "RFC 2595 §4"),
    Transition(_A, "QUIT", _C, "", "RFC 1939 §6"),
    Transition(_A, "too-many-auth-failures", _C, "", "RFC 1939 §13 (policy)"),
    Transition(_H, "tls-established", _A, "", "RFC 2595 §4"),
    Transition(_H, "tls-failed", _C, "", "RFC 2595 §4"),
    *_loops(_T, "STAT LIST UIDL RETR TOP DELE RSET NOOP", "RFC 1939 §5, §7"),
    *_loops(_T, "CAPA", "RFC 2449 §5"),
    Transition(_T, "QUIT", _U, "", "RFC 1939 §6"),
    Transition(_U, "update-done", _C, "", "RFC 1939 §6"),
    *(Transition(s, "too-many-errors", _C, "", "policy") for s in (_A, _T)),
    *(Transition(s, "tls-failed", _C, "", "RFC 8446 §6 (alert)") for s in (_A, _T)),
    *(Transition(s, "peer-closed", _C, "", "RFC 1939 §6 (no UPDATE)") for s in (_A, _T, _H)),
    *(Transition(s, "disconnect", _C, "", "RFC 1939 §3 (autologout)") for s in (_A, _T, _H)),
)

_TABLE: Final = EdgeTable[POP3State](TRANSITIONS)
_VERBS: Final[frozenset[str]] = _TABLE.verbs





#: Syntax of each command: (fewest arguments, most arguments, usage). USER and PASS take
#: the rest of the line (RFC 1939 §7: a password may contain spaces).
_SYNTAX: Final[dict[str, tuple[int, int, str]]] = {
    "CAPA": (0, 0, "CAPA"),
    "AUTH": (0, 2, "AUTH [mechanism [initial-response]]"),
    "STLS": (0, 0, "STLS"),
    "QUIT": (0, 0, "QUIT"),
    "STAT": (0, 0, "STAT"),
    "LIST": (0, 1, "LIST [msg]"),
    "UIDL": (0, 1, "UIDL [msg]"),
    "RETR": (1, 1, "RETR msg"),
    "TOP": (2, 2, "TOP msg n"),
    "DELE": (1, 1, "DELE msg"),
    "RSET": (0, 0, "RSET"),
    "NOOP": (0, 0, "NOOP"),
}

#: SASL mechanisms the POP3 AUTH command knows (RFC 5034 §6: the CAPA "SASL" line).
POP3_SASL_MECHANISMS: Final = ("PLAIN",)

#: Commands whose argument is a secret: never kept in an event or its repr.
_SECRET_VERBS: Final = frozenset({"PASS", "AUTH", "APOP"})


# --- Events ------------------------------------------------------------------------------
# The shared vocabulary of the cores (simsmtp.protocol.events): every event is a
# ConnectionEvent with state_before/state_after; a server's answer is its ``reply``; TLS and
# the end of the connection are the very events the SMTP and IMAP cores give.


@dataclass(frozen=True)
class POP3Reply:
    """A POP3 status line (RFC 1939 §3): ``+OK text``, ``-ERR text``, or the SASL
    continuation ``+ `` (RFC 5034 §4). A multi-line body follows on the wire, not here."""

    ok: bool
    text: str = ""
    continuation: bool = False

    @property
    def status(self) -> str:
        """``+OK``, ``-ERR`` or ``+``."""
        return "+" if self.continuation else "+OK" if self.ok else "-ERR"

    def __str__(self) -> str:
        if self.continuation:
            return "+ "
        return f"{self.status} {self.text}" if self.text else self.status


@dataclass(frozen=True, kw_only=True)
class ConnectionOpened(ConnectionEvent[POP3State]):
    """The greeting was queued (``+OK <text>``, RFC 1939 §4)."""

    reply: POP3Reply


@dataclass(frozen=True, kw_only=True)
class CommandReceived(ConnectionEvent[POP3State]):
    """One command line was read and answered.

    Attributes:
        command: the verb in upper case (``""`` for a line that could not be parsed, or a
            SASL response line).
        line: the line as read, without CRLF; secrets masked (``PASS ***``,
            ``AUTH PLAIN ***``; a SASL response line is ``***``).
        reply: the status line of the answer.
        body_lines: the lines of a multi-line reply after the status line, as sent (still
            dot-stuffed, without the final ``.``); a message (RETR, TOP) counts its lines
            in ``body_line_count`` only.
        body_line_count: how many lines the multi-line body had (0: none).
    """

    command: str
    line: bytes
    reply: POP3Reply
    body_lines: tuple[str, ...] = ()
    body_line_count: int = 0

    @property
    def ok(self) -> bool:
        """True for a ``+OK`` reply."""
        return self.reply.ok and not self.reply.continuation


#: Every event the POP3 core gives (``next_event()``): narrow with ``isinstance``.
POP3Event: TypeAlias = (ConnectionOpened | CommandReceived | TLSStarted[POP3State]
                        | TLSFailed[POP3State] | PlaintextDiscarded[POP3State]
                        | ConnectionClosed[POP3State])


@dataclass(frozen=True)
class Disconnect:
    """What :meth:`POP3ServerConnection.send` takes: say ``-ERR <text>`` and close.

    For an autologout timer (RFC 1939 §3) or a server shutdown.
    """

    text: str = "Server shutting down."


@dataclass(frozen=True)
class POP3Config:
    """How a POP3 server behaves.

    Attributes:
        hostname: the server's name, used in the greeting and the sign-off.
        greeting: the greeting text after ``+OK `` (e.g. ``"Dovecot ready."``); default
            ``"<hostname> POP3 server ready"``.
        allow_plaintext_auth: accept USER/PASS without TLS (for teaching sniffing).
        tls_context: a server ``ssl.SSLContext``; STLS is offered only when set.
        implicit_tls: POP3S (RFC 8314 §3.3, port 995): TLS from the first byte; needs
            ``tls_context``.
        implementation: text for the CAPA IMPLEMENTATION line (RFC 2449 §6.9), or None.
        max_line_length: command line limit incl. CRLF (RFC 2449 §4: 255).
        max_errors: ``-ERR`` replies before ``-ERR too many errors`` and close.
        max_auth_failures: failed logins before the connection closes.
    """

    hostname: str = "localhost"
    greeting: str | None = None
    allow_plaintext_auth: bool = False
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    implementation: str | None = None
    max_line_length: int = MAX_LINE_LENGTH
    max_errors: int = MAX_ERRORS
    max_auth_failures: int = MAX_AUTH_FAILURES


@dataclass(frozen=True)
class _Reply:
    ok: bool
    text: str = ""
    body: bytes | None = None  # a multi-line body, byte-stuffed and terminated
    auth_failure: bool = False
    continuation: bool = False

    @property
    def public(self) -> POP3Reply:
        return POP3Reply(self.ok, self.text, self.continuation)

    @property
    def first_line(self) -> str:
        return str(self.public)


def _ok(text: str = "", body: bytes | None = None) -> _Reply:
    return _Reply(True, text, body)


def _err(text: str) -> _Reply:
    return _Reply(False, text)


def byte_stuff(data: bytes) -> bytes:
    """A CRLF message as a POP3 multi-line body: dot-stuffed and ended by ``.CRLF``.

    RFC 1939 §3: a line starting with "." gets one more "."; the body ends with
    ``CRLF.CRLF``.
    """
    if data and not data.endswith(CRLF):
        data += CRLF
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def _mask_line(text: str) -> str:
    """Hide whatever follows a word containing PASS/AUTH/APOP, wherever it is in the line
    (`` PASS x`` or ``!PASS x`` is not a PASS command, but ``x`` is still a secret)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        upper = word.upper()
        if any(v in upper for v in _SECRET_VERBS) and any(words[i + 1:]):
            return " ".join([*words[:i + 1], "***"])
    return text


def _parse_line(raw: bytes) -> tuple[str, str] | str:
    """Split a command line into (VERB, rest), or return the error text."""
    body = raw[:-2]  # framing guarantees the CRLF
    if b"\n" in body:
        # RFC 1939 §3: lines end with CRLF; a bare LF is rejected (strict policy)
        return "Bare LF in command line: lines must end with CRLF"
    if b"\r" in body:
        return "Bare CR in command line: lines must end with CRLF"
    if any(b < 0x20 or b == 0x7F for b in body):
        # RFC 1939 §3: keywords and arguments are printable ASCII.
        return "Invalid characters in command line"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "Invalid characters in command line"
    verb, _, rest = text.partition(" ")
    return verb.upper(), rest


# --- The connection ----------------------------------------------------------------------


class POP3ServerConnection(TableConnection[POP3State, POP3Event]):
    """The server side of one POP3 connection, without I/O, on the cores' shared base
    (:class:`~simsmtp.protocol.connection.SansIOConnection`).

    Args:
        authenticator: ``(user, password) -> Mailbox | None``.
        config: behaviour; default :class:`POP3Config()` (plaintext login refused).

    The greeting is queued at once (POP3S: after the handshake): :meth:`data_to_send` has
    it, and the first :meth:`next_event` returns :class:`ConnectionOpened`.
    """

    CLOSED_STATE = POP3State.CLOSED
    TABLE = _TABLE

    def __init__(self, authenticator: Authenticator, config: POP3Config | None = None) -> None:
        super().__init__()
        self.config = config or POP3Config()
        self._authenticator = authenticator
        self._state = POP3State.AUTHORIZATION
        # Complete plaintext lines not yet handled; an int stands for a too-long line.
        self._lines: deque[bytes | int] = deque()
        self._partial = bytearray()
        self._discarding = 0  # > 0: inside a too-long line, this many octets dropped
        self._cr_pending = False  # while discarding: the last byte dropped was a CR
        self._pending_close: str | None = None
        self._pending_user: str | None = None
        #: The user logged in (None before PASS succeeds).
        self.user: str | None = None
        self._mailbox: Mailbox | None = None
        self._messages: list[MessageInfo] = []
        self._deleted: set[int] = set()
        #: ``-ERR`` replies so far (failed logins not included).
        self.errors = 0
        #: Failed logins so far.
        self.auth_failures = 0
        #: A SASL exchange waits for the client's response line (the mechanism's name).
        self._sasl: str | None = None
        self._greeted = False
        if self.config.implicit_tls:
            if self.config.tls_context is None:
                raise LocalProtocolError("implicit_tls needs a tls_context")
            # RFC 8314 §3.3: POP3S: the handshake first, the greeting inside TLS
            self._state = POP3State.TLS_HANDSHAKE
            self._tls = TLSLayer(self.config.tls_context, server_side=True)
            self._tls.start()
            self._pull_tls()
        else:
            self._greet()

    def _greet(self) -> None:
        self._greeted = True
        text = self.config.greeting or f"{self.config.hostname} POP3 server ready"
        reply = POP3Reply(True, text)  # RFC 1939 §4: the greeting is a positive response
        self._write(str(reply).encode("utf-8") + CRLF)
        self._events.append(ConnectionOpened(state_before=self._state,
                                             state_after=self._state, reply=reply))

    # --- public API ---------------------------------------------------------------------

    @property
    def state(self) -> POP3State:
        """The current state (the ``state_after`` of the last event handled)."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the session is over; drain :meth:`data_to_send`, then close."""
        return self._state is POP3State.CLOSED

    @property
    def secure(self) -> bool:
        """True once TLS is up (STLS done, or POP3S)."""
        return self.tls_active

    @property
    def tls(self) -> TLSLayer | None:
        """The TLS layer after STLS (for its ``summary()``), else None."""
        return self._tls

    def send(self, event: Disconnect) -> None:
        """Say ``-ERR <text>`` unprompted and close (autologout, shutdown).

        No UPDATE happens: messages marked deleted stay (RFC 1939 §6).

        Raises:
            LocalProtocolError: the session is already closed, or ``event`` is not a
                :class:`Disconnect`.
        """
        if not isinstance(event, Disconnect):
            raise LocalProtocolError(f"a POP3 server can only send Disconnect, not {event!r}")
        if self._state is POP3State.CLOSED:
            raise LocalProtocolError("the POP3 session is already closed")
        if self._state is not POP3State.TLS_HANDSHAKE:
            self._write(f"-ERR {event.text}".encode() + CRLF)
        self._close_by("disconnect", event.text)

    # --- input: one step per next_event() -------------------------------------------------

    def _step_open(self) -> POP3Event | None:
        """One command line per call (the base handles TLS records and the end)."""
        if self._pending_close is not None:
            reason, self._pending_close = self._pending_close, None
            before = self._state
            if before is POP3State.UPDATE:
                self._state = self._next_state(before, "update-done")
            self._finish(reason, before)
            return None
        if self._state is POP3State.TLS_HANDSHAKE:
            self._in.clear()  # nothing in clear once STLS is answered (RFC 2595 §4)
            if self._eof:
                self._close_by("peer-closed", "client closed during the TLS handshake")
            return None
        if self._in:
            self._split(bytes(self._in))
            self._in.clear()
        if self._lines:
            self._handle_line(self._lines.popleft())
            return None
        if self._eof:
            self._close_by("peer-closed", "client closed the connection")
        return None

    def _feed_tls(self) -> POP3Event | None:
        """Decrypt what came in; the handshake's end is :class:`TLSStarted` (then, on
        POP3S, the greeting); a TLS failure closes."""
        assert self._tls is not None
        before = self._state
        failure = self._decrypt()
        if failure is not None:
            self._state = self._next_state(before, "tls-failed")
            self._events.append(TLSFailed(state_before=before, state_after=self._state,
                                          reason=str(failure)))
            self._finish(f"TLS failed: {failure}", self._state)
            return None
        if before is POP3State.TLS_HANDSHAKE and self._tls.handshake_complete:
            self._state = self._next_state(POP3State.TLS_HANDSHAKE, "tls-established")
            self._events.append(TLSStarted(state_before=POP3State.TLS_HANDSHAKE,
                                           state_after=self._state,
                                           version=self._tls.version,
                                           cipher=self._tls.cipher))
            if not self._greeted:
                self._greet()  # POP3S: the greeting is the first thing inside TLS
        return None

    # --- input framing ------------------------------------------------------------------

    def _end_of_line(self, data: bytes, pos: int) -> int:
        """Index just past the next CRLF in ``data[pos:]`` (a CR may have ended the
        previous read), or -1. Only CRLF ends a line (RFC 1939 §3)."""
        cr_before = self._cr_pending if self._discarding else self._partial.endswith(b"\r")
        if cr_before and data.startswith(b"\n", pos):
            return pos + 1
        found = data.find(CRLF, pos)
        return found + 2 if found >= 0 else -1

    def _split(self, data: bytes) -> None:
        """Cut plaintext into CRLF lines; drop the bytes of a too-long line as they come."""
        limit = self.config.max_line_length
        pos, end = 0, len(data)
        while pos < end:
            eol = self._end_of_line(data, pos)
            if self._discarding:
                if eol < 0:
                    self._discarding += end - pos
                    self._cr_pending = data.endswith(b"\r")
                    return
                self._lines.append(self._discarding + eol - pos)
                self._discarding = 0
                pos = eol
                continue
            if eol < 0:
                if len(self._partial) + end - pos > limit:
                    # RFC 2449 §4: already longer than any valid line; stop keeping it.
                    self._discarding = len(self._partial) + end - pos
                    self._cr_pending = data.endswith(b"\r")
                    self._partial.clear()
                else:
                    self._partial += data[pos:]
                return
            size = len(self._partial) + eol - pos
            if size > limit:
                self._lines.append(size)
            else:
                self._lines.append(bytes(self._partial) + data[pos:eol])
            self._partial.clear()
            pos = eol

    # --- closing ------------------------------------------------------------------------

    def _close_by(self, trigger: str, reason: str) -> None:
        before = self._state
        self._state = self._next_state(before, trigger)
        self._finish(reason, before)

    def _finish(self, reason: str, before: POP3State) -> None:
        self._state = POP3State.CLOSED
        if self._tls is not None and self._tls.handshake_complete and not self._tls.closed:
            self._tls.close()  # close_notify, best effort
            self._pull_tls()
        self._lines.clear()
        self._partial.clear()
        self._in.clear()
        self._cipher.clear()
        self._discarding = 0
        self._mailbox = None
        self._closed_reported = True
        self._events.append(ConnectionClosed(state_before=before, state_after=self._state,
                                             reason=reason))

    # --- commands -----------------------------------------------------------------------

    def _handle_line(self, raw: bytes | int) -> None:
        before = self._state
        verb, argument = "", ""
        shown = b""
        trigger: str | None = None
        if self._sasl is not None and not isinstance(raw, int):
            mechanism, self._sasl = self._sasl, None
            argument = "***"  # the SASL response carries the credentials: never kept
            verb = ""
            reply = self._sasl_response(mechanism, raw[:-2])
            trigger = "AUTH"
        elif isinstance(raw, int):
            self._sasl = None
            shown = f"<line too long: {raw} octets>".encode()
            reply = _err("line too long")  # RFC 2449 §4: 255 octets incl. CRLF
        else:
            parsed = _parse_line(raw)
            if isinstance(parsed, str):
                shown = _mask_line(raw[:512].rstrip(b"\r\n").decode(
                    "utf-8", "backslashreplace")).encode("utf-8", "backslashreplace")
                reply = _err(parsed)
            else:
                verb, rest = parsed
                if verb == "AUTH" and rest:
                    mech, _, initial = rest.partition(" ")
                    argument = f"{mech} ***" if initial else mech
                else:
                    argument = ("***" if verb in _SECRET_VERBS and rest
                                else _mask_line(f"{verb} {rest}").partition(" ")[2])
                if verb != "PASS":
                    self._pending_user = None  # RFC 1939 §7: PASS only right after USER
                reply, trigger = self._dispatch(before, verb, rest)
        if reply.continuation:
            pass  # a SASL continuation: neither success nor error yet
        elif not reply.ok:
            if reply.auth_failure:
                if self.auth_failures >= self.config.max_auth_failures:
                    reply = _err("[AUTH] Authentication failed. Too many failures, bye.")
                    trigger = "too-many-auth-failures"
            elif verb != "QUIT":  # a failed UPDATE still ends the session normally
                self.errors += 1
                if self.errors >= self.config.max_errors:
                    reply = _err("too many errors")
                    trigger = "too-many-errors"
        after = before
        if trigger is not None:
            after = self._next_state(before, trigger, "+OK" if reply.ok else "-ERR")
        self._write(reply.first_line.encode("utf-8") + CRLF + (reply.body or b""))
        self._state = after
        if not shown:
            shown = (f"{verb} {argument}".rstrip() if verb else argument).encode("utf-8")
        lines: tuple[str, ...] = ()
        if reply.body:
            lines = tuple(reply.body.decode("utf-8", "replace").split("\r\n")[:-2])
        self._events.append(CommandReceived(
            state_before=before, state_after=after, command=verb, line=shown,
            reply=reply.public, body_lines=() if verb in ("RETR", "TOP") else lines,
            body_line_count=len(lines)))
        if after is POP3State.TLS_HANDSHAKE:
            self._start_tls()
        elif after is POP3State.UPDATE:
            self._pending_close = "QUIT"  # UPDATE -> CLOSED at the next step
        elif after is POP3State.CLOSED:
            self._finish(reply.text if not reply.ok else "QUIT", after)

    def _dispatch(self, state: POP3State, verb: str, rest: str) -> tuple[_Reply, str | None]:
        """Check the verb against the table and the syntax, then run it."""
        if verb not in _VERBS:
            return _err("Unknown command."), None
        allowed = self.TABLE.states_allowing(verb)
        if state not in allowed:
            where = " or ".join(s.name for s in allowed)
            return _err(f"{verb} is not allowed in the {state.name} state (only in {where})"), None
        if verb == "USER":
            return self._user_cmd(rest), verb
        if verb == "PASS":
            return self._pass_cmd(rest), verb
        if verb == "AUTH":
            auth = self._auth_cmd(rest)
            # the mechanism list and the "+ " continuation change no state
            return auth, "AUTH" if rest and not auth.continuation else None
        low, high, usage = _SYNTAX[verb]
        args = rest.split()
        if not low <= len(args) <= high or (rest and not args):
            return _err(f"Syntax error, usage: {usage}"), None
        handler = getattr(self, f"_cmd_{verb.lower()}")
        reply: _Reply = handler(state, args)
        return reply, verb

    def _plaintext_ok(self) -> bool:
        return self.config.allow_plaintext_auth or self.secure

    def _user_cmd(self, name: str) -> _Reply:
        if not self._plaintext_ok():
            return _err(PLAINTEXT_DISALLOWED)  # RFC 2595 §2.3, Dovecot's wording
        if not name:
            return _err("No username given.")
        self._pending_user = name
        return _ok()

    def _pass_cmd(self, password: str) -> _Reply:
        if not self._plaintext_ok():
            return _err(PLAINTEXT_DISALLOWED)
        user, self._pending_user = self._pending_user, None
        if user is None:
            return _err("No username given.")  # RFC 1939 §7: PASS follows USER
        return self._login(user, password)

    def _login(self, user: str, password: str, greeting: str | None = None) -> _Reply:
        """Check the credentials and open the maildrop (PASS and AUTH)."""
        try:
            box = self._authenticator(user, password)
        except MaildropInUse as exc:
            return _err(f"[IN-USE] {exc}")  # RFC 2449 §8.1.2: the maildrop is locked
        except MailboxError as exc:
            return _err(f"[SYS/TEMP] {exc}")  # RFC 3206 §4
        if box is None:
            self.auth_failures += 1
            # RFC 3206 §5: [AUTH] = the credentials are wrong
            return _Reply(False, "[AUTH] Authentication failed.", auth_failure=True)
        try:
            messages = list(box.list_messages())
        except MailboxError:
            return _err("[SYS/TEMP] unable to lock maildrop")  # RFC 1939 §7, RFC 3206 §4
        self.user, self._mailbox, self._messages = user, box, messages
        self._deleted = set()
        count, size = self._totals()
        # RFC 1939 §7 example: "+OK mrose's maildrop has 2 messages (320 octets)"
        return _ok(greeting or f"{user}'s maildrop has {count} messages ({size} octets)")

    def _auth_cmd(self, rest: str) -> _Reply:
        """``AUTH [mechanism [initial-response]]`` (RFC 5034 §4)."""
        args = rest.split(" ")
        if not rest:
            # no mechanism: the list, as Dovecot answers (an older Outlook habit)
            return _ok("", self._listing(list(POP3_SASL_MECHANISMS)))
        if not self._plaintext_ok():
            return _err(PLAINTEXT_DISALLOWED)  # RFC 5034 §4 with RFC 2595 §2.3's rule
        mechanism = args[0].upper()
        if mechanism not in POP3_SASL_MECHANISMS:
            return _err("Unsupported authentication mechanism.")  # Dovecot's text
        if len(args) == 1:
            self._sasl = mechanism
            return _Reply(True, continuation=True)  # RFC 5034 §4: "+" SP [base64] CRLF
        return self._sasl_response(mechanism, args[1].encode("ascii", "replace"))

    def _sasl_response(self, mechanism: str, line: bytes) -> _Reply:
        """The base64 response of a SASL exchange (RFC 5034 §4, PLAIN of RFC 4616)."""
        from .sasl import Credentials, PlainServer, SASLError, decode_response

        try:
            decoded = decode_response(line.decode("ascii"))
            result = PlainServer().step(decoded)
        except UnicodeDecodeError:
            return _err("[AUTH] Invalid base64 in response")
        except SASLError as exc:
            if exc.reason == "auth_aborted":
                return _err("Authentication aborted by client.")  # RFC 5034 §4: "*"
            if exc.reason == "auth_bad_base64":
                return _err("[AUTH] Invalid base64 in response")  # Dovecot's text
            self.auth_failures += 1
            return _Reply(False, "[AUTH] Authentication failed.", auth_failure=True)
        assert isinstance(result, Credentials)
        if result.authzid and result.authzid != result.username:
            self.auth_failures += 1  # no proxy authorization (RFC 4616 §2)
            return _Reply(False, "[AUTH] Authentication failed.", auth_failure=True)
        return self._login(result.username, result.password, greeting="Logged in.")

    def _start_tls(self) -> None:
        """After ``+OK Begin TLS negotiation``: drop buffered plaintext, start the server
        side of the handshake (RFC 2595 §4; CVE-2021-38084)."""
        assert self.config.tls_context is not None
        octets, lines = 0, []
        for item in self._lines:
            if isinstance(item, int):
                octets += item
                lines.append(f"<line too long: {item} octets>")
            else:
                octets += len(item)
                text = item.decode("ascii", "backslashreplace").rstrip("\r\n")
                lines.append(_mask_line(text))
        if self._partial or self._discarding:
            octets += len(self._partial) + self._discarding
            lines.append(_mask_line(self._partial.decode("ascii", "backslashreplace")))
        self._lines.clear()
        self._partial.clear()
        self._discarding = 0
        self._pending_user = None
        if octets:
            # what the lines said, secrets masked (PASS ***): never a password in an event
            said = "".join(line + "\r\n" for line in lines).encode("utf-8", "backslashreplace")
            self._events.append(PlaintextDiscarded(state_before=self._state,
                                                   state_after=self._state, data=said))
        self._tls = TLSLayer(self.config.tls_context, server_side=True)
        self._tls.start()
        self._pull_tls()

    # --- TRANSACTION helpers --------------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        live = [m for n, m in enumerate(self._messages, 1) if n not in self._deleted]
        return len(live), sum(m.size for m in live)

    def _msg(self, arg: str) -> int | _Reply:
        """A message number that exists and is not deleted, or the ``-ERR`` reply."""
        if not (arg.isascii() and arg.isdigit()):
            return _err(f"Invalid message number: {arg}")
        n = int(arg)
        if not 1 <= n <= len(self._messages):
            # RFC 1939 §5 example: "-ERR no such message, only 2 messages in maildrop"
            return _err(f"no such message, only {len(self._messages)} messages in maildrop")
        if n in self._deleted:
            return _err(f"message {n} already deleted")  # RFC 1939 §5 (DELE example)
        return n

    def _get(self, n: int) -> bytes | _Reply:
        assert self._mailbox is not None
        try:
            return to_crlf(self._mailbox.get(self._messages[n - 1].uid))
        except MailboxError:
            return _err(f"[SYS/TEMP] message {n} is unavailable")  # RFC 3206 §4

    @staticmethod
    def _listing(lines: Sequence[str]) -> bytes:
        return byte_stuff("".join(line + "\r\n" for line in lines).encode("utf-8"))

    # Each _cmd_* gets the state and the split arguments (syntax already checked).

    def _cmd_capa(self, state: POP3State, args: list[str]) -> _Reply:
        # RFC 2449 §6 (CAPA, TOP, UIDL, RESP-CODES, PIPELINING); RFC 3206 §6 (AUTH-RESP-CODE)
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._plaintext_ok():
            caps.append("USER")  # RFC 2449 §6.2
            caps.append("SASL " + " ".join(POP3_SASL_MECHANISMS))  # RFC 5034 §6
        if state is POP3State.AUTHORIZATION and self.config.tls_context and not self.secure:
            caps.append("STLS")  # RFC 2595 §4
        if self.config.implementation:
            caps.append(f"IMPLEMENTATION {self.config.implementation}")  # RFC 2449 §6.9
        return _ok("Capability list follows", self._listing(caps))

    def _cmd_stls(self, state: POP3State, args: list[str]) -> _Reply:
        if self.config.tls_context is None:
            return _err("TLS support isn't enabled.")
        if self.secure:
            return _err("TLS is already active.")  # RFC 2595 §4: only once
        return _ok("Begin TLS negotiation")  # RFC 2595 §4

    def _cmd_quit(self, state: POP3State, args: list[str]) -> _Reply:
        host = self.config.hostname
        if state is POP3State.AUTHORIZATION:
            return _ok(f"{host} POP3 server signing off")  # RFC 1939 §6
        assert self._mailbox is not None
        uids = [self._messages[n - 1].uid for n in sorted(self._deleted)]
        if uids:
            try:
                self._mailbox.delete(uids)
            except MailboxError:
                return _err("some deleted messages not removed")  # RFC 1939 §6
        left = len(self._messages) - len(self._deleted)
        tail = f"({left} messages left)" if left else "(maildrop empty)"
        return _ok(f"{host} POP3 server signing off {tail}")  # RFC 1939 §6

    def _cmd_stat(self, state: POP3State, args: list[str]) -> _Reply:
        count, size = self._totals()
        return _ok(f"{count} {size}")  # RFC 1939 §5: "+OK nn mm"

    def _cmd_list(self, state: POP3State, args: list[str]) -> _Reply:
        if args:
            n = self._msg(args[0])
            return n if isinstance(n, _Reply) else _ok(f"{n} {self._messages[n - 1].size}")
        count, size = self._totals()
        lines = [f"{n} {m.size}" for n, m in enumerate(self._messages, 1)
                 if n not in self._deleted]
        return _ok(f"{count} messages ({size} octets)", self._listing(lines))  # RFC 1939 §5

    def _cmd_uidl(self, state: POP3State, args: list[str]) -> _Reply:
        if args:
            n = self._msg(args[0])
            return n if isinstance(n, _Reply) else _ok(f"{n} {self._messages[n - 1].uid}")
        lines = [f"{n} {m.uid}" for n, m in enumerate(self._messages, 1)
                 if n not in self._deleted]
        return _ok("unique-id listing follows", self._listing(lines))  # RFC 1939 §7

    def _cmd_retr(self, state: POP3State, args: list[str]) -> _Reply:
        n = self._msg(args[0])
        if isinstance(n, _Reply):
            return n
        data = self._get(n)
        if isinstance(data, _Reply):
            return data
        return _ok(f"{len(data)} octets", byte_stuff(data))  # RFC 1939 §5

    def _cmd_top(self, state: POP3State, args: list[str]) -> _Reply:
        n = self._msg(args[0])
        if isinstance(n, _Reply):
            return n
        if not (args[1].isascii() and args[1].isdigit()):
            # RFC 1939 §7: "n" must be a non-negative number
            return _err(f"Invalid number of lines: {args[1]}")
        data = self._get(n)
        if isinstance(data, _Reply):
            return data
        # RFC 1939 §7: the headers, the blank line, then n lines of the body.
        if data.startswith(CRLF):
            cut = 2
        else:
            sep = data.find(b"\r\n\r\n")
            cut = len(data) if sep < 0 else sep + 4
        head, body = data[:cut], data[cut:]
        pos = 0
        for _ in range(int(args[1])):
            nxt = body.find(CRLF, pos)
            if nxt < 0:
                pos = len(body)
                break
            pos = nxt + 2
        return _ok("top of message follows", byte_stuff(head + body[:pos]))

    def _cmd_dele(self, state: POP3State, args: list[str]) -> _Reply:
        n = self._msg(args[0])
        if isinstance(n, _Reply):
            return n
        self._deleted.add(n)  # RFC 1939 §5: marked now, removed in UPDATE
        return _ok(f"message {n} deleted")

    def _cmd_rset(self, state: POP3State, args: list[str]) -> _Reply:
        self._deleted.clear()  # RFC 1939 §5: unmark all
        count, size = self._totals()
        return _ok(f"maildrop has {count} messages ({size} octets)")

    def _cmd_noop(self, state: POP3State, args: list[str]) -> _Reply:
        return _ok()  # RFC 1939 §5


#: The state machine as data (for a notebook's state diagram).
transitions = POP3ServerConnection.transitions
#: The commands a client may send in a state, in table order.
allowed_commands = POP3ServerConnection.allowed_commands
