"""PEM and DER intake: split a file into blocks and load certificates, naming the bad block.

Only the PEM armour (text lines) is parsed here; every DER structure is decoded by
``cryptography``. Text between blocks (``subject=`` lines, Bag Attributes, comments in any
encoding) is ignored, as OpenSSL does. A private key anywhere in an upload is refused before
anything else is looked at.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_private_key

from certbound.errors import CertboundError, ReasonCode

MAX_BUNDLE_BYTES = 1024 * 1024
CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})
_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9 ]+)-----\s*$")
_END = re.compile(r"^-----END ([A-Z0-9 ]+)-----\s*$")
_JOINED = re.compile(r"-----END [A-Z0-9 ]+-----\s*-----BEGIN ")
_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----")
_ANY_BEGIN = re.compile(r"-----BEGIN ")
# Exactly the line breaks an editor counts (str.splitlines also splits on \x0c, \x85, ...).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    for number, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if _JOINED.search(line):
            index = len(blocks) + 1
            raise _fail(
                ReasonCode.PEM_MALFORMED,
                f"line {number} joins an END line and a BEGIN line: two PEM files were "
                "concatenated without a newline; put a line break after the END line",
                index,
                number,
            )
        if label is None:
            match = _BEGIN.match(line)
            if match:
                label, start, body = match.group(1), number, []
                continue
            stray = _END.match(line)
            if stray:
                index = len(blocks) + 1
                raise _fail(
                    ReasonCode.PEM_MALFORMED,
                    f"line {number} ends a {stray.group(1)} block that never began: "
                    "its BEGIN line is missing (a cut-off copy?)",
                    index,
                    number,
                )
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
                "the block is truncated",
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
    except (TypeError, UnsupportedAlgorithm):
        # An encrypted key (no password given) or a key of an unsupported type.
        return ReasonCode.PRIVATE_KEY_IN_UPLOAD
    except Exception:  # not a key; hostile input must never escape as a crash
        pass
    for loader in (x509.load_der_x509_csr, x509.load_der_x509_crl):
        try:
            loader(der)
            return ReasonCode.NOT_A_CERTIFICATE
        except Exception:
            pass
    return None


def _refuse_private_key(text: str) -> None:
    """Raise PRIVATE_KEY_IN_UPLOAD for the first private-key BEGIN marker anywhere in ``text``."""
    match = _PRIVATE_KEY_BEGIN.search(text)
    if match is None:
        return
    before = text[: match.start()]
    line = len(_LINE_BREAK.findall(before)) + 1
    index = len(_ANY_BEGIN.findall(before)) + 1
    raise _fail(
        ReasonCode.PRIVATE_KEY_IN_UPLOAD,
        f"block {index} (line {line}) is a {match.group(1)}; private keys are never accepted",
        index,
        line,
    )


def read_blocks(data: bytes, *, refuse_private_keys: bool = False) -> list[PemBlock]:
    """Split an upload (PEM text or one DER certificate) into blocks; no block is parsed yet.

    With ``refuse_private_keys`` (uploads), a private-key block anywhere in PEM text raises
    PRIVATE_KEY_IN_UPLOAD before anything else is looked at; without it, key blocks are
    returned like any other block (a client's own cert+key file).
    """
    if not data.strip():
        raise CertboundError(ReasonCode.UPLOAD_EMPTY, "the file is empty")
    if len(data) > MAX_BUNDLE_BYTES:
        raise CertboundError(
            ReasonCode.UPLOAD_TOO_LARGE,
            f"the file is {len(data):,} bytes; a CA bundle is at most {MAX_BUNDLE_BYTES:,}",
        )
    # DER starts with an ASN.1 SEQUENCE tag (0x30). So does text whose first character is
    # "0" (a pasted `openssl s_client -showcerts` listing), hence the BEGIN check.
    if data[:1] == b"\x30" and b"-----BEGIN " not in data:
        return [PemBlock(1, "CERTIFICATE", 0, data)]
    # Latin-1 maps every byte to one character: non-ASCII text between blocks is ignored and
    # offsets stay byte offsets; a non-ASCII byte inside a block fails its base64 check.
    text = data.decode("latin-1")
    if refuse_private_keys:
        _refuse_private_key(text)
    blocks = split_pem(text)
    if not blocks:
        binary = next((i for i, byte in enumerate(data) if byte > 0x7F), None)
        if binary is not None:
            raise CertboundError(
                ReasonCode.PEM_MALFORMED,
                f"the file is neither PEM text nor DER (non-ASCII byte at offset {binary})",
            )
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

    A private key anywhere in the file is reported first, whatever else is wrong
    (:func:`read_blocks` checks PEM text; a DER key is recognised when it fails to load).
    """
    return [_load_block(block) for block in read_blocks(data, refuse_private_keys=True)]


def load_presented_file(data: bytes) -> list[x509.Certificate]:
    """The certificates of a client's PEM/DER file (leaf first), skipping a private key.

    Clients often keep the key in the same file (``curl --cert combined.pem``); unlike an
    upload, such a file is the client's own and its key is simply ignored.
    """
    blocks = [b for b in read_blocks(data) if "PRIVATE KEY" not in b.label]
    if not blocks:
        raise CertboundError(ReasonCode.PEM_MALFORMED, "the file holds no certificate")
    return [_load_block(block) for block in blocks]
