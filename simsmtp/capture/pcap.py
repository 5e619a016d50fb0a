"""Export a capture to pcap or pcapng, so Wireshark and tshark can open it.

The tap keeps bytes, not packets. :func:`plan_frames` turns each connection back into the
frames a sniffer on the path would have recorded, and :func:`export_pcap` builds them with
scapy (imported only there) as Ethernet / IPv4 / TCP or UDP:

* TCP: SYN, SYN-ACK, ACK (RFC 9293 §3.5); the data with correct sequence and
  acknowledgement numbers, split at the Ethernet MSS of 1460 bytes (RFC 9293 §3.7.1), an
  ACK from the receiver after every second full segment and after each write (so the
  window never fills); FIN-ACK both ways and the last ACK when the tap saw the close
  (RFC 9293 §3.6). Checksums and lengths are computed by scapy. Times are the tap's.
* UDP: one datagram per recorded DNS query or answer.
* Ports: the world's servers run on ephemeral ports, which Wireshark does not recognise.
  By default the frames carry the well-known port of the connection's ``service``
  (smtp 25, submission 587, smtps 465, pop3 110, pop3s 995, dns 53), so tshark dissects
  SMTP, POP3, DNS and TLS with no ``-d`` hint; the client side keeps its real port, and the
  IP addresses are the hosts' own loopback ones (each host's address in the world, also
  where the hosts' sockets share 127.0.0.1). ``well_known_ports=False`` keeps the real
  server ports (then use e.g. ``tshark -d tcp.port==PORT,smtp``). If mapping makes two
  connections share a 4-tuple, the later one's client port is moved to a free one.
* A connection recorded from both ends (an outbound client and a listener of the same
  world) is written once.
* Key log: with ``pcapng=True`` and ``keylog=``, the key log lines of the captured
  sessions are embedded as a Decryption Secrets Block (pcapng §4.7, secrets type
  ``TLSK``), so Wireshark decrypts with no option. Scapy 2.8 reads DSBs but has no call
  that writes one; the block is built with scapy's own pcapng block builder. With classic
  pcap, give tshark the key log: ``tshark -o tls.keylog_file:KEYLOG -r FILE``.

Reading tips (tshark 4.0): ``-o smtp.decryption:TRUE`` makes Wireshark decode AUTH PLAIN /
LOGIN itself (``smtp.auth.username``, ``smtp.auth.password``); ``smtp.req.command`` holds
only four letters (``STAR`` for STARTTLS), ``smtp.command_line`` the whole line. DNS over
TCP is written as captured (the tap holds the messages the DNS server reported).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..traffic import Address, Connection, Segment, Traffic
from .tlsinspect import KeyLog, inspect_tls, read_keylog, tls_start
from .transcript import distinct_connections

__all__ = ["MSS", "WELL_KNOWN_PORTS", "Frame", "PcapExport", "export_pcap", "plan_frames"]

#: IANA service ports (RFC 5321 §4.5.4.2 ... ): smtp 25, submission 587 (RFC 6409 §3.1),
#: submissions/smtps 465 (RFC 8314 §7.3), pop3 110 (RFC 1939 §3), pop3s 995 (RFC 8314
#: §7.3), domain 53 (RFC 1035 §4.2).
WELL_KNOWN_PORTS: dict[str, int] = {
    "smtp": 25, "submission": 587, "smtps": 465, "submissions": 465,
    "pop3": 110, "pop3s": 995, "dns": 53, "domain": 53, "imap": 143, "imaps": 993,
}
#: Ethernet MTU 1500 minus the IPv4 and TCP headers (RFC 9293 §3.7.1, RFC 894).
MSS = 1460
#: The receive window announced (no window scaling: RFC 7323 is not negotiated).
WINDOW = 65535
#: pcapng Decryption Secrets Block type and the TLS key log secrets type (pcapng §4.7).
_DSB_TYPE, _SECRETS_TLS = 0x0000000A, 0x544C534B


@dataclass(frozen=True)
class Frame:
    """One synthesized packet, before scapy builds it.

    Attributes:
        time: capture time (seconds since the epoch).
        conn_id: the tap connection.
        transport: ``tcp`` or ``udp``.
        src: source (ip, port) as written.
        dst: destination (ip, port) as written.
        flags: TCP flags in scapy notation (``S``, ``SA``, ``A``, ``PA``, ``FA``).
        seq: TCP sequence number.
        ack: TCP acknowledgement number (0 without ``A``).
        payload: the bytes carried.
    """

    time: float
    conn_id: int
    transport: str
    src: Address
    dst: Address
    flags: str = ""
    seq: int = 0
    ack: int = 0
    payload: bytes = b""


@dataclass
class PcapExport:
    """What :func:`export_pcap` wrote.

    Attributes:
        path: the file.
        frames: how many packets.
        connections: how many connections and UDP flows.
        addresses: ``conn id -> (client, server)`` as written in the file.
        keylog_embedded: how many key log lines went into a Decryption Secrets Block.
        pcapng: True for pcapng.
    """

    path: Path
    frames: int
    connections: int
    addresses: dict[int, tuple[Address, Address]] = field(default_factory=dict)
    keylog_embedded: int = 0
    pcapng: bool = False

    def tshark_command(self, keylog: Path | str | None = None) -> str:
        """A command line that reads the file (with the key log, if it is not embedded)."""
        option = f" -o tls.keylog_file:{keylog}" if keylog and not self.keylog_embedded \
            else ""
        return f"tshark -r {self.path}{option}"


def _isn(conn_id: int, salt: int) -> int:
    """A deterministic initial sequence number (RFC 9293 §3.4.1 wants unpredictable ones
    on a real network; a reproducible file is worth more here)."""
    return (conn_id * 0x9E3779B1 + salt * 0x85EBCA6B) & 0xFFFFFFFF


def _addresses(connections: list[Connection], well_known: bool,
               ) -> dict[int, tuple[Address, Address]]:
    used: set[tuple[str, Address, Address]] = set()
    out: dict[int, tuple[Address, Address]] = {}
    for conn in connections:
        server_port = WELL_KNOWN_PORTS.get(conn.service.lower(), conn.server[1]) \
            if well_known else conn.server[1]
        server = (conn.server[0], server_port)
        client = conn.client
        while (conn.transport, client, server) in used:
            port = client[1] + 1 if client[1] < 65535 else 49152
            client = (client[0], port)
        used.add((conn.transport, client, server))
        out[conn.id] = (client, server)
    return out


def _tcp_frames(conn: Connection, segments: list[Segment], client: Address,
                server: Address, mss: int) -> list[Frame]:
    frames: list[Frame] = []
    ends = {"c2s": client, "s2c": server}
    other = {"c2s": "s2c", "s2c": "c2s"}
    # next sequence number each side will send
    nxt = {"c2s": _isn(conn.id, 1), "s2c": _isn(conn.id, 2)}
    clock = min([conn.opened_at, *(s.time for s in segments)])
    last = clock - 0.0003

    def emit(when: float, side: str, flags: str, payload: bytes = b"") -> None:
        nonlocal last
        last = max(last, when)
        ack = nxt[other[side]] if "A" in flags else 0
        frames.append(Frame(last, conn.id, "tcp", ends[side], ends[other[side]], flags,
                            nxt[side], ack, payload))
        nxt[side] = (nxt[side] + len(payload) + (1 if "S" in flags or "F" in flags else 0)) \
            & 0xFFFFFFFF

    emit(clock - 0.0003, "c2s", "S")  # RFC 9293 §3.5: the three-way handshake
    emit(clock - 0.0002, "s2c", "SA")
    emit(clock - 0.0001, "c2s", "A")
    for position, seg in enumerate(segments):
        side, peer = seg.direction, other[seg.direction]
        chunks = [seg.data[i:i + mss] for i in range(0, len(seg.data), mss)]
        for number, chunk in enumerate(chunks, 1):
            emit(seg.time, side, "PA" if number == len(chunks) else "A", chunk)
            if number % 2 == 0 and number != len(chunks):
                emit(seg.time, peer, "A")  # RFC 9293 §3.8.6.3: ACK every second segment
        following = segments[position + 1] if position + 1 < len(segments) else None
        if following is None or following.direction != peer:
            emit(seg.time, peer, "A")
    if conn.closed_at is not None:  # RFC 9293 §3.6: FIN from the closer, FIN back, ACK
        closer = "c2s" if (conn.closed_by or "client") == "client" else "s2c"
        emit(conn.closed_at, closer, "FA")
        emit(conn.closed_at, other[closer], "FA")
        emit(conn.closed_at, closer, "A")
    return frames


def plan_frames(tap: Traffic, *, well_known_ports: bool = True, mss: int = MSS,
                ) -> tuple[list[Frame], dict[int, tuple[Address, Address]]]:
    """Every frame of the capture, in time order, without building packets (pure).

    Returns:
        ``(frames, addresses)``: the frames, and per connection the (client, server)
        addresses written (see the module docstring for the port choice).
    """
    connections = distinct_connections(tap)
    addresses = _addresses(connections, well_known_ports)
    keyed: list[tuple[float, int, Frame]] = []
    for conn in connections:
        segments = tap.segments(conn.id)
        client, server = addresses[conn.id]
        if conn.transport == "udp":
            conn_frames = [Frame(s.time, conn.id, "udp",
                                 client if s.direction == "c2s" else server,
                                 server if s.direction == "c2s" else client,
                                 payload=s.data) for s in segments]
        else:
            conn_frames = _tcp_frames(conn, segments, client, server, mss)
        keyed.extend((f.time, len(keyed), f) for f in conn_frames)
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [f for _, _, f in keyed], addresses


def _mac(ip: str) -> str:
    """A locally administered MAC address derived from an IPv4 address (02:00:a:b:c:d)."""
    try:
        parts = [int(p) for p in ip.split(".")]
    except ValueError:
        parts = [0, 0, 0, 0]
    return "02:00:" + ":".join(f"{p & 0xFF:02x}" for p in parts[:4])


def _captured_secrets(tap: Traffic, keylog: KeyLog) -> str:
    """The key log lines of the sessions whose ClientHello is in the capture."""
    randoms: set[bytes] = set()
    for conn in distinct_connections(tap):
        if conn.transport != "tcp":
            continue
        c2s, s2c = tap.stream(conn.id, "c2s"), tap.stream(conn.id, "s2c")
        start, _ = tls_start(c2s, s2c)
        if start is None:
            continue
        hello = inspect_tls(c2s[start:], b"").client_hello
        if hello is not None:
            randoms.add(hello.random)
    lines = dict.fromkeys(f"{e.label} {e.client_random.hex()} {e.secret.hex()}\n"
                          for e in keylog.entries if e.client_random in randoms)
    return "".join(lines)


def export_pcap(tap: Traffic, path: Path | str, *, keylog: Path | str | KeyLog | None = None,
                pcapng: bool = False, well_known_ports: bool = True) -> PcapExport:
    """Write the capture as a pcap (or pcapng) file that Wireshark and tshark dissect.

    Args:
        tap: the capture.
        path: the file to write.
        keylog: an SSLKEYLOGFILE (path or :class:`KeyLog`); embedded in a Decryption
            Secrets Block when ``pcapng`` is True (only the captured sessions' lines),
            ignored for classic pcap (pass it to ``tshark -o tls.keylog_file:...``).
        pcapng: write pcapng instead of classic pcap.
        well_known_ports: write servers on their service's well-known port (default).

    Returns:
        A :class:`PcapExport` describing the file.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter, PcapWriter

    path = Path(path)
    frames, addresses = plan_frames(tap, well_known_ports=well_known_ports)
    ip_ids: dict[str, int] = {}
    packets = []
    for frame in frames:
        src_ip, dst_ip = frame.src[0], frame.dst[0]
        ip_ids[src_ip] = (ip_ids.get(src_ip, 0) + 1) & 0xFFFF
        layer: object
        if frame.transport == "udp":
            layer = UDP(sport=frame.src[1], dport=frame.dst[1]) / frame.payload
            ip = IP(src=src_ip, dst=dst_ip, id=ip_ids[src_ip], ttl=64)
        else:
            options = [("MSS", MSS)] if "S" in frame.flags else []
            layer = TCP(sport=frame.src[1], dport=frame.dst[1], flags=frame.flags,
                        seq=frame.seq, ack=frame.ack, window=WINDOW, options=options)
            if frame.payload:
                layer = layer / frame.payload
            ip = IP(src=src_ip, dst=dst_ip, id=ip_ids[src_ip], ttl=64, flags="DF")
        packet = Ether(src=_mac(src_ip), dst=_mac(dst_ip)) / ip / layer
        packet.time = frame.time
        packets.append(packet)
    embedded = 0
    secrets = ""
    if pcapng and keylog is not None:
        log = keylog if isinstance(keylog, KeyLog) else read_keylog(keylog)
        secrets = _captured_secrets(tap, log)
        embedded = secrets.count("\n")
    writer = PcapNgWriter(str(path)) if pcapng else PcapWriter(str(path), linktype=1)
    try:
        for number, packet in enumerate(packets):
            writer.write(packet)
            if number == 0 and secrets and isinstance(writer, PcapNgWriter):
                writer.f.write(_dsb(writer, secrets.encode("ascii")))
        if not packets:
            writer.write_header(None)
    finally:
        writer.close()
    return PcapExport(path, len(packets), len(addresses), addresses, embedded, pcapng)


def _dsb(writer: object, secrets: bytes) -> bytes:
    """A Decryption Secrets Block (pcapng §4.7) built by scapy's block builder."""
    body = struct.pack("<II", _SECRETS_TLS, len(secrets)) + secrets
    build = writer.build_block  # type: ignore[attr-defined]
    return bytes(build(struct.pack("<I", _DSB_TYPE), body))
