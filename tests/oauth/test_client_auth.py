"""Client authentication over every method, on both databases, with real certificates
(devpki, validated by the real Validator) and real JWTs (joserfc): each success, and each
refusal with its OAuth error, reason code and HTTP status."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import pytest
from cryptography import x509
from joserfc import jwt
from joserfc.jwk import ECKey

from certbound.clock import FixedClock
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata
from certbound.errors import ReasonCode
from certbound.oauth.client_auth import (
    FAILED,
    AuthenticatedClient,
    ClientAuthenticator,
    ClientRequest,
)
from certbound.oauth.errors import OAuthError
from certbound.oauth.rfc7523 import ASSERTION_TYPE
from certbound.oauth.rfc8705 import bound_thumbprint, ca_pin
from certbound.pki import devpki
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.certificate import der
from certbound.pki.validation import Validator, Verified
from certbound.storage.database import Database

SUBJECT = "CN=svc-billing,OU=Payments,O=Certbound Dev"
TOKEN_URL = "https://auth.example.com/oauth2/v1/token"
BASIC_ID = "basic:client+1"  # needs form-urlencoding in HTTP Basic


@dataclasses.dataclass
class Pki:
    intermediate: devpki.Issued
    device: devpki.Issued  # the registered subject, from the pinned CA
    other: devpki.Issued  # another subject, from the pinned CA
    forged: devpki.Issued  # the registered subject, from a same-DN CA with another key
    expired: devpki.Issued
    foreign: devpki.Issued  # from a CA that is not trusted
    self_signed: devpki.Issued
    validator: Validator

    def request(self, leaf: devpki.Issued | None, **form: str) -> ClientRequest:
        """A request as the web layer builds it: the leaf validated by the real validator."""
        if leaf is None:
            return ClientRequest(form, None, None, None, None)
        leaf_der = der(leaf.cert)
        result = self.validator.verify([leaf_der])
        if isinstance(result, Verified):
            return ClientRequest(form, None, result.chain, leaf_der, None)
        return ClientRequest(form, None, None, leaf_der, result.reason)


def _name(dn: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(dn)


@pytest.fixture(scope="module")
def pki() -> Pki:
    now = dt.datetime.now(dt.UTC)
    root = devpki.ca("Root CA")
    intermediate = devpki.ca("Issuing CA", root)
    impostor = devpki.ca("Issuing CA", root)  # same DN, another key, also trusted
    stranger = devpki.ca("Stranger Root", organisation="Elsewhere Inc")
    expired = devpki.Profile(not_before=now - dt.timedelta(days=30), not_after=now - devpki.DAY)
    anchors = TrustAnchors.from_bundles([[intermediate.cert, root.cert], [impostor.cert]])
    return Pki(
        intermediate=intermediate,
        device=devpki.issue(_name(SUBJECT), intermediate),
        other=devpki.issue(_name("CN=svc-other,OU=Payments,O=Certbound Dev"), intermediate),
        forged=devpki.issue(_name(SUBJECT), impostor),
        expired=devpki.issue(_name(SUBJECT), intermediate, profile=expired),
        foreign=devpki.issue(_name(SUBJECT), stranger),
        self_signed=devpki.issue("self-signed-device"),
        validator=Validator(StaticAnchors(anchors)),
    )


@pytest.fixture(scope="module")
def jwt_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1"})


@dataclasses.dataclass
class Setup:
    apps: Apps
    auth: ClientAuthenticator
    secrets: dict[str, str]


@pytest.fixture
def setup(database: Database, clock: FixedClock, pki: Pki, jwt_key: ECKey) -> Setup:
    apps = Apps(database, clock)
    x5c = [base64.b64encode(der(pki.self_signed.cert)).decode()]
    registered = {
        "mtls": ClientMetadata(
            AuthMethod.TLS_CLIENT_AUTH,
            tls_client_auth_subject_dn="cn=svc-billing, ou=Payments, o=Certbound Dev",
            tls_client_auth_ca_pins=(ca_pin(pki.intermediate.cert),),
        ),
        "self": ClientMetadata(
            AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks={"keys": [{"kty": "EC", "x5c": x5c}]}
        ),
        "jwt": ClientMetadata(
            AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [jwt_key.as_dict(private=False)]}
        ),
        BASIC_ID: ClientMetadata(AuthMethod.CLIENT_SECRET_BASIC),
        "post": ClientMetadata(
            AuthMethod.CLIENT_SECRET_POST, tls_client_certificate_bound_access_tokens=False
        ),
        "public": ClientMetadata(
            AuthMethod.NONE,
            grant_types=("authorization_code",),
            redirect_uris=("https://app.example.com/cb",),
        ),
    }
    secrets = {}
    for client_id, metadata in registered.items():
        _, secret = apps.create(f"app {client_id}", metadata, client_id=client_id)
        if secret is not None:
            secrets[client_id] = secret
    auth = ClientAuthenticator(apps, token_endpoint_urls=(TOKEN_URL,), clock=clock)
    return Setup(apps, auth, secrets)


def _basic(client_id: str, secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _with(request: ClientRequest, **changes: Any) -> ClientRequest:
    return dataclasses.replace(request, **changes)


def _refused(
    setup: Setup, request: ClientRequest, error: str, reason: ReasonCode, status: int
) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        setup.auth.authenticate(request)
    got = caught.value
    assert (got.error, got.reason, got.status) == (error, reason, status), got
    return got


def _assertion(key: ECKey, clock: FixedClock, client_id: str = "jwt", **claims: Any) -> str:
    now = int(clock.now().timestamp())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, body, key, algorithms=["ES256"])


# --- tls_client_auth -----------------------------------------------------------------------


def test_tls_client_auth(setup: Setup, pki: Pki) -> None:
    client = setup.auth.authenticate(pki.request(pki.device, client_id="mtls"))
    assert isinstance(client, AuthenticatedClient)
    assert (client.app.client_id, client.method) == ("mtls", AuthMethod.TLS_CLIENT_AUTH)
    assert client.cnf_x5t_s256 == bound_thumbprint(der(pki.device.cert))


def test_tls_client_auth_without_certificate(setup: Setup, pki: Pki) -> None:
    got = _refused(
        setup,
        pki.request(None, client_id="mtls"),
        "invalid_client",
        ReasonCode.NO_CLIENT_CERTIFICATE,
        401,
    )
    assert "WWW-Authenticate" not in got.headers
    assert got.to_dict()["reason"] == "NO_CLIENT_CERTIFICATE"


@pytest.mark.parametrize(
    ("leaf", "reason"),
    [("expired", ReasonCode.CERTIFICATE_EXPIRED), ("foreign", ReasonCode.UNKNOWN_CA)],
)
def test_tls_client_auth_with_certificate_that_did_not_validate(
    setup: Setup, pki: Pki, leaf: str, reason: ReasonCode
) -> None:
    request = pki.request(getattr(pki, leaf), client_id="mtls")
    assert request.verified_chain is None
    got = _refused(setup, request, "invalid_client", reason, 401)
    assert "did not validate against the trust store" in got.description


def test_tls_client_auth_with_another_subject(setup: Setup, pki: Pki) -> None:
    got = _refused(
        setup,
        pki.request(pki.other, client_id="mtls"),
        "invalid_client",
        ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT,
        401,
    )
    assert "svc-other" in got.description


def test_same_dn_impostor_ca_does_not_authenticate(setup: Setup, pki: Pki) -> None:
    """keycloak#52801: the impostor is trusted and has the pinned CA's DN, its certificate
    carries the registered subject and validates; the key pin still refuses it."""
    request = pki.request(pki.forged, client_id="mtls")
    assert request.verified_chain is not None  # validated against the trust store
    assert request.verified_chain[1].subject == pki.intermediate.cert.subject
    got = _refused(
        setup, request, "invalid_client", ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT, 401
    )
    assert "pinned" in got.description


def test_unknown_client_and_tls_without_client_id(setup: Setup, pki: Pki) -> None:
    got = _refused(
        setup,
        pki.request(pki.device, client_id="nobody"),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert got.description == FAILED
    _refused(
        setup,
        pki.request(pki.device),
        "invalid_request",
        ReasonCode.INVALID_OAUTH_REQUEST,
        400,
    )


# --- self_signed_tls_client_auth -----------------------------------------------------------


def test_self_signed_tls_client_auth(setup: Setup, pki: Pki) -> None:
    request = pki.request(pki.self_signed, client_id="self")
    assert request.verified_chain is None  # self-signed: not validated, matched by jwks
    client = setup.auth.authenticate(request)
    assert client.method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH
    assert client.cnf_x5t_s256 == bound_thumbprint(der(pki.self_signed.cert))
    _refused(
        setup,
        pki.request(pki.device, client_id="self"),
        "invalid_client",
        ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT,
        401,
    )
    _refused(
        setup,
        pki.request(None, client_id="self"),
        "invalid_client",
        ReasonCode.NO_CLIENT_CERTIFICATE,
        401,
    )


# --- private_key_jwt -----------------------------------------------------------------------


def test_private_key_jwt(setup: Setup, pki: Pki, jwt_key: ECKey, clock: FixedClock) -> None:
    form = {"client_assertion_type": ASSERTION_TYPE}
    first = _assertion(jwt_key, clock)
    client = setup.auth.authenticate(pki.request(None, client_assertion=first, **form))
    assert (client.app.client_id, client.method, client.cnf_x5t_s256) == (
        "jwt",
        AuthMethod.PRIVATE_KEY_JWT,
        None,
    )
    # With client_id in the body, and over mTLS: bound to the presented certificate.
    second = pki.request(pki.device, client_assertion=_assertion(jwt_key, clock), **form)
    second = _with(second, form={**second.form, "client_id": "jwt"})
    assert setup.auth.authenticate(second).cnf_x5t_s256 == bound_thumbprint(der(pki.device.cert))
    replayed = _refused(
        setup,
        pki.request(None, client_assertion=first, **form),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert "replay" in replayed.description


def test_private_key_jwt_refusals(
    setup: Setup, pki: Pki, jwt_key: ECKey, clock: FixedClock
) -> None:
    form = {"client_assertion_type": ASSERTION_TYPE}
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    bad = _refused(
        setup,
        pki.request(None, client_assertion=_assertion(stranger, clock), **form),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert "signature does not verify" in bad.description
    wrong_aud = _assertion(jwt_key, clock, aud="https://elsewhere.example/token")
    _refused(
        setup,
        pki.request(None, client_assertion=wrong_aud, **form),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    # client_id in the body names another client than the assertion's iss/sub.
    other = pki.request(None, client_assertion=_assertion(jwt_key, clock), client_id="post", **form)
    mismatch = _refused(
        setup, other, "invalid_client", ReasonCode.CLIENT_AUTHENTICATION_FAILED, 401
    )
    assert "client_secret_post" in mismatch.description
    for broken in (
        {"client_assertion": _assertion(jwt_key, clock)},  # no type
        {"client_assertion_type": ASSERTION_TYPE},  # no assertion
        {"client_assertion_type": "urn:other", "client_assertion": "x"},
    ):
        _refused(
            setup,
            pki.request(None, **broken),
            "invalid_request",
            ReasonCode.INVALID_OAUTH_REQUEST,
            400,
        )


# --- client secrets ------------------------------------------------------------------------


def test_client_secret_basic_is_form_urlencoded(setup: Setup, pki: Pki) -> None:
    secret = setup.secrets[BASIC_ID]
    request = _with(pki.request(None), authorization=_basic(BASIC_ID, secret))
    client = setup.auth.authenticate(request)
    assert (client.app.client_id, client.method) == (BASIC_ID, AuthMethod.CLIENT_SECRET_BASIC)
    # Bound when it comes over mTLS (tls_client_certificate_bound_access_tokens).
    over_mtls = _with(pki.request(pki.device), authorization=_basic(BASIC_ID, secret))
    assert setup.auth.authenticate(over_mtls).cnf_x5t_s256 == bound_thumbprint(der(pki.device.cert))
    # The same id unencoded: '+' decodes to a space, another client_id.
    raw = base64.b64encode(f"{BASIC_ID}:{secret}".encode()).decode()
    _refused(
        setup,
        _with(request, authorization=f"Basic {raw}"),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )


def test_wrong_secret_and_unknown_client_look_alike(setup: Setup, pki: Pki) -> None:
    secret = setup.secrets[BASIC_ID]
    wrong = _with(pki.request(None), authorization=_basic(BASIC_ID, secret + "x"))
    unknown = _with(pki.request(None), authorization=_basic("no-such-client", secret))
    answers = [
        _refused(setup, r, "invalid_client", ReasonCode.CLIENT_AUTHENTICATION_FAILED, 401)
        for r in (wrong, unknown)
    ]
    assert answers[0].to_dict() == answers[1].to_dict()
    assert answers[0].description == FAILED
    for answer in answers:
        assert answer.headers == {"WWW-Authenticate": 'Basic realm="certbound"'}


def test_client_secret_post(setup: Setup, pki: Pki) -> None:
    secret = setup.secrets["post"]
    client = setup.auth.authenticate(pki.request(None, client_id="post", client_secret=secret))
    assert client.method is AuthMethod.CLIENT_SECRET_POST
    # Presented a certificate but does not ask for bound tokens: not bound.
    request = pki.request(pki.device, client_id="post", client_secret=secret)
    assert setup.auth.authenticate(request).cnf_x5t_s256 is None
    got = _refused(
        setup,
        pki.request(None, client_id="post", client_secret="cbs_wrong"),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert got.description == FAILED and got.headers == {}


def test_malformed_basic_and_other_schemes(setup: Setup, pki: Pki) -> None:
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        got = _refused(
            setup,
            _with(pki.request(None), authorization=header),
            "invalid_client",
            ReasonCode.CLIENT_AUTHENTICATION_FAILED,
            401,
        )
        assert "malformed HTTP Basic" in got.description and got.headers
    _refused(
        setup,
        _with(pki.request(None, client_id="post"), authorization="Bearer abc"),
        "invalid_request",
        ReasonCode.INVALID_OAUTH_REQUEST,
        400,
    )


# --- one method per request, the registered one --------------------------------------------


def test_more_than_one_method_is_invalid_request(
    setup: Setup, pki: Pki, jwt_key: ECKey, clock: FixedClock
) -> None:
    basic = _basic(BASIC_ID, setup.secrets[BASIC_ID])
    both = _with(pki.request(None, client_secret="x"), authorization=basic)
    assertion_and_secret = pki.request(
        None,
        client_id="jwt",
        client_secret="x",
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=_assertion(jwt_key, clock),
    )
    body_id = _with(pki.request(None, client_id="post"), authorization=basic)
    for request in (both, assertion_and_secret, body_id):
        _refused(setup, request, "invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, 400)


_POST, _BASIC = "client_secret_post", "client_secret_basic"
_NOTHING = "no client credentials"


@pytest.mark.parametrize(
    ("form", "authorization", "methods"),
    [
        ({}, "post", (_POST, _BASIC)),
        ({"client_id": BASIC_ID, "client_secret": "s"}, None, (_BASIC, _POST)),
        ({"client_id": "mtls", "client_secret": "s"}, None, ("tls_client_auth", _POST)),
        ({}, "mtls", ("tls_client_auth", _BASIC)),
        ({"client_id": BASIC_ID}, None, (_BASIC, _NOTHING)),
        ({"client_id": "jwt"}, None, ("private_key_jwt", _NOTHING)),
        ({"client_id": "public", "client_secret": "s"}, None, ("none", _POST)),
    ],
)
def test_method_must_be_the_registered_one(
    setup: Setup,
    pki: Pki,
    form: dict[str, str],
    authorization: str | None,
    methods: tuple[str, str],
) -> None:
    registered, used = methods
    request = pki.request(pki.device, **form)
    if authorization is not None:
        request = _with(request, authorization=_basic(authorization, "s"))
    got = _refused(setup, request, "invalid_client", ReasonCode.CLIENT_AUTHENTICATION_FAILED, 401)
    assert f"registered for token_endpoint_auth_method {registered}" in got.description
    assert f"the request used {used}" in got.description
    assert bool(got.headers) is (authorization is not None)


# --- public clients, inactive apps ---------------------------------------------------------


def test_public_client(setup: Setup, pki: Pki) -> None:
    client = setup.auth.authenticate(pki.request(None, client_id="public"))
    assert (client.method, client.cnf_x5t_s256) == (AuthMethod.NONE, None)
    bound = setup.auth.authenticate(pki.request(pki.self_signed, client_id="public"))
    assert bound.cnf_x5t_s256 == bound_thumbprint(der(pki.self_signed.cert))


def test_inactive_app_is_refused(setup: Setup, pki: Pki) -> None:
    for client_id in ("mtls", "post"):
        setup.apps.update(client_id, status="INACTIVE")
    got = _refused(
        setup,
        pki.request(pki.device, client_id="mtls"),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert "not active" in got.description
    secret = setup.secrets["post"]
    _refused(
        setup,
        pki.request(None, client_id="post", client_secret=secret),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    # A wrong secret for an inactive app says nothing about its status.
    wrong = _refused(
        setup,
        pki.request(None, client_id="post", client_secret="cbs_x"),
        "invalid_client",
        ReasonCode.CLIENT_AUTHENTICATION_FAILED,
        401,
    )
    assert wrong.description == FAILED


# --- cost on the token endpoint's path -----------------------------------------------------


def _per_call(fn: Any, request: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn(request)
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def test_tls_client_auth_cost_with_a_warm_app_cache(setup: Setup, pki: Pki) -> None:
    request = pki.request(pki.device, client_id="mtls")
    setup.auth.authenticate(request)  # warm: the app cache and the certificate facts
    rounds = 2000
    total = _per_call(setup.auth.authenticate, request, rounds)
    lookup = _per_call(setup.apps.by_client_id, "mtls", rounds)
    print(
        f"\nauthenticate(tls_client_auth), warm: {total * 1e6:.1f} us/call; "
        f"Apps.by_client_id alone: {lookup * 1e6:.1f} us; beyond the lookup: "
        f"{(total - lookup) * 1e6:.1f} us"
    )
    assert total - lookup < 100e-6  # a generous bound for a busy 2-core machine
