"""``/api/v1/trust/cas``: the trust store over HTTP (:class:`~certbound.pki.truststore.TrustStore`).

- ``POST /api/v1/trust/cas``: upload a CA chain, as PEM (``text/plain`` or
  ``application/x-pem-file``, the name in ``?name=``) or as JSON ``{"pem", "name",
  "allowSameSubject"}``. 201 with the stored chain; a rejected upload is the upload's
  reason code (400, 409 ``DUPLICATE_CA`` / ``CA_SUBJECT_CONFLICT``, 413
  ``UPLOAD_TOO_LARGE``) and stores nothing.
- ``GET /api/v1/trust/cas`` (paged), ``GET /api/v1/trust/cas/{id}``: chains with their
  certificates and revocation settings.
- ``DELETE /api/v1/trust/cas/{id}``: 204.
- ``PUT /api/v1/trust/cas/{id}/revocation``: replace the revocation settings (fields left
  out take their defaults, docs/config.md).
- ``GET /api/v1/trust/cas/{id}/health``: probe the CA's CRL and OCSP URLs now.

Changes are ``security.trust.ca.add`` / ``.remove`` / ``.update`` events (and
``pki.ca.expiration.warn`` for an upload expiring soon), stamped with the admin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from starlette.responses import Response

from certbound.admin.roles import Permission
from certbound.pki import events
from certbound.pki.revocation import RevocationChecker
from certbound.pki.revocation_policy import (
    MAX_STALENESS_SECONDS,
    MAX_TIMEOUT_SECONDS,
    Mode,
    RevocationPolicy,
)
from certbound.pki.truststore import MAX_NAME_LENGTH, StoredCA, TrustStore
from certbound.web.api import pagination
from certbound.web.api.body import Body, Field, Kind, invalid
from certbound.web.api.operation import Call, Operation, Param, json_response, no_content

CAS, CA = "/api/v1/trust/cas", "/api/v1/trust/cas/{id}"
TAG = "trust store"


def _store(call: Call) -> TrustStore:
    settings = call.state.settings
    return TrustStore(call.state.database, call.state.clock, settings.ca_expiry_warning_days)


def _ca_json(store: TrustStore, stored: StoredCA) -> dict[str, Any]:
    return {**stored.to_dict(), "revocation": store.revocation(stored.id).to_dict()}


def list_cas(call: Call) -> Response:
    store = _store(call)
    page = pagination.page_of(store.list(), lambda ca: ca.id, call.page)
    return pagination.response(call.request, page, lambda ca: _ca_json(store, ca))


def show_ca(call: Call) -> Response:
    store = _store(call)
    return json_response(_ca_json(store, store.get(call.path["id"])))


def _upload(call: Call) -> tuple[bytes, str | None, bool]:
    if isinstance(call.body, bytes):
        return call.body, call.query.get("name"), False
    if "name" in call.query:
        raise invalid("give the name in the JSON body, not in ?name=")
    body: dict[str, Any] = call.body
    pem = body["pem"].encode()
    return pem, body.get("name"), bool(body.get("allowSameSubject", False))


def upload_ca(call: Call) -> Response:
    data, name, same_subject = _upload(call)
    store = _store(call)
    try:
        result = store.add(data, name, allow_same_subject=same_subject)
    except ValueError as exc:
        raise invalid(f"name: {exc}") from None
    added = events.ca_added(result)
    call.record(added, after=result.to_dict())
    days = call.state.settings.ca_expiry_warning_days
    warning = events.ca_expiring(result, result.created_at, days, trigger="upload")
    if warning is not None:
        call.record(dataclasses.replace(warning, transaction_id=added.uuid))
    return json_response(_ca_json(store, result), 201)


def remove_ca(call: Call) -> Response:
    removed = _store(call).remove(call.path["id"])
    call.record(events.ca_removed(removed), before=removed.to_dict())
    return no_content()


def _policy(body: dict[str, Any]) -> RevocationPolicy:
    staleness = body.get("maxStalenessSeconds")
    values: dict[str, Any] = {
        "mode": Mode(body.get("mode", Mode.CRL.value)),
        "fail_open": body.get("failMode", "closed") == "open",
        "crl_url": body.get("crlUrl") or None,
        "ocsp_url": body.get("ocspUrl") or None,
    }
    if staleness is not None:
        values["max_staleness"] = dt.timedelta(seconds=staleness)
    if body.get("timeoutSeconds") is not None:
        values["timeout"] = float(body["timeoutSeconds"])
    try:
        return RevocationPolicy(**values)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def set_revocation(call: Call) -> Response:
    store = _store(call)
    ca_id = call.path["id"]
    after = _policy(call.body)
    stored = store.get(ca_id)
    before = store.set_revocation(ca_id, after)
    call.record(
        events.ca_updated(stored, before, after), before=before.to_dict(), after=after.to_dict()
    )
    body = {"id": ca_id, "changed": events.changed_settings(before, after)}
    return json_response({**body, "previous": before.to_dict(), "revocation": after.to_dict()})


def ca_health(call: Call) -> Response:
    store = _store(call)
    stored = store.get(call.path["id"])
    checker = RevocationChecker(call.state.database, call.state.clock, recorder=call.state.recorder)
    try:
        found = checker.health(store.chain(stored.id), store.revocation(stored.id))
    finally:
        checker.close()
    return json_response({"id": stored.id, "name": stored.name, **found})


UPLOAD = Body(
    (
        Field("pem", Kind.STRING, "The chain as PEM, intermediate first.", required=True),
        Field(
            "name",
            Kind.STRING,
            "Display name (default: the top CA's CN).",
            max_length=MAX_NAME_LENGTH,
        ),
        Field("allowSameSubject", Kind.BOOLEAN, "Accept a subject DN stored with another key."),
    ),
    pem=True,
)
_MODES = tuple(mode.value for mode in Mode)
REVOCATION = Body(
    (
        Field("mode", Kind.STRING, "How revocation is checked.", enum=_MODES),
        Field("failMode", Kind.STRING, "Allow or refuse when unknown.", enum=("open", "closed")),
        Field("crlUrl", Kind.STRING, "CRL URL (http, https, file).", nullable=True),
        Field("ocspUrl", Kind.STRING, "OCSP responder URL.", nullable=True),
        Field(
            "maxStalenessSeconds",
            Kind.INTEGER,
            "Grace past nextUpdate.",
            minimum=0,
            maximum=MAX_STALENESS_SECONDS,
        ),
        Field("timeoutSeconds", Kind.NUMBER, "Longest check.", maximum=MAX_TIMEOUT_SECONDS),
    ),
    required=False,
)
_NAME = Param("name", "The CA's display name, for a PEM body.")
_READ, _MANAGE = Permission.CAS_READ, Permission.CAS_MANAGE

OPERATIONS = (
    Operation("GET", CAS, "List CA chains", TAG, _READ, list_cas, paged=True),
    Operation(
        "POST", CAS, "Upload a CA chain", TAG, _MANAGE, upload_ca,
        body=UPLOAD, query=(_NAME,), status=201,
    ),
    Operation("GET", CA, "Show a CA chain", TAG, _READ, show_ca),
    Operation("DELETE", CA, "Remove a CA chain", TAG, _MANAGE, remove_ca, status=204),
    Operation(
        "PUT", CA + "/revocation", "Replace a CA's revocation settings", TAG, _MANAGE,
        set_revocation, body=REVOCATION,
    ),
    Operation("GET", CA + "/health", "Probe a CA's revocation sources", TAG, _READ, ca_health),
)  # fmt: skip
