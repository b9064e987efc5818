"""docs/formats.md says what the importers read: each command's column table names the importer's columns, each
required or not as the importer has it, and each example file reads without a bad row."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from hocba.commands import Columns, Row, read_csv
from hocba.commands import grades as grades_commands
from hocba.commands import identity as identity_commands

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def roster_row(row: Row) -> object:
    return identity_commands.parse_row(row, identity_commands.DEFAULT_YEAR)


#: Each import's heading in the document (its command), its columns, and how it reads one row.
IMPORTS: dict[str, tuple[Columns, Callable[[Row], object]]] = {
    "hocba identity import": (identity_commands.ROSTER, roster_row),
    "hocba grades import": (grades_commands.GRADEBOOK, grades_commands.parse_row),
    "hocba grades conduct import": (grades_commands.CONDUCT, grades_commands.parse_conduct_row),
}


def sections() -> dict[str, str]:
    """The document's `## …` sections by the command their heading names."""
    found = {}
    for part in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        heading = part.splitlines()[0]
        if usage := re.search(r"`(hocba [^`]*)`", heading):
            words = usage.group(1).split()
            command = words[: next(i for i, w in enumerate(words) if not re.fullmatch(r"[a-z]+", w))]
            found[" ".join(command)] = part
    return found


def column_table(section: str) -> dict[str, str]:
    """The section's `| column | required | … |` table: column name -> its "required" cell."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*column\s*\|\s*required\s*\|", line))
    table = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`([^`]+)`", cells[0])
        assert name, f"a column is named in backticks: {line}"
        assert name.group(1) not in table, f"{name.group(1)} is listed twice"
        table[name.group(1)] = cells[1]
    return table


def example(section: str) -> str:
    [block] = re.findall(r"```csv\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_the_document_has_a_section_for_each_import():
    assert set(IMPORTS) <= set(sections())


@pytest.mark.parametrize("command", sorted(IMPORTS))
def test_the_column_table_names_each_column_as_required_or_not_as_the_importer_reads_it(command):
    columns, _ = IMPORTS[command]
    table = column_table(sections()[command])
    assert set(table.values()) <= {"yes", "no"}, f"{command}: the required cell is yes or no: {table}"
    assert [c for c, required in table.items() if required == "yes"] == list(columns.required)
    assert [c for c, required in table.items() if required == "no"] == list(columns.optional)


@pytest.mark.parametrize("command", sorted(IMPORTS))
def test_the_example_file_reads_without_a_bad_row(command, tmp_path):
    columns, parse = IMPORTS[command]
    path = tmp_path / "example.csv"
    path.write_text(example(sections()[command]), encoding="utf-8")
    read = read_csv(path, columns)
    assert read.ignored == () and read.rows
    for row in read.rows:
        assert not row.problem, row.problem
        parse(row)


def test_the_document_points_only_at_files_the_repository_holds():
    root = DOC.parents[1]
    named = re.findall(r"`((?:services|shared|hocba|docs|deploy)/[\w./-]+)`", DOC.read_text(encoding="utf-8"))
    assert named, "the document names the province table"
    assert [path for path in named if not (root / path).exists()] == []
