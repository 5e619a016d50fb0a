"""Notebook 05b (MTA-STS, DANE, TLS-RPT) in real JupyterLab and Chromium, as the other
notebooks are (its name is outside the NN_ glob of test_notebooks_in_chromium)."""

from __future__ import annotations

from typing import Any

from tests.browser import test_notebooks_in_chromium as chromium
from tests.browser.test_notebooks_in_chromium import browser, lab  # noqa: F401 (fixtures)


def test_notebook_05b_runs_in_jupyterlab(lab: chromium.Lab,  # noqa: F811
                                         browser: Any) -> None:  # noqa: F811
    chromium.test_notebook_runs_in_jupyterlab_and_every_widget_renders(
        "05b_mta_sts_dane.ipynb", lab, browser)
