"""The stepper walks a real session forward and backward, with meanings and states."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network
from simsmtp.net.stepper import Step
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.session import ClientState as C
from simsmtp.protocol.session import ServerState as S
from simsmtp.ui import exercise
from simsmtp.ui.stepper import (
    Stepper,
    capability_table,
    seed_dialogue,
    seed_script,
    step_verb,
    steps_table,
)
from simsmtp.ui.style import COLORS
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

EHLO_LINES = ["mail.anotherdomain.org", "PIPELINING", "SIZE 52428800", "STARTTLS", "X-ODD"]


def recorded() -> list[Step]:
    """A short session, as SMTPStepper records it (no network needed)."""
    return [
        Step("<greeting>", b"", [Reply(220, "mail.anotherdomain.org ESMTP Postfix")],
             Reply(220, "x").explain(), C.CONNECTING, C.CONNECTED, S.CONNECTED, S.CONNECTED),
        Step("EHLO", b"EHLO mail.example.com\r\n", [Reply(250, EHLO_LINES)],
             Reply(250, "x").explain(), C.CONNECTED, C.GREETED, S.CONNECTED, S.GREETED),
        Step("RCPT TO:<bob@anotherdomain.org>", b"RCPT TO:<bob@anotherdomain.org>\r\n",
             [Reply(503, "5.5.1 Error: need MAIL command")],
             Reply(503, "5.5.1 Error: need MAIL command").explain(), C.GREETED, C.GREETED,
             S.GREETED, S.GREETED),
        Step("MAIL", b"MAIL FROM:<alice@example.com>\r\n", [Reply(250, "2.1.0 Ok")],
             Reply(250, "2.1.0 Ok").explain(), C.GREETED, C.MAIL, S.GREETED, S.MAIL),
    ]


@pytest.fixture
def net() -> Iterator[Network]:
    world = World.seed_world()
    with world.start(storage="memory") as running:
        yield running


def test_next_and_back_walk_the_record() -> None:
    stepper = Stepper(recorded())
    assert repr(stepper) == "Stepper(step 1 of 4: <greeting>)"
    assert stepper.back_button.disabled and not stepper.next_button.disabled
    assert "220 mail.anotherdomain.org ESMTP Postfix" in stepper.wire.value
    assert "EHLO" not in stepper.wire.value
    stepper.next_button.click()
    assert stepper.current is not None and stepper.current.label == "EHLO"
    assert " -> EHLO mail.example.com" in stepper.wire_text()
    assert "EHLO mail.example.com" in stepper.wire.value
    stepper.next_button.click()
    stepper.next_button.click()
    assert repr(stepper) == "Stepper(step 4 of 4: MAIL)"
    assert stepper.next_button.disabled
    stepper.next_button.click()  # at the end of a record: nothing happens
    assert stepper.position == 3
    stepper.back_button.click()
    assert stepper.current is not None and stepper.current.code == 503
    assert "MAIL FROM" not in stepper.wire.value  # the future is not shown
    stepper.go(0)
    assert stepper.back_button.disabled


def test_the_meaning_pane_explains_the_reply_and_the_states() -> None:
    stepper = Stepper(recorded())
    stepper.go(2)
    pane = stepper.meaning.value
    assert "RCPT TO:&lt;bob@anotherdomain.org&gt;" in pane
    assert "503" in pane and "bad sequence of commands" in pane
    assert "GREETED <span" in pane and "(unchanged)" in pane
    stepper.go(3)
    assert "GREETED → <b" in stepper.meaning.value and "MAIL</b>" in stepper.meaning.value
    stepper.go(1)  # the EHLO step lists what the server offers
    assert "RFC 2920" in stepper.meaning.value and "PIPELINING" in stepper.meaning.value
    stepper.go(0)
    assert "nothing (the server speaks first" in stepper.meaning.value


def test_the_state_diagram_follows_the_step_and_the_role() -> None:
    stepper = Stepper(recorded())
    assert stepper.diagram is not None
    assert stepper.diagram.current == "CONNECTED"
    first = stepper.diagram.image.value
    stepper.go(3)
    assert stepper.diagram.current == "MAIL"
    assert "after MAIL in GREETED" in stepper.diagram.caption.value
    assert stepper.diagram.image.value != first
    stepper.role_toggle.value = "client"
    assert stepper.diagram.role == "client"
    assert "client state" in stepper.diagram.caption.value


def test_verbs_map_to_the_transition_table() -> None:
    steps = recorded()
    assert [step_verb(s) for s in steps] == ["", "EHLO", "RCPT", "MAIL"]
    message = Step("<message>", b"hi\r\n.\r\n", [Reply(250, "2.0.0 Ok")], "", C.MESSAGE,
                   C.GREETED)
    assert step_verb(message) == "<end-of-data>"


def test_capability_table_says_what_each_keyword_means() -> None:
    table = capability_table(recorded()[1])
    assert "PIPELINING" in table.plain and "RFC 2920" in table.plain
    assert "SIZE 52428800" in table.plain and "RFC 1870" in table.plain
    assert "X-ODD" in table.plain and "(not described here)" in table.plain
    assert "mail.anotherdomain.org" not in table.plain  # the first line is the name
    assert "<table" in table.html
    assert "RFC 3030" in capability_table({"chunking": ""}).plain
    with pytest.raises(TypeError):
        capability_table(42)
    compact = capability_table(recorded()[1], compact=True)
    assert compact.plain == table.plain and "<code>PIPELINING</code>" in compact.html


def test_steps_table_one_row_per_step() -> None:
    table = steps_table(recorded())
    lines = table.plain.splitlines()
    assert lines[0].split() == ["#", "client", "sent", "server", "replied", "client", "state",
                                "server", "state"]
    assert "(connects; the server speaks first)" in lines[2]
    assert "250-mail.anotherdomain.org (+4 lines)" in lines[3]
    assert lines[4].split()[-2:] == ["GREETED", "GREETED"] and "503 5.5.1" in lines[4]
    assert COLORS["fail"] in table.html  # the 503 in the colour of a permanent failure


def test_the_seed_dialogue_against_the_real_server(net: Network) -> None:
    steps = seed_dialogue(net.session(), seed_message(net.world))
    assert [s.label for s in steps] == ["<greeting>", "EHLO", "MAIL", "RCPT", "DATA",
                                        "<message>", "QUIT"]
    assert [s.code for s in steps] == [220, 250, 250, 250, 354, 250, 221]
    stepper = Stepper(steps)
    stepper.go(4)
    assert stepper.diagram is not None and stepper.diagram.current == "DATA"
    assert "354" in stepper.meaning.value
    stepper.go(5)
    assert "the message (" in stepper.meaning.value


def test_a_live_stepper_sends_one_command_per_click(net: Network) -> None:
    session = net.session()
    stepper = Stepper(session, script=seed_script(seed_message(net.world), tls=True))
    assert repr(stepper) == "Stepper(not started)"
    assert not stepper.next_button.disabled and stepper.live
    stepper.next_button.click()
    assert stepper.current is not None and stepper.current.code == 220
    assert not session.closed
    for _ in range(3):  # EHLO, STARTTLS (and the handshake), EHLO again
        stepper.next_button.click()
    assert session.tls_active
    assert "TLS started" in stepper.wire.value
    assert "~&gt; EHLO mail.example.com" in stepper.wire.value
    stepper.back_button.click()  # back shows the record, it sends nothing
    assert stepper.current is not None and stepper.current.label == "STARTTLS"
    sent = len(session.history)
    stepper.next_button.click()
    assert len(session.history) == sent  # walking forward through the record again
    while not stepper.next_button.disabled:
        stepper.next_button.click()
    assert stepper.current is not None and stepper.current.label == "QUIT"
    assert session.closed and not stepper.live
    assert [m["Subject"] for m in net.mailbox("bob@anotherdomain.org")] == ["Meeting Tomorrow"]


def test_a_refused_live_action_is_shown_not_raised(net: Network) -> None:
    session = net.session()
    stepper = Stepper(session, script=[lambda s: s.connect(), lambda s: s.rcpt("x@y.z")],
                      diagram=False)
    stepper.next_button.click()
    stepper.next_button.click()  # the client core refuses RCPT before MAIL: nothing sent
    assert "That step failed" in stepper.meaning.value
    assert "LocalProtocolError" in stepper.meaning.value
    assert len(stepper.steps) == 1 and stepper.diagram is None


def test_exercises_of_notebook_2() -> None:
    assert exercise("02.pipelining").check(" pipelining ").correct
    assert not exercise("02.pipelining").check("CHUNKING").correct
    assert exercise("02.state-after-data").check("DATA").correct
    assert exercise("02.bounce-to").check("b").correct
    wrong = exercise("02.bounce-to").check("a")
    assert not wrong.correct and "envelope" in wrong.message
