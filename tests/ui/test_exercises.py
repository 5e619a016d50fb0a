"""Every exercise says right or wrong, gives a hint, and keeps its solution folded."""

from __future__ import annotations

import re
from typing import Any

import pytest

from simsmtp.ui.exercises import EXERCISES, Exercise, Feedback, exercise, exercises_for
from simsmtp.ui.mx import MXEditor
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE

#: A right and a wrong answer for every exercise that takes a typed answer.
ANSWERS: dict[str, tuple[Any, Any]] = {
    "00.submission-port": (587, 25),
    "00.dns-questions": ("2", 1),
    "00.who-stored": (" Mail.AnotherDomain.org ", "mail.example.com"),
    "01.order": ("mx-a.example.net, mx-b.example.net, mx-c.example.net",
                 ["mx-b.example.net", "mx-a.example.net", "mx-c.example.net"]),
    "01.null-mx": ("5.1.10", "5.4.4"),
    "03.transient": ("(b)", "a"),
    "03.first-retry": (300, 600),
    "06.ports": ((587, 465), (465, 587)),
    "06.why-no-auth": ("B", "c"),
    "06.relay": (454, 550),
    "07.new": ("new/", "tmp"),
    "07.first-hop": ("mail.example.com", "mail.anotherdomain.org"),
    "07.dele": ("dele", "QUIT"),
}
LIVE = {"01.prefer-backup", "03.break-it"}


def test_every_notebook_has_two_to_four_exercises() -> None:
    for notebook in ("00", "01", "03", "06", "07"):
        assert 2 <= len(exercises_for(notebook)) <= 4, notebook
    mine = {k for k in EXERCISES if k.split(".")[0] in ("00", "01", "03", "06", "07")}
    assert mine == set(ANSWERS) | LIVE


@pytest.mark.parametrize("key", sorted(ANSWERS))
def test_right_wrong_and_unanswered(key: str) -> None:
    ex = exercise(key)
    right, wrong = ANSWERS[key]
    good = ex.check(right)
    assert good.correct and bool(good) and repr(good).startswith("✔ Right!")
    assert good.hint == ""
    bad = ex.check(wrong)
    assert not bad.correct and bad.answered
    assert bad.hint == ex.hint and f"Hint: {ex.hint}" in repr(bad)
    assert bad.message and bad.message != good.message
    none = ex.check(None)
    assert not none.correct and not none.answered and repr(none).startswith("… No answer")


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_solution_and_hint_are_folded(key: str) -> None:
    ex = exercise(key)
    html = ex._repr_html_()
    assert ex.question.replace("'", "&#x27;")[:40] in html
    folds = re.findall(r"<details.*?<summary.*?>(.*?)</summary>(.*?)</details>", html, re.S)
    assert [summary for summary, _ in folds] == ["Hint", "Solution (try first!)"]
    assert ex.solution and ex.hint
    assert "Hint and solution are folded" in repr(ex)


def test_malformed_answers_are_feedback_not_errors() -> None:
    feedback = exercise("06.ports").check("five eight seven")
    assert isinstance(feedback, Feedback) and not feedback.correct
    assert "write two numbers in brackets, like (25, 110)" in feedback.message
    with pytest.raises(KeyError, match=r"00\.submission-port"):
        exercise("00.nope")


@pytest.mark.parametrize(("key", "answer", "advice"), [
    ("00.submission-port", "port five eight seven", "write a number, like 3"),
    ("03.first-retry", [300], "write a number, like 3"),
    ("01.order", 42, "write the names in a list"),
    ("01.prefer-backup", "backup", "give it the running network"),
    ("03.break-it", 7, "give it the running world"),
])
def test_a_wrong_kind_of_answer_gets_plain_words(key: str, answer: Any, advice: str) -> None:
    feedback = exercise(key).check(answer)
    assert not feedback.correct and advice in feedback.message
    for python_words in ("could not convert", "invalid literal", "object is not",
                         "Error", "Traceback"):
        assert python_words not in feedback.message


@pytest.mark.parametrize("key", ["03.transient", "06.why-no-auth", "05.defence", "08.alignment"])
def test_a_non_letter_lists_every_choice_and_gives_nothing_away(key: str) -> None:
    ex = exercise(key)
    feedback = ex.check("maybe")
    assert not feedback.correct
    listed = re.findall(r'"([a-z])"', feedback.message)
    assert len(listed) >= 3 and listed == sorted(listed)
    right = next(letter for letter in listed if ex.check(letter).correct)
    assert right in listed   # the right letter is listed like every other


def test_feedback_names_its_exercise() -> None:
    for key in ("02.pipelining", "02.bounce-to", "00.who-stored"):
        for answer in (None, "x", 1):
            feedback = exercise(key).check(answer)
            assert f"(exercise {key})" in repr(feedback)
            assert f"(exercise {key})" in feedback._repr_html_()


def test_feedback_renders_as_coloured_html() -> None:
    assert "✔ Right!" in Feedback(True, "yes")._repr_html_()
    assert "✘ Not quite." in Feedback(False, "no", "think")._repr_html_()
    assert "No answer yet" in Feedback(False, "go", answered=False)._repr_html_()


def test_registering_twice_is_refused() -> None:
    from simsmtp.ui.exercises import register

    with pytest.raises(ValueError, match="already registered"):
        register(Exercise("00.submission-port", "dup", "?", lambda a: (True, "")))


def test_prefer_backup_reads_the_live_world(backup_net: Any) -> None:
    ex = exercise("01.prefer-backup")
    before = ex.check(backup_net)
    assert not before.correct and "mail.anotherdomain.org first" in before.message
    editor = MXEditor(backup_net)
    editor.add_backup("backup.anotherdomain.org", preference=5)
    assert ex.check(backup_net).correct
    assert not ex.check("backup").correct   # a typed answer is not the world


def test_break_it_follows_the_experiment() -> None:
    ex = exercise("03.break-it")
    world = World.seed_world()
    with world.start(storage="memory") as net:
        assert "no fault rule yet" in ex.check(world).message
        world.faults.add("mail.anotherdomain.org", "MESSAGE", "554 5.7.1 Message rejected",
                         times=1)
        assert "has not fired" in ex.check(net).message
        net.submit(seed_message(world), recipients=["bob@anotherdomain.org"], **ALICE)
        assert net.wait(net.idle, 10)
        result = ex.check(net)
    assert result.correct, result.message
    assert "5.7.1" in result.message
