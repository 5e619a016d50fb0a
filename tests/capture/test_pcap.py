"""pcap export: synthesized frames (pure), scapy round trip, and what real tshark reads."""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simsmtp.capture.eavesdropper import eavesdrop
from simsmtp.capture.pcap import MSS, Frame, export_pcap, plan_frames
from simsmtp.net.tap import Tap
from tests.capture._scripted import (
    MESSAGE,
    Wire,
    dns_mx,
    make_ca,
    mirrored_smtp,
    new_tap,
    pop3_session,
    smtps,
    starttls_smtp,
)
from tests.conftest import IN_CI, require_program


def require_scapy() -> None:
    try:
        import scapy  # noqa: F401
    except ImportError:
        reason = "scapy is not installed (pip install scapy)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def tcp_frames(frames: list[Frame], conn_id: int) -> list[Frame]:
    return [f for f in frames if f.conn_id == conn_id]


# ---------------------------------------------------------------------------- pure planning

def test_handshake_sequence_numbers_and_teardown() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.s(b"220 mx ESMTP\r\n")
    wire.c(b"QUIT\r\n")
    wire.s(b"221 Bye\r\n")
    wire.close(by="server")
    frames, addresses = plan_frames(tap)
    client, server = addresses[wire.id]
    assert client == ("127.0.0.2", 40001) and server == ("127.0.0.3", 25)
    flags = [(f.src == client, f.flags, len(f.payload)) for f in frames]
    assert flags == [(True, "S", 0), (False, "SA", 0), (True, "A", 0),
                     (False, "PA", 14), (True, "PA", 6), (False, "PA", 9), (True, "A", 0),
                     (False, "FA", 0), (True, "FA", 0), (False, "A", 0)]
    syn, syn_ack, ack = frames[:3]
    isn_c, isn_s = syn.seq, syn_ack.seq
    assert syn_ack.ack == isn_c + 1 and ack.seq == isn_c + 1 and ack.ack == isn_s + 1
    greeting, quit_, bye, last_ack = frames[3:7]
    assert (greeting.seq, greeting.ack) == (isn_s + 1, isn_c + 1)
    assert (quit_.seq, quit_.ack) == (isn_c + 1, isn_s + 15)
    assert (bye.seq, bye.ack) == (isn_s + 15, isn_c + 7)
    assert (last_ack.seq, last_ack.ack) == (isn_c + 7, isn_s + 24)
    fin_s, fin_c, final = frames[7:]
    assert (fin_s.seq, fin_s.ack) == (isn_s + 24, isn_c + 7)  # the server closed first
    assert (fin_c.seq, fin_c.ack) == (isn_c + 7, isn_s + 25)
    assert (final.seq, final.ack) == (isn_s + 25, isn_c + 8)
    times = [f.time for f in frames]
    assert times == sorted(times) and syn.time < tap.segments(wire.id)[0].time


def test_large_writes_are_split_at_the_mss_with_acks() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.c(b"x" * 5000)
    frames = tcp_frames(plan_frames(tap)[0], wire.id)[3:]
    client = frames[0].src
    shape = [(f.src == client, f.flags, len(f.payload)) for f in frames]
    assert shape == [(True, "A", MSS), (True, "A", MSS), (False, "A", 0), (True, "A", MSS),
                     (True, "PA", 620), (False, "A", 0)]
    seqs = [f.seq for f in frames if f.payload]
    assert [b - a for a, b in itertools.pairwise(seqs)] == [MSS, MSS, MSS]
    assert frames[2].ack == seqs[0] + 2 * MSS and frames[-1].ack == seqs[0] + 5000


def test_well_known_ports_by_service_and_udp() -> None:
    tap = new_tap()
    for number, service in enumerate(["smtp", "submission", "smtps", "pop3", "pop3s", "x"]):
        Wire(tap, client=("127.0.0.2", 41000 + number), server=("127.0.0.3", 50000 + number),
             service=service)
    dns_mx(tap)
    _, addresses = plan_frames(tap)
    assert [server[1] for _, server in addresses.values()] == [25, 587, 465, 110, 995,
                                                               50005, 53]
    _, real = plan_frames(tap, well_known_ports=False)
    assert [server[1] for _, server in real.values()][:2] == [50000, 50001]
    frames, _ = plan_frames(tap)
    udp = [f for f in frames if f.transport == "udp"]
    assert [(f.src[1], f.dst[1]) for f in udp] == [(53535, 53), (53, 53535)]


def test_mapping_never_makes_two_connections_share_a_four_tuple() -> None:
    tap = new_tap()
    first = Wire(tap, client=("127.0.0.2", 40001), server=("127.0.0.3", 42525))
    second = Wire(tap, client=("127.0.0.2", 40001), server=("127.0.0.3", 42526))
    _, addresses = plan_frames(tap)
    assert addresses[first.id] == (("127.0.0.2", 40001), ("127.0.0.3", 25))
    assert addresses[second.id][1] == ("127.0.0.3", 25)
    assert addresses[second.id][0] != ("127.0.0.2", 40001)


def test_a_connection_recorded_at_both_ends_is_written_once() -> None:
    tap = new_tap()
    listener_end, _ = mirrored_smtp(tap)
    frames, addresses = plan_frames(tap)
    assert list(addresses) == [listener_end]
    assert {f.conn_id for f in frames} == {listener_end}


def test_scapy_loads_lazily() -> None:
    # (that every capture module is pure is checked over all modules by tests/test_layers.py)
    code = ("import sys, simsmtp.capture.pcap, simsmtp.capture.eavesdropper; "
            "sys.exit('scapy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


# ---------------------------------------------------------------------------- files

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One capture with everything: DNS, SMTP with STARTTLS (TLS 1.3 and 1.2), SMTPS, POP3
    in clear and with STLS, a large message, a server-side close, a mirrored connection."""
    require_scapy()
    directory = tmp_path_factory.mktemp("pcap")
    keylog = directory / "keys.log"
    ca = make_ca(directory, keylog=keylog)
    tap = new_tap()
    dns_mx(tap)
    starttls_smtp(tap, ca, client=("127.0.0.2", 40001))
    import ssl

    starttls_smtp(tap, ca, version=ssl.TLSVersion.TLSv1_2, client=("127.0.0.2", 40002))
    smtps(tap, ca, client=("127.0.0.2", 40003))
    pop3_session(tap, client=("127.0.0.2", 40004))
    pop3_session(tap, ca, client=("127.0.0.2", 40005))
    big = Wire(tap, client=("127.0.0.2", 40006))
    big.s("220 mx ESMTP")
    big.c("EHLO big.example.com")
    big.s("250 mx")
    big.c("DATA")
    big.s("354 go ahead")
    big.c(MESSAGE.encode() + b"filler line of text\r\n" * 1500 + b".\r\n")
    big.s("250 2.0.0 Ok: queued")
    big.close(by="server")
    mirrored_smtp(tap, client=("127.0.0.2", 40007))
    pcap = directory / "world.pcap"
    pcapng = directory / "world.pcapng"
    result = export_pcap(tap, pcap)
    assert result.frames > 100 and result.keylog_embedded == 0
    ng = export_pcap(tap, pcapng, pcapng=True, keylog=keylog)
    assert ng.keylog_embedded >= 4 * 3  # four TLS sessions' lines, each once
    return {"pcap": pcap, "pcapng": pcapng, "keylog": keylog, "tap": tap}


def test_scapy_reads_it_back_with_valid_checksums(exported: dict[str, Any]) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import rdpcap

    packets = rdpcap(str(exported["pcap"]))
    assert len(packets) > 100
    for packet in packets[:200]:
        for layer in (IP, TCP, UDP):
            if layer in packet:
                stored = packet[layer].chksum
                copy = packet[layer].copy()
                copy.chksum = None
                rebuilt = layer(bytes(copy))
                assert rebuilt.chksum == stored
    assert max(len(p) for p in packets) == 14 + 20 + 20 + MSS
    raw = exported["pcapng"].read_bytes()
    dsb = raw.find(struct.pack("<I", 0x0A))
    assert raw[dsb + 8:dsb + 12] == struct.pack("<I", 0x544C534B)  # pcapng §4.7 "TLSK"


def tshark(path: Path, display_filter: str, *fields: str, keylog: Path | None = None,
           ) -> list[list[str]]:
    program = require_program("tshark")
    command = [program, "-n", "-r", str(path), "-Y", display_filter,
               "-o", "smtp.decryption:TRUE"]
    if keylog is not None:
        command += ["-o", f"tls.keylog_file:{keylog}"]
    if fields:
        command += ["-T", "fields", "-E", "separator=|"]
        for name in fields:
            command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in done.stdout.splitlines() if line]


@pytest.mark.interop
def test_tshark_sees_ehlo_and_starttls(exported: dict[str, Any]) -> None:
    # smtp.command_line: tshark 4.0 cuts smtp.req.command to four letters ("STAR").
    lines = [row[0] for row in tshark(exported["pcap"], "smtp.req", "smtp.command_line")]
    assert "EHLO mail.example.com\\r\\n" in lines and "STARTTLS\\r\\n" in lines
    assert not any(line.startswith(("MAIL", "RCPT")) for line in lines)
    assert tshark(exported["pcap"], 'pop.request.command == "USER"', "pop.request.parameter") \
        == [["bob"]]  # the STLS session's USER is encrypted


@pytest.mark.interop
def test_tshark_mail_and_rcpt_only_with_the_key_log(exported: dict[str, Any]) -> None:
    query = 'smtp.req.command == "MAIL" or smtp.req.command == "RCPT"'
    # Every MAIL and RCPT of this capture crossed inside TLS.
    assert tshark(exported["pcap"], query, "tcp.dstport") == []
    opened = tshark(exported["pcap"], query, "tcp.dstport", "smtp.req.parameter",
                    keylog=exported["keylog"])
    assert sorted(row[0] for row in opened) == ["25", "25", "25", "25", "465", "465"]
    assert ["25", "FROM:<alice@example.com>"] in opened
    embedded = tshark(exported["pcapng"], query, "tcp.dstport")
    assert len(embedded) == 6  # the Decryption Secrets Block alone is enough


@pytest.mark.interop
def test_tshark_dns_mx_query_and_tls_metadata(exported: dict[str, Any]) -> None:
    assert tshark(exported["pcap"], "dns.qry.type == 15 && dns.flags.response == 0",
                  "dns.qry.name") == [["anotherdomain.org"]]
    sni = tshark(exported["pcap"], "tls.handshake.type == 1",
                 "tls.handshake.extensions_server_name")
    assert sni == [["mail.anotherdomain.org"]] * 4
    # Only TLS 1.2 shows its Certificate in clear; TLS 1.3's appear with the keys.
    assert len(tshark(exported["pcap"], "tls.handshake.type == 11", "frame.number")) == 1
    assert len(tshark(exported["pcap"], "tls.handshake.type == 11", "frame.number",
                      keylog=exported["keylog"])) == 4


@pytest.mark.interop
def test_tshark_flags_no_tcp_analysis_problems(exported: dict[str, Any]) -> None:
    assert tshark(exported["pcap"], "tcp.analysis.flags", "frame.number") == []
    assert tshark(exported["pcapng"], "tcp.analysis.flags", "frame.number") == []
    streams = tshark(exported["pcap"], "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                     "tcp.stream")
    assert len(streams) == 7  # the mirrored connection once
    fins = tshark(exported["pcap"], "tcp.flags.fin == 1", "tcp.stream")
    assert len(fins) == 2 * 7
    big = tshark(exported["pcap"], 'smtp.response.code == 250 && smtp.rsp.parameter '
                 'contains "queued"', "tcp.stream")
    assert big  # reassembled across the MSS-sized frames and answered


@pytest.mark.interop
def test_the_eavesdropper_reads_what_wireshark_reads(exported: dict[str, Any]) -> None:
    ours = eavesdrop(exported["tap"], keylog=exported["keylog"]).credentials
    smtp = tshark(exported["pcap"], "smtp.auth.password", "smtp.auth.username",
                  "smtp.auth.password", keylog=exported["keylog"])
    assert sorted(smtp) == sorted([c.username, c.password] for c in ours
                                  if c.mechanism == "PLAIN")
    assert len(smtp) == 4  # three sessions inside TLS, one in clear
    pop = tshark(exported["pcap"], 'pop.request.command == "PASS"', "pop.request.parameter",
                 keylog=exported["keylog"])
    assert pop == [[c.password] for c in ours if c.mechanism == "USER/PASS"] == \
        [["hunter2"], ["hunter2"]]  # in clear, and inside STLS
    assert [c.inside_tls for c in ours if c.mechanism == "USER/PASS"] == [False, True]


def test_export_of_an_empty_tap(tmp_path: Path) -> None:
    require_scapy()
    result = export_pcap(Tap(), tmp_path / "empty.pcap")
    assert result.frames == 0 and (tmp_path / "empty.pcap").stat().st_size == 24
    assert result.tshark_command() == f"tshark -r {tmp_path / 'empty.pcap'}"


# ---------------------------------------------------------------------------- a real world

@pytest.mark.interop
def test_a_real_world_capture_end_to_end(tmp_path: Path) -> None:
    """The seed world over real loopback sockets: submission with STARTTLS, DNS, relay to
    the MX with STARTTLS, and Bob fetching with Python's poplib over STLS."""
    require_scapy()
    import poplib

    from simsmtp.world.model import seed_world
    from simsmtp.world.scenario import SEED_RECIPIENT, SEED_SENDER, SEED_SUBJECT, seed_message

    world = seed_world(None)
    alice, bob = world.user(SEED_SENDER), world.user(SEED_RECIPIENT)
    assert alice is not None and bob is not None
    keylog = tmp_path / "keylog.txt"
    with world.start(storage="memory", directory=tmp_path / "world", keylog=keylog) as net:
        net.submit(seed_message(world), sender=alice.address, recipients=bob.address,
                   user=alice.address, password=alice.password or "",
                   host="mail.example.com")
        assert net.wait(net.idle, 20)
        assert net.ca is not None
        pop = poplib.POP3(*net.address("mail.anotherdomain.org", 110), timeout=10)
        pop.stls(context=net.ca.client_context(verify=False))
        pop.user(bob.local_part)
        pop.pass_(bob.password or "")
        assert f"Subject: {SEED_SUBJECT}".encode() in b"\r\n".join(pop.retr(1)[1])
        pop.quit()
        assert net.wait(lambda: all(c.closed_at for c in net.tap.connections()
                                    if c.transport == "tcp"), 10)
        tap = net.tap
    services = [c.service for c in tap.connections()]
    assert {"submission", "dns", "smtp", "pop3"} <= set(services)
    assert eavesdrop(tap).credentials == []
    opened = eavesdrop(tap, keylog=keylog)
    assert sorted(c.password for c in opened.credentials) == \
        sorted([alice.password, bob.password])
    result = export_pcap(tap, tmp_path / "world.pcap")
    pcap = result.path
    assert tshark(pcap, "tcp.analysis.flags", "frame.number") == []
    assert tshark(pcap, "dns.qry.type == 15 && dns.flags.response == 0", "dns.qry.name") == \
        [["anotherdomain.org"]]
    query = 'smtp.req.command == "MAIL"'
    assert tshark(pcap, query, "tcp.dstport") == []
    assert sorted(tshark(pcap, query, "tcp.dstport", keylog=keylog)) == [["25"], ["587"]]

