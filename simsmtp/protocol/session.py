"""The SMTP session: states, the one transition table per role, and the per-connection
(:class:`Session`) and per-transaction (:class:`Envelope`) data.

Every "is this verb allowed here?" question of both cores is answered from
:data:`SERVER_TRANSITIONS` and :data:`CLIENT_TRANSITIONS`; so are the 503 texts, the
client's ``LocalProtocolError`` messages and the state diagram a notebook draws with
:func:`transitions`.

Verbs are SMTP command verbs (``"MAIL"``), plus ``"BDAT LAST"`` (the last chunk) and a few
pseudo-verbs in angle brackets for steps that are not command lines: ``<greeting>``,
``<end-of-data>`` (the message content with its terminator), ``<auth-response>`` (a line of
a SASL exchange), ``<handshake>`` (a STARTTLS handshake), ``<implicit-handshake>`` (TLS
before the greeting, port 465).

How a reply moves the state (both roles, :func:`next_state`): ``221`` and ``421`` always
lead to CLOSED; an intermediate ``3xx`` (``334``, ``354``) leads to ``Transition.more`` when
set; any other positive reply to ``ok``; ``4xx``/``5xx`` to ``fail``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar


class ServerState(Enum):
    """Where a server connection is."""

    #: Greeted (220 sent); no HELO/EHLO yet.
    CONNECTED = "CONNECTED"
    #: HELO/EHLO done; no mail transaction.
    GREETED = "GREETED"
    #: MAIL accepted; no recipient yet.
    MAIL = "MAIL"
    #: At least one recipient accepted.
    RCPT = "RCPT"
    #: 354 sent; receiving message content up to <CRLF>.<CRLF>.
    DATA = "DATA"
    #: Inside a chunked (BDAT, RFC 3030) transaction: at least one non-last chunk taken.
    BDAT = "BDAT"
    #: A SASL exchange (AUTH, RFC 4954) is running: lines are responses, not commands.
    AUTH = "AUTH"
    #: 220 to STARTTLS sent (or implicit TLS): waiting for the TLS handshake.
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: 221/421 sent, the handshake failed, or the peer went away.
    CLOSED = "CLOSED"


class ClientState(Enum):
    """Where a client connection is."""

    #: Connected, waiting for the 220 greeting.
    CONNECTING = "CONNECTING"
    #: Greeting received; no HELO/EHLO yet (also right after a STARTTLS handshake).
    CONNECTED = "CONNECTED"
    #: HELO/EHLO accepted; no mail transaction.
    GREETED = "GREETED"
    #: MAIL sent (and accepted, once the reply is in).
    MAIL = "MAIL"
    #: At least one RCPT sent/accepted.
    RCPT = "RCPT"
    #: DATA sent, waiting for the 354.
    DATA = "DATA"
    #: 354 received: the message content may be sent.
    MESSAGE = "MESSAGE"
    #: Inside a chunked (BDAT) transaction.
    BDAT = "BDAT"
    #: A SASL exchange is running (334 received).
    AUTH = "AUTH"
    #: 220 to STARTTLS received (or implicit TLS): the TLS handshake is running.
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: QUIT answered, 421 received, TLS failed, or the connection is gone.
    CLOSED = "CLOSED"


State = ServerState | ClientState
#: One role's state enum.
RoleState = TypeVar("RoleState", ServerState, ClientState)


@dataclass(frozen=True)
class Transition(Generic[RoleState]):
    """Where a verb leads.

    Attributes:
        ok: the state after a positive reply.
        fail: the state after a 4xx/5xx reply.
        more: the state after an intermediate 3xx reply, when it differs from ``ok``.
    """

    ok: RoleState
    fail: RoleState
    more: RoleState | None = None


def next_state(transition: Transition[RoleState], code: int) -> RoleState:
    """The state a reply ``code`` leads to along ``transition`` (rules in the module doc)."""
    if code in (221, 421):  # RFC 5321 §3.8, §4.1.1.10: the connection closes
        return type(transition.ok).CLOSED
    if 300 <= code < 400 and transition.more is not None:
        return transition.more
    return transition.ok if code < 400 else transition.fail


def _rows(rows: list[tuple[RoleState, tuple[str, ...], Transition[RoleState]]],
          ) -> Mapping[tuple[RoleState, str], Transition[RoleState]]:
    table: dict[tuple[RoleState, str], Transition[RoleState]] = {}
    for state, verbs, transition in rows:
        for verb in verbs:
            table[(state, verb)] = transition
    return MappingProxyType(table)


_S = ServerState
_ANYTIME = ("NOOP", "RSET", "VRFY", "HELP")  # RFC 5321 §4.1.4: usable at any time
_T = Transition

#: The server's transition table: ``(state, verb) -> Transition``.
SERVER_TRANSITIONS: Mapping[tuple[ServerState, str], Transition[ServerState]] = _rows([
    (_S.CONNECTED, ("EHLO", "HELO"), _T(_S.GREETED, _S.CONNECTED)),
    (_S.CONNECTED, _ANYTIME, _T(_S.CONNECTED, _S.CONNECTED)),
    (_S.CONNECTED, ("STARTTLS",), _T(_S.TLS_HANDSHAKE, _S.CONNECTED)),
    (_S.CONNECTED, ("QUIT",), _T(_S.CLOSED, _S.CLOSED)),
    (_S.GREETED, ("EHLO", "HELO"), _T(_S.GREETED, _S.GREETED)),
    (_S.GREETED, ("NOOP", "VRFY", "HELP", "ETRN"), _T(_S.GREETED, _S.GREETED)),
    (_S.GREETED, ("RSET",), _T(_S.GREETED, _S.GREETED)),
    (_S.GREETED, ("MAIL",), _T(_S.MAIL, _S.GREETED)),
    (_S.GREETED, ("AUTH",), _T(_S.GREETED, _S.GREETED, _S.AUTH)),
    (_S.GREETED, ("STARTTLS",), _T(_S.TLS_HANDSHAKE, _S.GREETED)),
    (_S.GREETED, ("QUIT",), _T(_S.CLOSED, _S.CLOSED)),
    (_S.MAIL, ("EHLO", "HELO", "RSET"), _T(_S.GREETED, _S.MAIL)),
    (_S.MAIL, ("NOOP", "VRFY", "HELP"), _T(_S.MAIL, _S.MAIL)),
    (_S.MAIL, ("RCPT",), _T(_S.RCPT, _S.MAIL)),
    (_S.MAIL, ("QUIT",), _T(_S.CLOSED, _S.CLOSED)),
    (_S.RCPT, ("EHLO", "HELO", "RSET"), _T(_S.GREETED, _S.RCPT)),
    (_S.RCPT, ("NOOP", "VRFY", "HELP", "RCPT"), _T(_S.RCPT, _S.RCPT)),
    (_S.RCPT, ("DATA",), _T(_S.DATA, _S.RCPT)),
    (_S.RCPT, ("BDAT",), _T(_S.BDAT, _S.GREETED)),  # RFC 3030 §2: a failed chunk ends it
    (_S.RCPT, ("BDAT LAST",), _T(_S.GREETED, _S.GREETED)),
    (_S.RCPT, ("QUIT",), _T(_S.CLOSED, _S.CLOSED)),
    (_S.DATA, ("<end-of-data>",), _T(_S.GREETED, _S.GREETED)),
    (_S.BDAT, ("BDAT",), _T(_S.BDAT, _S.GREETED)),
    (_S.BDAT, ("BDAT LAST",), _T(_S.GREETED, _S.GREETED)),
    (_S.BDAT, ("EHLO", "HELO", "RSET"), _T(_S.GREETED, _S.BDAT)),
    (_S.BDAT, ("NOOP",), _T(_S.BDAT, _S.BDAT)),
    (_S.BDAT, ("QUIT",), _T(_S.CLOSED, _S.CLOSED)),
    (_S.AUTH, ("<auth-response>",), _T(_S.GREETED, _S.GREETED, _S.AUTH)),
    (_S.TLS_HANDSHAKE, ("<handshake>", "<implicit-handshake>"),
     _T(_S.CONNECTED, _S.CLOSED)),
])

_C = ClientState

#: The client's transition table: ``(state, verb) -> Transition``. The client moves along
#: ``ok`` as soon as it sends (optimistically, so PIPELINING can go on) and falls back when
#: a reply says otherwise; see :class:`simsmtp.protocol.client.ClientConnection`.
CLIENT_TRANSITIONS: Mapping[tuple[ClientState, str], Transition[ClientState]] = _rows([
    (_C.CONNECTING, ("<greeting>",), _T(_C.CONNECTED, _C.CONNECTED)),
    (_C.CONNECTED, ("EHLO", "HELO"), _T(_C.GREETED, _C.CONNECTED)),
    (_C.CONNECTED, _ANYTIME, _T(_C.CONNECTED, _C.CONNECTED)),
    (_C.CONNECTED, ("STARTTLS",), _T(_C.TLS_HANDSHAKE, _C.CONNECTED)),
    (_C.CONNECTED, ("QUIT",), _T(_C.CLOSED, _C.CLOSED)),
    (_C.GREETED, ("EHLO", "HELO"), _T(_C.GREETED, _C.GREETED)),
    (_C.GREETED, ("NOOP", "RSET", "VRFY", "HELP", "ETRN"), _T(_C.GREETED, _C.GREETED)),
    (_C.GREETED, ("MAIL",), _T(_C.MAIL, _C.GREETED)),
    (_C.GREETED, ("AUTH",), _T(_C.GREETED, _C.GREETED, _C.AUTH)),
    (_C.GREETED, ("STARTTLS",), _T(_C.TLS_HANDSHAKE, _C.GREETED)),
    (_C.GREETED, ("QUIT",), _T(_C.CLOSED, _C.CLOSED)),
    (_C.MAIL, ("EHLO", "HELO", "RSET"), _T(_C.GREETED, _C.MAIL)),
    (_C.MAIL, ("NOOP", "VRFY", "HELP"), _T(_C.MAIL, _C.MAIL)),
    (_C.MAIL, ("RCPT",), _T(_C.RCPT, _C.MAIL)),
    (_C.MAIL, ("QUIT",), _T(_C.CLOSED, _C.CLOSED)),
    (_C.RCPT, ("EHLO", "HELO", "RSET"), _T(_C.GREETED, _C.RCPT)),
    (_C.RCPT, ("NOOP", "VRFY", "HELP", "RCPT"), _T(_C.RCPT, _C.RCPT)),
    (_C.RCPT, ("DATA",), _T(_C.DATA, _C.RCPT, _C.MESSAGE)),
    (_C.RCPT, ("BDAT",), _T(_C.BDAT, _C.GREETED)),
    (_C.RCPT, ("BDAT LAST",), _T(_C.GREETED, _C.GREETED)),
    (_C.RCPT, ("QUIT",), _T(_C.CLOSED, _C.CLOSED)),
    (_C.MESSAGE, ("<end-of-data>",), _T(_C.GREETED, _C.GREETED)),
    (_C.BDAT, ("BDAT",), _T(_C.BDAT, _C.GREETED)),
    (_C.BDAT, ("BDAT LAST",), _T(_C.GREETED, _C.GREETED)),
    (_C.BDAT, ("EHLO", "HELO", "RSET"), _T(_C.GREETED, _C.BDAT)),
    (_C.BDAT, ("NOOP",), _T(_C.BDAT, _C.BDAT)),
    (_C.BDAT, ("QUIT",), _T(_C.CLOSED, _C.CLOSED)),
    (_C.AUTH, ("<auth-response>",), _T(_C.GREETED, _C.GREETED, _C.AUTH)),
    (_C.TLS_HANDSHAKE, ("<handshake>",), _T(_C.CONNECTED, _C.CLOSED)),
    (_C.TLS_HANDSHAKE, ("<implicit-handshake>",), _T(_C.CONNECTING, _C.CLOSED)),
])

Role = Literal["server", "client"]


def _table(role: str) -> (Mapping[tuple[ServerState, str], Transition[ServerState]]
                          | Mapping[tuple[ClientState, str], Transition[ClientState]]):
    if role == "server":
        return SERVER_TRANSITIONS
    if role == "client":
        return CLIENT_TRANSITIONS
    raise ValueError(f"role must be 'server' or 'client', not {role!r}")


def transitions(role: Role | str) -> list[tuple[State, str, State, State]]:
    """The transition table of ``role`` as rows ``(state, verb, next_state_ok,
    next_state_fail)``, in table order (for drawing a state diagram).

    Intermediate replies (334, 354) are drawn as an extra row whose "ok" is
    ``Transition.more`` and whose verb is suffixed with ``" (3xx)"``.
    """
    rows: list[tuple[State, str, State, State]] = []
    for (state, verb), tr in _table(role).items():
        rows.append((state, verb, tr.ok, tr.fail))
        if tr.more is not None:
            rows.append((state, f"{verb} (3xx)", tr.more, tr.fail))
    return rows


def allowed_verbs(role: Role | str, state: State) -> list[str]:
    """The verbs ``role`` may use in ``state``, in table order (pseudo-verbs included)."""
    return [verb for (s, verb) in _table(role) if s is state]


def command_verbs(role: Role | str, state: State) -> list[str]:
    """Like :func:`allowed_verbs`, but only real command verbs (no ``<pseudo-verbs>``)."""
    return [v for v in allowed_verbs(role, state) if not v.startswith("<")]


# --- per-connection and per-transaction data -------------------------------------------------

@dataclass
class Session:
    """What a server knows about one connection (as aiosmtpd's ``Session``).

    Attributes:
        peer: the client's (ip, port).
        local: our (ip, port).
        host_name: our host name (the greeting and EHLO name).
        helo_name: the client's HELO/EHLO argument, None before HELO/EHLO.
        esmtp: True after EHLO (extensions available), False after HELO.
        tls: TLS version/cipher/peer once TLS is up (``TLSLayer.summary()``), else None.
        authenticated_user: the user name after a successful AUTH, else None (never a
            password: no password is ever kept).
        auth_mechanism: the mechanism that authenticated the session.
        error_count: 4xx/5xx replies so far (Postfix ``smtpd_hard_error_limit``).
        auth_failures: failed AUTH attempts (535).
        junk_commands: NOOP/VRFY/ETRN/RSET so far since the last accepted message
            (Postfix ``smtpd_junk_command_limit``).
        extensions: the EHLO keywords advertised last.
        messages: messages accepted (250 at end of data) on this connection.
        delay: the delay hint (seconds) the driver may honour before flushing replies,
            set once the soft error limit is reached; the core itself never sleeps.
    """

    peer: tuple[str, int] | None = None
    local: tuple[str, int] | None = None
    host_name: str = ""
    helo_name: str | None = None
    esmtp: bool = False
    tls: dict[str, Any] | None = None
    authenticated_user: str | None = None
    auth_mechanism: str | None = None
    error_count: int = 0
    auth_failures: int = 0
    junk_commands: int = 0
    extensions: tuple[str, ...] = ()
    messages: int = 0
    delay: float = 0.0

    @property
    def authenticated(self) -> bool:
        """True after a successful AUTH."""
        return self.authenticated_user is not None


@dataclass
class Envelope:
    """One mail transaction (MAIL ... end of data), separate from the :class:`Session`.

    Attributes:
        mail_from: the reverse-path address ("" for the null sender ``<>``), None before MAIL.
        mail_params: MAIL parameters as received, keys upper-case (SIZE, BODY, RET, ENVID,
            SMTPUTF8, AUTH).
        rcpt_tos: accepted recipients in order (source routes dropped, RFC 5321 §3.6.1).
        rcpt_params: the parameters (NOTIFY, ORCPT) of each accepted recipient.
        rcpt_attempts: RCPT commands seen in this transaction (accepted or not).
        content: the message: unstuffed, CRLF line endings, stray CR/LF replaced by spaces.
        received: wall-clock time the content was complete (``time.time()``).
        queue_id: the id the server gave the transaction (Postfix assigns it at MAIL).
        smtputf8: the transaction is SMTPUTF8 (RFC 6531).
        declared_size: SIZE=n from MAIL (RFC 1870), if given.
        body: BODY=7BIT / 8BITMIME (RFC 6152), if given.
        ret: DSN RET=FULL/HDRS (RFC 3461 §4.3), if given.
        envid: DSN ENVID, xtext-decoded (RFC 3461 §4.4), if given.
        chunks: BDAT chunks received (0 for DATA).
    """

    mail_from: str | None = None
    mail_params: dict[str, str | None] = field(default_factory=dict)
    rcpt_tos: list[str] = field(default_factory=list)
    rcpt_params: list[dict[str, str | None]] = field(default_factory=list)
    rcpt_attempts: int = 0
    content: bytes = b""
    received: float | None = None
    queue_id: str | None = None
    smtputf8: bool = False
    declared_size: int | None = None
    body: str | None = None
    ret: str | None = None
    envid: str | None = None
    chunks: int = 0

    def notify(self, index: int) -> tuple[str, ...]:
        """DSN NOTIFY of recipient ``index`` (RFC 3461 §4.1), e.g. ``("SUCCESS", "FAILURE")``;
        empty when not given."""
        value = self.rcpt_params[index].get("NOTIFY")
        return tuple(value.upper().split(",")) if value else ()

    def orcpt(self, index: int) -> tuple[str, str] | None:
        """DSN ORCPT of recipient ``index`` as ``(addr-type, decoded address)``
        (RFC 3461 §4.2), or None."""
        from .grammar import xtext_decode

        value = self.rcpt_params[index].get("ORCPT")
        if not value:
            return None
        addr_type, _, xtext = value.partition(";")
        return addr_type, xtext_decode(xtext)

    def mark_received(self) -> None:
        """Stamp the time the content was complete."""
        self.received = time.time()
