"""The map of the world, Bob's inbox and the side-by-side view, in a real JupyterLab in a
real Chromium: each renders, reacts to a click, and draws its text at 10 px or more.

It reuses the JupyterLab and Chromium of ``test_notebooks_in_chromium.py`` (its fixtures
and helpers are imported, not copied): a notebook written for this test into the lab's
copy of ``notebooks/`` boots a world, lets Alice send her message with STARTTLS and once
in clear, lets Mallory spoof Alice under ``p=quarantine``, and shows the three views.
Screenshots go to ``artifacts/screenshots/views-*.png`` (gitignored).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import test_notebooks_in_chromium as chromium
from tests.browser.test_notebooks_in_chromium import (
    SCREENSHOTS,
    Lab,
    _open,
    _problems,
    _run_all,
    _shot,
    _widgets,
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
net.start()


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

#: The smallest font size (px) of any element with text of its own inside ``root``.
_MIN_FONT = """(root) => {
    let smallest = 1000;
    for (const el of root.querySelectorAll('*')) {
        const own = Array.from(el.childNodes).some(
            n => n.nodeType === 3 && n.textContent.trim() !== '');
        if (!own || el.getClientRects().length === 0) continue;
        smallest = Math.min(smallest, parseFloat(getComputedStyle(el).fontSize));
    }
    return smallest;
}"""


def _write_notebook(lab: Lab) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    course = nbformat.read(lab.root / "notebooks" / "00_start_here.ipynb", as_version=4)
    for key in ("kernelspec", "language_info"):  # as the course's notebooks have them
        notebook.metadata[key] = course.metadata[key]
    nbformat.write(notebook, lab.root / "notebooks" / NOTEBOOK)


def _accept_kernel_dialog(page: Any) -> None:
    """A notebook JupyterLab has never run may ask which kernel to start: the one named."""
    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=8_000)
    except Exception:  # no dialog: nothing to do (Playwright's TimeoutError)
        return
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)


def _wait_text(page: Any, selector: str, text: str, timeout: int = 15_000) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); "
        "return e !== null && e.innerText.includes(t); }", arg=[selector, text],
        timeout=timeout)


def test_each_view_renders_and_reacts_to_a_click(lab: Lab, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _write_notebook(lab)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open(page, lab, NOTEBOOK)
        _accept_kernel_dialog(page)
        try:
            _run_all(page)
        finally:
            page.screenshot(path=str(SCREENSHOTS / "views-notebook.png"))
        widgets = _widgets(page)
        page.wait_for_selector(".simsmtp-sidebyside", timeout=30_000)
        assert _problems(page) == []
        assert widgets.count() == 3
        for selector in (".simsmtp-worldmap", ".simsmtp-inbox", ".simsmtp-sidebyside"):
            view = page.locator(selector).first
            box = view.bounding_box()
            assert box is not None and box["height"] > 100, selector
            assert view.evaluate(_MIN_FONT) >= 10, f"text under 10 px in {selector}"

        # the map: next ▶ shows step 1 on the map; a click on a host shows its story
        worldmap = page.locator(".simsmtp-worldmap").first
        assert "who can reach whom" in worldmap.locator(".simsmtp-worldmap-svg").inner_text()
        _shot(page, worldmap, SCREENSHOTS / "views-worldmap.png")
        worldmap.locator("button", has_text="next ▶").click()
        _wait_text(page, ".simsmtp-worldmap .simsmtp-worldmap-svg", "Step 1 · submission")
        _wait_text(page, ".simsmtp-worldmap .simsmtp-worldmap-detail", "AUTH PLAIN")
        worldmap.locator(".simsmtp-worldmap-host", has_text="mail.anotherdomain.org").click()
        _wait_text(page, ".simsmtp-worldmap .simsmtp-worldmap-detail",
                   "Its last conversation")
        _shot(page, worldmap, SCREENSHOTS / "views-worldmap-clicked.png")

        # the inbox: open Mallory's spoof in Junk; the first tab says why it is there
        inbox = page.locator(".simsmtp-inbox").first
        assert "Urgent: please wire the money today" in inbox.inner_text()
        inbox.locator(".simsmtp-inbox-open").first.click()
        _wait_text(page, ".simsmtp-inbox .simsmtp-inbox-message", "In Junk because")
        assert "dmarc=fail" in inbox.locator(".simsmtp-inbox-message").inner_text()
        inbox.locator(".lm-TabBar-tab", has_text="Received: chain").click()
        _wait_text(page, ".simsmtp-inbox .simsmtp-inbox-message", "Hop 1")
        _shot(page, inbox, SCREENSHOTS / "views-inbox.png")

        # side by side: untick the key log, the names of the encrypted steps go
        sbs = page.locator(".simsmtp-sidebyside").first
        body = sbs.locator(".simsmtp-sidebyside-body")
        assert "inside (read with the key log" in body.inner_text()
        assert "MAIL FROM:<alice@example.com>" in body.inner_text()
        _shot(page, sbs, SCREENSHOTS / "views-sidebyside.png")
        sbs.locator(".simsmtp-sidebyside-keys input").click()
        page.wait_for_function(
            "() => !document.querySelector('.simsmtp-sidebyside-body')"
            ".innerText.includes('inside (read with the key log')", timeout=15_000)
        assert "encrypted record" in body.inner_text()
        assert _problems(page) == []
    finally:
        page.close()
        lab.stop_kernels()
