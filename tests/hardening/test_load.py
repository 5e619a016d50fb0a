"""Load with faults: 200 concurrent clients x 20 messages against the seed MX.

A tenth of the clients vanish at a random point (seeded): before MAIL, after MAIL, in
the middle of the content, or right after the end-of-data terminator without waiting for
the reply, by a clean close or a TCP reset. Every message that got its ``250`` must be in
a mailbox exactly once (each carries a unique Message-ID), no message is stored twice,
nothing is stored that was not sent whole, and the server answers a new client after.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
from collections import Counter
from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network

from .conftest import MX, codes, hardening_world, send_recv, smtp

CLIENTS = 200
MESSAGES = 20
PHASES = ("before-mail", "after-mail", "mid-data", "after-terminator")
MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE)


@pytest.fixture(scope="module")
def loaded() -> Iterator[Network]:
    # Caps above the load (the defaults, 100 in total and 50 per client, would refuse
    # most of the 200 clients with 421, which test_dos.py checks); SPF/DKIM/DMARC off,
    # as this measures the SMTP path (the checks cost ~20 ms a message, see SECURITY.md).
    world = hardening_world(mx={"max_connections": 400, "max_per_client": 400,
                                "mailauth": "off"})
    with world.start(storage="memory", capture=False) as running:
        yield running


async def _reply(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


async def _client(address: tuple[str, int], n: int, fault: tuple[int, str, bool] | None,
                  acked: list[str], sent: list[str]) -> None:
    reader, writer = await asyncio.open_connection(*address)
    try:
        assert (await _reply(reader)).startswith(b"220")
        writer.write(b"EHLO load%d.hardening.test\r\n" % n)
        assert (await _reply(reader)).startswith(b"250")
        for j in range(MESSAGES):
            mid = f"{n}.{j}.{random.getrandbits(32):08x}@load.test"
            rcpt = f"user{(n + j) % 100:03d}@anotherdomain.org"
            content = (f"From: load{n}@relay.example\r\nTo: {rcpt}\r\nMessage-ID: <{mid}>\r\n"
                       f"Subject: load {n} {j}\r\n\r\n" + "x" * 70 + "\r\n.\r\n").encode()
            phase = fault[1] if fault is not None and fault[0] == j else None
            if phase == "before-mail":
                return _vanish(writer, fault)
            writer.write(f"MAIL FROM:<load{n}@relay.example>\r\nRCPT TO:<{rcpt}>\r\n".encode())
            if phase == "after-mail":
                await writer.drain()
                return _vanish(writer, fault)
            writer.write(b"DATA\r\n")
            for _ in range(3):
                assert (await _reply(reader))[:1] in (b"2", b"3")
            if phase == "mid-data":
                writer.write(content[: len(content) // 2])
                await writer.drain()
                return _vanish(writer, fault)
            writer.write(content)
            sent.append(mid)
            if phase == "after-terminator":
                await writer.drain()
                return _vanish(writer, fault)
            if (await _reply(reader)).startswith(b"250"):
                acked.append(mid)
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    finally:
        writer.close()


def _vanish(writer: asyncio.StreamWriter, fault: tuple[int, str, bool] | None) -> None:
    assert fault is not None
    if fault[2]:  # a TCP reset (SO_LINGER 0), as a crashed client
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def _load(address: tuple[str, int]) -> tuple[list[str], list[str]]:
    rng = random.Random(20250310)
    faulty = set(rng.sample(range(CLIENTS), CLIENTS // 10))
    faults = {n: (rng.randrange(MESSAGES), rng.choice(PHASES), rng.random() < 0.5)
              for n in sorted(faulty)}
    acked: list[str] = []
    sent: list[str] = []
    await asyncio.wait_for(asyncio.gather(*(
        _client(address, n, faults.get(n), acked, sent) for n in range(CLIENTS))), 120)
    return acked, sent


@pytest.mark.slow
def test_load_200_clients_with_faults_lose_and_duplicate_nothing(loaded: Network) -> None:
    acked, sent = asyncio.run(_load(loaded.address(MX)))
    assert len(acked) >= CLIENTS * MESSAGES * 9 // 10 - CLIENTS // 10 * MESSAGES
    store = loaded.store
    found: Counter[str] = Counter()
    for i in range(100):
        address = f"user{i:03d}@anotherdomain.org"
        for key in store.keys(address):
            match = MESSAGE_ID.search(store.get_bytes(address, key))
            assert match is not None
            found[match.group(1).decode()] += 1
    assert all(found[mid] == 1 for mid in acked)  # every 250 is stored exactly once
    assert max(found.values()) == 1  # nothing twice
    assert set(found) <= set(sent)  # nothing that was not sent whole
    with smtp(loaded) as wire:  # and the server still answers
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]
