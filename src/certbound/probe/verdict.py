"""Certbound's verdict on the certificate, as the server tells it: the intake echo
(``GET /api/v1/intake/echo``) or a token request (``POST /oauth2/v1/token``).

The echo names the verdict, the reason code, the layer that decided, the device and user and
the System Log event. The report only passes when the server judged *this* certificate: the
leaf it says it saw must be the one sent. A token passes when it is bound to this
certificate: its ``cnf.x5t#S256`` (RFC 8705) is the certificate's SHA-256 thumbprint. The
token's signature is not checked here (that is the resource server's job), only its claims
are read.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from certbound.errors import ReasonCode
from certbound.pki.certificate import sha256_fingerprint

from .http11 import HttpResponse
from .inputs import ClientCredentials
from .report import LayerName, LayerResult, Status, known_code

ECHO_PATH = "/api/v1/intake/echo"
TOKEN_PATH = "/oauth2/v1/token"
_NAME = LayerName.CERTBOUND


def _server_failure(detail: str, body: dict[str, Any], facts: dict[str, Any]) -> LayerResult:
    """A failure carrying the server's reason code; the server's layer and fix win over the
    catalogue's (the server may know a code this client does not)."""
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    code = known_code(reason)
    layer = body.get("layer") if isinstance(body.get("layer"), str) else None
    fix = body.get("fix") if isinstance(body.get("fix"), str) else None
    return LayerResult(
        _NAME,
        Status.FAIL,
        detail,
        reason=reason,
        layer=layer or (code.layer.value if code else None),
        fix=fix or (code.fix if code else None),
        facts=facts,
    )


_NOT_HERE = {
    f"GET {ECHO_PATH}": "this server has no intake echo (not Certbound, or an older one)",
    f"POST {TOKEN_PATH}": "token endpoint not available on this server",
}


def _not_json(what: str, response: HttpResponse) -> LayerResult:
    facts = {"status": response.status, "contentType": response.content_type}
    if response.status == 404:
        return LayerResult.failed(_NAME, f"{what} answered 404: {_NOT_HERE[what]}", None, facts)
    body = response.json_object()
    if body is not None and (body.get("reason") or body.get("detail")):
        detail = f"{what} answered {response.status}: {body.get('detail') or body.get('title')}"
        return _server_failure(detail, body, facts)
    shown = response.excerpt(120) or "(empty body)"
    return LayerResult.failed(
        _NAME,
        f"{what} answered {response.status} {response.content_type or 'without a type'}, "
        f"not Certbound's JSON: is this a Certbound server? ({shown})",
        None,
        facts,
    )


def _same_certificate(thumbprint: object, credentials: ClientCredentials) -> bool:
    """Whether a thumbprint the server reports (hex SHA-256, any case or with colons, or
    RFC 8705 base64url) is the certificate sent."""
    if not isinstance(thumbprint, str):
        return False
    hex_form = thumbprint.replace(":", "").lower()
    return thumbprint == credentials.x5t_s256 or hex_form == sha256_fingerprint(credentials.leaf)


def echo_layer(response: HttpResponse, credentials: ClientCredentials) -> LayerResult:
    what = f"GET {ECHO_PATH}"
    body = response.json_object() if response.status == 200 else None
    if body is None or "verdict" not in body:
        return _not_json(what, response)
    facts = _echo_facts(body, credentials)
    verdict = body.get("verdict")
    if not facts["leafMatches"]:
        seen = facts["certificatesSeen"]
        detail = (
            f"Certbound judged another certificate than the one sent ({seen} seen, "
            f"intake path {facts['intakePath']}): a proxy in between replaced or dropped it"
        )
        if verdict == "DENY":
            return _server_failure(f"{detail}; verdict DENY", body, facts)
        return LayerResult.failed(_NAME, detail, None, facts)
    if verdict == "ALLOW":
        device = facts.get("device") or {}
        user = device.get("user") or "no user"
        return LayerResult.passed(_NAME, f"ALLOW: device {device.get('id')} ({user})", facts)
    detail = f"{verdict}: {body.get('detail') or 'no detail given'}"
    return _server_failure(detail, body, facts)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _echo_facts(body: dict[str, Any], credentials: ClientCredentials) -> dict[str, Any]:
    intake = _object(body.get("intake"))
    chain: list[Any] = body["chain"] if isinstance(body.get("chain"), list) else []
    leaf = _object(chain[0]) if chain else {}
    device = _object(body.get("device")) or None
    return {
        "verdict": body.get("verdict"),
        "reason": body.get("reason"),
        "layer": body.get("layer"),
        "detail": body.get("detail"),
        "verified": body.get("verified"),
        "device": device,
        "user": device.get("user") if device else None,
        "eventId": body.get("eventId"),
        "intakePath": intake.get("path"),
        "listener": intake.get("listener"),
        "serverTls": intake.get("tls"),
        "certificatesSeen": intake.get("certificates", len(chain)),
        "leafSeen": leaf or None,
        "leafMatches": _same_certificate(leaf.get("sha256Thumbprint"), credentials),
        "revocation": body.get("revocation"),
    }


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWS compact token, not verified; None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_layer(response: HttpResponse, credentials: ClientCredentials) -> LayerResult:
    what = f"POST {TOKEN_PATH}"
    body = response.json_object()
    if response.status != 200 and body is not None and "error" in body:
        described = body.get("error_description") or "no description"
        detail = f"token request refused ({response.status} {body.get('error')}): {described}"
        facts = {"status": response.status, "error": body.get("error")}
        return _server_failure(detail, body, facts)
    token = body.get("access_token") if body is not None and response.status == 200 else None
    if not isinstance(token, str):
        return _not_json(what, response)
    return _bound_token_layer(token, body or {}, credentials)


def _bound_token_layer(
    token: str, body: dict[str, Any], credentials: ClientCredentials
) -> LayerResult:
    claims = jwt_claims(token)
    expected = credentials.x5t_s256
    facts: dict[str, Any] = {
        "tokenType": body.get("token_type"),
        "expiresIn": body.get("expires_in"),
        "scope": body.get("scope"),
        "expectedX5tS256": expected,
    }
    if claims is None:
        detail = "the access token is not a JWT: its certificate binding cannot be read here"
        return LayerResult.failed(_NAME, detail, None, facts)
    cnf = _object(claims.get("cnf"))
    bound = cnf.get("x5t#S256")
    facts.update(sub=claims.get("sub"), clientId=claims.get("client_id"), x5tS256=bound)
    if bound is None:
        detail = "the token has no cnf.x5t#S256: it is not bound to the certificate (RFC 8705)"
        return LayerResult.failed(_NAME, detail, None, facts)
    if bound != expected:
        detail = f"the token is bound to x5t#S256 {bound}, the certificate sent is {expected}"
        return LayerResult.failed(_NAME, detail, ReasonCode.TOKEN_BINDING_MISMATCH, facts)
    return LayerResult.passed(_NAME, f"certificate-bound token issued (x5t#S256 {bound})", facts)
