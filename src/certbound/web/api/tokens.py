"""``/api/v1/tokens``: admin API tokens (:class:`~certbound.admin.tokens.ApiTokens`).

An admin lists, creates and revokes its own tokens; only ``SUPER_ADMIN`` sees and manages
other admins' (``?admin=`` and ``"admin"`` name one; anyone else asking is a 403
``FORBIDDEN_ROLE`` with an ``admin.access.deny`` event). A new token's role defaults to the
caller's (for another admin: that admin's) and must be within both the caller's token's role
and the new token's admin's role, so a token never makes a stronger one.
``certificateSha256`` binds it to a client certificate. The token is answered once, as
``token``; only its hash is stored. Creation and revocation are ``system.api_token.*``
events stamped with the admin. An unknown token id is a 404 ``TOKEN_NOT_FOUND``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from certbound.admin import admins
from certbound.admin.admins import Admin
from certbound.admin.roles import Permission, Role, within
from certbound.admin.tokens import (
    MAX_NAME_LENGTH,
    ApiTokens,
    TokenInfo,
    TokenNotFoundError,
    checked_thumbprint,
    created_event,
    revoked_event,
)
from certbound.errors import ReasonCode
from certbound.web.api import pagination
from certbound.web.api.admins import ROLES
from certbound.web.api.body import Body, Field, Kind, invalid
from certbound.web.api.operation import Call, Operation, Param, json_response, no_content
from certbound.web.problem import ApiError

TOKENS, TOKEN = "/api/v1/tokens", "/api/v1/tokens/{id}"
TAG = "tokens"
MAX_EXPIRES_DAYS = 3650


def _tokens(call: Call) -> ApiTokens:
    tokens: ApiTokens = call.state.tokens
    return tokens


def _own(call: Call, info: TokenInfo) -> bool:
    admin = call.caller.admin
    return info.id == call.caller.token.id if admin is None else info.admin_id == admin.id


def _others(call: Call, what: str) -> None:
    """Deny unless the caller manages every admin's tokens."""
    if not call.caller.may(Permission.TOKENS_MANAGE_ALL):
        call.deny(
            Permission.TOKENS_MANAGE_ALL,
            f"role {call.caller.role.value} may not {what} another admin's API tokens "
            f"(only {Role.SUPER_ADMIN.value} may)",
        )


def _found(call: Call) -> TokenInfo:
    try:
        info = _tokens(call).get(call.path["id"])
    except TokenNotFoundError as exc:
        raise ApiError(404, ReasonCode.TOKEN_NOT_FOUND, str(exc)) from None
    if not _own(call, info):
        _others(call, "read or revoke")
    return info


def _admin(call: Call, ref: str) -> Admin:
    return admins.Admins(call.state.database, call.state.clock).get(ref)


def list_tokens(call: Call) -> Response:
    ref = call.query.get("admin")
    everyone = call.caller.may(Permission.TOKENS_MANAGE_ALL)
    if ref is not None:
        admin_id = _admin(call, ref).id
        caller = call.caller.admin
        if caller is None or caller.id != admin_id:
            _others(call, "list")
        found = _tokens(call).list(admin_id=admin_id)
    else:
        found = [t for t in _tokens(call).list() if everyone or _own(call, t)]
    now = call.state.clock.now()
    page = pagination.page_of(found, lambda t: t.id, call.page)
    return pagination.response(call.request, page, lambda t: t.to_dict(now))


def show_token(call: Call) -> Response:
    return json_response(_found(call).to_dict(call.state.clock.now()))


def _owner(call: Call, ref: str | None) -> tuple[str, Role]:
    """The new token's admin and default role: the caller's admin and token role, or the
    admin ``ref`` names (another admin's: SUPER_ADMIN only) and its role."""
    caller = call.caller.admin
    if ref is None:
        if caller is None:
            raise invalid("admin: this token belongs to no admin; name the new token's admin")
        return caller.id, call.caller.role
    owner = _admin(call, ref)
    if caller is None or caller.id != owner.id:
        _others(call, "create")
    return owner.id, owner.role


def create_token(call: Call) -> Response:
    body: dict[str, Any] = call.body
    owner, default = _owner(call, body.get("admin"))
    role = Role(body.get("role", default.value))
    if not within(role, call.caller.role):
        call.deny(
            Permission.TOKENS_MANAGE_OWN,
            f"a {call.caller.role.value} token may not make a {role.value} token",
        )
    days = body.get("expiresInDays")
    binding = _binding(call, body.get("certificateSha256"))
    try:
        secret, info = _tokens(call).create(
            body.get("name", "api"),
            role.value,
            None if days is None else dt.timedelta(days=days),
            admin=owner,
            cert_sha256=binding,
        )
    except ValueError as exc:
        raise invalid(str(exc)) from None
    call.record(created_event(info, call.caller.context.actor), after=info.to_dict())
    return json_response({"token": secret, **info.to_dict(call.state.clock.now())}, 201)


def _binding(call: Call, asked: str | None) -> str | None:
    """The new token's certificate: a certificate-bound caller makes tokens bound to its own
    certificate only (else holding the token and the certificate once would be enough to
    mint tokens that need neither)."""
    bound = call.caller.token.cert_sha256
    if bound is None:
        return asked
    try:
        wanted = checked_thumbprint(asked)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if wanted is not None and wanted != bound:
        call.deny(
            Permission.TOKENS_MANAGE_OWN,
            "a certificate-bound token makes tokens bound to its own certificate only",
        )
    return bound


def revoke_token(call: Call) -> Response:
    before = _found(call)
    after, now_revoked = _tokens(call).revoke_once(before.id)
    if now_revoked:
        event = revoked_event(after, call.caller.context.actor)
        call.record(event, before=before.to_dict(), after=after.to_dict())
    return no_content()


CREATE = Body(
    (
        Field("name", Kind.STRING, "What the token is for.", max_length=MAX_NAME_LENGTH),
        Field("role", Kind.STRING, "Default: the caller's role.", enum=ROLES),
        Field(
            "admin", Kind.STRING, "The admin it belongs to (default: the caller).", max_length=256
        ),
        Field(
            "expiresInDays", Kind.INTEGER, "Default: never.", minimum=1, maximum=MAX_EXPIRES_DAYS
        ),
        Field(
            "certificateSha256", Kind.STRING, "Bind it to this client certificate.", max_length=95
        ),
    ),
    required=False,
)
_ADMIN = Param("admin", "Only this admin's tokens (another admin's: SUPER_ADMIN only).")
_READ, _MANAGE = Permission.TOKENS_READ_OWN, Permission.TOKENS_MANAGE_OWN

OPERATIONS = (
    Operation("GET", TOKENS, "List API tokens", TAG, _READ, list_tokens, query=(_ADMIN,),
              paged=True),
    Operation("POST", TOKENS, "Create an API token", TAG, _MANAGE, create_token, body=CREATE,
              status=201),
    Operation("GET", TOKEN, "Show an API token", TAG, _READ, show_token),
    Operation("DELETE", TOKEN, "Revoke an API token", TAG, _MANAGE, revoke_token, status=204),
)  # fmt: skip
