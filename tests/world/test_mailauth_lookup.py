"""The DNS functions the checks ask: from a dnspython resolver, and from the world's own
DNS server over loopback (a 2048-bit DKIM key record needs several TXT strings)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from simsmtp.net.dns import DNSServer, make_resolver
from simsmtp.net.loop import EventLoopThread
from simsmtp.trace import Trace
from simsmtp.world.mailauth import (
    DNSTempError,
    dns_functions,
    evaluate,
    generate_key,
    sign,
    txt_presentation,
)
from simsmtp.world.model import Record
from tests.world.test_mailauth import STAMP, alice_message


def test_txt_presentation_splits_long_text_into_255_octet_strings() -> None:
    text = "v=DKIM1; k=rsa; p=" + "A" * 600 + '"\\'
    value = txt_presentation(text)
    rdata: Any = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
    assert [len(s) for s in rdata.strings] == [255, 255, 110]
    assert b"".join(rdata.strings).decode() == text
    assert txt_presentation("v=spf1 -all") == '"v=spf1 -all"'


class FakeResolver:
    """Answers like dnspython's Resolver.resolve, from presentation-format records."""

    def __init__(self, records: dict[tuple[str, str], list[str]],
                 errors: dict[tuple[str, str], Exception]) -> None:
        self.records = records
        self.errors = errors
        self.asked: list[tuple[str, str, bool]] = []

    def resolve(self, qname: Any, rdtype: str, raise_on_no_answer: bool = True,
                search: bool | None = None) -> Any:
        name = qname.to_text()
        self.asked.append((name, rdtype, bool(search)))
        key = (name, rdtype)
        if key in self.errors:
            raise self.errors[key]
        if key not in self.records:
            if any(n == name for n, _t in self.records):
                return SimpleNamespace(rrset=None)  # NODATA
            raise dns.resolver.NXDOMAIN()
        return SimpleNamespace(rrset=dns.rrset.from_text_list(name, 300, "IN", rdtype,
                                                              self.records[key]))


def test_dns_functions_from_a_resolver() -> None:
    resolver = FakeResolver(
        {("example.com.", "TXT"): ['"v=spf1 " "ip4:127.0.0.2 -all"', '"other"'],
         ("example.com.", "MX"): ["10 mail.example.com."],
         ("mail.example.com.", "A"): ["127.0.0.2"],
         ("nomail.example.", "MX"): ["0 ."]},
        {("slow.example.", "TXT"): dns.exception.Timeout(),
         ("broken.example.", "TXT"): dns.resolver.NoNameservers()})
    f = dns_functions(resolver)
    assert f["dns_txt"]("example.com") == ["v=spf1 ip4:127.0.0.2 -all", "other"]
    assert f["dns_mx"]("example.com") == [(10, "mail.example.com")]
    assert f["dns_mx"]("nomail.example") == [(0, "")]  # null MX, RFC 7505
    assert f["dns_a"]("mail.example.com") == ["127.0.0.2"]
    assert f["dns_a"]("example.com") == []        # the name exists: NODATA
    assert f["dns_txt"]("nowhere.example") is None  # NXDOMAIN
    assert f["dns_aaaa"]("nowhere.example") is None
    for name in ("slow.example", "broken.example"):
        with pytest.raises(DNSTempError):
            f["dns_txt"](name)
    assert all(not search for _n, _t, search in resolver.asked)  # no search list


# ----------------------------------------------------- the world's own DNS, over loopback

@pytest.fixture(scope="module")
def world_dns() -> Iterator[tuple[dns.resolver.Resolver, Trace, list[Record], Any]]:
    key = generate_key()
    records = [
        Record("mail.example.com", "A", "127.0.0.2"),
        Record("example.com", "MX", "10 mail.example.com."),
        Record("example.com", "TXT", txt_presentation("v=spf1 mx -all")),
        Record("mail._domainkey.example.com", "TXT", txt_presentation(key.txt_record())),
        Record("_dmarc.example.com", "TXT", txt_presentation("v=DMARC1; p=reject")),
        Record("mallory.example", "A", "127.0.0.9"),
    ]
    trace = Trace()
    with EventLoopThread(name="mailauth-dns") as loop:
        server = loop.run(DNSServer(lambda: records, host="127.0.0.1", trace=trace).start())
        try:
            yield make_resolver(*server.address), trace, records, key
        finally:
            loop.run(server.close())


def test_world_dns_serves_every_check(world_dns: Any) -> None:
    resolver, trace, _records, key = world_dns
    signed = sign(alice_message(), "example.com", "mail", key, timestamp=STAMP)
    verdict = evaluate(signed, client_ip="127.0.0.2", helo="mail.example.com",
                       mail_from="alice@example.com", **dns_functions(resolver))
    assert verdict.summary() == "spf=pass dkim=pass dmarc=pass"
    assert verdict.dkim[0].key_record == key.txt_record()  # 400+ octets, joined again
    key_queries = [(e["transport"], e["qtype"]) for e in trace.events("dns.query")
                   if e["qname"] == "mail._domainkey.example.com."]
    assert ("udp", "TXT") in key_queries  # asked the world's server, never the Internet


def test_world_dns_spoof_is_rejected(world_dns: Any) -> None:
    resolver, _trace, _records, _key = world_dns
    verdict = evaluate(alice_message(), client_ip="127.0.0.9", helo="mallory.example",
                       mail_from="alice@example.com", **dns_functions(resolver))
    assert verdict.summary() == "spf=fail dkim=none dmarc=fail"
    assert verdict.disposition == "reject"


def test_world_dns_outside_its_zones_is_a_temporary_failure(world_dns: Any) -> None:
    resolver, *_ = world_dns
    f = dns_functions(resolver)
    assert f["dns_txt"]("nothing.example.com") is None  # NXDOMAIN inside a zone
    with pytest.raises(DNSTempError):  # REFUSED: not the world's zone (no recursion)
        f["dns_txt"]("example.org")
