"""A blocking, steppable SMTP client session, for notebooks and the console.

One command at a time, each giving a :class:`Step`: the bytes sent, the replies, the
explanation of the main reply and the states of both sides before and after::

    with world.start() as net:
        s = net.session("mail.anotherdomain.org", 25)
        print(s.connect())            # <-  220 mail.anotherdomain.org ESMTP Postfix
        print(s.ehlo())               #  -> EHLO mail.example.com / <-  250-...
        print(s.line("RCPT TO:<bob@anotherdomain.org>"))   # typed by hand: <** 503 ...
        s.mail("alice@example.com"); s.rcpt("bob@anotherdomain.org")
        s.data(message)               # two steps: DATA -> 354, then the content -> 250
        s.quit()

It drives the sans-IO :class:`~simsmtp.protocol.client.ClientConnection` over a plain
blocking socket in the caller's thread; the world's servers run on their own event-loop
thread, so there is no deadlock. When it is given a running
:class:`~simsmtp.net.network.Network`, the server's states come from the world's trace
(the server's ``smtp.*`` events of this connection, found by our local address, which the
trace records as ``peer``).

Learner mistakes: a helper (``rcpt()`` before ``mail()``) raises
:class:`~simsmtp.protocol.errors.LocalProtocolError` with the client core's message and sends
nothing; the same command typed with :meth:`SMTPStepper.line` is sent anyway, so the learner
sees the server's ``503``. A line holding a bare CR or LF is refused (RFC 5321 §2.3.8; it is
how SMTP smuggling starts). No step hangs: past ``timeout`` seconds :class:`StepTimeout` is
raised (:meth:`SMTPStepper.wait` keeps waiting for that reply).

Secrets: AUTH lines are masked in :attr:`Step.sent` itself (``AUTH PLAIN ***``, and ``***``
for each SASL response), never only in their rendering.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.events import (
    NEED_DATA,
    Auth,
    Command,
    ConnectionClosed,
    ConnectionOpened,
    Data,
    Ehlo,
    Helo,
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
)
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.session import ClientState, ServerState
from simsmtp.world import cast

if TYPE_CHECKING:
    from simsmtp.trace import Trace, TraceEvent
    from simsmtp.world.model import World

    from .addresses import AddressBook
    from .runtime import RunningWorld

__all__ = ["SMTPStepper", "Step", "StepTimeout", "submit"]

C = ClientState

#: The masked form of a secret on the wire (an AUTH initial response or SASL response).
MASK = b"***"

#: Server trace events that carry the server's states for one connection.
_STATE_KINDS = frozenset({"smtp.command", "smtp.reply", "smtp.message", "tls.handshake",
                          "tls.failed", "smtp.discarded", "smtp.closed"})

#: How long a step waits for the server's side of a TLS handshake to show in the trace.
_TLS_TRACE_WAIT = 2.0


class StepTimeout(TimeoutError):
    """No (complete) reply came within the stepper's timeout.

    The command stays outstanding: :meth:`SMTPStepper.wait` keeps waiting for its reply,
    :meth:`SMTPStepper.close` gives up on the connection.
    """


@dataclass(frozen=True)
class Step:
    """One step of a session: what the client sent and what the server answered.

    Attributes:
        label: what the step was (``"<greeting>"``, ``"EHLO"``, ``"<message>"``,
            ``"RCPT TO:<x>"`` for a typed line …).
        sent: the bytes sent, in plaintext terms (what went into TLS when TLS is on), with
            AUTH secrets replaced by ``***``; ``b""`` for the greeting.
        replies: the replies, in order (several for AUTH's 334 challenges; none when the
            server hung up, or when a typed line of message content needs no answer).
        explanation: :meth:`Reply.explain` of the main (last) reply, plus what else
            happened (TLS started, connection closed).
        client_state_before: the client core's confirmed state before the step.
        client_state_after: ... and after it.
        server_state_before: the server's state before the step, from the world's trace
            (``None`` without a Network or a trace).
        server_state_after: ... and after it.
        tls: True when the step ran inside TLS (swaks ``~>``/``<~``).
        note: what else happened, in one line (``TLS started with cipher
            TLSv1.3:TLS_AES_256_GCM_SHA384``, ``connection closed by the server``).
    """

    label: str
    sent: bytes
    replies: list[Reply]
    explanation: str
    client_state_before: ClientState
    client_state_after: ClientState
    server_state_before: ServerState | None = None
    server_state_after: ServerState | None = None
    tls: bool = False
    note: str = ""
    tls_version: str | None = field(default=None, repr=False)
    tls_cipher: str | None = field(default=None, repr=False)

    @property
    def reply(self) -> Reply | None:
        """The main reply: the last one (None when there was none)."""
        return self.replies[-1] if self.replies else None

    @property
    def code(self) -> int | None:
        """The code of the main reply (None when there was none)."""
        return self.replies[-1].code if self.replies else None

    def __str__(self) -> str:
        """The step in swaks notation: `` -> `` sent, ``<-  `` received, ``<** `` an error
        reply, ``~>``/``<~``/``<~*`` inside TLS, ``===`` what else happened."""
        out: list[str] = []
        arrow = " ~> " if self.tls else " -> "
        text = self.sent.decode("utf-8", "replace")
        lines = text.split("\r\n")
        if lines and lines[-1] == "":
            lines.pop()
        out += [arrow + line for line in lines]
        replies: list[str] = []
        for reply in self.replies:
            if reply.code >= 400:
                prefix = "<~* " if self.tls else "<** "
            else:
                prefix = "<~  " if self.tls else "<-  "
            replies += [prefix + line for line in str(reply).split("\n")]
        note = [f"=== {self.note}"] if self.note else []
        if self.label == "<greeting>":  # implicit TLS: the handshake came first
            return "\n".join(note + replies)
        return "\n".join(out + replies + note)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython/Jupyter shows a Step in swaks notation."""
        printer.text(str(self))


class _RecordingClient(ClientConnection):
    """The client core, keeping a masked copy of every plaintext byte it writes."""

    def __init__(self, config: ClientConfig) -> None:
        #: Every plaintext byte written so far, AUTH secrets masked.
        self.sent_log = bytearray()
        super().__init__(config)

    def _write(self, data: bytes) -> None:
        self.sent_log += _mask(data, self.confirmed_state)
        super()._write(data)


def _mask(data: bytes, state: ClientState) -> bytes:
    """``data`` as a Step shows it: SASL responses and AUTH initial responses as ``***``."""
    if state is C.MESSAGE:  # message content: nothing to mask
        return data
    if state is C.AUTH:  # RFC 4954 §4: every line inside the exchange is a SASL response
        return MASK + b"\r\n"
    words = data.rstrip(b"\r\n").split(b" ")
    if words[0].upper() == b"AUTH" and len(words) > 2:  # the initial response
        return b" ".join([*words[:2], MASK]) + b"\r\n"
    return data


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


@dataclass
class _Exchange:
    """A step in progress (kept when it times out, so :meth:`SMTPStepper.wait` resumes)."""

    label: str
    sent_mark: int
    tls: bool
    client_before: ClientState
    server_before: ServerState | None
    replies: list[Reply] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tls_version: str | None = None
    tls_cipher: str | None = None
    server_events: list[TraceEvent] = field(default_factory=list)


def _default_local_name(world: World) -> str:
    """Who a session plays when not told: the world's first outbound host, else its first
    client host, else ``localhost``."""
    for find in (cast.sending_host, cast.client_host):
        try:
            return find(world)
        except cast.MissingPart:
            continue
    return "localhost"


class SMTPStepper:
    """A blocking SMTP client session that goes one command at a time.

    Args:
        network_or_address: a running :class:`~simsmtp.net.network.Network` (then ``host``
            and the well-known ``port`` say where to connect), or a raw ``(ip, port)``.
        host: the world host to talk to (with a Network; default: the MX of the world's
            first recipient, :func:`simsmtp.world.cast.receiving_host`).
        port: the well-known port with a Network (25, 587, 465); ignored for a raw address.
        local_name: our name in EHLO/HELO (default with a Network: the world's first
            outbound host, else its first client host, else ``localhost``; for a raw
            address ``mail.example.com``).
        tls_context: for STARTTLS / implicit TLS; default with a Network: a context that
            verifies against the world's CA (chain and host name).
        timeout: seconds to wait for a connect or a reply before :class:`StepTimeout`.
        server_hostname: the name to verify the certificate against (default: the host
            name with a Network, the IP for a raw address).
        implicit_tls: TLS before the greeting (RFC 8314); default: True for port 465 with
            a Network, else False.
        source_ip: the local address to connect from; default with a Network: the address
            of the world host named ``local_name`` when there is one (so the default
            stepper is ``mail.example.com`` from its own 127.0.0.x), else the system's
            choice (127.0.0.1).
    """

    def __init__(self, network_or_address: RunningWorld | tuple[str, int], host: str | None = None,
                 port: int = 25, *, local_name: str | None = None,
                 tls_context: ssl.SSLContext | None = None, timeout: float = 5.0,
                 server_hostname: str | None = None, implicit_tls: bool | None = None,
                 source_ip: str | None = None) -> None:
        self.timeout = timeout
        self._trace: Trace | None = None
        #: The world this session belongs to (None for a raw address).
        self.world: World | None = None
        self._book: AddressBook | None = None
        if isinstance(network_or_address, tuple):
            local_name = local_name or "mail.example.com"
            self.host_name: str | None = host
            self.address: tuple[str, int] = (str(network_or_address[0]),
                                             int(network_or_address[1]))
            self.well_known_port: int | None = None
            implicit = bool(implicit_tls)
            sni = server_hostname or self.address[0]
        else:
            net = network_or_address
            self.world = net.world
            if host is None:
                host = cast.receiving_host(net.world, arg="host")
            if local_name is None:
                local_name = _default_local_name(net.world)
            self.host_name = net.world.host(host).name
            self.address = net.address(self.host_name, port)
            self.well_known_port = port
            self._trace = net.world.trace
            self._book = net.address_book
            implicit = port == 465 if implicit_tls is None else implicit_tls
            sni = server_hostname or self.host_name
            if tls_context is None and net.ca is not None:
                tls_context = net.ca.client_context(verify=True)
            own = net.hosts.get(local_name.lower().rstrip("."))
            if source_ip is None and own is not None:
                # Playing a world host: connect from its address, so the server sees the
                # peer (PTR, Received:, SPF) that host would be.
                source_ip = own.ip
        self.local_name: str = local_name
        self.source_ip = source_ip
        self.tls_context = tls_context
        self._config = ClientConfig(hostname=local_name, tls_context=tls_context,
                                    server_hostname=sni, implicit_tls=implicit)
        self._sock: socket.socket | None = None
        self._conn: _RecordingClient | None = None
        self._eof = False
        self._history: list[Step] = []
        self._partial: _Exchange | None = None
        self._trace_pos = 0
        self._conn_id: Any = None
        self._peer = ""
        self._server_state: ServerState | None = None
        #: The client's local (ip, port) once connected (the world host's own address
        #: even where every host's sockets share 127.0.0.1).
        self.local_address: tuple[str, int] | None = None
        self._sockname: tuple[str, int] | None = None
        self._identity: tuple[str, int] | None = None

    # ------------------------------------------------------------------ what a widget reads
    @property
    def history(self) -> list[Step]:
        """Every step so far, oldest first (a copy: walk it backward and forward)."""
        return list(self._history)

    @property
    def state(self) -> ClientState:
        """The client's confirmed state (``CLOSED`` before connect and after the end)."""
        return C.CLOSED if self._conn is None else self._conn.confirmed_state

    @property
    def server_state(self) -> ServerState | None:
        """The server's state after the last step, as the world's trace says (or None)."""
        return self._server_state

    @property
    def extensions(self) -> dict[str, str]:
        """The EHLO keywords the server advertised last (emptied by STARTTLS)."""
        return {} if self._conn is None else dict(self._conn.extensions)

    @property
    def tls_active(self) -> bool:
        """True once a TLS handshake completed."""
        return self._conn is not None and self._conn.tls_active

    @property
    def closed(self) -> bool:
        """True once the session is over (or never started)."""
        return self._conn is None or self._conn.closed or self._sock is None

    # ------------------------------------------------------------------ connecting
    def connect(self) -> Step:
        """Open the TCP connection (and, for implicit TLS, the handshake); the greeting Step.

        Raises:
            ConnectionError: the server refused the connection (a host taken down?).
            StepTimeout: no greeting within the timeout.
        """
        if self._conn is not None:
            raise LocalProtocolError("connect() was called before: one stepper is one "
                                     "connection, make a new one")
        if self._trace is not None:
            self._trace_pos = len(self._trace)
        try:
            sock = self._open_socket()
        except TimeoutError as exc:
            raise StepTimeout(f"connecting to {self._where()} took longer than "
                              f"{self.timeout:g} s") from exc
        except ConnectionRefusedError as exc:
            raise ConnectionRefusedError(
                f"{self._where()} refused the connection (is the host down?)") from exc
        self._sock = sock
        local = sock.getsockname()
        self._sockname = (str(local[0]), int(local[1]))
        local = self._identity or self._sockname
        self.local_address = (str(local[0]), int(local[1]))
        self._peer = f"{local[0]}:{local[1]}"
        self._conn = _RecordingClient(self._config)
        return self._run("<greeting>", lambda: None)

    def _open_socket(self) -> socket.socket:
        """The connected socket, from ``source_ip``. Playing a world host, the socket is
        bound to the host's own address (``127.0.0.1`` where hosts share it) and entered
        in the world's address book as that host's before it connects, so the server
        knows who connected whatever address carried it."""
        book, ip = self._book, self.source_ip
        if book is None or not ip:
            source = (ip, 0) if ip else None
            return socket.create_connection(self.address, timeout=self.timeout,
                                            source_address=source)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        local: tuple[str, int] | None = None
        try:
            sock.settimeout(self.timeout)
            sock.bind((book.bind_ip(ip), 0))
            name = sock.getsockname()
            local = (str(name[0]), int(name[1]))
            self._identity = book.outgoing(local, ip)
            sock.connect(self.address)
        except BaseException:
            if local is not None:
                book.forget(local)
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the socket (hanging up, without QUIT). Safe to call twice."""
        sock, self._sock = self._sock, None
        self._partial = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
            if self._book is not None and self._sockname is not None:
                self._book.closed(self._sockname)

    def __del__(self) -> None:
        # A stepper forgotten in a notebook cell: hang up quietly (no ResourceWarning).
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> SMTPStepper:
        return self

    def __exit__(self, *exc: object) -> None:
        """Say QUIT if the session is still open, then close."""
        if self._conn is not None and not self.closed and self._partial is None:
            with contextlib.suppress(Exception):
                self.quit()
        self.close()

    # ------------------------------------------------------------------ sending
    def send(self, command: Command) -> Step:
        """Send one command event (``Ehlo()``, ``MailFrom("a@b")`` …) and wait for its reply.

        Raises:
            LocalProtocolError: the client core refuses it in this state (nothing is sent).
            StepTimeout: no reply within the timeout.
        """
        conn = self._ready()
        return self._run(self._label(command), lambda: conn.send(command))

    def line(self, text: str | bytes) -> Step:
        """Send a line typed by hand, exactly (CRLF is added), even an illegal one.

        The client core does not check it, so the server's answer to a mistake (``503``,
        ``500``, ``501``) is what comes back. Inside DATA (after 354) a line is message
        content: it gets no reply until the line ``.`` ends the message.

        Raises:
            LocalProtocolError: the line holds a CR or LF (one trailing CRLF is allowed).
        """
        data = _as_bytes(text)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        if b"\r" in data or b"\n" in data:
            raise LocalProtocolError(
                "a line must not hold a bare CR or LF: line() adds the CRLF itself, and a "
                "stray CR or LF is how SMTP smuggling starts (RFC 5321 §2.3.8)")
        conn = self._ready()
        label = _mask(data + b"\r\n", conn.confirmed_state).rstrip(b"\r\n")
        return self._run(label.decode("utf-8", "replace"), lambda: conn.send(RawLine(data)))

    def ehlo(self, name: str | None = None) -> Step:
        """``EHLO name`` (default: ``local_name``), RFC 5321 §4.1.1.1."""
        return self.send(Ehlo(name or self.local_name))

    def helo(self, name: str | None = None) -> Step:
        """``HELO name`` (default: ``local_name``), RFC 5321 §4.1.1.1."""
        return self.send(Helo(name or self.local_name))

    def starttls(self) -> Step:
        """``STARTTLS`` and, after its ``220``, the TLS handshake (RFC 3207).

        The Step's note says the TLS version and cipher (or why the handshake failed, in
        which case the connection is closed). Afterwards, EHLO again: the server forgets
        everything said before TLS (RFC 3207 §4.2).
        """
        if self.tls_context is None:
            raise LocalProtocolError("STARTTLS needs a TLS context: SMTPStepper(..., "
                                     "tls_context=ssl.create_default_context(cafile=...))")
        return self.send(StartTLS())

    def auth(self, user: str, password: str, mechanism: str = "PLAIN") -> Step:
        """``AUTH mechanism`` with the whole SASL exchange in one Step (RFC 4954).

        The password (and every SASL response) shows as ``***`` in :attr:`Step.sent`.
        """
        return self.send(Auth(mechanism, user, password))

    def mail(self, address: str, params: dict[str, str | None] | None = None) -> Step:
        """``MAIL FROM:<address>`` ("" is the null sender), RFC 5321 §4.1.1.2."""
        return self.send(MailFrom(address, params or {}))

    def rcpt(self, address: str, params: dict[str, str | None] | None = None) -> Step:
        """``RCPT TO:<address>``, RFC 5321 §4.1.1.3."""
        return self.send(RcptTo(address, params or {}))

    def data(self, message: str | bytes | None = None) -> list[Step]:
        """``DATA`` and then the message: TWO steps, as on the wire.

        First ``DATA`` gets ``354`` (RFC 5321 §4.1.1.4: "start mail input"); then the
        content, dot-stuffed and ended by ``<CRLF>.<CRLF>``, gets the final ``250`` (or a
        refusal). Without ``message``, or when DATA is refused, only the first step.
        """
        steps = [self.send(Data())]
        if message is not None and self.state is C.MESSAGE:
            steps.append(self.message(message))
        return steps

    def message(self, content: str | bytes) -> Step:
        """Send the message content after a ``354`` (line endings made CRLF, dot-stuffed,
        terminated by ``<CRLF>.<CRLF>``); the Step holds the final reply."""
        return self.send(Message(_as_bytes(content)))

    def rset(self) -> Step:
        """``RSET``: abandon the mail transaction (RFC 5321 §4.1.1.5)."""
        return self.send(Rset())

    def noop(self) -> Step:
        """``NOOP`` (RFC 5321 §4.1.1.9)."""
        return self.send(Noop())

    def quit(self) -> Step:
        """``QUIT``: the server answers 221 and closes (RFC 5321 §4.1.1.10)."""
        return self.send(Quit())

    def transaction(self, sender: str, recipients: str | Iterable[str],
                    message: str | bytes) -> list[Step]:
        """A whole mail transaction: MAIL, one RCPT per recipient, DATA, the content.

        Stops early when MAIL is refused or no recipient is accepted (then no DATA is
        sent: there is no one to deliver to).
        """
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        steps = [self.mail(sender)]
        if steps[-1].code is None or steps[-1].code >= 400:
            return steps
        accepted = 0
        for rcpt in rcpts:
            steps.append(self.rcpt(rcpt))
            accepted += steps[-1].code is not None and steps[-1].code < 400
        if accepted:
            steps += self.data(message)
        return steps

    def wait(self, timeout: float | None = None) -> Step:
        """After a :class:`StepTimeout`: keep waiting for the outstanding reply."""
        if self._partial is None:
            raise LocalProtocolError("no step is waiting for a reply")
        return self._finish(self._partial, timeout)

    # ------------------------------------------------------------------ the engine
    def _where(self) -> str:
        ip, port = self.address
        name = f"{self.host_name} " if self.host_name else ""
        wk = f" (port {self.well_known_port} in the world)" if self.well_known_port else ""
        return f"{name}{ip}:{port}{wk}"

    def _ready(self) -> _RecordingClient:
        if self._conn is None:
            raise LocalProtocolError("not connected: call connect() first (the server "
                                     "speaks first, with its 220 greeting, RFC 5321 §4.3.1)")
        if self._partial is not None:
            raise LocalProtocolError(f"{self._partial.label} is still waiting for its reply: "
                                     "call wait() for it, or close()")
        if self._sock is None or self._conn.closed:
            raise LocalProtocolError("the connection is closed")
        return self._conn

    @staticmethod
    def _label(command: Command) -> str:
        if isinstance(command, Message):
            return "<message>"
        if isinstance(command, RawLine):
            return command.line.decode("utf-8", "replace")
        return command.verb or type(command).__name__

    def _run(self, label: str, action: Callable[[], None]) -> Step:
        conn = self._conn
        assert conn is not None
        exchange = _Exchange(label, len(conn.sent_log), conn.tls_active,
                             conn.confirmed_state, self._server_state)
        action()  # LocalProtocolError here: nothing was sent, no step
        self._partial = exchange
        return self._finish(exchange, None)

    def _done(self) -> bool:
        conn = self._conn
        assert conn is not None
        if conn.closed:
            return True
        return not conn.pending and conn.confirmed_state not in (C.CONNECTING,
                                                                 C.TLS_HANDSHAKE)

    def _finish(self, ex: _Exchange, timeout: float | None) -> Step:
        conn = self._conn
        assert conn is not None
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            self._flush()
            self._drain(ex)
            if self._done():
                break
            if self._eof:  # the core saw EOF and still waits: nothing more will come
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepTimeout(f"no reply from {self._where()} within {wait:g} s after "
                                  f"{ex.label!r} (a fault rule with a delay?); call wait() "
                                  "to keep waiting, or close()")
            self._receive(remaining, ex, wait)
        self._flush()
        self._partial = None
        return self._record(ex)

    def _flush(self) -> None:
        conn = self._conn
        assert conn is not None
        data = conn.data_to_send()
        if not data or self._sock is None or self._eof:
            return
        try:
            self._sock.sendall(data)
        except OSError:  # the server hung up: what it said before is still to be read
            self._feed_eof()

    def _receive(self, remaining: float, ex: _Exchange, wait: float) -> None:
        sock = self._sock
        if sock is None:
            self._feed_eof()
            return
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise StepTimeout(f"no reply from {self._where()} within {wait:g} s after "
                              f"{ex.label!r} (a fault rule with a delay?); call wait() to "
                              "keep waiting, or close()") from None
        except OSError:
            data = b""
        if data:
            assert self._conn is not None
            self._conn.receive_data(data)
        else:
            self._feed_eof()

    def _feed_eof(self) -> None:
        if not self._eof and self._conn is not None:
            self._eof = True
            self._conn.receive_data(b"")

    def _drain(self, ex: _Exchange) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, (ConnectionOpened, ReplyReceived)):
                ex.replies.append(event.reply)
            elif isinstance(event, TLSStarted):
                ex.tls_version, ex.tls_cipher = event.version, event.cipher
                ex.notes.append(f"TLS started with cipher {event.version}:{event.cipher}")
            elif isinstance(event, TLSFailed):
                ex.notes.append(f"TLS handshake failed: {event.reason}")
            elif isinstance(event, PlaintextDiscarded):
                ex.notes.append(f"{len(event.data)} plaintext octets received behind the "
                                "STARTTLS reply were discarded (CVE-2021-38371)")
            elif isinstance(event, ConnectionClosed) and not any(
                    r.code in (221, 421) for r in ex.replies):
                # after a 221/421 the close is expected; otherwise the learner should know
                ex.notes.append(f"connection closed: {event.reason}")
            self._flush()  # AUTH responses, the end of a handshake

    # ------------------------------------------------------------------ the server's side
    def _mine(self, event: TraceEvent) -> bool:
        if event.kind not in _STATE_KINDS or event.host != self.host_name:
            return False
        if self._conn_id is None and event.get("peer") == self._peer:
            self._conn_id = event.get("conn")
        return self._conn_id is not None and event.get("conn") == self._conn_id

    def _server_events(self, ex: _Exchange, *, tls_wait: bool) -> None:
        trace = self._trace
        if trace is None:
            return
        deadline = time.monotonic() + min(self.timeout, _TLS_TRACE_WAIT)
        while True:
            fresh = list(trace.since(self._trace_pos))
            self._trace_pos += len(fresh)
            ex.server_events += [e for e in fresh if self._mine(e)]
            # The server finishes a handshake after the client (TLS 1.3: on the client's
            # Finished), so its tls.handshake event may come a moment after ours.
            if not tls_wait or any(e.kind.startswith("tls.") for e in ex.server_events) \
                    or time.monotonic() > deadline:
                return
            time.sleep(0.005)

    def _record(self, ex: _Exchange) -> Step:
        conn = self._conn
        assert conn is not None
        handshake = ex.tls_version is not None or any("TLS handshake failed" in n
                                                      for n in ex.notes)
        self._server_events(ex, tls_wait=handshake and not conn.closed)
        before = after = self._server_state
        states = [e for e in ex.server_events
                  if e.get("state_before") in ServerState.__members__
                  and e.get("state_after") in ServerState.__members__]
        if states:
            before = ServerState[states[0]["state_before"]]
            after = ServerState[states[-1]["state_after"]]
        self._server_state = after
        if conn.closed:
            self.close()
        main = ex.replies[-1] if ex.replies else None
        if main is not None:
            explanation = main.explain()
        elif conn.closed:
            explanation = "No reply: the server closed the connection."
        elif conn.confirmed_state is C.MESSAGE:
            explanation = ("No reply expected: the server keeps reading message content "
                           "until a line holding only '.' (RFC 5321 §4.1.1.4).")
        else:
            explanation = "No reply."
        if ex.notes:
            explanation += " " + " ".join(n[0].upper() + n[1:] + "." for n in ex.notes)
        tls = ex.tls or (ex.label == "<greeting>" and conn.tls_active)
        step = Step(label=ex.label, sent=bytes(conn.sent_log[ex.sent_mark:]),
                    replies=list(ex.replies), explanation=explanation,
                    client_state_before=ex.client_before,
                    client_state_after=conn.confirmed_state,
                    server_state_before=before,
                    server_state_after=after, tls=tls, note="; ".join(ex.notes),
                    tls_version=ex.tls_version, tls_cipher=ex.tls_cipher)
        self._history.append(step)
        return step

    def __repr__(self) -> str:
        return (f"<SMTPStepper {self._where()} state={self.state.name} "
                f"steps={len(self._history)}>")


# ---------------------------------------------------------------------- Alice's MUA

def submit(network: RunningWorld, message: str | bytes, *, sender: str,
           recipients: str | Iterable[str], user: str, password: str,
           host: str | None = None, port: int = 587) -> list[Step]:
    """Submit a message as a mail client (MUA) does (RFC 6409): what ``net.submit`` runs.

    Port 587: EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT…, DATA, content, QUIT; port 465:
    TLS first (RFC 8314), then the same without STARTTLS. It stops (with QUIT) at the
    first refusal; the last steps show what went wrong.

    Args:
        network: the running world.
        message: the message (headers and body).
        sender: the envelope sender.
        recipients: one address or several.
        user: the user name to authenticate as.
        password: the password (masked in every Step).
        host: the submission server (default: the one of the sender's domain).
        port: 587 (STARTTLS) or 465 (implicit TLS).
    """
    if host is None:
        domain = sender.rpartition("@")[2].lower()
        candidates = network.world.hosts_with_role("submission")
        if not candidates:
            raise ValueError("this world has no submission host")
        host = next((h.name for h in candidates if h.domain == domain), candidates[0].name)
    steps: list[Step] = []
    with SMTPStepper(network, host, port, local_name="[127.0.0.1]") as stepper:
        # A mail client names itself by its address literal (RFC 5321 §4.1.3).
        steps.append(stepper.connect())
        if stepper.local_address is not None:
            stepper.local_name = f"[{stepper.local_address[0]}]"

        def ok() -> bool:
            return steps[-1].code is not None and steps[-1].code < 400 and not stepper.closed

        def run() -> None:
            if not ok():
                return
            steps.append(stepper.ehlo(stepper.local_name))
            if not stepper.tls_active:
                if not ok():
                    return
                steps.append(stepper.starttls())
                if not ok() or not stepper.tls_active:
                    return
                steps.append(stepper.ehlo(stepper.local_name))
            if not ok():
                return
            steps.append(stepper.auth(user, password))
            if not ok():
                return
            steps.extend(stepper.transaction(sender, recipients, message))

        run()
        if not stepper.closed:
            steps.append(stepper.quit())
    return steps
