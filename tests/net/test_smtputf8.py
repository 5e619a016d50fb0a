"""International addresses (RFC 6531): the seed MX keeps its Postfix's EHLO list (no
SMTPUTF8), submission offers SMTPUTF8, a world turns it on per host, and a message that
needs it bounces with 5.6.7 when the next hop does not offer it (RFC 6531 §3.2)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.model import User

SUBMISSION = "mail.example.com"
MX = "mail.anotherdomain.org"
JURGEN = "jürgen@anotherdomain.org"


def _world(mx_utf8: bool) -> World:
    world = World.seed_world()
    world.domains["anotherdomain.org"].users["jürgen"] = User(JURGEN, "Jürgen", "geheim")
    world.host(MX).policy.smtputf8 = mx_utf8
    return world


@pytest.fixture(params=[False, True], ids=["seed-mx", "mx-with-smtputf8"])
def net(request: pytest.FixtureRequest) -> Iterator[Network]:
    with _world(request.param).start(storage="memory") as running:
        yield running


def _ehlo(net: Network, host: str, port: int) -> smtplib.SMTP:
    client = smtplib.SMTP(*net.address(host, port), local_hostname="alice-laptop",
                          timeout=10)
    client.ehlo()
    if port == 587:
        client.starttls(context=ssl.create_default_context(cafile=str(net.ca_file)))
        client.ehlo()
    return client


def _send_to_jurgen(net: Network) -> str:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = f"Jürgen <{JURGEN}>"
    msg["Subject"] = "Grüße"
    msg.set_content("Hallo Jürgen!\n")
    with _ehlo(net, SUBMISSION, 587) as client:
        client.login("alice@example.com", "wonderland")
        # smtplib sends MAIL FROM:<...> SMTPUTF8 only to a server that offers it
        assert client.send_message(msg) == {}
    net.deliver()
    assert net.wait(net.idle, 10)
    return msg["Subject"]


def test_the_seed_mx_does_not_offer_smtputf8_submission_does() -> None:
    with World.seed_world().start(storage="memory") as net:
        with _ehlo(net, MX, 25) as mx:
            assert not mx.has_extn("smtputf8")  # the seed transcript, line for line
        with _ehlo(net, SUBMISSION, 587) as sub:
            assert sub.has_extn("smtputf8")  # RFC 6531 §3.1


def test_a_world_turns_smtputf8_on_for_a_host() -> None:
    with _world(True).start(storage="memory") as net, _ehlo(net, MX, 25) as mx:
        assert mx.has_extn("smtputf8")


def test_an_international_address_is_delivered_or_bounced_as_rfc_6531_says(
        net: Network) -> None:
    subject = _send_to_jurgen(net)
    mx_has_it = net.world.host(MX).policy.smtputf8
    stored = [m for m in net.store.messages(JURGEN)]
    bounces = [e for e in net.world.trace.events() if e.kind == "delivery.bounce"]
    if mx_has_it:
        assert [m["Subject"] for m in stored] == [subject] and bounces == []
        received = [e for e in net.world.trace.events() if e.kind == "smtp.command"
                    and e.host == MX and "MAIL FROM" in e.data["line"]]
        assert received[-1].data["line"].endswith(" SMTPUTF8")
    else:
        assert stored == []
        (bounce,) = bounces
        assert bounce.data["recipient"] == JURGEN
        assert "5.6.7" in str(bounce.data) and "SMTPUTF8" in str(bounce.data)
        # Alice gets the DSN: RFC 3464 with the status 5.6.7
        dsns = [m for m in net.store.messages("alice@example.com")
                if "Undelivered" in str(m["Subject"]) or "Delivery" in str(m["Subject"])]
        assert dsns and "5.6.7" in dsns[-1].as_string()
