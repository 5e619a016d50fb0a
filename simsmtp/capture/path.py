"""The view from the wire between two hosts: what a passive eavesdropper on that path reads.

A sniffer on the link between ``mail.example.com`` and ``mail.anotherdomain.org`` (a
router, an ISP, a hotel network) sees every TCP connection whose two ends are those hosts'
addresses, whoever opened it. :func:`view_path` picks those connections out of a capture by
their addresses, reads each one as :func:`simsmtp.capture.eavesdropper.eavesdrop` does and
keeps the findings per connection, so a report can say *which* connection leaked what::

    Path mail.example.com [127.0.0.2] <-> mail.anotherdomain.org [127.0.0.3]: 1 connection(s)
    --- #4 mail.example.com 127.0.0.2:60439 -> mail.anotherdomain.org 127.0.0.3:40015 (smtp)
    ...
    TLS on #4:
      24 TLS records, 3667 bytes (20 application_data): nothing else readable
      SNI (in clear): mail.anotherdomain.org

With STARTTLS the eavesdropper reads only what TLS leaks: the greeting, EHLO and its
capabilities, the STARTTLS command and the ``220`` answer, then the ClientHello's SNI and
offered cipher suites (RFC 8446 §4.1.2, RFC 6066 §3). Without it, everything: the envelope,
the headers and the body.

The view is pure: it reads the capture (a :class:`~simsmtp.traffic.Traffic`: the running
world's :class:`~simsmtp.net.tap.Tap`) as it is now. Calling it again while the world runs
gives the findings "live" (the tap only grows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..traffic import Connection, Traffic
from .eavesdropper import Findings, eavesdrop
from .tlsinspect import KeyLog, read_keylog
from .transcript import distinct_connections

__all__ = ["Leg", "PathView", "connections_between", "merge_findings", "on_path", "view_path"]


def on_path(conn: Connection, a: Iterable[str], b: Iterable[str]) -> bool:
    """True if ``conn`` runs between an address of ``a`` and one of ``b`` (either way).

    Args:
        conn: a captured connection.
        a: the IP addresses of one host.
        b: the IP addresses of the other.
    """
    a_set, b_set = set(a), set(b)
    ends = (conn.client[0], conn.server[0])
    return (ends[0] in a_set and ends[1] in b_set) or (ends[0] in b_set and ends[1] in a_set)


def connections_between(tap: Traffic, a: Iterable[str], b: Iterable[str], *,
                        services: Iterable[str] | None = None) -> list[Connection]:
    """The TCP connections of ``tap`` between ``a`` and ``b``, each once, oldest first.

    Args:
        tap: the capture.
        a: the IP addresses of one host.
        b: the IP addresses of the other.
        services: keep only these services (``"smtp"``, ``"pop3"`` …); all when ``None``.
    """
    a_set, b_set = set(a), set(b)
    wanted = None if services is None else {s.lower() for s in services}
    return [c for c in distinct_connections(tap)
            if c.transport == "tcp" and on_path(c, a_set, b_set)
            and (wanted is None or c.service.lower() in wanted)]


def merge_findings(parts: Iterable[Findings]) -> Findings:
    """One :class:`Findings` holding everything of ``parts`` (in order)."""
    merged = Findings()
    for part in parts:
        merged.connections.extend(part.connections)
        merged.banners.extend(part.banners)
        merged.ehlo_names.extend(part.ehlo_names)
        merged.capabilities.extend(part.capabilities)
        merged.credentials.extend(part.credentials)
        merged.mail_from.extend(part.mail_from)
        merged.rcpt_to.extend(part.rcpt_to)
        merged.messages.extend(part.messages)
        merged.tls.extend(part.tls)
        merged.notes.extend(part.notes)
    return merged


@dataclass(frozen=True)
class Leg:
    """One connection on the path and what the eavesdropper read from it.

    Attributes:
        connection: the captured connection.
        client: the name of the host that opened it.
        server: the name of the host it went to.
        findings: what was readable (see :class:`~simsmtp.capture.eavesdropper.Findings`).
    """

    connection: Connection
    client: str
    server: str
    findings: Findings

    @property
    def closed(self) -> bool:
        """True once the tap saw the connection end."""
        return self.connection.closed_at is not None

    def title(self) -> str:
        """``#4 mail.example.com 127.0.0.2:60439 -> mail.anotherdomain.org 127.0.0.3:25``."""
        conn = self.connection
        state = "" if self.closed else ", still open"
        return (f"#{conn.id} {self.client} {conn.client[0]}:{conn.client[1]} -> "
                f"{self.server} {conn.server[0]}:{conn.server[1]} ({conn.service}{state})")


@dataclass
class PathView:
    """What a passive eavesdropper on the path between two hosts read.

    Attributes:
        names: the two hosts' names.
        addresses: each host's IP addresses.
        legs: one :class:`Leg` per connection on the path, oldest first.
    """

    names: tuple[str, str]
    addresses: tuple[frozenset[str], frozenset[str]]
    legs: list[Leg] = field(default_factory=list)

    @property
    def findings(self) -> Findings:
        """Everything read on every connection, merged."""
        return merge_findings(leg.findings for leg in self.legs)

    @property
    def connections(self) -> list[Connection]:
        """The connections on the path."""
        return [leg.connection for leg in self.legs]

    @property
    def in_clear(self) -> bool:
        """True if anything beyond TLS metadata crossed the path readable."""
        return any(leg.findings.in_clear for leg in self.legs)

    def bodies(self) -> list[str]:
        """The body of every message read in clear (for tests and exercises)."""
        return [m.body for leg in self.legs for m in leg.findings.messages
                if not m.inside_tls]

    def report(self) -> str:
        """The eavesdropper's report, connection by connection, and a verdict."""
        (a, b), (a_ips, b_ips) = self.names, self.addresses
        out = [f"Path {a} [{', '.join(sorted(a_ips))}] <-> {b} [{', '.join(sorted(b_ips))}]: "
               f"{len(self.legs)} connection(s)"]
        for leg in self.legs:
            out.append(f"--- {leg.title()}")
            body = leg.findings.report().splitlines()[1:]  # its own header says "1 conn"
            out.extend(body or ["(nothing readable yet)"])
        if not self.legs:
            out.append("Nothing crossed this path yet.")
        elif self.in_clear:
            out.append("Verdict: mail crossed this path in clear: envelope, headers and body "
                       "are readable by anyone on the path.")
        else:
            out.append("Verdict: only what TLS leaks is readable (greeting, EHLO, STARTTLS, "
                       "the SNI and the offered cipher suites); the mail itself is not.")
        return "\n".join(out) + "\n"


def view_path(tap: Traffic, a: Iterable[str], b: Iterable[str], *,
              names: tuple[str, str] | None = None,
              keylog: KeyLog | Path | str | None = None,
              services: Iterable[str] | None = None) -> PathView:
    """What an eavesdropper on the path between ``a`` and ``b`` reads from ``tap`` now.

    Args:
        tap: the capture.
        a: the IP addresses of one host.
        b: the IP addresses of the other.
        names: the hosts' names for the report (default: their first address).
        keylog: give the eavesdropper the TLS keys too (findings then say ``inside_tls``).
        services: keep only connections of these services (all when ``None``).

    Returns:
        The :class:`PathView`; ``print(view.report())`` in a notebook.
    """
    a_ips, b_ips = frozenset(a), frozenset(b)
    if names is None:
        names = (min(a_ips, default="?"), min(b_ips, default="?"))
    log = read_keylog(keylog) if isinstance(keylog, Path | str) else keylog
    view = PathView(names, (a_ips, b_ips))
    for conn in connections_between(tap, a_ips, b_ips, services=services):
        client = names[0] if conn.client[0] in a_ips else names[1]
        server = names[1] if client == names[0] else names[0]
        if a_ips & b_ips:  # one shared address (127.0.0.1 only): say both
            client = server = f"{names[0]}/{names[1]}"
        view.legs.append(Leg(conn, client, server, eavesdrop(tap, conn.id, keylog=log)))
    return view
