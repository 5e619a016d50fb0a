"""Smoke tests of ``python -m benchmarks``: the command runs and prints every table.

They check the shape of the output (tables, columns, targets), never a timing: the
figures themselves belong to the README's Performance section, not to a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import notebooks
from benchmarks.common import Report, Table, fmt, percentile
from benchmarks.run import SECTIONS, main
from tests.conftest import require_program

ROOT = Path(__file__).resolve().parents[2]


def test_report_prints_tables_then_targets() -> None:
    report = Report()
    report.tables.append(Table("Demo", ["a", "b"], [["x", "1"]], ["a note"]))
    report.target("ratio", 2.5, "x", "≥ 2x", True)
    report.target("missed", 0.5, "x", "≥ 2x", False)
    report.target("not measured", None, "s", "< 1 s", True)
    text = report.markdown()
    assert text.index("### Demo") < text.index("### Targets (issue 7)")
    assert "| a | b |" in text and "| x | 1 |" in text and "- a note" in text
    assert "| ratio | 2.50 x | ≥ 2x | yes |" in text
    assert "| missed | 0.500 x | ≥ 2x | **no** |" in text
    assert "| not measured | n/a | < 1 s | n/a |" in text


def test_fmt_and_percentile() -> None:
    assert fmt(None) == "n/a" and fmt(float("nan"), "ms") == "n/a"
    assert fmt(12345.6, "msg/s") == "12,346 msg/s"
    assert fmt(0.1234) == "0.123"
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 50) == 5.0


def test_no_notebooks_yet(tmp_path: Path) -> None:
    report = Report()
    notebooks.measure(report, directory=tmp_path)
    assert report.tables[0].notes == ["no notebooks yet"]
    assert report.tables[0].rows == []


def test_unknown_section_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])


@pytest.mark.slow
def test_quick_command_prints_every_table(tmp_path: Path) -> None:
    require_program("smtp-source", "postfix")
    require_program("smtp-sink", "postfix")
    figures = tmp_path / "figures.json"
    sections = [s for s in SECTIONS if s != "notebooks"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", ",".join(sections),
         "--scale", "0.01", "--quiet", "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("## simsmtp benchmarks (python -m benchmarks --quick)")
    assert "### Targets (issue 7)" in done.stdout
    data = json.loads(figures.read_text())
    tables = {t["title"].split(" (")[0].split(":")[0]: t for t in data["tables"]}
    assert set(tables) == {"Boot, stop, import, memory", "Server throughput",
                           "Client throughput to smtp-sink", "Seed delivery end to end",
                           "Scale", "Where the world MX's time goes"}
    breakdown = tables["Where the world MX's time goes"]
    assert [row[0] for row in breakdown["rows"]] == [
        "seed world MX", "mailauth off", "+ trace off", "+ capture off", "simsmtp core"]
    assert all("n/a" not in row[2:6] for row in breakdown["rows"]), breakdown
    server = tables["Server throughput"]
    assert [row[:2] for row in server["rows"]] == [
        [load, mode] for load in ("plaintext", "STARTTLS")
        for mode in ("1 session, connection reused", "1 session, a connection per message",
                     "10 parallel sessions, each reusing")]
    assert all(len(row) == len(server["headers"]) == 13 for row in server["rows"])
    assert all(row[5] == "no STARTTLS" for row in server["rows"][3:])
    assert all("n/a" not in row[2:5] for row in server["rows"]), server
    assert len(tables["Client throughput to smtp-sink"]["rows"]) == 2
    assert len(tables["Scale"]["rows"]) == 2
    assert all(row[-1].split("/")[0] == row[-1].split("/")[1]
               for row in tables["Scale"]["rows"]), tables["Scale"]
    names = [t["name"] for t in data["targets"]]
    assert "boot of the seed world (median)" in names
    assert "import simsmtp (median)" in names
    assert sum("simsmtp / aiosmtpd" in n for n in names) == 6
    assert sum("simsmtp / smtplib" in n for n in names) == 2
    assert all(t["ok"] in (True, False, None) for t in data["targets"])


@pytest.mark.slow
def test_soak_serves_a_world_restarts_it_and_loses_nothing(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "soak", "--scale", "0.05", "--quiet",
         "--json", str(figures)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(figures.read_text())
    [table] = data["tables"]
    assert table["title"].startswith("Soak: simsmtp up")
    assert table["headers"] == ["seconds", "messages sent (250)", "delivered to Bob",
                                "RSS MB"]
    assert table["rows"] and not any("failed" in note for note in table["notes"]), table
    sent, delivered = (int(table["rows"][-1][i].replace(",", "")) for i in (1, 2))
    # drained: every 250 is in Bob's Maildir; a message stored while `up` stopped halfway
    # may be there without the client having read its 250 (RFC 5321 §6.1: its sender
    # would send it again), so the Maildir may hold a few more
    assert sent > 0 and delivered >= sent
    [lost] = [t for t in data["targets"] if "missing or twice" in t["name"]]
    assert lost["ok"] is True, table["notes"]
