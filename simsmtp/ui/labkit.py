"""The instructor's kit: the students' copy of the notebooks, an nbgrader source version,
and the answer key, all made from the notebooks and the exercise registry.

::

    python -m simsmtp.ui.labkit student-copy OUT   # OUT/student, nbgrader, answer-key.md
    python -m simsmtp.ui.labkit answer-key key.md   # the answer key alone

In the notebooks of the repository each exercise is two cells, each naming the
exercise: the question (``ui.exercise("04.base64")``; its folded hint and solution show
under it) and the answer (``answer = None ...`` then
``ui.exercise("04.base64").check(answer)``, or
``ui.exercise("01.prefer-backup").check(net)`` for an exercise that checks the running
world). The copy made here:

* **student/**: the question cells call :func:`student_exercise` instead (the question and
  the hint, no solution) and their stored outputs are drawn again without the solution;
  every cell keeps its other outputs (students see the notebook as executed). Each
  exercise carries the cell metadata nbgrader reads (``nbgrader.grade_id``, ``solution``,
  ``grade``, ``locked``, ``points``, ``schema_version`` 3): the question is a locked cell,
  the answer an *autograded answer* cell, and after it comes an *autograder tests* cell
  worth one point, whose hidden test was stripped as ``nbgrader generate_assignment``
  strips it. So the copy runs top to bottom (*Run All*) as the originals do.
* **nbgrader/**: the same notebooks (questions without solutions too) as an nbgrader
  *source* assignment
  (``source/simsmtp/``): the answer between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` (the accepted answer, checked with the exercise's own check), the
  hidden test (``assert ui.exercise("04.base64").check(answer).correct``) between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, and an ``nbgrader_config.py``
  whose stub is the students' line ``answer = None   # your answer here``.
* **answer-key.md**: every exercise with its question, hint, accepted answer and
  solution, notebook by notebook: for the instructor, never for the students.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .exercises import Exercise, exercise

#: The question cell of an exercise in the course's notebooks: ``ui.exercise("KEY")``.
QUESTION = re.compile(r'^\s*ui\.exercise\("(?P<key>[^"]+)"\)\s*$')
#: The last line of an answer cell, ``ui.exercise("KEY").check(ARG)``: the exercise and
#: what its check is given.
CHECK = re.compile(r'^\s*ui\.exercise\("(?P<key>[^"]+)"\)\.check\((?P<arg>[^)]*)\)\s*$')
#: The line a student replaces with the answer.
ANSWER_LINE = "answer = None   # your answer here"
#: nbgrader's cell metadata schema.
SCHEMA_VERSION = 3
#: Marks nbgrader strips from the students' version (its default ``solution_delimiters``
#: and ``hidden_tests_delimiters``, nbgrader.preprocessors).
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"

NBGRADER_CONFIG = f'''# nbgrader configuration for the simsmtp course
# (made by python -m simsmtp.ui.labkit).
# Put this directory's source/ under your nbgrader course directory, then:
#   nbgrader generate_assignment simsmtp && nbgrader release_assignment simsmtp
c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.root = "."
# What a student's answer cell starts as: the line the course's notebooks have.
c.ClearSolutions.code_stub = {{"python": "{ANSWER_LINE}"}}
'''


class LabKitError(Exception):
    """A problem with the input or output of the kit, said in one line."""


def student_exercise(key: str) -> Exercise:
    """The exercise ``key`` as the students' copy shows it: question and hint, no
    solution (the answers are in the instructor's answer key)."""
    return dataclasses.replace(exercise(key), solution="")


def expected_answer(ex: Exercise) -> Any:
    """The answer the exercise's own check accepts, for the answer key and the nbgrader
    source (``None`` when the check reads the running world instead of a value).

    The course's checkers (:func:`~simsmtp.ui.exercises.text`, ``choice``, ``number``,
    ``sequence``) keep what they accept; each candidate is tried with the check itself,
    so only an answer the check really accepts is returned.
    """
    checker = ex.checker
    names = getattr(getattr(checker, "__code__", None), "co_freevars", ())
    cells = getattr(checker, "__closure__", None) or ()
    candidates: list[Any] = []
    for name, cell in zip(names, cells, strict=False):
        if name not in ("correct", "expected", "accepted"):
            continue
        value = cell.cell_contents
        if isinstance(value, set | frozenset):
            candidates += sorted(value, key=str)
        else:
            candidates.append(value)
    for candidate in candidates:
        if ex.check(candidate).correct:
            return candidate
    return None


# ------------------------------------------------------------------------------ notebooks

def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _meta(grade_id: str, *, solution: bool = False, grade: bool = False,
          locked: bool = False, points: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": SCHEMA_VERSION, "solution": solution,
                            "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _grade_id(key: str, part: str) -> str:
    return "ex" + re.sub(r"[^A-Za-z0-9_-]", "_", key) + "-" + part


def _question_outputs(ex: Exercise, count: Any) -> list[dict[str, Any]]:
    return [{"output_type": "execute_result", "execution_count": count, "metadata": {},
             "data": {"text/html": _lines(ex._repr_html_()), "text/plain": _lines(repr(ex))}}]


def _code_cell(source: str, metadata: dict[str, Any], cell_id: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": cell_id[:64],
            "metadata": metadata, "outputs": [], "source": _lines(source)}


def exercise_keys(notebook: dict[str, Any]) -> list[str]:
    """The exercises a notebook asks, in order."""
    return [m.group("key") for cell in notebook.get("cells", [])
            if cell.get("cell_type") == "code" and (m := QUESTION.match(_source(cell)))]


def convert(notebook: dict[str, Any], *, version: str) -> dict[str, Any]:
    """A notebook's ``"student"`` or nbgrader ``"source"`` version (see the module doc)."""
    if version not in ("student", "source"):
        raise ValueError(f"version must be 'student' or 'source', not {version!r}")
    nb = copy.deepcopy(notebook)
    cells: list[dict[str, Any]] = []
    pending: str | None = None  # the exercise whose answer cell comes next
    for cell in nb.get("cells", []):
        source = _source(cell)
        match = QUESTION.match(source) if cell.get("cell_type") == "code" else None
        if match:
            key = match.group("key")
            try:
                exercise(key)
            except KeyError as exc:
                raise LabKitError(str(exc).strip("\"'")) from None
            # both versions: what nbgrader releases from the source is the students' copy
            cell["source"] = _lines(source.replace("ui.exercise(", "ui.student_exercise("))
            cell["outputs"] = _question_outputs(student_exercise(key),
                                                cell.get("execution_count"))
            cell.setdefault("metadata", {})["nbgrader"] = _meta(_grade_id(key, "question"),
                                                                locked=True)
            cells.append(cell)
            pending = key
            continue
        lines = source.rstrip("\n").splitlines()
        check = CHECK.match(lines[-1]) if pending and lines and \
            cell.get("cell_type") == "code" else None
        if pending is None or check is None or check.group("key") != pending:
            cells.append(cell)
            continue
        key, pending = pending, None
        takes_answer = any(line.strip().startswith("answer =") for line in lines)
        if version == "source" and takes_answer:
            value = expected_answer(exercise(key))
            body = [f"{BEGIN_SOLUTION}\n", f"answer = {value!r}\n", f"{END_SOLUTION}\n"]
            cell["source"] = body + [line + "\n" for line in lines
                                     if not line.strip().startswith("answer =")]
            cell["source"][-1] = cell["source"][-1].rstrip("\n")
        cell.setdefault("metadata", {})["nbgrader"] = _meta(
            _grade_id(key, "answer"), solution=takes_answer)
        cells.append(cell)
        test = (f'assert ui.exercise("{key}").check({check.group("arg")}).correct, '
                f'"exercise {key} is not right yet"')
        head = (f"# Autograder cell for exercise {key} (1 point): nbgrader runs its hidden "
                "test\n# when it grades the notebook; it does nothing here.")
        body_ = f"{head}\n{BEGIN_HIDDEN}\n{test}\n{END_HIDDEN}" if version == "source" \
            else head
        grade_id = _grade_id(key, "test")
        cells.append(_code_cell(body_, {"nbgrader": _meta(grade_id, grade=True, locked=True,
                                                          points=1)}, grade_id))
    nb["cells"] = cells
    return nb


def _notebooks(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise LabKitError(f"{directory}: no such directory of notebooks")
    found = sorted(p for p in directory.glob("[0-9][0-9]*_*.ipynb"))
    if not found:
        raise LabKitError(f"{directory}: no course notebooks (NN_name.ipynb) in it")
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabKitError(f"{path}: not a readable notebook ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise LabKitError(f"{path}: not a notebook (no list of cells)")
    return data


def _write(path: Path, notebook: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def answer_key(notebooks: Iterable[Path]) -> str:
    """The answer key (Markdown): every exercise of the notebooks, in order."""
    out = ["# simsmtp: answer key for the exercises", "",
           "For the instructor only: the students' copy has the questions and the hints, "
           "not these answers. Made from the notebooks and the exercises' own checks "
           "(`python -m simsmtp.ui.labkit answer-key`).", ""]
    for path in notebooks:
        keys = exercise_keys(_read(path))
        if not keys:
            continue
        out += [f"## {path.stem}", ""]
        for key in keys:
            ex = exercise(key)
            value = expected_answer(ex)
            accepted = f"`{value!r}`" if value is not None else \
                "no single value: the check reads the running world or accepts several " \
                "forms (see the solution)"
            out += [f"### {key}: {ex.title}", "", f"**Question.** {ex.question}", "",
                    f"**Accepted answer.** {accepted}", ""]
            if ex.hint:
                out += [f"**Hint.** {ex.hint}", ""]
            out += [f"**Solution.** {ex.solution or '(none written)'}", ""]
    return "\n".join(out)


def student_copy(notebooks: Path, out: Path) -> dict[str, list[Path]]:
    """Write ``out/student``, ``out/nbgrader`` and ``out/answer-key.md``.

    Raises:
        LabKitError: ``out`` exists and is not empty, or a notebook cannot be read.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LabKitError(f"{out}: already exists and is not empty; give a new directory")
    paths = _notebooks(notebooks)
    written: dict[str, list[Path]] = {"student": [], "nbgrader": [], "key": []}
    for path in paths:
        notebook = _read(path)
        student = out / "student" / path.name
        _write(student, convert(notebook, version="student"))
        source = out / "nbgrader" / "source" / "simsmtp" / path.name
        _write(source, convert(notebook, version="source"))
        written["student"].append(student)
        written["nbgrader"].append(source)
    (out / "nbgrader" / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    key = out / "answer-key.md"
    key.write_text(answer_key(paths), encoding="utf-8")
    written["key"].append(key)
    return written


# ------------------------------------------------------------------------------ command

def _default_notebooks() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simsmtp.ui.labkit student-copy OUT`` | ``answer-key [FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m simsmtp.ui.labkit",
        description="The instructor's kit: the students' copy of the notebooks (no "
                    "solutions, nbgrader metadata), an nbgrader source version, the answer "
                    "key.")
    sub = parser.add_subparsers(dest="command", required=True)
    copy_ = sub.add_parser("student-copy", help="write OUT/student (hand it out), "
                           "OUT/nbgrader and OUT/answer-key.md")
    copy_.add_argument("out", type=Path, help="a new (or empty) directory")
    key_ = sub.add_parser("answer-key", help="write the answer key (Markdown)")
    key_.add_argument("out", type=Path, nargs="?", help="the file (default: print it)")
    for p in (copy_, key_):
        p.add_argument("--notebooks", type=Path, default=_default_notebooks(),
                       help="the course's notebooks (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "student-copy":
            written = student_copy(args.notebooks, args.out)
            print(f"students' copy: {args.out / 'student'} ({len(written['student'])} "
                  "notebooks, no solutions): hand this directory out")
            print(f"nbgrader source: {args.out / 'nbgrader'} (source/simsmtp/, "
                  "nbgrader_config.py)")
            print(f"answer key: {args.out / 'answer-key.md'} (for you only)")
        else:
            text = answer_key(_notebooks(args.notebooks))
            if args.out is None:
                print(text)
            else:
                args.out.write_text(text, encoding="utf-8")
                print(f"answer key: {args.out}")
    except (LabKitError, OSError) as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["LabKitError", "answer_key", "convert", "exercise_keys", "expected_answer",
           "main", "student_copy", "student_exercise"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
