"""Fixtures of the instructor tests: the shipped example lab (examples/lab_world.toml), a
world that is not the seed and has three outbound hosts, running with memory storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab_world.toml"


@pytest.fixture
def lab() -> World:
    return World.load(LAB)


@pytest.fixture
def net(lab: World) -> Iterator[Network]:
    with lab.start(storage="memory") as running:
        yield running


@pytest.fixture
def seed_net() -> Iterator[Network]:
    with World.seed_world().start(storage="memory") as running:
        yield running
