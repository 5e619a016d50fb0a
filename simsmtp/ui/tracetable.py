"""The trace as a table: every event of the world, filterable by host, kind and text.

The trace (``world.trace``) is the one record of everything that happened; this table is
a window on it. Each row says when (on the world's virtual clock), where (the host that
recorded it), what (the event kind, e.g. ``smtp.command``) and a one-line summary made of
the event's own fields (secrets masked). ``show_seq=True`` adds each event's position in
the trace (``world.trace.get(seq)`` gives the whole event); it is off by default
because two servers working at the same moment may record in either order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from simsmtp.trace import SECRET_FIELDS, TraceEvent

from .base import View, html_widget, left_out, trace_events
from .journey import first_line, mask
from .style import (
    COLORS,
    HTMLText,
    escape,
    html_table,
    plural,
    reply_color,
    short,
    span,
    text_table,
)

#: Fields that say where an event belongs rather than what happened (left out of summaries).
_NOISE = {"conn", "service", "peer", "tls", "state_before", "state_after", "content", "local",
          "path", "directory", "role", "port"}
# An ephemeral port inside a reason text: ('127.0.0.3', 40123) or 127.0.0.3:40123.
_PORT_TUPLE = re.compile(r"\('(\d+\.\d+\.\d+\.\d+)', \d+\)")


@dataclass(frozen=True)
class TraceRow:
    """One row of the table.

    Attributes:
        seq: the event's position in the trace.
        time: the virtual clock as text (``09:00:00``, or ``+0s`` without an epoch).
        host: the host that recorded it.
        kind: the event kind.
        summary: one line made of the event's fields.
        color: a colour for the summary (errors red/orange).
    """

    seq: int
    time: str
    host: str
    kind: str
    summary: str
    color: str = ""


def summarize(e: TraceEvent) -> tuple[str, str]:
    """(one-line summary, colour) of an event, made of its own fields."""
    d = e.data
    where = f"[{d.get('service')} #{d.get('conn')}] " if "conn" in d and "service" in d \
        else ""
    states = ""
    if d.get("state_before") and d.get("state_after") and \
            d["state_before"] != d["state_after"]:
        states = f"  ({d['state_before']} → {d['state_after']})"
    lock = "[TLS] " if d.get("tls") else ""
    if e.kind in ("smtp.command", "pop3.command"):
        return f"{where}{lock}C: {mask(str(d.get('line', '')))}{states}", COLORS["client"]
    if e.kind in ("smtp.reply", "pop3.reply"):
        text = str(d.get("text", ""))
        color = reply_color(text) if text[:1] in "45-" else ""
        return f"{where}{lock}S: {first_line(text)}{states}", color
    if e.kind == "smtp.message":
        rcpts = ", ".join(d.get("recipients") or [])
        return (f"{where}{lock}message from <{d.get('sender')}> to {rcpts}: "
                f"{d.get('size')} octets, queue id {d.get('queue_id')}"), ""
    if e.kind == "dns.lookup":
        records = ", ".join(d.get("records") or []) or d.get("error", "")
        return f"{d.get('qtype')}? {d.get('qname')} -> {d.get('status')}: {records}", \
            COLORS["dns"]
    if e.kind == "dns.query":
        return f"{d.get('qtype')}? {d.get('qname')} over {d.get('transport')}", COLORS["dns"]
    if e.kind == "dns.answer":
        answer = "; ".join(d.get("answer") or []) or "(empty)"
        return f"{d.get('rcode')}: {answer}", COLORS["dns"]
    words = _delivery_words(e.kind, d)
    if words is not None:
        color = COLORS["fail"] if e.kind == "delivery.bounce" else \
            COLORS["warn"] if e.kind == "delivery.deferred" else ""
        return words, color
    color = COLORS["fail"] if e.kind in ("delivery.bounce", "delivery.expired",
                                         "delivery.connect_failed", "tls.failed",
                                         "tls.required_failed", "store.error") else \
        COLORS["warn"] if e.kind in ("delivery.deferred", "fault.fired", "host.down") else ""
    fields = " ".join(f"{k}={'***' if k in SECRET_FIELDS else _value(v, k)}"
                      for k, v in d.items() if k not in _NOISE and _value(v, k) != "")
    fields = _PORT_TUPLE.sub(r"('\1', <port>)", fields)
    return f"{where}{fields}", color


def _delivery_words(kind: str, d: dict[str, Any]) -> str | None:
    """The delivery events a learner meets most, in words (None: the others)."""
    queue = f"queue id {d['queue_id']}: " if d.get("queue_id") else ""
    rcpts = ", ".join(str(r) for r in d.get("recipients") or [])
    if kind == "delivery.stored":
        if d.get("bounce"):
            return (f"stored a bounce in {d.get('recipient')}'s mailbox (from the null "
                    "sender <>: a bounce never bounces)")
        return f"{queue}stored in {d.get('recipient')}'s mailbox (from <{d.get('sender')}>)"
    if kind == "delivery.attempt":
        tls = f", {d['tls']}" if d.get("tls") else ""
        return f"{queue}tries {d.get('mx')} ({d.get('ip')}, port 25{tls}) for {rcpts}"
    if kind == "delivery.ok":
        return f"{queue}{d.get('mx')} took {d.get('recipient')}: {d.get('reply')}"
    if kind == "delivery.bounce":
        return f"{queue}gives up on {d.get('recipient')} ({d.get('status')}): {d.get('reason')}"
    if kind == "delivery.deferred":
        retry = d.get("retry_in")
        later = f"; next try in {retry:g} s" if isinstance(retry, (int, float)) else ""
        return (f"{queue}keeps the message for {d.get('recipient')} ({d.get('status')}): "
                f"{d.get('reason')}{later}")
    if kind == "delivery.dsn":
        return (f"{queue}sends a bounce (a DSN, {d.get('size')} octets) to "
                f"<{d.get('sender')}> about {rcpts}")
    if kind == "delivery.route":
        targets = ", ".join(str(t) for t in d.get("targets") or [])
        status = f" ({d['status']})" if d.get("status") else ""
        via = f" via {targets}" if targets else ""
        return f"route to {d.get('domain')}: {d.get('route')}{status}{via}. {d.get('reason')}"
    return None


def _value(v: Any, key: str = "") -> str:
    if v == "" and key == "sender":
        return "<>"  # the null sender (RFC 5321 §4.5.5)
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _when(clock: float, epoch: datetime | None) -> str:
    if epoch is None:
        return f"+{clock:g}s"
    return (epoch + timedelta(seconds=clock)).strftime("%H:%M:%S")


def trace_rows(source: Any, *, kind: str | Iterable[str] | None = None,
               host: str | None = None, contains: str = "", since: int = 0,
               conn: int | None = None) -> list[TraceRow]:
    """The rows that pass the filters, in trace order.

    Args:
        source: a world (gives clock times), a trace or a list of events.
        kind: an event kind or prefix (``"smtp"`` matches ``smtp.command`` …), or several.
        host: only events recorded by this host.
        contains: only rows whose summary contains this text (case-insensitive).
        since: only events from this trace position on.
        conn: only events of this connection id.
    """
    events, world = trace_events(source)
    epoch = None if world is None else world.epoch
    kinds = [kind] if isinstance(kind, str) else list(kind) if kind is not None else []
    needle = contains.lower().strip()
    rows = []
    for e in events:
        if e.seq < since or (host and e.host != host):
            continue
        if kinds and not any(e.kind == k or e.kind.startswith(k + ".") for k in kinds):
            continue
        if conn is not None and e.get("conn") != conn:
            continue
        summary, color = summarize(e)
        if needle and needle not in summary.lower() and needle not in e.kind:
            continue
        rows.append(TraceRow(e.seq, _when(e.clock, epoch), e.host or "-", e.kind, summary,
                             color))
    return rows


def _render(rows: list[TraceRow], show_seq: bool, limit: int | None,
            note: str = "") -> tuple[str, str]:
    shown = rows if limit is None else rows[:limit]
    headers = ["#", "time", "host", "kind", "what happened"]
    html_rows = []
    text_rows = []
    for i, r in enumerate(shown, 1):
        n = r.seq if show_seq else i
        html_rows.append((n, r.time, r.host, span(r.kind, mono=True),
                          span(r.summary, r.color or None, mono=True)))
        text_rows.append((n, r.time, r.host, r.kind, short(r.summary, 100)))
    more = "" if limit is None or len(rows) <= limit else \
        f"… and {len(rows) - limit} more rows (narrow the filters)"
    html = str(html_table(headers, html_rows, max_height="26em"))
    if more:
        html += f"<div style='color:{COLORS['muted']}'>{escape(more)}</div>"
    text = text_table(headers, text_rows) + (f"\n{more}" if more else "")
    if note:  # the trace's window left older events out: say so first
        html = f"<div style='color:{COLORS['muted']}'>{escape(note)}</div>" + html
        text = f"{note}\n{text}"
    return html, text


def trace_table(source: Any, *, show_seq: bool = False, limit: int | None = 200,
                **filters: Any) -> HTMLText:
    """A static trace table (HTML in a notebook, text for ``print``); see :func:`trace_rows`.

    Args:
        source: a world, a trace or a list of events.
        show_seq: number rows by trace position instead of 1, 2, 3 …
        limit: show at most this many rows.
        **filters: ``kind``, ``host``, ``contains``, ``since``, ``conn``.
    """
    html, text = _render(trace_rows(source, **filters), show_seq, limit,
                         left_out(source, filters.get("since", 0)))
    return HTMLText(html, text)


class TraceTable(View):
    """The trace table as a widget: pick a host, a kind, type a word; *Refresh* re-reads a
    live world.

    Args:
        source: a world (best) or a trace.
        kind, host, contains: initial filters.
        since: only events from this trace position on.
        show_seq: number rows by trace position.
        limit: at most this many rows.

    Controls: ``host_filter`` (Dropdown), ``kind_filter`` (Dropdown), ``text_filter``
    (Text), ``refresh_button``; views: ``table`` (HTML), ``count`` (HTML); ``rows`` holds
    what is shown.
    """

    KINDS = ("smtp", "pop3", "imap", "dns", "tls", "tcp", "delivery", "queue", "fault",
             "host", "store", "world")

    def __init__(self, source: Any, *, kind: str | None = None, host: str | None = None,
                 contains: str = "", since: int = 0, show_seq: bool = False,
                 limit: int = 200) -> None:
        import ipywidgets as w

        self.source = source
        self.since = since
        self.show_seq = show_seq
        self.limit = limit
        self.rows: list[TraceRow] = []
        self.host_filter = w.Dropdown(description="host", options=self._hosts(host),
                                      value=host or "", layout=w.Layout(width="300px"))
        kinds = [("all kinds", ""), *[(k, k) for k in self.KINDS]]
        if kind and kind not in self.KINDS:
            kinds.append((kind, kind))
        self.kind_filter = w.Dropdown(description="kind", options=kinds, value=kind or "",
                                      layout=w.Layout(width="200px"))
        self.text_filter = w.Text(value=contains, description="contains",
                                  placeholder="e.g. RCPT, 450, bob",
                                  continuous_update=False, layout=w.Layout(width="260px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh",
                                       tooltip="Read the trace again (the world is live)",
                                       layout=w.Layout(width="100px"))
        self.count = html_widget()
        self.table = html_widget()
        for control in (self.host_filter, self.kind_filter, self.text_filter):
            control.observe(self.guarded(lambda _: self.refresh()), names="value")
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh(reread=True)))
        self.widget = w.VBox([w.HBox([self.host_filter, self.kind_filter, self.text_filter,
                                      self.refresh_button]), self.count, self.table])
        self.refresh()

    def _hosts(self, extra: str | None = None) -> list[tuple[str, str]]:
        events, _ = trace_events(self.source)
        hosts = sorted({e.host for e in events if e.host} | ({extra} if extra else set()))
        return [("all hosts", ""), *[(h, h) for h in hosts]]

    def refresh(self, reread: bool = False) -> list[TraceRow]:
        """Apply the filters again (``reread``: also pick up hosts seen since)."""
        if reread:
            value = self.host_filter.value
            self.host_filter.options = self._hosts(value or None)
            self.host_filter.value = value
        self.rows = trace_rows(self.source, kind=self.kind_filter.value or None,
                               host=self.host_filter.value or None,
                               contains=self.text_filter.value, since=self.since)
        html, _ = _render(self.rows, self.show_seq, self.limit,
                          left_out(self.source, self.since))
        self.table.value = html
        self.count.value = f"<span style='color:{COLORS['muted']}'>" \
            f"{plural(len(self.rows), 'event')} match{'es' if len(self.rows) == 1 else ''}" \
            "</span>"
        return self.rows

    def text(self) -> str:
        """What the table shows, as text."""
        return _render(self.rows, self.show_seq, self.limit)[1]

    def __repr__(self) -> str:
        filters = [f"{k}={v!r}" for k, v in (("host", self.host_filter.value),
                                             ("kind", self.kind_filter.value),
                                             ("contains", self.text_filter.value)) if v]
        return f"TraceTable({', '.join(filters)}{', ' if filters else ''}" \
            f"{plural(len(self.rows), 'event')})"


__all__ = ["TraceRow", "TraceTable", "summarize", "trace_rows", "trace_table"]
