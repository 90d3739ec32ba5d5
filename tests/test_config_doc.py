"""docs/config.md documents every setting: its key, its environment variable and its default."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from certbound.config import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"
KEYS = [f for f in fields(Settings) if f.name != "config_file"]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """The key table: key -> its cells (default, environment variable, meaning)."""
    table: dict[str, list[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if match:
            table[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return table


def test_settings_has_documented_keys() -> None:
    assert {f.name for f in KEYS} >= {"data_dir", "database_url", "verify_cache_seconds"}


@pytest.mark.parametrize("name", [f.name for f in KEYS])
def test_every_setting_appears(name: str) -> None:
    assert f"`{name}`" in DOC.read_text(encoding="utf-8")


def test_key_table_lists_exactly_the_settings(rows: dict[str, list[str]]) -> None:
    assert set(rows) == {f.name for f in KEYS}


@pytest.mark.parametrize("name", [f.name for f in KEYS])
def test_environment_variable(rows: dict[str, list[str]], name: str) -> None:
    assert rows[name][1] == f"`{ENV_PREFIX}{name.upper()}`"


@pytest.mark.parametrize(
    ("name", "default"), [(f.name, f.default) for f in KEYS if f.default is not MISSING]
)
def test_defaults(rows: dict[str, list[str]], name: str, default: object) -> None:
    assert rows[name][0] == documented(default)


def documented(default: object) -> str:
    """How the table writes a default: as TOML (numbers, quoted strings, lists), or unset."""
    if default is None:
        return "unset"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in default) + "]`"
    return f"`{default}`"
