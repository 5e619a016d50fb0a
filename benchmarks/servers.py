"""The servers under test, each run in a process of its own.

``python -m benchmarks.servers simsmtp`` boots the seed world with memory storage and
serves its MX (mail.anotherdomain.org, port 25, STARTTLS offered by the world's CA);
``python -m benchmarks.servers core`` serves simsmtp's protocol stack alone (listener and
sans-IO server, a handler that accepts everything, no world, trace or capture);
``python -m benchmarks.servers aiosmtpd`` runs an aiosmtpd server whose handler only
accepts, with STARTTLS from a certificate of the same kind. Each prints
``READY <ip> <port>`` once it listens and stops when its stdin closes. Postfix's
``smtp-sink`` is started as it is (:func:`smtp_sink_argv`); it has no STARTTLS.

Options ``--mailauth off``, ``--no-trace`` and ``--no-capture`` boot the simsmtp world
without SPF/DKIM/DMARC at its MX, without its trace, without its capture tap (to show what
each costs: :mod:`benchmarks.breakdown`). To profile a server, point ``py-spy record
--pid`` (``--gil`` for CPU only) at its process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import threading
from pathlib import Path

#: The envelope every load generator uses against every server: to a real user of the seed
#: world's MX, so simsmtp checks (SPF, DMARC), accepts and stores it like any mail; from a
#: domain the world does not know (so no DMARC policy rejects a load generator's IP).
SENDER = "load@loadgen.test"
RECIPIENT = "bob@anotherdomain.org"
#: The seed world's MX, the simsmtp server under test.
MX_HOST = "mail.anotherdomain.org"
#: Where aiosmtpd and smtp-sink listen (simsmtp binds its world's own 127.0.0.x).
BIND = "127.0.0.1"


def smtp_sink_argv(program: str, ip: str, port: int) -> list[str]:
    """smtp-sink accepting everything on ``ip:port`` (backlog 100, as root: -u nobody)."""
    import os

    argv = [program]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # smtp-sink(1): required with super-user privileges
    return [*argv, f"{ip}:{port}", "100"]


def _wait_for_stdin_eof() -> None:
    with contextlib.suppress(Exception):
        sys.stdin.read()


def serve_simsmtp(capture: bool, mailauth: str | None = None, trace: bool = True) -> None:
    """Boot the seed world (memory storage) and serve until stdin closes.

    Args:
        capture: keep the capture tap of every byte (the default of a world).
        mailauth: the MX's ``policy.mailauth`` instead of the seed's (``"off"``: no SPF,
            DKIM or DMARC).
        trace: keep the world's trace (``False``: ``world.trace.enabled = False``).
    """
    from simsmtp.world import World

    world = World.seed_world()
    if mailauth is not None:
        world.host(MX_HOST).policy.mailauth = mailauth
    world.trace.enabled = trace
    with world.start(storage="memory", capture=capture) as net:
        ip, port = net.address(MX_HOST, 25)
        print(f"READY {ip} {port}", flush=True)
        _wait_for_stdin_eof()


def _aiosmtpd_tls_context(directory: Path) -> object:
    from simsmtp.net.ca import CertificateAuthority

    ca = CertificateAuthority(directory)  # the same key and certificate kind as a world's
    return ca.server_context(MX_HOST)


def serve_aiosmtpd() -> None:
    """An aiosmtpd server whose handler accepts every message; serve until stdin closes."""
    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.ERROR)

    class Accept:
        async def handle_DATA(self, server: object, session: object,
                              envelope: object) -> str:
            return "250 2.0.0 Ok: queued"

    with tempfile.TemporaryDirectory(prefix="bench-aiosmtpd-") as tmp:
        context = _aiosmtpd_tls_context(Path(tmp))
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(loop.create_server(
            lambda: SMTP(Accept(), hostname=MX_HOST, tls_context=context,  # type: ignore[arg-type]
                         require_starttls=False),
            BIND, 0, backlog=100))
        port = server.sockets[0].getsockname()[1]
        print(f"READY {BIND} {port}", flush=True)
        def stop_at_eof() -> None:
            _wait_for_stdin_eof()
            loop.call_soon_threadsafe(loop.stop)

        stopper = threading.Thread(target=stop_at_eof, daemon=True)
        stopper.start()
        loop.run_forever()
        server.close()
        loop.close()


def serve_core() -> None:
    """simsmtp's protocol stack alone: a :class:`~simsmtp.net.listener.Listener` running
    :class:`~simsmtp.protocol.server.ServerConnection` with the default handler (accept
    everything, store nothing), no world, no trace, no capture: what aiosmtpd is here."""
    from simsmtp.net.listener import create_listener
    from simsmtp.protocol.handler import Handler
    from simsmtp.protocol.server import ServerConfig, ServerConnection
    from simsmtp.protocol.session import Session

    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        config = ServerConfig(hostname=MX_HOST,
                              tls_context=_aiosmtpd_tls_context(Path(tmp)))  # type: ignore[arg-type]
        handler = Handler()

        def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServerConnection:
            return ServerConnection(handler, config, Session(peer=peer, local=local))

        loop = asyncio.new_event_loop()
        listener = loop.run_until_complete(create_listener(BIND, 0, factory=factory,
                                                           name=MX_HOST, service="smtp"))
        print(f"READY {BIND} {listener.address[1]}", flush=True)

        def stop_at_eof() -> None:
            _wait_for_stdin_eof()
            loop.call_soon_threadsafe(loop.stop)

        threading.Thread(target=stop_at_eof, daemon=True).start()
        loop.run_forever()
        loop.run_until_complete(listener.close())
        loop.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.servers simsmtp|core|aiosmtpd [--no-capture]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=["simsmtp", "core", "aiosmtpd"])
    parser.add_argument("--no-capture", action="store_true")
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--mailauth", choices=["enforce", "report", "off"])
    args = parser.parse_args(argv)
    if args.kind == "simsmtp":
        serve_simsmtp(capture=not args.no_capture, mailauth=args.mailauth,
                      trace=not args.no_trace)
    elif args.kind == "core":
        serve_core()
    else:
        serve_aiosmtpd()


if __name__ == "__main__":
    main()
