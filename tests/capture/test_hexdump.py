"""Hexdumps in the ``hexdump -C`` layout, and per-connection dumps with direction markers."""

from __future__ import annotations

import subprocess

import pytest

from simsmtp.capture.hexdump import connection_hexdump, hexdump, hexdump_lines
from tests.capture._scripted import Wire, new_tap
from tests.conftest import require_program


def test_classic_layout() -> None:
    assert hexdump(b"EHLO mail.example.com\r\n") == (
        "00000000  45 48 4c 4f 20 6d 61 69  6c 2e 65 78 61 6d 70 6c  |EHLO mail.exampl|\n"
        "00000010  65 2e 63 6f 6d 0d 0a                              |e.com..|\n"
        "00000017\n")


def test_offset_width_and_empty() -> None:
    assert hexdump(b"", offset=0x20) == "00000020\n"
    assert hexdump_lines(b"\x16\x03\x01\x02\x00", offset=0x100, width=4) == [
        "00000100  16 03  01 02  |....|", "00000104  00            |.|"]
    with pytest.raises(ValueError):
        hexdump(b"x", width=0)


def test_same_as_the_real_hexdump_program() -> None:
    program = require_program("hexdump", "bsdextrautils")
    data = bytes(range(0x100)) + b"QUIT\r\n"  # no two identical lines (hexdump -C squeezes)
    real = subprocess.run([program, "-C"], input=data, capture_output=True, check=True,
                          timeout=10).stdout.decode()
    assert hexdump(data) == real


def test_connection_hexdump_marks_direction_and_counts_offsets_per_direction() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.s(b"220 mx\r\n")
    wire.c(b"EHLO x\r\n")
    wire.s(b"250 ok\r\n")
    text = connection_hexdump(tap, wire.id).splitlines()
    assert text[0] == ("--- segment 0 s2c (server -> client) 127.0.0.3:42525 > "
                       "127.0.0.2:40001, 8 bytes at stream offset 0 ---")
    assert text[1].startswith("00000000  32 32 30 20 6d 78 0d 0a")
    assert text[2].startswith("--- segment 1 c2s (client -> server) 127.0.0.2:40001 > ")
    assert text[3].startswith("00000000  45 48 4c 4f")
    assert text[4].endswith("8 bytes at stream offset 8 ---")
    assert text[5].startswith("00000008  32 35 30 20")  # the server's second segment


def test_connection_hexdump_elides_long_segments() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.c(b"A" * 100)
    lines = connection_hexdump(tap, wire.id, max_bytes=32).splitlines()
    assert lines[0].endswith("100 bytes at stream offset 0 ---")
    assert len(lines) == 4 and lines[-1] == "... 68 more bytes"
    assert connection_hexdump(tap, 999) == ""
