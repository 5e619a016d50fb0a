"""The sans-IO SMTP client (RFC 5321 with PIPELINING, SIZE, DSN, CHUNKING, STARTTLS, AUTH).

``send(command)`` checks the command against :data:`CLIENT_TRANSITIONS` and the grammar,
then queues its bytes (:meth:`ClientConnection.data_to_send`); replies fed with
:meth:`~ClientConnection.receive_data` come out of :meth:`~ClientConnection.next_event` as
:class:`ReplyReceived`, matched first-in-first-out to the commands they answer.

States: the client moves along the table as soon as it sends (``client.state``, so that a
pipelined ``MAIL, RCPT, DATA`` can be sent in one go) and falls back when a reply says
otherwise. The ``state_before``/``state_after`` of a :class:`ReplyReceived` are the states
confirmed by the replies so far.

Hygiene (``tests/hardening/CATALOGUE.md`` 42, 79): addresses and parameters are checked
against the grammar
(no CR, LF, NUL or ``>`` can slip into a command line); message content is sent with every
line ending as CRLF, dot-stuffed, and terminated by ``<CRLF>.<CRLF>``; a message larger
than the server's SIZE is refused before anything is sent; plaintext received after the
220 to STARTTLS is discarded, never parsed as a reply (CVE-2021-38371).
"""

from __future__ import annotations

import base64
import binascii
import ssl
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from .connection import SansIOConnection
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    Auth,
    Bdat,
    ClientEvent,
    Command,
    ConnectionClosed,
    ConnectionOpened,
    Data,
    Ehlo,
    Etrn,
    Helo,
    Help,
    MailFrom,
    Message,
    Noop,
    PlaintextDiscarded,
    Quit,
    RawLine,
    RcptTo,
    ReplyReceived,
    Rset,
    StartTLS,
    TLSFailed,
    TLSStarted,
    Vrfy,
)
from .grammar import (
    MAX_COMMAND_LINE,
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    GrammarError,
    dot_stuff,
    format_params,
    format_path,
    parse_reply_line,
)
from .replies import Reply
from .sasl import ClientMechanism, client_mechanism, encode
from .session import CLIENT_TRANSITIONS, ClientState, allowed_verbs, next_state
from .tls import TLSLayer

C = ClientState

#: Commands after which the client waits for the reply before sending more, even with
#: PIPELINING (RFC 2920 §3.1; STARTTLS: RFC 3207 §4; AUTH: RFC 4954 §4).
GROUP_END = frozenset({"EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "ETRN", "HELP",
                       "QUIT", "NOOP", "STARTTLS", "AUTH", "<auth-response>"})

#: The extension a MAIL/RCPT parameter needs (RFC 5321 §4.1.1.11: only advertised ones).
PARAM_EXTENSION = {"SIZE": "SIZE", "BODY": "8BITMIME", "RET": "DSN", "ENVID": "DSN",
                   "NOTIFY": "DSN", "ORCPT": "DSN", "SMTPUTF8": "SMTPUTF8", "AUTH": "AUTH"}


@dataclass(frozen=True)
class ClientConfig:
    """How a client behaves.

    Attributes:
        hostname: our name for EHLO/HELO when the command gives none.
        tls_context: client context for STARTTLS / implicit TLS (verification is whatever
            this context says).
        server_hostname: the name to send as SNI and to verify the certificate against.
        implicit_tls: handshake first, then the greeting (port 465, RFC 8314).
    """

    hostname: str = "localhost"
    tls_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    implicit_tls: bool = False


class _Pending(NamedTuple):  # a tuple: built for every command sent
    command: Command
    key: str
    group_end: bool


def _unstuffed_size(wire: bytes) -> int:
    """The SIZE of the message whose DATA wire form (:func:`dot_stuff`) is ``wire``:
    without the terminator and the stuffed dots (RFC 1870 §4). After stuffing, a line
    starts with ``..`` exactly when a dot was added to it."""
    size = len(wire) - 3 - wire.count(b"\r\n..")
    return size - 1 if wire[:2] == b".." else size


def _check_arg(text: str, what: str, *, allow_space: bool = False,
               required: bool = True) -> str:
    """Refuse text that could break out of its command line."""
    if required and not text:
        raise LocalProtocolError(f"{what} must not be empty")
    bad = "\r\n\0" if allow_space else "\r\n\0 \t"
    if any(ch in text for ch in bad) or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise LocalProtocolError(f"{what} contains a control character or a space: {text!r}")
    return text


class ClientConnection(SansIOConnection[ClientEvent]):
    """One SMTP client connection, without I/O.

    Args:
        config: the client configuration.

    Attributes:
        extensions: EHLO keywords of the server and their parameters (``{"SIZE":
            "52428800", "PIPELINING": ""}``); emptied by HELO and by STARTTLS.
        authenticated: True after a 235.
        error: the :class:`RemoteProtocolError` that closed the connection, if any.
    """

    CLOSED_STATE = C.CLOSED

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.extensions: dict[str, str] = {}
        self.authenticated = False
        self.error: RemoteProtocolError | None = None
        self._confirmed = C.CONNECTING
        super().__init__()
        self._pending: deque[_Pending] = deque()
        self._reply_code: int | None = None
        self._reply_lines: list[str] = []
        self._sasl: ClientMechanism | None = None
        self._utf8 = False
        self._bdat_size = 0
        if self.config.implicit_tls:
            self._confirmed = C.TLS_HANDSHAKE
            self._start_tls()

    # --- public API ----------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The state once every command sent so far has succeeded."""
        state = self._confirmed
        for pending in self._pending:
            tr = CLIENT_TRANSITIONS.get((state, pending.key))
            if tr is not None:
                state = tr.ok
        return state

    @property
    def confirmed_state(self) -> ClientState:
        """The state the replies received so far have confirmed."""
        return self._confirmed

    @property
    def pending(self) -> tuple[Command, ...]:
        """Commands sent and not yet answered, oldest first."""
        return tuple(p.command for p in self._pending)

    @property
    def closed(self) -> bool:
        """True once the connection is over."""
        return self._confirmed is C.CLOSED

    def send(self, command: Command) -> None:
        """Validate ``command`` against the state and the grammar, and queue its bytes.

        Raises:
            LocalProtocolError: not allowed in this state, a reply must come first
                (no PIPELINING, or the previous command ends a pipelined group), or an
                argument that would break the command line.
        """
        if self._confirmed is C.CLOSED:
            raise LocalProtocolError("the connection is closed")
        if isinstance(command, RawLine):
            self._send_raw(command)
            return
        key = self._key(command)
        state: ClientState
        if not self._pending:
            state = self._confirmed
        else:
            state = self.state
            last = self._pending[-1]
            if "PIPELINING" not in self.extensions:
                raise LocalProtocolError(
                    f"cannot send {key} while the reply to {last.key} is awaited: the server "
                    "did not advertise PIPELINING (RFC 2920)")
            for ender in self._pending:
                if ender.group_end:
                    raise LocalProtocolError(
                        f"cannot send {key} before the reply to {ender.key}: {ender.key} must "
                        "be the last command of a pipelined group (RFC 2920 §3.1)")
        if (state, key) not in CLIENT_TRANSITIONS:
            allowed = ", ".join(allowed_verbs("client", state)) or "nothing"
            raise LocalProtocolError(f"{key} not allowed in state {state.name}; "
                                     f"allowed: {allowed}")
        wire, recorded = self._format(command, key)
        self._write(wire)
        self._pending.append(_Pending(recorded, key, key in GROUP_END))

    # --- formatting ----------------------------------------------------------------------

    @staticmethod
    def _key(command: Command) -> str:
        if isinstance(command, Bdat):
            return "BDAT LAST" if command.last else "BDAT"
        if not command.verb:
            raise LocalProtocolError(f"{command!r} is not a command the client can send")
        return command.verb

    def _line(self, text: str) -> bytes:
        data = text.encode("utf-8") + b"\r\n"
        if len(data) > MAX_COMMAND_LINE:  # RFC 5321 §4.5.3.1.4
            raise LocalProtocolError(f"command line of {len(data)} octets exceeds "
                                     f"{MAX_COMMAND_LINE}")
        return data

    def _size_limit(self) -> int | None:
        value = self.extensions.get("SIZE")
        if value is None or not value.isdigit() or int(value) == 0:
            return None  # RFC 1870 §4: SIZE 0 / no number = no fixed limit
        return int(value)

    def _check_params(self, params: dict[str, str | None]) -> None:
        for name in params:
            ext = PARAM_EXTENSION.get(name.upper())
            if ext is None or ext not in self.extensions:
                raise LocalProtocolError(
                    f"parameter {name} needs the {ext or 'matching'} extension, which the "
                    "server did not advertise (RFC 5321 §4.1.1.11)")

    def _format(self, command: Command, key: str) -> tuple[bytes, Command]:
        """The wire bytes of ``command`` and the command to record (no secrets)."""
        try:
            return self._format_checked(command, key)
        except GrammarError as exc:
            raise LocalProtocolError(f"cannot send {key}: {exc}") from None

    def _format_checked(self, command: Command, key: str) -> tuple[bytes, Command]:
        if isinstance(command, (Ehlo, Helo)):
            host = _check_arg(command.hostname or self.config.hostname, "hostname")
            return self._line(f"{command.verb} {host}"), type(command)(host)
        if isinstance(command, MailFrom):
            params = dict(command.params)
            self._check_params(params)
            utf8 = "SMTPUTF8" in params
            path = format_path(command.address, allow_null=True, utf8=utf8)
            limit = self._size_limit()
            declared = params.get("SIZE")
            if limit and declared is not None and declared.isdigit() and int(declared) > limit:
                raise LocalProtocolError(f"SIZE={declared} exceeds the server's limit of {limit} "
                                         "octets (RFC 1870 §6)")
            self._utf8, self._bdat_size = utf8, 0
            return self._line(f"MAIL FROM:{path}{format_params(params, utf8=utf8)}"), command
        if isinstance(command, RcptTo):
            params = dict(command.params)
            self._check_params(params)
            path = format_path(command.address, allow_postmaster=True, utf8=self._utf8)
            return self._line(f"RCPT TO:{path}{format_params(params)}"), command
        if isinstance(command, Message):
            wire = dot_stuff(command.content)
            limit = self._size_limit()
            if limit:
                size = _unstuffed_size(wire)
                if size > limit:  # RFC 1870 §6: do not send what will be refused
                    raise LocalProtocolError(f"message of {size} octets exceeds the "
                                             f"server's SIZE limit of {limit} octets")
            return wire, command
        if isinstance(command, (Data, Rset, Quit)):
            return self._line(command.verb), command
        if isinstance(command, Bdat):
            if "CHUNKING" not in self.extensions:
                raise LocalProtocolError("BDAT needs CHUNKING, which the server did not "
                                         "advertise (RFC 3030)")
            chunk = command.chunk
            stray = chunk.replace(b"\r\n", b"")
            if b"\r" in stray or b"\n" in stray:  # RFC 5321 §2.3.8
                raise LocalProtocolError("BDAT chunk holds a bare CR or LF; split chunks at "
                                         "line ends and use CRLF (RFC 5321 §2.3.8)")
            limit = self._size_limit()
            if limit and self._bdat_size + len(chunk) > limit:
                raise LocalProtocolError(f"message exceeds the server's SIZE limit of "
                                         f"{limit} octets")
            self._bdat_size += len(chunk)
            head = f"BDAT {len(chunk)}" + (" LAST" if command.last else "")
            return self._line(head) + chunk, command
        if isinstance(command, Auth):
            return self._format_auth(command)
        if isinstance(command, StartTLS):
            if self.config.tls_context is None:
                raise LocalProtocolError("STARTTLS needs ClientConfig.tls_context")
            if self.tls_active:
                raise LocalProtocolError("TLS is already active (RFC 3207 §4.2)")
            return self._line("STARTTLS"), command
        if isinstance(command, (Vrfy, Etrn)):
            arg = _check_arg(command.arg, f"{command.verb} argument", allow_space=True)
            return self._line(f"{command.verb} {arg}"), command
        if isinstance(command, (Help, Noop)):
            arg = _check_arg(command.arg, f"{command.verb} argument", allow_space=True,
                             required=False)
            return self._line(f"{command.verb} {arg}".rstrip(" ")), command
        raise LocalProtocolError(f"cannot send {command!r}")

    def _format_auth(self, command: Auth) -> tuple[bytes, Command]:
        name = command.mechanism.upper()
        offered = self.extensions.get("AUTH", "").upper().split()
        if name not in offered:
            raise LocalProtocolError(f"the server does not offer AUTH {name} "
                                     f"(offered: {', '.join(offered) or 'no AUTH'})")
        if self.authenticated:
            raise LocalProtocolError("already authenticated (RFC 4954 §4)")
        mech = client_mechanism(name, command.username, command.password)
        if mech is None:
            raise LocalProtocolError(f"mechanism {name} is not implemented here")
        _check_arg(command.username, "user name", allow_space=True)
        self._sasl = mech
        initial = mech.initial_response()
        line = f"AUTH {name}"
        if initial is not None:
            with_initial = f"{line} {encode(initial)}"
            # RFC 4954 §4: no initial response when it would make the line too long
            if len(with_initial) + 2 <= MAX_COMMAND_LINE:
                line = with_initial
        return self._line(line), Auth(name, command.username)

    def _send_raw(self, command: RawLine) -> None:
        line = command.line
        if b"\r" in line or b"\n" in line:
            raise LocalProtocolError("a raw line must not contain CR or LF (CRLF is added)")
        state = self.state
        if state is C.MESSAGE:  # content lines typed by hand; "." ends the message
            if line == b".":
                self._pending.append(_Pending(command, "<end-of-data>", False))
            self._write(line + b"\r\n")
            return
        if state is C.AUTH:
            self._pending.append(_Pending(RawLine(b"***"), "<auth-response>", True))
            self._write(line + b"\r\n")
            return
        words = line.split(b" ")
        verb = words[0].decode("ascii", "replace").upper()
        key = verb
        if verb == "BDAT":
            key = "BDAT LAST" if b"LAST" in line.upper() else "BDAT"
        if verb == "STARTTLS" and self.config.tls_context is None:
            raise LocalProtocolError("STARTTLS needs ClientConfig.tls_context")
        recorded = RawLine(b"AUTH " + words[1] + b" ***") if verb == "AUTH" and len(
            words) > 2 else command
        self._pending.append(_Pending(recorded, key, key in GROUP_END))
        self._write(line + b"\r\n")

    # --- output and TLS ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the wire now (TLS records once TLS is on)."""
        if self._tls is None and not self._out:  # the common case of a driver's poll
            return b""
        return super().data_to_send()

    def peer_certificate_der(self) -> bytes | None:
        """The server's certificate (DER) once TLS is up, else ``None``."""
        return None if self._tls is None else self._tls.peer_certificate_der()

    def _start_tls(self) -> None:
        assert self.config.tls_context is not None, "implicit_tls needs a tls_context"
        self._tls = TLSLayer(self.config.tls_context, server_side=False,
                             server_hostname=self.config.server_hostname)
        self._tls.start()
        self._out += self._tls.data_to_send()

    def _close(self) -> None:
        self._confirmed = C.CLOSED
        self._in.clear()
        self._sasl = None
        if self._tls is not None and self._tls.handshake_complete:
            self._tls.close()
            self._out += self._tls.data_to_send()

    # --- input ---------------------------------------------------------------------------

    def _step_open(self) -> ClientEvent | None:
        if self._confirmed is not C.TLS_HANDSHAKE:
            try:
                reply = self._read_reply()
                if reply is not None:
                    return self._on_reply(reply)
            except RemoteProtocolError as exc:  # the one place a server's error is handled
                return self._protocol_error(exc)
        if self._eof:
            before = self._confirmed
            reason = "server closed the connection"
            if self._pending:
                reason += f" with {len(self._pending)} command(s) unanswered"
            self._close()
            self._closed_reported = True
            return ConnectionClosed(reason=reason, state_before=before, state_after=C.CLOSED)
        return None

    def _feed_tls(self) -> ClientEvent | None:
        assert self._tls is not None
        before = self._confirmed
        failure = self._decrypt()
        if failure is not None:
            self._confirmed = C.CLOSED
            self._sasl = None
            if before is C.TLS_HANDSHAKE:
                return TLSFailed(reason=str(failure), state_before=before,
                                 state_after=C.CLOSED)
            self.error = RemoteProtocolError(str(failure))
            return ConnectionClosed(reason=str(failure), state_before=before,
                                    state_after=C.CLOSED)
        if before is C.TLS_HANDSHAKE and self._tls.handshake_complete:
            pseudo = "<implicit-handshake>" if self.config.implicit_tls else "<handshake>"
            self._confirmed = CLIENT_TRANSITIONS[(C.TLS_HANDSHAKE, pseudo)].ok
            self.extensions = {}  # RFC 3207 §4.2: EHLO again, trust only what comes now
            summary = self._tls.summary()
            return TLSStarted(version=summary["version"], cipher=summary["cipher"],
                              peer=summary["peer"], state_before=before,
                              state_after=self._confirmed)
        return None

    def _read_reply(self) -> Reply | None:
        buf = self._in
        start = 0  # the lines read are dropped from the buffer once, on the way out
        try:
            while True:
                i = buf.find(b"\r\n", start)
                if i < 0:
                    if len(buf) - start > MAX_REPLY_LINE:  # RFC 5321 §4.5.3.1.5
                        raise RemoteProtocolError(
                            f"reply line longer than {MAX_REPLY_LINE} octets")
                    return None
                line = bytes(buf[start:i])
                start = i + 2
                try:
                    code, last, text = parse_reply_line(line)
                except GrammarError as exc:  # RFC 5321 §4.2
                    raise RemoteProtocolError(str(exc)) from exc
                if self._reply_code is not None and code != self._reply_code:
                    raise RemoteProtocolError(f"multi-line reply changed its code from "
                                              f"{self._reply_code} to {code}")
                self._reply_code = code
                self._reply_lines.append(text)
                if len(self._reply_lines) > MAX_REPLY_LINES:
                    raise RemoteProtocolError("reply has too many lines")
                if last:
                    reply = Reply(code, tuple(self._reply_lines))
                    self._reply_code, self._reply_lines = None, []
                    return reply
        finally:
            if start:
                del buf[:start]

    def _protocol_error(self, error: RemoteProtocolError) -> ClientEvent:
        """The server broke the protocol: keep the error, close, and say so."""
        before = self._confirmed
        self.error = error
        self._close()
        return ConnectionClosed(reason=f"protocol error: {error}", state_before=before,
                                state_after=C.CLOSED)

    def _on_reply(self, reply: Reply) -> ClientEvent:
        before = self._confirmed
        if before is C.CONNECTING:  # RFC 5321 §4.3.1: the greeting
            tr = CLIENT_TRANSITIONS[(C.CONNECTING, "<greeting>")]
            self._confirmed = next_state(tr, reply.code)
            if self._confirmed is C.CLOSED:
                self._close()
            return ConnectionOpened(reply=reply, state_before=before,
                                    state_after=self._confirmed)
        if not self._pending:
            if reply.code == 421:  # RFC 5321 §3.8: the server may say 421 at any time
                self._close()
                return ReplyReceived(command=None, reply=reply, state_before=before,
                                     state_after=C.CLOSED)
            raise RemoteProtocolError(f"unsolicited reply {str(reply)[:80]!r}")
        pending = self._pending.popleft()
        found = CLIENT_TRANSITIONS.get((before, pending.key))
        if found is not None:
            after = next_state(found, reply.code)
        else:  # a reply to a command the table did not expect here: stay, unless closing
            after = C.CLOSED if reply.code in (221, 421) else before
        self._confirmed = after
        key = pending.key
        if key in ("EHLO", "HELO") and reply.is_positive:
            self.extensions = {}
            if key == "EHLO":
                for line in reply.lines[1:]:
                    keyword, _, param = line.partition(" ")
                    self.extensions[keyword.upper()] = param
        elif key in ("AUTH", "<auth-response>"):
            self._auth_reply(reply, pending)
        elif key == "STARTTLS" and after is C.TLS_HANDSHAKE:
            if self._in:  # CVE-2021-38371: nothing received in plaintext counts any more
                self._events.append(PlaintextDiscarded(data=bytes(self._in),
                                                       state_before=after, state_after=after))
                self._in.clear()
            self._reply_code, self._reply_lines = None, []
            self._start_tls()
        if after is C.CLOSED:
            self._close()
        return ReplyReceived(command=pending.command, reply=reply, state_before=before,
                             state_after=after)

    def _auth_reply(self, reply: Reply, pending: _Pending) -> None:
        if reply.code == 235:
            self.authenticated = True
            self._sasl = None
            return
        if reply.code != 334:
            self._sasl = None
            return
        if self._sasl is None:
            return  # a raw AUTH typed by hand: the learner answers the 334 themselves
        try:
            challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
        except (binascii.Error, ValueError):
            response = "*"  # RFC 4954 §4: cancel on a challenge we cannot read
        else:
            response = encode(self._sasl.respond(challenge))
        # RFC 4954 §4: a response line may be longer than a command line
        self._write(response.encode("ascii") + b"\r\n")
        self._pending.append(_Pending(pending.command, "<auth-response>", True))
