"""The world's virtual clock and its reproducible ids (queue ids, Message-IDs).

Time in a world does **not** run by itself: it moves only when something calls
:meth:`VirtualClock.advance`. That is what makes a notebook reproducible (the same Date
headers, Message-IDs and retry times on every run, so stored outputs validate with nbval)
and what lets a notebook fast-forward four hours of retries in a second.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

#: How many of the latest queue ids an IdGenerator remembers to never repeat them.
ISSUED_MEMORY = 10_000


class VirtualClock:
    """A clock that starts at ``epoch`` and moves only when advanced.

    Args:
        epoch: the start of virtual time; must carry a timezone.

    The elapsed time is one float attribute, replaced (never mutated) on each advance, so a
    reader in another thread always sees a consistent value. Advance it from one thread only
    (the network's loop thread or the notebook's), not from several at once.
    """

    def __init__(self, epoch: datetime) -> None:
        if epoch.tzinfo is None or epoch.utcoffset() is None:
            raise ValueError("the epoch needs a timezone, e.g. 2025-03-10T09:00:00Z")
        self._epoch = epoch
        self._base = epoch.timestamp()
        self._elapsed = 0.0
        self._rfc5322 = (-1.0, "")  # (elapsed, its RFC 5322 text) last made

    @property
    def epoch(self) -> datetime:
        """The start of virtual time."""
        return self._epoch

    @property
    def elapsed(self) -> float:
        """Seconds of virtual time since the epoch."""
        return self._elapsed

    def now(self) -> float:
        """The virtual time as POSIX seconds (like ``time.time()``)."""
        return self._base + self._elapsed

    def datetime(self) -> datetime:
        """The virtual time as an aware ``datetime`` in the epoch's timezone."""
        return self._epoch + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new :meth:`now`."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"time only moves forward: cannot advance by {seconds!r} s")
        self._elapsed = self._elapsed + float(seconds)
        return self.now()

    def advance_to(self, when: float) -> float:
        """Move time forward to POSIX time ``when`` (no-op if that is already past)."""
        return self.advance(max(0.0, when - self.now()))

    def rfc5322(self) -> str:
        """The current time as an RFC 5322 §3.3 date-time, ready for a ``Date:`` header.

        Made once per moment of virtual time (every ``Received:`` field asks for it, and
        the clock stands still between advances)."""
        elapsed, text = self._rfc5322
        if elapsed != self._elapsed:
            elapsed = self._elapsed
            text = format_datetime(self._epoch + timedelta(seconds=elapsed))
            self._rfc5322 = (elapsed, text)  # one attribute: a consistent pair
        return text

    def __repr__(self) -> str:
        return f"VirtualClock({self.datetime().isoformat()}, elapsed={self._elapsed:g}s)"


def _stream_seed(seed: int, purpose: str) -> int:
    # A stable hash (sha256), never Python's salted hash(): the same world gives the same ids
    # in every process.
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class IdGenerator:
    """Reproducible randomness for a world: one independent stream per purpose.

    Args:
        seed: the world's seed.
        clock: the world's clock (needed by :meth:`message_id`); defaults to a clock at the
            POSIX epoch.

    Drawing from one stream (say ``"queue_id"``) never changes another (say ``"mx"``), so
    adding a retry to a notebook does not reshuffle every later id.
    """

    def __init__(self, seed: int, clock: VirtualClock | None = None) -> None:
        self.seed = seed
        self.clock = clock or VirtualClock(datetime(1970, 1, 1, tzinfo=UTC))
        self._streams: dict[str, random.Random] = {}
        self._issued: set[str] = set()
        self._issued_order: deque[str] = deque()
        self._reserved: set[str] = set()

    def rng(self, purpose: str) -> random.Random:
        """The random stream for ``purpose`` (the same object on every call)."""
        stream = self._streams.get(purpose)
        if stream is None:
            stream = self._streams[purpose] = random.Random(_stream_seed(self.seed, purpose))
        return stream

    def queue_id(self) -> str:
        """A new Postfix-like queue id: 10 upper-case hex digits, unique in this generator.

        Unique among the last :data:`ISSUED_MEMORY` ids handed out and every reserved one
        (a world that runs all day keeps a bounded memory; an id that came back after that
        many others would be refused by the queue, which still holds every live id).
        """
        stream = self.rng("queue_id")
        while True:
            qid = f"{stream.getrandbits(40):010X}"
            if qid not in self._issued and qid not in self._reserved:
                self._issued.add(qid)
                self._issued_order.append(qid)
                if len(self._issued_order) > ISSUED_MEMORY:
                    self._issued.discard(self._issued_order.popleft())
                return qid

    def reserve(self, ids: Iterable[str]) -> None:
        """Never hand out these queue ids (those of messages already in a queue on disk)."""
        self._reserved.update(ids)

    def message_id(self, domain: str, queue_id: str | None = None) -> str:
        """A Postfix-style Message-ID ``<YYYYMMDDhhmmss.QUEUEID@domain>`` (RFC 5322 §3.6.4).

        Args:
            domain: the right-hand side, usually the host's name.
            queue_id: the message's queue id; a new one is drawn when omitted.
        """
        stamp = self.clock.datetime().astimezone(UTC).strftime("%Y%m%d%H%M%S")
        return f"<{stamp}.{queue_id or self.queue_id()}@{domain}>"

    def __repr__(self) -> str:
        return f"IdGenerator(seed={self.seed!r}, streams={sorted(self._streams)})"
