"""dig-style rendering: pure layout checks, and a byte-for-byte comparison with real dig."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from simsmtp.capture.dnsview import render_dig, render_short
from simsmtp.net.dns import DNSServer
from simsmtp.net.loop import EventLoopThread
from simsmtp.world.model import Record
from tests.conftest import require_program

SAMPLE = """
; <<>> DiG (simsmtp) <<>> @127.0.0.2 -p 53000 MX anotherdomain.org
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4711
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; QUESTION SECTION:
;anotherdomain.org.\t\tIN\tMX

;; ANSWER SECTION:
anotherdomain.org.\t3600\tIN\tMX\t10 mail.anotherdomain.org.

;; ADDITIONAL SECTION:
mail.anotherdomain.org.\t3600\tIN\tA\t127.0.0.3

;; Query time: 1 msec
;; SERVER: 127.0.0.2#53000(127.0.0.2) (UDP)
;; WHEN: Mon Nov 30 05:45:10 UTC 2026
;; MSG SIZE  rcvd: 72

"""


def sample_exchange() -> tuple[dns.message.Message, dns.message.Message]:
    query = dns.message.make_query("anotherdomain.org", "MX", use_edns=False)
    query.id = 4711
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.answer.append(dns.rrset.from_text("anotherdomain.org.", 3600, "IN", "MX",
                                               "10 mail.anotherdomain.org."))
    response.additional.append(dns.rrset.from_text("mail.anotherdomain.org.", 3600, "IN", "A",
                                                   "127.0.0.3"))
    return query, dns.message.from_wire(response.to_wire())


def test_sample_layout() -> None:
    query, response = sample_exchange()
    text = render_dig(query, response, server="127.0.0.2", port=53000, elapsed_ms=1.4,
                      when="Mon Nov 30 05:45:10 UTC 2026")
    assert text == SAMPLE


def test_when_is_left_out_unless_given_and_size_defaults_to_the_wire() -> None:
    query, response = sample_exchange()
    text = render_dig(query, response, server="127.0.0.2", port=53000, elapsed_ms=0)
    assert ";; WHEN:" not in text
    assert f";; MSG SIZE  rcvd: {len(response.to_wire())}\n" in text
    assert ";; MSG SIZE  rcvd: 99\n" in render_dig(query, response, server="127.0.0.2",
                                                    port=53000, elapsed_ms=0, rcvd=99)


def test_tcp_and_default_port_in_the_command_line() -> None:
    query, response = sample_exchange()
    text = render_dig(query, response, server="127.0.0.2", port=53, elapsed_ms=0,
                      transport="TCP")
    assert "<<>> @127.0.0.2 +tcp MX anotherdomain.org\n" in text
    assert ";; SERVER: 127.0.0.2#53(127.0.0.2) (TCP)\n" in text


def test_empty_sections_are_left_out() -> None:
    query = dns.message.make_query("nope.example", "A", use_edns=False)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.REFUSED)
    text = render_dig(query, response, server="127.0.0.1", port=5300, elapsed_ms=0)
    assert "status: REFUSED" in text
    assert ";; flags: qr rd; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 0\n" in text
    assert "ANSWER SECTION" not in text and "AUTHORITY SECTION" not in text
    assert "ADDITIONAL SECTION" not in text and "OPT PSEUDOSECTION" not in text
    assert ";nope.example.\t\t\tIN\tA\n" in text


def test_long_names_fall_back_to_single_spaces() -> None:
    # BIND pads to columns 24/32/40/48 with tabs, and past a column uses one space.
    name = "a" * 19 + ".org."  # 24 characters: already at the TTL column
    query = dns.message.make_query(name, "A", use_edns=False)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.1"))
    text = render_dig(query, response, server="127.0.0.1", port=5300, elapsed_ms=0)
    assert f"\n{name} 60\tIN\tA\t127.0.0.1\n" in text
    assert f"\n;{name}\tIN\tA\n" in text  # the question's columns do not count the ";"


def test_edns_pseudosection_and_counts() -> None:
    query = dns.message.make_query("anotherdomain.org", "MX", use_edns=0, payload=1232)
    response = dns.message.make_response(query, our_payload=1232)
    text = render_dig(query, response, server="127.0.0.1", port=5300, elapsed_ms=0)
    assert "ADDITIONAL: 1\n" in text  # the OPT record counts
    assert ";; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 1232\n" \
           ";; QUESTION SECTION:\n" in text


def test_render_short() -> None:
    query, response = sample_exchange()
    assert render_short(response) == "10 mail.anotherdomain.org."
    response.answer.insert(0, dns.rrset.from_text("www.anotherdomain.org.", 60, "IN", "CNAME",
                                                  "anotherdomain.org."))
    assert render_short(response).splitlines() == ["anotherdomain.org.",
                                                   "10 mail.anotherdomain.org."]
    assert render_short(dns.message.make_response(query)) == ""


# --------------------------------------------------------------------------- real dig




RECORDS = [
    Record("anotherdomain.org", "MX", "10 mail.anotherdomain.org."),
    Record("anotherdomain.org", "NS", "ns.anotherdomain.org."),
    Record("anotherdomain.org", "TXT", '"v=spf1 mx -all" "second string"'),
    Record("ns.anotherdomain.org", "A", "127.0.0.53"),
    Record("mail.anotherdomain.org", "A", "127.0.0.3"),
    Record("mail.anotherdomain.org", "AAAA", "::1"),
    Record("www.anotherdomain.org", "CNAME", "mail.anotherdomain.org.", 300),
    Record("nullmx.test", "MX", "0 ."),
    *[Record("x" * n + ".test", "A", "127.0.0.9") for n in (15, 16, 17, 18, 22, 23, 24, 25, 40)],
    *[Record("big.test", "TXT", f'"{i}{"y" * 200}"') for i in range(4)],
]


class Running:
    def __init__(self) -> None:
        self.thread = EventLoopThread(name="dnsview-test").start()
        self.exchanges: list[tuple[bytes, bytes, str]] = []
        self.server = DNSServer(lambda: RECORDS, host="127.0.0.1",
                                on_query=lambda q, r, _c, t: self.exchanges.append((q, r, t)))
        self.thread.run(self.server.start(), timeout=5)

    def close(self) -> None:
        self.thread.run(self.server.close(), timeout=5)
        self.thread.stop()


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    world = Running()
    yield world
    world.close()


def run_dig(running: Running, tmp_path: Path, args: list[str], digrc: str) -> str:
    dig = require_program("dig", "bind9-dnsutils")
    # Options from ~/.digrc are applied but not echoed, so the command line dig prints is
    # exactly the one render_dig reconstructs.
    (tmp_path / ".digrc").write_text(f"+time=2 +tries=1 {digrc}\n")
    ip, port = running.server.address
    done = subprocess.run([dig, f"@{ip}", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=20, check=False,
                          env={**os.environ, "HOME": str(tmp_path)})
    return done.stdout


CASES = [
    (["MX", "anotherdomain.org"], ""),
    (["+tcp", "A", "www.anotherdomain.org"], ""),
    (["A", "nope.anotherdomain.org"], ""),
    (["NS", "anotherdomain.org"], ""),
    (["TXT", "anotherdomain.org"], ""),
    (["SOA", "anotherdomain.org"], "+noedns"),
    (["MX", "nullmx.test"], ""),
    (["A", "example.net"], ""),
    (["TXT", "big.test"], "+noedns +ignore"),
    *[(["A", "x" * n + ".test"], "") for n in (15, 16, 17, 18, 22, 23, 24, 25, 40)],
]


@pytest.mark.interop
@pytest.mark.parametrize(("args", "digrc"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_render_dig_matches_real_dig(running: Running, tmp_path: Path, args: list[str],
                                     digrc: str) -> None:
    running.exchanges.clear()
    real = run_dig(running, tmp_path, args, digrc)
    assert ";; Got answer:" in real
    query_wire, response_wire, transport = running.exchanges[-1]
    when = re.search(r"^;; WHEN: (.*)$", real, re.M)
    elapsed = re.search(r"^;; Query time: (\d+) msec$", real, re.M)
    assert when is not None and elapsed is not None
    ip, port = running.server.address
    ours = render_dig(dns.message.from_wire(query_wire), dns.message.from_wire(response_wire),
                      server=ip, port=port, elapsed_ms=float(elapsed.group(1)),
                      when=when.group(1), transport=transport.upper())
    expected = re.sub(r"^; <<>> DiG \S+ <<>>", "; <<>> DiG (simsmtp) <<>>", real, flags=re.M)
    assert ours == expected


@pytest.mark.interop
def test_render_short_matches_dig_short(running: Running, tmp_path: Path) -> None:
    running.exchanges.clear()
    real = run_dig(running, tmp_path, ["A", "www.anotherdomain.org"], "+short")
    response = dns.message.from_wire(running.exchanges[-1][1])
    assert render_short(response) + "\n" == real
