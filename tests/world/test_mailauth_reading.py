"""Reading email authentication back, purely: an SPF record term by term (for a reader and
for SPF's own explanation) and an Authentication-Results value (RFC 8601 §2.2), beside the
code that writes it."""

from __future__ import annotations

import pytest

from simsmtp.world.mailauth import (
    AuthenticationResults,
    SPFTerm,
    authentication_results,
    parse_authentication_results,
    spf_terms,
)
from tests.world.test_mailauth import FakeDNS, alice_message


@pytest.fixture
def dns() -> FakeDNS:
    return FakeDNS()


def test_spf_terms_say_what_each_term_means() -> None:
    terms = spf_terms("v=spf1 mx ~all redirect=_spf.example.net foo=bar bogus")
    assert [(t.text, t.meaning) for t in terms][1:] == [
        ("mx", "a client at an address of an MX host of the domain: pass"),
        ("~all", "any other client: softfail"),
        ("redirect=_spf.example.net",
         "if nothing above matched: use _spf.example.net's SPF policy"),
        ("foo=bar", "an unknown modifier: ignored (RFC 7208 §6)"),
        ("bogus", "not a known mechanism: the whole record is a permerror (RFC 7208 §5)")]
    assert terms[0].kind == "version"
    assert [t.kind for t in terms[1:]] == ["mechanism", "mechanism", "modifier", "modifier",
                                          "mechanism"]
    assert terms[2] == SPFTerm("~all", "mechanism", "all", "", "~",
                               "any other client: softfail")
    assert (terms[2].result, terms[1].result, terms[3].result) == ("softfail", "pass", "")
    assert (terms[3].name, terms[3].value) == ("redirect", "_spf.example.net")


def test_spf_terms_tell_a_modifier_from_a_mechanism_with_an_equals_sign() -> None:
    terms = spf_terms("v=spf1 include:a=b.example ip4:192.0.2.0/24 -a/24 Exp=explain.%{d}")
    assert [(t.kind, t.name, t.value, t.qualifier) for t in terms[1:]] == [
        ("mechanism", "include", "a=b.example", "+"),
        ("mechanism", "ip4", "192.0.2.0/24", "+"),
        ("mechanism", "a", "", "-"),
        ("modifier", "exp", "explain.%{d}", "")]
    assert terms[3].meaning == "a client at an address of the domain itself: fail"


def test_the_spf_explanation_uses_the_same_terms(dns: FakeDNS) -> None:
    from simsmtp.world.mailauth import check_spf

    dns.txt["example.com"] = ["v=spf1 ip4:192.0.2.1 redirect=_spf.example.com"]
    dns.txt["_spf.example.com"] = ["v=spf1 ip4:198.51.100.7 -all"]
    result = check_spf("203.0.113.9", "alice@example.com", "mx.example",
                       **dns.functions())
    assert result.result == "fail"
    assert "does not match ip4:192.0.2.1" in result.explanation
    assert "redirect=_spf.example.com is followed" in result.explanation
    assert "-all says fail" in result.explanation


def test_authentication_results_parsed_with_comments_quotes_and_properties() -> None:
    ar = parse_authentication_results(
        'mx.example.org (checked);\r\n\tspf=softfail (sender IP: 1.2.3.4) '
        'smtp.mailfrom=a.example; dkim=fail reason="body hash; changed" header.d=a.example; '
        "dmarc=fail (p=reject dis=reject) header.from=a.example")
    assert ar.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in ar.results] == [("spf", "softfail"),
                                                          ("dkim", "fail"), ("dmarc", "fail")]
    dkim = ar.get("dkim")
    assert dkim is not None
    assert dkim.properties == {"reason": "body hash; changed", "header.d": "a.example"}
    dmarc = ar.get("dmarc")
    assert dmarc is not None and dmarc.comment == "p=reject dis=reject"
    assert dmarc.meaning.startswith("neither SPF nor DKIM passed")
    assert ar.get("arc") is None


def test_what_the_writer_writes_the_reader_reads_back(dns: FakeDNS) -> None:
    from simsmtp.world.mailauth import evaluate

    verdict = evaluate(alice_message(), client_ip="127.0.0.9", helo="mallory.example",
                       mail_from="alice@example.com", **dns.functions())
    stamped = verdict.stamp(alice_message(), "mx.example.org", comments=True)
    found = authentication_results(stamped)
    assert len(found) == 1 and isinstance(found[0], AuthenticationResults)
    read = found[0]
    assert read.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in read.results] == [
        ("spf", verdict.spf.result), *(("dkim", r.result) for r in verdict.dkim),
        ("dmarc", verdict.dmarc.result)]
    assert read.raw == verdict.authentication_results("mx.example.org", comments=True)
    assert authentication_results(b"From: a@example.com\r\n\r\nhi\r\n") == []
