"""The command line: ``python -m simsmtp demo`` and ``python -m simsmtp up``.

``demo`` plays the seed world with the real servers and prints what happened: the DNS
answer that tells Alice's server where Bob's mail goes, the server-to-server SMTP dialogue
in swaks notation, the message as it lies in Bob's mailbox and Bob's POP3 retrieval. The
same seed prints the same text, byte for byte, on every run.

``up`` boots a world and serves it on loopback until Ctrl-C (SIGINT) or SIGTERM, so that
``dig``, ``swaks``, ``openssl s_client``, ``telnet`` or a learner's own script can talk to
it. ``up --json`` prints one line of JSON saying where everything is, for programs.

Errors are one line on stderr and a non-zero exit (2 for a bad command line or world file);
never a traceback. Importing this module is cheap: everything heavy is imported by the
command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from simsmtp.trace import SERVE_WINDOW

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.trace import TraceEvent
    from simsmtp.world.model import World

__all__ = ["CLIError", "build_parser", "demo", "main", "up"]

#: Exit status: success, a failure while running, a bad command line or world file.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: Bytes of traffic the capture of a served world keeps (``up --capture-bytes``).
SERVE_CAPTURE_BYTES = 16 * 1024 * 1024

#: The name Alice's mail program gives in EHLO (RFC 5321 §4.1.1.1: the client's name).
MUA_NAME = "alice-laptop"


class CLIError(Exception):
    """A problem to report as one line on stderr, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    """The ``simsmtp`` argument parser with its ``demo`` and ``up`` commands."""
    parser = argparse.ArgumentParser(
        prog="python -m simsmtp",
        description="simsmtp: Internet mail (SMTP, DNS, TLS, POP3) alive on loopback.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = commands.add_parser(
        "demo", help="play the seed: Alice's message from submission to Bob's POP3",
        description="Play the seed world with the real servers: Alice submits her message, "
                    "her server looks up Bob's MX and delivers it by SMTP, Bob fetches it "
                    "with POP3. Prints the DNS answer, the SMTP dialogue (swaks notation), "
                    "the message and the POP3 dialogue. The same seed prints the same text.")
    d.add_argument("--no-tls", action="store_true",
                   help="no STARTTLS anywhere: the dialogue is the seed's plaintext one, and "
                        "Alice's and Bob's passwords cross the wire readable")
    d.add_argument("--seed", type=int, metavar="N",
                   help="the world's seed (queue ids, Message-IDs ... change with it)")
    d.add_argument("--pcap", metavar="FILE",
                   help="write every packet of the demo (DNS, SMTP, POP3) to FILE for "
                        "Wireshark/tshark (pcapng, with the TLS keys inside, if FILE ends "
                        "in .pcapng)")
    d.add_argument("--keylog", metavar="FILE",
                   help="write the TLS session keys (SSLKEYLOGFILE format) to FILE, so "
                        "Wireshark can decrypt what STARTTLS encrypted")
    d.set_defaults(func=demo)

    u = commands.add_parser(
        "up", help="boot a world and serve it until Ctrl-C or SIGTERM",
        description="Boot a world on loopback (each host its own 127.0.0.x, ephemeral "
                    "ports) and serve it until SIGINT or SIGTERM, then stop cleanly (421 to "
                    "connected clients). Deferred mail left in --directory by an earlier run "
                    "is retried at once on start.")
    u.add_argument("--world", metavar="FILE", help="a world file (TOML); default: the seed")
    u.add_argument("--json", action="store_true",
                   help="print one JSON line (dns, hosts, ca_file, users) and nothing else")
    u.add_argument("--storage", choices=("maildir", "memory"), default="maildir",
                   help="where mailboxes live (default: maildir, fsynced before every 250)")
    u.add_argument("--directory", metavar="DIR",
                   help="keep mailboxes, the outbound queue and the CA here (they survive a "
                        "restart); default: a temporary directory removed on exit")
    u.add_argument("--seed", type=int, metavar="N", help="override the world's seed")
    u.add_argument("--capture", metavar="DIR",
                   help="on exit, write everything the world saw to DIR/capture.pcap and "
                        "the TLS keys to DIR/keylog.txt (tshark -r DIR/capture.pcap -o "
                        "tls.keylog_file:DIR/keylog.txt)")
    u.add_argument("--trace-window", type=_positive, metavar="N", default=SERVE_WINDOW,
                   help=f"trace events kept in memory (default {SERVE_WINDOW:,}); older "
                        "ones are left out, so memory stays flat all day")
    u.add_argument("--trace-file", metavar="FILE",
                   help="also append every trace event to FILE (JSON Lines: the whole "
                        "history; read it back with simsmtp.trace.read_history)")
    u.add_argument("--capture-bytes", type=_positive, metavar="N", default=SERVE_CAPTURE_BYTES,
                   help=f"bytes of traffic the capture keeps (default {SERVE_CAPTURE_BYTES:,}"
                        "); the oldest leave it first")
    u.set_defaults(func=up)
    return parser


def _positive(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (never raises, never a traceback)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CLIError as exc:
        _error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        return 130  # the shell's convention for "ended by SIGINT"
    except BrokenPipeError:  # `python -m simsmtp demo | head`: the reader went away
        _silence_stdout()
        return EXIT_FAILURE
    except Exception as exc:  # one line, whatever it was
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE


def _error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"simsmtp: error: {first}", file=sys.stderr)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _load_world(path: str | None, seed: int | None) -> World:
    """The world file at ``path`` (or the seed world), as one-line errors with exit 2."""
    from simsmtp.world.loader import WorldFileError
    from simsmtp.world.model import load_world, seed_world

    try:
        return seed_world(seed) if path is None else load_world(path, seed=seed)
    except WorldFileError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CLIError(f"{path}: cannot read the world file: {reason}", EXIT_USAGE) from None


# ------------------------------------------------------------------------------ demo

def demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``simsmtp demo``: play the seed and print it (see the module docstring)."""
    out = out or sys.stdout
    world = _load_world(None, args.seed)
    sender_host = world.hosts_with_role("submission")[0]
    mx_host = world.hosts_with_role("mx")[0]
    if args.no_tls:
        # RFC 3207: without STARTTLS offered, the EHLO reply is the seed's, line for line.
        mx_host.policy.starttls = False
        mx_host.policy.pop3_plaintext = True  # RFC 2595 §2: not advised; this is a lesson
        sender_host.policy.auth_plaintext = True  # RFC 4954 §4: not advised either
    pcap = Path(args.pcap) if args.pcap else None
    keylog = Path(args.keylog) if args.keylog else None
    if pcap is not None:  # before the demo, not after it: nothing is played in vain
        _writable_file(pcap, "--pcap")
    if keylog is not None:
        _fresh_file(keylog)
    if keylog is None and pcap is not None and pcap.suffix.lower() == ".pcapng":
        import tempfile

        # the keys go inside the pcapng file: keep them in a file of our own meanwhile
        with tempfile.TemporaryDirectory(prefix="simsmtp-keys-") as keys:
            return _demo(args, out, world, pcap, Path(keys) / "keylog.txt", show_keylog=False)
    return _demo(args, out, world, pcap, keylog, show_keylog=keylog is not None)


def _demo(args: argparse.Namespace, out: TextIO, world: World, pcap: Path | None,
          keylog: Path | None, *, show_keylog: bool) -> int:
    """Play and print the demo (see :func:`demo`)."""
    from simsmtp.world.scenario import SEED_RECIPIENT, SEED_SENDER

    tls = not args.no_tls
    sender_host = world.hosts_with_role("submission")[0]
    mx_host = world.hosts_with_role("mx")[0]
    sender = world.user(SEED_SENDER)
    recipient = world.user(SEED_RECIPIENT)
    assert sender is not None and recipient is not None, "the seed world has Alice and Bob"

    def say(text: str = "") -> None:
        out.write(text + "\n")

    with world.start(storage="memory", capture=pcap is not None,
                     keylog=keylog if keylog is not None else False) as net:
        say(f'simsmtp demo: "{world.name}" (seed {world.seed}), '
            + ("with STARTTLS" if tls else "WITHOUT TLS: everything crosses the wire readable"))
        say()
        queued = _submit(net, sender_host.name, sender.address, sender.password or "",
                         recipient.address, tls)
        how = "STARTTLS, then AUTH PLAIN" if tls else "no TLS, AUTH PLAIN in plaintext"
        say(f"Alice's mail program handed her message to {sender_host.name} "
            f"(port 587, {how}):")
        say(f"<-  {queued}")
        if not net.wait(net.idle, 30):
            raise CLIError("the delivery did not finish within 30 seconds")
        domain = recipient.domain
        say()
        _heading(say, 1, f"{sender_host.name} asks DNS where {domain} takes its mail "
                         "(the MX record)")
        say("(the world's DNS server: port 53 in the world, a free port of this machine "
            "in fact; this world stops with the demo, so to paste a dig line with the "
            "real port, run `python -m simsmtp up`)")
        out.write(net.dig(domain, "MX", elapsed_ms=0, show_port=53,
                          query_id=world.ids.rng("demo.dig").getrandbits(16)))
        _heading(say, 2, f"{sender_host.name} delivers it to {mx_host.name} by SMTP "
                         "(port 25)")
        say(f"( -> {sender_host.name} sends, <- {mx_host.name} answers"
            + ("; ~> and <~ inside TLS)" if tls else ")"))
        out.write(_mx_dialogue(net, mx_host.name, sender_host.name))
        lines, pop3_conn = _retrieve(net, mx_host.name, recipient.local_part,
                                     recipient.password or "", tls)
        say()
        _heading(say, 3, "The message in Bob's mailbox (each server added a Received: "
                         "header on top)")
        for line in lines:
            say(line)
        say()
        _heading(say, 4, f"Bob fetches it from {mx_host.name} with POP3 (port 110, "
                         + ("STLS; his password is masked here)" if tls else
                            "no TLS; his password is masked here, not on the wire)"))
        from simsmtp.capture.dialogue import render_dialogue

        out.write(render_dialogue(world.trace.events(), mx_host.name, pop3_conn,
                                  names=_names(net)))
        say()
        say("Done: Alice's message travelled from her laptop to Bob's mailbox.")
    if pcap is not None:
        written = _export(net, pcap, keylog)
        kind = "pcapng, TLS keys inside" if written.keylog_embedded else "pcap"
        command = written.tshark_command(keylog if show_keylog else None)
        say(f"Capture: {pcap} ({kind}); read it with: {command}")
    elif keylog is not None:
        say(f"TLS keys: {keylog}")
    out.flush()
    return EXIT_OK


def _writable_file(path: Path, option: str) -> None:
    """Check, before any work, that ``path`` can be written (``option`` names it in the
    error): its directory exists, it is not a directory itself, and we may create it.
    The probe leaves an empty file, which the export then replaces."""
    parent = path.parent
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a directory; give a file name", EXIT_USAGE)
    if not parent.is_dir():
        raise CLIError(f"{option} {path}: the directory {parent} does not exist", EXIT_USAGE)
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot write: {exc.strerror or exc}",
                       EXIT_USAGE) from None


def _writable_dir(path: Path, option: str) -> None:
    """Make the directory ``path`` (and its parents) for ``option``, or say in words why
    it cannot be."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path}: is a file, not a directory; give a directory "
                       "(it is created if missing)", EXIT_USAGE)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot make the directory: "
                       f"{exc.strerror or exc}", EXIT_USAGE) from None


def _fresh_file(path: Path) -> None:
    """Start ``path`` empty (a key log from an earlier run would only confuse)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    except OSError as exc:
        raise CLIError(f"{path}: cannot write: {exc.strerror or exc}", EXIT_USAGE) from None


def _export(net: Network, path: Path, keylog: Path | None) -> Any:
    """Write the world's capture to ``path`` (pcapng when it ends in .pcapng)."""
    from simsmtp.capture.pcap import export_pcap

    pcapng = path.suffix.lower() == ".pcapng"
    try:
        return export_pcap(net.tap, path, keylog=keylog if pcapng else None, pcapng=pcapng)
    except OSError as exc:
        raise CLIError(f"{path}: cannot write the capture: {exc.strerror or exc}") from None
    except ImportError as exc:
        raise CLIError(f"writing a capture needs scapy ({exc}): pip install scapy") from None


def _heading(say: Callable[[str], None], number: int, text: str) -> None:
    say(f"== {number}. {text} ==")


def _names(net: Network) -> dict[str, str]:
    return {info.ip: name for name, info in net.hosts.items()}


def _mx_dialogue(net: Network, mx: str, client: str) -> str:
    """The MX's side of the delivery connection, once the MX has closed it."""
    from simsmtp.capture.dialogue import connections, render_dialogue

    trace = net.world.trace
    client_ip = net.hosts[client].ip

    def conns() -> list[int]:
        events = trace.events(host=mx)
        ids = connections(events, mx, "smtp")
        return [c for c in ids if any(
            e.kind == "tcp.connect" and e.get("conn") == c
            and str(e.get("peer", "")).rpartition(":")[0] == client_ip for e in events)]

    def closed() -> bool:
        ids = conns()
        return bool(ids) and any(e.kind == "tcp.close" and e.get("conn") == ids[-1]
                                 for e in trace.events("tcp", host=mx))

    if not net.wait(closed, 10):
        raise CLIError(f"{client} never delivered to {mx}: see the trace")
    return render_dialogue(trace.events(), mx, conns()[-1], names=_names(net))


def _submit(net: Network, host: str, sender: str, password: str, recipient: str,
            tls: bool) -> str:
    """Alice's mail program: the seed message to ``host``:587, one step at a time.

    Returns the server's final reply to the message (``250 2.0.0 Ok: queued as ...``).
    """
    from simsmtp.net.stepper import SMTPStepper, Step
    from simsmtp.world.scenario import seed_message

    message = seed_message(net.world, sender=sender, recipient=recipient)

    def check(step: Step, code: int) -> Step:
        if step.code != code:
            raise CLIError(f"submission to {host}: expected {code} to {step.label}, got "
                           f"{step.reply or step.note or 'no reply'}")
        return step

    with SMTPStepper(net, host, 587, local_name=MUA_NAME, timeout=10) as session:
        check(session.connect(), 220)  # RFC 5321 §4.2: 220 = service ready
        check(session.ehlo(), 250)
        if tls:
            check(session.starttls(), 220)  # RFC 3207 §4: 220, then the handshake
            if not session.tls_active:
                raise CLIError(f"the TLS handshake with {host} failed")
            check(session.ehlo(), 250)
        check(session.auth(sender, password), 235)  # RFC 4954 §6: 235 = authenticated
        check(session.mail(sender), 250)
        check(session.rcpt(recipient), 250)
        steps = session.data(message)  # RFC 5321 §4.1.1.4: DATA -> 354, content -> 250
        check(steps[0], 354)
        queued = check(steps[-1], 250)
        check(session.quit(), 221)
    assert queued.reply is not None
    return str(queued.reply).splitlines()[0]


def _retrieve(net: Network, host: str, user: str, password: str,
              tls: bool) -> tuple[list[str], int]:
    """Bob's POP3 session with stdlib poplib: the first message's lines and the conn id."""
    import poplib
    import ssl

    from simsmtp.capture.dialogue import connections

    trace = net.world.trace
    before = set(connections(trace.events(host=host), host, "pop3"))
    ip, port = net.address(host, 110)
    client = poplib.POP3(ip, port, timeout=10)
    try:
        if tls:
            context = ssl.create_default_context(cafile=str(net.ca_file))
            client.stls(context=context)  # RFC 2595 §4
        client.user(user)
        client.pass_(password)
        count, _size = client.stat()
        if count < 1:
            raise CLIError(f"{user}'s mailbox on {host} is empty: the delivery failed")
        _response, raw, _octets = client.retr(1)
        client.quit()
    except (poplib.error_proto, OSError) as exc:
        raise CLIError(f"POP3 with {host} failed: {exc}") from None
    finally:
        client.close()
    lines = [line.decode("utf-8", "replace") for line in raw]

    def new_conn() -> int | None:
        fresh = [c for c in connections(trace.events(host=host), host, "pop3")
                 if c not in before]
        if fresh and any(e.kind == "tcp.close" and e.get("conn") == fresh[-1]
                         for e in trace.events("tcp", host=host)):
            return fresh[-1]
        return None

    if not net.wait(lambda: new_conn() is not None, 10):
        raise CLIError(f"{host} never closed the POP3 connection")
    conn = new_conn()
    assert conn is not None
    return lines, conn


# ------------------------------------------------------------------------------ up

#: The signals that stop ``up`` cleanly, where the platform has them: Ctrl+C (SIGINT),
#: ``kill`` and service managers (SIGTERM), and on Windows Ctrl+Break (SIGBREAK).
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")


def _catch_stop_signals(handler: Callable[[int, Any], None]) -> dict[Any, Any]:
    """Install ``handler`` for each of :data:`STOP_SIGNALS` this platform has; returns
    the previous handlers, to put back. Outside the main thread (where Python allows no
    handler) nothing is installed: Ctrl+C then stops ``up`` as a KeyboardInterrupt."""
    import signal

    previous: dict[Any, Any] = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread; a signal it may not catch
            continue
    return previous


def up(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``simsmtp up``: serve a world until SIGINT or SIGTERM, then stop cleanly."""
    import json
    import signal
    import threading
    import time

    out = out or sys.stdout
    world = _load_world(args.world, args.seed)
    # A served world runs all day: a bounded trace window (and the whole history on disk
    # when asked for), a bounded capture.
    world.trace.window = args.trace_window
    if args.trace_file:
        try:
            world.trace.keep_history(args.trace_file)
        except OSError as exc:
            raise CLIError(f"{args.trace_file}: cannot write the trace file: "
                           f"{exc.strerror or type(exc).__name__}", EXIT_USAGE) from None
    capture_dir = Path(args.capture) if args.capture else None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # Installed before the world boots, so a signal during the boot is not lost.
    previous = _catch_stop_signals(on_signal)
    try:
        if capture_dir is not None:
            _writable_dir(capture_dir, "--capture")
        options: dict[str, Any] = {"storage": args.storage, "directory": args.directory,
                                   "capture": capture_dir is not None}
        if capture_dir is not None:
            options["keylog"] = capture_dir / "keylog.txt"
            _fresh_file(options["keylog"])
        try:
            net = world.start(**options)
        except OSError as exc:
            raise CLIError(f"cannot boot the world: {exc}") from None
        net.tap.max_bytes = args.capture_bytes
        try:
            if args.json:
                out.write(json.dumps(net.describe()) + "\n")
                out.flush()
            else:
                out.write(describe_text(net) + "\n")
                out.flush()
                world.trace.subscribe(_live_log(out))
            resumed = sum(len(queue) for queue in net.queues.values())
            if resumed and not args.json:
                out.write(f"Retrying {resumed} queued message(s) left by an earlier run.\n")
                out.flush()
            # A served world's virtual clock follows real time, so retries (greylisting)
            # happen after their real backoff while `up` runs.
            last = time.monotonic()
            while not stop.wait(1.0):
                now = time.monotonic()
                if any(agent.busy for agent in net.agents.values()):
                    # a queue run is going on (steady mail keeps it going): it delivers
                    # what falls due on the clock by itself; waiting for it here would
                    # keep SIGTERM waiting too
                    world.clock.advance(now - last)
                else:
                    net.fast_forward(now - last)
                last = now
        finally:
            net.stop()  # 421 to every connected client (RFC 5321 §3.8), sockets closed
            world.trace.close()
        if capture_dir is not None:
            _export(net, capture_dir / "capture.pcap", None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.json:
        left_out = net.tap.left_out() if capture_dir else ""
        out.write("Stopped." + (f" Capture: {capture_dir / 'capture.pcap'}, TLS keys: "
                                f"{capture_dir / 'keylog.txt'}" if capture_dir else "")
                  + (f" ({left_out})" if left_out else "") + "\n")
        out.flush()
    return EXIT_OK


def _live_log(out: TextIO) -> Callable[[TraceEvent], None]:
    """A trace listener that prints one line per message accepted, delivered or not."""
    def show(event: TraceEvent) -> None:
        data = event.data
        kind = event.kind
        if kind == "queue.accepted":
            line = (f"queued {data.get('queue_id')} from <{data.get('sender')}> to "
                    + ", ".join(f"<{r}>" for r in data.get("recipients", [])))
        elif kind == "delivery.stored":
            line = f"stored in the mailbox of <{data.get('recipient')}>"
        elif kind == "delivery.ok":
            line = f"delivered {data.get('queue_id')} to <{data.get('recipient')}>: " \
                   f"{data.get('reply')}"
        elif kind == "delivery.deferred":
            line = f"deferred {data.get('queue_id')} for <{data.get('recipient')}>: " \
                   f"{data.get('reason')}"
        elif kind == "delivery.bounce":
            line = f"bounced {data.get('queue_id')} for <{data.get('recipient')}>: " \
                   f"{data.get('reason')}"
        else:
            return
        try:
            out.write(f"[{event.host or 'world'}] {line}\n")
            out.flush()
        except (OSError, ValueError):
            pass

    return show


#: The well-known ports ``up`` shows, in its table's column order.
UP_PORTS = (25, 587, 465, 110, 995, 143, 993)
#: What a learner types after a command that opens a session (the line ``up`` prints under it).
_TYPE_HINTS = {
    "smtp": "(then type: EHLO me, MAIL FROM:<you@example.com>, RCPT TO:<...>, DATA, "
            "the message, a lone '.', QUIT)",
    "pop3": "(then type: USER name, PASS password, LIST, RETR 1, QUIT)",
    "imap": "(then type: a LOGIN name password, b SELECT INBOX, c FETCH 1 BODY[], d LOGOUT)",
}
#: The same for a session in clear (telnet, nc), where a login is refused before TLS.
_CLEAR_HINTS = {
    "pop3": "(then type: CAPA, QUIT; USER/PASS need TLS first: the openssl line above)",
    "imap": "(then type: a CAPABILITY, b LOGOUT; LOGIN needs TLS first (LOGINDISABLED): the "
            "openssl line above)",
}
#: The last line of ``up``'s text (before the live log).
UP_READY = "Ctrl-C stops the world."


def describe_text(net: Network) -> str:
    """A learner's table of a running world and commands to paste (``up`` without --json)."""
    info = net.describe()
    world = net.world
    ports = UP_PORTS
    lines = [f'World "{world.name}" (seed {world.seed}) is running. Ctrl-C stops it.', ""]
    width = max([len(n) for n in (*info["hosts"], *info.get("policy_servers", {}))]
                + [len(world.nameserver), 4])
    lines.append(f"{'HOST':<{width}}  {'IP':<11}" + "".join(f"{p:>7}" for p in ports))
    for name, host in info["hosts"].items():
        cells = "".join(f"{host['ports'].get(str(p), '-'):>7}" for p in ports)
        lines.append(f"{name:<{width}}  {host['ip']:<11}{cells}")
    dns = info["dns"]
    lines.append(f"{world.nameserver:<{width}}  {dns['ip']:<11}  DNS (53) on port "
                 f"{dns['port']}")
    for name, server in info.get("policy_servers", {}).items():
        lines.append(f"{name:<{width}}  {server['ip']:<11}  HTTPS (443) on port "
                     f"{server['port']}: the MTA-STS policy")
    lines += ["", "(25 SMTP, 587 submission, 465 submissions, 110 POP3, 995 POP3S, 143 IMAP, "
                  "993 IMAPS: the world's well-known ports, each mapped to the free port shown)",
              "", f"CA certificate (give it to clients that verify): {info['ca_file']}", "",
              "Users and their passwords:"]
    lines += [f"  {address:<30} {password}" for address, password in info["users"].items()]
    if any("world_ip" in host for host in info["hosts"].values()):
        lines += ["", "Every host listens on 127.0.0.1 here (its address in the world: "
                      "`up --json`). A tool is",
                  "an outside client, never one of the world's servers: mail it hands "
                  "straight to an MX",
                  "in the name of a domain with SPF and DMARC fails them, as a spoof does "
                  "(550 5.7.1);", "through submission (587, 465) it goes out from the "
                  "domain's own server."]
    lines += ["", "Try, in another terminal:"]
    clear_login = {h.name: h.policy.pop3_plaintext for h in world.hosts_with_role("pop3")}
    for command in example_commands(net):
        lines.append(f"  {command}")
        for service, hint in _TYPE_HINTS.items():
            if f"-starttls {service}" in command:
                lines.append(f"    {hint}")
            elif command.startswith("nc ") and command.endswith(f"# {service}"):
                # telnet and nc come in pairs: one hint, after the pair
                if service in _CLEAR_HINTS and not any(clear_login.values()):
                    hint = _CLEAR_HINTS[service]
                lines.append(f"    {hint}")
    lines += ["", UP_READY]
    return "\n".join(lines)


def example_commands(net: Network) -> list[str]:
    """Commands a learner can paste against this running world (dig, swaks, openssl,
    telnet and nc, curl). A line for a bare TCP session ends with ``# smtp``, ``# pop3``
    or ``# imap`` (a shell comment: it pastes as is)."""
    world = net.world
    info = net.describe()
    hosts = info["hosts"]
    ca = info["ca_file"]
    commands: list[str] = []
    mx = next((h for h in world.hosts_with_role("mx") if "25" in hosts[h.name]["ports"]), None)
    sub = next((h for h in world.hosts_with_role("submission")
                if "587" in hosts[h.name]["ports"]), None)
    users = world.users()
    rcpt = sender = None
    if mx is not None:
        served = world.local_domains(mx)
        rcpt = next((u for u in users if u.domain in served), None)
    if sub is not None:
        served = world.local_domains(sub)
        sender = next((u for u in users if u.domain in served), None)
    sender = sender or next((u for u in users if u is not rcpt), rcpt)
    dns = info["dns"]
    if rcpt is not None:
        commands.append(f"dig @{dns['ip']} -p {dns['port']} MX {rcpt.domain}")
    if mx is not None and rcpt is not None and sender is not None:
        ip, port = hosts[mx.name]["ip"], hosts[mx.name]["ports"]["25"]
        base = f"swaks --server {ip}:{port} --from {sender.address} --to {rcpt.address}"
        # Speak as the sender's own server: from its address and with its name, so the
        # MX's SPF check (RFC 7208), and DMARC with it, pass for the sender's domain.
        relay = next((h for h in world.hosts_with_role("outbound")
                      if h.domain == sender.domain), None)
        # Where hosts share 127.0.0.1 ("world_ip" differs), a tool cannot take a host's
        # address: it is an outside client, and the MX treats it as one.
        if relay is not None and "world_ip" not in hosts[relay.name]:
            base += f" --local-interface {hosts[relay.name]['ip']} --helo {relay.name}"
        commands += [base, f"{base} -tls",
                     # -crlf: SMTP lines end in CRLF; -ign_eof: a line typed as "RCPT"
                     # or "QUIT" is sent, not taken as s_client's R(enegotiate)/Q(uit)
                     f"openssl s_client -starttls smtp -connect {ip}:{port} -CAfile {ca} "
                     "-verify_return_error -crlf -ign_eof"]
    if sub is not None and sender is not None:
        ip, p587 = hosts[sub.name]["ip"], hosts[sub.name]["ports"]["587"]
        to = rcpt.address if rcpt is not None else sender.address
        auth = (f"--auth PLAIN --auth-user {sender.address} "
                f"--auth-password {sender.password or ''}")
        commands.append(f"swaks --server {ip}:{p587} --from {sender.address} --to {to} "
                        f"-tls {auth}")
        p465 = hosts[sub.name]["ports"].get("465")
        if p465 is not None:
            commands.append(f"swaks --server {ip}:{p465} --from {sender.address} --to {to} "
                            f"--tlsc {auth}")
    commands += _security_commands(net, info, rcpt.domain if rcpt is not None else None)
    pop = next((h for h in world.hosts_with_role("pop3") if "110" in hosts[h.name]["ports"]),
               None)
    if pop is not None:
        ip, port = hosts[pop.name]["ip"], hosts[pop.name]["ports"]["110"]
        commands.append(f"openssl s_client -starttls pop3 -connect {ip}:{port} -CAfile {ca} "
                        "-verify_return_error -crlf -quiet")
    imap = next((h for h in world.hosts_with_role("pop3") if "143" in hosts[h.name]["ports"]),
                None)
    if imap is not None:
        ip, port = hosts[imap.name]["ip"], hosts[imap.name]["ports"]["143"]
        commands.append(f"openssl s_client -starttls imap -connect {ip}:{port} -CAfile {ca} "
                        "-verify_return_error -crlf -quiet")
        p993 = hosts[imap.name]["ports"].get("993")
        reader = rcpt if rcpt is not None and rcpt.domain in world.local_domains(imap) \
            else next((u for u in users if u.domain in world.local_domains(imap)), None)
        if p993 is not None and reader is not None:
            commands.append(f"curl --cacert {ca} --user {reader.local_part}:"
                            f"{reader.password or ''} imaps://{ip}:{p993}/INBOX "
                            "-X 'UID FETCH 1:* (FLAGS ENVELOPE)'")
    # The seed's own tools: a bare TCP session, typed line by line (telnet sends CRLF;
    # nc -C turns each Enter into CRLF, which SMTP, POP3 and IMAP lines end with).
    for host, port, service in ((mx, "25", "smtp"), (pop, "110", "pop3"),
                                (imap, "143", "imap")):
        if host is not None:
            ip, real = hosts[host.name]["ip"], hosts[host.name]["ports"][port]
            commands.append(f"telnet {ip} {real}  # {service}")
            commands.append(f"nc -C {ip} {real}  # {service}")
    return commands


def _security_commands(net: Network, info: dict[str, Any], domain: str | None) -> list[str]:
    """MTA-STS and DNSSEC commands: curl the policy (RFC 8461), dig +dnssec, delv."""
    commands: list[str] = []
    if domain is None:
        return commands
    dns = info["dns"]
    for name, server in info.get("policy_servers", {}).items():
        if name == f"mta-sts.{domain}":
            url = server["url"].replace(name, f"{name}:{server['port']}", 1)
            commands.append(f"curl --cacert {info['ca_file']} --resolve "
                            f"{name}:{server['port']}:{server['ip']} {url}")
    if domain in net.world.zone_keys() and info.get("trust_anchors"):
        commands.append(f"dig +dnssec @{dns['ip']} -p {dns['port']} MX {domain}")
        mx = next((r.exchange for r in net.world.domain(domain).mx), None)
        if mx is not None and net.world.domain(domain).tlsa:
            commands.append(f"delv -a {info['trust_anchors']} +root={domain} "
                            f"@{dns['ip']} -p {dns['port']} TLSA _25._tcp.{mx}")
    return commands


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
