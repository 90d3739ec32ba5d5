"""Settings: defaults, then the TOML config file, then ``CERTBOUND_*`` environment variables.

The file comes from ``--config FILE`` or ``CERTBOUND_CONFIG``. Relative paths in a file are
resolved against the file's directory, so a config written by ``certbound quickstart`` works
from any working directory. ``docs/config.md`` documents every key.
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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "certbound"


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


_INT_KEYS = {"verify_cache_seconds", "verify_cache_size", "ca_expiry_warning_days"}
_KNOWN = {f.name for f in fields(Settings)} - {"config_file"}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in _INT_KEYS:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
    return value


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings for this process (file named explicitly, else by CERTBOUND_CONFIG)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = Path(config_file) if config_file else None
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    base = Path.cwd()
    if path is not None:
        path = path.resolve()
        base = path.parent
        data = _read_file(path)
        unknown = sorted(set(data) - _KNOWN)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s): {', '.join(unknown)}")
        raw.update({k: _coerce(k, v, str(path)) for k, v in data.items()})
    for key in _KNOWN:
        name = ENV_PREFIX + key.upper()
        if env.get(name):
            raw[key] = _coerce(key, env[name], name)

    data_dir = Path(raw.pop("data_dir", None) or default_data_dir(env))
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    url = raw.pop("database_url", None) or sqlite_url(data_dir / "certbound.db")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            url = sqlite_url((base / rel).resolve())
    return Settings(data_dir=data_dir, database_url=url, config_file=path, **raw)
