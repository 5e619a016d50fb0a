"""How fast the seed world boots and stops, what ``import simsmtp`` costs, what a world weighs.

::

    python -m benchmarks.boot            # N = 20 runs of each
    python -m benchmarks.boot --quick    # N = 5
    python benchmarks/boot.py --runs 50 --storage memory

Rows (medians of N runs, with min and max):

* ``import simsmtp`` and ``import simsmtp.world + simsmtp.net.network`` (what a notebook
  needs before ``world.start()``), each timed inside a fresh interpreter;
* boot to ready: ``World.seed_world().start()`` until every server listens;
* stop: leaving the ``with`` block (421 to clients, sockets, thread, temporary files);
* RSS added by a booted world, from ``VmRSS`` in ``/proc/self/status`` (Linux; "n/a"
  elsewhere): by the first one (with the imports it triggers: TLS, DNS), and by each
  further one (five running at once, divided by five).

It only prints; there is nothing to assert, and it exits 0.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: The project root: subprocesses import simsmtp from here.
ROOT = Path(__file__).resolve().parent.parent

_IMPORT_SNIPPETS = {
    "import simsmtp": "import simsmtp",
    "import simsmtp.world + net.network": "import simsmtp.world, simsmtp.net.network",
}


def rss_kib() -> int | None:
    """This process's resident set size in KiB (``VmRSS``), or None without /proc."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def time_import(statement: str, runs: int) -> list[float]:
    """Seconds ``statement`` takes in ``runs`` fresh interpreters (start-up not counted)."""
    code = ("import time\n"
            "t = time.perf_counter()\n"
            f"{statement}\n"
            "print(time.perf_counter() - t)\n")
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=True)
        samples.append(float(out.stdout.strip()))
    return samples


def time_boots(runs: int, storage: str) -> tuple[list[float], list[float]]:
    """Boot-to-ready and stop times (seconds) of ``runs`` seed worlds, one after another."""
    from simsmtp.world import World

    boots, stops = [], []
    for _ in range(runs):
        world = World.seed_world()
        start = time.perf_counter()
        net = world.start(storage=storage).start()
        ready = time.perf_counter()
        net.stop()
        done = time.perf_counter()
        boots.append(ready - start)
        stops.append(done - ready)
    return boots, stops


def world_rss(storage: str, worlds: int = 5) -> tuple[int | None, int | None]:
    """KiB of RSS: (the first world, lazy imports included; each further world).

    Each further world is the growth while ``worlds`` seed worlds run at once, divided by
    ``worlds`` (after the first one was stopped, so only the worlds themselves count).
    """
    from contextlib import ExitStack

    from simsmtp.world import World

    gc.collect()
    start = rss_kib()
    with World.seed_world().start(storage=storage):
        first = rss_kib()
    gc.collect()
    before = rss_kib()
    with ExitStack() as stack:
        for _ in range(worlds):
            stack.enter_context(World.seed_world().start(storage=storage))
        during = rss_kib()
    if start is None or first is None or before is None or during is None:
        return None, None
    return first - start, (during - before) // worlds


def _row(name: str, samples: Sequence[float], scale: float = 1000.0,
         unit: str = "ms") -> tuple[str, str, str, str, str]:
    return (name, f"{statistics.median(samples) * scale:.1f}",
            f"{min(samples) * scale:.1f}", f"{max(samples) * scale:.1f}", unit)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]),
                      *(line(r) for r in rows)])


def main(argv: Sequence[str] | None = None,
         out: Callable[[str], None] = print) -> int:
    """Run the measurements and print the table; returns the exit code (0)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boot",
                                     description="Boot, stop, import and RSS of the seed "
                                                 "world (medians of N runs).")
    parser.add_argument("--quick", action="store_true", help="N = 5 instead of 20")
    parser.add_argument("--runs", type=int, default=None, help="N (overrides --quick)")
    parser.add_argument("--storage", choices=("maildir", "memory"), default="maildir",
                        help="mailbox storage of the booted worlds (default maildir)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 20)
    if runs < 1:
        parser.error("--runs must be at least 1")

    if str(ROOT) not in sys.path:  # `python benchmarks/boot.py` from anywhere
        sys.path.insert(0, str(ROOT))
    rows = [_row(name, time_import(stmt, runs)) for name, stmt in _IMPORT_SNIPPETS.items()]
    first, each = world_rss(args.storage)  # before any other world ran in this process
    boots, stops = time_boots(runs, args.storage)
    rows.append(_row("boot to ready (seed world)", boots))
    rows.append(_row("stop", stops))
    for name, kib in (("RSS added by the first world", first),
                      ("RSS added by each further world", each)):
        rows.append((name, "n/a" if kib is None else f"{kib / 1024:.1f}", "", "", "MiB"))
    out(f"simsmtp boot benchmark: N = {runs}, storage = {args.storage}, "
        f"Python {sys.version.split()[0]}")
    out(table(rows, ("measure", "median", "min", "max", "unit")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
