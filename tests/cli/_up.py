"""Run ``python -m simsmtp up`` as a real subprocess, for the CLI and interop tests."""

from __future__ import annotations

import email
import email.policy
import json
import os
import poplib
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def simsmtp_command(*args: str) -> list[str]:
    """The command line of ``python -m simsmtp ARGS`` with this interpreter."""
    return [sys.executable, "-m", "simsmtp", *args]


def run_simsmtp(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m simsmtp ARGS`` to completion; text output captured."""
    return subprocess.run(simsmtp_command(*args), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONHASHSEED", None)
    return env


class UpProcess:
    """``python -m simsmtp up --json ...`` running in the background.

    Attributes:
        info: the JSON object of the first stdout line (``net.describe()``).
    """

    def __init__(self, *args: str, stderr_path: Path | None = None,
                 json_line: bool = True) -> None:
        self.args = ["up", "--json", *args] if json_line else ["up", *args]
        self._tail = ""
        self._own_dir: Path | None = None
        self._stderr_text: str | None = None
        if stderr_path is None:  # kept, so that a failing test can show it
            self._own_dir = Path(tempfile.mkdtemp(prefix="simsmtp-test-up-"))
            stderr_path = self._own_dir / "stderr.txt"
        self._stderr_path = stderr_path
        self._stderr = open(stderr_path, "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(simsmtp_command(*self.args), stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=ROOT, env=_env())
        self.first_line = self.read_line(timeout=20)
        self.info: dict[str, Any] = {}
        if not json_line:
            return
        try:
            self.info = json.loads(self.first_line)
        except ValueError:
            self.kill()
            raise AssertionError(f"up printed {self.first_line!r}, not JSON; stderr: "
                                 f"{self.stderr()}") from None

    def read_line(self, timeout: float = 20) -> str:
        """The next line of stdout (fails the test after ``timeout`` seconds)."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        data = b""
        end = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.kill()
                raise AssertionError(f"up printed no line within {timeout} s; "
                                     f"stderr: {self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                raise AssertionError(f"up exited ({self.proc.wait()}) before its first "
                                     f"line; stderr: {self.stderr()}")
            data += chunk
        return data.decode()

    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        if self._stderr_text is not None:
            return self._stderr_text
        if not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    # -- where things are
    def address(self, host: str, port: int) -> tuple[str, int]:
        """(ip, real port) of ``host``'s well-known ``port``."""
        entry = self.info["hosts"][host]
        return entry["ip"], int(entry["ports"][str(port)])

    def server(self, host: str, port: int) -> str:
        """``ip:port`` as swaks and openssl want it."""
        ip, real = self.address(host, port)
        return f"{ip}:{real}"

    @property
    def ca_file(self) -> str:
        return str(self.info["ca_file"])

    # -- Bob's mailbox over POP3 (STLS, verified against the world CA)
    def pop3_messages(self, user: str = "bob", password: str = "builder",
                      host: str = "mail.anotherdomain.org") -> list[email.message.Message]:
        """Every message in ``user``'s mailbox, fetched with poplib after ``stls()``."""
        client = poplib.POP3(*self.address(host, 110), timeout=10)
        try:
            client.stls(context=ssl.create_default_context(cafile=self.ca_file))
            client.user(user)
            client.pass_(password)
            count, _ = client.stat()
            messages = [email.message_from_bytes(b"\r\n".join(client.retr(i + 1)[1]),
                                                 policy=email.policy.default)
                        for i in range(count)]
            client.quit()
        finally:
            client.close()
        return messages

    def wait_for_subject(self, subject: str, timeout: float = 10.0) -> list[Any]:
        """The messages with ``subject`` in Bob's mailbox, waiting for the first one."""
        end = time.monotonic() + timeout
        while True:
            found = [m for m in self.pop3_messages() if m["Subject"] == subject]
            if found or time.monotonic() > end:
                return found
            time.sleep(0.05)

    # -- stopping
    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15,
                  *, signalled: bool = False) -> int:
        """Send ``sig`` (unless the test has ``signalled`` it already: a second signal
        during the shutdown would find the default handler back and kill the process)
        and return the exit status."""
        if self.proc.poll() is None and not signalled:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._close_files()
        return status

    @property
    def tail(self) -> str:
        """What the process printed after its first line (read once it has exited)."""
        return self._tail

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_files()

    def _close_files(self) -> None:
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            if self.proc.poll() is not None:
                self._tail = self.proc.stdout.read().decode(errors="replace")
            self.proc.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()
            if self.proc.poll() is not None and self._own_dir is not None:
                self._stderr_text = self.stderr()
                shutil.rmtree(self._own_dir, ignore_errors=True)
