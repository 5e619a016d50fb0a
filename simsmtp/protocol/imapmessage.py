"""A message as IMAP shows it: sections, ENVELOPE and BODYSTRUCTURE (RFC 9051 §6.4.5,
§7.5.2), computed from the exact octets of the stored message, without I/O.

IMAP hands out parts of a message by *section* (``BODY[]``, ``BODY[HEADER]``,
``BODY[TEXT]``, ``BODY[1.2]``, ``BODY[1.MIME]``, ``BODY[HEADER.FIELDS (SUBJECT)]``) and the
octets must be exactly those stored: this module cuts the CRLF message bytes itself (the
stdlib parser would re-render them) and uses :mod:`email` only to read header values and
MIME parameters.

Rendering follows Dovecot's choices where the RFC leaves room: a text part without a
charset says ``("charset" "us-ascii")`` (RFC 2045 §5.2 default), the encoding defaults to
``"7bit"``, and the extension data of a single part is ``NIL NIL NIL NIL`` (md5,
disposition, language, location) when absent.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

__all__ = [
    "astring",
    "body_structure",
    "envelope",
    "header_fields",
    "nstring",
    "quoted",
    "section_bytes",
    "split_message",
]

CRLF = b"\r\n"
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """``(header, body)``: the header includes the blank line that ends it (RFC 5322 §2.1);
    a message without a blank line is all header."""
    if data.startswith(CRLF):
        return CRLF, data[2:]
    cut = data.find(b"\r\n\r\n")
    if cut < 0:
        return data, b""
    return data[:cut + 4], data[cut + 4:]


def _headers(header: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(header)


def _field_lines(header: bytes) -> list[tuple[str, bytes]]:
    """The header fields as (lower-case name, raw octets incl. continuation lines)."""
    fields: list[tuple[str, bytes]] = []
    for line in header.split(CRLF)[:-1]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + CRLF)
        else:
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line + CRLF))
    return fields


def header_fields(header: bytes, names: list[str], *, exclude: bool = False) -> bytes:
    """``HEADER.FIELDS (names)`` or ``HEADER.FIELDS.NOT (names)`` (RFC 9051 §6.4.5): the
    chosen fields as they are stored, then the blank line."""
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in _field_lines(header) if (name in wanted) != exclude]
    return b"".join(kept) + CRLF


def _boundary(header: bytes) -> str | None:
    msg = _headers(header)
    if msg.get_content_maintype() != "multipart":
        return None
    boundary = msg.get_param("boundary")
    return boundary if isinstance(boundary, str) and boundary else None


def _subparts(body: bytes, boundary: str) -> list[bytes]:
    """The parts of a multipart body (RFC 2046 §5.1.1), each with its own header."""
    delimiter = b"--" + boundary.encode("ascii", "replace")
    parts: list[bytes] = []
    lines = body.split(CRLF)
    current: list[bytes] | None = None
    for line in lines:
        stripped = line.rstrip(b" \t")
        if stripped == delimiter + b"--":
            if current is not None:
                parts.append(CRLF.join(current))
            return parts
        if stripped == delimiter:
            if current is not None:
                parts.append(CRLF.join(current))
            current = []
            continue
        if current is not None:
            current.append(line)
    if current is not None:
        parts.append(CRLF.join(current))
    return parts


def _content_type(header: bytes) -> tuple[str, str]:
    msg = _headers(header)
    if msg.get("content-type") is None:
        return "text", "plain"
    return msg.get_content_maintype(), msg.get_content_subtype()


def section_bytes(data: bytes, section: str) -> bytes | None:
    """The octets of a FETCH section (RFC 9051 §6.4.5), or None when the part does not
    exist. ``section`` is the text inside the brackets, upper case for its keywords:
    ``""``, ``"HEADER"``, ``"TEXT"``, ``"1.2"``, ``"1.MIME"``,
    ``"HEADER.FIELDS (SUBJECT FROM)"``.

    Part numbers: a non-multipart message has only part 1 (its body); a multipart's parts
    count from 1; inside a ``message/rfc822`` part the numbers go on in the encapsulated
    message, and ``HEADER``/``TEXT`` after a part number apply to that message.
    """
    spec = section.strip()
    path: list[int] = []
    while spec[:1].isdigit():
        number, _, spec = spec.partition(".")
        if not number.isdigit() or int(number) < 1:
            return None
        path.append(int(number))
    header, body = split_message(data)
    part_header = header
    for depth, n in enumerate(path):
        if depth:
            if _content_type(part_header) == ("message", "rfc822"):
                header, body = split_message(body)  # the encapsulated message
            elif _boundary(part_header) is None:
                return None  # a leaf part has no parts
            else:
                header = part_header
        boundary = _boundary(header)
        if boundary is None:
            if n != 1:
                return None
            part_header = header  # part 1 of a non-multipart is its body
        else:
            parts = _subparts(body, boundary)
            if n > len(parts):
                return None
            part_header, body = split_message(parts[n - 1])
    if path:
        if spec == "":
            return body
        if spec == "MIME":
            return part_header
        if _content_type(part_header) != ("message", "rfc822"):
            return None  # HEADER and TEXT need an encapsulated message here
        target = body
    else:
        if spec == "":
            return data
        target = data
    head, text = split_message(target)
    if spec == "HEADER":
        return head
    if spec == "TEXT":
        return text
    match = re.fullmatch(r"HEADER\.FIELDS(\.NOT)?\s*\((.*)\)", spec, re.S)
    if match:
        names = match.group(2).replace('"', " ").split()
        return header_fields(head, names, exclude=bool(match.group(1)))
    return None


# --- rendering -------------------------------------------------------------------------------


def quoted(text: str) -> str:
    """An IMAP quoted string (RFC 9051 §4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nstring(value: str | bytes | None) -> str:
    """NIL, a quoted string, or (for CR, LF, 8-bit or long text) a literal."""
    if value is None:
        return "NIL"
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if b"\r" in raw or b"\n" in raw or b"\0" in raw or len(raw) > 1024 or \
            any(b > 0x7e for b in raw):
        return "{" + str(len(raw)) + "}\r\n" + raw.decode("utf-8", "surrogateescape")
    return quoted(raw.decode("ascii"))


def astring(text: str) -> str:
    """An atom when it can be one, else a quoted string or literal (mailbox names)."""
    if text and not any(c in _ATOM_SPECIALS for c in text) and text.isascii():
        return text
    return nstring(text)


def _unfold(value: str | None) -> str | None:
    if value is None:
        return None
    return re.sub(r"\r?\n[ \t]", " ", str(value)).strip()


def _addresses(msg: Message, name: str) -> str:
    values = msg.get_all(name)
    if not values:
        return "NIL"
    out = []
    for display, address in getaddresses([_unfold(v) or "" for v in values]):
        if not address and not display:
            continue
        mailbox, _, host = address.rpartition("@") if "@" in address else (address, "", "")
        out.append("(" + " ".join([nstring(display or None), "NIL", nstring(mailbox or None),
                                   nstring(host or None)]) + ")")
    return "(" + "".join(out) + ")" if out else "NIL"


def envelope(data: bytes) -> str:
    """The ENVELOPE of a message (RFC 9051 §7.5.2): date, subject, from, sender, reply-to,
    to, cc, bcc, in-reply-to, message-id; sender and reply-to default to from."""
    header, _ = split_message(data)
    msg = _headers(header)
    sender = "sender" if msg.get("sender") else "from"
    reply_to = "reply-to" if msg.get("reply-to") else "from"
    parts = [nstring(_unfold(msg.get("date"))), nstring(_unfold(msg.get("subject"))),
             _addresses(msg, "from"), _addresses(msg, sender), _addresses(msg, reply_to),
             _addresses(msg, "to"), _addresses(msg, "cc"), _addresses(msg, "bcc"),
             nstring(_unfold(msg.get("in-reply-to"))),
             nstring(_unfold(msg.get("message-id")))]
    return "(" + " ".join(parts) + ")"


def _params(msg: Message, default_charset: bool) -> str:
    params = msg.get_params(header="content-type") or []
    pairs = [(k, v) for k, v in params[1:] if isinstance(v, str)]
    if default_charset and not any(k.lower() == "charset" for k, _ in pairs):
        pairs.insert(0, ("charset", "us-ascii"))  # RFC 2045 §5.2
    if not pairs:
        return "NIL"
    return "(" + " ".join(f"{quoted(k.lower())} {quoted(v)}" for k, v in pairs) + ")"


def _disposition(msg: Message) -> str:
    value = msg.get("content-disposition")
    if value is None:
        return "NIL"
    params = msg.get_params(header="content-disposition") or []
    kind = params[0][0] if params else str(value).split(";")[0]
    rest = [(k, v) for k, v in params[1:] if isinstance(v, str)]
    plist = "(" + " ".join(f"{quoted(k.lower())} {quoted(v)}" for k, v in rest) + ")" \
        if rest else "NIL"
    return f"({quoted(kind.strip().lower())} {plist})"


def body_structure(data: bytes, *, extended: bool = True) -> str:
    """BODYSTRUCTURE (``extended``) or BODY of a message or part (RFC 9051 §7.5.2)."""
    header, body = split_message(data)
    msg = _headers(header)
    boundary = _boundary(header)
    if boundary is not None:
        parts = [body_structure(p, extended=extended) for p in _subparts(body, boundary)]
        inner = "".join(parts) if parts else body_structure(b"\r\n", extended=extended)
        out = f"{inner} {quoted(msg.get_content_subtype())}"
        if extended:
            out += f" {_params(msg, False)} {_disposition(msg)} NIL NIL"
        return f"({out})"
    has_type = msg.get("content-type") is not None
    maintype, subtype = (msg.get_content_maintype(), msg.get_content_subtype()) \
        if has_type else ("text", "plain")
    encoding = (msg.get("content-transfer-encoding") or "7bit").strip().lower()
    fields = [quoted(maintype), quoted(subtype), _params(msg, maintype == "text"),
              nstring(_unfold(msg.get("content-id"))),
              nstring(_unfold(msg.get("content-description"))), quoted(encoding),
              str(len(body))]
    lines = str(body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0))
    if (maintype, subtype) == ("message", "rfc822"):
        fields += [envelope(body), body_structure(body, extended=extended), lines]
    elif maintype == "text":
        fields.append(lines)
    if extended:
        fields += [nstring(_unfold(msg.get("content-md5"))), _disposition(msg), "NIL", "NIL"]
    return "(" + " ".join(fields) + ")"
