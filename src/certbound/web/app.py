"""The ASGI application factory: routes, error handlers, and what the app owns.

:func:`create_app` builds a Starlette app serving:

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process runs;
- ``GET /readyz``: 200 ``{"status": "ready"}`` when the database answers, else 503;
- ``GET /api/v1/logs``: the System Log (:mod:`certbound.web.logs`), bearer API token required;
- ``GET /api/v1/intake/echo``: what Certbound saw of the request's device
  (:mod:`certbound.web.intake`);
- ``POST /api/v1/policies/simulate``: a sign-on simulated against the app's policy or a
  draft (:mod:`certbound.web.policies`), bearer API token required;
- the admin API under ``/api/v1/`` (:mod:`certbound.web.api`: CAs, policies and rules,
  apps, users, groups, devices, admins, tokens, ``openapi.json``), every route role-checked
  against :mod:`certbound.admin.roles`;
- OAuth: ``POST /oauth2/v1/token``, ``/introspect``, ``/revoke`` (:mod:`certbound.web.oauth`),
  ``GET``/``POST /oauth2/v1/authorize`` (the login page: :mod:`certbound.web.authorize`),
  ``GET /oauth2/v1/keys`` and the RFC 8414 / OpenID discovery documents
  (:mod:`certbound.web.discovery`).

The app owns, for its lifetime: one :class:`~certbound.syslog.recorder.EventRecorder` (the
lifespan closes it, flushing queued events); the device-trust engine (validator, revocation
checker with its CRL refresher thread, device registry: :func:`device_trust`); the sign-on
policies (:class:`~certbound.policy.store.CompiledPolicies`, evaluated by the token endpoint
and the login page through one :class:`~certbound.policy.simulate.SignOn`, and simulated by
a :class:`~certbound.policy.simulate.Simulator` whose revocation checker records no event);
the System Log retention job
(:class:`~certbound.syslog.retention.RetentionJob`: every hour, events older than
``log_retention_days`` are purged); and, when it was not given one, its database.
Only this package speaks HTTP; the handlers in :mod:`certbound.web.problem` turn errors
into ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certbound.admin.tokens import ApiTokens
from certbound.clock import Clock, SystemClock
from certbound.config import Settings
from certbound.devices.mapping import MappingRules
from certbound.devices.registry import DeviceRegistry
from certbound.devices.trust import DeviceTrust
from certbound.directory.apps import Apps
from certbound.directory.groups import Groups
from certbound.intake.proxies import TrustedProxies
from certbound.intake.resolve import Intake
from certbound.oauth.client_auth import ClientAuthenticator
from certbound.oauth.keys import SigningKeys, load_secret
from certbound.oauth.rfc7009 import Revocations
from certbound.oauth.token_endpoint import TokenEndpoint, TokenSettings
from certbound.pki.revocation import RevocationChecker, stored_policies
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Validator
from certbound.policy.simulate import SignOn, Simulator
from certbound.policy.store import CompiledPolicies
from certbound.storage.database import Database
from certbound.syslog.recorder import EventRecorder
from certbound.syslog.retention import RetentionJob
from certbound.web import api, authorize, discovery, intake, logs, oauth, policies
from certbound.web.problem import EXCEPTION_HANDLERS, problem

OAUTH_PATHS = ("/oauth2/v1/token", "/oauth2/v1/introspect", "/oauth2/v1/revoke")


def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(request: Request) -> Response:
    database: Database = request.app.state.database
    try:
        with database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return problem(503, None, f"database unreachable: {type(exc).__name__}")
    return JSONResponse({"status": "ready"})


def device_trust(
    settings: Settings,
    db: Database,
    *,
    clock: Clock,
    recorder: EventRecorder,
    checker: RevocationChecker,
    mapping: MappingRules,
) -> DeviceTrust:
    """The device-trust engine over the trust store, revocation and the device registry."""
    store = TrustStore(db, clock, settings.ca_expiry_warning_days)
    validator = Validator(
        store,
        clock,
        cache_size=settings.verify_cache_size,
        cache_seconds=settings.verify_cache_seconds,
        revocation=checker,
        policies=stored_policies(db),
    )
    return DeviceTrust(validator, DeviceRegistry(db, clock, mapping), recorder)


def simulator(
    settings: Settings, db: Database, clock: Clock, compiled: CompiledPolicies
) -> tuple[Simulator, RevocationChecker]:
    """The simulator of ``POST /api/v1/policies/simulate``: its own validator over the
    trust store, whose revocation checker records no event (close the checker at exit)."""
    checker = RevocationChecker(db, clock)
    store = TrustStore(db, clock, settings.ca_expiry_warning_days)
    validator = Validator(store, clock, revocation=checker, policies=stored_policies(db))
    return Simulator(db, clock, validator, compiled), checker


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    clock: Clock | None = None,
    retention_interval: float = 3600.0,
) -> Starlette:
    """The app over ``database`` (default: opened and migrated from ``settings``);
    ``retention_interval``: seconds between retention purges (the first after one interval).
    Raises :class:`certbound.config.ConfigError` for unusable intake or mapping settings."""
    request_intake = Intake(TrustedProxies.parse(settings.trusted_proxies), settings.proxy_header)
    mapping = MappingRules.parse(settings.device_mapping)
    secret = load_secret(settings.secret_key_path)
    owns_database = database is None
    if database is None:
        database = Database(settings.database_url)
        database.migrate()
    clock = clock or SystemClock()
    db: Database = database

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recorder = EventRecorder(
            db, clock, spool_dir=settings.spool_dir, queue_size=settings.log_queue_size
        )
        retention = RetentionJob(
            db, clock, settings.log_retention_days, interval=retention_interval, recorder=recorder
        )
        checker = RevocationChecker(db, clock, recorder=recorder)
        app.state.recorder = recorder
        app.state.device_trust = device_trust(
            settings, db, clock=clock, recorder=recorder, checker=checker, mapping=mapping
        )
        compiled = CompiledPolicies(db, clock)
        app.state.sign_on = SignOn(
            compiled, app.state.device_trust.validator.anchors, Groups(db, clock).group_ids_of
        )
        app.state.simulator, simulation_checker = simulator(settings, db, clock, compiled)
        app.state.token_endpoint = TokenEndpoint(
            app.state.client_authenticator,
            app.state.signing_keys,
            recorder,
            clock,
            TokenSettings(settings.issuer_url, settings.access_token_seconds),
            user_grants=app.state.user_grants,
            sign_on=app.state.sign_on,
        )
        checker.start_refresher()
        retention.start()
        try:
            yield
        finally:
            retention.stop()
            app.state.device_trust.registry.flush()
            simulation_checker.close()
            checker.close()
            recorder.close()
            if owns_database:
                db.dispose()

    app = Starlette(
        routes=[  # the busiest routes first: Starlette tries them in order
            *oauth.ROUTES,
            *intake.ROUTES,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *logs.ROUTES,
            *policies.ROUTES,
            *api.ROUTES,
            *discovery.ROUTES,
            *authorize.ROUTES,
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.clock = clock
    app.state.tokens = ApiTokens(db, clock)
    app.state.intake = request_intake
    app.state.signing_keys = SigningKeys(db, clock, secret)
    app.state.revocations = Revocations(db, clock)
    issuer = settings.issuer_url
    app.state.apps = Apps(db, clock)
    app.state.user_grants = authorize.install(
        app.state, db, clock, secret, settings.refresh_token_seconds
    )
    app.state.client_authenticator = ClientAuthenticator(
        app.state.apps,
        token_endpoint_urls=[issuer, *(issuer + path for path in OAUTH_PATHS)],
        clock=clock,
    )
    return app
