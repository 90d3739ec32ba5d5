"""The key and signature algorithms Certbound accepts, matching cryptography's verifier.

cryptography's path validation (the Web PKI profile) refuses RSA keys below 2048 bits,
curves other than P-256/P-384/P-521, EdDSA and DSA keys, and signatures other than RSA
PKCS#1 v1.5 / PSS and ECDSA with SHA-256/384/512. The trust store rejects such CAs at upload
with WEAK_ALGORITHM, and validation names the offending certificate, instead of letting
every device fail later with an opaque error.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

MIN_RSA_BITS = 2048
_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)


def key_problem(cert: x509.Certificate) -> str | None:
    """Why the certificate's public key is not accepted, or None."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"its public key cannot be used ({exc})"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"its RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            return f"its EC curve {key.curve.name} is not P-256, P-384 or P-521"
        return None
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    return f"its {kind} key is not RSA or ECDSA"


def signature_problem(cert: x509.Certificate) -> str | None:
    """Why the algorithm of the certificate's own signature is not accepted, or None."""
    oid = cert.signature_algorithm_oid
    if oid in _SIGNATURES:
        return None
    name = getattr(oid, "_name", None) or oid.dotted_string
    return f"it is signed with {name}, which the verifier does not accept"


def algorithm_problem(cert: x509.Certificate) -> str | None:
    return key_problem(cert) or signature_problem(cert)
