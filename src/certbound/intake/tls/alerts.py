"""Reject mode: which TLS alert a refused client certificate gets, by reason code.

OpenSSL picks the alert of a failed certificate check from the X509 verify error left in
the store context when the verify callback returns 0 (``ssl_x509err2alert``), so refusing
with a given alert means setting the verify error that maps to it. This is the one table
from Certbound's reason codes to that error and the alert it produces; the tests check
every row against ``openssl s_client`` under TLS 1.2 and 1.3.

A client that sends no certificate is refused by OpenSSL itself
(``SSL_VERIFY_FAIL_IF_NO_PEER_CERT``): ``certificate_required`` under TLS 1.3,
``handshake_failure`` under TLS 1.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL._util import lib as _lib

from certbound.errors import ReasonCode


@dataclass(frozen=True, slots=True)
class Refusal:
    """The X509 verify error to set, and the TLS alert (name, number) it makes OpenSSL send."""

    x509_error: int
    alert: str
    alert_number: int


_UNKNOWN_CA = Refusal(_lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unknown_ca", 48)
_EXPIRED = Refusal(_lib.X509_V_ERR_CERT_HAS_EXPIRED, "certificate_expired", 45)
_REVOKED = Refusal(_lib.X509_V_ERR_CERT_REVOKED, "certificate_revoked", 44)
_UNSUPPORTED = Refusal(_lib.X509_V_ERR_INVALID_PURPOSE, "unsupported_certificate", 43)
_SIGNATURE = Refusal(_lib.X509_V_ERR_CERT_SIGNATURE_FAILURE, "decrypt_error", 51)
_NOT_YET_VALID = Refusal(_lib.X509_V_ERR_CERT_NOT_YET_VALID, "bad_certificate", 42)
BAD_CERTIFICATE = Refusal(_lib.X509_V_ERR_CERT_REJECTED, "bad_certificate", 42)

# reason code                              -> X509 verify error                 -> alert
# UNKNOWN_CA, INTERMEDIATE_MISSING         -> UNABLE_TO_GET_ISSUER_CERT_LOCALLY -> unknown_ca (48)
# CERTIFICATE_EXPIRED, CA_EXPIRED          -> CERT_HAS_EXPIRED       -> certificate_expired (45)
# REVOKED_CERTIFICATE                      -> CERT_REVOKED           -> certificate_revoked (44)
# EKU_NOT_CLIENT_AUTH, KEY_USAGE_INVALID   -> INVALID_PURPOSE        -> unsupported_certificate (43)
# SIGNATURE_INVALID                        -> CERT_SIGNATURE_FAILURE -> decrypt_error (51)
# CERTIFICATE_NOT_YET_VALID, CA_NOT_YET_VALID -> CERT_NOT_YET_VALID  -> bad_certificate (42)
# anything else                            -> CERT_REJECTED          -> bad_certificate (42)
# no certificate (OpenSSL itself) -> certificate_required (116); TLS 1.2: handshake_failure (40)
REFUSALS: dict[ReasonCode, Refusal] = {
    ReasonCode.UNKNOWN_CA: _UNKNOWN_CA,
    ReasonCode.INTERMEDIATE_MISSING: _UNKNOWN_CA,
    ReasonCode.CERTIFICATE_EXPIRED: _EXPIRED,
    ReasonCode.CA_EXPIRED: _EXPIRED,
    ReasonCode.REVOKED_CERTIFICATE: _REVOKED,
    ReasonCode.EKU_NOT_CLIENT_AUTH: _UNSUPPORTED,
    ReasonCode.KEY_USAGE_INVALID: _UNSUPPORTED,
    ReasonCode.SIGNATURE_INVALID: _SIGNATURE,
    ReasonCode.CERTIFICATE_NOT_YET_VALID: _NOT_YET_VALID,
    ReasonCode.CA_NOT_YET_VALID: _NOT_YET_VALID,
}

# What OpenSSL sends when reject mode finds no client certificate, by protocol version.
NO_CERTIFICATE_ALERTS = {"TLSv1.3": "certificate_required", "TLSv1.2": "handshake_failure"}
# OpenSSL's reason string for that failure (SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE): how a
# failed handshake is told apart as "no certificate" (pyOpenSSL passes only the strings on).
NO_CERTIFICATE_REASON = "peer did not return a certificate"


def refusal_for(reason: ReasonCode) -> Refusal:
    """The refusal for a reason code: its row of the table, else ``bad_certificate``."""
    return REFUSALS.get(reason, BAD_CERTIFICATE)
