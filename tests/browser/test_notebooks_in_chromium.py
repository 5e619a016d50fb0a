"""The student's path through every notebook, in a real JupyterLab, in a real Chromium.

A headless JupyterLab serves a copy of ``notebooks/`` (trusted, as ``course.py`` does);
Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser), driven by Playwright
for Python, then walks each notebook as a student does:

1. open it fresh: every stored widget shows its view before anything runs (no "Error
   displaying widget", no text stand-in such as ``Stepper(step 1 of 7 …)``);
2. *Run → Run All Cells*: no error, every widget rendered;
3. read it: every text in the outputs is at least 10 px, every text colour meets WCAG AA
   (4.5:1) on its background, SVG diagrams included; no button, tab or dropdown cut short;
   no over-tall lines;
4. use every widget: click its buttons, step the stepper to its end and back, type a good
   and a bad command in each console, edit the MX editor, toggle the key log, visit every
   tab, change the lab's records and check;
5. answer every exercise once wrong and once right, and read the feedback: it names that
   exercise;
6. and all along: no widget saying its world is stopped or showing a problem, nothing on
   stderr, no error in the browser console or in JupyterLab's log console;
7. save it, let its kernel go, open it again: every widget still shows (its state is saved
   with the notebook, as ``course.py`` sets JupyterLab up to do).

Screenshots of each notebook and widget go to ``artifacts/screenshots/`` (gitignored).
JupyterLab picks its own port (``--ServerApp.port=0``) and the test reads its URL back from
the runtime directory (``jpserver-<pid>.json``). Needs ``apt-get install chromium`` and
``pip install playwright`` (no ``playwright install``); without them the test skips with the
reason, and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_program

pytestmark = [pytest.mark.slow, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

#: Chromium flags: headless, no sandbox (containers), and no network of its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

#: JupyterLab settings for the run: no autosave (the copy must not change under us), every
#: cell in the DOM (no windowing), no news or update pop-ups.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    # as course.py and binder/postBuild set it: a saved notebook keeps its widgets' state
    "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
}

#: How long one notebook may take to run all its cells (the course: seconds each).
RUN_TIMEOUT_S = 150

#: For each exercise that takes a typed answer: (a wrong answer, a right one), as Python.
ANSWERS: dict[str, tuple[str, str]] = {
    "00.submission-port": ("25", "587"),
    "00.dns-questions": ("1", "2"),
    "00.who-stored": ('"mail.example.com"', '"mail.anotherdomain.org"'),
    "01.order": ('["mx-b.example.net", "mx-a.example.net", "mx-c.example.net"]',
                 '["mx-a.example.net", "mx-b.example.net", "mx-c.example.net"]'),
    "01.null-mx": ('"5.4.4"', '"5.1.10"'),
    "02.pipelining": ('"DSN"', '"PIPELINING"'),
    "02.state-after-data": ('"MAIL"', '"DATA"'),
    "02.bounce-to": ('"a"', '"b"'),
    "03.transient": ('"a"', '"b"'),
    "03.first-retry": ("600", "300"),
    "04.base64": ('"bob"', '"builder"'),
    "04.what-leaks": ('"a"', '"d"'),
    "04.filter": ('"tcp.port == 25"', '"smtp.req.command == \\"AUTH\\""'),
    "05.sni": ('"mail.example.com"', '"mail.anotherdomain.org"'),
    "05.last-clear": ('"Finished"', '"ServerHello"'),
    "05.defence": ('"c"', '"b"'),
    "06.ports": ("(465, 587)", "(587, 465)"),
    "06.why-no-auth": ('"a"', '"b"'),
    "06.relay": ("550", "454"),
    "07.new": ('"tmp"', '"new"'),
    "07.first-hop": ('"mail.anotherdomain.org"', '"mail.example.com"'),
    "07.dele": ('"QUIT"', '"DELE"'),
    "08.softfail": ('"fail"', '"softfail"'),
    "08.alignment": ('"a"', '"b"'),
    "08.forwarded": ('"spf"', '"dkim"'),
    "05b.first-contact": ('"a"', '"b"'),
    "05b.dnssec-less": ('"a"', '"b"'),
    "05b.result-type": ('"validation-failure"', '"starttls-not-supported"'),
    "07b.stays": ('"a"', '"b"'),
    "07b.seen": ('"SF"', '"FS"'),
    "07b.idle": ('"recent"', '"EXISTS"'),
}
#: Exercises whose check reads the world: wrong as Run All leaves it, right after doing it.
LIVE = {"01.prefer-backup", "02.by-hand", "03.break-it", "08.spf-only"}

#: 03.break-it done in code, as its solution says.
BREAK_IT = """world.faults.add("mail.anotherdomain.org", "MESSAGE", "554 5.7.1 Message rejected",
                 times=1)
net.submit(seed_message(world), sender="alice@example.com",
           recipients=["bob@anotherdomain.org"], user="alice@example.com",
           password="wonderland")
net.wait(net.idle)
ui.exercise("03.break-it").check(world)"""

#: A message typed by hand in notebook 2's console (02.by-hand).
BY_HAND = ["EHLO mail.example.com", "MAIL FROM:<alice@example.com>",
           "RCPT TO:<bob@anotherdomain.org>", "DATA", "Subject: typed by hand", "",
           "Hello Bob, typed line by line.", "."]


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; no browser download)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return sync_playwright


@dataclass
class Lab:
    """A running JupyterLab."""

    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


def _start_lab(base: Path, root: Path, settings: Path, env: dict[str, str],
               attempt: int) -> tuple[subprocess.Popen[bytes], Lab | None]:
    """Start JupyterLab on a port of its own choosing; its Lab once it answers, or None
    when it ended first (another process took the port between its check and its bind)."""
    runtime = base / f"runtime-{attempt}"
    log = base / f"jupyterlab-{attempt}.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
               f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={base / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True",  # the test sets cells' code through it
               "--LabApp.extension_manager=readonly",  # never asks for extensions online
               "--ServerApp.terminals_enabled=False", "--allow-root"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**env, "JUPYTER_RUNTIME_DIR": str(runtime)},
                                   start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        found = sorted(runtime.glob(f"jpserver-{process.pid}.json"))
        if found:
            try:
                info = json.loads(found[0].read_text())
            except ValueError:  # being written
                info = None
            if info:
                lab = Lab(info["url"].rstrip("/"), info["token"], root, log)
                with contextlib.suppress(OSError):
                    lab.api("GET", "/api/status")
                    return process, lab
        time.sleep(0.2)
    return process, None


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the server and its kernels
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("*.pcap", "*.pcapng", ".ipynb_checkpoints"))
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_DATA_DIR": str(base / "data"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           # the kernels import this checkout's simsmtp, whatever else is installed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    # trusted, as course.py and binder/postBuild make them (the signatures go to this
    # run's own data directory)
    subprocess.run([sys.executable, "-m", "jupyter", "trust", "-y",
                    *sorted(str(p) for p in (root / "notebooks").glob("*.ipynb"))],
                   env=env, check=True, capture_output=True)
    for attempt in range(3):
        process, running = _start_lab(base, root, settings, env, attempt)
        if running is not None:
            break
        _stop(process)
    else:
        pytest.fail("JupyterLab did not start:\n" + (base / "jupyterlab-2.log").read_text()[-3000:])
    try:
        yield running
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Any]:
    executable = require_program("chromium")
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# ------------------------------------------------------------------------------ the page

_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
_PROMPTS = f"""() => Array.from(document.querySelectorAll(
    '{_PANEL} .jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim())"""
_STATUS = ("() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
           " return s ? s.getAttribute('data-status') : null; }")


@dataclass
class Student:
    """One notebook open in the browser, and what went wrong while using it."""

    page: Any
    stem: str
    console_errors: list[str] = field(default_factory=list)

    # -- JupyterLab -------------------------------------------------------------------
    def status(self) -> str | None:
        return self.page.evaluate(_STATUS)  # type: ignore[no-any-return]

    def settle(self, timeout_s: float = 30) -> None:
        """Wait until the kernel is idle (twice in a row: a click's message may still be
        on its way when the first idle is seen)."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        while calm < 2:
            calm = calm + 1 if self.status() == "idle" else 0
            if time.monotonic() > deadline:
                pytest.fail(f"{self.stem}: the kernel stayed busy for {timeout_s} s")
            self.page.wait_for_timeout(150)

    def menu(self, menu: str, item: str) -> None:
        """Click ``menu`` in JupyterLab's menu bar, then ``item`` in it."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()

    def run_all(self) -> None:
        """Clear every output, then Run > Run All Cells, and wait until every code cell has
        run, or one failed. A Run All that reaches a kernel still settling in runs nothing
        (the prompts stay empty, the kernel idle): it is asked again, at most twice."""
        page = self.page
        cleared = f"() => ({_PROMPTS})().every(t => t === '[ ]:')"
        for attempt in range(3):  # a page that just opened may not take the first click
            self.menu("Edit", "Clear Outputs of All Cells")
            try:
                page.wait_for_function(cleared, timeout=10_000 * (attempt + 1))
                break
            except Exception:  # playwright's TimeoutError: ask again
                if attempt == 2:
                    raise
        self.menu("Run", "Run All Cells")
        asked, attempts = time.monotonic(), 1
        deadline = asked + RUN_TIMEOUT_S
        while True:
            prompts, status = page.evaluate(_PROMPTS), self.status()
            if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
                break
            if status == "idle" and self.stderr():
                break
            stalled = status == "idle" and all(p == "[ ]:" for p in prompts)
            if stalled and time.monotonic() - asked > 10 and attempts < 3:
                self.menu("Run", "Run All Cells")
                asked, attempts = time.monotonic(), attempts + 1
            if time.monotonic() > deadline:
                pytest.fail(f"the cells did not finish in {RUN_TIMEOUT_S} s: kernel {status},"
                            f" prompts {prompts}")
            page.wait_for_timeout(300)
        self.settle()

    def run_cell(self, index: int, source: str | None = None) -> str:
        """Run cell ``index`` (optionally with new code, as a student edits it); the text
        of its output."""
        before = self.page.evaluate(
            f"i => document.querySelectorAll('{_PANEL} .jp-Cell')[i]"
            ".querySelector('.jp-InputPrompt').textContent", index)
        self.page.evaluate("""([i, source]) => {
            const app = window.jupyterapp;
            const notebook = app.shell.currentWidget.content;
            notebook.activeCellIndex = i;
            if (source !== null) notebook.widgets[i].model.sharedModel.setSource(source);
            return app.commands.execute('notebook:run-cell');
        }""", [index, source])
        self.page.wait_for_function(
            f"""([i, before]) => {{
                const p = document.querySelectorAll('{_PANEL} .jp-Cell')[i]
                    .querySelector('.jp-InputPrompt').textContent.trim();
                return /^\\[\\d+\\]:$/.test(p) && p !== before.trim();
            }}""", arg=[index, before], timeout=90_000)
        self.settle()
        return self.page.locator(f"{_PANEL} .jp-Cell").nth(index).locator(
            ".jp-OutputArea").inner_text()

    # -- what the student sees --------------------------------------------------------
    def text(self) -> str:
        return self.page.locator(_PANEL).inner_text()  # type: ignore[no-any-return]

    def stderr(self) -> list[str]:
        errors = self.page.locator(
            f'{_PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        return [errors.nth(i).inner_text()[:500] for i in range(errors.count())]

    def problems(self) -> list[str]:
        """Errors and widgets that did not render, as the learner would see them."""
        found = [f"stderr/error output: {e}" for e in self.stderr()]
        text = self.text()
        for marker in ("Error displaying widget", "Loading widget", "world of this notebook "
                       "is stopped", "Traceback"):
            if marker in text:
                found.append(f"{marker!r} on the page")
        consoles = self.views("console")
        for i in range(consoles.count()):  # what a stopped world answers
            if "Service shutting down" in consoles.nth(i).inner_text():
                found.append("a console says 421 Service shutting down")
        boxes = self.page.locator(f"{_PANEL} .simsmtp-problem")
        for i in range(boxes.count()):
            shown = boxes.nth(i).inner_text().strip()
            if shown:
                found.append(f"a widget shows a problem: {shown[:300]}")
        found += [f"browser console: {e}" for e in self.console_errors]
        count = self.page.evaluate(
            "() => { const s = document.querySelector('.jp-LogConsoleStatusItem');"
            " return s ? s.textContent.trim() : ''; }")
        if re.search(r"[1-9]", count or ""):
            found.append(f"JupyterLab's log console has messages: {count}")
        return found

    def wait_rendered(self) -> list[str]:
        """Wait (at most 30 s) until widget views have rendered; what is still wrong."""
        deadline = time.monotonic() + 30  # widget views render asynchronously
        while self.problems() and time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
        return self.problems()

    def views(self, kind: str = "view") -> Any:
        return self.page.locator(f"{_PANEL} .simsmtp-{kind}")

    def shot(self, locator: Any, name: str) -> None:
        """A screenshot of one element, the window made tall enough to hold all of it."""
        box = locator.bounding_box()
        size = self.page.viewport_size
        if box is not None and box["height"] + 200 > size["height"]:
            self.page.set_viewport_size({"width": size["width"],
                                         "height": int(box["height"]) + 200})
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(SCREENSHOTS / f"{self.stem}-{name}.png"))
        self.page.set_viewport_size(size)


# ---------------------------------------------------------------- readability and layout

#: The page-side measures (in JavaScript): what the learner sees, as numbers.
_MEASURES = (Path(__file__).with_name("readability.js")).read_text(encoding="utf-8")
_READABILITY = f"() => {{ {_MEASURES}; return readability(); }}"
_SVG_IMAGES = f"async () => {{ {_MEASURES}; return await svgImages(); }}"


def _readable(student: Student) -> list[str]:
    found = student.page.evaluate(_READABILITY)
    images = student.page.evaluate(_SVG_IMAGES)
    wrong = [f"text under 10 px: {s}" for s in found["small"]]
    wrong += [f"contrast under 4.5:1: {s}" for s in found["contrast"]]
    wrong += [f"cut short: {s}" for s in found["cut"]]
    wrong += [f"over-tall lines: {s}" for s in found["tall"]]
    for image in images:
        if image["texts"] and image["smallest"] < 9.95:
            wrong.append(f"an SVG diagram draws text at {image['smallest']:.1f} px "
                         f"(scaled {image['scale']:.2f})")
    assert found["htmlTexts"] > 0
    return wrong


# ------------------------------------------------------------------------------ widgets

def _click(student: Student, button: Any) -> None:
    if button.is_enabled():
        button.click()
        student.settle()


def _use_stepper(student: Student, stepper: Any) -> None:
    back, forward = stepper.locator(".simsmtp-stepper-back"), stepper.locator(
        ".simsmtp-stepper-next")
    counter = re.compile(r"Step (\d+) of (\d+)")
    start = counter.search(stepper.inner_text())
    assert start is not None and start.group(1) == "1", stepper.inner_text()[:200]
    total = int(start.group(2))
    # the stepper and its state diagram fit one screen of the notebook
    screen = student.page.locator(f"{_PANEL} .jp-WindowedPanel-outer, "
                                  f"{_PANEL} .jp-Notebook").first.bounding_box()
    box = stepper.bounding_box()
    assert screen is not None and box is not None
    assert box["height"] <= screen["height"], (box["height"], screen["height"])
    for _ in range(total + 1):
        _click(student, forward)
    assert f"Step {total} of {total}" in stepper.inner_text()
    assert not forward.is_enabled()
    student.shot(stepper, "stepper-at-the-end")
    for _ in range(total + 1):
        _click(student, back)
    assert f"Step 1 of {total}" in stepper.inner_text() and not back.is_enabled()
    for toggle in stepper.locator(".widget-toggle-button").all():
        _click(student, toggle)


def _type(student: Student, console: Any, line: str) -> str:
    box = console.locator(".simsmtp-console-input input")
    box.fill(line)
    box.press("Enter")
    student.settle()
    assert box.input_value() == ""
    return console.locator(".simsmtp-console-transcript").inner_text()  # type: ignore[no-any-return]


def _use_console(student: Student, console: Any) -> None:
    connect = console.locator("button", has_text=re.compile("^(Connect|Connect again|Reset)$"))
    _click(student, connect.first)
    assert "220 " in console.inner_text()
    assert "-> NOOP" in (said := _type(student, console, "NOOP")) and "250 2.0.0 Ok" in said
    said = _type(student, console, "PLEASE SEND MAIL")
    assert "-> PLEASE SEND MAIL" in said and "500 5.5.2" in said
    for button in console.locator(".widget-hbox button").all():  # the fill-in buttons
        if button.is_enabled() and button.inner_text().strip() not in ("Send", "Reset"):
            _click(student, button)
    console.locator(".simsmtp-console-input input").fill("")
    student.shot(console, "console")


def _by_hand(student: Student, console: Any) -> None:
    """Deliver a message by typing every line (exercise 02.by-hand)."""
    _click(student, console.locator("button", has_text=re.compile("^(Reset|Connect again|"
                                                                  "Connect)$")).first)
    for line in BY_HAND:
        said = _type(student, console, line)
    assert "queued as" in said, said[-500:]


def _use_mx_editor(student: Student, editor: Any) -> None:
    for name in ("Remove all", "Null MX", "Reset", "Add backup"):
        _click(student, editor.locator("button", has_text=name).first)
    box = editor.locator(".widget-checkbox input").first
    box.click()
    student.settle()
    box.click()
    student.settle()
    # exercise 01.prefer-backup: the backup added last gets the lowest preference
    preference = editor.locator("input[type=number]")
    preference.last.fill("5")
    preference.last.press("Enter")
    student.settle()
    assert "backup.anotherdomain.org" in editor.inner_text()
    student.shot(editor, "mx-editor")


def _use_capture_view(student: Student, view: Any, name: str) -> None:
    _click(student, view.locator("button", has_text="Refresh").first)
    picker = view.locator("select").first
    options = picker.locator("option").all_inner_texts()
    if len(options) > 1:
        picker.select_option(index=0)
        student.settle()
    keylog = view.locator(".widget-checkbox input").first
    if keylog.is_enabled():
        keylog.click()  # the key log on, then off again
        student.settle()
        student.shot(view, f"{name}-keylog")
        keylog.click()
        student.settle()
    tabs = view.locator(".simsmtp-tab-buttons .widget-toggle-button")
    for index in range(tabs.count()):
        tab = tabs.nth(index)
        title = tab.inner_text().strip()
        tab.click()
        student.settle()
        panel = view.locator(".simsmtp-tab-stack > .lm-Widget:not(.lm-mod-hidden)").first
        box = panel.bounding_box()
        assert box is not None and box["height"] > 40, f"tab {title!r} is empty"
        slug = re.sub(r"[^a-z]+", "-", title.lower()).strip("-")
        student.shot(view, f"{name}-{slug}")


def _use_trace_table(student: Student, table: Any) -> None:
    for select in table.locator("select").all():
        options = select.locator("option").all_inner_texts()
        if len(options) > 1:
            select.select_option(index=1)
            student.settle()
            select.select_option(index=0)
            student.settle()
    _click(student, table.locator("button").first)
    student.shot(table, "trace-table")


def _use_lab(student: Student, lab: Any) -> None:
    """The SPF/DKIM/DMARC lab: check as Run All left it, reset, then the records of
    exercise 08.spf-only (SPF mx only, DKIM off, p=reject) and check."""
    _click(student, lab.locator("button", has_text="Check").first)
    assert "Alice" in lab.inner_text()
    _click(student, lab.locator("button", has_text="Reset").first)
    spf = lab.locator(".widget-combobox input, .widget-text input").first
    spf.fill("v=spf1 mx -all")
    spf.press("Enter")
    student.settle()
    dkim = lab.locator(".widget-checkbox input").first
    if dkim.is_checked():
        dkim.click()
        student.settle()
    lab.locator("select").first.select_option(label="reject")
    student.settle()
    _click(student, lab.locator("button", has_text="Check").first)
    student.shot(lab, "lab")


def _use_every_widget(student: Student) -> None:
    """Use each view of the notebook at least once, by its kind."""
    kinds = {
        "stepper": _use_stepper,
        "console": _use_console,
        "mxeditor": _use_mx_editor,
        "tracetable": _use_trace_table,
        "mailauthlab": _use_lab,
    }
    for kind, use in kinds.items():
        for view in student.views(kind).all():
            use(student, view)
    for kind in ("wireview", "tlsinspector"):
        for number, view in enumerate(student.views(kind).all(), 1):
            _use_capture_view(student, view, f"{kind}-{number}")


# ------------------------------------------------------------------------------ exercises

def _answer_cells(name: str) -> list[tuple[int, str, str]]:
    """(cell index, exercise key, the cell's code) of every answer cell of ``name``."""
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    found = []
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        match = re.search(r'ui\.exercise\("([^"]+)"\)\.check\(', source)
        if cell["cell_type"] == "code" and match:
            found.append((index, match.group(1), source))
    return found


def _feedback(output: str, key: str, right: bool) -> None:
    assert f"(exercise {key})" in output, output[:300]
    if right:
        assert "✔ Right!" in output, output[:300]
    else:
        assert "✘ Not quite." in output and "Right!" not in output, output[:300]


def _check_live_exercises_first(student: Student, name: str) -> None:
    """The exercises that read the world say "not quite" while it is not done yet."""
    for index, key, _ in _answer_cells(name):
        if key in LIVE:
            _feedback(student.run_cell(index), key, right=False)


def _answer_every_exercise(student: Student, name: str) -> list[str]:
    keys = []
    for index, key, source in _answer_cells(name):
        keys.append(key)
        if key in ANSWERS:
            wrong, right = ANSWERS[key]
            typed = source.replace("answer = None", "answer = {}")
            assert typed != source, source
            _feedback(student.run_cell(index, typed.format(wrong)), key, right=False)
            _feedback(student.run_cell(index, typed.format(right)), key, right=True)
            continue
        assert key in LIVE, key  # checked "not quite" before the widgets were used
        if key == "03.break-it":
            _feedback(student.run_cell(index, BREAK_IT), key, right=True)
            continue
        if key == "02.by-hand":
            _by_hand(student, student.views("console").first)
        # 01.prefer-backup and 08.spf-only: the MX editor and the lab were used above
        _feedback(student.run_cell(index), key, right=True)
    return keys


# ------------------------------------------------------------------------------ the test

def _stored_views(name: str) -> int:
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in cells if c["cell_type"] == "code" for o in c["outputs"])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_students_path(name: str, lab: Lab, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stem = name.removesuffix(".ipynb")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    student = Student(page, stem)
    page.on("console", lambda m: student.console_errors.append(m.text)
            if m.type == "error" else None)
    page.on("pageerror", lambda e: student.console_errors.append(str(e)))
    try:
        # 1. open fresh: the stored widgets show their views, before anything runs
        page.goto(f"{lab.url}/lab/tree/notebooks/{name}?reset&token={lab.token}")
        page.wait_for_selector(f"{_PANEL} .jp-CodeCell", timeout=60_000)
        page.wait_for_function(f"() => ({_STATUS})() === 'idle'", timeout=60_000)
        stored = _stored_views(name)
        top_views = (f"{_PANEL} .jp-OutputArea-output "
                     ".simsmtp-view:not(.simsmtp-view .simsmtp-view)")
        deadline = time.monotonic() + 60  # widget views render asynchronously
        while page.locator(top_views).count() < stored and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert page.locator(top_views).count() == stored, (
            f"before running: {page.locator(top_views).count()} of {stored} widgets shown; "
            f"{student.problems()}")
        assert student.wait_rendered() == [], "before running"
        page.screenshot(path=str(SCREENSHOTS / f"{stem}-fresh.png"), full_page=True)

        # 2. Run All
        try:
            student.run_all()
        finally:
            page.screenshot(path=str(SCREENSHOTS / f"{stem}.png"))
        assert student.wait_rendered() == []
        views = page.locator(top_views)
        assert views.count() == stored
        for index in range(views.count()):
            box = views.nth(index).bounding_box()
            assert box is not None and box["height"] > 20, f"widget {index} is empty"
            student.shot(views.nth(index), f"widget-{index + 1}")

        # 3. read it
        assert _readable(student) == []

        # 4. use every widget, 5. answer every exercise wrong and right
        _check_live_exercises_first(student, name)
        _use_every_widget(student)
        keys = _answer_every_exercise(student, name)
        assert 2 <= len(keys) <= 4

        # 6. nothing went wrong on the way
        assert student.wait_rendered() == []
        assert _readable(student) == []
        page.screenshot(path=str(SCREENSHOTS / f"{stem}-used.png"))

        # 7. saved, closed and opened again (its kernel gone): the widgets still show
        if stored:
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function(  # the tab's dirty mark goes once it is saved
                "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')",
                timeout=30_000)
            lab.stop_kernels()
            again = browser.new_page(viewport={"width": 1400, "height": 1000})
            reopened = Student(again, stem)
            again.on("console", lambda m: reopened.console_errors.append(m.text)
                     if m.type == "error" else None)
            try:
                again.goto(f"{lab.url}/lab/tree/notebooks/{name}?reset&token={lab.token}")
                again.wait_for_selector(f"{_PANEL} .jp-CodeCell", timeout=60_000)
                deadline = time.monotonic() + 60
                while again.locator(top_views).count() < stored and \
                        time.monotonic() < deadline:
                    again.wait_for_timeout(250)
                assert again.locator(top_views).count() == stored, reopened.problems()
                assert reopened.wait_rendered() == [], "after saving and opening again"
            finally:
                again.close()
    finally:
        page.close()
        lab.stop_kernels()
