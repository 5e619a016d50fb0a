"""DKIM (RFC 6376) signing and verification through dkimpy, keys from the world's DNS."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import serialization

from simsmtp.world.mailauth import (
    DKIMKey,
    generate_key,
    parse_signature,
    sign,
    verify,
    verify_all,
)
from tests.world.test_mailauth import STAMP, FakeDNS, alice_message


@pytest.fixture(scope="module")
def key() -> DKIMKey:
    return generate_key()


@pytest.fixture
def dns(key: DKIMKey) -> FakeDNS:
    d = FakeDNS()
    d.txt["mail._domainkey.example.com"] = [key.txt_record()]
    d.txt["example.com"] = ["v=spf1 -all"]
    return d


@pytest.fixture
def signed(key: DKIMKey) -> bytes:
    return sign(alice_message(), "example.com", "mail", key, timestamp=STAMP)


def txt(dns: FakeDNS):  # type: ignore[no-untyped-def]
    return dns.functions()["dns_txt"]


def test_sign_adds_the_briefed_signature(signed: bytes) -> None:
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(alice_message())
    header = signed[:signed.index(b"From: ")].decode()
    tags = parse_signature(header.split(":", 1)[1])
    assert (tags["v"], tags["a"], tags["c"], tags["d"], tags["s"], tags["t"]) == (
        "1", "rsa-sha256", "relaxed/relaxed", "example.com", "mail", str(STAMP))
    assert tags["h"] == "from:to:subject:date:message-id"
    assert all(len(line) <= 78 for line in header.split("\r\n"))  # RFC 5322 §2.1.1


def test_signatures_are_reproducible_with_a_fixed_timestamp(key: DKIMKey) -> None:
    a = sign(alice_message(), "example.com", "mail", key, timestamp=STAMP)
    b = sign(alice_message(), "example.com", "mail", key.private_pem, timestamp=STAMP)
    assert a == b


def test_pass_reads_d_and_s(signed: bytes, dns: FakeDNS, key: DKIMKey) -> None:
    r = verify(signed, txt(dns))
    assert (r.result, r.domain, r.selector, r.reason) == ("pass", "example.com", "mail", "")
    assert r.key_name == "mail._domainkey.example.com"
    assert r.key_record == key.txt_record()
    assert r.signed_headers == ("from", "to", "subject", "date", "message-id")
    assert r.algorithm == "rsa-sha256"
    assert dns.asked == [("TXT", "mail._domainkey.example.com")]  # one query, no more


def test_body_tampered_fails_on_body_hash(signed: bytes, dns: FakeDNS) -> None:
    r = verify(signed.replace(b"at noon", b"at midnight"), txt(dns))
    assert (r.result, r.reason) == ("fail", "body hash mismatch")
    assert "the body was changed after signing" in r.explanation


def test_header_tampered_fails_on_signature(signed: bytes, dns: FakeDNS) -> None:
    r = verify(signed.replace(b"Subject: Lunch?", b"Subject: Dinner?"), txt(dns))
    assert (r.result, r.reason) == ("fail", "signature did not verify")
    assert "the body is intact but b= does not verify" in r.explanation


def test_relaxed_canonicalization_survives_refolding_and_new_headers(signed: bytes,
                                                                     dns: FakeDNS) -> None:
    moved = signed.replace(b"Subject: Lunch?", b"subject:   Lunch? ")
    moved = moved.replace(b"noon?\r\n", b"noon?   \r\n\r\n\r\n")
    assert verify(b"Received: from a by b\r\n" + moved, txt(dns)).result == "pass"


def test_key_missing_is_permerror(signed: bytes, dns: FakeDNS) -> None:
    del dns.txt["mail._domainkey.example.com"]
    r = verify(signed, txt(dns))
    assert (r.result, r.reason, r.domain, r.selector) == (
        "permerror", "no key for signature", "example.com", "mail")
    assert "mail._domainkey.example.com, which does not exist (NXDOMAIN)" in r.explanation
    dns.txt["mail._domainkey.example.com"] = []
    assert "which has no TXT record" in verify(signed, txt(dns)).explanation


def test_key_lookup_failure_is_temperror(signed: bytes, dns: FakeDNS) -> None:
    dns.failing.add("mail._domainkey.example.com")
    r = verify(signed, txt(dns))
    assert (r.result, r.reason) == ("temperror", "key unavailable")


def test_revoked_and_garbled_keys_are_permerror(signed: bytes, dns: FakeDNS) -> None:
    dns.txt["mail._domainkey.example.com"] = ["v=DKIM1; k=rsa; p="]
    assert (verify(signed, txt(dns)).result, verify(signed, txt(dns)).reason) == (
        "permerror", "key revoked")
    dns.txt["mail._domainkey.example.com"] = ["v=DKIM1; k=rsa; p=AAAA"]
    assert verify(signed, txt(dns)).reason == "bad key record"


def test_someone_elses_key_fails(signed: bytes, dns: FakeDNS) -> None:
    dns.txt["mail._domainkey.example.com"] = [generate_key(1024).txt_record()]
    assert verify(signed, txt(dns)).result == "fail"


def test_a_signature_without_a_time_verifies(key: DKIMKey, dns: FakeDNS) -> None:
    def tags(signed: bytes) -> dict[str, str]:  # the DKIM-Signature field on top, unfolded
        field = re.match(rb"DKIM-Signature:(.*?)\r\n(?=\S)", signed, re.S)
        assert field is not None
        return parse_signature(field.group(1))

    signed = sign(alice_message(), "example.com", "mail", key, timed=False)
    assert "t" not in tags(signed)  # RFC 6376 §3.5: t= is RECOMMENDED, not required
    assert tags(signed)["d"] == "example.com"
    assert verify(signed, txt(dns)).result == "pass"
    stamped = sign(alice_message(), "example.com", "mail", key, timestamp=STAMP)
    assert tags(stamped)["t"] == str(STAMP)


def test_unsigned_is_none(dns: FakeDNS) -> None:
    r = verify(alice_message(), txt(dns))
    assert (r.result, r.domain) == ("none", "")
    assert dns.asked == []


def test_a_signature_only_in_the_body_or_a_field_value_is_no_signature(
        dns: FakeDNS, signed: bytes) -> None:
    head, _, body = signed.partition(b"\r\n\r\n")
    quoted = alice_message() + b"\r\n> DKIM-Signature: v=1; d=example.com\r\n"
    assert [r.result for r in verify_all(quoted, txt(dns))] == ["none"]
    mention = b"X-Note: no DKIM-Signature here\r\n" + alice_message()
    assert [r.result for r in verify_all(mention, txt(dns))] == ["none"]
    folded = head.replace(b"DKIM-Signature:", b"dkim-signature:") + b"\r\n\r\n" + body
    assert [r.result for r in verify_all(folded, txt(dns))] == ["pass"]  # names: any case
    assert dns.asked


def test_malformed_signature_is_permerror(dns: FakeDNS) -> None:
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=mail\r\n" + alice_message()
    r = verify(broken, txt(dns))
    assert (r.result, r.reason, r.domain) == ("permerror", "malformed signature", "example.com")


def test_every_signature_is_checked(signed: bytes, dns: FakeDNS, key: DKIMKey) -> None:
    # A mailing list adds its own signature on top; its key is not published.
    twice = sign(signed, "lists.example", "list", key, timestamp=STAMP)
    results = verify_all(twice, txt(dns))
    assert [(r.domain, r.result) for r in results] == [
        ("lists.example", "permerror"), ("example.com", "pass")]
    assert verify(twice, txt(dns)).domain == "example.com"


def test_key_record_is_dkim1_rsa_with_spki(key: DKIMKey) -> None:
    record = key.txt_record()
    assert record.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(record.split("p=")[1]))
    assert public.key_size == 2048 == key.bits  # type: ignore[union-attr]
    assert key.private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_seeded_keys_are_reproducible() -> None:
    a = generate_key(1024, seed="example.com")
    assert generate_key(1024, seed=b"example.com") == a
    assert generate_key(1024, seed="anotherdomain.org") != a
    assert a.bits == 1024
    message = sign(alice_message(), "example.com", "s", a, timestamp=STAMP)
    assert verify(message, {"s._domainkey.example.com": [a.txt_record()]}.get).result == "pass"


def test_too_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 1024"):
        generate_key(512)
