"""The console: typed lines reach the real server, mistakes included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network
from simsmtp.ui import exercise
from simsmtp.ui.console import Console
from simsmtp.world import World


@pytest.fixture
def net() -> Iterator[Network]:
    world = World.seed_world()
    with world.start(storage="memory") as running:
        yield running


def type_line(console: Console, line: str) -> str:
    """What a learner does: type in the box, click Send; the last reply shown."""
    console.input.value = line
    console.send_button.click()
    return console.transcript_text().splitlines()[-1]


def test_connect_then_mistakes_get_the_real_replies(net: Network) -> None:
    console = Console(net)
    assert repr(console) == "Console(mail.anotherdomain.org port 25, not connected)"
    assert console.input.disabled and console.connect_button.description == "Connect"
    console.connect_button.click()
    assert console.connected and console.connect_button.description == "Reset"
    assert "220 mail.anotherdomain.org ESMTP Postfix" in console.transcript.value
    assert "client <b>CONNECTED</b>, server <b>CONNECTED</b>" in console.status.value
    assert type_line(console, "RCPT TO:<bob@anotherdomain.org>").startswith("<** 503")
    assert "bad sequence of commands" in console.meaning.value
    assert type_line(console, "EHLO mail.example.com") == "<-  250 CHUNKING"
    assert type_line(console, "MAIL FROM:<bad").startswith("<** 501")
    assert type_line(console, "FROBNICATE").startswith("<** 500")
    assert type_line(console, "HÉLO") == "<** 500 5.5.2 Error: non-ASCII character received"
    assert type_line(console, "") == "<** 500 5.5.2 Error: bad syntax"
    assert "server <b>GREETED</b>" in console.status.value
    assert console.input.value == ""  # the box is cleared after each line


def test_enter_sends_and_quick_buttons_fill_the_box(net: Network) -> None:
    console = Console(net, local_name="mail.example.com")
    console.connect()
    ehlo = next(b for b in console.quick_buttons if b.description == "EHLO")
    ehlo.click()
    assert console.input.value == "EHLO mail.example.com"
    console.input._handle_string_msg(None, {"event": "submit"}, None)  # Enter in the box
    assert console.steps[-1].label == "EHLO mail.example.com"
    assert console.steps[-1].code == 250


def test_a_message_typed_line_by_line_is_delivered(net: Network) -> None:
    console = Console(net)
    console.connect()
    for line in ("EHLO mail.example.com", "MAIL FROM:<alice@example.com>",
                 "RCPT TO:<bob@anotherdomain.org>"):
        type_line(console, line)
    assert type_line(console, "DATA").startswith("<-  354")
    assert list(console.quick_row.children) == console.content_buttons  # message lines now
    assert "Inside DATA" in console.meaning.value
    for line in ("Subject: by hand", "", "Hello Bob"):
        assert type_line(console, line) == f" -> {line}"  # content: no reply
    assert type_line(console, ".").startswith("<-  250 2.0.0 Ok: queued as ")
    assert list(console.quick_row.children) == console.quick_buttons
    assert net.wait(lambda: len(net.mailbox("bob@anotherdomain.org")) == 1, 5)
    assert net.mailbox("bob@anotherdomain.org")[0]["Subject"] == "by hand"
    assert exercise("02.by-hand").check(console).correct


def test_starttls_upgrades_and_quit_closes(net: Network) -> None:
    console = Console(net)
    console.connect()
    type_line(console, "EHLO mail.example.com")
    type_line(console, "STARTTLS")
    assert console.session is not None and console.session.tls_active
    assert "TLS" in console.status.value
    assert type_line(console, "EHLO mail.example.com").startswith("<~  250 ")
    assert type_line(console, "QUIT") == "<~  221 2.0.0 Bye"
    assert not console.connected and console.input.disabled
    assert console.connect_button.description == "Connect again"
    console.connect_button.click()  # a new connection
    assert console.connected and console.connections == 2
    assert len(console.steps) == 1 and len(console.all_steps) == 6


def test_reset_and_an_unreachable_server_are_shown(net: Network) -> None:
    console = Console(net)
    console.connect()
    type_line(console, "EHLO x")
    console.connect_button.click()  # Reset: a fresh connection, a fresh conversation
    assert [s.label for s in console.steps] == ["<greeting>"]
    net.take_down("mail.anotherdomain.org")
    console.connect_button.click()
    assert not console.connected
    assert "Not sent" in console.meaning.value and "refused" in console.meaning.value
    assert console.send("EHLO x") is None  # connecting first fails the same way
    not_yet = exercise("02.by-hand").check(console)
    assert not not_yet.correct


def test_a_bare_line_feed_is_refused_before_sending(net: Network) -> None:
    console = Console(net)
    console.connect()
    assert console.send("MAIL FROM:<a@b>\nRCPT TO:<c@d>") is None
    assert "bare CR or LF" in console.meaning.value
    assert [s.label for s in console.steps] == ["<greeting>"]
