"""The delivery agent's routing, retry and bounce decisions, against scripted fake servers.

No network: ``connect`` returns a :class:`FakeChannel` that answers each command with a
canned reply from a :class:`FakeServer` (and insists on the PIPELINING rules the real
client core enforces); DNS is a dictionary. The virtual clock makes retries instant.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simsmtp.net.agent import DeliveryAgent, RunReport
from simsmtp.net.dns import AddressLookup, MXLookup
from simsmtp.net.queue import Queue, RecipientStatus
from simsmtp.net.session import TLS_NOT_OFFERED, SMTPTimeouts
from simsmtp.protocol import events as ev
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.server import ServerConfig, ServerConnection
from simsmtp.protocol.session import Envelope, Session
from simsmtp.trace import Trace
from simsmtp.world.clock import IdGenerator, VirtualClock
from simsmtp.world.routing import RetrySchedule

EPOCH = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@anotherdomain.org\r\n"
           b"Subject: Hello\r\nMessage-ID: <1@example.com>\r\n\r\nHello Bob\r\n")


def _reply(line: str) -> Reply:
    code, _, text = line.partition(" ")
    return Reply(int(code), text)


# ----------------------------------------------------------------------- fake servers


@dataclass
class FakeServer:
    """How one MX host behaves. Reply hooks return a reply line such as "250 2.1.5 Ok"."""

    name: str
    refuse: bool = False
    greeting: str = ""
    extensions: tuple[str, ...] = ("PIPELINING", "SIZE 52428800", "8BITMIME", "DSN")
    mail: Callable[[str], str] = lambda _a: "250 2.1.0 Ok"
    rcpt: Callable[[str], str] = lambda _a: "250 2.1.5 Ok"
    data: str = "354 End data with <CR><LF>.<CR><LF>"
    end: Callable[[bytes], str] = lambda _m: "250 2.0.0 Ok: queued as 9A8B7C6D5E"
    starttls: str = "220 2.0.0 Ready to start TLS"
    tls_fails: bool = False
    vanish_after_data: bool = False
    on_quit: Callable[[], None] | None = None
    sessions: list[list[str]] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        return [c for s in self.sessions for c in s]


class FakeChannel:
    """A scripted channel: canned events for the commands the agent sends."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.log: list[str] = []
        server.sessions.append(self.log)
        self.pending: list[object] = []
        self.extensions: dict[str, str] = {}
        self.closed = False
        self.tls = False
        self.mail_from = ""
        self.rcpts: list[str] = []
        self.in_transaction = False
        greeting = server.greeting or f"220 {server.name} ESMTP Postfix"
        self.pending.append(ev.ConnectionOpened(reply=_reply(greeting)))

    def _answer(self, command: ev.Command, line: str) -> None:
        self.pending.append(ev.ReplyReceived(command=command, reply=_reply(line)))

    def send(self, command: Any) -> None:
        if self.closed:
            raise ConnectionError("closed")
        waiting = [e for e in self.pending if isinstance(e, ev.ReplyReceived)]
        if waiting and "PIPELINING" not in self.extensions:
            # the real client core refuses this without PIPELINING (RFC 2920)
            raise AssertionError(f"{command!r} sent while a reply is pending")
        s = self.server
        match command:
            case ev.Ehlo(hostname=name):
                self.log.append(f"EHLO {name}")
                exts = [e for e in s.extensions if not (self.tls and e == "STARTTLS")]
                self.pending.append(ev.ReplyReceived(
                    command=command, reply=Reply(250, (s.name, *exts))))
                self.extensions = {e.split()[0]: e for e in exts}
            case ev.Helo(hostname=name):
                self.log.append(f"HELO {name}")
                self._answer(command, f"250 {s.name}")
            case ev.StartTLS():
                self.log.append("STARTTLS")
                self._answer(command, s.starttls)
                if s.starttls.startswith("220"):
                    if s.tls_fails:
                        self.pending.append(ev.TLSFailed(reason="certificate verify failed"))
                        self.closed = True
                    else:
                        self.tls = True
                        self.pending.append(ev.TLSStarted(version="TLSv1.3",
                                                          cipher="TLS_AES_256_GCM_SHA384"))
            case ev.MailFrom(address=addr, params=params):
                extra = "".join(f" {k}={v}" if v else f" {k}" for k, v in params.items())
                self.log.append(f"MAIL FROM:<{addr}>{extra}")
                line = s.mail(addr)
                self.in_transaction = line.startswith("2")
                self.mail_from, self.rcpts = addr, []
                self._answer(command, line)
            case ev.RcptTo(address=addr):
                self.log.append(f"RCPT TO:<{addr}>")
                line = s.rcpt(addr) if self.in_transaction else "503 5.5.1 Error: need MAIL"
                if line.startswith("2"):
                    self.rcpts.append(addr)
                self._answer(command, line)
            case ev.Data():
                self.log.append("DATA")
                ok = self.in_transaction and self.rcpts
                self._answer(command, s.data if ok else "554 5.5.1 Error: no valid recipients")
            case ev.Message(content=content):
                self.log.append("<message>")
                self.in_transaction = False
                if s.vanish_after_data:
                    s.messages.append((self.mail_from, list(self.rcpts), content))
                    self.pending.append(ev.ConnectionClosed(reason="connection reset"))
                    return
                line = s.end(content)
                if line.startswith("2"):
                    s.messages.append((self.mail_from, list(self.rcpts), content))
                self._answer(command, line)
            case ev.Rset():
                self.log.append("RSET")
                self.in_transaction = False
                self._answer(command, "250 2.0.0 Ok")
            case ev.Quit():
                self.log.append("QUIT")
                if s.on_quit is not None:
                    s.on_quit()
                self._answer(command, "221 2.0.0 Bye")
            case _:
                raise AssertionError(f"unexpected command {command!r}")

    async def next_event(self, timeout: float | None = None) -> object:
        if self.pending:
            return self.pending.pop(0)
        if self.closed:
            raise ConnectionError("the server closed the connection")
        raise TimeoutError(f"no event within {timeout} s")

    async def close(self) -> None:
        self.closed = True


def _unverifying_context() -> ssl.SSLContext:
    """A client context that verifies nothing (the fake servers never really start TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


#: The fakes' STARTTLS context: configured, never verifying (``tls.started`` says so).
FAKE_CONTEXT = _unverifying_context()


class FakeNet:
    """DNS answers, servers by IP, and the agent wired to them."""

    def __init__(self, tmp_path: Path, *, tls_policy: str = "opportunistic",
                 retry: RetrySchedule | None = None,
                 tls_context: ssl.SSLContext | None = FAKE_CONTEXT,
                 seed: int = 1) -> None:
        self.mx: dict[str, Any] = {}
        self.a: dict[str, Any] = {}
        self.servers: dict[str, FakeServer] = {}
        self.connects: list[tuple[str, int, str]] = []
        self.connect_times: list[float] = []
        self.bounces: list[tuple[str, bytes]] = []
        self.trace = Trace()
        self.clock = VirtualClock(EPOCH)
        self.ids = IdGenerator(seed, self.clock)
        self.directory = tmp_path / "queue"
        self.queue = Queue(self.directory, trace=self.trace, host="mail.example.com")
        self.tls_policy = tls_policy
        self.retry = retry or RetrySchedule()
        self.tls_context = tls_context
        self.agent = self.make_agent()

    def make_agent(self) -> DeliveryAgent:
        return DeliveryAgent(
            self.queue, hostname="mail.example.com", resolver_lookup=self.lookup,
            connect=self.connect, tls_policy=self.tls_policy,
            client_tls_context=self.tls_context, clock=self.clock, ids=self.ids,
            retry=self.retry, bounce_sink=lambda s, b: self.bounces.append((s, b)),
            trace=self.trace, port_of=lambda name: 2525, self_names={"mail.example.com"},
            timeouts=SMTPTimeouts().scaled(0.01), client_factory=lambda mx, tls: None)

    def restart(self) -> None:
        """A new process: a new Queue over the same directory and a new agent."""
        self.queue = Queue(self.directory, trace=self.trace, host="mail.example.com")
        self.agent = self.make_agent()

    def add_server(self, name: str, ip: str, **behaviour: Any) -> FakeServer:
        self.a[name] = [ip]
        server = self.servers[ip] = FakeServer(name, **behaviour)
        return server

    def lookup(self, name: str, rtype: str) -> MXLookup | AddressLookup:
        table = self.mx if rtype == "MX" else self.a
        value = table.get(name.lower(), "nxdomain" if rtype == "MX" else "nodata")
        if rtype == "MX" and value == "nxdomain" and name.lower() in self.a:
            value = "nodata"
        if isinstance(value, str):
            return (MXLookup(value, error=value) if rtype == "MX"  # type: ignore[arg-type]
                    else AddressLookup(value, error=value))  # type: ignore[arg-type]
        if rtype == "MX":
            return MXLookup("ok", list(value))
        return AddressLookup("ok", list(value))

    async def connect(self, ip: str, port: int, name: str, conn: Any) -> FakeChannel:
        self.connects.append((ip, port, name))
        self.connect_times.append(self.clock.now())
        server = self.servers.get(ip)
        if server is None or server.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeChannel(server)

    def submit(self, recipients: list[str], *, sender: str = "alice@example.com",
               message: bytes = MESSAGE, queue_id: str | None = None, **kw: Any) -> str:
        qid = queue_id or self.ids.queue_id()
        self.queue.enqueue(sender, recipients, message, queue_id=qid,
                           arrival=self.clock.now(), **kw)
        return qid

    def run(self) -> RunReport:
        report = asyncio.run(self.agent.run_once())
        assert report.errors == []
        return report

    def fast_forward(self, seconds: float, step: float | None = None) -> RunReport:
        report = asyncio.run(self.agent.fast_forward(seconds, step))
        assert report.errors == []
        return report

    def dsn(self, index: int = 0) -> tuple[Any, list[Any]]:
        """The bounce as a parsed message and its per-recipient status blocks."""
        _sender, raw = self.bounces[index]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        status_part = next(p for p in msg.walk()
                           if p.get_content_type() == "message/delivery-status")
        blocks = status_part.get_payload()
        assert isinstance(blocks, list)
        return msg, blocks[1:]

    def status(self, qid: str, rcpt: str) -> RecipientStatus:
        return self.queue.get(qid).recipient(rcpt).status


def _two_mx(net: FakeNet, domain: str = "anotherdomain.org") -> tuple[FakeServer, FakeServer]:
    net.mx[domain] = [(10, f"mx1.{domain}"), (20, f"mx2.{domain}")]
    mx1 = net.add_server(f"mx1.{domain}", "127.0.0.11")
    mx2 = net.add_server(f"mx2.{domain}", "127.0.0.12")
    return mx1, mx2


# ----------------------------------------------------------------------- routing


def test_delivers_to_the_primary_in_one_pipelined_transaction(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    rcpts = ["bob@anotherdomain.org", "carol@anotherdomain.org", "dave@anotherdomain.org"]
    qid = net.submit(rcpts, params={"BODY": "8BITMIME"},
                     rcpt_params={"bob@anotherdomain.org": {"NOTIFY": "FAILURE"}})
    report = net.run()
    assert sorted(r for _, r in report.delivered) == sorted(rcpts)
    assert mx2.sessions == []
    (session,) = mx1.sessions
    assert session == ["EHLO mail.example.com",
                       f"MAIL FROM:<alice@example.com> SIZE={len(MESSAGE)} BODY=8BITMIME",
                       "RCPT TO:<bob@anotherdomain.org>", "RCPT TO:<carol@anotherdomain.org>",
                       "RCPT TO:<dave@anotherdomain.org>", "DATA", "<message>", "QUIT"]
    assert mx1.messages == [("alice@example.com", rcpts, MESSAGE)]
    assert qid not in net.queue and report.removed == [qid]  # all final: it left the queue
    oks = net.trace.events("delivery.ok")
    assert [e["recipient"] for e in oks] == rcpts
    assert oks[0]["reply"] == "250 2.0.0 Ok: queued as 9A8B7C6D5E"
    attempt = net.trace.events("delivery.attempt")[0]
    assert (attempt["mx"], attempt["ip"], attempt["port"]) == ("mx1.anotherdomain.org",
                                                               "127.0.0.11", 2525)
    lookups = [(e["qname"], e["qtype"], e["status"]) for e in net.trace.events("dns.lookup")]
    assert lookups == [("anotherdomain.org", "MX", "ok"), ("mx1.anotherdomain.org", "A", "ok")]
    assert net.bounces == []


def test_without_pipelining_commands_go_one_at_a_time(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    mx1.extensions = ("SIZE 1000000",)
    net.submit(["bob@anotherdomain.org", "carol@anotherdomain.org"])
    report = net.run()  # FakeChannel asserts if a command is sent while a reply is pending
    assert len(report.delivered) == 2
    assert mx1.sessions[0][1:6] == [f"MAIL FROM:<alice@example.com> SIZE={len(MESSAGE)}",
                                    "RCPT TO:<bob@anotherdomain.org>",
                                    "RCPT TO:<carol@anotherdomain.org>", "DATA", "<message>"]


def test_primary_down_goes_to_the_backup(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.refuse = True
    net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.delivered and len(mx2.messages) == 1
    assert [c[2] for c in net.connects] == ["mx1.anotherdomain.org", "mx2.anotherdomain.org"]
    failed = net.trace.events("delivery.connect_failed")
    assert "Connection refused" in failed[0]["reason"]
    assert [e["mx"] for e in net.trace.events("delivery.attempt")] == [
        "mx1.anotherdomain.org", "mx2.anotherdomain.org"]


@pytest.mark.parametrize("behaviour", [
    {"greeting": "421 4.3.2 mx1 Service shutting down"},
    {"greeting": "554 5.7.1 mx1 go away"},           # Postfix smtp_skip_5xx_greeting
    {"mail": lambda a: "451 4.3.0 Error: queue file write error"},
    {"rcpt": lambda a: "451 4.3.0 try later"},
    {"end": lambda m: "451 4.3.0 Error: queue file write error"},
    {"data": "452 4.3.1 Insufficient system storage"},
])
def test_soft_failures_on_the_primary_move_on_to_the_backup(tmp_path: Path,
                                                            behaviour: dict[str, Any]) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    for key, value in behaviour.items():
        setattr(mx1, key, value)
    qid = net.submit(["bob@anotherdomain.org"])
    net.run()
    assert mx1.messages == []
    assert mx2.messages == [("alice@example.com", ["bob@anotherdomain.org"], MESSAGE)]
    assert qid not in net.queue and net.bounces == []


def test_soft_failure_on_the_last_mx_defers(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.refuse = True
    mx2.mail = lambda a: "451 4.3.0 Error: queue file write error"
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.deferred == [(qid, "bob@anotherdomain.org")]
    state = net.queue.get(qid).recipient("bob@anotherdomain.org")
    assert state.status is RecipientStatus.DEFERRED
    assert state.next_attempt == net.clock.now() + 300  # Postfix minimal_backoff_time
    assert state.reply.startswith("451 4.3.0")
    deferred = net.trace.events("delivery.deferred")[0]
    assert deferred["next_attempt"] == net.clock.now() + 300 and deferred["retry_in"] == 300
    assert "451 4.3.0" in deferred["reason"]
    assert net.bounces == []


def test_hard_and_soft_errors_per_recipient(tmp_path: Path) -> None:
    # catalogue ids here are tests/hardening/CATALOGUE.md's
    # catalogue 73: good delivered, bad bounced at once and never tried at mx2, busy deferred
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    replies = {"bad@anotherdomain.org":
               "550 5.1.1 <bad@anotherdomain.org>: Recipient address rejected: "
               "User unknown in virtual mailbox table",
               "busy@anotherdomain.org": "450 4.2.1 Mailbox busy"}
    mx1.rcpt = lambda a: replies.get(a, "250 2.1.5 Ok")
    mx2.rcpt = lambda a: replies.get(a, "250 2.1.5 Ok")
    qid = net.submit(["good@anotherdomain.org", "bad@anotherdomain.org",
                      "busy@anotherdomain.org"])
    report = net.run()
    assert report.delivered == [(qid, "good@anotherdomain.org")]
    assert report.bounced == [(qid, "bad@anotherdomain.org")]
    assert report.deferred == [(qid, "busy@anotherdomain.org")]
    assert "RCPT TO:<bad@anotherdomain.org>" not in mx2.commands
    assert "RCPT TO:<busy@anotherdomain.org>" in mx2.commands  # soft: tried at the backup
    assert len(net.bounces) == 1
    sender, _ = net.bounces[0]
    assert sender == "alice@example.com"
    dsn, blocks = net.dsn()
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn.get_content_type() == "multipart/report"
    assert [b["Final-Recipient"] for b in blocks] == ["rfc822; bad@anotherdomain.org"]
    assert blocks[0]["Action"] == "failed" and blocks[0]["Status"] == "5.1.1"
    assert blocks[0]["Remote-MTA"] == "dns; mx1.anotherdomain.org"
    assert blocks[0]["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <bad@anotherdomain.org>")
    assert net.status(qid, "good@anotherdomain.org") is RecipientStatus.DELIVERED
    assert net.status(qid, "bad@anotherdomain.org") is RecipientStatus.FAILED
    bounce = net.trace.events("delivery.bounce")[0]
    assert (bounce["recipient"], bounce["status"]) == ("bad@anotherdomain.org", "5.1.1")


def test_5xx_to_mail_or_data_bounces_every_recipient(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.end = lambda m: "554 5.7.1 Message rejected: spam"
    qid = net.submit(["bob@anotherdomain.org", "carol@anotherdomain.org"])
    report = net.run()
    assert sorted(r for _, r in report.bounced) == ["bob@anotherdomain.org",
                                                    "carol@anotherdomain.org"]
    assert mx2.sessions == [] and qid not in net.queue
    _, blocks = net.dsn()  # ONE DSN listing both
    assert len(net.bounces) == 1 and len(blocks) == 2
    assert {b["Status"] for b in blocks} == {"5.7.1"}


def test_too_many_recipients_452_go_in_a_second_transaction(tmp_path: Path) -> None:
    # catalogue 79c (RFC 5321 §4.5.3.1.10)
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    counter = {"n": 0}

    def rcpt(addr: str) -> str:
        counter["n"] += 1
        return "250 2.1.5 Ok" if counter["n"] <= 2 else "452 4.5.3 Error: too many recipients"

    def mail(addr: str) -> str:
        counter["n"] = 0
        return "250 2.1.0 Ok"

    mx1.rcpt, mx1.mail = rcpt, mail
    rcpts = [f"u{i}@anotherdomain.org" for i in range(5)]
    net.submit(rcpts)
    report = net.run()
    assert sorted(r for _, r in report.delivered) == sorted(rcpts)
    assert [len(m[1]) for m in mx1.messages] == [2, 2, 1]
    assert len(mx1.sessions) == 1  # all on one connection


def test_implicit_mx_uses_the_domains_own_address(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    server = net.add_server("anotherdomain.org", "127.0.0.20")  # an A record, no MX
    net.submit(["bob@anotherdomain.org"])
    net.run()
    assert len(server.messages) == 1
    route = net.trace.events("delivery.route")[0]
    assert route["route"] == "deliver" and "implicit MX" in route["reason"]


def test_null_mx_bounces_at_once(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx["nomail.example"] = [(0, ".")]
    qid = net.submit(["x@nomail.example"])
    report = net.run()
    assert net.connects == []
    assert report.bounced == [(qid, "x@nomail.example")]
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.1.10"
    assert "null MX" in blocks[0]["Diagnostic-Code"]
    assert qid not in net.queue


def test_nxdomain_bounces_with_5_1_2(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    qid = net.submit(["bob@nowhere.example"])
    net.run()
    assert net.connects == []
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.1.2"
    assert blocks[0]["Final-Recipient"] == "rfc822; bob@nowhere.example"
    assert qid not in net.queue
    lookup = net.trace.events("dns.lookup")[0]
    assert (lookup["qname"], lookup["status"]) == ("nowhere.example", "nxdomain")


def test_dns_tempfail_defers_and_retries_later(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx["anotherdomain.org"] = "tempfail"
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.deferred == [(qid, "bob@anotherdomain.org")] and net.bounces == []
    state = net.queue.get(qid).recipient("bob@anotherdomain.org")
    assert state.status_code == "4.4.3"
    _two_mx(net)  # DNS is back
    assert net.run().delivered == []  # not due yet: the retry waits for the backoff
    report = net.fast_forward(600)
    assert report.delivered == [(qid, "bob@anotherdomain.org")]


def test_mx_hosts_that_do_not_resolve_bounce_without_a_fallback(tmp_path: Path) -> None:
    # catalogue 74d: MX records exist but none resolves: error, no fallback to the A record
    net = FakeNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "ghost.anotherdomain.org")]
    net.add_server("anotherdomain.org", "127.0.0.20")
    qid = net.submit(["bob@anotherdomain.org"])
    net.run()
    assert net.connects == []
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.4.4"
    assert "ghost.anotherdomain.org" in blocks[0]["Diagnostic-Code"]
    assert qid not in net.queue


def test_mail_looping_back_to_myself_bounces(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx["example.com"] = [(10, "mail.example.com")]
    net.submit(["carol@example.com"])
    net.run()
    assert net.connects == []
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.4.6"
    assert "loops back to myself" in blocks[0]["Diagnostic-Code"]


def test_equal_preference_mx_hosts_are_both_used(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "a.anotherdomain.org"), (10, "b.anotherdomain.org")]
    a = net.add_server("a.anotherdomain.org", "127.0.0.11")
    b = net.add_server("b.anotherdomain.org", "127.0.0.12")
    for _ in range(40):
        net.submit(["bob@anotherdomain.org"])
    net.run()
    assert len(a.messages) + len(b.messages) == 40
    assert a.messages and b.messages


# ----------------------------------------------------------------------- retries


def test_greylisting_450_then_delivered_after_fast_forward(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    server = net.add_server("mx.anotherdomain.org", "127.0.0.11")
    first_seen: dict[str, float] = {}

    def greylist(addr: str) -> str:
        seen = first_seen.setdefault(addr, net.clock.now())
        if net.clock.now() - seen < 240:  # Postgrey's default delay: 5 minutes
            return "450 4.2.0 <bob@anotherdomain.org>: Recipient address rejected: Greylisted"
        return "250 2.1.5 Ok"

    server.rcpt = greylist
    start = net.clock.now()
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.fast_forward(4 * 3600)
    assert report.delivered == [(qid, "bob@anotherdomain.org")]
    assert len(server.messages) == 1 and net.bounces == []
    # one deferral, then the retry at +300 s (Postfix minimal_backoff_time) got through
    assert net.connect_times == [start, start + 300]
    assert [e["next_attempt"] for e in net.trace.events("delivery.deferred")] == [start + 300]
    assert net.clock.now() == start + 4 * 3600  # the clock ends at the end of the window
    assert qid not in net.queue


def test_advance_then_run_once_delivers_what_became_due(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    calls = {"n": 0}

    def once_busy(addr: str) -> str:
        calls["n"] += 1
        return "450 4.7.1 try later" if calls["n"] <= 2 else "250 2.1.5 Ok"

    mx1.rcpt = once_busy
    net.servers["127.0.0.12"].rcpt = once_busy
    qid = net.submit(["bob@anotherdomain.org"])
    net.run()
    assert net.status(qid, "bob@anotherdomain.org") is RecipientStatus.DEFERRED
    net.agent.advance(299)
    assert net.run().delivered == []
    net.agent.advance(1)
    assert net.run().delivered == [(qid, "bob@anotherdomain.org")]


def test_fast_forward_with_step_runs_on_queue_run_boundaries(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.refuse = mx2.refuse = True
    start = net.clock.now()
    net.submit(["bob@anotherdomain.org"])
    net.fast_forward(3000, step=1000)
    attempts = sorted({e.get("next_attempt") for e in net.trace.events("delivery.deferred")})
    # attempts at 0, 1000 (due 300), 2000 (due 1000+600=1600) then due at 2000+1200 > 3000
    assert attempts == [start + 300, start + 1000 + 600, start + 2000 + 1200]


def test_give_up_after_lifetime_sends_exactly_one_bounce(tmp_path: Path) -> None:
    retry = RetrySchedule(minimal_backoff=300, maximal_backoff=4000,
                          maximal_lifetime=86400)
    net = FakeNet(tmp_path, retry=retry)
    mx1, mx2 = _two_mx(net)
    mx1.mail = mx2.mail = lambda a: "451 4.3.0 Error: queue file write error"
    start = net.clock.now()
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.fast_forward(3 * 86400)
    assert len(net.bounces) == 1 and report.dsns == [(qid, "alice@example.com")]
    assert qid not in net.queue
    _, blocks = net.dsn()
    assert blocks[0]["Action"] == "failed" and blocks[0]["Status"] == "4.4.7"
    assert "451 4.3.0" in blocks[0]["Diagnostic-Code"]
    expected = retry.timeline(start, start + 3 * 86400)
    assert expected[-1] - start >= 86400 > expected[-2] - start  # the last one gives up
    assert [t - start for t in net.connect_times[::2]] == [t - start for t in expected]
    assert net.connect_times[1::2] == expected  # each attempt tries mx1 then mx2
    # the intervals grow from 300 s up to the 4000 s cap (RFC 5321 §4.5.4.1)
    gaps = [b - a for a, b in itertools.pairwise(expected)]
    assert gaps[:5] == [300, 600, 1200, 2400, 4000] and max(gaps) == 4000
    assert len(net.trace.events("delivery.expired")) == 1


def test_null_sender_never_gets_a_bounce(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    mx1.rcpt = lambda a: "550 5.1.1 User unknown"
    qid = net.submit(["bob@anotherdomain.org"], sender="")
    report = net.run()
    assert report.bounced == [(qid, "bob@anotherdomain.org")]
    assert net.bounces == [] and report.dsns == []
    assert net.trace.events("delivery.dsn_suppressed")
    assert qid not in net.queue


def test_connection_lost_after_end_of_data_defers_never_bounces(tmp_path: Path) -> None:
    # catalogue 77: as if 451 (RFC 5321 §3.8); a duplicate is possible
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.vanish_after_data = mx2.vanish_after_data = True
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.deferred == [(qid, "bob@anotherdomain.org")] and net.bounces == []
    assert "lost connection" in net.queue.get(qid).recipient("bob@anotherdomain.org").reply


def test_a_server_that_never_answers_times_out_and_moves_on(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)

    class Silent(FakeChannel):
        async def next_event(self, timeout: float | None = None) -> object:
            raise TimeoutError(f"no event within {timeout} s")

    original = net.connect

    async def connect(ip: str, port: int, name: str, conn: Any) -> FakeChannel:
        channel = await original(ip, port, name, conn)
        return Silent(mx1) if ip == "127.0.0.11" else channel

    net.agent.connect = connect
    net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.delivered and len(mx2.messages) == 1


# ----------------------------------------------------------------------- TLS and SIZE


def test_opportunistic_tls_is_used_when_offered(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    mx1.extensions = ("PIPELINING", "SIZE 52428800", "STARTTLS", "8BITMIME")
    net.submit(["bob@anotherdomain.org"])
    net.run()
    assert mx1.sessions[0][:3] == ["EHLO mail.example.com", "STARTTLS",
                                   "EHLO mail.example.com"]
    assert len(mx1.messages) == 1
    started = net.trace.events("tls.started")[0]
    assert started["version"] == "TLSv1.3"


def test_opportunistic_tls_falls_back_to_plaintext_when_not_offered(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    net.submit(["bob@anotherdomain.org"])
    net.run()
    assert "STARTTLS" not in mx1.commands and len(mx1.messages) == 1
    assert "did not offer STARTTLS" in net.trace.events("tls.fallback")[0]["reason"]


def test_opportunistic_tls_handshake_failure_retries_in_plaintext(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.extensions = ("PIPELINING", "STARTTLS")
    mx1.tls_fails = True
    net.submit(["bob@anotherdomain.org"])
    net.run()
    assert len(mx1.sessions) == 2 and "STARTTLS" not in mx1.sessions[1]
    assert len(mx1.messages) == 1 and mx2.sessions == []
    fallback = net.trace.events("tls.fallback")[0]
    assert "certificate verify failed" in fallback["reason"]
    assert "plaintext" in fallback["reason"]


def test_required_tls_defers_when_starttls_is_missing(tmp_path: Path) -> None:
    net = FakeNet(tmp_path, tls_policy="required")
    mx1, mx2 = _two_mx(net)
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.run()
    assert report.deferred == [(qid, "bob@anotherdomain.org")] and net.bounces == []
    assert not any(c.startswith("MAIL") for c in mx1.commands + mx2.commands)
    state = net.queue.get(qid).recipient("bob@anotherdomain.org")
    assert state.reply == TLS_NOT_OFFERED
    failed = net.trace.events("tls.required_failed")
    assert [e["mx"] for e in failed] == ["mx1.anotherdomain.org", "mx2.anotherdomain.org"]
    assert failed[0]["reason"] == ("TLS is required by policy but the server did not offer "
                                   "STARTTLS")
    assert net.trace.events("delivery.deferred")[0]["reason"] == TLS_NOT_OFFERED


def test_required_tls_defers_when_the_handshake_fails(tmp_path: Path) -> None:
    net = FakeNet(tmp_path, tls_policy="required")
    mx1, mx2 = _two_mx(net)
    for server in (mx1, mx2):
        server.extensions = ("PIPELINING", "STARTTLS")
        server.tls_fails = True
    qid = net.submit(["bob@anotherdomain.org"])
    net.run()
    assert net.status(qid, "bob@anotherdomain.org") is RecipientStatus.DEFERRED
    assert len(mx1.sessions) == 1  # no plaintext retry under "required"
    assert "handshake" in net.trace.events("tls.required_failed")[0]["reason"]


def test_required_tls_delivers_over_tls(tmp_path: Path) -> None:
    net = FakeNet(tmp_path, tls_policy="required")
    mx1, _ = _two_mx(net)
    mx1.extensions = ("PIPELINING", "STARTTLS")
    net.submit(["bob@anotherdomain.org"])
    assert net.run().delivered


def test_tls_policy_none_never_starts_tls(tmp_path: Path) -> None:
    net = FakeNet(tmp_path, tls_policy="none")
    mx1, _ = _two_mx(net)
    mx1.extensions = ("PIPELINING", "STARTTLS")
    net.submit(["bob@anotherdomain.org"])
    net.run()
    assert "STARTTLS" not in mx1.commands and len(mx1.messages) == 1


def test_message_larger_than_advertised_size_is_not_sent_and_bounces(tmp_path: Path) -> None:
    # catalogue 79d, RFC 1870 §6.2
    net = FakeNet(tmp_path)
    mx1, mx2 = _two_mx(net)
    mx1.extensions = ("PIPELINING", "SIZE 1000")
    big = MESSAGE + b"x" * 5000 + b"\r\n"
    qid = net.submit(["bob@anotherdomain.org"], message=big)
    report = net.run()
    assert report.bounced == [(qid, "bob@anotherdomain.org")]
    assert mx1.commands == ["EHLO mail.example.com", "QUIT"] and mx2.sessions == []
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.3.4"
    assert "exceeds size limit 1000" in blocks[0]["Diagnostic-Code"]


# ----------------------------------------------------------------------- restart


def test_restart_resumes_and_never_redelivers_a_recipient_that_got_250(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    other = net.add_server("mx.third.example", "127.0.0.30")
    net.mx["third.example"] = [(10, "mx.third.example")]
    other.rcpt = lambda a: "451 4.3.0 try later"
    qid = net.submit(["bob@anotherdomain.org", "zoe@third.example"])
    net.run()
    assert len(mx1.messages) == 1
    net.restart()  # a new process over the same queue directory
    assert net.status(qid, "bob@anotherdomain.org") is RecipientStatus.DELIVERED
    other.rcpt = lambda a: "250 2.1.5 Ok"
    report = net.fast_forward(3600)
    assert report.delivered == [(qid, "zoe@third.example")]
    assert len(mx1.messages) == 1  # bob got exactly one copy
    assert len(other.messages) == 1 and qid not in net.queue


def test_restart_after_a_failure_sends_the_pending_dsn_once(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    qid = net.submit(["bob@anotherdomain.org"])
    # a crash after the failure was recorded but before its DSN was handed over
    net.queue.record_result(qid, "bob@anotherdomain.org", "failed",
                            reply="550 5.1.1 User unknown", status_code="5.1.1",
                            remote_mta="mx1.anotherdomain.org", when=net.clock.now())
    net.restart()
    report = net.run()
    assert report.dsns == [(qid, "alice@example.com")] and qid not in net.queue
    _, blocks = net.dsn()
    assert blocks[0]["Status"] == "5.1.1"
    assert blocks[0]["Diagnostic-Code"] == "smtp; 550 5.1.1 User unknown"
    net.run()
    assert len(net.bounces) == 1


def test_bad_recipient_without_a_domain_bounces(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    qid = net.submit(["postmaster"])
    report = net.run()
    assert report.bounced == [(qid, "postmaster")] and net.connects == []


def test_the_250_is_on_disk_before_quit_is_sent(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    qid = net.submit(["bob@anotherdomain.org"])
    seen: list[bool] = []
    # what a new process would find if we died at the moment QUIT goes out: nothing to
    # deliver (the one recipient is done, so the queue file is deleted, durably)
    mx1.on_quit = lambda: seen.append(qid in Queue(net.directory))
    net.run()
    assert seen == [False]


def test_kick_runs_the_queue_again_for_mail_queued_during_a_run(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1, _ = _two_mx(net)
    net.submit(["bob@anotherdomain.org"])

    async def main() -> RunReport:
        first = net.agent.kick()
        await asyncio.sleep(0)  # the run has started
        net.submit(["carol@anotherdomain.org"])
        assert net.agent.kick() is first  # joins, and asks for one more run
        return await first

    report = asyncio.run(main())
    assert sorted(r for _, r in report.delivered) == ["bob@anotherdomain.org",
                                                      "carol@anotherdomain.org"]
    assert report.runs == 2 and len(mx1.messages) == 2


def test_a_report_can_keep_only_its_latest_entries() -> None:
    # a kicked queue run merges every run while mail keeps coming: bounded by this
    report = RunReport()
    for i in range(30):
        report.merge(RunReport(delivered=[(f"Q{i}", "bob@anotherdomain.org")],
                               removed=[f"Q{i}"], runs=1))
        report.keep_latest(10)
        assert len(report.delivered) <= 10 and len(report.removed) <= 10
    assert report.delivered[-1] == ("Q29", "bob@anotherdomain.org")
    assert report.removed[0] == "Q20" and report.runs == 30


# ----------------------------------------------------------------------- real sans-IO cores


class Mailbox(Handler):
    """A server policy: some users exist, accepted messages are kept."""

    def __init__(self, users: set[str]) -> None:
        self.users = users
        self.messages: list[tuple[str | None, list[str], bytes]] = []

    def handle_RCPT(self, session: Session, envelope: Envelope, address: str,
                    params: Any) -> Reply | None:
        if address.lower() not in self.users:
            return Reply(550, f"5.1.1 <{address}>: Recipient address rejected: "
                              "User unknown in virtual mailbox table")
        return None

    def handle_DATA(self, session: Session, envelope: Envelope) -> Reply | None:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return None


class MemoryChannel:
    """Pumps bytes between the agent's real ClientConnection and a real ServerConnection."""

    def __init__(self, client: Any, server: ServerConnection) -> None:
        self.client, self.server = client, server
        self.server_events: list[object] = []
        self.wire: list[bytes] = []  # client -> server bytes, as sent
        self._pump()

    def _pump(self) -> None:
        for _ in range(1000):
            moved = False
            out = self.client.data_to_send()
            if out:
                self.wire.append(out)
                self.server.receive_data(out)
                moved = True
            while (event := self.server.next_event()) is not ev.NEED_DATA:
                self.server_events.append(event)
                if isinstance(event, ev.ConnectionClosed):
                    break
            back = self.server.data_to_send()
            if back:
                self.client.receive_data(back)
                moved = True
            if not moved:
                return

    def send(self, command: Any) -> None:
        self.client.send(command)
        self._pump()

    async def next_event(self, timeout: float | None = None) -> object:
        self._pump()
        event = self.client.next_event()
        if event is ev.NEED_DATA and self.server.closed:
            self.client.receive_data(b"")
            event = self.client.next_event()
        if event is ev.NEED_DATA:
            raise TimeoutError(f"no event within {timeout} s")
        return event

    async def close(self) -> None:
        pass


class CoreNet(FakeNet):
    """FakeNet whose servers are real ServerConnections, reached by the real client core."""

    def __init__(self, tmp_path: Path, **kw: Any) -> None:
        super().__init__(tmp_path, **kw)
        self.configs: dict[str, ServerConfig] = {}
        self.handlers: dict[str, Mailbox] = {}
        self.channels: list[MemoryChannel] = []

    def make_agent(self) -> DeliveryAgent:
        agent = super().make_agent()
        agent.client_factory = agent.default_client
        return agent

    def add_core(self, name: str, ip: str, users: set[str], **config: Any) -> Mailbox:
        self.a[name] = [ip]
        self.configs[ip] = ServerConfig(hostname=name, **config)
        self.handlers[ip] = Mailbox(users)
        return self.handlers[ip]

    async def connect(self, ip: str, port: int, name: str, conn: Any) -> Any:
        self.connects.append((ip, port, name))
        self.connect_times.append(self.clock.now())
        if ip not in self.configs:
            raise ConnectionRefusedError(111, "Connection refused")
        channel = MemoryChannel(conn, ServerConnection(self.handlers[ip], self.configs[ip]))
        self.channels.append(channel)
        return channel


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    trustme = pytest.importorskip("trustme")
    ca, rogue = trustme.CA(), trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.anotherdomain.org").configure_cert(server)
    verifying = ssl.create_default_context()
    ca.configure_trust(verifying)
    other = ssl.create_default_context()
    rogue.configure_trust(other)
    return {"server": server, "client": verifying, "wrong_ca": other}


def test_real_cores_one_transaction_clean_wire_and_a_bounce(tmp_path: Path) -> None:
    net = CoreNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    box = net.add_core("mx.anotherdomain.org", "127.0.0.11",
                       {"bob@anotherdomain.org", "carol@anotherdomain.org"})
    # catalogue 79a: bare LF / CR and a smuggling attempt inside the body
    body = (b"Subject: smuggle\r\n\r\nline\n.\r\nMAIL FROM:<e@v>\r\nx\r.\r\n"
            b".leading dot\r\nNO SMUGGLING\r\n")
    qid = net.submit(["bob@anotherdomain.org", "carol@anotherdomain.org",
                      "nobody@anotherdomain.org"], message=body)
    report = net.run()
    assert sorted(r for _, r in report.delivered) == ["bob@anotherdomain.org",
                                                      "carol@anotherdomain.org"]
    assert report.bounced == [(qid, "nobody@anotherdomain.org")]
    (message,) = box.messages  # exactly one message: nothing smuggled
    assert message[0] == "alice@example.com"
    assert message[1] == ["bob@anotherdomain.org", "carol@anotherdomain.org"]
    assert b"NO SMUGGLING" in message[2] and b"MAIL FROM:<e@v>" in message[2]
    wire = b"".join(net.channels[0].wire)
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    assert b"\r\n..leading dot\r\n" in wire  # dot-stuffed (RFC 5321 §4.5.2)
    # pipelined: MAIL, RCPT x3, DATA went out in one write (RFC 2920)
    assert any(chunk.startswith(b"MAIL FROM:") and chunk.endswith(b"DATA\r\n")
               and chunk.count(b"RCPT TO:") == 3 for chunk in net.channels[0].wire)
    _, blocks = net.dsn()
    assert blocks[0]["Final-Recipient"] == "rfc822; nobody@anotherdomain.org"
    assert blocks[0]["Status"] == "5.1.1"
    assert "User unknown" in blocks[0]["Diagnostic-Code"]


def test_real_cores_size_limit_is_respected(tmp_path: Path) -> None:
    net = CoreNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    box = net.add_core("mx.anotherdomain.org", "127.0.0.11", {"bob@anotherdomain.org"},
                       size_limit=1000)
    qid = net.submit(["bob@anotherdomain.org"], message=MESSAGE + b"y" * 2000 + b"\r\n")
    report = net.run()
    assert report.bounced == [(qid, "bob@anotherdomain.org")] and box.messages == []
    assert b"MAIL FROM" not in b"".join(net.channels[0].wire)
    assert net.dsn()[1][0]["Status"] == "5.3.4"


def test_real_cores_starttls_with_a_verifying_context(tmp_path: Path,
                                                      pki: dict[str, Any]) -> None:
    net = CoreNet(tmp_path, tls_context=pki["client"], tls_policy="required")
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    box = net.add_core("mx.anotherdomain.org", "127.0.0.11", {"bob@anotherdomain.org"},
                       tls_context=pki["server"])
    net.submit(["bob@anotherdomain.org"])
    assert net.run().delivered
    assert len(box.messages) == 1
    assert net.channels[0].server.tls_active
    assert b"MAIL FROM" not in b"".join(net.channels[0].wire)  # it went encrypted
    assert net.trace.events("tls.started")[0]["version"].startswith("TLS")


def test_real_cores_untrusted_certificate(tmp_path: Path, pki: dict[str, Any]) -> None:
    # opportunistic: the handshake fails, the same server is retried in plaintext
    net = CoreNet(tmp_path, tls_context=pki["wrong_ca"])
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    box = net.add_core("mx.anotherdomain.org", "127.0.0.11", {"bob@anotherdomain.org"},
                       tls_context=pki["server"])
    net.submit(["bob@anotherdomain.org"])
    assert net.run().delivered and len(box.messages) == 1
    assert len(net.channels) == 2 and not net.channels[1].server.tls_active
    assert "plaintext" in net.trace.events("tls.fallback")[0]["reason"]
    # required: the same failure defers
    strict = CoreNet(tmp_path / "strict", tls_context=pki["wrong_ca"], tls_policy="required")
    strict.mx, strict.a = net.mx, dict(net.a)
    strict.configs, strict.handlers = net.configs, net.handlers
    qid = strict.submit(["bob@anotherdomain.org"])
    assert strict.run().deferred == [(qid, "bob@anotherdomain.org")]
    assert len(box.messages) == 1 and len(strict.channels) == 1
    assert "handshake" in strict.trace.events("tls.required_failed")[0]["reason"]


def test_real_cores_bad_addresses_never_reach_the_wire(tmp_path: Path) -> None:
    # catalogue 79b: an address that would break out of its command line is refused
    net = CoreNet(tmp_path)
    net.mx["anotherdomain.org"] = [(10, "mx.anotherdomain.org")]
    box = net.add_core("mx.anotherdomain.org", "127.0.0.11", {"bob@anotherdomain.org"})
    evil = "x@anotherdomain.org> NOTIFY=NEVER"
    qid = net.submit(["bob@anotherdomain.org", evil],
                     rcpt_params={"bob@anotherdomain.org": {"NOTIFY": "FAILURE"}})
    report = net.run()
    assert report.delivered == [(qid, "bob@anotherdomain.org")]
    assert report.bounced == [(qid, evil)] and len(box.messages) == 1
    wire = b"".join(net.channels[0].wire)
    assert b"NOTIFY=NEVER" not in wire
    assert b"RCPT TO:<bob@anotherdomain.org> NOTIFY=FAILURE\r\n" in wire  # DSN passed on
    assert net.dsn()[1][0]["Status"] == "5.1.3"


# ----------------------------------------------------------------------- over loopback


class Greylist(Mailbox):
    """Says 450 to the first attempt of every sender/recipient pair, like Postgrey."""

    def __init__(self, users: set[str]) -> None:
        super().__init__(users)
        self.seen: set[tuple[str | None, str]] = set()

    def handle_RCPT(self, session: Session, envelope: Envelope, address: str,
                    params: Any) -> Reply | None:
        key = (envelope.mail_from, address)
        if key not in self.seen:
            self.seen.add(key)
            return Reply(450, f"4.2.0 <{address}>: Recipient address rejected: Greylisted")
        return super().handle_RCPT(session, envelope, address, params)


def test_delivers_over_loopback_through_dns_and_a_listener(tmp_path: Path) -> None:
    from simsmtp.net.channel import open_connection
    from simsmtp.net.dns import DNSServer, alookup_a, alookup_mx, make_async_resolver
    from simsmtp.net.listener import create_listener
    from simsmtp.net.tap import Tap
    from simsmtp.world.model import Record

    clock = VirtualClock(EPOCH)
    ids = IdGenerator(7, clock)
    trace = Trace()
    tap = Tap()
    box = Greylist({"bob@anotherdomain.org"})
    queue = Queue(tmp_path / "queue", trace=trace, host="mail.example.com")
    body = b"Subject: over the wire\r\n\r\nbare\nLF and a lone\rCR\r\n"
    queue.enqueue("alice@example.com", ["bob@anotherdomain.org"], body, queue_id="AB12",
                  arrival=clock.now())
    records = [Record("anotherdomain.org", "MX", "10 mx.anotherdomain.org.", 3600),
               Record("mx.anotherdomain.org", "A", "127.0.0.1", 3600)]
    bounces: list[tuple[str, bytes]] = []

    async def main() -> tuple[RunReport, RunReport]:
        listener = await create_listener(
            "127.0.0.1", factory=lambda *, peer, local: ServerConnection(
                box, ServerConfig(hostname="mx.anotherdomain.org")),
            name="mx.anotherdomain.org", service="smtp", trace=trace, tap=tap,
            need_data=ev.NEED_DATA)
        dns_server = await DNSServer(lambda: records, host="127.0.0.1", trace=trace).start()
        resolver = make_async_resolver(*dns_server.address)

        async def lookup(name: str, rtype: str) -> Any:
            if rtype == "MX":
                return await alookup_mx(resolver, name)
            return await alookup_a(resolver, name)

        def port_of(name: str) -> int | None:
            return listener.address[1] if name == "mx.anotherdomain.org" else None

        agent = DeliveryAgent(
            queue, hostname="mail.example.com", resolver_lookup=lookup,
            connect=lambda ip, port, name, conn: open_connection(
                ip, port, conn, tap=tap, name="mail.example.com", timeout=5, trace=trace),
            tls_policy="opportunistic", client_tls_context=None, clock=clock, ids=ids,
            bounce_sink=lambda s, b: bounces.append((s, b)), trace=trace, port_of=port_of,
            timeouts=SMTPTimeouts().scaled(0.02))
        try:
            first = await agent.run_once()
            later = await agent.fast_forward(3600)
        finally:
            await listener.close()
            await dns_server.close()
        return first, later

    first, later = asyncio.run(main())
    assert first.deferred == [("AB12", "bob@anotherdomain.org")] and first.errors == []
    assert later.delivered == [("AB12", "bob@anotherdomain.org")] and later.errors == []
    assert bounces == [] and "AB12" not in queue
    ((sender, rcpts, content),) = box.messages
    assert (sender, rcpts) == ("alice@example.com", ["bob@anotherdomain.org"])
    assert b"over the wire" in content
    ours = {c.id for c in tap.connections() if c.host == "mail.example.com"}
    sent = b"".join(s.data for s in tap.segments(direction="c2s") if s.conn_id in ours)
    assert sent.count(b"MAIL FROM:<alice@example.com>") == 2
    assert b"\r" not in sent.replace(b"\r\n", b"") and b"\n" not in sent.replace(b"\r\n", b"")
    kinds = {e.kind for e in trace.events()}
    assert {"dns.query", "dns.lookup", "delivery.attempt", "delivery.deferred",
            "delivery.ok", "tcp.connect"} <= kinds


def test_one_delay_warning_when_the_schedule_asks_for_it(tmp_path: Path) -> None:
    retry = RetrySchedule(delay_warning=3600, maximal_lifetime=86400)
    net = FakeNet(tmp_path, retry=retry)
    mx1, mx2 = _two_mx(net)
    mx1.rcpt = mx2.rcpt = lambda a: "450 4.2.0 Greylisted"
    qid = net.submit(["bob@anotherdomain.org"])
    report = net.fast_forward(4 * 3600)
    assert report.warnings == [(qid, "alice@example.com")] and report.dsns == []
    assert len(net.bounces) == 1
    dsn, blocks = net.dsn()
    assert dsn["Subject"] == "Delayed Mail (still being retried)"
    assert blocks[0]["Action"] == "delayed" and blocks[0]["Status"] == "4.2.0"
    assert "Will-Retry-Until" in blocks[0]
    net.restart()  # the "warned" mark is durable: no second warning after a restart
    assert net.queue.get(qid).warned
    assert net.fast_forward(4 * 3600).warnings == [] and len(net.bounces) == 1
