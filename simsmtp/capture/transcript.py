"""A swaks-style transcript of one captured connection, from the captured bytes only.

::

    === Trying 127.0.0.3:25...
    === Connected to 127.0.0.3.
    <-  220 mail.anotherdomain.org ESMTP Postfix
     -> EHLO mail.example.com
     ...
     -> STARTTLS
    <-  220 2.0.0 Ready to start TLS
     ~> [TLS record: handshake (ClientHello), 517 bytes]
    <~  [TLS record: handshake (ServerHello), 127 bytes]
    === TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384
    <~  [TLS record: application_data, 28 bytes]

Arrows as swaks prints them: ``<-`` the server, ``->`` the client, ``<**`` an error reply
(4yz/5yz, ``-ERR``); ``<~``/``~>`` inside TLS. Inside TLS a line of the conversation is
shown only when its plaintext is known: decrypted with a key log (``keylog=``, exact and in
wire order) or supplied (``decrypted=``, paired command by reply); otherwise each record is
summarised. Works for SMTP, submission, SMTPS, POP3 (``STLS``) and DNS flows.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..traffic import Connection, Segment, Traffic
from .tlsinspect import (
    Decryption,
    KeyLog,
    TLSRecord,
    TLSSession,
    decrypt,
    inspect_tls,
    read_keylog,
    tls_start,
)

__all__ = [
    "ConnectionView",
    "Item",
    "Turn",
    "distinct_connections",
    "pair_turns",
    "protocol_of",
    "render_transcript",
    "show_line",
    "transcript",
    "view_connection",
]

Direction = Literal["c2s", "s2c"]

#: POP3 commands whose +OK reply is multi-line, ended by "." (RFC 1939 §3, RFC 2449 §5).
_POP3_MULTILINE = {b"RETR", b"TOP", b"CAPA"}
_POP3_MULTILINE_NO_ARG = {b"LIST", b"UIDL"}


def distinct_connections(tap: Traffic) -> list[Connection]:
    """The tap's connections, each TCP connection once.

    When both ends of a connection live in one world (an outbound client and a listener),
    the tap holds it twice, once from each end; the later recording is left out (same
    addresses, overlapping in time).
    """
    kept: list[Connection] = []
    for conn in tap.connections():
        duplicate = conn.transport == "tcp" and any(
            other.transport == "tcp" and other.client == conn.client
            and other.server == conn.server
            and (other.closed_at is None or other.closed_at >= conn.opened_at)
            for other in kept)
        if not duplicate:
            kept.append(conn)
    return kept


def protocol_of(conn: Connection, s2c_head: bytes = b"") -> str:
    """``smtp``, ``pop3``, ``imap``, ``dns`` or ``other``: from the service name, else the
    greeting."""
    service = conn.service.lower()
    if service in ("smtp", "submission", "smtps", "submissions", "lmtp"):
        return "smtp"
    if service in ("pop3", "pop3s"):
        return "pop3"
    if service in ("imap", "imaps"):
        return "imap"
    if s2c_head.startswith((b"* OK", b"* PREAUTH")):
        return "imap"
    if service == "dns" or conn.transport == "udp":
        return "dns"
    if s2c_head.startswith(b"+OK"):
        return "pop3"
    if s2c_head[:3].isdigit():
        return "smtp"
    return "other"


# ------------------------------------------------------------------------------ lines

def split_lines(data: bytes) -> list[bytes]:
    """Lines with their terminators (``\\n``); the last may be unterminated."""
    lines = data.splitlines(keepends=True)
    out: list[bytes] = []
    for line in lines:
        # bytes.splitlines also splits on a lone CR; SMTP does not (RFC 5321 §2.3.8).
        if out and not out[-1].endswith(b"\n"):
            out[-1] += line
        else:
            out.append(line)
    return out


def show_line(line: bytes) -> str:
    """A wire line as text: CRLF dropped, a bare LF or a missing end named, other control
    characters escaped (so SMTP-smuggling bytes are visible)."""
    suffix = ""
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line, suffix = line[:-1], " [bare LF]"
    else:
        suffix = " [no line end]"
    text = line.decode("utf-8", "backslashreplace")
    text = "".join(ch if ch == "\t" or (ch >= " " and ch != "\x7f") else f"\\x{ord(ch):02x}"
                   for ch in text)
    return text + suffix


_IMAP_ERROR = re.compile(rb"^\S+ (NO|BAD|BYE)\b")
_LITERAL = re.compile(rb"\{(\d{1,10})\+?\}\r?\n$")


def _is_error(line: bytes, protocol: str) -> bool:
    if protocol == "pop3":
        return line.startswith(b"-ERR")
    if protocol == "imap":
        return bool(_IMAP_ERROR.match(line))
    return line[:1] in (b"4", b"5") and line[:3].isdigit()


# ------------------------------------------------------------------------------ turns

@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: a command, a reply, or message content.

    Attributes:
        direction: who spoke.
        kind: ``command``, ``reply`` or ``content`` (DATA/BDAT payload, RETR/TOP message).
        lines: the lines with their line ends.
    """

    direction: Direction
    kind: str
    lines: tuple[bytes, ...]

    @property
    def text(self) -> bytes:
        """The turn's bytes joined."""
        return b"".join(self.lines)


def pair_turns(client: bytes, server: bytes, protocol: str = "smtp",
             server_first: bool = True) -> list[Turn]:
    """Pair a client's and a server's bytes into turns, command by reply.

    SMTP replies run to the line whose fourth character is not ``-`` (RFC 5321 §4.2.1);
    after ``354`` the content runs to the lone ``.`` (§4.1.1.4), a ``BDAT n`` chunk is n
    octets (RFC 3030 §2); pipelined commands (RFC 2920) are paired in order. POP3 replies
    are one line, multi-line after ``+OK`` to RETR, TOP, CAPA and LIST/UIDL without an
    argument (RFC 1939 §3, RFC 2449 §5).

    IMAP (RFC 9051 §2.2): a command (with the literals it carries, ``{n}`` then n octets)
    is answered by every server line up to the tagged one, or up to a ``+`` continuation;
    a literal in a server line (``BODY[] {n}``) is a ``content`` turn when it holds a whole
    message (``BODY[]``, ``RFC822``), else it stays in the reply.

    Args:
        client: the client's bytes.
        server: the server's bytes.
        protocol: ``smtp``, ``pop3`` or ``imap``.
        server_first: True if the server speaks first (a greeting); False after STARTTLS.
    """
    if protocol == "imap":
        return _imap_turns(split_lines(client), split_lines(server), server_first)
    c_lines, s_lines = split_lines(client), split_lines(server)
    turns: list[Turn] = []
    ci = si = 0

    def reply(multiline: bool = False) -> bytes:
        nonlocal si
        if si >= len(s_lines):
            return b""
        lines = [s_lines[si]]
        si += 1
        if protocol == "pop3":
            turns.append(Turn("s2c", "reply", (lines[0],)))
            if multiline and lines[0].startswith(b"+OK"):
                body: list[bytes] = []
                while si < len(s_lines):
                    body.append(s_lines[si])
                    si += 1
                    if body[-1].rstrip(b"\r\n") == b".":
                        break
                if body:
                    turns.append(Turn("s2c", "content", tuple(body)))
            return lines[0]
        while lines[-1][3:4] == b"-" and si < len(s_lines):  # RFC 5321 §4.2.1
            lines.append(s_lines[si])
            si += 1
        turns.append(Turn("s2c", "reply", tuple(lines)))
        return lines[0]

    def content(until_dot: bool, size: int = 0) -> None:
        nonlocal ci
        lines: list[bytes] = []
        taken = 0
        while ci < len(c_lines) and (until_dot or taken < size):
            line = c_lines[ci]
            ci += 1
            lines.append(line)
            taken += len(line)
            if until_dot and line.rstrip(b"\r\n") == b".":
                break
        if lines:
            turns.append(Turn("c2s", "content", tuple(lines)))

    if server_first:
        reply()
    while ci < len(c_lines) or si < len(s_lines):
        if ci >= len(c_lines):
            reply()
            continue
        command = c_lines[ci]
        ci += 1
        turns.append(Turn("c2s", "command", (command,)))
        words = command.split()
        verb = words[0].upper() if words else b""
        if protocol == "smtp" and verb == b"BDAT" and len(words) > 1 and words[1].isdigit():
            content(False, int(words[1]))
        multiline = protocol == "pop3" and (
            verb in _POP3_MULTILINE or (verb in _POP3_MULTILINE_NO_ARG and len(words) == 1))
        first = reply(multiline)
        if protocol == "smtp" and verb == b"DATA" and first.startswith(b"354"):
            content(True)
            reply()
    return turns


def _take_literal(lines: list[bytes], index: int, size: int) -> tuple[bytes, bytes, int]:
    """A literal of ``size`` octets from ``lines[index]`` on: (its octets, what follows it
    on its last line, the next line's index)."""
    taken = b""
    while index < len(lines) and len(taken) < size:
        taken += lines[index]
        index += 1
    return taken[:size], taken[size:], index


def _imap_turns(c_lines: list[bytes], s_lines: list[bytes], server_first: bool) -> list[Turn]:
    turns: list[Turn] = []
    ci = si = 0

    def server_until(tag: bytes | None) -> None:
        """Server lines up to the tagged reply (or a continuation, or the greeting)."""
        nonlocal si
        lines: list[bytes] = []
        pending: bytes | None = None  # the rest of a line after a literal
        while si < len(s_lines) or pending:
            if pending:
                line, pending = pending, None
            else:
                line = s_lines[si]
                si += 1
            match = _LITERAL.search(line)
            if match:
                body, rest, si = _take_literal(s_lines, si, int(match.group(1)))
                if re.search(rb"(BODY\[\]|RFC822) \{\d+\}\r?\n$", line):
                    turns.append(Turn("s2c", "reply", (*lines, line)))
                    turns.append(Turn("s2c", "content", (body,)))
                    lines = []
                else:
                    lines += [line, body]
                pending = rest or None
                continue
            lines.append(line)
            if tag is None or line.startswith(b"+") or line.startswith(tag + b" "):
                break
        if lines:
            turns.append(Turn("s2c", "reply", tuple(lines)))

    if server_first:
        server_until(None)
    while ci < len(c_lines) or si < len(s_lines):
        if ci >= len(c_lines):
            server_until(None)
            continue
        command = [c_lines[ci]]
        ci += 1
        go_ahead: list[bytes] = []
        while (match := _LITERAL.search(command[-1])) is not None:
            if b"+}" not in match.group(0) and si < len(s_lines) \
                    and s_lines[si].startswith(b"+"):
                go_ahead.append(s_lines[si])  # a synchronizing literal waits for "+"
                si += 1
            body, rest, ci = _take_literal(c_lines, ci, int(match.group(1)))
            command.append(body)
            if rest:
                command.append(rest)  # the command goes on after its literal
            elif ci < len(c_lines):
                command.append(c_lines[ci])
                ci += 1
            else:
                break
        turns.append(Turn("c2s", "command", tuple(command)))
        if go_ahead:
            turns.append(Turn("s2c", "reply", tuple(go_ahead)))
        words = command[0].split()
        server_until(words[0] if words and words[0] not in (b"DONE", b"*") else None)
    return turns


# ------------------------------------------------------------------------------ items

@dataclass(frozen=True)
class Item:
    """One thing that crossed the wire, in wire order.

    Attributes:
        direction: ``c2s`` or ``s2c``.
        kind: ``line`` (plaintext), ``tls-line`` (decrypted), ``record`` (a TLS record),
            ``datagram`` (UDP).
        data: the line or datagram bytes (for a record, its wire bytes as captured).
        segment: index of the :class:`Segment` in which it completed.
        time: that segment's time.
        record: the TLS record, for ``record`` items.
    """

    direction: Direction
    kind: str
    data: bytes
    segment: int
    time: float
    record: TLSRecord | None = None


@dataclass
class ConnectionView:
    """One connection taken apart: plaintext lines, TLS records, decryption, in wire order.

    Attributes:
        connection: the :class:`Connection`.
        protocol: ``smtp``, ``pop3``, ``dns`` or ``other``.
        streams: every byte of each direction, joined.
        tls_offsets: where TLS starts in each direction (``None``: never).
        tls: the annotated TLS session, if there was TLS.
        decryption: the key-log decryption, if a key log was given.
        items: everything, in the order it completed on the wire.
    """

    connection: Connection
    protocol: str
    streams: dict[Direction, bytes]
    tls_offsets: dict[Direction, int | None]
    tls: TLSSession | None = None
    decryption: Decryption | None = None
    items: list[Item] = field(default_factory=list)

    def plaintext(self, direction: Direction) -> bytes:
        """The bytes of a direction before TLS started (all of it without TLS)."""
        start = self.tls_offsets[direction]
        data = self.streams[direction]
        return data if start is None else data[:start]

    def tls_bytes(self, direction: Direction) -> bytes:
        """The bytes of a direction from the first TLS record on."""
        start = self.tls_offsets[direction]
        return b"" if start is None else self.streams[direction][start:]


def _locator(segments: Sequence[Segment]) -> tuple[list[int], list[Segment]]:
    ends: list[int] = []
    total = 0
    for seg in segments:
        total += len(seg.data)
        ends.append(total)
    return ends, list(segments)


def _where(locator: tuple[list[int], list[Segment]], end: int) -> Segment:
    ends, segs = locator
    position = bisect.bisect_left(ends, end)
    return segs[min(position, len(segs) - 1)]


def view_connection(conn: Connection, segments: Sequence[Segment],
                    keylog: KeyLog | None = None) -> ConnectionView:
    """Take one connection apart (see :class:`ConnectionView`).

    Args:
        conn: the connection.
        segments: its segments (any order; they are sorted by index).
        keylog: when given, TLS records are decrypted and their lines become items.
    """
    segments = sorted((s for s in segments if s.conn_id == conn.id), key=lambda s: s.index)
    by_dir: dict[Direction, list[Segment]] = {
        "c2s": [s for s in segments if s.direction == "c2s"],
        "s2c": [s for s in segments if s.direction == "s2c"]}
    streams: dict[Direction, bytes] = {d: b"".join(s.data for s in by_dir[d])
                                       for d in ("c2s", "s2c")}
    protocol = protocol_of(conn, streams["s2c"][:8])
    if protocol == "dns" or conn.transport == "udp":
        view = ConnectionView(conn, protocol, streams, {"c2s": None, "s2c": None})
        view.items = [Item(s.direction, "datagram", s.data, s.index, s.time)
                      for s in segments]
        return view
    c_start, s_start = tls_start(streams["c2s"], streams["s2c"])
    offsets: dict[Direction, int | None] = {"c2s": c_start, "s2c": s_start}
    view = ConnectionView(conn, protocol, streams, offsets)
    if c_start is not None or s_start is not None:
        view.tls = inspect_tls(view.tls_bytes("c2s"), view.tls_bytes("s2c"))
        if keylog is not None:
            view.decryption = decrypt(view.tls, keylog)
    keyed: list[tuple[int, int, Item]] = []
    for direction in ("c2s", "s2c"):
        if not by_dir[direction]:
            continue
        locator = _locator(by_dir[direction])
        position = 0
        for line in split_lines(view.plaintext(direction)):
            position += len(line)
            seg = _where(locator, position)
            keyed.append((seg.index, len(keyed), Item(direction, "line", line, seg.index,
                                                      seg.time)))
        if view.tls is None or offsets[direction] is None:
            continue
        start = offsets[direction] or 0
        pending = b""
        for index, record in enumerate(view.tls.records(direction)):
            seg = _where(locator, start + record.end)
            keyed.append((seg.index, len(keyed), Item(direction, "record",
                                                      record.fragment, seg.index,
                                                      seg.time, record)))
            inner = (view.decryption.records.get((direction, index))
                     if view.decryption else None)
            if inner is not None and inner[0] == 23:
                pending += inner[1]
                lines = split_lines(pending)
                pending = b"" if not lines or lines[-1].endswith(b"\n") else lines.pop()
                for line in lines:
                    keyed.append((seg.index, len(keyed),
                                  Item(direction, "tls-line", line, seg.index, seg.time)))
        if pending:
            last = by_dir[direction][-1]
            keyed.append((last.index, len(keyed),
                          Item(direction, "tls-line", pending, last.index, last.time)))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    view.items = [item for _, _, item in keyed]
    return view


# ------------------------------------------------------------------------------ rendering

def _arrow(direction: Direction, tls: bool, error: bool = False) -> str:
    if direction == "c2s":
        return " ~> " if tls else " -> "
    if error:
        return "<~* " if tls else "<** "
    return "<~  " if tls else "<-  "


def _dns_line(item: Item) -> str:
    try:
        import dns.message
        import dns.rcode

        message = dns.message.from_wire(item.data)
    except Exception:
        return f"[datagram, {len(item.data)} bytes]"
    question = " ".join(q.to_text().replace(" IN ", " ") for q in message.question)
    if item.direction == "c2s":
        return f"DNS query {question} (id {message.id})"
    answers = "; ".join(rr.to_text() for rr in message.answer) or "no answer"
    return (f"DNS response {dns.rcode.to_text(message.rcode())} for {question}: {answers} "
            f"(id {message.id})")


def _tls_started(session: TLSSession) -> list[str]:
    hello = session.server_hello
    if hello is None:
        return []
    version = hello.version.replace("TLS ", "TLSv")
    lines = [f"=== TLS started with cipher {version}:{hello.cipher_suite_name}"]
    if session.certificates:
        cert = session.certificates[0]
        lines.append(f"=== TLS peer certificate (sent in clear): {cert.subject}")
    elif session.is_tls13:
        lines.append("=== TLS peer certificate: encrypted (TLS 1.3 sends it after "
                     "ServerHello, RFC 8446 §4.4.2)")
    return lines


def render_transcript(conn: Connection, segments: Sequence[Segment], *,
                      keylog: KeyLog | Path | str | None = None,
                      decrypted: Mapping[str, bytes] | None = None) -> str:
    """The swaks-style transcript of one connection (see the module docstring).

    Args:
        conn: the connection.
        segments: its captured segments.
        keylog: a key log (or its path) to decrypt TLS records with, in wire order.
        decrypted: the plaintext inside TLS, ``{"c2s": ..., "s2c": ...}`` (e.g. from the
            sans-IO cores); shown paired command by reply, since the wire order of
            plaintext that was not decrypted from the records is not known.

    Returns:
        The transcript, one line per line of text, ending with a newline.
    """
    log = read_keylog(keylog) if isinstance(keylog, Path | str) else keylog
    view = view_connection(conn, segments, log)
    client, server = conn.client, conn.server
    out: list[str] = []
    if view.protocol == "dns":
        out.append(f"=== {conn.transport.upper()} {client[0]}:{client[1]} -> "
                   f"{server[0]}:{server[1]} "
                   f"({conn.service or 'dns'})")
        out.extend(_arrow(i.direction, False) + _dns_line(i) for i in view.items)
        return "\n".join(out) + "\n"
    out.append(f"=== Trying {server[0]}:{server[1]}...")
    out.append(f"=== Connected to {server[0]}.")
    decrypting = view.decryption is not None and bool(view.decryption.records)
    supplied = decrypted is not None and not decrypting
    started = False
    supplied_done = False
    for item in view.items:
        if item.kind == "line":
            error = item.direction == "s2c" and _is_error(item.data, view.protocol)
            out.append(_arrow(item.direction, False, error) + show_line(item.data))
        elif item.kind == "tls-line":
            error = item.direction == "s2c" and _is_error(item.data, view.protocol)
            out.append(_arrow(item.direction, True, error) + show_line(item.data))
        elif item.record is not None:
            record = item.record
            if not (decrypting or supplied):
                out.append(_arrow(item.direction, True) + f"[TLS record: {record.describe()}]")
            if "ServerHello" in record.messages and not started and view.tls is not None:
                out.extend(_tls_started(view.tls))
                started = True
            if supplied and record.content_type == 23 and not supplied_done:
                assert decrypted is not None
                out.extend(_supplied(view, decrypted))
                supplied_done = True
    if supplied and not supplied_done:
        assert decrypted is not None
        out.extend(_supplied(view, decrypted))
    if view.decryption is not None and view.decryption.notes:
        out.extend(f"=== {note}" for note in view.decryption.notes)
    if conn.closed_at is not None:  # swaks' words; who closed first is in the pcap too
        out.append("=== Connection closed with remote host." if conn.closed_by != "server"
                   else "=== Connection closed by remote host.")
    return "\n".join(out) + "\n"


def _supplied(view: ConnectionView, decrypted: Mapping[str, bytes]) -> list[str]:
    server_first = view.tls_offsets["c2s"] == 0  # implicit TLS: the greeting comes inside
    protocol = view.protocol if view.protocol in ("smtp", "pop3", "imap") else "smtp"
    lines: list[str] = []
    for turn in pair_turns(decrypted.get("c2s", b""), decrypted.get("s2c", b""), protocol,
                         server_first):
        for line in turn.lines:
            error = turn.direction == "s2c" and turn.kind == "reply" \
                and _is_error(line, protocol)
            lines.append(_arrow(turn.direction, True, error) + show_line(line))
    return lines


def transcript(tap: Traffic, conn_id: int, *, keylog: KeyLog | Path | str | None = None,
               decrypted: Mapping[str, bytes] | None = None) -> str:
    """The swaks-style transcript of connection ``conn_id`` of ``tap``.

    Args:
        tap: the capture.
        conn_id: which connection.
        keylog: an SSLKEYLOGFILE (path or :class:`KeyLog`) to read inside TLS.
        decrypted: or the plaintext inside TLS per direction (see
            :func:`render_transcript`).

    Raises:
        KeyError: the tap has no such connection.
    """
    conn = tap.connection(conn_id)
    if conn is None:
        raise KeyError(f"no connection {conn_id} in the capture")
    text = render_transcript(conn, tap.segments(conn_id), keylog=keylog, decrypted=decrypted)
    note = tap.left_out(conn_id)  # the capture's budget let the first bytes go
    return f"(* {note})\n{text}" if note else text
