"""The world's MTA-STS policy server (HTTPS, RFC 8461 §3.3) and the fetch a sender makes.

:class:`PolicyServer` is a small real HTTPS server on a loopback address of the world. It
answers ``GET /.well-known/mta-sts.txt`` for ``Host: mta-sts.<domain>`` with the domain's
policy as ``text/plain`` (read live from the world, so a notebook that edits the policy is
served the new one), and 404 for anything else. Its certificate comes from the world's CA
and names every ``mta-sts.<domain>`` it serves, so ``curl --cacert ca.pem`` works::

    curl --cacert ca.pem --resolve mta-sts.anotherdomain.org:PORT:IP \\
        https://mta-sts.anotherdomain.org:PORT/.well-known/mta-sts.txt

:func:`fetch_policy` is the sender's side: HTTPS with a verified certificate for
``mta-sts.<domain>``, no redirects, status 200 and ``text/plain`` only, at most 64 KiB
(RFC 8461 §3.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..trace import Trace
from ..world.mtasts import POLICY_PATH, POLICY_SIZE_LIMIT

__all__ = ["FetchResult", "PolicyServer", "fetch_policy"]

#: The longest request head the server reads (request line and headers).
MAX_REQUEST_HEAD = 8192


class PolicyServer:
    """An HTTPS server for the MTA-STS policies of a world's domains.

    Args:
        policy_text: ``policy_text(domain)`` -> the policy file, or None (404).
        context: the server's TLS context (a certificate for every ``mta-sts.<domain>``).
        host: the loopback address to bind; ``port`` 0 picks a free port.
        trace: where ``https.request`` events go; ``name`` is the host name in the trace.
    """

    def __init__(self, policy_text: Callable[[str], str | None], context: ssl.SSLContext,
                 host: str, port: int = 0, *, trace: Trace | None = None,
                 name: str = "mta-sts") -> None:
        self.policy_text = policy_text
        self.context = context
        self.host = host
        self.port = port
        self.trace = trace
        self.name = name
        #: True: the server drops every connection (an attacker blocking the policy fetch).
        self.blocked = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        """``(ip, port)`` the server listens on."""
        if self._server is None:
            raise RuntimeError("PolicyServer not started")
        ip, port = self._server.sockets[0].getsockname()[:2]
        return ip, port

    async def start(self) -> PolicyServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  ssl=self.context, limit=MAX_REQUEST_HEAD)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def _record(self, kind: str, **data: Any) -> None:
        if self.trace is not None:
            self.trace.record(kind, self.name, **data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            if self.blocked:
                self._record("https.blocked", client=f"{peer[0]}:{peer[1]}")
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError, ssl.SSLError):
                return
            status, body = self._respond(head, f"{peer[0]}:{peer[1]}")
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed"}[status]
            data = body.encode()
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                         .encode() + data)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, head: bytes, client: str) -> tuple[int, str]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, body = 400, "bad request\n"
        elif parts[0] != "GET":
            status, body = 405, "only GET\n"
        else:
            host = headers.get("host", "").rsplit(":", 1)[0].lower().rstrip(".")
            text = None
            if parts[1] == POLICY_PATH and host.startswith("mta-sts."):
                text = self.policy_text(host.removeprefix("mta-sts."))
            status, body = (200, text) if text is not None else (404, "no such policy\n")
        self._record("https.request", client=client, request=lines[0],
                     http_host=headers.get("host", ""), status=status)
        return status, body


@dataclass(frozen=True)
class FetchResult:
    """What fetching a policy gave: the text, or an error saying why not."""

    text: str | None
    error: str = ""


async def fetch_policy(ip: str, port: int, domain: str, context: ssl.SSLContext, *,
                       timeout: float = 10.0) -> FetchResult:
    """GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` from ``ip:port``.

    The certificate must be valid for ``mta-sts.<domain>`` under ``context`` (which
    verifies); only ``200`` with ``text/plain`` counts (RFC 8461 §3.3: no redirects).
    """
    host = f"mta-sts.{domain}"
    writer: asyncio.StreamWriter | None = None
    try:
        reader, stream = await asyncio.wait_for(
            asyncio.open_connection(ip, port, ssl=context, server_hostname=host), timeout)
        writer = stream
        stream.write(f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\n"
                     "User-Agent: simsmtp\r\nConnection: close\r\n\r\n".encode())
        await stream.drain()
        data = b""
        while len(data) <= POLICY_SIZE_LIMIT + MAX_REQUEST_HEAD:  # to the end, or too much
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
    except ssl.SSLCertVerificationError as exc:
        return FetchResult(None, f"the certificate of {host} is not valid: "
                                 f"{exc.verify_message}")
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        return FetchResult(None, f"could not fetch the policy from {host}: "
                                 f"{type(exc).__name__}: {exc}".rstrip(": "))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    if not data:
        return FetchResult(None, f"could not fetch the policy from {host}: the connection "
                                 "closed without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    if len(status) < 2 or status[1] != "200":
        return FetchResult(None, f"{host} answered {lines[0]!r} (RFC 8461 §3.3: only 200)")
    ctype = next((line.partition(":")[2].strip() for line in lines[1:]
                  if line.lower().startswith("content-type:")), "")
    if ctype.split(";")[0].strip().lower() != "text/plain":
        return FetchResult(None, f"{host} served {ctype or 'no content type'}, not "
                                 "text/plain (RFC 8461 §3.3)")
    if len(body) > POLICY_SIZE_LIMIT:
        return FetchResult(None, f"the policy of {domain} is larger than 64 KiB")
    return FetchResult(body.decode("utf-8", "replace"))
