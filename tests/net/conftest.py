"""Fixtures of the network tests: the seed world, and that world running (memory storage).
A test module may define its own ``world`` or ``net`` instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World


@pytest.fixture
def world() -> World:
    return World.seed_world()


@pytest.fixture
def net(world: World) -> Iterator[Network]:
    with world.start(storage="memory") as running:
        yield running
