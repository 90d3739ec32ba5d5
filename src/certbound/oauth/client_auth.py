"""OAuth client authentication: one entry point over every ``token_endpoint_auth_method``.

:meth:`ClientAuthenticator.authenticate` takes what the web layer extracted from a request
(:class:`ClientRequest`: the form, the Authorization header, the client certificate and its
device-trust verdict) and answers the :class:`AuthenticatedClient`, or raises
:class:`~certbound.oauth.errors.OAuthError`. The steps:

1. which credentials the request carries: HTTP Basic (RFC 6749 section 2.3.1, id and secret
   form-urlencoded), ``client_secret`` in the body, a ``client_assertion`` (RFC 7523), or
   none (mutual TLS, RFC 8705, and public clients): more than one is ``invalid_request``;
2. the client: an unknown client_id and a wrong secret are refused alike (no enumeration);
3. the method used must be the client's registered one (``invalid_client`` naming both);
4. the credentials: the secret (constant time), the assertion
   (:func:`~certbound.oauth.rfc7523.verify_client_assertion`), the certificate
   (:mod:`~certbound.oauth.rfc8705`: NO_CLIENT_CERTIFICATE, the device-trust reason when
   the chain did not validate, CERTIFICATE_NOT_BOUND_TO_CLIENT when it does not match);
5. an inactive client is refused.

``invalid_client`` answers 401, with ``WWW-Authenticate: Basic`` when Basic was used.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from cryptography import x509

from certbound.clock import Clock
from certbound.directory.apps import App, Apps, AppStatus, AuthMethod
from certbound.errors import ReasonCode, WouldBlockError
from certbound.oauth import rfc8705
from certbound.oauth.errors import OAuthError, invalid_client, invalid_request
from certbound.oauth.rfc7523 import (
    ASSERTION_TYPE,
    AssertionReplay,
    claimed_subject,
    verify_client_assertion,
)

# The one description for an unknown client and wrong credentials (no client enumeration).
FAILED = "client authentication failed"
_CERTIFICATE_METHODS = frozenset(
    {AuthMethod.TLS_CLIENT_AUTH, AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH}
)
_FAILED = ReasonCode.CLIENT_AUTHENTICATION_FAILED


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """What the web layer extracts from the HTTP request (no HTTP types here)."""

    form: Mapping[str, str]
    authorization: str | None
    verified_chain: tuple[x509.Certificate, ...] | None
    leaf_der: bytes | None
    device_reason: ReasonCode | None


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """The authenticated client, how, and the ``x5t#S256`` its tokens are bound to."""

    app: App
    method: AuthMethod
    cnf_x5t_s256: str | None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """The client_id claimed and the credentials the request carries."""

    client_id: str
    method: AuthMethod | None  # None: no secret or assertion (mutual TLS or a public client)
    secret: str | None = None
    assertion: str | None = None

    @property
    def basic(self) -> bool:
        return self.method is AuthMethod.CLIENT_SECRET_BASIC


class ClientAuthenticator:
    """Authenticates the client of a token, introspection or revocation request."""

    def __init__(
        self,
        apps: Apps,
        *,
        token_endpoint_urls: Sequence[str],
        clock: Clock,
        replay: AssertionReplay | None = None,
    ) -> None:
        self._apps = apps
        self._audience = tuple(token_endpoint_urls)
        self._clock = clock
        self._replay = replay if replay is not None else AssertionReplay()

    def authenticate(self, request: ClientRequest, *, offline: bool = False) -> AuthenticatedClient:
        """The authenticated client, or OAuthError. With ``offline`` (on the event loop):
        only a cached client of a certificate method, else WouldBlockError before anything
        is checked or remembered."""
        credentials = credentials_of(request)
        app = self._apps.by_client_id(credentials.client_id, offline=offline)
        if app is None:
            raise invalid_client(_FAILED, FAILED, basic=credentials.basic)
        method = app.metadata.token_endpoint_auth_method
        if offline and method not in _CERTIFICATE_METHODS:
            raise WouldBlockError("client authentication by secret or assertion")
        _check_method(app, method, credentials)
        if method in _CERTIFICATE_METHODS:
            binding: str | None = _certificate(app, method, request)
        else:
            self._check_credentials(app, credentials)
            binding = _optional_binding(app, request)
        if app.status is not AppStatus.ACTIVE:
            raise invalid_client(
                _FAILED, f"client {app.client_id} is not active", basic=credentials.basic
            )
        return AuthenticatedClient(app, method, binding)

    def _check_credentials(self, app: App, credentials: _Credentials) -> None:
        if credentials.assertion is not None:
            verify_client_assertion(
                credentials.assertion,
                app.metadata,
                client_id=app.client_id,
                audience=self._audience,
                now=self._clock.now(),
                replay=self._replay,
            )
            return
        secret = credentials.secret
        if secret is not None and not (app.has_secret and self._apps.verify_secret(app, secret)):
            raise invalid_client(_FAILED, FAILED, basic=credentials.basic)


def _check_method(app: App, registered: AuthMethod, credentials: _Credentials) -> None:
    """The method used must be the registered one; without a secret or an assertion the
    registered method must be mutual TLS or none."""
    used = credentials.method
    if used is None and (registered in _CERTIFICATE_METHODS or registered is AuthMethod.NONE):
        return
    if used is registered:
        return
    shown = used.value if used is not None else "no client credentials"
    raise invalid_client(
        _FAILED,
        f"client {app.client_id} is registered for token_endpoint_auth_method "
        f"{registered.value}; the request used {shown}",
        basic=credentials.basic,
    )


def _certificate(app: App, method: AuthMethod, request: ClientRequest) -> str:
    """Check the client certificate of a mutual-TLS client; its x5t#S256."""
    if request.leaf_der is None:
        raise invalid_client(
            ReasonCode.NO_CLIENT_CERTIFICATE,
            f"client {app.client_id} uses {method.value}: present a client certificate",
        )
    if method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
        detail = rfc8705.self_signed_matches(app.metadata, request.leaf_der)
    elif request.verified_chain is None:
        reason = request.device_reason or ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT
        raise invalid_client(
            reason,
            f"the client certificate did not validate against the trust store "
            f"({reason.value}: {reason.meaning})",
        )
    else:
        detail = rfc8705.tls_client_auth_matches(app.metadata, request.verified_chain)
    if detail is not None:
        raise invalid_client(
            ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT,
            f"certificate not bound to client {app.client_id}: {detail}",
        )
    return rfc8705.bound_thumbprint(request.leaf_der)


def _optional_binding(app: App, request: ClientRequest) -> str | None:
    """A client of another method came over mutual TLS: bind when it asks for binding."""
    if request.leaf_der is None or not app.metadata.tls_client_certificate_bound_access_tokens:
        return None
    return rfc8705.bound_thumbprint(request.leaf_der)


def credentials_of(request: ClientRequest) -> _Credentials:
    """The claimed client_id and the one set of credentials the request carries."""
    form = request.form
    basic = _basic(request.authorization)
    posted = "client_secret" in form
    asserted = "client_assertion" in form or "client_assertion_type" in form
    if sum((basic is not None, posted, asserted)) > 1:
        raise invalid_request(
            "use exactly one client authentication method (HTTP Basic, client_secret in "
            "the body, or client_assertion), not several"
        )
    form_id = form.get("client_id")
    if basic is not None:
        if form_id is not None and form_id != basic[0]:
            raise invalid_request("client_id in the body differs from the HTTP Basic one")
        return _Credentials(basic[0], AuthMethod.CLIENT_SECRET_BASIC, secret=basic[1])
    if asserted:
        return _asserted(form, form_id)
    if not form_id:
        raise invalid_request("client_id is required")
    if posted:
        return _Credentials(form_id, AuthMethod.CLIENT_SECRET_POST, secret=form["client_secret"])
    return _Credentials(form_id, None)


def _basic(authorization: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from ``Authorization: Basic``, form-urlencoded (RFC 6749
    section 2.3.1); None without an Authorization header."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise invalid_request(
            f"the Authorization scheme {scheme!r} is not a client authentication method (use Basic)"
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _bad_basic("the credentials are not base64 of UTF-8 text") from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise _bad_basic("the credentials have no ':' between client_id and secret")
    try:
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except UnicodeDecodeError:
        raise _bad_basic("a %XX escape is not UTF-8") from None
    if not client_id:
        raise _bad_basic("the client_id is empty")
    return client_id, secret


def _bad_basic(detail: str) -> OAuthError:
    return invalid_client(_FAILED, f"malformed HTTP Basic client credentials: {detail}", basic=True)


def _asserted(form: Mapping[str, str], form_id: str | None) -> _Credentials:
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if assertion_type != ASSERTION_TYPE:
        raise invalid_request(f"client_assertion_type must be {ASSERTION_TYPE}")
    if not assertion:
        raise invalid_request("client_assertion is required with client_assertion_type")
    client_id = form_id or claimed_subject(assertion)
    if not client_id:
        raise invalid_request("client_id is required (the client_assertion names no sub)")
    return _Credentials(client_id, AuthMethod.PRIVATE_KEY_JWT, assertion=assertion)
