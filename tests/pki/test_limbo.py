"""The x509-limbo corpus through Certbound's validator, compared with cryptography used directly.

Which cases (the issue's selection): every CLIENT case, and the cases that test path
validation itself whatever the peer name: pathlen, pathological, rfc5280 validity / aki /
ski / pc, name constraints (rfc5280::nc, webpki::nc, bettertls nameconstraints, the two
name-constraint CVEs), bettertls pathbuilding and cve-2024-0567 (path building).

How each case runs: the trusted certificates are anchors, the client presents the peer
certificate and the untrusted intermediates, at the case's validation time (or now), with
its max_chain_depth. The oracle is cryptography's client verifier with Certbound's profile
(Web PKI defaults, SAN optional, clientAuth required when an EKU is present), built by hand
here; cryptography-direct runs in a forked worker under an RLIMIT_CPU budget, so a case that
makes it spin kills the worker instead of hanging the test. The denial-of-service cases run
through Certbound only.

The profile question. Limbo's SERVER cases carry serverAuth-only leaves, which any client
verifier rejects before path validation means anything. Those cases run with the EKU rule
left out of the end-entity profile, on both sides (Certbound's validator is built with that
profile; everything else, bounds, store handling, diagnosis, is Certbound's own), and the
real validator is then asked to reject the same chain with EKU_NOT_CLIENT_AUTH: when the
only thing wrong with a chain is its EKU, that must be the reason code.

The test fails on
- a regression: cryptography-direct agrees with limbo and Certbound does not;
- Certbound accepting a chain limbo expects to FAIL, unless the case is not applicable to a
  client verifier (rules below) or listed in CRYPTOGRAPHY_ACCEPTS with the reason;
- any disagreement with cryptography-direct not listed in BOUNDED (or the intake rule);
- the EKU gate above naming another reason; a Certbound call over its CPU bound; a crash;
- a stale list entry.
Run with ``-s`` to see the summary (it is also in the assertion message).
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import math
import multiprocessing
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certbound.errors import ReasonCode
from certbound.pki import validation
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.presented import UNDECODABLE
from certbound.pki.validation import Rejected, ValidationResult, Validator

resource = pytest.importorskip("resource")  # RLIMIT_CPU for the cryptography-direct worker

LIMBO = Path("vectors") / "x509-limbo" / "limbo.json.gz"

SELECTED_PREFIXES = (
    "pathlen::",
    "pathological::",
    "rfc5280::validity::",
    "rfc5280::aki::",
    "rfc5280::ski::",
    "rfc5280::pc::",
    "rfc5280::nc::",
    "webpki::nc::",
    "bettertls::nameconstraints::",
    "bettertls::pathbuilding::",
    "cve::",
)

# CPU time one Certbound verify() may take here (cold: validator, store and verifier are
# built per case). The denial-of-service cases are the ones that come near it: pathological
# nc-dos-1/2 take ~0.2 s in cryptography's name-constraint check when the EKU rule is left
# out (see the report); the hostile-chain tests hold the real validator to 50 ms.
CERTBOUND_CPU_BOUND = 1.0
# CPU seconds one cryptography-direct call may take before the worker is killed (SIGXCPU).
DIRECT_CPU_BUDGET = 3

# Cases limbo expects to FAIL that cryptography 48 itself accepts under the same profile
# (the test checks that cryptography-direct does accept them). Certbound delegates these
# checks to cryptography, so it accepts them too.
CRYPTOGRAPHY_ACCEPTS: dict[str, str] = {
    "rfc5280::aki::intermediate-missing-aki": (
        "cryptography does not require the authorityKeyIdentifier in an intermediate "
        "(RFC 5280 4.2.1.1 MUST)"
    ),
    "rfc5280::aki::cross-signed-root-missing-aki": (
        "pedantic-rfc5280: cryptography does not require an AKI in a cross-signed root"
    ),
    "rfc5280::ski::root-missing-ski": (
        "cryptography does not require the subjectKeyIdentifier in a trust anchor"
    ),
    "rfc5280::ski::intermediate-missing-ski": (
        "cryptography does not require the subjectKeyIdentifier in an intermediate"
    ),
    "rfc5280::pc::ica-noncritical-pc": (
        "has-policy-constraints: cryptography does not reject a non-critical "
        "policyConstraints extension"
    ),
    "rfc5280::nc::permitted-dns-match-noncritical": (
        "rfc5280-incompatible-with-webpki: the Web PKI profile accepts non-critical "
        "nameConstraints (webpki::nc::permitted-dns-match-noncritical expects SUCCESS)"
    ),
    "cve::cve-2025-61727-nc-permits-variant": (
        "cryptography lets a wildcard SAN *.example.com through a permitted subtree "
        "foo.example.com (RFC 5280 / RFC 9525 leave it open; limbo wants defensive rejection)"
    ),
}

# Cases where Certbound's work bounds (pki/presented.py) change cryptography's answer.
BOUNDED: dict[str, str] = {
    **{
        f"bettertls::pathbuilding::tc{n}": (
            "36 presented certificates (a bridge-CA mesh with mutual cross-signs and four "
            "'Bridge CA' certificates) exceed MAX_PRESENTED = 10: CHAIN_TOO_COMPLEX; "
            "cryptography-direct finds the path in ~2 ms"
        )
        for n in range(61, 69)
    },
}

# Not applicable to a client verifier (reported, still compared with cryptography-direct).
NA_CRL = "has-crl: revocation is a later layer, not part of Validator"
NA_PEER_NAME = (
    "SERVER case expected to FAIL whose peer name is not among the leaf's SANs: the "
    "failure may come from the peer-name / SAN check, which a client verifier does not do"
)
# A leaf whose extensions do not decode: Certbound refuses it on intake; cryptography's
# verify() may raise ValueError building the result (it accepted the chain underneath).
INTAKE_RULE = "leaf extensions do not decode: MALFORMED_CERTIFICATE on intake"


@dataclass
class Case:
    index: int
    id: str
    category: str
    kind: str
    expected: str
    trusted: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    peer: x509.Certificate
    presented: list[bytes]
    at: dt.datetime
    max_depth: int | None
    eku_blind: bool
    dos: bool
    not_applicable: str | None


def _category(case_id: str) -> str:
    parts = case_id.split("::")
    if parts[0] in ("rfc5280", "webpki", "bettertls") and len(parts) > 2:
        return "::".join(parts[:2])
    return parts[0]


def _selected(raw: dict[str, Any]) -> bool:
    return raw["validation_kind"] == "CLIENT" or raw["id"].startswith(SELECTED_PREFIXES)


def _peer_name_in_sans(raw: dict[str, Any], peer: x509.Certificate) -> bool | None:
    """Whether every expected peer name is among the leaf's SANs (None: undecidable)."""
    names = ([raw["expected_peer_name"]] if raw["expected_peer_name"] else []) + list(
        raw["expected_peer_names"]
    )
    if not names:
        return None
    try:
        sans = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    except UNDECODABLE:
        return None
    dns = [name.lower() for name in sans.get_values_for_type(x509.DNSName)]
    ips = sans.get_values_for_type(x509.IPAddress)
    emails = sans.get_values_for_type(x509.RFC822Name)
    for name in names:
        value = name["value"]
        if name["kind"] == "DNS":
            host = value.lower()
            parent = host.split(".", 1)[1] if "." in host else None
            found = host in dns or (parent is not None and f"*.{parent}" in dns)
        elif name["kind"] == "IP":
            found = ipaddress.ip_address(value) in ips
        else:
            found = value in emails
        if not found:
            return False
    return True


def _leaf_eku_excludes_client_auth(peer: x509.Certificate) -> bool:
    try:
        eku = peer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, *UNDECODABLE):
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH not in eku


def _load(shared_dir: Path) -> tuple[list[Case], int]:
    with gzip.open(shared_dir / LIMBO, "rt", encoding="utf-8") as fh:
        corpus = json.load(fh)
    now = dt.datetime.now(dt.UTC)
    cases: list[Case] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. negative serial numbers, on purpose
        for raw in corpus["testcases"]:
            if not _selected(raw):
                continue

            def pem(text: str) -> x509.Certificate:
                return x509.load_pem_x509_certificate(text.encode())

            trusted = [pem(c) for c in raw["trusted_certs"]]
            intermediates = [pem(c) for c in raw["untrusted_intermediates"]]
            peer = pem(raw["peer_certificate"])
            kind, expected = raw["validation_kind"], raw["expected_result"]
            not_applicable = None
            if "has-crl" in raw["features"]:
                not_applicable = NA_CRL
            elif (
                kind == "SERVER"
                and expected == "FAILURE"
                and _peer_name_in_sans(raw, peer) is False
            ):
                not_applicable = NA_PEER_NAME
            when = raw["validation_time"]
            cases.append(
                Case(
                    index=len(cases),
                    id=raw["id"],
                    category=_category(raw["id"]),
                    kind=kind,
                    expected=expected,
                    trusted=trusted,
                    intermediates=intermediates,
                    peer=peer,
                    presented=[c.public_bytes(Encoding.DER) for c in (peer, *intermediates)],
                    at=dt.datetime.fromisoformat(when) if when else now,
                    max_depth=raw["max_chain_depth"],
                    eku_blind=kind == "SERVER" and _leaf_eku_excludes_client_auth(peer),
                    dos="denial-of-service" in raw["features"],
                    not_applicable=not_applicable,
                )
            )
    return cases, len(corpus["testcases"])


# profiles --------------------------------------------------------------------------------


_CERTBOUND_POLICIES = validation.client_extension_policies


def _eku_blind_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """Certbound's profile without the EKU rule (for serverAuth-only SERVER leaves)."""
    ca, ee = _CERTBOUND_POLICIES()
    return ca, ee.may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)


def _direct_policies(eku_blind: bool) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """The oracle's profile, written out rather than taken from Certbound."""
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    if eku_blind:
        ee = ee.may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    return ExtensionPolicy.webpki_defaults_ca(), ee


def _validator(case: Case, *, eku_blind: bool) -> Validator:
    source = StaticAnchors(TrustAnchors.from_bundles([[c] for c in case.trusted]))
    kwargs = {} if case.max_depth is None else {"max_depth": case.max_depth}
    if not eku_blind:
        return Validator(source, cache_size=0, **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "client_extension_policies", _eku_blind_policies)
        return Validator(source, cache_size=0, **kwargs)


def _certbound(case: Case, *, eku_blind: bool) -> tuple[ValidationResult, float]:
    validator = _validator(case, eku_blind=eku_blind)
    started = time.process_time()
    result = validator.verify(case.presented, case.at)
    return result, time.process_time() - started


def _outcome(result: ValidationResult) -> str:
    return "SUCCESS" if result.ok else "FAILURE"


# cryptography-direct, in a forked worker under RLIMIT_CPU ----------------------------------


def _direct(case: Case) -> str:
    ca, ee = _direct_policies(case.eku_blind)
    builder = PolicyBuilder().store(Store(case.trusted)).time(case.at)
    if case.max_depth is not None:
        builder = builder.max_chain_depth(case.max_depth)
    verifier = builder.extension_policies(ca_policy=ca, ee_policy=ee).build_client_verifier()
    try:
        verifier.verify(case.peer, case.intermediates)
    except VerificationError:
        return "FAILURE"
    except Exception as exc:  # cryptography raising something else is itself a finding
        return f"ERROR {type(exc).__name__}"
    return "SUCCESS"


def _direct_worker(cases: Sequence[Case], start: int, log: Path) -> None:
    with log.open("a", encoding="utf-8") as out:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        for case in cases[start:]:
            if case.dos:
                continue
            print(json.dumps(["start", case.index]), file=out, flush=True)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = math.ceil(usage.ru_utime + usage.ru_stime) + DIRECT_CPU_BUDGET
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
            started = time.process_time()
            outcome = _direct(case)
            cpu = time.process_time() - started
            print(json.dumps(["done", case.index, outcome, cpu]), file=out, flush=True)


class DirectRunner:
    """cryptography-direct for every non-DoS case, in a forked process, in parallel with
    the Certbound loop; a case over DIRECT_CPU_BUDGET is killed and recorded as such."""

    def __init__(self, cases: Sequence[Case], workdir: Path) -> None:
        self._cases = cases
        self._log = workdir / "direct.jsonl"
        self._context = multiprocessing.get_context("fork")
        self._process = self._spawn(0)

    def _spawn(self, start: int) -> Any:
        process = self._context.Process(
            target=_direct_worker, args=(self._cases, start, self._log), daemon=True
        )
        process.start()
        return process

    def results(self, timeout: float = 300.0) -> dict[int, tuple[str, float]]:
        done: dict[int, tuple[str, float]] = {}
        deadline = time.monotonic() + timeout
        while True:
            self._process.join(max(0.0, deadline - time.monotonic()))
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
                raise AssertionError("cryptography-direct worker exceeded its wall-clock limit")
            started: int | None = None
            for line in self._log.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry[0] == "start":
                    started = entry[1]
                else:
                    done[entry[1]] = (entry[2], entry[3])
                    started = None
            if self._process.exitcode == 0 or started is None:
                return done
            # Killed mid-case (SIGXCPU): record it and go on after it.
            done[started] = (f"BUDGET >{DIRECT_CPU_BUDGET}s", float(DIRECT_CPU_BUDGET))
            self._process = self._spawn(started + 1)


# the run ---------------------------------------------------------------------------------


@dataclass
class Row:
    case: Case
    certbound: str
    reason: str | None
    cpu: float
    direct: str | None = None
    direct_cpu: float = 0.0


def _intake(row: Row) -> bool:
    """Certbound refused the leaf on intake where cryptography-direct accepted or raised."""
    return (
        row.reason == ReasonCode.MALFORMED_CERTIFICATE.value
        and row.direct is not None
        and row.direct != "FAILURE"
    )


def _judge(row: Row) -> list[str]:
    """What is wrong with one case's outcome (nothing, normally)."""
    case, found = row.case, []
    if row.direct is not None and row.direct.startswith("BUDGET"):
        found.append(f"{case.id}: cryptography-direct exceeded {DIRECT_CPU_BUDGET} s CPU")
    listed_bound = case.id in BOUNDED
    if (
        case.not_applicable is None
        and row.direct == case.expected
        and row.certbound != case.expected
        and not listed_bound
    ):
        found.append(
            f"{case.id}: REGRESSION: limbo and cryptography-direct say {case.expected}, "
            f"Certbound {row.certbound} ({row.reason})"
        )
    if (
        row.certbound == "SUCCESS"
        and case.expected == "FAILURE"
        and case.not_applicable is None
        and case.id not in CRYPTOGRAPHY_ACCEPTS
    ):
        found.append(f"{case.id}: Certbound accepts a chain limbo expects to FAIL")
    if (
        row.direct is not None
        and not row.direct.startswith("BUDGET")
        and row.direct != row.certbound
        and not listed_bound
        and not _intake(row)
    ):
        found.append(
            f"{case.id}: cryptography-direct {row.direct}, Certbound {row.certbound} "
            f"({row.reason}); not listed"
        )
    return found


def _summary(
    rows: list[Row],
    corpus_size: int,
    problems: list[str],
    elapsed: float,
) -> str:
    judged = [r for r in rows if r.case.not_applicable is None]
    passed = [r for r in judged if r.certbound == r.case.expected]
    skipped = Counter(r.case.not_applicable for r in rows if r.case.not_applicable)
    compared = [r for r in rows if r.direct is not None]
    agree = [r for r in compared if r.direct == r.certbound]
    crypto_off = [
        r
        for r in judged
        if r.direct is not None and r.direct != r.case.expected and r.certbound == r.direct
    ]
    listed_accepts = [r for r in judged if r.case.id in CRYPTOGRAPHY_ACCEPTS]
    bounded = [r for r in rows if r.case.id in BOUNDED]
    slowest = max(rows, key=lambda r: r.cpu)
    slowest_direct = max(compared, key=lambda r: r.direct_cpu, default=None)
    eku_blind = sum(1 for r in rows if r.case.eku_blind)
    rejected_anyway = sum(1 for r in rows if r.case.not_applicable and r.certbound == "FAILURE")
    lines = [
        f"x509-limbo through Certbound: {len(rows)} of {corpus_size} cases selected "
        f"({eku_blind} SERVER cases with serverAuth-only leaves run EKU-blind), "
        f"{elapsed:.1f} s",
        f"  judged against limbo: {len(judged)}; passed {len(passed)} "
        f"({100 * len(passed) / max(1, len(judged)):.1f}%)",
        f"    where cryptography-direct disagrees with limbo and Certbound follows it: "
        f"{len(crypto_off)} (of which listed in CRYPTOGRAPHY_ACCEPTS: {len(listed_accepts)})",
        f"    changed by Certbound's work bounds (BOUNDED): {len(bounded)}",
        f"  {INTAKE_RULE}: {sum(1 for r in rows if _intake(r))} "
        "(cryptography-direct accepted or raised)",
        "  skipped (not applicable to a client verifier; still compared with cryptography):",
        *(f"    {count:5d}  {why}" for why, count in skipped.most_common()),
        f"    (Certbound rejects {rejected_anyway} of them anyway; outside bettertls: "
        + ", ".join(
            r.case.id for r in rows if r.case.not_applicable and "bettertls" not in r.case.id
        )
        + ")",
        f"  agreement with cryptography-direct: {len(agree)} / {len(compared)} "
        f"({100 * len(agree) / max(1, len(compared)):.2f}%); "
        f"Certbound only (denial-of-service): {sum(1 for r in rows if r.case.dos)}",
        f"  max CPU per call: Certbound {slowest.cpu * 1000:.1f} ms ({slowest.case.id})"
        + (
            f", cryptography-direct {slowest_direct.direct_cpu * 1000:.1f} ms "
            f"({slowest_direct.case.id})"
            if slowest_direct
            else ""
        ),
        f"  {'category':30} {'selected':>8} {'judged':>7} {'passed':>7} {'skipped':>8} "
        f"{'agree':>11}",
    ]
    by_category: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_category[row.case.category].append(row)
    for category, group in sorted(by_category.items()):
        judged_c = [r for r in group if r.case.not_applicable is None]
        compared_c = [r for r in group if r.direct is not None]
        lines.append(
            f"  {category:30} {len(group):8d} {len(judged_c):7d} "
            f"{sum(1 for r in judged_c if r.certbound == r.case.expected):7d} "
            f"{len(group) - len(judged_c):8d} "
            f"{sum(1 for r in compared_c if r.direct == r.certbound):5d}/{len(compared_c):<5d}"
        )
    if crypto_off:
        lines.append("  cryptography-direct and Certbound both differ from limbo on:")
        lines.extend(f"    {r.case.id} (limbo {r.case.expected})" for r in crypto_off)
    if problems:
        lines.append(f"  PROBLEMS ({len(problems)}):")
        lines.extend(f"    {p}" for p in problems[:60])
        if len(problems) > 60:
            lines.append(f"    ... and {len(problems) - 60} more")
    return "\n".join(lines)


def test_limbo_through_certbound(shared_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    cases, corpus_size = _load(shared_dir)
    runner = DirectRunner(cases, tmp_path)

    rows: list[Row] = []
    problems: list[str] = []
    for case in cases:
        try:
            result, cpu = _certbound(case, eku_blind=case.eku_blind)
        except Exception as exc:
            problems.append(f"{case.id}: Certbound raised {exc!r}")
            continue
        reason = result.reason.value if isinstance(result, Rejected) else None
        rows.append(Row(case, _outcome(result), reason, cpu))
        if cpu > CERTBOUND_CPU_BOUND:
            problems.append(f"{case.id}: Certbound took {cpu * 1000:.0f} ms of CPU")
        if case.eku_blind and result.ok:
            # The real validator must reject the same chain, and for its EKU.
            strict, _ = _certbound(case, eku_blind=False)
            if not isinstance(strict, Rejected) or strict.reason != ReasonCode.EKU_NOT_CLIENT_AUTH:
                got = strict.reason.value if isinstance(strict, Rejected) else "OK"
                problems.append(
                    f"{case.id}: a chain whose only defect is its serverAuth-only EKU got {got}"
                )

    direct = runner.results()
    for row in rows:
        if row.case.index in direct:
            row.direct, row.direct_cpu = direct[row.case.index]

    for row in rows:
        problems.extend(_judge(row))

    # Every list entry must still describe what happens.
    by_id = {row.case.id: row for row in rows}
    for case_id, why in CRYPTOGRAPHY_ACCEPTS.items():
        row = by_id.get(case_id)
        if row is None or row.certbound != "SUCCESS" or row.direct != "SUCCESS":
            problems.append(f"stale CRYPTOGRAPHY_ACCEPTS entry {case_id} ({why[:40]}...)")
    for case_id, why in BOUNDED.items():
        row = by_id.get(case_id)
        if row is None or row.direct == row.certbound:
            problems.append(f"stale BOUNDED entry {case_id} ({why[:40]}...)")

    summary = _summary(rows, corpus_size, problems, time.monotonic() - started)
    print("\n" + summary)
    assert not problems, summary
