"""CPU cost of one client-certificate verification: bare cryptography vs Certbound.

Run from the repository root:

    .venv/bin/python bench/verify_bench.py            # print the table
    .venv/bin/python bench/verify_bench.py --check    # exit 1 when a target is missed

A 3-certificate P-256 chain (root -> intermediate -> device). The trust store holds the
uploaded chain [intermediate, root]; the client presents device + intermediate. Measured
in CPU time (time.process_time), over a fixed number of calls per repetition, median of
the repetitions:

(a) bare cryptography: a prebuilt ClientVerifier with Certbound's extension policies,
    verify(leaf, [intermediate]) on certificates parsed beforehand;
(b) Certbound cold: Validator.verify(DER list) with the result cache off (cache_size=0),
    so every call parses the DER, applies the work bounds, verifies and extracts the
    device identity (the verifier itself is reused, as in the server);
(c) Certbound warm: Validator.verify on a chain already in the result cache (each call
    gets fresh bytes objects, as a new TLS connection would);
(d) Certbound warm with revocation on: as (c), with a RevocationChecker and the default
    policy (CRL, fail-closed) on another chain whose intermediate and device both name a
    CRL (1,000 entries each) served by a local http.server: both CRLs were downloaded by
    the first call, so each call is the cached path plus two CRL index lookups.

Targets: (b) <= 1.2 x (a); (c) and (d) <= 20 us.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable

import cryptography
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store

from certbound.clock import SystemClock
from certbound.pki import devpki
from certbound.pki.anchors import StaticAnchors, TrustAnchors
from certbound.pki.presented import MAX_DEPTH
from certbound.pki.revocation import RevocationChecker, Status
from certbound.pki.validation import Validator, Verified, client_extension_policies

COLD_RATIO_TARGET = 1.2
WARM_TARGET_US = 20.0
REPETITIONS = 7
TARGET_SECONDS_PER_REPETITION = 0.25
MAX_CALLS_PER_REPETITION = 200_000


def per_call_us(operation: Callable[[], object], calls: int) -> float:
    """CPU microseconds per call over ``calls`` calls."""
    started = time.process_time()
    for _ in range(calls):
        operation()
    return (time.process_time() - started) / calls * 1e6


def measure(operation: Callable[[], object]) -> tuple[float, int, list[float]]:
    """Median CPU us/op over REPETITIONS runs, each sized to ~0.25 s from a short
    calibration; returns (median, calls per repetition, all repetitions)."""
    operation()  # warm-up (first-call costs, caches)
    probe = per_call_us(operation, 50)
    calls = int(TARGET_SECONDS_PER_REPETITION * 1e6 / max(probe, 0.05))
    calls = max(100, min(calls, MAX_CALLS_PER_REPETITION))
    runs = [per_call_us(operation, calls) for _ in range(REPETITIONS)]
    return statistics.median(runs), calls, runs


CRL_ENTRIES = 1_000


def crl_der(issuer: devpki.Issued, now: dt.datetime) -> bytes:
    """A CRL of ``issuer`` revoking CRL_ENTRIES serials (none of the bench's certificates)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(1), False)
    )
    for serial in range(1, CRL_ENTRIES + 1):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)


def serve_crls(bodies: dict[str, bytes]) -> http.server.ThreadingHTTPServer:
    """A local http.server answering GET path -> body, in a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path, b"")
            self.send_response(200 if self.path in bodies else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def revocation_setup(now: dt.datetime) -> tuple[Validator, list[bytes], RevocationChecker]:
    """(d)'s validator (revocation on, CRLs served locally, first call made) and chain."""
    bodies: dict[str, bytes] = {}
    server = serve_crls(bodies)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    root = devpki.ca("Bench Revocation Root CA", not_after=now + 3650 * devpki.DAY)
    inter = devpki.issue(
        devpki.dn("Bench Revocation Intermediate CA"),
        root,
        profile=devpki.Profile(ca=True, eku=None, path_length=0, crl_urls=[base + "/root.crl"]),
    )
    leaf = devpki.issue(
        "bench-revocation-device.certbound.test",
        inter,
        profile=devpki.Profile(crl_urls=[base + "/inter.crl"]),
    )
    bodies["/root.crl"], bodies["/inter.crl"] = crl_der(root, now), crl_der(inter, now)
    checker = RevocationChecker(None, SystemClock())
    anchors = TrustAnchors.from_bundles([[inter.cert, root.cert]])
    validator = Validator(StaticAnchors(anchors), revocation=checker)
    presented = [leaf.cert.public_bytes(Encoding.DER), inter.cert.public_bytes(Encoding.DER)]
    first = validator.verify(presented)
    assert isinstance(first, Verified) and first.revocation is not None
    assert first.revocation.status is Status.GOOD, first.revocation
    assert checker.stats.fetches == 2
    return validator, presented, checker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    now = dt.datetime.now(dt.UTC)
    root = devpki.ca("Bench Root CA", not_after=now + 3650 * devpki.DAY)
    inter = devpki.ca("Bench Intermediate CA", root, path_length=0)
    leaf = devpki.issue("bench-device.certbound.test", inter)
    presented = [leaf.cert.public_bytes(Encoding.DER), inter.cert.public_bytes(Encoding.DER)]
    anchors = TrustAnchors.from_bundles([[inter.cert, root.cert]])

    # (a) bare cryptography, same profile, prebuilt, pre-parsed.
    ca_policy, ee_policy = client_extension_policies()
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors.anchors)))
        .time(now)
        .max_chain_depth(MAX_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    leaf_cert, intermediates = leaf.cert, [inter.cert]
    verifier.verify(leaf_cert, intermediates)

    def bare() -> object:
        return verifier.verify(leaf_cert, intermediates)

    # (b) Certbound, result cache off: every call is cold.
    cold_validator = Validator(StaticAnchors(anchors), cache_size=0)
    assert isinstance(cold_validator.verify(presented), Verified)

    def cold() -> object:
        return cold_validator.verify(presented)

    # (c) Certbound, warm: the chain is in the result cache. Fresh bytes objects per call,
    # as from a new connection (their hash is computed again), cycled from a fixed pool.
    warm_validator = Validator(StaticAnchors(anchors))
    first = warm_validator.verify(presented)
    assert isinstance(first, Verified)
    pool = [[bytes(bytearray(d)) for d in presented] for _ in range(1024)]
    position = 0

    def warm() -> object:
        nonlocal position
        position = (position + 1) & 1023
        return warm_validator.verify(pool[position])

    assert warm() is first

    # (d) Certbound warm with revocation on: the cached path plus two CRL index lookups.
    revoking, revocation_presented, checker = revocation_setup(now)
    revocation_pool = [[bytes(bytearray(d)) for d in revocation_presented] for _ in range(1024)]

    def warm_revocation() -> object:
        nonlocal position
        position = (position + 1) & 1023
        return revoking.verify(revocation_pool[position])

    bare_us, bare_calls, _ = measure(bare)
    cold_us, cold_calls, _ = measure(cold)
    warm_us, warm_calls, _ = measure(warm)
    revocation_us, revocation_calls, _ = measure(warm_revocation)
    assert checker.stats.fetches == 2  # every measured call answered from memory
    checker.close()
    ratio = cold_us / bare_us
    cold_ok = ratio <= COLD_RATIO_TARGET
    warm_ok = warm_us <= WARM_TARGET_US
    revocation_ok = revocation_us <= WARM_TARGET_US

    print(
        f"Python {platform.python_version()} ({platform.machine()}), "
        f"cryptography {cryptography.__version__}, "
        f"{openssl_backend.openssl_version_text()}"
    )
    print(
        f"chain: P-256 root -> intermediate -> device; store [intermediate, root]; "
        f"presented device + intermediate; CPU time, median of {REPETITIONS} repetitions"
    )
    print()
    print(f"{'operation':44} {'CPU us/op':>10} {'calls/rep':>10}  target")
    print(f"{'(a) bare cryptography ClientVerifier.verify':44} {bare_us:10.1f} {bare_calls:10d}")
    print(
        f"{'(b) Certbound cold (cache_size=0)':44} {cold_us:10.1f} {cold_calls:10d}  "
        f"ratio cold/bare {ratio:.2f} (target <= {COLD_RATIO_TARGET}) "
        f"{'ok' if cold_ok else 'MISSED'}"
    )
    print(
        f"{'(c) Certbound warm (cached)':44} {warm_us:10.1f} {warm_calls:10d}  "
        f"target <= {WARM_TARGET_US:.0f} us {'ok' if warm_ok else 'MISSED'}"
    )
    print(
        f"{'(d) Certbound warm, revocation on (cached)':44} {revocation_us:10.1f} "
        f"{revocation_calls:10d}  target <= {WARM_TARGET_US:.0f} us "
        f"{'ok' if revocation_ok else 'MISSED'}"
    )
    if args.check and not (cold_ok and warm_ok and revocation_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
