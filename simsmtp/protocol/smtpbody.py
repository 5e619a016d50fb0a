"""Reading a message's content off the wire, behind the SMTP server's 354 or BDAT command
(RFC 5321 §4.1.1.4, §4.5.2; RFC 3030 §2); the command dispatcher is
:mod:`simsmtp.protocol.server`.

:class:`DataReader` reads DATA content line by line up to ``<CRLF>.<CRLF>``, the only end of
data, and removes each transparency dot; every other near-terminator (``<LF>.<LF>``,
``<CR>.<CRLF>`` ...) is plain content (the server replaces stray CR/LF afterwards). A line
longer than 1000 octets is kept whole, as Postfix does. Content past the size limit stops
being kept as it arrives (memory stays bounded) and the error is given at the end.

:class:`ChunkReader` takes exactly the octets a BDAT command announced, with no dot handling.
"""

from __future__ import annotations

from dataclasses import dataclass

from .grammar import MAX_TEXT_LINE
from .replies import Reply
from .session import ServerState, Transition


class DataReader:
    """The content after a 354, up to the end of data.

    Args:
        limit: the size limit in octets (0: none).

    Attributes:
        error: the persona key of the error to give at the end of data (``data_too_big``),
            or None.
    """

    __slots__ = ("_lines", "_partial", "_size", "error", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.error: str | None = None
        self._lines: list[bytes] = []
        self._size = 0
        self._partial: bytearray | None = None  # the start of a line over 1000 octets

    def content(self) -> bytes:
        """The message: the lines unstuffed, each ended by CRLF (empty after an error)."""
        lines = self._lines
        return b"\r\n".join(lines) + b"\r\n" if lines else b""

    def read(self, buf: bytearray) -> bool:
        """Take the content ``buf`` holds (what is taken is removed from it); True once
        the end of data was taken (then :meth:`content` and :attr:`error`)."""
        limit = self.limit
        if self._partial is None and self.error is None and buf[:3] != b".\r\n":
            self._take_lines(buf, limit)
        pos = 0
        while True:
            i = buf.find(b"\r\n", pos)
            if i < 0:
                break
            line = bytes(buf[pos:i])
            pos = i + 2
            if self._partial is not None:  # the end of a long line begun in earlier reads
                line, self._partial = bytes(self._partial) + line, None
            elif line == b".":  # <CRLF>.<CRLF>: the only end of data
                del buf[:pos]
                return True
            elif line[:1] == b".":  # RFC 5321 §4.5.2: remove the transparency dot
                line = line[1:]
            if self.error is not None:
                continue  # discard: the error is held until the end of data
            self._size += len(line) + 2
            if limit and self._size > limit:  # RFC 1870 §6, RFC 5321 §4.5.3.1.9
                self.error, self._lines = "data_too_big", []
                continue
            self._lines.append(line)
        del buf[:pos]
        if len(buf) > MAX_TEXT_LINE:
            # A line longer than RFC 5321 §4.5.3.1.6 allows: accepted, as Postfix does (it
            # chops at line_length_limit and joins the pieces again on delivery). Its first
            # part waits in _partial, counted against the size limit, so memory stays
            # bounded by the size limit; a CR that may start the CRLF stays in the buffer.
            take = len(buf) - (1 if buf.endswith(b"\r") else 0)
            piece = bytes(buf[:take])
            del buf[:take]
            if self._partial is None:
                self._partial = bytearray()
                if piece[:1] == b".":  # RFC 5321 §4.5.2, at the start of the line
                    piece = piece[1:]
            if self.error is None:
                self._partial += piece
                if limit and self._size + len(self._partial) + 2 > limit:
                    self.error, self._lines = "data_too_big", []
                    self._partial = bytearray()
        return False

    def _take_lines(self, buf: bytearray, limit: int) -> None:
        """Take every complete content line before the end of data in one go.

        The same outcome as :meth:`read`'s line loop (which then finds the end, or
        keeps the unfinished last line), split in C instead of line by line in Python. Only
        when the lines stay within the size limit: otherwise nothing is taken and the loop
        decides, line by line, where the limit was broken.
        """
        end = buf.find(b"\r\n.\r\n")  # the first "." line after a line start
        stop = end if end >= 0 else buf.rfind(b"\r\n")
        if stop < 0:
            return
        block = bytes(buf[:stop])
        lines = block.split(b"\r\n")
        if block[:1] == b"." or b"\r\n." in block:  # RFC 5321 §4.5.2: transparency dots
            lines = [line[1:] if line[:1] == b"." else line for line in lines]
        size = self._size + sum(map(len, lines)) + 2 * len(lines)
        if limit and size > limit:  # RFC 1870 §6, RFC 5321 §4.5.3.1.9
            return
        self._lines += lines
        self._size = size
        del buf[:stop + 2]



@dataclass
class ChunkReader:
    """A BDAT chunk being read (RFC 3030 §2), and what its end leads to.

    Attributes:
        remaining: octets still to come.
        size: the octets the command announced.
        last: ``BDAT n LAST``.
        line: the command line.
        state_before: the state the command came in.
        store: keep the octets (False: read and discard them, then refuse).
        reply: an error to give once the octets are consumed.
        transition: where the chunk's reply leads (None: refused by the sequence, TLS or
            AUTH checks; the state stays).
    """

    remaining: int
    size: int
    last: bool
    line: bytes
    state_before: ServerState
    store: bool
    reply: Reply | None = None
    transition: Transition[ServerState] | None = None

    def read(self, buf: bytearray, parts: list[bytes]) -> bool:
        """Take this chunk's octets from ``buf`` (appended to ``parts`` when stored); True
        once all have come."""
        take = min(self.remaining, len(buf))
        if take:
            if self.store:
                parts.append(bytes(buf[:take]))
            del buf[:take]
            self.remaining -= take
        return not self.remaining
