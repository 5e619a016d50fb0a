"""The trace as a journey: who said what to whom, as arrows between lanes (pure).

A *lane* is a participant: a mail program (MUA), a host of the world, or the world's DNS
server. Each server-side conversation in the trace (SMTP on 25, submission on 587/465,
POP3 on 110) becomes a section of arrows: the TCP connect, the greeting, each command and
its reply, the TLS handshake, the message content. The outbound agent's DNS lookups
(``dns.lookup``), failed connects, deferrals and bounces become arrows and notes too.

How the order is chosen: conversations are drawn whole, in the order they began. Real
conversations overlap (the relay starts delivering while Alice's program is still saying
QUIT); drawing them interleaved would make the diagram differ from run to run, and whole
conversations are what a learner reads. Within a conversation the order is exactly the
order the server processed the lines (with PIPELINING the client sent several at once).

Nothing here parses the protocol: every label comes from the trace's events.

>>> from simsmtp.trace import Trace
>>> t = Trace()
>>> _ = t.record("dns.lookup", "mail.example.com", qname="anotherdomain.org", qtype="MX",
...              status="ok", records=["10 mail.anotherdomain.org"], error="")
>>> print(journey_text(journey(t)))
== mail.example.com asks the DNS ==
mail.example.com → DNS             MX? anotherdomain.org
DNS → mail.example.com             MX 10 mail.anotherdomain.org
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from simsmtp.trace import TraceEvent

from .base import left_out, trace_events

if TYPE_CHECKING:
    from simsmtp.world.model import World

#: The service names of the trace and the well-known ports a learner knows them by:
#: RFC 5321 §4.5.4 (25), RFC 6409 §3.1 (587), RFC 8314 §3.3 (465), RFC 1939 §3 (110).
PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110}

#: Lane of the world's DNS server.
DNS_LANE = "DNS"

#: Arrow kinds (what the sequence diagram draws differently).
KINDS = ("section", "connect", "command", "reply", "content", "tls", "dns-query",
         "dns-answer", "failed", "note")

_CONVERSATION_KINDS = {"tcp.connect", "smtp.command", "smtp.reply", "smtp.message",
                       "tls.handshake", "tls.failed", "smtp.discarded", "pop3.command",
                       "pop3.reply", "pop3.discarded"}
_AUTH = re.compile(r"^(AUTH\s+\S+)\s+\S+.*$", re.IGNORECASE)
_PASS = re.compile(r"^(PASS)\s+.*$", re.IGNORECASE)


@dataclass(frozen=True)
class Arrow:
    """One row of a sequence diagram.

    Attributes:
        source: the lane it starts from ("" for a section title).
        target: the lane it points to (the same as ``source`` for a note).
        label: what it says (a command, a reply's first line, a DNS answer …).
        kind: one of :data:`KINDS`.
        phase: "submission", "relay", "smtp", "pop3", "dns" or "delivery".
        tls: sent inside TLS.
        code: the reply code (SMTP) when the arrow is a reply.
        error: a failure (4xx/5xx reply, ``-ERR``, a refused connection, a bounce).
        clock: the world's virtual clock (seconds since the epoch of the world).
        seq: the trace position of the event it comes from.
    """

    source: str
    target: str
    label: str
    kind: str
    phase: str = ""
    tls: bool = False
    code: int | None = None
    error: bool = False
    clock: float = 0.0
    seq: int = 0


@dataclass
class Journey:
    """Lanes (left to right) and arrows (top to bottom).

    Attributes:
        lanes: the lane keys in drawing order.
        labels: lane key -> the title shown above it.
        arrows: the rows, sections included.
        epoch: the world's epoch (for clock times), when known.
        left_out: "N older events were left out …" when the trace's window no longer
            held them all ("" otherwise).
    """

    lanes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    arrows: list[Arrow] = field(default_factory=list)
    epoch: datetime | None = None
    left_out: str = ""

    def label(self, lane: str) -> str:
        """The title of ``lane``."""
        return self.labels.get(lane, lane)


@dataclass
class _Item:
    """A conversation or a standalone event, before it becomes arrows."""

    first: int
    events: list[TraceEvent]
    host: str = ""
    service: str = ""
    conn: Any = None
    peer_ip: str = ""
    last: int = 0

    @property
    def is_conversation(self) -> bool:
        return bool(self.service)


def mask(line: str) -> str:
    """A command line with its secret masked (``AUTH PLAIN ***``, ``PASS ***``).

    The cores already record these masked; this is a second lock on the same door.
    """
    if _AUTH.match(line):
        return _AUTH.sub(r"\1 ***", line)
    if _PASS.match(line):
        return _PASS.sub(r"\1 ***", line)
    return line


def first_line(text: str) -> str:
    """The first line of a (multi-line) reply, with how many lines follow."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    head = lines[0]
    if len(head) > 3 and head[3] == "-":  # 250-mail.example.com
        head = head[:3] + " " + head[4:]
    return f"{head} (+{len(lines) - 1} lines)"


def _user_label(address: str, world: World | None) -> str:
    user = world.user(address) if world is not None else None
    name = user.name if user is not None and user.name else address.partition("@")[0].title()
    return f"{name}'s MUA"


def _ip_of(peer: str) -> str:
    return peer.rpartition(":")[0] or peer


def journey(source: Any, *, since: int = 0, until: int | None = None,
            phases: Iterable[str] | None = None, detail: str = "full") -> Journey:
    """Turn a world's trace into lanes and arrows.

    Args:
        source: a :class:`~simsmtp.world.model.World` (best: it names the users), a
            :class:`~simsmtp.trace.Trace` or a list of events.
        since: ignore events before this trace position (``len(world.trace)`` taken before
            an experiment shows only that experiment).
        until: ignore events from this position on.
        phases: keep only these phases ("submission", "relay", "smtp", "pop3", "dns",
            "delivery").
        detail: ``"full"`` (every line) or ``"summary"`` (one arrow each way per
            conversation).
    """
    if detail not in ("full", "summary"):
        raise ValueError(f"detail must be 'full' or 'summary', not {detail!r}")
    events, world = trace_events(source)
    names: dict[str, str] = {}
    for event in events:
        if event.kind == "world.started":
            for name, ip in (event.get("hosts") or {}).items():
                names.setdefault(str(ip), str(name))
    events = [e for e in events if e.seq >= since and (until is None or e.seq < until)]
    items = _items(events)
    builder = _Builder(world, names)
    wanted = set(phases) if phases is not None else None
    for item in items:
        builder.add(item, detail, wanted)
    done = builder.finish()
    done.left_out = left_out(source, since)
    return done


def _items(events: list[TraceEvent]) -> list[_Item]:
    conversations: dict[tuple[str, Any], _Item] = {}
    standalone: list[_Item] = []
    attachable: list[TraceEvent] = []
    for event in events:
        if event.kind in _CONVERSATION_KINDS and event.get("role") != "client" \
                and event.get("conn") is not None and event.get("service") in PORTS:
            key = (event.host, event.get("conn"))
            item = conversations.get(key)
            if item is None:
                item = conversations[key] = _Item(event.seq, [], event.host,
                                                  str(event.get("service")), event.get("conn"))
            if not item.peer_ip and event.get("peer"):
                item.peer_ip = _ip_of(str(event.get("peer")))
            item.events.append(event)
            item.last = event.seq
        elif event.kind == "fault.fired" or (event.kind == "delivery.stored"
                                             and not event.get("bounce")):
            attachable.append(event)
        elif event.kind in ("dns.lookup", "delivery.connect_failed", "delivery.skip",
                            "delivery.deferred", "delivery.bounce", "delivery.expired",
                            "delivery.stored", "tls.fallback", "tls.required_failed",
                            "host.down", "host.up"):
            standalone.append(_Item(event.seq, [event], event.host, last=event.seq))
    # server-side notes belong inside the conversation the server was having
    for event in attachable:
        inside = [c for c in conversations.values()
                  if c.host == event.host and c.first <= event.seq <= c.last + 1]
        if inside:
            target = max(inside, key=lambda c: c.first)
            target.events.append(event)
            target.events.sort(key=lambda e: e.seq)
        else:
            standalone.append(_Item(event.seq, [event], event.host, last=event.seq))
    return sorted([*conversations.values(), *standalone], key=lambda i: i.first)


class _Builder:
    def __init__(self, world: World | None, names: dict[str, str]) -> None:
        self.world = world
        self.names = names
        self.journey = Journey(epoch=world.epoch if world is not None else None)
        self.rank: dict[str, tuple[int, int]] = {}
        self.clock: float | None = None
        self.last_section = ""
        self.dns_host = ""

    # -- lanes ----------------------------------------------------------------------------
    def lane(self, key: str, label: str, rank: int) -> str:
        if key not in self.rank:
            self.rank[key] = (rank, len(self.rank))
            self.journey.labels[key] = label
        elif rank < self.rank[key][0]:
            self.rank[key] = (rank, self.rank[key][1])
        return key

    def host_lane(self, name: str, rank: int) -> str:
        return self.lane(name, name, rank)

    # -- output ---------------------------------------------------------------------------
    def emit(self, arrow: Arrow) -> None:
        if arrow.kind != "section" and (self.clock is None or arrow.clock != self.clock):
            if self.clock is not None:
                self.journey.arrows.append(Arrow("", "", self.clock_title(arrow.clock),
                                                 "section", "clock", clock=arrow.clock,
                                                 seq=arrow.seq))
                self.last_section = ""
            self.clock = arrow.clock
        self.journey.arrows.append(arrow)

    def section(self, title: str, phase: str, event: TraceEvent) -> None:
        if title != self.last_section:
            self.emit(Arrow("", "", title, "section", phase, clock=event.clock, seq=event.seq))
            self.last_section = title

    def clock_title(self, clock: float) -> str:
        delta = clock - (self.clock or 0.0)
        ahead = _duration(delta)
        if self.journey.epoch is not None:
            when = (self.journey.epoch + timedelta(seconds=clock)).strftime("%H:%M:%S")
            return f"virtual clock {when} ({ahead} later)"
        return f"virtual clock +{clock:g} s ({ahead} later)"

    # -- items ----------------------------------------------------------------------------
    def add(self, item: _Item, detail: str, wanted: set[str] | None) -> None:
        if item.is_conversation:
            self.conversation(item, detail, wanted)
        else:
            self.standalone(item.events[0], wanted)

    def client_of(self, item: _Item) -> tuple[str, str, int]:
        """(lane key, label, rank) of the client of a server conversation."""
        name = self.names.get(item.peer_ip)
        if name and name != item.host:
            return name, name, 1
        if item.service == "pop3":
            user = next((str(e.get("line", ""))[5:].strip() for e in item.events
                         if e.kind == "pop3.command"
                         and str(e.get("line", "")).upper().startswith("USER ")), "")
            domain = self._domain(item.host)
            address = user if "@" in user else f"{user}@{domain}" if user else ""
            if address:
                return f"mua:{address}", _user_label(address, self.world), 4
            return "mua:pop3", "mail program", 4
        sender = next((str(e.get("sender")) for e in item.events
                       if e.kind == "smtp.message" and e.get("sender")), "")
        if not sender:
            sender = next((_path(str(e.get("line", ""))) for e in item.events
                           if e.kind == "smtp.command"
                           and str(e.get("line", "")).upper().startswith("MAIL FROM:")), "")
        if item.service in ("submission", "smtps") and sender:
            return f"mua:{sender}", _user_label(sender, self.world), 0
        ehlo = next((str(e.get("line", "")).split(" ")[1] for e in item.events
                     if e.kind == "smtp.command"
                     and str(e.get("line", "")).upper().startswith(("EHLO ", "HELO "))), "")
        if ehlo:  # the name the client gave itself (a mail program names its machine)
            what = "a mail program" if item.service in ("submission", "smtps") else \
                (item.peer_ip or "a client")
            return f"client:{ehlo}", f"{ehlo} ({what})", 0
        return f"client:{item.peer_ip}", f"a client ({item.peer_ip})" if item.peer_ip \
            else "a client", 0

    def _domain(self, host: str) -> str:
        if self.world is not None:
            try:
                return self.world.host(host).domain
            except KeyError:
                pass
        return host.partition(".")[2]

    def conversation(self, item: _Item, detail: str, wanted: set[str] | None) -> None:
        client, client_label, client_rank = self.client_of(item)
        if item.service in ("submission", "smtps"):
            phase = "submission"
        elif item.service == "pop3":
            phase = "pop3"
        else:
            phase = "relay" if client_rank == 1 else "smtp"
        if wanted is not None and phase not in wanted:
            return
        server_rank = 1 if phase == "submission" else 3
        client = self.lane(client, client_label, client_rank)
        server = self.host_lane(item.host, server_rank)
        port = PORTS[item.service]
        who = self.journey.label(client)
        sends = any(e.kind == "smtp.message" for e in item.events)
        title = {
            "submission": f"{who} submits a message to {item.host} (port {port})",
            "relay": f"{who} relays a message to {item.host} (port {port})",
            "pop3": f"{who} fetches mail from {item.host} (POP3, port {port})",
        }.get(phase, "") if sends or phase == "pop3" else ""
        title = title or f"{who} talks SMTP to {item.host} (port {port})"
        self.section(title, phase, item.events[0])
        if detail == "summary":
            self.summary(item, client, server, phase)
            return
        held: list[Arrow] = []  # "stored" is recorded before the message event: show after
        for event in item.events:
            for arrow in self.conversation_arrows(event, item, client, server, phase):
                if arrow.kind == "note" and event.kind == "delivery.stored":
                    held.append(arrow)
                    continue
                self.emit(arrow)
                if arrow.kind == "content":
                    for note in held:
                        self.emit(note)
                    held = []
        for note in held:
            self.emit(note)
        self.last_section = ""

    def conversation_arrows(self, e: TraceEvent, item: _Item, client: str, server: str,
                            phase: str) -> list[Arrow]:
        tls = bool(e.get("tls"))
        kind = e.kind
        base: dict[str, Any] = dict(phase=phase, tls=tls, clock=e.clock, seq=e.seq)
        if kind == "tcp.connect":
            extra = " (TLS at once)" if item.service == "smtps" else ""
            return [Arrow(client, server, f"connect to port {PORTS[item.service]}{extra}",
                          "connect", **base)]
        if kind in ("smtp.command", "pop3.command"):
            return [Arrow(client, server, mask(str(e.get("line", ""))), "command", **base)]
        if kind in ("smtp.reply", "pop3.reply"):
            text = str(e.get("text", ""))
            code = e.get("code")
            if code is None and text[:3].isdigit():
                code = int(text[:3])
            error = text.startswith("-ERR") or (isinstance(code, int) and code >= 400)
            return [Arrow(server, client, first_line(text), "reply", code=code, error=error,
                          **base)]
        if kind == "smtp.message":
            return [Arrow(client, server, f"the message ({e.get('size')} octets), "
                          "then <CRLF>.<CRLF>", "content", **base)]
        if kind == "tls.handshake":
            base["tls"] = True
            return [Arrow(client, server, f"TLS handshake: {e.get('version')} "
                          f"{e.get('cipher')}", "tls", **base)]
        if kind == "tls.failed":
            return [Arrow(client, server, f"TLS handshake failed: {e.get('reason')}",
                          "failed", error=True, **base)]
        if kind in ("smtp.discarded", "pop3.discarded"):
            return [Arrow(server, server, f"discarded {e.get('octets')} octets sent before "
                          "TLS (RFC 3207 §4.2)", "note", **base)]
        if kind == "fault.fired":
            return [Arrow(server, server, f"fault rule fires at {e.get('command')}", "note",
                          **base)]
        if kind == "delivery.stored":
            return [Arrow(server, server, f"stored in {e.get('recipient')}'s mailbox",
                          "note", **base)]
        return []

    def summary(self, item: _Item, client: str, server: str, phase: str) -> None:
        # the commands in clear, then (after STARTTLS/STLS) those inside TLS: one arrow each
        handshake = next((e.seq for e in item.events if e.kind == "tls.handshake"), None)
        groups: dict[bool, list[str]] = {False: [], True: []}
        firsts: dict[bool, TraceEvent] = {}
        for e in item.events:
            inside = handshake is not None and (e.seq > handshake or bool(e.get("tls")))
            verbs = groups[inside]
            if e.kind in ("smtp.command", "pop3.command"):
                verb = str(e.get("line", "")).split(" ")[0].upper()
                if not verbs or verbs[-1] != verb:
                    verbs.append(verb)
                firsts.setdefault(inside, e)
            elif e.kind == "smtp.message":
                verbs.append("<message>")
        first = item.events[0]
        if not groups[False] and not groups[True]:
            groups[False] = ["connect"]
        for inside in (False, True):
            if groups[inside]:
                start = firsts.get(inside, first)
                self.emit(Arrow(client, server, " ".join(groups[inside]), "command", phase,
                                tls=inside, clock=start.clock, seq=start.seq))
        replies = [e for e in item.events if e.kind in ("smtp.reply", "pop3.reply")]
        errors = [e for e in replies if str(e.get("text", "")).startswith(("4", "5", "-ERR"))]
        after_message = [r for m in item.events if m.kind == "smtp.message"
                         for r in replies if r.seq > m.seq][:1]
        commands = [e for e in item.events if e.kind in ("smtp.command", "pop3.command")]
        if commands and str(commands[-1].get("line", "")).upper() == "QUIT":
            replies = [r for r in replies if r.seq < commands[-1].seq] or replies
        # the outcome: the message's reply, else the last reply; a session that went on
        # after a refusal and ended well is not a failure (the refusals are counted)
        chosen = (after_message or replies[-1:])[:1]
        for r in chosen:
            text = str(r.get("text", ""))
            label = first_line(text)
            refused = [e for e in errors if e.seq < r.seq]
            failed = r in errors
            if refused and not failed:
                codes = ", ".join(dict.fromkeys(str(e.get("text", ""))[:3] for e in refused))
                label += f" (after {len(refused)} refused: {codes})"
            inside = handshake is not None and r.seq > handshake
            self.emit(Arrow(server, client, label, "reply", phase, tls=inside,
                            code=int(text[:3]) if text[:3].isdigit() else None,
                            error=failed, clock=r.clock, seq=r.seq))

    def standalone(self, e: TraceEvent, wanted: set[str] | None) -> None:
        phase = "dns" if e.kind == "dns.lookup" else "delivery"
        if wanted is not None and phase not in wanted:
            return
        base: dict[str, Any] = dict(phase=phase, clock=e.clock, seq=e.seq)
        host = e.host
        if e.kind == "dns.lookup":
            me = self.host_lane(host, 1)
            dns = self.lane(DNS_LANE, DNS_LANE, 2)
            self.section(f"{host} asks the DNS", "dns", e)
            qtype, qname = e.get("qtype"), e.get("qname")
            self.emit(Arrow(me, dns, f"{qtype}? {qname}", "dns-query", **base))
            status = e.get("status")
            records = list(e.get("records") or [])
            if status == "ok" and records:
                answer = ", ".join(f"{qtype} {r}" for r in records)
                error = False
            else:
                answer = {"nxdomain": "NXDOMAIN: no such domain",
                          "nodata": f"no {qtype} record (NODATA)"}.get(
                    str(status), f"no answer ({status}: {e.get('error')})")
                error = status != "nodata"
            self.emit(Arrow(dns, me, answer, "dns-answer", error=error, **base))
            return
        self.last_section = ""
        if e.kind == "delivery.connect_failed":
            me = self.host_lane(host, 1)
            mx = self.host_lane(str(e.get("mx")), 3)
            self.emit(Arrow(me, mx, "connect to port 25: no answer (host down)", "failed",
                            error=True, **base))
        elif e.kind == "delivery.skip":
            me = self.host_lane(host, 1)
            self.emit(Arrow(me, me, f"skips {e.get('mx')}: {e.get('reason')}", "note",
                            error=True, **base))
        elif e.kind == "delivery.deferred":
            me = self.host_lane(host, 1)
            self.emit(Arrow(me, me, f"deferred {e.get('recipient')} ({e.get('status')}): "
                            f"retry in {_duration(float(e.get('retry_in') or 0))}", "note",
                            error=True, **base))
        elif e.kind in ("delivery.bounce", "delivery.expired"):
            me = self.host_lane(host, 1)
            self.emit(Arrow(me, me, f"gives up on {e.get('recipient')} "
                            f"({e.get('status', '4.4.7')}): a bounce goes to the sender",
                            "note", error=True, **base))
        elif e.kind == "delivery.stored":
            me = self.host_lane(host, 1 if e.get("bounce") else 3)
            what = "the bounce (DSN)" if e.get("bounce") else "the message"
            self.emit(Arrow(me, me, f"stores {what} in {e.get('recipient')}'s mailbox",
                            "note", **base))
        elif e.kind in ("tls.fallback", "tls.required_failed"):
            me = self.host_lane(host, 1)
            self.emit(Arrow(me, me, f"{e.kind}: {e.get('reason')}", "note", error=True,
                            **base))
        elif e.kind in ("host.down", "host.up"):
            lane = self.host_lane(host, 3)
            what = "taken down: refuses connections" if e.kind == "host.down" \
                else "back up"
            self.emit(Arrow(lane, lane, what, "note", error=e.kind == "host.down", **base))

    def finish(self) -> Journey:
        self.journey.lanes = sorted(self.rank, key=lambda k: self.rank[k])
        return self.journey


def _path(line: str) -> str:
    start, end = line.find("<"), line.find(">")
    return line[start + 1:end] if 0 <= start < end else ""


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def journey_text(source: Any, **kw: Any) -> str:
    """The journey as text, one arrow per line (what the diagram draws).

    Args:
        source: a :class:`Journey`, or anything :func:`journey` takes (then ``kw`` go to it).
    """
    j = source if isinstance(source, Journey) else journey(source, **kw)
    lines = [j.left_out] if j.left_out else []
    width = max([len(j.label(a.source)) + len(j.label(a.target)) + 3
                 for a in j.arrows if a.kind != "section"] or [0])
    for a in j.arrows:
        if a.kind == "section":
            lines.append(f"== {a.label} ==")
            continue
        lock = "[TLS] " if a.tls and a.kind != "tls" else ""
        if a.source == a.target:
            who = f"{j.label(a.source)} (note)"
        else:
            who = f"{j.label(a.source)} → {j.label(a.target)}"
        mark = " ✗" if a.error else ""
        lines.append(f"{who.ljust(max(width, 34))} {lock}{a.label}{mark}")
    return "\n".join(lines)


def lanes_text(j: Journey) -> Sequence[str]:
    """The lane titles, left to right."""
    return [j.label(k) for k in j.lanes]


__all__ = ["DNS_LANE", "KINDS", "PORTS", "Arrow", "Journey", "first_line", "journey",
           "journey_text", "lanes_text", "mask"]
