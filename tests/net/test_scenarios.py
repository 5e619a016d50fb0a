"""Delivery scenarios end to end over real loopback sockets: submission, the outbound agent,
DNS, the MX and the mailboxes, each read back from the mailboxes and the world's trace."""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from simsmtp.net.network import Network
from simsmtp.net.stepper import Step
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.session import ServerState
from simsmtp.trace import TraceEvent
from simsmtp.world import World
from simsmtp.world.scenario import seed_message
from tests.conftest import posix_only

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
ROOT = Path(__file__).resolve().parents[2]


def _world(*, mx: str = '[{ preference = 10, host = "mail.anotherdomain.org" }]',
           mx_hosts: tuple[str, ...] = ("mail.anotherdomain.org",), outbound_tls: str = "",
           mx_policy: str = "", extra: str = "") -> World:
    """A world like the seed, with the MX side and policies changed."""
    text = f"""
[world]
name = "scenario"
[domains."example.com"]
mx = [{{ preference = 10, host = "mail.example.com" }}]
users.alice = {{ name = "Alice", password = "wonderland" }}
[domains."anotherdomain.org"]
mx = {mx}
users.bob = {{ name = "Bob", password = "builder" }}
[hosts."mail.example.com"]
domain = "example.com"
roles = ["submission", "outbound"]
[hosts."mail.example.com".policy]
outbound_tls = "{outbound_tls or 'opportunistic'}"
{extra}
"""
    for name in mx_hosts:
        text += f'[hosts."{name}"]\ndomain = "anotherdomain.org"\nroles = ["mx", "pop3"]\n'
        if mx_policy:
            text += f'[hosts."{name}".policy]\n{mx_policy}\n'
    return World.from_toml(text, "scenario.toml")


def _submit(net: Network, recipients: list[str], message: bytes | None = None) -> list[Step]:
    """Alice submits on 587 and the agent has done everything that is due now."""
    steps = net.submit(message or seed_message(net.world), sender=ALICE,
                       recipients=recipients, user=ALICE, password="wonderland")
    assert steps[-2].code == 250, "\n".join(str(s) for s in steps)
    assert net.wait(net.idle, 10)
    return steps


def _kinds(world: World, prefix: str) -> list[TraceEvent]:
    return world.trace.events(prefix)


def _bounce_report(message: EmailMessage) -> tuple[list[dict[str, str]], str]:
    """The per-recipient fields of a DSN (RFC 3464 §2.3) and its Reporting-MTA."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    [status] = [p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_message, *per_recipient = blocks
    return ([{k: str(v) for k, v in block.items()} for block in per_recipient],
            str(per_message["Reporting-MTA"]))


# ------------------------------------------------------------------ the seed delivery


def test_seed_delivery_from_submission_to_bobs_maildir() -> None:
    world = World.seed_world()
    with world.start(storage="maildir") as net:
        _submit(net, [BOB])
        [got] = net.mailbox(BOB)
        assert got["Subject"] == "Meeting Tomorrow"
        assert got["From"] == "Alice <alice@example.com>"
        received = got.get_all("Received")
        assert len(received) == 2  # RFC 5321 §4.4: each relay prepends its own
        mx_ip, out_ip = net.hosts["mail.anotherdomain.org"].ip, net.hosts["mail.example.com"].ip
        assert received[0].startswith(f"from mail.example.com (mail.example.com [{out_ip}])")
        assert "by mail.anotherdomain.org (Postfix) with ESMTPS" in received[0]
        assert "for <bob@anotherdomain.org>" in received[0]
        assert "by mail.example.com (Postfix) with ESMTPSA" in received[1]
        assert net.directory is not None
        files = list((net.directory / "mail").rglob("new/*"))
        assert len(files) == 1 and b"Subject: Meeting Tomorrow" in files[0].read_bytes()

        mx_query = [e for e in _kinds(world, "dns.query")
                    if e["qname"] == "anotherdomain.org." and e["qtype"] == "MX"]
        assert mx_query
        dialogue = [e["line"] for e in world.trace.events("smtp.command",
                                                          host="mail.anotherdomain.org")]
        assert dialogue[:3] == ["EHLO mail.example.com", "STARTTLS", "EHLO mail.example.com"]
        assert dialogue[3].startswith("MAIL FROM:<alice@example.com>")
        assert dialogue[4].startswith("RCPT TO:<bob@anotherdomain.org>")
        assert dialogue[5] == "DATA"
        handshakes = world.trace.events("tls.handshake", host="mail.anotherdomain.org")
        assert handshakes and handshakes[0]["peer"].startswith(out_ip + ":")
        [message] = world.trace.events("smtp.message", host="mail.anotherdomain.org")
        assert message["accepted"] and message["recipients"] == [BOB]
        [ok] = _kinds(world, "delivery.ok")
        assert ok["recipient"] == BOB and ok["mx"] == "mail.anotherdomain.org"
        assert ok["reply"].startswith("250 2.0.0 Ok: queued as ")
        assert mx_query[0].seq < message.seq < ok.seq
        assert mx_ip != out_ip


# ------------------------------------------------------------------ MX fallback


def _two_mx_world() -> World:
    return _world(mx='[{ preference = 10, host = "mx1.anotherdomain.org" }, '
                     '{ preference = 20, host = "mx2.anotherdomain.org" }]',
                  mx_hosts=("mx1.anotherdomain.org", "mx2.anotherdomain.org"))


@pytest.mark.parametrize("how", ["take_down", "connect_fault"])
def test_primary_mx_down_so_the_backup_takes_it(how: str) -> None:
    world = _two_mx_world()
    if how == "connect_fault":
        world.faults.add("mx1.anotherdomain.org", "CONNECT",
                         "421 4.3.2 mx1.anotherdomain.org Service not available")
    with world.start(storage="memory") as net:
        if how == "take_down":
            net.take_down("mx1.anotherdomain.org")
        _submit(net, [BOB])
        assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
        attempts = [e["mx"] for e in _kinds(world, "delivery.attempt")]
        assert attempts == ["mx1.anotherdomain.org", "mx2.anotherdomain.org"]
        [ok] = _kinds(world, "delivery.ok")
        assert ok["mx"] == "mx2.anotherdomain.org"
        assert world.trace.events("delivery.stored", host="mx2.anotherdomain.org")
        assert not world.trace.events("delivery.stored", host="mx1.anotherdomain.org")
        if how == "take_down":
            assert _kinds(world, "delivery.connect_failed")[0]["mx"] == "mx1.anotherdomain.org"
        else:
            greeting = world.trace.events("smtp.reply", host="mx1.anotherdomain.org")[0]
            assert greeting["text"].startswith("421 4.3.2")


# ------------------------------------------------------------------ retries and bounces


def test_greylisting_defers_then_fast_forward_delivers(net: Network, world: World) -> None:
    world.faults.add("mail.anotherdomain.org", "RCPT", "450 4.7.1 Greylisted, try again later",
                     times=1)
    _submit(net, [BOB])
    assert net.mailbox(BOB) == []
    [deferred] = _kinds(world, "delivery.deferred")
    assert deferred["recipient"] == BOB
    assert not _kinds(world, "delivery.ok")
    net.fast_forward(600)
    assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
    [ok] = _kinds(world, "delivery.ok")
    assert ok.seq > deferred.seq
    assert ok.clock > deferred.clock  # later on the world's virtual clock
    assert ok.clock - deferred.clock <= 600
    assert net.mailbox(ALICE) == []  # no bounce


def test_unknown_user_bounces_into_alices_mailbox(net: Network, world: World) -> None:
    _submit(net, ["nobody@anotherdomain.org"])
    [bounce] = net.mailbox(ALICE)
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert bounce["From"].startswith("MAILER-DAEMON@mail.example.com")
    assert bounce["Auto-Submitted"] == "auto-replied"
    recipients, reporting_mta = _bounce_report(bounce)
    assert reporting_mta == "dns; mail.example.com"
    [failed] = recipients
    assert failed["Final-Recipient"] == "rfc822; nobody@anotherdomain.org"
    assert failed["Action"] == "failed"
    assert failed["Status"] == "5.1.1"
    assert failed["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    [stored] = [e for e in _kinds(world, "delivery.stored") if e.get("bounce")]
    assert stored["sender"] == ""  # RFC 3464 §2 / RFC 5321 §4.5.5: from the null sender


def test_null_mx_bounces_at_once() -> None:
    world = _world(extra='[domains."nomail.test"]\nnull_mx = true\n')
    with world.start(storage="memory") as net:
        start = world.clock.now()
        _submit(net, ["someone@nomail.test"])
        assert world.clock.now() == start  # no retry: the bounce is immediate
        assert not _kinds(world, "delivery.attempt")
        [route] = _kinds(world, "delivery.route")
        assert route["route"] == "bounce"
        [bounce] = net.mailbox(ALICE)
        [failed], _ = _bounce_report(bounce)
        assert failed["Status"] == "5.1.10"  # RFC 7505 §4.1
        assert failed["Final-Recipient"] == "rfc822; someone@nomail.test"


def test_a_domain_with_only_an_address_record_is_its_own_mx() -> None:
    world = _world(extra='[domains."implicit.test"]\nusers.carol = { password = "c" }\n'
                         '[hosts."implicit.test"]\ndomain = "implicit.test"\nroles = ["mx"]\n')
    with world.start(storage="memory") as net:
        _submit(net, ["carol@implicit.test"])
        assert [m["Subject"] for m in net.mailbox("carol@implicit.test")] == \
            ["Meeting Tomorrow"]
        route = [e for e in _kinds(world, "delivery.route") if e["domain"] == "implicit.test"]
        assert route[0]["targets"] == ["0 implicit.test"]  # RFC 5321 §5.1: implicit MX
        queries = [(e["qname"], e["qtype"]) for e in _kinds(world, "dns.query")]
        assert ("implicit.test.", "MX") in queries and ("implicit.test.", "A") in queries
        [ok] = _kinds(world, "delivery.ok")
        assert ok["mx"] == "implicit.test"


# ------------------------------------------------------------------ the MX refuses


def test_a_message_over_size_is_refused_552() -> None:
    world = _world(mx_policy="size_limit = 2000")
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    big *= 40
    with world.start(storage="memory") as net, net.session() as s:
        s.connect()
        assert "SIZE 2000" in s.ehlo().replies[0].lines
        with pytest.raises(LocalProtocolError, match="exceeds the server's limit"):
            s.mail(ALICE, {"SIZE": "5000"})  # our client knows better; typed by hand:
        declared = s.line("MAIL FROM:<alice@example.com> SIZE=5000")
        assert declared.code == 552  # RFC 1870 §6.1: refused at MAIL
        assert declared.reply is not None and declared.reply.enhanced == "5.3.4"
        s.mail(ALICE)
        s.rcpt(BOB)
        s.data()
        with pytest.raises(LocalProtocolError, match="SIZE limit"):
            s.message(big)  # our client does not send what will be refused
        for line in big.split(b"\r\n")[:-1]:  # typed by hand instead
            s.line(line)
        end = s.line(".")
        assert end.code == 552
        assert end.reply is not None and end.reply.enhanced == "5.3.4"
        assert net.mailbox(BOB) == []
        [message] = world.trace.events("smtp.message")
        assert message["accepted"] is False and message["size"] == 0

        # Through the agent: the MX's SIZE makes the agent bounce without sending.
        _submit(net, [BOB], big)
        assert net.mailbox(BOB) == []
        assert _kinds(world, "delivery.size_refused")
        [bounce] = net.mailbox(ALICE)
        [failed], _ = _bounce_report(bounce)
        assert failed["Status"].startswith("5.3.4")


def test_a_disk_error_answers_451_and_stores_nothing() -> None:
    world = World.seed_world()
    with world.start(storage="maildir") as net, net.session() as s:
        s.connect()
        s.ehlo()
        net.store.fail_next()
        steps = s.transaction(ALICE, [BOB], seed_message(world))
        assert str(steps[-1].reply) == "451 4.3.0 Error: queue file write error"
        assert steps[-1].server_state_after is ServerState.GREETED
        assert net.mailbox(BOB) == []
        assert net.directory is not None
        assert [p for p in (net.directory / "mail").rglob("*") if p.is_file()] == []
        assert _kinds(world, "store.error")
        again = s.transaction(ALICE, [BOB], seed_message(world))
        assert again[-1].code == 250  # only the next delivery failed
        assert len(net.mailbox(BOB)) == 1


def test_relay_from_an_outside_client_is_denied_454(net: Network) -> None:
    with net.session(local_name="outside.example.net") as s:
        s.connect()
        assert s.local_address is not None and s.local_address[0] == "127.0.0.1"
        s.ehlo()
        s.mail("spammer@outside.example.net")
        refused = s.rcpt("victim@elsewhere.example")
        assert str(refused.reply) == \
            "454 4.7.1 <victim@elsewhere.example>: Relay access denied"
        assert s.rcpt(BOB).code == 250  # mail for the MX's own domain is fine
    assert len(net.queues["mail.example.com"]) == 0


def test_relay_rejected_554_with_the_reject_unauth_destination_policy() -> None:
    world = _world(mx_policy='unauth_destination = "reject"')
    with world.start(storage="memory") as net, \
            net.session(local_name="outside.example.net") as s:
        s.connect()
        s.ehlo()
        s.mail("spammer@outside.example.net")
        refused = s.rcpt("victim@elsewhere.example")
        # Postfix reject_unauth_destination; RFC 3463 §3.8: X.7.1 only as a permanent error
        assert str(refused.reply) == \
            "554 5.7.1 <victim@elsewhere.example>: Relay access denied"
        assert s.line("VRFY victim@elsewhere.example").code == 554  # the same check
        assert s.rcpt(BOB).code == 250


def test_vrfy_answers_as_postfix_known_and_unknown_users(net: Network) -> None:
    # Postfix 3.7.11, virtual mailboxes (measured; tests/interop asks a real one too)
    with net.session(local_name="outside.example.net") as s:
        s.connect()
        s.ehlo()
        assert "VRFY" in s.extensions
        assert str(s.line("VRFY bob@anotherdomain.org").reply) == "252 2.0.0 bob@anotherdomain.org"
        assert str(s.line("VRFY <bob@anotherdomain.org>").reply) == \
            "252 2.0.0 <bob@anotherdomain.org>"
        assert str(s.line("VRFY nosuchuser@anotherdomain.org").reply) == (
            "550 5.1.1 <nosuchuser@anotherdomain.org>: Recipient address rejected: "
            "User unknown in virtual mailbox table")
        assert str(s.line("VRFY bob").reply) == "252 2.0.0 bob"
        assert str(s.line("VRFY Bob Builder").reply) == "501 5.1.3 Bad recipient address syntax"
        assert str(s.line("VRFY <>").reply) == "501 5.1.3 Bad recipient address syntax"
        assert str(s.line("ETRN anotherdomain.org").reply) == \
            "459 <anotherdomain.org>: service unavailable"
        assert s.line("VRFY postmaster@anotherdomain.org").code == 252  # RFC 5321 §4.5.1
        assert str(s.line("VRFY victim@elsewhere.example").reply) == \
            "454 4.7.1 <victim@elsewhere.example>: Relay access denied"


def test_disable_vrfy_command_policy() -> None:
    world = _world(mx_policy="disable_vrfy_command = true")
    with world.start(storage="memory") as net, \
            net.session(local_name="outside.example.net") as s:
        s.connect()
        s.ehlo()
        assert "VRFY" not in s.extensions
        for who in ("bob@anotherdomain.org", "nosuchuser@anotherdomain.org"):
            assert str(s.line(f"VRFY {who}").reply) == "502 5.5.1 VRFY command is disabled"


def test_a_5000_character_line_reaches_the_mailbox_intact(net: Network) -> None:
    wide = "".join(f"{i:04d}" for i in range(1250))  # 5,000 characters, no wrapping
    message = (f"From: <carol@outside.example.net>\r\nTo: <bob@anotherdomain.org>\r\n"
               f"Subject: wide\r\n\r\n{wide}\r\n").encode()
    with net.session(local_name="outside.example.net") as s:
        s.connect()
        s.ehlo()
        steps = s.transaction("carol@outside.example.net", [BOB], message)
        assert steps[-1].code == 250 and str(steps[-1].reply).startswith(
            "250 2.0.0 Ok: queued as ")
    (stored,) = net.mailbox(BOB)
    assert stored.get_payload().strip() == wide


def test_required_outbound_tls_defers_when_the_mx_offers_no_starttls() -> None:
    world = _world(outbound_tls="required", mx_policy="starttls = false")
    with world.start(storage="memory") as net:
        _submit(net, [BOB])
        assert net.mailbox(BOB) == []
        failed = _kinds(world, "tls.required_failed")
        assert failed and "STARTTLS" in failed[0]["reason"]
        [deferred] = _kinds(world, "delivery.deferred")
        assert deferred["recipient"] == BOB
        assert "TLS" in str(deferred.data)
        commands = [e["line"] for e in world.trace.events("smtp.command")
                    if e.host == "mail.anotherdomain.org"]
        assert not any(c.startswith(("MAIL", "STARTTLS")) for c in commands)
        assert len(net.queues["mail.example.com"]) == 1  # kept for a later try
        assert net.mailbox(ALICE) == []


# ------------------------------------------------------------------ durability


_CHILD = r"""
import sys, time
from simsmtp.world import World
from simsmtp.world.scenario import seed_message
world = World.seed_world()
net = world.start(directory=sys.argv[1]).start()
net.take_down("mail.anotherdomain.org")
steps = net.submit(seed_message(world), sender="alice@example.com",
                   recipients=["bob@anotherdomain.org"], user="alice", password="wonderland")
assert steps[-2].code == 250, steps
assert net.wait(net.idle, 10)
print("queued", flush=True)
time.sleep(120)
"""


@posix_only
def test_a_message_accepted_with_250_survives_a_killed_process(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "queued", child.communicate()[1]
    finally:
        child.send_signal(signal.SIGKILL)  # no clean stop: only what is on disk counts
        child.communicate(timeout=30)
    world = World.seed_world()
    with world.start(directory=tmp_path) as net:
        [load] = _kinds(world, "queue.load")
        assert len(load["messages"]) == 1
        net.fast_forward(600)  # the retry it was waiting for
        assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
        assert len(_kinds(world, "delivery.ok")) == 1
        assert len(net.queues["mail.example.com"]) == 0
