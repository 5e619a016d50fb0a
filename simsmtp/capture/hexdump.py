"""Hexdumps of captured bytes, in the classic ``hexdump -C`` layout.

::

    00000000  45 48 4c 4f 20 6d 61 69  6c 2e 65 78 61 6d 70 6c  |EHLO mail.exampl|
    00000010  65 2e 63 6f 6d 0d 0a                              |e.com..|
    00000017

:func:`connection_hexdump` dumps one connection segment by segment with a direction marker,
offsets counted per direction as Wireshark's "Follow TCP Stream" hex view counts them.
Unlike ``hexdump -C``, repeated lines are not squeezed into ``*``: every byte is shown.
"""

from __future__ import annotations

from ..traffic import Connection, Segment, Traffic

__all__ = ["connection_hexdump", "hexdump", "hexdump_lines"]


def _printable(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F else "."


def hexdump_lines(data: bytes, offset: int = 0, width: int = 16) -> list[str]:
    """The lines of :func:`hexdump`, without the closing offset line."""
    if width < 1:
        raise ValueError("width must be at least 1")
    lines = []
    half = width // 2 if width >= 2 else width
    for start in range(0, len(data), width):
        chunk = data[start:start + width]
        cells = [f"{b:02x}" for b in chunk] + ["  "] * (width - len(chunk))
        hex_part = " ".join(cells[:half])
        if half < width:
            hex_part += "  " + " ".join(cells[half:])
        ascii_part = "".join(_printable(b) for b in chunk)
        lines.append(f"{offset + start:08x}  {hex_part}  |{ascii_part}|")
    return lines


def hexdump(data: bytes, offset: int = 0, width: int = 16) -> str:
    """A ``hexdump -C`` of ``data``: offset, hex bytes in two halves, ASCII column.

    Args:
        data: the bytes.
        offset: the number printed for the first byte (e.g. a stream offset).
        width: bytes per line (16 as ``hexdump -C``; the hex is split in two halves).

    Returns:
        The lines joined with newlines, ending with the final offset line as
        ``hexdump -C`` does (``00000017``), and a newline. Empty data gives the offset only.
    """
    lines = hexdump_lines(data, offset, width)
    lines.append(f"{offset + len(data):08x}")
    return "\n".join(lines) + "\n"


def _marker(conn: Connection | None, seg: Segment) -> str:
    arrow = "client -> server" if seg.direction == "c2s" else "server -> client"
    where = ""
    if conn is not None:
        src, dst = (conn.client, conn.server) if seg.direction == "c2s" else \
            (conn.server, conn.client)
        where = f" {src[0]}:{src[1]} > {dst[0]}:{dst[1]}"
    return (f"--- segment {seg.index} {seg.direction} ({arrow}){where}, "
            f"{len(seg.data)} bytes at stream offset {seg.offset} ---")


def connection_hexdump(tap: Traffic, conn_id: int, *, width: int = 16,
                       max_bytes: int | None = None) -> str:
    """A hexdump of one connection, segment by segment, each under a direction marker.

    Offsets are per direction (the relative TCP sequence number minus one), so a
    segment's first line starts at its ``offset``.

    Args:
        tap: the capture.
        conn_id: the connection.
        width: bytes per line.
        max_bytes: dump at most this many bytes of each segment (the marker still
            gives the full length; an elision line says how many were left out).
    """
    conn = tap.connection(conn_id)
    out: list[str] = []
    note = tap.left_out(conn_id)
    if note:  # the capture's budget let this connection's first bytes go
        out.append(f"--- {note} ---")
    for seg in tap.segments(conn_id):
        out.append(_marker(conn, seg))
        data = seg.data if max_bytes is None else seg.data[:max_bytes]
        out.extend(hexdump_lines(data, seg.offset, width))
        if len(data) < len(seg.data):
            out.append(f"... {len(seg.data) - len(data)} more bytes")
    return "\n".join(out) + ("\n" if out else "")
