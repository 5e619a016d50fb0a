"""DNSSEC signing and validation (RFC 4034/4035) and TLSA matching (RFC 6698), pure."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
import trustme

from simsmtp.world.dnssec import ZoneKey, sign_zone, tlsa_matches, tlsa_name, tlsa_value, validate

APEX = dns.name.from_text("anotherdomain.org")
MAIL = dns.name.from_text("mail.anotherdomain.org")
NOW = 1741597200.0  # 2025-03-10T09:00:00Z


def _zone() -> dict[tuple[dns.name.Name, int], dns.rrset.RRset]:
    return {
        (APEX, dns.rdatatype.SOA): dns.rrset.from_text(
            APEX, 3600, "IN", "SOA", "ns.simsmtp.test. h.anotherdomain.org. 1 2 3 4 300"),
        (APEX, dns.rdatatype.MX): dns.rrset.from_text(APEX, 3600, "IN", "MX",
                                                      "10 mail.anotherdomain.org."),
        (MAIL, dns.rdatatype.A): dns.rrset.from_text(MAIL, 3600, "IN", "A", "127.0.0.3"),
    }


def test_keys_and_signatures_are_reproducible() -> None:
    key = ZoneKey.from_seed("1", "anotherdomain.org")
    assert key.dnskey() == ZoneKey.from_seed("1", APEX).dnskey()
    assert key.dnskey() != ZoneKey.from_seed("2", APEX).dnskey()
    one = sign_zone(APEX, _zone(), key, inception=NOW - 86400)
    two = sign_zone(APEX, _zone(), key, inception=NOW - 86400)
    assert one.rrsig(MAIL, dns.rdatatype.A) == two.rrsig(MAIL, dns.rdatatype.A)  # Ed25519
    assert 'static-key 257 3 15 "' in key.trust_anchor()


def test_nsec_chain_links_every_name_in_canonical_order() -> None:
    signed = sign_zone(APEX, _zone(), ZoneKey.from_seed("1", APEX), inception=NOW)
    assert signed.nsec[APEX][0].next == MAIL
    assert signed.nsec[MAIL][0].next == APEX  # the chain wraps to the apex
    gap = dns.name.from_text("b.anotherdomain.org")  # between the apex and mail
    assert signed.covering_nsec(gap) is signed.nsec[APEX]
    assert signed.covering_nsec(MAIL) is signed.nsec[MAIL]


def _validate(signed, rrset, key, now=NOW):  # type: ignore[no-untyped-def]
    return validate(rrset, signed.rrsig(rrset.name, rrset.rdtype), signed.dnskey,
                    signed.rrsig(APEX, dns.rdatatype.DNSKEY), key.ds(), now)


def test_validation_secure_bogus_and_insecure() -> None:
    key = ZoneKey.from_seed("1", APEX)
    zone = _zone()
    signed = sign_zone(APEX, zone, key, inception=NOW - 86400)
    answer = zone[(MAIL, dns.rdatatype.A)]
    assert _validate(signed, answer, key).secure
    # a forged answer (an attacker's address) under the real signature: bogus
    forged = dns.rrset.from_text(MAIL, 3600, "IN", "A", "127.0.0.66")
    result = _validate(signed, forged, key)
    assert result.status == "bogus" and "does not verify" in result.reason
    # a key the validator does not trust: bogus
    other = ZoneKey.from_seed("2", APEX)
    assert _validate(signed, answer, other).status == "bogus"
    # before the signatures' inception: bogus
    assert _validate(signed, answer, key, now=NOW - 2 * 86400).status == "bogus"
    # no trust anchor at all: insecure (a DNSSEC-less domain)
    assert validate(answer, None, None, None, None, NOW).status == "insecure"


def test_tlsa_value_matches_its_certificate_only() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("mail.anotherdomain.org")
    other = ca.issue_cert("mail.anotherdomain.org")
    from cryptography import x509

    def der(cert: trustme.LeafCert) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        pem = cert.cert_chain_pems[0].bytes()
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)

    value = tlsa_value(der(leaf))
    assert value.startswith("3 1 1 ") and len(value.split()[3]) == 64
    rdata = dns.rdata.from_text("IN", "TLSA", value)
    assert tlsa_matches(rdata, der(leaf))
    assert not tlsa_matches(rdata, der(other))
    full = dns.rdata.from_text("IN", "TLSA", tlsa_value(der(leaf), 3, 0, 2))
    assert tlsa_matches(full, der(leaf))
    assert tlsa_name("Mail.AnotherDomain.org.") == "_25._tcp.mail.anotherdomain.org"


def test_unknown_matching_type_is_an_error() -> None:
    with pytest.raises(ValueError):
        tlsa_value(b"", 3, 0, 7)
