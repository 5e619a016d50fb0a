"""Byte entropy: plaintext SMTP is clearly lower than TLS ciphertext of similar size."""

from __future__ import annotations

import math
import statistics

from simsmtp.capture.entropy import entropy_table, max_entropy, shannon_entropy
from tests.capture._scripted import dns_mx, make_ca, new_tap, plain_smtp, starttls_smtp


def test_shannon_entropy_known_values() -> None:
    assert shannon_entropy(b"") == 0.0
    assert shannon_entropy(b"aaaa") == 0.0
    assert shannon_entropy(b"ab" * 10) == 1.0
    assert shannon_entropy(bytes(range(256))) == 8.0
    assert math.isclose(shannon_entropy(b"aab"), -(2 / 3 * math.log2(2 / 3)
                                                  + 1 / 3 * math.log2(1 / 3)))
    assert max_entropy(0) == 0.0 and max_entropy(32) == 5.0 and max_entropy(4096) == 8.0


def test_plaintext_smtp_is_lower_than_tls_of_similar_size(tmp_path) -> None:
    tap = new_tap()
    plain = plain_smtp(tap, client=("127.0.0.2", 40100))
    tls = starttls_smtp(tap, make_ca(tmp_path), client=("127.0.0.2", 40101))
    plain_rows = entropy_table(tap, plain)
    tls_rows = [r for r in entropy_table(tap, tls) if r.kind == "tls"]
    assert {r.kind for r in plain_rows} == {"plaintext"}
    # Records of application data only (a ClientHello is structure and zero padding).
    segments = {s.index: s for s in tap.segments(tls)}
    ciphertext = [r for r in tls_rows if segments[r.index].data[0] in (0x14, 0x17)]
    assert len(ciphertext) >= 15
    compared = 0
    for p in plain_rows:
        similar = [c.entropy for c in ciphertext
                   if abs(p.length - c.length) <= max(8, p.length // 4)]
        if similar:
            compared += 1
            # Even the base64 of AUTH PLAIN stays below ciphertext of its size.
            assert p.entropy < statistics.mean(similar), (p, similar)
    assert compared >= 8
    # Relative to what a segment of its size can reach, ciphertext is nearer the ceiling.
    assert statistics.mean(c.entropy / c.ceiling for c in ciphertext) > \
        statistics.mean(p.entropy / p.ceiling for p in plain_rows) + 0.05
    # The DATA segment (the message) against the same message encrypted.
    data_plain = max(plain_rows, key=lambda r: r.length)
    data_tls = max((c for c in ciphertext if c.direction == "c2s"), key=lambda r: r.length)
    assert data_plain.entropy < 5.0 < 6.5 < data_tls.entropy


def test_rows_before_starttls_are_plaintext_and_dns_is_plaintext(tmp_path) -> None:
    tap = new_tap()
    tls = starttls_smtp(tap, make_ca(tmp_path))
    rows = entropy_table(tap, tls)
    kinds = [r.kind for r in rows]
    first_tls = kinds.index("tls")
    assert set(kinds[:first_tls]) == {"plaintext"} and set(kinds[first_tls:]) == {"tls"}
    assert tap.segments(tls)[first_tls].data[:3] == b"\x16\x03\x01"  # the ClientHello
    assert [r.index for r in rows] == [s.index for s in tap.segments(tls)]
    dns_mx(tap)
    flow = tap.connections()[-1].id
    assert [r.kind for r in entropy_table(tap, flow)] == ["plaintext", "plaintext"]
