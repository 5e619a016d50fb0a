"""The virtual clock and the seeded id generator."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from simsmtp.world import IdGenerator, VirtualClock

EPOCH = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def test_clock_starts_at_epoch_and_does_not_run_by_itself() -> None:
    clock = VirtualClock(EPOCH)
    assert clock.now() == EPOCH.timestamp()
    assert clock.now() == clock.now()
    assert clock.elapsed == 0.0
    assert clock.datetime() == EPOCH


def test_advance_moves_every_view_of_time() -> None:
    clock = VirtualClock(EPOCH)
    assert clock.advance(90) == EPOCH.timestamp() + 90
    clock.advance(0.5)
    assert clock.elapsed == 90.5
    assert clock.datetime() == EPOCH + timedelta(seconds=90.5)
    assert clock.rfc5322() == "Mon, 10 Mar 2025 09:01:30 +0000"


def test_the_date_text_follows_every_advance() -> None:
    clock = VirtualClock(EPOCH)
    assert clock.rfc5322() == clock.rfc5322() == "Mon, 10 Mar 2025 09:00:00 +0000"
    clock.advance(1)
    assert clock.rfc5322() == "Mon, 10 Mar 2025 09:00:01 +0000"
    clock.advance(3600 * 24)
    assert clock.rfc5322() == "Tue, 11 Mar 2025 09:00:01 +0000"


def test_advance_to_only_moves_forward() -> None:
    clock = VirtualClock(EPOCH)
    clock.advance_to(EPOCH.timestamp() + 3600)
    assert clock.elapsed == 3600
    clock.advance_to(EPOCH.timestamp())  # in the past: no change
    assert clock.elapsed == 3600


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_time_never_goes_backwards(seconds: float) -> None:
    with pytest.raises(ValueError, match="forward"):
        VirtualClock(EPOCH).advance(seconds)


def test_epoch_needs_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        VirtualClock(datetime(2025, 3, 10, 9, 0))


def test_date_header_keeps_the_epoch_offset() -> None:
    clock = VirtualClock(datetime(2025, 3, 10, 10, 0, tzinfo=timezone(timedelta(hours=1))))
    assert clock.rfc5322() == "Mon, 10 Mar 2025 10:00:00 +0100"


def test_queue_ids_are_postfix_like_unique_and_reproducible() -> None:
    a, b = IdGenerator(1), IdGenerator(1)
    ids = [a.queue_id() for _ in range(1000)]
    assert ids == [b.queue_id() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9A-F]{10}", q) for q in ids)
    assert len(set(ids)) == 1000
    assert ids[:5] != [IdGenerator(2).queue_id() for _ in range(5)]


def test_the_memory_of_issued_queue_ids_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from simsmtp.world import clock

    monkeypatch.setattr(clock, "ISSUED_MEMORY", 50)
    ids = IdGenerator(1)
    reserved = IdGenerator(1)
    first = [reserved.queue_id() for _ in range(3)]
    ids.reserve(first)  # on disk from an earlier run: never handed out again
    drawn = [ids.queue_id() for _ in range(1000)]
    assert not set(first) & set(drawn)
    assert len(set(drawn[-50:])) == 50
    assert len(ids._issued) <= 50 and len(ids._issued_order) <= 50


def test_streams_are_stable_across_processes() -> None:
    # sha256-derived seeds, not hash(): these values hold under any PYTHONHASHSEED.
    ids = IdGenerator(1)
    assert ids.queue_id() == "73F5AB00CF"
    assert ids.rng("mx").random() == IdGenerator(1).rng("mx").random()


def test_streams_are_independent() -> None:
    plain, busy = IdGenerator(5), IdGenerator(5)
    for _ in range(10):
        busy.rng("mx").random()
    assert busy.queue_id() == plain.queue_id()
    assert busy.rng("mx") is busy.rng("mx")
    assert plain.rng("mx").random() != plain.rng("other").random()


def test_message_id_uses_clock_and_queue_id() -> None:
    clock = VirtualClock(EPOCH)
    ids = IdGenerator(1, clock)
    clock.advance(61)
    assert ids.message_id("mail.example.com", "ABCDEF0123") == (
        "<20250310090101.ABCDEF0123@mail.example.com>")
    drawn = ids.message_id("mail.example.com")
    assert re.fullmatch(r"<20250310090101\.[0-9A-F]{10}@mail\.example\.com>", drawn)
