"""Reading world files (TOML), with one clear message per mistake.

A world file has five parts, all optional except that a useful world needs a domain and a
host. Keys not listed here are errors (with a "did you mean" suggestion)::

    [world]
    name = "Alice writes to Bob"       # default: the file's name
    seed = 1                           # default 1: the seed of every id and shuffle
    epoch = "2025-03-10T09:00:00Z"     # default 2025-03-10T09:00:00Z; needs a timezone

    [domains."example.com"]
    mx = [{ preference = 10, host = "mail.example.com" }]   # [] or omitted: implicit MX
    null_mx = false                    # true: publish "MX 0 ." (RFC 7505), mx must be []
    users.alice = { name = "Alice", password = "wonderland" }   # both optional
    spf = "v=spf1 mx -all"             # TXT at the domain (RFC 7208)
    dkim_selector = "mail"             # a key made from the seed, published at
                                       # mail._domainkey.example.com; mail is signed with it
    dkim_bits = 1024                   # optional: the key size (1024 default, 2048 ...)
    dmarc = "v=DMARC1; p=reject"       # TXT at _dmarc.example.com (RFC 7489)
    mta_sts = "enforce"                # MTA-STS (RFC 8461): "enforce", "testing" or "none";
                                       # _mta-sts TXT + the policy at https://mta-sts.<domain>
    mta_sts_max_age = 86400            # optional: the policy's max_age (seconds)
    dnssec = true                      # sign the zone (RFC 4035), key made from the seed
    tlsa = ["3 1 1"]                   # TLSA at _25._tcp.<mx> (RFC 7672): "3 1 1" the MX's
                                       # key, "2 1 1" the world CA's key
    tls_rpt = "mailto:tlsrpt@example.com"   # TXT at _smtp._tls (RFC 8460)

    [hosts."mail.example.com"]
    domain = "example.com"             # must be one of the domains above
    roles = ["submission", "outbound"] # client, mx, outbound, pop3, submission
    down = false                       # true: the host refuses connections
    [hosts."mail.example.com".policy]  # every key optional, see simsmtp.world.parts.Policy
    outbound_tls = "opportunistic"
    mailauth = "enforce"               # an mx's SPF/DKIM/DMARC: "enforce", "report", "off"
    unauth_destination = "defer"       # relay refused: "defer" 454 4.7.1 (Postfix's default)
                                       # or "reject" 554 5.7.1; disable_vrfy_command = false
    mta_sts = false                    # outbound: apply MTA-STS policies (Postfix: no)
    dane = false                       # outbound: apply DNSSEC-signed TLSA (Postfix: opt-in)

    [[records]]                        # extra DNS records
    name = "example.com"
    type = "TXT"                       # A, AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT
    value = "v=spf1 mx -all"           # zone-file form; plain TXT text is quoted for you;
                                       # names are absolute (a final dot is optional)
    ttl = 3600                         # optional

    [[faults]]                         # see simsmtp.world.faults
    host = "mail.anotherdomain.org"
    command = "RCPT"
    reply = "450 4.7.1 Greylisted, try again later"
    times = 1

Names are case-insensitive and stored in lower case without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import date, datetime, time
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

from simsmtp.world.faults import COMMANDS, FaultBook, FaultRule, parse_reply
from simsmtp.world.parts import (
    DEFAULT_TTL,
    MAILAUTH_MODES,
    OUTBOUND_TLS,
    ROLES,
    UNAUTH_DESTINATION,
    Domain,
    Host,
    MXRecord,
    Policy,
    Record,
    User,
)

KeyPath = tuple[str | int, ...]


class WorldData(Protocol):
    """What reading and checking a world file touches of a world (a
    :class:`~simsmtp.world.model.World` has it all; this module is below it, and the world
    is built by the class its callers pass in as ``make``)."""

    source: str
    domains: dict[str, Domain]
    hosts: dict[str, Host]
    records: list[Record]
    faults: FaultBook


W = TypeVar("W", bound=WorldData)

DEFAULT_SEED = 1
DEFAULT_EPOCH = "2025-03-10T09:00:00Z"

#: Record types a world file may add (SOA and NS of the world's zones are generated).
RECORD_TYPES = ("A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SRV", "TXT")
_RECORD_EXAMPLES = {
    "A": "an IPv4 address like 127.0.0.9",
    "AAAA": "an IPv6 address like ::1",
    "CAA": 'a CAA value like 0 issue "ca.example"',
    "CNAME": "a host name like mail.example.com",
    "MX": "a preference and a host like 10 mail.example.com",
    "NS": "a host name like ns.example.com",
    "PTR": "a host name like mail.example.com",
    "SRV": "priority weight port target like 0 5 25 mail.example.com",
    "TXT": 'text like v=spf1 -all (or zone-file strings "a" "b")',
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML bare keys (TOML 1.0 "Keys")
# A host name: letters, digits, hyphens, labels of 1-63 characters (RFC 1035 §2.3.1,
# RFC 1123 §2.1).
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# DNS owner names may also have underscore labels (_dmarc, RFC 8552) and a leading wildcard.
_OWNER_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_OWNER = re.compile(rf"(?:\*\.)?{_OWNER_LABEL}(?:\.{_OWNER_LABEL})*")
# Local part as a dot-atom (RFC 5322 §3.4.1 atext), UTF-8 allowed (RFC 6531 §3.3).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class WorldFileError(ValueError):
    """A mistake in a world file: which file, which key, what was expected, what was found.

    ``str()`` is one line:
    ``myworld.toml: hosts."mail.example.com".roles[1]: expected one of client, mx, …; got "smtp"``.

    Attributes:
        source: the file (or ``"<string>"``).
        key: the key path in TOML notation (``""`` for the whole file).
        expected: what would have been right.
        got: what was there.
        line, column: for TOML syntax errors.
    """

    def __init__(self, source: str, key: str, expected: str, got: str = "", *,
                 line: int | None = None, column: int | None = None) -> None:
        self.source = source
        self.key = clip(key, 4 * MAX_SHOWN)
        self.expected = expected
        self.got = clip(got, 4 * MAX_SHOWN)
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        parts = [where, self.key] if self.key else [where]
        got = f"; got {self.got}" if self.got else ""
        return ": ".join(parts) + f": expected {self.expected}{got}"


#: The longest value an error message shows whole: a 10 MB TXT value is cut, with its size.
MAX_SHOWN = 120


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to about ``limit`` characters for a one-line message, saying how long
    it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def format_key(path: KeyPath) -> str:
    """A key path in TOML notation: ``hosts."mail.example.com".roles[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            seg = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += ("." if out else "") + seg
    return out


def show(value: Any) -> str:
    """A TOML-like rendering of a value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > MAX_SHOWN:
            head = json.dumps(value[:MAX_SHOWN], ensure_ascii=False)[:-1]
            return f"{head}…\" ({len(value):,} characters)"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (RecursionError, ValueError):
            return f"a list of {len(value)} items"
        return text if len(text) <= 60 else f"a list of {len(value)} items"
    return f"{type(value).__name__} {value!r}"


def _number(value: float) -> str:
    """A bound as people write it: ``60``, ``0.5``, ``1073741824``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _suggest(word: str, options: Iterable[str]) -> str:
    by_lower = {option.lower(): option for option in options}
    close = get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def _one_of(options: Iterable[str]) -> str:
    return "one of " + ", ".join(options)


class _Reader:
    """Checks values against what they should be and raises one WorldFileError."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: KeyPath, expected: str, got: str) -> NoReturn:
        raise WorldFileError(self.source, format_key(path), expected, got)

    def table(self, value: Any, path: KeyPath, allowed: Iterable[str] | None,
              required: dict[str, str] | None = None,
              what: str = "a table") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, what, show(value))
        if allowed is not None:  # None: any key (names of domains, hosts, users)
            known = sorted(allowed)
            for key in value:
                if key not in known:
                    self.fail((*path, key), _one_of(known),
                              f"unknown key {json.dumps(key)}{_suggest(key, known)}")
        for key, expected in (required or {}).items():
            if key not in value:
                self.fail((*path, key), f"{expected} (required)", "nothing")
        return value

    def list(self, value: Any, path: KeyPath, what: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, what, show(value))
        return value

    def string(self, value: Any, path: KeyPath, what: str = "a string") -> str:
        if not isinstance(value, str):
            self.fail(path, what, show(value))
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            self.fail(path, "true or false", show(value))
        return value

    def integer(self, value: Any, path: KeyPath, lo: int | None = None,
                hi: int | None = None, why: str = "") -> int:
        bounds = ("" if lo is None and hi is None else
                  f" >= {lo}" if hi is None else
                  f" <= {hi}" if lo is None else f" from {lo} to {hi}")
        what = f"an integer{bounds}{why}"
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(path, what, show(value))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(path, what, show(value))
        return value

    def number(self, value: Any, path: KeyPath, lo: float = 0.0, strict: bool = False,
               why: str = "", hi: float | None = None) -> float:
        what = f"a number {'>' if strict else '>='} {_number(lo)}"
        if hi is not None:
            what += f" and <= {_number(hi)}"
        what += why
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(path, what, show(value))
        if not math.isfinite(value) or value < lo or (strict and value == lo) \
                or (hi is not None and value > hi):
            self.fail(path, what, show(value))
        return float(value)

    def choice(self, value: Any, path: KeyPath, options: Iterable[str]) -> str:
        options = list(options)
        if not isinstance(value, str) or value not in options:
            hint = _suggest(value, options) if isinstance(value, str) else ""
            self.fail(path, _one_of(options), show(value) + hint)
        return value

    def hostname(self, value: Any, path: KeyPath, what: str = "a host name") -> str:
        expected = (f"{what} like mail.example.com (letters, digits, hyphens and dots, "
                    "RFC 1035 §2.3.1)")
        name = self.string(value, path, expected).lower().rstrip(".")
        # 253 characters without the final dot (RFC 1035 §2.3.4: 255 octets on the wire).
        if not _HOSTNAME.fullmatch(name) or len(name) > 253:
            self.fail(path, expected, show(value))
        return name


# -- the parts of a world file ----------------------------------------------------------------


#: The ranges of a policy's time and size keys: generous for a lesson, never absurd (a
#: ``1e300`` s sleep would hang a session for ever, a limit of 2**63 is no limit).
HOUR, DAY, GIB = 3600.0, 86400.0, 2**30
_COUNT = 1_000_000


def _policy_checks(r: _Reader) -> dict[str, Callable[[Any, KeyPath], Any]]:
    """The check of every policy key (a world file's, and a policy changed in code)."""

    def seconds(lo: float, hi: float, strict: bool = True) -> Callable[[Any, KeyPath], Any]:
        return lambda v, p: r.number(v, p, lo, strict=strict, hi=hi, why=" (seconds)")

    checks: dict[str, Callable[[Any, KeyPath], Any]] = {
        # RFC 1870 §4: SIZE 0 means no fixed limit.
        "size_limit": lambda v, p: r.integer(v, p, 0, GIB, why=" (bytes, 0 = no limit)"),
        "starttls": r.boolean,
        "tls_required_inbound": r.boolean,
        "auth_plaintext": r.boolean,
        "relay_networks": lambda v, p: _networks(r, v, p),
        "outbound_tls": lambda v, p: r.choice(v, p, OUTBOUND_TLS),
        # RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
        "max_recipients": lambda v, p: r.integer(v, p, 100, _COUNT,
                                                 why=" (RFC 5321 §4.5.3.1.8)"),
        "persona": lambda v, p: r.string(v, p, "a persona name like \"postfix\""),
        # RFC 5321 §4.5.3.2.7 asks for 5 minutes; shorter is allowed for demonstrations.
        "idle_timeout": seconds(0, DAY),
        "smtputf8": r.boolean,
        "pop3_plaintext": r.boolean,
        "mailauth": lambda v, p: r.choice(v, p, MAILAUTH_MODES),
        # Denial-of-service limits, Postfix's names and defaults (see Policy).
        "min_data_rate": lambda v, p: r.number(v, p, 0, strict=True, hi=GIB,
                                               why=" (octets/s)"),
        "max_connections": lambda v, p: r.integer(v, p, 1, _COUNT),
        "max_per_client": lambda v, p: r.integer(v, p, 1, _COUNT),
        "hard_error_limit": lambda v, p: r.integer(v, p, 2, _COUNT, why=" (RFC 5321 §3.8)"),
        "soft_error_limit": lambda v, p: r.integer(v, p, 1, _COUNT),
        "error_sleep_time": seconds(0, 60, strict=False),
        "junk_command_limit": lambda v, p: r.integer(v, p, 1, _COUNT),
        "auth_failure_limit": lambda v, p: r.integer(v, p, 1, _COUNT),
        "mailauth_timeout": seconds(0, HOUR),
        "reject_sender_login_mismatch": r.boolean,
        "max_connection_rate": lambda v, p: r.integer(v, p, 0, _COUNT,
                                                      why=" (0 = no limit)"),
        "max_auth_failure_rate": lambda v, p: r.integer(v, p, 0, _COUNT,
                                                        why=" (0 = no limit)"),
        "anvil_rate_time_unit": seconds(0, DAY),
        "stress_idle_timeout": seconds(0, DAY),
        # Postfix's teaching-relevant choices, by their Postfix names (see Policy).
        "disable_vrfy_command": r.boolean,
        "unauth_destination": lambda v, p: r.choice(v, p, UNAUTH_DESTINATION),
        # Outbound transport security (both off, as in Postfix's defaults).
        "mta_sts": r.boolean,
        "dane": r.boolean,
    }
    return checks


def _policy(r: _Reader, value: Any, path: KeyPath) -> Policy:
    checks = _policy_checks(r)
    table = r.table(value, path, checks)
    return Policy(**{key: checks[key](v, (*path, key)) for key, v in table.items()})


def _networks(r: _Reader, value: Any, path: KeyPath) -> list[str]:
    what = 'a list of networks in CIDR form like ["127.0.0.0/8"]'
    out = []
    for i, item in enumerate(r.list(value, path, what)):
        text = r.string(item, (*path, i), "a network in CIDR form like 127.0.0.0/8")
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            r.fail((*path, i), "a network in CIDR form like 127.0.0.0/8", show(item))
    return out


def _domain(r: _Reader, name: str, value: Any, path: KeyPath) -> Domain:
    table = r.table(value, path, ("mx", "null_mx", "users", *_AUTH_KEYS, *_TRANSPORT_KEYS))
    domain = Domain(name, null_mx=r.boolean(table.get("null_mx", False), (*path, "null_mx")))
    _domain_auth(r, domain, table, path)
    _domain_transport(r, domain, table, path)
    mx_what = "a list of MX tables like [{ preference = 10, host = \"mail.example.com\" }]"
    for i, item in enumerate(r.list(table.get("mx", []), (*path, "mx"), mx_what)):
        p = (*path, "mx", i)
        entry = r.table(item, p, ("preference", "host"),
                        {"preference": "an integer from 0 to 65535",
                         "host": "a host name like mail.example.com"},
                        what='an MX table like { preference = 10, host = "mail.example.com" }')
        # RFC 1035 §3.3.9: PREFERENCE is a 16-bit integer.
        pref = r.integer(entry["preference"], (*p, "preference"), 0, 65535)
        domain.mx.append(MXRecord(pref, r.hostname(entry["host"], (*p, "host"))))
    users = r.table(table.get("users", {}), (*path, "users"), None,
                    what='a table of users like users.alice = { name = "Alice" }')
    for local, spec in users.items():
        p = (*path, "users", local)
        # RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
        if not _LOCAL_PART.fullmatch(local) or len(local.encode()) > 64:
            r.fail(p, "a local part like alice (a dot-atom of at most 64 octets, "
                      "RFC 5322 §3.4.1)", show(local))
        user_t = r.table(spec, p, ("name", "password"),
                         what='a user table like { name = "Alice", password = "secret" }')
        password = user_t.get("password")
        domain.users[local] = User(
            f"{local}@{name}",
            r.string(user_t.get("name", local), (*p, "name")),
            None if password is None else r.string(password, (*p, "password")))
    return domain


# -- email authentication: spf, dkim_selector, dkim_bits, dmarc --------------------------------

_AUTH_KEYS = ("spf", "dkim_selector", "dkim_bits", "dmarc")

_SPF_EXAMPLE = 'an SPF record like "v=spf1 mx -all" (RFC 7208 §4.5)'
_DMARC_EXAMPLE = 'a DMARC record like "v=DMARC1; p=reject" (RFC 7489 §6.3)'
_SELECTOR_EXAMPLE = 'a selector like "mail" (DNS labels, RFC 6376 §3.1)'
_ON_PURPOSE = "; to publish a broken record on purpose, use [[records]]"
#: The mechanisms of RFC 7208 §5 and their arguments: a domain-spec (macros allowed,
#: §7), a dual CIDR length (§5.6), an address.
_DOMAIN_SPEC = r"[^\s/]+"
_SPF_MECHANISM = re.compile(
    r"[+?~-]?(?:all"
    rf"|include:{_DOMAIN_SPEC}|exists:{_DOMAIN_SPEC}|ptr(?::{_DOMAIN_SPEC})?"
    rf"|(?:a|mx)(?::{_DOMAIN_SPEC})?(?:/\d{{1,2}})?(?://\d{{1,3}})?"
    r"|ip4:(?P<ip4>[0-9.]+(?:/\d{1,2})?)|ip6:(?P<ip6>[0-9A-Fa-f:.]+(?:/\d{1,3})?))",
    re.IGNORECASE)
_SPF_MODIFIER = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9._-]*)=\S*")


def spf_problem(text: str) -> str | None:
    """What is wrong with an SPF record's syntax (RFC 7208 §4.5, §5, §6), or None.

    >>> spf_problem("v=spf1 mx -all") is None
    True
    >>> spf_problem("v=spf1 mx -al")
    'unknown mechanism "-al" (RFC 7208 §5)'
    """
    terms = text.split(" ")
    if terms[0].lower() != "v=spf1":  # RFC 7208 §4.5: exactly "v=spf1" then a space
        return 'the record must start with "v=spf1" (RFC 7208 §4.5)'
    seen: set[str] = set()
    for term in terms[1:]:
        if not term:
            continue  # several spaces are allowed (RFC 7208 §12: 1*SP)
        if _SPF_MECHANISM.fullmatch(term):
            m = _SPF_MECHANISM.fullmatch(term)
            assert m is not None
            address = m.group("ip4") or m.group("ip6")
            if address:
                try:
                    ipaddress.ip_network(address, strict=False)
                except ValueError:
                    return f'"{term}" has a bad address (RFC 7208 §5.6)'
            continue
        modifier = _SPF_MODIFIER.fullmatch(term)
        if modifier is None:
            return f'unknown mechanism "{term}" (RFC 7208 §5)'
        name = modifier.group("name").lower()
        if name in ("redirect", "exp"):
            if name in seen:  # RFC 7208 §6: each at most once
                return f'"{name}=" appears twice (RFC 7208 §6)'
            if term.endswith("="):
                return f'"{term}" needs a domain (RFC 7208 §6)'
            seen.add(name)
    return None


def dmarc_problem(text: str) -> str | None:
    """What is wrong with a DMARC record (RFC 7489 §6.3, §6.4), or None.

    >>> dmarc_problem("v=DMARC1; p=reject") is None
    True
    >>> dmarc_problem("v=DMARC1; p=block")
    'p=block is not none, quarantine or reject (RFC 7489 §6.3)'
    """
    from simsmtp.world.mailauth.dmarc import parse_record

    record = parse_record(text)
    if record is None:  # RFC 7489 §6.4: the first tag must be v=DMARC1
        return 'the record must start with "v=DMARC1" (RFC 7489 §6.4)'
    if record.problems:
        return "; ".join(record.problems) + " (RFC 7489 §6.3)"
    return None


def _selector_ok(text: str) -> bool:
    """A DKIM selector: one or more DNS labels (RFC 6376 §3.1, RFC 1035 §2.3.1); the whole
    key name must stay within 253 characters (RFC 1035 §2.3.4)."""
    return bool(_OWNER.fullmatch(text)) and not text.startswith("*") and len(text) <= 200


def _domain_auth(r: _Reader, domain: Domain, table: dict[str, Any], path: KeyPath) -> None:
    """Read the email-authentication keys of a domain table into ``domain``."""
    if "spf" in table:
        domain.spf = r.string(table["spf"], (*path, "spf"), _SPF_EXAMPLE).strip()
    if "dmarc" in table:
        domain.dmarc = r.string(table["dmarc"], (*path, "dmarc"), _DMARC_EXAMPLE).strip()
    if "dkim_selector" in table:
        domain.dkim_selector = r.string(table["dkim_selector"], (*path, "dkim_selector"),
                                        _SELECTOR_EXAMPLE).lower().rstrip(".")
    if "dkim_bits" in table:
        # RFC 8301 §3.2: at least 1024 bits; 4096 is the largest sensible (and slow).
        domain.dkim_bits = r.integer(table["dkim_bits"], (*path, "dkim_bits"), 1024, 4096,
                                     why=" (RFC 8301 §3.2)")
    _check_domain_auth(r, domain, path)


def _check_domain_auth(r: _Reader, domain: Domain, path: KeyPath) -> None:
    """The email-authentication values of ``domain`` are well formed."""
    if domain.spf is not None:
        problem = (spf_problem(domain.spf) if isinstance(domain.spf, str)
                   else "not a string")
        if problem is not None:
            r.fail((*path, "spf"), _SPF_EXAMPLE + _ON_PURPOSE,
                   f"{show(domain.spf)} ({problem})")
    if domain.dmarc is not None:
        problem = (dmarc_problem(domain.dmarc) if isinstance(domain.dmarc, str)
                   else "not a string")
        if problem is not None:
            r.fail((*path, "dmarc"), _DMARC_EXAMPLE + _ON_PURPOSE,
                   f"{show(domain.dmarc)} ({problem})")
    if domain.dkim_selector is not None and (not isinstance(domain.dkim_selector, str)
                                             or not _selector_ok(domain.dkim_selector)):
        r.fail((*path, "dkim_selector"), _SELECTOR_EXAMPLE, show(domain.dkim_selector))
    bits = domain.dkim_bits
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1024 <= bits <= 4096 \
            or bits % 2:  # RFC 8301 §3.2: at least 1024 bits
        r.fail((*path, "dkim_bits"), "an even integer from 1024 to 4096 (RFC 8301 §3.2)",
               show(bits))


# -- transport security: mta_sts, mta_sts_max_age, dnssec, tlsa, tls_rpt ------------------

_TRANSPORT_KEYS = ("mta_sts", "mta_sts_max_age", "dnssec", "tlsa", "tls_rpt")
_TLSA_EXAMPLE = 'a list of TLSA kinds like ["3 1 1", "2 1 1"] (usage selector matching type)'
_TLSA_KIND = re.compile(r"[0-3] [01] [0-2]")  # RFC 6698 §2.1.1-2.1.3


def _domain_transport(r: _Reader, domain: Domain, table: dict[str, Any],
                      path: KeyPath) -> None:
    """Read the transport-security keys of a domain table into ``domain``."""
    from simsmtp.world.mtasts import MAX_AGE_LIMIT, MODES

    if "mta_sts" in table:
        domain.mta_sts = r.choice(table["mta_sts"], (*path, "mta_sts"), MODES)
    if "mta_sts_max_age" in table:
        domain.mta_sts_max_age = r.integer(table["mta_sts_max_age"],
                                           (*path, "mta_sts_max_age"), 0, MAX_AGE_LIMIT,
                                           why=" (seconds, RFC 8461 §3.2)")
    if "dnssec" in table:
        domain.dnssec = r.boolean(table["dnssec"], (*path, "dnssec"))
    if "tlsa" in table:
        kinds = []
        for i, item in enumerate(r.list(table["tlsa"], (*path, "tlsa"), _TLSA_EXAMPLE)):
            text = r.string(item, (*path, "tlsa", i), _TLSA_EXAMPLE)
            if not _TLSA_KIND.fullmatch(" ".join(text.split())):
                r.fail((*path, "tlsa", i), 'a TLSA kind like "3 1 1" (RFC 6698 §2.1)',
                       show(item))
            kinds.append(" ".join(text.split()))
        domain.tlsa = kinds
    if "tls_rpt" in table:
        text = r.string(table["tls_rpt"], (*path, "tls_rpt"),
                        'a report address like "mailto:tlsrpt@example.com"').strip()
        if not all(u.strip().startswith(("mailto:", "https:")) for u in text.split(",")):
            r.fail((*path, "tls_rpt"), 'mailto: or https: addresses (RFC 8460 §3)',
                   show(text))
        domain.tls_rpt = text


def _host(r: _Reader, name: str, value: Any, path: KeyPath) -> Host:
    table = r.table(value, path, ("domain", "roles", "policy", "down"),
                    {"domain": "the domain the host belongs to",
                     "roles": f"a list of roles ({', '.join(ROLES)})"})
    roles: list[str] = []
    for i, role in enumerate(r.list(table["roles"], (*path, "roles"),
                                    f"a list of roles ({', '.join(ROLES)})")):
        role = r.choice(role, (*path, "roles", i), ROLES)
        if role in roles:
            r.fail((*path, "roles", i), "each role once", show(role))
        roles.append(role)
    policy = _policy(r, table.get("policy", {}), (*path, "policy"))
    return Host(name, r.hostname(table["domain"], (*path, "domain"), "a domain name"), roles,
                policy, r.boolean(table.get("down", False), (*path, "down")))


def txt_value(text: str) -> str:
    """Zone-file form of a TXT value: plain text is quoted and split into strings of at
    most 255 octets (RFC 1035 §3.3.14); text already in quotes is kept as it is."""
    if text.lstrip().startswith('"'):
        return text
    chunks: list[str] = []
    current = ""
    for ch in text:
        if len((current + ch).encode()) > 255:
            chunks.append(current)
            current = ""
        current += ch
    chunks.append(current)
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _canonical_rdata(rtype: str, value: str) -> tuple[str, str | None]:
    """The value in canonical zone-file form (names absolute, with the final dot), or the
    parse error. Names in values are absolute whether or not they end in a dot."""
    # dnspython (a dependency) parses the zone-file form; imported here, where it is used.
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value,
                                    origin=dns.name.root, relativize=False)
    except Exception as exc:  # dnspython raises several types; all mean "bad value"
        return value, str(exc) or type(exc).__name__
    return rdata.to_text(), None


#: The largest record data a DNS message can carry (RFC 1035 §3.2.1, §4.2.2).
MAX_RDATA = 65535


def _record(r: _Reader, value: Any, path: KeyPath) -> Record:
    table = r.table(value, path, ("name", "type", "value", "ttl"),
                    {"name": "the owner name like example.com",
                     "type": _one_of(RECORD_TYPES),
                     "value": "the record's value in zone-file form"},
                    what='a record table like { name = "example.com", type = "TXT", '
                         'value = "hello" }')
    raw_name = r.string(table["name"], (*path, "name"), "an owner name like example.com")
    name = raw_name.lower().rstrip(".")
    if not _OWNER.fullmatch(name) or len(name) > 253:
        r.fail((*path, "name"), "an owner name like example.com or _dmarc.example.com",
               show(raw_name))
    rtype = table["type"].upper() if isinstance(table["type"], str) else table["type"]
    if rtype == "SOA":
        r.fail((*path, "type"), _one_of(RECORD_TYPES) + " (SOA records are generated)",
               show(table["type"]))
    rtype = r.choice(rtype, (*path, "type"), RECORD_TYPES)
    text = r.string(table["value"], (*path, "value"), _RECORD_EXAMPLES[rtype])
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RDATA:
        r.fail((*path, "value"), f"a value of at most {MAX_RDATA:,} octets (RFC 1035 §3.2.1: "
                                 "RDLENGTH is 16 bits)", show(text))
    if rtype == "TXT":
        text = txt_value(text)
    text, error = _canonical_rdata(rtype, text)
    if error is not None:
        r.fail((*path, "value"), _RECORD_EXAMPLES[rtype],
               f"{show(table['value'])} ({clip(error)})")
    # RFC 2181 §8: a TTL is an unsigned 31-bit number of seconds.
    ttl = r.integer(table.get("ttl", DEFAULT_TTL), (*path, "ttl"), 0, 2**31 - 1)
    return Record(name, rtype, text, ttl)


def _fault(r: _Reader, value: Any, path: KeyPath) -> FaultRule:
    table = r.table(value, path, ("host", "command", "match", "reply", "delay", "drop", "times"),
                    {"host": "the host name (or a pattern like \"*\")",
                     "command": _one_of(COMMANDS)},
                    what='a fault table like { host = "mail.example.com", command = "RCPT", '
                         'reply = "450 4.7.1 Try later" }')
    host = r.string(table["host"], (*path, "host"), "a host name or a pattern like \"*\"")
    command = r.string(table["command"], (*path, "command"), _one_of(COMMANDS)).upper()
    r.choice(command, (*path, "command"), COMMANDS)
    match = r.string(table.get("match", "*"), (*path, "match"),
                     'an address pattern like "bob@*" or "*"')
    reply = None
    if "reply" in table:
        expected = "a 4xx or 5xx reply line like \"450 4.7.1 Try again later\" (RFC 5321 §4.2)"
        try:
            reply = parse_reply(r.string(table["reply"], (*path, "reply"), expected))
        except ValueError:
            r.fail((*path, "reply"), expected, show(table["reply"]))
    delay = r.number(table.get("delay", 0), (*path, "delay"), hi=HOUR, why=" (seconds)")
    drop = r.boolean(table.get("drop", False), (*path, "drop"))
    times = (None if "times" not in table
             else r.integer(table["times"], (*path, "times"), 1, _COUNT))
    if reply is None and not drop and not delay:
        r.fail(path, "at least one of reply, delay or drop = true", "none of them")
    return FaultRule(host.lower().rstrip("."), command, match, reply, delay, drop, times)


def _epoch(r: _Reader, value: Any, path: KeyPath) -> datetime:
    expected = "an ISO 8601 date-time with a timezone, like 2025-03-10T09:00:00Z"
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            r.fail(path, expected, show(value))
    if not isinstance(when, datetime) or when.utcoffset() is None:
        r.fail(path, expected, show(value))
    return when


def _unique(r: _Reader, table: dict[str, Any], path: KeyPath,
            convert: Callable[[str, KeyPath], str]) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    for key, value in table.items():
        name = convert(key, (*path, key))
        if name in out:
            r.fail((*path, key), f"a name different from {show(out[name][0])} "
                                 "(names are case-insensitive)", show(key))
        out[name] = (key, value)
    return out


def _build(doc: dict[str, Any], source: str, seed: int | None, make: Callable[..., W]) -> W:
    r = _Reader(source)
    top = r.table(doc, (), ("world", "domains", "hosts", "records", "faults"))
    meta = r.table(top.get("world", {}), ("world",), ("name", "seed", "epoch"))
    default_name = Path(source).stem if not source.startswith("<") else "world"
    world = make(
        name=r.string(meta.get("name", default_name), ("world", "name")),
        seed=(seed if seed is not None
              else r.integer(meta.get("seed", DEFAULT_SEED), ("world", "seed"))),
        epoch=_epoch(r, meta.get("epoch", DEFAULT_EPOCH), ("world", "epoch")),
        faults=FaultBook(),
        source=source,
    )
    domains = r.table(top.get("domains", {}), ("domains",), None,
                      what='a table of domains like [domains."example.com"]')
    for name, (key, value) in _unique(r, domains, ("domains",),
                                      lambda k, p: r.hostname(k, p, "a domain name")).items():
        world.domains[name] = _domain(r, name, value, ("domains", key))
    hosts = r.table(top.get("hosts", {}), ("hosts",), None,
                    what='a table of hosts like [hosts."mail.example.com"]')
    for name, (key, value) in _unique(r, hosts, ("hosts",), r.hostname).items():
        world.hosts[name] = _host(r, name, value, ("hosts", key))
    for i, item in enumerate(r.list(top.get("records", []), ("records",),
                                    "an array of tables written [[records]]")):
        world.records.append(_record(r, item, ("records", i)))
    for i, item in enumerate(r.list(top.get("faults", []), ("faults",),
                                    "an array of tables written [[faults]]")):
        world.faults.add(_fault(r, item, ("faults", i)))
    validate_world(world)
    return world


def validate_world(world: WorldData) -> None:
    """Check what only the whole world can tell (references between its parts).

    Raises:
        WorldFileError: naming the first problem found.
    """
    r = _Reader(world.source)
    for name, domain in world.domains.items():
        path: KeyPath = ("domains", name)
        if domain.null_mx and domain.mx:
            # RFC 7505 §3: a domain with a null MX must not publish any other MX record.
            r.fail((*path, "null_mx"), "false when mx records are listed (a null MX stands "
                                       "alone, RFC 7505 §3)", "true")
        for local, user in domain.users.items():
            if user.address.lower() != f"{local}@{name}".lower():
                r.fail((*path, "users", local), f"the address {local}@{name}",
                       show(user.address))
        # MX hosts that are not hosts of this world are allowed on purpose: they get no
        # address, so delivery fails to resolve them ("MX points nowhere", a lesson).
        _check_domain_auth(r, domain, path)
        if domain.mta_sts is not None and domain.mta_sts not in ("enforce", "testing", "none"):
            r.fail((*path, "mta_sts"), '"enforce", "testing" or "none" (RFC 8461 §3.2)',
                   show(domain.mta_sts))
    for name, host in world.hosts.items():
        path = ("hosts", name)
        if host.domain not in world.domains:
            r.fail((*path, "domain"), "one of the world's domains: "
                   + (", ".join(world.domains) or "(none declared)"),
                   show(host.domain) + _suggest(host.domain, world.domains))
        for i, role in enumerate(host.roles):
            if role not in ROLES:
                r.fail((*path, "roles", i), _one_of(ROLES), show(role) + _suggest(role, ROLES))
        policy = host.policy
        if policy.tls_required_inbound and "mx" in host.roles:
            # RFC 3207 §4: a publicly-referenced SMTP server (an MX) must not require TLS.
            r.fail((*path, "policy", "tls_required_inbound"),
                   'false for a host with role "mx" (RFC 3207 §4: a public MX must not '
                   "require STARTTLS)", "true")
        if policy.tls_required_inbound and not policy.starttls:
            r.fail((*path, "policy", "tls_required_inbound"),
                   "false when starttls = false (TLS cannot be required if it is not "
                   "offered)", "true")
        defaults = Policy()
        checks = _policy_checks(r)
        for f in fields(Policy):
            value, default = getattr(policy, f.name), getattr(defaults, f.name)
            numeric = isinstance(default, int | float) and not isinstance(default, bool)
            ok = (isinstance(value, int | float) and not isinstance(value, bool) if numeric
                  else type(value) is type(default))
            if not ok:
                r.fail((*path, "policy", f.name), f"a value like {show(default)}", show(value))
            if numeric and f.name in checks:  # the same ranges as in a world file
                if isinstance(default, int) and isinstance(value, float) \
                        and value.is_integer():
                    value = int(value)
                checks[f.name](value, (*path, "policy", f.name))
        for j, net in enumerate(policy.relay_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                r.fail((*path, "policy", "relay_networks", j),
                       "a network in CIDR form like 127.0.0.0/8", show(net))
        if policy.max_recipients < 100:  # RFC 5321 §4.5.3.1.8
            r.fail((*path, "policy", "max_recipients"),
                   "an integer >= 100 (RFC 5321 §4.5.3.1.8)", show(policy.max_recipients))
        if policy.outbound_tls not in OUTBOUND_TLS:
            r.fail((*path, "policy", "outbound_tls"), _one_of(OUTBOUND_TLS),
                   show(policy.outbound_tls))
        if policy.mailauth not in MAILAUTH_MODES:
            r.fail((*path, "policy", "mailauth"), _one_of(MAILAUTH_MODES),
                   show(policy.mailauth))
        if policy.unauth_destination not in UNAUTH_DESTINATION:
            r.fail((*path, "policy", "unauth_destination"), _one_of(UNAUTH_DESTINATION),
                   show(policy.unauth_destination))
    for i, record in enumerate(world.records):
        if record.rtype == "MX" and record.name in world.domains:
            r.fail(("records", i, "type"), f"MX records of {record.name} in "
                   f"{format_key(('domains', record.name, 'mx'))}", show(record.rtype))
        _check_auth_record(r, world, i, record)
    for i, rule in enumerate(world.faults):
        if not any(ch in rule.host for ch in "*?[") and rule.host not in world.hosts:
            r.fail(("faults", i, "host"), "one of the world's hosts: "
                   + (", ".join(world.hosts) or "(none declared)") + ', or a pattern like "*"',
                   show(rule.host) + _suggest(rule.host, world.hosts))


def _check_auth_record(r: _Reader, world: WorldData, i: int, record: Record) -> None:
    """A [[records]] TXT must not publish a second SPF, DMARC or DKIM key record where a
    domain's friendly key already does (two SPF records are a permerror, RFC 7208 §4.5;
    two DMARC records mean no policy, RFC 7489 §6.6.3)."""
    if record.rtype != "TXT":
        return
    text = record.value.replace('" "', "").strip('"').lower()
    for domain in world.domains.values():
        clash = None
        if domain.spf is not None and record.name == domain.name \
                and text.startswith("v=spf1"):
            clash = "spf"
        elif domain.dmarc is not None and record.name == f"_dmarc.{domain.name}" \
                and text.startswith("v=dmarc1"):
            clash = "dmarc"
        elif domain.dkim_selector and record.name == domain.dkim_name():
            clash = "dkim_selector"
        if clash is not None:
            r.fail(("records", i, "name"),
                   f"a name where {format_key(('domains', domain.name, clash))} does not "
                   "already publish a record (publish it once: with the domain's key or "
                   "in [[records]])", show(record.name))


def parse_toml(text: str, source: str, *, seed: int | None, make: Callable[..., W]) -> W:
    """Build a world from TOML text (what :meth:`World.from_toml
    <simsmtp.world.model.World.from_toml>` and :func:`~simsmtp.world.model.parse_world` do).

    Args:
        text: the world file's content.
        source: its name, for error messages.
        seed: overrides ``world.seed`` when given.
        make: the world's class, called with the ``[world]`` table's values as keywords.

    Raises:
        WorldFileError: a TOML syntax error (with line and column) or a wrong value.
    """
    try:
        doc = tomllib.loads(text)
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise _too_deep(text, source) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_POSITION.search(message)
        line = int(m.group(1)) if m else None
        column = int(m.group(2)) if m else None
        raise WorldFileError(source, "", "valid TOML", _TOML_POSITION.sub("", message),
                             line=line, column=column) from None
    return _build(doc, source, seed, make)


#: How deep arrays and inline tables may nest in a world file (none needs more than 3).
MAX_NESTING = 100
_NESTING_TOKENS = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
    r"|[\[\]{}=\n]", re.DOTALL)
_HEADER = re.compile(r"\[\[?\s*([^\]\n]*?)\s*\]\]?")


def _too_deep(text: str, source: str) -> WorldFileError:
    """The error for a document nested too deep for the TOML reader: the line and the key
    where arrays or inline tables go deeper than :data:`MAX_NESTING`."""
    depth = 0
    header = ""
    statement = 0  # where the current key = value began
    key = ""
    pos = 0
    while (m := _NESTING_TOKENS.search(text, pos)) is not None:
        token, pos = m.group(), m.end()
        if token == "\n":
            if depth == 0:
                statement = pos
        elif token == "[" and depth == 0 and not text[statement:m.start()].strip():
            h = _HEADER.match(text, m.start())  # a [table] or [[array]] header
            if h is not None:
                header, pos = h.group(1), h.end()
        elif token == "=" and depth == 0:
            key = text[statement:m.start()].strip()
        elif token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                column = m.start() - text.rfind("\n", 0, m.start())
                where = ".".join(part for part in (header, key) if part)
                return WorldFileError(
                    source, where, f"arrays and inline tables nested at most "
                                   f"{MAX_NESTING} deep", f"deeper nesting at line {line}",
                    line=line, column=column)
        elif token in "]}":
            depth = max(0, depth - 1)
    return WorldFileError(source, "", f"arrays and inline tables nested at most "
                                      f"{MAX_NESTING} deep", "deeper nesting")


def read_text(path: str | Path) -> str:
    """The text of a world file.

    Raises:
        WorldFileError: for a file that is not UTF-8.
        OSError: when the file cannot be read.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorldFileError(str(path), "", "UTF-8 text (TOML 1.0)",
                             f"a byte that is not UTF-8 at offset {exc.start}") from None


#: The name the seed world's file goes by in error messages.
SEED_SOURCE = "simsmtp/world/seed.toml"


def seed_text() -> str:
    """The text of the seed world shipped with simsmtp ("Alice writes to Bob")."""
    return resources.files("simsmtp.world").joinpath("seed.toml").read_text("utf-8")
