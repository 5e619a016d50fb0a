"""The retry timeline: each delivery attempt of a queued message on the virtual clock.

Read from the outbound agent's ``delivery.*`` events in the trace: ``delivery.attempt``
(which server, which recipients), ``delivery.connect_failed``, ``delivery.deferred``
(a 4xx: the reply, and when the next try is due), ``delivery.ok``, ``delivery.bounce`` and
``delivery.expired``. Greylisting (RFC 6647) looks like this: ``450 4.7.1`` at 09:00,
the retry five minutes later (Postfix's ``minimal_backoff_time``, RFC 5321 §4.5.4.1),
``250``. The clock is the world's virtual clock, which ``net.fast_forward()`` moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .base import left_out, trace_events
from .style import COLORS, Diagram, new_figure, plot_style, short, text_table

if TYPE_CHECKING:

    from simsmtp.world.routing import RetrySchedule

#: Point kinds, and how each is drawn: (marker, colour).
MARKERS = {
    "attempt": ("|", COLORS["client"]),
    "refused": ("x", COLORS["fail"]),
    "deferred": ("o", COLORS["warn"]),
    "delivered": ("o", COLORS["ok"]),
    "bounced": ("X", COLORS["fail"]),
    "expired": ("X", COLORS["fail"]),
}


@dataclass(frozen=True)
class RetryPoint:
    """One thing that happened to one recipient of a queued message.

    Attributes:
        queue_id: the message's queue id on the sending host.
        recipient: the recipient.
        clock: virtual seconds since the world's epoch.
        kind: "attempt", "refused", "deferred", "delivered", "bounced" or "expired".
        label: the short text drawn next to it (a reply code, a server name).
        detail: the full text (the reply or the reason).
        retry_in: for "deferred": seconds until the next try.
        host: the sending host.
    """

    queue_id: str
    recipient: str
    clock: float
    kind: str
    label: str
    detail: str = ""
    retry_in: float | None = None
    host: str = ""


def _epoch(source: Any) -> datetime | None:
    world = trace_events(source)[1]
    return None if world is None else world.epoch


def _code(text: str) -> str:
    """``"450 4.7.1"`` from a reply or reason text."""
    parts = text.split()
    head = parts[:2] if len(parts) > 1 and parts[1][:1].isdigit() else parts[:1]
    return " ".join(head)


def retry_points(source: Any, *, since: int = 0) -> list[RetryPoint]:
    """Every attempt and outcome of every queued recipient, in trace order.

    Args:
        source: a world, a trace or a list of events.
        since: ignore events before this trace position.
    """
    events, _ = trace_events(source)
    points: list[RetryPoint] = []
    last_attempt: dict[str, tuple[str, list[str]]] = {}  # host -> (queue id, recipients)
    for e in events:
        if e.seq < since or not e.kind.startswith("delivery."):
            continue
        kind = e.kind.partition(".")[2]
        if kind == "attempt":
            qid, rcpts = str(e.get("queue_id")), [str(r) for r in e.get("recipients") or []]
            last_attempt[e.host] = (qid, rcpts)
            points += [RetryPoint(qid, r, e.clock, "attempt", str(e.get("mx")),
                                  f"connect to {e.get('mx')} ({e.get('ip')}) port 25",
                                  host=e.host) for r in rcpts]
        elif kind == "connect_failed" and e.host in last_attempt:
            qid, rcpts = last_attempt[e.host]
            points += [RetryPoint(qid, r, e.clock, "refused", "no answer",
                                  f"{e.get('mx')} did not answer", host=e.host)
                       for r in rcpts]
        elif kind in ("deferred", "ok", "bounce", "expired"):
            reply = str(e.get("reply") or e.get("reason") or "")
            name = {"ok": "delivered", "bounce": "bounced"}.get(kind, kind)
            label = _code(reply) if kind != "expired" else "gave up"
            retry = e.get("retry_in")
            points.append(RetryPoint(str(e.get("queue_id")), str(e.get("recipient")),
                                     e.clock, name, label or str(e.get("status", "")), reply,
                                     float(retry) if retry is not None else None,
                                     host=e.host))
    return points


def _when(clock: float, epoch: datetime | None) -> str:
    if epoch is None:
        return f"+{clock:g}s"
    return (epoch + timedelta(seconds=clock)).strftime("%H:%M:%S")


def retry_text(source: Any, *, since: int = 0) -> str:
    """The timeline as a text table (what the plot draws)."""
    epoch = _epoch(source)
    rows = []
    for p in retry_points(source, since=since):
        later = f"{p.retry_in:g} s" if p.kind == "deferred" and p.retry_in is not None \
            else ""
        # short enough that no line wraps in a notebook (about 110 characters)
        rows.append((_when(p.clock, epoch), p.recipient, p.kind, later, short(p.detail, 48)))
    note = left_out(source, since)
    return (f"{note}\n" if note else "") + text_table(
        ("virtual time", "recipient", "what", "next try", "detail"), rows)


def retry_timeline(source: Any, *, since: int = 0, schedule: RetrySchedule | None = None,
                   horizon: float | None = None, title: str | None = None) -> Diagram:
    """Plot the attempts of each queued recipient on the virtual clock.

    Args:
        source: a world (gives clock times), a trace or a list of events.
        since: ignore events before this trace position.
        schedule: also draw when this retry schedule would try if every try failed
            (e.g. ``RetrySchedule()``, Postfix's defaults), as grey ticks.
        horizon: how many seconds after the first attempt to show (default: the data).
        title: a title for the plot.
    """
    epoch = _epoch(source)
    points = retry_points(source, since=since)
    keys: list[tuple[str, str]] = []
    for p in points:
        if (p.queue_id, p.recipient) not in keys:
            keys.append((p.queue_id, p.recipient))
    start = min((p.clock for p in points), default=0.0)
    end = max((p.clock for p in points), default=start)
    if horizon is not None:
        end = max(end, start + horizon)
    span_min = max((end - start) / 60, 1.0)
    height = 1.6 + 1.1 * max(len(keys), 1)
    fig, ax = new_figure(10, height)
    with plot_style():
        _draw(ax, points, keys, start, span_min, schedule, epoch)
        ax.set_title(title or "Delivery attempts on the virtual clock", loc="left", pad=22)
        fig.tight_layout()
    return Diagram(fig)


def _draw(ax: Any, points: list[RetryPoint], keys: list[tuple[str, str]], start: float,
          span_min: float, schedule: RetrySchedule | None, epoch: datetime | None) -> None:
    row = {k: i for i, k in enumerate(keys)}
    ax.set_ylim(len(keys) - 0.35, -0.85)
    ax.set_xlim(-0.06 * span_min, span_min * 1.12)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([f"{r}\n(queue id {q})" for q, r in keys], fontsize=8)
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.grid(axis="x", color="#EEEEEE")
    ax.set_axisbelow(True)
    if epoch is not None:
        base = epoch + timedelta(seconds=start)
        ax.set_xlabel(f"minutes after {base:%H:%M:%S} (virtual clock, world time)")
    else:
        ax.set_xlabel("minutes (virtual clock)")
    if not keys:
        ax.text(span_min / 2, 0, "no delivery attempts in this part of the trace",
                ha="center", va="center", color=COLORS["muted"])
        return
    if schedule is not None:
        for q, r in keys:
            times = schedule.timeline(0.0, span_min * 60 * 1.1)
            y = row[(q, r)]
            ax.scatter([t / 60 for t in times], [y + 0.4] * len(times), marker="|",
                       s=60, color="#BBBBBB", zorder=1,
                       label="schedule if every try failed" if y == 0 else None)
    for (q, r), y in row.items():
        mine = [p for p in points if (p.queue_id, p.recipient) == (q, r)]
        xs = [(p.clock - start) / 60 for p in mine]
        ax.plot([min(xs), max(xs)], [y, y], color="#DDDDDD", lw=2, zorder=1)
    labelled: set[str] = set()
    tries: dict[tuple[int, float], list[str]] = {}  # several servers tried at one moment
    for p in points:
        if p.kind == "attempt":
            tries.setdefault((row[(p.queue_id, p.recipient)], p.clock), []).append(p.label)
    for (y, clock), servers in tries.items():
        x = (clock - start) / 60
        ha = "left" if x < 0.15 * span_min else "right" if x > 0.85 * span_min else "center"
        ax.text(x, y - 0.2, "try " + ", then ".join(servers), ha=ha, va="bottom",
                fontsize=8.5, color=MARKERS["attempt"][1])
    for p in points:
        y = row[(p.queue_id, p.recipient)]
        x = (p.clock - start) / 60
        marker, color = MARKERS.get(p.kind, ("o", COLORS["muted"]))
        label = p.kind if p.kind not in labelled else None
        labelled.add(p.kind)
        if p.kind == "attempt":
            ax.scatter([x], [y], marker=marker, s=260, color=color, zorder=2, label=label)
            continue
        ax.scatter([x], [y], marker=marker, s=70, color=color, zorder=3, label=label,
                   edgecolors="white", linewidths=0.5)
        ax.text(x + 0.012 * span_min, y + 0.2, p.label, ha="left", va="top", fontsize=8,
                color=color, fontweight="bold")
        if p.kind == "deferred" and p.retry_in:
            x1 = x + p.retry_in / 60
            ax.annotate("", xy=(x1, y - 0.52), xytext=(x, y - 0.52),
                        arrowprops=dict(arrowstyle="->", color=COLORS["warn"], lw=1),
                        zorder=2)
            ax.text((x + x1) / 2, y - 0.56, f"retry in {p.retry_in / 60:g} min",
                    ha="center", va="bottom", fontsize=8.5, color=COLORS["warn"])
    ax.legend(loc="lower right", fontsize=8, frameon=False, ncol=6,
              bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)


__all__ = ["MARKERS", "RetryPoint", "retry_points", "retry_text", "retry_timeline"]
