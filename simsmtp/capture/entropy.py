"""Byte entropy of captured segments: how plaintext and ciphertext can be told apart.

Shannon entropy H = -sum p(b) log2 p(b) over the byte values of a segment, in bits per
byte (0 for one repeated byte, 8 at most). SMTP text uses a few dozen characters, so its
lines stay near 4-5 bits; TLS ciphertext looks uniformly random and comes close to the
most a segment of its length can reach (``log2(n)`` for ``n`` < 256 bytes), which is why
:func:`entropy_table` also gives that bound.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..traffic import Traffic
from .tlsinspect import tls_start

__all__ = ["EntropyRow", "entropy_table", "max_entropy", "shannon_entropy"]


def shannon_entropy(data: bytes) -> float:
    """Shannon entropy of ``data`` in bits per byte (0.0 for empty data)."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(count / total * math.log2(count / total) for count in Counter(data).values())


def max_entropy(length: int) -> float:
    """The largest entropy ``length`` bytes can have: ``log2(min(length, 256))``."""
    return math.log2(min(length, 256)) if length > 0 else 0.0


@dataclass(frozen=True)
class EntropyRow:
    """One segment of :func:`entropy_table`.

    Attributes:
        index: the segment's index in the tap.
        direction: ``c2s`` or ``s2c``.
        length: its size in bytes.
        entropy: Shannon entropy in bits per byte.
        kind: ``plaintext`` or ``tls`` (the segment starts at or after where TLS began
            in its direction).
        ceiling: :func:`max_entropy` of its length, for charts.
    """

    index: int
    direction: str
    length: int
    entropy: float
    kind: str
    ceiling: float


def entropy_table(tap: Traffic, conn_id: int) -> list[EntropyRow]:
    """The entropy of every segment of one connection, in wire order.

    A segment is ``tls`` when its first byte is at or after the offset where TLS started in
    its direction (see :func:`~simsmtp.capture.tlsinspect.tls_start`), else ``plaintext``.
    """
    segments = tap.segments(conn_id)
    c2s, s2c = tap.stream(conn_id, "c2s"), tap.stream(conn_id, "s2c")
    conn = tap.connection(conn_id)
    starts = {"c2s": None, "s2c": None} if conn is not None and conn.transport == "udp" \
        else dict(zip(("c2s", "s2c"), tls_start(c2s, s2c), strict=True))
    rows = []
    for seg in segments:
        start = starts[seg.direction]
        kind = "tls" if start is not None and seg.offset >= start else "plaintext"
        rows.append(EntropyRow(seg.index, seg.direction, len(seg.data),
                               shannon_entropy(seg.data), kind, max_entropy(len(seg.data))))
    return rows
