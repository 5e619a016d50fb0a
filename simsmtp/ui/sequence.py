"""The sequence diagram of a delivery, drawn with matplotlib from the world's trace.

Lanes left to right (for the seed): Alice's MUA, mail.example.com, DNS,
mail.anotherdomain.org, Bob's MUA. Time runs down. Arrows are coloured by who speaks
(client blue, server replies green / orange for 4xx / red for 5xx, DNS pink); inside TLS
they are drawn dashed with a green "TLS" tag; a band marks each TLS handshake; notes (stored,
deferred, bounced) sit on their lane. The rows are :func:`simsmtp.ui.journey.journey`'s, so
``journey_text`` prints exactly what is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .journey import Arrow, Journey, journey
from .style import (
    COLORS,
    MAX_WIDTH,
    MONO,
    Diagram,
    code_color,
    new_figure,
    plot_style,
    reply_color,
    short,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Inches per row and (at most) per lane: the whole diagram is at most MAX_WIDTH wide.
ROW = 0.3
LANE = 2.45
#: Inches per character of DejaVu Sans Mono at 8 points.
CHAR = 0.6 * 8 / 72


def _color(a: Arrow) -> str:
    if a.kind in ("dns-query", "dns-answer"):
        return COLORS["fail"] if a.error else COLORS["dns"]
    if a.kind == "reply":
        if not a.error:
            return COLORS["server"]
        return reply_color(a.label) if a.code is None else code_color(a.code)
    if a.kind == "failed":
        return COLORS["fail"]
    if a.kind == "tls":
        return COLORS["tls"]
    if a.kind == "note":
        return COLORS["warn"] if a.error else COLORS["note"]
    return COLORS["client"]


def sequence_diagram(source: Any, *, since: int = 0, until: int | None = None,
                     phases: Any = None, detail: str = "full",
                     title: str | None = None) -> Diagram:
    """Draw the journey in the trace as a sequence diagram.

    Args:
        source: a world (best), a trace, a list of events or a ready
            :class:`~simsmtp.ui.journey.Journey`.
        since: start at this trace position (``len(world.trace)`` before an experiment).
        until: stop before this trace position.
        phases: only these phases ("submission", "dns", "relay", "smtp", "pop3",
            "delivery").
        detail: ``"full"`` (every command and reply) or ``"summary"`` (one arrow each way
            per conversation).
        title: a title above the diagram.

    Returns:
        The figure as a :class:`~simsmtp.ui.style.Diagram` (the value of a notebook cell
        shows it as SVG).
    """
    j = source if isinstance(source, Journey) else journey(
        source, since=since, until=until, phases=phases, detail=detail)
    if j.left_out:  # the trace's window no longer holds everything: say so on top
        title = f"{title} ({j.left_out})" if title else j.left_out
    rows = len(j.arrows)
    lanes = len(j.lanes) or 1
    lane = min(LANE, (MAX_WIDTH - 0.6) / lanes)
    width = max(6.0, lane * lanes + 0.6)
    height = 1.1 + ROW * max(rows, 1) + (0.3 if title else 0)
    fig, ax = new_figure(width, height)
    with plot_style():
        draw_sequence(ax, j, lane)
        top = 1 - (0.45 + (0.3 if title else 0)) / height
        if title:
            fig.text(0.01, 1 - 0.12 / height, title, ha="left", va="top", fontsize=11,
                     fontweight="bold")
        _legend(fig, 1 - (0.15 + (0.3 if title else 0)) / height)
        fig.subplots_adjust(left=0.01, right=0.99, top=top, bottom=0.05 / height)
    return Diagram(fig)


def _legend(fig: Figure, y: float) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLORS["client"], lw=1.2, label="client → server"),
               Line2D([], [], color=COLORS["server"], lw=1.2, label="reply"),
               Line2D([], [], color=COLORS["warn"], lw=1.2, label="4xx: try later"),
               Line2D([], [], color=COLORS["fail"], lw=1.2, label="5xx / -ERR / failure"),
               Line2D([], [], color=COLORS["dns"], lw=1.2, label="DNS"),
               Line2D([], [], color=COLORS["muted"], lw=1.2, ls=(0, (4, 2)),
                      label="dashed: inside TLS (encrypted)")]
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, y), ncol=6,
               fontsize=8, frameon=False, handlelength=2.0, columnspacing=1.0)


def _note(text: str, room: int) -> str:
    """A note in at most two lines of ``room`` characters (cut only past that)."""
    import textwrap

    lines = textwrap.wrap(text, max(room, 12))
    if len(lines) <= 2:
        return "\n".join(lines)
    return lines[0] + "\n" + short(" ".join(lines[1:]), max(room, 12))


def draw_sequence(ax: Axes, j: Journey, lane_width: float = LANE) -> None:
    """Draw ``j`` on ``ax`` (x: lanes 0..n-1, y: rows 0..m-1 downwards), each lane
    ``lane_width`` inches wide."""
    from matplotlib.patches import FancyBboxPatch

    n = max(len(j.lanes), 1)
    x = {lane: i for i, lane in enumerate(j.lanes)}
    rows = max(len(j.arrows), 1)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(rows - 0.4, -0.9)
    ax.axis("off")
    chars_per_lane = lane_width / CHAR
    for lane, i in x.items():
        ax.plot([i, i], [-0.5, rows - 0.5], color=COLORS["muted"], lw=0.8, ls=(0, (2, 3)),
                zorder=0)
        ax.text(i, -0.75, short(j.label(lane), int(chars_per_lane * 0.8)), ha="center",
                va="center",
                fontsize=9, fontweight="bold", color=COLORS["text"],
                bbox=dict(boxstyle="round,pad=0.35", fc="white", ec=COLORS["muted"]))
    for row, a in enumerate(j.arrows):
        if a.kind == "section":
            ax.axhline(row + 0.35, color="#DDDDDD", lw=0.8, zorder=0)
            ax.text(-0.48, row, a.label, ha="left", va="center", fontsize=8.5,
                    fontstyle="italic", fontweight="bold", color=COLORS["text"])
            continue
        color = _color(a)
        if a.source == a.target or a.source not in x or a.target not in x:
            lane = a.source if a.source in x else a.target
            cx = x.get(lane, 0)
            # a note on an outer lane leans inwards, so it is not cut at the edge
            ha, tx = ("right", cx + 0.45) if cx == n - 1 and n > 1 else \
                ("left", cx - 0.45) if cx == 0 and n > 1 else ("center", cx)
            room = (1.5 if ha == "center" else 1.6) * chars_per_lane * 0.85
            ax.text(tx, row, _note(a.label, int(room)), ha=ha, va="center",
                    fontsize=8.5, color=COLORS["text"],
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=color, lw=1.0))
            continue
        x0, x1 = x[a.source], x[a.target]
        if a.kind == "tls":
            left, right = min(x0, x1), max(x0, x1)
            ax.add_patch(FancyBboxPatch((left, row - 0.32), right - left, 0.64,
                                        boxstyle="round,pad=0.02", fc="#DFF3EA",
                                        ec=COLORS["tls"], lw=0.8, zorder=1))
            ax.text((x0 + x1) / 2, row, a.label.partition(" TLS_")[0], ha="center",
                    va="center", fontsize=8.5,
                    color=COLORS["tls"], fontweight="bold", zorder=2)
            continue
        style = (0, (4, 2)) if a.tls else "-"
        ax.annotate("", xy=(x1, row + 0.18), xytext=(x0, row + 0.18),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.1, ls=style,
                                    shrinkA=2, shrinkB=2), zorder=3)
        if a.kind == "failed":
            ax.plot([x1], [row + 0.18], marker="x", color=COLORS["fail"], ms=8, mew=2,
                    zorder=4)
        mid = (x0 + x1) / 2
        room = min(mid + 0.5, n - 0.5 - mid) * 2 * chars_per_lane  # the label may overhang
        ax.text(mid, row - 0.1, short(a.label, int(room)), ha="center", va="center",
                fontsize=8, color=color, zorder=3,
                bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.85),
                family=MONO if a.kind in ("command", "reply", "dns-query", "dns-answer")
                else None)


__all__ = ["draw_sequence", "sequence_diagram"]
