"""The world's authoritative answers without a socket (simsmtp.world.zone): bytes in, bytes out."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from simsmtp.trace import Trace
from simsmtp.world.model import Record
from simsmtp.world.zone import UDP_LIMIT, Answer, Authority, parse_query

CLIENT = ("127.0.0.9", 5300)


def _authority(records: list[Record], trace: Trace | None = None) -> Authority:
    return Authority(lambda: records, trace=trace, name="ns.test")


def _ask(authority: Authority, wire: bytes, transport: str = "udp") -> Answer:
    query, problem = parse_query(wire)
    return authority.respond(wire, query, problem, CLIENT, transport)


def test_an_mx_answer_is_authoritative_and_carries_the_exchange_address() -> None:
    authority = _authority([Record("anotherdomain.org", "MX", "10 mail.anotherdomain.org."),
                            Record("mail.anotherdomain.org", "A", "127.0.0.3")])
    query = dns.message.make_query("anotherdomain.org", "MX")
    answer = _ask(authority, query.to_wire())
    assert answer.wire is not None
    reply = dns.message.from_wire(answer.wire)
    assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA  # RFC 1035 §4.1.1
    assert [rr.to_text() for rr in reply.answer[0]] == ["10 mail.anotherdomain.org."]
    assert [(rrset.rdtype, rr.to_text()) for rrset in reply.additional for rr in rrset] \
        == [(dns.rdatatype.A, "127.0.0.3")]


def test_a_name_outside_the_zones_is_refused_and_a_missing_one_is_nxdomain() -> None:
    authority = _authority([Record("example.com", "A", "127.0.0.2")])
    outside = _ask(authority, dns.message.make_query("elsewhere.net", "A").to_wire())
    missing = _ask(authority, dns.message.make_query("nope.example.com", "A").to_wire())
    assert outside.wire is not None and missing.wire is not None
    assert dns.message.from_wire(outside.wire).rcode() == dns.rcode.REFUSED
    negative = dns.message.from_wire(missing.wire)
    assert negative.rcode() == dns.rcode.NXDOMAIN  # with the zone's SOA (RFC 2308 §2.1)
    assert negative.authority[0].rdtype == dns.rdatatype.SOA


def test_unreadable_queries_get_formerr_or_are_dropped() -> None:
    authority = _authority([Record("example.com", "A", "127.0.0.2")])
    header_only = dns.message.make_query("example.com", "A").to_wire()[:12] + b"\xff"
    formerr = _ask(authority, header_only)
    assert formerr.wire is not None and formerr.response is None
    assert dns.message.from_wire(formerr.wire).rcode() == dns.rcode.FORMERR
    assert formerr.note.startswith("malformed:")
    dropped = _ask(authority, b"\x00\x01")  # shorter than a header: nothing to answer
    assert dropped.wire is None


def test_broken_world_data_is_servfail_with_a_trace_event_not_a_traceback() -> None:
    trace = Trace()
    authority = _authority([Record("a..b", "A", "127.0.0.1")], trace)
    answer = _ask(authority, dns.message.make_query("example.com", "A").to_wire())
    assert answer.wire is not None
    assert dns.message.from_wire(answer.wire).rcode() == dns.rcode.SERVFAIL
    errors = trace.events("dns.error")
    assert errors and errors[0].host == "ns.test"


def test_a_udp_answer_is_truncated_to_512_octets_without_edns() -> None:
    records = [Record("big.example.com", "TXT", f'"{"x" * 200} {i}"') for i in range(10)]
    authority = _authority(records)
    wire = dns.message.make_query("big.example.com", "TXT").to_wire()
    udp, tcp = _ask(authority, wire, "udp"), _ask(authority, wire, "tcp")
    assert udp.wire is not None and tcp.wire is not None
    assert len(udp.wire) <= UDP_LIMIT < len(tcp.wire)  # RFC 1035 §4.2.1
    assert dns.message.from_wire(udp.wire).flags & dns.flags.TC
    assert not dns.message.from_wire(tcp.wire).flags & dns.flags.TC
