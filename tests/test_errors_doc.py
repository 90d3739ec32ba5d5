"""docs/errors.md is the reason-code catalogue for people: it must match errors.CATALOGUE.

The page has one table per layer, under a heading that ends in the layer's name in
backticks, e.g. ``## Certificate validation (`certificate`)``; each row is
``| `CODE` | meaning | fix |``, with `` (notice)`` after the code for warning codes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from certbound.errors import CATALOGUE, Layer, ReasonCode

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
_HEADING = re.compile(r"^## .*\(`([a-z]+)`\)\s*$")
_CODE_CELL = re.compile(r"^`([A-Z][A-Z0-9_]*)`( \(notice\))?$")


@dataclass(frozen=True)
class Row:
    layer: str
    code: str
    notice: bool
    meaning: str
    fix: str


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse(text: str) -> tuple[list[str], list[Row]]:
    """The layer of every table (in page order) and every table row."""
    layers: list[str] = []
    rows: list[Row] = []
    layer: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            match = _HEADING.match(line)
            layer = match.group(1) if match else None
            if match:
                layers.append(layer or "")
            continue
        if not line.startswith("|"):
            continue
        assert layer is not None, f"line {number}: a table outside a layer section"
        cells = _cells(line)
        assert len(cells) == 3, f"line {number}: expected 3 columns, got {cells}"
        if cells == ["code", "meaning", "fix"] or set("".join(cells)) <= {"-", ":", " "}:
            continue
        match = _CODE_CELL.match(cells[0])
        assert match, f"line {number}: code cell {cells[0]!r} is not `CODE` [(notice)]"
        rows.append(Row(layer, match.group(1), bool(match.group(2)), cells[1], cells[2]))
    return layers, rows


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rows(doc: str) -> list[Row]:
    return parse(doc)[1]


def test_one_table_per_layer(doc: str) -> None:
    layers, _ = parse(doc)
    assert layers == [layer.value for layer in Layer]


def test_every_code_exactly_once(rows: list[Row]) -> None:
    counts = Counter(row.code for row in rows)
    assert {code for code, n in counts.items() if n > 1} == set()
    assert set(counts) == {code.value for code in ReasonCode}


def test_each_code_in_its_layers_table(rows: list[Row]) -> None:
    wrong = {row.code: row.layer for row in rows if ReasonCode(row.code).layer.value != row.layer}
    assert wrong == {}


def test_notices_are_marked(rows: list[Row]) -> None:
    marked = {row.code for row in rows if row.notice}
    assert marked == {code.value for code in ReasonCode if code.warning}
    assert marked  # the catalogue has warning codes; the page must show them


def test_meaning_and_fix_match_the_catalogue(rows: list[Row]) -> None:
    for row in rows:
        entry = CATALOGUE[ReasonCode(row.code)]
        assert (row.meaning, row.fix) == (entry.meaning, entry.fix), row.code


def test_prose_names_only_real_codes(doc: str) -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", doc)) - {"REASON_CODE"}
    assert named - {code.value for code in ReasonCode} == set()


def test_parser_rejects_a_missing_code() -> None:
    """The checks above can fail: a page without one row is caught."""
    text = DOC.read_text(encoding="utf-8")
    broken = "\n".join(line for line in text.splitlines() if "`TOKEN_REVOKED`" not in line)
    codes = {row.code for row in parse(broken)[1]}
    assert ReasonCode.TOKEN_REVOKED.value not in codes
    assert len(codes) == len(ReasonCode) - 1
