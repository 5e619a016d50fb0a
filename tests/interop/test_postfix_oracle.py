"""The Postfix persona against a real Postfix: the same questions to both, byte for byte.

A throwaway Postfix instance (its own config directory, queue and virtual mailboxes in a
temporary folder, listening on free loopback ports, nothing chrooted) answers beside the seed
world's MX. Two smtpd services: Postfix's defaults (``defer_unauth_destination``, VRFY on),
and the choices a world can name in its policy (``reject_unauth_destination``,
``disable_vrfy_command = yes``). The client is outside ``mynetworks`` for both, as it is
outside the seed MX's ``relay_networks``. Skipped when Postfix cannot run here (it needs
root to start); under CI=true a missing ``postfix`` program fails (see ``require_program``).
See /work/shared/reference/postfix-oracle.md for the set-up this follows.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World
from tests.conftest import require_program

pytestmark = pytest.mark.interop

MX = "mail.anotherdomain.org"
WIDE = b"".join(b"%04d" % i for i in range(1250))  # one 5,000-character line, no wrapping


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main_cf(d: Path) -> str:
    return f"""compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
myhostname = {MX}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.254/32
smtputf8_enable = no
message_size_limit = 52428800
virtual_mailbox_domains = anotherdomain.org
virtual_mailbox_maps = inline:{{ bob@anotherdomain.org=bob/ }}
virtual_mailbox_base = {d}/vmail
virtual_transport = virtual
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
alias_maps =
alias_database =
"""


@pytest.fixture(scope="module")
def postfix() -> Iterator[dict[str, int]]:
    """A private Postfix: ``{"default": port, "strict": port}``; stopped at the end."""
    program = require_program("postfix")
    if os.geteuid() != 0 or not Path("/etc/postfix/master.cf").is_file():
        pytest.skip("a private Postfix needs root and Debian's /etc/postfix/master.cf")
    d = Path(tempfile.mkdtemp(prefix="simsmtp-postfix-"))
    d.chmod(0o755)  # Postfix's daemons run as the postfix user
    for sub in ("conf", "queue", "data", "vmail"):
        (d / sub).mkdir()
    shutil.chown(d / "data", "postfix")
    os.chown(d / "vmail", 65534, 65534)
    master = (Path("/etc/postfix/master.cf").read_text()).splitlines()
    service = re.compile(r"^(\S+\s+(?:inet|unix|fifo|pass|unix-dgram)\s+\S+\s+\S+\s+)y(\s)")
    lines = [service.sub(r"\1n\2", line) for line in master  # nothing chrooted
             if not line.startswith("smtp      inet")]  # no listener on port 25
    ports = {"default": _free_port(), "strict": _free_port()}
    lines.append(f"127.0.0.1:{ports['default']} inet n - n - - smtpd")
    lines.append(f"127.0.0.1:{ports['strict']} inet n - n - - smtpd"
                 " -o disable_vrfy_command=yes"
                 " -o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination")
    (d / "conf" / "master.cf").write_text("\n".join(lines) + "\n")
    (d / "conf" / "main.cf").write_text(_main_cf(d))
    conf = str(d / "conf")
    started = subprocess.run([program, "-c", conf, "start"], capture_output=True, text=True,
                             timeout=60)
    if started.returncode != 0:
        log = (d / "postfix.log").read_text() if (d / "postfix.log").exists() else ""
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"Postfix did not start here: {started.stderr.strip()} {log[-500:]}")
    try:
        yield ports
    finally:
        subprocess.run([program, "-c", conf, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(d, ignore_errors=True)


class Wire:
    """A raw SMTP client: one line out, the whole (possibly multi-line) reply back."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=20)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def say(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _conversation(address: tuple[str, int]) -> list[bytes]:
    """The probes of the oracle table, on one connection; queue ids masked."""
    wire = Wire(address)
    out = [wire.greeting]
    for line in (b"EHLO client.example.net", b"VRFY bob@anotherdomain.org",
                 b"VRFY <bob@anotherdomain.org>", b"VRFY nosuchuser@anotherdomain.org",
                 b"VRFY victim@elsewhere.example", b"FOO bar", b"HELP", b"EXPN staff",
                 b"VRFY Bob Builder", b"VRFY <>", b"ETRN anotherdomain.org", b"HELO",
                 b"RCPT TO:<victim@elsewhere.example>",
                 b"MAIL FROM:<carol@client.example.net>",
                 b"RCPT TO:<victim@elsewhere.example>", b"RCPT TO:<bob@anotherdomain.org>",
                 b"DATA", b"Subject: wide\r\n\r\n" + WIDE + b"\r\n.", b"QUIT"):
        out.append(wire.say(line))
    wire.close()
    return [re.sub(rb"queued as [0-9A-Za-z]+", b"queued as ID", r) for r in out]


def _world(policy: str = "") -> World:
    world = World.seed_world()
    if policy == "strict":
        world.host(MX).policy.disable_vrfy_command = True
        world.host(MX).policy.unauth_destination = "reject"
    world.host(MX).policy.starttls = False  # the Postfix instance has no certificate
    return world


def _simsmtp(policy: str = "") -> list[bytes]:
    with _world(policy).start(storage="memory") as net:
        assert isinstance(net, Network)
        return _conversation(net.address(MX, 25))


@pytest.mark.parametrize("service", ["default", "strict"])
def test_the_persona_answers_as_postfix(postfix: dict[str, int], service: str) -> None:
    real = _conversation(("127.0.0.1", postfix[service]))
    ours = _simsmtp(service)
    for theirs, mine in zip(real, ours, strict=True):
        assert mine == theirs


def test_the_oracle_answers_are_the_measured_ones(postfix: dict[str, int]) -> None:
    real = _conversation(("127.0.0.1", postfix["default"]))
    assert real[2] == b"252 2.0.0 bob@anotherdomain.org\r\n"
    assert real[4] == (b"550 5.1.1 <nosuchuser@anotherdomain.org>: Recipient address "
                       b"rejected: User unknown in virtual mailbox table\r\n")
    assert real[6] == real[7] == b"500 5.5.2 Error: command not recognized\r\n"
    assert real[18] == b"250 2.0.0 Ok: queued as ID\r\n"  # the 5,000-character line
    strict = _conversation(("127.0.0.1", postfix["strict"]))
    assert strict[2] == b"502 5.5.1 VRFY command is disabled\r\n"
    assert strict[15] == b"554 5.7.1 <victim@elsewhere.example>: Relay access denied\r\n"
