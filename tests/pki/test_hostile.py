"""Hostile presented chains: every answer is a correct rejection, within 50 ms of CPU.

The issue: a client that presents several self-issued intermediates with the same subject
and key makes cryptography 48's verify() run for seconds to minutes (5.7 s with 3 such
certificates, over 30 s with 4), because its path builder has no cycle check: it follows
any candidate issuer whose name matches and whose signature verifies, up to the maximum
depth. pki/presented.py bounds the presented chain before any verifier sees it; these tests
hold it to that, per call, on a cold validator (new Validator, empty cache), and check that
legitimate cross-signed chains still verify.

Cycles (which cryptography 48 walks to the maximum depth) and forged name-constraint
floods are bounded too.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.devpki import Issued, Profile
from certbound.pki.presented import MAX_PER_SUBJECT, MAX_PRESENTED
from certbound.pki.validation import Rejected, ValidationResult, Validator, Verified

CPU_BUDGET = 0.050  # seconds of CPU per verify() call
CA = Profile(ca=True, eku=None)
ORG = "Hostile Test"


def ders(*items: Issued | x509.Certificate) -> list[bytes]:
    return [(i.cert if isinstance(i, Issued) else i).public_bytes(Encoding.DER) for i in items]


def cold_verify(
    trusted: Sequence[Sequence[Issued]], presented: list[bytes], runs: int = 3
) -> tuple[ValidationResult, float]:
    """verify() on a new Validator each time (store loaded, cache empty); the median CPU.

    The garbage collector is run before and paused during each call: a full collection of a
    worker's accumulated objects (the limbo corpus, say) is not the chain's work.
    """
    bundles = [[i.cert for i in chain] for chain in trusted]
    times, result = [], None
    for _ in range(runs):
        validator = Validator(StaticAnchors(TrustAnchors.from_bundles(bundles)))
        validator.refresh()
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            result = validator.verify(presented)
            times.append(time.process_time() - started)
        finally:
            gc.enable()
    assert result is not None
    return result, statistics.median(times)


def rejected(
    result: ValidationResult, cpu: float, *reasons: ReasonCode, label: str = ""
) -> Rejected:
    print(f"\n  {label or 'chain'}: {cpu * 1000:.1f} ms CPU -> {getattr(result, 'reason', 'OK')}")
    assert isinstance(result, Rejected), f"{label}: a hostile chain verified"
    assert result.reason in reasons, f"{label}: {result.reason}: {result.detail}"
    assert cpu <= CPU_BUDGET, f"{label}: {cpu * 1000:.1f} ms of CPU (budget 50 ms)"
    return result


def verified(result: ValidationResult, cpu: float, label: str = "") -> Verified:
    print(f"\n  {label or 'chain'}: {cpu * 1000:.1f} ms CPU -> {getattr(result, 'reason', 'OK')}")
    assert isinstance(result, Verified), f"{label}: {result.reason}: {result.detail}"
    assert cpu <= CPU_BUDGET, f"{label}: {cpu * 1000:.1f} ms of CPU (budget 50 ms)"
    return result


def stub(name: str, key: devpki.PrivateKey) -> Issued:
    """A self-signed certificate that only lends a name and a key to issue() as issuer."""
    return devpki.issue(devpki.dn(name, ORG), None, key=key, profile=CA)


# the PKI -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> Issued:
    return devpki.ca("Hostile Test Root CA", organisation=ORG)


@pytest.fixture(scope="module")
def inter(root: Issued) -> Issued:
    return devpki.ca("Hostile Test Intermediate CA", root, organisation=ORG)


@pytest.fixture(scope="module")
def leaf(inter: Issued) -> Issued:
    return devpki.issue("device.hostile.test", inter)


@pytest.fixture(scope="module")
def unrelated() -> Issued:
    return devpki.ca("Unrelated Root CA", organisation="Elsewhere Inc")


def self_issued_copies(inter: Issued, count: int, *, same_key: bool = True) -> list[Issued]:
    """``count`` CA certificates with subject = issuer = the intermediate's DN. With
    ``same_key`` they all hold its key and sign themselves (the issue's shape); otherwise
    each has a new key and is signed by the intermediate's (key-rollover shape)."""
    return [
        devpki.issue(
            inter.name, inter, key=inter.key if same_key else devpki.make_key(), profile=CA
        )
        for _ in range(count)
    ]


# the issue's shape: self-issued copies of the intermediate --------------------------------


@pytest.mark.parametrize("count", [3, 4, 8, 50])
def test_self_issued_copies_against_an_unrelated_root(
    count: int, inter: Issued, leaf: Issued, unrelated: Issued
) -> None:
    presented = ders(leaf, *self_issued_copies(inter, count))
    result, cpu = cold_verify([[unrelated]], presented)
    # The issue's shape: more than MAX_PER_SUBJECT candidates for one subject (or more than
    # MAX_PRESENTED certificates) are refused before any path building.
    rejected(
        result,
        cpu,
        ReasonCode.CHAIN_TOO_COMPLEX,
        label=f"{count} self-issued copies, unrelated root",
    )


@pytest.mark.parametrize("count", [3, 4, 8])
def test_self_issued_copies_without_the_real_intermediate(
    count: int, root: Issued, inter: Issued, leaf: Issued
) -> None:
    result, cpu = cold_verify([[root]], ders(leaf, *self_issued_copies(inter, count)))
    rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label=f"{count} copies, real root")


def test_one_self_issued_copy_without_the_real_intermediate(
    root: Issued, inter: Issued, leaf: Issued
) -> None:
    result, cpu = cold_verify([[root]], ders(leaf, *self_issued_copies(inter, 1)))
    # The copy is kept (one self-issued certificate is a cheap loop) and is the top of the
    # presented chain: its issuer, itself, is not trusted.
    found = rejected(result, cpu, ReasonCode.UNKNOWN_CA, label="1 copy, real root")
    assert "Hostile Test Intermediate CA" in found.detail


@pytest.mark.parametrize("count", [3, 4, 8])
def test_self_issued_copies_next_to_the_real_intermediate_are_refused(
    count: int, root: Issued, inter: Issued, leaf: Issued
) -> None:
    copies = self_issued_copies(inter, count)
    result, cpu = cold_verify([[root]], ders(leaf, *copies[:2], inter, *copies[2:]))
    rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label=f"{count} copies + intermediate")


def test_one_self_issued_copy_next_to_the_real_intermediate_verifies(
    root: Issued, inter: Issued, leaf: Issued
) -> None:
    copies = self_issued_copies(inter, 1)
    result, cpu = cold_verify([[root]], ders(leaf, *copies, inter))
    chain = verified(result, cpu, label="1 copy + real intermediate").chain
    # cryptography may route through the self-issued copy (a valid RFC 5280 path).
    assert chain[0] == leaf.cert
    assert chain[-1] == root.cert


def test_self_issued_rollover_copies_are_bounded(
    inter: Issued, leaf: Issued, unrelated: Issued
) -> None:
    copies = self_issued_copies(inter, 6, same_key=False)
    result, cpu = cold_verify([[unrelated]], ders(leaf, *copies))
    rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label="6 rollover-style copies")


# mutual cross-issuance ------------------------------------------------------------------


def mutual(
    count_x: int = 1, count_y: int = 1, *, same_key: bool = False, kind: str = "p256"
) -> tuple[Issued, list[Issued], Issued, Issued]:
    """CA X issued by CA Y and Y issued by X (``count_x`` / ``count_y`` certificates of
    each), and a device certificate under X. Returns (leaf, certs, x stub, y stub)."""
    key_x = devpki.make_key(kind)
    key_y = key_x if same_key else devpki.make_key(kind)
    stub_x, stub_y = stub("Mutual X CA", key_x), stub("Mutual Y CA", key_y)
    certs = [devpki.issue(stub_x.name, stub_y, key=key_x, profile=CA) for _ in range(count_x)]
    certs += [devpki.issue(stub_y.name, stub_x, key=key_y, profile=CA) for _ in range(count_y)]
    return devpki.issue("device.mutual.test", stub_x), certs, stub_x, stub_y


def test_mutual_pair_is_rejected(unrelated: Issued) -> None:
    leaf, certs, _, _ = mutual()
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs))
    found = rejected(result, cpu, ReasonCode.UNKNOWN_CA, label="X<->Y")
    assert "Mutual" in found.detail


def test_mutual_pair_with_one_key_is_rejected(unrelated: Issued) -> None:
    leaf, certs, _, _ = mutual(same_key=True)
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs))
    rejected(result, cpu, ReasonCode.UNKNOWN_CA, label="X<->Y, one key")


def test_mutual_triangle_is_rejected(unrelated: Issued) -> None:
    keys = [devpki.make_key() for _ in range(3)]
    stubs = [stub(f"Triangle {n} CA", k) for n, k in zip("ABC", keys, strict=True)]
    certs = [  # A issued by B, B by C, C by A
        devpki.issue(stubs[i].name, stubs[(i + 1) % 3], key=keys[i], profile=CA) for i in range(3)
    ]
    leaf = devpki.issue("device.triangle.test", stubs[0])
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs))
    rejected(result, cpu, ReasonCode.UNKNOWN_CA, label="A->B->C->A")


def test_mutual_pair_with_a_way_out_verifies(root: Issued) -> None:
    leaf, certs, _, stub_y = mutual()
    exit_y = devpki.issue(stub_y.name, root, key=stub_y.key, profile=CA)
    result, cpu = cold_verify([[root]], ders(leaf, *certs, exit_y))
    chain = verified(result, cpu, label="X<->Y, Y also issued by the root").chain
    assert chain[-1] == root.cert


def test_three_certificates_with_one_subject_are_refused(unrelated: Issued) -> None:
    leaf, certs, _, _ = mutual(count_x=MAX_PER_SUBJECT + 1)
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs))
    rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label="X (x3) <-> Y")


@pytest.mark.parametrize("kind", ["p256", "p521"])
def test_mutual_pair_doubled_is_bounded(kind: str, unrelated: Issued) -> None:
    leaf, certs, _, _ = mutual(count_x=2, count_y=2, kind=kind)
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs), runs=1)
    rejected(
        result,
        cpu,
        ReasonCode.UNKNOWN_CA,
        ReasonCode.CHAIN_TOO_COMPLEX,
        label=f"X (x2) <-> Y (x2), {kind}",
    )


def test_cross_signing_mesh_of_three_is_bounded(unrelated: Issued) -> None:
    keys = {n: devpki.make_key() for n in "ABC"}
    stubs = {n: stub(f"Mesh {n} CA", k) for n, k in keys.items()}
    certs = [  # every CA issued by both others: 6 certificates, 2 per subject
        devpki.issue(stubs[a].name, stubs[b], key=keys[a], profile=CA)
        for a in "ABC"
        for b in "ABC"
        if a != b
    ]
    leaf = devpki.issue("device.mesh.test", stubs["A"])
    result, cpu = cold_verify([[unrelated]], ders(leaf, *certs), runs=1)
    rejected(result, cpu, ReasonCode.UNKNOWN_CA, ReasonCode.CHAIN_TOO_COMPLEX, label="3-CA mesh")


# too many certificates, one subject many times --------------------------------------------


def test_more_than_max_presented_certificates_are_refused(
    root: Issued, inter: Issued, leaf: Issued
) -> None:
    junk = [devpki.ca(f"Junk {n} CA", organisation="Junk") for n in range(MAX_PRESENTED - 1)]
    # The valid chain is in there, but the count is checked before anything is parsed.
    result, cpu = cold_verify([[root]], ders(leaf, inter, *junk))
    found = rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label="11 certificates")
    assert str(MAX_PRESENTED) in found.detail


def test_repeated_copies_count_against_max_presented(
    root: Issued, inter: Issued, leaf: Issued
) -> None:
    result, cpu = cold_verify([[root]], ders(leaf, *[inter] * MAX_PRESENTED))
    rejected(result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label="the intermediate 10 times")


@pytest.mark.parametrize("count", [MAX_PER_SUBJECT + 1, MAX_PRESENTED - 1])
def test_many_certificates_sharing_one_subject_are_refused(
    count: int, root: Issued, inter: Issued, leaf: Issued
) -> None:
    # Distinct keys, all named like the real intermediate and issued by the real root.
    impostors = [
        devpki.issue(inter.name, root, key=devpki.make_key(), profile=CA) for _ in range(count - 1)
    ]
    result, cpu = cold_verify([[root]], ders(leaf, inter, *impostors))
    found = rejected(
        result, cpu, ReasonCode.CHAIN_TOO_COMPLEX, label=f"{count} CAs with one subject"
    )
    assert "share the subject" in found.detail


# name constraints: quadratic work before any signature reaches the store -------------------


def many_names_chain(root_name: str, names: int) -> tuple[Issued, Issued]:
    """A forged intermediate claiming issuer ``root_name`` (signed by another key) with
    ``names`` permitted and ``names`` excluded DNS subtrees, and a leaf whose ``names``
    SANs all fall inside the permitted ones."""
    forged_root = devpki.ca(root_name, organisation=ORG)
    constraints = x509.NameConstraints(
        [x509.DNSName(f"p{i}.test") for i in range(names)],
        [x509.DNSName(f"x{i}.test") for i in range(names)],
    )
    forged = devpki.issue(
        devpki.dn("Constrained CA", ORG),
        forged_root,
        key=devpki.make_key(),
        profile=Profile(ca=True, eku=None, extra=[(constraints, True)]),
    )
    sans = [x509.DNSName(f"d.p{i}.test") for i in range(names)]
    return devpki.issue("device.names.test", forged, profile=Profile(sans=sans)), forged


def test_a_few_name_constraints_on_a_forged_intermediate_are_cheap(root: Issued) -> None:
    leaf, forged = many_names_chain("Hostile Test Root CA", 64)
    result, cpu = cold_verify([[root]], ders(leaf, forged))
    rejected(result, cpu, ReasonCode.SIGNATURE_INVALID, label="64x64 names, forged CA")


def test_many_name_constraints_on_a_forged_intermediate_are_bounded(root: Issued) -> None:
    leaf, forged = many_names_chain("Hostile Test Root CA", 2048)
    result, cpu = cold_verify([[root]], ders(leaf, forged), runs=1)
    rejected(
        result,
        cpu,
        ReasonCode.SIGNATURE_INVALID,
        ReasonCode.CHAIN_TOO_COMPLEX,
        label="2048x2048 names, forged CA",
    )


# legitimate cross-signing still works -----------------------------------------------------


@pytest.fixture(scope="module")
def cross_signed(root: Issued) -> tuple[Issued, Issued, Issued, Issued]:
    """One intermediate key under two roots: (other root, inter by root, inter by other
    root, leaf)."""
    other_root = devpki.ca("Other Root CA", organisation="Other Org")
    key = devpki.make_key()
    name = devpki.dn("Cross-signed Issuing CA", ORG)
    by_root = devpki.issue(name, root, key=key, profile=CA)
    by_other = devpki.issue(name, other_root, key=key, profile=CA)
    return other_root, by_root, by_other, devpki.issue("device.cross.test", by_root)


def test_cross_signed_intermediate_verifies_through_the_trusted_root(
    root: Issued, cross_signed: tuple[Issued, Issued, Issued, Issued]
) -> None:
    _, by_root, by_other, leaf = cross_signed
    # The untrusted cross-sign comes first, so the verifier has to look past it.
    result, cpu = cold_verify([[root]], ders(leaf, by_other, by_root))
    chain = verified(result, cpu, label="cross-signed, trusted root").chain
    assert chain == (leaf.cert, by_root.cert, root.cert)


def test_cross_signed_intermediate_verifies_through_the_other_root(
    root: Issued, cross_signed: tuple[Issued, Issued, Issued, Issued]
) -> None:
    other_root, by_root, by_other, leaf = cross_signed
    result, cpu = cold_verify([[other_root]], ders(leaf, by_root, by_other))
    chain = verified(result, cpu, label="cross-signed, other root").chain
    assert chain == (leaf.cert, by_other.cert, other_root.cert)


def test_cross_signed_intermediate_alone_under_the_wrong_root(
    root: Issued, cross_signed: tuple[Issued, Issued, Issued, Issued]
) -> None:
    _, _, by_other, leaf = cross_signed
    result, cpu = cold_verify([[root]], ders(leaf, by_other))
    found = rejected(result, cpu, ReasonCode.UNKNOWN_CA, label="only the other cross-sign")
    assert "Other Root CA" in found.detail
