"""Fixtures for the widget and plot tests: real worlds, driven without a browser."""

from __future__ import annotations

import os
import poplib
from collections.abc import Iterator

import pytest

from simsmtp.world import Host, World
from simsmtp.world.scenario import seed_message

os.environ.setdefault("MPLBACKEND", "Agg")  # no display needed (set before matplotlib loads)

ALICE = {"sender": "alice@example.com", "user": "alice@example.com", "password": "wonderland"}


def play_journey(world: World) -> None:
    """Alice submits the seed message, the relay delivers it, Bob fetches it over POP3."""
    with world.start(storage="maildir") as net:
        net.submit(seed_message(world), recipients=["bob@anotherdomain.org"], **ALICE)
        assert net.wait(net.idle, 10)
        bob = poplib.POP3(*net.address("mail.anotherdomain.org", 110), timeout=5)
        bob.stls(context=net.ca.client_context())
        bob.user("bob")
        bob.pass_("builder")
        bob.retr(1)
        bob.quit()


@pytest.fixture(scope="module")
def journey_world() -> World:
    """A seed world after the whole journey (stopped; its trace stays)."""
    world = World.seed_world()
    play_journey(world)
    return world


def with_backup(world: World) -> World:
    """Add backup.anotherdomain.org, an mx host no MX record names yet."""
    world.hosts["backup.anotherdomain.org"] = Host("backup.anotherdomain.org",
                                                   "anotherdomain.org", roles=["mx"])
    world.check()
    return world


@pytest.fixture
def backup_net() -> Iterator[object]:
    """A running seed world with a spare mx host (stopped after the test)."""
    world = with_backup(World.seed_world())
    with world.start(storage="memory") as net:
        yield net
