"""Where the world MX's time goes: the seed world's MX with its work switched off step by
step, against simsmtp's bare protocol stack (issue 7: "where a target is missed, profile
... and fix the cause").

Each variant is ``python -m benchmarks.servers simsmtp`` with options, in its own process;
the load is Postfix's ``smtp-source`` in the modes of :mod:`benchmarks.throughput` that
reuse the connection, so the figures differ by the server's own work only:

1. the seed world's MX as a learner runs it;
2. ``--mailauth off``: no SPF, DKIM or DMARC at the MX;
3. ``--no-trace`` as well: no trace events;
4. ``--no-capture`` as well: no copy of every byte;
5. simsmtp core: the listener and the sans-IO server accepting everything (no world).

The step column is what each switched-off part cost per message (server CPU µs).
"""

from __future__ import annotations

import contextlib
from functools import partial

from .common import Report, ServerProcess, Table, find_program, fmt, python_argv
from .throughput import MODES, WARM_UP, Result, _best, _one, _planned, run_smtp_source

#: (label, what the step switches off, ``benchmarks.servers`` arguments).
VARIANTS = (
    ("seed world MX", "", ("simsmtp",)),
    ("mailauth off", "SPF, DKIM, DMARC", ("simsmtp", "--mailauth", "off")),
    ("+ trace off", "the trace", ("simsmtp", "--mailauth", "off", "--no-trace")),
    ("+ capture off", "the capture", ("simsmtp", "--mailauth", "off", "--no-trace",
                                      "--no-capture")),
    ("simsmtp core", "the world (handler, Received, store)", ("core",)),
)
#: The modes measured (both reuse the connection: no connect cost in the figures), with
#: their short names for the columns.
BREAKDOWN_MODES = (MODES[0], MODES[2])
SHORT = {MODES[0].label: "1 session", MODES[2].label: "10 sessions"}
#: Messages per run at most (then sized to about ``SECONDS`` by a probe), and repeats.
FULL, QUICK = (4000, 2), (1200, 1)
SECONDS = 3.0


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Measure every variant; add the table to ``report``."""
    say = log if callable(log) else (lambda _text: None)
    most, repeats = QUICK if quick else FULL
    most = max(10, int(most * scale))
    table = Table("Where the world MX's time goes (plaintext; server CPU µs per message)",
                  ["server", "switched off",
                   *(f"msg/s, {SHORT[m.label]}" for m in BREAKDOWN_MODES),
                   *(f"CPU µs/msg, {SHORT[m.label]}" for m in BREAKDOWN_MODES),
                   *(f"step µs/msg, {SHORT[m.label]}" for m in BREAKDOWN_MODES)])
    table.notes += [
        "Each row switches off one more part of the seed world's MX (memory storage); "
        "step: the CPU per message that part cost (the row above minus this row).",
        f"Load: Postfix smtp-source, 1024-octet messages, 1 session or 10 parallel sessions, "
        f"each reusing its connection; runs of about {SECONDS:g} s, best of {repeats}; CPU "
        "from /proc/<pid>/stat of the server's process.",
    ]
    source = find_program("smtp-source")
    if source is None:
        table.notes.append("smtp-source is not installed (Debian package postfix)")
        report.tables.append(table)
        return
    with contextlib.ExitStack() as stack:
        servers: dict[str, ServerProcess | None] = {}
        for label, _off, args in VARIANTS:
            try:
                server = stack.enter_context(ServerProcess(python_argv("benchmarks.servers",
                                                                       *args)))
            except Exception as exc:  # a variant that cannot start is a row of n/a
                say(f"  {label} did not start: {exc}")
                servers[label] = None
                continue
            assert server.address is not None
            run_smtp_source(source, server.address, MODES[0], WARM_UP)
            servers[label] = server
        best: dict[tuple[str, str], Result] = {}
        for mode in BREAKDOWN_MODES:
            results: dict[str, list[Result]] = {label: [] for label in servers}
            planned: dict[str, int] = {}
            for _ in range(repeats):
                for label, server in servers.items():  # taking turns
                    if server is None or server.address is None:
                        continue
                    run = partial(run_smtp_source, source, server.address, mode)
                    if label not in planned:
                        probe = max(10, most // 20)
                        planned[label] = _planned(_one(server, partial(run, probe), probe),
                                                  most, SECONDS)
                    result = _one(server, partial(run, planned[label]), planned[label])
                    results[label].append(result)
                    say(f"  {mode.label:38} {label:14} {fmt(result.rate, 'msg/s'):>12} "
                        f"{fmt(result.cpu_us, 'µs/msg'):>12} {result.error}")
            for label, rs in results.items():
                best[label, mode.label] = _best(rs)
    previous: dict[str, float | None] = {m.label: None for m in BREAKDOWN_MODES}
    for label, off, _args in VARIANTS:
        rows = [best.get((label, m.label), Result(error="not run")) for m in BREAKDOWN_MODES]
        steps = []
        for mode, result in zip(BREAKDOWN_MODES, rows, strict=True):
            before = previous[mode.label]
            steps.append(None if before is None or result.cpu_us is None
                         else before - result.cpu_us)
            previous[mode.label] = result.cpu_us
        table.rows.append([label, off or "nothing", *(fmt(r.rate) for r in rows),
                           *(fmt(r.cpu_us) for r in rows), *(fmt(s) for s in steps)])
    report.tables.append(table)
