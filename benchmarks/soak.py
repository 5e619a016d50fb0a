"""Soak: a world served by ``python -m simsmtp up`` under steady mail, with a restart.

The world runs as an instructor serves it to a class: ``python -m simsmtp up --directory D``
in its own process (Maildir storage with ``fsync``, trace and capture on, as ``up`` keeps
them). Client threads of this process submit steadily on port 587 of mail.example.com
(STARTTLS, AUTH as Alice, 20 messages per session, bodies of 1-70 lines of 70 characters)
to Bob; after each session one junk session goes to Bob's MX on port 25 (a bad command, a
refused recipient, an abandoned transaction). Every message carries its own number in an
``X-Soak-Id`` header.

Halfway through, the server is stopped with SIGTERM and started again on the same directory
while the clients keep going (they retry until the new server answers). At the end the
clients stop, the queue drains, the server stops, and Bob's Maildir is read: every message
that got ``250`` must be there exactly once (nothing lost, nothing doubled).

Every few seconds the driver prints the time, the messages that got 250, the messages in
Bob's Maildir and the server's RSS (``/proc/<pid>/status``). Bounded in time and count,
loopback only::

    python -m benchmarks.soak --seconds 90
    python -m benchmarks --only soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import ROOT, Report, Table, _readline, end_process, fmt, python_argv, rss_mb

SUBMISSION_HOST = "mail.example.com"
MX_HOST = "mail.anotherdomain.org"
SENDER = "alice@example.com"
PASSWORD = "wonderland"
RECIPIENT = "bob@anotherdomain.org"
#: Messages per submission session (as the issue measured).
PER_SESSION = 20
#: Seconds of load in a full run and in --quick.
FULL_SECONDS = 180.0
QUICK_SECONDS = 40.0
#: Accepted but undelivered messages the clients of ``python -m benchmarks --only soak``
#: allow (steady mail the world can carry: what grows then is retention, not the queue).
BACKLOG = 500
#: Seconds between two samples of the figures.
SAMPLE_EVERY = 5.0
#: Seconds the queue may take to drain once the clients stop (while deliveries go on).
DRAIN_TIMEOUT = 600.0
#: Seconds without a delivery, while draining, after which the rest counts as deferred.
STALL = 15.0
#: Seconds a server may take to boot or to stop.
START_TIMEOUT = 60.0


@dataclass
class Target:
    """Where the running server is (it changes at the restart: new ephemeral ports)."""

    submission: tuple[str, int]
    mx: tuple[str, int]
    ca_file: str

    @classmethod
    def from_describe(cls, info: dict[str, Any]) -> Target:
        sub = info["hosts"][SUBMISSION_HOST]
        mx = info["hosts"][MX_HOST]
        return cls((sub["ip"], int(sub["ports"]["587"])), (mx["ip"], int(mx["ports"]["25"])),
                   info["ca_file"])


def make_message(number: int, rng: random.Random) -> bytes:
    """A message with its number in X-Soak-Id and 1-70 body lines of 70 characters."""
    head = (f"From: Alice <{SENDER}>\r\nTo: Bob <{RECIPIENT}>\r\nSubject: soak {number}\r\n"
            f"Message-ID: <{number}.soak@example.com>\r\nX-Soak-Id: {number}\r\n\r\n")
    lines = [(f"{number:07d} " + rng.choice("abcdefghij") * 62) for _ in
             range(rng.randint(1, 70))]
    return (head + "\r\n".join(lines) + "\r\n").encode()


def junk_session(mx: tuple[str, int]) -> None:
    """One session of junk to the MX: a bad command, a refused recipient, no DATA."""
    with socket.create_connection(mx, timeout=30) as sock:
        reader = sock.makefile("rb")

        def reply() -> None:
            while True:
                line = reader.readline()
                if len(line) < 4 or line[3:4] != b"-":
                    return

        reply()
        for command in (b"EHLO junk.example\r\n", b"XYZZY\r\n",
                        b"MAIL FROM:<junk@junk.example>\r\n",
                        b"RCPT TO:<nobody@anotherdomain.org>\r\n", b"RSET\r\n",
                        b"QUIT\r\n"):
            sock.sendall(command)
            reply()


@dataclass
class Load:
    """Client threads that submit until told to stop; counts what got 250."""

    target: Target
    sessions: int = 2
    #: Messages that got 250 but are not in the mailbox yet, at most (None: no limit):
    #: steady mail at the rate the world delivers, so that the queue does not grow.
    backlog: int | None = None
    #: Messages in the mailbox (the driver updates it as it samples).
    delivered: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    accepted: set[int] = field(default_factory=set)
    attempted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: Any = None

    def start(self) -> list[threading.Thread]:
        import itertools
        self._numbers = itertools.count(1)
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True)
                   for i in range(self.sessions)]
        for thread in threads:
            thread.start()
        return threads

    def _next(self) -> int:
        with self._lock:
            self.attempted += 1
            return int(next(self._numbers))

    def _worker(self, index: int) -> None:
        rng = random.Random(index)
        while not self.stop.is_set():
            target = self.target
            try:
                self._session(target, rng)
                junk_session(target.mx)
            except (OSError, smtplib.SMTPException) as exc:
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                self.stop.wait(0.2)  # the server is restarting: try again shortly

    def _session(self, target: Target, rng: random.Random) -> None:
        context = ssl.create_default_context(cafile=target.ca_file)
        with smtplib.SMTP(*target.submission, local_hostname="alice-laptop",
                          timeout=30) as client:
            client.starttls(context=context)
            client.login(SENDER, PASSWORD)
            for _ in range(PER_SESSION):
                while self.backlog is not None and not self.stop.is_set() \
                        and len(self.accepted) - self.delivered > self.backlog:
                    self.stop.wait(0.05)
                if self.stop.is_set():
                    return
                number = self._next()
                refused = client.sendmail(SENDER, [RECIPIENT], make_message(number, rng))
                if not refused:  # sendmail returned: the end of data got 250
                    with self._lock:
                        self.accepted.add(number)


class Server:
    """``python -m simsmtp up --directory D --json`` in its own process."""

    def __init__(self, directory: Path, extra: list[str] | None = None) -> None:
        self.directory = directory
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Target:
        self.proc = subprocess.Popen(
            python_argv("simsmtp", "up", "--directory", str(self.directory), "--json",
                        *self.extra),
            cwd=ROOT, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = _readline(self.proc, START_TIMEOUT)
        try:
            return Target.from_describe(json.loads(line))
        except ValueError:
            self.stop()
            raise RuntimeError(f"simsmtp up did not start: {line[:300]}") from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        """SIGTERM, as an instructor's Ctrl-C; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        self.proc = None
        return end_process(proc, signal.SIGTERM, START_TIMEOUT)


def maildir(directory: Path) -> Path:
    """Bob's Maildir under the world's directory."""
    local, _, domain = RECIPIENT.partition("@")
    return directory / "mail" / domain / local


def count_delivered(box: Path) -> int:
    """Messages in a Maildir (new/ and cur/)."""
    total = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(box / sub) as entries:
                total += sum(1 for _ in entries)
        except FileNotFoundError:
            pass
    return total


def soak_ids(box: Path) -> Counter[int]:
    """How many times each X-Soak-Id is in a Maildir."""
    seen: Counter[int] = Counter()
    for sub in ("new", "cur"):
        folder = box / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            head = path.read_bytes().replace(b"\r\n", b"\n").partition(b"\n\n")[0]
            for line in head.split(b"\n"):
                if line.lower().startswith(b"x-soak-id:"):
                    seen[int(line.split(b":", 1)[1])] += 1
    return seen


def run(seconds: float, *, sessions: int = 2, restart: bool = True,
        backlog: int | None = None,
        directory: Path | None = None, extra: list[str] | None = None,
        say: Callable[[str], None] = lambda _t: None) -> dict[str, Any]:
    """Serve a world under load for ``seconds`` (a restart halfway); the figures.

    Returns a dict with ``samples`` (seconds, sent, delivered, rss_mb), ``accepted``,
    ``delivered``, ``missing`` and ``duplicates`` (lists of X-Soak-Ids), ``rest_mb``
    (the RSS once booted, before any mail), ``restart_at`` and ``errors``.
    """
    own = directory is None
    base = Path(tempfile.mkdtemp(prefix="simsmtp-soak-")) if own else directory
    assert base is not None
    box = maildir(base)
    server = Server(base, extra)
    samples: list[tuple[float, int, int, float]] = []
    result: dict[str, Any] = {}
    try:
        target = server.start()
        time.sleep(1.0)  # let the world settle before the figure at rest
        rest = rss_mb(server.pid)
        result["rest_mb"] = rest
        load = Load(target, sessions=sessions, backlog=backlog)
        started = time.monotonic()
        threads = load.start()
        restarted = not restart
        next_sample = started
        while True:
            now = time.monotonic()
            elapsed = now - started
            if elapsed >= seconds:
                break
            if not restarted and elapsed >= seconds / 2:
                say(f"  {elapsed:6.1f} s  restart: SIGTERM, then up again on {base}")
                mark = time.monotonic()
                server.stop()
                stopped = time.monotonic()
                load.target = server.start()
                say(f"  stopped in {stopped - mark:.1f} s, up again in "
                    f"{time.monotonic() - stopped:.1f} s")
                result["restart_at"] = elapsed
                restarted = True
            load.delivered = count_delivered(box)
            if now >= next_sample:
                sample = (elapsed, len(load.accepted), count_delivered(box),
                          rss_mb(server.pid))
                samples.append(sample)
                say(f"  {sample[0]:6.1f} s  sent {sample[1]:6d}  delivered {sample[2]:6d}"
                    f"  RSS {sample[3]:6.1f} MB")
                next_sample = max(next_sample + SAMPLE_EVERY, now + SAMPLE_EVERY / 2)
            time.sleep(0.2)
        load.stop.set()
        for thread in threads:
            thread.join(60)
        accepted = set(load.accepted)
        end = time.monotonic() + DRAIN_TIMEOUT
        last, progress, retries = -1, time.monotonic(), 0
        while (now_delivered := count_delivered(box)) < len(accepted) \
                and time.monotonic() < end:
            if now_delivered != last:
                last, progress = now_delivered, time.monotonic()
            elif time.monotonic() - progress > STALL:
                if retries == 2:
                    break  # stalled after two retries: report what is there
                # what is left was deferred (a 4xx on a busy machine) and waits for its
                # retry in real minutes: up retries deferred mail at once when it starts
                say(f"  {len(accepted) - now_delivered} deferred: up again to retry them")
                server.stop()
                server.start()
                retries += 1
                progress = time.monotonic()
            time.sleep(0.5)
        result["drain_restarts"] = retries
        elapsed = time.monotonic() - started
        samples.append((elapsed, len(accepted), count_delivered(box), rss_mb(server.pid)))
        say(f"  {elapsed:6.1f} s  sent {len(accepted):6d}  delivered {samples[-1][2]:6d}"
            f"  RSS {samples[-1][3]:6.1f} MB  (drained)")
        server.stop()
        seen = soak_ids(box)
        result.update(
            samples=samples, accepted=len(accepted), attempted=load.attempted,
            delivered=sum(seen.values()),
            missing=sorted(accepted - set(seen)),
            duplicates=sorted(n for n, c in seen.items() if c > 1),
            errors=dict(load.errors), seconds=seconds, sessions=sessions, backlog=backlog)
        return result
    finally:
        server.stop()
        if own:
            import shutil
            shutil.rmtree(base, ignore_errors=True)


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None) -> None:
    """Run the soak and add its table and targets to ``report``."""
    say = log if callable(log) else (lambda _text: None)
    seconds = max(12.0, (QUICK_SECONDS if quick else FULL_SECONDS) * scale)
    table = Table("Soak: simsmtp up under steady submission, with a restart halfway",
                  ["seconds", "messages sent (250)", "delivered to Bob", "RSS MB"])
    try:
        figures = run(seconds, backlog=BACKLOG, say=say)
    except Exception as exc:
        table.notes.append(f"failed: {type(exc).__name__}: {str(exc)[:300]}")
        report.tables.append(table)
        return
    for elapsed, sent, delivered, rss in figures["samples"]:
        table.rows.append([f"{elapsed:.0f}", f"{sent:,}", f"{delivered:,}", fmt(rss)])
    summary = summarize(figures)
    table.notes += [
        f"python -m simsmtp up --directory D (Maildir with fsync, trace and capture on) in "
        f"its own process; {figures['sessions']} client threads: STARTTLS, AUTH, "
        f"{PER_SESSION} messages per session (1-70 lines of 70 characters), one junk "
        f"session to port 25 after each; the clients wait while more than {BACKLOG} "
        f"accepted messages are not delivered yet; SIGTERM and up again at "
        f"{figures.get('restart_at', 0):.0f} s; RSS from /proc/<pid>/status.",
        f"RSS at rest {figures['rest_mb']:.1f} MB; under load: {summary['load_text']}.",
        f"Nothing lost: {figures['accepted']:,} messages got 250, "
        f"{figures['delivered']:,} are in Bob's Maildir; missing "
        f"{len(figures['missing'])}, twice or more {len(figures['duplicates'])}"
        + (f"; {figures['delivered'] - figures['accepted']} stored whose 250 the client did "
           "not read (the stop halfway cut it off: its sender would send it again, "
           "RFC 5321 §6.1)" if figures["delivered"] > figures["accepted"] else "")
        + (f" (deferred mail retried by {figures['drain_restarts']} more restart(s) "
           "while draining)." if figures.get("drain_restarts") else "."),
    ]
    report.tables.append(table)
    wrong = len(figures["missing"]) + len(figures["duplicates"])
    report.target("soak: messages that got 250 but are missing or twice in the mailbox",
                  float(wrong), "", "0", wrong == 0 and figures["accepted"] > 0)
    report.target("soak: RSS growth over the last third", summary["growth_kb"], "KB/msg",
                  "< 1 KB per message", summary["growth_kb"] is not None
                  and summary["growth_kb"] < 1.0)


def summarize(figures: dict[str, Any]) -> dict[str, Any]:
    """RSS growth per message over the last third of the run (by then the trace window and
    the capture's budget have filled up after the restart: what still grows is retention)."""
    samples = figures["samples"][:-1] or figures["samples"]  # the drained one: no load
    start = samples[-1][0] * 2 / 3 if samples else 0.0
    tail = [s for s in samples if s[0] >= max(start, figures.get("restart_at", 0.0))]
    growth: float | None = None
    text = "too short to tell"
    if len(tail) >= 2 and tail[-1][1] > tail[0][1]:
        first, last = tail[0], tail[-1]
        growth = (last[3] - first[3]) * 1024 / (last[1] - first[1])
        peak = max(s[3] for s in figures["samples"])
        text = (f"peak {peak:.1f} MB; {growth:+.2f} KB per message over the last third "
                f"({first[1]:,} to {last[1]:,} messages)")
    return {"growth_kb": growth, "load_text": text}


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--seconds", type=float, default=FULL_SECONDS)
    parser.add_argument("--sessions", type=int, default=2, help="client threads")
    parser.add_argument("--no-restart", action="store_true")
    parser.add_argument("--backlog", type=int, default=None, metavar="N",
                        help="wait while more than N accepted messages are not delivered "
                             "yet (steady mail the world can carry; default: no limit)")
    parser.add_argument("--directory", help="the world's directory (kept afterwards)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args, extra = parser.parse_known_args(argv)
    figures = run(args.seconds, sessions=args.sessions, restart=not args.no_restart,
                  backlog=args.backlog,
                  directory=Path(args.directory) if args.directory else None, extra=extra,
                  say=lambda text: print(text, file=sys.stderr, flush=True))
    summary = summarize(figures)
    if args.json:
        print(json.dumps({**figures, **summary}))
    else:
        print(f"at rest {figures['rest_mb']:.1f} MB; under load {summary['load_text']}")
        print(f"{figures['accepted']} got 250, {figures['delivered']} in the Maildir, "
              f"missing {figures['missing'][:10]}, duplicates {figures['duplicates'][:10]}, "
              f"client errors {figures['errors']}")
    return 0 if not figures["missing"] and not figures["duplicates"] else 1


if __name__ == "__main__":
    sys.exit(main())
