"""Real ``dig`` (BIND 9) asks the world's DNS server: UDP and TCP, MX, A, NXDOMAIN."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.cli._up import UpProcess
from tests.conftest import require_program

pytestmark = pytest.mark.interop

MX_LINE = re.compile(r"^anotherdomain\.org\.\s+3600\s+IN\s+MX\s+10 mail\.anotherdomain\.org\.$",
                     re.M)


def dig(world: UpProcess, *args: str) -> str:
    program = require_program("dig", "bind9-dnsutils")
    dns = world.info["dns"]
    done = subprocess.run([program, f"@{dns['ip']}", "-p", str(dns["port"]), "+time=5",
                           "+tries=1", *args], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def world_ip(world: UpProcess, host: str) -> str:
    """The host's address in the world (what DNS answers), also where hosts share
    127.0.0.1 and ``ip`` is where tools connect."""
    info = world.info["hosts"][host]
    return str(info.get("world_ip", info["ip"]))


def test_mx_over_udp(world: UpProcess) -> None:
    out = dig(world, "MX", "anotherdomain.org")
    assert "status: NOERROR" in out
    assert re.search(r";; flags: qr aa rd;", out)  # authoritative (RFC 1035 §4.1.1)
    assert MX_LINE.search(out)
    ip = world_ip(world, "mail.anotherdomain.org")
    assert re.search(rf"^mail\.anotherdomain\.org\.\s+3600\s+IN\s+A\s+{re.escape(ip)}$", out,
                     re.M)  # the MX target's address comes along as additional data
    assert "(UDP)" in out


def test_mx_over_tcp(world: UpProcess) -> None:
    out = dig(world, "+tcp", "MX", "anotherdomain.org")
    assert "status: NOERROR" in out and MX_LINE.search(out)
    assert "(TCP)" in out


def test_a_record_of_the_mx(world: UpProcess) -> None:
    out = dig(world, "+short", "A", "mail.anotherdomain.org")
    assert out.split() == [world_ip(world, "mail.anotherdomain.org")]


def test_nxdomain_with_the_zone_soa(world: UpProcess) -> None:
    out = dig(world, "A", "nosuchhost.anotherdomain.org")
    assert "status: NXDOMAIN" in out
    assert "ANSWER: 0" in out
    # RFC 2308 §3: the negative answer carries the zone's SOA in the authority section
    assert re.search(r"^anotherdomain\.org\.\s+\d+\s+IN\s+SOA\s", out, re.M)
