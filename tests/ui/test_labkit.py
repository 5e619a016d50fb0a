"""The instructor's kit: the students' copy, the nbgrader source, the answer key; and the
Debian packages a Binder session installs."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import pytest

from simsmtp.ui.exercises import exercise
from simsmtp.ui.labkit import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    LabKitError,
    answer_key,
    convert,
    exercise_keys,
    expected_answer,
    main,
    student_copy,
    student_exercise,
)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _code(source: str, outputs: list[Any] | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": 1, "metadata": {},
            "outputs": outputs or [], "source": source}


def _notebook() -> dict[str, Any]:
    question = exercise("04.base64")
    shown = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"text/html": question._repr_html_(), "text/plain": repr(question)}}
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# four"},
                      _code('ui.exercise("04.base64")', [shown]),
                      _code('answer = None   # your answer here\n'
                            'ui.exercise("04.base64").check(answer)'),
                      _code('ui.exercise("01.prefer-backup")'),
                      _code('# make your change first, then:\n'
                            'ui.exercise("01.prefer-backup").check(net)'),
                      _code("net.stop()")],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def test_the_students_version_has_questions_hints_and_metadata_but_no_solution() -> None:
    original = _notebook()
    assert "Solution (try first!)" in json.dumps(original)
    student = convert(original, version="student")
    text = json.dumps(student)
    assert "Solution (try first!)" not in text
    assert html.escape(exercise("04.base64").solution, quote=True) not in text
    assert exercise("04.base64").hint.replace('"', '\\"') in text or "Hint" in text
    cells = student["cells"]
    assert [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cells] == [
        None, "ex04_base64-question", "ex04_base64-answer", "ex04_base64-test",
        "ex01_prefer-backup-question", "ex01_prefer-backup-answer",
        "ex01_prefer-backup-test", None]
    question, answer, test = cells[1:4]
    assert _source(question) == 'ui.student_exercise("04.base64")'
    assert question["metadata"]["nbgrader"]["locked"] is True
    assert answer["metadata"]["nbgrader"]["solution"] is True
    assert test["metadata"]["nbgrader"] == {"grade": True, "grade_id": "ex04_base64-test",
                                            "locked": True, "schema_version": 3,
                                            "solution": False, "task": False, "points": 1}
    assert BEGIN_HIDDEN not in _source(test) and "assert" not in _source(test)
    assert cells[5]["metadata"]["nbgrader"]["solution"] is False  # checks the world
    assert original["cells"][1]["source"] == 'ui.exercise("04.base64")'  # untouched


def test_the_nbgrader_source_holds_the_answer_and_the_hidden_test() -> None:
    source = convert(_notebook(), version="source")
    answer, test = source["cells"][2:4]
    assert _source(answer) == f"{BEGIN_SOLUTION}\nanswer = 'builder'\n### END SOLUTION\n" \
                              'ui.exercise("04.base64").check(answer)'
    assert f'{BEGIN_HIDDEN}\nassert ui.exercise("04.base64").check(answer).correct' \
        in _source(test)
    assert 'assert ui.exercise("01.prefer-backup").check(net).correct' \
        in _source(source["cells"][6])
    from simsmtp import ui  # the hidden test passes with the accepted answer, not without
    scope: dict[str, Any] = {"ui": ui}
    exec(_source(answer) + "\n" + _source(test), scope)
    scope["answer"] = None
    with pytest.raises(AssertionError, match=r"04\.base64 is not right yet"):
        exec(_source(test), scope)
    with pytest.raises(ValueError):
        convert(_notebook(), version="teacher")


def test_an_answer_cell_is_paired_only_with_the_question_it_names() -> None:
    notebook = _notebook()
    notebook["cells"][2]["source"] = 'ui.exercise("04.what-leaks").check(answer)'
    cells = convert(notebook, version="student")["cells"]
    grades = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cells]
    assert "ex04_base64-answer" not in grades and "ex04_base64-test" not in grades
    assert "ex01_prefer-backup-test" in grades
    old = {"cells": [_code('ex = ui.exercise("04.base64")\nex')]}  # the former shape
    assert exercise_keys(old) == [] and exercise_keys(_notebook()) == [
        "04.base64", "01.prefer-backup"]


def test_expected_answers_are_accepted_by_the_exercises_own_checks() -> None:
    keys = [k for path in sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))
            for k in exercise_keys(json.loads(path.read_text()))]
    assert len(keys) >= 20 and {"05b.first-contact", "07b.idle"} <= set(keys)
    found = 0
    for key in keys:
        value = expected_answer(exercise(key))
        if value is not None:
            assert exercise(key).check(value).correct, key
            found += 1
    assert found >= len(keys) - 8
    assert student_exercise("04.base64").solution == "" and \
        student_exercise("04.base64").hint == exercise("04.base64").hint


def test_student_copy_writes_three_things_and_leaks_no_solution(tmp_path: Path) -> None:
    out = tmp_path / "kit"
    written = student_copy(NOTEBOOKS, out)
    names = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))
    assert sorted(p.name for p in written["student"]) == names
    assert (out / "nbgrader" / "nbgrader_config.py").read_text().count("answer = None") == 1
    key = (out / "answer-key.md").read_text()
    for path in written["student"]:
        text = path.read_text()
        notebook = json.loads(text)
        for ex_key in exercise_keys(json.loads((NOTEBOOKS / path.name).read_text())):
            solution = exercise(ex_key).solution
            assert json.dumps(html.escape(solution, quote=True))[1:-1] not in text, ex_key
            assert f"### {ex_key}: " in key
        graded = [c for c in notebook["cells"]
                  if c["metadata"].get("nbgrader", {}).get("grade")]
        assert len(graded) == len(exercise_keys(json.loads((NOTEBOOKS / path.name)
                                                            .read_text())))
    with pytest.raises(LabKitError, match="not empty"):
        student_copy(NOTEBOOKS, out)
    with pytest.raises(LabKitError, match="no such directory"):
        student_copy(tmp_path / "nowhere", tmp_path / "other")
    assert "**Accepted answer.** `587`" in answer_key([NOTEBOOKS / "00_start_here.ipynb"])


def test_the_command_says_what_went_wrong_in_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    bad = tmp_path / "notebooks"
    bad.mkdir()
    (bad / "00_broken.ipynb").write_text("{not json")
    assert main(["student-copy", str(tmp_path / "out"), "--notebooks", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: ") and "00_broken.ipynb: not a readable notebook" in err
    assert err.count("\n") == 1
    assert main(["answer-key", str(tmp_path / "key.md")]) == 0
    assert (tmp_path / "key.md").read_text().startswith("# simsmtp: answer key")


def test_the_students_copy_runs_top_to_bottom(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient  # with JupyterLab (nbconvert runs notebooks with it)
    import nbformat

    written = student_copy(NOTEBOOKS, tmp_path / "kit")
    path = next(p for p in written["student"] if p.name.startswith("00_"))
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(  # the kernel imports this checkout
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    shown = json.dumps(nbformat.writes(notebook))
    assert "No answer yet" in shown and "Solution (try first!)" not in shown


def test_binder_installs_the_outside_tools_the_course_suggests() -> None:
    packages = (ROOT / "binder" / "apt.txt").read_text().split()
    # dig, swaks, tshark, openssl s_client, and a telnet or netcat to type SMTP by hand
    assert {"bind9-dnsutils", "swaks", "tshark", "openssl"} <= set(packages)
    assert {"telnet", "netcat-openbsd"} & set(packages)
    assert all(p == p.lower() and " " not in p for p in packages)
