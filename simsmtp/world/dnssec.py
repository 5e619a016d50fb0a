"""DNSSEC (RFC 4033-4035) and DANE TLSA (RFC 6698, RFC 7672), the pure part.

A signed zone carries, beside its records: a DNSKEY at the apex (the zone's public key), an
RRSIG over every RRset (a signature by that key), and NSEC records chaining the zone's names,
so that "no such name" can be proven too (RFC 4034 §4). A validating resolver that trusts
the key (a *trust anchor*; in the world: the DS of each signed zone, as the parent would
publish it) can then tell authentic answers (*secure*) from forged ones (*bogus*).

DANE for SMTP (RFC 7672) builds on that: a TLSA record at ``_25._tcp.<mx host>`` says which
certificate (or which key) the MX host presents; ``3 1 1`` means "the end-entity's public key
has this SHA-256" (DANE-EE), ``2 1 1`` "a CA with this public key issued it" (DANE-TA).

Keys are Ed25519 (RFC 8080, algorithm 15), made from the world's seed, and Ed25519
signatures are deterministic, so a signed zone is the same run after run. Signatures are
valid from a day before the world's epoch for twenty years, so real validators (``delv``)
accept them today and the world's virtual clock never outruns them.

>>> key = ZoneKey.from_seed("example seed", "example.org")
>>> key.dnskey().algorithm.name, key.dnskey().flags
('ED25519', 257)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

with warnings.catch_warnings():
    # dnspython's DNSSEC module loads its DSA support, which cryptography deprecates (the
    # world signs with Ed25519 only): no warning in a learner's notebook for that.
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import dns.dnssec
import dns.dnssectypes
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rrset

__all__ = [
    "SIGNATURE_LIFETIME",
    "SignedZone",
    "ValidationResult",
    "ZoneKey",
    "sign_zone",
    "tlsa_matches",
    "tlsa_name",
    "tlsa_value",
    "validate",
]

#: Signatures are valid for twenty years from a day before the epoch (RFC 4034 §3.1.5).
SIGNATURE_LIFETIME = 20 * 365 * 86400
#: The last second an RRSIG can name without wrapping around (2106-02-07).
LAST_TIME = 2**32 - 1
#: Key flags: 257 = Zone Key + Secure Entry Point, one key signing everything (a CSK).
CSK_FLAGS = 257

RRsets = Mapping[tuple[dns.name.Name, int], dns.rrset.RRset]


@dataclass(frozen=True)
class ZoneKey:
    """A zone's signing key (Ed25519), made from text that names the world and the zone."""

    zone: dns.name.Name
    private_bytes: bytes

    @classmethod
    def from_seed(cls, seed: str, zone: str | dns.name.Name) -> ZoneKey:
        """The key of ``zone`` in the world seeded with ``seed`` (the same every run).

        Anyone who knows the seed can sign for the zone: keys for the simulator only.
        """
        name = zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)
        digest = hashlib.sha256(f"simsmtp dnssec {seed} {name.to_text().lower()}"
                                .encode()).digest()
        return cls(name, digest)

    @cached_property
    def private_key(self) -> Any:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.private_bytes)

    def dnskey(self) -> Any:
        """The DNSKEY rdata (RFC 4034 §2)."""
        return dns.dnssec.make_dnskey(self.private_key.public_key(),
                                      dns.dnssectypes.Algorithm.ED25519, flags=CSK_FLAGS)

    def ds(self) -> Any:
        """The DS rdata a parent zone would publish (RFC 4034 §5, SHA-256 digest)."""
        return dns.dnssec.make_ds(self.zone, self.dnskey(), "SHA256")

    def trust_anchor(self) -> str:
        """A ``delv -a`` / BIND trust-anchors clause for this key."""
        key = self.dnskey()
        text = key.to_text().split(" ", 3)[3]
        return (f'trust-anchors {{\n  {self.zone.to_text()} static-key {key.flags} '
                f'{key.protocol} {int(key.algorithm)} "{text}";\n}};\n')


@dataclass
class SignedZone:
    """What signing a zone adds: the apex DNSKEY, the NSEC chain, an RRSIG per RRset."""

    apex: dns.name.Name
    dnskey: dns.rrset.RRset
    nsec: dict[dns.name.Name, dns.rrset.RRset]
    rrsigs: dict[tuple[dns.name.Name, int], dns.rrset.RRset]

    def rrsig(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """The RRSIG set covering ``(name, rdtype)``, if signed."""
        return self.rrsigs.get((name, rdtype))

    def covering_nsec(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        """The NSEC that proves ``name`` does not exist (owner < name < next), or the one
        at ``name`` itself (for NODATA)."""
        if name in self.nsec:
            return self.nsec[name]
        best: dns.rrset.RRset | None = None
        for owner in sorted(self.nsec):  # canonical order (RFC 4034 §6.1)
            if owner < name:
                best = self.nsec[owner]
        return best if best is not None else self.nsec.get(self.apex)


def sign_zone(apex: dns.name.Name, rrsets: RRsets, key: ZoneKey, *, inception: float,
              ttl: int = 3600) -> SignedZone:
    """Sign every RRset of the zone at ``apex`` with ``key`` (RFC 4035 §2).

    ``rrsets`` holds the zone's records, keyed by (owner, type); names outside the zone are
    skipped. ``inception`` is when signatures start to be valid (seconds since 1970).
    """
    dnskey = dns.rrset.RRset(apex, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    public = key.dnskey()
    dnskey.add(public, ttl)
    mine = {k: v for k, v in rrsets.items() if k[0].is_subdomain(apex)}
    mine[(apex, dns.rdatatype.DNSKEY)] = dnskey
    owners = sorted({name for name, _ in mine})  # canonical order (RFC 4034 §6.1)
    types: dict[dns.name.Name, set[int]] = {}
    for name, rdtype in mine:
        types.setdefault(name, set()).add(rdtype)
    nsec: dict[dns.name.Name, dns.rrset.RRset] = {}
    minimum = ttl
    soa = mine.get((apex, dns.rdatatype.SOA))
    if soa is not None:
        minimum = min(soa.ttl, soa[0].minimum)  # RFC 4035 §2.3: the SOA minimum TTL
    for i, owner in enumerate(owners):
        following = owners[(i + 1) % len(owners)]
        present = sorted(types[owner] | {dns.rdatatype.RRSIG, dns.rdatatype.NSEC})
        windows = dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(
            [dns.rdatatype.RdataType.make(t) for t in present])
        rdata = dns.rdtypes.ANY.NSEC.NSEC(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN, dns.rdatatype.NSEC, following, windows)
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.NSEC)
        rrset.add(rdata, minimum)
        nsec[owner] = rrset
    rrsigs: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    to_sign = list(mine.items()) + [((n, dns.rdatatype.NSEC), r) for n, r in nsec.items()]
    # RRSIG times are 32-bit seconds (RFC 4034 §3.1.5): keep a far-future world inside them
    inception = max(0.0, min(inception, LAST_TIME - SIGNATURE_LIFETIME))
    for (name, rdtype), rrset in to_sign:
        signature = dns.dnssec.sign(rrset, key.private_key, apex, public,
                                    inception=inception,
                                    expiration=inception + SIGNATURE_LIFETIME,
                                    origin=apex)
        sigs = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                               dns.rdatatype.RdataType.make(rdtype))
        sigs.add(signature, rrset.ttl)
        rrsigs[(name, rdtype)] = sigs
    return SignedZone(apex, dnskey, nsec, rrsigs)


@dataclass(frozen=True)
class ValidationResult:
    """What a validating resolver concluded (RFC 4035 §4.3)."""

    status: str  # "secure", "insecure" (no trust anchor) or "bogus"
    reason: str = ""

    @property
    def secure(self) -> bool:
        return self.status == "secure"


def validate(rrset: dns.rrset.RRset, rrsigs: dns.rrset.RRset | None,
             dnskeys: dns.rrset.RRset | None, dnskey_sigs: dns.rrset.RRset | None,
             anchor_ds: Any | None, now: float) -> ValidationResult:
    """Validate an answer from a trust anchor (RFC 4035 §5).

    Args:
        rrset: the answer.
        rrsigs: its RRSIG set (None: unsigned).
        dnskeys: the zone's DNSKEY set, and ``dnskey_sigs`` its RRSIG set.
        anchor_ds: the DS rdata the validator trusts for the zone (None: no trust anchor,
            the answer is "insecure", as for a domain that is not signed).
        now: the validator's time (the world's virtual clock).
    """
    if anchor_ds is None:
        return ValidationResult("insecure", "no trust anchor for the zone (it is not signed)")
    if dnskeys is None or dnskey_sigs is None:
        return ValidationResult("bogus", "the zone has a trust anchor but no signed DNSKEY")
    zone = dnskeys.name
    matching = [k for k in dnskeys
                if dns.dnssec.make_ds(zone, k, "SHA256") == anchor_ds]
    if not matching:
        return ValidationResult("bogus", "no DNSKEY matches the trust anchor's DS")
    anchors = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for k in matching:
        anchors.add(k, dnskeys.ttl)
    try:
        dns.dnssec.validate(dnskeys, dnskey_sigs, {zone: anchors}, now=now)
    except dns.exception.ValidationFailure as exc:
        return ValidationResult("bogus", f"the DNSKEY set's signature does not verify: {exc}")
    if rrsigs is None:
        return ValidationResult("bogus", f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} "
                                         "has no signature in a signed zone")
    try:
        dns.dnssec.validate(rrset, rrsigs, {zone: dnskeys}, now=now)
    except dns.exception.ValidationFailure as exc:
        return ValidationResult("bogus", f"the signature of {rrset.name} "
                                         f"{dns.rdatatype.to_text(rrset.rdtype)} does not "
                                         f"verify: {exc}")
    return ValidationResult("secure")


# ------------------------------------------------------------------------------ TLSA


def tlsa_name(host: str, port: int = 25) -> str:
    """Where the TLSA records of a service live: ``_25._tcp.<host>`` (RFC 6698 §3)."""
    return f"_{port}._tcp.{host.strip().lower().rstrip('.')}"


def _selected(der: bytes, selector: int) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if selector == 0:  # the full certificate (RFC 6698 §2.1.2)
        return der
    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _matched(data: bytes, mtype: int) -> bytes:
    if mtype == 0:
        return data
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    raise ValueError(f"unknown TLSA matching type {mtype} (RFC 6698 §2.1.3)")


def tlsa_value(der: bytes, usage: int = 3, selector: int = 1, mtype: int = 1) -> str:
    """The TLSA record value for a certificate (DER), e.g. ``3 1 1 <sha256 of the SPKI>``."""
    return f"{usage} {selector} {mtype} {_matched(_selected(der, selector), mtype).hex()}"


def tlsa_matches(tlsa: Any, der: bytes) -> bool:
    """Whether certificate ``der`` matches a TLSA rdata's selector and matching type."""
    try:
        return bool(_matched(_selected(der, tlsa.selector), tlsa.mtype) == tlsa.cert)
    except ValueError:
        return False
