"""TLS alerts (RFC 8446 section 6, RFC 5246 section 7.2): their names, and the reason code a
server's alert means when it refuses the client certificate.

Certbound's listener in ``tls_client_verify = "reject"`` mode refuses an untrusted chain
inside the handshake with the alert matching its reason code (unknown_ca for UNKNOWN_CA,
certificate_expired for CERTIFICATE_EXPIRED, ...); OpenSSL servers such as
``openssl s_server -verify_return_error`` send the same alerts for the same faults. This
table reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass

from certbound.errors import ReasonCode

_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Alerts that, arriving once the client certificate was sent (or, for certificate_required,
# when none was), are the server refusing that certificate; the code it means, if any.
_CERTIFICATE_REFUSALS: dict[int, ReasonCode | None] = {
    42: ReasonCode.MALFORMED_CERTIFICATE,  # bad_certificate
    43: ReasonCode.EKU_NOT_CLIENT_AUTH,  # unsupported_certificate
    44: ReasonCode.REVOKED_CERTIFICATE,  # certificate_revoked
    45: ReasonCode.CERTIFICATE_EXPIRED,  # certificate_expired
    48: ReasonCode.UNKNOWN_CA,  # unknown_ca
    51: ReasonCode.SIGNATURE_INVALID,  # decrypt_error (Certbound: SIGNATURE_INVALID)
    116: ReasonCode.NO_CLIENT_CERTIFICATE,  # certificate_required
    46: None,  # certificate_unknown: refused, no specific reason given
    40: None,  # handshake_failure after the certificate: refused, no reason given
    49: None,  # access_denied
}


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as it travelled: its description code and level (1 warning, 2 fatal)."""

    code: int
    level: int = 2

    @classmethod
    def from_info(cls, value: int) -> Alert:
        """From OpenSSL's info-callback value for an alert: ``level << 8 | description``."""
        return cls(code=value & 0xFF, level=(value >> 8) & 0xFF)

    @property
    def name(self) -> str:
        return _NAMES.get(self.code, f"alert_{self.code}")

    @property
    def fatal(self) -> bool:
        return self.level == 2 and self.code != 0

    @property
    def refuses_certificate(self) -> bool:
        """True for the alerts a server sends when it will not take the client certificate."""
        return self.code in _CERTIFICATE_REFUSALS

    @property
    def reason(self) -> ReasonCode | None:
        """The reason code a certificate refusal means (None: refused without saying why)."""
        return _CERTIFICATE_REFUSALS.get(self.code)

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"
