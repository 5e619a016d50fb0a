"""``python -m benchmarks``: every figure of issue 7, with the ratios, from one run.

::

    python -m benchmarks                 # everything (about 2-3 minutes on 2 cores)
    python -m benchmarks --quick         # smaller counts; scale stops at 1,000 x 100
    python -m benchmarks --only server,client --json figures.json
    python -m benchmarks --only soak     # a world served for two minutes (not in "all")

Sections, in order: ``boot`` (import, boot, stop, RSS: :mod:`benchmarks.boot`), ``server``
(:mod:`benchmarks.throughput`), ``breakdown`` (what the world MX's parts cost:
:mod:`benchmarks.breakdown`), ``client`` (:mod:`benchmarks.client`), ``latency``
(:mod:`benchmarks.latency`), ``scale`` (:mod:`benchmarks.scale`), ``notebooks``
(:mod:`benchmarks.notebooks`); on request only, ``soak`` (memory and nothing lost under
steady mail, with a restart: :mod:`benchmarks.soak`). The tables go to stdout in Markdown
(the README's Performance section is a copy), progress to stderr. Nothing here asserts a
timing: missed targets are reported, and the exit status is 0 unless the command itself
broke.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from . import breakdown, client, latency, notebooks, scale, soak, throughput
from .common import ROOT, Report, Table, fmt, machine, median, python_argv

SECTIONS = ("boot", "server", "breakdown", "client", "latency", "scale", "notebooks")
#: Sections run only when named in --only (they take minutes by design).
ON_REQUEST = ("soak",)

#: Runs of each boot figure (benchmarks.boot's own defaults are 20 and 5).
BOOT_RUNS = {False: 20, True: 5}

_BOOT_SNIPPET = """
import json, sys
from benchmarks.boot import time_boots, time_import, world_rss
runs = int(sys.argv[1])
first, each = world_rss("maildir")  # first: before any other world ran in this process
boots, stops = time_boots(runs, "maildir")
imports = time_import("import simsmtp", runs)
world = time_import("import simsmtp.world, simsmtp.net.network", runs)
print(json.dumps({"first_kib": first, "each_kib": each, "boots": boots, "stops": stops,
                  "imports": imports, "world_imports": world}))
"""


def measure_boot(report: Report, *, quick: bool = False, scale: float = 1.0,
                 log: object = None) -> None:
    """Boot, stop, import and RSS, measured by benchmarks/boot.py in a fresh process."""
    say = log if callable(log) else (lambda _text: None)
    runs = max(1, int(BOOT_RUNS[quick] * scale)) if scale < 1 else BOOT_RUNS[quick]
    table = Table("Boot, stop, import, memory (seed world, Maildir storage)",
                  ["figure", "median", "min", "max"])
    table.notes.append(f"Medians of {runs} runs by benchmarks/boot.py, in a fresh process; "
                       "imports each in a fresh interpreter; RSS from VmRSS.")
    try:
        done = subprocess.run([*python_argv("benchmarks.boot")[:1], "-c", _BOOT_SNIPPET,
                               str(runs)], capture_output=True, text=True, cwd=ROOT,
                              timeout=600, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as exc:
        table.notes.append(f"failed: {type(exc).__name__}: {str(exc)[:200]}")
        report.tables.append(table)
        return
    for name, key in (("import simsmtp", "imports"),
                      ("import simsmtp.world + simsmtp.net.network", "world_imports"),
                      ("boot to ready", "boots"), ("stop", "stops")):
        values = [v * 1000 for v in figures[key]]
        table.rows.append([name, fmt(median(values), "ms"), fmt(min(values), "ms"),
                           fmt(max(values), "ms")])
    first = figures["first_kib"] / 1024 if figures["first_kib"] is not None else None
    each = figures["each_kib"] / 1024 if figures["each_kib"] is not None else None
    table.rows.append(["RSS added by a booted world (the first: with its imports)",
                       fmt(first, "MB"), "", ""])
    table.rows.append(["RSS added by each further world", fmt(each, "MB"), "", ""])
    report.tables.append(table)
    boot = median(figures["boots"])
    imp = median(figures["imports"])
    say(f"  boot {boot * 1000:.0f} ms, import {imp * 1000:.0f} ms, world {first} MB")
    report.target("boot of the seed world (median)", boot, "s", "< 0.3 s", boot < 0.3)
    report.target("import simsmtp (median)", imp, "s", "< 0.15 s", imp < 0.15)
    report.target("RSS a booted world adds to a kernel", first, "MB", "< 60 MB",
                  first is not None and first < 60)


MEASURES: dict[str, Callable[..., None]] = {
    "boot": measure_boot,
    "server": throughput.measure,
    "breakdown": breakdown.measure,
    "client": client.measure,
    "latency": latency.measure,
    "scale": scale.measure,
    "notebooks": notebooks.measure,
    "soak": soak.measure,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections and print the tables; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts; scale stops at 1,000 messages x 100 domains")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections (default all: {','.join(SECTIONS)}; "
                             f"on request only: {','.join(ON_REQUEST)})")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every count by this (the smoke test uses 0.01)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in MEASURES]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SECTIONS + ON_REQUEST)}")
    if not args.scale > 0:
        parser.error("--scale must be > 0")

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    report = Report()
    info = machine()
    started = time.perf_counter()
    for section in SECTIONS + ON_REQUEST:
        if section not in chosen:
            continue
        log(f"[{section}]")
        section_start = time.perf_counter()
        try:
            MEASURES[section](report, quick=args.quick, scale=args.scale, log=log)
        except Exception as exc:  # one broken section must not hide the others
            report.tables.append(Table(section, ["error"],
                                       [[f"{type(exc).__name__}: {exc}"]]))
        log(f"[{section}] {time.perf_counter() - section_start:.1f} s")
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    print(f"## simsmtp benchmarks ({command})\n")
    print(f"Machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']} "
          f"({info['platform']}); {time.strftime('%Y-%m-%d')}; run took "
          f"{time.perf_counter() - started:.0f} s.\n")
    print(report.markdown())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": info, "command": command, **report.as_json()}, handle,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
