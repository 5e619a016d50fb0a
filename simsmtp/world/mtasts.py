"""MTA-STS (RFC 8461), the pure part: the TXT record, the policy file, MX matching, the cache.

A domain that wants its mail sent only over authenticated TLS publishes two things:

* a TXT record at ``_mta-sts.<domain>``: ``v=STSv1; id=20250310T090000;`` (RFC 8461 §3.1),
  whose ``id`` changes whenever the policy does;
* the policy itself over HTTPS at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
  (§3.2, §3.3)::

      version: STSv1
      mode: enforce
      mx: mail.anotherdomain.org
      max_age: 86400

A sending MTA caches the policy for ``max_age`` seconds (§5.1). In ``enforce`` mode it only
delivers to an MX host the policy lists, over TLS with a certificate that a public CA vouches
for and that names that MX host (§4.1, §4.2); anything else defers the mail. ``testing``
delivers anyway and reports (TLS-RPT, :mod:`simsmtp.world.tlsrpt`); ``none`` does nothing.

Everything here is pure: the network side (the HTTPS server and the fetch) lives in
:mod:`simsmtp.net.https`, the agent's use of it in :mod:`simsmtp.net.securemx`.

>>> p = parse_policy("version: STSv1\\nmode: enforce\\nmx: *.example.net\\nmax_age: 600\\n")
>>> p.mode, p.matches("mail.example.net"), p.matches("example.net")
('enforce', True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_AGE_LIMIT",
    "MODES",
    "POLICY_PATH",
    "POLICY_SIZE_LIMIT",
    "CachedPolicy",
    "PolicyCache",
    "PolicyError",
    "STSPolicy",
    "STSRecord",
    "mx_matches",
    "parse_policy",
    "parse_record",
    "policy_host",
    "policy_url",
    "record_name",
    "render_policy",
    "render_record",
    "select_record",
]

#: The policy modes (RFC 8461 §3.2 "mode").
MODES = ("enforce", "testing", "none")
#: The largest max_age a policy may give: 31557600 s, one year (RFC 8461 §3.2).
MAX_AGE_LIMIT = 31_557_600
#: Where the policy lives on its host (RFC 8461 §3.3).
POLICY_PATH = "/.well-known/mta-sts.txt"
#: Senders should not read more of a policy than this (RFC 8461 §3.3: "64 KB").
POLICY_SIZE_LIMIT = 64 * 1024

_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+")


class PolicyError(ValueError):
    """A TXT record or a policy file that does not follow RFC 8461 (the reason says why)."""


def record_name(domain: str) -> str:
    """Where a domain's MTA-STS TXT record lives (RFC 8461 §3.1)."""
    return f"_mta-sts.{_bare(domain)}"


def policy_host(domain: str) -> str:
    """The host that serves a domain's policy: ``mta-sts.<domain>`` (RFC 8461 §3.3)."""
    return f"mta-sts.{_bare(domain)}"


def policy_url(domain: str) -> str:
    """``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 §3.3)."""
    return f"https://{policy_host(domain)}{POLICY_PATH}"


def _bare(name: str) -> str:
    return name.strip().lower().rstrip(".")


# ------------------------------------------------------------------------------ TXT record


@dataclass(frozen=True)
class STSRecord:
    """The ``_mta-sts`` TXT record: its version (always STSv1) and policy id."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()


def parse_record(text: str) -> STSRecord:
    """Parse one ``_mta-sts`` TXT record (RFC 8461 §3.1).

    ``v=STSv1`` must come first; ``id`` is 1 to 32 letters and digits; other fields are
    extensions, kept and otherwise ignored.

    Raises:
        PolicyError: the record does not follow §3.1.
    """
    fields = [f.strip() for f in text.strip().split(";")]
    if fields and fields[-1] == "":
        fields.pop()  # a trailing ";" is allowed (sts-text-record ends with *( ";" ... ))
    if not fields or fields[0] != "v=STSv1":
        raise PolicyError('an MTA-STS record starts with "v=STSv1" (RFC 8461 §3.1)')
    ident: str | None = None
    extensions: list[tuple[str, str]] = []
    for item in fields[1:]:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise PolicyError(f"field {item!r} is not name=value (RFC 8461 §3.1)")
        if key == "id":
            if not _ID.fullmatch(value):
                raise PolicyError(f"id {value!r} must be 1-32 letters and digits "
                                  "(RFC 8461 §3.1)")
            ident = value
        else:
            extensions.append((key, value))
    if ident is None:
        raise PolicyError("the record has no id (RFC 8461 §3.1)")
    return STSRecord(ident, tuple(extensions))


def select_record(texts: list[str]) -> STSRecord | None:
    """The one MTA-STS record among a name's TXT records, or None.

    Records that do not start with ``v=STSv1`` are ignored; more than one that does means
    no policy (RFC 8461 §3.1: "the sender MUST assume there is no policy").

    Raises:
        PolicyError: the single STSv1 record is malformed.
    """
    candidates = [t for t in texts if t.strip().startswith("v=STSv1")]
    if len(candidates) != 1:
        return None
    return parse_record(candidates[0])


def render_record(ident: str) -> str:
    """The TXT record text for a policy id."""
    return f"v=STSv1; id={ident};"


# ------------------------------------------------------------------------------ policy file


@dataclass(frozen=True)
class STSPolicy:
    """A parsed policy file (RFC 8461 §3.2).

    Attributes:
        mode: ``"enforce"``, ``"testing"`` or ``"none"``.
        max_age: seconds a sender may cache it.
        mx: the MX host patterns (``mail.example.com`` or ``*.example.com``).
    """

    mode: str
    max_age: int
    mx: tuple[str, ...] = ()

    def matches(self, host: str) -> bool:
        """Whether MX host ``host`` is one the policy allows (RFC 8461 §4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: an exact name, or ``*.`` matching exactly one leftmost label.

    >>> mx_matches("*.example.com", "mx.example.com"), mx_matches("*.example.com",
    ...     "a.b.example.com")
    (True, False)
    """
    pattern, host = _bare(pattern), _bare(host)
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return pattern == host


def parse_policy(text: str) -> STSPolicy:
    """Parse a policy file (RFC 8461 §3.2).

    Lines are ``key: value``, ended by CRLF or LF; unknown keys are ignored; ``version``,
    ``mode`` and ``max_age`` are required, and at least one ``mx`` unless the mode is
    ``none``.

    Raises:
        PolicyError: the policy does not follow §3.2.
    """
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"line {number} {line!r} is not 'key: value' (RFC 8461 §3.2)")
        key, value = key.strip(), value.strip()
        if key == "mx":
            if not _MX_PATTERN.fullmatch(value.lower()):
                raise PolicyError(f"mx {value!r} is not a host name or *.domain "
                                  "(RFC 8461 §3.2)")
            mx.append(value.lower())
        elif key in ("version", "mode", "max_age") and key in values:
            raise PolicyError(f"{key} is given twice (RFC 8461 §3.2)")
        else:
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        raise PolicyError('the policy must say "version: STSv1" (RFC 8461 §3.2)')
    mode = values.get("mode")
    if mode not in MODES:
        raise PolicyError(f"mode must be enforce, testing or none, not {mode!r} "
                          "(RFC 8461 §3.2)")
    age = values.get("max_age", "")
    if not age.isdigit() or len(age) > 10 or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age must be 0 to {MAX_AGE_LIMIT} seconds, not {age!r} "
                          "(RFC 8461 §3.2)")
    if mode != "none" and not mx:
        raise PolicyError(f"a policy in mode {mode} must list its mx hosts (RFC 8461 §3.2)")
    return STSPolicy(mode, int(age), tuple(mx))


def render_policy(policy: STSPolicy) -> str:
    """The policy file text (CRLF line endings, RFC 8461 §3.2)."""
    lines = ["version: STSv1", f"mode: {policy.mode}"]
    lines += [f"mx: {mx}" for mx in policy.mx]
    lines.append(f"max_age: {policy.max_age}")
    return "".join(f"{line}\r\n" for line in lines)


# ------------------------------------------------------------------------------ the cache


@dataclass(frozen=True)
class CachedPolicy:
    """A policy as a sender keeps it: with its id and when it was fetched."""

    domain: str
    id: str
    policy: STSPolicy
    fetched_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age

    def fresh(self, now: float) -> bool:
        """Still valid at ``now`` (RFC 8461 §5.1: for max_age seconds after the fetch)."""
        return now < self.expires_at


@dataclass
class PolicyCache:
    """A sender's memory of the policies it fetched, on the world's virtual clock.

    RFC 8461 §5.1: the policy is used until max_age runs out; a new TXT id means fetch
    again; a failed fetch keeps the cached policy while it is fresh. What is cached is what
    defeats an attacker who strips STARTTLS *after* the first contact.
    """

    entries: dict[str, CachedPolicy] = field(default_factory=dict)

    def get(self, domain: str, now: float) -> CachedPolicy | None:
        """The fresh cached policy of ``domain``, or None (expired ones are forgotten)."""
        found = self.entries.get(_bare(domain))
        if found is not None and not found.fresh(now):
            del self.entries[_bare(domain)]
            return None
        return found

    def put(self, domain: str, ident: str, policy: STSPolicy, now: float) -> CachedPolicy:
        """Remember a freshly fetched policy."""
        entry = CachedPolicy(_bare(domain), ident, policy, now)
        self.entries[entry.domain] = entry
        return entry

    def forget(self, domain: str) -> None:
        """Drop a domain's policy (a learner starting over: the first contact again)."""
        self.entries.pop(_bare(domain), None)

    def clear(self) -> None:
        self.entries.clear()
