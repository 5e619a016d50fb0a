"""DNS messages rendered the way ``dig`` prints them (BIND 9.18 layout).

Pure functions: a query and its response go in, text comes out. The world's DNS server
and the capture tap provide the messages; notebooks print the result next to a real
``dig`` run so a learner sees they are the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["render_dig", "render_short"]

#: dig's columns for TTL, class, type and rdata, and its tab width (BIND masterdump style).
_TTL_COLUMN, _CLASS_COLUMN, _TYPE_COLUMN, _RDATA_COLUMN, _TAB = 24, 32, 40, 48, 8
#: Header flags in dig's order (RFC 1035 §4.1.1, RFC 4035 §3.2 for ad/cd).
_FLAG_ORDER = (("qr", dns.flags.QR), ("aa", dns.flags.AA), ("tc", dns.flags.TC),
               ("rd", dns.flags.RD), ("ra", dns.flags.RA), ("ad", dns.flags.AD),
               ("cd", dns.flags.CD))


def _indent(column: int, to: int) -> tuple[str, int]:
    """Pad from ``column`` to ``to`` as BIND does: tabs to the tab stop, and at least one
    character even when already past it (a space unless that lands on a tab stop)."""
    to = max(to, column + 1)
    tabs = to // _TAB - column // _TAB
    if tabs > 0:
        column = (to // _TAB) * _TAB
    return "\t" * tabs + " " * (to - column), to


def _columns(fields: Iterable[tuple[str, int]]) -> str:
    """Lay out ``(text, column)`` pairs; the first field starts at column 0."""
    out: list[str] = []
    column = 0
    for index, (text, stop) in enumerate(fields):
        if index:
            pad, column = _indent(column, stop)
            out.append(pad)
        out.append(text)
        column += len(text)
    return "".join(out)


def _rr_lines(rrset: dns.rrset.RRset) -> list[str]:
    name = rrset.name.to_text()
    rdclass = dns.rdataclass.to_text(rrset.rdclass)
    rdtype = dns.rdatatype.to_text(rrset.rdtype)
    return [_columns([(name, 0), (str(rrset.ttl), _TTL_COLUMN), (rdclass, _CLASS_COLUMN),
                      (rdtype, _TYPE_COLUMN), (rdata.to_text(), _RDATA_COLUMN)])
            for rdata in rrset]


def _question_line(rrset: dns.rrset.RRset) -> str:
    # dig prints the ";" before the owner but counts columns from the owner name.
    return ";" + _columns([(rrset.name.to_text(), 0),
                           (dns.rdataclass.to_text(rrset.rdclass), _CLASS_COLUMN),
                           (dns.rdatatype.to_text(rrset.rdtype), _TYPE_COLUMN)])


def _count(section: list[dns.rrset.RRset]) -> int:
    return sum(len(rrset) for rrset in section)


def _opt_lines(response: dns.message.Message) -> list[str]:
    flags = " do" if response.ednsflags & dns.flags.DO else ""
    lines = [";; OPT PSEUDOSECTION:",
             f"; EDNS: version: {response.edns}, flags:{flags}; udp: {response.payload}"]
    for option in response.options:
        name = dns.edns.OptionType.to_text(option.otype)
        lines.append(f"; {name}: {option.to_wire().hex().upper()}")
    return lines


def _command(query: dns.message.Message, server: str, port: int, transport: str) -> str:
    args = [f"@{server}"]
    if port != 53:  # RFC 1035 §4.2: 53 is the default, dig users do not type it
        args += ["-p", str(port)]
    if transport.upper() == "TCP":
        args.append("+tcp")
    if query.question:
        question = query.question[0]
        args += [dns.rdatatype.to_text(question.rdtype),
                 question.name.to_text(omit_final_dot=True)]
    return " ".join(args)


def render_dig(query: dns.message.Message, response: dns.message.Message, *, server: str,
               port: int, elapsed_ms: float, when: str | None = None, transport: str = "UDP",
               rcvd: int | None = None) -> str:
    """Render one DNS exchange exactly as ``dig @server -p port TYPE name`` prints it.

    Args:
        query: the query as sent (gives the command line).
        response: the response as received.
        server: the server's IP address.
        port: the server's port.
        elapsed_ms: how long the answer took (dig's "Query time", whole milliseconds).
        when: dig's WHEN line (e.g. ``"Mon Nov 30 05:45:10 UTC 2026"``); omitted when None
            so notebooks stay reproducible.
        transport: "UDP" or "TCP".
        rcvd: the response's size in octets; by default the size of its wire form.

    Returns:
        The text, starting with dig's blank line and ending with its blank line.
    """
    flags = [name for name, bit in _FLAG_ORDER if response.flags & bit]
    additional = _count(response.additional) + (1 if response.edns >= 0 else 0)
    lines = [
        "",
        f"; <<>> DiG (simsmtp) <<>> {_command(query, server, port, transport)}",
        "; (1 server found)",
        ";; global options: +cmd",
        ";; Got answer:",
        f";; ->>HEADER<<- opcode: {dns.opcode.to_text(response.opcode())}, "
        f"status: {dns.rcode.to_text(response.rcode())}, id: {response.id}",
        f";; flags:{''.join(' ' + f for f in flags)}; QUERY: {len(response.question)}, "
        f"ANSWER: {_count(response.answer)}, AUTHORITY: {_count(response.authority)}, "
        f"ADDITIONAL: {additional}",
    ]
    if response.flags & dns.flags.RD and not response.flags & dns.flags.RA:
        lines.append(";; WARNING: recursion requested but not available")
    lines.append("")
    if response.edns >= 0:
        lines += _opt_lines(response)  # dig puts no blank line after this one
    if response.question:
        lines.append(";; QUESTION SECTION:")
        lines += [_question_line(rrset) for rrset in response.question]
        lines.append("")
    for title, section in (("ANSWER", response.answer), ("AUTHORITY", response.authority),
                           ("ADDITIONAL", response.additional)):
        if section:
            lines.append(f";; {title} SECTION:")
            lines += [line for rrset in section for line in _rr_lines(rrset)]
            lines.append("")
    if rcvd is None:
        rcvd = len(response.wire) if response.wire is not None else len(response.to_wire())
    lines += [
        f";; Query time: {int(elapsed_ms)} msec",
        f";; SERVER: {server}#{port}({server}) ({transport.upper()})",
    ]
    if when is not None:
        lines.append(f";; WHEN: {when}")
    lines += [f";; MSG SIZE  rcvd: {rcvd}", "", ""]
    return "\n".join(lines)


def render_short(response: dns.message.Message) -> str:
    """The answer section's data, one record per line, like ``dig +short``."""
    return "\n".join(rdata.to_text() for rrset in response.answer for rdata in rrset)
