"""The wire view: transcript, hexdump and eavesdropper, all from the captured bytes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp.net.network import Network
from simsmtp.ui import exercise
from simsmtp.ui.style import COLORS
from simsmtp.ui.wire import (
    WireView,
    connection_label,
    connections,
    eavesdropper_report,
    find_connection,
    stream_hexdump,
    transcript_text,
    wait_closed,
)
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

ALICE = "alice@example.com"
BOB = "bob@anotherdomain.org"
BODY = "Just a reminder about our meeting tomorrow at 10 AM."


def _all_closed(net: Network) -> bool:
    return all(c.closed_at is not None for c in net.tap.connections() if c.transport == "tcp")


@pytest.fixture(scope="module")
def plain() -> Iterator[tuple[Network, Any]]:
    """A teaching world: AUTH before TLS on submission, delivery without STARTTLS.

    Alice's program logs in and submits in plaintext; mail.example.com relays in plaintext.
    """
    world = World.seed_world()
    world.host("mail.example.com").policy.auth_plaintext = True
    world.host("mail.example.com").policy.outbound_tls = "none"
    with world.start(storage="memory") as net:
        mua = net.session("mail.example.com", 587, local_name="alice-laptop")
        mua.connect()
        mua.ehlo()
        assert mua.auth(ALICE, "wonderland").code == 235
        mua.transaction(ALICE, BOB, seed_message(world))
        mua.quit()
        assert net.wait(net.idle, 10) and net.wait(lambda: _all_closed(net), 5)
        yield net, mua


@pytest.fixture(scope="module")
def encrypted() -> Iterator[Network]:
    """The seed world after Alice's message went over STARTTLS both ways."""
    world = World.seed_world()
    with world.start(storage="memory") as net:
        net.submit(seed_message(world), sender=ALICE, recipients=[BOB], user=ALICE,
                   password="wonderland")
        assert net.wait(net.idle, 10) and net.wait(lambda: _all_closed(net), 5)
        yield net


def test_connections_are_named_by_hosts_and_well_known_ports(plain: tuple[Network, Any]
                                                             ) -> None:
    net, mua = plain
    labels = [connection_label(net, c) for c in connections(net)]
    assert labels == ["127.0.0.1 → mail.example.com port 587 (submission)",
                      "mail.example.com → mail.anotherdomain.org port 25 (smtp)"]
    assert find_connection(net, mua).service == "submission"
    assert find_connection(net).service == "smtp"  # the latest
    assert find_connection(net, service="submission").client == mua.local_address
    with pytest.raises(LookupError):
        find_connection(net, 10_000)
    with pytest.raises(TypeError):
        find_connection(net, "mail.example.com")


def test_transcript_and_hexdump_come_from_the_captured_bytes(plain: tuple[Network, Any]
                                                             ) -> None:
    net, mua = plain
    text = transcript_text(net, mua)
    ip = find_connection(net, mua).server[0]
    assert text.startswith(f"=== Trying mail.example.com[{ip}]:587...\n"
                           "=== Connected to mail.example.com.\n")
    assert " -> AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdvbmRlcmxhbmQ=" in text  # not masked:
    assert "<-  235 2.7.0 Authentication successful" in text  # the wire has no mask
    dump = stream_hexdump(net, mua, "c2s", find="AUTH PLAIN", length=48)
    first = dump.splitlines()[0]
    assert int(first.split()[0], 16) % 16 == 0 and "AUTH" in first
    assert "|" in first and "41 55 54 48" in dump  # "AUTH" in hex
    with pytest.raises(LookupError):
        stream_hexdump(net, mua, "c2s", find="STARTTLS")


def test_the_eavesdropper_reads_the_password_and_the_message(plain: tuple[Network, Any]
                                                             ) -> None:
    net, mua = plain
    report = eavesdropper_report(net, mua)
    assert "[in clear] credentials: Password for alice@example.com: wonderland" in report.plain
    assert "[in clear] envelope recipient: RCPT TO:<bob@anotherdomain.org>" in report.plain
    assert BODY in report.plain
    assert report.plain.endswith("are readable by anyone on the path.")
    assert "wonderland" in report.html and "Verdict:" in report.html
    path = eavesdropper_report(net.eavesdropper())
    assert path.plain.startswith("An eavesdropper on the path between mail.example.com and "
                                 "mail.anotherdomain.org: 1 connection(s)")
    assert "connection 1: mail.example.com → mail.anotherdomain.org port 25" in path.plain
    assert BODY in path.plain and "wonderland" not in path.plain  # AUTH was on the other leg


def test_after_starttls_only_what_tls_leaks(encrypted: Network) -> None:
    net = encrypted
    assert wait_closed(net)
    eve = net.eavesdropper()
    report = eavesdropper_report(eve, fresh=True)
    assert "1 connection(s)" in report.plain
    assert "0 connection(s)" in eavesdropper_report(eve, fresh=True).plain  # nothing new
    assert BODY not in report.plain and "[in clear]" not in report.plain
    assert "SNI (in clear): mail.anotherdomain.org" in report.plain
    assert "chosen (in clear): TLS 1.3" in report.plain
    assert "Only what TLS leaks is readable" in report.plain
    keyed = eavesdropper_report(net, find_connection(net, service="smtp"), keylog=True)
    assert BODY in keyed.plain and "inside TLS, read with the key log" in keyed.plain
    assert "decrypted with the key log" in keyed.plain
    # with the key log the envelope is read inside TLS: not marked (nor coloured) in clear
    assert "envelope sender (inside TLS, read with the key log): MAIL FROM:" in keyed.plain
    assert "[in clear]" not in keyed.plain and COLORS["fail"] not in keyed.html.split(
        "Verdict:")[0]
    assert "Nothing was read in clear. With the TLS key log" in keyed.plain


def test_the_widget_shows_three_views_of_the_chosen_connection(plain: tuple[Network, Any]
                                                               ) -> None:
    net, mua = plain
    view = WireView(net)
    assert [label for label, _ in view.picker.options] == [
        "#1 127.0.0.1 → mail.example.com port 587 (submission)",
        "#2 mail.example.com → mail.anotherdomain.org port 25 (smtp)"]
    assert repr(view) == "WireView(mail.example.com → mail.anotherdomain.org port 25 (smtp))"
    assert "MAIL FROM:&lt;alice@example.com&gt; SIZE=" in view.transcript.value
    assert "segment" in view.hexdump.value and "|EHLO mail.exampl|" in view.hexdump.value
    assert "RCPT TO:&lt;bob@anotherdomain.org&gt;" in view.eavesdropper.value
    view.picker.value = find_connection(net, mua).id  # what choosing in the list does
    assert "AUTH PLAIN AGFsaWNl" in view.transcript.value
    assert "wonderland" in view.eavesdropper.value
    assert repr(view).startswith("WireView(127.0.0.1 → mail.example.com port 587")
    tabs = WireView(net, mua, layout="tabs")
    assert tabs.picker.value == find_connection(net, mua).id
    body = tabs.widget.children[-1]
    assert "simsmtp-tabs" in body._dom_classes
    assert list(body.buttons.options) == ["Transcript (swaks)", "Eavesdropper",
                                          "Hexdump (hexdump -C)"]
    body.buttons.value = "Eavesdropper"   # jslinked in the page; the same index here
    assert body.buttons.index == 1


def test_refresh_picks_up_new_connections_and_the_key_log(encrypted: Network) -> None:
    net = encrypted
    view = WireView(net)
    before, chosen = len(view.picker.options), view.picker.value
    assert "[TLS record: application_data" in view.transcript.value
    view.keylog_box.value = True
    assert "~&gt; MAIL FROM:&lt;alice@example.com&gt;" in view.transcript.value
    assert BODY in view.eavesdropper.value
    with net.session() as session:
        session.connect()
        session.ehlo()
    assert net.wait(lambda: _all_closed(net), 5)
    assert len(view.picker.options) == before  # not yet read
    view.refresh_button.click()
    assert len(view.picker.options) == before + 1
    assert view.picker.value == chosen  # still the one the learner was looking at


def test_an_empty_capture_says_so() -> None:
    world = World.seed_world()
    with world.start(storage="memory", capture=False) as net:
        view = WireView(net)
        assert view.picker.options == ()
        assert "Nothing captured yet" in view.transcript.value
        assert repr(view) == "WireView(nothing captured)"
        with pytest.raises(LookupError):
            find_connection(net)


def test_exercises_of_notebook_4() -> None:
    assert exercise("04.base64").check("builder").correct
    assert "user name" in exercise("04.base64").check("bob").message
    assert exercise("04.what-leaks").check("d").correct
    assert exercise("04.filter").check('smtp.req.command == "AUTH"').correct
    assert not exercise("04.filter").check("smtp").correct
