"""The map of the world: domains, hosts, the DNS server, who can reach whom, and a
delivery played along it step by step.

::

    ui.WorldMap(net)          # the map; ▶ plays the delivery; click a host or a step
    print(ui.world_map_text(net))

What it shows comes from two places only, both read again on every *Refresh* (so the map
follows a learner's edits: a new MX record, a host taken down, a fault rule added):

* the world as data (``world.domains``, ``world.hosts``, ``world.faults``) and, when the
  world runs, where each host listens (``net.hosts``: its loopback address and the real
  port behind each well-known one);
* the world's trace, read through :func:`simsmtp.ui.journey.journey` (the same reading the
  sequence diagram draws): each conversation or DNS question becomes one *step* of the
  delivery (submission, the MX lookup, the SMTP hop, retrieval), each deferral, bounce or
  host taken down a note. Clicking a step shows its conversation in swaks notation
  (:func:`simsmtp.capture.dialogue.render_dialogue`, from the trace).

Who can reach whom, as the world's rules say (RFC 5321 §5: a sender finds the receiver
through the MX records of its domain): a user's mail program reaches the submission
hosts (587, 465) and POP3 hosts (110) of the user's own domain; a host that sends
(``outbound`` or ``client``) asks the DNS (53) and reaches the MX hosts (25) of the other
domains; an MX host that checks SPF, DKIM and DMARC asks the DNS too.

If the trace keeps only its latest events (a bounded window), the steps are those of the
events it still holds; nothing here assumes the trace starts at 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simsmtp.trace import TraceEvent

from .base import View, html_widget, trace_events
from .journey import DNS_LANE, Arrow, Journey, journey, journey_text
from .style import COLORS, HTMLText, callout, escape, html_table, pre, short, text_table

if TYPE_CHECKING:
    from simsmtp.world.model import World

#: What each kind of link is for, with the well-known port (RFC 6409 §3.1 and RFC 8314
#: §3.3: 587/465; RFC 5321 §4.5.4: 25; RFC 1939 §3: 110; RFC 1035 §4.2: 53).
LINK_KINDS: dict[str, str] = {
    "submission": "587/465 submission",
    "smtp": "25 SMTP",
    "dns": "53 DNS",
    "pop3": "110 POP3",
}

#: The colour of each phase on the map (lines only: every text stays dark on light).
PHASE_COLORS: dict[str, str] = {
    "submission": COLORS["client"],
    "mx-lookup": COLORS["dns"],
    "smtp-hop": COLORS["server"],
    "retrieval": COLORS["tls"],
    "note": COLORS["fail"],
}

#: A step's phase, from the journey's phase of its arrows.
_PHASES = {"submission": "submission", "dns": "mx-lookup", "relay": "smtp-hop",
           "smtp": "smtp-hop", "pop3": "retrieval", "delivery": "note"}

#: The words a learner reads for each phase.
PHASE_WORDS: dict[str, str] = {
    "submission": "submission",
    "mx-lookup": "DNS lookup",
    "smtp-hop": "SMTP hop",
    "retrieval": "retrieval",
    "note": "note",
}

_NODE_W, _NODE_GAP, _COL_W, _TOP, _LINE = 196, 30, 262, 64, 14
_TEXT = COLORS["text"]


# ------------------------------------------------------------------------------ the data

@dataclass(frozen=True)
class Node:
    """One box of the map.

    Attributes:
        key: the lane key of the journey (a host name, ``"DNS"``, ``"mua:<address>"``).
        kind: ``"host"``, ``"dns"``, ``"mua"`` or ``"client"`` (an unknown client).
        label: its title.
        domain: the domain it belongs to ("" for the DNS and unknown clients).
        column: 0 senders' programs, 1 sending hosts, 2 the DNS, 3 receiving hosts,
            4 readers' programs.
        lines: what is written under the title (address, ports, roles).
        down: the host is down (refuses connections).
        faults: its fault rules, as text.
    """

    key: str
    kind: str
    label: str
    domain: str = ""
    column: int = 1
    lines: tuple[str, ...] = ()
    down: bool = False
    faults: tuple[str, ...] = ()


@dataclass(frozen=True)
class Link:
    """Who can reach whom: ``source`` connects to ``target`` for ``kind`` (a key of
    :data:`LINK_KINDS`)."""

    source: str
    target: str
    kind: str

    @property
    def label(self) -> str:
        return LINK_KINDS.get(self.kind, self.kind)

    @property
    def short(self) -> str:
        """The label on the map (``587/465``, ``25 SMTP`` …)."""
        return self.label.removesuffix(" submission")


@dataclass(frozen=True)
class Step:
    """One step of what happened: a conversation, a DNS question, or a note.

    Attributes:
        number: 1, 2, … in trace order.
        phase: ``"submission"``, ``"mx-lookup"``, ``"smtp-hop"``, ``"retrieval"`` or
            ``"note"``.
        title: one line (the journey's section title, or the note).
        source: the node that acts (a lane key).
        target: the node it talks to (the same as ``source`` for a note).
        arrows: the journey's arrows of this step.
        error: something failed in it (a 4xx/5xx reply, a refused connection, a bounce).
        server: for a conversation, the host that served it (whose trace has it).
        conn: for a conversation, its connection id (``conn`` of its trace events).
    """

    number: int
    phase: str
    title: str
    source: str
    target: str
    arrows: tuple[Arrow, ...] = ()
    error: bool = False
    server: str = ""
    conn: int | None = None

    def text(self) -> str:
        """``Step 2 · DNS lookup: mail.example.com asks the DNS``."""
        mark = " ✗" if self.error else ""
        return f"Step {self.number} · {PHASE_WORDS[self.phase]}: {self.title}{mark}"


@dataclass
class WorldPicture:
    """Everything the map draws: nodes, links and steps."""

    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    world_name: str = ""

    def node(self, key: str) -> Node | None:
        return next((n for n in self.nodes if n.key == key), None)


def _bare(name: str) -> str:
    return name.rstrip(".").lower()


def _world_and_net(source: Any) -> tuple[World, Any]:
    """(the world, the running network or None) of a World or a Network."""
    from simsmtp.world.model import World

    if isinstance(source, World):
        return source, None
    world = getattr(source, "world", None)
    if isinstance(world, World):
        return world, source
    raise TypeError(f"a world map needs a World or a running world (net), not "
                    f"{type(source).__name__}")


def _mx_hosts(world: World, domain: Any) -> list[str]:
    """The hosts of the world named by ``domain``'s MX records, in preference order."""
    names = [_bare(r.exchange) for r in sorted(domain.mx, key=lambda r: r.preference)]
    return [n for n in names if n in world.hosts]


def _ports_line(host: Any, info: Any) -> str:
    parts = []
    for port in host.ports():
        real = info.ports.get(port) if info is not None else None
        parts.append(f"{port}→{real}" if real else str(port))
    return "ports " + ", ".join(parts) if parts else "no listening ports"


def _host_column(host: Any) -> int:
    if any(r in host.roles for r in ("submission", "outbound", "client")):
        return 1
    return 3


def picture(source: Any) -> WorldPicture:
    """Read the world (and, when given a running world, its addresses and ports) and its
    trace into nodes, links and steps.

    Args:
        source: a running world (``net``: addresses and real ports are shown) or a
            :class:`~simsmtp.world.model.World`.
    """
    world, net = _world_and_net(source)
    pic = WorldPicture(world_name=world.name)
    infos = getattr(net, "hosts", {}) if net is not None else {}
    faults: dict[str, list[str]] = {}
    used_up: dict[str, list[str]] = {}
    from fnmatch import fnmatch

    for rule in world.faults:
        for name in world.hosts:
            if fnmatch(name, rule.host):
                (faults if rule.active else used_up).setdefault(name, []).append(str(rule))

    # the DNS server
    dns_lines = [world.nameserver]
    if net is not None and getattr(net, "dns", None) is not None:
        ip, port = net.dns_address
        dns_lines.append(f"{ip}  port 53→{port}")
    else:
        dns_lines.append("port 53")
    zones = sorted(world.domains)
    dns_lines.append(f"{len(zones)} zone{'s' if len(zones) != 1 else ''}: "
                     + ", ".join(zones))
    pic.nodes.append(Node(DNS_LANE, "dns", "DNS server", "", 2, tuple(dns_lines)))

    # the hosts
    for host in world.hosts.values():
        info = infos.get(host.name)
        lines = [host.domain, f"roles: {', '.join(host.roles) or 'none'}"]
        lines.append(info.ip if info is not None else "(not running)")
        lines.append(_ports_line(host, info))
        if host.down:
            lines.append("DOWN: refuses connections")
        lines += [f"fault: {text_}" for text_ in faults.get(host.name, [])]
        lines += [f"fault used up: {text_}" for text_ in used_up.get(host.name, [])]
        pic.nodes.append(Node(host.name, "host", host.name, host.domain, _host_column(host),
                              tuple(lines), host.down, tuple(faults.get(host.name, []))))

    # the users' mail programs, and the links
    for domain in world.domains.values():
        submission = [h for h in world.hosts.values()
                      if h.domain == domain.name and "submission" in h.roles]
        pop3 = [h for h in world.hosts.values()
                if h.domain == domain.name and "pop3" in h.roles]
        for user in domain.users.values():
            if not submission and not pop3:
                continue
            key = f"mua:{user.address}"
            name = user.name or user.address.partition("@")[0].title()
            pic.nodes.append(Node(key, "mua", f"{name}'s MUA", domain.name,
                                  0 if submission else 4,
                                  (user.address, "a mail program")))
            pic.links += [Link(key, h.name, "submission") for h in submission]
            pic.links += [Link(key, h.name, "pop3") for h in pop3]
    for host in world.hosts.values():
        if "mx" in host.roles and host.policy.mailauth != "off":
            pic.links.append(Link(host.name, DNS_LANE, "dns"))
        if not any(r in host.roles for r in ("outbound", "client")):
            continue
        pic.links.append(Link(host.name, DNS_LANE, "dns"))
        for domain in world.domains.values():
            if world.keeps_mail_for(host, domain.name):
                continue
            for mx in _mx_hosts(world, domain):
                link = Link(host.name, mx, "smtp")
                if mx != host.name and link not in pic.links:
                    pic.links.append(link)

    j = journey(world)
    pic.steps = steps(world, read=j)
    known = {n.key for n in pic.nodes}
    for step in pic.steps:  # a client the world does not know (a learner's own script)
        for key in (step.source, step.target):
            if key not in known:
                pic.nodes.append(Node(key, "client", j.label(key), "", 0,
                                      ("not a host of the world",)))
                known.add(key)
    return pic


def steps(source: Any, *, since: int = 0, read: Any = None) -> list[Step]:
    """The delivery step by step, from the trace (see the module docstring).

    Args:
        source: a world (best), a trace, or a list of events.
        since: ignore events before this trace position.
        read: the :class:`~simsmtp.ui.journey.Journey` of ``source`` if already made.
    """
    events, _ = trace_events(source)
    j = read if read is not None else journey(source, since=since)
    by_seq = {e.seq: e for e in events}
    groups: list[tuple[str, list[Arrow]]] = []
    title = ""
    for arrow in j.arrows:
        if arrow.kind == "section":
            if arrow.phase != "clock":
                title = arrow.label
                groups.append((title, []))
            continue
        if arrow.phase == "delivery" or not groups or arrow.phase != _group_phase(groups[-1]):
            groups.append((arrow.label if arrow.phase == "delivery" else title, []))
        groups[-1][1].append(arrow)
    found: list[Step] = []
    for title, arrows in groups:
        if not arrows:
            continue
        first = arrows[0]
        phase = _PHASES.get(first.phase, "note")
        server, conn = "", None
        if phase in ("submission", "smtp-hop", "retrieval"):
            event = by_seq.get(first.seq)
            if event is not None and isinstance(event.get("conn"), int):
                server, conn = event.host, int(event["conn"])
        source_, target = first.source, first.target
        if first.kind == "reply":  # a conversation starts with the server's greeting
            source_, target = target, source_
        found.append(Step(len(found) + 1, phase, title, source_, target, tuple(arrows),
                          any(a.error for a in arrows), server, conn))
    return found


def _group_phase(group: tuple[str, list[Arrow]]) -> str | None:
    return group[1][0].phase if group[1] else None


def step_transcript(world: World, step: Step) -> str:
    """What a click on ``step`` shows: the conversation in swaks notation (from the
    trace), or the DNS question and answer, or the note."""
    from simsmtp.capture.dialogue import render_dialogue

    if step.conn is not None and step.server:
        events = [e for e in world.trace.events() if e.get("conn") == step.conn]
        if events:
            return render_dialogue(events, step.server, step.conn, names=_names(world))
    return journey_text(Journey(arrows=list(step.arrows)))


def _names(world: World) -> dict[str, str]:
    names: dict[str, str] = {}
    for e in world.trace.events("world.started"):
        for name, ip in (e.get("hosts") or {}).items():
            names.setdefault(str(ip), str(name))
    return names


def host_story(source: Any, key: str, *, limit: int = 12,
               pic: WorldPicture | None = None) -> tuple[str, str]:
    """(HTML, text) of what a click on a node shows: what it is, what it did (its steps),
    its last conversation in swaks notation, and its latest trace events."""
    from .mailbox import dialogue

    world, _ = _world_and_net(source)
    pic = pic if pic is not None else picture(source)
    node = pic.node(key)
    if node is None:
        note = f"{key} is not on the map (any more): press Refresh."
        return callout("note", escape(note)), note
    html_parts = [f"<div style='font-weight:bold;font-size:13px;color:{_TEXT};'>"
                  f"{escape(node.label)}</div>"]
    plain = [node.label]
    facts = [("", line) for line in node.lines]
    labels = {n.key: n.label for n in pic.nodes}
    reach = [f"{lnk.label} → {labels.get(lnk.target, lnk.target)}"
             for lnk in pic.links if lnk.source == key]
    reached = [f"{labels.get(lnk.source, lnk.source)} → {lnk.label}"
               for lnk in pic.links if lnk.target == key]
    rows = [(what, value) for what, value in facts]
    if reach:
        rows.append(("reaches", "; ".join(reach)))
    if reached:
        rows.append(("reached by", "; ".join(reached)))
    html_parts.append(html_table(["", ""], rows))
    plain += [f"  {v}" if not w else f"  {w}: {v}" for w, v in rows]
    mine = [s for s in pic.steps if key in (s.source, s.target)]
    if mine:
        lines = [s.text() for s in mine]
        html_parts.append(pre("\n".join(lines)))
        plain += lines
    else:
        html_parts.append(callout("note", "It has not done anything yet."))
        plain.append("It has not done anything yet.")
    if node.kind == "host":
        served = [s for s in mine if s.server == key and s.conn is not None]
        if served:
            last = step_transcript(world, served[-1])
            title = f"Its last conversation (step {served[-1].number}), as swaks prints it:"
            html_parts.append(f"<div style='margin-top:6px;'><b>{escape(title)}</b></div>")
            html_parts.append(pre(last, max_height="18em"))
            plain += [title, last.rstrip()]
        elif "mx" in world.hosts[key].roles or "submission" in world.hosts[key].roles:
            text_ = dialogue(world, key).strip()
            html_parts.append(pre(text_))
            plain.append(text_)
        rows_ = _recent(world.trace.events(host=key), limit)
        if rows_:
            title = f"Its latest trace events (of {len(world.trace.events(host=key))}):"
            html_parts.append(f"<div style='margin-top:6px;'><b>{escape(title)}</b></div>")
            html_parts.append(pre("\n".join(rows_), max_height="14em"))
            plain += [title, *rows_]
    return "".join(html_parts), "\n".join(plain)


def _recent(events: list[TraceEvent], limit: int) -> list[str]:
    from .tracetable import summarize

    return [short(f"[{e.seq}] {e.kind:<18} {summarize(e)[0]}", 150) for e in events[-limit:]]


# ------------------------------------------------------------------------------ drawing

def _layout(pic: WorldPicture) -> dict[str, tuple[int, int, int, int]]:
    """key -> (x, y, width, height) of each node: the DNS server on top, in the middle;
    below it, left to right, the senders' programs, the sending hosts, the receiving hosts
    and the readers' programs."""
    columns: dict[int, list[Node]] = {}
    for node in pic.nodes:
        columns.setdefault(node.column, []).append(node)
    boxes: dict[str, tuple[int, int, int, int]] = {}
    slots = {0: 0, 1: 1, 3: 2, 4: 3}
    top = _TOP
    for node in columns.get(2, []):
        h = _height(node)
        boxes[node.key] = (int(12 + 1.5 * _COL_W), top, _NODE_W, h)
        top += h + _NODE_GAP
    top += 40
    heights = {c: sum(_height(n) + _NODE_GAP for n in nodes)
               for c, nodes in columns.items() if c != 2}
    tallest = max(heights.values() or [0])
    for column, nodes in columns.items():
        if column == 2:
            continue
        x = 12 + slots.get(column, 0) * _COL_W
        y = top + (tallest - heights[column]) // 2
        for node in nodes:
            h = _height(node)
            boxes[node.key] = (x, y, _NODE_W, h)
            y += h + _NODE_GAP
    return boxes


def _height(node: Node) -> int:
    return 26 + _LINE * len(_display_lines(node))


#: Characters of a line that fit in a node's box.
_LINE_CHARS = 29


def _display_lines(node: Node) -> list[str]:
    """The node's lines as drawn: a list too long for the box (ports, roles, zones) goes
    on over more lines, cut after a comma, rather than losing its end to "…"."""
    out: list[str] = []
    for line in node.lines:
        pieces = line.split(", ")
        current = pieces[0]
        for piece in pieces[1:]:
            if len(current) + 1 + len(piece) <= _LINE_CHARS:
                current += ", " + piece
            else:
                out.append(current + ",")
                current = "  " + piece
        out.append(current)
    return out


def _anchor(box: tuple[int, int, int, int], toward: tuple[int, int, int, int]
            ) -> tuple[float, float]:
    x, y, w, h = box
    tx = toward[0] + toward[2] / 2
    if tx > x + w:
        return x + w, y + h / 2
    if tx < x:
        return x, y + h / 2
    return x + w / 2, (y + h if toward[1] > y else y)


def _clip(text_: str, limit: int = 32) -> str:
    return text_ if len(text_) <= limit else text_[: limit - 1] + "…"


def draw_svg(pic: WorldPicture, current: Step | None = None) -> str:
    """The map as an SVG (fixed pixel size, so its text is drawn at 11-13 px)."""
    boxes = _layout(pic)
    width = max([x + w for x, _, w, _ in boxes.values()] or [400]) + 12
    height = max([y + h for _, y, _, h in boxes.values()] or [200]) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="font-family:DejaVu Sans,sans-serif;'
           f'background:#FFFFFF;" role="img" '
           f'aria-label="map of the world {escape(pic.world_name)}">',
           '<defs><marker id="simsmtp-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>']
    if current is not None:
        color = PHASE_COLORS[current.phase]
        out.append(f'<rect x="8" y="6" width="{width - 16}" height="40" rx="4" '
                   f'fill="{COLORS["background"]}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="18" y="24" font-size="13" font-weight="bold" fill="{_TEXT}">'
                   f'{escape(_clip(current.text(), 110))}</text>')
        detail = _step_line(current)
        out.append(f'<text x="18" y="40" font-size="12" fill="{_TEXT}">'
                   f'{escape(_clip(detail, 130))}</text>')
    else:
        out.append(f'<text x="12" y="28" font-size="13" font-weight="bold" fill="{_TEXT}">'
                   f'{escape(pic.world_name)}: who can reach whom</text>')
    active = {(current.source, current.target)} if current is not None else set()
    for link in pic.links:
        if link.source not in boxes or link.target not in boxes:
            continue
        on = (link.source, link.target) in active or (link.target, link.source) in active
        a = _anchor(boxes[link.source], boxes[link.target])
        b = _anchor(boxes[link.target], boxes[link.source])
        stroke = COLORS["muted"] if not on else PHASE_COLORS[current.phase]  # type: ignore[union-attr]
        dash = ' stroke-dasharray="5,4"' if link.kind == "dns" else ""
        out.append(f'<line x1="{a[0]:.0f}" y1="{a[1]:.0f}" x2="{b[0]:.0f}" y2="{b[1]:.0f}" '
                   f'stroke="{stroke}" stroke-width="{4 if on else 1.3}"{dash} '
                   f'marker-end="url(#simsmtp-arrow)"/>')
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        label = link.short
        lw = 7 * len(label) + 8
        out.append(f'<rect x="{mx - lw / 2:.0f}" y="{my - 9:.0f}" width="{lw}" height="15" '
                   f'rx="3" fill="#FFFFFF" stroke="#DDDDDD"/>')
        out.append(f'<text x="{mx:.0f}" y="{my + 3:.0f}" font-size="11" text-anchor="middle" '
                   f'fill="{_TEXT}">{escape(label)}</text>')
    if current is not None and not any(
            {(lnk.source, lnk.target), (lnk.target, lnk.source)} & active for lnk in pic.links) \
            and current.source != current.target and current.source in boxes \
            and current.target in boxes:  # a step along no link of the world: draw it anyway
        a = _anchor(boxes[current.source], boxes[current.target])
        b = _anchor(boxes[current.target], boxes[current.source])
        out.append(f'<line x1="{a[0]:.0f}" y1="{a[1]:.0f}" x2="{b[0]:.0f}" y2="{b[1]:.0f}" '
                   f'stroke="{PHASE_COLORS[current.phase]}" stroke-width="4" '
                   f'stroke-dasharray="8,5" marker-end="url(#simsmtp-arrow)"/>')
    involved = {current.source, current.target} if current is not None else set()
    for node in pic.nodes:
        x, y, w, h = boxes[node.key]
        border, dash, fill = "#BBBBBB", "", "#FFFFFF"
        if node.kind == "dns":
            border = COLORS["dns"]
        if node.faults:
            border = COLORS["warn"]
        if node.down:
            border, dash = COLORS["fail"], ' stroke-dasharray="6,4"'
        if node.key in involved:
            fill = COLORS["highlight"]
        out.append(f'<g class="simsmtp-map-node" data-key="{escape(node.key)}">'
                   f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" '
                   f'stroke="{border}" stroke-width="{3 if node.down or node.faults else 1.5}"'
                   f'{dash}/>')
        out.append(f'<text x="{x + 8}" y="{y + 18}" font-size="12.5" font-weight="bold" '
                   f'fill="{_TEXT}">{escape(_clip(node.label, 26))}</text>')
        for index, line in enumerate(_display_lines(node)):
            weight = ' font-weight="bold"' if line.startswith(("DOWN", "fault")) else ""
            out.append(f'<text x="{x + 8}" y="{y + 34 + index * _LINE}" font-size="11"'
                       f'{weight} fill="{_TEXT}">{escape(_clip(line, _LINE_CHARS))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _step_line(step: Step) -> str:
    """The step in one line: its commands (or DNS question and answer, or the note)."""
    if step.phase == "note":
        return step.arrows[0].label if step.arrows else step.title
    if step.phase == "mx-lookup":
        return "; ".join(a.label for a in step.arrows)
    verbs: list[str] = []
    for arrow in step.arrows:
        if arrow.kind == "command":
            verb = arrow.label.split(" ")[0].upper()
            if not verbs or verbs[-1] != verb:
                verbs.append(verb)
        elif arrow.kind == "content":
            verbs.append("<message>")
        elif arrow.kind == "tls":
            verbs.append("[TLS]")
    last = next((a.label for a in reversed(step.arrows) if a.kind == "reply"
                 and not a.label.startswith(("221", "+OK mail"))), "")
    return " ".join(verbs) + (f"  →  {last}" if last else "")


def world_map_text(source: Any) -> str:
    """The map as text: nodes, links, and the steps (what ``print`` shows)."""
    pic = picture(source)
    lines = [f"Map of {pic.world_name!r}"]
    rows = [(n.label, " | ".join(n.lines)) for n in pic.nodes]
    lines.append(text_table(["node", "details"], rows))
    lines.append("Who can reach whom:")
    labels = {n.key: n.label for n in pic.nodes}
    lines += [f"  {labels.get(lnk.source, lnk.source)} → {labels.get(lnk.target, lnk.target)}"
              f"  ({lnk.label})" for lnk in pic.links]
    lines.append(f"What happened ({len(pic.steps)} steps):" if pic.steps
                 else "What happened: nothing yet.")
    lines += [f"  {s.text()}" for s in pic.steps]
    return "\n".join(lines)


def world_map(source: Any, step: int | None = None) -> HTMLText:
    """The map as a picture (HTML) and as text, at ``step`` (1, 2, …) if given."""
    pic = picture(source)
    current = pic.steps[step - 1] if step and 0 < step <= len(pic.steps) else None
    return HTMLText(f"<div style='overflow:auto;'>{draw_svg(pic, current)}</div>",
                    world_map_text(source))


# ------------------------------------------------------------------------------ the widget

class WorldMap(View):
    """The map of a running world, with the delivery played along it.

    Args:
        source: the running world (``net``) or a :class:`~simsmtp.world.model.World`.
        step: the step to show first (0: the map alone; -1: the last one).

    Controls (plain widgets, so a test or a curious learner can drive them):
    ``play`` (▶ animates the steps), ``slider`` (the step shown, 0 = none), ``prev_button``
    and ``next_button``, ``step_list`` (click a step: its conversation appears in
    ``detail``), ``host_buttons`` (one per node: what it is, what it did, its last
    conversation), ``refresh_button`` (read the world and the trace again).
    """

    def __init__(self, source: Any, *, step: int = 0) -> None:
        import ipywidgets as w

        self.source = source
        self.world, self.net = _world_and_net(source)
        self.picture = WorldPicture()
        self.svg = html_widget(layout=w.Layout(overflow="auto", width="100%"))
        self.detail = html_widget()
        self.play = w.Play(value=0, min=0, max=0, step=1, interval=1500,
                           description="play the delivery", show_repeat=False)
        self.slider = w.IntSlider(value=0, min=0, max=0, description="step",
                                  style={"description_width": "40px"},
                                  layout=w.Layout(width="320px"))
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.prev_button = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="110px"))
        self.refresh_button = w.Button(description="↻ Refresh",
                                       tooltip="read the world and its trace again",
                                       layout=w.Layout(width="100px"))
        self.step_list = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.hosts_box = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.host_buttons: dict[str, Any] = {}
        self.selected = ""
        self._busy = False
        self.widget = w.VBox([
            w.HBox([self.play, self.slider, self.prev_button, self.next_button,
                    self.refresh_button], layout=w.Layout(flex_flow="row wrap",
                                                          align_items="center")),
            self.svg,
            html_widget("<b>Click a host</b> (what it is, what it did, its last conversation):"),
            self.hosts_box,
            html_widget("<b>Click a step</b> (its conversation, from the trace):"),
            self.step_list,
            self.detail])
        self.widget.add_class("simsmtp-worldmap")
        self.svg.add_class("simsmtp-worldmap-svg")
        self.detail.add_class("simsmtp-worldmap-detail")
        self.slider.observe(self.guarded(lambda change: self.show_step(change["new"])), "value")
        self.step_list.observe(self.guarded(self._picked), "value")
        self.prev_button.on_click(self.guarded(lambda _: self.show_step(self.slider.value - 1)))
        self.next_button.on_click(self.guarded(lambda _: self.show_step(self.slider.value + 1)))
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh()))
        self.refresh()
        if step:
            self.show_step(step if step > 0 else len(self.steps) + 1 + step)

    @property
    def steps(self) -> list[Step]:
        return self.picture.steps

    @property
    def current(self) -> Step | None:
        index = self.slider.value
        return self.steps[index - 1] if 0 < index <= len(self.steps) else None

    def refresh(self) -> None:
        """Read the world (hosts, MX records, faults, hosts down) and its trace again."""
        import ipywidgets as w

        self.world, self.net = _world_and_net(self.source)
        self.picture = picture(self.source)
        keep = self.slider.value
        self._busy = True
        try:
            count = len(self.steps)
            self.play.max = self.slider.max = count
            self.step_list.options = [("(the map alone)", 0)] + [
                (s.text(), s.number) for s in self.steps]
            buttons = {}
            for node in self.picture.nodes:
                button = self.host_buttons.get(node.key)
                if button is None:
                    button = w.Button(layout=w.Layout(width="auto"))
                    button.add_class("simsmtp-worldmap-host")
                    button.on_click(self.guarded(functools.partial(self._host_clicked, node.key)))
                mark = " (down)" if node.down else " (fault)" if node.faults else ""
                button.description = node.label + mark
                button.button_style = "danger" if node.down else \
                    "warning" if node.faults else ""
                buttons[node.key] = button
            self.host_buttons = buttons
            self.hosts_box.children = list(buttons.values())
        finally:
            self._busy = False
        self.show_step(min(keep, len(self.steps)))
        if self.selected and self.selected in self.host_buttons:
            self.show_host(self.selected)

    def show_step(self, number: int) -> None:
        """Show step ``number`` (0: the map alone) on the map and its conversation."""
        number = max(0, min(int(number), len(self.steps)))
        if self._busy:
            return
        self._busy = True
        try:
            self.slider.value = number
            self.play.value = number
            self.step_list.value = number
        finally:
            self._busy = False
        current = self.current
        self.svg.value = draw_svg(self.picture, current)
        if current is None:
            hint = ("Nothing has happened yet: send a message, then press Refresh."
                    if not self.steps else
                    f"{len(self.steps)} steps happened: press ▶ or next, or click a step.")
            if not self.selected:
                self.detail.value = callout("note", escape(hint))
            return
        self.selected = ""
        transcript = step_transcript(self.world, current)
        kind = "fail" if current.error else "note"
        self.detail.value = (callout(kind, f"<b>{escape(current.text())}</b><br>"
                                           f"{escape(_step_line(current))}")
                             + pre(transcript, max_height="22em"))

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._busy and change["new"] is not None:
            self.show_step(int(change["new"]))

    def _host_clicked(self, key: str, _button: Any) -> None:
        self.show_host(key)

    def show_host(self, key: str) -> None:
        """What a click on a host (or the DNS, or a mail program) shows in ``detail``."""
        self.selected = key
        html_, _ = host_story(self.source, key, pic=self.picture)
        self.detail.value = html_

    def __repr__(self) -> str:
        hosts = sum(1 for n in self.picture.nodes if n.kind == "host")
        current = self.current
        at = f", showing {current.text()}" if current is not None else ""
        return (f"WorldMap({self.picture.world_name!r}: {hosts} hosts, "
                f"{len(self.picture.links)} links, {len(self.steps)} steps{at})")


__all__ = ["LINK_KINDS", "Link", "Node", "Step", "WorldMap", "WorldPicture", "draw_svg",
           "host_story", "picture", "step_transcript", "steps", "world_map",
           "world_map_text"]
