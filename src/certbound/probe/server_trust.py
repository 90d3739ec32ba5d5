"""Whether the client may trust the server's certificate, judged as ``curl`` judges it.

The handshake itself runs without verifying the server (so the remaining layers can still be
diagnosed, like ``curl -k``); the chain the server sent is judged here instead, never to
report success on its own: the path to ``--cacert`` or the system store at the clock's time
(OpenSSL's ``X509_verify_cert`` through pyOpenSSL), the certificate's names against the URL's
host (RFC 6125: subjectAltName dNSName/iPAddress, a wildcard only as the whole left-most
label, the subject CN only when there is no subjectAltName, as OpenSSL does) and, when the
certificate limits its extended key usage, serverAuth.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from OpenSSL.crypto import X509, X509Store, X509StoreContext, X509StoreContextError

from certbound.clock import format_rfc3339
from certbound.pki.certificate import UNDECODABLE, extension, san_strings, serial_hex

from .inputs import ServerAnchors


@dataclass(frozen=True, slots=True)
class ServerTrust:
    """The verdict on the server's certificate; ``problems`` is empty when it is trusted."""

    problems: tuple[str, ...]
    anchors: str

    @property
    def trusted(self) -> bool:
        return not self.problems


def certificate_facts(chain: Sequence[x509.Certificate]) -> dict[str, Any]:
    leaf = chain[0]
    return {
        "subjectDn": leaf.subject.rfc4514_string(),
        "issuerDn": leaf.issuer.rfc4514_string(),
        "serialNumber": serial_hex(leaf),
        "notBefore": format_rfc3339(leaf.not_valid_before_utc),
        "notAfter": format_rfc3339(leaf.not_valid_after_utc),
        "sans": san_strings(leaf),
        "chainLength": len(chain),
    }


def judge_server(
    chain: Sequence[x509.Certificate], host: str, anchors: ServerAnchors, at: dt.datetime
) -> ServerTrust:
    """Judge the chain the server sent (leaf first) for ``host`` at time ``at``."""
    try:
        leaf_problems = (_name_problem(chain[0], host), _usage_problem(chain[0]))
    except UNDECODABLE as exc:
        leaf_problems = (f"the certificate's extensions do not decode: {exc}", None)
    found = (_path_problem(chain, anchors, at), *leaf_problems)
    return ServerTrust(tuple(p for p in found if p), anchors.describe())


def _store(anchors: ServerAnchors) -> tuple[X509Store, SSL.Context | None]:
    """The trust store, and the context that owns it (kept alive while the store is used)."""
    if anchors.cafile is None:
        owner = SSL.Context(SSL.TLS_CLIENT_METHOD)
        owner.set_default_verify_paths()
        store = owner.get_cert_store()
        assert store is not None  # a new context always has one
        return store, owner
    store = X509Store()
    for cert in anchors.certificates:
        store.add_cert(X509.from_cryptography(cert))
    return store, None


def _path_problem(
    chain: Sequence[x509.Certificate], anchors: ServerAnchors, at: dt.datetime
) -> str | None:
    store, _owner = _store(anchors)
    store.set_time(at)
    leaf, *rest = (X509.from_cryptography(cert) for cert in chain)
    try:
        X509StoreContext(store, leaf, rest).verify_certificate()
    except X509StoreContextError as exc:
        _code, depth, message = exc.errors
        culprit = exc.certificate.to_cryptography()
        return (
            f"{message} at depth {depth} ({culprit.subject.rfc4514_string()}, issued by "
            f"{culprit.issuer.rfc4514_string()}; trusting {anchors.describe()})"
        )
    return None


def _san_names(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    value = extension(cert, x509.SubjectAlternativeName)
    return value if isinstance(value, x509.SubjectAlternativeName) else None


def name_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching of ``host`` (a DNS name or an IP address) against ``cert``."""
    sans = _san_names(cert)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return sans is not None and address in sans.get_values_for_type(x509.IPAddress)
    if sans is not None:
        names = sans.get_values_for_type(x509.DNSName)
    else:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(_dns_match(pattern, host) for pattern in names)


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == host
    suffix = pattern[1:]  # ".example.com"
    label, dot, rest = host.partition(".")
    return bool(label and dot) and "." in suffix[1:] and f".{rest}" == suffix


def _name_problem(leaf: x509.Certificate, host: str) -> str | None:
    if name_matches(leaf, host):
        return None
    names = [n for n in san_strings(leaf) if n.startswith(("DNS:", "IP:"))]
    offered = ", ".join(names) or f"CN {leaf.subject.rfc4514_string()}"
    return f"name mismatch: the certificate is for {offered}, not {host}"


def _usage_problem(leaf: x509.Certificate) -> str | None:
    usage = extension(leaf, x509.ExtendedKeyUsage)
    if usage is None:
        return None
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if allowed & set(usage):
        return None
    return "the certificate's extended key usage does not include serverAuth"
