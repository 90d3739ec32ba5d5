"""Apps: every ClientMetadata rule (each naming its field), DN normalisation, CA pins,
secrets shown once and verified, the by_client_id cache, paging; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from typing import Any

import pytest

from certbound.clock import FixedClock
from certbound.directory.apps import (
    SECRET_PREFIX,
    Apps,
    AppStatus,
    AuthMethod,
    ClientMetadata,
    ca_pin,
    normalise_dn,
)
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import spki_sha256
from certbound.storage.database import Database

PIN = "ab" * 32
MTLS = ClientMetadata(
    AuthMethod.TLS_CLIENT_AUTH, tls_client_auth_subject_dn="CN=svc,O=Corp",
    tls_client_auth_ca_pins=(PIN,),
)  # fmt: skip
CODE = ClientMetadata(
    AuthMethod.CLIENT_SECRET_BASIC,
    grant_types=("authorization_code", "refresh_token"),
    redirect_uris=("https://app.example/cb",),
    scope="openid profile",
)
X5T_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "x5t#S256": "abc"}]}
PUBLIC_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "1"}]}


def refused(metadata: ClientMetadata, field: str) -> CertboundError:
    with pytest.raises(CertboundError) as caught:
        metadata.validate()
    assert caught.value.reason is ReasonCode.INVALID_CLIENT_METADATA
    assert caught.value.detail.startswith(f"{field}:"), caught.value.detail
    assert caught.value.context == {"field": field}
    return caught.value


def test_valid_metadata_of_every_method() -> None:
    good = [
        MTLS,
        dataclasses.replace(MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_ip="::1"),
        dataclasses.replace(
            MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_uri="spiffe://corp/svc"
        ),
        dataclasses.replace(
            MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_dns="svc.corp.example"
        ),
        dataclasses.replace(
            MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_email="svc@corp.example"
        ),
        ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=X5T_JWKS),
        ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks=PUBLIC_JWKS),
        CODE,
        ClientMetadata(AuthMethod.CLIENT_SECRET_POST),
        ClientMetadata(
            AuthMethod.NONE,
            grant_types=("authorization_code",),
            redirect_uris=("http://127.0.0.1:8765/cb", "http://localhost/cb", "http://[::1]/"),
        ),
    ]
    for metadata in good:
        metadata.validate()
        assert ClientMetadata.from_dict(metadata.to_dict()) == metadata


def test_tls_client_auth_needs_an_identity_field() -> None:
    error = refused(
        dataclasses.replace(MTLS, tls_client_auth_subject_dn=None), "tls_client_auth_subject_dn"
    )
    assert "exactly one" in error.detail


def test_tls_client_auth_takes_only_one_identity_field() -> None:
    two = dataclasses.replace(MTLS, tls_client_auth_san_dns="svc.example")
    assert "exactly one" in refused(two, "tls_client_auth_san_dns").detail


def test_tls_client_auth_needs_a_ca_pin_never_the_dn_alone() -> None:
    error = refused(
        dataclasses.replace(MTLS, tls_client_auth_ca_pins=()), "tls_client_auth_ca_pins"
    )
    assert "never" in error.detail


def test_ca_pins_are_64_hex_digits() -> None:
    for pin in ("ab" * 31, "AB" * 32, "zz" * 32, base64.b64encode(b"x" * 32).decode()):
        refused(
            dataclasses.replace(MTLS, tls_client_auth_ca_pins=(pin,)), "tls_client_auth_ca_pins"
        )


def test_identity_fields_only_for_tls_client_auth() -> None:
    other = ClientMetadata(AuthMethod.CLIENT_SECRET_BASIC, tls_client_auth_san_dns="a.example")
    refused(other, "tls_client_auth_san_dns")
    pins = ClientMetadata(AuthMethod.CLIENT_SECRET_BASIC, tls_client_auth_ca_pins=(PIN,))
    refused(pins, "tls_client_auth_ca_pins")


def test_subject_dn_must_parse() -> None:
    for dn in ("not a dn", "XX=1", "CN=a,=b", ""):
        refused(
            dataclasses.replace(MTLS, tls_client_auth_subject_dn=dn), "tls_client_auth_subject_dn"
        )


def test_san_ip_must_parse() -> None:
    bad = dataclasses.replace(
        MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_ip="10.0.0.300"
    )
    refused(bad, "tls_client_auth_san_ip")


def test_san_uri_must_be_absolute() -> None:
    bad = dataclasses.replace(
        MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_uri="svc/a"
    )
    refused(bad, "tls_client_auth_san_uri")


def test_san_dns_and_email_must_be_well_formed() -> None:
    dns = dataclasses.replace(MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_dns="a b")
    refused(dns, "tls_client_auth_san_dns")
    email = dataclasses.replace(
        MTLS, tls_client_auth_subject_dn=None, tls_client_auth_san_email="x"
    )
    refused(email, "tls_client_auth_san_email")


def test_self_signed_needs_jwks_with_certificate_members() -> None:
    refused(ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH), "jwks")
    assert (
        "x5c or x5t#S256"
        in refused(
            ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=PUBLIC_JWKS), "jwks"
        ).detail
    )
    x5c = {"keys": [{"kty": "EC", "x5c": ["MIIB"]}]}
    ClientMetadata(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=x5c).validate()


def test_private_key_jwt_needs_public_keys() -> None:
    refused(ClientMetadata(AuthMethod.PRIVATE_KEY_JWT), "jwks")
    refused(ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": []}), "jwks")
    refused(ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [{"x": 1}]}), "jwks")
    for member in ("d", "p", "q", "k"):
        key = {**PUBLIC_JWKS["keys"][0], member: "secret"}
        error = refused(ClientMetadata(AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [key]}), "jwks")
        assert member in error.detail and "private" in error.detail


def test_jwks_only_for_the_methods_using_it() -> None:
    refused(ClientMetadata(AuthMethod.CLIENT_SECRET_POST, jwks=PUBLIC_JWKS), "jwks")


def test_public_client_has_authorization_code_only() -> None:
    cc = ClientMetadata(AuthMethod.NONE)
    assert "client_credentials" in refused(cc, "grant_types").detail
    both = ClientMetadata(
        AuthMethod.NONE, grant_types=("authorization_code", "client_credentials"),
        redirect_uris=("https://a.example/cb",),
    )  # fmt: skip
    refused(both, "grant_types")


def test_public_client_needs_redirect_uris() -> None:
    refused(ClientMetadata(AuthMethod.NONE, grant_types=("authorization_code",)), "redirect_uris")


def test_authorization_code_needs_a_redirect_uri() -> None:
    refused(dataclasses.replace(CODE, redirect_uris=()), "redirect_uris")


def test_redirect_uris_https_or_loopback_http_without_fragment() -> None:
    for uri in (
        "http://app.example/cb",
        "https://app.example/cb#frag",
        "ftp://app.example/",
        "/relative",
        "https:///nohost",
        "http://127.0.0.2.example/cb",
    ):
        refused(dataclasses.replace(CODE, redirect_uris=(uri,)), "redirect_uris")


def test_redirect_uris_only_with_authorization_code() -> None:
    stray = ClientMetadata(AuthMethod.CLIENT_SECRET_BASIC, redirect_uris=("https://a.example/",))
    refused(stray, "redirect_uris")


def test_refresh_token_only_with_authorization_code() -> None:
    alone = ClientMetadata(
        AuthMethod.CLIENT_SECRET_BASIC, grant_types=("client_credentials", "refresh_token")
    )
    assert "authorization_code" in refused(alone, "grant_types").detail


def test_grant_types_known_nonempty_unique() -> None:
    for grants in ((), ("password",), ("client_credentials", "client_credentials")):
        refused(ClientMetadata(AuthMethod.CLIENT_SECRET_BASIC, grant_types=grants), "grant_types")


def test_scope_tokens() -> None:
    for scope in ("a  b", " a", "a ", 'a"b', "a\\b"):
        refused(dataclasses.replace(CODE, scope=scope), "scope")


def test_bound_tokens_required_for_mtls_methods() -> None:
    refused(
        dataclasses.replace(MTLS, tls_client_certificate_bound_access_tokens=False),
        "tls_client_certificate_bound_access_tokens",
    )
    self_signed = ClientMetadata(
        AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=X5T_JWKS,
        tls_client_certificate_bound_access_tokens=False,
    )  # fmt: skip
    refused(self_signed, "tls_client_certificate_bound_access_tokens")
    ClientMetadata(
        AuthMethod.CLIENT_SECRET_POST, tls_client_certificate_bound_access_tokens=False
    ).validate()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"token_endpoint_auth_method": "none", "software_id": "x"}, "software_id"),
        ({"grant_types": ["client_credentials"]}, "token_endpoint_auth_method"),
        ({"token_endpoint_auth_method": "basic"}, "token_endpoint_auth_method"),
        (
            {"token_endpoint_auth_method": "none", "grant_types": "authorization_code"},
            "grant_types",
        ),
        ({"token_endpoint_auth_method": "none", "scope": ["a"]}, "scope"),
        ({"token_endpoint_auth_method": "none", "jwks": []}, "jwks"),
        (
            {"token_endpoint_auth_method": "none", "tls_client_certificate_bound_access_tokens": 1},
            "tls_client_certificate_bound_access_tokens",
        ),
        (
            {"token_endpoint_auth_method": "none", "tls_client_auth_san_ip": 1},
            "tls_client_auth_san_ip",
        ),
    ],
)
def test_from_dict_names_unknown_fields_and_wrong_types(data: dict[str, Any], field: str) -> None:
    with pytest.raises(CertboundError) as caught:
        ClientMetadata.from_dict(data)
    assert caught.value.reason is ReasonCode.INVALID_CLIENT_METADATA
    assert caught.value.detail.startswith(f"{field}:")


def test_normalise_dn() -> None:
    assert normalise_dn("CN=a, O=b") == normalise_dn("CN=a,O=b") == "CN=a,O=b"
    assert normalise_dn(" cn = a ,o=b ") == "CN=a,O=b"
    assert normalise_dn("CN=a + OU=x,O=b") == normalise_dn("CN=a+OU=x,O=b")
    assert normalise_dn("CN=a\\, b,O=c") == "CN=a\\, b,O=c"  # an escaped comma is a value
    assert normalise_dn("CN=a\\ ,O=c") != normalise_dn("CN=a,O=c")  # an escaped space counts
    assert normalise_dn("CN=A,O=b") != normalise_dn("CN=a,O=b")  # values compare exactly
    assert normalise_dn("E=x@y.example,CN=a") == "1.2.840.113549.1.9.1=x@y.example,CN=a"
    leaf = devpki.issue("dn.example", devpki.ca("DN CA")).cert
    subject = leaf.subject.rfc4514_string()
    spaced = subject.replace(",", ", ")
    assert spaced != subject and normalise_dn(spaced) == normalise_dn(subject) == subject
    for bad in ("CN=a, O", "garbage", "CN=a,,O=b"):
        with pytest.raises(CertboundError) as caught:
            normalise_dn(bad)
        assert caught.value.reason is ReasonCode.INVALID_CLIENT_METADATA


def test_ca_pin_is_spki_sha256_hex_and_differs_for_same_dn_ca() -> None:
    first, second = devpki.ca("Same Name CA"), devpki.ca("Same Name CA")
    assert first.cert.subject == second.cert.subject
    assert ca_pin(first.cert) == base64.b64decode(spki_sha256(first.cert)).hex()
    assert ca_pin(first.cert) != ca_pin(second.cert)
    dataclasses.replace(MTLS, tls_client_auth_ca_pins=(ca_pin(first.cert),)).validate()


# --- the store -------------------------------------------------------------------------------


def test_create_get_and_secret_shown_once(database: Database, clock: FixedClock) -> None:
    apps = Apps(database, clock)
    app, secret = apps.create("Billing", CODE, client_id="billing")
    assert secret is not None and secret.startswith(SECRET_PREFIX) and len(secret) == 4 + 43
    assert app.has_secret and app.status is AppStatus.ACTIVE and app.client_id == "billing"
    assert apps.get("billing") == apps.get(app.id) == app
    assert secret not in str(app.to_dict()) and "hash" not in str(app.to_dict()).lower()
    assert apps.verify_secret(app, secret)
    assert not apps.verify_secret(app, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not apps.verify_secret(app, "")
    rotated, new = apps.rotate_secret("billing")
    assert new != secret and rotated.has_secret
    assert apps.verify_secret(rotated, new) and not apps.verify_secret(rotated, secret)
    mtls, none = apps.create("Svc", MTLS)
    assert none is None and not mtls.has_secret and len(mtls.client_id) >= 16
    assert not apps.verify_secret(mtls, "")
    with pytest.raises(CertboundError) as caught:
        apps.rotate_secret(mtls.id)
    assert caught.value.reason is ReasonCode.INVALID_CLIENT_METADATA


def test_create_refusals(database: Database, clock: FixedClock) -> None:
    apps = Apps(database, clock)
    apps.create("One", MTLS, client_id="one")
    with pytest.raises(CertboundError) as caught:
        apps.create("Two", MTLS, client_id="one")
    assert caught.value.reason is ReasonCode.NAME_TAKEN
    with pytest.raises(CertboundError) as caught:
        apps.create("Bad", dataclasses.replace(MTLS, tls_client_auth_ca_pins=()))
    assert caught.value.reason is ReasonCode.INVALID_CLIENT_METADATA
    for client_id in ("has space", ""):
        with pytest.raises(CertboundError):
            apps.create("Bad", MTLS, client_id=client_id)
    with pytest.raises(CertboundError) as caught:
        apps.get("nobody")
    assert caught.value.reason is ReasonCode.APP_NOT_FOUND
    assert [a.client_id for a in apps.list()] == ["one"]


def test_update_and_delete(database: Database, clock: FixedClock) -> None:
    apps = Apps(database, clock)
    app, secret = apps.create("Web", CODE)
    clock.advance(dt.timedelta(seconds=5))
    before, after = apps.update(app.id, name="Web 2", status="inactive")
    assert before == app and after.name == "Web 2" and after.status is AppStatus.INACTIVE
    assert after.updated == clock.now() and after.has_secret
    _, moved = apps.update(app.id, MTLS)
    assert moved.metadata == MTLS and not moved.has_secret  # the secret went with the method
    assert secret is not None and not apps.verify_secret(moved, secret)
    with pytest.raises(CertboundError):
        apps.update(app.id, status="gone")
    with pytest.raises(CertboundError):
        apps.update(app.id, dataclasses.replace(MTLS, tls_client_auth_ca_pins=()))
    assert apps.delete(app.client_id).id == app.id
    with pytest.raises(CertboundError):
        apps.get(app.id)


def test_by_client_id_cache(database: Database, clock: FixedClock) -> None:
    apps, other = Apps(database, clock, cache_ttl=5), Apps(database, clock, cache_ttl=5)
    assert apps.by_client_id("svc") is None
    made, _ = other.create("Svc", MTLS, client_id="svc")
    assert apps.by_client_id("svc") == made  # a change in this process empties every cache
    with database.session() as session:  # another process's change: seen after the TTL
        from certbound.storage.models import App as AppRow

        session.get(AppRow, made.id).name = "Renamed"  # type: ignore[union-attr]
    assert apps.by_client_id("svc") == made
    clock.advance(dt.timedelta(seconds=6))
    found = apps.by_client_id("svc")
    assert found is not None and found.name == "Renamed"
    apps.delete("svc")
    assert apps.by_client_id("svc") is None


def test_list_pages(database: Database, clock: FixedClock) -> None:
    apps = Apps(database, clock)
    made = []
    for index in range(5):
        clock.advance(dt.timedelta(seconds=1))
        made.append(apps.create(f"app{index}", MTLS)[0].id)
    first = apps.list(limit=2)
    second = apps.list(limit=2, after=first[-1].id)
    third = apps.list(limit=2, after=second[-1].id)
    assert [a.id for a in first + second + third] == made
    with pytest.raises(CertboundError):
        apps.list(after="app_missing")


@pytest.mark.parametrize("client_id", ["a\x00b", "x" * 257, "tab\there", ""])
def test_an_impossible_client_id_is_unknown_without_a_query(
    database: Database, clock: FixedClock, client_id: str
) -> None:
    apps = Apps(database, clock)
    assert apps.by_client_id(client_id) is None
    with pytest.raises(CertboundError) as raised:
        apps.get(client_id)
    assert raised.value.reason is ReasonCode.APP_NOT_FOUND
