"""TLS as it crossed the wire: the records annotated, the certificate chain, the entropy.

Read from the capture (``net.tap``) by :mod:`simsmtp.capture.tlsinspect` and
:mod:`simsmtp.capture.entropy`::

    ui.TLSInspector(net)                    # the latest TLS connection, four tabs
    ui.tls_summary(net, conn)               # SNI, offered suites, what the server chose
    ui.tls_records(net, conn, keylog=True)  # every record; with the key log, what it held
    ui.certificate_chain(net, "mail.anotherdomain.org")   # from the world's CA
    ui.entropy_chart(net, conn)             # plaintext vs ciphertext, segment by segment

What stays readable: the ClientHello (RFC 8446 §4.1.2) with the server name (SNI, RFC 6066
§3) and the offered cipher suites, and the ServerHello with the choice. With TLS 1.3 every
record after the ServerHello is encrypted, the certificate included (RFC 8446 §2); with
TLS 1.2 the Certificate message crosses in clear (RFC 5246 §7.4.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import html_widget, tabs
from .exercises import Exercise, choice, register, text
from .stepper import tight
from .style import (
    COLORS,
    MONO,
    Diagram,
    HTMLText,
    Raw,
    callout,
    escape,
    html_table,
    inline_svg,
    new_figure,
    plot_style,
    text_table,
)
from .wire import CaptureView, _keylog, _tap, connection_label, connections, find_connection

if TYPE_CHECKING:

    from simsmtp.capture.transcript import ConnectionView
    from simsmtp.traffic import Connection

#: Inner content types of a decrypted TLS 1.3 record (RFC 8446 §5.2).
_INNER = {21: "alert", 22: "handshake", 23: "application data"}


def tls_connections(net: Any) -> list[Connection]:
    """The captured TCP connections that turned to TLS, oldest first."""
    from simsmtp.capture.tlsinspect import tls_start

    tap = _tap(net)
    found = []
    for conn in connections(net):
        starts = tls_start(tap.stream(conn.id, "c2s"), tap.stream(conn.id, "s2c"))
        if starts != (None, None):
            found.append(conn)
    return found


def _view(net: Any, conn: Any, keylog: Any = None) -> ConnectionView:
    from simsmtp.capture.transcript import view_connection

    if conn is None:
        found = tls_connections(net)
        if not found:
            raise LookupError("no TLS connection in the capture yet")
        connection = found[-1]
    else:
        connection = find_connection(net, conn)
    tap = _tap(net)
    view = view_connection(connection, tap.segments(connection.id), _keylog(keylog, net))
    if view.tls is None:
        raise LookupError(f"{connection_label(net, connection)} never turned to TLS")
    return view


def tls_summary(net: Any, conn: Any = None) -> HTMLText:
    """What the handshake shows in clear: SNI, versions and suites offered, the choice.

    Args:
        net: the running world.
        conn: which connection (see :func:`~simsmtp.ui.wire.find_connection`; default the
            latest TLS connection).
    """
    view = _view(net, conn)
    session = view.tls
    assert session is not None
    rows: list[list[object]] = []
    html_rows: list[list[object]] = []
    hello = session.client_hello
    if hello is not None:
        rows.append(["ClientHello: server name (SNI)", hello.sni or "(none)"])
        rows.append(["ClientHello: versions offered", ", ".join(hello.version_names)])
        html_rows += rows
        suites = hello.cipher_suite_names
        rows.append(["ClientHello: cipher suites offered",
                     f"{len(suites)}: " + ", ".join(suites)])
        html_rows.append(["ClientHello: cipher suites offered",
                          Raw(f"{len(suites)}, in the client's order of preference:<br>"
                              + "<br>".join(escape(n) for n in suites))])
    later: list[list[object]] = []
    if session.server_hello is not None:
        later.append(["ServerHello: version chosen", session.version])
        later.append(["ServerHello: cipher suite chosen", session.cipher_suite])
    for cert in session.certificates:
        later.append(["Certificate (in clear)", f"{cert.subject} (SAN {', '.join(cert.sans)})"])
    if session.is_tls13:
        later.append(["After the ServerHello", "everything encrypted: EncryptedExtensions, "
                      "Certificate, CertificateVerify, Finished, then all of SMTP "
                      "(RFC 8446 §2)"])
    headers = ["what the eavesdropper reads", "value"]
    title = f"TLS on {connection_label(net, view.connection)}"
    return HTMLText(html_table(headers, html_rows + later, caption=title, mono_columns=[1]),
                    title + "\n" + text_table(headers, rows + later))


def _record_rows(view: ConnectionView, *, sizes: bool) -> list[list[object]]:
    session = view.tls
    assert session is not None
    decryption = view.decryption
    index_of = {(d, r.offset): i for d in ("c2s", "s2c")
                for i, r in enumerate(session.records(d))}
    rows: list[list[object]] = []
    number = 0
    for item in view.items:
        record = item.record
        if item.kind != "record" or record is None:
            continue
        number += 1
        who = "client → server" if item.direction == "c2s" else "server → client"
        if record.messages:
            content = "handshake, in clear: " + ", ".join(record.messages)
        elif record.content_type == 20:
            content = "change_cipher_spec (a compatibility relic, RFC 8446 §D.4)"
        elif record.encrypted:
            content = "encrypted"
        else:
            content = record.type_name
        row: list[object] = [number, who, record.type_name, record.version_name]
        if sizes:
            row.append(record.size)
        row.append(content)
        if decryption is not None:
            index = index_of.get((item.direction, record.offset), -1)
            inner = decryption.records.get((item.direction, index))
            if inner is None:
                row.append("" if not record.encrypted else "(not decrypted)")
            elif inner[0] == 22:
                names = decryption.messages.get((item.direction, index), ())
                row.append("handshake: " + ", ".join(names))
            elif inner[0] == 23:
                first = inner[1].split(b"\r\n", 1)[0].decode("utf-8", "replace")
                more = inner[1].count(b"\r\n") - 1
                row.append(first + (f"  (+{more} lines)" if more > 0 else ""))
            else:
                row.append(_INNER.get(inner[0], f"type {inner[0]}"))
        rows.append(row)
    return rows


def tls_records(net: Any, conn: Any = None, *, keylog: Any = None,
                sizes: bool = True) -> HTMLText:
    """Every TLS record of a connection in wire order, annotated.

    Args:
        net: the running world.
        conn: which connection (default: the latest TLS connection).
        keylog: ``True`` for the world's key log (or a path): adds a column saying what
            each encrypted record really held, as Wireshark shows with a key log.
        sizes: include each record's size in bytes (it varies a little from run to run:
            signatures and session tickets do).
    """
    view = _view(net, conn, keylog)
    headers = ["#", "from", "record type", "version", *(["bytes"] if sizes else []),
               "content"]
    if view.decryption is not None:
        headers.append("inside (with the key log)")
    rows = _record_rows(view, sizes=sizes)
    title = f"TLS records of {connection_label(net, view.connection)}"
    mono = [len(headers) - 1] if view.decryption is not None else []
    return HTMLText(html_table(headers, rows, caption=title, max_height="30em",
                               mono_columns=mono),
                    title + "\n" + text_table(headers, rows))


def certificate_chain(net: Any, host: str | None = None, *,
                      fingerprints: bool = False) -> HTMLText:
    """The chain ``host`` presents, leaf first, then the world's CA (the trust anchor).

    Args:
        net: the running world.
        host: the server, a host of the world that serves a port (default: the MX of
            the world's first recipient; ``mail.anotherdomain.org`` in the seed).
        fingerprints: add the serial number and SHA-256 fingerprint (new keys every time a
            world boots, so they differ from run to run).
    """
    from simsmtp.world import cast

    world = net.world
    host = world.host(host).name if host else cast.receiving_host(world)
    if not world.host(host).ports():
        raise ValueError(f"{host} serves no port, so it presents no certificate: pass "
                         "host=... (one of " + ", ".join(
                             h.name for h in world.hosts.values() if h.ports()) + ")")
    chain = net.ca.certificate_chain(host)
    headers = ["", "subject", "issued by", "names (SAN)", "key", "valid"]
    if fingerprints:
        headers += ["serial", "SHA-256 fingerprint"]
    rows: list[list[object]] = []
    cards: list[str] = []
    for index, cert in enumerate(chain):
        role = "trust anchor (CA)" if cert["is_ca"] and cert["subject"] == cert["issuer"] \
            else "intermediate CA" if cert["is_ca"] else "server (leaf)"
        valid = f"{cert['not_before'][:10]} … {cert['not_after'][:10]}"
        row: list[object] = [f"{index}: {role}", cert["subject"], cert["issuer"],
                             ", ".join(cert["sans"]) or "—", cert["key"], valid]
        if fingerprints:
            row += [cert["serial"], cert["fingerprint"]]
        rows.append(row)
        fields = list(zip(headers[1:], row[1:], strict=True))
        body = html_table(["field", "value"], fields, mono_columns=[1])
        if index:
            cards.append(f"<div style='color:{COLORS['muted']};margin:2px 0 2px 16px;'>"
                         f"↑ signed by</div>")
        border = COLORS["tls"] if cert["is_ca"] else COLORS["client"]
        cards.append(f"<div style='border-left:4px solid {border};padding:2px 8px;'>"
                     f"<b>{index} · {escape(role)}</b>{body}</div>")
    title = f"The certificate chain of {host} (from the world's CA)"
    html = f"<div style='font-weight:bold;margin:4px 0;'>{escape(title)}</div>" + \
        "".join(cards)
    return HTMLText(Raw(html), title + "\n" + text_table(headers, rows))


def entropy_chart(net: Any, conn: Any = None, *, title: str | None = None) -> Diagram:
    """Bytes entropy of every captured segment of a connection: plaintext vs ciphertext.

    One bar per segment in wire order (bits per byte, 0 to 8), coloured plaintext (SMTP
    text) or TLS; a grey tick marks the most a segment of that length could reach
    (``log2(min(length, 256))``), so short ciphertext segments can be judged too. The first
    TLS segment of each side is labelled with the handshake message it carries.
    """
    from simsmtp.capture.entropy import entropy_table

    view = _view(net, conn)
    tap = _tap(net)
    rows = entropy_table(tap, view.connection.id)
    names = _segment_names(view, tap)
    fig, ax = new_figure(10.0, 3.6)
    with plot_style():
        xs = list(range(1, len(rows) + 1))
        colors = [COLORS["tls"] if r.kind == "tls" else
                  COLORS["client"] if r.direction == "c2s" else COLORS["server"]
                  for r in rows]
        ax.bar(xs, [r.entropy for r in rows], color=colors, width=0.75, zorder=2)
        ax.scatter(xs, [r.ceiling for r in rows], marker="_", s=140, color=COLORS["text"],
                   linewidths=1.5, zorder=3, label="most possible for that length")
        first_tls = next((i for i, r in enumerate(rows, 1) if r.kind == "tls"), None)
        if first_tls is not None:
            ax.axvline(first_tls - 0.5, color=COLORS["warn"], lw=1.2, ls="--", zorder=1)
            ax.text(first_tls - 0.6, 8.75, "TLS starts →", fontsize=8, ha="right",
                    color=COLORS["warn"], va="center")
        for x, row in zip(xs, rows, strict=True):
            label = names.get(row.index)
            if label and row.entropy > 2.5:
                ax.text(x, 0.25, label, rotation=90, ha="center", va="bottom",
                        fontsize=8, color="white", zorder=4, fontweight="bold")
        ax.set_xlim(0.3, len(rows) + 0.7)
        ax.set_ylim(0, 9.3)
        ax.set_yticks([0, 2, 4, 6, 8])
        ax.set_ylabel("entropy (bits per byte)")
        ax.set_xlabel("the captured segments, in wire order (→ client to server, "
                      "← server to client)")
        ax.set_xticks(xs)
        ax.set_xticklabels(["→" if r.direction == "c2s" else "←" for r in rows],
                           fontsize=10, family=MONO)
        ax.grid(axis="y", color="#E5E5E5", zorder=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        from matplotlib.patches import Patch

        handles = [Patch(color=COLORS["client"], label="plaintext from the client"),
                   Patch(color=COLORS["server"], label="plaintext from the server"),
                   Patch(color=COLORS["tls"], label="TLS records"),
                   *ax.get_legend_handles_labels()[0]]
        ax.legend(handles=handles, loc="upper left", fontsize=8.5, ncol=4, frameon=False,
                  bbox_to_anchor=(0.0, -0.22))
        ax.set_title(title or "Byte entropy of every segment: text vs ciphertext", loc="left",
                     pad=16)
        ax.text(0.0, 1.02, connection_label(net, view.connection), transform=ax.transAxes,
                fontsize=8, color=COLORS["muted"], va="bottom")
        fig.subplots_adjust(left=0.07, right=0.99, top=0.84, bottom=0.3)
    return Diagram(fig)


def _segment_names(view: ConnectionView, tap: Any) -> dict[int, str]:
    """Segment index -> the handshake message(s) of the records that start in it."""
    session = view.tls
    if session is None:
        return {}
    out: dict[int, str] = {}
    for direction in ("c2s", "s2c"):
        start = view.tls_offsets[direction]
        if start is None:
            continue
        segments = tap.segments(view.connection.id, direction)
        for record in session.records(direction):
            if not record.messages:
                continue
            where = start + record.offset
            for seg in segments:
                if seg.offset <= where < seg.offset + len(seg.data):
                    out.setdefault(seg.index, ", ".join(record.messages))
                    break
    return out


def entropy_text(net: Any, conn: Any = None) -> str:
    """The entropy of plaintext and TLS segments in two lines (averages, for print)."""
    from simsmtp.capture.entropy import entropy_table

    view = _view(net, conn)
    rows = entropy_table(_tap(net), view.connection.id)
    out = []
    for kind, name in (("plaintext", "plaintext SMTP"), ("tls", "TLS")):
        chosen = [r for r in rows if r.kind == kind]
        if chosen:
            mean = sum(r.entropy for r in chosen) / len(chosen)
            share = sum(r.entropy / r.ceiling for r in chosen if r.ceiling) / len(chosen)
            out.append(f"{name}: {len(chosen)} segments, on average {mean:.1f} bits per "
                       f"byte ({share:.0%} of the most possible)")
    return "\n".join(out)


class TLSInspector(CaptureView):
    """The TLS of one connection: records, handshake in clear, certificate chain, entropy.

    Args:
        net: the running world.
        conn: the connection to show first (default: the latest TLS connection); a
            dropdown offers every captured connection that used TLS.
        keylog: start with the world's key log (a column shows what each record held).

    ``picker``, ``keylog_box`` and ``refresh_button`` are the controls; ``records``,
    ``hello``, ``chain`` and ``chart`` (HTML; the chart an SVG) the four tabs.
    """

    def __init__(self, net: Any, conn: Any = None, *, keylog: bool = False) -> None:
        import ipywidgets as w

        self._controls(net, keylog, picker="TLS connection:",
                       keylog_label="decrypt with the world's key log (as Wireshark can)")
        self.records = html_widget()
        self.hello = html_widget()
        self.chain = html_widget()
        self.chart = html_widget(layout=w.Layout(max_width="100%"))
        self.tabs = tabs([self.records, self.hello, self.chain, self.chart],
                         ["Records", "Handshake in clear", "Certificate chain", "Entropy"])
        self._assemble(self.tabs, "simsmtp-tls", conn)

    def _connections(self) -> list[Any]:
        """Only the connections that used TLS."""
        return tls_connections(self.net)

    def _show(self, conn_id: int | None) -> None:
        self._conn_id = conn_id
        if conn_id is None:
            empty = callout("note", "No TLS connection captured yet.")
            self.records.value = self.hello.value = self.chain.value = empty
            self.chart.value = ""
            return
        keylog = bool(self.keylog_box.value)
        self.records.value = tight(tls_records(self.net, conn_id, keylog=keylog).html)
        self.hello.value = tight(tls_summary(self.net, conn_id).html)
        view = _view(self.net, conn_id)
        sni = view.tls.sni if view.tls is not None else None
        server = self.net.name_of(view.connection.server[0]) if hasattr(self.net,
                                                                         "name_of") else None
        host = sni or server
        if host and getattr(self.net, "ca", None) is not None:
            chain = certificate_chain(self.net, host, fingerprints=True).html
            self.chain.value = tight(chain + callout(
                "note", "The client trusts this chain because it trusts the world's CA (its "
                "certificate is the <i>trust anchor</i>); with TLS 1.3 an eavesdropper never "
                "sees it: the Certificate message is encrypted."))
        else:
            self.chain.value = callout("note", "No server name to look up.")
        self.chart.value = inline_svg(entropy_chart(self.net, conn_id).figure)

    @property
    def connection(self) -> Connection | None:
        """The connection shown."""
        return None if self._conn_id is None else _tap(self.net).connection(self._conn_id)

    def __repr__(self) -> str:
        conn = self.connection
        what = "no TLS captured" if conn is None else connection_label(self.net, conn)
        return f"TLSInspector({what})"


# ------------------------------------------------------------------------------ exercises

register(Exercise(
    "05.sni", "The name on the envelope",
    "Even under TLS the eavesdropper read one host name in the ClientHello. Which one?",
    text(["mail.anotherdomain.org", "mail.anotherdomain.org."],
         {"mail.example.com": "That is the client. The ClientHello names the server it "
                              "wants.",
          "anotherdomain.org": "That is the mail domain; SNI carries the host name of the "
                               "server the client connects to (the MX host).",
          "ns.simsmtp.test": "The name server is never contacted over TLS here."},
         "mail.anotherdomain.org, in the server_name extension (SNI, RFC 6066 §3): sent "
         "before any key exists, so in clear (Encrypted Client Hello is the fix being "
         "deployed)."),
    hint="Look at the 'Handshake in clear' table: ClientHello: server name (SNI).",
    solution="mail.anotherdomain.org: the SNI travels in clear in the ClientHello so that "
             "the server can pick the right certificate. (This world's delivery agent sends "
             "SNI; Postfix's SMTP client sends none by default, smtp_tls_servername being "
             "empty. The eavesdropper still reads the server's name in its 220 greeting, "
             "in clear before STARTTLS.)",
    answer_help='Write a host name in quotes instead of None (e.g. answer = "ns.simsmtp.test") '
    'and run the cell.'))

def _handshake_name(answer: Any) -> str:
    """ "Server Hello", "server_hello", "ServerHello" -> "serverhello"."""
    return "".join(ch for ch in str(answer).lower() if ch.isalnum())


_LAST_CLEAR_WRONG = {
    "clienthello": "The server answers it in clear too: the ServerHello comes after it.",
    "certificate": "In TLS 1.3 the Certificate is already encrypted (in TLS 1.2 it was "
                   "not).",
    "encryptedextensions": "EncryptedExtensions is the FIRST encrypted message: it comes "
                           "right after the last one in clear.",
    "certificateverify": "CertificateVerify is encrypted in TLS 1.3.",
    "finished": "Finished is encrypted in TLS 1.3.",
    "changecipherspec": "The change_cipher_spec record after the ServerHello does travel in "
                        "clear, but in TLS 1.3 it is a dummy record for middleboxes (RFC "
                        "8446 Appendix D.4), not a handshake message.",
    "helloretryrequest": "A HelloRetryRequest (a ServerHello asking for another key share) "
                         "happens only when the client guessed the wrong group; then a "
                         "second ClientHello and ServerHello follow.",
}


def _last_clear(answer: Any) -> tuple[bool, str]:
    given = _handshake_name(answer)
    if given in ("serverhello", "tlsserverhello"):
        return True, ("ServerHello: from its key share both sides compute the handshake "
                      "keys; everything after it is encrypted (RFC 8446 §2).")
    return False, _LAST_CLEAR_WRONG.get(given, f"{answer!r} is not a handshake message that "
                                               "travels in clear in TLS 1.3.")


register(Exercise(
    "05.last-clear", "Where the curtain falls",
    "With TLS 1.3, which is the last handshake message an eavesdropper can read?",
    _last_clear,
    hint="In the records table, find the last row whose content says 'in clear'.",
    solution="ServerHello. Then come EncryptedExtensions, Certificate, CertificateVerify "
             "and Finished, all inside application_data records.",
    answer_help='Write a message name in quotes instead of None (e.g. answer = "Finished") and '
    'run the cell.'))

register(Exercise(
    "05.defence", "Against stripping",
    "Mallory removed 250-STARTTLS and Alice's server sent the mail in clear. Which "
    "measure lets Bob's domain tell senders, through a channel Mallory cannot rewrite, "
    "that its MX always does TLS? (a) a longer RSA key; (b) MTA-STS (or DANE); (c) "
    "opportunistic TLS; (d) a stronger cipher suite.",
    choice("b", {"a": "The attack never gets to a key: the client does not even try TLS.",
                 "c": "Opportunistic TLS is what the attack exploits: it falls back to "
                      "plaintext.",
                 "d": "The cipher suites are never negotiated: there is no handshake."},
           "MTA-STS (RFC 8461, a policy served over HTTPS) or DANE (RFC 7672, TLSA "
           "records signed with DNSSEC) make senders require TLS with a valid "
           "certificate for that domain's MX."),
    hint="The stripped line travels in the SMTP conversation itself; the defence must "
         "come from somewhere else.",
    solution="(b): MTA-STS publishes 'mode: enforce' over HTTPS (web PKI); DANE publishes "
             "TLSA records in DNSSEC. A sender that knows either refuses plaintext and "
             "defers instead, as outbound_tls = \"required\" did here.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
    'cell.'))


__all__ = ["TLSInspector", "certificate_chain", "entropy_chart", "entropy_text",
           "tls_connections", "tls_records", "tls_summary"]
