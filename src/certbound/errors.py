"""The one catalogue of reason codes, and the exception that carries one.

Every decision Certbound makes that is not a plain success names a reason code from
:class:`ReasonCode`.  Codes are part of the external contract: they appear in the CLI,
in System Log events and in HTTP error bodies, so a code is never renamed or reused.
Each code carries the layer that decides it, what it means and how to fix it;
``docs/errors.md`` is the same table for people, and a test keeps the two in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Layer(enum.StrEnum):
    """Where in the request's path a reason code is decided (DESIGN.md, "Layers")."""

    TRANSPORT = "transport"
    INTAKE = "intake"
    CERTIFICATE = "certificate"
    REVOCATION = "revocation"
    UPLOAD = "upload"
    IDENTITY = "identity"
    POLICY = "policy"
    TOKEN = "token"
    DIRECTORY = "directory"
    API = "api"


@dataclass(frozen=True, slots=True)
class _Entry:
    layer: Layer
    meaning: str
    fix: str
    warning: bool = False


class ReasonCode(enum.StrEnum):
    """Stable reason codes. The value is the code's wire name."""

    # Certificate validation
    TCP_CONNECT_FAILED = "TCP_CONNECT_FAILED"
    TLS_HANDSHAKE_FAILED = "TLS_HANDSHAKE_FAILED"
    SERVER_CERTIFICATE_UNTRUSTED = "SERVER_CERTIFICATE_UNTRUSTED"
    NO_CLIENT_CERTIFICATE = "NO_CLIENT_CERTIFICATE"
    PROXY_HEADER_MALFORMED = "PROXY_HEADER_MALFORMED"
    MALFORMED_CERTIFICATE = "MALFORMED_CERTIFICATE"
    CERTIFICATE_EXPIRED = "CERTIFICATE_EXPIRED"
    CERTIFICATE_NOT_YET_VALID = "CERTIFICATE_NOT_YET_VALID"
    UNKNOWN_CA = "UNKNOWN_CA"
    INTERMEDIATE_MISSING = "INTERMEDIATE_MISSING"
    CA_EXPIRED = "CA_EXPIRED"
    CA_NOT_YET_VALID = "CA_NOT_YET_VALID"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    EKU_NOT_CLIENT_AUTH = "EKU_NOT_CLIENT_AUTH"
    KEY_USAGE_INVALID = "KEY_USAGE_INVALID"
    NAME_CONSTRAINT_VIOLATION = "NAME_CONSTRAINT_VIOLATION"
    PATH_LENGTH_EXCEEDED = "PATH_LENGTH_EXCEEDED"
    WEAK_ALGORITHM = "WEAK_ALGORITHM"
    CHAIN_TOO_COMPLEX = "CHAIN_TOO_COMPLEX"
    CERTIFICATE_POLICY_VIOLATION = "CERTIFICATE_POLICY_VIOLATION"
    # Revocation
    REVOKED_CERTIFICATE = "REVOKED_CERTIFICATE"
    REVOCATION_UNAVAILABLE = "REVOCATION_UNAVAILABLE"
    REVOCATION_STALE = "REVOCATION_STALE"
    # Trust-store upload
    UPLOAD_EMPTY = "UPLOAD_EMPTY"
    UPLOAD_TOO_LARGE = "UPLOAD_TOO_LARGE"
    PEM_MALFORMED = "PEM_MALFORMED"
    PRIVATE_KEY_IN_UPLOAD = "PRIVATE_KEY_IN_UPLOAD"
    NOT_A_CERTIFICATE = "NOT_A_CERTIFICATE"
    CHAIN_OUT_OF_ORDER = "CHAIN_OUT_OF_ORDER"
    NOT_A_CA = "NOT_A_CA"
    CHAIN_SIGNATURE_INVALID = "CHAIN_SIGNATURE_INVALID"
    DUPLICATE_CA = "DUPLICATE_CA"
    CA_SUBJECT_CONFLICT = "CA_SUBJECT_CONFLICT"
    CA_EXPIRING_SOON = "CA_EXPIRING_SOON"
    CA_NOT_FOUND = "CA_NOT_FOUND"
    # Identity
    DEVICE_SUSPENDED = "DEVICE_SUSPENDED"
    DEVICE_DEACTIVATED = "DEVICE_DEACTIVATED"
    DEVICE_NOT_FOUND = "DEVICE_NOT_FOUND"
    CERTIFICATE_NOT_BOUND_TO_CLIENT = "CERTIFICATE_NOT_BOUND_TO_CLIENT"
    UNTRUSTED_PROXY_HEADER = "UNTRUSTED_PROXY_HEADER"
    # Policy
    POLICY_NOT_MATCHED = "POLICY_NOT_MATCHED"
    POLICY_DENIED = "POLICY_DENIED"
    POLICY_INVALID = "POLICY_INVALID"
    POLICY_NOT_FOUND = "POLICY_NOT_FOUND"
    RULE_NOT_FOUND = "RULE_NOT_FOUND"
    ZONE_NOT_FOUND = "ZONE_NOT_FOUND"
    CATCH_ALL_RULE_FIXED = "CATCH_ALL_RULE_FIXED"
    # Tokens
    TOKEN_BINDING_MISMATCH = "TOKEN_BINDING_MISMATCH"
    TOKEN_BINDING_MISSING = "TOKEN_BINDING_MISSING"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    TOKEN_INVALID = "TOKEN_INVALID"
    CLIENT_AUTHENTICATION_FAILED = "CLIENT_AUTHENTICATION_FAILED"
    UNSUPPORTED_GRANT_TYPE = "UNSUPPORTED_GRANT_TYPE"
    GRANT_INVALID = "GRANT_INVALID"
    PKCE_FAILED = "PKCE_FAILED"
    SCOPE_NOT_ALLOWED = "SCOPE_NOT_ALLOWED"
    INVALID_OAUTH_REQUEST = "INVALID_OAUTH_REQUEST"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    SIGNING_KEY_NOT_FOUND = "SIGNING_KEY_NOT_FOUND"
    SIGNING_KEY_ACTIVE = "SIGNING_KEY_ACTIVE"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    APP_NOT_FOUND = "APP_NOT_FOUND"
    NAME_TAKEN = "NAME_TAKEN"
    INVALID_CLIENT_METADATA = "INVALID_CLIENT_METADATA"
    INVALID_USER = "INVALID_USER"
    USER_AUTHENTICATION_FAILED = "USER_AUTHENTICATION_FAILED"
    # Admin API requests
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    INVALID_TOKEN = "INVALID_TOKEN"
    INVALID_FILTER = "INVALID_FILTER"
    INVALID_QUERY = "INVALID_QUERY"
    FORBIDDEN_ROLE = "FORBIDDEN_ROLE"
    INVALID_REQUEST_BODY = "INVALID_REQUEST_BODY"
    ADMIN_NOT_FOUND = "ADMIN_NOT_FOUND"
    TOKEN_NOT_FOUND = "TOKEN_NOT_FOUND"
    LAST_SUPER_ADMIN = "LAST_SUPER_ADMIN"

    @property
    def layer(self) -> Layer:
        return CATALOGUE[self].layer

    @property
    def meaning(self) -> str:
        return CATALOGUE[self].meaning

    @property
    def fix(self) -> str:
        return CATALOGUE[self].fix

    @property
    def warning(self) -> bool:
        """True for codes that describe a notice on a successful operation."""
        return CATALOGUE[self].warning


_C, _R, _U, _I, _P, _T = (
    Layer.CERTIFICATE,
    Layer.REVOCATION,
    Layer.UPLOAD,
    Layer.IDENTITY,
    Layer.POLICY,
    Layer.TOKEN,
)

CATALOGUE: dict[ReasonCode, _Entry] = {
    ReasonCode.TCP_CONNECT_FAILED: _Entry(
        Layer.TRANSPORT,
        "The client could not open a TCP connection to the server.",
        "Check the URL's host and port, that `certbound serve` is running and listening "
        "there (`tls_listen`), and firewalls in between.",
    ),
    ReasonCode.TLS_HANDSHAKE_FAILED: _Entry(
        Layer.TRANSPORT,
        "The TLS handshake failed for a reason other than the client certificate "
        "(protocol version, cipher, a timeout, not a TLS server).",
        "Check the URL uses https:// and the TLS listener's port; the detail names "
        "OpenSSL's error.",
    ),
    ReasonCode.SERVER_CERTIFICATE_UNTRUSTED: _Entry(
        Layer.TRANSPORT,
        "The client did not trust the server's certificate.",
        "Pass the CA that issued the server certificate (`--cacert`; quickstart writes "
        "D/pki/server-ca.pem), or fix the server certificate's name.",
    ),
    ReasonCode.NO_CLIENT_CERTIFICATE: _Entry(
        Layer.INTAKE,
        "The client presented no certificate.",
        "Configure the device or client to send its certificate (curl: --cert and --key).",
    ),
    ReasonCode.PROXY_HEADER_MALFORMED: _Entry(
        Layer.INTAKE,
        "A trusted proxy sent a client-certificate header that does not decode in the "
        "configured format (bad escaping or base64, a broken XFCC element, too large).",
        "Make the proxy's header match `proxy_header` (see docs/deploy/); the detail names "
        "the header and the problem.",
    ),
    ReasonCode.MALFORMED_CERTIFICATE: _Entry(
        _C,
        "A presented certificate could not be parsed as X.509 DER/PEM.",
        "Re-export the certificate from the issuing CA; check that the PEM is complete.",
    ),
    ReasonCode.CERTIFICATE_EXPIRED: _Entry(
        _C,
        "The device certificate's notAfter is in the past.",
        "Re-issue the client certificate from your CA.",
    ),
    ReasonCode.CERTIFICATE_NOT_YET_VALID: _Entry(
        _C,
        "The device certificate's notBefore is in the future.",
        "Check the device's and the CA's clocks; wait until notBefore or re-issue.",
    ),
    ReasonCode.UNKNOWN_CA: _Entry(
        _C,
        "The certificate's issuer is not in the trust store and no presented or stored "
        "certificate links it to one that is.",
        "Upload the issuing CA chain (intermediate then root) with `certbound ca add`, "
        "or issue the device certificate from a CA that is uploaded.",
    ),
    ReasonCode.INTERMEDIATE_MISSING: _Entry(
        _C,
        "The certificate's issuing intermediate is neither uploaded nor presented, but the "
        "certificate evidently belongs under an uploaded CA.",
        "Upload the intermediate together with the root (`certbound ca add chain.pem`), or "
        "have the device (or proxy) send the intermediate with its certificate.",
    ),
    ReasonCode.CA_EXPIRED: _Entry(
        _C,
        "A CA certificate in the chain has expired.",
        "Renew the CA, re-issue the intermediate, and upload the new chain.",
    ),
    ReasonCode.CA_NOT_YET_VALID: _Entry(
        _C,
        "A CA certificate in the chain is not valid yet (notBefore in the future).",
        "Check clocks; upload a CA whose validity has begun.",
    ),
    ReasonCode.SIGNATURE_INVALID: _Entry(
        _C,
        "A CA with the issuer's name exists, but its key did not sign the certificate "
        "(a different CA with the same name, or a tampered certificate).",
        "Find which CA really issued the certificate (compare authority key identifiers) "
        "and upload that one; treat an impostor CA with the same name as an incident.",
    ),
    ReasonCode.EKU_NOT_CLIENT_AUTH: _Entry(
        _C,
        "The certificate has an extended key usage extension without clientAuth "
        "(for example a server-only certificate).",
        "Issue the device certificate with extendedKeyUsage clientAuth.",
    ),
    ReasonCode.KEY_USAGE_INVALID: _Entry(
        _C,
        "A key usage does not permit the role the certificate plays (a CA without "
        "keyCertSign, a device certificate without digitalSignature).",
        "Re-issue the certificate with the right keyUsage bits.",
    ),
    ReasonCode.NAME_CONSTRAINT_VIOLATION: _Entry(
        _C,
        "A CA in the chain has name constraints that the certificate's names violate.",
        "Issue the certificate with names inside the CA's permitted subtrees.",
    ),
    ReasonCode.PATH_LENGTH_EXCEEDED: _Entry(
        _C,
        "The chain is longer than a CA's pathLenConstraint or the verifier's maximum depth allows.",
        "Issue from a CA closer to the root, or re-issue the CA with a larger pathLenConstraint.",
    ),
    ReasonCode.WEAK_ALGORITHM: _Entry(
        _C,
        "A certificate uses a key or signature algorithm the verifier does not accept "
        "(RSA below 2048 bits, SHA-1, MD5, Ed25519/Ed448, unsupported curves).",
        "Re-issue with RSA >= 2048 (SHA-256 or better) or ECDSA P-256/P-384/P-521.",
    ),
    ReasonCode.CHAIN_TOO_COMPLEX: _Entry(
        _C,
        "The presented chain exceeds the work bounds (too many certificates, repeated "
        "subjects, self-issued intermediates) and was refused without full path building.",
        "Send only the device certificate and its intermediates (normally one or two).",
    ),
    ReasonCode.CERTIFICATE_POLICY_VIOLATION: _Entry(
        _C,
        "The chain is well formed and trusted, but fails an RFC 5280 profile rule that "
        "none of the more specific codes names; the detail quotes the verifier.",
        "Inspect the certificates with `certbound verify --json`; re-issue the certificate "
        "that the detail names.",
    ),
    ReasonCode.REVOKED_CERTIFICATE: _Entry(
        _R,
        "The certificate appears on its CA's CRL or the OCSP responder says it is revoked.",
        "Issue the device a new certificate; confirm the revocation was intended.",
    ),
    ReasonCode.REVOCATION_UNAVAILABLE: _Entry(
        _R,
        "Revocation status could not be obtained (CRL distribution point or OCSP "
        "responder unreachable) and the CA is configured to fail closed.",
        "Make the CRL/OCSP URL reachable from Certbound, or configure fail-open for the CA.",
    ),
    ReasonCode.REVOCATION_STALE: _Entry(
        _R,
        "The newest CRL held is past its nextUpdate by more than the allowed staleness.",
        "Publish a fresh CRL at the distribution point, or raise the allowed staleness.",
    ),
    ReasonCode.UPLOAD_EMPTY: _Entry(
        _U, "The uploaded file is empty.", "Upload the PEM bundle (intermediate then root)."
    ),
    ReasonCode.UPLOAD_TOO_LARGE: _Entry(
        _U,
        "The uploaded file is larger than a CA bundle can be (limit 1 MiB).",
        "Upload only the CA certificates of the chain.",
    ),
    ReasonCode.PEM_MALFORMED: _Entry(
        _U,
        "A block of the upload is not valid PEM or DER (garbage, truncated base64, "
        "missing END line, bad DER).",
        "Re-export the chain from the CA; concatenate whole PEM files, intermediate first.",
    ),
    ReasonCode.PRIVATE_KEY_IN_UPLOAD: _Entry(
        _U,
        "The upload contains a private key. Nothing was stored.",
        "Upload only certificates. Treat the key as exposed if it left the CA host.",
    ),
    ReasonCode.NOT_A_CERTIFICATE: _Entry(
        _U,
        "A PEM block is not a certificate (a CSR, CRL, public key, ...).",
        "Upload the CA certificates themselves, not requests or lists.",
    ),
    ReasonCode.CHAIN_OUT_OF_ORDER: _Entry(
        _U,
        "The bundle was not in issuing order (intermediate first, then root); it was "
        "reordered before storing.",
        "Nothing to fix; order the bundle leaf-side first to silence the notice.",
        warning=True,
    ),
    ReasonCode.NOT_A_CA: _Entry(
        _U,
        "A certificate used as a CA is not one (basicConstraints CA:FALSE or absent, or "
        "keyUsage without keyCertSign): typically a device or server certificate.",
        "Upload the issuing CA certificates, not the device certificate.",
    ),
    ReasonCode.CHAIN_SIGNATURE_INVALID: _Entry(
        _U,
        "Consecutive certificates of the bundle do not sign each other (a gap in the chain "
        "or a bad signature).",
        "Upload the complete chain from the issuing intermediate up to the root.",
    ),
    ReasonCode.DUPLICATE_CA: _Entry(
        _U,
        "Every certificate of the upload is already in the trust store.",
        "Nothing to do; `certbound ca list` shows the stored CA.",
    ),
    ReasonCode.CA_SUBJECT_CONFLICT: _Entry(
        _U,
        "A CA with the same subject DN but a different key is already trusted: a same-DN "
        "impostor, or a CA key rollover.",
        "Compare SPKI pins with the CA operator; for a genuine rollover re-run with "
        "--allow-same-subject.",
    ),
    ReasonCode.CA_EXPIRING_SOON: _Entry(
        _U,
        "A CA certificate expires within 90 days.",
        "Plan the CA renewal and upload the new chain before the old one expires.",
        warning=True,
    ),
    ReasonCode.CA_NOT_FOUND: _Entry(
        _U, "No CA with that id is in the trust store.", "List the CAs with `certbound ca list`."
    ),
    ReasonCode.DEVICE_SUSPENDED: _Entry(
        _I, "The device the certificate maps to is suspended.", "Resume the device if intended."
    ),
    ReasonCode.DEVICE_DEACTIVATED: _Entry(
        _I,
        "The device the certificate maps to is deactivated.",
        "Issue the device a new certificate; a deactivated device is not resumed.",
    ),
    ReasonCode.DEVICE_NOT_FOUND: _Entry(
        _I,
        "No device with that id, serial number or thumbprint is in the registry.",
        "List devices with `certbound device list`; a device appears once it has connected.",
    ),
    ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT: _Entry(
        _I,
        "The certificate does not match the OAuth client's registered certificate identity.",
        "Register the certificate's subject DN / SAN (and issuing CA) on the client.",
    ),
    ReasonCode.UNTRUSTED_PROXY_HEADER: _Entry(
        Layer.INTAKE,
        "A client-certificate header arrived from an address that is not a trusted proxy.",
        "Add the proxy to trusted proxies, or stop clients from sending the header.",
    ),
    ReasonCode.POLICY_NOT_MATCHED: _Entry(
        _P,
        "No rule but the catch-all matched, and the catch-all denied.",
        "Review rule order and conditions; check policyEvaluationDetail for each rule's verdict.",
    ),
    ReasonCode.POLICY_DENIED: _Entry(
        _P, "A DENY rule matched.", "Check which rule matched in policyEvaluationDetail."
    ),
    ReasonCode.POLICY_INVALID: _Entry(
        _P,
        "A policy, rule or network zone definition is invalid: the detail names the field "
        "(an unknown condition, a malformed CIDR, pattern, OID or time window).",
        "Fix the field the detail names; docs/policies.md lists every condition.",
    ),
    ReasonCode.POLICY_NOT_FOUND: _Entry(
        _P, "No sign-on policy with that id or name.", "List policies with `certbound policy list`."
    ),
    ReasonCode.RULE_NOT_FOUND: _Entry(
        _P,
        "No rule with that id or name in the policy.",
        "Show the policy's rules with `certbound policy show POLICY`.",
    ),
    ReasonCode.ZONE_NOT_FOUND: _Entry(
        _P, "No network zone with that id or name.", "List zones with `certbound zone list`."
    ),
    ReasonCode.CATCH_ALL_RULE_FIXED: _Entry(
        _P,
        "The catch-all rule stays at the bottom of its policy: it can be edited (its action) "
        "but not moved, deleted or given conditions.",
        "Change the catch-all's action, or add a rule above it.",
    ),
    ReasonCode.TOKEN_BINDING_MISMATCH: _Entry(
        _T,
        "The token is bound to a different certificate than the one presented.",
        "Present the certificate the token was issued to, or get a new token.",
    ),
    ReasonCode.TOKEN_BINDING_MISSING: _Entry(
        _T,
        "The token is certificate-bound but no certificate was presented.",
        "Call the resource over mTLS with the same certificate.",
    ),
    ReasonCode.TOKEN_EXPIRED: _Entry(_T, "The token has expired.", "Request a new token."),
    ReasonCode.TOKEN_REVOKED: _Entry(_T, "The token was revoked.", "Request a new token."),
    ReasonCode.TOKEN_INVALID: _Entry(
        _T,
        "The access token is not one this resource accepts: malformed, an algorithm outside "
        "the allow-list (`none`, HS256), a bad signature, an unknown key, or the wrong issuer "
        "or audience; the detail says which.",
        "Get a token from the issuer the resource server trusts, for this resource's audience.",
    ),
    ReasonCode.CLIENT_AUTHENTICATION_FAILED: _Entry(
        _T,
        "The OAuth client could not be authenticated: unknown client_id, wrong secret, a bad "
        "private_key_jwt assertion, or a method the client is not registered for.",
        "Check the client_id and its token_endpoint_auth_method (`certbound app show`); "
        "send the credentials that method needs.",
    ),
    ReasonCode.UNSUPPORTED_GRANT_TYPE: _Entry(
        _T,
        "The grant_type is not supported, or not registered for this client.",
        "Use a grant the client is registered for (`certbound app show`).",
    ),
    ReasonCode.GRANT_INVALID: _Entry(
        _T,
        "The authorization code or refresh token is unknown, expired, already used, issued "
        "to another client, or for another redirect_uri.",
        "Start the authorization again; codes are single-use and short-lived.",
    ),
    ReasonCode.PKCE_FAILED: _Entry(
        _T,
        "The PKCE code_verifier does not match the code_challenge (S256), or PKCE is missing "
        "where it is required.",
        "Send the code_verifier whose S256 hash was the code_challenge of this authorization.",
    ),
    ReasonCode.SCOPE_NOT_ALLOWED: _Entry(
        _T,
        "A requested scope is not registered for the client.",
        "Request only the client's registered scopes (`certbound app show`).",
    ),
    ReasonCode.INVALID_OAUTH_REQUEST: _Entry(
        _T,
        "The OAuth request is malformed: a missing or repeated parameter, a wrong content "
        "type, an invalid redirect_uri.",
        "Fix the parameter the detail names (RFC 6749).",
    ),
    ReasonCode.REFRESH_TOKEN_REUSED: _Entry(
        _T,
        "A refresh token that was already rotated was presented again: the whole token "
        "family is revoked, since one of the two holders is not the client.",
        "Sign in again; investigate where the refresh token leaked.",
    ),
    ReasonCode.SIGNING_KEY_NOT_FOUND: _Entry(
        _T, "No signing key with that kid.", "List the keys with `certbound key list`."
    ),
    ReasonCode.SIGNING_KEY_ACTIVE: _Entry(
        _T,
        "The key is the active signing key and cannot be retired.",
        "Rotate first (`certbound key rotate`), then retire the old key once the tokens it "
        "signed have expired.",
    ),
    ReasonCode.USER_NOT_FOUND: _Entry(
        Layer.DIRECTORY,
        "No user with that id or username.",
        "List users with `certbound user list`.",
    ),
    ReasonCode.GROUP_NOT_FOUND: _Entry(
        Layer.DIRECTORY,
        "No group with that id or name.",
        "List groups with `certbound group list`.",
    ),
    ReasonCode.APP_NOT_FOUND: _Entry(
        Layer.DIRECTORY,
        "No app (OAuth client) with that id or client_id.",
        "List apps with `certbound app list`.",
    ),
    ReasonCode.NAME_TAKEN: _Entry(
        Layer.DIRECTORY,
        "A user, group or app with that name or client_id already exists.",
        "Choose another name, or change the existing one.",
    ),
    ReasonCode.INVALID_CLIENT_METADATA: _Entry(
        Layer.DIRECTORY,
        "The app's registration metadata is inconsistent or invalid (RFC 7591 / RFC 8705): "
        "the detail names the field.",
        "Fix the field the detail names; docs/directory.md lists what each auth method needs.",
    ),
    ReasonCode.INVALID_USER: _Entry(
        Layer.DIRECTORY,
        "The user's attributes are invalid (an empty or too long username, a malformed email, "
        "a password shorter than 12 characters).",
        "Fix the attribute the detail names.",
    ),
    ReasonCode.USER_AUTHENTICATION_FAILED: _Entry(
        Layer.DIRECTORY,
        "A user's sign-in on the login page was refused: the username or password is wrong, "
        "the user is not active, or the username is locked out after repeated failures.",
        "Check the username and password (`certbound user show`, `certbound user "
        "set-password`); after a lockout wait a minute.",
    ),
    ReasonCode.AUTHENTICATION_REQUIRED: _Entry(
        Layer.API,
        "An admin API request carried no `Authorization: Bearer` API token.",
        "Create a token with `certbound admin token create --name NAME` and send it as "
        "`Authorization: Bearer <token>`.",
    ),
    ReasonCode.INVALID_TOKEN: _Entry(
        Layer.API,
        "The admin API token is unknown, malformed, expired or revoked.",
        "Check the token was copied whole; `certbound admin token list` shows whether it "
        "expired or was revoked; create a new one if so.",
    ),
    ReasonCode.INVALID_FILTER: _Entry(
        Layer.API,
        "The System Log `filter` expression does not parse, or names an attribute that "
        "cannot be filtered on; the detail gives the position.",
        "Fix the expression at the position the detail gives: SCIM operators eq co sw ew "
        "pr gt ge lt le, and/or/not, parentheses, double-quoted values, and only the "
        "System Log's filterable attributes.",
    ),
    ReasonCode.INVALID_QUERY: _Entry(
        Layer.API,
        "A query parameter is invalid: a limit out of range (1..1000 for the System Log, "
        "1..200 for the admin lists), a malformed since/until/after, since after until, an "
        "unknown or repeated parameter.",
        "Correct the parameter the detail names; use RFC 3339 times and pass `after` "
        "only as copied from a Link header.",
    ),
    ReasonCode.FORBIDDEN_ROLE: _Entry(
        Layer.API,
        "The admin API token's role does not allow this route (docs/roles.md has the "
        "permission matrix).",
        "Use a token of an admin whose role allows it, or ask a SUPER_ADMIN to change the role.",
    ),
    ReasonCode.INVALID_REQUEST_BODY: _Entry(
        Layer.API,
        "The request body is unusable: invalid JSON, an unknown or mistyped field, a wrong "
        "content type, or larger than the limit.",
        "Send the JSON the route documents in docs/api.md (or the PEM it accepts), with the "
        "content type it expects.",
    ),
    ReasonCode.ADMIN_NOT_FOUND: _Entry(
        Layer.API,
        "No admin with that id or username.",
        "List admins with `certbound admin list`.",
    ),
    ReasonCode.TOKEN_NOT_FOUND: _Entry(
        Layer.API,
        "No admin API token with that id.",
        "List tokens with `certbound admin token list` (or GET /api/v1/tokens).",
    ),
    ReasonCode.LAST_SUPER_ADMIN: _Entry(
        Layer.API,
        "The change would leave no active SUPER_ADMIN: nobody could manage admins any more.",
        "Make another admin SUPER_ADMIN first, then demote or deactivate this one.",
    ),
}


class WouldBlockError(Exception):
    """An answer needs I/O (the database, a CRL download, an OCSP responder) that a caller
    on the event loop must not wait for: ask again where blocking is fine (a worker thread).
    Raised only by calls made with ``offline=True``."""


@dataclass(slots=True)
class CertboundError(Exception):
    """A failure with a stable reason code, a human detail and optional context.

    ``context`` holds JSON-safe facts about the object at fault (which PEM block, which
    certificate's subject and serial), so every caller can show *what* failed.
    """

    reason: ReasonCode
    detail: str
    context: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"
