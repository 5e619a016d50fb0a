"""SPF (RFC 7208) through pyspf, asking only the world's DNS functions."""

from __future__ import annotations

import pytest
import spf as pyspf

from simsmtp.world.mailauth import SPFResult, check_spf
from tests.world.test_mailauth import FakeDNS


@pytest.fixture
def dns() -> FakeDNS:
    d = FakeDNS()
    d.txt.update({
        "example.com": ["v=spf1 ip4:127.0.0.2 -all", "google-site-verification=xyz"],
        "soft.example": ["v=spf1 ip4:127.0.0.2 ~all"],
        "neutral.example": ["v=spf1 ip4:127.0.0.2 ?all"],
        "noall.example": ["v=spf1 ip4:127.0.0.2"],
        "amx.example": ["v=spf1 a mx -all"],
        "inc.example": ["v=spf1 include:relay.example -all"],
        "relay.example": ["v=spf1 ip4:127.0.0.7 -all"],
        "red.example": ["v=spf1 ip4:10.0.0.1 redirect=example.com"],
        "typo.example": ["v=spf1 ip4:127.0.0.2 moo -all"],
        "two.example": ["v=spf1 -all", "v=spf1 +all"],
        "badinc.example": ["v=spf1 include:plain.example -all"],
        "plain.example": ["just text"],
        "many.example": ["v=spf1 " + " ".join(f"a:h{i}.many.example" for i in range(11))
                         + " -all"],
        "void.example": ["v=spf1 a:x1.void.example a:x2.void.example a:x3.void.example -all"],
        "six.example": ["v=spf1 ip6:2001:db8::/32 -all"],
        "txtonly.example": ["hello"],
        "mail.example.com": ["v=spf1 a -all"],
    })
    d.a.update({"amx.example": ["127.0.0.4"], "mx1.amx.example": ["127.0.0.5"],
                "mail.example.com": ["127.0.0.2"],
                **{f"h{i}.many.example": ["10.0.0.9"] for i in range(11)}})
    d.mx.update({"amx.example": [(10, "mx1.amx.example")]})
    d.a["empty.example"] = []
    return d


def run(dns: FakeDNS, ip: str, mail_from: str, helo: str = "client.example") -> SPFResult:
    f = dns.functions()
    return check_spf(ip, mail_from, helo, dns_txt=f["dns_txt"], dns_a=f["dns_a"],
                     dns_mx=f["dns_mx"], dns_aaaa=f["dns_aaaa"])


def test_pass_names_record_and_matching_mechanism(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.2", "alice@example.com")
    assert (r.result, r.domain, r.identity, r.mechanism) == (
        "pass", "example.com", "mailfrom", "ip4:127.0.0.2")
    assert r.record == "v=spf1 ip4:127.0.0.2 -all"  # the other TXT record is not SPF
    assert r.meaning == "the client is authorized to send for the domain"


def test_fail_explains_in_plain_words(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.9", "<alice@example.com>")
    assert (r.result, r.mechanism) == ("fail", "-all")
    assert r.explanation == ("SPF: example.com publishes 'v=spf1 ip4:127.0.0.2 -all'; the "
                             "client 127.0.0.9 does not match ip4:127.0.0.2; -all says fail")


def test_softfail(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.9", "a@soft.example")
    assert (r.result, r.mechanism) == ("softfail", "~all")
    assert r.explanation.endswith("~all says softfail")


def test_neutral_by_question_mark_all(dns: FakeDNS) -> None:
    assert run(dns, "127.0.0.9", "a@neutral.example").result == "neutral"


def test_neutral_by_default_when_nothing_matches_and_no_all(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.9", "a@noall.example")
    assert (r.result, r.mechanism) == ("neutral", None)
    assert "there is no 'all', so the default is neutral (RFC 7208 §4.7)" in r.explanation


@pytest.mark.parametrize(("domain", "why"), [
    ("nowhere.example", "nowhere.example does not exist in DNS (NXDOMAIN)"),
    ("empty.example", "empty.example has no TXT records, so no SPF record"),
    ("txtonly.example", "txtonly.example has TXT records but none starts with 'v=spf1'"),
])
def test_none_when_no_record(dns: FakeDNS, domain: str, why: str) -> None:
    r = run(dns, "127.0.0.9", f"a@{domain}")
    assert (r.result, r.record) == ("none", None)
    assert r.explanation == f"SPF: {why}; so the result is none"


@pytest.mark.parametrize(("domain", "problem"), [
    ("typo.example", "Unknown mechanism found: moo"),
    ("two.example", "Two or more type TXT spf records found."),
    ("badinc.example", "No valid SPF record for included domain: plain.example"),
    ("many.example", "Too many DNS lookups"),
    ("void.example", "Void lookup limit of 2 exceeded"),
])
def test_permerror(dns: FakeDNS, domain: str, problem: str) -> None:
    r = run(dns, "127.0.0.9", f"a@{domain}")
    assert r.result == "permerror"
    assert r.problem.startswith(problem)
    assert r.explanation.endswith("(RFC 7208 §2.6.7)")


def test_ten_lookup_limit_counts_terms(dns: FakeDNS) -> None:
    # 10 DNS-querying terms are allowed; the 11th is a permerror (RFC 7208 §4.6.4).
    dns.txt["ten.example"] = [" ".join(["v=spf1"] + [f"a:h{i}.many.example" for i in range(10)]
                                       + ["-all"])]
    assert run(dns, "127.0.0.9", "a@ten.example").result == "fail"
    assert run(dns, "127.0.0.9", "a@many.example").lookups == 11


def test_temperror_when_dns_fails(dns: FakeDNS) -> None:
    dns.failing.add("example.com")
    r = run(dns, "127.0.0.2", "alice@example.com")
    assert r.result == "temperror"
    assert "SERVFAIL for example.com" in r.problem


def test_a_and_mx_mechanisms(dns: FakeDNS) -> None:
    assert run(dns, "127.0.0.4", "a@amx.example").mechanism == "a"
    assert run(dns, "127.0.0.5", "a@amx.example").mechanism == "mx"
    r = run(dns, "127.0.0.6", "a@amx.example")
    assert r.result == "fail"
    assert ("MX", "amx.example") in dns.asked and ("A", "mx1.amx.example") in dns.asked


def test_include_and_redirect(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.7", "a@inc.example")
    assert (r.result, r.mechanism) == ("pass", "include:relay.example")
    assert r.records == {"inc.example": "v=spf1 include:relay.example -all",
                         "relay.example": "v=spf1 ip4:127.0.0.7 -all"}
    r = run(dns, "127.0.0.8", "a@inc.example")
    assert r.result == "fail"
    assert "does not match include:relay.example (its record gives fail)" in r.explanation
    r = run(dns, "127.0.0.2", "a@red.example")
    assert r.result == "pass"
    assert "nothing matched, so redirect=example.com is followed; example.com publishes" \
        in r.explanation


def test_ipv6_client(dns: FakeDNS) -> None:
    assert run(dns, "2001:db8::25", "a@six.example").result == "pass"
    assert run(dns, "2001:db9::25", "a@six.example").result == "fail"


def test_null_sender_checks_helo(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.2", "<>", helo="mail.example.com")
    assert (r.result, r.identity, r.domain, r.sender) == (
        "pass", "helo", "mail.example.com", "postmaster@mail.example.com")
    assert r.explanation.startswith("SPF: the MAIL FROM is empty (a bounce), so the HELO name")


def test_no_domain_to_check_is_none(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.2", "", helo="[127.0.0.2]")
    assert r.result == "none"
    assert dns.asked == []  # RFC 7208 §4.3: no DNS query at all


def test_queries_are_logged(dns: FakeDNS) -> None:
    r = run(dns, "127.0.0.9", "a@example.com")
    assert r.queries[0] == ("TXT", "example.com",
                            ["v=spf1 ip4:127.0.0.2 -all", "google-site-verification=xyz"])


def test_never_uses_pyspf_global_dns(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyspf asked real DNS")

    original = pyspf.DNSLookup
    monkeypatch.setattr(pyspf, "DNSLookup", refuse)
    assert run(dns, "127.0.0.5", "a@amx.example").result == "pass"
    monkeypatch.undo()
    assert pyspf.DNSLookup is original
