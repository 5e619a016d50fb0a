"""SMTP grammar and limits: command lines, paths, ESMTP parameters, replies and message text.

Everything here is pure string/bytes work shared by the server and the client cores:

* the size limits of RFC 5321 §4.5.3.1 (and RFC 4954 §4 for SASL lines);
* the path grammar of RFC 5321 §4.1.2 (``<@route:local@domain>``, quoted local parts,
  address literals), with the limits checked separately so each gets its own reply;
* ESMTP parameters (RFC 5321 §4.1.2 ``esmtp-param``) and xtext (RFC 3461 §4);
* reply lines (RFC 5321 §4.2);
* message text: dot-stuffing (RFC 5321 §4.5.2), line-ending normalisation for a client
  (RFC 5321 §2.3.8) and the server's stray CR/LF policy (see :func:`replace_stray_cr_lf`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

# --- limits (RFC 5321 §4.5.3.1) --------------------------------------------------------------

#: Longest local part, in octets (RFC 5321 §4.5.3.1.1).
MAX_LOCAL_PART = 64
#: Longest domain, in octets (RFC 5321 §4.5.3.1.2).
MAX_DOMAIN = 255
#: Longest path including "<", ">", route and separators (RFC 5321 §4.5.3.1.3).
MAX_PATH = 256
#: Longest command line including CRLF (RFC 5321 §4.5.3.1.4).
MAX_COMMAND_LINE = 512
#: Longest reply line including CRLF (RFC 5321 §4.5.3.1.5).
MAX_REPLY_LINE = 512
#: Longest text line in DATA including CRLF, not counting a stuffed dot (RFC 5321 §4.5.3.1.6).
MAX_TEXT_LINE = 1000
#: The fewest recipients a server must buffer (RFC 5321 §4.5.3.1.8).
MIN_RECIPIENTS = 100
#: Longest SASL response line including CRLF a server must accept (RFC 4954 §4: 12288).
MAX_SASL_LINE = 12288
#: Longest DSN ENVID value, in characters before xtext decoding (RFC 3461 §4.4).
MAX_ENVID = 100
#: Longest DSN ORCPT value (RFC 3461 §4.2: 500 characters).
MAX_ORCPT = 500
#: Longest DNS label (RFC 1035 §2.3.4).
MAX_LABEL = 63
#: At most this many lines in one reply before the client calls it malformed (our guard).
MAX_REPLY_LINES = 1000


class GrammarError(ValueError):
    """Text that does not match the SMTP grammar or breaks a limit.

    Attributes:
        kind: what is wrong, so the server can pick the right reply: ``"syntax"``,
            ``"local_part"``, ``"domain"``, ``"path"`` (limits of RFC 5321 §4.5.3.1) or
            ``"utf8"`` (non-ASCII address without SMTPUTF8, RFC 6531 §3.4).
    """

    def __init__(self, message: str, kind: str = "syntax") -> None:
        super().__init__(message)
        self.kind = kind


# --- atoms -----------------------------------------------------------------------------------

# atext (RFC 5322 §3.2.3, used by RFC 5321 §4.1.2 Atom).
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_ATOM_ASCII = re.compile(rf"[{_ATEXT}]+")
_ATOM_UTF8 = re.compile(rf"(?:[{_ATEXT}]|[^\x00-\x7f])+")
# sub-domain = Let-dig [Ldh-str] (RFC 5321 §4.1.2).
_LABEL_ASCII = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_LABEL_UTF8 = re.compile(r"(?:[A-Za-z0-9]|[^\x00-\x7f])(?:(?:[A-Za-z0-9-]|[^\x00-\x7f])*"
                         r"(?:[A-Za-z0-9]|[^\x00-\x7f]))?")
# esmtp-keyword and esmtp-value (RFC 5321 §4.1.2).
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
_ESMTP_VALUE_UTF8 = re.compile(r"(?:[\x21-\x3c\x3e-\x7e]|[^\x00-\x7f])+")
# Reply line (RFC 5321 §4.2): code, then "-" or " " or end of line.
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|$)")


def is_ascii(text: str) -> bool:
    """True when every character is 7-bit US-ASCII."""
    return text.isascii()


def is_domain(text: str, *, utf8: bool = False) -> bool:
    """True for a syntactically valid RFC 5321 §4.1.2 ``Domain`` (labels of at most 63 octets).

    Args:
        text: the candidate domain (no trailing dot).
        utf8: allow U-labels (RFC 6531 §3.3).
    """
    if not text or len(text.encode("utf-8")) > MAX_DOMAIN:
        return False
    label = _LABEL_UTF8 if utf8 else _LABEL_ASCII
    for part in text.split("."):
        if not label.fullmatch(part) or len(part.encode("utf-8")) > MAX_LABEL:
            return False
    return True


def is_address_literal(text: str) -> bool:
    """True for an RFC 5321 §4.1.3 address literal: ``[192.0.2.1]``, ``[IPv6:2001:db8::1]``
    or a general ``[tag:content]`` literal."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if inner[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    if ":" in inner:  # General-address-literal = Standardized-tag ":" 1*dcontent
        tag, _, content = inner.partition(":")
        return bool(_LABEL_ASCII.fullmatch(tag)) and bool(
            re.fullmatch(r"[\x21-\x5a\x5e-\x7e]+", content))
    try:
        ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


# --- paths -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mailbox:
    """A parsed RFC 5321 §4.1.2 path.

    Attributes:
        local_part: as written (a quoted local part keeps its quotes).
        domain: the domain or address literal ("" for ``<Postmaster>`` and ``<>``).
        route: the source route (``@a,@b:``), ignored as RFC 5321 §3.6.1 says it SHOULD be.
        quoted: the local part was a quoted string.
    """

    local_part: str
    domain: str
    route: tuple[str, ...] = ()
    quoted: bool = False

    @property
    def address(self) -> str:
        """``local@domain`` (the route dropped); "" for the null path; ``Postmaster`` alone."""
        if not self.local_part and not self.domain:
            return ""
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part

    @property
    def is_null(self) -> bool:
        """True for the null reverse-path ``<>``."""
        return not self.local_part and not self.domain

    @property
    def has_routing(self) -> bool:
        """True when the local part hides another destination: ``%``, ``!`` or ``@``
        (the percent hack, bang paths and quoted ``"user@elsewhere"``): relay tricks a
        relay policy must not forward (``tests/hardening/CATALOGUE.md`` E57-E61)."""
        inner = self.local_part.strip('"')
        return any(ch in inner for ch in "%!@")

    @property
    def is_postmaster(self) -> bool:
        """True for ``Postmaster`` with or without a domain (case-insensitive, RFC 5321 §4.5.1)."""
        return self.local_part.lower() == "postmaster"


def _scan_path(text: str) -> int:
    """Index just past the ``>`` closing the path that starts at ``text[0] == "<"``."""
    in_quote = False
    i = 1
    while i < len(text):
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == ">":
            return i + 1
        elif ch == "<":
            break
        i += 1
    raise GrammarError("path is not closed by '>'")


def split_path(text: str) -> tuple[str, str]:
    """Split ``<path> params`` into the path (with brackets) and the parameter text.

    Raises:
        GrammarError: no ``<...>`` path, or junk right after it.
    """
    if not text.startswith("<"):
        raise GrammarError("path must be enclosed in '<' and '>'")
    end = _scan_path(text)
    path, rest = text[:end], text[end:]
    if rest and not rest.startswith(" "):
        raise GrammarError("a space must separate the path from parameters")
    return path, rest.strip(" ")


def _parse_local_part(text: str, utf8: bool) -> tuple[str, bool]:
    if text.startswith('"'):
        # Quoted-string = DQUOTE *QcontentSMTP DQUOTE (RFC 5321 §4.1.2)
        i, n = 1, len(text)
        while i < n:
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1] if i + 1 < n else ""
                if not nxt or not (" " <= nxt <= "~" or (utf8 and ord(nxt) > 127)):
                    raise GrammarError("bad quoted-pair in local part")
                i += 2
                continue
            if ch == '"':
                break
            if not (ch in " !" or "#" <= ch <= "[" or "]" <= ch <= "~"
                    or (utf8 and ord(ch) > 127)):
                raise GrammarError("bad character in quoted local part")
            i += 1
        if i != n - 1:
            raise GrammarError("bad quoted local part")
        return text, True
    atom = _ATOM_UTF8 if utf8 else _ATOM_ASCII
    if not text or not all(atom.fullmatch(a) for a in text.split(".")):
        raise GrammarError("bad local part (Dot-string)")
    return text, False


@functools.lru_cache(maxsize=4096)
def parse_path(path: str, *, allow_null: bool = False, allow_postmaster: bool = False,
               utf8: bool = False) -> Mailbox:
    """Parse ``<[@route:]local@domain>`` (RFC 5321 §4.1.2) and check the limits of §4.5.3.1.

    Remembered for the last 4096 paths (the result is immutable; a refusal is raised
    again each time): most mail comes from few senders to few recipients, and parsing an
    address costs more than the rest of a MAIL or RCPT command.

    Args:
        path: the path including angle brackets.
        allow_null: accept ``<>`` (a MAIL reverse-path).
        allow_postmaster: accept ``<Postmaster>`` without a domain (RCPT, RFC 5321 §4.5.1).
        utf8: accept UTF-8 in local part and domain (RFC 6531, SMTPUTF8 transaction).

    Raises:
        GrammarError: with ``kind`` telling syntax from a broken limit.
    """
    if len(path) < 2 or path[0] != "<" or path[-1] != ">":
        raise GrammarError("path must be enclosed in '<' and '>'")
    if len(path.encode("utf-8")) > MAX_PATH:  # RFC 5321 §4.5.3.1.3
        raise GrammarError(f"path longer than {MAX_PATH} octets", "path")
    inner = path[1:-1]
    if not inner:
        if allow_null:
            return Mailbox("", "")
        raise GrammarError("the null path <> is not allowed here")
    if not utf8 and not inner.isascii():
        raise GrammarError("non-ASCII address without SMTPUTF8", "utf8")
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        # A-d-l = At-domain *( "," At-domain ) ":"  (RFC 5321 §4.1.2)
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise GrammarError("source route without ':'")
        hops = adl.split(",")
        for hop in hops:
            if not hop.startswith("@") or not (is_domain(hop[1:], utf8=utf8)
                                               or is_address_literal(hop[1:])):
                raise GrammarError("bad source route")
        route = tuple(h[1:] for h in hops)
    if allow_postmaster and inner.lower() == "postmaster":
        return Mailbox(inner, "", route)
    at = inner.rfind("@")
    if at <= 0:
        raise GrammarError("mailbox needs local-part@domain")
    local_text, domain = inner[:at], inner[at + 1:]
    local, quoted = _parse_local_part(local_text, utf8)
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:  # RFC 5321 §4.5.3.1.1
        raise GrammarError(f"local part longer than {MAX_LOCAL_PART} octets", "local_part")
    if len(domain.encode("utf-8")) > MAX_DOMAIN:  # RFC 5321 §4.5.3.1.2
        raise GrammarError(f"domain longer than {MAX_DOMAIN} octets", "domain")
    if not (is_domain(domain, utf8=utf8) or is_address_literal(domain)):
        raise GrammarError("bad domain")
    return Mailbox(local, domain, route, quoted)


def format_path(address: str, *, allow_null: bool = False, allow_postmaster: bool = False,
                utf8: bool = False) -> str:
    """``<address>`` for a client command, after checking the address parses.

    This refuses CR, LF, NUL, ``>`` and anything else outside the path grammar, so an
    address can never smuggle a second command (aiosmtplib GHSA-v3q9-hj7j-63hq).

    Raises:
        GrammarError: the address is not a valid mailbox.
    """
    path = f"<{address}>"
    parse_path(path, allow_null=allow_null, allow_postmaster=allow_postmaster, utf8=utf8)
    return path


# --- ESMTP parameters ------------------------------------------------------------------------

def parse_params(text: str, *, utf8: bool = False) -> dict[str, str | None]:
    """Parse ``KEY=VALUE KEY2`` (RFC 5321 §4.1.2 ``Mail-parameters``), keys upper-cased.

    Raises:
        GrammarError: a malformed or repeated parameter.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    value_re = _ESMTP_VALUE_UTF8 if utf8 else _ESMTP_VALUE
    for token in text.split(" "):
        if not token:
            continue  # tolerate several spaces
        key, eq, value = token.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key):
            raise GrammarError(f"bad parameter keyword {key!r}")
        if eq and not value_re.fullmatch(value):
            raise GrammarError(f"bad value for parameter {key.upper()}")
        upper = key.upper()
        if upper in params:
            raise GrammarError(f"parameter {upper} given twice")
        params[upper] = value if eq else None
    return params


def format_params(params: dict[str, str | None] | None, *, utf8: bool = False) -> str:
    """`` KEY=VALUE ...`` (with a leading space) for a client command, after checking.

    Raises:
        GrammarError: a keyword or value outside the ESMTP grammar.
    """
    if not params:
        return ""
    value_re = _ESMTP_VALUE_UTF8 if utf8 else _ESMTP_VALUE
    out = []
    for key, value in params.items():
        if not _ESMTP_KEYWORD.fullmatch(key):
            raise GrammarError(f"bad parameter keyword {key!r}")
        if value is None:
            out.append(key)
        elif value_re.fullmatch(value):
            out.append(f"{key}={value}")
        else:
            raise GrammarError(f"bad value for parameter {key}")
    return " " + " ".join(out)


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 §4 xtext (``+2B`` is ``+``).

    Raises:
        GrammarError: a malformed ``+XX`` escape or a character xtext does not allow.
    """
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            hexpart = text[i + 1:i + 3]
            if len(hexpart) != 2 or not re.fullmatch(r"[0-9A-F]{2}", hexpart):
                raise GrammarError("bad xtext escape")
            out.append(chr(int(hexpart, 16)))
            i += 3
            continue
        if not ("!" <= ch <= "~") or ch == "=":
            raise GrammarError("bad xtext character")
        out.append(ch)
        i += 1
    return "".join(out)


def xtext_encode(text: str) -> str:
    """Encode text as RFC 3461 §4 xtext."""
    return "".join(ch if "!" <= ch <= "~" and ch not in "+=" else f"+{ord(ch):02X}"
                   for ch in text)


# --- replies ---------------------------------------------------------------------------------

def parse_reply_line(line: bytes) -> tuple[int, bool, str]:
    """Parse one reply line without its CRLF (RFC 5321 §4.2).

    Returns:
        ``(code, is_last, text)``.

    Raises:
        GrammarError: not ``NNN``, ``NNN text`` or ``NNN-text``, or too long.
    """
    if len(line) + 2 > MAX_REPLY_LINE:  # RFC 5321 §4.5.3.1.5
        raise GrammarError(f"reply line longer than {MAX_REPLY_LINE} octets")
    m = _REPLY_LINE.match(line)
    if not m:
        raise GrammarError(f"malformed reply line {line[:40]!r}")
    text = line[4:].decode("utf-8", "surrogateescape")
    if "\r" in text or "\n" in text:
        raise GrammarError("bare CR or LF inside a reply line")
    return int(m.group(1)), m.group(2) != b"-", text


# --- message text ----------------------------------------------------------------------------

_ANY_EOL = re.compile(rb"\r\n|\r|\n")
_STRAY = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _only_crlf(content: bytes) -> bool:
    """True when every CR and every LF of ``content`` is part of a CRLF pair.

    Three scans in C instead of a regular expression: the common case (a well-formed
    message) then costs no substitution at all. Each CRLF holds exactly one CR and one LF
    and two CRLFs never overlap, so the counts are equal exactly when nothing is stray.
    """
    pairs = content.count(b"\r\n")
    return content.count(b"\r") == pairs and content.count(b"\n") == pairs


def normalize_line_endings(content: bytes) -> bytes:
    """Turn every bare CR and bare LF into CRLF (a client never emits a bare CR or LF:
    RFC 5321 §2.3.8), and make sure non-empty content ends with CRLF."""
    out = content if _only_crlf(content) else _ANY_EOL.sub(b"\r\n", content)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def replace_stray_cr_lf(content: bytes) -> bytes:
    """The server's policy for content: each bare CR or bare LF becomes a space.

    As Postfix ``cleanup_replace_stray_cr_lf = yes``: the stored and relayed copy never
    holds a bare CR or LF, so it cannot carry a smuggled end-of-data to the next hop
    (RFC 5322 §2.3: CR and LF only together as CRLF; catalogue test 30).
    """
    if _only_crlf(content):
        return content
    return _STRAY.sub(b" ", content)


def dot_stuff(content: bytes) -> bytes:
    """The DATA wire form: normalised line endings, a dot doubled at the start of a line
    (RFC 5321 §4.5.2), then the end-of-data ``.<CRLF>``."""
    text = normalize_line_endings(content)
    if text[:1] == b"." or b"\n." in text:
        text = _LINE_START_DOT.sub(b"..", text)
    return text + b".\r\n"


def message_size(content: bytes) -> int:
    """The size SIZE counts: octets with CRLF line endings, no stuffed dots, no terminator
    (RFC 1870 §4)."""
    return len(normalize_line_endings(content))
