"""A world that runs all day keeps a bounded memory: what each message and each connection
leaves behind is bounded (checked by structure: counts and sizes, never by timing)."""

from __future__ import annotations

import gc
import smtplib

from simsmtp.net.listener import ServerProtocol
from simsmtp.net.network import Network
from simsmtp.protocol.server import ServerConnection
from simsmtp.protocol.session import Envelope, Session
from simsmtp.world import World

MX = "mail.anotherdomain.org"
SESSIONS = 25


def _live(*types: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, types))


def _all_closed(net: Network) -> bool:
    return all(c.closed_at is not None for c in net.tap.connections() if c.transport == "tcp")


def _send(net: Network, sessions: int) -> None:
    for i in range(sessions):
        with smtplib.SMTP(*net.address(MX, 25), local_hostname="client.test",
                          timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@anotherdomain.org"],
                            f"Subject: {i}\r\n\r\nhello\r\n".encode())
            client.noop()
    assert net.wait(lambda: _all_closed(net))


def test_per_connection_objects_are_released_after_close(net: Network) -> None:
    _send(net, 2)  # warm: whatever is made once per world is made now
    kinds = (ServerProtocol, ServerConnection, Session, Envelope)
    before = _live(*kinds)
    _send(net, SESSIONS)
    # none of the 25 sessions is still held, once the loop has run the last close's
    # callbacks (the client may see its close before the server's side has finished)
    assert net.wait(lambda: _live(*kinds) <= before), (_live(*kinds), before)


def test_a_running_world_keeps_its_trace_and_capture_within_bounds(world: World) -> None:
    world.trace.window = 40
    with world.start(storage="memory") as net:
        net.tap.max_bytes = 2000
        _send(net, SESSIONS)
        assert len(world.trace.events()) == 40 and len(world.trace) > 40 * 5
        assert world.trace.dropped == len(world.trace) - 40
        assert net.tap.kept_bytes <= 2000 and net.tap.truncated
        assert sum(len(s.data) for s in net.tap.segments()) == net.tap.kept_bytes
        assert len(net.tap.connections()) < SESSIONS  # closed ones with no bytes left go
        assert len(net.store.keys("bob@anotherdomain.org")) == SESSIONS  # nothing lost
