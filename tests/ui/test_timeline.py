"""The retry timeline: greylisting on the virtual clock, read from delivery.* events."""

from __future__ import annotations

import re

import pytest

from simsmtp.trace import Trace
from simsmtp.ui.timeline import retry_points, retry_text, retry_timeline
from simsmtp.world import RetrySchedule, World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE

GREYLISTED = "450 4.7.1 <bob@anotherdomain.org>: Recipient address rejected: Greylisted"


@pytest.fixture(scope="module")
def greylisted() -> World:
    """Bob's server greylists once; the retry 5 virtual minutes later is accepted."""
    world = World.seed_world()
    world.faults.add("mail.anotherdomain.org", "RCPT", GREYLISTED, match="bob@*", times=1)
    with world.start(storage="memory") as net:
        net.submit(seed_message(world), recipients=["bob@anotherdomain.org",
                                                    "nobody@anotherdomain.org"], **ALICE)
        assert net.wait(net.idle, 10)
        net.fast_forward(600)
    return world


def test_points_follow_the_attempts(greylisted: World) -> None:
    bob = [(p.clock, p.kind, p.label) for p in retry_points(greylisted)
           if p.recipient == "bob@anotherdomain.org"]
    assert bob == [(0.0, "attempt", "mail.anotherdomain.org"),
                   (0.0, "deferred", "450 4.7.1"),
                   (300.0, "attempt", "mail.anotherdomain.org"),
                   (300.0, "delivered", "250 2.0.0")]
    deferred = next(p for p in retry_points(greylisted) if p.kind == "deferred")
    assert deferred.retry_in == 300.0   # Postfix's minimal_backoff_time
    nobody = [p.kind for p in retry_points(greylisted)
              if p.recipient == "nobody@anotherdomain.org"]
    assert nobody == ["attempt", "bounced"]


def test_the_text_uses_world_time(greylisted: World) -> None:
    text = retry_text(greylisted)
    assert "09:00:00      bob@anotherdomain.org     deferred" in text
    assert re.search(r"deferred\s+300 s\s+450", text)   # the next try, in its own column
    assert max(len(line) for line in text.splitlines()) <= 110  # no line wraps
    assert re.search(r"09:05:00 +bob@anotherdomain.org +delivered +250 2.0.0 Ok: queued as",
                     text)


def test_the_plot_has_a_row_per_recipient_and_the_retry_arrow(greylisted: World) -> None:
    fig = retry_timeline(greylisted, schedule=RetrySchedule())
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == 2 and rows[0].startswith("bob@anotherdomain.org")
    texts = [t.get_text() for t in ax.texts]
    assert "retry in 5 min" in texts
    assert "450 4.7.1" in texts and "250 2.0.0" in texts and "550 5.1.1" in texts
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "schedule if every try failed" in legend and "deferred" in legend


def test_since_and_an_empty_trace() -> None:
    assert retry_points(Trace()) == []
    fig = retry_timeline(Trace())
    assert "no delivery attempts" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_connect_failures_belong_to_the_last_attempt() -> None:
    t = Trace()
    t.record("delivery.attempt", "mail.example.com", queue_id="Q1", mx="mx1", ip="127.0.0.9",
             recipients=["a@x.example", "b@x.example"])
    t.record("delivery.connect_failed", "mail.example.com", mx="mx1", reason="refused")
    kinds = [(p.recipient, p.kind) for p in retry_points(t)]
    assert kinds == [("a@x.example", "attempt"), ("b@x.example", "attempt"),
                     ("a@x.example", "refused"), ("b@x.example", "refused")]
    assert retry_points(t, since=1) == []   # a failure whose attempt is not in view
