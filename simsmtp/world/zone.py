"""The world's DNS zones and the answers an authoritative server gives from them (pure).

:func:`build_zones` parses the world's records (anything with ``name``, ``rtype``,
``value`` and ``ttl``, values in zone-file presentation format) into :class:`ZoneData`:
the zone apexes, every RRset, the SOA of each zone (given or synthesised), the names that
exist, and for signed zones their DNSKEY, NSEC chain and RRSIGs (RFC 4035).
:class:`Authority` answers one DNS query from them, as an authoritative-only server does
(RFC 1034 §4.3.2, RFC 1035, RFC 2308, RFC 6891): bytes of a query in, bytes of the response
out, truncated to what the transport allows. No sockets and no event loop here: the server
that puts this on UDP and TCP is :class:`simsmtp.net.dns.DNSServer`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

from ..trace import Trace
from .dnssec import SignedZone, ZoneKey, sign_zone

__all__ = [
    "EDNS_PAYLOAD",
    "MAX_CNAME_CHAIN",
    "NEGATIVE_TTL",
    "UDP_LIMIT",
    "Answer",
    "Authority",
    "RecordLike",
    "ZoneData",
    "ZoneError",
    "build_zones",
    "endpoint",
    "parse_query",
]

#: Largest UDP answer without EDNS (RFC 1035 §2.3.4, §4.2.1).
UDP_LIMIT = 512
#: The EDNS payload size we advertise and never exceed on UDP (RFC 6891 §6.2.5; the
#: 2020 DNS flag day value that avoids IP fragmentation).
EDNS_PAYLOAD = 1232
#: Longest CNAME chain followed inside our zones before we stop (loop protection,
#: RFC 1034 §3.6.2 / RFC 1034 §4.3.2 step 3a).
MAX_CNAME_CHAIN = 8
#: Negative-caching TTL in synthesised SOA records (RFC 2308 §4/§5: SOA MINIMUM).
NEGATIVE_TTL = 300
#: Query types we do not serve: zone transfers are refused (RFC 5936 §2.2 allows it),
#: ANY is not implemented (RFC 8482 §4 lets a server decline it).
_REFUSED_QTYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_NOTIMP_QTYPES = frozenset({dns.rdatatype.ANY, dns.rdatatype.MAILA, dns.rdatatype.MAILB})



class RecordLike(Protocol):
    """A DNS record of the world: e.g. ``Record("anotherdomain.org", "MX",
    "10 mail.anotherdomain.org.", 3600)``. Names may omit the final dot."""

    @property
    def name(self) -> str: ...

    @property
    def rtype(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def ttl(self) -> int: ...


class ZoneError(ValueError):
    """The world's records cannot be served (a bad value, CNAME beside other data …)."""


# --------------------------------------------------------------------------- zone data


def _deepest_apex(name: dns.name.Name,
                  apexes: dict[dns.name.Name, dns.name.Name]) -> dns.name.Name | None:
    """The deepest apex of ``apexes`` (each mapped to itself) that ``name`` is at or
    under, or None.

    Walks the labels of ``name`` from the left, so the cost does not grow with the number
    of zones; names compare case-insensitively (RFC 4343), as ``is_subdomain`` does, and
    the apex comes back as it was given.
    """
    labels = name.labels
    for i in range(len(labels)):
        found = apexes.get(dns.name.Name(labels[i:]) if i else name)
        if found is not None:
            return found
    return None


def _apex_guess(name: dns.name.Name) -> dns.name.Name:
    """The last two labels of ``name`` ("mail.anotherdomain.org." -> "anotherdomain.org.")."""
    labels = name.labels  # includes the root label b""
    return dns.name.Name(labels[-3:]) if len(labels) > 3 else name


@dataclass
class ZoneData:
    """The parsed, indexed contents of every zone the server is authoritative for.

    Attributes:
        apexes: zone origins, deepest first (so the longest match wins).
        rrsets: every RRset keyed by (owner, type), the zones' SOA records included.
        owners: every owner name.
        nonterminals: names that own nothing but have descendants (empty non-terminals:
            NODATA, not NXDOMAIN; RFC 8020 §2).
        soa: the SOA RRset of each apex (given in the records, or synthesised).
        broken: zones that cannot be served, with the reason (answered SERVFAIL, like a
            real server that failed to load one zone while serving the others).
    """

    apexes: list[dns.name.Name]
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset]
    owners: set[dns.name.Name]
    nonterminals: set[dns.name.Name]
    soa: dict[dns.name.Name, dns.rrset.RRset]
    broken: dict[dns.name.Name, str] = field(default_factory=dict)
    #: The signed zones (RFC 4035): apex -> DNSKEY, NSEC chain and RRSIGs.
    signed: dict[dns.name.Name, SignedZone] = field(default_factory=dict)
    #: The apexes by themselves (zone_of walks the labels of a name: O(labels), not
    #: O(zones)).
    _apex_index: dict[dns.name.Name, dns.name.Name] = field(init=False, repr=False,
                                                             compare=False)

    def __post_init__(self) -> None:
        self._apex_index = {apex: apex for apex in self.apexes}

    def zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The apex of the deepest zone containing ``name``, or None."""
        if len(self._apex_index) != len(self.apexes):  # apexes edited after construction
            self._apex_index = {apex: apex for apex in self.apexes}
        return _deepest_apex(name, self._apex_index)

    def exists(self, name: dns.name.Name) -> bool:
        """True when ``name`` owns records or is an empty non-terminal."""
        return name in self.owners or name in self.nonterminals


def build_zones(records: Iterable[RecordLike], zones: Iterable[str] = (),
                keys: Mapping[str, ZoneKey] | None = None, inception: float = 0.0) -> ZoneData:
    """Parse the world's records into :class:`ZoneData`.

    Zone apexes are: the names given in ``zones``, the owners of SOA records, and for any
    other name its last two labels (``mail.anotherdomain.org`` -> ``anotherdomain.org``).
    A zone without an SOA record gets a synthesised one (its serial changes whenever the
    records change). Relative names in values are relative to the zone apex.

    A zone with a bad record (an unparsable value, a CNAME beside other data, RFC 1034
    §3.6.2) is listed in ``broken`` (the server answers SERVFAIL for it); the other zones
    are served.

    ``keys`` (apex -> :class:`~simsmtp.world.dnssec.ZoneKey`) signs those zones: their
    DNSKEY and NSEC records join the zone and every RRset gets an RRSIG valid from
    ``inception`` (RFC 4035 §2).

    Raises:
        ZoneError: a record's name, type or TTL cannot be parsed at all.
    """
    raw: list[tuple[dns.name.Name, dns.rdatatype.RdataType, str, int, RecordLike]] = []
    for record in records:
        try:
            name = dns.name.from_text(str(record.name))
            rdtype = dns.rdatatype.from_text(str(record.rtype).upper())
            ttl = int(record.ttl)
        except (dns.exception.DNSException, ValueError, TypeError) as exc:
            raise ZoneError(f"record {record!r}: {exc}") from exc
        if not 0 <= ttl <= 0x7FFFFFFF:  # RFC 2181 §8: a TTL is 0 .. 2^31-1
            raise ZoneError(f"record {record!r}: TTL {ttl} out of range (RFC 2181 §8)")
        raw.append((name, rdtype, str(record.value), ttl, record))

    apexes: set[dns.name.Name] = {dns.name.from_text(z) for z in zones}
    apexes |= {name for name, rdtype, *_ in raw if rdtype == dns.rdatatype.SOA}
    index = {apex: apex for apex in apexes}
    for name, *_ in raw:
        if _deepest_apex(name, index) is None:
            guess = _apex_guess(name)
            apexes.add(guess)
            index.setdefault(guess, guess)
    ordered = sorted(apexes, key=lambda n: (-len(n.labels), n.to_text()))
    index = {apex: apex for apex in ordered}

    def zone_of(name: dns.name.Name) -> dns.name.Name:
        found = _deepest_apex(name, index)
        assert found is not None  # every owner name got an apex above
        return found

    broken: dict[dns.name.Name, str] = {}
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for name, rdtype, value, ttl, record in raw:
        apex = zone_of(name)
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=apex,
                                        relativize=False)
        except (dns.exception.DNSException, ValueError) as exc:
            broken.setdefault(apex, f"record {record!r}: bad {dns.rdatatype.to_text(rdtype)} "
                                    f"value {value!r}: {exc}")
            continue
        rrset = rrsets.setdefault((name, rdtype),
                                  dns.rrset.RRset(name, dns.rdataclass.IN, rdtype))
        rrset.add(rdata, ttl)  # keeps the smallest TTL of the set (RFC 2181 §5.2)

    serial = zlib.crc32(repr(sorted((n.to_text(), t, r.to_text())
                                    for (n, t), r in rrsets.items())).encode()) or 1
    soa: dict[dns.name.Name, dns.rrset.RRset] = {}
    for apex in ordered:
        given = rrsets.get((apex, dns.rdatatype.SOA))
        if given is None:
            text = apex.to_text()
            given = dns.rrset.from_text(
                apex, 3600, "IN", "SOA",
                # MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM (RFC 1035 §3.3.13)
                f"ns.{text} hostmaster.{text} {serial} 3600 600 86400 {NEGATIVE_TTL}")
            rrsets[(apex, dns.rdatatype.SOA)] = given
        soa[apex] = given

    types: dict[dns.name.Name, set[int]] = {}
    for owner, owned in rrsets:
        types.setdefault(owner, set()).add(owned)
    for name, present in types.items():
        if dns.rdatatype.CNAME in present and len(present) > 1:
            broken.setdefault(zone_of(name),
                              f"{name} has a CNAME and other data (RFC 1034 §3.6.2)")

    signed: dict[dns.name.Name, SignedZone] = {}
    for text, key in (keys or {}).items():
        apex = dns.name.from_text(text)
        if apex not in soa or apex in broken:
            continue
        zone_sets = {k: v for k, v in rrsets.items() if zone_of(k[0]) == apex}
        try:
            signed[apex] = sign_zone(apex, zone_sets, key, inception=inception)
        except Exception as exc:  # a zone that cannot be signed is not served half-signed
            broken.setdefault(apex, f"signing {apex} failed: {type(exc).__name__}: {exc}")
            continue
        rrsets[(apex, dns.rdatatype.DNSKEY)] = signed[apex].dnskey
        for owner, nsec in signed[apex].nsec.items():
            rrsets[(owner, dns.rdatatype.NSEC)] = nsec

    owners = {name for name, _ in rrsets}
    nonterminals: set[dns.name.Name] = set()
    for name in owners:
        apex = zone_of(name)
        parent = name
        while parent != apex and len(parent.labels) > 1:
            parent = parent.parent()
            if parent not in owners:
                nonterminals.add(parent)
    return ZoneData(ordered, rrsets, owners, nonterminals, soa, broken, signed)


# --------------------------------------------------------------------------- answering


def _negative_soa(soa: dns.rrset.RRset) -> dns.rrset.RRset:
    """The SOA for the authority section of a negative answer: TTL = min(TTL, MINIMUM)
    (RFC 2308 §3)."""
    copy = dns.rrset.RRset(soa.name, soa.rdclass, soa.rdtype)
    copy.add(soa[0], min(soa.ttl, soa[0].minimum))
    return copy


def _resolve(zone: ZoneData, response: dns.message.Message, qname: dns.name.Name,
             qtype: int) -> None:
    """Fill ``response`` for one question (RFC 1034 §4.3.2, without delegations)."""
    apex = zone.zone_of(qname)
    if apex is None:
        # Not our zone and we do not recurse (RFC 1035 §4.1.1 rcode 5).
        response.set_rcode(dns.rcode.REFUSED)
        return
    response.flags |= dns.flags.AA  # we are the authority (RFC 1035 §4.1.1)
    if qtype in _REFUSED_QTYPES:
        response.set_rcode(dns.rcode.REFUSED)
        return
    if qtype in _NOTIMP_QTYPES:
        response.set_rcode(dns.rcode.NOTIMP)
        return
    name = qname
    seen: set[dns.name.Name] = set()
    for _ in range(MAX_CNAME_CHAIN):
        seen.add(name)
        cname = zone.rrsets.get((name, dns.rdatatype.CNAME))
        if cname is not None and qtype != dns.rdatatype.CNAME:
            # RFC 1034 §4.3.2 step 3a: put the CNAME in the answer and go on with its
            # target, as long as the target is in the same zone.
            response.answer.append(cname)
            target = cname[0].target
            if zone.zone_of(target) != apex or target in seen:
                return
            name = target
            continue
        rrset = zone.rrsets.get((name, qtype))
        if rrset is not None:
            response.answer.append(rrset)
            _add_additional(zone, response, rrset)
        else:
            # NXDOMAIN if the name does not exist, else NODATA; both carry the zone's SOA
            # (RFC 2308 §2.1, §2.2). After a CNAME the rcode is for the last name
            # (RFC 6604 §3).
            if not zone.exists(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(_negative_soa(zone.soa[apex]))
        return


def _add_dnssec(zone: ZoneData, response: dns.message.Message, qname: dns.name.Name) -> bool:
    """Add the RRSIGs (and for a negative answer the NSEC proofs) of a signed zone to a
    response for a client that set DO (RFC 4035 §3.1.1-§3.1.3). True when signed."""
    apex = zone.zone_of(qname)
    signed = zone.signed.get(apex) if apex is not None else None
    if signed is None:
        return False
    if not response.answer and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        # RFC 4035 §3.1.3: NODATA: the NSEC at the name; NXDOMAIN: the NSEC covering the
        # name and the one covering the wildcard that could have matched
        proofs = [signed.covering_nsec(qname)]
        if response.rcode() == dns.rcode.NXDOMAIN:
            proofs.append(signed.covering_nsec(dns.name.from_text("*", apex)))
        for proof in proofs:
            if proof is not None and proof not in response.authority:
                response.authority.append(proof)
    for section in (response.answer, response.authority, response.additional):
        for rrset in list(section):
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            sig = signed.rrsig(rrset.name, rrset.rdtype)
            if sig is not None and sig not in section:
                section.append(sig)
    return True


def _add_additional(zone: ZoneData, response: dns.message.Message,
                    rrset: dns.rrset.RRset) -> None:
    """Additional section processing (RFC 1035 §3.3.9 MX, §3.3.11 NS; RFC 2782 SRV)."""
    targets: list[dns.name.Name] = []
    if rrset.rdtype == dns.rdatatype.MX:
        targets = [rd.exchange for rd in rrset]
    elif rrset.rdtype == dns.rdatatype.NS or rrset.rdtype == dns.rdatatype.SRV:
        targets = [rd.target for rd in rrset]
    for target in targets:
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            extra = zone.rrsets.get((target, rdtype))
            if extra is not None and extra not in response.answer \
                    and extra not in response.additional:
                response.additional.append(extra)


def _formerr(wire: bytes) -> bytes | None:
    """A bare FORMERR for a packet whose header parses but whose body does not
    (RFC 1035 §4.1.1 rcode 1), or None when it must be dropped (too short for a header,
    or itself a response: answering responses invites loops)."""
    if len(wire) < 12:  # the header is 12 octets (RFC 1035 §4.1.1)
        return None
    ident, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    opcode_bits = flags & 0x7800
    out_flags = dns.flags.QR | opcode_bits | (flags & dns.flags.RD) | dns.rcode.FORMERR
    return struct.pack("!HHHHHH", ident, out_flags, 0, 0, 0, 0)


_Renderer: Any = dns.renderer.Renderer  # untyped in dnspython


class _CaseSensitiveCompression(dict[Any, int]):
    """A name compression table (RFC 1035 §4.1.4) that reuses only a suffix spelled the
    same way, so names keep the zone's case (RFC 4343 §4.1) instead of borrowing the
    case of the question (``AnotherDomain.ORG`` must not turn ``mail.anotherdomain.org``
    into ``mail.AnotherDomain.ORG``). BIND does the same."""

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(_case_key(key), default)

    def __setitem__(self, key: Any, value: int) -> None:
        super().__setitem__(_case_key(key), value)


def _case_key(key: Any) -> Any:
    return tuple(key.labels) if isinstance(key, dns.name.Name) else key


def _render(response: dns.message.Message, max_size: int) -> bytes:
    """The response's wire form in at most ``max_size`` octets.

    Whole RRsets that do not fit are left out; TC is set only when something from the
    answer or authority section is missing, not for additional data (RFC 2181 §9).
    """
    renderer: Any = _Renderer(response.id, response.flags, max_size, response.origin)
    renderer.compress = _CaseSensitiveCompression()
    # Room for our OPT RR: root name (1) + type, class, TTL, rdlength (10); no options
    # (RFC 6891 §6.1.2).
    opt_size = 11 if response.edns >= 0 else 0
    renderer.reserve(opt_size)
    try:
        for question in response.question:
            renderer.add_question(question.name, question.rdtype, question.rdclass)
        for section, rrsets in ((dns.renderer.ANSWER, response.answer),
                                (dns.renderer.AUTHORITY, response.authority),
                                (dns.renderer.ADDITIONAL, response.additional)):
            for rrset in rrsets:
                # records in world order, not dnspython's default shuffle: answers (and so
                # notebooks) reproduce run after run
                renderer.add_rrset(section, rrset, want_shuffle=False)
    except dns.exception.TooBig:
        if renderer.section < dns.renderer.ADDITIONAL:
            renderer.flags |= dns.flags.TC  # RFC 1035 §4.1.1, RFC 2181 §9
    renderer.release_reserved()
    if response.edns >= 0:
        renderer.add_edns(response.edns, response.ednsflags, response.payload)
    renderer.write_header()
    return bytes(renderer.get_wire())

@dataclass
class Answer:
    """The response to one DNS message.

    Attributes:
        wire: the bytes to send; None: drop the query (no answer at all).
        response: the response message before rendering (None for FORMERR/SERVFAIL
            made from the header alone).
        note: why, when there is something to say (e.g. why a query was dropped).
    """

    wire: bytes | None
    response: dns.message.Message | None
    note: str = ""


@dataclass(frozen=True)
class _Rec:
    name: str
    rtype: str
    value: str
    ttl: int


def endpoint(client: tuple[str, int]) -> str:
    """``ip:port`` of a client, as the trace shows it."""
    return f"{client[0]}:{client[1]}"


def _servfail(wire: bytes) -> bytes | None:
    formerr = _formerr(wire)
    if formerr is None:
        return None
    head = bytearray(formerr)
    head[3] = (head[3] & 0xF0) | dns.rcode.SERVFAIL
    return bytes(head)


def parse_query(wire: bytes) -> tuple[dns.message.Message | None, str]:
    """The DNS message in ``wire``, or None and why it could not be read."""
    try:
        return dns.message.from_wire(wire), ""
    except Exception as exc:  # any parse failure is the client's fault
        return None, f"malformed: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the authority


class Authority:
    """The answers of an authoritative-only server for the world's zones (no sockets).

    Answers come from ``records()``, called for every query, so editing the world (say
    its MX) is seen by the very next query; the zones are rebuilt only when the records
    changed. What it does, like a real server: ``AA`` set, ``RD`` echoed, ``RA`` never
    (names outside the zones are ``REFUSED``); NXDOMAIN and NODATA carry the zone's SOA
    (RFC 2308); MX/NS/SRV answers carry the targets' A/AAAA; CNAMEs are followed inside
    the zone; names match case-insensitively (RFC 4343); UDP answers larger than 512
    octets, or the EDNS size offered (at most 1232), are truncated with ``TC``; bad world
    data gives SERVFAIL and a ``dns.error`` trace event, never a traceback.

    Args:
        records: called per query; returns the world's records (:class:`RecordLike`).
        trace: where ``dns.error`` events go.
        name: the host name this server has in the world (the trace's ``host``).
        zones: called per query for the zone apexes (see :func:`build_zones`).
        zone_keys: called per query for the keys of the zones to sign (DNSSEC,
            RFC 4035): a client that sets DO gets RRSIGs and NSEC proofs, and AD when
            the answer comes from a signed zone (RFC 6840 §5.8); ``inception`` is when
            the signatures start to be valid.
    """

    def __init__(self, records: Callable[[], Iterable[RecordLike]], *,
                 trace: Trace | None = None, name: str = "dns",
                 zones: Callable[[], Iterable[str]] | None = None,
                 zone_keys: Callable[[], Mapping[str, ZoneKey]] | None = None,
                 inception: float = 0.0) -> None:
        self.records = records
        self.zones = zones
        self.zone_keys = zone_keys
        self.inception = inception
        self.trace = trace
        self.name = name
        self._cache_key: tuple[Any, ...] | None = None
        self._cache: ZoneData | ZoneError | None = None
        self._source: object = None  # the record list the cache was built from
        self._keys: dict[str, ZoneKey] = {}

    def zone_data(self) -> ZoneData:
        """The current zone data, rebuilt only when the records changed.

        Raises:
            ZoneError: the world's records cannot be served.
        """
        source = self.records()
        keys = dict(self.zone_keys()) if self.zone_keys is not None else {}
        if (isinstance(source, tuple) and source is self._source and self.zones is None
                and self._cache is not None and keys.keys() == self._keys.keys()):
            # the very same (immutable) records as last time: the world did not change
            if isinstance(self._cache, ZoneError):
                raise self._cache
            return self._cache
        self._source = source
        records = tuple((str(r.name), str(r.rtype), str(r.value), int(r.ttl))
                        for r in source)
        zones = tuple(self.zones()) if self.zones is not None else ()
        key = (records, zones, tuple(sorted(keys)))
        self._keys = keys
        if key != self._cache_key:
            try:
                self._cache = build_zones(
                    [_Rec(*r) for r in records], zones, keys, self.inception)
            except ZoneError as exc:
                self._cache = exc
            self._cache_key = key
        if isinstance(self._cache, ZoneError):
            raise self._cache
        assert self._cache is not None
        return self._cache

    def respond(self, wire: bytes, query: dns.message.Message | None, problem: str,
                client: tuple[str, int], transport: str) -> Answer:
        """The answer to ``wire`` (parsed by :func:`parse_query` into ``query``, or None
        and ``problem``) from ``client`` over ``transport`` ("udp" or "tcp").

        Never raises: a query that cannot be read gets FORMERR (or is dropped when even
        its header is unreadable), a failure while answering gets SERVFAIL.
        """
        try:
            if query is None:
                return Answer(_formerr(wire), None, problem)
            return self.answer(query, transport)
        except Exception as exc:  # never a traceback on the wire: SERVFAIL instead
            self._record("dns.error", client=endpoint(client), transport=transport,
                         error=f"{type(exc).__name__}: {exc}")
            return Answer(_servfail(wire), None)

    def answer(self, query: dns.message.Message, transport: str) -> Answer:
        """The answer to one parsed query over ``transport`` ("udp" or "tcp")."""
        if query.flags & dns.flags.QR:
            return Answer(None, None, "not a query (QR set)")
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        response.flags &= ~dns.flags.RA  # we do not recurse (RFC 1035 §4.1.1)
        if query.edns > 0:
            # We speak EDNS version 0 only (RFC 6891 §6.1.3: BADVERS).
            response.set_rcode(dns.rcode.BADVERS)
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)  # RFC 1035 §4.1.1 rcode 4
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)  # one question per query (RFC 9619)
        elif query.question[0].rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)  # we serve class IN only
        else:
            question = query.question[0]
            try:
                zone = self.zone_data()
            except Exception as exc:
                # The world's data is broken: SERVFAIL (RFC 1035 §4.1.1 rcode 2).
                self._record("dns.error", error=f"{type(exc).__name__}: {exc}")
                response.set_rcode(dns.rcode.SERVFAIL)
            else:
                apex = zone.zone_of(question.name)
                if apex is not None and apex in zone.broken:
                    # This zone failed to load: SERVFAIL (RFC 1035 §4.1.1 rcode 2).
                    self._record("dns.error", zone=apex.to_text(), error=zone.broken[apex])
                    response.set_rcode(dns.rcode.SERVFAIL)
                else:
                    _resolve(zone, response, question.name, question.rdtype)
                    do = bool(query.ednsflags & dns.flags.DO) if query.edns >= 0 else False
                    if do:
                        response.ednsflags |= dns.flags.DO  # RFC 3225 §3: echo DO
                    if do and _add_dnssec(zone, response, question.name) and \
                            response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                        # AD: the data is authentic (RFC 4035 §3.2.3; the server holds the
                        # zone's key). Only to a DNSSEC-aware client (DO, RFC 6840 §5.8),
                        # so plain queries read as they always did.
                        response.flags |= dns.flags.AD
        if transport == "udp":
            offered = query.payload if query.edns >= 0 else UDP_LIMIT
            # At least 512 (RFC 6891 §6.2.5), at most what we advertise ourselves.
            limit = max(UDP_LIMIT, min(offered, EDNS_PAYLOAD))
        else:
            limit = 65535  # the 2-octet length prefix (RFC 1035 §4.2.2)
        return Answer(_render(response, limit), response)

    def _record(self, kind: str, **data: Any) -> None:
        if self.trace is not None:
            self.trace.record(kind, host=self.name, **data)
