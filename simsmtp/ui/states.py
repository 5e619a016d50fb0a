"""The SMTP state machine, drawn from the cores' own transition table.

Every node and edge comes from :func:`simsmtp.protocol.session.transitions` (the table the
server and client cores consult for every command), so the drawing cannot disagree with
the code. Only the positions of the known states are chosen here, to keep the happy path
(CONNECTED → GREETED → MAIL → RCPT → DATA) on one line; a state added to the table later
is still drawn, on the bottom row.

How to read it: a solid arrow is where a positive reply leads, a dashed red one where a
failure leads when that is somewhere else; verbs that keep the state are listed under the
node (↻); ``QUIT`` (and any ``221``/``421`` reply) leads to CLOSED from every state, which
the CLOSED node says instead of drawing an arrow from everywhere. RFC 5321 §4.1.4 (command
order), §3.3 (a mail transaction), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 3030 (BDAT).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import View, html_widget
from .style import COLORS, MAX_WIDTH, Diagram, escape, inline_svg, new_figure, plot_style

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Where each known state sits (x, y), per role.
LAYOUT: dict[str, dict[str, tuple[float, float]]] = {
    "server": {"CONNECTED": (0.0, 0.0), "GREETED": (2.8, 0.0), "MAIL": (5.6, 0.0),
               "RCPT": (8.4, 0.0), "DATA": (11.2, 0.0), "TLS_HANDSHAKE": (0.0, -2.6),
               "AUTH": (2.8, -2.6), "BDAT": (7.0, -2.6), "CLOSED": (5.6, 2.2)},
    "client": {"CONNECTING": (-2.8, 0.0), "CONNECTED": (0.0, 0.0), "GREETED": (2.8, 0.0),
               "MAIL": (5.6, 0.0), "RCPT": (8.4, 0.0), "DATA": (11.2, 0.0),
               "MESSAGE": (14.0, 0.0), "TLS_HANDSHAKE": (0.0, -2.6), "AUTH": (2.8, -2.6),
               "BDAT": (7.0, -2.6), "CLOSED": (5.6, 2.2)},
}


def _name(state: Any) -> str:
    return str(getattr(state, "name", state)).upper() if state is not None else ""


@dataclass
class StateGraph:
    """The drawable form of one role's transition table.

    Attributes:
        role: "server" or "client".
        states: every state name, in table order.
        edges: (from, to) -> the verbs that lead there on success.
        fail_edges: (from, to) -> the verbs whose failure leads there (elsewhere).
        loops: state -> the verbs that leave it unchanged.
        quits: the states QUIT leads out of (to CLOSED).
        closing: the other verbs that lead to CLOSED (on success or failure).
    """

    role: str
    states: list[str] = field(default_factory=list)
    edges: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    fail_edges: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    loops: dict[str, list[str]] = field(default_factory=dict)
    quits: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)


def state_graph(role: str) -> StateGraph:
    """Read :func:`~simsmtp.protocol.session.transitions` into a :class:`StateGraph`."""
    from simsmtp.protocol.session import transitions

    g = StateGraph(role)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    fails: dict[tuple[str, str], list[str]] = defaultdict(list)
    loops: dict[str, list[str]] = defaultdict(list)
    for state, verb, ok, fail in transitions(role):
        src, dst, bad = _name(state), _name(ok), _name(fail)
        for s in (src, dst, bad):
            if s not in g.states:
                g.states.append(s)
        if verb == "QUIT":
            g.quits.append(src)
            continue
        if dst == src:
            loops[src].append(verb)
        elif dst == "CLOSED":
            g.closing.append(verb)
        else:
            edges[(src, dst)].append(verb)
        if bad == "CLOSED" and bad != dst:
            g.closing.append(verb + " ✗")
        elif bad not in (src, dst):
            fails[(src, bad)].append(verb)
    # a failure that leads where some success already does: one arrow, the verb marked ✗
    for key, verbs in list(fails.items()):
        if key in edges:
            edges[key] += [v + " ✗" for v in verbs]
            del fails[key]
    g.edges, g.fail_edges, g.loops = dict(edges), dict(fails), dict(loops)
    return g


def _positions(g: StateGraph) -> dict[str, tuple[float, float]]:
    known = LAYOUT.get(g.role, {})
    pos = {s: known[s] for s in g.states if s in known}
    extra = [s for s in g.states if s not in known]
    for i, s in enumerate(extra):  # states the layout does not know yet: bottom row
        pos[s] = (i * 2.6, -4.4)
    return pos


def _wrap(words: list[str], width: int = 22) -> str:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + len(word) + 2 <= width:
            lines[-1] += ", " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def state_diagram(role: str = "server", *, current: Any = None, previous: Any = None,
                  verb: str | None = None, title: str | None = None,
                  max_width: float = MAX_WIDTH) -> Diagram:
    """Draw the state machine of ``role`` with ``current`` highlighted.

    Args:
        role: "server" or "client".
        current: the state to highlight (a state enum or its name).
        previous: the state before, to highlight the transition just taken.
        verb: the verb of that transition (for the caption).
        title: a title (default: "SMTP <role> states").
        max_width: the widest it may be, in inches (its text keeps its size).
    """
    g = state_graph(role)
    pos = _positions(g)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width = (max(xs) - min(xs)) + 2.4
    height = (max(ys) - min(ys)) + 2.3
    scale = min(max_width / width, 1.0)
    fig, ax = new_figure(width * scale, height * scale)
    with plot_style():
        # the final margins first: the labels are placed by where they land on the figure
        fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.02)
        draw_state_diagram(ax, g, pos, current=_name(current), previous=_name(previous),
                           verb=verb)
        caption = title or f"SMTP {role} states (from the {role} core's transition table)"
        if current is not None:
            caption += f" — now: {_name(current)}"
            if previous is not None and verb:
                caption += f" (after {verb} in {_name(previous)})"
        ax.set_title(caption, loc="left", fontsize=10)
    return Diagram(fig)


def draw_state_diagram(ax: Axes, g: StateGraph, pos: dict[str, tuple[float, float]], *,
                       current: str = "", previous: str = "", verb: str | None = None
                       ) -> None:
    """Draw ``g`` on ``ax`` with the nodes at ``pos``.

    The nodes and arrows go where the layout says; then each label takes the first of its
    places that overlaps nothing drawn before it (an edge's label: beside its arc, from the
    middle outwards; a node's ↻ list: below, above, then beside the node), so the words
    stay readable whatever states the table holds.
    """
    from matplotlib.patches import FancyArrowPatch

    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    ax.set_ylim(min(ys) - 1.1, max(ys) + 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    #: labels still to place: (text, its style, its places in order of preference, the
    #: arc it names or -1)
    labels: list[tuple[str, dict[str, Any], list[tuple[float, float, str, str]], int]] = []
    #: points along each arc drawn, so that a label avoids the arcs it does not name
    arcs: list[list[tuple[float, float]]] = []

    def edge(src: str, dst: str, verbs: list[str], *, failed: bool) -> None:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        dist = math.hypot(x1 - x0, y1 - y0) or 1.0
        rad = 0.3 if dist < 3 else 0.32
        if y0 < y1 and x0 > x1:  # from the bottom row up and back: bend below, not across
            rad = -rad
        taken = (not failed and src == previous and dst == current and previous != "")
        color = (COLORS["fail"] if failed else
                 COLORS["warn"] if taken else COLORS["server"])
        ax.add_patch(FancyArrowPatch(
            (x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
            mutation_scale=11, lw=2.4 if taken else 1.0, color=color,
            linestyle=(0, (4, 2)) if failed else "-", shrinkA=24, shrinkB=24, zorder=1))
        # the arc is a quadratic Bezier whose control point is the chord's middle moved
        # sideways by rad * length; a label sits just outside a point of it, the middle
        # first, then further along either way
        px, py = (y1 - y0) / dist, -(x1 - x0) / dist  # unit normal, the side rad bends to
        sign = 1 if rad > 0 else -1
        nx, ny = sign * px, sign * py
        cx = (x0 + x1) / 2 + nx * abs(rad) * dist
        cy = (y0 + y1) / 2 + ny * abs(rad) * dist
        ha = "left" if nx > 0.6 else "right" if nx < -0.6 else "center"
        n = max(12, int(dist / 0.1))  # a point every tenth of a unit along the arc
        arcs.append([((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1,
                      (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1)
                     for t in (i / n for i in range(2, n - 1))])
        places = []
        for away in (0.12, 0.4):
            for t in (0.5, 0.38, 0.62, 0.28, 0.72):
                bx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1
                by = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1
                places.append((bx + nx * away, by + ny * away, ha, "center"))
        text = _wrap([v + (" ✗" if failed else "") for v in verbs])
        labels.append((text, dict(fontsize=8.5, color=color, zorder=3,
                                  bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                            ec="none", alpha=0.9)), places,
                       len(arcs) - 1))

    for (src, dst), verbs in g.edges.items():
        edge(src, dst, verbs, failed=False)
    for (src, dst), verbs in g.fail_edges.items():
        edge(src, dst, verbs, failed=True)
    drawn = []
    for state, (x, y) in pos.items():
        now = state == current
        drawn.append(ax.text(x, y, state.replace("_", "_\n") if len(state) > 9 else state,
                             ha="center", va="center", fontsize=8.5, fontweight="bold",
                             zorder=4, color=COLORS["text"],
                             bbox=dict(boxstyle="round,pad=0.45",
                                       fc=COLORS["highlight"] if now else "white",
                                       ec=COLORS["warn"] if now else COLORS["server"],
                                       lw=2.5 if now else 1.0)))
        loops = g.loops.get(state, [])
        if loops:
            labels.append(("↻ " + _wrap(loops, 20),
                           dict(fontsize=8, color=COLORS["muted"], zorder=3,
                                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none",
                                          alpha=0.9)),
                           [(x, y - 0.8, "center", "top"), (x, y + 0.55, "center", "bottom"),
                            (x - 0.75, y - 0.45, "right", "top"),
                            (x + 0.75, y - 0.45, "left", "top"),
                            (x - 0.75, y + 0.45, "right", "bottom"),
                            (x + 0.75, y + 0.45, "left", "bottom"),
                            (x, y - 1.2, "center", "top"), (x, y + 0.95, "center", "bottom")],
                           -1))
        if state == "CLOSED" and (g.quits or g.closing):
            why = ["QUIT from every state", "any 221/421 reply", *dict.fromkeys(g.closing)]
            drawn.append(ax.text(x, y + 0.45, "reached by: " + ", ".join(why), ha="center",
                                 va="bottom", fontsize=8.5, color=COLORS["muted"]))
    _place_labels(ax, labels, drawn, arcs)


def _place_labels(ax: Axes,
                  labels: list[tuple[str, dict[str, Any],
                                     list[tuple[float, float, str, str]], int]],
                  drawn: list[Any], arcs: list[list[tuple[float, float]]]) -> None:
    """Put each label at the first of its places that overlaps nothing drawn so far (the
    nodes, the labels placed before it, the arcs it does not name); where every place
    overlaps, at the one that overlaps least. Two orders are tried (the edges' labels
    first, or the nodes' ↻ lists first) and the one that overlaps less is drawn."""
    from matplotlib.backends.backend_agg import RendererAgg

    ax.apply_aspect()  # the axes' final box (an equal aspect shrinks it at drawing time)
    fig = ax.figure
    make_renderer: Callable[..., Any] = RendererAgg  # a renderer to measure text with
    renderer = make_renderer(int(fig.bbox.width), int(fig.bbox.height), fig.dpi)
    # what is in the way, and how much overlapping it costs: a node most, then a label
    nodes = [(t.get_window_extent(renderer).padded(2), 10.0) for t in drawn]
    points = [ax.transData.transform(arc) for arc in arcs]
    texts = [ax.text(p[0][0], p[0][1], text, ha=p[0][2], va=p[0][3], **style)
             for text, style, p, _ in labels]

    def overlap(box: Any, own: int, taken: list[tuple[Any, float]]) -> float:
        # an arc through a label costs as much as a small overlap (its box has a white
        # background, so the arc is hidden there, and the label may seem to name it)
        total = sum(40.0 for i, arc in enumerate(points) if i != own
                    for x, y in arc if box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1)
        for other, weight in taken:
            w = min(box.x1, other.x1) - max(box.x0, other.x0)
            h = min(box.y1, other.y1) - max(box.y0, other.y0)
            if w > 0 and h > 0:
                total += weight * w * h
        return total

    def arrange(order: list[int]) -> tuple[float, dict[int, tuple[float, float, str, str]]]:
        taken, chosen, cost = list(nodes), {}, 0.0
        for n in order:
            label, (_, _, places, own) = texts[n], labels[n]
            best: tuple[float, Any, Any] | None = None
            for place in places:
                label.set_position(place[:2])
                label.update({"ha": place[2], "va": place[3]})
                box = label.get_window_extent(renderer).padded(2)
                score = overlap(box, own, taken)
                if best is None or score < best[0]:
                    best = (score, place, box)
                if score == 0:
                    break
            assert best is not None
            cost += best[0]
            chosen[n] = best[1]
            taken.append((best[2], 3.0))
        return cost, chosen

    edges_first = list(range(len(labels)))
    loops_first = sorted(edges_first, key=lambda n: labels[n][3] >= 0)
    _, chosen = min((arrange(edges_first), arrange(loops_first)), key=lambda a: a[0])
    for n, (x, y, ha, va) in chosen.items():
        texts[n].set_position((x, y))
        texts[n].update({"ha": ha, "va": va})


class StateMachineView(View):
    """The state diagram of ``role`` as a widget that follows a connection.

    ``view.show("MAIL", previous="GREETED", verb="MAIL")`` redraws it with MAIL
    highlighted and the edge just taken in orange; the notebook of the SMTP conversation
    calls it after every step. ``image`` holds the SVG (an HTML widget), ``caption`` the
    text.

    Args:
        role: "server" or "client".
        current: the state to start with.
    """

    def __init__(self, role: str = "server", current: Any = None) -> None:
        import ipywidgets as w

        self.role = role
        self.current = _name(current)
        self.image = html_widget(layout=w.Layout(max_width="100%"))
        self.caption = html_widget()
        self.widget = w.VBox([self.caption, self.image])
        self.show(current)

    def show(self, current: Any, previous: Any = None, verb: str | None = None) -> None:
        """Highlight ``current`` (and the transition from ``previous`` by ``verb``)."""
        self.current = _name(current)
        # small enough that the stepper and its diagram fit one screen (1400 x 1000)
        diagram = state_diagram(self.role, current=current, previous=previous, verb=verb,
                                max_width=8.6)
        self.image.value = inline_svg(diagram.figure)
        text = f"<b>{self.role} state:</b> {self.current or '(not connected)'}"
        if previous is not None and verb:
            text += (f" <span style='color:{COLORS['muted']}'>(after {escape(verb)} in "
                     f"{escape(_name(previous))})</span>")
        self.caption.value = text

    def __repr__(self) -> str:
        return f"StateMachineView(role={self.role!r}, current={self.current!r})"


__all__ = ["LAYOUT", "StateGraph", "StateMachineView", "draw_state_diagram",
           "state_diagram", "state_graph"]
