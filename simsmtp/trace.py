"""The one chronological record of everything that happens in a world.

Every layer appends structured events here: DNS query and answer, TCP connect, SMTP
command and reply (with the states before and after), TLS handshake, delivery, retry,
bounce. Widgets, the CLI transcript and the tests all read the same trace.

Appending is safe from several threads (an append under a lock); readers take a
snapshot with :meth:`Trace.events` or iterate from a position with :meth:`Trace.since`.

The trace keeps a bounded *window* in memory: the newest :attr:`Trace.window` events
(:data:`DEFAULT_WINDOW` unless told otherwise, enough for every notebook many times over).
Older events leave the window (:attr:`Trace.dropped` counts them, and the views say so), so a
world that runs all day keeps a flat memory. Where the whole history is wanted it goes to
disk: ``Trace(history="trace.jsonl")`` (or :meth:`Trace.keep_history`) appends every event
as one JSON line, which :func:`read_history` (or :meth:`Trace.history`) reads back and
filters like :meth:`Trace.events`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: Field names whose values are never shown in text renderings (passwords, AUTH payloads).
SECRET_FIELDS = frozenset({"password", "secret", "credentials", "auth_response"})

#: Events a trace keeps in memory by default (a notebook's world records a few thousand;
#: an event costs about 600 bytes, so the window stays near 30 MB at most).
DEFAULT_WINDOW = 50_000
#: Events kept in memory by ``python -m simsmtp up`` (a world served all day).
SERVE_WINDOW = 20_000
#: Events written to the history file between two flushes (and at every close).
_HISTORY_FLUSH_EVERY = 256


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
    """A thread-safe, chronological record of :class:`TraceEvent`, bounded in memory.

    Args:
        clock: the world's virtual clock (seconds since its epoch) for :attr:`TraceEvent.clock`.
        window: how many of the newest events to keep in memory (``None``: all of them,
            for a short script that wants everything); older ones are counted in
            :attr:`dropped`.
        history: a file to append every event to as JSON Lines (the whole history, read back
            with :func:`read_history`); ``None`` for none.

    Positions are sequence numbers: ``len(trace)`` is the number of events recorded so far
    (the ``seq`` the next event gets), also after older ones left the window, so
    ``mark = len(trace)`` then :meth:`since` ``(mark)`` finds what happened after the mark.
    """

    def __init__(self, clock: Callable[[], float] | None = None, *,
                 window: int | None = DEFAULT_WINDOW,
                 history: str | Path | None = None) -> None:
        _check_window(window)
        self._events: deque[TraceEvent] = deque(maxlen=window)
        self._next = 0
        self._lock = threading.Lock()
        self._clock = clock or (lambda: 0.0)
        self._listeners: list[Callable[[TraceEvent], None]] = []
        self._history: IO[str] | None = None
        self._history_path: Path | None = None
        self._unflushed = 0
        self.enabled = True
        if history is not None:
            self.keep_history(history)

    # -- recording -------------------------------------------------------------------
    def record(self, kind: str, host: str = "", **data: Any) -> TraceEvent | None:
        """Append an event and return it (``None`` when the trace is switched off)."""
        if not self.enabled:
            return None
        with self._lock:
            event = TraceEvent(self._next, kind, host, time.monotonic(), self._clock(), data)
            self._next += 1
            self._events.append(event)
            if self._history is not None:
                self._write_history(event)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
        return event

    def subscribe(self, listener: Callable[[TraceEvent], None]) -> None:
        """Call ``listener(event)`` for every event recorded from now on."""
        with self._lock:
            self._listeners.append(listener)

    # -- the window ------------------------------------------------------------------
    @property
    def window(self) -> int | None:
        """How many events are kept in memory at most (``None``: no bound).

        Setting it keeps the newest events that fit; the rest count as :attr:`dropped`.
        """
        return self._events.maxlen

    @window.setter
    def window(self, size: int | None) -> None:
        _check_window(size)
        with self._lock:
            self._events = deque(self._events, maxlen=size)

    @property
    def dropped(self) -> int:
        """How many of the events recorded so far have left the in-memory window."""
        with self._lock:
            return self._next - len(self._events)

    @property
    def first_seq(self) -> int:
        """The ``seq`` of the oldest event still in memory (``len(trace)`` when empty)."""
        with self._lock:
            return self._events[0].seq if self._events else self._next

    def left_out(self, since: int = 0) -> str:
        """The sentence a view shows when events from position ``since`` on left the
        window ("" when none did)."""
        with self._lock:
            first = self._events[0].seq if self._events else self._next
            gone = min(first, self._next - len(self._events)) - since
        if gone <= 0:
            return ""
        keeps = f"the newest {self.window:,}" if self.window else "what was newest then"
        return f"{gone:,} older events were left out (the trace keeps {keeps} in memory)."

    # -- reading ---------------------------------------------------------------------
    def events(self, kind: str | None = None, host: str | None = None) -> list[TraceEvent]:
        """A snapshot of the window, optionally filtered by kind prefix and host."""
        with self._lock:
            snapshot = list(self._events)
        return _select(snapshot, kind, host)

    def since(self, index: int) -> Iterator[TraceEvent]:
        """Events from position (``seq``) ``index`` on that are still in the window (for
        widgets that follow a live world)."""
        with self._lock:
            start = max(0, index - (self._next - len(self._events)))
            snapshot = list(itertools.islice(self._events, start, None))
        return iter(snapshot)

    def get(self, seq: int) -> TraceEvent | None:
        """The event with this ``seq`` while it is in the window, else ``None``."""
        with self._lock:
            position = seq - (self._next - len(self._events))
            if 0 <= position < len(self._events) and seq >= 0:
                return self._events[position]
        return None

    def __len__(self) -> int:
        """Events recorded so far (kept in memory or not): the next event's ``seq``."""
        return self._next

    def clear(self) -> None:
        """Forget every event; positions start from 0 again (the history file stays)."""
        with self._lock:
            self._events.clear()
            self._next = 0

    # -- the history on disk -----------------------------------------------------------
    @property
    def history_path(self) -> Path | None:
        """The JSON Lines file every event is appended to, or ``None``."""
        return self._history_path

    def keep_history(self, path: str | Path) -> Path:
        """Append every event from now on to ``path`` (JSON Lines; created or extended).

        Secrets (:data:`SECRET_FIELDS`) are written as ``"***"``; values JSON cannot hold
        are written as their ``repr``.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        with self._lock:
            old, self._history, self._history_path = self._history, handle, target
            self._unflushed = 0
        if old is not None:
            old.close()
        return target

    def flush(self) -> None:
        """Write what the history file has buffered (readers see every event so far)."""
        with self._lock:
            if self._history is not None:
                self._history.flush()
                self._unflushed = 0

    def close(self) -> None:
        """Flush and close the history file (recording goes on in memory)."""
        with self._lock:
            handle, self._history = self._history, None
        if handle is not None:
            handle.close()

    def history(self, kind: str | None = None, host: str | None = None,
                since: int = 0) -> Iterator[TraceEvent]:
        """Every event of the history file (flushed first), filtered as :meth:`events`;
        from ``seq`` ``since`` on. Without a history file: the window's events."""
        if self._history_path is None:
            return iter([e for e in self.events(kind, host) if e.seq >= since])
        self.flush()
        return read_history(self._history_path, kind=kind, host=host, since=since)

    def _write_history(self, event: TraceEvent) -> None:
        assert self._history is not None
        self._history.write(_to_json(event) + "\n")
        self._unflushed += 1
        if self._unflushed >= _HISTORY_FLUSH_EVERY:
            self._history.flush()
            self._unflushed = 0


def read_history(path: str | Path, *, kind: str | None = None, host: str | None = None,
                 since: int = 0) -> Iterator[TraceEvent]:
    """The events of a trace history file (JSON Lines), filtered as :meth:`Trace.events`.

    Values come back as JSON has them (tuples as lists, other objects as their ``repr``).
    A torn last line (the process died while writing it) is skipped.

    Example::

        from simsmtp.trace import read_history
        for event in read_history("trace.jsonl", kind="delivery"):
            print(event.text())
    """
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            try:
                raw = json.loads(line)
                event = TraceEvent(int(raw["seq"]), str(raw["kind"]), str(raw["host"]),
                                   float(raw["time"]), float(raw["clock"]), dict(raw["data"]))
            except (ValueError, KeyError, TypeError):
                continue
            if event.seq >= since and _select([event], kind, host):
                yield event


def _select(events: list[TraceEvent], kind: str | None, host: str | None) -> list[TraceEvent]:
    return [e for e in events
            if (kind is None or e.kind == kind or e.kind.startswith(kind + "."))
            and (host is None or e.host == host)]


def _to_json(event: TraceEvent) -> str:
    data = {k: ("***" if k in SECRET_FIELDS else v) for k, v in event.data.items()}
    return json.dumps({"seq": event.seq, "kind": event.kind, "host": event.host,
                       "time": event.time, "clock": event.clock, "data": data},
                      default=repr, ensure_ascii=False)


def _check_window(size: int | None) -> None:
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"the trace window must be a positive number of events, not {size!r}")
