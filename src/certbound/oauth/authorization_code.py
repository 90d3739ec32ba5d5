"""The authorization-code grant (RFC 6749 section 4.1) with PKCE S256 for every client.

- :func:`check_authorize_request`: the authorization request's checks. A missing or unknown
  client, one not registered for ``authorization_code``, and a ``redirect_uri`` that is not
  exactly one of the registered ones are told to the user on a page, never by a redirect
  (RFC 6749 section 4.1.2.1: the redirect target is not trusted); every later refusal
  (``response_type``, ``scope``, PKCE, oversized ``state`` or ``nonce``) goes back to the
  client's redirect URI with ``error`` and ``state``. Scopes: the client's registered ones
  plus ``openid``; none requested means every registered one.
- :class:`AuthorizationCodes`: issuing a code (single-use, 60 s, stored hashed with the
  client, the user, the redirect URI, scope, PKCE challenge, nonce and ``auth_time``; bound
  to the client, not to the browser's certificate) and checking one at the token endpoint:
  unknown, expired, used, another client's or for another ``redirect_uri`` is
  ``invalid_grant`` GRANT_INVALID, and a used (replayed) code also revokes its family: the
  refresh and access tokens issued for it (RFC 6749 section 10.5); a verifier that does not
  hash to the challenge is ``invalid_grant`` PKCE_FAILED. :meth:`AuthorizationCodes.complete`
  marks the code used when the tokens are issued, atomically.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from certbound.clock import Clock
from certbound.directory.apps import App, Apps, AppStatus
from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError, invalid_request
from certbound.oauth.grants import (
    CODE,
    Grant,
    Grants,
    IssuedAccess,
    NewGrant,
    new_family,
    new_value,
)
from certbound.oauth.rfc7636 import check_challenge, check_verifier

CODE_SECONDS = 60
OPENID = "openid"
MAX_STATE = 2048  # state and nonce: opaque to us, but not unbounded
_CLIENT_ID = re.compile(r"[\x20-\x7e]{1,256}")  # VSCHAR (RFC 6749 appendix A.1)
# The authorization request's parameters this server reads (the login form carries them).
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked authorization request."""

    app: App
    redirect_uri: str
    redirect_uri_given: bool
    scope: str
    state: str | None
    code_challenge: str
    nonce: str | None


class AuthorizeError(Exception):
    """A refused authorization request: the OAuth ``error`` and where it is told:
    ``redirect_uri`` None means a page for the user (never a redirect)."""

    def __init__(self, error: OAuthError, redirect_uri: str | None, state: str | None) -> None:
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state
        super().__init__(str(error))

    def location(self) -> str:
        """The redirect carrying the error (RFC 6749 section 4.1.2.1)."""
        assert self.redirect_uri is not None, "this refusal is shown, not redirected"
        params = {"error": self.error.error, "error_description": self.error.description}
        if self.state is not None:
            params["state"] = self.state
        return with_query(self.redirect_uri, params)


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` added to its query (a registered URI may have one)."""
    separator = "&" if urlsplit(uri).query else ("" if uri.endswith("?") else "?")
    return uri + separator + urlencode(params)


def _page(error: str, reason: ReasonCode, description: str) -> AuthorizeError:
    return AuthorizeError(OAuthError(error, reason, description), None, None)


def _client(params: Mapping[str, str], apps: Apps) -> App:
    client_id = params.get("client_id", "")
    if not client_id:
        raise _page("invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, "client_id is missing")
    if _CLIENT_ID.fullmatch(client_id) is None:
        raise _page(
            "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            "client_id must be 1 to 256 printable ASCII characters (RFC 6749 appendix A.1)",
        )
    app = apps.by_client_id(client_id)
    if app is None or app.status is not AppStatus.ACTIVE:
        raise _page(
            "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            f"no active application has the client_id {client_id!r}",
        )
    if "authorization_code" not in app.metadata.grant_types:
        raise _page(
            "unauthorized_client",
            ReasonCode.UNSUPPORTED_GRANT_TYPE,
            f"application {client_id!r} is not registered for the authorization_code grant",
        )
    return app


def _redirect_uri(params: Mapping[str, str], app: App) -> tuple[str, bool]:
    registered = app.metadata.redirect_uris
    given = params.get("redirect_uri")
    if given is None and len(registered) == 1:
        return registered[0], False
    if given is None:
        raise _page(
            "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            "redirect_uri is required: the application registers several",
        )
    if given not in registered:
        raise _page(
            "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            "redirect_uri is not one the application registered (exact match required)",
        )
    return given, True


def allowed_scopes(app: App) -> list[str]:
    """What an authorization request may ask for: the registered scopes and ``openid``."""
    return list(dict.fromkeys([*app.metadata.scope.split(), OPENID]))


def _scope(requested: str | None, app: App) -> str:
    if requested is None:
        return app.metadata.scope
    allowed = allowed_scopes(app)
    wanted = requested.split()
    extra = [item for item in wanted if item not in allowed]
    if extra:
        raise OAuthError(
            "invalid_scope",
            ReasonCode.SCOPE_NOT_ALLOWED,
            f"scope(s) {' '.join(extra)} not registered for client {app.client_id}",
        )
    return " ".join(dict.fromkeys(wanted))


def _bounded(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is not None and len(value) > MAX_STATE:
        raise invalid_request(f"{name} is longer than {MAX_STATE} characters")
    return value


def check_authorize_request(params: Mapping[str, str], apps: Apps) -> AuthorizeRequest:
    """The checked request, or :class:`AuthorizeError` (see the module docstring)."""
    app = _client(params, apps)
    redirect_uri, given = _redirect_uri(params, app)
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE:
        state = None  # never echo an oversized value
    try:
        _bounded(params, "state")
        if params.get("response_type") != "code":
            raise OAuthError(
                "unsupported_response_type",
                ReasonCode.INVALID_OAUTH_REQUEST,
                "response_type must be code (the only flow this server offers)",
            )
        scope = _scope(params.get("scope"), app)
        challenge = params.get("code_challenge", "")
        check_challenge(challenge, params.get("code_challenge_method", ""))
        nonce = _bounded(params, "nonce")
    except OAuthError as error:
        raise AuthorizeError(error, redirect_uri, state) from None
    return AuthorizeRequest(app, redirect_uri, given, scope, state, challenge, nonce)


def request_parameters(request: AuthorizeRequest) -> dict[str, str]:
    """The request as parameters again (what the login form carries), normalised."""
    params = {
        "response_type": "code",
        "client_id": request.app.client_id,
        "scope": request.scope,
        "code_challenge": request.code_challenge,
        "code_challenge_method": "S256",
    }
    if request.redirect_uri_given:
        params["redirect_uri"] = request.redirect_uri
    if request.state is not None:
        params["state"] = request.state
    if request.nonce is not None:
        params["nonce"] = request.nonce
    return params


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """A code that passed every check but single use, and what it grants."""

    grant: Grant
    user_id: str
    scope: str
    nonce: str | None
    auth_time: int

    @property
    def family(self) -> str:
        return self.grant.family


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", ReasonCode.GRANT_INVALID, description)


class AuthorizationCodes:
    """Issues and checks authorization codes (``lifetime`` seconds; 60 by default)."""

    def __init__(self, grants: Grants, clock: Clock, *, lifetime: int = CODE_SECONDS) -> None:
        if lifetime <= 0:
            raise ValueError("a code's lifetime must be positive")
        self._grants = grants
        self._clock = clock
        self._lifetime = lifetime

    def issue(self, request: AuthorizeRequest, user_id: str, auth_time: dt.datetime) -> str:
        """A new code for ``user_id``, who signed in at ``auth_time``."""
        code = new_value()
        data = {
            "redirect_uri": request.redirect_uri,
            "redirect_uri_given": request.redirect_uri_given,
            "scope": request.scope,
            "code_challenge": request.code_challenge,
            "nonce": request.nonce,
            "auth_time": int(auth_time.timestamp()),
        }
        self._grants.add(
            NewGrant(
                code, CODE, new_family(), request.app.client_id, user_id, None, data,
                self._lifetime,
            )
        )  # fmt: skip
        return code

    def check(self, client_id: str, form: Mapping[str, str]) -> CodeGrant:
        """The token request's code for ``client_id`` (see the module docstring)."""
        code = form.get("code")
        if not code:
            raise invalid_request("code is required for the authorization_code grant")
        grant = self._grants.find(code, CODE)
        if grant is None:
            raise _invalid_grant("the authorization code is unknown")
        if grant.client_id != client_id:
            raise _invalid_grant("the authorization code was issued to another client")
        if grant.used_at is not None or grant.revoked_at is not None:
            self._grants.revoke_family(grant.family, client_id)
            raise _invalid_grant(
                "the authorization code was already used: the tokens issued for it are revoked"
            )
        if grant.expired(self._clock.now()):
            raise _invalid_grant("the authorization code has expired (codes live 60 s or less)")
        _check_redirect_uri(grant, form.get("redirect_uri"))
        check_verifier(form.get("code_verifier"), str(grant.data["code_challenge"]))
        return CodeGrant(
            grant,
            user_id=str(grant.user_id),
            scope=str(grant.data["scope"]),
            nonce=grant.data.get("nonce"),
            auth_time=int(grant.data["auth_time"]),
        )

    def complete(
        self,
        code: CodeGrant,
        issued: Sequence[IssuedAccess],
        refresh: NewGrant | None = None,
    ) -> None:
        """Mark the code used, recording the tokens issued for it; a code used meanwhile
        (a concurrent replay) revokes the family and refuses."""
        if not self._grants.claim(code.grant, issued, refresh):
            self._grants.revoke_family(code.family, code.grant.client_id)
            raise _invalid_grant(
                "the authorization code was already used: the tokens issued for it are revoked"
            )


def _check_redirect_uri(grant: Grant, given: str | None) -> None:
    """RFC 6749 section 4.1.3: the same redirect_uri as the authorization request's."""
    stored = str(grant.data["redirect_uri"])
    if given is None and not grant.data.get("redirect_uri_given"):
        return
    if given != stored:
        raise _invalid_grant(
            "redirect_uri differs from the authorization request's"
            if given is not None
            else "redirect_uri is required: the authorization request named one"
        )
