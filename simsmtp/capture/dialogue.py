"""A server's conversation, from the world's trace, in swaks notation.

The trace holds every command a server of the world read and every reply it sent, in the
order it processed them (so a pipelined ``MAIL, RCPT, DATA`` reads one command, one reply,
the next command ...). This module renders one connection of that record the way ``swaks``
prints a session::

    === Trying mail.anotherdomain.org[127.0.0.3]:25...
    === Connected to mail.anotherdomain.org. (the client is mail.example.com[127.0.0.2])
    <-  220 mail.anotherdomain.org ESMTP Postfix
     -> EHLO mail.example.com
    <-  250-mail.anotherdomain.org
    ...
     -> STARTTLS
    <-  220 2.0.0 Ready to start TLS
    === TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384
     ~> EHLO mail.example.com
    <~  250-mail.anotherdomain.org
    ...
     ~> .
    <~  250 2.0.0 Ok: queued as 0B13A6B11A
     ~> QUIT
    <~  221 2.0.0 Bye
    === Connection closed with remote host.

Arrows as swaks draws them: `` ->`` sent by the client, ``<-`` sent by the server, ``<**``
an error reply (4yz/5yz, ``-ERR``); ``~>``, ``<~`` and ``<~*`` inside TLS. After ``DATA``
the message lines are shown as they crossed the wire (dot-stuffed, RFC 5321 §4.5.2), then
the lone ``.``. Secrets never appear: the cores record ``AUTH PLAIN ***`` and ``PASS ***``.

Ports are shown as the world's well-known ones (25, 587, 465, 110), never the ephemeral
ports of this machine, so the same world renders the same text on every run.

Pure: trace events in, text out (the capture's byte-exact transcript is
:mod:`simsmtp.capture.transcript`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from simsmtp.trace import TraceEvent

__all__ = ["WELL_KNOWN_PORTS", "connections", "render_dialogue"]

#: The trace's service names and the well-known ports a learner knows them by:
#: SMTP relay RFC 5321 §4.5.4 (25), submission RFC 6409 §3.1 (587), submissions
#: RFC 8314 §3.3 (465), POP3 RFC 1939 §3 (110), POP3S (995), IMAP RFC 9051 (143), IMAPS
#: RFC 8314 §3.3 (993).
WELL_KNOWN_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110, "pop3s": 995,
                    "imap": 143, "imaps": 993}
_PROTOCOL = {"pop3": "pop3", "pop3s": "pop3", "imap": "imap", "imaps": "imap"}

#: POP3 commands whose +OK answer is multi-line, ended by "." (RFC 1939 §3, RFC 2449 §5).
_POP3_MULTILINE = {"RETR", "TOP", "CAPA"}
#: ... and those that are multi-line only without an argument (RFC 1939 §5).
_POP3_MULTILINE_NO_ARG = {"LIST", "UIDL"}

_KINDS = ("tcp.connect", "tcp.close", "smtp.command", "smtp.reply", "smtp.message",
          "smtp.discarded", "pop3.command", "pop3.reply", "pop3.discarded", "imap.command",
          "imap.reply", "imap.update", "imap.discarded", "tls.handshake", "tls.failed")


def _server_side(event: TraceEvent) -> bool:
    return bool(event.get("role") != "client")


def connections(events: Iterable[TraceEvent], host: str,
                service: str | None = None) -> list[int]:
    """The ids of the connections ``host`` served, in the order they opened.

    Args:
        events: trace events (``world.trace.events()``).
        host: the serving host's name.
        service: only this service ("smtp", "submission", "smtps", "pop3", "imap" ...).
    """
    found: list[int] = []
    for event in events:
        if event.host != host or event.kind not in _KINDS or not _server_side(event):
            continue
        if service is not None and event.get("service") != service:
            continue
        conn = event.get("conn")
        if isinstance(conn, int) and conn not in found:
            found.append(conn)
    return found


def _ip(hostport: str) -> str:
    return hostport.rpartition(":")[0] or hostport


def _stuffed_lines(content: bytes) -> list[str]:
    """The message lines as the client sent them: dot-stuffed (RFC 5321 §4.5.2)."""
    text = content.decode("utf-8", "replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        return []
    lines = text.replace("\r\n", "\n").split("\n")
    return ["." + line if line.startswith(".") else line for line in lines]


def _is_error(text: str, protocol: str) -> bool:
    if protocol == "pop3":
        return text.startswith("-ERR")
    if protocol == "imap":  # RFC 9051 §7.1: NO, BAD, BYE
        return text.split(" ")[1:2] in (["NO"], ["BAD"], ["BYE"])
    return text[:1] in ("4", "5")


def render_dialogue(events: Iterable[TraceEvent], host: str, conn: int, *,
                    content: bool = True, names: dict[str, str] | None = None) -> str:
    """Render connection ``conn`` served by ``host`` as swaks prints a session.

    Args:
        events: trace events (``world.trace.events()``); others are ignored.
        host: the serving host's name (the trace events' ``host``).
        conn: the connection id (see :func:`connections`).
        content: show the message lines after ``DATA`` (else one summary line).
        names: IP address -> host name, to name the client on the "Connected" line.

    Returns:
        The lines, joined with newlines, ending with a newline ("" if nothing matched).
    """
    selected = [e for e in events
                if e.host == host and e.get("conn") == conn and e.kind in _KINDS
                and _server_side(e)]
    return "".join(line + "\n" for line in _render(selected, host, names or {}, content))


def _render(events: Sequence[TraceEvent], host: str, names: dict[str, str],
            content: bool) -> list[str]:
    out: list[str] = []
    last_command = ""
    bdat_sizes: list[int] = []
    asked: set[str] = set()  # the POP3 verbs the client sent so far
    for event in events:
        kind = event.kind
        tls = bool(event.get("tls"))
        protocol = _PROTOCOL.get(str(event.get("service")), "smtp")
        send, recv, error = (" ~>", "<~ ", "<~*") if tls else (" ->", "<- ", "<**")
        if kind == "tcp.connect":
            port = WELL_KNOWN_PORTS.get(str(event.get("service")), "?")
            local = _ip(str(event.get("local", "")))
            peer = _ip(str(event.get("peer", "")))
            client = names.get(peer, "")
            out.append(f"=== Trying {host}[{local}]:{port}...")
            out.append(f"=== Connected to {host}." +
                       (f" (the client is {client}[{peer}])" if client else
                        f" (the client is {peer})" if peer else ""))
        elif kind == "tcp.close":
            by = event.get("by")
            who = "by the client" if by == "client" else "with remote host"
            out.append(f"=== Connection closed {who}.")
        elif kind == "tls.handshake":
            out.append(f"=== TLS started with cipher {event.get('version')}:"
                       f"{event.get('cipher')}")
        elif kind == "tls.failed":
            out.append(f"*** TLS handshake failed: {event.get('reason')}")
        elif kind in ("smtp.discarded", "pop3.discarded", "imap.discarded"):
            out.append(f"*** {event.get('octets')} octets sent behind the STARTTLS command "
                       "were thrown away unread (CVE-2011-0411)")
        elif kind in ("smtp.command", "pop3.command", "imap.command"):
            line = str(event.get("line", ""))
            last_command = line
            verb, _, arg = line.partition(" ")
            if verb.upper() == "BDAT" and not arg.upper().endswith("LAST"):
                chunk = arg.split(" ")[0]
                bdat_sizes.append(int(chunk) if chunk.isdigit() else 0)
            if protocol == "pop3" and line.upper() == "CAPA" and "CAPA" in asked:
                out.append("=== the client asks CAPA again (Python's poplib.stls() does, "
                           "to check that STLS is offered)" if "STLS" not in asked else
                           "=== the client asks CAPA again (after STLS the list may change)")
            asked.add(verb.upper())
            out.append(f"{send} {line}")
        elif kind == "smtp.message":
            size = int(event.get("size") or 0)
            body = event.get("content") or b""
            via = str(event.get("via", "DATA"))
            if via == "BDAT":
                # RFC 3030 §2: the last chunk's command line is read with the message end.
                out.append(f"{send} BDAT {max(0, size - sum(bdat_sizes))} LAST")
                last_command = "BDAT LAST"
            if content and isinstance(body, bytes | bytearray):
                out += [f"{send} {line}" for line in _stuffed_lines(bytes(body))]
            else:
                out.append(f"{send} [{size} octets of message content]")
            if via != "BDAT":
                out.append(f"{send} .")  # RFC 5321 §4.1.1.4: <CRLF>.<CRLF> ends DATA
            bdat_sizes.clear()
        elif kind == "imap.update":  # said unprompted: * 2 EXISTS while idling, * BYE
            lines = event.get("lines") or [str(event.get("text", ""))]
            out += [f"{recv} {line}" for line in lines]
        elif kind in ("smtp.reply", "pop3.reply", "imap.reply"):
            text = str(event.get("text", ""))
            arrow = error if _is_error(text, protocol) else recv
            out += [f"{arrow} {line}" for line in text.split("\n")]
            if protocol == "pop3" and text.startswith("+OK"):
                verb, _, arg = last_command.partition(" ")
                verb = verb.upper()
                if verb in _POP3_MULTILINE or (verb in _POP3_MULTILINE_NO_ARG and not arg):
                    listed = [str(x) for x in event.get("lines") or []]
                    count = int(event.get("line_count") or 0)
                    if listed:
                        out += [f"{recv} {x}" for x in listed]
                    elif count:  # a message (RETR, TOP): its lines are not repeated here
                        out.append(f"{recv} [the message: {count} lines]")
                    elif "line_count" not in event.data:  # an older trace: first line only
                        out.append(f"{recv} [...]")
                    out.append(f"{recv} .")
            last_command = "" if protocol == "pop3" else last_command
    return out
