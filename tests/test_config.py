"""Settings: flags > TOML > HUBBUB_* environment > defaults; bad input names the key."""

from pathlib import Path

import pytest

from hubbub import config
from hubbub.errors import ConfigError


def test_defaults_are_the_embedded_setup() -> None:
    settings = config.load()
    assert (settings.host, settings.port, settings.api_host, settings.api_port) == (
        "127.0.0.1",
        8000,
        "127.0.0.1",
        8001,
    )
    assert settings.development_mode
    assert settings.max_message_bytes == 65536 and settings.ping_interval == 25 and settings.ping_timeout == 10
    assert settings.history_path == "hubbub-history.db"
    assert "default" in settings.namespaces


def test_precedence_flags_then_toml_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text("port = 9000\napi_port = 9001\nping_interval = 5.5\n")
    env = {"HUBBUB_PORT": "7000", "HUBBUB_API_PORT": "7001", "HUBBUB_HOST": "127.0.0.2", "PATH": "/bin"}
    settings = config.load({"port": "6000", "api_port": None}, path, env)
    assert settings.port == 6000  # flag wins
    assert settings.api_port == 9001  # TOML beats environment
    assert settings.host == "127.0.0.2"  # environment beats default
    assert settings.ping_interval == 5.5


def test_none_disables_optional_limits() -> None:
    settings = config.load({"ping_interval": "none", "history_path": "none"})
    assert settings.ping_interval is None and settings.history_path is None


def test_namespaces_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text("[namespaces.chat]\nhistory_size = 50\npresence = true\njoin_leave = true\n")
    settings = config.load(config_path=path)
    assert set(settings.namespaces) == {"chat"}
    assert settings.namespaces["chat"].history_size == 50 and settings.namespaces["chat"].join_leave


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("prot = 1", "'prot'"),
        ("port = 'eighty'", "'port'"),
        ("port = -1", "'port'"),
        ("ping_interval = true", "'ping_interval'"),
        ("[namespaces.chat]\nhistory_sise = 1", "namespaces.chat.history_sise"),
        ("[namespaces.chat]\npresence = 'maybe'", "namespaces.chat.presence"),
        ("[namespaces.'bad name']\npresence = true", "bad name"),
        ("log_level = 'loud'", "'log_level'"),
        ("token_secret = 'short'", "'token_secret'"),
        ("port = [", "not valid TOML"),
    ],
)
def test_bad_toml_is_rejected_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config.load(config_path=path)


def test_unknown_environment_variable_is_rejected() -> None:
    with pytest.raises(ConfigError, match="HUBBUB_PROT"):
        config.load(environ={"HUBBUB_PROT": "1"})


def test_bad_flag_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'max_message_bytes'"):
        config.load({"max_message_bytes": "big"})


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(config_path=tmp_path / "missing.toml")


def test_namespaces_from_flag_and_environment_as_json() -> None:
    env = {"HUBBUB_NAMESPACES": '{"feed": {"conflate": true}}'}
    assert set(config.load(environ=env).namespaces) == {"feed"}
    settings = config.load({"namespaces": '{"chat": {"join_leave": true}}'}, environ=env)
    assert set(settings.namespaces) == {"chat"} and settings.namespaces["chat"].join_leave
    with pytest.raises(ConfigError, match="'namespaces' is not valid JSON"):
        config.load({"namespaces": "{chat"})
    with pytest.raises(ConfigError, match=r"namespaces\.chat\.joinleave"):
        config.load(environ={"HUBBUB_NAMESPACES": '{"chat": {"joinleave": true}}'})
