"""The one chronological record of everything that happens in a world.

Every layer appends structured events here: DNS query and answer, TCP connect, SMTP
command and reply (with the states before and after), TLS handshake, delivery, retry,
bounce. Widgets, the CLI transcript and the tests all read the same trace.

Appending is safe from several threads (a list append under a lock); readers take a
snapshot with :meth:`Trace.events` or iterate from an index with :meth:`Trace.since`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Field names whose values are never shown in text renderings (passwords, AUTH payloads).
SECRET_FIELDS = frozenset({"password", "secret", "credentials", "auth_response"})


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened.

    Attributes:
        seq: position in the trace, from 0.
        kind: what happened, dotted (``dns.query``, ``smtp.command``, ``smtp.reply``,
            ``tcp.connect``, ``tls.handshake``, ``delivery.ok``, ``delivery.retry``,
            ``delivery.bounce`` …).
        host: the host name of the world that recorded it ("" for the world itself).
        time: wall-clock seconds (``time.monotonic``) when it was recorded.
        clock: the world's virtual clock (seconds since the world epoch) at that moment.
        data: the event's fields.
    """

    seq: int
    kind: str
    host: str
    time: float
    clock: float
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def text(self) -> str:
        """A one-line rendering with secrets masked."""
        fields = " ".join(
            f"{k}={'***' if k in SECRET_FIELDS else v!r}" for k, v in self.data.items()
        )
        return f"[{self.seq}] {self.host or '-'} {self.kind} {fields}".rstrip()


class Trace:
    """An append-only, thread-safe list of :class:`TraceEvent`."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._events: list[TraceEvent] = []
        self._lock = threading.Lock()
        self._clock = clock or (lambda: 0.0)
        self._listeners: list[Callable[[TraceEvent], None]] = []
        self.enabled = True

    def record(self, kind: str, host: str = "", **data: Any) -> TraceEvent | None:
        """Append an event and return it (``None`` when the trace is switched off)."""
        if not self.enabled:
            return None
        with self._lock:
            event = TraceEvent(len(self._events), kind, host, time.monotonic(),
                               self._clock(), data)
            self._events.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
        return event

    def subscribe(self, listener: Callable[[TraceEvent], None]) -> None:
        """Call ``listener(event)`` for every event recorded from now on."""
        with self._lock:
            self._listeners.append(listener)

    def events(self, kind: str | None = None, host: str | None = None) -> list[TraceEvent]:
        """A snapshot, optionally filtered by kind prefix and host."""
        with self._lock:
            snapshot = list(self._events)
        return [e for e in snapshot
                if (kind is None or e.kind == kind or e.kind.startswith(kind + "."))
                and (host is None or e.host == host)]

    def since(self, index: int) -> Iterator[TraceEvent]:
        """Events from position ``index`` on (for widgets that follow a live world)."""
        with self._lock:
            snapshot = self._events[index:]
        return iter(snapshot)

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
