"""RFC 8705 section 3 at the resource server: the certificate a token is bound to.

A bound token carries ``cnf: {"x5t#S256": base64url(SHA-256(DER of the client's leaf
certificate))}``; the resource server hashes the certificate the request came with and
compares (in constant time). Also: the leaf DER out of an ASGI scope's TLS extension.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from certbound.errors import ReasonCode
from certbound.intake.chain import CHAIN_DER, TLS_EXTENSION
from certbound.pki.certificate import x5t_s256

CNF_MEMBER = "x5t#S256"

__all__ = ["CNF_MEMBER", "binding_problem", "cnf_thumbprint", "leaf_from_tls", "x5t_s256"]


def cnf_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """The token's ``cnf.x5t#S256``; None for an unbound token. ValueError when ``cnf`` or
    the member is there but not of the right type."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, dict):
        raise ValueError("claim cnf is not an object")
    value = cnf.get(CNF_MEMBER)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"claim cnf.{CNF_MEMBER} is not a non-empty string")
    return value


def binding_problem(thumbprint: str, certificate: bytes | None) -> tuple[ReasonCode, str] | None:
    """None when ``certificate`` (DER of the presented leaf) is the one ``thumbprint``
    names; else the reason code and detail."""
    if certificate is None:
        return (
            ReasonCode.TOKEN_BINDING_MISSING,
            f"the token is bound to certificate x5t#S256={thumbprint} but the request "
            "presented no client certificate",
        )
    presented = x5t_s256(certificate)
    if not hmac.compare_digest(presented.encode("ascii"), thumbprint.encode("ascii", "replace")):
        return (
            ReasonCode.TOKEN_BINDING_MISMATCH,
            f"the token is bound to certificate x5t#S256={thumbprint}; the request presented "
            f"x5t#S256={presented}",
        )
    return None


def leaf_from_tls(scope: Mapping[str, Any]) -> tuple[bool, bytes | None]:
    """(whether the request came over TLS with the ASGI TLS extension, the client's leaf
    DER or None). Certbound's listener fills the DER chain; other servers the standard
    ``client_cert_chain`` (PEM strings)."""
    tls = scope.get("extensions", {}).get(TLS_EXTENSION)
    if tls is None:
        return False, None
    chain = tls.get(CHAIN_DER)
    if chain:
        return True, bytes(chain[0])
    pems = tls.get("client_cert_chain")
    if pems:
        return True, _pem_der(pems[0])
    return True, None


def _pem_der(pem: str | bytes) -> bytes | None:
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    lines = [line.strip() for line in text.strip().splitlines()]
    body = "".join(line for line in lines if line and not line.startswith("-----"))
    try:
        return base64.b64decode(body, validate=True) or None
    except (binascii.Error, ValueError):
        return None
