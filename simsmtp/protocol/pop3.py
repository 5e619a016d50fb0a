"""The sans-IO POP3 server core (RFC 1939, CAPA of RFC 2449, STLS of RFC 2595).

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

Every state change is in ONE table, :data:`TRANSITIONS` (see :func:`transitions`); the
"not allowed in state X" replies are derived from it.

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
from typing import Any, Final

from .errors import LocalProtocolError, TLSFailure
from .events import NEED_DATA
from .mailbox import Authenticator, Mailbox, MailboxError, MessageInfo, to_crlf
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


@dataclass(frozen=True)
class Transition:
    """One edge of the POP3 state machine.

    Attributes:
        state: where the session is.
        trigger: a command verb (upper case) or a pseudo-event (lower case, e.g.
            ``tls-established``, ``peer-closed``, ``too-many-errors``).
        target: where the session goes.
        outcome: ``"+OK"`` or ``"-ERR"`` when the edge depends on the reply, ``""`` if not.
        rfc: where the rule comes from.
    """

    state: POP3State
    trigger: str
    target: POP3State
    outcome: str = ""
    rfc: str = ""


def _loops(state: POP3State, verbs: str, rfc: str) -> tuple[Transition, ...]:
    return tuple(Transition(state, v, state, "", rfc) for v in verbs.split())


#: THE transition table (data, not if-chains). A command that has no edge from the current
#: state is answered ``-ERR <CMD> is not allowed in the <STATE> state`` and changes nothing.
TRANSITIONS: Final[tuple[Transition, ...]] = (
    *_loops(_A, "CAPA", "RFC 2449 §5"),
    Transition(_A, "USER", _A, "", "RFC 1939 §7"),
    Transition(_A, "PASS", _T, "+OK", "RFC 1939 §7"),
    Transition(_A, "PASS", _A, "-ERR", "RFC 1939 §7"),
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

_EDGES: Final[dict[tuple[POP3State, str, str], POP3State]] = {
    (t.state, t.trigger, t.outcome): t.target for t in TRANSITIONS
}
_VERBS: Final[frozenset[str]] = frozenset(t.trigger for t in TRANSITIONS if t.trigger.isupper())


def transitions() -> tuple[Transition, ...]:
    """The state machine as data, for a notebook's state diagram."""
    return TRANSITIONS


def allowed_commands(state: POP3State) -> list[str]:
    """The commands a client may send in ``state``, in table order."""
    seen: list[str] = []
    for t in TRANSITIONS:
        if t.state is state and t.trigger.isupper() and t.trigger not in seen:
            seen.append(t.trigger)
    return seen


def _next_state(state: POP3State, trigger: str, outcome: str = "") -> POP3State:
    target = _EDGES.get((state, trigger, outcome)) or _EDGES.get((state, trigger, ""))
    if target is None:
        raise LocalProtocolError(f"no transition for {trigger!r} in state {state.name}")
    return target


#: Syntax of each command: (fewest arguments, most arguments, usage). USER and PASS take
#: the rest of the line (RFC 1939 §7: a password may contain spaces).
_SYNTAX: Final[dict[str, tuple[int, int, str]]] = {
    "CAPA": (0, 0, "CAPA"),
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

#: Commands whose argument is a secret: never kept in an event or its repr.
_SECRET_VERBS: Final = frozenset({"PASS", "AUTH", "APOP"})


# --- Events ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class POP3Event:
    """Base of the POP3 events; each says which state it left and which it reached."""

    state_before: POP3State
    state_after: POP3State


@dataclass(frozen=True, kw_only=True)
class ConnectionOpened(POP3Event):
    """The greeting was queued (``response`` is the line, without CRLF)."""

    response: str


@dataclass(frozen=True, kw_only=True)
class CommandReceived(POP3Event):
    """One command line was read and answered.

    Attributes:
        command: the verb in upper case ("" for a line that could not be parsed).
        argument: the rest of the line; ``"***"`` for PASS (never the password).
        response_first_line: the reply's first line, without CRLF.
        response_lines: the lines of a multi-line reply after the first, as sent (still
            dot-stuffed, without the final ``.``); a message (RETR, TOP) counts its lines
            in ``response_line_count`` only.
        response_line_count: how many lines the multi-line body had (0: none).
    """

    command: str
    argument: str
    response_first_line: str
    response_lines: tuple[str, ...] = ()
    response_line_count: int = 0

    @property
    def ok(self) -> bool:
        """True for a ``+OK`` reply."""
        return self.response_first_line.startswith("+OK")


@dataclass(frozen=True, kw_only=True)
class TLSStarted(POP3Event):
    """The STLS handshake finished; the session is back in AUTHORIZATION."""

    version: str | None
    cipher: str | None


@dataclass(frozen=True, kw_only=True)
class TLSFailed(POP3Event):
    """The TLS handshake (or a later TLS record) failed; the connection closes."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class PlaintextDiscarded(POP3Event):
    """Plaintext that was buffered behind STLS was thrown away (CVE-2021-38084).

    Attributes:
        octets: how many bytes were dropped.
        lines: what they said, one entry per line, secrets masked (``PASS ***``).
    """

    octets: int
    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ConnectionClosed(POP3Event):
    """The session is over (QUIT, EOF, limits, TLS failure or :class:`Disconnect`)."""

    reason: str


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
        implementation: text for the CAPA IMPLEMENTATION line (RFC 2449 §6.9), or None.
        max_line_length: command line limit incl. CRLF (RFC 2449 §4: 255).
        max_errors: ``-ERR`` replies before ``-ERR too many errors`` and close.
        max_auth_failures: failed logins before the connection closes.
    """

    hostname: str = "localhost"
    greeting: str | None = None
    allow_plaintext_auth: bool = False
    tls_context: ssl.SSLContext | None = None
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

    @property
    def first_line(self) -> str:
        status = "+OK" if self.ok else "-ERR"
        return f"{status} {self.text}" if self.text else status


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


class POP3ServerConnection:
    """The server side of one POP3 connection, without I/O.

    Args:
        authenticator: ``(user, password) -> Mailbox | None``.
        config: behaviour; default :class:`POP3Config()` (plaintext login refused).

    The greeting is queued at once: :meth:`data_to_send` has it, and the first
    :meth:`next_event` returns :class:`ConnectionOpened`.
    """

    def __init__(self, authenticator: Authenticator, config: POP3Config | None = None) -> None:
        self.config = config or POP3Config()
        self._authenticator = authenticator
        self._state = POP3State.AUTHORIZATION
        self._out = bytearray()
        self._events: deque[POP3Event] = deque()
        # Complete plaintext lines not yet handled; an int stands for a too-long line.
        self._lines: deque[bytes | int] = deque()
        self._partial = bytearray()
        self._discarding = 0  # > 0: inside a too-long line, this many octets dropped
        self._cr_pending = False  # while discarding: the last byte dropped was a CR
        self._cipher = bytearray()
        self._eof = False
        self._pending_close: str | None = None
        self._tls: TLSLayer | None = None
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
        text = self.config.greeting or f"{self.config.hostname} POP3 server ready"
        greeting = f"+OK {text}"  # RFC 1939 §4: the greeting is a positive response
        self._write(greeting.encode("utf-8") + CRLF)
        self._events.append(ConnectionOpened(state_before=_A, state_after=_A, response=greeting))

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
        """True once STLS has completed."""
        return self._tls is not None and self._tls.handshake_complete

    @property
    def tls(self) -> TLSLayer | None:
        """The TLS layer after STLS (for its ``summary()``), else None."""
        return self._tls

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means the client closed.

        Data after the end of the session is ignored.
        """
        if self._state is POP3State.CLOSED or self._eof:
            return
        if not data:
            self._eof = True
        elif self._tls is not None:
            self._cipher += data
        else:
            self._split(data)

    def next_event(self) -> POP3Event | Any:
        """Handle input up to the next event and return it, or :data:`NEED_DATA`.

        ``NEED_DATA`` is the sentinel shared with the SMTP cores
        (``simsmtp.protocol.events.NEED_DATA``); compare with ``is``.

        One command line is handled per call. After :class:`ConnectionClosed`, returns
        :data:`NEED_DATA` for ever (check :attr:`closed`).
        """
        if self._events:
            return self._events.popleft()
        if self._state is POP3State.CLOSED:
            return NEED_DATA
        if self._pending_close is not None:
            reason, self._pending_close = self._pending_close, None
            before = self._state
            if before is POP3State.UPDATE:
                self._state = _next_state(before, "update-done")
            self._finish(reason, before)
            return self._events.popleft()
        if self._tls is not None and self._cipher:
            self._pump_tls()
            if self._events:
                return self._events.popleft()
        if self._state is POP3State.TLS_HANDSHAKE:
            if self._eof:
                self._close_by("peer-closed", "client closed during the TLS handshake")
                return self._events.popleft()
            return NEED_DATA
        if self._lines:
            self._handle_line(self._lines.popleft())
            return self._events.popleft()
        if self._eof:
            self._close_by("peer-closed", "client closed the connection")
            return self._events.popleft()
        return NEED_DATA

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

    def data_to_send(self) -> bytes:
        """The bytes to put on the wire now (TLS records once STLS is done)."""
        data = bytes(self._out)
        self._out.clear()
        return data

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

    def _pump_tls(self) -> None:
        assert self._tls is not None
        data = bytes(self._cipher)
        self._cipher.clear()
        try:
            plaintext = self._tls.receive(data)
        except TLSFailure as exc:
            self._flush_tls()
            before = self._state
            self._state = _next_state(before, "tls-failed")
            self._events.append(TLSFailed(state_before=before, state_after=self._state,
                                          reason=str(exc)))
            self._finish(f"TLS failed: {exc}", self._state)
            return
        self._flush_tls()
        if self._state is POP3State.TLS_HANDSHAKE and self._tls.handshake_complete:
            self._state = _next_state(POP3State.TLS_HANDSHAKE, "tls-established")
            self._events.append(TLSStarted(state_before=POP3State.TLS_HANDSHAKE,
                                           state_after=self._state,
                                           version=self._tls.version,
                                           cipher=self._tls.cipher))
        if plaintext:
            self._split(plaintext)
        if self._tls.closed:
            self._eof = True  # close_notify from the client

    # --- output -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._tls is None:
            self._out += data
        elif self._tls.handshake_complete and not self._tls.closed:
            self._tls.send(data)
            self._flush_tls()
        # else: after STLS nothing is ever written in plaintext; the reply is dropped.

    def _flush_tls(self) -> None:
        if self._tls is not None:
            self._out += self._tls.data_to_send()

    # --- closing ------------------------------------------------------------------------

    def _close_by(self, trigger: str, reason: str) -> None:
        before = self._state
        self._state = _next_state(before, trigger)
        self._finish(reason, before)

    def _finish(self, reason: str, before: POP3State) -> None:
        self._state = POP3State.CLOSED
        if self._tls is not None and self._tls.handshake_complete:
            self._tls.close()  # close_notify, best effort
            self._flush_tls()
        self._lines.clear()
        self._partial.clear()
        self._cipher.clear()
        self._discarding = 0
        self._mailbox = None
        self._events.append(ConnectionClosed(state_before=before, state_after=self._state,
                                             reason=reason))

    # --- commands -----------------------------------------------------------------------

    def _handle_line(self, raw: bytes | int) -> None:
        before = self._state
        verb, argument = "", ""
        trigger: str | None = None
        if isinstance(raw, int):
            reply = _err("line too long")  # RFC 2449 §4: 255 octets incl. CRLF
        else:
            parsed = _parse_line(raw)
            if isinstance(parsed, str):
                reply = _err(parsed)
            else:
                verb, rest = parsed
                argument = ("***" if verb in _SECRET_VERBS and rest
                            else _mask_line(f"{verb} {rest}").partition(" ")[2])
                if verb != "PASS":
                    self._pending_user = None  # RFC 1939 §7: PASS only right after USER
                reply, trigger = self._dispatch(before, verb, rest)
        if not reply.ok:
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
            after = _next_state(before, trigger, "+OK" if reply.ok else "-ERR")
        self._write(reply.first_line.encode("utf-8") + CRLF + (reply.body or b""))
        self._state = after
        lines: tuple[str, ...] = ()
        if reply.body:
            lines = tuple(reply.body.decode("utf-8", "replace").split("\r\n")[:-2])
        self._events.append(CommandReceived(
            state_before=before, state_after=after, command=verb, argument=argument,
            response_first_line=reply.first_line,
            response_lines=() if verb in ("RETR", "TOP") else lines,
            response_line_count=len(lines)))
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
        allowed = [s for s in POP3State if (s, verb, "") in _EDGES or (s, verb, "+OK") in _EDGES]
        if state not in allowed:
            where = " or ".join(s.name for s in allowed)
            return _err(f"{verb} is not allowed in the {state.name} state (only in {where})"), None
        if verb == "USER":
            return self._user_cmd(rest), verb
        if verb == "PASS":
            return self._pass_cmd(rest), verb
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
        try:
            box = self._authenticator(user, password)
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
        return _ok(f"{user}'s maildrop has {count} messages ({size} octets)")

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
            self._events.append(PlaintextDiscarded(state_before=self._state,
                                                   state_after=self._state,
                                                   octets=octets, lines=tuple(lines)))
        self._tls = TLSLayer(self.config.tls_context, server_side=True)
        self._tls.start()
        self._flush_tls()

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
