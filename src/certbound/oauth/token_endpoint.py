"""The token endpoint (RFC 6749 section 3.2) as named steps, like node-oidc-provider's.

:meth:`TokenEndpoint.handle` runs, in order:

1. ``check_grant_type``: a grant type this server supports: ``client_credentials``, and with
   :class:`UserGrants` ``authorization_code`` (PKCE S256) and ``refresh_token``;
2. ``authenticate_client``: :class:`~certbound.oauth.client_auth.ClientAuthenticator`, every
   RFC 6749 / RFC 7523 / RFC 8705 method, which also says what the token is bound to;
3. ``check_grant_allowed``: the grant is registered for the client (``unauthorized_client``);
4. ``check_sign_on_policy``: the app's sign-on policy (its own, else the default:
   :mod:`certbound.policy`) decides with the request's device context (verified or why not,
   the device's status, the validated certificate's facts, the client's IP address, the
   time) and, for ``refresh_token``, the grant's user and their groups (checked once the
   refresh token is). An ``authorization_code`` is not evaluated again: the login page
   evaluated the sign-on with the user and the browser's device and issued no code on a
   DENY (the token request comes from the app's server, not the user's device). A DENY here
   is ``access_denied`` (403)
   with POLICY_DENIED (a DENY rule matched) or POLICY_NOT_MATCHED (only the catch-all did,
   and it denies). The compiled policy is cached per process, so a known app's
   client_credentials request is still decided on the event loop;
5. ``check_scope``: requested scopes within the client's registered ones;
6. ``issue``: an RFC 9068 JWT access token signed with the active key, carrying
   ``cnf.x5t#S256`` when the client came over mutual TLS (RFC 8705 section 3). For
   ``authorization_code`` (:mod:`~certbound.oauth.authorization_code`) the code is checked
   first (GRANT_INVALID, PKCE_FAILED), ``sub`` is the user, a refresh token
   (:mod:`~certbound.oauth.refresh`) comes along when the client is registered for the
   ``refresh_token`` grant, and an ID token (:mod:`~certbound.oauth.id_token`) when the scope
   holds ``openid``; ``refresh_token`` checks, binds and rotates the refresh token
   (REFRESH_TOKEN_REUSED, TOKEN_BINDING_MISMATCH, TOKEN_BINDING_MISSING). A user who is gone
   or no longer ACTIVE gets nothing (GRANT_INVALID);
7. ``record``: one ``app.oauth2.token.grant`` event, SUCCESS or FAILURE with its reason code,
   with the request's device-trust context and the policy's decision
   (``policyEvaluationDetail``, once the policy was evaluated): the token request's one event.

A refusal at any step is an :class:`~certbound.oauth.errors.OAuthError` (RFC 6749 error code,
reason code, HTTP status) and is recorded the same way. Nothing here speaks HTTP: the web
layer (:mod:`certbound.web.oauth`) hands in a :class:`ClientRequest` and turns the answer or
the error into a response.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certbound.clock import Clock
from certbound.directory.users import Users, UserStatus
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.oauth import events
from certbound.oauth.authorization_code import OPENID, AuthorizationCodes
from certbound.oauth.client_auth import AuthenticatedClient, ClientAuthenticator, ClientRequest
from certbound.oauth.errors import OAuthError
from certbound.oauth.grants import IssuedAccess, NewGrant
from certbound.oauth.id_token import Identity, issue_id_token
from certbound.oauth.keys import SigningKeys
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc8705 import bound_thumbprint
from certbound.oauth.rfc9068 import issue_access_token
from certbound.policy.engine import PolicyDecision
from certbound.policy.simulate import NO_DEVICE, DeviceContext, SignOn
from certbound.syslog.events import Client
from certbound.syslog.recorder import EventRecorder

CLIENT_GRANTS = frozenset({"client_credentials"})
USER_GRANTS = frozenset({"authorization_code", "refresh_token"})
SUPPORTED_GRANTS = CLIENT_GRANTS | USER_GRANTS
DEFAULT_AUDIENCE = "api://default"


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token response (RFC 6749 section 5.1) and the claims it carries."""

    access_token: str
    expires_in: int
    scope: str
    claims: Mapping[str, Any]
    refresh_token: str | None = None
    id_token: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # for the event, never sent
    policy: PolicyDecision | None = None  # for the event, never sent

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.scope:
            body["scope"] = self.scope
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


@dataclass(frozen=True, slots=True)
class TokenSettings:
    issuer: str
    access_token_seconds: int


@dataclass(frozen=True, slots=True)
class UserGrants:
    """What the grants on behalf of a user need: the codes, the refresh tokens, the users."""

    codes: AuthorizationCodes
    refresh: RefreshTokens
    users: Users


class PolicyDeniedError(OAuthError):
    """``access_denied`` (403): the app's sign-on policy denied the request."""

    def __init__(self, decision: PolicyDecision) -> None:
        reason = decision.reason or ReasonCode.POLICY_DENIED
        who = "a DENY rule matched"
        if reason is ReasonCode.POLICY_NOT_MATCHED:
            who = "no rule but the catch-all matched, and it denies"
        super().__init__(
            "access_denied",
            reason,
            f"the sign-on policy {decision.policy_name!r} denied the request: {who} "
            f"(rule {decision.matched_rule_name!r})",
            status=403,
        )
        self.decision = decision


@dataclass(frozen=True, slots=True)
class SignOnContext:
    """What the policy step reads of the request besides the client and user."""

    device: DeviceContext
    ip: str | None
    offline: bool


_Gate = Callable[[str | None], PolicyDecision | None]


class TokenEndpoint:
    """Issues tokens; one per app. Without ``user_grants`` only client_credentials; without
    ``sign_on`` no sign-on policy is evaluated."""

    def __init__(
        self,
        authenticator: ClientAuthenticator,
        keys: SigningKeys,
        recorder: EventRecorder,
        clock: Clock,
        settings: TokenSettings,
        *,
        user_grants: UserGrants | None = None,
        sign_on: SignOn | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._sign_on = sign_on
        self._keys = keys
        self._recorder = recorder
        self._clock = clock
        self._settings = settings
        self._user_grants = user_grants
        self._supported = SUPPORTED_GRANTS if user_grants is not None else CLIENT_GRANTS

    def handle(
        self,
        request: ClientRequest,
        client: Client,
        device: Mapping[str, Any] | None,
        *,
        offline: bool = False,
        device_context: DeviceContext | None = None,
    ) -> TokenResponse:
        """Run the steps; OAuthError on a refusal. Either way one event is recorded
        (``device``: the request's ``deviceTrust`` object, or None without mTLS;
        ``device_context``: what the sign-on policy reads of the device, by default taken
        from the request's verified chain). With ``offline`` (on the event loop): only a
        client_credentials grant of a cached certificate-authenticated client with the
        signing key and the compiled policy at hand, else WouldBlockError before any step
        ran or anything was recorded."""
        grant_type = request.form.get("grant_type", "")
        authenticated: AuthenticatedClient | None = None
        if offline:
            if grant_type != "client_credentials":
                raise WouldBlockError("this grant reads the database")
            self._keys.signing_key(offline=True)
        context = SignOnContext(
            device_context or _device_context(request), client.ip_address, offline
        )
        try:
            check_grant_type(grant_type, self._supported)
            authenticated = self._authenticator.authenticate(request, offline=offline)
            check_grant_allowed(authenticated, grant_type)
            response = self._grant(grant_type, authenticated, request, context)
        except OAuthError as error:
            decision = error.decision if isinstance(error, PolicyDeniedError) else None
            self._recorder.record(
                events.token_refused(
                    request, authenticated, error, client, device, policy=_detail(decision)
                )
            )
            raise
        self._recorder.record(
            events.token_granted(
                grant_type,
                authenticated,
                response.claims,
                client,
                device,
                details=response.details,
                policy=_detail(response.policy),
            )
        )
        return response

    def check_sign_on_policy(
        self, client: AuthenticatedClient, context: SignOnContext, user_id: str | None
    ) -> PolicyDecision | None:
        """The app's policy decision (None without policies); PolicyDeniedError on a DENY."""
        sign_on = self._sign_on
        if sign_on is None:
            return None
        groups = sign_on.group_ids(user_id) if user_id is not None else frozenset[str]()
        decision = sign_on.evaluate(
            client.app.id,
            context.device,
            at=self._clock.now(),
            ip=context.ip,
            user_id=user_id,
            group_ids=groups,
            offline=context.offline,
        )
        if not decision.allowed:
            raise PolicyDeniedError(decision)
        return decision

    def _grant(
        self,
        grant_type: str,
        client: AuthenticatedClient,
        request: ClientRequest,
        context: SignOnContext,
    ) -> TokenResponse:
        form = request.form

        def gate(user_id: str | None) -> PolicyDecision | None:
            return self.check_sign_on_policy(client, context, user_id)

        if grant_type == "client_credentials":
            decision = gate(None)
            scope = check_scope(client, form.get("scope"))
            issued = self._issue(client, scope, form.get("resource"))
            return dataclasses.replace(issued, policy=decision) if decision else issued
        assert self._user_grants is not None  # check_grant_type let only supported ones in
        if grant_type == "authorization_code":
            return self._authorization_code(self._user_grants, client, form)
        presented = bound_thumbprint(request.leaf_der) if request.leaf_der else None
        return self._refresh(self._user_grants, client, form, presented, gate)

    def _issue(
        self,
        client: AuthenticatedClient,
        scope: str,
        resource: str | None,
        *,
        subject: str | None = None,
        cnf: str | None = None,
    ) -> TokenResponse:
        now = self._clock.now()
        lifetime = self._settings.access_token_seconds
        token, claims = issue_access_token(
            self._keys.signing_key(),
            issuer=self._settings.issuer,
            client_id=client.app.client_id,
            subject=subject or client.app.client_id,
            audience=audience(resource),
            scope=scope,
            lifetime=lifetime,
            now=now.astimezone(dt.UTC),
            cnf_x5t_s256=cnf or client.cnf_x5t_s256,
        )
        return TokenResponse(token, lifetime, scope, claims)

    def _authorization_code(
        self,
        grants: UserGrants,
        client: AuthenticatedClient,
        form: Mapping[str, str],
    ) -> TokenResponse:
        code = grants.codes.check(client.app.client_id, form)
        identity = _identity(grants.users, code.user_id)
        decision = None  # the login page decided the sign-on that issued this code
        access = self._issue(client, code.scope, form.get("resource"), subject=code.user_id)
        refresh: tuple[str, NewGrant] | None = None
        if "refresh_token" in client.app.metadata.grant_types:
            refresh = grants.refresh.new(
                client_id=client.app.client_id,
                user_id=code.user_id,
                family=code.family,
                cnf=client.cnf_x5t_s256,
                scope=code.scope,
                auth_time=code.auth_time,
            )
        id_token = self._id_token(client, identity, access, code.auth_time, code.nonce)
        grants.codes.complete(code, [_issued(access)], refresh[1] if refresh else None)
        return _with(access, refresh, id_token, code.family, code.user_id, decision=decision)

    def _refresh(
        self,
        grants: UserGrants,
        client: AuthenticatedClient,
        form: Mapping[str, str],
        presented: str | None,
        gate: _Gate,
    ) -> TokenResponse:
        old = grants.refresh.check(client.app.client_id, form, presented)
        identity = _identity(grants.users, old.user_id)
        decision = gate(old.user_id)
        cnf = old.grant.cnf or client.cnf_x5t_s256
        access = self._issue(client, old.scope, form.get("resource"), subject=old.user_id, cnf=cnf)
        refresh = grants.refresh.new(
            client_id=client.app.client_id,
            user_id=old.user_id,
            family=old.family,
            cnf=cnf,
            scope=old.original_scope,
            auth_time=old.auth_time,
        )
        id_token = self._id_token(client, identity, access, old.auth_time, None)
        grants.refresh.rotate(old, [_issued(access)], refresh[1])
        return _with(access, refresh, id_token, old.family, old.user_id, decision=decision)

    def _id_token(
        self,
        client: AuthenticatedClient,
        identity: Identity,
        access: TokenResponse,
        auth_time: int | None,
        nonce: str | None,
    ) -> str | None:
        if OPENID not in access.scope.split():
            return None
        token, _claims = issue_id_token(
            self._keys.signing_key(),
            issuer=self._settings.issuer,
            identity=identity,
            client_id=client.app.client_id,
            scope=access.scope,
            auth_time=auth_time,
            nonce=nonce,
            access_token=access.access_token,
            lifetime=self._settings.access_token_seconds,
            now=self._clock.now().astimezone(dt.UTC),
        )
        return token


def _issued(access: TokenResponse) -> IssuedAccess:
    return IssuedAccess(str(access.claims["jti"]), int(access.claims["exp"]))


def _with(
    access: TokenResponse,
    refresh: tuple[str, NewGrant] | None,
    id_token: str | None,
    family: str,
    user_id: str,
    *,
    decision: PolicyDecision | None,
) -> TokenResponse:
    """The access token's response with the refresh and ID tokens, and the event's details."""
    details = {
        "userId": user_id,
        "grantFamily": family,
        "refreshTokenIssued": refresh is not None,
        "idTokenIssued": id_token is not None,
        "refreshTokenBound": bool(refresh and refresh[1].cnf),
    }
    return TokenResponse(
        access.access_token,
        access.expires_in,
        access.scope,
        access.claims,
        refresh_token=refresh[0] if refresh else None,
        id_token=id_token,
        details=details,
        policy=decision,
    )


def _device_context(request: ClientRequest) -> DeviceContext:
    """The device context a request implies when the caller gave none (no device status)."""
    chain = request.verified_chain
    if chain is not None:
        return DeviceContext(True, None, None, chain, request.leaf_der)
    if request.leaf_der is None:
        return NO_DEVICE
    reason = request.device_reason.value if request.device_reason else None
    return DeviceContext(False, reason, None, None, request.leaf_der)


def _detail(decision: PolicyDecision | None) -> dict[str, Any] | None:
    """``policyEvaluationDetail`` of a decision (None: no policy was evaluated)."""
    return None if decision is None else decision.to_dict()


def _identity(users: Users, user_id: str) -> Identity:
    """The user a grant is for: gone or not ACTIVE is GRANT_INVALID."""
    try:
        user = users.get(user_id)
    except CertboundError:
        user = None
    if user is None or user.status is not UserStatus.ACTIVE:
        raise OAuthError(
            "invalid_grant",
            ReasonCode.GRANT_INVALID,
            "the user this grant was issued for no longer exists or is not active",
        )
    return Identity(user.id, user.username, user.email, user.display_name)


def check_grant_type(grant_type: str, supported: frozenset[str] = SUPPORTED_GRANTS) -> None:
    if not grant_type:
        raise OAuthError(
            "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, "grant_type is required"
        )
    if grant_type not in supported:
        raise OAuthError(
            "unsupported_grant_type",
            ReasonCode.UNSUPPORTED_GRANT_TYPE,
            f"grant_type {grant_type!r} is not supported here (supported: "
            f"{', '.join(sorted(supported))})",
        )


def check_grant_allowed(client: AuthenticatedClient, grant_type: str) -> None:
    if grant_type not in client.app.metadata.grant_types:
        raise OAuthError(
            "unauthorized_client",
            ReasonCode.UNSUPPORTED_GRANT_TYPE,
            f"client {client.app.client_id} is not registered for {grant_type} (registered: "
            f"{', '.join(client.app.metadata.grant_types) or 'none'})",
        )


def check_scope(client: AuthenticatedClient, requested: str | None) -> str:
    """The granted scope: the requested one when every scope is registered, else
    ``invalid_scope``; without a request, every registered scope."""
    allowed = client.app.metadata.scope.split()
    if requested is None:
        return " ".join(allowed)
    wanted = requested.split()
    extra = [item for item in wanted if item not in allowed]
    if extra:
        raise OAuthError(
            "invalid_scope",
            ReasonCode.SCOPE_NOT_ALLOWED,
            f"scope(s) {' '.join(extra)} not registered for client {client.app.client_id}",
        )
    return " ".join(dict.fromkeys(wanted))


def audience(resource: str | None) -> str:
    """The token's audience: the RFC 8707 ``resource`` when given (an absolute URI)."""
    if resource is None:
        return DEFAULT_AUDIENCE
    if ":" not in resource or "#" in resource:
        raise OAuthError(
            "invalid_target" if resource else "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            "resource must be an absolute URI without a fragment (RFC 8707)",
        )
    return resource
