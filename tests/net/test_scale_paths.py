"""What keeps a big world cheap: O(1) change checks, O(labels) zone lookup, one read buffer."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import dns.name
import pytest

from simsmtp.net.network import Network
from simsmtp.net.transport import READ_BUFFER, read_buffer
from simsmtp.world.model import Domain, Host, MXRecord, Record, User, World
from simsmtp.world.zone import build_zones

DOMAINS = 30


def _big_world() -> World:
    world = World(name="many", seed=3, epoch=datetime(2025, 3, 10, 9, tzinfo=UTC))
    for i in range(DOMAINS):
        name = f"d{i:02d}.test"
        world.domains[name] = Domain(name, mx=[MXRecord(10, f"mx.{name}")],
                                     users={"u": User(f"u@{name}")})
        world.hosts[f"mx.{name}"] = Host(f"mx.{name}", name, roles=["mx"])
    world.check()
    return world


@pytest.fixture
def net() -> Iterator[Network]:
    with _big_world().start(storage="memory", capture=False) as running:
        yield running


def _mx(net: Network, domain: str) -> list[str]:
    answer = net.resolver().resolve(domain, "MX")
    return sorted(r.to_text() for r in answer)


def test_the_next_query_sees_an_in_place_edit_of_an_mx_list(net: Network) -> None:
    world = net.world
    assert _mx(net, "d07.test") == ["10 mx.d07.test."]
    zones = net.dns.zone_data() if net.dns else None
    world.domains["d07.test"].mx.append(MXRecord(20, "mx.d08.test"))  # in place
    assert _mx(net, "d07.test") == ["10 mx.d07.test.", "20 mx.d08.test."]
    world.domains["d07.test"].mx[0] = MXRecord(5, "mx.d07.test")
    assert _mx(net, "d07.test") == ["20 mx.d08.test.", "5 mx.d07.test."]
    assert net.dns is not None and net.dns.zone_data() is not zones


def test_the_next_query_sees_edits_of_a_plain_list_a_notebook_assigned(net: Network) -> None:
    world = net.world
    plain = [MXRecord(30, "mx.d01.test")]
    world.domains["d02.test"].mx = plain
    assert _mx(net, "d02.test") == ["30 mx.d01.test."]
    plain.append(MXRecord(40, "mx.d03.test"))  # the notebook's own list, edited in place
    assert _mx(net, "d02.test") == ["30 mx.d01.test.", "40 mx.d03.test."]
    extra: list[Record] = []
    world.records = extra
    extra.append(Record("www.d02.test", "A", "127.0.0.99"))
    answer = net.resolver().resolve("www.d02.test", "A")
    assert [r.to_text() for r in answer] == ["127.0.0.99"]


def test_zone_data_is_kept_while_nothing_changes(net: Network) -> None:
    assert net.dns is not None
    first = net.dns.zone_data()
    _mx(net, "d00.test")
    assert net.dns.zone_data() is first
    net.world.domains["d00.test"].spf = "v=spf1 -all"
    assert net.dns.zone_data() is not first


def test_zone_of_walks_labels_deepest_first_and_ignores_case() -> None:
    records = [Record(f"z{i}.test", "A", "127.0.0.1") for i in range(200)]
    records.append(Record("deep.z5.test", "SOA",
                          "ns.test. h.test. 1 3600 600 86400 300"))
    zone = build_zones(records)
    assert len(zone.apexes) == 201
    name = dns.name.from_text
    assert zone.zone_of(name("A.B.Deep.Z5.TEST.")) == name("deep.z5.test.")
    assert str(zone.zone_of(name("x.Z5.test."))) == "z5.test."
    assert zone.zone_of(name("z5.test.")) == name("z5.test.")
    assert zone.zone_of(name("nowhere.example.")) is None
    wide = build_zones([Record("a.b.test", "A", "127.0.0.1")], zones=["test"])
    assert wide.zone_of(name("other.TEST.")) == name("test.")
    assert wide.apexes == [name("test.")]  # a.b.test is inside it: no zone guessed


def test_every_connection_of_a_world_reads_into_one_buffer(net: Network) -> None:
    socks = [socket.create_connection(net.address(f"mx.d{i:02d}.test", 25), timeout=5)
             for i in range(3)]
    try:
        for sock in socks:
            assert sock.recv(512).startswith(b"220 ")  # the server read loop is running

        async def buffers() -> tuple[set[int], int, int]:
            protocols = [p for listener in net.servers.listeners.values()
                         for p in listener._protocols]
            views = {id(p.get_buffer(-1)) for p in protocols}
            return views, len(protocols), len(read_buffer())

        assert net.loop is not None
        views, connections, size = net.loop.run(buffers())
        assert connections == 3 and len(views) == 1 and size == READ_BUFFER
    finally:
        for sock in socks:
            sock.close()


def test_a_switched_off_trace_records_nothing_but_keeps_the_tls_flag() -> None:
    world = World.seed_world()
    with world.start(storage="memory", capture=False) as net:
        ip, port = net.address("mail.anotherdomain.org", 25)
        context = ssl.create_default_context(cafile=str(net.ca_file))
        with smtplib.SMTP(ip, port, local_hostname="client.test") as client:
            world.trace.enabled = False
            client.starttls(context=context)
            world.trace.enabled = True
            client.ehlo("client.test")
        commands = world.trace.events("smtp.command")
    assert [e["line"] for e in commands] == ["ehlo client.test", "QUIT"]  # smtplib: lower
    assert [e["tls"] for e in commands] == [True, True]  # TLS began while it was off
