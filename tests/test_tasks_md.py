"""TASKS.md: the GFM table parser against the spec's examples, and `mosaic macp sync`."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from conftest import SHARED
from macp.gfm_table import parse_tables, replace_cells, split_row

EXAMPLES_FILE = SHARED / "conformance" / "gfm-tables" / "examples.json"
EXAMPLES = json.loads(EXAMPLES_FILE.read_text()) if EXAMPLES_FILE.exists() else []


class TableHTML(HTMLParser):
    """The expected grid from the spec's HTML: header cells, alignments, body rows (text only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"header": [], "align": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self.cell = []
            if tag == "th":
                self.tables[-1]["align"].append(dict(attrs).get("align"))

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self.cell is not None:
            text = "".join(self.cell)
            table = self.tables[-1]
            (table["header"] if tag == "th" else table["rows"][-1]).append(text)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def expected_grid(html: str) -> list[dict]:
    parser = TableHTML()
    parser.feed(html)
    for table in parser.tables:
        table["rows"] = [row for row in table["rows"] if row]
    return parser.tables


def inline_text(cell_text: str) -> str:
    """What a renderer shows of a cell: code-span and strong markers removed (test side only)."""
    return re.sub(r"\*\*(.*?)\*\*", r"\1", re.sub(r"`([^`]*)`", r"\1", cell_text))


@pytest.mark.skipif(not EXAMPLES, reason="../shared/conformance is not present (a user's clone)")
@pytest.mark.parametrize("example", EXAMPLES, ids=[str(e["example"]) for e in EXAMPLES])
def test_gfm_spec_table_example(example):
    expected = expected_grid(example["html"])
    tables = parse_tables(example["markdown"])
    assert len(tables) == len(expected)
    for table, wanted in zip(tables, expected, strict=True):
        assert [inline_text(c.text) for c in table.header] == wanted["header"]
        assert table.alignments == wanted["align"]
        assert [[inline_text(c.text) for c in row] for row in table.rows] == wanted["rows"]


@pytest.mark.skipif(not EXAMPLES, reason="../shared/conformance is not present (a user's clone)")
def test_gfm_pass_count_is_reported(capsys):
    passed = sum(1 for e in EXAMPLES if len(parse_tables(e["markdown"])) == len(expected_grid(e["html"])))
    with capsys.disabled():
        print(f"\nGFM spec table examples: {passed}/{len(EXAMPLES)} passing")
    assert passed == len(EXAMPLES) == 9


def test_escaped_pipes_inside_code_spans_and_unescaped_pipes_split_even_there():
    assert [c.text for c in split_row("| a `x \\| y` b | `c | d` |")] == ["a `x | y` b", "`c", "d`"]


def test_table_needs_matching_delimiter_and_ends_at_blocks():
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n# heading\n| c | d |\n| - | - |\n| 3 |\n\nafter\n"
    first, second = parse_tables(text)
    assert [[c.text for c in r] for r in first.rows] == [["1", "2"]]
    assert [[c.text for c in r] for r in second.rows] == [["3", ""]]
    assert parse_tables("| a | b |\n| - |\n") == []


TABLE = """# Sprint

Intro with a | pipe that is not a table.

| id | status | description | depends_on | blocks | agent | started_at | completed_at | dispatch | command | type |
|----|--------|-------------|------------|--------|-------|------------|--------------|----------|---------|------|
| T-1 | not-started | SEC-1: sanitize \\| escape input | | T-2 | | | | exec | echo one | coding |
| T-2 | not-started | CQ-2: refactor | T-1 | | | | | exec | echo two | |
| T-3 | done | old work | | | codex | 2026-01-01T00:00:00Z | 2026-01-02T00:00:00Z | exec | true | |

Closing words.
"""


@pytest.fixture
def tasks_md(sandbox):
    (sandbox.repo / "docs").mkdir()
    path = sandbox.repo / "docs" / "TASKS.md"
    path.write_text(TABLE)
    return path


def test_sync_adds_tasks_with_lists_columns_and_history(sandbox, tasks_md):
    proc = sandbox.macp("sync", check=True)
    assert proc.stdout.splitlines()[-1] == "sync: 3 added, 0 updated, 0 removed"
    t1, t2, t3 = sandbox.task("T-1"), sandbox.task("T-2"), sandbox.task("T-3")
    assert t1["title"] == "SEC-1: sanitize | escape input" and t1["type"] == "coding" and t1["blocks"] == ["T-2"]
    assert t2["depends_on"] == ["T-1"] and t2["status"] == "pending" and t2["command"] == "echo two"
    assert t3["status"] == "completed" and t3["completed_at"] == "2026-01-02T00:00:00Z"
    assert t3["metadata"] == {"source": "TASKS.md", "agent": "codex"}
    assert [e["source"] for e in sandbox.events()] == ["sync", "sync", "sync"]
    again = sandbox.macp("sync", check=True)
    assert again.stdout.splitlines()[-1] == "sync: 0 added, 0 updated, 0 removed"


def test_missing_columns_take_config_defaults(sandbox):
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "TASKS.md").write_text("| id | description |\n|---|---|\n| A | write docs |\n")
    sandbox.write_config({"macp": {"default_dispatch": "yolo"}, "worker": {"max_attempts": 3}})
    sandbox.macp("sync", check=True)
    task = sandbox.task("A")
    assert task["dispatch"] == "yolo" and task["max_attempts"] == 3 and task["title"] == "write docs"


def test_sync_updates_owned_fields_but_never_running_tasks_or_history(sandbox, tasks_md):
    sandbox.macp("sync", check=True)
    data = json.loads((sandbox.orch / "tasks.json").read_text())
    data["tasks"][0]["status"] = "running"
    data["tasks"][0]["claim"] = {"pid": 1, "host": "h", "started_at": "2026-01-01T00:00:00Z"}
    (sandbox.orch / "tasks.json").write_text(json.dumps(data))
    tasks_md.write_text(TABLE.replace("SEC-1: sanitize", "SEC-1: SANITIZE").replace("CQ-2: refactor", "CQ-2: rework"))
    proc = sandbox.macp("sync", check=True)
    assert "update T-2: title" in proc.stdout and "note: T-1: running, left untouched" in proc.stdout
    assert sandbox.task("T-1")["title"].startswith("SEC-1: sanitize") and sandbox.task("T-2")["title"] == "CQ-2: rework"
    assert sandbox.task("T-2")["status"] == "pending", "status belongs to MACP, not the table"
    tasks_md.write_text("\n".join(line for line in TABLE.splitlines() if not line.startswith(("| T-2", "| T-3"))) + "\n")
    proc = sandbox.macp("sync", check=True)
    assert "remove T-2 (no longer in the table, never run)" in proc.stdout
    assert "note: T-3: no longer in the table but has history, kept" in proc.stdout
    assert [t["id"] for t in sandbox.tasks()] == ["T-1", "T-3"]


def test_dry_run_changes_nothing(sandbox, tasks_md):
    proc = sandbox.macp("sync", "--dry-run", "--write-back", check=True)
    assert "would add T-1 (exec, pending)" in proc.stdout
    assert not (sandbox.orch / "tasks.json").exists()
    assert tasks_md.read_text() == TABLE


def test_write_back_changes_only_the_owned_cells(sandbox, tasks_md):
    sandbox.macp("sync", check=True)
    sandbox.macp("drain", check=True)
    proc = sandbox.macp("sync", "--write-back", check=True)
    assert "write back T-1 status: 'not-started' -> 'done'" in proc.stdout
    after = tasks_md.read_text()
    before_lines, after_lines = TABLE.split("\n"), after.split("\n")
    changed = [n for n, (a, b) in enumerate(zip(before_lines, after_lines, strict=True)) if a != b]
    assert changed == [6, 7], "only the two rows MACP ran changed; T-3 and everything else is byte-identical"
    row = [c.text for c in split_row(after_lines[6])]
    assert row[:2] == ["T-1", "done"] and row[5] == "exec"
    assert row[6] == sandbox.task("T-1")["started_at"] and row[7] == sandbox.task("T-1")["completed_at"]
    assert "| SEC-1: sanitize \\| escape input |" in after_lines[6], "escaped pipes survive byte for byte"
    assert sandbox.macp("sync", "--write-back", check=True).stdout.splitlines()[-1].endswith("0 cell(s) written back")


def test_blocks_contradicting_depends_on_are_reported(sandbox, tasks_md):
    tasks_md.write_text(TABLE.replace("| T-1 | | | | | exec | echo two", "| | | | | | exec | echo two"))
    proc = sandbox.macp("sync", check=True)
    assert "contradiction: T-1 blocks T-2, but T-2 does not depend on T-1" in proc.stderr


@pytest.mark.parametrize(
    "table,problem",
    [
        ("| id |\n|---|\n| A |\n| A |\n", "duplicate id A"),
        ("| id | command |\n|---|---|\n| bad id | true |\n", "does not match"),
        ("| id | command | depends_on |\n|---|---|---|\n| A | true | ghost |\n", "unknown dependency ghost"),
        ("| id | status | command |\n|---|---|---|\n| A | sleeping | true |\n", "unknown status 'sleeping'"),
        ("| id | dispatch |\n|---|---|\n| A | exec |\n", "an exec task needs a command"),
        ("no table here\n", "no table with an 'id' column"),
    ],
)
def test_bad_tables_change_nothing(sandbox, table, problem):
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "TASKS.md").write_text(table)
    proc = sandbox.macp("sync")
    assert proc.returncode == 2 and problem in proc.stderr and "Traceback" not in proc.stderr
    assert not (sandbox.orch / "tasks.json").exists()


def test_sync_file_must_stay_inside_the_repository(sandbox, tmp_path):
    outside = tmp_path / "TASKS.md"
    outside.write_text(TABLE)
    proc = sandbox.macp("sync", "--file", str(outside))
    assert proc.returncode == 2 and "is outside" in proc.stderr


def test_replace_cells_round_trips_every_cell():
    tables = parse_tables(TABLE)
    cells = [cell for row in tables[0].rows for cell in row if cell.present]
    assert replace_cells(TABLE, [(cell, cell.text) for cell in cells]) == TABLE


def test_sync_never_removes_a_task_with_history_even_without_attempts(sandbox, tasks_md):
    sandbox.macp("sync", check=True)
    with (sandbox.orch / "events.ndjson").open("a") as handle:
        handle.write(json.dumps({"event_id": "x1", "event_type": "task.provider.failed", "task_id": "T-2", "status": "pending",
                                 "timestamp": "2026-01-01T00:00:00.000Z", "source": "controller", "attempt": 0, "message": "codex: rate_limit",
                                 "metadata": {}}) + "\n")
    tasks_md.write_text("\n".join(line for line in TABLE.splitlines() if not line.startswith("| T-2")) + "\n")
    proc = sandbox.macp("sync", check=True)
    assert "note: T-2: no longer in the table but has history, kept" in proc.stdout
    assert "T-2" in [t["id"] for t in sandbox.tasks()]


def test_sync_of_another_file_only_touches_its_own_tasks(sandbox, tasks_md):
    sandbox.macp("sync", check=True)
    other = sandbox.repo / "other.md"
    other.write_text("| id | description | command |\n|---|---|---|\n| O-1 | other work | true |\n")
    proc = sandbox.macp("sync", "--file", "other.md", check=True)
    assert "remove T-" not in proc.stdout and proc.stdout.splitlines()[-1] == "sync: 1 added, 0 updated, 0 removed"
    assert sorted(t["id"] for t in sandbox.tasks()) == ["O-1", "T-1", "T-2", "T-3"]
    assert sandbox.task("O-1")["metadata"]["source"] == "other.md"
    other.write_text("| id | description | command |\n|---|---|---|\n")
    proc = sandbox.macp("sync", "--file", "other.md", check=True)
    assert "remove O-1" in proc.stdout and sorted(t["id"] for t in sandbox.tasks()) == ["T-1", "T-2", "T-3"]


GUIDE_TABLE = (
    "# Tasks\r\n\r\n"
    "| id | status | description | issue | repo | branch | depends_on | blocks | agent | started_at | completed_at | estimate | used |\r\n"
    "| ---------- | ----------- | ---------------------------- | ----- | ---- | ------------ | ---------- | ---------- | ----- | ---------- | ------------ | -------- | ---- |\r\n"
    "| MS-SEC-001 | not-started | SEC-API-1: Brief description | #337 | api | fix/security | | MS-SEC-002 | | | | 8K | |\r\n"
    "| MS-SEC-002 | not-started | SEC-API-2: Second fix | #337 | api | fix/security | MS-SEC-001 |\r\n"
    "| MS-SEC-000 | done | SEC-API-0: Old | #337 | api | fix/security | | | w1 | 2026-01-01T00:00:00Z | 2026-01-01T01:00:00Z | 3K | 2.9K |\r\n"
)


def test_the_mosaic_stack_guides_own_table_syncs_as_it_is(sandbox):
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    (sandbox.repo / "docs" / "tasks" / "MS-SEC-001.md").write_text("# MS-SEC-001\nFix SEC-API-1.\n")
    (sandbox.repo / "docs" / "TASKS.md").write_bytes(GUIDE_TABLE.encode())
    sandbox.macp("sync", check=True)
    first, second, done = sandbox.task("MS-SEC-001"), sandbox.task("MS-SEC-002"), sandbox.task("MS-SEC-000")
    assert first["dispatch"] == second["dispatch"] == "yolo", "a row without a command is an agent's task"
    assert first["brief_path"] == "docs/tasks/MS-SEC-001.md"
    assert second["description"] == "SEC-API-2: Second fix\n\nIssue: #337\nBranch: fix/security"
    assert done["status"] == "completed" and second["depends_on"] == ["MS-SEC-001"]
    tasks = sandbox.tasks()
    finished = {"status": "completed", "attempts": 1, "attempt_runtime": "codex",
                "started_at": "2026-11-23T01:02:03.456Z", "completed_at": "2026-11-23T01:12:03.456Z"}
    sandbox.write_tasks({"tasks": [{**task, **finished} if task["id"] == "MS-SEC-002" else task for task in tasks]})
    sandbox.macp("sync", "--write-back", check=True)
    text = (sandbox.repo / "docs" / "TASKS.md").read_bytes().decode()
    assert text.count("\r\n") == text.count("\n"), "every row keeps its CRLF"
    row = next(line for line in text.split("\r\n") if line.startswith("| MS-SEC-002"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == 11, "the short row was padded up to the last column written"
    assert (cells[1], cells[8], cells[9], cells[10]) == ("done", "codex", "2026-11-23T01:02:03.456Z", "2026-11-23T01:12:03.456Z")
    assert cells[6] == "MS-SEC-001" and cells[7] == "", "cells before the written ones stay in their columns"


@pytest.mark.parametrize(("table", "expected"), [
    # not laid out with spaces: the new text takes its own width, never padded to the old one's
    ("| id | status | command |\n|---|---|---|\n| T-1 | not-started | true |\n| T-2 | in-progress | true |\n", "| T-1 | done | true |"),
    # laid out with spaces: the column's pipes stay where they were
    ("| id  | status      | command |\n|-----|-------------|---------|\n| T-1 | not-started | true    |\n| T-2 | in-progress | true    |\n",
     "| T-1 | done        | true    |"),
])
def test_write_back_pads_a_short_status_only_in_a_table_laid_out_with_spaces(table, expected):
    [parsed] = parse_tables(table)
    status = parsed.column("status")
    assert status is not None
    assert replace_cells(table, [(parsed.rows[0][status], "done")]).splitlines()[2] == expected
