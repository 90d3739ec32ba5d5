"""The OAuth layer's System Log events: ``app.oauth2.token.grant`` (granted or refused),
``app.oauth2.token.revoke`` and ``user.authentication.verify`` (a sign-in on the
authorization endpoint's login page).

The actor is the client (``type: "PublicClientApp"``, Okta's name, with its client_id), or
``anonymous`` when the client could not be identified; targets name the app; the request's
``deviceTrust`` object (intake, certificate, device) is carried along, and ``debugData`` holds
the grant type, the client authentication method, the scope, the token's ``jti`` and what it
is bound to (``cnf``); for a user's grant also the user id and the grant family. Once the
app's sign-on policy was evaluated, its decision is the event's ``policyEvaluationDetail``
(the token endpoint records no separate ``policy.evaluate_sign_on``: one event per token
request). No token, code, password, secret or assertion is ever recorded.

A sign-in's actor is the user (``type: "User"``) when the password matched, else an
unidentified user with the username typed as ``alternateId`` (ids are never revealed for a
failed attempt); the target is the app being signed in to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certbound.directory.apps import App
from certbound.errors import ReasonCode
from certbound.oauth.client_auth import AuthenticatedClient, ClientRequest
from certbound.oauth.errors import OAuthError
from certbound.syslog.events import (
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
)

CLIENT_TYPE = "PublicClientApp"
APP_TARGET = "AppInstance"
UNKNOWN_CLIENT = Actor("anonymous", CLIENT_TYPE, None, "Unidentified client")
_OAUTH = {"credentialType": "CLIENT_CREDENTIAL"}


def _client_actor(client: AuthenticatedClient) -> Actor:
    app = client.app
    return Actor(app.id, CLIENT_TYPE, app.client_id, app.name)


def _app_target(client: AuthenticatedClient) -> Target:
    return Target(client.app.id, APP_TARGET, client.app.client_id, client.app.name)


def token_granted(
    grant_type: str,
    client: AuthenticatedClient,
    claims: Mapping[str, Any],
    http_client: Client,
    device: Mapping[str, Any] | None,
    *,
    details: Mapping[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
) -> Event:
    """A token was issued (``details``: more debugData, e.g. the user and grant family;
    ``policy``: the sign-on policy's ``policyEvaluationDetail``)."""
    bound = (claims.get("cnf") or {}).get("x5t#S256") or client.cnf_x5t_s256
    return Event(
        event_type=EventType.APP_OAUTH2_TOKEN_GRANT,
        display_message=(
            f"OAuth2 access token granted to {client.app.client_id} ({grant_type}"
            f"{', certificate-bound' if bound else ''})"
        ),
        outcome=Outcome(Result.SUCCESS),
        actor=_client_actor(client),
        targets=(_app_target(client),),
        client=http_client,
        transaction_type="WEB",
        authentication_context={**_OAUTH, "authenticationProvider": client.method.value},
        device_trust=dict(device) if device is not None else None,
        policy_evaluation=policy,
        debug_data={
            "grantType": grant_type,
            "clientAuthMethod": client.method.value,
            "scope": claims.get("scope", ""),
            "jti": claims.get("jti"),
            "audience": claims.get("aud"),
            "cnf": {"x5t#S256": bound} if bound else None,
            **(details or {}),
        },
    )


def token_refused(
    request: ClientRequest,
    client: AuthenticatedClient | None,
    error: OAuthError,
    http_client: Client,
    device: Mapping[str, Any] | None,
    *,
    policy: dict[str, Any] | None = None,
) -> Event:
    """A token request was refused at some step (``policy``: the decision of the sign-on
    policy that refused it)."""
    claimed = request.form.get("client_id")
    actor = _client_actor(client) if client else UNKNOWN_CLIENT
    name = client.app.client_id if client else (claimed or "an unidentified client")
    return Event(
        event_type=EventType.APP_OAUTH2_TOKEN_GRANT,
        display_message=f"OAuth2 token request refused ({error.reason.value}): {name}",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        targets=(_app_target(client),) if client else (),
        client=http_client,
        transaction_type="WEB",
        authentication_context=dict(_OAUTH),
        device_trust=dict(device) if device is not None else None,
        policy_evaluation=policy,
        debug_data={
            "grantType": request.form.get("grant_type"),
            "claimedClientId": claimed,
            "error": error.error,
            "detail": error.description,
        },
    )


def token_revoked(
    client: AuthenticatedClient,
    jti: str | None,
    revoked: bool,
    http_client: Client,
    *,
    family: str | None = None,
) -> Event:
    """A revocation request: ``jti`` of the access token revoked, or ``family`` of the
    refresh token whose family was revoked (neither: not one of the client's valid tokens,
    answered 200 anyway per RFC 7009), ``revoked`` False when it already was."""
    if family is not None:
        what = "refresh token family revoked"
    else:
        what = (
            "revoked" if revoked else ("already revoked" if jti else "not a token of this client")
        )
    found = jti is not None or family is not None
    return Event(
        event_type=EventType.APP_OAUTH2_TOKEN_REVOKE,
        display_message=f"OAuth2 token revocation by {client.app.client_id}: {what}",
        outcome=Outcome(Result.SUCCESS if found else Result.SKIPPED),
        actor=_client_actor(client),
        targets=(_app_target(client),),
        client=http_client,
        transaction_type="WEB",
        authentication_context={**_OAUTH, "authenticationProvider": client.method.value},
        debug_data={
            "jti": jti,
            "revoked": revoked,
            **({"tokenType": "refresh_token", "grantFamily": family} if family else {}),
        },
    )


USER_TYPE = "User"
_PASSWORD = {"credentialType": "PASSWORD", "authenticationProvider": "CERTBOUND"}


def user_signed_in(
    user_id: str,
    username: str,
    display_name: str | None,
    *,
    app_target: Target,
    http_client: Client,
    device: Mapping[str, Any] | None,
    policy: dict[str, Any] | None = None,
) -> Event:
    """A user signed in on the login page (``policy``: the sign-on policy's decision)."""
    return Event(
        event_type=EventType.USER_AUTHENTICATION_VERIFY,
        display_message=f"User {username} signed in to {app_target.alternate_id}",
        outcome=Outcome(Result.SUCCESS),
        actor=Actor(user_id, USER_TYPE, username, display_name),
        targets=(app_target,),
        client=http_client,
        transaction_type="WEB",
        authentication_context=dict(_PASSWORD),
        device_trust=dict(device) if device is not None else None,
        policy_evaluation=policy,
        debug_data={"clientId": app_target.alternate_id},
    )


def user_sign_in_failed(
    username: str,
    reason: ReasonCode,
    detail: str,
    *,
    app_target: Target,
    http_client: Client,
    device: Mapping[str, Any] | None,
    locked_out: bool = False,
) -> Event:
    """A sign-in was refused: a wrong username or password, or the username locked out."""
    return Event(
        event_type=EventType.USER_AUTHENTICATION_VERIFY,
        display_message=f"Sign-in to {app_target.alternate_id} refused ({reason.value})",
        outcome=Outcome(Result.FAILURE, reason),
        actor=Actor("unknown", USER_TYPE, _printable(username[:256]), None),
        severity=Severity.WARN,
        targets=(app_target,),
        client=http_client,
        transaction_type="WEB",
        authentication_context=dict(_PASSWORD),
        device_trust=dict(device) if device is not None else None,
        debug_data={
            "clientId": app_target.alternate_id,
            "lockedOut": locked_out,
            "detail": detail,
        },
    )


def app_target(app: App) -> Target:
    return Target(app.id, APP_TARGET, app.client_id, app.name)


def _printable(text: str) -> str:
    """What was typed, control characters replaced (a column cannot hold every one)."""
    return "".join(char if char.isprintable() else "?" for char in text)
