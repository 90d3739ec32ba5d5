"""The authorization endpoint over HTTP: ``GET`` and ``POST /oauth2/v1/authorize``.

``GET`` checks the authorization request
(:func:`certbound.oauth.authorization_code.check_authorize_request`) and renders the login
page (``templates/login.html``, Jinja2 with autoescaping: every value is escaped). A request
whose client or ``redirect_uri`` cannot be trusted gets an error page (400), never a
redirect; any other refusal is redirected to the client with ``error`` and ``state``.

``POST`` takes the form the page served: the authorization parameters as hidden fields,
``username``, ``password`` and ``csrf_token``
(:class:`~certbound.oauth.form_token.FormTokens`: an HMAC of the parameters and of the
browser's ``cb_login`` cookie under the server secret, valid 10 minutes; anything else is a
400 page). A username with 5 failed sign-ins in the last minute is locked out
(:class:`~certbound.oauth.login_throttle.LoginThrottle`, in this process's memory: 429 with
``Retry-After``); wrong credentials show the page again with one generic message whatever
was wrong (401), so the page does not tell which usernames exist. A success redirects (302)
to ``redirect_uri?code=...&state=...``. Every attempt is a ``user.authentication.verify``
event with the request's ``deviceTrust`` when the browser presented a certificate.

Once the password matched, the app's sign-on policy decides (:mod:`certbound.policy`: the
user, their groups, the browser's device-trust verdict and certificate, its IP address, the
time): the decision is a ``policy.evaluate_sign_on`` event (ALLOW or DENY) and the
``policyEvaluationDetail`` of the ``user.authentication.verify`` event too. A DENY shows the
page again (403) with the reason code (POLICY_DENIED, POLICY_NOT_MATCHED) and issues no code.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from certbound.clock import Clock
from certbound.devices.trust import TrustDecision
from certbound.directory.apps import Apps
from certbound.directory.users import MAX_USERNAME_LENGTH, User, Users
from certbound.errors import ReasonCode
from certbound.oauth import events
from certbound.oauth.authorization_code import (
    PARAMETERS,
    AuthorizationCodes,
    AuthorizeError,
    AuthorizeRequest,
    check_authorize_request,
    request_parameters,
    with_query,
)
from certbound.oauth.errors import OAuthError
from certbound.oauth.form_token import LIFETIME_SECONDS, FormTokens
from certbound.oauth.grants import Grants
from certbound.oauth.login_throttle import LoginThrottle
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc8414 import AUTHORIZE
from certbound.oauth.token_endpoint import UserGrants
from certbound.policy import events as policy_events
from certbound.policy.engine import PolicyDecision
from certbound.policy.simulate import DeviceContext, SignOn
from certbound.storage.database import Database
from certbound.syslog.events import Actor, Client
from certbound.web.oauth import read_form, request_device

COOKIE = "cb_login"
SIGN_IN_FAILED = "Sign-in failed: the username or password is not right."
FORM_INVALID = (
    "This sign-in form has expired or was altered. Return to the application and start again."
)
PAGE_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def install(
    state: Any, db: Database, clock: Clock, secret: bytes, refresh_token_seconds: int
) -> UserGrants:
    """Put what the authorization endpoint needs on ``app.state`` (which already holds
    ``apps`` and ``revocations``); the token endpoint's :class:`UserGrants`."""
    grants = Grants(db, clock, state.revocations)
    state.users = Users(db, clock)
    state.authorization_codes = AuthorizationCodes(grants, clock)
    state.refresh_tokens = RefreshTokens(grants, clock, lifetime=refresh_token_seconds)
    state.login_throttle = LoginThrottle(clock)
    state.form_tokens = FormTokens(secret, clock, PARAMETERS)
    return UserGrants(state.authorization_codes, state.refresh_tokens, state.users)


def _query(request: Request) -> dict[str, str]:
    """The query parameters, each at most once (RFC 6749 section 3.1)."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise AuthorizeError(
                OAuthError(
                    "invalid_request",
                    ReasonCode.INVALID_OAUTH_REQUEST,
                    f"parameter {name} is repeated",
                ),
                None,
                None,
            )
        params[name] = value
    return params


def _error_page(title: str, message: str, reason: ReasonCode | None, status: int = 400) -> Response:
    html = TEMPLATES.get_template("error.html").render(
        title=title, message=message, reason=reason.value if reason else None
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _refused(refused: AuthorizeError) -> Response:
    if refused.redirect_uri is None:
        error = refused.error
        return _error_page("This sign-in request cannot be served", error.description, error.reason)
    return RedirectResponse(
        refused.location(), status_code=302, headers={"cache-control": "no-store"}
    )


def _login_page(
    request: Request,
    checked: AuthorizeRequest,
    browser: str,
    *,
    error: str | None = None,
    username: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    forms: FormTokens = request.app.state.form_tokens
    params = request_parameters(checked)
    html = TEMPLATES.get_template("login.html").render(
        app_name=checked.app.name,
        params=params,
        csrf_token=forms.issue(params, browser),
        error=error,
        username=username,
    )
    response = HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
    response.set_cookie(
        COOKIE, browser, max_age=LIFETIME_SECONDS, path=AUTHORIZE, secure=True, httponly=True,
        samesite="lax",
    )  # fmt: skip
    return response


async def _check(request: Request, params: dict[str, str]) -> AuthorizeRequest:
    apps: Apps = request.app.state.apps
    return await run_in_threadpool(check_authorize_request, params, apps)


async def authorize_page(request: Request) -> Response:
    """GET: the login page for a valid authorization request."""
    try:
        checked = await _check(request, _query(request))
    except AuthorizeError as refused:
        return _refused(refused)
    browser = request.cookies.get(COOKIE) or secrets.token_urlsafe(16)
    return _login_page(request, checked, browser)


async def authorize_submit(request: Request) -> Response:
    """POST: the login form."""
    try:
        form = await read_form(request)
    except OAuthError as error:
        return _error_page("This sign-in form cannot be read", error.description, error.reason)
    params = {name: form[name] for name in PARAMETERS if name in form}
    browser = request.cookies.get(COOKIE)
    forms: FormTokens = request.app.state.form_tokens
    if not forms.valid(form.get("csrf_token", ""), params, browser):
        return _error_page("Sign-in form expired", FORM_INVALID, ReasonCode.INVALID_OAUTH_REQUEST)
    assert browser is not None
    try:
        checked = await _check(request, params)
    except AuthorizeError as refused:
        return _refused(refused)
    return await _sign_in(request, checked, browser, form.get("username", ""), form)


async def _sign_in(
    request: Request,
    checked: AuthorizeRequest,
    browser: str,
    username: str,
    form: dict[str, str],
) -> Response:
    state = request.app.state
    decision = await request_device(request)
    device = decision.device_trust if decision is not None else None
    client = _http_client(request, decision)

    def refused(detail: str, *, locked_out: bool = False) -> None:
        state.recorder.record(
            events.user_sign_in_failed(
                username, ReasonCode.USER_AUTHENTICATION_FAILED, detail,
                app_target=events.app_target(checked.app), http_client=client, device=device,
                locked_out=locked_out,
            )
        )  # fmt: skip

    throttle: LoginThrottle = state.login_throttle
    wait = throttle.locked_for(username)
    if wait is not None:
        refused("too many failed sign-ins for this username", locked_out=True)
        return _locked_page(request, checked, browser, username, wait)
    users: Users = state.users
    password = form.get("password", "")
    user = await run_in_threadpool(users.authenticate, _lookup_name(username), password)
    if user is None:
        throttle.failed(username)
        refused("unknown username, wrong password, or the user is not active")
        return _login_page(
            request, checked, browser, username=username, status=401, error=SIGN_IN_FAILED
        )
    throttle.succeeded(username)
    verdict = await _sign_on_policy(request, checked, user, decision, client)
    detail = verdict.to_dict()
    target = events.app_target(checked.app)
    actor = Actor(user.id, events.USER_TYPE, user.username, user.display_name)
    state.recorder.record(
        policy_events.sign_on_evaluated(
            verdict, actor=actor, app_target=target, http_client=client, device=device,
            detail=detail,
        )
    )  # fmt: skip
    state.recorder.record(
        events.user_signed_in(
            user.id, user.username, user.display_name,
            app_target=target, http_client=client, device=device, policy=detail,
        )
    )  # fmt: skip
    if not verdict.allowed:
        return _login_page(
            request, checked, browser, username=username, status=403, error=_denied(verdict)
        )
    codes: AuthorizationCodes = state.authorization_codes
    clock: Clock = state.clock
    code = await run_in_threadpool(codes.issue, checked, user.id, clock.now())
    return _code_redirect(checked, code)


async def _sign_on_policy(
    request: Request,
    checked: AuthorizeRequest,
    user: User,
    trust: TrustDecision | None,
    client: Client,
) -> PolicyDecision:
    """The app's sign-on policy on this user (and their groups) and browser."""
    sign_on: SignOn = request.app.state.sign_on
    clock: Clock = request.app.state.clock

    def decide() -> PolicyDecision:
        return sign_on.evaluate(
            checked.app.id, DeviceContext.of(trust), at=clock.now(), ip=client.ip_address,
            user_id=user.id, group_ids=sign_on.group_ids(user.id),
        )  # fmt: skip

    return await run_in_threadpool(decide)


def _denied(decision: PolicyDecision) -> str:
    reason = decision.reason.value if decision.reason else "POLICY_DENIED"
    return (
        f"Sign-in denied by the sign-on policy ({reason}): rule "
        f"{decision.matched_rule_name!r} of {decision.policy_name!r} does not let this "
        "account or device sign in here."
    )


def _lookup_name(username: str) -> str:
    """The username to look up: one no user can have (too long, control characters, which
    PostgreSQL text cannot even hold) is looked up as "" (no user; the same argon2 work)."""
    if len(username) > MAX_USERNAME_LENGTH or not username.isprintable():
        return ""
    return username


def _locked_page(
    request: Request, checked: AuthorizeRequest, browser: str, username: str, wait: float
) -> Response:
    seconds = max(1, round(wait))
    return _login_page(
        request, checked, browser, username=username, status=429,
        error=f"Too many failed sign-ins for this username. Try again in {seconds} s.",
        headers={"retry-after": str(seconds)},
    )  # fmt: skip


def _code_redirect(checked: AuthorizeRequest, code: str) -> Response:
    answer = {"code": code}
    if checked.state is not None:
        answer["state"] = checked.state
    return RedirectResponse(
        with_query(checked.redirect_uri, answer),
        status_code=302,
        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"},
    )


def _http_client(request: Request, decision: Any) -> Client:
    intake = request.app.state.intake
    presented = decision.presented if decision else intake.presented(request.scope, request.headers)
    return Client(
        intake.client_address(request.scope, request.headers, presented),
        request.headers.get("user-agent"),
    )


ROUTES = [
    Route(AUTHORIZE, authorize_page, methods=["GET"]),
    Route(AUTHORIZE, authorize_submit, methods=["POST"]),
]
