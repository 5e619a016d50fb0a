"""Client throughput: simsmtp's client against ``smtplib``, same messages to smtp-sink
(issue 7, item 2).

* **simsmtp**: the sans-IO :class:`~simsmtp.protocol.client.ClientConnection` driven over a
  socket by :func:`simsmtp.net.channel.open_connection` (the outbound agent's stack), with
  MAIL, RCPT and DATA pipelined when the server offers PIPELINING (RFC 2920), as the agent
  sends them.
* **smtplib**: ``SMTP.sendmail`` (one command, one round trip).

Both run in this process, one after the other, against one smtp-sink (its own process), in
two modes: one connection for every message, and a connection per message. Client CPU per
message is this process's CPU time (``time.process_time``) over the run.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .common import Report, ServerProcess, Table, find_program, fmt, free_port
from .loadclient import make_message
from .servers import BIND, RECIPIENT, SENDER, smtp_sink_argv

#: Messages per run (reuse, connection per message) and repeats; --quick uses QUICK.
FULL = (3000, 1000, 2)
QUICK = (800, 300, 1)
MESSAGE_SIZE = 1024


@dataclass
class Figures:
    """One run: messages per second and client CPU µs per message."""

    rate: float
    cpu_us: float


def _content(size: int) -> bytes:
    return make_message(size)[:-3]  # without the final "." line: the clients add it


async def _simsmtp_send(address: tuple[str, int], messages: int, reuse: bool,
                        content: bytes) -> None:
    from simsmtp.net.channel import ClientChannel, open_connection
    from simsmtp.protocol import events as ev
    from simsmtp.protocol.client import ClientConfig, ClientConnection

    config = ClientConfig(hostname="loadclient.example")

    replies = (ev.ReplyReceived, ev.ConnectionOpened)

    async def reply(channel: ClientChannel) -> int:
        while True:
            event = await channel.next_event()
            if isinstance(event, replies):
                code: int = event.reply.code
                return code

    async def session() -> tuple[ClientChannel, ClientConnection]:
        conn = ClientConnection(config)
        channel = await open_connection(address[0], address[1], conn, timeout=30.0)
        if await reply(channel) != 220:
            raise RuntimeError("no 220 greeting")
        channel.send(ev.Ehlo())
        if await reply(channel) != 250:
            raise RuntimeError("EHLO refused")
        return channel, conn

    async def quit_(channel: ClientChannel) -> None:
        channel.send(ev.Quit())
        await reply(channel)
        await channel.close()

    channel, conn = await session()
    pipelining = "PIPELINING" in conn.extensions
    for i in range(messages):
        if i and not reuse:
            channel, conn = await session()
        commands = [ev.MailFrom(SENDER), ev.RcptTo(RECIPIENT), ev.Data()]
        if pipelining:  # RFC 2920: the group in one write, then the three replies
            for command in commands[:-1]:
                conn.send(command)
            channel.send(commands[-1])
            codes = [await reply(channel) for _ in commands]
        else:
            codes = []
            for command in commands:
                channel.send(command)
                codes.append(await reply(channel))
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        channel.send(ev.Message(content))
        if await reply(channel) != 250:
            raise RuntimeError("message refused")
        if not reuse:
            await quit_(channel)
    if reuse:
        await quit_(channel)


def simsmtp_client(address: tuple[str, int], messages: int, reuse: bool,
                   content: bytes) -> None:
    """Send ``messages`` with simsmtp's client (asyncio, this thread)."""
    asyncio.run(_simsmtp_send(address, messages, reuse, content))


def smtplib_client(address: tuple[str, int], messages: int, reuse: bool,
                   content: bytes) -> None:
    """Send ``messages`` with ``smtplib``."""
    client: smtplib.SMTP | None = None
    for _ in range(messages):
        if client is None:
            client = smtplib.SMTP(address[0], address[1], local_hostname="loadclient.example",
                                  timeout=30)
        client.sendmail(SENDER, [RECIPIENT], content)
        if not reuse:
            client.quit()
            client = None
    if client is not None:
        client.quit()


def _time(run: Callable[[], None], messages: int) -> Figures:
    cpu0, start = time.process_time(), time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return Figures(messages / seconds, (time.process_time() - cpu0) / messages * 1e6)


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Both clients, both modes, against smtp-sink; add the table and target to ``report``."""
    say = log if callable(log) else (lambda _text: None)
    reuse_n, connect_n, repeats = QUICK if quick else FULL
    reuse_n, connect_n = max(5, int(reuse_n * scale)), max(5, int(connect_n * scale))
    table = Table("Client throughput to smtp-sink (messages/s; client CPU µs per message)",
                  ["mode", "simsmtp client", "smtplib", "simsmtp / smtplib",
                   "CPU µs/msg simsmtp", "smtplib"])
    table.notes.append(
        f"Messages of {MESSAGE_SIZE} body octets, one recipient, best of {repeats} run(s); "
        "simsmtp: ClientConnection over open_connection (asyncio), MAIL/RCPT/DATA pipelined "
        "(RFC 2920) as the outbound agent sends them; smtplib: SMTP.sendmail.")
    sink = find_program("smtp-sink")
    if sink is None:
        table.notes.append("smtp-sink is not installed (Debian: apt-get install postfix): "
                           "nothing measured.")
        report.tables.append(table)
        report.target("client: simsmtp / smtplib", None, "x", "≥ 1.5x", None)
        return
    content = _content(MESSAGE_SIZE)
    port = free_port(BIND)
    with ServerProcess(smtp_sink_argv(sink, BIND, port), address=(BIND, port)):
        address = (BIND, port)
        for warm_up in (simsmtp_client, smtplib_client):  # imports, first-use caches
            warm_up(address, 10, True, content)
        for label, messages, reuse in (("one connection for all", reuse_n, True),
                                       ("a connection per message", connect_n, False)):
            best: dict[str, Figures] = {}
            for _ in range(repeats):
                for name, client in (("simsmtp", simsmtp_client), ("smtplib", smtplib_client)):
                    figures = _time(partial(client, address, messages, reuse, content),
                                    messages)
                    say(f"  client {label:26} {name:8} {fmt(figures.rate, 'msg/s'):>12}")
                    if name not in best or figures.rate > best[name].rate:
                        best[name] = figures
            ratio = best["simsmtp"].rate / best["smtplib"].rate
            table.rows.append([label, fmt(best["simsmtp"].rate), fmt(best["smtplib"].rate),
                               fmt(ratio, "x"), fmt(best["simsmtp"].cpu_us),
                               fmt(best["smtplib"].cpu_us)])
            report.target(f"client, {label}: simsmtp / smtplib", ratio, "x", "≥ 1.5x",
                          ratio >= 1.5)
    report.tables.append(table)
