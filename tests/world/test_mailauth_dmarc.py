"""DMARC (RFC 7489): records, discovery, alignment strict and relaxed, policies, pct."""

from __future__ import annotations

import pytest

from simsmtp.world.mailauth import (
    DKIMResult,
    DMARCResult,
    SPFResult,
    aligned,
    author_domains,
    check_dmarc,
    organizational_domain,
    parse_record,
)
from tests.world.test_mailauth import FakeDNS


def msg(from_: str = "Alice <alice@example.com>", extra: str = "") -> bytes:
    return f"From: {from_}\r\n{extra}To: bob@anotherdomain.org\r\nSubject: x\r\n\r\nhi\r\n"\
        .encode()


def spf(result: str = "pass", domain: str = "example.com") -> SPFResult:
    return SPFResult(result, "mailfrom", domain, f"a@{domain}", "127.0.0.2")


def dkim(result: str = "pass", domain: str = "example.com") -> DKIMResult:
    return DKIMResult(result, domain, "mail")


NO_DKIM = (DKIMResult("none"),)


def run(dns: FakeDNS, message: bytes, s: SPFResult, d: tuple[DKIMResult, ...],
        **kw: float) -> DMARCResult:
    return check_dmarc(message, spf=s, dkim=d, dns_txt=dns.functions()["dns_txt"], **kw)


@pytest.fixture
def dns() -> FakeDNS:
    d = FakeDNS()
    d.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com"]
    return d


# ---------------------------------------------------------------------------- records

def test_parse_record_tags_and_defaults() -> None:
    r = parse_record("v=DMARC1;p=Quarantine; SP = none ;adkim=s; pct=25; "
                     "rua=mailto:a@example.com, mailto:b@example.com; future=1")
    assert r is not None
    assert (r.p, r.sp, r.adkim, r.aspf, r.pct) == ("quarantine", "none", "s", "r", 25)
    assert r.rua == ("mailto:a@example.com", "mailto:b@example.com")
    assert r.tags["future"] == "1" and r.problems == ()  # unknown tags are ignored
    plain = parse_record("v=DMARC1; p=none")
    assert plain is not None
    assert (plain.sp, plain.adkim, plain.aspf, plain.pct, plain.rua) == (None, "r", "r", 100, ())


@pytest.mark.parametrize("text", ["v=spf1 -all", "v=DMARC2; p=reject", "p=reject; v=DMARC1",
                                  "v=dmarc1; p=reject", ""])
def test_not_a_dmarc_record(text: str) -> None:
    assert parse_record(text) is None  # RFC 7489 §6.4: v=DMARC1 first, exactly


def test_invalid_values_are_reported() -> None:
    r = parse_record("v=DMARC1; p=block; adkim=x; pct=150")
    assert r is not None
    assert (r.p, r.adkim, r.pct) == (None, "r", 100)
    assert len(r.problems) == 3


def test_organizational_domain_and_alignment() -> None:
    assert organizational_domain("a.b.mail.example.com") == "example.com"
    assert organizational_domain("example.com") == "example.com"
    assert aligned("mail.example.com", "example.com", "r")
    assert not aligned("mail.example.com", "example.com", "s")
    assert aligned("EXAMPLE.com.", "example.com", "s")
    assert not aligned("example.net", "example.com", "r")
    assert not aligned("", "example.com", "r")


def test_author_domains() -> None:
    assert author_domains(msg()) == ["example.com"]
    assert author_domains(msg("a@Example.COM, b@example.com")) == ["example.com"]
    assert author_domains(msg("a@example.com", extra="From: m@mallory.example\r\n")) == [
        "example.com", "mallory.example"]


# -------------------------------------------------------------------------- alignment

def test_pass_by_spf_alone_and_by_dkim_alone(dns: FakeDNS) -> None:
    r = run(dns, msg(), spf(), NO_DKIM)
    assert (r.result, r.spf_aligned, r.dkim_aligned, r.disposition) == (
        "pass", True, False, "none")
    r = run(dns, msg(), spf("fail"), (dkim(),))
    assert (r.result, r.spf_aligned, r.dkim_aligned) == ("pass", False, True)


def test_relaxed_alignment_accepts_subdomains(dns: FakeDNS) -> None:
    r = run(dns, msg(), spf(domain="bounces.example.com"), (dkim(domain="mail.example.com"),))
    assert (r.result, r.spf_aligned, r.dkim_aligned) == ("pass", True, True)
    assert "SPF passed for bounces.example.com, aligned (relaxed" in r.explanation


def test_strict_spf_alignment_needs_the_same_domain(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; aspf=s"]
    r = run(dns, msg(), spf(domain="bounces.example.com"), NO_DKIM)
    assert (r.result, r.spf_aligned, r.disposition) == ("fail", False, "reject")
    assert "not aligned with example.com (strict needs the same domain)" in r.explanation
    assert run(dns, msg(), spf(), NO_DKIM).result == "pass"


def test_strict_dkim_alignment_needs_the_same_domain(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; adkim=s"]
    r = run(dns, msg(), spf("fail"), (dkim(domain="mail.example.com"),))
    assert (r.result, r.dkim_aligned) == ("fail", False)
    assert run(dns, msg(), spf("fail"), (dkim(),)).result == "pass"


def test_only_passing_results_count(dns: FakeDNS) -> None:
    r = run(dns, msg(), spf("softfail"), (dkim("fail"), dkim("permerror")))
    assert (r.result, r.disposition) == ("fail", "reject")
    assert "SPF did not pass (softfail); no DKIM signature passed" in r.explanation


def test_unaligned_passes_do_not_help(dns: FakeDNS) -> None:
    r = run(dns, msg(), spf(domain="mallory.example"), (dkim(domain="mallory.example"),))
    assert r.result == "fail"


# ---------------------------------------------------------------------------- policies

@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
def test_each_policy_is_the_disposition_on_fail(dns: FakeDNS, policy: str) -> None:
    dns.txt["_dmarc.example.com"] = [f"v=DMARC1; p={policy}"]
    r = run(dns, msg(), spf("fail"), NO_DKIM)
    assert (r.result, r.policy, r.disposition) == ("fail", policy, policy)
    assert r.explanation.endswith(f"nothing aligned passed, so fail; the policy p={policy} "
                                  f"says {policy}")
    assert run(dns, msg(), spf(), NO_DKIM).disposition == "none"


def test_subdomain_uses_sp_from_the_organizational_domain(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; sp=quarantine"]
    dns.txt["news.example.com"] = ["v=spf1 -all"]
    r = run(dns, msg("news@news.example.com"), spf("fail", "news.example.com"), NO_DKIM)
    assert (r.from_domain, r.policy_domain, r.policy, r.disposition) == (
        "news.example.com", "example.com", "quarantine", "quarantine")
    assert "_dmarc.news.example.com does not exist, so the Organizational Domain " \
           "example.com is asked" in r.explanation
    assert [q[1] for q in r.queries] == ["_dmarc.news.example.com", "_dmarc.example.com"]


def test_subdomain_without_sp_inherits_p(dns: FakeDNS) -> None:
    r = run(dns, msg("news@news.example.com"), spf("fail", "news.example.com"), NO_DKIM)
    assert (r.policy, r.disposition) == ("reject", "reject")


def test_subdomain_record_of_its_own_wins(dns: FakeDNS) -> None:
    dns.txt["_dmarc.news.example.com"] = ["v=DMARC1; p=none"]
    r = run(dns, msg("news@news.example.com"), spf("fail", "news.example.com"), NO_DKIM)
    assert (r.policy_domain, r.disposition) == ("news.example.com", "none")


@pytest.mark.parametrize(("policy", "roll", "disposition", "sampled"), [
    ("reject", 10.0, "reject", True), ("reject", 60.0, "quarantine", False),
    ("quarantine", 49.9, "quarantine", True), ("quarantine", 50.0, "none", False),
])
def test_pct_applies_the_policy_to_a_sample(dns: FakeDNS, policy: str, roll: float,
                                            disposition: str, sampled: bool) -> None:
    dns.txt["_dmarc.example.com"] = [f"v=DMARC1; p={policy}; pct=50"]
    r = run(dns, msg(), spf("fail"), NO_DKIM, roll=roll)
    assert (r.disposition, r.sampled) == (disposition, sampled)


def test_pct_default_roll_is_reproducible(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; pct=0"]
    first = run(dns, msg(), spf("fail"), NO_DKIM)
    assert first.disposition == "quarantine"  # pct=0: never the full policy
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; pct=50"]
    a = [run(dns, msg(extra=f"X-N: {i}\r\n"), spf("fail"), NO_DKIM).disposition
         for i in range(40)]
    b = [run(dns, msg(extra=f"X-N: {i}\r\n"), spf("fail"), NO_DKIM).disposition
         for i in range(40)]
    assert a == b and set(a) == {"reject", "quarantine"}


# ------------------------------------------------------------------ none and errors

def test_no_record_anywhere_is_none(dns: FakeDNS) -> None:
    r = run(dns, msg("x@elsewhere.example"), spf("fail", "elsewhere.example"), NO_DKIM)
    assert (r.result, r.disposition, r.record) == ("none", "none", None)


def test_two_records_mean_no_policy(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject", "v=DMARC1; p=none"]
    r = run(dns, msg(), spf("fail"), NO_DKIM)
    assert (r.result, r.disposition) == ("none", "none")


def test_non_dmarc_txt_records_are_ignored(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"].append("some-verification=abc")
    assert run(dns, msg(), spf("fail"), NO_DKIM).disposition == "reject"


def test_bad_policy_with_rua_acts_as_p_none(dns: FakeDNS) -> None:
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=block; rua=mailto:d@example.com"]
    r = run(dns, msg(), spf("fail"), NO_DKIM)
    assert (r.result, r.policy, r.disposition) == ("fail", "none", "none")
    dns.txt["_dmarc.example.com"] = ["v=DMARC1; p=block"]
    assert run(dns, msg(), spf("fail"), NO_DKIM).result == "none"


def test_dns_failure_is_temperror(dns: FakeDNS) -> None:
    dns.failing.add("_dmarc.example.com")
    r = run(dns, msg(), spf("fail"), NO_DKIM)
    assert (r.result, r.disposition) == ("temperror", "none")


@pytest.mark.parametrize("message", [
    b"To: bob@anotherdomain.org\r\n\r\nno author\r\n",
    msg("alice@example.com, mallory@mallory.example"),
])
def test_no_single_author_domain_is_permerror(dns: FakeDNS, message: bytes) -> None:
    r = run(dns, message, spf("fail"), NO_DKIM)
    assert (r.result, r.from_domain) == ("permerror", "")
    assert dns.asked == []


def test_utf8_author_domain_is_read(dns: FakeDNS) -> None:
    assert author_domains("From: José <jose@exámple.com>\r\n\r\nhi\r\n".encode()) == [
        "exámple.com"]
