"""DNSSEC answers of the world's DNS server and DANE in the outbound agent (RFC 4035,
RFC 7672): TLSA match and mismatch, a bogus signature, a DNSSEC-less domain, the stripping
attack defeated; TLS-RPT counts it."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.dnssec import ZoneKey
from simsmtp.world.scenario import seed_message

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
SENDER, TARGET, DOMAIN = "mail.example.com", "mail.anotherdomain.org", "anotherdomain.org"
TLSA = "_25._tcp.mail.anotherdomain.org"


def ask(net: Network, name: str, rtype: str, *, dnssec: bool) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=dnssec)
    ip, port = net.dns_address
    return dns.query.tcp(query, ip, port=port, timeout=5)


def send(net: Network, subject: str = "hello") -> None:
    net.submit(seed_message(net.world, subject=subject), sender=ALICE, recipients=BOB,
               user="alice", password="wonderland")
    net.deliver()


@pytest.fixture
def dane(world: World) -> World:
    world.host(SENDER).policy.dane = True  # Alice's server validates DNSSEC and uses TLSA
    return world


# ------------------------------------------------------------------------- the DNS server


def test_a_dnssec_aware_query_gets_signatures_and_ad(net: Network) -> None:
    response = ask(net, TLSA, "TLSA", dnssec=True)
    types = [r.rdtype for r in response.answer]
    assert types == [dns.rdatatype.TLSA, dns.rdatatype.RRSIG]
    assert response.flags & dns.flags.AD and response.flags & dns.flags.AA
    assert response.ednsflags & dns.flags.DO
    [tlsa] = response.answer[0]
    assert (tlsa.usage, tlsa.selector, tlsa.mtype) == (3, 1, 1)


def test_a_plain_query_reads_as_before(net: Network) -> None:
    response = ask(net, DOMAIN, "MX", dnssec=False)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.MX]
    assert not response.flags & dns.flags.AD


def test_dnskey_and_signed_denials(net: Network) -> None:
    keys = ask(net, DOMAIN, "DNSKEY", dnssec=True)
    assert keys.answer[0][0] == ZoneKey.from_seed("1", DOMAIN).dnskey()
    missing = ask(net, "nope.anotherdomain.org", "A", dnssec=True)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert {r.rdtype for r in missing.authority} == {dns.rdatatype.SOA, dns.rdatatype.NSEC,
                                                     dns.rdatatype.RRSIG}
    nodata = ask(net, TARGET, "AAAA", dnssec=True)
    nsec = next(r for r in nodata.authority if r.rdtype == dns.rdatatype.NSEC)
    assert nsec.name.to_text() == "mail.anotherdomain.org."  # the name itself: NODATA


def test_unsigned_zones_get_no_ad(net: Network) -> None:
    response = ask(net, "example.com", "MX", dnssec=True)
    assert not response.flags & dns.flags.AD
    assert all(r.rdtype != dns.rdatatype.RRSIG for r in response.answer)


# ------------------------------------------------------------------------- the agent


def test_tlsa_match_delivers_over_tls(dane: World, net: Network) -> None:
    send(net)
    assert len(net.mailbox(BOB)) == 1
    [matched] = dane.trace.events("dane.matched")
    assert matched["mx"] == TARGET and matched["tlsa"][0].startswith("3 1 1 ")
    assert [e["status"] for e in dane.trace.events("dane.tlsa")] == ["secure"]
    report = net.tls_report(DOMAIN)["policies"][0]
    assert report["policy"]["policy-type"] == "tlsa"
    assert report["summary"]["total-successful-session-count"] == 1


def test_stripped_starttls_defers_with_the_reason(dane: World, net: Network) -> None:
    net.strip_starttls()
    send(net)
    assert net.mailbox(BOB) == []
    [deferred] = dane.trace.events("delivery.deferred")
    assert "did not offer STARTTLS" in deferred["reason"]
    assert "DANE (the secure TLSA records of mail.anotherdomain.org)" in deferred["reason"]
    details = net.tls_report(DOMAIN)["policies"][0]["failure-details"]
    assert details[0]["result-type"] == "starttls-not-supported"


def test_tlsa_mismatch_defers(dane: World, net: Network) -> None:
    # Bob's server gets a new certificate, but the TLSA record still names the old key
    assert net.ca is not None
    net.ca.issue([TARGET, net.hosts[TARGET].ip])
    net.take_down(TARGET)
    net.bring_up(TARGET)
    send(net)
    assert net.mailbox(BOB) == []
    [deferred] = dane.trace.events("delivery.deferred")
    assert "matches none of its TLSA records" in deferred["reason"]
    assert deferred["status"] == "4.7.5"
    assert [e["verified"] for e in dane.trace.events("tls.started")] == [False]


def test_bogus_signature_defers(dane: World, net: Network) -> None:
    # answers signed with a key the trust anchor does not vouch for (a forger's key)
    assert net.dns is not None
    net.dns.zone_keys = lambda: {DOMAIN: ZoneKey.from_seed("mallory", DOMAIN)}
    send(net)
    assert net.mailbox(BOB) == []
    [deferred] = dane.trace.events("delivery.deferred")
    assert "bogus" in deferred["reason"] and "trust anchor" in deferred["reason"]
    assert not dane.trace.events("delivery.attempt")
    details = net.tls_report(DOMAIN)["policies"][0]["failure-details"]
    assert details[0]["result-type"] == "dnssec-invalid"


def test_a_dnssec_less_domain_gets_no_dane(dane: World, net: Network) -> None:
    dane.domain(DOMAIN).dnssec = False  # the same TLSA record, but nothing proves it
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1  # the attack wins again
    assert [e["status"] for e in dane.trace.events("dane.mx")] == ["insecure"]
    assert not dane.trace.events("dane.tlsa")


def test_dane_ta_usage_2_matches_the_world_ca() -> None:
    world = World.seed_world()
    world.domain(DOMAIN).tlsa = ["2 1 1"]
    world.host(SENDER).policy.dane = True
    with world.start(storage="memory") as net:
        send(net)
        assert len(net.mailbox(BOB)) == 1
        [matched] = world.trace.events("dane.matched")
        assert matched["tlsa"][0].startswith("2 1 1 ")


def test_dane_and_mta_sts_together_dane_decides(dane: World, net: Network) -> None:
    dane.host(SENDER).policy.mta_sts = True
    send(net)
    assert len(net.mailbox(BOB)) == 1
    assert dane.trace.events("dane.matched")
