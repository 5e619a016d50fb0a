"""The same message twice, in plaintext and with STARTTLS, side by side.

::

    ui.SideBySide(net)                     # the latest plaintext and STARTTLS relays
    print(ui.side_by_side_text(net))

Two captured connections (``net.tap``: the bytes as they crossed the sockets) are taken
apart by :func:`simsmtp.capture.transcript.view_connection` and paired into protocol steps
(:func:`simsmtp.capture.transcript.pair_turns`): the greeting, EHLO, STARTTLS, the TLS
handshake, MAIL, RCPT, DATA, the message, QUIT. The two lists of steps are aligned by
step (a step only one side has, such as STARTTLS, faces an empty cell), and each cell
says what an eavesdropper on the wire reads there: the line itself in plaintext; under
TLS only a record and its size.

Which encrypted record carries which step is known only with the session keys: the view
reads the world's key log for that (the teacher's knowledge, as Wireshark with
``tls.keylog_file``) and says so; untick the box and the right column is exactly what
the eavesdropper has, records without names. What still leaks under TLS is read by the
eavesdropper's own code (:func:`simsmtp.capture.eavesdropper.eavesdrop`, without keys):
the addresses of both hosts, the greeting, the EHLO name and the capabilities sent before
STARTTLS, the SNI and the offered cipher suites, the sizes (the message's size shows
through its records) and the timing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .base import View, html_widget
from .style import COLORS, HTMLText, Raw, callout, escape, html_table, plural

#: Backgrounds of the cells (text on them stays dark: WCAG AA contrast).
_CLEAR_BG = "#FBE3D6"   # read in clear
_HIDDEN_BG = "#DDF2EA"  # only a TLS record
_TEXT = COLORS["text"]
_SUBTLE = COLORS["server"]  # secondary text: #444 on white is 9.7:1

#: How many lines of the message a cell shows.
_MESSAGE_LINES = 6


@dataclass(frozen=True)
class WireStep:
    """One protocol step of a captured connection.

    Attributes:
        key: what the step is, for the alignment (``greeting``, ``EHLO``, ``EHLO reply``,
            ``STARTTLS``, ``TLS handshake``, ``MAIL``, ``message``, ``QUIT reply`` …).
        direction: ``c2s`` or ``s2c``.
        lines: the lines of the step (decrypted ones too, when the keys were used).
        clear: the eavesdropper reads it (it crossed in plaintext).
        octets: bytes on the wire: the lines in plaintext, the records under TLS.
        records: under TLS, how many records carried it (0: it shared the record of the
            step before, as pipelined commands do).
        named: under TLS, the step is named from the key log (the eavesdropper could not).
    """

    key: str
    direction: str
    lines: tuple[str, ...] = ()
    clear: bool = True
    octets: int = 0
    records: int = 0
    named: bool = True


@dataclass
class Capture:
    """One connection taken apart into steps, with what the eavesdropper found."""

    title: str
    connection: Any
    steps: list[WireStep] = field(default_factory=list)
    findings: Any = None
    tls: bool = False
    octets: dict[str, int] = field(default_factory=dict)
    duration: float | None = None

    @property
    def message_octets(self) -> int:
        return sum(s.octets for s in self.steps if s.key == "message")


def _verb(line: str) -> str:
    words = line.split()
    return words[0].upper() if words else ""


def _turn_steps(turns: list[Any], *, first_reply: str = "greeting") -> list[WireStep]:
    """Steps of plaintext (or decrypted) turns; ``lines`` as :func:`show_line` shows them."""
    from simsmtp.capture.transcript import show_line

    steps: list[WireStep] = []
    last = ""
    for turn in turns:
        lines = tuple(show_line(line) for line in turn.lines)
        if turn.kind == "command":
            last = _verb(lines[0]) if lines else ""
            key = last
        elif turn.kind == "content":
            key = "message" if turn.direction == "c2s" else f"{last} content"
            last = "end of data" if turn.direction == "c2s" else last
        else:
            key = f"{last} reply" if last else first_reply
        steps.append(WireStep(key, turn.direction, lines, True, len(turn.text)))
    return steps


def _ranges(view: Any, direction: str) -> list[tuple[int, int, int]]:
    """(start, end, wire size) in the decrypted stream of each application_data record."""
    out: list[tuple[int, int, int]] = []
    if view.decryption is None or view.tls is None:
        return out
    position = 0
    for index, record in enumerate(view.tls.records(direction)):
        inner = view.decryption.records.get((direction, index))
        if inner is not None and inner[0] == 23:
            out.append((position, position + len(inner[1]), record.size))
            position += len(inner[1])
    return out


def capture_steps(tap: Any, conn: Any, *, keylog: Any = None, title: str = "") -> Capture:
    """Take one captured connection apart into :class:`WireStep` s.

    Args:
        tap: the capture (``net.tap``).
        conn: the :class:`~simsmtp.traffic.Connection`.
        keylog: a :class:`~simsmtp.capture.tlsinspect.KeyLog`: name the encrypted steps.
        title: how to call the connection.
    """
    from simsmtp.capture.eavesdropper import eavesdrop
    from simsmtp.capture.transcript import pair_turns, view_connection

    segments = tap.segments(conn.id)
    view = view_connection(conn, segments, keylog)
    protocol = view.protocol if view.protocol in ("smtp", "pop3") else "smtp"
    capture = Capture(title, conn, findings=eavesdrop(tap, conn.id), tls=view.tls is not None)
    capture.octets = {d: len(data) for d, data in view.streams.items()}
    if conn.closed_at is not None:
        capture.duration = conn.closed_at - conn.opened_at
    plain = pair_turns(view.plaintext("c2s"), view.plaintext("s2c"), protocol,
                       server_first=True)
    capture.steps = _turn_steps(plain)
    if view.tls is None:
        return capture
    records = {d: view.tls.records(d) for d in ("c2s", "s2c")}
    opened = view.decryption.records if view.decryption is not None else {}
    inner_type = {key: value[0] for key, value in opened.items()}
    keyed = bool(opened)
    # the handshake: the records that are not application data (with the keys: inside)
    hand = [r for d in ("c2s", "s2c") for i, r in enumerate(records[d])
            if r.content_type != 23 or inner_type.get((d, i)) == 22]
    capture.steps.append(WireStep(
        "TLS handshake", "c2s", (f"{len(hand)} records: ClientHello, ServerHello, …",),
        False, sum(r.size for r in hand), len(hand)))
    if not keyed:  # what the eavesdropper has: application_data records, in wire order
        for item in view.items:
            if item.kind == "record" and item.record is not None \
                    and item.record.content_type == 23:
                capture.steps.append(WireStep("encrypted record", item.direction, (), False,
                                              item.record.size, 1, named=False))
        return capture
    implicit = view.tls_offsets["c2s"] == 0
    decryption = view.decryption
    assert decryption is not None
    inner = pair_turns(decryption.plaintext["c2s"], decryption.plaintext["s2c"],
                       protocol, server_first=implicit)
    ranges = {d: _ranges(view, d) for d in ("c2s", "s2c")}
    position = {"c2s": 0, "s2c": 0}
    used: dict[str, set[int]] = {"c2s": set(), "s2c": set()}
    seen_keys: set[str] = {s.key for s in capture.steps}
    for step in _turn_steps(inner):
        d = step.direction
        key = step.key if step.key not in seen_keys else f"{step.key} (again, inside TLS)"
        start = position[d]
        end = start + step.octets  # the turn's own bytes in the decrypted stream
        position[d] = end
        carrying = [n for n, (a, b, _) in enumerate(ranges[d]) if a < end and b > start]
        fresh = [n for n in carrying if n not in used[d]]
        used[d].update(carrying)
        size = sum(ranges[d][n][2] for n in fresh)
        capture.steps.append(WireStep(key, d, step.lines, False, size, len(fresh)))
    alerts = [r for d in ("c2s", "s2c") for i, r in enumerate(records[d])
              if inner_type.get((d, i)) == 21]
    if alerts:
        capture.steps.append(WireStep("TLS close", "c2s", ("close_notify alerts",), False,
                                      sum(r.size for r in alerts), len(alerts)))
    return capture


@dataclass(frozen=True)
class Row:
    """One aligned row: the step, and each side's step (None: that side has no such step)."""

    key: str
    plain: WireStep | None
    tls: WireStep | None


def align(plain: list[WireStep], tls: list[WireStep]) -> list[Row]:
    """Pair the steps of two captures by protocol step (a longest-common-subsequence of
    their keys, as ``diff`` does); a step one side lacks faces ``None``."""
    a = [s.key for s in plain]
    b = [s.key for s in tls]
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [Row(plain[i].key, plain[i], tls[j])
                     for i, j in zip(range(i1, i2), range(j1, j2), strict=True)]
            continue
        rows += [Row(p.key, p, None) for p in plain[i1:i2]]  # keys differ: one side only
        rows += [Row(t.key, None, t) for t in tls[j1:j2]]
    return rows


# ------------------------------------------------------------------------------ choosing

def _is_tls(net: Any, conn: Any) -> bool:
    """Did this connection turn to TLS (STARTTLS, or TLS from the first byte)?"""
    from simsmtp.capture.tlsinspect import tls_start

    starts = tls_start(net.tap.stream(conn.id, "c2s"), net.tap.stream(conn.id, "s2c"))
    return starts != (None, None)


def pick(net: Any, *, tls: bool, service: str = "smtp") -> Any:
    """The latest captured connection of ``service`` with (or without) TLS."""
    from .wire import connections

    found = [c for c in connections(net, services=[service]) if _is_tls(net, c) == tls]
    if not found:
        what = "with STARTTLS" if tls else "in plaintext"
        raise LookupError(f"no {service} connection {what} in the capture yet")
    return found[-1]


def _ends(conn: Any) -> tuple[str, str]:
    return conn.client[0], conn.server[0]


def pick_pair(net: Any, service: str = "smtp") -> tuple[Any, Any]:
    """(plaintext, STARTTLS): the latest plaintext connection of ``service`` and the latest
    STARTTLS one on the same path (same client and server addresses), so the two carry
    the same kind of message between the same hosts; else the latest of each."""
    from .wire import connections

    found = connections(net, services=[service])
    plain = [c for c in found if not _is_tls(net, c)]
    tls = [c for c in found if _is_tls(net, c)]
    for p in reversed(plain):
        same = [t for t in tls if _ends(t) == _ends(p)]
        if same:
            return p, same[-1]
    return pick(net, tls=False, service=service), pick(net, tls=True, service=service)


def _resolve(net: Any, what: Any, tls: bool) -> tuple[Any, Any]:
    """(network, connection) of ``what``: a connection, an id, a stepper, or a
    ``(net, conn)`` pair for a capture of another world."""
    from .wire import find_connection

    if isinstance(what, tuple) and len(what) == 2 and hasattr(what[0], "tap"):
        other, conn = what
        return other, (pick(other, tls=tls) if conn is None else find_connection(other, conn))
    return net, find_connection(net, what)


def compare(net: Any, plain: Any = None, tls: Any = None, *,
            keys: bool = True) -> tuple[Capture, Capture, list[Row]]:
    """(the plaintext capture, the STARTTLS capture, their aligned rows).

    Args:
        net: the running world.
        plain: the plaintext connection (default: the latest SMTP one without TLS, on the
            path of a STARTTLS one: see :func:`pick_pair`); a ``(net, conn)`` pair takes
            it from another running world.
        tls: the STARTTLS connection (default: the latest SMTP one with TLS on that path).
        keys: name the encrypted steps with the world's key log.
    """
    from pathlib import Path

    from simsmtp.capture.tlsinspect import read_keylog

    from .wire import connection_label

    if plain is None and tls is None:
        p_net = t_net = net
        p_conn, t_conn = pick_pair(net)
    else:
        p_net, p_conn = (net, pick(net, tls=False)) if plain is None else \
            _resolve(net, plain, False)
        t_net, t_conn = (net, pick(net, tls=True)) if tls is None else \
            _resolve(net, tls, True)
    path = getattr(t_net, "keylog_file", None) if keys else None
    keylog = read_keylog(path) if path is not None and Path(path).exists() else None
    left = capture_steps(p_net.tap, p_conn, title=connection_label(p_net, p_conn))
    right = capture_steps(t_net.tap, t_conn, keylog=keylog,
                          title=connection_label(t_net, t_conn))
    return left, right, align(left.steps, right.steps)


# ------------------------------------------------------------------------------ rendering

def _plain_cell(step: WireStep | None) -> str:
    if step is None:
        return "—"
    lines = list(step.lines)
    if step.key == "message" and len(lines) > _MESSAGE_LINES:
        lines = [*lines[:_MESSAGE_LINES], f"… ({len(step.lines)} lines, {step.octets} bytes)"]
    return "\n".join(lines)


def _first(text_: str) -> str:
    lines = text_.splitlines() or [""]
    return lines[0] + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "")


def _tls_cell_text(step: WireStep | None) -> str:
    if step is None:
        return "—"
    if step.clear:
        return _first(_plain_cell(step))
    if step.key == "TLS handshake":
        return f"[TLS handshake: {plural(step.records, 'record')}, in clear: SNI, suites]"
    if step.records == 0:
        return "[no record of its own: in the record above]"
    what = f"[{plural(step.records, 'encrypted record')}, {step.octets} bytes]"
    return what


def rows_text(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(step, plaintext cell, STARTTLS cell) as text (record sizes only under TLS)."""
    return [(r.key, _first(_plain_cell(r.plain)), _tls_cell_text(r.tls)) for r in rows]


def leaks(plain: Capture, tls: Capture, *, timing: bool = False) -> list[tuple[str, str]]:
    """What still leaks under TLS: (what, the STARTTLS connection shows), from the
    eavesdropper's own findings (no keys)."""
    from .wire import WELL_KNOWN

    f = tls.findings
    conn = tls.connection
    port = WELL_KNOWN.get(conn.service, conn.server[1])
    out = [("who talks to whom",
            f"{conn.client[0]} → {conn.server[0]} port {port}: the IP addresses and ports "
            "are in every packet's header, and a reverse DNS lookup names the hosts")]
    out += [("greeting (before STARTTLS)", b) for _, b in f.banners]
    out += [("EHLO name (before STARTTLS)", n) for _, n in f.ehlo_names]
    caps = [c for _, c in f.capabilities]
    if caps:
        out.append(("capabilities (before STARTTLS)", ", ".join(caps)))
    for seen in f.tls:
        out.append(("SNI: the server name asked for", seen.sni or "(none sent)"))
        out.append(("cipher suites offered", f"{len(seen.offered_suites)} suites"))
        if seen.version:
            out.append(("version and suite chosen", f"{seen.version}, {seen.cipher_suite}"))
    message = next((s for s in tls.steps if s.key == "message"), None)
    size = f"the message's records: {message.octets} bytes (the message itself: " \
        f"{plain.message_octets} bytes in plaintext)" if message is not None and \
        message.named else "the records' sizes follow the sizes of the commands and the " \
        "message"
    out.append(("sizes", f"{tls.octets.get('c2s', 0)} bytes sent, "
                         f"{tls.octets.get('s2c', 0)} received; {size}"))
    if timing and tls.duration is not None:
        out.append(("timing", f"the connection lasted {tls.duration * 1000:.1f} ms; when "
                              "each record crossed is visible too"))
    else:
        out.append(("timing", "when each record crossed (and how long the session lasted)"))
    return out


def side_by_side_text(net: Any, plain: Any = None, tls: Any = None, *,
                      keys: bool = True) -> str:
    """The comparison as text: the aligned steps, then what still leaks under TLS."""
    from .style import text_table

    left, right, rows = compare(net, plain, tls, keys=keys)
    out = [f"plaintext: {left.title}", f"STARTTLS:  {right.title}",
           text_table(["step", "plaintext: the eavesdropper reads",
                       "STARTTLS: the eavesdropper reads"], rows_text(rows)),
           "Still visible under TLS:"]
    out += [f"  {what}: {value}" for what, value in leaks(left, right)]
    return "\n".join(out)


def _cell(step: WireStep | None) -> Raw:
    if step is None:
        return Raw(f"<span style='color:{_SUBTLE};'>— (no such step on this side)</span>")
    mono = "font-family:monospace;font-size:12px;white-space:pre-wrap;margin:0;"
    if step.clear:
        body = escape(_plain_cell(step))
        return Raw(f"<div style='background:{_CLEAR_BG};padding:2px 6px;color:{_TEXT};'>"
                   f"<pre style='{mono}'>{body}</pre>"
                   f"<div style='font-size:11px;color:{_SUBTLE};'>in clear, {step.octets} "
                   "bytes</div></div>")
    head = escape(_tls_cell_text(step))
    inside = ""
    if step.named and step.key != "TLS handshake" and step.lines:
        shown = _plain_cell(step)
        inside = (f"<div style='font-size:11px;color:{_SUBTLE};margin-top:2px;'>inside "
                  "(read with the key log; the eavesdropper cannot):</div>"
                  f"<pre style='{mono}color:{_SUBTLE};'>{escape(shown)}</pre>")
    return Raw(f"<div style='background:{_HIDDEN_BG};padding:2px 6px;color:{_TEXT};'>"
               f"<b>🔒 {head}</b>{inside}</div>")


def side_by_side(net: Any, plain: Any = None, tls: Any = None, *,
                 keys: bool = True) -> HTMLText:
    """The comparison as one HTML table and as text (see :class:`SideBySide`)."""
    left, right, rows = compare(net, plain, tls, keys=keys)
    return HTMLText(_html(left, right, rows, keys), side_by_side_text(net, plain, tls,
                                                                      keys=keys))


def _html(left: Capture, right: Capture, rows: list[Row], keys: bool) -> str:
    cells = [(Raw(f"<b style='color:{_TEXT};'>{escape(r.key)}</b>"),
              _cell(r.plain), _cell(r.tls)) for r in rows]
    clear_left = sum(1 for r in rows if r.plain is not None and r.plain.clear)
    clear_right = sum(1 for r in rows if r.tls is not None and r.tls.clear)
    head = (f"<div style='font-size:12.5px;color:{_TEXT};margin:4px 0;'>"
            f"<b>Plaintext:</b> {escape(left.title)}<br><b>STARTTLS:</b> "
            f"{escape(right.title)}<br>Steps read in clear: <b>{clear_left}</b> against "
            f"<b>{clear_right}</b>.")
    if keys:
        head += (" The names of the encrypted steps come from the key log (the teacher's "
                 "view): the eavesdropper sees only the 🔒 line.")
    head += "</div>"
    table = html_table(["step", "plaintext: the eavesdropper reads",
                        "STARTTLS: the eavesdropper reads"], cells, max_height="34em")
    leak_rows = leaks(left, right, timing=True)
    leak_html = html_table(["still visible under TLS", "what the eavesdropper reads"],
                           leak_rows, caption="What TLS does not hide (read without keys "
                                              "by the eavesdropper's own code)")
    verdict = callout("ok", "<b>In one glance:</b> " + escape(
        "TLS hides the commands, the envelope, the headers and the body. It does not "
        "hide who talks to whom, what was said before STARTTLS, the sizes or the "
        "timing."))
    return head + str(table) + str(leak_html) + str(verdict)


class SideBySide(View):
    """Two captures of one message, plaintext and STARTTLS, aligned step by step.

    Args:
        net: the running world.
        plain: the plaintext connection (default: the latest SMTP one in plaintext; a
            ``(net, conn)`` pair: from another running world).
        tls: the STARTTLS connection (default: the latest SMTP one with TLS).
        keys: name the encrypted steps with the key log (untick ``keys_box`` to see only
            what the eavesdropper sees).

    ``refresh_button.click()`` reads the capture again (the latest connections, unless
    given); ``body`` is the HTML.
    """

    def __init__(self, net: Any, plain: Any = None, tls: Any = None, *,
                 keys: bool = True) -> None:
        import ipywidgets as w

        self.net = net
        self.plain_choice, self.tls_choice = plain, tls
        self.rows: list[Row] = []
        self.keys_box = w.Checkbox(value=keys, indent=False,
                                   description="name the encrypted steps (with the key log)",
                                   layout=w.Layout(width="auto"))
        self.refresh_button = w.Button(description="↻ Refresh", tooltip="read the capture "
                                       "again", layout=w.Layout(width="100px"))
        self.body = html_widget()
        self.widget = w.VBox([w.HBox([self.keys_box, self.refresh_button],
                                     layout=w.Layout(align_items="center")), self.body])
        self.widget.add_class("simsmtp-sidebyside")
        self.body.add_class("simsmtp-sidebyside-body")
        self.keys_box.add_class("simsmtp-sidebyside-keys")
        self.left: Capture | None = None
        self.right: Capture | None = None
        self.refresh()
        self.keys_box.observe(self.guarded(lambda _: self.refresh()), "value")
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh()))

    def refresh(self) -> None:
        """Read the capture again and redraw."""
        try:
            self.left, self.right, self.rows = compare(
                self.net, self.plain_choice, self.tls_choice, keys=bool(self.keys_box.value))
        except LookupError as exc:
            self.left = self.right = None
            self.rows = []
            self.body.value = str(callout("note", escape(
                f"{exc}: send the same message once in plaintext and once with STARTTLS, "
                "then Refresh.")))
            return
        self.body.value = _html(self.left, self.right, self.rows, bool(self.keys_box.value))

    def __repr__(self) -> str:
        if self.left is None or self.right is None:
            return "SideBySide(nothing to compare yet)"
        clear_left = sum(1 for r in self.rows if r.plain is not None and r.plain.clear)
        clear_right = sum(1 for r in self.rows if r.tls is not None and r.tls.clear)
        return (f"SideBySide({len(self.rows)} steps; read in clear: {clear_left} in "
                f"plaintext, {clear_right} with STARTTLS)")


__all__ = ["Capture", "Row", "SideBySide", "WireStep", "align", "capture_steps", "compare",
           "leaks", "pick", "pick_pair", "rows_text", "side_by_side", "side_by_side_text"]
