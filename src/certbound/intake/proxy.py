"""Client-certificate headers set by a TLS-terminating proxy: the formats and their parsers.

Four formats (``docs/deploy/README.md`` has the table and the proxy configs):

- ``nginx``: ``X-SSL-Client-Cert`` = ``$ssl_client_escaped_cert``, the URL-escaped PEM of the
  leaf; ``X-SSL-Client-Verify`` = ``$ssl_client_verify``.
- ``haproxy``: ``X-SSL-Client-Cert`` = ``%[ssl_c_der,base64]``; ``X-SSL-Client-Chain`` =
  ``%[ssl_c_chain_der,base64]``, the concatenated DER of the rest of the chain the client sent;
  ``X-SSL-Client-Verify`` = ``%[ssl_c_verify]``.
- ``envoy``: ``X-Forwarded-Client-Cert`` (XFCC); the last element counts (:func:`_read_envoy`).
- ``rfc9440``: ``Client-Cert`` (sf-binary DER) and ``Client-Cert-Chain`` (sf-list of them).

Whether a header counts at all (the socket peer is a trusted proxy) is decided by
:mod:`certbound.intake.proxies`, not here. This module only decodes the armour (percent
escapes, PEM, base64, XFCC quoting, DER lengths to split a concatenation); every X.509
structure is left to the validator, which reports MALFORMED_CERTIFICATE for bad DER. Any
value that does not decode, or exceeds the bounds below, raises :class:`HeaderError` naming
the header and the problem, never echoing the value (it could be a pasted private key).
A proxy's own verdict header is returned for the record only; Certbound always re-verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from certbound.errors import CertboundError, ReasonCode

MAX_HEADER_CHARS = 64 * 1024  # one header value (headers are latin-1: characters = bytes)
MAX_CERTIFICATES = 16  # leaf and chain together
MAX_VERDICT_CHARS = 256  # nginx's longest "FAILED:<reason>" is under 100
MAX_XFCC_PAIRS = 256  # Key=Value pairs in all XFCC elements (Envoy sets about 7 per hop)


@dataclass(frozen=True, slots=True)
class HeaderFormat:
    """Which request headers carry the client certificate, its chain and the proxy's verdict."""

    name: str  # "nginx" | "haproxy" | "envoy" | "rfc9440"
    cert_header: str  # lower-case header names
    chain_header: str | None
    verdict_header: str | None


NGINX = HeaderFormat("nginx", "x-ssl-client-cert", None, "x-ssl-client-verify")
HAPROXY = HeaderFormat("haproxy", "x-ssl-client-cert", "x-ssl-client-chain", "x-ssl-client-verify")
ENVOY = HeaderFormat("envoy", "x-forwarded-client-cert", None, None)
RFC9440 = HeaderFormat("rfc9440", "client-cert", "client-cert-chain", None)

FORMATS: Mapping[str, HeaderFormat] = MappingProxyType(
    {fmt.name: fmt for fmt in (NGINX, HAPROXY, ENVOY, RFC9440)}
)
# Every header any format reads: from a peer that is not a trusted proxy, their presence is
# a spoof attempt (or a misconfigured proxy), logged as UNTRUSTED_PROXY_HEADER.
CERTIFICATE_HEADERS: frozenset[str] = frozenset(
    name
    for fmt in FORMATS.values()
    for name in (fmt.cert_header, fmt.chain_header, fmt.verdict_header)
    if name is not None
)


@dataclass(frozen=True, slots=True)
class ProxyCertificate:
    """What a trusted proxy's headers said about the client's certificate."""

    certificates: tuple[bytes, ...]  # DER, leaf first (nginx: the leaf only)
    verdict: str | None  # the proxy's own verification result, recorded only


class HeaderError(CertboundError):
    """A certificate header that does not decode in the configured format.

    ``reason`` is always PROXY_HEADER_MALFORMED; ``detail`` names the header and the problem;
    ``header`` is the lower-case header name.
    """

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(
            ReasonCode.PROXY_HEADER_MALFORMED, f"header {header}: {problem}", {"header": header}
        )
        self.header = header


def headers_present(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The certificate headers (any format) present in ``headers``, sorted: what a request
    from an untrusted peer carried, for ``ignoredHeaders`` and the log."""
    return tuple(sorted(name for name in CERTIFICATE_HEADERS if name in headers))


def read(fmt: HeaderFormat, headers: Mapping[str, str]) -> ProxyCertificate | None:
    """The certificate a trusted proxy forwarded in ``headers`` (lower-case names).

    None when the certificate header is absent or empty (nginx sends "" without a client
    certificate); :class:`HeaderError` when it, the chain or the verdict header does not
    decode. A header repeated on several lines is an error (a client's copy that the proxy
    appended to instead of replacing), except XFCC, whose lines join as one list.
    """
    value = _header(headers, fmt.cert_header, joined=fmt.name == ENVOY.name)
    if value is None:
        return None
    certificates = _READERS[fmt.name](fmt, value, headers)
    if len(certificates) > MAX_CERTIFICATES:
        raise HeaderError(
            fmt.chain_header or fmt.cert_header,
            f"{len(certificates)} certificates; at most {MAX_CERTIFICATES} are accepted",
        )
    return ProxyCertificate(certificates, _verdict(fmt, headers))


# -- header values ---------------------------------------------------------------------


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    # Starlette's Headers keeps repeated lines (getlist); a plain mapping holds one value.
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    value = headers.get(name)
    return [] if value is None else [value]


def _header(headers: Mapping[str, str], name: str, *, joined: bool = False) -> str | None:
    values = _values(headers, name)
    if len(values) > 1 and not joined:
        raise HeaderError(
            name,
            f"appears {len(values)} times; the proxy must set it once, replacing any copy "
            "the client sent",
        )
    value = ",".join(values).strip(" \t")
    if len(value) > MAX_HEADER_CHARS:
        raise HeaderError(
            name, f"is {len(value):,} characters long; at most {MAX_HEADER_CHARS:,} are read"
        )
    return value or None


def _verdict(fmt: HeaderFormat, headers: Mapping[str, str]) -> str | None:
    if fmt.verdict_header is None:
        return None
    value = _header(headers, fmt.verdict_header)
    if value is not None and len(value) > MAX_VERDICT_CHARS:
        raise HeaderError(
            fmt.verdict_header,
            f"is {len(value)} characters long; a verdict is at most {MAX_VERDICT_CHARS}",
        )
    return value


# -- armour: base64, percent escapes, PEM, DER lengths ---------------------------------------


def _base64(text: str, header: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HeaderError(header, f"{what} is not valid base64 ({exc})") from None
    if not data:
        raise HeaderError(header, f"{what} is empty")
    return data


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _percent_decode(value: str, header: str, what: str) -> str:
    bad = _BAD_ESCAPE.search(value)
    if bad is not None:
        raise HeaderError(header, f"{what} has a bad percent-escape at offset {bad.start()}")
    raw = urllib.parse.unquote_to_bytes(value)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HeaderError(
            header, f"{what} decodes to a non-ASCII byte at offset {exc.start}; PEM is ASCII"
        ) from None


_MARKER = re.compile(r"-----(BEGIN|END) ([A-Z0-9 ]{1,64})-----")
_PEM_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})


def _pem_certificates(text: str, header: str, what: str) -> list[bytes]:
    """The DER of every CERTIFICATE block of ``text``; anything else in it is an error."""
    ders: list[bytes] = []
    pos = 0
    markers = _MARKER.finditer(text)
    for begin in markers:
        number = len(ders) + 1
        if text[pos : begin.start()].strip():
            raise HeaderError(header, f"{what} has text outside a PEM block at offset {pos}")
        label = begin.group(2)
        if begin.group(1) != "BEGIN":
            raise HeaderError(header, f"{what} has an END {label} line without a BEGIN line")
        if label not in _PEM_LABELS:
            # Name the label only: the body may be key material.
            raise HeaderError(
                header, f"{what}: PEM block {number} is a {label}, not a CERTIFICATE; refused"
            )
        if number > MAX_CERTIFICATES:
            raise HeaderError(header, f"{what} holds over {MAX_CERTIFICATES} certificates; refused")
        end = next(markers, None)
        if end is None or end.group(1) != "END" or end.group(2) != label:
            raise HeaderError(header, f"{what}: PEM block {number} has no END CERTIFICATE line")
        body = "".join(text[begin.end() : end.start()].split())
        ders.append(_base64(body, header, f"{what}: PEM block {number}"))
        pos = end.end()
    if not ders:
        raise HeaderError(header, f"{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    if text[pos:].strip():
        raise HeaderError(header, f"{what} has text outside a PEM block at offset {pos}")
    return ders


def _der_end(data: bytes, start: int, header: str) -> int:
    """Where the DER SEQUENCE starting at ``start`` ends (its tag and length only)."""
    if data[start] != 0x30:
        raise HeaderError(
            header, f"byte {start} starts no DER certificate (tag 0x{data[start]:02x}, not 0x30)"
        )
    if start + 2 > len(data):
        raise HeaderError(header, f"the certificate at byte {start} is truncated")
    first = data[start + 1]
    head = 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise HeaderError(header, f"the certificate at byte {start} has no definite length")
        head += count
        length = int.from_bytes(data[start + 2 : start + head], "big")
    end = start + head + length
    if start + head > len(data) or end > len(data):
        raise HeaderError(
            header, f"the certificate at byte {start} is truncated (needs {end - start} bytes)"
        )
    return end


def _split_der(data: bytes, header: str) -> list[bytes]:
    """Split concatenated DER certificates by their outer lengths (nothing inside is read)."""
    ders: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(ders) == MAX_CERTIFICATES:
            raise HeaderError(header, f"holds over {MAX_CERTIFICATES} certificates; refused")
        end = _der_end(data, pos, header)
        ders.append(data[pos:end])
        pos = end
    return ders


# -- the formats -------------------------------------------------------------------------


def _read_nginx(fmt: HeaderFormat, value: str, headers: Mapping[str, str]) -> tuple[bytes, ...]:
    name = fmt.cert_header
    text = _percent_decode(value, name, "the escaped PEM")
    ders = _pem_certificates(text, name, "the escaped PEM")
    if len(ders) != 1:
        raise HeaderError(
            name, f"holds {len(ders)} certificates; $ssl_client_escaped_cert is the leaf alone"
        )
    return (ders[0],)


def _read_haproxy(fmt: HeaderFormat, value: str, headers: Mapping[str, str]) -> tuple[bytes, ...]:
    leaf = _base64(value, fmt.cert_header, "the certificate")  # one DER, for the validator
    chain_header = fmt.chain_header or HAPROXY.chain_header or ""
    chain_value = _header(headers, chain_header)
    if chain_value is None:
        return (leaf,)
    return (leaf, *_split_der(_base64(chain_value, chain_header, "the chain"), chain_header))


def _sf_binary(member: str, header: str, what: str) -> bytes:
    """One RFC 8941 byte sequence (``:base64:``); parameters after ``;`` are ignored."""
    item = member.strip(" \t").split(";", 1)[0].rstrip(" \t")
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        raise HeaderError(header, f"{what} is not an RFC 8941 byte sequence (:base64:)")
    text = item[1:-1]
    # RFC 8941 4.2.7: parsers SHOULD NOT fail when "=" padding is missing.
    return _base64(text + "=" * (-len(text) % 4), header, what)


def _read_rfc9440(fmt: HeaderFormat, value: str, headers: Mapping[str, str]) -> tuple[bytes, ...]:
    leaf = _sf_binary(value, fmt.cert_header, "the certificate")
    chain_header = fmt.chain_header or RFC9440.chain_header or ""
    chain_value = _header(headers, chain_header, joined=True)  # an sf-list may span lines
    if chain_value is None:
        return (leaf,)
    members = chain_value.split(",")  # base64 has no comma: splitting is exact
    if len(members) + 1 > MAX_CERTIFICATES:
        raise HeaderError(
            chain_header, f"{len(members)} list members; at most {MAX_CERTIFICATES - 1}"
        )
    chain = [
        _sf_binary(member, chain_header, f"list member {index}")
        for index, member in enumerate(members, start=1)
    ]
    return (leaf, *chain)


# XFCC (Envoy): elements separated by ",", each "Key=Value" pairs separated by ";"; a value
# holding , ; = or " is double-quoted, with \" inside. Possessive quantifiers keep every
# match linear in the value's length, whatever the input.
_XFCC_KEY = re.compile(r"[ \t]*+([A-Za-z][A-Za-z0-9_-]*+)=")
_XFCC_QUOTED = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
_XFCC_BARE = re.compile(r'[^;,"]*+')
_XFCC_SEPARATOR = re.compile(r"[ \t]*+([;,]|\Z)")
_XFCC_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _xfcc_last_element(value: str, header: str) -> list[tuple[str, str]]:
    """The ``(lower-case key, unquoted value)`` pairs of the last XFCC element."""
    element: list[tuple[str, str]] = []
    pos = 0
    for _ in range(MAX_XFCC_PAIRS):
        key = _XFCC_KEY.match(value, pos)
        if key is None:
            raise HeaderError(header, f"expected Key= at offset {pos}")
        pos = key.end()
        if value.startswith('"', pos):
            quoted = _XFCC_QUOTED.match(value, pos)
            if quoted is None:
                raise HeaderError(
                    header, f"the quoted value of {key.group(1)}= at offset {pos} never closes"
                )
            text = _XFCC_ESCAPE.sub(r"\1", quoted.group(1))
            pos = quoted.end()
        else:
            bare = _XFCC_BARE.match(value, pos)
            text = bare.group() if bare else ""  # it matches "" at worst
            pos = bare.end() if bare else pos
        separator = _XFCC_SEPARATOR.match(value, pos)
        if separator is None:
            raise HeaderError(
                header, f"unexpected character after the value of {key.group(1)}= at offset {pos}"
            )
        element.append((key.group(1).lower(), text))
        pos = separator.end()
        if separator.group(1) == "":
            return element
        if separator.group(1) == ",":
            element = []
    raise HeaderError(header, f"holds over {MAX_XFCC_PAIRS} Key=Value pairs; refused")


def _xfcc_single(pairs: list[tuple[str, str]], key: str, header: str) -> str | None:
    found = [text for name, text in pairs if name == key]
    if len(found) > 1:
        raise HeaderError(header, f"the last XFCC element has {len(found)} {key.title()}= keys")
    return found[0] if found else None


def _read_envoy(fmt: HeaderFormat, value: str, headers: Mapping[str, str]) -> tuple[bytes, ...]:
    """The LAST element is the one the proxy that connected to us added (with
    SANITIZE_SET it is the only one); earlier elements were relayed from hops further away."""
    name = fmt.cert_header
    pairs = _xfcc_last_element(value, name)
    cert = _xfcc_single(pairs, "cert", name)
    chain = _xfcc_single(pairs, "chain", name)
    digest = _xfcc_single(pairs, "hash", name)
    if not cert and not chain:
        raise HeaderError(
            name,
            "the last XFCC element has no Cert= or Chain= (Envoy: set_current_client_cert_"
            "details {cert: true, chain: true})",
        )
    ders: list[bytes] = []
    if cert:
        ders = _pem_certificates(_percent_decode(cert, name, "Cert="), name, "Cert=")
        if len(ders) != 1:
            raise HeaderError(name, f"Cert= holds {len(ders)} certificates; it is the leaf alone")
    if chain:
        full = _pem_certificates(_percent_decode(chain, name, "Chain="), name, "Chain=")
        if ders and full[0] != ders[0]:
            raise HeaderError(name, "Chain= does not start with the Cert= certificate")
        ders = full
    if digest is not None:
        actual = hashlib.sha256(ders[0]).hexdigest()
        if digest.strip().lower() != actual:
            raise HeaderError(
                name, f"Hash= is not the SHA-256 of the certificate's DER (that is {actual})"
            )
    return tuple(ders)


_READERS: Mapping[str, Callable[[HeaderFormat, str, Mapping[str, str]], tuple[bytes, ...]]] = {
    "nginx": _read_nginx,
    "haproxy": _read_haproxy,
    "envoy": _read_envoy,
    "rfc9440": _read_rfc9440,
}
