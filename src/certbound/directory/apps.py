"""Apps: the OAuth clients, their registration metadata (RFC 7591 / RFC 8705) and secrets.

An app has an id (``app_...``), a ``client_id`` (unique), a name, a status (``ACTIVE`` or
``INACTIVE``) and its :class:`ClientMetadata`, checked by :meth:`ClientMetadata.validate`
before anything is stored: what each ``token_endpoint_auth_method`` needs (docs/directory.md).
A ``tls_client_auth`` client names exactly one certificate identity field and pins the
issuing CA by the SHA-256 of its SubjectPublicKeyInfo, never by its DN alone (a second CA
with the same DN and another key must not impersonate it).

Secrets (``client_secret_basic`` / ``client_secret_post``) are random (``cbs_`` + 43
characters), shown once by :meth:`Apps.create` or :meth:`Apps.rotate_secret`, and stored as
SHA-256 hex: a high-entropy random secret needs no slow hash. :meth:`Apps.by_client_id`,
the token endpoint's look-up, answers from memory for ``cache_ttl`` seconds; changes made
through any :class:`Apps` of this process empty every cache at once, changes made by
another process are seen within ``cache_ttl``.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import ipaddress
import itertools
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.storage.database import Database
from certbound.storage.models import App as AppRow

ID_PREFIX = "app_"
SECRET_PREFIX = "cbs_"
MAX_NAME_LENGTH = 256
MAX_REDIRECT_URIS = 50
MAX_JWKS_KEYS = 20
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# JWK members that only a private (or symmetric) key has (RFC 7518 section 6).
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
IDENTITY_FIELDS = (
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
)
_PIN = re.compile(r"^[0-9a-f]{64}$")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3
_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # RFC 6749 appendix A.1, without spaces
_DNS_NAME = re.compile(
    r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]{1,63}\.?$", re.I
)
# Attribute names accepted on input beyond cryptography's (CN, O, OU, C, L, ST, ...).
_DN_NAMES = {"E": NameOID.EMAIL_ADDRESS, "EMAILADDRESS": NameOID.EMAIL_ADDRESS}


class AuthMethod(enum.StrEnum):
    TLS_CLIENT_AUTH = "tls_client_auth"
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
    PRIVATE_KEY_JWT = "private_key_jwt"
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    NONE = "none"


SECRET_METHODS = frozenset({AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST})
MTLS_METHODS = frozenset({AuthMethod.TLS_CLIENT_AUTH, AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH})


class AppStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


def invalid(field: str, detail: str) -> CertboundError:
    """INVALID_CLIENT_METADATA naming the field at fault."""
    return CertboundError(
        ReasonCode.INVALID_CLIENT_METADATA, f"{field}: {detail}", {"field": field}
    )


# --- subject DNs ---------------------------------------------------------------------------


def _split_unescaped(text: str, separators: str) -> list[str]:
    """``text`` cut at each separator not escaped by a backslash."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _strip_value(value: str) -> str:
    """Drop insignificant spaces around a value (a trailing escaped space stays)."""
    stripped = value.strip(" ")
    trailing = len(stripped) - len(stripped.rstrip("\\"))
    if trailing % 2 == 1 and value.rstrip(" ") != value:
        stripped += " "
    return stripped


def _tidy_ava(ava: str) -> str:
    name, sep, value = ava.partition("=")
    if not sep:
        raise ValueError(f"no '=' in {ava!r}")
    name = name.strip(" ")
    name = name.upper() if name.isalpha() else name
    return f"{name}={_strip_value(value)}"


MAX_CLIENT_ID = 256


def storable(text: str) -> bool:
    """Whether a client_id or id could be stored at all (PostgreSQL refuses NUL in text)."""
    return 0 < len(text) <= MAX_CLIENT_ID and text.isprintable()


def normalise_dn(dn: str) -> str:
    """An RFC 4514 DN in one spelling: spaces around separators and the case of attribute
    names dropped (``CN=a, O=b`` and ``cn=a,O=b`` give ``CN=a,O=b``), then parsed and
    re-emitted by cryptography as ``Name.rfc4514_string()`` writes a certificate's subject.
    Values compare exactly. INVALID_CLIENT_METADATA when it does not parse."""
    try:
        rdns = [
            "+".join(_tidy_ava(ava) for ava in _split_unescaped(rdn, "+"))
            for rdn in _split_unescaped(dn.strip(), ",")
        ]
        name = x509.Name.from_rfc4514_string(",".join(rdns), _DN_NAMES)
    except ValueError as exc:
        raise invalid(
            "tls_client_auth_subject_dn", f"{dn!r} is not an RFC 4514 DN ({exc or 'bad syntax'})"
        ) from None
    if not name.rdns:
        raise invalid("tls_client_auth_subject_dn", "the DN is empty")
    return name.rfc4514_string()


def ca_pin(cert: x509.Certificate) -> str:
    """A CA's pin as ``tls_client_auth_ca_pins`` holds it: SHA-256 hex of its SPKI DER."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


# --- registration metadata -----------------------------------------------------------------


def _strings(field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise invalid(field, "must be a list of strings")
    return tuple(value)


def _optional_string(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def _coerce(field: str, value: Any) -> Any:
    """A JSON value as the dataclass field holds it; wrong types are refused."""
    if field == "token_endpoint_auth_method":
        try:
            return AuthMethod(value)
        except ValueError:
            methods = ", ".join(m.value for m in AuthMethod)
            raise invalid(field, f"{value!r} is not one of {methods}") from None
    if field in ("grant_types", "redirect_uris", "tls_client_auth_ca_pins"):
        return _strings(field, value)
    if field == "scope":
        if not isinstance(value, str):
            raise invalid(field, "must be a string of space-separated scopes")
        return value
    if field == "jwks":
        if value is not None and not isinstance(value, dict):
            raise invalid(field, 'must be a JWK Set object ({"keys": [...]})')
        return value
    if field == "tls_client_certificate_bound_access_tokens":
        if not isinstance(value, bool):
            raise invalid(field, "must be true or false")
        return value
    return _optional_string(field, value)


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """An app's registration metadata, with the RFC 7591 / RFC 8705 field names."""

    token_endpoint_auth_method: AuthMethod
    grant_types: tuple[str, ...] = ("client_credentials",)
    redirect_uris: tuple[str, ...] = ()
    scope: str = ""
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    tls_client_auth_ca_pins: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = None
    tls_client_certificate_bound_access_tokens: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientMetadata:
        """Metadata from its JSON form; an unknown field or a wrong type is refused
        (INVALID_CLIENT_METADATA naming it). Not validated: call :meth:`validate`."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in data:
            if name not in known:
                raise invalid(name, "unknown client metadata field")
        if "token_endpoint_auth_method" not in data:
            raise invalid("token_endpoint_auth_method", "is required")
        values = {name: _coerce(name, value) for name, value in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; fields left unset (None) are left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def identity(self) -> tuple[str, str] | None:
        """The one tls_client_auth identity field set, as (field name, value)."""
        named = [(name, getattr(self, name)) for name in IDENTITY_FIELDS]
        present = [(name, value) for name, value in named if value is not None]
        return present[0] if len(present) == 1 else None

    def validate(self) -> None:
        """INVALID_CLIENT_METADATA naming the first field at fault (docs/directory.md)."""
        _check_grants(self)
        _check_redirect_uris(self)
        _check_scope(self.scope)
        _check_identity(self)
        _check_jwks(self)
        _check_binding(self)


def _check_grants(meta: ClientMetadata) -> None:
    grants = meta.grant_types
    if not grants:
        raise invalid("grant_types", "at least one grant type is required")
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise invalid("grant_types", f"{grant!r} is not one of {', '.join(GRANT_TYPES)}")
    if len(set(grants)) != len(grants):
        raise invalid("grant_types", "a grant type is listed twice")
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise invalid("grant_types", "refresh_token needs authorization_code")
    if meta.token_endpoint_auth_method is AuthMethod.NONE and grants != ("authorization_code",):
        raise invalid(
            "grant_types",
            "a public client (token_endpoint_auth_method none) has authorization_code only "
            "(with PKCE); client_credentials needs a client that authenticates",
        )


def _check_redirect_uri(uri: str) -> None:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise invalid("redirect_uris", f"{uri!r} is not a URL") from None
    if parts.fragment or "#" in uri:
        raise invalid("redirect_uris", f"{uri!r} has a fragment")
    if not host:
        raise invalid("redirect_uris", f"{uri!r} is not an absolute URL with a host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and host in LOOPBACK_HOSTS:
        return
    raise invalid(
        "redirect_uris",
        f"{uri!r} is neither https nor http on 127.0.0.1, [::1] or localhost (native apps)",
    )


def _check_redirect_uris(meta: ClientMetadata) -> None:
    uris = meta.redirect_uris
    code = "authorization_code" in meta.grant_types
    if code and not uris:
        raise invalid("redirect_uris", "authorization_code needs at least one redirect URI")
    if uris and not code:
        raise invalid("redirect_uris", "redirect URIs are only for authorization_code")
    if len(uris) > MAX_REDIRECT_URIS:
        raise invalid("redirect_uris", f"at most {MAX_REDIRECT_URIS}")
    for uri in uris:
        _check_redirect_uri(uri)


def _check_scope(scope: str) -> None:
    for token in scope.split(" ") if scope else ():
        if not token:
            raise invalid("scope", "scopes are separated by single spaces")
        if not _SCOPE_TOKEN.match(token):
            raise invalid("scope", f"{token!r} is not a scope token (RFC 6749 section 3.3)")


def _check_identity_value(name: str, value: str) -> None:
    if name == "tls_client_auth_subject_dn":
        normalise_dn(value)
    elif name == "tls_client_auth_san_ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise invalid(name, f"{value!r} is not an IPv4 or IPv6 address") from None
    elif name == "tls_client_auth_san_uri":
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = urlsplit("")
        if not parts.scheme or not (parts.netloc or parts.path):
            raise invalid(name, f"{value!r} is not an absolute URI")
    elif name == "tls_client_auth_san_dns":
        if not _DNS_NAME.match(value) or len(value) > 253:
            raise invalid(name, f"{value!r} is not a DNS name")
    else:
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in value):
            raise invalid(name, f"{value!r} is not an email address")


def _check_identity(meta: ClientMetadata) -> None:
    present = [name for name in IDENTITY_FIELDS if getattr(meta, name) is not None]
    if meta.token_endpoint_auth_method is not AuthMethod.TLS_CLIENT_AUTH:
        for name in (*present, "tls_client_auth_ca_pins"):
            if getattr(meta, name):
                raise invalid(name, "only for token_endpoint_auth_method tls_client_auth")
        return
    if len(present) != 1:
        named = ", ".join(present) if present else "none of " + ", ".join(IDENTITY_FIELDS)
        raise invalid(
            "tls_client_auth_subject_dn" if not present else present[1],
            f"tls_client_auth needs exactly one certificate identity field, got {named}",
        )
    _check_identity_value(present[0], getattr(meta, present[0]))
    pins = meta.tls_client_auth_ca_pins
    if not pins:
        raise invalid(
            "tls_client_auth_ca_pins",
            "tls_client_auth needs the issuing CA pinned by key (SPKI SHA-256 hex), never "
            "by its DN alone",
        )
    for pin in pins:
        if not _PIN.match(pin):
            raise invalid("tls_client_auth_ca_pins", f"{pin!r} is not 64 lower-case hex digits")


def _keys(meta: ClientMetadata) -> list[dict[str, Any]]:
    jwks = meta.jwks
    keys = jwks.get("keys") if jwks is not None else None
    if not isinstance(keys, list) or not keys:
        raise invalid("jwks", 'needs a JWK Set with at least one key ({"keys": [...]})')
    if len(keys) > MAX_JWKS_KEYS:
        raise invalid("jwks", f"at most {MAX_JWKS_KEYS} keys")
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise invalid("jwks", "every key is a JWK object with a kty")
        private = [member for member in PRIVATE_JWK_MEMBERS if member in key]
        if private:
            raise invalid("jwks", f"holds private or symmetric key material ({', '.join(private)})")
    return keys


def _check_jwks(meta: ClientMetadata) -> None:
    method = meta.token_endpoint_auth_method
    if method not in (AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, AuthMethod.PRIVATE_KEY_JWT):
        if meta.jwks is not None:
            raise invalid("jwks", f"not used by token_endpoint_auth_method {method.value}")
        return
    keys = _keys(meta)
    if method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
        for key in keys:
            if not key.get("x5c") and not key.get("x5t#S256"):
                raise invalid(
                    "jwks", "self_signed_tls_client_auth needs x5c or x5t#S256 in every key"
                )


def _check_binding(meta: ClientMetadata) -> None:
    method = meta.token_endpoint_auth_method
    if method in MTLS_METHODS and not meta.tls_client_certificate_bound_access_tokens:
        raise invalid(
            "tls_client_certificate_bound_access_tokens",
            f"must be true for {method.value}: its tokens are always certificate-bound",
        )


# --- apps ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class App:
    """An OAuth client as stored (never its secret or the secret's hash)."""

    id: str
    client_id: str
    name: str
    status: AppStatus
    metadata: ClientMetadata
    has_secret: bool
    created: dt.datetime
    updated: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "clientId": self.client_id,
            "name": self.name,
            "status": self.status.value,
            "hasSecret": self.has_secret,
            "metadata": self.metadata.to_dict(),
            "created": format_rfc3339(self.created),
            "updated": format_rfc3339(self.updated),
        }


def _app(row: AppRow) -> App:
    return App(
        id=row.id,
        client_id=row.client_id,
        name=row.name,
        status=AppStatus(row.status),
        metadata=ClientMetadata.from_dict(json.loads(row.metadata_json)),
        has_secret=row.secret_hash is not None,
        created=row.created,
        updated=row.updated,
    )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """A client secret: ``cbs_`` and 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _not_found(ref: str) -> CertboundError:
    return CertboundError(
        ReasonCode.APP_NOT_FOUND, f"no app has the id or client_id {ref!r}", {"ref": ref}
    )


def _check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise invalid("name", f"an app's name is 1 to {MAX_NAME_LENGTH} characters")
    return cleaned


def _check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise invalid("client_id", "1 to 256 printable ASCII characters without spaces (RFC 6749)")
    return client_id


def lookup(session: Session, ref: str) -> AppRow:
    """The app ``ref`` names (its id, else its client_id); APP_NOT_FOUND."""
    row = session.get(AppRow, ref) if ref.startswith(ID_PREFIX) else None
    if row is None:
        row = session.scalars(select(AppRow).where(AppRow.client_id == ref)).first()
    if row is None:
        raise _not_found(ref)
    return row


# Bumped by every change made through any Apps of this process: every cache empties.
_changes = itertools.count(1)
_generation = [0]


def _changed() -> None:
    _generation[0] = next(_changes)


_Entry = tuple[App | None, str | None, dt.datetime]  # app, secret hash, valid until


class Apps:
    """The apps in the database, with the look-up cache of the token endpoint."""

    def __init__(
        self, db: Database, clock: Clock, *, cache_ttl: float = 5.0, max_cached: int = 10_000
    ) -> None:
        self._db = db
        self._clock = clock
        self._ttl = dt.timedelta(seconds=cache_ttl)
        self._max_cached = max_cached
        self._cache: dict[str, _Entry] = {}
        self._seen = _generation[0]
        self._lock = threading.Lock()

    # the token endpoint's path ---------------------------------------------------------------

    def _entry(self, client_id: str, offline: bool = False) -> _Entry:
        now = self._clock.now()
        if self._seen != _generation[0]:
            self._cache, self._seen = {}, _generation[0]
        hit = self._cache.get(client_id)
        if hit is not None and now < hit[2]:
            return hit
        if offline:
            raise WouldBlockError("app not cached")
        with self._db.session() as session:
            row = session.scalars(select(AppRow).where(AppRow.client_id == client_id)).first()
            entry: _Entry = (
                (None, None, now + self._ttl)
                if row is None
                else (_app(row), row.secret_hash, now + self._ttl)
            )
        with self._lock:
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            self._cache[client_id] = entry
        return entry

    def by_client_id(self, client_id: str, *, offline: bool = False) -> App | None:
        """The app with this client_id (any status), None when there is none; from memory
        for ``cache_ttl`` seconds after it was read (``offline``: WouldBlockError instead of
        reading the database). A client_id no app can have (control characters, NUL, longer
        than the column) is None without asking the database."""
        if not storable(client_id):
            return None
        return self._entry(client_id, offline)[0]

    def verify_secret(self, app: App, secret: str) -> bool:
        """Whether ``secret`` is the app's current secret (constant-time comparison)."""
        found, stored, _ = self._entry(app.client_id)
        given = _hash(secret)
        if found is None or found.id != app.id or stored is None:
            hmac.compare_digest(given, given)  # the same work as a real comparison
            return False
        return hmac.compare_digest(given, stored)

    # administration --------------------------------------------------------------------------

    def create(
        self, name: str, metadata: ClientMetadata, *, client_id: str | None = None
    ) -> tuple[App, str | None]:
        """Register an app: ``(app, secret)``, the secret only for client_secret_* (shown
        once; only its hash is kept). NAME_TAKEN when the client_id is in use."""
        metadata.validate()
        client_id = _check_client_id(client_id) if client_id is not None else _generated_id()
        secret = new_secret() if metadata.token_endpoint_auth_method in SECRET_METHODS else None
        now = self._clock.now()
        row = AppRow(
            id=ID_PREFIX + secrets.token_hex(8),
            client_id=client_id,
            name=_check_name(name),
            status=AppStatus.ACTIVE.value,
            metadata_json=json.dumps(metadata.to_dict(), sort_keys=True),
            secret_hash=_hash(secret) if secret is not None else None,
            created=now,
            updated=now,
        )
        try:
            with self._db.session() as session:
                if session.scalars(select(AppRow.id).where(AppRow.client_id == client_id)).first():
                    raise _taken(client_id)
                session.add(row)
        except IntegrityError:
            raise _taken(client_id) from None
        _changed()
        return _app(row), secret

    def get(self, ref: str) -> App:
        """The app ``ref`` names: its id or client_id (APP_NOT_FOUND)."""
        if not storable(ref):
            raise CertboundError(ReasonCode.APP_NOT_FOUND, "no app has that id or client_id")
        with self._db.session() as session:
            return _app(lookup(session, ref))

    def list(self, *, limit: int = 100, after: str | None = None) -> builtins.list[App]:
        """Apps in the order created (then id); ``after``: the last id of the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(AppRow)
        with self._db.session() as session:
            if after is not None:
                anchor = session.get(AppRow, after)
                if anchor is None:
                    raise _not_found(after)
                query = query.where(
                    or_(
                        AppRow.created > anchor.created,
                        and_(AppRow.created == anchor.created, AppRow.id > anchor.id),
                    )
                )
            rows = session.scalars(query.order_by(AppRow.created, AppRow.id).limit(limit))
            return [_app(row) for row in rows]

    def update(
        self,
        ref: str,
        metadata: ClientMetadata | None = None,
        *,
        name: str | None = None,
        status: AppStatus | str | None = None,
    ) -> tuple[App, App]:
        """Change an app's metadata, name or status: ``(before, after)``. Leaving the
        client_secret_* methods drops the secret; coming to one leaves the app without a
        secret until :meth:`rotate_secret`."""
        if metadata is not None:
            metadata.validate()
        wanted = _status(status) if status is not None else None
        with self._db.session() as session:
            row = lookup(session, ref)
            before = _app(row)
            if metadata is not None:
                row.metadata_json = json.dumps(metadata.to_dict(), sort_keys=True)
                if metadata.token_endpoint_auth_method not in SECRET_METHODS:
                    row.secret_hash = None
            if name is not None:
                row.name = _check_name(name)
            if wanted is not None:
                row.status = wanted.value
            after = _app(row)
            if after != before:
                row.updated = self._clock.now()
                after = _app(row)
        _changed()
        return before, after

    def rotate_secret(self, ref: str) -> tuple[App, str]:
        """A new secret for a client_secret_* app (the old one stops working at once)."""
        secret = new_secret()
        with self._db.session() as session:
            row = lookup(session, ref)
            method = _app(row).metadata.token_endpoint_auth_method
            if method not in SECRET_METHODS:
                raise invalid(
                    "token_endpoint_auth_method",
                    f"{method.value} uses no client secret; only client_secret_basic and "
                    "client_secret_post do",
                )
            row.secret_hash = _hash(secret)
            row.updated = self._clock.now()
            app = _app(row)
        _changed()
        return app, secret

    def delete(self, ref: str) -> App:
        """Remove an app; its client_id stops authenticating at once in this process and
        within ``cache_ttl`` elsewhere."""
        with self._db.session() as session:
            row = lookup(session, ref)
            app = _app(row)
            session.delete(row)
        _changed()
        return app


def _status(value: AppStatus | str) -> AppStatus:
    try:
        return AppStatus(str(value).upper())
    except ValueError:
        raise invalid("status", f"{value!r} is not ACTIVE or INACTIVE") from None


def _taken(client_id: str) -> CertboundError:
    return CertboundError(
        ReasonCode.NAME_TAKEN,
        f"an app with client_id {client_id!r} exists",
        {"clientId": client_id},
    )


def _generated_id() -> str:
    return secrets.token_hex(12)
