"""The validation engine with real certificates: each reason code, the result cache, and the
identity a verified chain yields."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certbound.clock import FixedClock
from certbound.errors import ReasonCode
from certbound.pki import certificate as facts
from certbound.pki import devpki, validation
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.devpki import DAY, Issued, Profile
from certbound.pki.validation import Rejected, ValidationResult, Validator, Verified

SECOND = dt.timedelta(seconds=1)
CA = Profile(ca=True, eku=None)


def der(item: Issued | x509.Certificate) -> bytes:
    return (item.cert if isinstance(item, Issued) else item).public_bytes(Encoding.DER)


def validator(*bundles: Sequence[Issued], **kwargs: Any) -> Validator:
    chains = [[i.cert for i in bundle] for bundle in bundles]
    return Validator(StaticAnchors(TrustAnchors.from_bundles(chains)), **kwargs)


def rejected(result: ValidationResult, reason: ReasonCode) -> Rejected:
    assert isinstance(result, Rejected), "the chain verified"
    assert result.reason == reason, f"{result.reason}: {result.detail}"
    return result


def verified(result: ValidationResult) -> Verified:
    assert isinstance(result, Verified), f"{getattr(result, 'reason', '')}: {result}"
    return result


@pytest.fixture(scope="module")
def pki() -> devpki.DevPKI:
    return devpki.build_dev_pki()


@pytest.fixture(scope="module")
def store(pki: devpki.DevPKI) -> Validator:
    """The uploaded chain: intermediate then root (the intermediate is filled in)."""
    return validator([pki.intermediate, pki.root])


def device(pki: devpki.DevPKI, name: str, issuer: Issued | None = None, **kw: Any) -> Issued:
    profile = Profile(sans=[x509.DNSName(f"{name}.devices.certbound.test")], **kw)
    return devpki.issue(
        devpki.dn(f"{name}.devices.certbound.test"), issuer or pki.intermediate, profile=profile
    )


# the quickstart devices ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(devpki.QUICKSTART_DEVICES))
def test_quickstart_devices(name: str, pki: devpki.DevPKI, store: Validator) -> None:
    expected = devpki.QUICKSTART_DEVICES[name]
    result = store.verify([der(pki.devices[name])])
    if expected is None or expected == ReasonCode.REVOKED_CERTIFICATE:
        # Revocation is the next layer; the validator only decides the path.
        verified(result)
    else:
        rejected(result, ReasonCode(expected))


def test_good_device_with_its_intermediate(pki: devpki.DevPKI, store: Validator) -> None:
    result = verified(store.verify([der(pki.devices["good"]), der(pki.intermediate)]))
    assert result.chain == (pki.devices["good"].cert, pki.intermediate.cert, pki.root.cert)


def test_cn_only_device_passes(pki: devpki.DevPKI, store: Validator) -> None:
    leaf = devpki.issue(devpki.dn("cn-only"), pki.intermediate)
    assert facts.extension(leaf.cert, x509.SubjectAlternativeName) is None
    identity = verified(store.verify([der(leaf)])).identity
    assert identity.sans == ()
    assert identity.subject_dn == "CN=cn-only,O=Certbound Dev"


def test_san_only_device_passes(pki: devpki.DevPKI, store: Validator) -> None:
    san = x509.SubjectAlternativeName([x509.DNSName("san-only.devices.certbound.test")])
    leaf = devpki.issue(x509.Name([]), pki.intermediate, profile=Profile(extra=[(san, True)]))
    identity = verified(store.verify([der(leaf)])).identity
    assert identity.subject_dn == ""
    assert identity.sans == ("DNS:san-only.devices.certbound.test",)


def test_client_auth_among_other_ekus_passes(pki: devpki.DevPKI, store: Validator) -> None:
    both = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    verified(store.verify([der(device(pki, "both-ekus", eku=both))]))


def test_device_without_eku_passes(pki: devpki.DevPKI, store: Validator) -> None:
    verified(store.verify([der(device(pki, "no-eku", eku=None))]))


# validity --------------------------------------------------------------------------------


def test_expired(pki: devpki.DevPKI, store: Validator) -> None:
    found = rejected(store.verify([der(pki.devices["expired"])]), ReasonCode.CERTIFICATE_EXPIRED)
    assert found.culprit is not None
    assert found.culprit.subject_dn == pki.devices["expired"].name.rfc4514_string()


def test_not_yet_valid(pki: devpki.DevPKI, store: Validator) -> None:
    rejected(
        store.verify([der(pki.devices["not-yet-valid"])]), ReasonCode.CERTIFICATE_NOT_YET_VALID
    )


def test_expired_intermediate(pki: devpki.DevPKI) -> None:
    now = dt.datetime.now(dt.UTC)
    old = devpki.ca("Old Issuing CA", pki.root, not_before=now - 90 * DAY, not_after=now - DAY)
    leaf = device(pki, "under-old", old)
    found = rejected(validator([pki.root]).verify([der(leaf), der(old)]), ReasonCode.CA_EXPIRED)
    assert found.culprit is not None and "Old Issuing CA" in found.culprit.subject_dn


def test_validity_is_judged_to_the_second(pki: devpki.DevPKI, store: Validator) -> None:
    """The verifier's time has whole seconds; a diagnosis must use the same time."""
    good = pki.devices["good"]
    late = good.cert.not_valid_after_utc + dt.timedelta(milliseconds=500)
    verified(store.verify([der(good)], at=late))
    rejected(store.verify([der(good)], at=late + SECOND), ReasonCode.CERTIFICATE_EXPIRED)
    # Rejected for its EKU in that half second: the reason is the EKU, not the expiry.
    server = pki.devices["server-auth-only"]
    late = server.cert.not_valid_after_utc + dt.timedelta(milliseconds=500)
    rejected(store.verify([der(server)], at=late), ReasonCode.EKU_NOT_CLIENT_AUTH)


# trust -----------------------------------------------------------------------------------


def test_foreign_ca_names_issuer_and_key_id(pki: devpki.DevPKI, store: Validator) -> None:
    foreign = pki.devices["foreign"].cert
    found = rejected(store.verify([der(foreign)]), ReasonCode.UNKNOWN_CA)
    assert foreign.issuer.rfc4514_string() in found.detail
    assert "Elsewhere Inc" in found.detail
    key_id = facts.key_id(foreign)
    assert key_id is not None and key_id in found.detail


def test_missing_intermediate_of_the_same_organisation(pki: devpki.DevPKI) -> None:
    found = rejected(
        validator([pki.root]).verify([der(pki.devices["good"])]),
        ReasonCode.INTERMEDIATE_MISSING,
    )
    assert "Certbound Dev Intermediate CA" in found.detail


def test_presented_intermediate_fills_a_root_only_store(pki: devpki.DevPKI) -> None:
    result = validator([pki.root]).verify([der(pki.devices["good"]), der(pki.intermediate)])
    assert verified(result).chain[-1] == pki.root.cert


def test_intermediate_filled_in_from_the_store(pki: devpki.DevPKI, store: Validator) -> None:
    result = verified(store.verify([der(pki.devices["good"])]))
    assert result.chain == (pki.devices["good"].cert, pki.intermediate.cert, pki.root.cert)


def test_same_dn_impostor_ca(pki: devpki.DevPKI, store: Validator) -> None:
    impostor = devpki.ca("Certbound Dev Intermediate CA", pki.root)  # same DN, another key
    leaf = device(pki, "impostor", impostor)
    found = rejected(store.verify([der(leaf)]), ReasonCode.SIGNATURE_INVALID)
    assert "Certbound Dev Intermediate CA" in found.detail


def test_same_dn_impostor_chain(pki: devpki.DevPKI, store: Validator) -> None:
    fake_root = devpki.ca("Certbound Dev Root CA")  # the root's DN, another key
    fake_inter = devpki.ca("Certbound Dev Intermediate CA", fake_root)
    leaf = device(pki, "impostor-chain", fake_inter)
    found = rejected(store.verify([der(leaf), der(fake_inter)]), ReasonCode.SIGNATURE_INVALID)
    assert found.culprit is not None
    assert found.culprit.sha256_fingerprint == facts.sha256_fingerprint(fake_inter.cert)


def test_empty_store(pki: devpki.DevPKI) -> None:
    source = StaticAnchors(TrustAnchors.from_bundles([]))
    rejected(Validator(source).verify([der(pki.devices["good"])]), ReasonCode.UNKNOWN_CA)


def test_cross_signed_alternative_does_not_hide_the_real_problem(pki: devpki.DevPKI) -> None:
    """An expired device whose intermediate is also cross-signed by an unknown root: the
    answer is the expiry, not the unknown root of the dead-end alternative."""
    other_root = devpki.ca("Other Root CA", organisation="Other Org")
    key = devpki.make_key()
    name = devpki.dn("Cross-signed Issuing CA")
    by_root = devpki.issue(name, pki.root, key=key, profile=CA)
    by_other = devpki.issue(name, other_root, key=key, profile=CA)
    now = dt.datetime.now(dt.UTC)
    leaf = device(pki, "cross-expired", by_root, not_before=now - 9 * DAY, not_after=now - DAY)
    result = validator([pki.root]).verify([der(leaf), der(by_other), der(by_root)])
    rejected(result, ReasonCode.CERTIFICATE_EXPIRED)


# usages ----------------------------------------------------------------------------------


def test_server_auth_only(pki: devpki.DevPKI, store: Validator) -> None:
    found = rejected(
        store.verify([der(pki.devices["server-auth-only"])]), ReasonCode.EKU_NOT_CLIENT_AUTH
    )
    assert "serverAuth" in found.detail


def test_any_extended_key_usage_only(pki: devpki.DevPKI, store: Validator) -> None:
    """cryptography's client verifier wants clientAuth itself; anyExtendedKeyUsage alone
    does not do (it accepts anyExtendedKeyUsage next to clientAuth)."""
    leaf = device(pki, "any-eku", eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    found = rejected(store.verify([der(leaf)]), ReasonCode.EKU_NOT_CLIENT_AUTH)
    assert "anyExtendedKeyUsage" in found.detail
    both = [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, ExtendedKeyUsageOID.CLIENT_AUTH]
    verified(store.verify([der(device(pki, "any-and-client", eku=both))]))


def test_ca_without_key_cert_sign(pki: devpki.DevPKI) -> None:
    no_sign = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    ca = devpki.ca("No keyCertSign CA", pki.root, key_usage=no_sign)
    found = rejected(
        validator([pki.root]).verify([der(device(pki, "under-no-sign", ca)), der(ca)]),
        ReasonCode.KEY_USAGE_INVALID,
    )
    assert found.culprit is not None and "No keyCertSign CA" in found.culprit.subject_dn


def test_leaf_with_key_cert_sign(pki: devpki.DevPKI, store: Validator) -> None:
    usage = x509.KeyUsage(True, False, False, False, False, True, False, False, False)
    found = rejected(
        store.verify([der(device(pki, "cert-signer", key_usage=usage))]),
        ReasonCode.KEY_USAGE_INVALID,
    )
    assert "keyCertSign" in found.detail


def test_leaf_that_is_a_ca(pki: devpki.DevPKI, store: Validator) -> None:
    leaf = devpki.issue(devpki.dn("ca-as-device"), pki.intermediate, profile=CA)
    found = rejected(store.verify([der(leaf)]), ReasonCode.CERTIFICATE_POLICY_VIOLATION)
    assert "basicConstraints" in found.detail


# constraints -----------------------------------------------------------------------------


def test_name_constraint_violation(pki: devpki.DevPKI) -> None:
    permitted = x509.NameConstraints([x509.DNSName("devices.certbound.test")], None)
    ca = devpki.ca("Constrained CA", pki.root, extra=[(permitted, True)])
    inside = device(pki, "inside", ca)
    outside = devpki.issue(
        "outside", ca, profile=Profile(sans=[x509.DNSName("device.elsewhere.test")])
    )
    checker = validator([pki.root])
    verified(checker.verify([der(inside), der(ca)]))
    found = rejected(checker.verify([der(outside), der(ca)]), ReasonCode.NAME_CONSTRAINT_VIOLATION)
    assert found.culprit is not None and "Constrained CA" in found.culprit.subject_dn


def test_path_length_exceeded(pki: devpki.DevPKI) -> None:
    pathlen0 = devpki.ca("PathLen 0 CA", pki.root, path_length=0)
    below = devpki.ca("Below PathLen 0 CA", pathlen0)
    leaf = device(pki, "too-deep", below)
    found = rejected(
        validator([pki.root]).verify([der(leaf), der(below), der(pathlen0)]),
        ReasonCode.PATH_LENGTH_EXCEEDED,
    )
    assert found.culprit is not None and "PathLen 0 CA" in found.culprit.subject_dn


def test_max_depth(pki: devpki.DevPKI) -> None:
    shallow = validator([pki.root], max_depth=0)
    rejected(
        shallow.verify([der(pki.devices["good"]), der(pki.intermediate)]),
        ReasonCode.PATH_LENGTH_EXCEEDED,
    )


# algorithms ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "says"), [("rsa1024", "1024 bits"), ("p192", "secp192r1")])
def test_weak_device_key(kind: str, says: str, pki: devpki.DevPKI, store: Validator) -> None:
    """cryptography checks the keys that verify signatures, never the leaf's own key;
    the validator applies the algorithm policy to it."""
    leaf = devpki.issue(devpki.dn(f"{kind}-device"), pki.intermediate, key=devpki.make_key(kind))
    found = rejected(store.verify([der(leaf)]), ReasonCode.WEAK_ALGORITHM)
    assert says in found.detail


def test_ed25519_device_key_is_outside_the_policy(pki: devpki.DevPKI, store: Validator) -> None:
    """The catalogue lists Ed25519/Ed448 under WEAK_ALGORITHM; the device key follows it."""
    leaf = devpki.issue(devpki.dn("ed-device"), pki.intermediate, key=devpki.make_key("ed25519"))
    rejected(store.verify([der(leaf)]), ReasonCode.WEAK_ALGORITHM)


def sha1_signed(issuer: Issued) -> bytes:
    """A device certificate signed with sha1WithRSAEncryption, which cryptography refuses
    to produce: issue it with SHA-256, swap the algorithm (same length) and re-sign."""
    assert isinstance(issuer.key, rsa.RSAPrivateKey)
    cert = devpki.issue("sha1-device", issuer).cert
    sha256_rsa, sha1_rsa = bytes.fromhex("2a864886f70d01010b"), bytes.fromhex("2a864886f70d010105")
    tbs = cert.tbs_certificate_bytes.replace(sha256_rsa, sha1_rsa)
    signature = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    assert len(signature) == len(cert.signature)
    return der(cert).replace(sha256_rsa, sha1_rsa).replace(cert.signature, signature)


def test_sha1_signed_device(pki: devpki.DevPKI) -> None:
    rsa_ca = devpki.ca("RSA Issuing CA", pki.root, key_kind="rsa2048")
    found = rejected(
        validator([rsa_ca, pki.root]).verify([sha1_signed(rsa_ca)]), ReasonCode.WEAK_ALGORITHM
    )
    assert "sha1WithRSAEncryption" in found.detail


# intake ----------------------------------------------------------------------------------


def test_nothing_presented(store: Validator) -> None:
    rejected(store.verify([]), ReasonCode.NO_CLIENT_CERTIFICATE)


def test_garbage(pki: devpki.DevPKI, store: Validator) -> None:
    found = rejected(store.verify([b"\x30\x03garbage"]), ReasonCode.MALFORMED_CERTIFICATE)
    assert "the leaf" in found.detail
    found = rejected(
        store.verify([der(pki.devices["good"]), b"not DER"]), ReasonCode.MALFORMED_CERTIFICATE
    )
    assert "presented certificate 2" in found.detail


def undecodable_san() -> x509.UnrecognizedExtension:
    """A subjectAltName whose iPAddress has 5 bytes: it parses as DER, not as an address."""
    return x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3007" + "8705" + "0102030405")
    )


def test_undecodable_extension_in_the_device(pki: devpki.DevPKI, store: Validator) -> None:
    leaf = devpki.issue(
        "bad-san", pki.intermediate, profile=Profile(extra=[(undecodable_san(), False)])
    )
    found = rejected(store.verify([der(leaf)]), ReasonCode.MALFORMED_CERTIFICATE)
    assert "the leaf" in found.detail


def test_undecodable_extension_in_a_presented_ca(pki: devpki.DevPKI) -> None:
    """A CA's extensions are cryptography's to judge (its parser takes this one); when the
    chain fails for another reason, diagnosis still answers, without an exception."""
    bad = devpki.ca("Bad Extension CA", pki.root, extra=[(undecodable_san(), False)])
    checker = validator([pki.root])
    verified(checker.verify([der(device(pki, "under-bad", bad)), der(bad)]))
    now = dt.datetime.now(dt.UTC)
    expired = device(pki, "expired-under-bad", bad, not_before=now - 9 * DAY, not_after=now - DAY)
    rejected(checker.verify([der(expired), der(bad)]), ReasonCode.CERTIFICATE_EXPIRED)
    server = device(pki, "server-under-bad", bad, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    found = rejected(checker.verify([der(server), der(bad)]), ReasonCode.MALFORMED_CERTIFICATE)
    assert "Bad Extension CA" in found.detail


def test_undecodable_extension_in_a_trusted_ca(pki: devpki.DevPKI) -> None:
    """A trusted CA (e.g. ``verify --ca FILE``) with a wildcard dNSName constraint, which
    cryptography's Python objects refuse to decode: a reason, not an exception."""
    wildcard = x509.UnrecognizedExtension(
        ExtensionOID.NAME_CONSTRAINTS, bytes.fromhex("3009a0073005" + "8203" + "2a2e78")
    )
    ca = devpki.ca("Wildcard Constraint CA", pki.root, extra=[(wildcard, True)])
    leaf = device(pki, "under-wildcard", ca)
    result = validator([ca, pki.root]).verify([der(leaf)])
    found = rejected(result, ReasonCode.MALFORMED_CERTIFICATE)
    assert "Wildcard Constraint CA" in found.detail


# identity --------------------------------------------------------------------------------


def test_identity_fields(pki: devpki.DevPKI, store: Validator) -> None:
    leaf = devpki.issue(
        devpki.dn("identity.devices.certbound.test"),
        pki.intermediate,
        profile=Profile(
            serial=0xABCDE,  # odd number of hex digits: printed with a leading zero
            sans=[
                x509.DNSName("identity.devices.certbound.test"),
                x509.UniformResourceIdentifier("spiffe://certbound.test/device/identity"),
            ],
        ),
    )
    raw = der(leaf)
    identity = verified(store.verify([raw])).identity
    assert identity.subject_dn == "CN=identity.devices.certbound.test,O=Certbound Dev"
    assert identity.issuer_dn == "CN=Certbound Dev Intermediate CA,O=Certbound Dev"
    assert identity.serial_number == "0ABCDE"
    assert identity.sans == (
        "DNS:identity.devices.certbound.test",
        "URI:spiffe://certbound.test/device/identity",
    )
    digest = hashlib.sha256(raw).digest()
    assert identity.x5t_s256 == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert "=" not in identity.x5t_s256 and len(identity.x5t_s256) == 43
    spki = leaf.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert identity.spki_sha256 == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert identity.not_before == leaf.cert.not_valid_before_utc
    assert identity.not_after == leaf.cert.not_valid_after_utc
    shown = identity.to_dict()
    assert shown["x5t#S256"] == identity.x5t_s256
    assert shown["serialNumber"] == "0ABCDE"
    assert shown["notAfter"].endswith("Z")


def test_rejection_names_the_leaf_and_the_fix(pki: devpki.DevPKI, store: Validator) -> None:
    found = rejected(store.verify([der(pki.devices["expired"])]), ReasonCode.CERTIFICATE_EXPIRED)
    shown = found.to_dict()
    assert shown["result"] == "FAILED"
    assert shown["reason"] == "CERTIFICATE_EXPIRED"
    assert shown["fix"] == ReasonCode.CERTIFICATE_EXPIRED.fix
    assert shown["certificate"]["serial_number"] == facts.serial_hex(pki.devices["expired"].cert)


# the result cache ------------------------------------------------------------------------


class MovableAnchors:
    """An AnchorSource whose trusted set (and generation) a test can change."""

    def __init__(self, *bundles: Sequence[Issued]) -> None:
        self.bundles = [[i.cert for i in b] for b in bundles]
        self.current = 1
        self.loads = 0

    def generation(self) -> int:
        return self.current

    def load(self) -> TrustAnchors:
        self.loads += 1
        return TrustAnchors.from_bundles(self.bundles, generation=self.current)

    def replace(self, *bundles: Sequence[Issued]) -> None:
        self.bundles = [[i.cert for i in b] for b in bundles]
        self.current += 1


def test_warm_hit_is_the_same_object(pki: devpki.DevPKI) -> None:
    checker = validator([pki.intermediate, pki.root])
    chain = [der(pki.devices["good"])]
    first = verified(checker.verify(chain))
    assert checker.verify(chain) is first
    failed = checker.verify([der(pki.devices["foreign"])])
    assert checker.verify([der(pki.devices["foreign"])]) is failed


def test_cache_disabled(pki: devpki.DevPKI) -> None:
    checker = validator([pki.intermediate, pki.root], cache_size=0)
    chain = [der(pki.devices["good"])]
    assert checker.verify(chain) is not checker.verify(chain)


def test_cached_ok_is_not_served_outside_the_validity(pki: devpki.DevPKI) -> None:
    good = pki.devices["good"]
    checker = validator([pki.intermediate, pki.root])
    now = dt.datetime.now(dt.UTC)
    first = verified(checker.verify([der(good)], at=now))
    assert checker.verify([der(good)], at=now + 60 * SECOND) is first
    after = good.cert.not_valid_after_utc + SECOND
    rejected(checker.verify([der(good)], at=after), ReasonCode.CERTIFICATE_EXPIRED)
    before = good.cert.not_valid_before_utc - SECOND
    rejected(checker.verify([der(good)], at=before), ReasonCode.CERTIFICATE_NOT_YET_VALID)
    assert verified(checker.verify([der(good)], at=now)) is not first


def test_cached_ok_lasts_at_most_cache_seconds(pki: devpki.DevPKI) -> None:
    clock = FixedClock(dt.datetime.now(dt.UTC))
    checker = validator([pki.intermediate, pki.root], clock=clock, cache_seconds=30)
    chain = [der(pki.devices["good"])]
    first = checker.verify(chain)
    clock.advance(29 * SECOND)
    assert checker.verify(chain) is first
    clock.advance(2 * SECOND)
    assert checker.verify(chain) is not first


def test_cached_rejection_is_short_lived(pki: devpki.DevPKI) -> None:
    clock = FixedClock(dt.datetime.now(dt.UTC))
    checker = validator([pki.intermediate, pki.root], clock=clock)
    chain = [der(pki.devices["foreign"])]
    first = checker.verify(chain)
    clock.advance((validation.REJECTION_CACHE_SECONDS + 1) * SECOND)
    assert checker.verify(chain) is not first


def test_generation_change_invalidates(pki: devpki.DevPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "GENERATION_POLL_SECONDS", 0.0)
    source = MovableAnchors([pki.intermediate, pki.root])
    checker = Validator(source)
    chain = [der(pki.devices["good"])]
    verified(checker.verify(chain))
    source.replace([devpki.ca("Somebody Else's Root CA", organisation="Else")])
    rejected(checker.verify(chain), ReasonCode.UNKNOWN_CA)
    source.replace([pki.intermediate, pki.root])
    verified(checker.verify(chain))
    assert source.loads == 3


def test_refresh_invalidates_without_waiting_for_the_poll(pki: devpki.DevPKI) -> None:
    source = MovableAnchors([pki.intermediate, pki.root])
    checker = Validator(source)
    chain = [der(pki.devices["good"])]
    verified(checker.verify(chain))
    source.replace()  # the store emptied
    assert checker.verify(chain).ok  # polled at most every GENERATION_POLL_SECONDS
    checker.refresh()
    rejected(checker.verify(chain), ReasonCode.UNKNOWN_CA)
