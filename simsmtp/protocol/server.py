"""The sans-IO SMTP server (RFC 5321 with PIPELINING, SIZE, 8BITMIME, DSN, CHUNKING,
STARTTLS, AUTH, ENHANCEDSTATUSCODES and optional SMTPUTF8).

Bytes go in with :meth:`ServerConnection.receive_data` (``b""`` is EOF); one event at a time
comes out of :meth:`~ServerConnection.next_event` (or :data:`NEED_DATA`); the bytes to put on
the wire come out of :meth:`~ServerConnection.data_to_send`. Nothing the peer sends makes
these raise: every peer error becomes a reply.

Line-ending policies (RFC 5321 §2.3.8, §4.1.1.4; ``tests/hardening/CATALOGUE.md`` 20-30):

* Only CRLF ends a command line. A command line holding a bare LF or bare CR is answered
  ``500 5.5.2 Error: bare <LF> received`` (or ``<CR>``) and never executed (Postfix
  ``smtpd_forbid_bare_newline = reject``). So ``NOOP\\n`` gets no reply until a CRLF comes.
* Only ``<CRLF>.<CRLF>`` ends DATA (and ``.<CRLF>`` as the very first line after the 354,
  an empty message). ``<LF>.<LF>``, ``<LF>.<CRLF>``, ``<CR>.<CRLF>``, ``<CRLF>.<LF>``,
  ``<CRLF>.<CR><CR><LF>``, ``<CRLF><NUL>.<CRLF>`` ... are plain content.
* Content: each stray bare CR or bare LF is replaced by a space (Postfix
  ``cleanup_replace_stray_cr_lf``), so what is stored and relayed never holds a bare CR or LF
  and a smuggled end-of-data cannot reach the next hop. A leading dot is removed from a
  line that has more after it (RFC 5321 §4.5.2). NUL bytes are kept as they are.
* BDAT chunks are read as exactly *n* octets, no dot handling; the same stray CR/LF policy
  is applied to the assembled message.
* A text line over 1000 octets (RFC 5321 §4.5.3.1.6) is accepted and kept whole, as Postfix
  does (it chops such lines at ``line_length_limit``, 2048, and reconstructs them on
  delivery): a client that does not wrap its lines still gets its mail through.

Memory stays bounded by the limits: an overlong command line is discarded as it arrives
(one ``500`` when it finally ends); DATA and BDAT content stops being kept once past
``size_limit`` (a long line counts as it arrives), and the error is given at the end.

This module is the command dispatcher and the one state variable; the content readers
(DATA's dot-unstuffing up to ``<CRLF>.<CRLF>``, BDAT's counted octets) are in
:mod:`simsmtp.protocol.smtpbody`. What is read next is derived from the state: message
content in DATA, SASL lines in AUTH, nothing in TLS_HANDSHAKE and CLOSED, command lines
otherwise; before that, what is owed (a BDAT chunk's octets, the handler's pending reply).
"""

from __future__ import annotations

import random
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from .connection import SansIOConnection
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    Auth,
    AuthStep,
    Bdat,
    BdatChunkReceived,
    Command,
    CommandReceived,
    ConnectionClosed,
    ConnectionOpened,
    Data,
    Ehlo,
    Etrn,
    Helo,
    Help,
    MailFrom,
    MessageReceived,
    Noop,
    PlaintextDiscarded,
    Quit,
    RcptTo,
    ReplySent,
    Rset,
    ServerEvent,
    StartTLS,
    TLSFailed,
    TLSStarted,
    Vrfy,
)
from .grammar import (
    MAX_COMMAND_LINE,
    MAX_ENVID,
    MAX_ORCPT,
    MAX_SASL_LINE,
    MIN_RECIPIENTS,
    GrammarError,
    is_domain,
    parse_params,
    parse_path,
    replace_stray_cr_lf,
    split_path,
    xtext_decode,
)
from .handler import Handler, PendingReply
from .persona import Persona, check_overrides, clip
from .replies import Reply
from .sasl import (
    SUPPORTED_MECHANISMS,
    Challenge,
    Credentials,
    SASLError,
    ServerMechanism,
    decode_response,
    encode,
    server_mechanism,
)
from .session import (
    SERVER_TRANSITIONS,
    Envelope,
    ServerState,
    Session,
    Transition,
    command_verbs,
    next_state,
)
from .smtpbody import ChunkReader, DataReader
from .tls import TLSLayer

S = ServerState
#: A step of the server's transition table.
_Tr = Transition[ServerState]


def queue_id_generator(seed: int = 0) -> Callable[[], str]:
    """A reproducible source of Postfix-like queue ids (10 upper-case hex digits)."""
    rng = random.Random(seed)

    def next_id() -> str:
        return f"{rng.getrandbits(40):010X}"

    return next_id


@dataclass(frozen=True)
class ServerConfig:
    """How a server behaves; the defaults are the Postfix persona of the seed world.

    Attributes:
        hostname: our name in the greeting and EHLO reply.
        software: the name in the greeting.
        size_limit: largest message in octets, advertised as SIZE (RFC 1870); 0 = none.
        tls_context: server context; STARTTLS is offered only when set (RFC 3207).
        implicit_tls: TLS handshake first, then the greeting inside TLS (port 465, RFC 8314).
        require_tls: ``530`` to everything but NOOP/EHLO/STARTTLS/QUIT/RSET before TLS.
        auth_mechanisms: SASL mechanisms offered (subset of PLAIN, LOGIN).
        auth_enabled: offer AUTH (RFC 4954).
        auth_plaintext: allow AUTH without TLS (for teaching; RFC 4954 §4 says not to).
        auth_required: ``530`` to MAIL/RCPT/DATA/BDAT/VRFY/ETRN/HELP before AUTH.
        smtputf8: offer SMTPUTF8 (RFC 6531).
        max_recipients: recipients per transaction, at least 100 (RFC 5321 §4.5.3.1.8).
        hard_error_limit: errors before ``421 ... too many errors`` (Postfix 20).
        soft_error_limit: errors from which every reply carries a delay hint (Postfix 10).
        error_sleep_time: that delay hint in seconds (Postfix ``smtpd_error_sleep_time``).
        auth_failure_limit: failed AUTH attempts before ``421`` and close.
        junk_command_limit: NOOP/VRFY/ETRN/RSET allowed before each counts as an error.
        disable_vrfy_command: answer VRFY ``502 5.5.1 VRFY command is disabled`` and leave
            it out of the EHLO reply (Postfix ``disable_vrfy_command``, default no; RFC 5321
            §7.3: VRFY tells who exists, so sites may turn it off).
        queue_ids: gives the queue id of each transaction.
        replies: persona overrides, ``key -> (code, template)`` (see persona.py): the words
            may change, the code may not (ValueError naming the key and both codes: a
            reply's code moves the state; a refusal belongs to a handler or a fault rule).
    """

    hostname: str = "mail.anotherdomain.org"
    software: str = "Postfix"
    size_limit: int = 52428800
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    require_tls: bool = False
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    auth_enabled: bool = False
    auth_plaintext: bool = False
    auth_required: bool = False
    smtputf8: bool = False
    max_recipients: int = 1000
    hard_error_limit: int = 20
    soft_error_limit: int = 10
    error_sleep_time: float = 1.0
    auth_failure_limit: int = 3
    junk_command_limit: int = 100
    disable_vrfy_command: bool = False
    queue_ids: Callable[[], str] = field(default_factory=queue_id_generator)
    replies: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_recipients < MIN_RECIPIENTS:  # RFC 5321 §4.5.3.1.8
            raise ValueError(f"max_recipients must be >= {MIN_RECIPIENTS} "
                             "(RFC 5321 §4.5.3.1.8)")
        if self.hard_error_limit < 2:  # RFC 5321 §3.8: never close on the first error
            raise ValueError("hard_error_limit must be >= 2 (RFC 5321 §3.8)")
        if self.size_limit < 0:
            raise ValueError("size_limit must be >= 0 (0 = no limit)")
        if self.implicit_tls and self.tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        unknown = set(self.auth_mechanisms) - set(SUPPORTED_MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {sorted(unknown)}")
        check_overrides(self.replies)


@dataclass
class _Pending:
    """A message whose reply the handler gives later (``handle_DATA`` -> PendingReply)."""

    reply: PendingReply
    envelope: Envelope
    transition: _Tr
    via: str
    state_before: ServerState


class _TooLong:
    """A line over the limit; ``head`` keeps its first octets for the event."""

    def __init__(self, head: bytes) -> None:
        self.head = head


_E = TypeVar("_E", bound=ServerEvent)
_E_co = TypeVar("_E_co", bound=ServerEvent, covariant=True)


class _EventFactory(Protocol[_E_co]):
    """Makes a step's event once its reply has moved the state (a ``functools.partial`` of
    the event class holding the other fields)."""

    def __call__(self, *, state_before: ServerState, state_after: ServerState,
                 delay: float) -> _E_co: ...


#: A reply that closes whatever the state (a 421 of an error limit, RFC 5321 §3.8).
_CLOSING = Transition(S.CLOSED, S.CLOSED)

#: Verbs allowed before STARTTLS when TLS is required (RFC 3207 §4; aiosmtpd, + RSET).
ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT", "RSET"})
#: Verbs refused with 530 before AUTH when authentication is required (RFC 4954 §6).
NEED_AUTH = frozenset({"MAIL", "RCPT", "DATA", "BDAT", "VRFY", "ETRN", "HELP"})
#: Postfix "junk" commands (smtpd_junk_command_limit).
JUNK_COMMANDS = frozenset({"NOOP", "VRFY", "ETRN", "RSET"})

_FROM = re.compile(r"FROM:\s*", re.IGNORECASE)
_TO = re.compile(r"TO:\s*", re.IGNORECASE)
_BDAT_ARG = re.compile(r"([0-9]{1,20})(?: +(LAST))?", re.IGNORECASE)  # RFC 3030 §2
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})  # RFC 3461 §4.1
_ORCPT = re.compile(r"[A-Za-z0-9-]+;.+")  # RFC 3461 §4.2: addr-type ";" xtext


class ServerConnection(SansIOConnection[ServerEvent]):
    """One SMTP server connection, without I/O.

    Args:
        handler: the acceptance policy (:class:`~simsmtp.protocol.handler.Handler`).
        config: the server configuration.
        session: the per-connection data (peer and local addresses); made if omitted.

    The greeting is ready in :meth:`data_to_send` right after construction (after the TLS
    handshake with ``implicit_tls``) and :class:`ConnectionOpened` is the first event.
    """

    CLOSED_STATE = S.CLOSED

    def __init__(self, handler: Handler | None = None, config: ServerConfig | None = None,
                 session: Session | None = None) -> None:
        super().__init__()
        self.config = config or ServerConfig()
        self.handler = handler if handler is not None else Handler()
        self.session = session if session is not None else Session()
        self.session.host_name = self.config.hostname
        self.persona = Persona(self.config.hostname, self.config.software,
                               self.config.replies)
        #: The current mail transaction.
        self.envelope = Envelope()
        #: Exceptions raised by handler hooks (each was answered 451 4.3.0).
        self.handler_errors: list[BaseException] = []
        #: The one state variable: what is read next is derived from it (:meth:`_process_input`).
        self._state = S.CONNECTED
        self._refused = False  # 554 greeting: only QUIT is served (RFC 5321 §3.1)
        self._greeted = False
        self._discarding = False  # inside an overlong line
        self._long_head = b""
        # DATA reader (made by DATA's 354)
        self._data: DataReader | None = None
        # BDAT reader: the chunk whose octets are owed (a chunk is read in whatever state
        # its BDAT came in; its reply, and so the state it leads to, comes after its octets)
        self._chunk: ChunkReader | None = None
        self._bdat_parts: list[bytes] = []
        self._bdat_size = 0
        # AUTH exchange
        self._mech: ServerMechanism | None = None
        # a message whose reply the handler gives later: nothing is read until it is done
        self._pending: _Pending | None = None
        if self.config.implicit_tls:
            assert self.config.tls_context is not None
            self._state = S.TLS_HANDSHAKE
            self._tls = TLSLayer(self.config.tls_context, server_side=True)
        else:
            self._events.append(self._greet())

    # --- public API ----------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        """The current :class:`ServerState`."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the connection is over: flush :meth:`data_to_send`, then close."""
        return self._state is S.CLOSED

    @property
    def receiving_content(self) -> bool:
        """True while the next input is message content (after 354, or a BDAT chunk's
        octets): the network layer times this by a minimum data rate (Postfix
        ``smtpd_min_data_rate``) rather than by the idle timeout."""
        return self._chunk is not None or (self._state is S.DATA and self._pending is None)

    @property
    def pending_reply(self) -> PendingReply | None:
        """The handler's :class:`~simsmtp.protocol.handler.PendingReply` this connection
        waits for (nothing more is read until it is done), or None. Call
        :meth:`next_event` again once it is done."""
        return self._pending.reply if self._pending is not None else None

    def send(self, reply: Reply) -> None:
        """Send an unsolicited reply (e.g. ``421 4.4.2`` timeout, ``421 4.3.2`` shutdown);
        a ``421`` or ``221`` closes the connection. A :class:`ReplySent` event follows.
        During a TLS handshake nothing is written (the peer expects TLS records): the
        connection is only closed.

        Raises:
            LocalProtocolError: the connection is already closed.
        """
        if self._state is S.CLOSED:
            raise LocalProtocolError("cannot send a reply: the connection is closed")
        here = Transition(self._state, self._state)  # 221/421 close (RFC 5321 §3.8)
        self._events.append(self._answer(reply, here, partial(
            ReplySent, reply=reply, reason="sent by the network layer"), counted=False))

    def send_timeout(self) -> None:
        """Send ``421 4.4.2 <host> Error: timeout exceeded`` and close (RFC 5321 §4.5.3.2.7)."""
        self.send(self.persona.reply("timeout"))

    def send_shutdown(self) -> None:
        """Send ``421 4.3.2 <host> Service shutting down`` and close (RFC 5321 §3.8)."""
        self.send(self.persona.reply("shutdown"))

    def extensions(self) -> tuple[str, ...]:
        """The EHLO extension lines this connection would advertise now, in order."""
        cfg = self.config
        exts = ["PIPELINING",  # RFC 2920
                f"SIZE {cfg.size_limit}" if cfg.size_limit else "SIZE"]  # RFC 1870
        if not cfg.disable_vrfy_command:
            exts.append("VRFY")  # RFC 5321 §3.5.2 (Postfix lists it unless disabled)
        exts.append("ETRN")  # RFC 1985
        if cfg.tls_context is not None and not self.tls_active:
            exts.append("STARTTLS")  # RFC 3207 §4.2: never after TLS is up
        if cfg.auth_enabled and (self.tls_active or cfg.auth_plaintext):
            exts.append("AUTH " + " ".join(cfg.auth_mechanisms))  # RFC 4954 §3
        exts += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]  # RFC 2034, 6152, 3461
        if cfg.smtputf8:
            exts.append("SMTPUTF8")  # RFC 6531
        exts.append("CHUNKING")  # RFC 3030
        return tuple(exts)

    # --- output --------------------------------------------------------------------------

    def _answer(self, reply: Reply, transition: _Tr | None,
                event: _EventFactory[_E], *, before: ServerState | None = None,
                counted: bool = True) -> _E:
        """The one path of every reply: write it, move the state along ``transition`` by
        its code (None: the state stays), close when that leads to CLOSED, make the event
        with the states and the delay hint, and queue the 421 of an error limit it reached.

        ``counted``: a reply to the peer counts against the error limits and carries the
        delay hint; the greeting and a reply the network layer sends
        do not, and are not written during a TLS handshake (the peer expects TLS records
        there: no SMTP reply can be understood). ``before``: the state the step began in,
        when the reply comes after input read in it (a BDAT chunk, a pending reply).
        """
        before = self._state if before is None else before
        session = self.session
        delay = 0.0
        if counted:  # a reply to the peer: count an error, give the delay hint
            self._write(reply.to_bytes())
            if reply.code >= 400 and reply.code != 421:
                session.error_count += 1
            if session.error_count >= self.config.soft_error_limit:
                delay = self.config.error_sleep_time
            session.delay = delay
        elif self._state is not S.TLS_HANDSHAKE:
            self._write(reply.to_bytes())
        if transition is not None:
            state = self._state = next_state(transition, reply.code)
            if state is not S.AUTH:
                self._mech = None  # the SASL exchange is over
            if state is S.CLOSED:
                self._close()
        made = event(state_before=before, state_after=self._state, delay=delay)
        return self._finish(made) if counted else made

    def _close(self) -> None:
        self._state = S.CLOSED
        self._chunk = self._data = None
        self.envelope = Envelope()
        pending, self._pending = self._pending, None
        if pending is not None:  # the reply will never be sent: the handler may drop it
            pending.reply.cancel()
        self._in.clear()
        self._cipher.clear()
        if self._tls is not None and self._tls.handshake_complete:
            self._tls.close()  # close_notify after the last reply
            self._pull_tls()

    def _finish(self, event: _E) -> _E:
        """Queue the 421 of an error limit reached by ``event``'s reply, if any."""
        if self._state is S.CLOSED:
            return event
        key = reason = ""
        if self.session.auth_failures >= self.config.auth_failure_limit:
            key, reason = "too_many_auth_failures", "auth failure limit"
        elif self.session.error_count >= self.config.hard_error_limit:
            key, reason = "too_many_errors", "hard error limit"
        if key:
            reply = self.persona.reply(key)  # a 421: it closes (RFC 5321 §3.8)
            self._events.append(self._answer(reply, _CLOSING, partial(
                ReplySent, reply=reply, reason=reason)))
        return event

    def _call(self, hook: Callable[..., object], *args: object) -> Reply | None:
        """Call a handler hook; an exception or a non-Reply becomes 451 4.3.0."""
        try:
            result = hook(*args)
        except Exception as exc:  # the handler's bug must not become a 250
            self.handler_errors.append(exc)
            return self.persona.reply("handler_error")
        if result is not None and not isinstance(result, Reply):
            self.handler_errors.append(TypeError(f"{hook.__name__} returned {result!r}"))
            return self.persona.reply("handler_error")
        return result

    # --- the input pump ------------------------------------------------------------------

    def _step_open(self) -> ServerEvent | None:
        event = self._process_input()
        if event is not None or self._events:
            return event
        if self._eof and self._pending is None:  # the pending reply comes first
            return self._on_eof()
        return None

    def _feed_tls(self) -> ServerEvent | None:
        assert self._tls is not None
        before = self._state
        failure = self._decrypt()
        if failure is not None:  # no reply can be sent: the connection is over
            self._state = S.CLOSED
            self._chunk = self._data = None
            self._in.clear()
            if before is S.TLS_HANDSHAKE:
                return TLSFailed(reason=str(failure), state_before=before,
                                 state_after=S.CLOSED)
            return ConnectionClosed(reason=str(failure), state_before=before,
                                    state_after=S.CLOSED)
        if before is S.TLS_HANDSHAKE and self._tls.handshake_complete:
            return self._tls_started()
        return None

    def _tls_started(self) -> ServerEvent:
        """RFC 3207 §4.2: forget everything not obtained from the TLS negotiation."""
        assert self._tls is not None
        self.session.helo_name = None
        self.session.esmtp = False
        self.session.authenticated_user = None
        self.session.auth_mechanism = None
        self.session.extensions = ()
        self.session.tls = self._tls.summary()
        self.envelope = Envelope()
        pseudo = "<handshake>" if self._greeted else "<implicit-handshake>"
        self._state = SERVER_TRANSITIONS[(S.TLS_HANDSHAKE, pseudo)].ok
        summary = self.session.tls
        event = TLSStarted(version=summary["version"], cipher=summary["cipher"],
                           peer=summary["peer"], state_before=S.TLS_HANDSHAKE,
                           state_after=self._state)
        if not self._greeted:
            self._events.append(self._greet())  # implicit TLS: greet inside TLS
        return event

    def _greet(self) -> ServerEvent:
        self._greeted = True
        reply = self._call(self.handler.handle_CONNECT, self.session)
        reply = reply or self.persona.reply("greeting")
        if reply.code not in (220, 221, 421):
            self._refused = True  # RFC 5321 §3.1: 554, then only QUIT
        here = Transition(self._state, self._state)  # RFC 5321 §3.1: 421 and close
        return self._answer(reply, here, partial(ConnectionOpened, reply=reply),
                            counted=False)

    def _on_eof(self) -> ServerEvent:
        before = self._state
        reason = "client closed the connection"
        if before in (S.MAIL, S.RCPT, S.DATA, S.BDAT) or self._chunk is not None:
            # RFC 5321 §4.1.1.10: cancel any pending transaction
            reason += "; the unfinished mail transaction was discarded"
        if self._in or self._discarding:
            reason += "; an unfinished line was dropped"
        self._close()
        self._closed_reported = True
        return ConnectionClosed(reason=reason, state_before=before, state_after=S.CLOSED)

    def _process_input(self) -> ServerEvent | None:
        """Read what the state says comes next (the reader is derived, never kept apart):
        first what is owed (the handler's pending reply, a BDAT chunk's octets), then by
        state: message content in DATA, SASL lines in AUTH, nothing in TLS_HANDSHAKE (the
        TLS layer reads) or CLOSED, command lines in every other state."""
        while True:
            if self._pending is not None:
                return self._resume()
            if self._chunk is not None:
                return self._read_chunk()
            state = self._state
            event: ServerEvent | None
            if state is S.DATA:
                return self._read_data()
            if state is S.TLS_HANDSHAKE or state is S.CLOSED:
                return None
            if state is S.AUTH:
                line = self._read_line(MAX_SASL_LINE)
                if line is None:
                    return None
                event = self._auth_line(line)
            else:
                line = self._read_line(MAX_COMMAND_LINE)
                if line is None:
                    return None
                event = self._command(line)
            if event is not None:
                return event

    def _read_line(self, limit: int) -> bytes | _TooLong | None:
        """One CRLF-terminated line of at most ``limit`` octets with its CRLF."""
        buf = self._in
        if not self._discarding:
            i = buf.find(b"\r\n", 0, limit)
            if i >= 0:
                line = bytes(buf[:i])
                del buf[:i + 2]
                return line
            if len(buf) < limit:
                return None
            self._long_head = bytes(buf[:limit])  # RFC 5321 §4.5.3.1.4: too long
            self._discarding = True
        i = buf.find(b"\r\n")
        if i < 0:  # discard as it comes; keep a CR that may start the CRLF
            del buf[:len(buf) - (1 if buf.endswith(b"\r") else 0)]
            return None
        del buf[:i + 2]
        self._discarding = False
        return _TooLong(self._long_head)

    # --- commands ------------------------------------------------------------------------

    def _line_problem(self, line: bytes) -> str | None:
        if not line.strip(b" "):
            return "empty"
        if b"\n" in line:
            return "bare_lf"
        if b"\r" in line:
            return "bare_cr"
        if b"\0" in line:
            return "nul"
        if not line.isascii():
            if not self.config.smtputf8:
                return "non_ascii"
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return "bad_utf8"
        return None

    def _reject(self, line: bytes, key: str, command: Command | None = None,
                **fields: str) -> ServerEvent:
        """Answer with persona ``key`` and stay in the current state."""
        reply = self.persona.reply(key, **fields)
        return self._answer(reply, None, partial(CommandReceived, command=command,
                                                 line=line, reply=reply))

    def _done(self, line: bytes, command: Command | None, reply: Reply,
              transition: _Tr) -> ServerEvent:
        """Answer and move along ``transition`` by the reply code."""
        return self._answer(reply, transition, partial(CommandReceived, command=command,
                                                       line=line, reply=reply))

    def _sequence_key(self, verb: str) -> str:
        """The persona key of the 503 for ``verb`` not allowed in this state."""
        state = self._state
        if state is S.CONNECTED and verb in ("MAIL", "RCPT", "DATA", "BDAT", "ETRN", "AUTH"):
            return "need_helo"
        if verb == "MAIL":
            return "nested_mail"
        if verb == "RCPT" and state is S.GREETED:
            return "need_mail"
        if verb == "DATA" and state is S.BDAT:
            return "data_after_bdat"
        if verb in ("DATA", "BDAT") and state in (S.GREETED, S.MAIL):
            if state is S.MAIL and self.envelope.rcpt_attempts:
                return "no_valid_rcpt"
            return "need_rcpt"
        if verb in ("AUTH", "ETRN", "STARTTLS") and state in (S.MAIL, S.RCPT, S.BDAT):
            return "in_transaction"
        return "bad_sequence"

    def _gate(self, verb: str, key: str) -> tuple[str, dict[str, str]] | None:
        """Checks every command passes before its own: TLS, AUTH, then the table."""
        if self.config.require_tls and not self.tls_active and verb not in ALLOWED_BEFORE_TLS:
            return "tls_required", {}  # RFC 3207 §4
        if (self.config.auth_required and not self.session.authenticated
                and verb in NEED_AUTH):
            return "auth_required", {}  # RFC 4954 §6
        if (self._state, key) not in SERVER_TRANSITIONS:
            seq = self._sequence_key(verb)
            allowed = ", ".join(command_verbs("server", self._state))
            return seq, {"verb": verb, "allowed": allowed}
        return None

    def _command(self, raw: bytes | _TooLong) -> ServerEvent | None:
        """One command line. Where the peer broke the grammar, the step raises
        :class:`RemoteProtocolError` and here, the one place, it becomes its reply (500,
        501, 553, 555 ...: the error's persona key) and the state stays."""
        try:
            return self._execute(raw)
        except RemoteProtocolError as exc:
            line = raw.head if isinstance(raw, _TooLong) else raw
            return self._reject(line, exc.key or "unknown", None, **exc.fields)

    def _execute(self, raw: bytes | _TooLong) -> ServerEvent | None:
        if isinstance(raw, _TooLong):  # RFC 5321 §4.5.3.1.4
            raise RemoteProtocolError("command line too long", "command_too_long")
        line = raw
        problem = self._line_problem(line)
        if problem:
            raise RemoteProtocolError(f"bad command line ({problem})", problem)
        text = line.decode("utf-8")
        verb, _, arg = text.strip(" ").partition(" ")
        verb, arg = verb.upper(), arg.strip(" ")
        if verb == "AUTH":  # the initial response is a secret, even in a refused command
            mech_name, _, response = arg.partition(" ")
            line = b"AUTH " + mech_name.encode() + (b" ***" if response else b"")
        method = _COMMANDS.get(verb)
        if method is None:  # RFC 5321 §4.2.4
            raise RemoteProtocolError(f"unknown command {clip(verb, 40)!r}", "unknown")
        if verb == "AUTH" and self.session.helo_name is not None and not self.session.esmtp:
            return self._reject(line, "unknown")  # AUTH after HELO: an ESMTP-only verb
        if self._refused and verb != "QUIT":
            return self._reject(line, "no_service")
        key, bdat = verb, None
        if verb == "BDAT":
            m = _BDAT_ARG.fullmatch(arg)
            if m is None:
                raise RemoteProtocolError("BDAT syntax", "syntax", usage="BDAT count [LAST]")
            bdat = (int(m.group(1)), m.group(2) is not None)
            key = "BDAT LAST" if bdat[1] else "BDAT"
        gate = self._gate(verb, key)
        if gate is not None:
            if bdat is not None:  # RFC 3030 §2: read and discard the chunk, then reply
                reply = self.persona.reply(gate[0], **gate[1])
                return self._start_chunk(bdat[0], bdat[1], line, store=False, reply=reply)
            return self._reject(line, gate[0], None, **gate[1])
        transition = SERVER_TRANSITIONS[(self._state, key)]
        return method(self, arg, line, transition)

    def _junk(self) -> None:
        self.session.junk_commands += 1
        if self.session.junk_commands > self.config.junk_command_limit:
            self.session.error_count += 1  # Postfix smtpd_junk_command_limit

    def _cmd_ehlo(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        return self._hello(arg, line, tr, esmtp=True)

    def _cmd_helo(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        return self._hello(arg, line, tr, esmtp=False)

    def _hello(self, arg: str, line: bytes, tr: _Tr, *, esmtp: bool) -> ServerEvent:
        verb = "EHLO" if esmtp else "HELO"
        if not arg:  # RFC 5321 §4.1.1.1: the argument is required
            raise RemoteProtocolError(f"{verb} without a name", "helo_syntax", verb=verb)
        command: Command = Ehlo(arg) if esmtp else Helo(arg)
        hook = self.handler.handle_EHLO if esmtp else self.handler.handle_HELO
        custom = self._call(hook, self.session, arg)
        if custom is not None and not custom.is_positive:
            return self._done(line, command, custom, tr)
        self.envelope = Envelope()  # RFC 5321 §4.1.4: as if RSET
        self._reset_bdat()
        self.session.helo_name = arg
        self.session.esmtp = esmtp
        if esmtp:
            self.session.extensions = self.extensions()
            reply = custom or Reply(250, (self.config.hostname, *self.session.extensions))
        else:
            self.session.extensions = ()
            reply = custom or self.persona.reply("helo")
        return self._done(line, command, reply, tr)

    @staticmethod
    def _path_error(exc: GrammarError, sender: bool) -> RemoteProtocolError:
        dsn = "5.1.7" if sender else "5.1.3"  # RFC 3463: bad sender / destination syntax
        key = {"local_part": "local_part_too_long", "domain": "domain_too_long",
               "path": "path_too_long", "utf8": "utf8_address"}.get(exc.kind)
        if key is None:
            key = "bad_sender" if sender else "bad_recipient"
        return RemoteProtocolError(str(exc), key, dsn=dsn)

    def _mail_params(self, params: dict[str, str | None]) -> None:
        """Check MAIL parameters.

        Raises:
            RemoteProtocolError: with the persona key and fields of the error.
        """
        cfg = self.config
        for name, value in params.items():
            if name == "SIZE":  # RFC 1870 §6: size-value = 1*20DIGIT
                if value is None or not re.fullmatch(r"[0-9]{1,20}", value):
                    raise RemoteProtocolError("bad SIZE", "bad_size")
            elif name == "BODY":  # RFC 6152 §2, RFC 1652
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            elif name == "RET":  # RFC 3461 §4.3
                if value is None or value.upper() not in ("FULL", "HDRS"):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            elif name == "ENVID":  # RFC 3461 §4.4
                if value is None or len(value) > MAX_ENVID or not _xtext_ok(value):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            elif name == "SMTPUTF8" and cfg.smtputf8:  # RFC 6531 §3.4
                if value is not None:
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            elif name == "AUTH" and cfg.auth_enabled:  # RFC 4954 §5
                if value is None or (value != "<>" and not _xtext_ok(value)):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            else:  # RFC 5321 §4.1.1.11
                option = name if value is None else f"{name}={value}"
                raise RemoteProtocolError(f"unsupported {name}", "unsupported_option",
                                          option=clip(option, 100))

    def _cmd_mail(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        m = _FROM.match(arg)
        if m is None:
            raise RemoteProtocolError("MAIL syntax", "mail_syntax")
        try:
            path, ptext = split_path(arg[m.end():])
        except GrammarError as exc:
            raise RemoteProtocolError(str(exc), "mail_syntax") from exc
        try:
            params = parse_params(ptext, utf8=self.config.smtputf8)
        except GrammarError as exc:
            raise RemoteProtocolError(str(exc), "bad_params") from exc
        self._mail_params(params)
        utf8 = self.config.smtputf8 and "SMTPUTF8" in params
        try:
            mailbox = parse_path(path, allow_null=True, utf8=utf8)
        except GrammarError as exc:
            raise self._path_error(exc, sender=True) from exc
        command = MailFrom(mailbox.address, params)
        size = int(params["SIZE"] or 0) if "SIZE" in params else None
        if size is not None and self.config.size_limit and size > self.config.size_limit:
            return self._done(line, command, self.persona.reply("size_declared"), tr)
        envelope = Envelope(
            mail_from=mailbox.address, mail_params=dict(params), smtputf8=utf8,
            declared_size=size, body=_upper(params.get("BODY")), ret=_upper(params.get("RET")),
            envid=xtext_decode(params["ENVID"] or "") if "ENVID" in params else None)
        custom = self._call(self.handler.handle_MAIL, self.session, envelope,
                            mailbox.address, command.params)
        if custom is not None and not custom.is_positive:
            return self._done(line, command, custom, tr)
        envelope.queue_id = self.config.queue_ids()  # Postfix assigns the id at MAIL
        self.envelope = envelope
        return self._done(line, command, custom or self.persona.reply("mail_ok"), tr)

    def _rcpt_params(self, params: dict[str, str | None]) -> None:
        """Check RCPT parameters (raises like :meth:`_mail_params`)."""
        for name, value in params.items():
            if name == "NOTIFY":  # RFC 3461 §4.1
                items = (value or "").upper().split(",")
                if not (items == ["NEVER"] or (items != [""] and set(items) <= _NOTIFY
                                               and len(set(items)) == len(items))):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            elif name == "ORCPT":  # RFC 3461 §4.2
                if (value is None or len(value) > MAX_ORCPT or not _ORCPT.fullmatch(value)
                        or not _xtext_ok(value.partition(";")[2])):
                    raise RemoteProtocolError(f"bad {name}", "bad_param_value", param=name)
            else:  # RFC 5321 §4.1.1.11
                option = name if value is None else f"{name}={value}"
                raise RemoteProtocolError(f"unsupported {name}", "unsupported_option",
                                          option=clip(option, 100))

    def _cmd_rcpt(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        self.envelope.rcpt_attempts += 1
        m = _TO.match(arg)
        if m is None:
            raise RemoteProtocolError("RCPT syntax", "rcpt_syntax")
        try:
            path, ptext = split_path(arg[m.end():])
        except GrammarError as exc:
            raise RemoteProtocolError(str(exc), "rcpt_syntax") from exc
        try:
            params = parse_params(ptext, utf8=self.config.smtputf8)
        except GrammarError as exc:
            raise RemoteProtocolError(str(exc), "bad_params") from exc
        self._rcpt_params(params)
        try:
            mailbox = parse_path(path, allow_postmaster=True, utf8=self.envelope.smtputf8)
        except GrammarError as exc:
            raise self._path_error(exc, sender=False) from exc
        command = RcptTo(mailbox.address, params)
        if len(self.envelope.rcpt_tos) >= self.config.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452, the recipients already accepted stay
            return self._done(line, command, self.persona.reply("too_many_rcpts"), tr)
        custom = None
        if not (mailbox.is_postmaster and not mailbox.domain):
            # RFC 5321 §4.5.1: <Postmaster> is always accepted, whatever the policy
            custom = self._call(self.handler.handle_RCPT, self.session, self.envelope,
                                mailbox.address, command.params)
        if custom is not None and not custom.is_positive:
            return self._done(line, command, custom, tr)
        self.envelope.rcpt_tos.append(mailbox.address)
        self.envelope.rcpt_params.append(dict(params))
        return self._done(line, command, custom or self.persona.reply("rcpt_ok"), tr)

    def _cmd_data(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        if arg:  # RFC 5321 §4.1.1.4: DATA takes no argument
            raise RemoteProtocolError("DATA syntax", "syntax", usage="DATA")
        event = self._done(line, Data(), self.persona.reply("data_go"), tr)
        if self._state is S.DATA:  # the reader of the state DATA
            self._data = DataReader(self.config.size_limit)
        return event

    def _cmd_rset(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        if arg:  # RFC 5321 §4.1.1.5
            raise RemoteProtocolError("RSET syntax", "syntax", usage="RSET")
        self._junk()
        custom = self._call(self.handler.handle_RSET, self.session)
        if custom is not None and not custom.is_positive:
            return self._done(line, Rset(), custom, tr)
        self.envelope = Envelope()
        self._reset_bdat()
        return self._done(line, Rset(), custom or self.persona.reply("ok"), tr)

    def _cmd_noop(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        self._junk()  # RFC 5321 §4.1.1.9: an argument is allowed and ignored
        return self._done(line, Noop(arg), self.persona.reply("ok"), tr)

    def _cmd_quit(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        if arg:  # RFC 5321 §4.1.1.10
            raise RemoteProtocolError("QUIT syntax", "syntax", usage="QUIT")
        custom = self._call(self.handler.handle_QUIT, self.session)
        reply = custom if custom is not None and custom.code == 221 else None
        return self._done(line, Quit(), reply or self.persona.reply("quit"), tr)

    def _cmd_vrfy(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        if not arg:  # RFC 5321 §4.1.1.6
            raise RemoteProtocolError("VRFY syntax", "syntax", usage="VRFY address")
        self._junk()
        if self.config.disable_vrfy_command:  # Postfix disable_vrfy_command = yes
            return self._done(line, Vrfy(arg), self.persona.reply("vrfy_disabled"), tr)
        custom = self._call(self.handler.handle_VRFY, self.session, arg)
        reply = custom or self.persona.reply("vrfy_default", arg=clip(arg))
        return self._done(line, Vrfy(arg), reply, tr)

    def _cmd_etrn(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        node = arg[1:] if arg[:1] in ("@", "#") else arg  # RFC 1985 §4
        if not node or (arg[:1] != "#" and not is_domain(node)):
            raise RemoteProtocolError("ETRN syntax", "syntax", usage="ETRN domain")
        self._junk()
        custom = self._call(self.handler.handle_ETRN, self.session, arg)
        return self._done(line, Etrn(arg), custom or self.persona.reply("etrn_ok"), tr)

    def _cmd_help(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        custom = self._call(self.handler.handle_HELP, self.session, arg)
        return self._done(line, Help(arg), custom or self.persona.reply("help"), tr)

    def _cmd_starttls(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        if arg:  # RFC 3207 §4: no parameters
            raise RemoteProtocolError("STARTTLS syntax", "syntax", usage="STARTTLS")
        if self.tls_active:  # RFC 3207 §4.2
            return self._reject(line, "tls_active")
        if self.config.tls_context is None:
            return self._reject(line, "tls_unavailable")
        event = self._done(line, StartTLS(), self.persona.reply("starttls_ready"), tr)
        if self._state is not S.TLS_HANDSHAKE:
            return event  # the 220 led elsewhere (closed by an error limit)
        if self._in or self._discarding:
            # CVE-2011-0411: what came behind STARTTLS before TLS is never executed
            self._events.append(PlaintextDiscarded(data=bytes(self._in),
                                                   state_before=self._state,
                                                   state_after=self._state))
            self._in.clear()
            self._discarding = False
        self._tls = TLSLayer(self.config.tls_context, server_side=True)
        return event

    # --- AUTH (RFC 4954) -----------------------------------------------------------------

    def _cmd_auth(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent:
        parts = arg.split(" ") if arg else []
        mech_name = parts[0].upper() if parts else ""
        masked = b"AUTH " + mech_name.encode("ascii", "replace") + (
            b" ***" if len(parts) > 1 else b"")
        command = Auth(mech_name)
        if not parts or len(parts) > 2:
            return self._reject(masked, "syntax", command, usage="AUTH mechanism [response]")
        if not self.config.auth_enabled:
            return self._reject(masked, "auth_not_enabled", command)
        if self.session.authenticated:  # RFC 4954 §4
            return self._reject(masked, "auth_already", command)
        if not self.tls_active and not self.config.auth_plaintext:  # RFC 4954 §4, §6
            return self._reject(masked, "encryption_required", command)
        mech = server_mechanism(mech_name) if mech_name in self.config.auth_mechanisms else None
        if mech is None:
            return self._reject(masked, "auth_unknown_mech", command)
        try:
            initial = decode_response(parts[1]) if len(parts) > 1 else None
            step = mech.start(initial)
        except SASLError as exc:
            return self._done(masked, command, self.persona.reply(exc.reason), tr)
        return self._auth_outcome(step, mech, masked, command, tr, first=True)

    def _auth_outcome(self, step: Challenge | Credentials, mech: ServerMechanism,
                      line: bytes, command: Command | None, tr: _Tr, *,
                      first: bool) -> ServerEvent:
        name = ""
        if isinstance(step, Challenge):
            self._mech, name = mech, mech.name
            reply = self.persona.reply("auth_challenge", challenge=encode(step.data)
                                       if step.data else "")
        else:
            self._mech = None
            ok = False
            if not step.authzid or step.authzid == step.username:  # no proxy authorisation
                try:
                    ok = bool(self.handler.handle_AUTH(self.session, mech.name, step.username,
                                                       step.password))
                except Exception as exc:
                    self.handler_errors.append(exc)
            if ok:
                self.session.authenticated_user = step.username
                self.session.auth_mechanism = mech.name
                reply = self.persona.reply("auth_ok")
            else:
                self.session.auth_failures += 1
                reply = self.persona.reply("auth_failed")
        if first:
            return self._done(line, command, reply, tr)
        return self._auth_event(line, reply, tr, name)

    def _auth_event(self, line: bytes, reply: Reply, tr: _Tr,
                    name: str = "") -> ServerEvent:
        return self._answer(reply, tr, partial(AuthStep, mechanism=name, line=line,
                                               reply=reply))

    def _auth_line(self, raw: bytes | _TooLong) -> ServerEvent:
        tr = SERVER_TRANSITIONS[(S.AUTH, "<auth-response>")]
        mech = self._mech
        assert mech is not None
        masked = b"***"
        if isinstance(raw, _TooLong):  # RFC 4954 §4: 500 5.5.6
            self._mech = None
            return self._auth_event(masked, self.persona.reply("auth_line_too_long"), tr)
        try:
            step = mech.step(decode_response(raw.decode("ascii")))
        except (SASLError, UnicodeDecodeError) as exc:
            self._mech = None
            key = exc.reason if isinstance(exc, SASLError) else "auth_bad_base64"
            return self._auth_event(masked, self.persona.reply(key), tr)
        return self._auth_outcome(step, mech, masked, None, tr, first=False)

    # --- DATA (RFC 5321 §4.1.1.4) --------------------------------------------------------

    def _read_data(self) -> ServerEvent | None:
        reader = self._data
        assert reader is not None  # made with the 354 that led to DATA
        if not reader.read(self._in):
            return None
        self._data = None
        tr = SERVER_TRANSITIONS[(S.DATA, "<end-of-data>")]
        return self._deliver(reader.content(), reader.error, tr, "DATA")

    def _deliver(self, content: bytes, error: str | None, tr: _Tr,
                 via: str) -> ServerEvent | None:
        """End of a message (DATA or BDAT LAST): the handler stores it or we refuse it; a
        handler that answers later leaves it pending: nothing is read until it is done
        (None: no event yet)."""
        before = self._state
        envelope = self.envelope
        if error is not None:
            return self._delivered(envelope, self.persona.reply(error), tr, via, before)
        envelope.content = replace_stray_cr_lf(content)
        envelope.mark_received()
        try:
            result = self.handler.handle_DATA(self.session, envelope)
        except Exception as exc:  # the handler's bug must not become a 250
            self.handler_errors.append(exc)
            result = self.persona.reply("handler_error")
        if result is not None and not isinstance(result, Reply) \
                and isinstance(result, PendingReply):
            self._pending = _Pending(result, envelope, tr, via, before)
            return self._resume()
        return self._delivered(envelope, self._checked(result, "handle_DATA"), tr, via,
                               before)

    def _checked(self, result: object, hook: str) -> Reply | None:
        """A hook's answer: a Reply or None; anything else is a bug, answered 451 4.3.0."""
        if result is not None and not isinstance(result, Reply):
            self.handler_errors.append(TypeError(f"{hook} returned {result!r}"))
            return self.persona.reply("handler_error")
        return result

    def _resume(self) -> ServerEvent | None:
        """The pending reply, once the handler has it (None while it has not)."""
        pending = self._pending
        assert pending is not None
        if not pending.reply.done():
            return None
        self._pending = None
        try:
            result: object = pending.reply.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a failed (or cancelled) check must not become a 250
            self.handler_errors.append(exc)
            result = self.persona.reply("handler_error")
        return self._delivered(pending.envelope, self._checked(result, "handle_DATA"),
                               pending.transition, pending.via, pending.state_before)

    def _delivered(self, envelope: Envelope, custom: Reply | None, tr: _Tr,
                   via: str, before: ServerState) -> ServerEvent:
        """Send the message's final reply and reset the transaction."""
        reply = custom or self.persona.reply("queued", id=envelope.queue_id)
        if reply.is_positive:
            self.session.messages += 1
            self.session.junk_commands = 0  # Postfix resets it after a delivery
        else:
            envelope.content = b""
        self.envelope = Envelope()
        self._reset_bdat()
        return self._answer(reply, tr, partial(MessageReceived, envelope=envelope,
                                               reply=reply, via=via), before=before)

    # --- BDAT (RFC 3030) -----------------------------------------------------------------

    def _reset_bdat(self) -> None:
        self._bdat_parts, self._bdat_size = [], 0

    def _cmd_bdat(self, arg: str, line: bytes, tr: _Tr) -> ServerEvent | None:
        m = _BDAT_ARG.fullmatch(arg)
        assert m is not None  # checked in _command
        size, last = int(m.group(1)), m.group(2) is not None
        limit = self.config.size_limit
        if limit and self._bdat_size + size > limit:
            # RFC 3030 §2: accept and discard the chunk, then 552; the transaction ends
            reply = self.persona.reply("chunk_too_big")
            return self._start_chunk(size, last, line, store=False, reply=reply, transition=tr)
        return self._start_chunk(size, last, line, store=True, transition=tr)

    def _start_chunk(self, size: int, last: bool, line: bytes, *, store: bool,
                     reply: Reply | None = None,
                     transition: _Tr | None = None) -> ServerEvent | None:
        self._chunk = ChunkReader(size, size, last, line, self._state, store, reply,
                                  transition)
        return self._read_chunk()

    def _read_chunk(self) -> ServerEvent | None:
        chunk = self._chunk
        assert chunk is not None
        if not chunk.read(self._in, self._bdat_parts):
            return None
        self._chunk = None
        command = Bdat(b"", chunk.last)
        if chunk.reply is not None:  # refused, octets consumed
            if chunk.transition is None:  # refused by the sequence/TLS/AUTH checks
                return self._refuse_chunk(chunk, command)
            self.envelope = Envelope()
            self._reset_bdat()
            return self._done(chunk.line, command, chunk.reply, chunk.transition)
        assert chunk.transition is not None
        self._bdat_size += chunk.size
        self.envelope.chunks += 1
        if chunk.last:
            content = b"".join(self._bdat_parts)
            return self._deliver(content, None, chunk.transition, "BDAT")
        reply = self.persona.reply("bdat_ok", size=chunk.size)
        data = self._bdat_parts[-1] if self._bdat_parts and chunk.size else b""
        return self._answer(reply, chunk.transition, partial(
            BdatChunkReceived, command=Bdat(data, False), line=chunk.line, size=chunk.size,
            reply=reply))

    def _refuse_chunk(self, chunk: ChunkReader, command: Command) -> ServerEvent:
        assert chunk.reply is not None
        return self._answer(chunk.reply, None, partial(CommandReceived, command=command,
                                                       line=chunk.line, reply=chunk.reply))


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


def _xtext_ok(value: str) -> bool:
    try:
        xtext_decode(value)
    except GrammarError:
        return False
    return True


_Method = Callable[[ServerConnection, str, bytes, _Tr], "ServerEvent | None"]

#: Verb -> the method that runs it once the sequence checks have passed.
_COMMANDS: dict[str, _Method] = {
    "EHLO": ServerConnection._cmd_ehlo,
    "HELO": ServerConnection._cmd_helo,
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "BDAT": ServerConnection._cmd_bdat,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "QUIT": ServerConnection._cmd_quit,
    "VRFY": ServerConnection._cmd_vrfy,
    "ETRN": ServerConnection._cmd_etrn,
    "HELP": ServerConnection._cmd_help,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}
