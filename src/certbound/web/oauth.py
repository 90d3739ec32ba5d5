"""The OAuth endpoints over HTTP: ``POST /oauth2/v1/token``, ``/introspect``, ``/revoke``.

Revocation (RFC 7009) takes an access token (its ``jti`` is revoked) or a refresh token (its
whole family is revoked: the refresh tokens rotated from the same authorization and the
access tokens issued with them); ``token_type_hint`` is optional and not needed (a refresh
token is opaque, an access token a JWT).

This module only translates: the request's form (``application/x-www-form-urlencoded``, at
most 64 KiB, no repeated parameter: RFC 6749 section 3.2), its ``Authorization`` header and
its device trust (:func:`certbound.web.intake.device_decision`, evaluated when the request
presented a certificate or a certificate header) become a
:class:`~certbound.oauth.client_auth.ClientRequest` for the
:class:`~certbound.oauth.token_endpoint.TokenEndpoint`, with the decision's
:class:`~certbound.policy.simulate.DeviceContext` for the app's sign-on policy. A known
mTLS client is decided on the event loop from cached answers; anything that needs the
database runs in a worker thread. The answer is RFC 6749 JSON with ``Cache-Control:
no-store``; a refusal keeps RFC 6749's error body (``error``, ``error_description``) and
adds ``reason``, the reason code.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certbound.devices.trust import TrustDecision
from certbound.errors import ReasonCode, WouldBlockError
from certbound.oauth import events
from certbound.oauth.client_auth import AuthenticatedClient, ClientAuthenticator, ClientRequest
from certbound.oauth.errors import OAuthError
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc7662 import introspection, read_own_token
from certbound.oauth.token_endpoint import TokenEndpoint
from certbound.pki.validation import Verified
from certbound.policy.simulate import DeviceContext
from certbound.syslog.events import Client
from certbound.web.intake import device_decision, presented_chain, request_client
from certbound.web.responses import FastJSONResponse

MAX_FORM_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, description)


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters, each at most once (OAuthError invalid_request otherwise)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM:
        raise _invalid(f"the body must be {FORM}, not {media_type or 'absent'}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _invalid(f"the body is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise _invalid("the body is not UTF-8") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _invalid(f"parameter {name} is repeated")
        form[name] = value
    return form


async def request_device(request: Request, *, record: bool = True) -> TrustDecision | None:
    """The request's device-trust decision, when it brought a certificate (or tried to)."""
    presented = presented_chain(request)
    if not presented.certificates and presented.problem is None:
        return None
    return await device_decision(request, record=record)


def client_request(
    form: dict[str, str], request: Request, decision: TrustDecision | None
) -> ClientRequest:
    verified = decision is not None and decision.verified
    result = decision.result if decision is not None else None
    chain = result.chain if verified and isinstance(result, Verified) else None
    certificates = decision.presented.certificates if decision is not None else ()
    return ClientRequest(
        form=form,
        authorization=request.headers.get("authorization"),
        verified_chain=chain,
        leaf_der=certificates[0] if certificates else None,
        device_reason=None if decision is None or verified else decision.reason,
    )


def _error(error: OAuthError) -> Response:
    return FastJSONResponse(
        error.to_dict(), status_code=error.status, headers={**NO_STORE, **error.headers}
    )


async def token(request: Request) -> Response:
    """The token endpoint: one ``app.oauth2.token.grant`` event per request, carrying the
    device-trust decision (no separate ``device.trust.verify`` event)."""
    endpoint: TokenEndpoint = request.app.state.token_endpoint
    try:
        form = await read_form(request)
    except OAuthError as error:
        return _error(error)
    decision = await request_device(request, record=False)
    client = request_client(request)
    device = decision.device_trust if decision is not None else None
    asked = client_request(form, request, decision)
    context = DeviceContext.of(decision)
    try:
        try:  # a known mTLS client: decided on the event loop, from cached answers
            answer = endpoint.handle(asked, client, device, offline=True, device_context=context)
        except WouldBlockError:
            answer = await run_in_threadpool(
                endpoint.handle, asked, client, device, device_context=context
            )
    except OAuthError as error:
        return _error(error)
    return FastJSONResponse(answer.to_dict(), headers=NO_STORE)


async def _authenticated(request: Request) -> tuple[dict[str, str], Any, Client]:
    """The form, the authenticated client and the HTTP client of an introspection or
    revocation request (OAuthError when the client does not authenticate)."""
    form = await read_form(request)
    decision = await request_device(request)
    client = request_client(request)
    authenticator: ClientAuthenticator = request.app.state.client_authenticator
    caller = await run_in_threadpool(
        authenticator.authenticate, client_request(form, request, decision)
    )
    if not form.get("token"):
        raise _invalid("the token parameter is required")
    return form, caller, client


async def introspect(request: Request) -> Response:
    """RFC 7662: any authenticated client may introspect an access token or a refresh
    token; ``cnf`` is included."""
    try:
        form, _caller, _client = await _authenticated(request)
    except OAuthError as error:
        return _error(error)
    state = request.app.state
    body = await run_in_threadpool(
        partial(introspection, refresh=getattr(state, "refresh_tokens", None)),
        form["token"], state.signing_keys, state.revocations, state.settings.issuer_url,
        state.clock.now(),
    )  # fmt: skip
    return FastJSONResponse(body, headers=NO_STORE)


def _revoke(state: Any, token: str, caller: AuthenticatedClient, client: Client) -> None:
    refresh: RefreshTokens | None = getattr(state, "refresh_tokens", None)
    if refresh is not None and "." not in token:  # opaque: not one of our JWTs
        family = refresh.revoke(token, caller.app.client_id)
        if family is not None:
            state.recorder.record(events.token_revoked(caller, None, True, client, family=family))
            return
    claims = read_own_token(token, state.signing_keys, state.settings.issuer_url, state.clock.now())
    jti = revoked = None
    if claims is not None and claims.get("client_id") == caller.app.client_id:
        jti = claims["jti"]
        expires = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
        revoked = state.revocations.revoke(jti, caller.app.client_id, expires)
    state.recorder.record(events.token_revoked(caller, jti, bool(revoked), client))


async def revoke(request: Request) -> Response:
    """RFC 7009: 200 for any token (only the caller's own valid tokens are revoked)."""
    try:
        form, caller, client = await _authenticated(request)
    except OAuthError as error:
        return _error(error)
    await run_in_threadpool(_revoke, request.app.state, form["token"], caller, client)
    return Response(status_code=200, headers=NO_STORE)


ROUTES = [
    Route("/oauth2/v1/token", token, methods=["POST"]),
    Route("/oauth2/v1/introspect", introspect, methods=["POST"]),
    Route("/oauth2/v1/revoke", revoke, methods=["POST"]),
]
