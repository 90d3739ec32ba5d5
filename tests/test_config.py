"""load_settings: defaults < TOML file < CERTBOUND_* environment, and where paths resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from certbound.config import ConfigError, Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_use_xdg_data_home(tmp_path: Path) -> None:
    settings = load_settings(env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert settings.data_dir == tmp_path / "xdg" / "certbound"
    assert settings.database_url == f"sqlite:///{tmp_path / 'xdg' / 'certbound' / 'certbound.db'}"
    assert settings.is_sqlite
    assert settings.config_file is None
    assert settings.verify_cache_seconds == 300
    assert settings.verify_cache_size == 10_000
    assert settings.ca_expiry_warning_days == 90


def test_default_without_xdg_is_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings(env={}).data_dir == tmp_path / ".local" / "share" / "certbound"
    # The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
    relative = load_settings(env={"XDG_DATA_HOME": "relative/xdg"})
    assert relative.data_dir == tmp_path / ".local" / "share" / "certbound"


def test_file_values(tmp_path: Path) -> None:
    config = write(
        tmp_path / "conf" / "certbound.toml",
        f'data_dir = "{tmp_path / "data"}"\n'
        'database_url = "postgresql://certbound@db.example:5432/certbound"\n'
        "verify_cache_seconds = 60\n"
        "verify_cache_size = 5\n"
        "ca_expiry_warning_days = 30\n",
    )
    settings = load_settings(config, env={})
    assert settings == Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql://certbound@db.example:5432/certbound",
        config_file=config,
        verify_cache_seconds=60,
        verify_cache_size=5,
        ca_expiry_warning_days=30,
    )
    assert not settings.is_sqlite


def test_database_defaults_to_sqlite_in_configured_data_dir(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", f'data_dir = "{tmp_path / "d"}"\n')
    settings = load_settings(config, env={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'certbound.db'}"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "verify_cache_size = 7\n")
    settings = load_settings(env={"CERTBOUND_CONFIG": str(config)})
    assert settings.config_file == config
    assert settings.verify_cache_size == 7


def test_explicit_file_beats_certbound_config(tmp_path: Path) -> None:
    explicit = write(tmp_path / "a.toml", "verify_cache_size = 1\n")
    from_env = write(tmp_path / "b.toml", "verify_cache_size = 2\n")
    settings = load_settings(explicit, env={"CERTBOUND_CONFIG": str(from_env)})
    assert settings.config_file == explicit
    assert settings.verify_cache_size == 1


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'database_url = "sqlite:////from/file.db"\n'
        "verify_cache_seconds = 60\n"
        "verify_cache_size = 9\n",
    )
    env = {
        "CERTBOUND_DATABASE_URL": "postgresql://u@127.0.0.1:5432/x",
        "CERTBOUND_VERIFY_CACHE_SECONDS": " 15 ",
    }
    settings = load_settings(config, env=env)
    assert settings.database_url == "postgresql://u@127.0.0.1:5432/x"
    assert settings.verify_cache_seconds == 15
    assert settings.verify_cache_size == 9  # not overridden: the file's value stays


def test_empty_environment_variable_is_unset(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "verify_cache_size = 9\n")
    settings = load_settings(config, env={"CERTBOUND_VERIFY_CACHE_SIZE": ""})
    assert settings.verify_cache_size == 9


def test_relative_paths_in_file_resolve_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "site" / "certbound.toml",
        'data_dir = "state"\ndatabase_url = "sqlite:///db/certbound.db"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path("..") / "site" / "certbound.toml", env={})
    assert settings.config_file == config
    assert settings.data_dir == tmp_path / "site" / "state"
    assert settings.database_url == f"sqlite:///{tmp_path / 'site' / 'db' / 'certbound.db'}"


def test_relative_data_dir_in_file_also_places_default_database(tmp_path: Path) -> None:
    config = write(tmp_path / "site" / "certbound.toml", 'data_dir = "state"\n')
    settings = load_settings(config, env={})
    expected = tmp_path / "site" / "state" / "certbound.db"
    assert settings.database_url == f"sqlite:///{expected}"


def test_relative_paths_in_environment_resolve_against_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "site" / "certbound.toml", 'data_dir = "state"\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    env = {"CERTBOUND_DATA_DIR": "mine", "CERTBOUND_DATABASE_URL": "sqlite:///my.db"}
    settings = load_settings(config, env=env)
    assert settings.data_dir == cwd / "mine"
    assert settings.database_url == f"sqlite:///{cwd / 'my.db'}"


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = write(tmp_path / "c.toml", 'data_dir = "~/certbound-data"\n')
    assert load_settings(config, env={}).data_dir == tmp_path / "home" / "certbound-data"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:////abs/x.db"])
def test_special_and_absolute_sqlite_urls_are_kept(tmp_path: Path, url: str) -> None:
    config = write(tmp_path / "c.toml", f'database_url = "{url}"\n')
    assert load_settings(config, env={}).database_url == url


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "verify_cache_size = 1\ndatabse_url = 'x'\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\): databse_url, port"):
        load_settings(config, env={})


def test_config_file_is_not_a_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'config_file = "other.toml"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(config, env={})


@pytest.mark.parametrize(
    "line", ['verify_cache_size = "many"', "verify_cache_size = true", "verify_cache_size = 2.5"]
)
def test_bad_integer_in_file_is_an_error(tmp_path: Path, line: str) -> None:
    config = write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError, match="verify_cache_size must be a whole number"):
        load_settings(config, env={})


@pytest.mark.parametrize("value", ["ten", "1.5", "-1"])
def test_bad_integer_in_environment_names_the_variable(tmp_path: Path, value: str) -> None:
    env = {"CERTBOUND_CA_EXPIRY_WARNING_DAYS": value, "XDG_DATA_HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"^CERTBOUND_CA_EXPIRY_WARNING_DAYS: ca_expiry"):
        load_settings(env=env)


def test_string_key_must_be_a_string(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "database_url = 5\n")
    with pytest.raises(ConfigError, match="database_url must be a string"):
        load_settings(config, env={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml"):
        load_settings(tmp_path / "nope.toml", env={})


def test_missing_file_named_by_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(env={"CERTBOUND_CONFIG": str(tmp_path / "nope.toml")})


def test_directory_as_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, env={})


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "data_dir = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(config, env={})


def test_nested_table_is_an_unknown_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "[server]\nport = 8443\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\): server"):
        load_settings(config, env={})
