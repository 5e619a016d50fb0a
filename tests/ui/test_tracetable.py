"""The trace table: filters, summaries, secrets, and the widget's controls."""

from __future__ import annotations

from simsmtp.trace import Trace
from simsmtp.ui.tracetable import TraceTable, summarize, trace_rows, trace_table
from simsmtp.world import World


def test_filters_by_host_kind_text_and_connection(journey_world: World) -> None:
    pop3 = trace_rows(journey_world, host="mail.anotherdomain.org", kind="pop3")
    assert pop3 and {r.kind for r in pop3} <= {"pop3.command", "pop3.reply", "pop3.closed"}
    assert {r.host for r in pop3} == {"mail.anotherdomain.org"}
    retr = trace_rows(journey_world, kind="pop3", contains="retr")
    assert [r.summary.split("C: ")[1] for r in retr] == ["RETR 1"]
    several = trace_rows(journey_world, kind=["dns.lookup", "delivery.ok"])
    assert [r.kind for r in several] == ["dns.lookup", "dns.lookup", "delivery.ok"]
    conn = trace_rows(journey_world, kind="smtp")[0]
    first_conn = int(conn.summary.split("#")[1].split("]")[0])
    assert all(f"#{first_conn}]" in r.summary
               for r in trace_rows(journey_world, kind="smtp", conn=first_conn))
    late = trace_rows(journey_world, since=len(journey_world.trace) - 1)
    assert len(late) == 1


def test_rows_show_world_time_and_state_changes(journey_world: World) -> None:
    rows = trace_rows(journey_world, host="mail.anotherdomain.org", kind="smtp.command")
    mail = next(r for r in rows if "MAIL FROM" in r.summary)
    assert mail.time == "09:00:00"
    assert mail.summary.endswith("(GREETED → MAIL)")
    assert "[TLS]" in mail.summary


def test_secrets_and_ports_are_hidden() -> None:
    t = Trace()
    t.record("smtp.command", "mail.example.com", conn=1, service="submission",
             line="AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=")
    t.record("pop3.command", "mx", conn=2, service="pop3", line="PASS builder")
    t.record("user.login", "mx", password="builder")
    t.record("delivery.connect_failed", "mail.example.com", mx="mx", ip="127.0.0.3",
             port=40123, reason="Connect call failed ('127.0.0.3', 40123)")
    text = " ".join(summarize(e)[0] for e in t.events())
    assert "AGFsaWNl" not in text and "builder" not in text
    assert "AUTH PLAIN ***" in text and "PASS ***" in text and "password=***" in text
    assert "40123" not in text and "('127.0.0.3', <port>)" in text


def test_static_table_has_html_and_text(journey_world: World) -> None:
    table = trace_table(journey_world, kind="dns.lookup")
    assert "<table" in table._repr_html_()
    assert repr(table).splitlines()[0].split() == ["#", "time", "host", "kind",
                                                   "what", "happened"]
    assert len(repr(table).splitlines()) == 2 + 2
    limited = trace_table(journey_world, limit=3)
    assert "more rows (narrow the filters)" in repr(limited)


def test_the_widget_filters_as_the_learner_clicks(journey_world: World) -> None:
    table = TraceTable(journey_world)
    everything = len(table.rows)
    assert everything == len(journey_world.trace)
    table.host_filter.value = "mail.anotherdomain.org"
    table.kind_filter.value = "pop3"
    assert table.rows and all(r.kind.startswith("pop3.") for r in table.rows)
    table.text_filter.value = "RETR"
    assert [r.summary.split("C: ")[-1] for r in table.rows if "C: " in r.summary] == ["RETR 1"]
    assert "RETR 1" in table.table.value and "1 event matches" in \
        table.count.value
    assert repr(table) == ("TraceTable(host='mail.anotherdomain.org', kind='pop3', "
                           "contains='RETR', 1 event)")
    assert "RETR 1" in table.text()


def test_refresh_picks_up_new_events() -> None:
    world = World.seed_world()
    table = TraceTable(world)
    assert table.rows == [] and ("mail.example.com", "mail.example.com") not in \
        table.host_filter.options
    world.trace.record("host.down", "mail.example.com")
    table.refresh_button.click()
    assert [r.kind for r in table.rows] == ["host.down"]
    assert ("mail.example.com", "mail.example.com") in table.host_filter.options


def test_delivery_events_read_as_words() -> None:
    trace = Trace()
    trace.record("delivery.stored", host="mail.example.com", recipient="alice@example.com",
                 sender="", bounce=True)
    trace.record("delivery.dsn", host="mail.example.com", queue_id="ABC", sender="alice@x",
                 recipients=["nobody@y"], size=2755)
    trace.record("delivery.route", host="mail.example.com", domain="y", route="deliver",
                 targets=["10 mx.y"], status="", reason="Lowest first.")
    trace.record("queue.odd", host="mail.example.com", sender="", note="")
    stored, dsn, route, odd = (summarize(e)[0] for e in trace.events())
    assert stored.startswith("stored a bounce in alice@example.com's mailbox")
    assert "bounce=True" not in stored and "sender=" not in stored
    assert dsn == "queue id ABC: sends a bounce (a DSN, 2755 octets) to <alice@x> about nobody@y"
    assert route == "route to y: deliver via 10 mx.y. Lowest first."
    assert odd == "sender=<>"  # the null sender, and no empty field


def test_one_event_matches(journey_world: World) -> None:
    table = TraceTable(journey_world, kind="pop3", contains="RETR")
    assert "1 event matches" in table.count.value
