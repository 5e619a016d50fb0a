"""TLS record annotation over real TLS 1.2 and 1.3 handshakes, key logs and decryption."""

from __future__ import annotations

import functools
import ssl
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsmtp.capture.tlsinspect import (
    TLSSession,
    cipher_suite_name,
    decrypt,
    inspect_tls,
    looks_like_tls,
    parse_keylog,
    parse_records,
    read_keylog,
    tls_start,
)
from tests.capture._scripted import make_ca, new_tap, starttls_smtp


@functools.cache
def capture(version: str, ciphers: str | None = None) -> tuple[bytes, bytes, Path]:
    """(client TLS bytes, server TLS bytes, key log) of one real STARTTLS session."""
    directory = Path(tempfile.mkdtemp(prefix="simsmtp-tls-"))
    ca = make_ca(directory, keylog=directory / "keys.log")
    tap = new_tap()
    tls_version = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    conn = starttls_smtp(tap, ca, version=tls_version, ciphers=ciphers)
    c2s, s2c = tap.stream(conn, "c2s"), tap.stream(conn, "s2c")
    c_start, s_start = tls_start(c2s, s2c)
    assert c_start is not None and s_start is not None
    return c2s[c_start:], s2c[s_start:], directory / "keys.log"


def session(version: str, ciphers: str | None = None) -> TLSSession:
    client, server, _ = capture(version, ciphers)
    return inspect_tls(client, server)


# ---------------------------------------------------------------------------- records

def test_parse_records_reads_header_fields() -> None:
    data = b"\x16\x03\x01\x00\x03abc" + b"\x17\x03\x03\x00\x02xy"
    first, second = parse_records(data, offset=100)
    assert (first.offset, first.type_name, first.version_name, first.length) == \
        (100, "handshake", "TLS 1.0", 3)
    assert (second.offset, second.type_name, second.version_name, second.fragment) == \
        (108, "application_data", "TLS 1.2", b"xy")
    assert second.describe() == "application_data, 7 bytes"


def test_partial_record_is_marked_and_garbage_ends_the_list() -> None:
    (record,) = parse_records(b"\x17\x03\x03\x00\x10only-six")
    assert not record.complete and record.fragment == b"only-six"
    assert "partial: 8 of 16" in record.describe()
    assert parse_records(b"EHLO mail.example.com\r\n") == []
    assert len(parse_records(b"\x15\x03\x03\x00\x02\x02\x28" + b"garbage!")) == 1
    assert parse_records(b"\x17\x03\x03\xff\xff") == []  # longer than RFC 5246 §6.2.3 allows


def test_looks_like_tls() -> None:
    assert looks_like_tls(b"\x16\x03\x01")
    assert looks_like_tls(b"\x16")  # a capture may end inside the header
    assert not looks_like_tls(b"\x16\x04")
    assert not looks_like_tls(b"220 ")
    assert not looks_like_tls(b"")


def test_cipher_suite_names() -> None:
    assert cipher_suite_name(0x1302) == "TLS_AES_256_GCM_SHA384"
    assert cipher_suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_suite_name(0x2A2A) == "GREASE"
    assert cipher_suite_name(0x1234) == "0x1234"


# ---------------------------------------------------------------------------- handshakes

def test_tls13_client_hello_in_clear_and_everything_after_server_hello_encrypted() -> None:
    tls = session("1.3")
    assert tls.client_hello is not None
    assert tls.sni == "mail.anotherdomain.org"
    assert "TLS_AES_256_GCM_SHA384" in tls.client_hello.cipher_suite_names
    assert tls.client_hello.version_names[0] == "TLS 1.3"
    assert len(tls.client_hello.random) == 32
    assert tls.version == "TLS 1.3" and tls.is_tls13
    assert tls.cipher_suite == "TLS_AES_256_GCM_SHA384"
    assert tls.certificates == []
    assert tls.client_records[0].messages == ("ClientHello",)
    assert tls.server_records[0].messages == ("ServerHello",)
    after = tls.server_records[1:] + tls.client_records[1:]
    assert {r.type_name for r in after} == {"change_cipher_spec", "application_data"}
    assert all(r.encrypted for r in after if r.type_name == "application_data")
    assert ("s2c", "Certificate") not in tls.handshake_messages
    assert any("everything after the ServerHello is encrypted" in n for n in tls.notes)


def test_tls12_certificate_crosses_in_clear() -> None:
    tls = session("1.2")
    assert tls.version == "TLS 1.2" and not tls.is_tls13
    server_messages = [name for d, name in tls.handshake_messages if d == "s2c"]
    assert server_messages[:4] == ["ServerHello", "Certificate", "ServerKeyExchange",
                                   "ServerHelloDone"]
    assert [name for d, name in tls.handshake_messages if d == "c2s"] == \
        ["ClientHello", "ClientKeyExchange"]
    (cert,) = tls.certificates
    assert cert.common_name == "mail.anotherdomain.org"
    assert cert.sans == ("mail.anotherdomain.org",)
    assert "simsmtp world CA" in cert.issuer
    # After ChangeCipherSpec the Finished message is an encrypted handshake record.
    ccs = next(i for i, r in enumerate(tls.client_records) if r.type_name ==
               "change_cipher_spec")
    finished = tls.client_records[ccs + 1]
    assert finished.type_name == "handshake" and finished.encrypted and not finished.messages
    assert "Certificate in clear" in "\n".join(tls.describe())


def test_tls_start_after_starttls_with_injected_plaintext() -> None:
    hello = b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"
    c2s = b"EHLO x\r\nSTARTTLS\r\nRSET\r\n" + hello
    s2c = b"220 hi\r\n250 ok\r\n220 go ahead\r\n250 injected\r\n" + b"\x16\x03\x03\x00\x01\x02"
    assert tls_start(c2s, s2c) == (c2s.index(hello), s2c.index(b"\x16"))


def test_tls_start_none_without_upgrade_or_when_refused() -> None:
    assert tls_start(b"EHLO x\r\nQUIT\r\n", b"220 hi\r\n250 ok\r\n221 bye\r\n") == (None, None)
    assert tls_start(b"STARTTLS\r\nQUIT\r\n", b"220 hi\r\n454 4.7.0 TLS not available\r\n") \
        == (None, None)
    # A line that merely starts with 0x16 before any STARTTLS is not TLS.
    assert tls_start(b"EHLO x\r\n\x16\x03\x01\r\n", b"") == (None, None)


def test_tls_start_implicit_tls_and_pop3_stls() -> None:
    assert tls_start(b"\x16\x03\x01\x00", b"\x16\x03\x03") == (0, 0)
    c2s = b"STLS\r\n\x16\x03\x01\x00\x01\x01"
    assert tls_start(c2s, b"+OK ready\r\n+OK begin\r\n\x16\x03\x03") == (6, 22)


# ---------------------------------------------------------------------------- key log

def test_read_keylog_labels_and_client_random() -> None:
    client, _, keylog = capture("1.3")
    log = read_keylog(keylog)
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= set(log.labels)
    hello = inspect_tls(client, b"").client_hello
    assert hello is not None and log.client_randoms == [hello.random]
    assert len(log.secrets(hello.random)["CLIENT_TRAFFIC_SECRET_0"]) == 48  # SHA-384
    log12 = read_keylog(capture("1.2")[2])
    assert log12.labels == ["CLIENT_RANDOM"]


def test_parse_keylog_skips_comments_and_junk() -> None:
    text = ("# a comment\n\nCLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\n"
            "CLIENT_RANDOM short 00\nnot a line at all\n")
    log = parse_keylog(text)
    assert len(log) == 1 and log.entries[0].secret == bytes([0xCD]) * 48
    assert parse_keylog(log.text()).entries == log.entries


@pytest.mark.parametrize(("version", "ciphers", "suite"), [
    ("1.3", None, "TLS_AES_256_GCM_SHA384"),
    ("1.2", None, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
])
def test_decrypt_with_the_key_log(version: str, ciphers: str | None, suite: str) -> None:
    client, server, keylog = capture(version, ciphers)
    tls = inspect_tls(client, server)
    assert tls.cipher_suite == suite
    result = decrypt(tls, read_keylog(keylog))
    assert result.ok, result.notes
    assert result.plaintext["c2s"].startswith(b"EHLO mail.example.com\r\n")
    assert b"MAIL FROM:<alice@example.com>\r\n" in result.plaintext["c2s"]
    assert b"Subject: The secret picnic" in result.plaintext["c2s"]
    assert result.plaintext["s2c"].endswith(b"221 2.0.0 Bye\r\n")
    finished = [names for names in result.messages.values() if "Finished" in names]
    assert len(finished) == 2  # both sides' Finished, read inside the encryption
    if version == "1.3":
        server_inner = [n for (d, _), names in sorted(result.messages.items())
                        if d == "s2c" for n in names]
        assert server_inner[:4] == ["EncryptedExtensions", "Certificate", "CertificateVerify",
                                    "Finished"]


def test_decrypt_with_the_wrong_keys_says_why() -> None:
    client, server, _ = capture("1.3")
    tls = inspect_tls(client, server)
    other = read_keylog(capture("1.2")[2])
    result = decrypt(tls, other)
    assert not result.ok and not result.records
    assert "no secrets for this session" in result.notes[0]
    hello = tls.client_hello
    assert hello is not None
    wrong = {label: bytes(48) for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET",
             "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
             "SERVER_TRAFFIC_SECRET_0")}
    bad = decrypt(tls, wrong)
    assert not bad.ok and any("did not decrypt" in n for n in bad.notes)
    assert decrypt(inspect_tls(b"", b""), other).notes


# ---------------------------------------------------------------------------- robustness

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_random_bytes_never_raise(client: bytes, server: bytes) -> None:
    for data in (client, b"\x16\x03\x01" + client):
        for record in parse_records(data):
            assert record.describe()
    tls = inspect_tls(b"\x16\x03\x01" + client, b"\x16\x03\x03" + server)
    tls.describe()
    tls_start(client, server)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_real_handshakes_never_raise(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(["1.2", "1.3"]))
    client, server, keylog = capture(version)
    which = data.draw(st.sampled_from(["client", "server"]))
    original = bytearray(client if which == "client" else server)[:1500]
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytes(original[:cut])
    tls = inspect_tls(mutated, server) if which == "client" else inspect_tls(client, mutated)
    tls.describe()
    decrypt(tls, read_keylog(keylog))
