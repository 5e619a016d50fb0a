"""The steppable client against a running seed world: one Step per command, states of both
sides, learner mistakes, STARTTLS, AUTH masking, submission on 587 and 465, timeouts."""

from __future__ import annotations

import base64
import dataclasses
import ssl

import pytest
import trustme

from simsmtp.net.network import Network
from simsmtp.net.stepper import SMTPStepper, Step, StepTimeout
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.events import MailFrom, Noop
from simsmtp.protocol.session import ClientState as C
from simsmtp.protocol.session import ServerState as S
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
PASSWORD = "wonderland"


def _states(step: Step) -> tuple[C, C, S | None, S | None]:
    return (step.client_state_before, step.client_state_after, step.server_state_before,
            step.server_state_after)


def _commands_seen(world: World, host: str = "mail.anotherdomain.org") -> list[str]:
    return [e["line"] for e in world.trace.events("smtp.command", host=host)]


# ------------------------------------------------------------------ the seed dialogue


def test_the_seed_dialogue_step_by_step(net: Network, world: World) -> None:
    s = net.session("mail.anotherdomain.org", 25)
    greeting = s.connect()
    assert greeting.code == 220
    assert str(greeting.reply) == "220 mail.anotherdomain.org ESMTP Postfix"
    assert greeting.sent == b""
    assert _states(greeting) == (C.CONNECTING, C.CONNECTED, S.CONNECTED, S.CONNECTED)
    assert str(greeting) == "<-  220 mail.anotherdomain.org ESMTP Postfix"

    ehlo = s.ehlo()
    assert ehlo.sent == b"EHLO mail.example.com\r\n"
    assert ehlo.code == 250
    assert ehlo.replies[0].lines[0] == "mail.anotherdomain.org"
    assert {"PIPELINING", "STARTTLS", "8BITMIME"} <= set(ehlo.replies[0].lines[1:])
    assert _states(ehlo) == (C.CONNECTED, C.GREETED, S.CONNECTED, S.GREETED)
    rendered = str(ehlo).splitlines()
    assert rendered[0] == " -> EHLO mail.example.com"
    assert rendered[1] == "<-  250-mail.anotherdomain.org"
    assert rendered[-1].startswith("<-  250 ")

    mail = s.mail(ALICE)
    assert mail.sent == b"MAIL FROM:<alice@example.com>\r\n"
    assert str(mail.reply) == "250 2.1.0 Ok"
    assert "2.1.0" in mail.explanation
    assert mail.explanation == mail.replies[0].explain()
    assert _states(mail) == (C.GREETED, C.MAIL, S.GREETED, S.MAIL)

    rcpt = s.rcpt(BOB)
    assert rcpt.sent == b"RCPT TO:<bob@anotherdomain.org>\r\n"
    assert str(rcpt.reply) == "250 2.1.5 Ok"
    assert _states(rcpt) == (C.MAIL, C.RCPT, S.MAIL, S.RCPT)

    message = seed_message(world)
    data, content = s.data(message)
    assert data.sent == b"DATA\r\n"
    assert data.code == 354
    assert _states(data) == (C.RCPT, C.MESSAGE, S.RCPT, S.DATA)
    assert content.label == "<message>"
    assert content.sent == message + b".\r\n"
    assert content.code == 250
    assert content.replies[0].lines[0].startswith("2.0.0 Ok: queued as ")
    assert _states(content) == (C.MESSAGE, C.GREETED, S.DATA, S.GREETED)
    assert " -> Subject: Meeting Tomorrow" in str(content).splitlines()
    assert str(content).splitlines()[-2] == " -> ."

    quit_ = s.quit()
    assert quit_.sent == b"QUIT\r\n"
    assert quit_.code == 221
    assert _states(quit_) == (C.GREETED, C.CLOSED, S.GREETED, S.CLOSED)
    assert quit_.note == ""
    assert s.closed

    assert [step.label for step in s.history] == [
        "<greeting>", "EHLO", "MAIL", "RCPT", "DATA", "<message>", "QUIT"]
    assert s.history[1] is ehlo
    with pytest.raises(dataclasses.FrozenInstanceError):
        ehlo.sent = b""  # type: ignore[misc]
    [stored] = net.mailbox(BOB)
    assert stored["Subject"] == "Meeting Tomorrow"
    assert stored["Received"].startswith("from mail.example.com")


def test_learner_mistakes_typed_by_hand_reach_the_server(net: Network) -> None:
    s = net.session()
    s.connect()
    s.ehlo()
    first = s.line("RCPT TO:<bob@anotherdomain.org>")
    assert first.sent == b"RCPT TO:<bob@anotherdomain.org>\r\n"
    assert str(first.reply) == "503 5.5.1 Error: need MAIL command"
    assert "bad sequence" in first.explanation
    assert str(first) == (" -> RCPT TO:<bob@anotherdomain.org>\n"
                          "<** 503 5.5.1 Error: need MAIL command")
    assert _states(first) == (C.GREETED, C.GREETED, S.GREETED, S.GREETED)

    no_brackets = s.line("MAIL FROM:alice@example.com")
    assert no_brackets.code == 501
    assert no_brackets.reply is not None and no_brackets.reply.enhanced == "5.5.4"

    nonsense = s.line("HELLO there")
    assert nonsense.code in (500, 502)
    assert nonsense.client_state_after is C.GREETED
    assert s.line(b"MAIL FROM:<alice@example.com>").code == 250
    s.quit()


def test_a_helper_refuses_what_the_state_does_not_allow_and_sends_nothing(
        net: Network, world: World) -> None:
    s = net.session()
    s.connect()
    s.ehlo()
    before = len(s.history)
    with pytest.raises(LocalProtocolError, match="RCPT not allowed in state GREETED"):
        s.rcpt(BOB)
    assert len(s.history) == before
    assert not any(line.startswith("RCPT") for line in _commands_seen(world))
    assert s.send(Noop()).code == 250  # the session goes on
    s.quit()


def test_playing_a_world_host_connects_from_its_address(net: Network, world: World) -> None:
    with net.session() as s:  # local_name="mail.example.com" by default
        s.connect()
        assert s.local_address is not None
        assert s.local_address[0] == net.hosts["mail.example.com"].ip
        s.ehlo()
        s.transaction(ALICE, [BOB], seed_message(world))
    [stored] = net.mailbox(BOB)
    assert f"(mail.example.com [{net.hosts['mail.example.com'].ip}])" in stored["Received"]
    with net.session(local_name="laptop.example.net") as s:
        s.connect()
        assert s.local_address is not None and s.local_address[0] == "127.0.0.1"


def test_commands_before_connect_are_refused() -> None:
    s = SMTPStepper(("127.0.0.1", 9))
    with pytest.raises(LocalProtocolError, match=r"connect\(\)"):
        s.ehlo()


def test_bare_cr_or_lf_in_a_typed_line_is_refused(net: Network, world: World) -> None:
    s = net.session()
    s.connect()
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        s.line("EHLO x\nMAIL FROM:<a@b.example>")
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        s.line(b"NOOP\r")
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        s.line(b"NOOP\n")
    assert len(s.history) == 1
    ok = s.line("NOOP\r\n")  # one trailing CRLF is what line() adds anyway
    assert ok.sent == b"NOOP\r\n"
    assert ok.code == 250
    assert _commands_seen(world) == ["NOOP"]


def test_message_typed_line_by_line(net: Network) -> None:
    s = net.session()
    s.connect()
    s.ehlo()
    s.mail(ALICE)
    s.rcpt(BOB)
    assert s.line("DATA").code == 354
    assert s.state is C.MESSAGE
    header = s.line("Subject: typed")
    assert header.replies == []
    assert "No reply expected" in header.explanation
    assert header.server_state_after is S.DATA
    s.line("")
    s.line("..a line that starts with a dot, stuffed by hand")
    end = s.line(".")
    assert end.code == 250
    assert end.client_state_after is C.GREETED
    assert end.server_state_after is S.GREETED
    [stored] = net.mailbox(BOB)
    assert stored["Subject"] == "typed"
    assert stored.get_content().startswith(".a line that starts with a dot")


# ------------------------------------------------------------------ TLS and AUTH


def test_starttls_then_ehlo_again(net: Network) -> None:
    s = net.session("mail.anotherdomain.org", 25)
    s.connect()
    assert "STARTTLS" in s.ehlo().replies[0].lines[1:]
    tls = s.starttls()
    assert str(tls.reply) == "220 2.0.0 Ready to start TLS"
    assert not tls.tls  # the command and its 220 are still in plaintext
    assert tls.tls_version in ("TLSv1.2", "TLSv1.3")
    assert tls.tls_cipher
    assert tls.note == f"TLS started with cipher {tls.tls_version}:{tls.tls_cipher}"
    assert str(tls).splitlines()[-1] == f"=== {tls.note}"
    assert "TLS started" in tls.explanation
    assert _states(tls) == (C.GREETED, C.CONNECTED, S.GREETED, S.CONNECTED)
    assert s.tls_active

    ehlo = s.ehlo()
    assert ehlo.tls
    assert str(ehlo).splitlines()[0] == " ~> EHLO mail.example.com"
    assert str(ehlo).splitlines()[1] == "<~  250-mail.anotherdomain.org"
    keywords = {line.split()[0] for line in ehlo.replies[0].lines[1:]}
    assert "STARTTLS" not in keywords
    assert "AUTH" not in keywords  # an MX offers no AUTH
    assert _states(ehlo) == (C.CONNECTED, C.GREETED, S.CONNECTED, S.GREETED)
    assert str(s.mail(ALICE)).startswith(" ~> MAIL FROM:")
    error = s.line("BOGUS")
    assert str(error).splitlines()[1].startswith("<~* 50")
    s.quit()


def test_submission_587_lists_auth_only_after_starttls(net: Network) -> None:
    s = net.session("mail.example.com", 587, local_name="alice-laptop.example.com")
    s.connect()
    plain = s.ehlo()
    keywords = {line.split()[0] for line in plain.replies[0].lines[1:]}
    assert "STARTTLS" in keywords
    assert "AUTH" not in keywords
    with pytest.raises(LocalProtocolError, match="does not offer AUTH PLAIN"):
        s.auth(ALICE, PASSWORD)
    refused = s.mail(ALICE)  # RFC 3207 §4: the server insists on TLS first
    assert refused.code == 530
    s.starttls()
    secure = s.ehlo()
    assert "AUTH PLAIN LOGIN" in secure.replies[0].lines
    assert "STARTTLS" not in secure.replies[0].lines
    auth = s.auth(ALICE, PASSWORD)
    assert auth.code == 235
    assert auth.sent == b"AUTH PLAIN ***\r\n"
    assert auth.tls
    assert str(auth) == " ~> AUTH PLAIN ***\n<~  235 2.7.0 Authentication successful"
    s.quit()
    secret = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    for step in s.history:
        for shown in (step.sent, str(step).encode(), repr(step).encode()):
            assert PASSWORD.encode() not in shown
            assert secret not in shown


def test_auth_login_helper_masks_every_sasl_response(net: Network) -> None:
    s = net.session("mail.example.com", 587)
    s.connect()
    s.ehlo()
    s.starttls()
    s.ehlo()
    step = s.auth(ALICE, PASSWORD, mechanism="LOGIN")
    assert [r.code for r in step.replies] == [334, 334, 235]
    assert step.sent == b"AUTH LOGIN\r\n***\r\n***\r\n"
    assert _states(step) == (C.GREETED, C.GREETED, S.GREETED, S.GREETED)
    s.quit()


def test_auth_typed_by_hand_is_masked_in_the_step(net: Network) -> None:
    s = net.session("mail.example.com", 587)
    s.connect()
    s.ehlo()
    s.starttls()
    s.ehlo()
    user = base64.b64encode(ALICE.encode()).decode()
    password = base64.b64encode(PASSWORD.encode()).decode()
    first = s.line("AUTH LOGIN")
    assert first.code == 334
    assert first.client_state_after is C.AUTH
    assert first.server_state_after is S.AUTH
    name = s.line(user)
    assert name.code == 334
    assert name.sent == b"***\r\n"
    assert name.label == "***"
    done = s.line(password)
    assert done.code == 235
    assert done.sent == b"***\r\n"
    assert done.server_state_after is S.GREETED
    s.rset()
    initial = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    again = s.line(f"AUTH PLAIN {initial}")
    assert again.code == 503  # RFC 4954 §4: already authenticated
    assert again.sent == b"AUTH PLAIN ***\r\n"
    assert again.label == "AUTH PLAIN ***"
    s.quit()
    for step in s.history:
        for shown in (step.sent, str(step).encode(), repr(step).encode()):
            assert password.encode() not in shown
            assert initial.encode() not in shown


def test_starttls_against_an_untrusted_certificate_fails_and_closes(net: Network) -> None:
    other = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    other.configure_trust(context)
    s = net.session(tls_context=context)
    s.connect()
    s.ehlo()
    step = s.starttls()
    assert step.code == 220
    assert step.note.startswith("TLS handshake failed")
    assert "CERTIFICATE_VERIFY_FAILED" in step.note
    assert step.client_state_after is C.CLOSED
    assert s.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        s.noop()


def test_raw_address_without_a_network(net: Network) -> None:
    address = net.address("mail.anotherdomain.org", 25)
    with SMTPStepper(address) as s:
        assert s.connect().code == 220
        step = s.ehlo()
        assert step.server_state_before is None and step.server_state_after is None
        with pytest.raises(LocalProtocolError, match="TLS context"):
            s.starttls()
    assert s.history[-1].label == "QUIT"  # the context manager said goodbye
    context = ssl.create_default_context(cafile=str(net.ca_file))
    with SMTPStepper(address, tls_context=context) as s:
        s.connect()
        s.ehlo()
        tls = s.starttls()  # verified against the certificate's IP address
        assert tls.tls_version is not None
        assert s.ehlo().tls


def test_send_takes_command_events(net: Network) -> None:
    with net.session() as s:
        s.connect()
        helo = s.helo("client.example.net")
        assert helo.sent == b"HELO client.example.net\r\n"
        assert str(helo.reply) == "250 mail.anotherdomain.org"
        assert _states(helo) == (C.CONNECTED, C.GREETED, S.CONNECTED, S.GREETED)
        assert s.extensions == {}  # HELO: no extensions, so no SIZE parameter either
        with pytest.raises(LocalProtocolError, match="SIZE"):
            s.send(MailFrom("", {"SIZE": "100"}))
        s.ehlo("client.example.net")
        step = s.send(MailFrom("", {"SIZE": "100"}))  # the null sender, with a parameter
        assert step.sent == b"MAIL FROM:<> SIZE=100\r\n"
        assert step.code == 250
        assert s.rset().client_state_after is C.GREETED


# ------------------------------------------------------------------ submission helper


def test_submit_on_587_runs_the_whole_mua_dialogue(net: Network, world: World) -> None:
    steps = net.submit(seed_message(world), sender=ALICE, recipients=[BOB], user=ALICE,
                       password=PASSWORD)
    assert [s.label for s in steps] == ["<greeting>", "EHLO", "STARTTLS", "EHLO", "AUTH",
                                        "MAIL", "RCPT", "DATA", "<message>", "QUIT"]
    assert [s.code for s in steps] == [220, 250, 220, 250, 235, 250, 250, 354, 250, 221]
    assert [s.tls for s in steps] == [False] * 3 + [True] * 7
    assert steps[4].sent == b"AUTH PLAIN ***\r\n"
    assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
    [stored] = net.mailbox(BOB)
    assert stored["Subject"] == "Meeting Tomorrow"
    assert "(Authenticated sender: alice@example.com)" in str(stored)


def test_submit_on_465_starts_with_tls(net: Network, world: World) -> None:
    steps = net.submit(seed_message(world), sender=ALICE, recipients=BOB, user="alice",
                       password=PASSWORD, port=465)
    assert [s.label for s in steps] == ["<greeting>", "EHLO", "AUTH", "MAIL", "RCPT", "DATA",
                                        "<message>", "QUIT"]
    assert all(s.tls for s in steps)
    assert steps[0].note.startswith("TLS started with cipher")
    assert str(steps[0]).splitlines() == [f"=== {steps[0].note}",
                                          "<~  220 mail.example.com ESMTP Postfix"]
    assert steps[0].server_state_after is S.CONNECTED
    assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)


def test_submit_stops_at_a_wrong_password(net: Network, world: World) -> None:
    steps = net.submit(seed_message(world), sender=ALICE, recipients=[BOB], user=ALICE,
                       password="not-the-password")
    assert [s.label for s in steps][-2:] == ["AUTH", "QUIT"]
    assert steps[-2].code == 535
    assert steps[-2].sent == b"AUTH PLAIN ***\r\n"
    assert net.mailbox(BOB) == []


# ------------------------------------------------------------------ time and failures


def test_a_slow_reply_raises_step_timeout_and_wait_resumes(net: Network,
                                                           world: World) -> None:
    world.faults.add("mail.anotherdomain.org", "MAIL", delay=0.6, times=1)
    s = net.session(timeout=0.2)
    s.connect()
    s.ehlo()
    with pytest.raises(StepTimeout, match=r"no reply from mail\.anotherdomain\.org"):
        s.mail(ALICE)  # the reply comes after 0.6 s: the step does not wait for it
    with pytest.raises(LocalProtocolError, match="still waiting"):
        s.noop()
    step = s.wait(5)
    assert step.code == 250
    assert step.label == "MAIL"
    assert _states(step) == (C.GREETED, C.MAIL, S.GREETED, S.MAIL)
    assert s.rcpt(BOB).code == 250
    s.quit()


def test_a_server_that_hangs_up_gives_a_step_without_reply(net: Network,
                                                           world: World) -> None:
    world.faults.add("mail.anotherdomain.org", "MAIL", drop=True)
    s = net.session()
    s.connect()
    s.ehlo()
    step = s.mail(ALICE)
    assert step.replies == []
    assert step.client_state_after is C.CLOSED
    assert "closed the connection" in step.explanation
    assert step.note.startswith("connection closed")
    assert s.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        s.noop()


def test_a_host_that_is_down_refuses_the_connection(net: Network) -> None:
    net.take_down("mail.anotherdomain.org")
    with pytest.raises(ConnectionRefusedError, match="refused the connection"):
        net.session().connect()


def test_two_sessions_keep_their_own_server_states(net: Network) -> None:
    with net.session() as one, net.session() as two:
        one.connect()
        two.connect()
        one.ehlo()
        two.ehlo()
        assert one.mail(ALICE).server_state_after is S.MAIL
        assert two.noop().server_state_after is S.GREETED
        assert one.rcpt(BOB).server_state_before is S.MAIL
        assert two.server_state is S.GREETED
