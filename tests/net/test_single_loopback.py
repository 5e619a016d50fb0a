"""Where only 127.0.0.1 can be bound (a Mac): hosts share it, yet keep their identities.

Every test here runs with the fallback forced (``SIMSMTP_LOOPBACK=single``), on any
machine. Each checks a decision that looks at the client's address and would go the other
way if the world took the shared transport address for the client's identity.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from simsmtp.net import addresses
from simsmtp.net.network import Network
from simsmtp.world import World

ALICE, BOB, MALLORY = "alice@example.com", "bob@anotherdomain.org", "mallory@evil.example"
MX, SUBMISSION, SPOOFER = "mail.anotherdomain.org", "mail.example.com", "mallory.evil.example"


@pytest.fixture(autouse=True)
def single_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(addresses.LOOPBACK_ENV, "single")


@pytest.fixture
def world() -> World:
    return World.seed_world()


@pytest.fixture
def net(world: World) -> Iterator[Network]:
    with world.start(storage="memory") as running:
        yield running


def _message(sender: str, subject: str = "hi") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, BOB, subject
    msg.set_content("Hello Bob.\n")
    return msg.as_bytes()


def _peers(net: Network, host: str, service: str) -> list[str]:
    """The client address of every connection ``host``'s ``service`` accepted (trace)."""
    return [str(e.data["peer"]).rpartition(":")[0]
            for e in net.world.trace.events(kind="tcp.connect", host=host)
            if e.data.get("service") == service and e.data.get("role") != "client"]


def test_every_host_binds_127_0_0_1_and_keeps_its_own_address(net: Network) -> None:
    ips = {name: info.ip for name, info in net.hosts.items()}
    assert len(set(ips.values())) == len(ips)
    assert "127.0.0.1" not in ips.values()
    assert {info.bind_ip for info in net.hosts.values()} == {"127.0.0.1"}
    assert net.address(MX, 25)[0] == "127.0.0.1"  # where a tool connects
    assert net.dns_address[0] == "127.0.0.1"
    assert net.describe()["hosts"][MX]["world_ip"] == ips[MX]
    # DNS answers the world's addresses, not the shared one.
    assert [r.to_text() for r in net.resolver().resolve(MX, "A")] == [ips[MX]]


def test_a_delivery_between_two_hosts_shows_the_senders_address(net: Network) -> None:
    steps = net.submit(_message(ALICE), sender=ALICE, recipients=BOB, user=ALICE,
                       password="wonderland")
    assert steps[-2].code == 250
    net.deliver()
    assert net.wait(lambda: len(net.mailbox(BOB)) == 1)
    sender_ip, mx_ip = net.hosts[SUBMISSION].ip, net.hosts[MX].ip
    received = net.mailbox(BOB)[0].get_all("Received")
    # Bob's MX saw mail.example.com, and mail.example.com saw Alice's mail client.
    assert f"(mail.example.com [{sender_ip}])" in received[0]
    assert "[127.0.0.1]" in received[1]
    assert _peers(net, MX, "smtp") == [sender_ip]
    assert _peers(net, SUBMISSION, "submission") == ["127.0.0.1"]
    smtp = [c for c in net.tap.connections() if c.service == "smtp"]
    assert [(c.client[0], c.server[0]) for c in smtp] == [(sender_ip, mx_ip)]
    # SPF of example.com ("mx -all") passes only for its MX's own address.
    assert "spf=pass" in net.mailbox(BOB)[0]["Authentication-Results"]


def test_the_eavesdropper_sees_only_the_connection_between_the_two_hosts(
        net: Network) -> None:
    eve = net.eavesdropper()
    net.submit(_message(ALICE), sender=ALICE, recipients=BOB, user=ALICE,
               password="wonderland")
    net.deliver()
    legs = eve.view().legs
    assert len(legs) == 1
    conn = legs[0].connection
    assert (net.name_of(conn.client[0]), net.name_of(conn.server[0])) == (SUBMISSION, MX)
    assert conn.service == "smtp"


def test_a_spoof_from_mallorys_host_fails_spf_and_dmarc_rejects_it(net: Network) -> None:
    with net.session(MX, 25, local_name=SPOOFER) as s:
        s.connect()
        assert s.local_address is not None
        assert s.local_address[0] == net.hosts[SPOOFER].ip
        s.ehlo()
        steps = s.transaction(ALICE, BOB, _message(ALICE, "urgent"))
    assert steps[-1].code == 550
    assert "5.7.1" in str(steps[-1].reply)
    assert net.mailbox(BOB) == []
    assert _peers(net, MX, "smtp") == [net.hosts[SPOOFER].ip]


def test_mallory_sending_as_herself_passes_spf_from_her_own_address(net: Network) -> None:
    with net.session(MX, 25, local_name=SPOOFER) as s:
        s.connect()
        s.ehlo()
        steps = s.transaction(MALLORY, BOB, _message(MALLORY))
    assert steps[-1].code == 250
    header = net.mailbox(BOB)[0]["Authentication-Results"]
    assert "spf=pass" in header


def test_an_outside_client_is_not_a_host_relay_and_limits(world: World) -> None:
    mx = world.host(MX)
    mx.roles.append("outbound")  # so it could relay
    mx.policy.relay_networks = ["127.0.0.2/32"]  # mail.example.com's address only
    mx.policy.max_per_client = 1
    with world.start(storage="memory") as net:
        assert net.hosts[SUBMISSION].ip == "127.0.0.2"
        with smtplib.SMTP(*net.address(MX, 25), timeout=10) as outside:
            outside.ehlo("swaks.example")
            outside.mail("someone@elsewhere.example")
            code, text = outside.rcpt("far@away.example")
            assert (code, text[:5]) == (454, b"4.7.1")  # Relay access denied
            # The outside client holds its one connection; the host still gets in.
            with net.session(MX, 25, local_name=SUBMISSION) as s:
                assert s.connect().code == 220
                s.ehlo()
                assert s.mail(ALICE).code == 250
                assert s.rcpt("far@away.example").code == 250  # in relay_networks
            # A second outside connection is over the per-client cap.
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP(*net.address(MX, 25), timeout=10)
            assert refused.value.smtp_code == 421
        assert _peers(net, MX, "smtp")[:2] == ["127.0.0.1", "127.0.0.2"]


def test_the_stepper_finds_its_servers_states_through_the_shared_address(
        net: Network) -> None:
    with net.session(MX, 25) as s:
        s.connect()
        step = s.ehlo()
        assert step.code == 250
        assert s.server_state is not None
        assert s.local_address is not None
        assert s.local_address[0] == net.hosts[SUBMISSION].ip


def test_an_attacker_on_the_path_relays_from_the_senders_identity(net: Network) -> None:
    mitm = net.strip_starttls()
    try:
        net.submit(_message(ALICE), sender=ALICE, recipients=BOB, user=ALICE,
                   password="wonderland")
        net.deliver()
        assert net.wait(lambda: len(net.mailbox(BOB)) == 1)
        pairs = mitm.pairs()
        assert len(pairs) == 1 and pairs[0][1] is not None
    finally:
        mitm.stop()
    sender_ip = net.hosts[SUBMISSION].ip
    assert _peers(net, MX, "smtp") == [sender_ip]
    assert mitm.relays[0].client[0] == sender_ip
    assert "spf=pass" in net.mailbox(BOB)[0]["Authentication-Results"]


# ---------------------------------------------------------------- the socket layer alone

def test_a_listener_sees_the_registered_host_and_caps_clients_by_identity() -> None:
    from simsmtp.net.addresses import AddressBook
    from simsmtp.net.channel import open_connection
    from simsmtp.net.listener import create_listener
    from simsmtp.net.tap import Tap
    from tests.net.test_client_channel import Lines
    from tests.net.test_listener import LineConn

    book = AddressBook()
    book.host("127.0.0.2", "127.0.0.1")
    book.host("127.0.0.3", "127.0.0.1")
    tap = Tap()
    cores: list[LineConn] = []

    def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> LineConn:
        cores.append(LineConn(peer=peer, local=local))
        return cores[-1]

    async def main() -> None:
        listener = await create_listener("127.0.0.1", 0, factory=factory, tap=tap,
                                         name="mx", service="smtp", max_per_client=1,
                                         on_refused=lambda peer: b"421 busy\r\n",
                                         identify=book.identify)
        book.listening(listener.address, "127.0.0.3")
        loop = asyncio.get_running_loop()
        outside = socket.create_connection(listener.address)  # swaks, telnet
        outside.setblocking(False)
        try:
            assert await loop.sock_recv(outside, 100) == b"+OK ready\r\n"
            channel = await open_connection(*listener.address, Lines(), local_host="127.0.0.1",
                                            identity=("127.0.0.2", book), timeout=5)
            assert await channel.next_event() == b"+OK ready"
            assert channel.local[0] == "127.0.0.2" and channel.peer[0] == "127.0.0.3"
            second = socket.create_connection(listener.address)  # over the outside's cap
            second.setblocking(False)
            assert await loop.sock_recv(second, 100) == b"421 busy\r\n"
            second.close()
            await channel.close()
        finally:
            outside.close()
            await listener.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert [core.peer[0] for core in cores] == ["127.0.0.1", "127.0.0.2"]
    assert {core.local[0] for core in cores} == {"127.0.0.3"}
    recorded = [(c.client[0], c.server[0]) for c in tap.connections()]
    assert recorded == [("127.0.0.1", "127.0.0.3"), ("127.0.0.2", "127.0.0.3"),
                        ("127.0.0.1", "127.0.0.3")]
    assert book.identify(("127.0.0.1", cores[1].peer[1])) == ("127.0.0.1", cores[1].peer[1])
