"""Where mail ends up and how it got there: Maildir trees, ``Received:`` hops, dialogues,
and the table of who listens on which port.

* :func:`maildir_tree` draws a world's Maildir store as ``tree`` would, with paths relative
  to the world's directory (temporary paths never show): ``tmp/`` (being written),
  ``new/`` (delivered, not yet seen), ``cur/`` (seen by a mail program).
* :func:`received_hops` reads a message's ``Received:`` headers bottom to top: each server
  that handled the message prepended one (RFC 5321 §4.4), so the last header is the first
  hop.
* :func:`dialogue` prints one conversation of a server as swaks would
  (:func:`simsmtp.capture.dialogue.render_dialogue`).
* :func:`ports_table` lists every listening port of a running world: 25 (relay between
  servers, RFC 5321), 587 (submission with STARTTLS then AUTH, RFC 6409), 465 (submission
  over TLS from the first byte, RFC 8314), 110 (POP3, RFC 1939, STLS: RFC 2595).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .style import HTMLText, html_table, pre, text_table

if TYPE_CHECKING:
    from simsmtp.net.network import Network


def _tree_lines(path: Path, prefix: str = "") -> list[str]:
    entries = sorted(path.iterdir(), key=lambda p: (p.is_file(), p.name))
    lines = []
    for i, entry in enumerate(entries):
        last = i == len(entries) - 1
        branch = "└── " if last else "├── "
        if entry.is_dir():
            lines.append(f"{prefix}{branch}{entry.name}/")
            lines += _tree_lines(entry, prefix + ("    " if last else "│   "))
        else:
            lines.append(f"{prefix}{branch}{entry.name}  ({entry.stat().st_size} bytes)")
    return lines


def maildir_tree(net: Network, address: str | None = None) -> HTMLText:
    """The world's Maildir store (or one user's Maildir) as a tree.

    Args:
        net: a world started with ``storage="maildir"`` (the default).
        address: show only this user's Maildir.

    Returns:
        Text (and HTML) with paths relative to the world's mail directory.
    """
    root = getattr(net.store, "root", None)
    if root is None:
        raise ValueError("this world keeps mail in memory: start it with "
                         "world.start(storage='maildir') to see files")
    root = Path(root)
    if address is None:
        start, title = root, "mail/   (the world's Maildir store)"
    else:
        start = net.store.path(address)
        rel = start.relative_to(root).as_posix()
        title = f"mail/{rel}/   (the Maildir of {address})"
    if not start.exists():
        text = f"{title}\n(empty: nothing delivered yet)"
    else:
        text = "\n".join([title, *_tree_lines(start)])
    return HTMLText(pre(text), text)


@dataclass(frozen=True)
class Hop:
    """One ``Received:`` header, as a step of the message's path.

    Attributes:
        step: 1 for the first server that handled the message (the bottom header).
        by: the server that received it and added the header.
        from_name: the name the sender gave in HELO/EHLO.
        from_detail: what the receiver found out itself: reverse DNS name and IP.
        protocol: the ``with`` clause (SMTP, ESMTP, ESMTPS = with TLS, ESMTPSA = with TLS
            and AUTH; RFC 3848).
        tls: the TLS version and cipher, when used.
        authenticated: the authenticated sender, when AUTH was used.
        queue_id: the receiver's queue id.
        recipient: the ``for`` clause.
        date: when.
    """

    step: int
    by: str
    from_name: str
    from_detail: str
    protocol: str
    tls: str
    authenticated: str
    queue_id: str
    recipient: str
    date: str


def _find(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1).strip() if m else ""


def received_hops(message: Message | bytes | str) -> list[Hop]:
    """The ``Received:`` headers of ``message``, first hop first (bottom to top)."""
    if not isinstance(message, Message):
        from email import message_from_bytes, message_from_string, policy

        message = (message_from_bytes(message, policy=policy.default)
                   if isinstance(message, bytes)
                   else message_from_string(message, policy=policy.default))
    headers = [" ".join(str(h).split()) for h in message.get_all("Received") or []]
    hops = []
    for step, h in enumerate(reversed(headers), 1):
        head, _, date = h.rpartition(";")
        hops.append(Hop(
            step=step,
            by=_find(r"\bby\s+(\S+)", head),
            from_name=_find(r"^from\s+(\S+)", head),
            from_detail=_find(r"^from\s+\S+\s+\(([^)]*)\)", head),
            protocol=_find(r"\bby\s+\S+(?:\s+\([^)]*\))?\s+with\s+(\S+)", head),
            tls=_find(r"\(using ([^)]*)\)", head),
            authenticated=_find(r"\(Authenticated sender: ([^)]*)\)", head),
            queue_id=_find(r"\bid\s+([^\s;]+)", head),
            recipient=_find(r"\bfor\s+<([^>]*)>", head),
            date=date.strip() if head else ""))
    return hops


def received_table(message: Message | bytes | str) -> HTMLText:
    """The message's path as a table, read from its ``Received:`` headers bottom to top."""
    headers = ("step", "received by", "from (HELO name)", "seen as", "with", "TLS",
               "AUTH as", "queue id", "when")
    rows = [(h.step, h.by, h.from_name, h.from_detail, h.protocol, h.tls or "no",
             h.authenticated or "-", h.queue_id, h.date) for h in received_hops(message)]
    return HTMLText(html_table(headers, rows, mono_columns=(1, 2, 3, 4, 7)),
                    text_table(headers, rows))


def dialogue(world: Any, host: str, service: str | None = None, index: int = -1, *,
             content: bool = True, since: int = 0) -> str:
    """One conversation of ``host`` in swaks notation, from the world's trace.

    Args:
        world: the world (or its trace).
        host: the server whose conversation to show.
        service: "smtp", "submission", "smtps" or "pop3" (default: any).
        index: which of its conversations (0 the first, -1 the last).
        content: show the message lines after DATA.
        since: consider only events from this trace position on.
    """
    from simsmtp.capture.dialogue import connections, render_dialogue

    trace = getattr(world, "trace", world)
    events = [e for e in trace.events() if e.seq >= since]
    names: dict[str, str] = {}
    for e in trace.events("world.started"):
        for name, ip in (e.get("hosts") or {}).items():
            names.setdefault(str(ip), str(name))
    conns = connections(events, host, service)
    if not conns:
        what = f"{service} " if service else ""
        return f"({host} had no {what}conversation here)\n"
    return render_dialogue(events, host, conns[index], content=content, names=names)


_SERVICES = {
    25: ("smtp", "mail between servers (RFC 5321)"),
    587: ("submission", "a mail program sends mail (RFC 6409)"),
    # IANA's name for 465 since RFC 8314 §7.3 ("smtps" before)
    465: ("submissions", "submission over TLS from the first byte (RFC 8314 §3.3)"),
    110: ("pop3", "a mail program fetches mail (RFC 1939)"),
    995: ("pop3s", "POP3 over TLS from the first byte (RFC 8314)"),
    143: ("imap", "a mail program reads a mailbox that stays (RFC 9051)"),
    993: ("imaps", "IMAP over TLS from the first byte (RFC 8314)"),
}


def ports_table(net: Network) -> HTMLText:
    """Every listening port of the running world: what it is for, TLS and AUTH."""
    headers = ("host", "port", "service", "what for", "TLS", "AUTH", "listening at")
    rows = []
    for host in net.world.hosts.values():
        info = net.hosts.get(host.name)
        for port in host.ports():
            service, purpose = _SERVICES[port]
            policy = host.policy
            if port in (465, 995, 993):
                tls, auth = "implicit: TLS first", "yes (inside TLS)"
            elif port == 143:
                tls = "STARTTLS" if policy.starttls else "none"
                auth = "LOGIN after STARTTLS" if not policy.pop3_plaintext else \
                    "LOGIN (even in plaintext!)"
            elif port == 587:
                tls = "STARTTLS" if policy.starttls else "none"
                auth = "only after STARTTLS" if policy.starttls and not \
                    policy.auth_plaintext else "yes (even in plaintext!)"
            elif port == 25:
                tls = "STARTTLS (optional)" if policy.starttls else "none"
                auth = "no: anyone may deliver to its domains"
            else:
                tls = "STLS" if policy.starttls else "none"
                auth = "USER/PASS after STLS" if not policy.pop3_plaintext else \
                    "USER/PASS (even in plaintext!)"
            real = info.ports.get(port) if info is not None else None
            where = f"{info.ip}:{real}" if info is not None and real else "(down)"
            rows.append((host.name, port, service, purpose, tls, auth, where))
    return HTMLText(html_table(headers, rows, mono_columns=(0, 6)), text_table(headers, rows))


__all__ = ["Hop", "dialogue", "maildir_tree", "ports_table", "received_hops",
           "received_table"]
