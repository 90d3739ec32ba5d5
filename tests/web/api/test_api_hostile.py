"""Hostile input to the admin API over a real server on both databases: oversized bodies
(declared and streamed), wrong content types, invalid JSON, unknown and mistyped fields, NUL
characters, ids no object can have and ids of other kinds of objects: every one a 4xx with
its reason, none a 5xx; and the role check comes before any of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from certbound.admin.roles import Role

SUPER, HELP = Role.SUPER_ADMIN, Role.HELP_DESK_ADMIN
MIB = 1024 * 1024
BODY = "INVALID_REQUEST_BODY"


def test_oversized_bodies_are_413(api: Any, refused: Any) -> None:
    big = b"x" * (MIB + 1)
    headers = {"Content-Type": "application/json"}
    refused(api.call(SUPER, "POST", "/api/v1/users", content=big, headers=headers), 413, BODY)

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b" " * (64 * 1024)

    streamed = api.call(SUPER, "POST", "/api/v1/groups", content=chunks(), headers=headers)
    refused(streamed, 413, BODY)
    pem = {"Content-Type": "text/plain"}
    refused(api.call(SUPER, "POST", "/api/v1/trust/cas", content=big, headers=pem), 413, BODY)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/users", "text/plain"),
        ("/api/v1/users", "application/x-www-form-urlencoded"),
        ("/api/v1/trust/cas", "application/xml"),
        ("/api/v1/policies", "multipart/form-data"),
    ],
)
def test_wrong_content_types_are_415(api: Any, refused: Any, path: str, content_type: str) -> None:
    response = api.call(
        SUPER, "POST", path, content=b'{"name": "x"}', headers={"Content-Type": content_type}
    )
    assert "must be" in refused(response, 415, BODY)["detail"]


def test_a_body_without_a_content_type_is_415(api: Any, refused: Any) -> None:
    response = api.call(SUPER, "POST", "/api/v1/groups", content=b'{"name": "x"}')
    refused(response, 415, BODY)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{", "not JSON"),
        (b'{"name": NaN}', "not JSON"),
        (b'["name"]', "JSON object"),
        (b'"name"', "JSON object"),
        (b'{"name": "a", "name2": 1}', "unknown field"),
        (b'{"name": 5}', "must be a string"),
        (b'{"name": null}', "must not be null"),
        (b'{"name": "a\\u0000b"}', "NUL"),
        (b'{"description": "only"}', "is required"),
        (b"", "needs a body"),
        (b'{"name": "\\ud800"}', "not JSON"),
    ],
)
def test_bad_json_is_400_naming_the_problem(
    api: Any, refused: Any, body: bytes, detail: str
) -> None:
    headers = {"Content-Type": "application/json"}
    response = api.call(SUPER, "POST", "/api/v1/groups", content=body, headers=headers)
    assert detail in refused(response, 400, BODY)["detail"]
    assert api.call(SUPER, "GET", "/api/v1/groups").json() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/policies/pol_default/rules", {"name": "r", "action": "ALLOW", "priority": True}),
        ("/api/v1/policies/pol_default/rules", {"name": "r", "action": "ALLOW", "priority": 1.5}),
        ("/api/v1/policies/pol_default/rules", {"name": "r", "action": "MAYBE"}),
        ("/api/v1/tokens", {"expiresInDays": 0}),
        ("/api/v1/tokens", {"expiresInDays": 10**30}),
        ("/api/v1/apps", {"name": "a", "metadata": []}),
        ("/api/v1/users", {"username": ["a"]}),
    ],
)
def test_mistyped_fields_are_400(api: Any, refused: Any, path: str, body: Any) -> None:
    refused(api.call(SUPER, "POST", path, json=body), 400, BODY)


def test_a_body_on_a_route_without_one_is_400(api: Any, refused: Any, dev_pki: Any) -> None:
    device = api.device(dev_pki.devices["good"].cert)
    url = f"/api/v1/devices/{device.id}/lifecycle/suspend"
    refused(api.call(HELP, "POST", url, json={"status": "SUSPENDED"}), 400, BODY)
    assert api.call(HELP, "GET", f"/api/v1/devices/{device.id}").json()["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/api/v1/users/%00", "USER_NOT_FOUND"),
        ("/api/v1/groups/a%01b", "GROUP_NOT_FOUND"),
        ("/api/v1/trust/cas/" + "x" * 300, "CA_NOT_FOUND"),
        ("/api/v1/policies/pol_default/rules/%0a", "RULE_NOT_FOUND"),
        ("/api/v1/tokens/%7f", "TOKEN_NOT_FOUND"),
        ("/api/v1/zones/%00", "ZONE_NOT_FOUND"),
        ("/api/v1/zones/pol_default", "ZONE_NOT_FOUND"),
        ("/api/v1/devices/usr_0123456789abcdef", "DEVICE_NOT_FOUND"),
        ("/api/v1/apps/pol_default", "APP_NOT_FOUND"),
        ("/api/v1/admins/grp_0123456789abcdef", "ADMIN_NOT_FOUND"),
    ],
)
def test_impossible_and_foreign_ids_are_404(api: Any, refused: Any, path: str, reason: str) -> None:
    refused(api.call(SUPER, "GET", path), 404, reason)


@pytest.mark.parametrize(
    "params",
    [{"limit": "1e3"}, {"after": ""}, {"limit": "1", "x": "y"}, {"status": "a\x01"}],
)
def test_bad_query_parameters_are_400(api: Any, refused: Any, params: dict[str, str]) -> None:
    refused(api.call(SUPER, "GET", "/api/v1/users", params=params), 400, "INVALID_QUERY")


def test_the_role_check_comes_before_the_body(api: Any, refused: Any) -> None:
    big = b"x" * (MIB + 1)
    for content, kind in ((big, "text/plain"), (b"{", "application/json"), (b"x", "image/png")):
        response = api.call(
            HELP, "POST", "/api/v1/trust/cas", content=content, headers={"Content-Type": kind}
        )
        refused(response, 403, "FORBIDDEN_ROLE")
    refused(api.call(None, "POST", "/api/v1/trust/cas", content=big), 401,
            "AUTHENTICATION_REQUIRED")  # fmt: skip
