"""The token endpoint on the event loop (``offline=True``): a client_credentials grant for a
cached certificate-authenticated client with the signing key at hand is decided from memory;
anything that would read the database (a client not cached, the first signing key, another
grant, a secret or assertion) is WouldBlockError before any step ran or anything was
recorded; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata, ca_pin
from certbound.errors import ReasonCode, WouldBlockError
from certbound.oauth.client_auth import ClientAuthenticator, ClientRequest
from certbound.oauth.errors import OAuthError
from certbound.oauth.keys import SigningKeys
from certbound.oauth.rfc8705 import bound_thumbprint
from certbound.oauth.token_endpoint import TokenEndpoint, TokenSettings
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import Client
from certbound.syslog.recorder import EventRecorder

ISSUER = "https://auth.example.test"
CA = devpki.ca("Offline Test CA")
DEVICE = devpki.issue("CN=offline-device", CA)
OTHER = devpki.issue("CN=someone-else", CA)
FORM = {"grant_type": "client_credentials", "client_id": "machine"}


@pytest.fixture
def recorder(database: Database, clock: FixedClock, tmp_path: Path) -> Iterator[EventRecorder]:
    recorder = EventRecorder(database, clock, spool_dir=tmp_path / "spool")
    yield recorder
    recorder.close()


@pytest.fixture
def endpoint(database: Database, clock: FixedClock, recorder: EventRecorder) -> TokenEndpoint:
    apps = Apps(database, clock)
    metadata = ClientMetadata(
        token_endpoint_auth_method=AuthMethod.TLS_CLIENT_AUTH,
        tls_client_auth_subject_dn=DEVICE.cert.subject.rfc4514_string(),
        tls_client_auth_ca_pins=(ca_pin(CA.cert),),
    )
    apps.create("machine", metadata, client_id="machine")
    apps.create(
        "web",
        ClientMetadata(token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC),
        client_id="web",
    )
    authenticator = ClientAuthenticator(apps, token_endpoint_urls=[ISSUER], clock=clock)
    keys = SigningKeys(database, clock, b"k" * 32)
    return TokenEndpoint(authenticator, keys, recorder, clock, TokenSettings(ISSUER, 300))


def asked(device: devpki.Issued = DEVICE, form: dict[str, str] = FORM) -> ClientRequest:
    return ClientRequest(dict(form), None, (device.cert, CA.cert), der(device.cert), None)


def events(database: Database, recorder: EventRecorder) -> int:
    assert recorder.flush()
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(LogEvent)) or 0)


def test_cold_then_warm(
    database: Database, recorder: EventRecorder, endpoint: TokenEndpoint
) -> None:
    with pytest.raises(WouldBlockError):  # neither the client nor the key is loaded yet
        endpoint.handle(asked(), Client(), None, offline=True)
    assert events(database, recorder) == 0
    endpoint.handle(asked(), Client(), None)
    warm = endpoint.handle(asked(), Client(), None, offline=True)
    assert warm.claims["cnf"] == {"x5t#S256": bound_thumbprint(der(DEVICE.cert))}
    assert events(database, recorder) == 2


def test_refusals_are_decided_offline_too(
    database: Database, recorder: EventRecorder, endpoint: TokenEndpoint
) -> None:
    endpoint.handle(asked(), Client(), None)
    with pytest.raises(OAuthError) as refused:
        endpoint.handle(asked(OTHER), Client(), None, offline=True)
    assert refused.value.reason is ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT
    assert events(database, recorder) == 2


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials", "client_id": "web", "client_secret": "x"},
        {"grant_type": "refresh_token", "client_id": "machine", "refresh_token": "x"},
    ],
)
def test_secrets_and_user_grants_go_to_a_thread(
    database: Database, recorder: EventRecorder, endpoint: TokenEndpoint, form: dict[str, str]
) -> None:
    endpoint.handle(asked(), Client(), None)
    endpoint._authenticator._apps.by_client_id("web")  # cached: still not decided here
    with pytest.raises(WouldBlockError):
        endpoint.handle(asked(form=form), Client(), None, offline=True)
    assert events(database, recorder) == 1


def test_a_stale_key_cache_goes_to_a_thread(endpoint: TokenEndpoint, clock: FixedClock) -> None:
    endpoint.handle(asked(), Client(), None)
    clock.advance(dt.timedelta(seconds=6))  # past the key cache
    with pytest.raises(WouldBlockError):
        endpoint.handle(asked(), Client(), None, offline=True)
