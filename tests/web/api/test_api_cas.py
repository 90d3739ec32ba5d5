"""``/api/v1/trust/cas`` over a real uvicorn server on both databases: PEM and JSON uploads,
paging, show, revocation settings, health, removal, the events each change records, and a
help-desk admin refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from certbound.admin.roles import Role
from certbound.admin.tokens import split_token
from certbound.pki import devpki

SUPER, ORG, HELP = Role.SUPER_ADMIN, Role.ORG_ADMIN, Role.HELP_DESK_ADMIN
CAS = "/api/v1/trust/cas"


def upload(api: Any, role: Role, pem: bytes, **params: str) -> httpx.Response:
    headers = {"Content-Type": "application/x-pem-file"}
    response: httpx.Response = api.call(
        role, "POST", CAS, content=pem, headers=headers, params=params
    )
    return response


def next_link(response: httpx.Response) -> str | None:
    for part in response.headers["link"].split(","):
        url, _, rel = part.partition(";")
        if rel.strip() == 'rel="next"':
            return url.strip()[1:-1]
    return None


def test_pem_upload_is_stored_and_logged_with_the_admin(api: Any, chain_pem: bytes) -> None:
    response = upload(api, ORG, chain_pem, name="Fleet CA")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Fleet CA" and body["id"].startswith("ca_")
    assert [c["role"] for c in body["certificates"]] == ["intermediate", "root"]
    assert body["revocation"]["mode"] == "crl"
    [event] = api.events("security.trust.ca.add")
    admin = api.admins[ORG]
    assert event["actor"] == {
        "id": admin.id,
        "type": "Admin",
        "alternateId": admin.username,
        "displayName": admin.username,
    }
    token_id = split_token(api.tokens[ORG])[0]
    assert event["authenticationContext"]["tokenId"] == token_id
    debug = event["debugContext"]["debugData"]
    assert debug["tokenId"] == token_id and debug["route"] == "POST /api/v1/trust/cas"
    assert debug["changeDetails"]["before"] is None
    assert debug["changeDetails"]["after"]["id"] == body["id"]
    assert event["target"][0]["id"] == body["id"]
    assert event["transaction"]["type"] == "WEB"


@pytest.mark.parametrize("kind", ["text/plain", "application/json"])
def test_other_upload_forms_and_a_duplicate(
    api: Any, chain_pem: bytes, kind: str, refused: Any
) -> None:
    if kind == "application/json":
        first = api.call(SUPER, "POST", CAS, json={"pem": chain_pem.decode(), "name": "J"})
    else:
        headers = {"Content-Type": kind}
        first = api.call(SUPER, "POST", CAS, content=chain_pem, headers=headers)
    assert first.status_code == 201, first.text
    again = upload(api, SUPER, chain_pem)
    refused(again, 409, "DUPLICATE_CA")
    assert len(api.call(SUPER, "GET", CAS).json()) == 1


def test_list_pages_with_link_headers(api: Any, refused: Any) -> None:
    for i in range(3):
        root = devpki.ca(f"Paging Root {i}")
        assert upload(api, SUPER, root.cert_pem()).status_code == 201
    first = api.call(Role.READ_ONLY_ADMIN, "GET", CAS, params={"limit": "2"})
    assert first.status_code == 200 and len(first.json()) == 2
    link = next_link(first)
    assert link is not None and link.startswith(api.url)
    assert parse_qs(urlsplit(link).query)["limit"] == ["2"]
    second = httpx.get(link, headers=api.headers(Role.READ_ONLY_ADMIN))
    assert len(second.json()) == 1 and next_link(second) is None
    names = [ca["name"] for ca in first.json() + second.json()]
    assert sorted(names) == [f"Paging Root {i}" for i in range(3)]  # one clock tick: by id
    for params in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"after": "ca_nope"}):
        refused(api.call(SUPER, "GET", CAS, params=params), 400, "INVALID_QUERY")
    refused(api.call(SUPER, "GET", CAS, params={"sort": "name"}), 400, "INVALID_QUERY")


def test_show_and_remove(api: Any, chain_pem: bytes, refused: Any) -> None:
    ca_id = upload(api, SUPER, chain_pem).json()["id"]
    assert api.call(HELP, "GET", f"{CAS}/{ca_id}").json()["id"] == ca_id
    removed = api.call(ORG, "DELETE", f"{CAS}/{ca_id}")
    assert removed.status_code == 204 and removed.content == b""
    refused(api.call(SUPER, "GET", f"{CAS}/{ca_id}"), 404, "CA_NOT_FOUND")
    refused(api.call(SUPER, "DELETE", f"{CAS}/{ca_id}"), 404, "CA_NOT_FOUND")
    [event] = api.events("security.trust.ca.remove")
    details = event["debugContext"]["debugData"]["changeDetails"]
    assert details["before"]["id"] == ca_id and details["after"] is None


def test_revocation_settings_replace_and_are_logged(
    api: Any, chain_pem: bytes, refused: Any
) -> None:
    ca_id = upload(api, SUPER, chain_pem).json()["id"]
    url = f"{CAS}/{ca_id}/revocation"
    settings = {"mode": "ocsp", "failMode": "open", "ocspUrl": "http://ocsp.example/"}
    response = api.call(ORG, "PUT", url, json=settings)
    assert response.status_code == 200, response.text
    assert set(response.json()["changed"]) == {"mode", "failMode", "ocspUrl"}
    shown = api.call(SUPER, "GET", f"{CAS}/{ca_id}").json()["revocation"]
    assert (shown["mode"], shown["failMode"]) == ("ocsp", "open")
    assert shown["ocspUrl"] == settings["ocspUrl"]
    [event] = api.events("security.trust.ca.update")
    details = event["debugContext"]["debugData"]["changeDetails"]
    assert details["before"]["mode"] == "crl" and details["after"]["mode"] == "ocsp"
    refused(api.call(ORG, "PUT", url, json={"crlUrl": "ftp://x"}), 400, "INVALID_REQUEST_BODY")
    refused(api.call(ORG, "PUT", url, json={"mode": "sometimes"}), 400, "INVALID_REQUEST_BODY")
    refused(api.call(ORG, "PUT", url, json={"timeoutSeconds": 0}), 400, "INVALID_REQUEST_BODY")
    huge = {"maxStalenessSeconds": 10**20}  # no timedelta overflow: a 400, never a 500
    refused(api.call(ORG, "PUT", url, json=huge), 400, "INVALID_REQUEST_BODY")


def test_health_probes_now(api: Any, chain_pem: bytes) -> None:
    ca_id = upload(api, SUPER, chain_pem).json()["id"]
    response = api.call(Role.READ_ONLY_ADMIN, "GET", f"{CAS}/{ca_id}/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == ca_id and body["policy"]["mode"] == "crl"
    assert body["crl"] == [] and body["ocsp"] == []


def test_help_desk_cannot_upload_and_the_attempt_is_logged(
    api: Any, chain_pem: bytes, refused: Any
) -> None:
    body = refused(upload(api, HELP, chain_pem), 403, "FORBIDDEN_ROLE")
    assert "HELP_DESK_ADMIN" in body["detail"] and "cas.manage" in body["detail"]
    assert api.call(SUPER, "GET", CAS).json() == []
    [event] = api.events("admin.access.deny")
    assert event["outcome"] == {"result": "DENY", "reason": "FORBIDDEN_ROLE"}
    assert event["actor"]["id"] == api.admins[HELP].id
    debug = event["debugContext"]["debugData"]
    assert (debug["route"], debug["role"], debug["permission"]) == (
        "POST /api/v1/trust/cas",
        "HELP_DESK_ADMIN",
        "cas.manage",
    )
    assert event["target"][0]["id"] == "POST /api/v1/trust/cas"


def test_an_upload_with_a_private_key_is_refused(
    api: Any, dev_pki: Any, chain_pem: bytes, refused: Any
) -> None:
    leaked = chain_pem + dev_pki.intermediate.key_pem()
    refused(upload(api, SUPER, leaked), 400, "PRIVATE_KEY_IN_UPLOAD")
    assert api.events("security.trust.ca.add") == []
