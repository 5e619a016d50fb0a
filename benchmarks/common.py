"""What every benchmark shares: server processes, CPU and memory readings, the result table.

Every server under test runs in its own process (:class:`ServerProcess`), so a load
generator never shares an interpreter (or its GIL) with the server it measures, and the
server's own CPU time can be read from ``/proc/<pid>/stat``. Everything binds loopback
addresses only, and every wait is bounded.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The project root (benchmarks/ lives in it); subprocesses run from here.
ROOT = Path(__file__).resolve().parent.parent
#: Where Debian puts smtp-source and smtp-sink.
SBIN = "/usr/sbin:/usr/local/sbin"
#: How long a server process may take to say READY.
START_TIMEOUT = 60.0


def find_program(name: str) -> str | None:
    """The path of ``name`` on PATH or in /usr/sbin, or None."""
    return shutil.which(name) or shutil.which(name, path=SBIN)


def free_port(ip: str) -> int:
    """An ephemeral port free on ``ip`` now (for programs that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(ip: str, port: int, timeout: float = 10.0) -> None:
    """Wait until a TCP connect to ``ip:port`` succeeds.

    Raises:
        TimeoutError: nothing listens there within ``timeout`` seconds.
    """
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > end:
                raise TimeoutError(f"nothing listens on {ip}:{port}") from None
            time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (and its reaped children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # proc(5): after the ")" field 3 is the state; utime is field 14, stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int | None = None) -> float:
    """The resident set size of ``pid`` (default: this process) in MiB, from /proc."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MiB (getrusage: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ServerProcess:
    """A server under test in its own process: ``python -m benchmarks.servers KIND ...``.

    The child prints ``READY <ip> <port>`` once it listens and stops when its stdin
    closes. Programs that print nothing (smtp-sink) are started with ``argv`` and
    ``address`` and waited for with a TCP connect.

    Args:
        argv: the command line.
        address: ``(ip, port)`` when the program does not print READY.
        env: extra environment variables.
    """

    def __init__(self, argv: Sequence[str], address: tuple[str, int] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.address = address
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        if self.address is None:
            line = _readline(self.proc, START_TIMEOUT)
            if not line.startswith("READY "):
                self.__exit__()
                raise RuntimeError(f"{self.argv[:4]} did not start: {line!r}")
            _, ip, port = line.split()
            self.address = (ip, int(port))
        else:
            try:
                wait_listening(*self.address)
            except TimeoutError:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        end_process(proc, signal.SIGTERM, 10)

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds the server used so far."""
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        """The server's resident set size in MiB."""
        return rss_mb(self.pid)


def end_process(proc: subprocess.Popen[str], sig: int, timeout: float) -> int:
    """Send ``sig`` to a process still running, wait ``timeout`` seconds (then kill it),
    close its pipes, and return its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return "<no answer within the start timeout>"
    line = proc.stdout.readline().strip()
    if not line and proc.poll() is not None:
        assert proc.stderr is not None
        return f"<exited {proc.returncode}: {proc.stderr.read()[-500:]}>"
    return line


def python_argv(module: str, *args: str) -> list[str]:
    """``python -m <module> args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))  # nearest rank, from 1
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (nan when empty)."""
    return statistics.median(values) if values else float("nan")


@dataclass
class Table:
    """One measurement's figures as a table.

    Attributes:
        title: what was measured.
        headers: the column names.
        rows: the cells, already formatted.
        notes: lines printed under the table (how it was measured, what is missing).
    """

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The table in Markdown (printed as it is, pasted as it is into the README)."""
        lines = [f"### {self.title}", "",
                 "| " + " | ".join(self.headers) + " |",
                 "| " + " | ".join("---" if i == 0 else "---:"
                                   for i in range(len(self.headers))) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class Target:
    """A figure held against one of issue 7's targets.

    Attributes:
        name: what is held against the target.
        value: the measured figure, formatted (or "n/a").
        target: the target ("≥ 2x", "< 0.3 s").
        ok: met, missed, or None when it could not be measured.
    """

    name: str
    value: str
    target: str
    ok: bool | None


@dataclass
class Report:
    """Everything one run measured: tables, then the targets."""

    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def target(self, name: str, value: float | None, unit: str, target: str,
               ok: bool | None) -> None:
        """Record a figure held against a target (``value`` None: not measured)."""
        self.targets.append(Target(name, fmt(value, unit), target,
                                   None if value is None else ok))

    def markdown(self) -> str:
        """Every table and the targets table, in Markdown."""
        parts = [t.markdown() for t in self.tables]
        lines = ["### Targets (issue 7)", "", "| figure | measured | target | met |",
                 "| --- | ---: | --- | --- |"]
        for t in self.targets:
            met = "n/a" if t.ok is None else ("yes" if t.ok else "**no**")
            lines.append(f"| {t.name} | {t.value} | {t.target} | {met} |")
        parts.append("\n".join(lines))
        return "\n\n".join(parts)

    def as_json(self) -> dict[str, Any]:
        """Everything as plain data (``--json``)."""
        return {"tables": [t.__dict__ for t in self.tables],
                "targets": [t.__dict__ for t in self.targets]}


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with a sensible number of digits and its unit ("n/a" for None or nan)."""
    if value is None or value != value:
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def machine() -> dict[str, str]:
    """The machine the figures come from: CPUs, CPU model, Python, OS."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count() or 0), "cpu": model or "unknown",
            "python": sys.version.split()[0], "platform": sys.platform}
