"""Settings: defaults, then the TOML config file, then ``CERTBOUND_*`` environment variables.

The file comes from ``--config FILE`` or ``CERTBOUND_CONFIG``. Relative paths in a file are
resolved against the file's directory, so a config written by ``certbound quickstart`` works
from any working directory; relative paths in environment variables are resolved against the
working directory. ``docs/config.md`` documents every key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "CERTBOUND_"


class ConfigError(ValueError):
    """The config file or an environment variable is unusable."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    config_file: Path | None = None
    # Seconds a warm validation result may be served from cache at most.
    verify_cache_seconds: int = 300
    # Entries in the validation result cache.
    verify_cache_size: int = 10_000
    # Days before a CA's notAfter at which uploads and listings warn.
    ca_expiry_warning_days: int = 90
    # System Log: days events are kept before the retention job purges them.
    log_retention_days: int = 90
    # System Log: events waiting for the database at most (beyond: spooled to disk).
    log_queue_size: int = 50_000
    # Built-in TLS listener ("host:port"; "" turns it off) and its certificate and key.
    tls_listen: str = "127.0.0.1:8443"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # "accept": every chain reaches the app, which validates it (nginx optional_no_ca);
    # "reject": untrusted chains are refused inside the handshake with the matching alert.
    tls_client_verify: str = "accept"
    # Plain-HTTP listener for a trusted proxy: "host:port", "unix:/path", or "" (off).
    http_listen: str = ""
    # Socket peers whose certificate headers count: CIDRs, and "unix" for the Unix socket.
    trusted_proxies: tuple[str, ...] = ()
    # The header format trusted proxies send: nginx, haproxy, envoy or rfc9440.
    proxy_header: str = "rfc9440"
    # How a certificate maps to a user, first rule that yields a value wins.
    device_mapping: tuple[str, ...] = ("san_email", "san_upn", "cn")
    # Seconds: TLS handshake, request headers (per request), idle keep-alive.
    tls_handshake_timeout: int = 10
    request_header_timeout: int = 10
    keepalive_timeout: int = 5
    # Connections open at once per listener; beyond it new connections are closed at once.
    max_connections: int = 1000
    # OAuth: the issuer URL ("": https:// + tls_listen), token lifetimes in seconds, and the
    # file holding the secret that encrypts signing keys at rest (default data_dir/secret.key).
    issuer: str = ""
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 30 * 24 * 3600
    secret_key_file: Path | None = None

    @property
    def spool_dir(self) -> Path:
        """Where the System Log spools events while the database is unreachable."""
        return self.data_dir / "spool"

    @property
    def issuer_url(self) -> str:
        """The OAuth issuer: ``issuer``, else the TLS listener's https URL."""
        return (self.issuer or f"https://{self.tls_listen or '127.0.0.1:8443'}").rstrip("/")

    @property
    def secret_key_path(self) -> Path:
        """The file of the secret that encrypts signing keys at rest."""
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/certbound``; a relative XDG_DATA_HOME is ignored, as the spec says."""
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "certbound"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc


_INT_KEYS = {
    "verify_cache_seconds",
    "verify_cache_size",
    "ca_expiry_warning_days",
    "log_retention_days",
    "log_queue_size",
    "tls_handshake_timeout",
    "request_header_timeout",
    "keepalive_timeout",
    "max_connections",
    "access_token_seconds",
    "refresh_token_seconds",
}
_LIST_KEYS = {"trusted_proxies", "device_mapping"}
_PATH_KEYS = {"data_dir", "tls_cert_file", "tls_key_file", "secret_key_file"}
_CHOICES = {
    "tls_client_verify": ("accept", "reject"),
    "proxy_header": ("nginx", "haproxy", "envoy", "rfc9440"),
}
_KNOWN = {f.name for f in fields(Settings)} - {"config_file"}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in _INT_KEYS:
        # TOML gives int (bool is an int subclass: refuse it); the environment gives str.
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                number = None
        if number is None or number < 0:
            raise ConfigError(f"{source}: {key} must be a whole number >= 0, got {value!r}")
        return number
    if key in _LIST_KEYS:
        # TOML gives a list of strings; the environment a comma-separated string.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{source}: {key} must be a list of strings, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings for this process (file named explicitly, else by CERTBOUND_CONFIG)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    # The directory each value's relative paths are relative to: the config file's
    # directory for values from the file, the working directory for the environment.
    bases: dict[str, Path] = {}
    path = Path(config_file) if config_file else None
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is not None:
        path = path.expanduser().resolve()
        data = _read_file(path)
        unknown = sorted(set(data) - _KNOWN)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s): {', '.join(unknown)}")
        raw.update({k: _coerce(k, v, str(path)) for k, v in data.items()})
        bases.update(dict.fromkeys(data, path.parent))
    for key in _KNOWN:
        name = ENV_PREFIX + key.upper()
        if env.get(name):
            raw[key] = _coerce(key, env[name], name)
            bases[key] = Path.cwd()

    for key in _PATH_KEYS - {"data_dir"}:
        if raw.get(key):
            raw[key] = _resolve(raw[key], bases[key])
        else:
            raw.pop(key, None)
    data_dir_value = raw.pop("data_dir", None)
    if data_dir_value:
        data_dir = _resolve(data_dir_value, bases["data_dir"])
    else:
        data_dir = default_data_dir(env)
    url = raw.pop("database_url", None) or sqlite_url(data_dir / "certbound.db")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            url = sqlite_url(_resolve(rel, bases["database_url"]))
    return Settings(data_dir=data_dir, database_url=url, config_file=path, **raw)
