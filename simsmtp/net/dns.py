"""The world's DNS on sockets: an authoritative name server over UDP and TCP, and resolvers.

:class:`DNSServer` puts the world's :class:`~simsmtp.world.zone.Authority` (the zones and
the answers built from the world's records, pure) on UDP and TCP on the same loopback
port, like a real authoritative server (RFC 1034 §4.3.2, RFC 1035, RFC 7766). It is
**not** a recursive resolver: names outside the world's zones are ``REFUSED`` and ``RA`` is
never set. :func:`make_resolver` and :func:`lookup_mx` / :func:`lookup_a` are the client
side the outbound mail agent uses (RFC 5321 §5.1); the ``a…`` variants run on an event
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from ..trace import Trace
from ..world.dnssec import ZoneKey
from ..world.zone import Answer, Authority, RecordLike, endpoint, parse_query

__all__ = [
    "AddressLookup",
    "DNSServer",
    "LookupStatus",
    "MXLookup",
    "alookup_a",
    "alookup_mx",
    "lookup_a",
    "lookup_mx",
    "make_async_resolver",
    "make_resolver",
]

#: Seconds an idle TCP connection is kept open (RFC 7766 §6.2.3 suggests "a few seconds").
TCP_IDLE_TIMEOUT = 10.0


# --------------------------------------------------------------------------- the server


def _rrset_lines(section: Sequence[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        reply = self.server.handle(data, (str(addr[0]), int(addr[1])), "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        pass


class DNSServer(Authority):
    """An authoritative DNS server for the world's zones, over UDP and TCP (RFC 1035 §4.2,
    RFC 7766): the world's :class:`~simsmtp.world.zone.Authority` on a socket.

    It is authoritative only and **not a recursive resolver**: a question outside the
    world's zones is answered ``REFUSED``, and ``RA`` is never set. Answers come from
    ``records()``, called for every query, so editing the world (say its MX) is seen by
    the very next query. What it does, like a real server:

    * ``AA`` set, ``RD`` echoed; NXDOMAIN and NODATA carry the zone's SOA (RFC 2308);
    * MX/NS/SRV answers carry the targets' A/AAAA in the additional section;
    * CNAMEs are followed inside the zone; names match case-insensitively (RFC 4343);
    * UDP answers larger than 512 octets, or the EDNS size offered (at most 1232), are
      truncated with ``TC`` (RFC 2181 §9: extra data that does not fit is just left out);
    * TCP uses the 2-octet length prefix and serves several queries per connection;
    * a malformed query gets FORMERR when its header can be read, else it is dropped;
      bad world data gives SERVFAIL and a ``dns.error`` trace event, never a traceback.

    Args:
        records: called per query; returns the world's records (:class:`RecordLike`).
        host: the loopback address to bind.
        port: 0 picks a free port (the same number for UDP and TCP).
        trace: where ``dns.query`` / ``dns.answer`` / ``dns.error`` events go.
        on_query: ``on_query(query_bytes, response_bytes, client_addr, transport)`` for
            the capture tap; the bytes are DNS messages without TCP's 2-octet length
            prefix (RFC 1035 §4.2.2); ``response_bytes`` is ``b""`` for a dropped query.
        name: the host name this server has in the world (the trace's ``host``).
        zones: called per query for the zone apexes (see :func:`build_zones`).
        zone_keys: called per query for the keys of the zones to sign (DNSSEC,
            RFC 4035): a client that sets DO gets RRSIGs and NSEC proofs, and AD when
            the answer comes from a signed zone (RFC 6840 §5.8); ``inception`` is when
            the signatures start to be valid.
    """

    def __init__(self, records: Callable[[], Iterable[RecordLike]], host: str = "127.0.0.1",
                 port: int = 0, trace: Trace | None = None,
                 on_query: Callable[[bytes, bytes, tuple[str, int], str], None] | None = None,
                 *, name: str = "dns", zones: Callable[[], Iterable[str]] | None = None,
                 zone_keys: Callable[[], Mapping[str, ZoneKey]] | None = None,
                 inception: float = 0.0) -> None:
        super().__init__(records, trace=trace, name=name, zones=zones, zone_keys=zone_keys,
                         inception=inception)
        self.host = host
        self.port = port
        self.on_query = on_query
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False
        self._address: tuple[str, int] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        """``(ip, port)`` the server listens on (UDP and TCP)."""
        if self._address is None:
            raise RuntimeError("DNSServer not started; await server.start() first")
        return self._address

    async def start(self) -> DNSServer:
        """Bind UDP and TCP on the same port and start answering."""
        loop = asyncio.get_running_loop()
        self._closing = False
        attempts = 1 if self.port else 8
        last: OSError | None = None
        for _ in range(attempts):
            transport, _proto = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, self.port))
            port = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as exc:  # TCP port taken by someone else: try another
                transport.close()
                last = exc
                continue
            self._udp = transport
            self._address = (self.host, port)
            return self
        raise OSError(f"cannot bind UDP and TCP on one port at {self.host}: {last}")

    async def close(self) -> None:
        """Stop answering and release both sockets (open TCP connections are closed)."""
        self._closing = True
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> DNSServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1]))
        if self._closing:  # accepted just as close() ran
            writer.close()
            return
        self._writers.add(writer)
        try:
            while True:  # several queries per connection (RFC 7766 §6.2.1)
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (length,) = struct.unpack("!H", prefix)  # RFC 1035 §4.2.2
                    data = await asyncio.wait_for(reader.readexactly(length),
                                                  TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                reply = self.handle(data, client, "tcp")
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # ----------------------------------------------------------------- answering

    def handle(self, wire: bytes, client: tuple[str, int], transport: str) -> bytes | None:
        """Answer one DNS message; return the response bytes, or None to drop it.

        This is the whole server minus sockets (the answers are the
        :class:`~simsmtp.world.zone.Authority`'s; this adds the trace's query, answer and
        timing, and the capture hook): the UDP and TCP loops call it, and tests may call
        it directly. It never raises.
        """
        started = time.perf_counter()
        query, problem = parse_query(wire)
        self._trace_query(query, wire, client, transport)
        answer = self.respond(wire, query, problem, client, transport)
        elapsed = time.perf_counter() - started
        self._trace_answer(answer, query, client, transport, elapsed)
        if self.on_query is not None:
            try:
                self.on_query(wire, answer.wire or b"", client, transport)
            except Exception as exc:
                self._record("dns.error", client=endpoint(client), transport=transport,
                             error=f"on_query hook: {type(exc).__name__}: {exc}")
        return answer.wire

    # ----------------------------------------------------------------- trace

    @staticmethod
    def _question(query: dns.message.Message | None) -> tuple[str, str]:
        if query is None or not query.question:
            return "", ""
        question = query.question[0]
        return question.name.to_text(), dns.rdatatype.to_text(question.rdtype)

    def _trace_query(self, query: dns.message.Message | None, wire: bytes,
                     client: tuple[str, int], transport: str) -> None:
        if self.trace is None:
            return
        qname, qtype = self._question(query)
        ident = struct.unpack("!H", wire[:2])[0] if len(wire) >= 2 else None
        self._record("dns.query", client=endpoint(client), transport=transport, qname=qname,
                     qtype=qtype, id=ident, size=len(wire))

    def _trace_answer(self, answer: Answer, query: dns.message.Message | None,
                      client: tuple[str, int], transport: str, elapsed: float) -> None:
        if self.trace is None:
            return
        qname, qtype = self._question(query)
        if answer.wire is None:
            self._record("dns.drop", client=endpoint(client), transport=transport,
                         reason=answer.note or "too short for a DNS header", elapsed=elapsed)
            return
        sent = dns.message.from_wire(answer.wire)  # what really went out, after truncation
        self._record(
            "dns.answer", client=endpoint(client), transport=transport, qname=qname, qtype=qtype,
            id=sent.id, rcode=dns.rcode.to_text(sent.rcode()),
            flags=dns.flags.to_text(sent.flags).lower(),
            truncated=bool(sent.flags & dns.flags.TC), answer=_rrset_lines(sent.answer),
            authority=_rrset_lines(sent.authority), additional=_rrset_lines(sent.additional),
            size=len(answer.wire), elapsed=elapsed, note=answer.note)


# --------------------------------------------------------------------------- resolving

LookupStatus = Literal["ok", "nodata", "nxdomain", "tempfail"]


@dataclass(frozen=True)
class MXLookup:
    """The result of an MX lookup, as the outbound agent needs it (RFC 5321 §5.1).

    Attributes:
        status: "ok"; "nodata" (the name exists, no MX: use its A record as implicit MX);
            "nxdomain" (a permanent failure); "tempfail" (SERVFAIL, REFUSED, timeout:
            queue and retry).
        records: ``(preference, exchange)`` sorted by preference, exchange without the
            final dot; a null MX (RFC 7505) shows as ``(0, ".")``.
        response: the DNS response the status comes from (None after a timeout).
        elapsed: seconds the lookup took.
        error: a human-readable reason when status is not "ok".
    """

    status: LookupStatus
    records: list[tuple[int, str]] = field(default_factory=list)
    response: dns.message.Message | None = None
    elapsed: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class AddressLookup:
    """The result of an A (or AAAA) lookup: ``addresses`` as text, otherwise as
    :class:`MXLookup`."""

    status: LookupStatus
    addresses: list[str] = field(default_factory=list)
    response: dns.message.Message | None = None
    elapsed: float = 0.0
    error: str = ""


def _configure(resolver: dns.resolver.BaseResolver, ip: str, port: int,
               lifetime: float) -> None:
    resolver.nameservers = [ip]
    resolver.port = port
    resolver.lifetime = lifetime
    # one try waits TRY_TIMEOUT, then the question is asked again until the lifetime ends
    # (RFC 1035 §4.2.1: UDP is retransmitted): a busy machine is slow, not broken
    resolver.timeout = min(lifetime, TRY_TIMEOUT)
    resolver.search = []
    resolver.domain = dns.name.root
    resolver.use_search_by_default = False
    resolver.cache = None  # the world changes under our feet: never cache
    resolver.retry_servfail = False


#: Seconds a stub resolver waits for one answer before asking again.
TRY_TIMEOUT = 2.0
#: Seconds a lookup may take in all (with its retries) before it is a failure for now.
LOOKUP_LIFETIME = 10.0


def make_resolver(ip: str, port: int,
                  lifetime: float = LOOKUP_LIFETIME) -> dns.resolver.Resolver:
    """A stub resolver that asks only the world's DNS server (no system config, no
    search domains, no cache)."""
    resolver = dns.resolver.Resolver(configure=False)
    _configure(resolver, ip, port, lifetime)
    return resolver


def make_async_resolver(ip: str, port: int,
                        lifetime: float = LOOKUP_LIFETIME) -> dns.asyncresolver.Resolver:
    """Like :func:`make_resolver`, for code running on an event loop (a blocking lookup on
    the loop that also runs the DNS server would wait for itself)."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    _configure(resolver, ip, port, lifetime)
    return resolver


_Outcome = tuple[LookupStatus, dns.rrset.RRset | None, dns.message.Message | None, str]


def _failure(exc: Exception) -> _Outcome:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        responses = list(exc.kwargs.get("responses", {}).values())
        return "nxdomain", None, responses[-1] if responses else None, "NXDOMAIN"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "nodata", None, exc.kwargs.get("response"), "no records of that type (NODATA)"
    if isinstance(exc, dns.resolver.NoNameservers):
        errors = exc.kwargs.get("errors") or []
        response = errors[-1][4] if errors else None
        if response is not None:
            reason = f"server answered {dns.rcode.to_text(response.rcode())}"
        else:
            reason = str(exc)
        return "tempfail", None, response, reason
    return "tempfail", None, None, f"{type(exc).__name__}: {exc}"


def _mx(outcome: _Outcome, elapsed: float) -> MXLookup:
    status, rrset, response, error = outcome
    records = sorted(
        (int(rd.preference),
         "." if rd.exchange == dns.name.root else rd.exchange.to_text(omit_final_dot=True))
        for rd in (rrset or []))
    return MXLookup(status, records, response, elapsed, error)


def _addresses(outcome: _Outcome, elapsed: float) -> AddressLookup:
    status, rrset, response, error = outcome
    return AddressLookup(status, [rd.to_text() for rd in (rrset or [])], response, elapsed,
                         error)


def _lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> _Outcome:
    try:
        answer = resolver.resolve(dns.name.from_text(name), rdtype, search=False)
    except (dns.exception.DNSException, OSError) as exc:
        return _failure(exc)
    return "ok", answer.rrset, answer.response, ""


async def _alookup(resolver: dns.asyncresolver.Resolver, name: str,
                   rdtype: str) -> _Outcome:
    try:
        answer = await resolver.resolve(dns.name.from_text(name), rdtype, search=False)
    except (dns.exception.DNSException, OSError) as exc:
        return _failure(exc)
    return "ok", answer.rrset, answer.response, ""


def lookup_mx(resolver: dns.resolver.Resolver, domain: str) -> MXLookup:
    """Look up ``domain``'s MX records (CNAMEs are followed by the resolver).

    Returns:
        An :class:`MXLookup`; it never raises for DNS trouble.
    """
    started = time.perf_counter()
    outcome = _lookup(resolver, domain, "MX")
    return _mx(outcome, time.perf_counter() - started)


def lookup_a(resolver: dns.resolver.Resolver, name: str, rdtype: str = "A") -> AddressLookup:
    """Look up ``name``'s A (or, with ``rdtype="AAAA"``, AAAA) records."""
    started = time.perf_counter()
    outcome = _lookup(resolver, name, rdtype)
    return _addresses(outcome, time.perf_counter() - started)


async def alookup_mx(resolver: dns.asyncresolver.Resolver, domain: str) -> MXLookup:
    """:func:`lookup_mx` for an event loop (use :func:`make_async_resolver`)."""
    started = time.perf_counter()
    outcome = await _alookup(resolver, domain, "MX")
    return _mx(outcome, time.perf_counter() - started)


async def alookup_a(resolver: dns.asyncresolver.Resolver, name: str,
                    rdtype: str = "A") -> AddressLookup:
    """:func:`lookup_a` for an event loop (use :func:`make_async_resolver`)."""
    started = time.perf_counter()
    outcome = await _alookup(resolver, name, rdtype)
    return _addresses(outcome, time.perf_counter() - started)
