"""Scale: one outbound agent delivering M messages to D domains (issue 7, item 5).

The world is built in code: a sending host ``mail.origin.test`` (role ``outbound``) and D
domains ``dNNNN.test``, each with its own MX host ``mx.dNNNN.test`` (role ``mx``, its own
127.0.0.x, STARTTLS offered) and one user. M messages, one recipient each, spread over the
domains in turn, are put in the sender's durable queue; then one queue run delivers them
all through the world's real DNS server (MX and A lookups over UDP) and real SMTP on
loopback, with the world's defaults: opportunistic STARTTLS, Maildir storage with ``fsync``,
trace and capture on.

Each size runs in a fresh process (``python -m benchmarks.scale M D``), so its peak RSS
(``getrusage``) is its own; it prints one JSON object. A queue run still going after
``TIME_LIMIT`` seconds is stopped, and what was delivered by then is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .common import ROOT, Report, Table, fmt, peak_rss_mb, python_argv, rss_mb

#: (messages, domains) of the full run; --quick stops after the second.
SIZES = ((100, 10), (1000, 100), (10000, 1000))
QUICK_SIZES = SIZES[:2]
SENDER_HOST = "mail.origin.test"
SENDER = "sender@origin.test"
#: Seconds one size may deliver before the queue run is stopped (4x the target of 30 s).
TIME_LIMIT = 120.0


def build_world(domains: int) -> Any:
    """A world of one sending host and ``domains`` domains, each with its own MX host."""
    from simsmtp.world.model import Domain, Host, MXRecord, User, World

    world = World(name=f"scale x{domains}", seed=7, epoch=datetime(2025, 3, 10, 9, tzinfo=UTC))
    world.domains["origin.test"] = Domain(
        "origin.test", mx=[MXRecord(10, SENDER_HOST)], users={"sender": User(SENDER)})
    world.hosts[SENDER_HOST] = Host(SENDER_HOST, "origin.test", roles=["outbound"])
    for i in range(domains):
        name = f"d{i:04d}.test"
        mx = f"mx.{name}"
        world.domains[name] = Domain(name, mx=[MXRecord(10, mx)],
                                     users={"user": User(f"user@{name}")})
        world.hosts[mx] = Host(mx, name, roles=["mx"])
    world.check()
    return world


def message(i: int, recipient: str) -> bytes:
    """A small message (about 300 octets)."""
    return (f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: scale {i}\r\n"
            f"Message-ID: <{i}.scale@origin.test>\r\n\r\n" + "Hello.\r\n" * 20).encode()


def run_size(messages: int, domains: int, time_limit: float = TIME_LIMIT) -> dict[str, Any]:
    """Boot, enqueue ``messages``, deliver them all (stop after ``time_limit`` seconds);
    the figures (this process)."""
    rss0 = rss_mb()
    start = time.perf_counter()
    world = build_world(domains)
    net = world.start()
    net.start()
    try:
        boot = time.perf_counter() - start
        queue = net.queues[SENDER_HOST]
        agent = net.agents[SENDER_HOST]
        start = time.perf_counter()
        for i in range(messages):
            rcpt = f"user@d{i % domains:04d}.test"
            queue.enqueue(SENDER, [rcpt], message(i, rcpt), queue_id=world.ids.queue_id(),
                          arrival=world.clock.now())
        enqueue = time.perf_counter() - start
        assert net.loop is not None
        start = time.perf_counter()
        finished, problems = True, 0
        try:
            report = net.loop.run(agent.run_once(), timeout=time_limit)
            problems = len(report.errors) + len(report.deferred) + len(report.bounced)
        except TimeoutError:
            finished = False  # the queue run is cancelled; count what arrived
        deliver = time.perf_counter() - start
        stored = len(world.trace.events("delivery.stored"))
    finally:
        net.stop()
    return {"messages": messages, "domains": domains, "boot_s": boot, "enqueue_s": enqueue,
            "deliver_s": deliver, "rate": stored / deliver if deliver else 0.0,
            "delivered": stored, "finished": finished, "problems": problems,
            "rss_before_mb": rss0, "peak_rss_mb": peak_rss_mb()}


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Run every size in its own process; add the table and the targets to ``report``."""
    say = log if callable(log) else (lambda _text: None)
    sizes: tuple[tuple[int, int], ...] = QUICK_SIZES if quick else SIZES
    if scale != 1.0:
        sizes = tuple((max(1, int(m * scale)), max(1, int(d * scale))) for m, d in sizes)
    table = Table("Scale: one outbound agent, M messages to D domains (real DNS + SMTP)",
                  ["M x D", "boot s", "enqueue s", "deliver s", "msg/s", "µs/msg",
                   "peak RSS MB", "delivered"])
    table.notes += [
        "Each size in a fresh process; a world of D domains, each with its own MX host; "
        "defaults: opportunistic STARTTLS, Maildir with fsync, trace and capture on; one "
        "recipient per message, domains in turn; one queue run delivers everything.",
        "Cost growth: µs per message should stay flat as M and D grow (linear cost).",
    ]
    rows: list[dict[str, Any]] = []
    for messages, domains in sizes:
        argv = python_argv("benchmarks.scale", str(messages), str(domains),
                           "--time-limit", str(TIME_LIMIT))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                                  timeout=TIME_LIMIT + 600)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
        except Exception as exc:
            err = getattr(exc, "stderr", "") or ""
            table.rows.append([f"{messages} x {domains}", "n/a", "n/a", "n/a", "n/a", "n/a",
                               "n/a", f"failed: {str(exc)[:60]} {str(err)[-80:]}"])
            continue
        rows.append(figures)
        say(f"  scale {messages} x {domains}: {figures['deliver_s']:.2f} s, "
            f"{figures['rate']:.0f} msg/s, peak {figures['peak_rss_mb']:.0f} MB")
        table.rows.append([
            f"{messages} x {domains}", fmt(figures["boot_s"]), fmt(figures["enqueue_s"]),
            fmt(figures["deliver_s"]), fmt(figures["rate"]),
            fmt(figures["deliver_s"] / max(1, figures["delivered"]) * 1e6),
            fmt(figures["peak_rss_mb"]),
            f"{figures['delivered']}/{messages}" + (
                "" if figures["finished"] else f" (stopped at {TIME_LIMIT:.0f} s)")])
    report.tables.append(table)
    big = next((r for r in rows if (r["messages"], r["domains"]) == (10000, 1000)), None)
    if big is not None:
        done = big["finished"] and big["delivered"] == big["messages"]
        report.target("scale 10,000 x 1,000: deliver time", big["deliver_s"], "s", "< 30 s",
                      done and big["deliver_s"] < 30)
        report.target("scale 10,000 x 1,000: peak RSS", big["peak_rss_mb"], "MB", "< 400 MB",
                      big["peak_rss_mb"] < 400)
    elif not quick:
        report.target("scale 10,000 x 1,000: deliver time", None, "s", "< 30 s", None)
    moved = [r for r in rows if r["delivered"]]
    if len(moved) >= 2:
        first, last = moved[0], moved[-1]
        growth = ((last["deliver_s"] / last["delivered"])
                  / (first["deliver_s"] / first["delivered"]))
        linear = growth <= 1.5 and len(moved) == len(rows)
        report.target(f"scale cost growth (µs/msg at {last['messages']} x {last['domains']} "
                      f"over {first['messages']} x {first['domains']})", growth, "x",
                      "≈ 1x (linear; ≤ 1.5x)", linear)
    elif len(rows) >= 2:
        report.target("scale cost growth", None, "x", "≈ 1x (linear; ≤ 1.5x)", False)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.scale MESSAGES DOMAINS [--time-limit S]``: one size, JSON on
    stdout."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("messages", type=int)
    parser.add_argument("domains", type=int)
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT)
    args = parser.parse_args(argv)
    json.dump(run_size(args.messages, args.domains, args.time_limit), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
