"""Server settings: flags first, then `TASKLOOM_*` variables, then the defaults."""

from __future__ import annotations

import pytest

from taskloom.server.settings import DEFAULT_PORT, ServerSettings, SettingsError


def test_defaults_listen_on_loopback_port_8321() -> None:
    settings = ServerSettings.from_env({})
    assert (settings.host, settings.port, settings.database_url) == ("127.0.0.1", 8321, None)
    assert settings.loopback
    assert DEFAULT_PORT == 8321


def test_environment_variables_are_read() -> None:
    env = {
        "TASKLOOM_HOST": "0.0.0.0",
        "TASKLOOM_PORT": "9000",
        "TASKLOOM_DATABASE_URL": "sqlite:///x.db",
        "TASKLOOM_ACCESS_LOG": "1",
    }
    settings = ServerSettings.from_env(env)
    assert (settings.host, settings.port, settings.database_url) == (
        "0.0.0.0",
        9000,
        "sqlite:///x.db",
    )
    assert settings.access_log
    assert not settings.loopback


def test_given_values_win_over_the_environment() -> None:
    env = {"TASKLOOM_HOST": "0.0.0.0", "TASKLOOM_PORT": "9000"}
    settings = ServerSettings.from_env(env, host="::1", port=0)
    assert (settings.host, settings.port) == ("::1", 0)
    assert settings.loopback


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKLOOM_PORT": "http"}, "TASKLOOM_PORT: expected a port number, got 'http'"),
        ({"TASKLOOM_PORT": "70000"}, "port: expected 0..65535, got 70000"),
    ],
)
def test_a_bad_port_names_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_env(env)
