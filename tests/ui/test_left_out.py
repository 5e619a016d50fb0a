"""Views that read the trace say plainly when its window left older events out."""

from __future__ import annotations

from simsmtp.trace import Trace
from simsmtp.ui.base import left_out
from simsmtp.ui.journey import journey, journey_text
from simsmtp.ui.timeline import retry_text
from simsmtp.ui.tracetable import trace_table

NOTE = "older events were left out"


def _busy(window: int | None) -> Trace:
    trace = Trace(window=window)
    for i in range(30):
        trace.record("smtp.command", "mx", conn=i, service="smtp", line="NOOP",
                     state_before="GREETED", state_after="GREETED")
    return trace


def test_a_full_trace_says_nothing() -> None:
    trace = _busy(None)
    assert left_out(trace) == ""
    assert NOTE not in str(trace_table(trace)) and NOTE not in journey_text(trace)
    assert NOTE not in retry_text(trace)


def test_every_view_says_how_many_events_were_left_out() -> None:
    trace = _busy(10)
    assert left_out(trace) == ("20 older events were left out (the trace keeps the newest "
                               "10 in memory).")
    table = trace_table(trace)
    assert str(table).startswith("20 older events were left out")
    assert "20 older events were left out" in table._repr_html_()
    assert journey(trace).left_out.startswith("20 older") and \
        journey_text(trace).startswith("20 older")
    assert retry_text(trace).startswith("20 older")


def test_a_view_from_a_position_counts_only_what_it_misses() -> None:
    trace = _busy(10)
    assert left_out(trace, since=15).startswith("5 older")
    assert left_out(trace, since=20) == "" and NOTE not in str(trace_table(trace, since=25))
