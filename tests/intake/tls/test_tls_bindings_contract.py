"""The pyOpenSSL and cryptography internals the TLS listener relies on: its own verify
callback goes through the cffi bindings pyOpenSSL ships (``OpenSSL._util``), which follow the
cryptography wheel, so both are pinned exactly and every symbol used is checked here. See
docs/decisions/0003-tls-listener.md, "OpenSSL bindings"."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import OpenSSL
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from certbound.intake.tls import alerts, verifier

REPO = Path(__file__).resolve().parents[3]

FUNCTIONS = (
    "SSL_CTX_set_verify",
    "X509_STORE_CTX_get_error",
    "X509_STORE_CTX_get_error_depth",
    "X509_STORE_CTX_set_error",
    "X509_STORE_CTX_get1_chain",
    "X509_verify_cert_error_string",
    "sk_X509_num",
    "sk_X509_value",
    "sk_X509_free",
    "X509_free",
    "BIO_new",
    "BIO_s_mem",
    "BIO_free",
    "BIO_get_mem_data",
    "i2d_X509_bio",
)
CONSTANTS = (
    "SSL_VERIFY_PEER",
    "SSL_VERIFY_FAIL_IF_NO_PEER_CERT",
    "SSL_MODE_RELEASE_BUFFERS",
    "X509_V_OK",
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "X509_V_ERR_CERT_HAS_EXPIRED",
    "X509_V_ERR_CERT_NOT_YET_VALID",
    "X509_V_ERR_CERT_REVOKED",
    "X509_V_ERR_INVALID_PURPOSE",
    "X509_V_ERR_CERT_SIGNATURE_FAILURE",
    "X509_V_ERR_CERT_REJECTED",
)


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, sep, version = requirement.partition("==")
        if sep:
            pins[name.split("[")[0].strip().lower()] = version.strip()
    return pins


def test_pyopenssl_and_cryptography_are_pinned_to_what_is_installed() -> None:
    pins = _pins()
    assert pins["pyopenssl"] == metadata.version("pyOpenSSL") == OpenSSL.__version__
    assert pins["cryptography"] == metadata.version("cryptography")


def test_every_binding_the_verifier_uses_exists() -> None:
    missing = [name for name in (*FUNCTIONS, *CONSTANTS) if not hasattr(lib, name)]
    assert missing == []
    ffi.callback(verifier._CALLBACK_TYPE, lambda ok, store: 1)  # the signature parses


def test_the_context_exposes_its_ssl_ctx_pointer() -> None:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    assert isinstance(context._context, ffi.CData)
    assert ffi.typeof(context._context).cname == "SSL_CTX *"


def test_the_verify_error_messages_are_openssls() -> None:
    assert verifier.error_message(lib.X509_V_ERR_CERT_HAS_EXPIRED) == "certificate has expired"
    assert verifier.error_message(lib.X509_V_OK) == "ok"


def test_the_alert_table_uses_distinct_errors_per_alert() -> None:
    by_error: dict[int, str] = {}
    for refusal in (*alerts.REFUSALS.values(), alerts.BAD_CERTIFICATE):
        assert by_error.setdefault(refusal.x509_error, refusal.alert) == refusal.alert
