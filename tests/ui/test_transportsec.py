"""Notebook 05b's helpers and exercises (MTA-STS, DANE, TLS-RPT), and the notebook itself
follows the course's rules (its name, 05b, is outside test_notebooks' NN_ glob)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simsmtp import ui
from simsmtp.ui.exercises import exercise, exercises_for
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

from . import test_notebooks

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05b_mta_sts_dane.ipynb"

ANSWERS = {
    "05b.first-contact": ("(b)", "a"),
    "05b.dnssec-less": ("B", "a"),
    "05b.result-type": (" STARTTLS-not-supported ", "validation-failure"),
}


def test_three_exercises_right_and_wrong() -> None:
    assert [e.key for e in exercises_for("05b")] == list(ANSWERS)
    for key, (right, wrong) in ANSWERS.items():
        ex = exercise(key)
        assert ex.check(right).correct
        bad = ex.check(wrong)
        assert not bad.correct and bad.hint == ex.hint and bad.message
        assert not ex.check(None).answered


def test_security_text_and_report_tell_the_story() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        world.host("mail.example.com").policy.mta_sts = True
        net.submit(seed_message(world), sender="alice@example.com",
                   recipients="bob@anotherdomain.org", user="alice", password="wonderland")
        net.deliver()
        mark = len(world.trace)
        net.strip_starttls()
        net.submit(seed_message(world), sender="alice@example.com",
                   recipients="bob@anotherdomain.org", user="alice", password="wonderland")
        net.deliver()
        text = ui.security_text(world, since=mark)
        assert "mtasts.cached" in text and "mtasts.fetched" not in text
        assert "4.7.4 TLS is required by policy but the server did not offer STARTTLS; " \
               "demanded by the MTA-STS policy of anotherdomain.org (mode enforce)" in text
        report = ui.tls_report_text(net, "anotherdomain.org")
        assert "policy sts: 1 successful, 1 failed session(s)" in report
        assert "1 x starttls-not-supported at mail.anotherdomain.org" in report


@pytest.mark.parametrize("check", [
    test_notebooks.test_stored_executed_in_one_run_without_errors,
    test_notebooks.test_opens_with_goals_and_rfcs_and_ends_with_exercises,
    test_notebooks.test_few_ignored_outputs_and_nothing_machine_specific,
    test_notebooks.test_widget_state_is_stored,
])
def test_notebook_05b_follows_the_rules(check) -> None:  # type: ignore[no-untyped-def]
    check(NOTEBOOK)


def test_notebook_05b_is_in_the_readme() -> None:
    readme = NOTEBOOK.parents[1] / "README.md"
    assert "`05b_mta_sts_dane`" in readme.read_text()
