"""The seed delivery end to end, per message (issue 7, item 3).

The seed world boots as a learner runs it (Maildir storage with ``fsync``, trace and capture
on). One ``smtplib`` session submits to mail.example.com on port 587 (STARTTLS, then AUTH as
Alice) and stays open; each message is timed from the moment ``sendmail`` starts until the
``delivery.stored`` trace event of Bob's mailbox on mail.anotherdomain.org, so each latency
covers: submission and its queue file (``fsync``), the outbound agent's DNS MX and A lookups,
a new SMTP connection to the MX with STARTTLS, and the Maildir delivery (``fsync``).
Messages go one at a time. Median and p99 are printed.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time

from .common import Report, Table, fmt, median, percentile

FULL = 200
QUICK = 50
#: Seconds one message may take before the measurement gives up.
MESSAGE_TIMEOUT = 10.0


def run(messages: int) -> list[float]:
    """Latencies in seconds of ``messages`` seed deliveries, one after another."""
    from simsmtp.world import World
    from simsmtp.world.scenario import SEED_RECIPIENT, SEED_SENDER, seed_message

    world = World.seed_world()
    stored = threading.Semaphore(0)
    stamps: list[float] = []

    def on_event(event: object) -> None:
        if getattr(event, "kind", "") == "delivery.stored" and \
                getattr(event, "data", {}).get("recipient") == SEED_RECIPIENT:
            stamps.append(getattr(event, "time", 0.0))  # time.monotonic() of the record
            stored.release()

    world.trace.subscribe(on_event)
    latencies: list[float] = []
    with world.start() as net:
        ip, port = net.address("mail.example.com", 587)
        context = ssl.create_default_context(cafile=str(net.ca_file))
        client = smtplib.SMTP(ip, port, local_hostname="alice-laptop", timeout=30)
        try:
            client.starttls(context=context)
            client.login(SEED_SENDER, "wonderland")
            for _ in range(messages):
                content = seed_message(world)
                start = time.monotonic()
                client.sendmail(SEED_SENDER, [SEED_RECIPIENT], content)
                if not stored.acquire(timeout=MESSAGE_TIMEOUT):
                    raise TimeoutError("a seed message was not delivered within "
                                       f"{MESSAGE_TIMEOUT:.0f} s")
                latencies.append(stamps[-1] - start)
        finally:
            client.quit()
    return latencies


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Measure and add the table to ``report``."""
    say = log if callable(log) else (lambda _text: None)
    messages = max(3, int((QUICK if quick else FULL) * scale))
    table = Table("Seed delivery end to end (submission 587 -> queue -> DNS -> SMTP "
                  "STARTTLS -> Maildir)", ["messages", "median ms", "p99 ms", "min ms",
                                            "max ms", "messages/s (one at a time)"])
    table.notes.append("From smtplib.sendmail on an open, authenticated submission session "
                       "to Bob's delivery.stored trace event; Maildir and queue files "
                       "fsync'ed; a new SMTP connection with STARTTLS per message.")
    try:
        latencies = run(messages)
    except Exception as exc:
        table.notes.append(f"failed: {type(exc).__name__}: {exc}")
        report.tables.append(table)
        return
    ms = [x * 1000 for x in latencies]
    say(f"  seed delivery: median {median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
    table.rows.append([str(len(ms)), fmt(median(ms)), fmt(percentile(ms, 99)), fmt(min(ms)),
                       fmt(max(ms)), fmt(1000 / (sum(ms) / len(ms)))])
    report.tables.append(table)
