"""Server throughput: simsmtp's MX against aiosmtpd and Postfix's smtp-sink (issue 7, item 1).

Three servers, each in its own process, all running during the whole measurement:

* **simsmtp**: the seed world booted with memory storage (capture and trace on, as a
  learner gets it); its MX mail.anotherdomain.org stores every message in Bob's mailbox.
* **aiosmtpd**: a handler that only accepts (``250``), STARTTLS with a certificate of the
  same kind (the world CA's).
* **smtp-sink**: Postfix's test server; it has no STARTTLS.

Plaintext load comes from Postfix's ``smtp-source`` (C, no PIPELINING); STARTTLS load from
:mod:`benchmarks.loadclient` (blocking sockets + ``ssl``, the same for every server, in its own
process), which speaks like smtp-source. Three modes: 1 session reusing its connection
(``-d``), 1 session with a connection per message, 10 parallel sessions each reusing its
connection (``-s 10 -d``). Every run is bounded in time: a short probe run sizes it to
about ``Sizes.seconds`` (never more than the configured count). Each figure is the best of
``repeats`` runs, the servers taking turns, so a burst of load from elsewhere on the machine
hurts all of them alike. Server CPU
per message comes from ``/proc/<pid>/stat`` of the server's process: it shows the cost even
where the load generator, not the server, sets the pace.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .common import (
    ROOT,
    Report,
    ServerProcess,
    Table,
    find_program,
    fmt,
    free_port,
    python_argv,
)
from .servers import BIND, RECIPIENT, SENDER, smtp_sink_argv

#: Body octets per message (smtp-source ``-l``; the load client the same).
MESSAGE_SIZE = 1024
#: Messages each server gets before the timed runs (lazy imports, first-use caches).
WARM_UP = 40
#: Seconds one run may take before it is stopped and counted as failed.
RUN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Mode:
    """How the load is offered."""

    label: str
    sessions: int
    reuse: bool


MODES = (Mode("1 session, connection reused", 1, True),
         Mode("1 session, a connection per message", 1, False),
         Mode("10 parallel sessions, each reusing", 10, True))
SERVERS = ("simsmtp", "simsmtp core", "aiosmtpd", "smtp-sink")
#: ``python -m benchmarks.servers <kind>`` of each Python server.
KINDS = {"simsmtp": "simsmtp", "simsmtp core": "core", "aiosmtpd": "aiosmtpd"}


@dataclass(frozen=True)
class Sizes:
    """Messages per run: at most these (plaintext and STARTTLS per mode, ``MODES`` order),
    and fewer where a short probe run says the run would last over ``seconds``; repeats."""

    plain: tuple[int, int, int] = (3000, 1500, 5000)
    tls: tuple[int, int, int] = (2000, 300, 3000)
    repeats: int = 2
    seconds: float = 4.0

    def scaled(self, factor: float) -> Sizes:
        """Every count times ``factor`` (at least 10 per run: 10 parallel sessions)."""
        return Sizes(tuple(max(10, int(n * factor)) for n in self.plain),  # type: ignore[arg-type]
                     tuple(max(10, int(n * factor)) for n in self.tls),  # type: ignore[arg-type]
                     self.repeats, self.seconds)


FULL = Sizes()
QUICK = Sizes((800, 400, 1500), (500, 80, 800), 1, 2.0)


@dataclass
class Result:
    """One run: the rate (messages per second), the server's CPU per message, an error."""

    rate: float | None = None
    cpu_us: float | None = None
    error: str = ""


def run_smtp_source(program: str, address: tuple[str, int], mode: Mode,
                    messages: int) -> tuple[int, str]:
    """Run smtp-source; (messages sent, error text)."""
    argv = [program, "-s", str(mode.sessions), "-m", str(messages), "-l", str(MESSAGE_SIZE),
            "-f", SENDER, "-t", RECIPIENT, "-M", "loadclient.example"]
    if mode.reuse:
        argv.append("-d")
    argv.append(f"{address[0]}:{address[1]}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 0, f"smtp-source took over {RUN_TIMEOUT:.0f} s"
    if done.returncode != 0:
        return 0, (done.stderr.strip() or f"smtp-source exited {done.returncode}")[-200:]
    return messages, ""


def run_load_client(address: tuple[str, int], mode: Mode, messages: int,
                    tls: bool) -> tuple[int, str]:
    """Run the STARTTLS load client in its own process; (messages sent, error text)."""
    argv = python_argv("benchmarks.loadclient", address[0], str(address[1]),
                       "--messages", str(messages), "--sessions", str(mode.sessions),
                       "--size", str(MESSAGE_SIZE), "--time-limit", str(RUN_TIMEOUT))
    if mode.reuse:
        argv.append("--reuse")
    if tls:
        argv.append("--tls")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                              timeout=RUN_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        return 0, "the load client did not finish"
    if done.returncode != 0:
        return 0, (done.stderr.strip() or f"load client exited {done.returncode}")[-200:]
    figures = json.loads(done.stdout)
    if figures["errors"]:
        return int(figures["messages"]), str(figures["error"])[:200]
    return int(figures["messages"]), ""


def _one(server: ServerProcess, run: Callable[[], tuple[int, str]], messages: int) -> Result:
    cpu0 = server.cpu()
    start = time.perf_counter()
    sent, error = run()
    seconds = time.perf_counter() - start
    cpu = server.cpu() - cpu0
    if error or not sent:
        return Result(error=error or "nothing sent")
    return Result(sent / seconds, cpu / sent * 1e6)


def _planned(probe: Result, most: int, seconds: float) -> int:
    """Messages for a run of about ``seconds`` at the probe's rate (at most ``most``)."""
    if probe.rate is None:
        return max(10, most // 20)
    return max(10, min(most, int(probe.rate * seconds)))


def _best(results: list[Result]) -> Result:
    good = [r for r in results if r.rate is not None]
    if not good:
        return results[0] if results else Result(error="not run")
    best = max(good, key=lambda r: r.rate or 0.0)
    cpus = sorted(r.cpu_us for r in good if r.cpu_us is not None)
    return Result(best.rate, cpus[len(cpus) // 2] if cpus else None)


def _ratio(a: Result, b: Result) -> float | None:
    if a.rate is None or b.rate is None or not b.rate:
        return None
    return a.rate / b.rate


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Run the whole matrix and add its table and targets to ``report``."""
    sizes = (QUICK if quick else FULL).scaled(scale) if scale != 1.0 else \
        (QUICK if quick else FULL)
    say = log if callable(log) else (lambda _text: None)
    source = find_program("smtp-source")
    sink = find_program("smtp-sink")
    table = Table("Server throughput (messages/s; server CPU µs per message)",
                  ["load", "mode", *SERVERS, "simsmtp / aiosmtpd", "core / aiosmtpd",
                   "simsmtp / smtp-sink", *(f"CPU µs/msg {n}" for n in SERVERS)])
    table.notes += [
        f"Messages of {MESSAGE_SIZE} body octets, one recipient; runs of about "
        f"{sizes.seconds:g} s (sized by a probe run); best of {sizes.repeats} "
        "run(s), the servers taking turns; CPU: the median of the runs, read from "
        "/proc/<pid>/stat of each server's own process.",
        "plaintext: Postfix smtp-source (no PIPELINING). STARTTLS: benchmarks/loadclient.py "
        "(blocking sockets + ssl, a thread per session, speaks like smtp-source), the same "
        "for every server; smtp-sink has no STARTTLS.",
        "simsmtp: the seed world's MX with memory storage, capture and trace on (as a "
        "learner runs it: SPF/DKIM/DMARC checks on every message, their DNS answers kept "
        "by the MX while the world's DNS does not change, Received header, store); "
        "simsmtp core: "
        "simsmtp's listener and sans-IO server with a handler that only accepts (no world), "
        "the like of aiosmtpd: a handler that only accepts.",
    ]
    with contextlib.ExitStack() as stack:
        servers: dict[str, ServerProcess | None] = {}
        for name in SERVERS:
            try:
                if name == "smtp-sink":
                    if sink is None:
                        servers[name] = None
                        continue
                    port = free_port(BIND)
                    process = ServerProcess(smtp_sink_argv(sink, BIND, port),
                                            address=(BIND, port))
                else:
                    process = ServerProcess(python_argv("benchmarks.servers", KINDS[name]))
                servers[name] = stack.enter_context(process)
            except Exception as exc:  # a server that cannot start is a row of n/a
                say(f"  {name} did not start: {exc}")
                servers[name] = None
        for name, server in servers.items():  # first connections import lazily: untimed
            if server is None or server.address is None:
                continue
            if source is not None:
                run_smtp_source(source, server.address, MODES[0], WARM_UP)
            if name != "smtp-sink":
                run_load_client(server.address, MODES[1], WARM_UP // 4, True)
        for tls in (False, True):
            load = "STARTTLS" if tls else "plaintext"
            counts = sizes.tls if tls else sizes.plain
            for mode, most in zip(MODES, counts, strict=True):
                results: dict[str, list[Result]] = {name: [] for name in SERVERS}
                planned: dict[str, int] = {}
                for _ in range(sizes.repeats):
                    for name in SERVERS:
                        server = servers[name]
                        if server is None or (tls and name == "smtp-sink"):
                            continue
                        if not tls and source is None:
                            results[name].append(Result(error="smtp-source not installed"))
                            continue
                        address = server.address
                        assert address is not None

                        def runner(count: int, a: tuple[str, int] = address, m: Mode = mode,
                                   t: bool = tls) -> Callable[[], tuple[int, str]]:
                            if t:
                                return partial(run_load_client, a, m, count, True)
                            assert source is not None
                            return partial(run_smtp_source, source, a, m, count)

                        if name not in planned:  # bounded in time: size it by a short run
                            probe = max(10, most // 20)
                            first = _one(server, runner(probe), probe)
                            planned[name] = _planned(first, most, sizes.seconds)
                        messages = planned[name]
                        result = _one(server, runner(messages), messages)
                        results[name].append(result)
                        say(f"  {load:9} {mode.label:38} {name:9} "
                            f"{fmt(result.rate, 'msg/s'):>12} {result.error}")
                best = {name: _best(rs) for name, rs in results.items()}
                vs_aiosmtpd = _ratio(best["simsmtp"], best["aiosmtpd"])
                core_vs_aiosmtpd = _ratio(best["simsmtp core"], best["aiosmtpd"])
                vs_sink = _ratio(best["simsmtp"], best["smtp-sink"])
                table.rows.append([
                    load, mode.label,
                    *(_cell(best[name], tls and name == "smtp-sink") for name in SERVERS),
                    fmt(vs_aiosmtpd, "x"), fmt(core_vs_aiosmtpd, "x"), fmt(vs_sink, "x"),
                    *(fmt(best[name].cpu_us) for name in SERVERS)])
                report.target(f"server {load}, {mode.label}: simsmtp / aiosmtpd",
                              vs_aiosmtpd, "x", "≥ 2x",
                              vs_aiosmtpd is not None and vs_aiosmtpd >= 2.0)
                if mode.reuse and mode.sessions == 1 and not tls:
                    report.target(f"server {load}, {mode.label}: simsmtp / smtp-sink",
                                  vs_sink, "x", "≥ 0.75x",
                                  vs_sink is not None and vs_sink >= 0.75)
                errors = {n: r.error for n, r in best.items() if r.error and r.rate is None
                          and not (tls and n == "smtp-sink")}
                for name, error in errors.items():
                    table.notes.append(f"{load}, {mode.label}, {name}: {error}")
    report.tables.append(table)


def _cell(result: Result, unsupported: bool) -> str:
    if unsupported:
        return "no STARTTLS"
    return fmt(result.rate)


if __name__ == "__main__":
    r = Report()
    measure(r, quick="--quick" in sys.argv, log=print)
    print(r.markdown())
