"""Views of the capture say plainly when its byte budget let older bytes go."""

from __future__ import annotations

from simsmtp.capture.eavesdropper import eavesdrop
from simsmtp.capture.hexdump import connection_hexdump
from simsmtp.capture.transcript import transcript
from simsmtp.net.tap import Tap

C, S = ("127.0.0.1", 40000), ("127.0.0.2", 25)


def _session(tap: Tap, conn: int) -> None:
    tap.open(conn, client=C, server=S, service="smtp")
    tap.data(conn, "s2c", b"220 mx ESMTP\r\n")
    tap.data(conn, "c2s", b"EHLO a\r\n")
    tap.data(conn, "s2c", b"250 mx\r\n")
    tap.data(conn, "c2s", b"QUIT\r\n")
    tap.data(conn, "s2c", b"221 Bye\r\n")


def test_nothing_left_out_says_nothing() -> None:
    tap = Tap()
    _session(tap, 1)
    assert "left out" not in transcript(tap, 1)
    assert "left out" not in connection_hexdump(tap, 1)
    assert not [n for n in eavesdrop(tap).notes if "left out" in n]


def test_transcript_hexdump_and_eavesdropper_say_what_left_the_capture() -> None:
    tap = Tap(max_bytes=24)
    _session(tap, 1)  # 45 bytes: the greeting and EHLO leave the capture
    note = ("22 older bytes of this connection were left out of the capture (it keeps "
            "the newest 24 bytes).")
    assert tap.left_out(1) == note
    assert transcript(tap, 1).startswith(f"(* {note})\n")
    assert connection_hexdump(tap, 1).startswith(f"--- {note} ---\n")
    assert any(note in n for n in eavesdrop(tap, 1).notes)
    assert tap.left_out() in eavesdrop(tap).notes
