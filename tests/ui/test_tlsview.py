"""The TLS inspector: records annotated, the chain from the world's CA, the entropy chart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network
from simsmtp.ui import exercise
from simsmtp.ui.style import COLORS
from simsmtp.ui.tlsview import (
    TLSInspector,
    certificate_chain,
    entropy_chart,
    entropy_text,
    tls_connections,
    tls_records,
    tls_summary,
)
from simsmtp.ui.wire import connections, find_connection
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

ALICE = "alice@example.com"
MX = "mail.anotherdomain.org"


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    """The seed delivery over STARTTLS (submission and relay), every connection closed."""
    world = World.seed_world()
    with world.start(storage="memory") as running:
        running.submit(seed_message(world), sender=ALICE, recipients=["bob@anotherdomain.org"],
                       user=ALICE, password="wonderland")
        assert running.wait(running.idle, 10)
        assert running.wait(lambda: all(c.closed_at is not None
                                        for c in running.tap.connections()
                                        if c.transport == "tcp"), 5)
        yield running


def relay(net: Network) -> int:
    """The relay's connection (the first on port 25: a test adds a plaintext one)."""
    return connections(net, services=["smtp"])[0].id


def test_tls_connections_are_the_ones_that_upgraded(net: Network) -> None:
    assert [c.service for c in tls_connections(net)] == ["submission", "smtp"]
    with net.session() as plain:
        plain.connect()
        plain.ehlo()
    with pytest.raises(LookupError, match="never turned to TLS"):
        tls_summary(net, plain)


def test_the_summary_is_what_the_hellos_show_in_clear(net: Network) -> None:
    summary = tls_summary(net)  # default: the latest TLS connection: the relay
    assert summary.plain.startswith("TLS on mail.example.com → mail.anotherdomain.org port 25")
    assert f"ClientHello: server name (SNI)      {MX}" in summary.plain
    assert "TLS_AES_256_GCM_SHA384" in summary.plain
    assert "ServerHello: version chosen         TLS 1.3" in summary.plain
    assert "everything encrypted" in summary.plain


def test_records_in_wire_order_encrypted_after_the_server_hello(net: Network) -> None:
    table = tls_records(net, relay(net), sizes=False)
    rows = table.plain.splitlines()[3:]
    assert "client → server" in rows[0] and "in clear: ClientHello" in rows[0]
    assert "server → client" in rows[1] and "in clear: ServerHello" in rows[1]
    assert all("in clear" not in row for row in rows[2:])
    assert sum("encrypted" in row for row in rows) >= 10
    assert "bytes" not in table.plain.splitlines()[1]
    assert "bytes" in tls_records(net, relay(net)).plain.splitlines()[1]


def test_with_the_key_log_each_record_says_what_it_held(net: Network) -> None:
    table = tls_records(net, relay(net), keylog=True)
    assert "inside (with the key log)" in table.plain
    assert "handshake: Certificate" in table.plain
    assert "EHLO mail.example.com" in table.plain
    assert "MAIL FROM:<alice@example.com>" in table.plain
    assert "221 2.0.0 Bye" in table.plain


def test_the_certificate_chain_comes_from_the_worlds_ca(net: Network) -> None:
    chain = certificate_chain(net, MX)
    lines = chain.plain.splitlines()
    assert lines[0] == f"The certificate chain of {MX} (from the world's CA)"
    assert "0: server (leaf)" in lines[3] and f"CN={MX}" in lines[3]
    assert MX in lines[3] and "EC secp256r1" in lines[3]
    assert "1: trust anchor (CA)" in lines[4] and "simsmtp world CA" in lines[4]
    assert "fingerprint" not in chain.plain
    detailed = certificate_chain(net, MX, fingerprints=True)
    fingerprint = net.ca.certificate_chain(MX)[0]["fingerprint"]
    assert fingerprint in detailed.plain and fingerprint in detailed.html


def test_the_entropy_chart_tells_plaintext_from_ciphertext(net: Network) -> None:
    from matplotlib.colors import to_hex

    fig = entropy_chart(net, relay(net))
    bars = fig.axes[0].patches
    segments = net.tap.segments(relay(net))
    assert len(bars) == len(segments)
    colors = [to_hex(b.get_facecolor()) for b in bars]
    tls = [b.get_height() for b, c in zip(bars, colors, strict=True)
           if c == COLORS["tls"].lower()]
    plain = [b.get_height() for b, c in zip(bars, colors, strict=True)
             if c != COLORS["tls"].lower()]
    assert tls and plain and colors.index(COLORS["tls"].lower()) == len(plain)  # TLS after
    assert max(tls) > 7.0 > max(plain)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "ClientHello" in labels and any("ServerHello" in t for t in labels)
    lines = entropy_text(net, relay(net)).splitlines()
    assert lines[0].startswith("plaintext SMTP: ") and lines[1].startswith("TLS: ")


def test_the_inspector_widget(net: Network) -> None:
    inspector = TLSInspector(net)
    assert [label for label, _ in inspector.picker.options] == [
        "#1 127.0.0.1 → mail.example.com port 587 (submission)",
        "#2 mail.example.com → mail.anotherdomain.org port 25 (smtp)"]
    assert repr(inspector) == \
        "TLSInspector(mail.example.com → mail.anotherdomain.org port 25 (smtp))"
    assert "in clear: ClientHello" in inspector.records.value
    assert "inside (with the key log)" not in inspector.records.value
    assert MX in inspector.hello.value and "trust anchor" in inspector.chain.value
    assert "<svg" in inspector.chart.value and "<text" in inspector.chart.value
    inspector.keylog_box.value = True
    assert "inside (with the key log)" in inspector.records.value
    submission = find_connection(net, service="submission").id
    inspector.picker.value = submission
    assert "mail.example.com" in inspector.chain.value
    assert "AUTH PLAIN ***" not in inspector.records.value  # the wire, not the masked steps
    assert "AUTH PLAIN" in inspector.records.value


def test_exercises_of_notebook_5() -> None:
    assert exercise("05.sni").check("mail.anotherdomain.org").correct
    assert exercise("05.last-clear").check("serverhello").correct
    assert "encrypted" in exercise("05.last-clear").check("Certificate").message
    assert exercise("05.defence").check("b").correct
    assert not exercise("05.defence").check("c").correct
