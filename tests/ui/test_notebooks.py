"""The stored notebooks follow the course's rules (nbval checks their outputs separately).

Every notebook: executed top to bottom in one run and stored with its outputs, no errors,
opens with what the learner will be able to do and links the RFC sections it touches,
ends with 2-4 exercises, each answer cell naming its exercise, and leaves its world running
(the kernel's end stops it); few outputs ignored by nbval; no temporary
paths; the state of its widgets stored so they render before anything runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))  # 07b too
MINE = ["00_start_here", "01_dns_and_mx", "03_when_things_go_wrong", "06_ports_submission_auth",
        "07_bobs_mailbox"]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _code(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict[str, Any]) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_the_course_notebooks_exist() -> None:
    names = {p.stem for p in ALL}
    assert set(MINE) <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_stored_executed_in_one_run_without_errors(path: Path) -> None:
    import nbformat

    nbformat.validate(nbformat.read(path, as_version=4))
    cells = _code(_load(path))
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", _source(cell)
            assert not (output["output_type"] == "stream" and output["name"] == "stderr"), \
                _source(cell)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_opens_with_goals_and_rfcs_and_ends_with_exercises(path: Path) -> None:
    nb = _load(path)
    first = _source(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert "you will be able to" in first.lower()
    assert re.search(r"https://www\.rfc-editor\.org/rfc/rfc\d+", first)
    sources = [_source(c) for c in _code(nb)]
    assert 2 <= sum(re.fullmatch(r'ui\.exercise\("[^"]+"\)', s) is not None
                    for s in sources) <= 4
    assert not any("net.stop()" in s for s in sources)  # Run All leaves every widget live


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_every_answer_cell_names_its_exercise(path: Path) -> None:
    sources = [_source(c) for c in _code(_load(path))]
    shown = [m.group(1) for s in sources
             if (m := re.fullmatch(r'ui\.exercise\("([^"]+)"\)', s))]
    checked = [m.group(1) for s in sources
               for m in re.finditer(r'ui\.exercise\("([^"]+)"\)\.check\(', s)]
    assert shown and checked == shown  # one answer cell per exercise, in order
    assert not any(re.search(r"\bex\b", s) for s in sources)  # no shared variable


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_few_ignored_outputs_and_nothing_machine_specific(path: Path) -> None:
    cells = _code(_load(path))
    ignored = [c for c in cells if "NBVAL_IGNORE_OUTPUT" in _source(c)
               or "NBVAL_SKIP" in _source(c)]
    assert len(ignored) * 4 < len(cells)
    text = json.dumps([c["outputs"] for c in cells])
    assert not re.search(r"/tmp/|/var/folders/|simsmtp-[a-z0-9_]{8}", text)


@pytest.mark.parametrize("name", MINE)
def test_conversations_show_no_secrets(name: str) -> None:
    # (notebooks 4 and 5 show the eavesdropper's view of a plaintext AUTH on purpose)
    cells = _code(_load(NOTEBOOKS / f"{name}.ipynb"))
    text = json.dumps([c["outputs"] for c in cells])
    assert not re.search(r"AUTH (PLAIN|LOGIN) (?!\*\*\*)[A-Za-z0-9+/=]{8,}", text)
    assert "PASS builder" not in text


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_widget_state_is_stored(path: Path) -> None:
    nb = _load(path)
    shown = {o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for c in _code(nb) for o in c["outputs"]
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})}
    if not shown:
        return
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert shown <= set(state)


def test_notebook_zero_maps_every_notebook() -> None:
    first = NOTEBOOKS / "00_start_here.ipynb"
    text = "".join(_source(c) for c in _load(first)["cells"] if c["cell_type"] == "markdown")
    readme = (NOTEBOOKS.parent / "README.md").read_text(encoding="utf-8")
    for path in ALL:
        assert f"({path.name})" in text, path.name
        assert f"`{path.stem}`" in readme, path.name


def test_notebooks_are_small() -> None:
    for path in ALL:
        assert path.stat().st_size < 1_000_000, path.name
