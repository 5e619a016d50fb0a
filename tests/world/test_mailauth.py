"""SPF, DKIM and DMARC together: Alice's mail, Mallory's spoof, a forwarder (RFC 7489).

Also holds :class:`FakeDNS`, the dict-backed world DNS the other mailauth tests import.
"""

from __future__ import annotations

import authres
import authres.dmarc
import pytest

from simsmtp.trace import Trace
from simsmtp.world.mailauth import (
    AuthVerdict,
    DKIMKey,
    DNSFunctions,
    DNSTempError,
    evaluate,
    generate_key,
    sign,
    strip_authentication_results,
)

ALICE_MAIL_IP = "127.0.0.2"      # mail.example.com, Alice's outbound server
MALLORY_IP = "127.0.0.9"         # mallory.example, outside example.com
FORWARDER_IP = "127.0.0.5"       # forward.example, re-sends mail it receives
RECEIVER = "mail.anotherdomain.org"
STAMP = 1741597200               # 2025-03-10T09:00:00Z, the seed world's epoch


class FakeDNS:
    """A world's DNS as dicts: names map to TXT/A/MX answers. A name in no table does not
    exist (NXDOMAIN); a name in :attr:`failing` raises :class:`DNSTempError`."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.a: dict[str, list[str]] = {}
        self.aaaa: dict[str, list[str]] = {}
        self.mx: dict[str, list[tuple[int, str]]] = {}
        self.failing: set[str] = set()
        self.asked: list[tuple[str, str]] = []

    def _exists(self, name: str) -> bool:
        tables = (self.txt, self.a, self.aaaa, self.mx)
        return any(key == name or key.endswith("." + name) for t in tables for key in t)

    def _get(self, rtype: str, table: dict[str, list], name: str) -> list | None:  # type: ignore[type-arg]
        name = name.lower().rstrip(".")
        self.asked.append((rtype, name))
        if name in self.failing:
            raise DNSTempError(f"SERVFAIL for {name}")
        if name in table:
            return list(table[name])
        return [] if self._exists(name) else None

    def functions(self) -> DNSFunctions:
        return DNSFunctions(dns_txt=lambda n: self._get("TXT", self.txt, n),
                            dns_a=lambda n: self._get("A", self.a, n),
                            dns_aaaa=lambda n: self._get("AAAA", self.aaaa, n),
                            dns_mx=lambda n: self._get("MX", self.mx, n))


def alice_message(subject: str = "Lunch?", body: str = "Shall we meet at noon?") -> bytes:
    return ("From: Alice <alice@example.com>\r\n"
            "To: Bob <bob@anotherdomain.org>\r\n"
            f"Subject: {subject}\r\n"
            "Date: Mon, 10 Mar 2025 09:00:00 +0000\r\n"
            "Message-ID: <20250310090000.1@example.com>\r\n"
            "\r\n"
            f"{body}\r\n").encode()


@pytest.fixture(scope="module")
def example_key() -> DKIMKey:
    return generate_key()


@pytest.fixture(scope="module")
def mallory_key() -> DKIMKey:
    return generate_key()


@pytest.fixture
def world(example_key: DKIMKey, mallory_key: DKIMKey) -> FakeDNS:
    """The seed world's authentication records, plus Mallory and a forwarder."""
    dns = FakeDNS()
    dns.a.update({"mail.example.com": [ALICE_MAIL_IP], "mail.anotherdomain.org": ["127.0.0.3"],
                  "mallory.example": [MALLORY_IP], "forward.example": [FORWARDER_IP]})
    dns.mx.update({"example.com": [(10, "mail.example.com")],
                   "anotherdomain.org": [(10, "mail.anotherdomain.org")]})
    dns.txt.update({
        "example.com": ["v=spf1 ip4:127.0.0.2 -all", "hello from the seed"],
        "mail._domainkey.example.com": [example_key.txt_record()],
        "_dmarc.example.com": ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com"],
        "anotherdomain.org": ["v=spf1 mx -all"],
        "_dmarc.anotherdomain.org": ["v=DMARC1; p=quarantine"],
        "mallory.example": ["v=spf1 a -all"],
        "evil._domainkey.mallory.example": [mallory_key.txt_record()],
        "forward.example": ["v=spf1 a -all"],
    })
    return dns


def alice_signed(key: DKIMKey, **kw: str) -> bytes:
    return sign(alice_message(**kw), "example.com", "mail", key, timestamp=STAMP)


def check(world: FakeDNS, message: bytes, ip: str, mail_from: str, helo: str,
          **kw: object) -> AuthVerdict:
    return evaluate(message, client_ip=ip, helo=helo, mail_from=mail_from,
                    receiver=RECEIVER, **world.functions(), **kw)  # type: ignore[arg-type]


def parse_ar(value: str) -> authres.AuthenticationResultsHeader:
    return authres.FeatureContext(authres.dmarc).parse(f"Authentication-Results: {value}")


# ------------------------------------------------------------------------ Alice's mail

def test_alice_real_mail_passes_all_three(world: FakeDNS, example_key: DKIMKey) -> None:
    verdict = check(world, alice_signed(example_key), ALICE_MAIL_IP, "alice@example.com",
                    "mail.example.com")
    assert verdict.summary() == "spf=pass dkim=pass dmarc=pass"
    assert verdict.disposition == "none"
    assert verdict.authentication_results(RECEIVER) == (
        "mail.anotherdomain.org; spf=pass smtp.mailfrom=example.com; dkim=pass "
        "header.d=example.com header.s=mail; dmarc=pass header.from=example.com")
    assert verdict.dmarc.spf_aligned and verdict.dmarc.dkim_aligned


def test_authentication_results_parse_with_authres(world: FakeDNS,
                                                   example_key: DKIMKey) -> None:
    verdict = check(world, alice_signed(example_key), ALICE_MAIL_IP, "<alice@example.com>",
                    "mail.example.com")
    header = parse_ar(verdict.authentication_results(RECEIVER, comments=True))
    assert header.authserv_id == RECEIVER
    got = {r.method: (r.result, {f"{p.type}.{p.name}": p.value for p in r.properties})
           for r in header.results}
    assert got == {"spf": ("pass", {"smtp.mailfrom": "example.com"}),
                   "dkim": ("pass", {"header.d": "example.com", "header.s": "mail"}),
                   "dmarc": ("pass", {"header.from": "example.com"})}
    folded = verdict.header_field(RECEIVER).decode()
    assert folded.startswith("Authentication-Results: mail.anotherdomain.org;\r\n\tspf=pass")
    assert folded.endswith("\r\n")
    unfolded = parse_ar(folded.split(": ", 1)[1].replace("\r\n", ""))
    assert [r.method for r in unfolded.results] == ["spf", "dkim", "dmarc"]


def test_steps_tell_the_story_in_order(world: FakeDNS, example_key: DKIMKey) -> None:
    verdict = check(world, alice_signed(example_key), ALICE_MAIL_IP, "alice@example.com",
                    "mail.example.com")
    spf_step, dkim_step, dmarc_step = verdict.steps
    assert spf_step == ("SPF: example.com publishes 'v=spf1 ip4:127.0.0.2 -all'; the client "
                        "127.0.0.2 matches ip4:127.0.0.2, so pass")
    assert dkim_step.startswith("DKIM: the signature d=example.com s=mail: the key at "
                                "mail._domainkey.example.com verifies")
    assert dmarc_step.startswith("DMARC: the From: domain is example.com; _dmarc.example.com "
                                 "publishes 'v=DMARC1; p=reject; rua=mailto:dmarc@example.com'")
    assert dmarc_step.endswith("so pass (the policy p=reject is not needed)")


# ---------------------------------------------------------------------- Mallory's spoof

def spoof() -> bytes:
    return alice_message(subject="Urgent: wire transfer", body="Please pay this invoice.")


def test_spoof_from_foreign_ip_without_signature_is_rejected(world: FakeDNS) -> None:
    verdict = check(world, spoof(), MALLORY_IP, "alice@example.com", "mallory.example")
    assert (verdict.spf.result, verdict.dkim[0].result, verdict.dmarc.result) == (
        "fail", "none", "fail")
    assert verdict.disposition == "reject"
    assert verdict.steps[0] == ("SPF: example.com publishes 'v=spf1 ip4:127.0.0.2 -all'; the "
                                "client 127.0.0.9 does not match ip4:127.0.0.2; -all says fail")
    assert verdict.steps[1] == ("DKIM: the message carries no DKIM-Signature header field, "
                                "so none")
    assert "SPF did not pass (fail); no DKIM signature passed; nothing aligned passed, so " \
           "fail; the policy p=reject says reject" in verdict.steps[2]
    assert verdict.authentication_results(RECEIVER, comments=True) == (
        "mail.anotherdomain.org; spf=fail smtp.mailfrom=example.com; dkim=none; "
        "dmarc=fail (p=reject dis=reject) header.from=example.com")


def test_spoof_with_own_envelope_passes_spf_but_is_not_aligned(world: FakeDNS) -> None:
    verdict = check(world, spoof(), MALLORY_IP, "mallory@mallory.example", "mallory.example")
    assert verdict.spf.result == "pass"
    assert verdict.dmarc.result == "fail" and not verdict.dmarc.spf_aligned
    assert verdict.disposition == "reject"
    assert "SPF passed for mallory.example, which is not aligned with example.com (relaxed " \
           "needs the same organizational domain)" in verdict.dmarc.explanation


def test_spoof_with_own_valid_signature_is_not_aligned(world: FakeDNS,
                                                       mallory_key: DKIMKey) -> None:
    signed = sign(spoof(), "mallory.example", "evil", mallory_key, timestamp=STAMP)
    verdict = check(world, signed, MALLORY_IP, "mallory@mallory.example", "mallory.example")
    assert verdict.dkim[0].result == "pass" and verdict.dkim[0].domain == "mallory.example"
    assert verdict.dmarc.result == "fail" and not verdict.dmarc.dkim_aligned
    assert verdict.disposition == "reject"


def test_spoof_with_forged_example_signature_fails_dkim(world: FakeDNS,
                                                        mallory_key: DKIMKey) -> None:
    # Mallory signs as d=example.com s=mail with her own key: example.com's key refutes it.
    signed = sign(spoof(), "example.com", "mail", mallory_key, timestamp=STAMP)
    verdict = check(world, signed, MALLORY_IP, "alice@example.com", "mallory.example")
    assert (verdict.dkim[0].result, verdict.dkim[0].reason) == (
        "fail", "signature did not verify")
    assert verdict.dmarc.result == "fail" and verdict.disposition == "reject"
    header = parse_ar(verdict.authentication_results(RECEIVER))
    dkim = next(r for r in header.results if r.method == "dkim")
    assert (dkim.result, dkim.reason) == ("fail", "signature did not verify")


@pytest.mark.parametrize(("policy", "disposition"),
                         [("none", "none"), ("quarantine", "quarantine"), ("reject", "reject")])
def test_spoof_disposition_follows_the_published_policy(world: FakeDNS, policy: str,
                                                        disposition: str) -> None:
    world.txt["_dmarc.example.com"] = [f"v=DMARC1; p={policy}"]
    verdict = check(world, spoof(), MALLORY_IP, "alice@example.com", "mallory.example")
    assert verdict.dmarc.result == "fail"
    assert verdict.dmarc.policy == policy
    assert verdict.disposition == disposition


def test_spoof_without_any_dmarc_record_is_only_spf_fail(world: FakeDNS) -> None:
    del world.txt["_dmarc.example.com"]
    verdict = check(world, spoof(), MALLORY_IP, "alice@example.com", "mallory.example")
    assert (verdict.spf.result, verdict.dmarc.result, verdict.disposition) == (
        "fail", "none", "none")


# --------------------------------------------------------------------------- forwarding

def test_forwarder_breaks_spf_but_dkim_survives_so_dmarc_passes(world: FakeDNS,
                                                                example_key: DKIMKey) -> None:
    # forward.example received Alice's signed mail and re-sends it unchanged, keeping the
    # envelope sender: SPF checks example.com's record against the forwarder's address.
    forwarded = b"Received: from mail.example.com by forward.example\r\n" + \
        alice_signed(example_key)
    verdict = check(world, forwarded, FORWARDER_IP, "alice@example.com", "forward.example")
    assert verdict.summary() == "spf=fail dkim=pass dmarc=pass"
    assert verdict.dmarc.dkim_aligned and not verdict.dmarc.spf_aligned
    assert verdict.disposition == "none"


def test_forwarder_that_edits_the_body_loses_everything(world: FakeDNS,
                                                        example_key: DKIMKey) -> None:
    edited = alice_signed(example_key).replace(b"noon?", b"noon? [scanned by forwarder]")
    verdict = check(world, edited, FORWARDER_IP, "alice@example.com", "forward.example")
    assert verdict.summary() == "spf=fail dkim=fail dmarc=fail"
    assert verdict.dkim[0].reason == "body hash mismatch"
    assert verdict.disposition == "reject"


# ------------------------------------------------------------------------------- others

def test_bounce_checks_helo_identity(world: FakeDNS) -> None:
    world.txt["mail.example.com"] = ["v=spf1 a -all"]
    bounce = (b"From: MAILER-DAEMON@mail.example.com\r\nTo: bob@anotherdomain.org\r\n"
              b"Subject: Undelivered\r\n\r\nSorry.\r\n")
    verdict = check(world, bounce, ALICE_MAIL_IP, "<>", "mail.example.com")
    assert verdict.spf.identity == "helo" and verdict.spf.result == "pass"
    assert verdict.dmarc.spf_aligned and verdict.dmarc.result == "pass"
    value = verdict.authentication_results(RECEIVER)
    assert value.startswith("mail.anotherdomain.org; spf=pass smtp.helo=mail.example.com;")


def test_dns_failure_gives_temperrors(world: FakeDNS) -> None:
    world.failing.update({"example.com", "_dmarc.example.com"})
    verdict = check(world, spoof(), MALLORY_IP, "alice@example.com", "mallory.example")
    assert (verdict.spf.result, verdict.dmarc.result, verdict.disposition) == (
        "temperror", "temperror", "none")


def test_trace_records_each_check_with_records_and_verdict(world: FakeDNS) -> None:
    trace = Trace()
    check(world, spoof(), MALLORY_IP, "alice@example.com", "mallory.example", trace=trace,
          host=RECEIVER)
    kinds = [e.kind for e in trace.events() if e.kind.startswith("auth.")]
    assert kinds == ["auth.spf", "auth.dkim", "auth.dmarc"]
    spf, = trace.events("auth.spf")
    assert spf.host == RECEIVER
    assert (spf["result"], spf["record"], spf["mechanism"]) == (
        "fail", "v=spf1 ip4:127.0.0.2 -all", "-all")
    dmarc, = trace.events("auth.dmarc")
    assert (dmarc["result"], dmarc["record"], dmarc["disposition"]) == (
        "fail", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com", "reject")
    assert dmarc["explanation"].startswith("DMARC: the From: domain is example.com")


def test_stamp_replaces_forged_results_and_keeps_the_signature(world: FakeDNS,
                                                               example_key: DKIMKey) -> None:
    forged = (b"Authentication-Results: mail.anotherdomain.org; spf=pass\r\n"
              b"\tsmtp.mailfrom=example.com\r\n"
              b"Authentication-Results: relay.example; dkim=pass\r\n")
    message = forged + alice_signed(example_key)
    verdict = check(world, message, ALICE_MAIL_IP, "alice@example.com", "mail.example.com")
    stamped = verdict.stamp(message, RECEIVER)
    assert stamped.startswith(verdict.header_field(RECEIVER))
    assert stamped.count(b"Authentication-Results: mail.anotherdomain.org;") == 1
    assert b"Authentication-Results: relay.example; dkim=pass\r\n" in stamped
    again = check(world, stamped, ALICE_MAIL_IP, "alice@example.com", "mail.example.com")
    assert again.dkim[0].result == "pass"


def test_strip_keeps_everything_else_byte_for_byte() -> None:
    message = (b"Received: x\r\nAUTHENTICATION-RESULTS: (comment) Mail.AnotherDomain.org;"
               b" none\r\nSubject: s\r\n\r\nAuthentication-Results: mail.anotherdomain.org\r\n")
    assert strip_authentication_results(message, RECEIVER) == (
        b"Received: x\r\nSubject: s\r\n\r\nAuthentication-Results: mail.anotherdomain.org\r\n")


@pytest.mark.parametrize("message", [
    b"", b"garbage without a colon", b"From: a@example.com\r\nDKIM-Signature\r\n\r\nx",
    b"DKIM-Signature: \xff\xff\r\nFrom: a@example.com\r\n\r\nx",
    b"From: \xff\xfe@ex\xe9.com\r\n\r\nx",
])
def test_malformed_messages_get_results_not_exceptions(world: FakeDNS,
                                                       message: bytes) -> None:
    verdict = check(world, message, MALLORY_IP, "alice@example.com", "mallory.example")
    assert verdict.spf.result == "fail"
    assert verdict.dkim[0].result in ("none", "permerror")
    assert verdict.dmarc.result in ("fail", "none", "permerror")  # never pass
    assert verdict.header_field(RECEIVER).startswith(b"Authentication-Results: ")
