"""What a passive eavesdropper reads from a capture.

:func:`eavesdrop` goes through the captured bytes of SMTP, submission and POP3 connections
the way a sniffer on the path would, and decodes what is in clear:

* credentials: ``AUTH PLAIN`` (initial response or after ``334``, RFC 4616 §2),
  ``AUTH LOGIN`` (username and password, each base64), POP3 ``USER``/``PASS``
  (RFC 1939 §7), IMAP ``LOGIN`` (RFC 9051 §6.2.3, quoted strings and literals) and
  ``AUTHENTICATE PLAIN``, and the user names of ``APOP`` and ``AUTH CRAM-MD5`` (whose
  passwords are not on the wire);
* the envelope (``MAIL FROM``, ``RCPT TO``), the EHLO names, the greeting banners, the
  EHLO capabilities;
* every message crossing in clear (``DATA``, ``BDAT``, POP3 ``RETR``/``TOP``, IMAP
  ``FETCH BODY[]`` and ``APPEND``): headers and body text;
* once STARTTLS/STLS is negotiated (or from the first byte on 465/995), only TLS records:
  their count and size, and what TLS still leaks: the SNI and the offered cipher suites of
  the ClientHello, the chosen version and suite, and, for TLS 1.2, the certificate.

With ``keylog=`` the eavesdropper also holds the session keys (as Wireshark with
``tls.keylog_file``): what it then reads inside TLS is reported with ``inside_tls=True``.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..traffic import Traffic
from .tlsinspect import KeyLog, read_keylog
from .transcript import ConnectionView, Turn, distinct_connections, pair_turns, view_connection

__all__ = [
    "Credential",
    "Findings",
    "MessageSeen",
    "TLSSeen",
    "eavesdrop",
]


@dataclass(frozen=True)
class Credential:
    """A credential read off the wire.

    Attributes:
        conn_id: the connection.
        mechanism: ``PLAIN``, ``LOGIN``, ``USER/PASS``, ``APOP``, ``CRAM-MD5`` or
            ``IMAP LOGIN``.
        username: the authentication identity.
        password: the password, or ``None`` when the mechanism does not send it.
        encoded: the base64 exactly as it crossed the wire (``""`` for USER/PASS).
        authzid: the PLAIN authorization identity, if any.
        inside_tls: True if read with the key log from inside TLS.
    """

    conn_id: int
    mechanism: str
    username: str
    password: str | None
    encoded: str = ""
    authzid: str = ""
    inside_tls: bool = False

    def describe(self) -> str:
        """``Password for alice@example.com: wonderland (decoded from base64 'AGFs...')``."""
        where = " [inside TLS, with the key log]" if self.inside_tls else ""
        if self.password is None:
            return (f"User name {self.username} ({self.mechanism}: the password itself is "
                    f"not on the wire){where}")
        how = f"decoded from base64 {self.encoded!r}" if self.encoded else "sent in clear"
        return f"Password for {self.username}: {self.password} ({how}, {self.mechanism}){where}"


@dataclass(frozen=True)
class MessageSeen:
    """A message that crossed in clear.

    Attributes:
        conn_id: the connection.
        direction: ``c2s`` (SMTP DATA/BDAT) or ``s2c`` (POP3 RETR/TOP).
        headers: ``(name, value)`` pairs in order, unfolded and decoded.
        body: the text body (the first text/plain part, decoded).
        size: the message size in octets.
        inside_tls: True if read with the key log.
    """

    conn_id: int
    direction: str
    headers: tuple[tuple[str, str], ...]
    body: str
    size: int
    inside_tls: bool = False

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class TLSSeen:
    """What the eavesdropper sees of one TLS session.

    Attributes:
        conn_id: the connection.
        records: how many TLS records crossed (both directions).
        bytes: how many bytes they took.
        application_records: how many of them were application_data.
        sni: the server name in the ClientHello (in clear, RFC 6066 §3).
        offered_suites: the cipher suites the client offered, by IANA name.
        version: the version the server chose.
        cipher_suite: the suite the server chose.
        certificate: the server certificate's subject, if it crossed in clear (TLS 1.2).
        decrypted: True if the key log opened it.
    """

    conn_id: int
    records: int
    bytes: int
    application_records: int
    sni: str | None
    offered_suites: tuple[str, ...]
    version: str | None
    cipher_suite: str | None
    certificate: str | None = None
    decrypted: bool = False


@dataclass
class Findings:
    """Everything :func:`eavesdrop` found. ``report()`` is what a notebook prints."""

    connections: list[int] = field(default_factory=list)
    banners: list[tuple[int, str]] = field(default_factory=list)
    ehlo_names: list[tuple[int, str]] = field(default_factory=list)
    capabilities: list[tuple[int, str]] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    mail_from: list[tuple[int, str]] = field(default_factory=list)
    rcpt_to: list[tuple[int, str]] = field(default_factory=list)
    #: The connections whose envelope (MAIL FROM, RCPT TO) was read inside TLS, with the
    #: key log: not in clear.
    envelope_inside_tls: set[int] = field(default_factory=set)
    messages: list[MessageSeen] = field(default_factory=list)
    tls: list[TLSSeen] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passwords(self) -> list[str]:
        """Every password read (convenience for tests and exercises)."""
        return [c.password for c in self.credentials if c.password is not None]

    @property
    def in_clear(self) -> bool:
        """True if anything beyond TLS metadata was read without keys."""
        return any(not c.inside_tls for c in self.credentials) or bool(
            [m for m in self.messages if not m.inside_tls]) or any(
            c not in self.envelope_inside_tls for c, _ in self.mail_from)

    def report(self) -> str:
        """A plain-text report, one finding per line, grouped by kind."""
        out: list[str] = [f"Eavesdropper's view of {len(self.connections)} connection(s)"]

        def section(title: str, lines: list[str]) -> None:
            if lines:
                out.append(f"{title}:")
                out.extend(f"  {line}" for line in lines)

        section("Greeting banners", [f"#{c} {b}" for c, b in self.banners])
        section("EHLO names", [f"#{c} {n}" for c, n in self.ehlo_names])
        section("Server capabilities", [f"#{c} {n}" for c, n in self.capabilities])
        section("Credentials", [f"#{c.conn_id} {c.describe()}" for c in self.credentials])
        section("Envelope", [f"#{c} MAIL FROM:<{a}>" for c, a in self.mail_from]
                + [f"#{c} RCPT TO:<{a}>" for c, a in self.rcpt_to])
        for message in self.messages:
            where = " (inside TLS, with the key log)" if message.inside_tls else ""
            verb = "sent" if message.direction == "c2s" else "downloaded"
            section(f"Message {verb} on #{message.conn_id}, {message.size} bytes{where}",
                    [f"{k}: {v}" for k, v in message.headers]
                    + [f"| {line}" for line in message.body.splitlines()])
        for seen in self.tls:
            lines = [f"{seen.records} TLS records, {seen.bytes} bytes "
                     f"({seen.application_records} application_data)"
                     + (": decrypted with the key log" if seen.decrypted
                        else ": nothing else readable"),
                     f"SNI (in clear): {seen.sni or '(none)'}",
                     f"Offered cipher suites (in clear): {', '.join(seen.offered_suites)}"]
            if seen.version:
                lines.append(f"Chosen: {seen.version}, {seen.cipher_suite}")
            if seen.certificate:
                lines.append(f"Server certificate (in clear, TLS 1.2): {seen.certificate}")
            section(f"TLS on #{seen.conn_id}", lines)
        out.extend(self.notes)
        return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ decoding

def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _address(argument: str) -> str:
    """The path of ``FROM:<a@b> SIZE=1`` (RFC 5321 §4.1.2), angle brackets removed."""
    value = argument.split(":", 1)[1].strip() if ":" in argument else argument.strip()
    if value.startswith("<"):
        return value[1:value.find(">")] if ">" in value else value[1:]
    return value.split()[0] if value else ""


def _message(conn_id: int, direction: str, raw: bytes, dot_stuffed: bool,
             inside_tls: bool) -> MessageSeen:
    lines = raw.split(b"\r\n")
    if dot_stuffed:  # RFC 5321 §4.5.2: the sender doubled leading dots; the end is "."
        if raw.endswith(b"\r\n.\r\n") or raw == b".\r\n":
            raw = raw[:-3]
            lines = raw.split(b"\r\n")
        raw = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    headers = tuple((k, " ".join(str(v).split())) for k, v in parsed.items())  # unfolded
    body = ""
    try:
        part = parsed.get_body(preferencelist=("plain", "html"))
        if part is not None:
            body = str(part.get_content())
    except (KeyError, LookupError, ValueError, AttributeError):
        payload = parsed.get_payload(decode=True)
        body = _text(payload) if isinstance(payload, bytes) else ""
    body = body.replace("\r\n", "\n")
    return MessageSeen(conn_id, direction, headers, body, len(raw), inside_tls)


class _Reader:
    """Walks the turns of one conversation and fills the findings."""

    def __init__(self, findings: Findings, conn_id: int, protocol: str,
                 inside_tls: bool) -> None:
        self.f = findings
        self.conn_id = conn_id
        self.protocol = protocol
        self.inside = inside_tls

    def credential(self, mechanism: str, username: str, password: str | None,
                   encoded: str = "", authzid: str = "") -> None:
        self.f.credentials.append(Credential(self.conn_id, mechanism, username, password,
                                             encoded, authzid, self.inside))

    def capability(self, name: str) -> None:
        if (self.conn_id, name) not in self.f.capabilities:  # EHLO again after STARTTLS
            self.f.capabilities.append((self.conn_id, name))

    def plain(self, encoded: str) -> None:
        decoded = _b64(encoded)
        if decoded is None or decoded.count(b"\0") != 2:
            return
        authzid, user, password = (_text(p) for p in decoded.split(b"\0"))
        self.credential("PLAIN", user, password, encoded, authzid)

    def read(self, turns: list[Turn]) -> None:
        """Interpret ``turns`` (commands, replies, content) of an SMTP or POP3 session."""
        pending: str | None = None  # a SASL exchange waiting for the client's next line
        login_user: str | None = None
        login_user_b64 = ""
        pop_user: str | None = None
        last_command = ""
        first_reply = True
        bdat = b""
        bdat_last = False
        if self.protocol == "imap":
            self.read_imap(turns)
            return
        for turn in turns:
            text = _text(turn.text)
            if turn.kind == "reply":
                greeting = text.startswith("220" if self.protocol == "smtp" else "+OK")
                if first_reply and last_command == "" and greeting:
                    self.f.banners.append((self.conn_id, turn.lines[0].decode(
                        "utf-8", "replace").rstrip("\r\n")))
                first_reply = False
                if last_command == "EHLO" and text.startswith("250"):
                    for capability in turn.lines[1:]:
                        self.capability(_text(capability[4:]).rstrip("\r\n"))
                challenge = text.startswith("334") or (  # RFC 4954 §4, RFC 5034 §4
                    text.startswith("+") and not text.startswith("+OK"))
                if pending and not challenge:
                    pending = None
                continue
            if turn.kind == "content":
                if turn.direction == "s2c" and last_command not in ("RETR", "TOP"):
                    if last_command == "CAPA":  # RFC 2449 §5: one capability a line
                        for capability in turn.lines[:-1]:
                            self.capability(_text(capability).rstrip("\r\n"))
                    continue  # LIST, UIDL: scan listings
                if last_command == "BDAT":  # RFC 3030 §2: chunks join, LAST ends them
                    bdat += turn.text
                    if not bdat_last:
                        continue
                    raw, bdat = bdat, b""
                else:
                    raw = turn.text
                dot = last_command != "BDAT"  # DATA and RETR/TOP are dot-stuffed
                self.f.messages.append(_message(self.conn_id, turn.direction, raw, dot,
                                                self.inside))
                continue
            line = text.rstrip("\r\n")
            if pending is not None:  # the client's answer to a 334 / "+ " challenge
                if line == "*":  # RFC 4954 §4: the client cancels
                    pending = None
                elif pending == "PLAIN":
                    self.plain(line)
                    pending = None
                elif pending == "LOGIN-USER":
                    decoded = _b64(line)
                    login_user, login_user_b64 = (_text(decoded) if decoded is not None
                                                  else line), line
                    pending = "LOGIN-PASS"
                elif pending == "LOGIN-PASS":
                    decoded = _b64(line)
                    self.credential("LOGIN", login_user or "?",
                                    _text(decoded) if decoded is not None else line,
                                    f"{login_user_b64} / {line}" if login_user_b64 else line)
                    pending = None
                elif pending == "CRAM-MD5":
                    decoded = _b64(line)
                    user = _text(decoded).rsplit(" ", 1)[0] if decoded else line
                    self.credential("CRAM-MD5", user, None, line)
                    pending = None
                continue
            words = line.split()
            verb = words[0].upper() if words else ""
            last_command = verb
            bdat_last = verb == "BDAT" and words[-1].upper() == "LAST"
            if verb in ("EHLO", "HELO", "LHLO") and len(words) > 1:
                if (self.conn_id, words[1]) not in self.f.ehlo_names:
                    self.f.ehlo_names.append((self.conn_id, words[1]))
            elif verb == "MAIL" and self.protocol == "smtp":
                self.f.mail_from.append((self.conn_id, _address(line[4:])))
                if self.inside:
                    self.f.envelope_inside_tls.add(self.conn_id)
            elif verb == "RCPT":
                self.f.rcpt_to.append((self.conn_id, _address(line[4:])))
                if self.inside:
                    self.f.envelope_inside_tls.add(self.conn_id)
            elif verb == "AUTH" and len(words) > 1:
                mechanism = words[1].upper()
                if mechanism == "PLAIN":
                    if len(words) > 2 and words[2] != "=":
                        self.plain(words[2])
                    else:
                        pending = "PLAIN"
                elif mechanism == "LOGIN":
                    if len(words) > 2:  # RFC 4954 §4 initial response: the user name
                        decoded = _b64(words[2])
                        login_user = _text(decoded) if decoded is not None else words[2]
                        login_user_b64 = words[2]
                        pending = "LOGIN-PASS"
                    else:
                        pending = "LOGIN-USER"
                elif mechanism == "CRAM-MD5":
                    pending = "CRAM-MD5"
            elif verb == "USER" and self.protocol == "pop3" and len(words) > 1:
                pop_user = line[5:]
            elif verb == "PASS" and self.protocol == "pop3":
                self.credential("USER/PASS", pop_user or "?", line[5:])
            elif verb == "APOP" and len(words) > 2:
                self.credential("APOP", words[1], None, words[2])


    def read_imap(self, turns: list[Turn]) -> None:
        """IMAP (RFC 9051): the greeting, LOGIN and AUTHENTICATE PLAIN, messages fetched
        (``BODY[]``) or appended."""
        pending_plain = False
        first = True
        for turn in turns:
            if turn.kind == "reply":
                said = turn.lines[0]
                if first and said.startswith(b"* OK"):
                    self.f.banners.append((self.conn_id, _text(said).rstrip("\r\n")))
                first = False
                if pending_plain and not said.startswith(b"+"):
                    pending_plain = False
                continue
            if turn.kind == "content":
                if turn.direction == "s2c":
                    self.f.messages.append(_message(self.conn_id, "s2c", turn.text, False,
                                                    self.inside))
                continue
            first = False
            head = _text(turn.lines[0]).rstrip("\r\n")
            if pending_plain:
                pending_plain = False
                if head != "*":
                    self.plain(head)
                continue
            words = head.split(" ")
            verb = words[1].upper() if len(words) > 1 else ""
            if verb == "LOGIN":
                user, password = _imap_astrings(turn.lines, 2)
                if user is not None:
                    self.credential("IMAP LOGIN", user, password)
            elif verb == "AUTHENTICATE" and len(words) > 2 and words[2].upper() == "PLAIN":
                if len(words) > 3:
                    self.plain(words[3])  # SASL-IR (RFC 4959)
                else:
                    pending_plain = True
            elif verb == "APPEND" and len(turn.lines) > 1:
                size = re.search(rb"\{(\d+)\+?\}\r?\n$", turn.lines[0])
                raw = b"".join(turn.lines[1:])
                if size:
                    raw = raw[:int(size.group(1))]
                self.f.messages.append(_message(self.conn_id, "c2s", raw, False, self.inside))


def _imap_astrings(lines: tuple[bytes, ...], skip: int) -> tuple[str | None, str | None]:
    """The two astrings after ``tag LOGIN`` (atoms, quoted strings or literals)."""
    data = b"".join(lines)
    head = data.split(b" ", skip)
    if len(head) <= skip:
        return None, None
    rest = head[skip]
    values: list[str] = []
    while rest and len(values) < 2:
        rest = rest.lstrip(b" ")
        if rest.startswith(b'"'):
            match = re.match(rb'"((?:[^"\\]|\\.)*)"', rest)
            if not match:
                break
            values.append(_text(re.sub(rb"\\(.)", rb"\1", match.group(1))))
            rest = rest[match.end():]
        elif (literal := re.match(rb"\{(\d+)\+?\}\r\n", rest)) is not None:
            size = int(literal.group(1))
            start = literal.end()
            values.append(_text(rest[start:start + size]))
            rest = rest[start + size:]
        else:
            word = re.match(rb"[^ \r\n]+", rest)
            if not word:
                break
            values.append(_text(word.group(0)))
            rest = rest[word.end():]
    if len(values) < 2:
        return (values[0] if values else None), None
    return values[0], values[1]


def _read_view(findings: Findings, view: ConnectionView) -> None:
    conn = view.connection
    protocol = view.protocol if view.protocol in ("smtp", "pop3", "imap") else "smtp"
    plain_c, plain_s = view.plaintext("c2s"), view.plaintext("s2c")
    if plain_c or plain_s:
        _Reader(findings, conn.id, protocol, False).read(
            pair_turns(plain_c, plain_s, protocol, server_first=True))
    session = view.tls
    if session is None:
        return
    records = session.client_records + session.server_records
    count, _ = session.application_data()
    decryption = view.decryption
    decrypted = decryption is not None and bool(decryption.records)
    hello = session.client_hello
    findings.tls.append(TLSSeen(
        conn.id, len(records), sum(r.size for r in records), count,
        session.sni, tuple(hello.cipher_suite_names) if hello else (),
        session.version, session.cipher_suite,
        session.certificates[0].subject if session.certificates else None, decrypted))
    if decryption is not None and decrypted:
        implicit = view.tls_offsets["c2s"] == 0
        _Reader(findings, conn.id, protocol, True).read(
            pair_turns(decryption.plaintext["c2s"], decryption.plaintext["s2c"], protocol,
                     server_first=implicit))


def eavesdrop(tap: Traffic, conn_id: int | None = None, *,
              keylog: KeyLog | Path | str | None = None) -> Findings:
    """What a passive sniffer reads from a capture.

    Args:
        tap: the capture.
        conn_id: one connection, or ``None`` for every SMTP/POP3/IMAP connection (each TCP
            connection once, even when both of its ends recorded it).
        keylog: give the eavesdropper the TLS keys too (SSLKEYLOGFILE path or
            :class:`KeyLog`); findings from inside TLS are marked ``inside_tls``.

    Returns:
        The :class:`Findings`; ``print(findings.report())`` in a notebook.
    """
    log = read_keylog(keylog) if isinstance(keylog, Path | str) else keylog
    findings = Findings()
    if conn_id is not None:
        chosen = tap.connection(conn_id)
        if chosen is None:
            raise KeyError(f"no connection {conn_id} in the capture")
        connections = [chosen]
    else:
        connections = distinct_connections(tap)
    for conn in connections:
        view = view_connection(conn, tap.segments(conn.id), log)
        if view.protocol not in ("smtp", "pop3", "imap"):
            continue
        findings.connections.append(conn.id)
        _read_view(findings, view)
        if conn_id is not None and (note := tap.left_out(conn.id)):
            findings.notes.append(f"#{conn.id}: {note}")
    if conn_id is None and (note := tap.left_out()):
        findings.notes.append(note)  # the capture's budget let older traffic go
    for seen in findings.tls:
        if not seen.decrypted:
            findings.notes.append(
                f"#{seen.conn_id}: after the TLS handshake only encrypted records remain: "
                f"{seen.application_records} application_data records; commands, "
                f"credentials and the message are not readable without the keys.")
    return findings
