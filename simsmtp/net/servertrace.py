"""What the servers' protocol events say in the world's trace.

The listeners of a running world (:mod:`simsmtp.net.servers`) hand every event of their
SMTP, POP3 and IMAP cores to :func:`record_event`, which turns it into trace events
(``smtp.command``, ``smtp.reply``, ``tls.handshake``, ...); :func:`login_failed` tells the
anvil a refused login.
"""

from __future__ import annotations

import enum
from typing import Any

from simsmtp.protocol import events as smtp
from simsmtp.protocol import imap, pop3
from simsmtp.protocol.replies import Reply
from simsmtp.trace import Trace

__all__ = ["login_failed", "record_event", "reply_of"]

#: Service -> the protocol prefix of its trace events (the rest speak SMTP).
_PROTOCOLS = {"pop3": "pop3", "pop3s": "pop3", "imap": "imap", "imaps": "imap"}


def reply_of(event: object) -> Reply | pop3.POP3Reply | imap.IMAPReply | None:
    """The reply a server event carries (a command's answer, a greeting), or None."""
    if isinstance(event, smtp.ConnectionOpened | smtp.CommandReceived | smtp.AuthStep
                  | smtp.BdatChunkReceived | smtp.MessageReceived | smtp.ReplySent
                  | pop3.ConnectionOpened | pop3.CommandReceived
                  | imap.ConnectionOpened | imap.CommandReceived | imap.UpdateSent):
        return event.reply
    return None


def login_failed(reply: Reply | pop3.POP3Reply | imap.IMAPReply | None) -> bool:
    """Whether ``reply`` refuses a login: SMTP ``535`` (RFC 4954 §6), POP3 ``-ERR [AUTH]``
    (RFC 3206 §5) or IMAP ``NO [AUTHENTICATIONFAILED]`` (RFC 5530 §3)."""
    if isinstance(reply, Reply):
        return reply.code == 535
    if isinstance(reply, imap.IMAPReply):
        return reply.code == "AUTHENTICATIONFAILED"
    if isinstance(reply, pop3.POP3Reply):
        return not reply.ok and reply.text.startswith("[AUTH] Authentication failed")
    return False


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _name(state: object) -> str | None:
    """A state's name for the trace (None when the event has none)."""
    return state.name if isinstance(state, enum.Enum) else None


def record_event(trace: Trace, info: Any, event: object, tls_conns: set[int]) -> None:
    """Turn a protocol event of a server connection into trace events.

    SMTP: ``smtp.command`` / ``smtp.reply`` (each with the states before and after),
    ``smtp.message``, ``tls.handshake``, ``tls.failed``, ``smtp.discarded``,
    ``smtp.closed``; POP3 the same with ``pop3.``, IMAP with ``imap.`` (and ``imap.update``
    for what the server says unprompted, ``* 2 EXISTS`` while idling). AUTH lines arrive
    masked from the core.

    Args:
        trace: the world's trace.
        info: the listener's connection info (``id``, ``service``, ``peer``,
            ``host_name``).
        event: what the core's ``next_event()`` returned.
        tls_conns: the ids of the connections under TLS now (updated here).
    """
    if not isinstance(event, smtp.ConnectionEvent):
        return
    if not trace.enabled:  # switched off: only follow which connections are under TLS
        if isinstance(event, smtp.TLSStarted):
            tls_conns.add(info.id)
        elif isinstance(event, smtp.ConnectionClosed):
            tls_conns.discard(info.id)
        return
    proto = _PROTOCOLS.get(info.service, "smtp")
    base = {"conn": info.id, "service": info.service, "peer": f"{info.peer[0]}:{info.peer[1]}",
            "tls": info.id in tls_conns}
    states = {"state_before": _name(event.state_before),
              "state_after": _name(event.state_after)}
    host = info.host_name
    if isinstance(event, smtp.ConnectionOpened | pop3.ConnectionOpened
                  | imap.ConnectionOpened):
        trace.record(f"{proto}.reply", host, **base, text=str(event.reply), **states)
    elif isinstance(event, imap.CommandReceived):
        trace.record("imap.command", host, **base, line=_text(event.line),
                     tag=event.tag, command=event.command, **states)
        trace.record("imap.reply", host, **base, text=str(event.reply),
                     status=event.reply.status, **states)
    elif isinstance(event, imap.UpdateSent):
        trace.record("imap.update", host, **base, text=str(event.reply),
                     lines=list(event.lines), reason=event.reason, **states)
    elif isinstance(event, smtp.CommandReceived | smtp.AuthStep | smtp.BdatChunkReceived):
        trace.record("smtp.command", host, **base, line=_text(event.line), **states)
        trace.record("smtp.reply", host, **base, text=str(event.reply),
                     code=event.reply.code, **states)
    elif isinstance(event, pop3.CommandReceived):
        # the same vocabulary (line masked by the core, reply's status line)
        trace.record("pop3.command", host, **base, line=_text(event.line), **states)
        trace.record("pop3.reply", host, **base, text=str(event.reply),
                     lines=list(event.body_lines), line_count=event.body_line_count,
                     **states)
    elif isinstance(event, smtp.MessageReceived):
        env = event.envelope
        trace.record("smtp.message", host, **base, sender=env.mail_from,
                     recipients=list(env.rcpt_tos), size=len(env.content),
                     queue_id=env.queue_id, accepted=event.reply.is_positive,
                     content=env.content, via=event.via, **states)
        trace.record("smtp.reply", host, **base, text=str(event.reply),
                     code=event.reply.code, **states)
    elif isinstance(event, smtp.ReplySent):
        trace.record(f"{proto}.reply", host, **base, text=str(event.reply),
                     code=event.reply.code, reason=event.reason, **states)
    elif isinstance(event, smtp.TLSStarted):
        tls_conns.add(info.id)
        trace.record("tls.handshake", host, **base, version=event.version,
                     cipher=event.cipher, **states)
    elif isinstance(event, smtp.TLSFailed):
        trace.record("tls.failed", host, **base, reason=event.reason, **states)
    elif isinstance(event, smtp.PlaintextDiscarded):
        trace.record(f"{proto}.discarded", host, **base, octets=len(event.data), **states)
    elif isinstance(event, smtp.ConnectionClosed):
        tls_conns.discard(info.id)
        trace.record(f"{proto}.closed", host, **base, reason=event.reason, **states)
