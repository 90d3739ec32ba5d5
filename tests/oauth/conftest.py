"""The user-grant machinery over a real database (both backends), for the code-flow, refresh
and ID-token tests: apps, users (argon2 with cheap parameters), signing keys, the grants
table, a real :class:`TokenEndpoint` and :class:`EventRecorder`, and a fixed clock.

``flow.authorize(app)`` checks an authorization request and issues a code for the user, as
the login page does after a successful sign-in; ``flow.token(...)`` calls the token endpoint
with a request as the web layer builds it (a client certificate's DER when given).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from certbound.clock import FixedClock
from certbound.directory.apps import App, Apps, AuthMethod, ClientMetadata
from certbound.directory.users import User, Users
from certbound.oauth.authorization_code import AuthorizationCodes, check_authorize_request
from certbound.oauth.client_auth import ClientAuthenticator, ClientRequest
from certbound.oauth.grants import Grants
from certbound.oauth.keys import SigningKeys
from certbound.oauth.refresh import RefreshTokens
from certbound.oauth.rfc7009 import Revocations
from certbound.oauth.rfc7636 import s256
from certbound.oauth.token_endpoint import TokenEndpoint, TokenResponse, TokenSettings, UserGrants
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import Client
from certbound.syslog.recorder import EventRecorder

ISSUER = "https://auth.example.test"
REDIRECT = "http://127.0.0.1:8765/cb"
VERIFIER = "v" * 20 + "-._~" + "x" * 30  # 54 unreserved characters
PASSWORD = "correct horse battery"
HTTP_CLIENT = Client("127.0.0.1", "pytest")


@dataclasses.dataclass
class Flow:
    """What a test uses (the module's constants too: test modules cannot import a conftest)."""

    db: Database
    clock: FixedClock
    apps: Apps
    users: Users
    keys: SigningKeys
    revocations: Revocations
    grants: Grants
    codes: AuthorizationCodes
    refresh: RefreshTokens
    endpoint: TokenEndpoint
    recorder: EventRecorder
    user: User
    redirect: str = REDIRECT
    verifier: str = VERIFIER
    password: str = PASSWORD
    issuer: str = ISSUER

    def register(
        self,
        client_id: str,
        *,
        method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC,
        grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
        scope: str = "read write",
        redirect_uris: tuple[str, ...] = (REDIRECT,),
    ) -> tuple[App, str | None]:
        metadata = ClientMetadata(
            token_endpoint_auth_method=method,
            grant_types=grant_types,
            redirect_uris=redirect_uris,
            scope=scope,
        )
        return self.apps.create(client_id, metadata, client_id=client_id)

    def authorize(
        self, app: App, *, verifier: str = VERIFIER, user: User | None = None, **params: str
    ) -> str:
        """A code, as the login page issues it after the user signed in."""
        request = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            **params,
        }
        checked = check_authorize_request(request, self.apps)
        return self.codes.issue(checked, (user or self.user).id, self.clock.now())

    def token(
        self, form: dict[str, str], *, secret: str | None = None, leaf: bytes | None = None
    ) -> TokenResponse:
        authorization = None
        if secret is not None:
            pair = f"{form.pop('client_id')}:{secret}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        request = ClientRequest(form, authorization, None, leaf, None)
        return self.endpoint.handle(request, HTTP_CLIENT, None)

    def redeem(self, app: App, secret: str | None, code: str, /, **extra: str) -> TokenResponse:
        form = {
            "grant_type": "authorization_code",
            "client_id": app.client_id,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
            **extra,
        }
        return self.token(form, secret=secret, leaf=None)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        assert self.recorder.flush()
        with self.db.session() as session:
            bodies = session.scalars(
                select(LogEvent.body)
                .where(LogEvent.event_type == event_type)
                .order_by(LogEvent.seq)
            ).all()
        return [json.loads(body) for body in bodies]


@pytest.fixture(scope="module")
def leaves() -> tuple[bytes, bytes]:
    """Two client certificates (DER) from one dev CA."""
    issuer = devpki.ca("Flow Test CA")
    return (
        der(devpki.issue("CN=device-one", issuer).cert),
        der(devpki.issue("CN=device-two", issuer).cert),
    )


@pytest.fixture
def flow(database: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Flow]:
    apps = Apps(database, clock, cache_ttl=0)
    users = Users(database, clock, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    keys = SigningKeys(database, clock, b"k" * 32)
    revocations = Revocations(database, clock)
    grants = Grants(database, clock, revocations)
    codes = AuthorizationCodes(grants, clock)
    refresh = RefreshTokens(grants, clock, lifetime=3600)
    recorder = EventRecorder(database, clock, spool_dir=tmp_path / "spool")
    authenticator = ClientAuthenticator(
        apps, token_endpoint_urls=[ISSUER + "/oauth2/v1/token"], clock=clock
    )
    endpoint = TokenEndpoint(
        authenticator,
        keys,
        recorder,
        clock,
        TokenSettings(ISSUER, 300),
        user_grants=UserGrants(codes, refresh, users),
    )
    user = users.create(
        "alice", email="alice@example.test", display_name="Alice A", password=PASSWORD
    )
    yield Flow(
        database, clock, apps, users, keys, revocations, grants, codes, refresh, endpoint,
        recorder, user,
    )  # fmt: skip
    recorder.close()
