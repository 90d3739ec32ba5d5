"""Resource-server check benchmark: CPU per :meth:`AccessTokenVerifier.verify` with a warm
JWKS cache (a :class:`RemoteJwks` fetched once from a loopback HTTP server), for ES256 and
RS256 tokens, bound (``cnf.x5t#S256`` compared with a devpki certificate) and unbound.

Each case runs ``--rounds`` rounds of ``--checks`` verifications and reports the median
round's CPU time per check (``time.process_time``, so other processes on the machine do not
count) and its wall time, against the 0.1 ms target. Exit status 1 when a case misses it.

    python bench/rs_bench.py
    python bench/rs_bench.py --checks 5000 --rounds 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import statistics
import sys
import threading
import time
from typing import Any

from certbound.oauth.keys import SigningKey, generate, public_jwk
from certbound.oauth.rfc9068 import issue_access_token
from certbound.pki import devpki
from certbound.pki.certificate import der, x5t_s256
from certbound.rs import AccessTokenVerifier, RemoteJwks

TARGET_MS = 0.1
ISSUER, AUDIENCE = "https://as.bench.test", "https://api.bench.test"


def _key(alg: str) -> SigningKey:
    jose = generate(alg)
    assert jose.kid is not None
    return SigningKey(jose.kid, alg, jose)


def _serve(jwks: dict[str, Any]) -> tuple[http.server.ThreadingHTTPServer, str]:
    body = json.dumps(jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/keys"


def _measure(
    verifier: AccessTokenVerifier, token: str, cert: bytes, checks: int, rounds: int
) -> tuple[float, float]:
    """Median CPU and wall milliseconds per check."""
    verifier.verify(token, cert)  # warm: the JWKS fetch happens here
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(checks):
            verifier.verify(token, cert)
        cpu.append((time.process_time() - c0) / checks * 1000)
        wall.append((time.perf_counter() - w0) / checks * 1000)
    return statistics.median(cpu), statistics.median(wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keys = {alg: _key(alg) for alg in ("ES256", "RS256")}
    httpd, url = _serve({"keys": [public_jwk(k.key, k.alg) for k in keys.values()]})
    cert = der(devpki.build_dev_pki().devices["good"].cert)
    jwks = RemoteJwks(url)
    verifier = AccessTokenVerifier(ISSUER, AUDIENCE, jwks=jwks)
    now = dt.datetime.now(dt.UTC)
    print(f"| token | CPU ms/check (median of {args.rounds}) | wall ms/check | target |")
    print("|---|---|---|---|")
    failed = False
    for alg, key in keys.items():
        for bound in (True, False):
            token, _ = issue_access_token(
                key,
                issuer=ISSUER,
                client_id="bench",
                subject="bench",
                audience=AUDIENCE,
                scope="read",
                lifetime=3600,
                now=now,
                cnf_x5t_s256=x5t_s256(cert) if bound else None,
            )
            cpu, wall = _measure(verifier, token, cert, args.checks, args.rounds)
            verdict = "ok" if cpu <= TARGET_MS else "MISSED"
            failed |= cpu > TARGET_MS
            label = f"{alg}, {'bound' if bound else 'unbound'}"
            print(f"| {label} | {cpu:.4f} | {wall:.4f} | {verdict} |")
    jwks.close()
    httpd.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
