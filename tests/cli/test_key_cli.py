"""``certbound key``: list, rotate, retire, with their events; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from certbound.cli.main import EXIT_OK, EXIT_USAGE


def test_rotate_then_retire(cmd: Callable[..., Any], logged: Callable[[str], list[Any]]) -> None:
    listed = cmd("key", "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    (first,) = json.loads(listed.stdout)["keys"]
    assert first["status"] == "active" and first["alg"] == "ES256"
    rotated = cmd("key", "rotate", "--alg", "RS256")
    assert rotated.returncode == EXIT_OK, rotated.stderr
    keys = {k["kid"]: k for k in json.loads(cmd("key", "list", "--json").stdout)["keys"]}
    assert keys[first["kid"]]["status"] == "retiring"
    (new,) = [k for k in keys.values() if k["status"] == "active"]
    assert new["alg"] == "RS256" and new["kid"] in rotated.stdout
    refused = cmd("key", "retire", "--", new["kid"])
    assert refused.returncode == EXIT_USAGE and "SIGNING_KEY_ACTIVE" in refused.stderr
    unknown = cmd("key", "retire", "nope")
    assert unknown.returncode == EXIT_USAGE and "SIGNING_KEY_NOT_FOUND" in unknown.stderr
    assert cmd("key", "retire", "--", first["kid"]).returncode == EXIT_OK
    keys = {k["kid"]: k for k in json.loads(cmd("key", "list", "--json").stdout)["keys"]}
    assert keys[first["kid"]]["status"] == "retired" and keys[first["kid"]]["retired"]
    (rotation,) = logged("security.signing_key.rotate")
    assert rotation["target"][0]["id"] == new["kid"]
    (retirement,) = logged("security.signing_key.retire")
    assert retirement["target"][0]["id"] == first["kid"]
    assert "PRIVATE" not in json.dumps([rotation, retirement])
