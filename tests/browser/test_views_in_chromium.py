"""The map of the world, Bob's inbox and the side-by-side view, in a real JupyterLab in a
real Chromium: each renders, reacts to a click, shows no widget error, and is readable (text
at 10 px or more, colours at WCAG AA contrast, as ``_readable`` measures them).

It reuses the JupyterLab, the Chromium and the ``Student`` of ``test_notebooks_in_chromium.py``
(imported, not copied): a notebook written for this test into the lab's copy of
``notebooks/`` boots a world, lets Alice send her message with STARTTLS and once in clear,
lets Mallory spoof Alice under ``p=quarantine``, and shows the three views.
Screenshots go to ``artifacts/screenshots/views-*.png`` (gitignored).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import test_notebooks_in_chromium as chromium
from tests.browser.test_notebooks_in_chromium import (
    _PANEL,
    _STATUS,
    SCREENSHOTS,
    Lab,
    Student,
    _click,
    _readable,
)

#: The same JupyterLab and Chromium fixtures (a lab for this module, Debian's Chromium).
lab = chromium.lab
browser = chromium.browser

pytestmark = [pytest.mark.slow, pytest.mark.interop]

NOTEBOOK = "zz_views_under_test.ipynb"

CELLS = [
    """from simsmtp import ui
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

world = World.seed_world()
net = world.start()


def alice_sends():
    net.submit(seed_message(world), sender="alice@example.com",
               recipients=["bob@anotherdomain.org"], user="alice@example.com",
               password="wonderland")
    net.wait(net.idle)
    ui.wait_closed(net)


alice_sends()                                        # relayed with STARTTLS
world.host("mail.example.com").policy.outbound_tls = "none"
net.agents["mail.example.com"].tls_policy = "none"
alice_sends()                                        # the same message, in clear
world.domains["example.com"].dmarc = "v=DMARC1; p=quarantine"
spoof = ui.mallory_sends(net)                        # into Bob's Junk folder""",
    "ui.WorldMap(net)",
    'ui.Inbox(net, "bob@anotherdomain.org", folder="Junk")',
    "ui.SideBySide(net)",
]

def _write_notebook(lab: Lab) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    course = nbformat.read(lab.root / "notebooks" / "00_start_here.ipynb", as_version=4)
    for key in ("kernelspec", "language_info"):  # as the course's notebooks have them
        notebook.metadata[key] = course.metadata[key]
    nbformat.write(notebook, lab.root / "notebooks" / NOTEBOOK)


def _open(student: Student, lab: Lab) -> None:
    """Open the notebook; should JupyterLab ask which kernel to start, the one named."""
    page = student.page
    page.goto(f"{lab.url}/lab/tree/notebooks/{NOTEBOOK}?reset&token={lab.token}")
    page.wait_for_selector(f"{_PANEL} .jp-CodeCell", timeout=60_000)
    page.wait_for_function(
        f"() => document.querySelector('.jp-Dialog .jp-mod-accept') !== null"
        f" || ({_STATUS})() === 'idle'", timeout=60_000)
    if page.locator(".jp-Dialog .jp-mod-accept").count():
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
        page.wait_for_function(f"() => ({_STATUS})() === 'idle'", timeout=60_000)


def _wait_text(view: Any, selector: str, text: str, timeout: int = 15_000) -> None:
    """Wait until ``selector`` inside ``view`` shows ``text``."""
    element = view.locator(selector).first.element_handle(timeout=timeout)
    view.page.wait_for_function("([e, t]) => e.innerText.includes(t)", arg=[element, text],
                                timeout=timeout)


def test_each_view_renders_and_reacts_to_a_click(lab: Lab, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _write_notebook(lab)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    student = Student(page, "views")
    page.on("console", lambda m: student.console_errors.append(m.text)
            if m.type == "error" else None)
    page.on("pageerror", lambda e: student.console_errors.append(str(e)))
    try:
        _open(student, lab)
        try:
            student.run_all()
        finally:
            page.screenshot(path=str(SCREENSHOTS / "views-notebook.png"))
        assert student.wait_rendered() == []
        top_views = student.page.locator(
            f"{_PANEL} .jp-OutputArea-output .simsmtp-view:not(.simsmtp-view .simsmtp-view)")
        assert top_views.count() == 3
        for kind in ("worldmap", "inbox", "sidebyside"):
            assert student.views(kind).count() == 1, kind
            box = student.views(kind).first.bounding_box()
            assert box is not None and box["height"] > 100, kind
        unreadable = _readable(student)
        assert unreadable == [], "\n".join(unreadable)

        # the map: next ▶ shows step 1 on the map; a click on a host shows its story
        worldmap = student.views("worldmap").first
        assert "who can reach whom" in worldmap.locator(".simsmtp-worldmap-svg").inner_text()
        student.shot(worldmap, "worldmap")
        _click(student, worldmap.locator("button", has_text="next ▶"))
        _wait_text(worldmap, ".simsmtp-worldmap-svg", "Step 1 · submission")
        _wait_text(worldmap, ".simsmtp-worldmap-detail", "AUTH PLAIN")
        _click(student, worldmap.locator(".simsmtp-worldmap-host",
                                         has_text="mail.anotherdomain.org"))
        _wait_text(worldmap, ".simsmtp-worldmap-detail", "Its last conversation")
        student.shot(worldmap, "worldmap-clicked")

        # the inbox: open Mallory's spoof in Junk; the first tab says why it is there
        inbox = student.views("inbox").first
        assert "Urgent: please wire the money today" in inbox.inner_text()
        _click(student, inbox.locator(".simsmtp-inbox-open").first)
        _wait_text(inbox, ".simsmtp-inbox-message", "In Junk because")
        assert "dmarc=fail" in inbox.locator(".simsmtp-inbox-message").inner_text()
        inbox.locator(".simsmtp-tab-buttons .widget-toggle-button",
                      has_text="Received: chain").click()
        student.settle()
        _wait_text(inbox, ".simsmtp-inbox-message", "Hop 1")
        student.shot(inbox, "inbox")

        # side by side: untick the key log, the names of the encrypted steps go
        sbs = student.views("sidebyside").first
        body = sbs.locator(".simsmtp-sidebyside-body")
        assert "inside (read with the key log" in body.inner_text()
        assert "MAIL FROM:<alice@example.com>" in body.inner_text()
        student.shot(sbs, "sidebyside")
        keys = sbs.locator(".simsmtp-sidebyside-keys input")
        assert keys.is_checked()
        keys.click()
        student.settle()
        page.wait_for_function(
            "() => !document.querySelector('.simsmtp-sidebyside-body')"
            ".innerText.includes('inside (read with the key log')", timeout=15_000)
        assert "encrypted record" in body.inner_text()
        student.shot(sbs, "sidebyside-no-keys")

        # after the clicks: still no widget error, still readable
        assert student.wait_rendered() == []
        unreadable = _readable(student)
        assert unreadable == [], "\n".join(unreadable)
        page.screenshot(path=str(SCREENSHOTS / "views-used.png"))
    finally:
        page.close()
        lab.stop_kernels()
