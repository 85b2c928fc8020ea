"""Settings: flags > TOML > HUBBUB_* environment > defaults; bad input names the key."""

from pathlib import Path

import pytest

from hubbub import config
from hubbub.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def documented_settings() -> dict[str, tuple[str, str, str]]:
    """The settings table of docs/configuration.md: key -> (flags, environment variable, default)."""
    table = DOCS.read_text().split("<!-- settings -->")[1].split("<!-- /settings -->")[0]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        key, flags, variable, default, _ = (cell.strip().strip("`") for cell in line.strip("|").split("|", 4))
        rows[key] = (flags, variable, default)
    return rows


def test_documented_defaults_flags_and_variables_are_the_real_ones() -> None:
    """Each row of the settings table is what `hubbub serve` does: same default, flag and variable."""
    documented = documented_settings()
    assert set(documented) == {f.name for f in config.setting_fields()}
    for field in config.setting_fields():
        flags, variable, default = documented[field.name]
        assert variable == f"HUBBUB_{field.name.upper()}", field.name
        assert flags.split("`")[0] == "--" + field.name.replace("_", "-"), field.name
        if field.name == "namespaces":
            continue  # a table of its own below the settings
        documented_value = config.coerce(field.name, config._HINTS[field.name], default)
        assert documented_value == field.default, f"{field.name}: docs say {default!r}, code has {field.default!r}"
        # The documented default is also what an empty configuration loads.
        assert getattr(config.load(environ={}), field.name) == documented_value, field.name


def test_empty_configuration_is_the_embedded_setup() -> None:
    """No flags, file or variables: loopback only, development mode, SQLite history, the chat's namespaces."""
    settings = config.load(environ={})
    assert settings.development_mode and not settings.dev
    assert {"default", "room", "dm", "typing", "user"} <= set(settings.namespaces)


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
