"""A small SMTP load generator with STARTTLS (smtp-source has none).

It speaks like ``smtp-source``: greeting, EHLO, then per message MAIL, RCPT, DATA and the
content, each waiting for its reply (no PIPELINING), QUIT at the end of a session. With
``--tls`` it says STARTTLS after the first EHLO (any certificate is accepted, as
opportunistic STARTTLS between MTAs does, RFC 7435 §1.3) and EHLO again (RFC 3207 §4.2).
It uses blocking sockets and the standard library's ``ssl`` (``SSLContext.wrap_socket``: the
TLS records are made in C, so the client stays light), one thread per session, the same for
every server under test, and runs in its own process so it never shares an interpreter
with a server::

    python -m benchmarks.loadclient HOST PORT --messages 1000 --sessions 10 --reuse --tls

It prints one JSON object: messages sent, seconds, messages per second, errors.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading
import time

from .servers import RECIPIENT, SENDER

#: Seconds any one reply may take before the session is counted as failed.
REPLY_TIMEOUT = 30.0


def make_message(size: int) -> bytes:
    """A message of about ``size`` octets of body in 78-character lines, dot-terminated."""
    head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: load\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, size // len(line))
    return head + body + b".\r\n"


class _Session:
    """One SMTP session on a blocking socket (an ``ssl.SSLSocket`` after STARTTLS)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), REPLY_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        if self.reply() != 220:
            raise RuntimeError("no 220 greeting")
        self.command(b"EHLO loadclient.example\r\n", 250)
        if context is not None:
            self.command(b"STARTTLS\r\n", 220)
            self.sock = context.wrap_socket(self.sock, server_hostname=None)
            self.command(b"EHLO loadclient.example\r\n", 250)

    def reply(self) -> int:
        """The code of the next complete reply (RFC 5321 §4.2.1: "ddd-" continues)."""
        while True:
            start = 0
            buf = self.buffer
            while True:
                end = buf.find(b"\r\n", start)
                if end < 0:
                    break
                if end - start >= 3 and buf[start + 3:start + 4] != b"-":
                    self.buffer = buf[end + 2:]
                    return int(buf[start:start + 3])
                start = end + 2
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data

    def command(self, line: bytes, expect: int) -> None:
        self.sock.sendall(line)
        code = self.reply()
        if code != expect:
            raise RuntimeError(f"{line[:20]!r} got {code}, expected {expect}")

    def send(self, message: bytes) -> None:
        self.command(f"MAIL FROM:<{SENDER}>\r\n".encode(), 250)
        self.command(f"RCPT TO:<{RECIPIENT}>\r\n".encode(), 250)
        self.command(b"DATA\r\n", 354)
        self.command(message, 250)

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def _worker(host: str, port: int, context: ssl.SSLContext | None, count: int, reuse: bool,
            message: bytes, deadline: float, done: list[int], errors: list[str]) -> None:
    session: _Session | None = None
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            if session is None:
                session = _Session(host, port, context)
            session.send(message)
            with _LOCK:
                done[0] += 1
            if not reuse:
                session.close()
                session = None
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        if session is not None:
            session.close()


_LOCK = threading.Lock()


def run(host: str, port: int, *, messages: int, sessions: int = 1, reuse: bool = True,
        tls: bool = False, size: int = 1024, time_limit: float = 120.0) -> dict[str, object]:
    """Send ``messages`` messages over ``sessions`` parallel sessions; the figures.

    Args:
        host: the server's address.
        port: its port.
        messages: how many messages in all.
        sessions: parallel sessions (a thread each, sending its share).
        reuse: one connection per session (True) or one per message (False).
        tls: STARTTLS after EHLO.
        size: body octets per message.
        time_limit: stop sending new messages after this many seconds.
    """
    context: ssl.SSLContext | None = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    message = make_message(size)
    done = [0]
    errors: list[str] = []
    shares = [messages // sessions + (1 if i < messages % sessions else 0)
              for i in range(sessions)]
    deadline = time.monotonic() + time_limit
    threads = [threading.Thread(target=_worker, args=(host, port, context, share, reuse,
                                                      message, deadline, done, errors))
               for share in shares if share]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + REPLY_TIMEOUT)
    seconds = time.perf_counter() - start
    return {"messages": done[0], "seconds": seconds,
            "rate": done[0] / seconds if seconds > 0 else 0.0,
            "errors": len(errors), "error": errors[0] if errors else ""}


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadclient")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="one connection per session")
    parser.add_argument("--tls", action="store_true", help="STARTTLS after EHLO")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = run(args.host, args.port, messages=args.messages, sessions=args.sessions,
                 reuse=args.reuse, tls=args.tls, size=args.size, time_limit=args.time_limit)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
