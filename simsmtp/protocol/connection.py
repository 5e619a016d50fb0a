"""What every sans-IO core shares (after h11): the buffers, one event per call, TLS, and the
edges of a state table.

:class:`SansIOConnection` holds the plaintext input, the TLS records not yet decrypted, the
output and the queue of events. ``receive_data`` buffers, ``next_event`` returns one event
(or :data:`~simsmtp.protocol.events.NEED_DATA`), ``data_to_send`` drains the output; a
subclass supplies :meth:`_step` (turn buffered input into the next event) and
:attr:`closed`. The SMTP server and client, the POP3 server and the IMAP server stand on it.

:class:`Edge` is one edge of a state table as data (the POP3 and IMAP cores keep theirs as
tuples of edges; :class:`EdgeTable` answers "where does this lead?" and "what is allowed
here?" from them, and a notebook draws the diagram from the same tuple).
:class:`TableConnection` is the base of such a core: it only declares its table.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from .errors import LocalProtocolError, TLSFailure
from .events import NEED_DATA, ConnectionClosed, ConnectionEvent, NeedData
from .tls import TLSLayer

#: The union of the events a role gives (``ServerEvent``, ``ClientEvent`` ...).
EventT = TypeVar("EventT", bound=ConnectionEvent[Any])


class SansIOConnection(Generic[EventT]):
    """The plumbing shared by :class:`~simsmtp.protocol.server.ServerConnection`,
    :class:`~simsmtp.protocol.client.ClientConnection` and the POP3 and IMAP servers;
    ``EventT`` is the union of the events the role gives."""

    #: The sentinel :meth:`next_event` returns when it needs more input (drivers compare
    #: by identity).
    NEED_DATA: ClassVar[NeedData] = NEED_DATA

    def __init__(self) -> None:
        self._in = bytearray()  # plaintext input not yet processed
        self._cipher = bytearray()  # TLS records not yet fed to the TLS layer
        self._out = bytearray()
        self._events: deque[EventT] = deque()
        self._tls: TLSLayer | None = None
        self._eof = False
        self._closed_reported = False

    @property
    def closed(self) -> bool:
        """True once the connection is over: flush :meth:`data_to_send`, then close."""
        raise NotImplementedError

    @property
    def tls_active(self) -> bool:
        """True once a TLS handshake has completed on this connection."""
        return self._tls is not None and self._tls.handshake_complete

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the wire (ciphertext once TLS is on); ``b""`` means EOF.

        Raises:
            LocalProtocolError: data after EOF (the caller's mistake).
        """
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("receive_data() called with data after EOF")
        if self.closed:
            return  # nothing after 221/421 is ever read
        if self._tls is not None:
            self._cipher += data
        else:
            self._in += data

    def next_event(self) -> EventT | NeedData:
        """The next event, or :data:`NEED_DATA` when more input is needed."""
        while True:
            if self._events:
                return self._events.popleft()
            event = self._step()
            if event is not None:
                return event
            if not self._events:
                return NEED_DATA

    def data_to_send(self) -> bytes:
        """The bytes to write to the wire now (TLS records once TLS is on)."""
        self._pull_tls()
        out = bytes(self._out)
        self._out.clear()
        return out

    #: The role's CLOSED state (a subclass sets it).
    CLOSED_STATE: Any = None

    def _step(self) -> EventT | None:
        """Turn buffered input into the next event (None: nothing yet): TLS records first,
        then, once closed, a single :class:`ConnectionClosed` at EOF."""
        if self._tls is not None and self._cipher and not self.closed:
            event = self._feed_tls()
            if event is not None:
                return event
        if self.closed:
            self._in.clear()
            if self._eof and not self._closed_reported:
                self._closed_reported = True
                closed = ConnectionClosed(reason="connection closed",
                                          state_before=self.CLOSED_STATE,
                                          state_after=self.CLOSED_STATE)
                return cast(EventT, closed)  # every role's union holds ConnectionClosed
            return None
        return self._step_open()

    def _feed_tls(self) -> EventT | None:
        """Decrypt the buffered TLS records; an event if the TLS session says something."""
        raise NotImplementedError

    def _decrypt(self) -> TLSFailure | None:
        """Feed the buffered TLS records to the TLS layer: the plaintext joins the input,
        its own output (handshake, alerts) the output, a close_notify is EOF. Returns the
        failure instead of raising it, for the role to turn into its event."""
        assert self._tls is not None
        data = bytes(self._cipher)
        self._cipher.clear()
        try:
            plaintext = self._tls.receive(data)
        except TLSFailure as exc:
            self._pull_tls()  # the alert, if any
            return exc
        self._pull_tls()
        if self._tls.closed:
            self._eof = True  # close_notify: the peer is done
        self._in += plaintext
        return None

    def _step_open(self) -> EventT | None:
        """The role's own input processing while the connection is open."""
        raise NotImplementedError

    def _pull_tls(self) -> None:
        if self._tls is not None:
            self._out += self._tls.data_to_send()

    def _write(self, data: bytes) -> None:
        """Queue plaintext for the peer, encrypted once TLS is up."""
        if self._tls is not None and self._tls.handshake_complete:
            try:
                self._tls.send(data)
            except (TLSFailure, ssl.SSLError):
                return  # the TLS session is gone; nothing can be sent any more
            self._pull_tls()
        else:
            self._out += data


StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Edge(Generic[StateT]):
    """One edge of a state table.

    Attributes:
        state: where the session is.
        trigger: a command verb (upper case) or a pseudo-event (lower case:
            ``tls-established``, ``peer-closed``, ``too-many-errors`` ...).
        target: where the session goes.
        outcome: what the edge depends on (``"+OK"``/``"-ERR"`` in POP3, ``"OK"``/``"NO"``
            in IMAP), ``""`` when it does not.
        rfc: where the rule comes from.
    """

    state: StateT
    trigger: str
    target: StateT
    outcome: str = ""
    rfc: str = ""


class EdgeTable(Generic[StateT]):
    """Lookups over a tuple of :class:`Edge` (built once per core)."""

    def __init__(self, edges: Iterable[Edge[StateT]]) -> None:
        self.edges = tuple(edges)
        self._to = {(e.state, e.trigger, e.outcome): e.target for e in self.edges}
        #: The command verbs the table knows.
        self.verbs = frozenset(e.trigger for e in self.edges if e.trigger.isupper())

    def target(self, state: StateT, trigger: str, outcome: str = "") -> StateT | None:
        """Where ``trigger`` with ``outcome`` leads from ``state`` (an edge without an
        outcome applies to every outcome); None when no edge says."""
        found = self._to.get((state, trigger, outcome))
        return found if found is not None else self._to.get((state, trigger, ""))

    def allows(self, state: StateT, verb: str) -> bool:
        """Whether some edge starts at ``state`` with ``verb``."""
        return any(e.state is state and e.trigger == verb for e in self.edges)

    def states_allowing(self, verb: str) -> list[StateT]:
        """The states ``verb`` is allowed in, in table order."""
        found: list[StateT] = []
        for e in self.edges:
            if e.trigger == verb and e.state not in found:
                found.append(e.state)
        return found

    def commands(self, state: StateT) -> list[str]:
        """The command verbs allowed in ``state``, in table order."""
        seen: list[str] = []
        for e in self.edges:
            if e.state is state and e.trigger.isupper() and e.trigger not in seen:
                seen.append(e.trigger)
        return seen


class TableConnection(SansIOConnection[EventT], Generic[StateT, EventT]):
    """A core whose state moves only along the edges of its :class:`EdgeTable` (the POP3
    and IMAP servers): a subclass declares :attr:`TABLE` (and :attr:`NO_EDGE_STAYS`), and
    the questions "what is allowed here?" and "where does this lead?" are answered here,
    the same way for every such core."""

    #: The core's state table.
    TABLE: ClassVar[EdgeTable[Any]]
    #: A step with no edge: True, nothing changes; False, a bug (LocalProtocolError).
    NO_EDGE_STAYS: ClassVar[bool] = False

    @classmethod
    def transitions(cls) -> tuple[Edge[Any], ...]:
        """The state machine as data, in table order (for a notebook's state diagram)."""
        return cls.TABLE.edges

    @classmethod
    def allowed_commands(cls, state: Any) -> list[str]:
        """The commands a client may send in ``state``, in table order."""
        return cls.TABLE.commands(state)

    def _next_state(self, state: StateT, trigger: str, outcome: str = "") -> StateT:
        """Where ``trigger`` with ``outcome`` leads from ``state``.

        Raises:
            LocalProtocolError: no edge says, and this core treats that as its own bug.
        """
        target: StateT | None = self.TABLE.target(state, trigger, outcome)
        if target is not None:
            return target
        if self.NO_EDGE_STAYS:
            return state
        raise LocalProtocolError(f"no transition for {trigger!r} in state "
                                 f"{getattr(state, 'name', state)}")
