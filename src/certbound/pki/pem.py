"""PEM and DER intake: split a file into blocks and load certificates, naming the bad block.

Only the PEM armour (text lines) is parsed here; every DER structure is decoded by
``cryptography``. Text between blocks (``subject=`` lines, Bag Attributes) is ignored, as
OpenSSL does.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_private_key

from certbound.errors import CertboundError, ReasonCode

MAX_BUNDLE_BYTES = 1024 * 1024
CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})
_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9 ]+)-----\s*$")
_END = re.compile(r"^-----END ([A-Z0-9 ]+)-----\s*$")


@dataclass(frozen=True, slots=True)
class PemBlock:
    index: int  # 1-based position in the file
    label: str
    line: int  # 1-based line of the BEGIN marker (0 for a DER file)
    der: bytes

    @property
    def where(self) -> str:
        return f"block {self.index} (line {self.line})" if self.line else "the DER file"


def _fail(reason: ReasonCode, detail: str, index: int, line: int) -> CertboundError:
    return CertboundError(reason, detail, {"block": index, "line": line})


def _decode_body(label: str, body: list[str], index: int, line: int) -> bytes:
    # RFC 1421 encapsulated headers (Proc-Type, DEK-Info) only occur in encrypted keys.
    text = "".join(s.strip() for s in body if ":" not in s)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(
            ReasonCode.PEM_MALFORMED,
            f"block {index} (line {line}, {label}) is not valid base64: {exc}",
            index,
            line,
        ) from exc
    if not der:
        raise _fail(ReasonCode.PEM_MALFORMED, f"block {index} (line {line}) is empty", index, line)
    return der


def split_pem(text: str) -> list[PemBlock]:
    """Every ``-----BEGIN X-----`` .. ``-----END X-----`` block of ``text``, decoded."""
    blocks: list[PemBlock] = []
    label: str | None = None
    start = 0
    body: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if label is None:
            match = _BEGIN.match(line)
            if match:
                label, start, body = match.group(1), number, []
            continue
        end = _END.match(line)
        if end:
            index = len(blocks) + 1
            if end.group(1) != label:
                raise _fail(
                    ReasonCode.PEM_MALFORMED,
                    f"block {index} (line {start}) begins as {label} but ends as {end.group(1)}",
                    index,
                    start,
                )
            blocks.append(PemBlock(index, label, start, _decode_body(label, body, index, start)))
            label = None
        elif _BEGIN.match(line):
            index = len(blocks) + 1
            raise _fail(
                ReasonCode.PEM_MALFORMED,
                f"block {index} (line {start}, {label}) has no END line before line {number}: "
                "truncated or concatenated without a newline",
                index,
                start,
            )
        else:
            body.append(line)
    if label is not None:
        index = len(blocks) + 1
        raise _fail(
            ReasonCode.PEM_MALFORMED,
            f"block {index} (line {start}, {label}) has no END line: the file is truncated",
            index,
            start,
        )
    return blocks


def _classify_der(der: bytes) -> ReasonCode | None:
    """For a DER file that is not a certificate, say what it is, if anything."""
    try:
        load_der_private_key(der, password=None)
        return ReasonCode.PRIVATE_KEY_IN_UPLOAD
    except (ValueError, TypeError):
        pass
    try:
        x509.load_der_x509_csr(der)
        return ReasonCode.NOT_A_CERTIFICATE
    except ValueError:
        pass
    try:
        x509.load_der_x509_crl(der)
        return ReasonCode.NOT_A_CERTIFICATE
    except ValueError:
        return None


def read_blocks(data: bytes) -> list[PemBlock]:
    """Split an upload (PEM text or one DER certificate) into blocks; no block is parsed yet."""
    if not data.strip():
        raise CertboundError(ReasonCode.UPLOAD_EMPTY, "the file is empty")
    if len(data) > MAX_BUNDLE_BYTES:
        raise CertboundError(
            ReasonCode.UPLOAD_TOO_LARGE,
            f"the file is {len(data):,} bytes; a CA bundle is at most {MAX_BUNDLE_BYTES:,}",
        )
    if data.lstrip()[:1] == b"\x30":  # an ASN.1 SEQUENCE: a DER file
        return [PemBlock(1, "CERTIFICATE", 0, data)]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise CertboundError(
            ReasonCode.PEM_MALFORMED,
            f"the file is neither PEM text nor DER (non-ASCII byte at offset {exc.start})",
        ) from exc
    blocks = split_pem(text)
    if not blocks:
        raise CertboundError(
            ReasonCode.PEM_MALFORMED, "no PEM block (-----BEGIN CERTIFICATE-----) found"
        )
    return blocks


def _load_block(block: PemBlock) -> x509.Certificate:
    if block.label not in CERTIFICATE_LABELS:
        kind = "a certificate signing request" if block.label in _CSR_LABELS else block.label
        raise _fail(
            ReasonCode.NOT_A_CERTIFICATE,
            f"{block.where} is {kind}, not a certificate",
            block.index,
            block.line,
        )
    try:
        return x509.load_der_x509_certificate(block.der)
    except ValueError as exc:
        if block.line == 0:
            code = _classify_der(block.der)
            if code is ReasonCode.PRIVATE_KEY_IN_UPLOAD:
                raise _fail(code, "the DER file is a private key", 1, 0) from exc
            if code is not None:
                raise _fail(code, "the DER file is not a certificate", 1, 0) from exc
        raise _fail(
            ReasonCode.PEM_MALFORMED,
            f"{block.where} is not a valid X.509 certificate: {exc}",
            block.index,
            block.line,
        ) from exc


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle or DER file; any other content is an error.

    A private key anywhere in the file is reported first, whatever else is wrong.
    """
    blocks = read_blocks(data)
    for block in blocks:
        if "PRIVATE KEY" in block.label:
            raise _fail(
                ReasonCode.PRIVATE_KEY_IN_UPLOAD,
                f"{block.where} is a {block.label}; private keys are never accepted",
                block.index,
                block.line,
            )
    return [_load_block(block) for block in blocks]
