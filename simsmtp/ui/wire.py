"""The wire: one connection as a transcript, a hexdump, and an eavesdropper's view.

Everything here reads the capture (``net.tap``: the bytes exactly as they crossed each
socket) through :mod:`simsmtp.capture`; nothing is re-rendered from the trace::

    ui.WireView(net)                          # pick a connection; three views side by side
    print(ui.transcript_text(net, conn))      # swaks-style, from the captured bytes
    print(ui.stream_hexdump(net, conn, "c2s", find=b"AUTH"))
    ui.eavesdropper_report(net.eavesdropper())  # what a sniffer on the path reads

A connection is named by what a learner knows: ``mail.example.com → mail.anotherdomain.org
port 25 (smtp)``, with the world's well-known port (25, 587, 465, 110), never the
ephemeral port of this machine. :func:`find_connection` accepts a connection id, a
:class:`~simsmtp.traffic.Connection`, a :class:`~simsmtp.net.stepper.SMTPStepper` (the
connection it opened), or nothing (the latest SMTP connection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import View, html_widget, tabs
from .exercises import Exercise, choice, register, text
from .style import COLORS, HTMLText, Raw, callout, escape, html_table, pre

if TYPE_CHECKING:
    from simsmtp.capture.eavesdropper import Findings
    from simsmtp.capture.tlsinspect import KeyLog
    from simsmtp.net.network import Network
    from simsmtp.traffic import Connection

#: Well-known ports of the services (RFC 5321 §4.5.4.2: 25; RFC 6409 §3.1: 587;
#: RFC 8314 §7.3: 465 and 995; RFC 1939 §3: 110; RFC 1035 §4.2: 53).
WELL_KNOWN = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465, "pop3": 110,
              "pop3s": 995, "imap": 143, "imaps": 993, "dns": 53}

#: How many bytes of a connection the hexdump pane shows at most.
HEXDUMP_LIMIT = 16384


# ------------------------------------------------------------------------------ connections

def _tap(source: Any) -> Any:
    return getattr(source, "tap", source)


def host_name(net: Any, ip: str) -> str:
    """The world host at ``ip`` (``127.0.0.1`` and unknown addresses stay numbers)."""
    name = net.name_of(ip) if hasattr(net, "name_of") else None
    return name or ip


def connections(net: Any, *, services: Iterable[str] | None = None,
                tcp_only: bool = True) -> list[Connection]:
    """The captured connections, each TCP connection once, oldest first.

    Args:
        net: the running world (or a :class:`~simsmtp.net.tap.Tap`).
        services: keep only these (``"smtp"``, ``"submission"`` …).
        tcp_only: leave out the DNS datagrams (UDP flows).
    """
    from simsmtp.capture.transcript import distinct_connections

    wanted = None if services is None else set(services)
    return [c for c in distinct_connections(_tap(net))
            if (not tcp_only or c.transport == "tcp")
            and (wanted is None or c.service in wanted)]


def wait_closed(net: Any, timeout: float = 5.0) -> bool:
    """Wait until every captured TCP connection has closed (so the capture is complete:
    the last records of a TLS session cross after the final reply). False on timeout."""
    def closed() -> bool:
        return all(c.closed_at is not None for c in _tap(net).connections()
                   if c.transport == "tcp")

    wait = getattr(net, "wait", None)
    return bool(wait(closed, timeout)) if wait is not None else closed()


def connection_label(net: Any, conn: Connection) -> str:
    """``mail.example.com → mail.anotherdomain.org port 25 (smtp)``."""
    client = host_name(net, conn.client[0])
    server = host_name(net, conn.server[0])
    port = WELL_KNOWN.get(conn.service, conn.server[1])
    via = f", recorded by {conn.host}" if conn.host and conn.host not in (client, server) \
        and conn.host != server else ""
    return f"{client} → {server} port {port} ({conn.service or 'tcp'}{via})"


def find_connection(net: Any, what: Any = None, *, service: str | None = None) -> Connection:
    """The captured connection meant by ``what``.

    Args:
        net: the running world (or a tap).
        what: a connection id, a :class:`~simsmtp.traffic.Connection`, an
            :class:`~simsmtp.net.stepper.SMTPStepper` (the connection it opened: matched
            by its local address), or ``None`` for the latest TCP connection.
        service: with ``what=None``, the latest connection of this service.

    Raises:
        LookupError: no such connection in the capture.
    """
    tap = _tap(net)
    if what is None:
        found = connections(net, services=None if service is None else [service])
        if not found:
            raise LookupError("nothing captured yet" + (f" for {service}" if service else ""))
        return found[-1]
    if hasattr(what, "transport") and hasattr(what, "client"):
        return what  # type: ignore[no-any-return]
    if isinstance(what, int):
        conn = tap.connection(what)
        if conn is None:
            raise LookupError(f"no connection {what} in the capture")
        return conn  # type: ignore[no-any-return]
    local = getattr(what, "local_address", None)
    if local is not None:
        for conn in connections(net):
            if tuple(conn.client) == tuple(local):
                return conn
        raise LookupError(f"the session from {local[0]}:{local[1]} is not in the capture")
    raise TypeError(f"cannot find a connection from {what!r}")


def _keylog(keylog: Any, net: Any) -> KeyLog | None:
    from simsmtp.capture.tlsinspect import KeyLog, read_keylog

    if keylog is None or keylog is False:
        return None
    if keylog is True:
        path = getattr(net, "keylog_file", None)
        return read_keylog(path) if path is not None and Path(path).exists() else None
    if isinstance(keylog, KeyLog):
        return keylog
    return read_keylog(keylog)


# ------------------------------------------------------------------------------ texts

def transcript_text(net: Any, conn: Any = None, *, keylog: Any = None) -> str:
    """The swaks-style transcript of a connection, from the captured bytes.

    The first lines name the server and its well-known port (``=== Trying
    mail.anotherdomain.org[127.0.0.3]:25...``) instead of the ephemeral port.

    Args:
        net: the running world.
        conn: which connection (see :func:`find_connection`).
        keylog: ``True`` for the world's key log (then the eavesdropper reads inside TLS,
            as Wireshark with ``tls.keylog_file``), a path, or a KeyLog.
    """
    from simsmtp.capture.transcript import transcript

    connection = find_connection(net, conn)
    out = transcript(_tap(net), connection.id, keylog=_keylog(keylog, net))
    ip, port = connection.server
    name = host_name(net, ip)
    known = WELL_KNOWN.get(connection.service, port)
    out = out.replace(f"=== Trying {ip}:{port}...", f"=== Trying {name}[{ip}]:{known}...", 1)
    return out.replace(f"=== Connected to {ip}.", f"=== Connected to {name}.", 1)


def stream_hexdump(net: Any, conn: Any = None, direction: str = "c2s", *,
                   find: bytes | str | None = None, length: int | None = 256) -> str:
    """A ``hexdump -C`` of one direction of a connection, offsets as Wireshark counts them.

    Args:
        net: the running world.
        conn: which connection (see :func:`find_connection`).
        direction: ``"c2s"`` (what the client sent) or ``"s2c"``.
        find: start at the 16-byte row holding the first occurrence of these bytes.
        length: how many bytes to show (None: to the end).
    """
    from simsmtp.capture.hexdump import hexdump

    connection = find_connection(net, conn)
    data = _tap(net).stream(connection.id, direction)
    start = 0
    if find is not None:
        needle = find.encode() if isinstance(find, str) else find
        where = data.find(needle)
        if where < 0:
            raise LookupError(f"{needle!r} is not in that direction of the connection")
        start = where - where % 16
    end = len(data) if length is None else min(len(data), start + length)
    return hexdump(data[start:end], offset=start)


def connection_hexdump_text(net: Any, conn: Any = None) -> str:
    """Every segment of a connection in hex, each under a direction marker (the pane)."""
    from simsmtp.capture.hexdump import connection_hexdump

    connection = find_connection(net, conn)
    return connection_hexdump(_tap(net), connection.id, max_bytes=HEXDUMP_LIMIT)


# ------------------------------------------------------------------------------ the eavesdropper

@dataclass(frozen=True)
class _Part:
    """One connection's findings, with the name a learner knows it by."""

    title: str
    findings: Findings


def _parts(source: Any, conn: Any = None, keylog: Any = None,
           fresh: bool = False) -> tuple[list[_Part], str]:
    """(the parts, a heading) of whatever was given."""
    from simsmtp.capture.eavesdropper import Findings, eavesdrop

    if isinstance(source, Findings):
        return [_Part("the capture", source)], ""
    view = source.view() if hasattr(source, "view") and hasattr(source, "names") else source
    legs = getattr(view, "legs", None)
    if fresh and hasattr(source, "updates"):
        legs = source.updates()
    if legs is not None:  # a PathView (or an Eavesdropper's view)
        net = getattr(source, "net", None)
        a, b = view.names
        heading = f"An eavesdropper on the path between {a} and {b}"
        return [_Part(connection_label(net, leg.connection) if net is not None
                      else f"{leg.client} → {leg.server}", leg.findings)
                for leg in legs], heading
    net = source  # a Network: one connection, or every SMTP/POP3 connection
    chosen = [find_connection(net, conn)] if conn is not None else \
        connections(net, services=["smtp", "submission", "smtps", "pop3", "pop3s", "imap",
                                   "imaps"])
    log = _keylog(keylog, net)
    heading = "" if conn is not None else "An eavesdropper on the wire"
    return [_Part(connection_label(net, c), eavesdrop(_tap(net), c.id, keylog=log))
            for c in chosen], heading


def _lines(findings: Findings) -> list[tuple[str, str, bool]]:
    """(what, seen, readable in clear?) rows for one connection."""
    rows: list[tuple[str, str, bool]] = []
    for _, banner in findings.banners:
        rows.append(("greeting", banner, False))
    for _, name in findings.ehlo_names:
        rows.append(("EHLO name", name, False))
    caps = [c for _, c in findings.capabilities]
    if caps:
        rows.append(("capabilities", ", ".join(caps), False))
    for credential in findings.credentials:
        rows.append(("credentials", credential.describe(), not credential.inside_tls))
    def sealed(conn: int) -> str:  # read inside TLS with the key log: not in clear
        return " (inside TLS, read with the key log)" \
            if conn in findings.envelope_inside_tls else ""

    for conn, address in findings.mail_from:
        rows.append((f"envelope sender{sealed(conn)}", f"MAIL FROM:<{address}>",
                     not sealed(conn)))
    for conn, address in findings.rcpt_to:
        rows.append((f"envelope recipient{sealed(conn)}", f"RCPT TO:<{address}>",
                     not sealed(conn)))
    for message in findings.messages:
        where = " (inside TLS, read with the key log)" if message.inside_tls else ""
        verb = "sent" if message.direction == "c2s" else "downloaded"
        body = [f"{message.size} bytes:"] + [f"{k}: {v}" for k, v in message.headers] + \
            [""] + message.body.splitlines()
        rows.append((f"message {verb}{where}", "\n".join(body).rstrip(), not message.inside_tls))
    for seen in findings.tls:
        readable = "decrypted with the key log" if seen.decrypted else "nothing else readable"
        rows.append(("TLS", f"{seen.records} TLS records ({seen.application_records} "
                            f"application_data): {readable}", False))
        rows.append(("SNI (in clear)", seen.sni or "(none)", False))
        rows.append(("cipher suites offered (in clear)",
                     f"{len(seen.offered_suites)}: {', '.join(seen.offered_suites)}", False))
        if seen.version:
            rows.append(("chosen (in clear)", f"{seen.version}, {seen.cipher_suite}", False))
        if seen.certificate:
            rows.append(("certificate (in clear, TLS 1.2)", seen.certificate, False))
    return rows


def _verdict(parts: list[_Part]) -> tuple[str, str]:
    if not parts:
        return "note", "Nothing crossed this wire yet."
    if any(p.findings.in_clear for p in parts):
        return "fail", ("Read in clear: the envelope, the headers and the body (and any "
                        "password) are readable by anyone on the path.")
    if any(seen.decrypted for p in parts for seen in p.findings.tls):
        return "note", ("Nothing was read in clear. With the TLS key log (as Wireshark with "
                        "the keys) everything inside TLS is readable too; without the keys "
                        "only what TLS leaks is: the greeting, EHLO, STARTTLS, the SNI and "
                        "the offered cipher suites.")
    if any(p.findings.tls for p in parts):
        return "ok", ("Only what TLS leaks is readable: the greeting, EHLO, STARTTLS, the "
                      "SNI and the offered cipher suites; the mail itself is not.")
    return "note", "Nothing but the greeting and the EHLO exchange so far."


def _folded(lines: list[str], width: int) -> list[str]:
    """Long lines folded (as RFC 5322 folds a header: the rest indented), so that no line
    of the plain report wraps in a notebook."""
    import textwrap

    out: list[str] = []
    for line in lines:
        if len(line) <= max(width, 40):
            out.append(line)
            continue
        out += textwrap.wrap(line, max(width, 40), subsequent_indent="    ",
                             break_long_words=True, break_on_hyphens=False)
    return out


def eavesdropper_report(source: Any, conn: Any = None, *, keylog: Any = None,
                        fresh: bool = False) -> HTMLText:
    """What a passive eavesdropper reads, connection by connection, and a verdict.

    Args:
        source: ``net.eavesdropper(...)`` (a sniffer on the path between two hosts, read
            live), a :class:`~simsmtp.capture.path.PathView`, a
            :class:`~simsmtp.capture.eavesdropper.Findings`, or the running world (then
            ``conn`` picks one connection; default: every SMTP and POP3 connection).
        conn: with a world, which connection (see :func:`find_connection`).
        keylog: with a world, give the eavesdropper the TLS keys (``True``: the world's).
        fresh: with ``net.eavesdropper(...)``, only the connections that ended since the
            last ``fresh`` report (what is new on the path).

    The text (``print`` it) names connections by their hosts and well-known ports, so it
    reads the same on every run.
    """
    parts, heading = _parts(source, conn, keylog, fresh)
    kind, verdict = _verdict(parts)
    plain: list[str] = [f"{heading}: {len(parts)} connection(s)"] if heading else []
    html: list[str] = [f"<div style='font-weight:bold;margin:4px 0;'>{escape(heading)}: "
                       f"{len(parts)} connection(s)</div>"] if heading else []
    for number, part in enumerate(parts, 1):
        rows = _lines(part.findings)
        title = f"connection {number}: {part.title}" if len(parts) > 1 or heading else \
            part.title
        plain.append(f"--- {title}")
        if not rows:
            plain.append("  (nothing readable yet)")
        for what, seen, clear in rows:
            mark = "  [in clear] " if clear else "  "
            given = seen.splitlines() or [""]
            lines = _folded(given[:1], width=96 - len(mark + what)) + given[1:]
            plain.append(f"{mark}{what}: {lines[0]}")
            plain += [f"      | {line}" for line in _folded(lines[1:], width=90)]
        cells = [[Raw(f"<b style='color:{COLORS['fail']};display:block;min-width:7em;"
                      f"max-width:11em;'>{escape(what)}</b>" if clear
                      else f"<span style='display:block;min-width:7em;max-width:11em;'>"
                           f"{escape(what)}</span>"),
                  Raw(f"<pre style='margin:0;white-space:pre-wrap;overflow-wrap:anywhere;"
                      f"min-width:16em;font-size:11.5px;"
                      f"{'color:' + COLORS['fail'] + ';' if clear else ''}'>"
                      f"{escape(seen)}</pre>")]
                 for what, seen, clear in rows]
        html.append(html_table(["what", "the eavesdropper reads"], cells, caption=title)
                    if cells else f"<div><b>{escape(title)}</b>: nothing readable yet</div>")
    plain.append(f"Verdict: {verdict}")
    html.append(callout(kind, escape(verdict), "Verdict:"))
    return HTMLText("".join(html), "\n".join(plain))


# ------------------------------------------------------------------------------ the widget

class CaptureView(View):
    """A view of one captured connection: a connection picker, a Refresh button and a
    "use the key log" box above a body; subclasses build the body and :meth:`_show`."""

    def _controls(self, net: Any, keylog: bool, *, picker: str, keylog_label: str) -> None:
        import ipywidgets as w

        self.net = net
        self.picker = w.Dropdown(description=picker, layout=w.Layout(width="70%"),
                                 style={"description_width": "initial"})
        self.refresh_button = w.Button(description="↻ Refresh", tooltip="read the capture "
                                       "again", layout=w.Layout(width="100px"))
        self.keylog_box = w.Checkbox(value=keylog, description=keylog_label, indent=False,
                                     disabled=getattr(net, "keylog_file", None) is None,
                                     layout=w.Layout(width="auto"))

    def _assemble(self, body: Any, css_class: str, conn: Any) -> None:
        import ipywidgets as w

        self.widget = w.VBox([w.HBox([self.picker, self.refresh_button],
                                     layout=w.Layout(align_items="center")),
                              self.keylog_box, body])
        self.widget.add_class(css_class)
        self._conn_id: int | None = None
        self.refresh(conn)
        self.picker.observe(self.guarded(lambda change: self._show(change["new"])), "value")
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh()))
        self.keylog_box.observe(self.guarded(lambda _: self._show(self.picker.value)), "value")

    def _connections(self) -> list[Any]:
        """The connections the picker offers (every captured TCP connection)."""
        return connections(self.net)

    def refresh(self, conn: Any = None) -> None:
        """Read the capture again (and show ``conn`` if given)."""
        found = self._connections()
        options = [(f"#{index} {connection_label(self.net, c)}", c.id)
                   for index, c in enumerate(found, 1)]
        wanted = self._conn_id
        if conn is not None:
            wanted = find_connection(self.net, conn).id
        elif wanted is None and found:
            wanted = found[-1].id
        self.picker.options = options
        if wanted is not None and any(v == wanted for _, v in options):
            self.picker.value = wanted
        self._show(self.picker.value)

    def _show(self, conn_id: int | None) -> None:
        raise NotImplementedError


class WireView(CaptureView):
    """One connection three ways: transcript | hexdump | eavesdropper.

    Args:
        net: the running world.
        conn: the connection to show first (see :func:`find_connection`; default the
            latest); a dropdown offers every captured TCP connection.
        keylog: start with the key log given to the eavesdropper (TLS then decrypts).
        layout: ``"columns"`` (side by side) or ``"tabs"``.

    ``refresh_button.click()`` reads the capture again (it grows while the world runs);
    ``picker.value`` is the connection id; ``transcript``, ``hexdump`` and
    ``eavesdropper`` are the three panes (HTML widgets).
    """

    def __init__(self, net: Network, conn: Any = None, *, keylog: bool = False,
                 layout: str = "columns") -> None:
        import ipywidgets as w

        self.layout = layout
        self._controls(net, keylog, picker="connection:",
                       keylog_label="give the eavesdropper the TLS key log")
        self.transcript = html_widget()
        self.hexdump = html_widget()
        self.eavesdropper = html_widget()
        titles = ["Transcript (swaks)", "Eavesdropper", "Hexdump (hexdump -C)"]
        panes = [self.transcript, self.eavesdropper, self.hexdump]
        if layout == "tabs":
            body: Any = tabs(panes, titles)
        else:  # transcript and eavesdropper side by side, the (wide) hexdump under them
            areas = ["transcript", "eavesdropper", "hexdump"]
            body = w.GridBox(
                [w.VBox([html_widget(f"<b>{escape(t)}</b>"), p],
                        layout=w.Layout(grid_area=a, overflow="hidden"))
                 for t, p, a in zip(titles, panes, areas, strict=True)],
                layout=w.Layout(grid_template_columns="50% 50%", grid_gap="6px 10px",
                                grid_template_areas='"transcript eavesdropper" '
                                                    '"hexdump hexdump"', width="98%"))
        self._assemble(body, "simsmtp-wire", conn)

    def _show(self, conn_id: int | None) -> None:
        self._conn_id = conn_id
        if conn_id is None:
            empty = callout("note", "Nothing captured yet: send some mail, then Refresh.")
            self.transcript.value = self.hexdump.value = self.eavesdropper.value = empty
            return
        keylog = bool(self.keylog_box.value)
        height = "26em"
        self.transcript.value = _pane(transcript_text(self.net, conn_id, keylog=keylog),
                                      height)
        self.hexdump.value = _pane(connection_hexdump_text(self.net, conn_id), "18em")
        self.eavesdropper.value = (f"<div style='max-height:{height};overflow:auto;"
                                   "line-height:1.45;'>"
                                   + eavesdropper_report(self.net, conn_id,
                                                         keylog=keylog).html + "</div>")

    @property
    def connection(self) -> Connection | None:
        """The connection shown."""
        return None if self._conn_id is None else _tap(self.net).connection(self._conn_id)

    def __repr__(self) -> str:
        conn = self.connection
        what = "nothing captured" if conn is None else connection_label(self.net, conn)
        return f"WireView({what})"


def _pane(text_: str, height: str) -> Raw:
    return Raw(str(pre(text_, max_height=height)).replace("font-size:12px", "font-size:11px"))


# ------------------------------------------------------------------------------ exercises

register(Exercise(
    "04.base64", "Not a secret",
    "An eavesdropper captured the line AUTH PLAIN AGJvYgBidWlsZGVy from someone logging in. "
    "What is the password?",
    text("builder", {"bob": "bob is the user name: PLAIN sends authorization id, user name "
                            "and password, separated by NUL bytes.",
                     "agjvygbidwlszgvy": "That is still base64: decode it first."},
         "base64 is an encoding, not encryption: anyone decodes it (RFC 4616 §2: "
         "[authzid] NUL authcid NUL passwd)."),
    hint='import base64; base64.b64decode("AGJvYgBidWlsZGVy")',
    solution='base64.b64decode("AGJvYgBidWlsZGVy") is b"\\x00bob\\x00builder": user bob, '
             'password builder (Bob\'s POP3 password in this world).',
    answer_help='Write the password in quotes instead of None (e.g. answer = "secret") and '
    'run the cell.'))

register(Exercise(
    "04.what-leaks", "What a sniffer reads",
    "Without STARTTLS, which of these could the eavesdropper NOT read? (a) the body of "
    "the message; (b) the envelope recipient; (c) Alice's password; (d) the contents of "
    "Bob's mailbox on the server's disk.",
    choice("d", {"a": "The body crossed the wire after DATA, in clear: it is in the report.",
                 "b": "RCPT TO:<bob@anotherdomain.org> crossed in clear.",
                 "c": "AUTH PLAIN carried it base64-encoded: decoded in the report."},
           "A sniffer reads what crosses the wire, all of it; what stays on a server's "
           "disk is another matter (and another attack)."),
    hint="An eavesdropper only sees bytes that travel between two machines.",
    solution="(d): everything else crossed the wire in clear in this notebook. The mailbox "
             "itself never travels; only a message Bob downloads does (and POP3 without "
             "STLS would show it too).",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
    'cell.'))


#: Display filters that select exactly the AUTH command (checked against tshark 4.0 in
#: tests/ui): ``==``/``eq``/``===`` and ``contains``/``in`` compare case-sensitively, so the
#: verb is written as sent, "AUTH"; ``matches``/``~`` take a regular expression and ignore
#: case. An optional ``&& tcp.port == 587`` narrows it to the submission port.
_VERB = r"smtp\.req\.command"
_RIGHT_FILTERS = (
    rf'{_VERB} ?(?:==|===|eq) ?(?:"AUTH"|AUTH)',
    rf'{_VERB} (?:contains) "AUTH"',
    rf'{_VERB} in ?\{{ ?"AUTH" ?\}}',
    rf'{_VERB} (?:matches|~) "(?:\(\?i\))?\^?auth\$?"',
)
_NARROWER = r"(?: ?(?:&&|and) ?tcp\.(?:dst)?port ?(?:==|eq) ?587)?"
_FILTER_HINTS = (
    (rf'{_VERB} ?(?:==|===|eq|contains|in) ?\{{? ?"(?!AUTH")(?i:auth)" ?\}}?',
     'Wireshark compares strings case-sensitively with ==, eq, contains and in, and '
     'the client sent the verb in capitals: this filter matches no packet. Write "AUTH" '
     '(or use matches, which ignores case).'),
    (rf"{_VERB} ?(?:==|eq) ?'",
     "Wireshark wants strings in double quotes: 'AUTH' in single quotes is a character "
     "constant, and tshark refuses the filter."),
    (r'smtp ?(?:contains|matches|~) ',
     "That searches the whole SMTP payload, so it also shows the server's EHLO reply "
     "listing 250-AUTH PLAIN LOGIN. Compare the request's verb instead: smtp.req.command."),
    (r"smtp\.auth\.",
     "The smtp.auth.* fields hold decoded credentials (some only with "
     "-o smtp.decryption:TRUE): they mark the lines that carry a user name or password. "
     "With AUTH PLAIN and an initial response that is the AUTH line, but with AUTH LOGIN "
     "they are the lines after it, which are not AUTH commands."),
    (r"smtp\.req\.parameter",
     "smtp.req.parameter is the argument: a filter on PLAIN finds AUTH PLAIN only (AUTH "
     "LOGIN would be missed). The verb is in smtp.req.command."),
    (rf'{_VERB} ?(?:==|eq) ?"(?:PLAIN|LOGIN)"',
     "PLAIN and LOGIN are SASL mechanisms, the argument of AUTH; the verb is AUTH."),
    (r"(?:smtp|smtp\.req|tcp\.port ?(?:==|eq) ?(?:25|587)|tcp)",
     "That shows every SMTP packet (or every packet of the port), not only the login."),
)


def _filter(answer: Any) -> tuple[bool, str]:
    given = " ".join(str(answer).split())
    if any(re.fullmatch(f + _NARROWER, given, re.IGNORECASE if "matches" in f else 0)
           for f in _RIGHT_FILTERS):
        return True, "Only the AUTH command: tshark -r FILE -Y 'smtp.req.command == \"AUTH\"' " \
                     "(Wireshark's SMTP dissector names the verb smtp.req.command; == " \
                     "compares case-sensitively, matches ignores case)."
    for pattern, why in _FILTER_HINTS:
        if re.fullmatch(pattern + r".*", given):
            return False, why
    return False, "Not a display filter that picks out the AUTH command: compare the " \
                  "field smtp.req.command with the verb."


register(Exercise(
    "04.filter", "A Wireshark filter",
    "In Wireshark (or tshark -Y), which display filter shows only the packets where a "
    "client sends the AUTH command? Wireshark names the verb of an SMTP request "
    "smtp.req.command.",
    _filter,
    hint='Compare a field with a string: field == "VALUE" (Wireshark compares strings '
         "case-sensitively: write the verb as it was sent).",
    solution='smtp.req.command == "AUTH"  (e.g. tshark -r 04_sniffed.pcap -Y '
             "'smtp.req.command == \"AUTH\"' -T fields -e smtp.req.parameter). "
             'Equivalent: smtp.req.command eq "AUTH", smtp.req.command in {"AUTH"}, '
             'smtp.req.command contains "AUTH", smtp.req.command matches "^auth$" (matches '
             'ignores case; == does not).',
    answer_help='Write the filter in quotes instead of None (e.g. answer = "tcp.port == 25") '
    'and run the cell.'))


__all__ = ["HEXDUMP_LIMIT", "WELL_KNOWN", "WireView", "connection_hexdump_text",
           "connection_label", "connections", "eavesdropper_report", "find_connection",
           "host_name", "stream_hexdump", "transcript_text", "wait_closed"]
