"""Settings: a wrong value stops start-up with one line that names the variable and says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adaldyk_bots.settings import SettingsError, load_settings

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ADALDYK_PORT": "eighty"}, "ADALDYK_PORT: Input should be a valid integer"),
        ({"ADALDYK_PORT": "70000"}, "ADALDYK_PORT: Input should be less than or equal to 65535"),
        ({"ADALDYK_DATABASE_URL": "mysql://x"}, "ADALDYK_DATABASE_URL: must start with sqlite://"),
        ({"ADALDYK_TIMEZONE": "Mars/Olympus"}, "ADALDYK_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ({"ADALDYK_TELEGRAM_TOKEN": "not-a-token"}, "ADALDYK_TELEGRAM_TOKEN: does not look like a bot token"),
        ({"ADALDYK_TELEGRAM_MODE": "push"}, "ADALDYK_TELEGRAM_MODE: Input should be 'polling' or 'webhook'"),
        (
            {"ADALDYK_TELEGRAM_TOKEN": TOKEN, "ADALDYK_TELEGRAM_MODE": "webhook"},
            "ADALDYK_PUBLIC_URL: is required when ADALDYK_TELEGRAM_MODE=webhook",
        ),
        ({"ADALDYK_TELEGRAM_WEBHOOK_SECRET": "has spaces"}, "ADALDYK_TELEGRAM_WEBHOOK_SECRET: must be 1-256"),
        (
            {"ADALDYK_WORKING_HOURS_START": "18:00", "ADALDYK_WORKING_HOURS_END": "09:00"},
            "ADALDYK_WORKING_HOURS_END: must be later than ADALDYK_WORKING_HOURS_START",
        ),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_secrets_are_never_echoed_in_the_error(monkeypatch):
    monkeypatch.setenv("ADALDYK_TELEGRAM_TOKEN", "secret-value-that-is-wrong")
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert "secret-value-that-is-wrong" not in str(err.value)


def test_defaults_start_on_embedded_sqlite():
    settings = load_settings(_env_file=None)
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.telegram_token is None  # the channel is off, the rest runs


def test_cli_stops_with_one_line_and_exit_code_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ADALDYK_PORT": "eighty"}
    result = subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "adaldyk: configuration error: ADALDYK_PORT: Input should be a valid integer, unable to parse string"
        " as an integer (got 'eighty')"
    ]
