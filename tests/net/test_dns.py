"""The world's DNS server: answers checked with dnspython's own client, raw sockets and dig."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsmtp.net import dns as simdns
from simsmtp.net.dns import (
    DNSServer,
    alookup_mx,
    lookup_a,
    lookup_mx,
    make_async_resolver,
    make_resolver,
)
from simsmtp.net.loop import EventLoopThread
from simsmtp.trace import Trace
from simsmtp.world import zone as simzone
from simsmtp.world.model import Record
from simsmtp.world.zone import ZoneError, build_zones
from tests.conftest import require_program

T = TypeVar("T")




def seed_records() -> list[Record]:
    return [
        Record("anotherdomain.org", "MX", "10 mail.anotherdomain.org."),
        Record("mail.anotherdomain.org", "A", "127.0.0.3"),
        Record("www.anotherdomain.org", "CNAME", "mail"),  # relative to the zone apex
        Record("out.anotherdomain.org", "CNAME", "mail.example.com."),
        Record("loop1.anotherdomain.org", "CNAME", "loop2.anotherdomain.org."),
        Record("loop2.anotherdomain.org", "CNAME", "loop1.anotherdomain.org."),
        Record("deep.sub.anotherdomain.org", "A", "127.0.0.9"),
        Record("example.com", "MX", "10 mail.example.com."),
        Record("example.com", "MX", "20 backup.example.com."),
        Record("mail.example.com", "A", "127.0.0.2"),
        Record("backup.example.com", "A", "127.0.0.4"),
        Record("nullmx.test", "MX", "0 ."),
    ]


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    with EventLoopThread(name="dns-test") as thread:
        yield thread


@pytest.fixture
def start(loop: EventLoopThread) -> Iterator[Callable[..., DNSServer]]:
    """``start(records=..., **kwargs)`` boots a server on 127.0.0.1; closed afterwards."""
    servers: list[DNSServer] = []

    def _start(records: Iterable[Record] | Callable[[], Iterable[Record]] | None = None,
               **kwargs: Any) -> DNSServer:
        if records is None:
            records = seed_records()
        source = records if callable(records) else (lambda r=list(records): r)
        server = DNSServer(source, host="127.0.0.1", **kwargs)
        loop.run(server.start())
        servers.append(server)
        return server

    yield _start
    for server in servers:
        loop.run(server.close())


def ask(server: DNSServer, qname: str, qtype: str = "A", *, tcp: bool = False,
        **make: Any) -> dns.message.Message:
    ip, port = server.address
    query = dns.message.make_query(qname, qtype, **make)
    if tcp:
        return dns.query.tcp(query, ip, port=port, timeout=2)
    return dns.query.udp(query, ip, port=port, timeout=2, ignore_trailing=False)


def raw_udp(server: DNSServer, payload: bytes, timeout: float = 0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, server.address)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def lines(section: list[Any]) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


# --------------------------------------------------------------------------- answers


def test_mx_answer_is_authoritative_with_additional_a(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "anotherdomain.org", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.QR and response.flags & dns.flags.AA
    assert response.flags & dns.flags.RD  # echoed
    assert not response.flags & dns.flags.RA  # not a recursive resolver
    assert lines(response.answer) == ["anotherdomain.org. 3600 IN MX 10 mail.anotherdomain.org."]
    assert lines(response.additional) == ["mail.anotherdomain.org. 3600 IN A 127.0.0.3"]
    assert response.authority == []


def test_rd_clear_is_echoed_clear(start: Callable[..., DNSServer]) -> None:
    server = start()
    query = dns.message.make_query("mail.anotherdomain.org", "A")
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server.address[0], port=server.address[1], timeout=2)
    assert not response.flags & dns.flags.RD
    assert response.flags & dns.flags.AA
    assert lines(response.answer) == ["mail.anotherdomain.org. 3600 IN A 127.0.0.3"]


def test_nxdomain_carries_the_soa_with_negative_ttl(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "nope.anotherdomain.org", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert response.answer == []
    [soa] = response.authority
    assert soa.name == dns.name.from_text("anotherdomain.org")
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == soa[0].minimum == simzone.NEGATIVE_TTL  # RFC 2308 §3


def test_nodata_is_noerror_with_soa(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "mail.anotherdomain.org", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


def test_empty_non_terminal_is_nodata_not_nxdomain(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "sub.anotherdomain.org", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert ask(server, "deep.sub.anotherdomain.org").answer


def test_given_soa_is_served_and_used_for_negative_answers(
        start: Callable[..., DNSServer]) -> None:
    soa = "ns.simsmtp.test. hostmaster.zone.test. 2025031001 3600 900 604800 60"
    server = start([Record("zone.test", "SOA", soa), Record("a.zone.test", "A", "127.0.0.5")])
    assert lines(ask(server, "zone.test", "SOA").answer) == [f"zone.test. 3600 IN SOA {soa}"]
    negative = ask(server, "b.zone.test")
    assert negative.rcode() == dns.rcode.NXDOMAIN
    assert negative.authority[0].ttl == 60


def test_cname_followed_inside_the_zone(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "www.anotherdomain.org", "A")
    assert lines(response.answer) == [
        "www.anotherdomain.org. 3600 IN CNAME mail.anotherdomain.org.",
        "mail.anotherdomain.org. 3600 IN A 127.0.0.3",
    ]
    assert response.rcode() == dns.rcode.NOERROR


def test_cname_query_and_chain_ends(start: Callable[..., DNSServer]) -> None:
    server = start()
    only = ask(server, "www.anotherdomain.org", "CNAME")
    assert lines(only.answer) == ["www.anotherdomain.org. 3600 IN CNAME mail.anotherdomain.org."]
    # The target is in another zone: the resolver follows it, not us.
    out = ask(server, "out.anotherdomain.org", "A")
    assert lines(out.answer) == ["out.anotherdomain.org. 3600 IN CNAME mail.example.com."]
    assert out.rcode() == dns.rcode.NOERROR
    # A loop ends instead of spinning.
    looped = ask(server, "loop1.anotherdomain.org", "A")
    assert [r.rdtype for r in looped.answer] == [dns.rdatatype.CNAME] * 2


def test_cname_to_missing_name_is_nxdomain(start: Callable[..., DNSServer]) -> None:
    server = start([Record("a.zone.test", "CNAME", "gone.zone.test.")])
    response = ask(server, "a.zone.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN  # rcode of the last name (RFC 6604 §3)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME]
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


def test_outside_the_world_is_refused(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "www.google.com", "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == response.authority == []


def test_names_are_case_insensitive(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "AnotherDomain.ORG", "mx")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.question[0].name.to_text() == "AnotherDomain.ORG."  # echoed as asked
    assert [rd.exchange.to_text() for rd in response.answer[0]] == ["mail.anotherdomain.org."]


def test_any_is_notimp_and_axfr_refused(start: Callable[..., DNSServer]) -> None:
    server = start()
    assert ask(server, "anotherdomain.org", "ANY").rcode() == dns.rcode.NOTIMP
    assert ask(server, "anotherdomain.org", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED


def test_other_opcodes_and_question_counts(start: Callable[..., DNSServer]) -> None:
    server = start()
    notify = dns.message.make_query("anotherdomain.org", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    response = dns.query.udp(notify, server.address[0], port=server.address[1], timeout=2)
    assert response.rcode() == dns.rcode.NOTIMP
    # Two questions in one query: FORMERR (RFC 9619).
    two = dns.message.make_query("anotherdomain.org", "MX")
    two.question.append(dns.message.make_query("example.com", "MX").question[0])
    assert dns.message.from_wire(raw_udp(server, two.to_wire()) or b"").rcode() == \
        dns.rcode.FORMERR


def test_edns_version_1_gets_badvers(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "anotherdomain.org", "MX", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0


def test_multiple_mx_additionals_and_ns_glue(start: Callable[..., DNSServer]) -> None:
    server = start()
    response = ask(server, "example.com", "MX")
    assert sorted(rd.preference for rd in response.answer[0]) == [10, 20]
    assert sorted(lines(response.additional)) == [
        "backup.example.com. 3600 IN A 127.0.0.4",
        "mail.example.com. 3600 IN A 127.0.0.2",
    ]
    server2 = start([Record("zone.test", "NS", "ns.zone.test."),
                     Record("ns.zone.test", "A", "127.0.0.53")])
    assert lines(ask(server2, "zone.test", "NS").additional) == [
        "ns.zone.test. 3600 IN A 127.0.0.53"]


def test_answers_follow_live_edits(start: Callable[..., DNSServer]) -> None:
    records = seed_records()
    server = start(lambda: records)
    before = ask(server, "anotherdomain.org", "MX")
    serial = ask(server, "anotherdomain.org", "SOA").answer[0][0].serial
    records[0] = Record("anotherdomain.org", "MX", "5 mail.example.com.")
    after = ask(server, "anotherdomain.org", "MX")
    assert lines(before.answer) != lines(after.answer)
    assert lines(after.answer) == ["anotherdomain.org. 3600 IN MX 5 mail.example.com."]
    assert ask(server, "anotherdomain.org", "SOA").answer[0][0].serial != serial


def test_zone_data_is_cached_while_records_are_unchanged(
        start: Callable[..., DNSServer]) -> None:
    server = start()
    first = server.zone_data()
    assert server.zone_data() is first


def test_rrset_ttl_is_the_smallest(start: Callable[..., DNSServer]) -> None:
    server = start([Record("a.zone.test", "A", "127.0.0.5", 600),
                    Record("a.zone.test", "A", "127.0.0.6", 60)])
    assert ask(server, "a.zone.test").answer[0].ttl == 60  # RFC 2181 §5.2


# --------------------------------------------------------------------------- truncation


def _big_txt(count: int) -> list[Record]:
    return [Record("big.zone.test", "TXT", f'"{i:03d}{"x" * 190}"') for i in range(count)]


def test_udp_without_edns_is_truncated_at_512(start: Callable[..., DNSServer]) -> None:
    server = start(_big_txt(4))  # about 800 octets of answer
    response = ask(server, "big.zone.test", "TXT", use_edns=False)
    assert response.flags & dns.flags.TC
    assert len(response.to_wire()) <= 512
    # Within the EDNS size the client offers, it all fits.
    full = ask(server, "big.zone.test", "TXT", use_edns=0, payload=1232)
    assert not full.flags & dns.flags.TC
    assert len(full.answer[0]) == 4
    # Over TCP, the same question gets everything.
    tcp = ask(server, "big.zone.test", "TXT", tcp=True, use_edns=False)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 4


def test_udp_never_exceeds_our_edns_payload(start: Callable[..., DNSServer]) -> None:
    server = start(_big_txt(8))  # about 1600 octets
    query = dns.message.make_query("big.zone.test", "TXT", use_edns=0, payload=4096)
    wire = raw_udp(server, query.to_wire())
    assert wire is not None and len(wire) <= simzone.EDNS_PAYLOAD
    assert dns.message.from_wire(wire).flags & dns.flags.TC


def test_additional_that_does_not_fit_is_dropped_without_tc(
        start: Callable[..., DNSServer]) -> None:
    records = [Record("zone.test", "MX", "10 mx.zone.test.")]
    records += [Record("mx.zone.test", "A", f"127.0.1.{i}") for i in range(40)]
    server = start(records)
    response = ask(server, "zone.test", "MX", use_edns=False)
    assert not response.flags & dns.flags.TC  # RFC 2181 §9
    assert len(response.answer) == 1
    assert response.additional == []


# --------------------------------------------------------------------------- TCP


def _tcp_exchange(server: DNSServer, payloads: list[bytes], replies: int) -> list[bytes]:
    with socket.create_connection(server.address, timeout=2) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(p)) + p for p in payloads))
        out = []
        with sock.makefile("rb") as stream:
            for _ in range(replies):
                head = stream.read(2)
                if len(head) < 2:
                    break
                out.append(stream.read(struct.unpack("!H", head)[0]))
        return out


def test_tcp_carries_several_pipelined_queries(start: Callable[..., DNSServer]) -> None:
    server = start()
    first = dns.message.make_query("anotherdomain.org", "MX")
    second = dns.message.make_query("mail.example.com", "A")
    third = dns.message.make_query("nope.example.com", "A")
    wires = _tcp_exchange(server, [q.to_wire() for q in (first, second, third)], 3)
    responses = [dns.message.from_wire(w) for w in wires]
    assert [r.id for r in responses] == [first.id, second.id, third.id]
    assert [r.rcode() for r in responses] == [dns.rcode.NOERROR, dns.rcode.NOERROR,
                                              dns.rcode.NXDOMAIN]


def test_udp_and_tcp_share_the_port_and_close_releases_both(
        loop: EventLoopThread) -> None:
    server = DNSServer(lambda: seed_records(), host="127.0.0.1")
    loop.run(server.start())
    ip, port = server.address
    assert ask(server, "anotherdomain.org", "MX").answer
    assert ask(server, "anotherdomain.org", "MX", tcp=True).answer
    loop.run(server.close())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.bind((ip, port))
        tcp.bind((ip, port))


def test_close_drops_open_tcp_connections(loop: EventLoopThread) -> None:
    server = DNSServer(lambda: seed_records(), host="127.0.0.1")
    loop.run(server.start())
    query = dns.message.make_query("anotherdomain.org", "MX").to_wire()
    with socket.create_connection(server.address, timeout=2) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        with sock.makefile("rb") as stream:
            (length,) = struct.unpack("!H", stream.read(2))
            assert dns.message.from_wire(stream.read(length)).answer  # served, now idle
        loop.run(server.close())
        assert sock.recv(10) == b""  # the server hung up


def test_start_retries_when_tcp_port_is_taken(loop: EventLoopThread,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = asyncio.start_server
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> asyncio.Server:
        calls.append(args[2])
        if len(calls) == 1:
            raise OSError(98, "Address already in use")
        return await real(*args, **kwargs)

    monkeypatch.setattr(simdns.asyncio, "start_server", flaky)
    server = DNSServer(lambda: seed_records(), host="127.0.0.1")
    loop.run(server.start())
    try:
        # a retry after the refusal (another may follow if a busy machine holds that port)
        assert len(calls) >= 2 and server.address[1] == calls[-1]
        assert ask(server, "anotherdomain.org", "MX", tcp=True).answer
    finally:
        loop.run(server.close())


def test_address_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = DNSServer(lambda: []).address


# --------------------------------------------------------------------------- bad input


def test_garbage_after_a_header_gets_formerr(start: Callable[..., DNSServer]) -> None:
    trace = Trace()
    server = start(trace=trace)
    packet = struct.pack("!HHHHHH", 4711, 0x0100, 1, 0, 0, 0) + b"\x07garbage"
    reply = raw_udp(server, packet)
    assert reply is not None
    ident, flags = struct.unpack("!HH", reply[:4])
    assert ident == 4711
    assert flags & 0x8000 and flags & 0x000F == dns.rcode.FORMERR
    assert flags & 0x0100  # RD echoed
    # Same over TCP; the connection stays usable.
    good = dns.message.make_query("anotherdomain.org", "MX")
    wires = _tcp_exchange(server, [packet, good.to_wire()], 2)
    assert dns.message.from_wire(wires[0]).rcode() == dns.rcode.FORMERR
    assert dns.message.from_wire(wires[1]).answer
    assert trace.events("dns.answer")[0]["rcode"] == "FORMERR"


def test_short_packets_and_responses_are_dropped(start: Callable[..., DNSServer]) -> None:
    trace = Trace()
    server = start(trace=trace)
    assert raw_udp(server, b"\x12\x34\x01") is None
    response_packet = dns.message.make_response(dns.message.make_query("a.test", "A"))
    assert raw_udp(server, response_packet.to_wire()) is None  # never answer an answer
    assert ask(server, "anotherdomain.org", "MX").answer  # still alive
    drops = trace.events("dns.drop")
    assert len(drops) == 2
    assert "QR" in drops[1]["reason"]


_FUZZ_SERVER = DNSServer(lambda: seed_records(), trace=Trace())
_GOOD_QUERY = dns.message.make_query("anotherdomain.org", "MX").to_wire()


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.tuples(st.integers(0, len(_GOOD_QUERY) - 1), st.integers(1, 255)).map(
        lambda spot: _GOOD_QUERY[:spot[0]] + bytes([_GOOD_QUERY[spot[0]] ^ spot[1]])
        + _GOOD_QUERY[spot[0] + 1:]),
))
def test_any_bytes_get_an_answer_or_are_dropped_never_a_crash(packet: bytes) -> None:
    for transport in ("udp", "tcp"):
        reply = _FUZZ_SERVER.handle(packet, ("127.0.0.1", 5300), transport)
        header_ok = len(packet) >= 12 and not packet[2] & 0x80
        assert (reply is not None) == header_ok
        if reply is not None:
            assert reply[:2] == packet[:2]  # same id
            assert reply[2] & 0x80  # QR: it is a response
            if transport == "udp":
                assert len(reply) <= simzone.EDNS_PAYLOAD
    assert _FUZZ_SERVER.trace is not None
    assert _FUZZ_SERVER.trace.events("dns.error") == []  # no internal failure


def test_bad_record_breaks_only_its_zone(start: Callable[..., DNSServer]) -> None:
    trace = Trace()
    records = [*seed_records(), Record("broken.test", "MX", "not-a-number mail.broken.test.")]
    server = start(records, trace=trace)
    assert ask(server, "broken.test", "MX").rcode() == dns.rcode.SERVFAIL
    assert ask(server, "anotherdomain.org", "MX").rcode() == dns.rcode.NOERROR
    [error] = trace.events("dns.error")
    assert "not-a-number" in error["error"]
    assert [e.kind for e in trace.events("dns")][:3] == ["dns.query", "dns.error",
                                                         "dns.answer"]


def test_cname_beside_other_data_is_a_broken_zone() -> None:
    zone = build_zones([Record("a.zone.test", "CNAME", "b.zone.test."),
                        Record("a.zone.test", "A", "127.0.0.1")])
    assert "RFC 1034" in zone.broken[dns.name.from_text("zone.test")]


def test_records_callable_raising_gives_servfail(start: Callable[..., DNSServer]) -> None:
    trace = Trace()

    def explode() -> list[Record]:
        raise RuntimeError("world is being edited")

    server = start(explode, trace=trace)
    assert ask(server, "anotherdomain.org", "MX").rcode() == dns.rcode.SERVFAIL
    assert "world is being edited" in trace.events("dns.error")[0]["error"]


def test_unparsable_record_name_is_a_zone_error() -> None:
    with pytest.raises(ZoneError):
        build_zones([Record("a..b", "A", "127.0.0.1")])
    with pytest.raises(ZoneError):
        build_zones([Record("a.test", "NOTATYPE", "x")])


# --------------------------------------------------------------------------- zones


def test_zone_apexes_from_soa_zones_and_guess() -> None:
    zone = build_zones(
        [Record("mail.anotherdomain.org", "A", "127.0.0.3"),
         Record("3.0.0.127.in-addr.arpa", "PTR", "mail.anotherdomain.org."),
         Record("127.in-addr.arpa", "SOA", "ns.simsmtp.test. h.simsmtp.test. 1 2 3 4 5"),
         Record("x.mail.example.co.uk", "A", "127.0.0.8")],
        zones=["example.co.uk"])
    assert sorted(a.to_text() for a in zone.apexes) == [
        "127.in-addr.arpa.", "anotherdomain.org.", "example.co.uk."]
    ptr = dns.name.from_text("3.0.0.127.in-addr.arpa")
    assert zone.zone_of(ptr) == dns.name.from_text("127.in-addr.arpa")


# --------------------------------------------------------------------------- trace, hook


def test_trace_records_query_and_answer(start: Callable[..., DNSServer]) -> None:
    trace = Trace()
    server = start(trace=trace, name="ns.simsmtp.test")
    ask(server, "anotherdomain.org", "MX")
    ask(server, "nope.anotherdomain.org", "A", tcp=True)
    queries = trace.events("dns.query")
    answers = trace.events("dns.answer")
    assert [(q.host, q["transport"], q["qname"], q["qtype"]) for q in queries] == [
        ("ns.simsmtp.test", "udp", "anotherdomain.org.", "MX"),
        ("ns.simsmtp.test", "tcp", "nope.anotherdomain.org.", "A"),
    ]
    assert queries[0]["client"].startswith("127.0.0.1:")
    assert answers[0]["rcode"] == "NOERROR"
    assert answers[0]["answer"] == ["anotherdomain.org. 3600 IN MX 10 mail.anotherdomain.org."]
    assert answers[0]["additional"] == ["mail.anotherdomain.org. 3600 IN A 127.0.0.3"]
    assert answers[0]["flags"] == "qr aa rd"
    assert answers[1]["rcode"] == "NXDOMAIN" and answers[1]["authority"]
    assert all(isinstance(a["elapsed"], float) and a["elapsed"] >= 0 for a in answers)


def test_on_query_hook_gets_message_bytes(start: Callable[..., DNSServer]) -> None:
    seen: list[tuple[bytes, bytes, tuple[str, int], str]] = []
    server = start(on_query=lambda q, r, c, t: seen.append((q, r, c, t)))
    query = dns.message.make_query("anotherdomain.org", "MX")
    dns.query.udp(query, server.address[0], port=server.address[1], timeout=2)
    dns.query.tcp(query, server.address[0], port=server.address[1], timeout=2)
    assert [t for *_, t in seen] == ["udp", "tcp"]
    for q, r, client, _ in seen:
        assert q == query.to_wire()  # no TCP length prefix
        assert dns.message.from_wire(r).id == query.id
        assert client[0] == "127.0.0.1"


def test_a_failing_hook_does_not_break_answers(start: Callable[..., DNSServer]) -> None:
    trace = Trace()

    def hook(*_: Any) -> None:
        raise ValueError("tap is full")

    server = start(on_query=hook, trace=trace)
    assert ask(server, "anotherdomain.org", "MX").answer
    assert "tap is full" in trace.events("dns.error")[0]["error"]


# --------------------------------------------------------------------------- resolver


def test_lookup_mx_statuses(start: Callable[..., DNSServer]) -> None:
    server = start()
    resolver = make_resolver(*server.address)
    ok = lookup_mx(resolver, "example.com")
    assert ok.status == "ok"
    assert ok.records == [(10, "mail.example.com"), (20, "backup.example.com")]
    assert ok.response is not None and ok.elapsed >= 0
    nodata = lookup_mx(resolver, "mail.example.com")
    assert nodata.status == "nodata" and nodata.records == []
    assert nodata.response is not None
    nx = lookup_mx(resolver, "nope.example.com")
    assert nx.status == "nxdomain"
    assert nx.response is not None and nx.response.rcode() == dns.rcode.NXDOMAIN
    assert lookup_mx(resolver, "nullmx.test").records == [(0, ".")]  # RFC 7505
    refused = lookup_mx(resolver, "elsewhere.invalid")
    assert refused.status == "tempfail" and "REFUSED" in refused.error


def test_lookup_mx_follows_cname_and_a(start: Callable[..., DNSServer]) -> None:
    server = start([Record("alias.zone.test", "CNAME", "zone.test."),
                    Record("zone.test", "MX", "10 mx.zone.test."),
                    Record("mx.zone.test", "A", "127.0.0.7")])
    resolver = make_resolver(*server.address)
    assert lookup_mx(resolver, "alias.zone.test").records == [(10, "mx.zone.test")]
    a = lookup_a(resolver, "mx.zone.test")
    assert (a.status, a.addresses) == ("ok", ["127.0.0.7"])
    assert lookup_a(resolver, "mx.zone.test", "AAAA").status == "nodata"
    assert lookup_a(resolver, "no.zone.test").status == "nxdomain"


def test_servfail_and_timeout_are_tempfail(start: Callable[..., DNSServer]) -> None:
    server = start([Record("broken.test", "MX", "bad")])
    servfail = lookup_mx(make_resolver(*server.address), "broken.test")
    assert servfail.status == "tempfail" and "SERVFAIL" in servfail.error
    assert servfail.response is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # a "server" that never answers
        timeout = lookup_mx(make_resolver("127.0.0.1", silent.getsockname()[1], 0.3),
                            "example.com")
    assert timeout.status == "tempfail" and timeout.response is None


def test_resolver_uses_only_the_world(start: Callable[..., DNSServer]) -> None:
    resolver = make_resolver("127.0.0.1", 5353)
    assert resolver.nameservers == ["127.0.0.1"]
    assert resolver.port == 5353 and resolver.search == [] and resolver.cache is None
    assert resolver.lifetime == 10.0 and resolver.timeout == 2.0  # retried within it


def test_async_lookup_on_the_servers_own_loop(start: Callable[..., DNSServer],
                                              loop: EventLoopThread) -> None:
    server = start()
    resolver = make_async_resolver(*server.address)
    result = loop.run(alookup_mx(resolver, "anotherdomain.org"))
    assert result.status == "ok" and result.records == [(10, "mail.anotherdomain.org")]
    address = loop.run(simdns.alookup_a(resolver, "mail.anotherdomain.org"))
    assert address.addresses == ["127.0.0.3"]


# --------------------------------------------------------------------------- dig


def _dig(server: DNSServer, *args: str) -> str:
    dig = require_program("dig", "bind9-dnsutils")
    ip, port = server.address
    done = subprocess.run([dig, f"@{ip}", "-p", str(port), "+time=2", "+tries=1", *args],
                          capture_output=True, text=True, timeout=20, check=False)
    return done.stdout


@pytest.mark.interop
def test_dig_mx_over_udp(start: Callable[..., DNSServer]) -> None:
    out = _dig(start(), "MX", "anotherdomain.org")
    assert "status: NOERROR" in out
    assert ";; flags: qr aa rd;" in out
    assert "anotherdomain.org.\t3600\tIN\tMX\t10 mail.anotherdomain.org." in out
    assert ";; ADDITIONAL SECTION:\nmail.anotherdomain.org.\t3600\tIN\tA\t127.0.0.3" in out
    assert "(UDP)" in out


@pytest.mark.interop
def test_dig_over_tcp(start: Callable[..., DNSServer]) -> None:
    out = _dig(start(), "+tcp", "MX", "anotherdomain.org")
    assert "status: NOERROR" in out and ";; flags: qr aa rd;" in out
    assert "10 mail.anotherdomain.org." in out
    assert "(TCP)" in out


@pytest.mark.interop
def test_dig_nxdomain_and_a(start: Callable[..., DNSServer]) -> None:
    server = start()
    nx = _dig(server, "A", "nope.anotherdomain.org")
    assert "status: NXDOMAIN" in nx and ";; flags: qr aa rd;" in nx
    assert ";; AUTHORITY SECTION:\nanotherdomain.org.\t300\tIN\tSOA\tns.anotherdomain.org." in nx
    a = _dig(server, "A", "mail.anotherdomain.org")
    assert "mail.anotherdomain.org.\t3600\tIN\tA\t127.0.0.3" in a
    assert _dig(server, "+short", "A", "www.anotherdomain.org").split() == [
        "mail.anotherdomain.org.", "127.0.0.3"]


@pytest.mark.interop
def test_dig_sees_truncation_and_retries_over_tcp(start: Callable[..., DNSServer]) -> None:
    server = start(_big_txt(4))
    ignored = _dig(server, "+noedns", "+ignore", "TXT", "big.zone.test")
    assert ";; flags: qr aa tc rd;" in ignored
    retried = _dig(server, "+noedns", "TXT", "big.zone.test")
    assert ";; Truncated, retrying in TCP mode." in retried
    assert "ANSWER: 4," in retried and "(TCP)" in retried


@pytest.mark.interop
def test_dig_refused_outside_the_world(start: Callable[..., DNSServer]) -> None:
    out = _dig(start(), "A", "example.net")
    assert "status: REFUSED" in out
