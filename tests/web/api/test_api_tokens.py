"""``/api/v1/tokens`` over a real server on both databases: an admin manages its own tokens
within its role; only a SUPER_ADMIN touches other admins'; a token bound to a certificate
works only when the request presents it (here through a trusted proxy's header)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.admin.roles import Role
from certbound.admin.tokens import split_token
from certbound.config import Settings
from certbound.web.app import create_app

SUPER, HELP, READ = Role.SUPER_ADMIN, Role.HELP_DESK_ADMIN, Role.READ_ONLY_ADMIN
TOKENS = "/api/v1/tokens"


def test_an_admin_makes_its_own_tokens_within_its_role(api: Any, refused: Any) -> None:
    made = api.call(HELP, "POST", TOKENS, json={"name": "laptop", "expiresInDays": 30})
    assert made.status_code == 201, made.text
    info = made.json()
    token = info.pop("token")
    assert info["role"] == "HELP_DESK_ADMIN" and info["adminId"] == api.admins[HELP].id
    assert info["expiresAt"] is not None and split_token(token)[0] == info["id"]
    roles = httpx.get(api.url + "/api/v1/roles", headers={"Authorization": f"Bearer {token}"})
    assert roles.status_code == 200
    lower = api.call(HELP, "POST", TOKENS, json={"role": "READ_ONLY_ADMIN"})
    assert lower.status_code == 201 and lower.json()["role"] == "READ_ONLY_ADMIN"
    refused(api.call(HELP, "POST", TOKENS, json={"role": "ORG_ADMIN"}), 403, "FORBIDDEN_ROLE")
    refused(api.call(READ, "POST", TOKENS, json={}), 403, "FORBIDDEN_ROLE")
    [created, _] = api.events("system.api_token.create")
    assert created["actor"]["id"] == api.admins[HELP].id
    assert created["target"][0]["id"] == info["id"]
    assert created["debugContext"]["debugData"]["adminId"] == api.admins[HELP].id


def test_other_admins_tokens_are_a_super_admins(api: Any, refused: Any) -> None:
    other = api.admins[Role.APP_ADMIN]
    refused(api.call(HELP, "POST", TOKENS, json={"admin": other.username}), 403, "FORBIDDEN_ROLE")
    for_other = api.call(SUPER, "POST", TOKENS, json={"admin": other.username, "name": "x"})
    assert for_other.status_code == 201 and for_other.json()["role"] == "APP_ADMIN"
    other_id = for_other.json()["id"]
    mine = {t["id"] for t in api.call(HELP, "GET", TOKENS).json()}
    assert len(mine) == 2 and other_id not in mine
    everyone = {t["id"] for t in api.call(SUPER, "GET", TOKENS, params={"limit": "200"}).json()}
    assert other_id in everyone and mine <= everyone
    listed = api.call(SUPER, "GET", TOKENS, params={"admin": other.id}).json()
    assert other_id in {t["id"] for t in listed} and not mine & {t["id"] for t in listed}
    refused(api.call(HELP, "GET", TOKENS, params={"admin": other.id}), 403, "FORBIDDEN_ROLE")
    refused(api.call(HELP, "GET", f"{TOKENS}/{other_id}"), 403, "FORBIDDEN_ROLE")
    refused(api.call(HELP, "DELETE", f"{TOKENS}/{other_id}"), 403, "FORBIDDEN_ROLE")
    assert api.call(SUPER, "DELETE", f"{TOKENS}/{other_id}").status_code == 204
    permissions = [e["debugContext"]["debugData"]["permission"]
                   for e in api.events("admin.access.deny")]  # fmt: skip
    assert permissions == ["tokens.manage_all"] * 4


def test_revoking_ones_own_token(api: Any, refused: Any) -> None:
    spare_id = split_token(api.spares[HELP])[0]
    assert api.call(HELP, "GET", f"{TOKENS}/{spare_id}").json()["status"] == "active"
    assert api.call(HELP, "DELETE", f"{TOKENS}/{spare_id}").status_code == 204
    assert api.call(HELP, "DELETE", f"{TOKENS}/{spare_id}").status_code == 204
    spare = {"Authorization": f"Bearer {api.spares[HELP]}"}
    response = httpx.get(api.url + TOKENS, headers=spare)
    assert "was revoked at" in refused(response, 401, "INVALID_TOKEN")["detail"]
    refused(api.call(HELP, "GET", f"{TOKENS}/{'0' * 16}"), 404, "TOKEN_NOT_FOUND")
    assert len(api.events("system.api_token.revoke")) == 1


def test_a_bound_token_needs_its_certificate(
    api: Any, refused: Any, dev_pki: Any, settings: Settings, live: Any
) -> None:
    good = dev_pki.devices["good"].cert.public_bytes(Encoding.DER)
    other = dev_pki.devices["cn-only"].cert.public_bytes(Encoding.DER)
    thumbprint = hashlib.sha256(good).hexdigest()
    refused(api.call(HELP, "POST", TOKENS, json={"certificateSha256": "abc"}), 400,
            "INVALID_REQUEST_BODY")  # fmt: skip
    made = api.call(HELP, "POST", TOKENS, json={"certificateSha256": thumbprint.upper()})
    assert made.json()["certificateSha256"] == thumbprint
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    body = refused(httpx.get(api.url + TOKENS, headers=bearer), 401, "INVALID_TOKEN")
    assert "bound to the client certificate" in body["detail"] and "no client" in body["detail"]
    proxied = dataclasses.replace(settings, trusted_proxies=("127.0.0.1/32",))
    app = create_app(proxied, database=api.database, clock=api.app.state.clock)
    url = live(app, proxy_headers=False).url

    def header(der: bytes) -> dict[str, str]:
        return {**bearer, "Client-Cert": ":" + base64.b64encode(der).decode() + ":"}

    assert httpx.get(url + TOKENS, headers=header(good)).status_code == 200
    wrong = refused(httpx.get(url + TOKENS, headers=header(other)), 401, "INVALID_TOKEN")
    assert "another certificate" in wrong["detail"]
    spoofed = httpx.get(api.url + TOKENS, headers=header(good))  # no trusted proxy there
    refused(spoofed, 401, "INVALID_TOKEN")
    # A bound token makes tokens bound to its own certificate only.
    child = httpx.post(url + TOKENS, headers=header(good), json={"name": "child"})
    assert child.status_code == 201, child.text
    assert child.json()["certificateSha256"] == thumbprint
    elsewhere = hashlib.sha256(other).hexdigest()
    moved = httpx.post(url + TOKENS, headers=header(good), json={"certificateSha256": elsewhere})
    refused(moved, 403, "FORBIDDEN_ROLE")
