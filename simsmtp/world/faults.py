"""Deterministic fault rules: make a host answer, stall or hang up on purpose.

A rule says "on host H, at command C (whose argument matches M), answer R instead / wait D
seconds first / drop the connection, this many times". The network asks the book before it
lets a server handle a command::

    world.faults.add("mail.anotherdomain.org", "RCPT", "450 4.7.1 Greylisted, try again later",
                     times=1)

The same rules can be written in a world file::

    [[faults]]
    host = "mail.anotherdomain.org"
    command = "RCPT"
    match = "bob@*"
    reply = "450 4.7.1 Greylisted, try again later"
    times = 1
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from simsmtp.protocol.replies import Reply
from simsmtp.trace import Trace

#: Where a fault can strike. CONNECT is the greeting (its argument is the client's address),
#: MESSAGE is the reply after ``<CRLF>.<CRLF>`` (RFC 5321 §4.1.1.4); the others are verbs.
COMMANDS = ("CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "MESSAGE", "STARTTLS", "AUTH",
            "QUIT")

# A reply line: a 4xx or 5xx code (RFC 5321 §4.2.1), then a space and text, or nothing.
_REPLY_LINE = re.compile(r"([45][0-5][0-9])(?: (.*))?")


def parse_reply(line: str) -> Reply:
    """Parse a failure reply line such as ``"450 4.7.1 Greylisted"`` into a :class:`Reply`.

    Raises:
        ValueError: when the line is not ``4xx``/``5xx`` followed by optional text
            (RFC 5321 §4.2: only transient or permanent failures make sense as faults).
    """
    m = _REPLY_LINE.fullmatch(line.strip())
    if m is None:
        raise ValueError(f"not a 4xx/5xx reply line: {line!r}")
    return Reply(int(m.group(1)), m.group(2) or "")


def _normalize_argument(argument: str) -> str:
    arg = argument.strip()
    if arg.startswith("<") and arg.endswith(">"):  # a path, RFC 5321 §4.1.2
        arg = arg[1:-1]
    return arg.lower()


@dataclass(eq=False)
class FaultRule:
    """One fault.

    Attributes:
        host: the host it applies to (an fnmatch pattern: ``"*"`` means every host).
        command: one of :data:`COMMANDS`.
        match: fnmatch pattern (case-insensitive) on the argument: the address for MAIL and
            RCPT (without ``<>``), the name for EHLO/HELO, the mechanism for AUTH, the
            client's IP for CONNECT, ``""`` otherwise (so ``"*"`` always matches).
        reply: answer this instead of the server's own reply (4xx/5xx), or ``None``.
        delay: real seconds to wait before answering (or before dropping).
        drop: close the connection without answering.
        times: how many times it fires; ``None`` means always.
        fired: how many times it has fired so far.
    """

    host: str
    command: str
    match: str = "*"
    reply: Reply | None = None
    delay: float = 0.0
    drop: bool = False
    times: int | None = None
    fired: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.command = self.command.upper()
        if self.command not in COMMANDS:
            raise ValueError(f"fault command must be one of {', '.join(COMMANDS)}, "
                             f"not {self.command!r}")
        if self.reply is not None and self.reply.code < 400:
            raise ValueError(f"a fault reply must be 4xx or 5xx, not {self.reply.code}")
        if not math.isfinite(self.delay) or self.delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {self.delay!r}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be >= 1 (or None for always), not {self.times!r}")
        if self.reply is None and not self.drop and self.delay == 0:
            raise ValueError("a fault rule needs a reply, a delay or drop=True")

    @property
    def remaining(self) -> int | None:
        """How many more times it fires (``None``: unlimited)."""
        return None if self.times is None else max(0, self.times - self.fired)

    @property
    def active(self) -> bool:
        """Whether it can still fire."""
        return self.times is None or self.fired < self.times

    def matches(self, host: str, command: str, argument: str = "") -> bool:
        """Whether the rule applies (ignoring whether it is used up)."""
        return (fnmatchcase(host.lower().rstrip("."), self.host.lower())
                and command.upper() == self.command
                and fnmatchcase(_normalize_argument(argument), self.match.lower()))

    def __str__(self) -> str:
        what = []
        if self.delay:
            what.append(f"wait {self.delay:g}s")
        if self.reply is not None:
            what.append(f"answer {self.reply}")
        if self.drop:
            what.append("drop the connection")
        times = "always" if self.times is None else f"{self.fired}/{self.times} used"
        match = "" if self.match == "*" else f" {self.match}"
        return f"{self.host} {self.command}{match}: {', then '.join(what)} ({times})"


class FaultBook:
    """The world's fault rules, checked in the order they were added.

    Args:
        trace: where to record ``fault.fired`` events (optional).
    """

    def __init__(self, trace: Trace | None = None) -> None:
        self._rules: list[FaultRule] = []
        self.trace = trace

    def add(self, host: str | FaultRule, command: str = "", reply: Reply | str | None = None,
            *, match: str = "*", delay: float = 0.0, drop: bool = False,
            times: int | None = None) -> FaultRule:
        """Add a rule and return it.

        Either pass a :class:`FaultRule`, or its parts:
        ``add("mail.anotherdomain.org", "RCPT", "450 4.7.1 Greylisted", times=1)``.
        """
        if isinstance(host, FaultRule):
            rule = host
        else:
            if isinstance(reply, str):
                reply = parse_reply(reply)
            rule = FaultRule(host, command, match, reply, float(delay), drop, times)
        self._rules.append(rule)
        return rule

    def check(self, host: str, command: str, argument: str = "") -> FaultRule | None:
        """The first active rule for this host, command and argument, or ``None``.

        A returned rule has used up one of its ``times``. Called by the network before a
        server answers ``command``.
        """
        for rule in self._rules:
            if rule.active and rule.matches(host, command, argument):
                rule.fired += 1
                if self.trace is not None:
                    self.trace.record("fault.fired", host, command=command.upper(),
                                      argument=argument, rule=str(rule))
                return rule
        return None

    def remove(self, rule: FaultRule) -> None:
        """Remove one rule (``ValueError`` if it is not in the book)."""
        self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    @property
    def hits(self) -> dict[FaultRule, int]:
        """How often each rule has fired, in the order the rules were added."""
        return {rule: rule.fired for rule in self._rules}

    def __iter__(self) -> Iterator[FaultRule]:
        return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        if not self._rules:
            return "FaultBook(no rules)"
        return "FaultBook(\n" + "".join(f"  {rule}\n" for rule in self._rules) + ")"
