"""Each connector owns its settings model, found through the registry and validated with the core's:
the same variables, the same one-line errors, the same sources (environment, .env, keywords)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from adaldyk_bots.settings import Settings, SettingsError, installed_channel_settings, load_settings
from connectors.telegram.settings import TelegramSettings
from connectors.vk.settings import VKSettings
from tests.twin_connector import TwinSettings

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"


def test_the_registry_names_each_connectors_model() -> None:
    models = installed_channel_settings()
    assert models["telegram"] is TelegramSettings and models["vk"] is VKSettings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ADALDYK_VK_TOKEN": "t"}, "ADALDYK_VK_GROUP_ID: is required when ADALDYK_VK_TOKEN is set"),
        (
            {"ADALDYK_VK_TOKEN": "t", "ADALDYK_VK_GROUP_ID": "1", "ADALDYK_VK_MODE": "callback"},
            "ADALDYK_VK_CONFIRMATION: is required when ADALDYK_VK_MODE=callback",
        ),
        ({"ADALDYK_VK_API_VERSION": "5.92"}, "ADALDYK_VK_API_VERSION: must be 5.103 or later"),
        ({"ADALDYK_VK_API_URL": "ftp://vk"}, "ADALDYK_VK_API_URL: must be an http:// or https:// address"),
        ({"ADALDYK_VK_GROUP_ID": "0"}, "ADALDYK_VK_GROUP_ID: Input should be greater than or equal to 1"),
        ({"ADALDYK_TELEGRAM_POLL_TIMEOUT": "99"}, "ADALDYK_TELEGRAM_POLL_TIMEOUT: Input should be less"),
        (
            {
                "ADALDYK_TELEGRAM_TOKEN": TOKEN,
                "ADALDYK_TELEGRAM_MODE": "webhook",
                "ADALDYK_PUBLIC_URL": "https://x",
            },
            "ADALDYK_TELEGRAM_WEBHOOK_SECRET: is required when ADALDYK_TELEGRAM_MODE=webhook",
        ),
    ],
)
def test_a_wrong_channel_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_every_channel_at_fault_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADALDYK_TELEGRAM_MODE", "push")
    monkeypatch.setenv("ADALDYK_VK_MODE", "push")
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert "ADALDYK_TELEGRAM_MODE: " in str(err.value) and "ADALDYK_VK_MODE: " in str(err.value)


def test_keywords_reach_the_connectors_model_and_are_validated(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        telegram_token=TOKEN,
        telegram_mode="webhook",
        telegram_webhook_secret="s3cret_value",
        public_url="https://adaldyk.example.kz/",
        vk_token="vk-token",
        vk_group_id=42,
    )
    telegram = settings.channel(TelegramSettings)
    assert telegram.telegram_mode == "webhook"
    assert telegram.public_url == "https://adaldyk.example.kz"  # the core's value, already validated
    assert settings.channel(VKSettings).vk_group_id == 42
    with pytest.raises(ValidationError):
        Settings(_env_file=None, telegram_mode="push")  # type: ignore[call-arg]


def test_environment_beats_the_env_file_and_keywords_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "ADALDYK_TELEGRAM_API_URL=http://127.0.0.1:1/\nADALDYK_TELEGRAM_POLL_TIMEOUT=5\nADALDYK_VK_LONGPOLL_WAIT=7\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ADALDYK_TELEGRAM_POLL_TIMEOUT", "9")
    settings = Settings(_env_file=env_file, vk_longpoll_wait=3)  # type: ignore[call-arg]
    telegram = settings.channel(TelegramSettings)
    assert (telegram.telegram_api_url, telegram.telegram_poll_timeout) == ("http://127.0.0.1:1", 9)
    assert settings.channel(VKSettings).vk_longpoll_wait == 3
    # No .env for the core means none for the connectors either.
    bare = Settings(_env_file=None)  # type: ignore[call-arg]
    assert bare.channel(TelegramSettings).telegram_api_url == "https://api.telegram.org"


def test_connector_secrets_are_scrubbed_from_logs_too() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        secret_key="core-secret-key-0123456789",
        telegram_token=TOKEN,
        telegram_webhook_secret="tg_webhook_secret",
        vk_token="vk-token-value",
        vk_group_id=1,
        vk_secret="vk-callback-secret",
    )
    assert set(settings.secret_values()) == {
        "core-secret-key-0123456789",
        TOKEN,
        "tg_webhook_secret",
        "vk-token-value",
        "vk-callback-secret",
    }


def test_a_copy_with_channel_values_builds_the_channel_from_them() -> None:
    # The sandbox's way: model_copy(update=…) with a connector's fields.
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    copy = base.model_copy(update={"telegram_token": SecretStr(TOKEN), "telegram_poll_timeout": 2})
    assert copy.channel(TelegramSettings).telegram_poll_timeout == 2
    assert base.channel(TelegramSettings).telegram_token is None


def test_old_attribute_reads_still_answer() -> None:
    settings = Settings(_env_file=None, vk_token="t", vk_group_id=5)  # type: ignore[call-arg]
    assert settings.vk_group_id == 5 and settings.vk_mode == "longpoll"
    assert settings.telegram_token is None
    with pytest.raises(AttributeError):
        _ = settings.no_such_setting


def test_a_connector_outside_the_registry_reads_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADALDYK_TWIN_APP_SECRET", "from-the-environment")
    twin = Settings(_env_file=None).channel(TwinSettings)  # type: ignore[call-arg]
    assert twin.twin_app_secret is not None
    assert twin.twin_app_secret.get_secret_value() == "from-the-environment"


def test_cli_stops_on_a_connectors_value_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ADALDYK_TELEGRAM_MODE": "push"}
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
        "adaldyk: configuration error: ADALDYK_TELEGRAM_MODE: Input should be 'polling' or 'webhook'"
        " (got 'push')"
    ]
