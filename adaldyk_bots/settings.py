"""Settings from ADALDYK_* environment variables (and .env), validated once at the entry point."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ADALDYK_"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
# Telegram's rule for setWebhook secret_token: 1-256 characters of A-Z, a-z, 0-9, _ and -.
_TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TELEGRAM_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")


class SettingsError(Exception):
    """A setting is wrong or missing; the message names the variable and says why, in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///var/adaldyk.sqlite3"
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    config_dir: Path = DEFAULT_CONFIG_DIR
    files_dir: Path = Path("var/files")  # citizens' files fetched from the platforms
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Largest request body the web server reads (413 above it, before it is read). 4 MiB: a Telegram
    # update or a VK event is at most tens of KB (9000 escaped characters are ~54 KB); WhatsApp says a
    # webhook body can be up to 3 MB, the largest any platform documents (Meta batches up to 1000).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=1024**3)

    # Appeal rules (kz-appeals-law.md): every number is configurable because the Code is amended.
    timezone: str = "Asia/Almaty"
    working_hours_start: time = time(9, 0)
    working_hours_end: time = time(18, 0)
    answer_term_working_days: int = Field(default=15, ge=1, le=60)
    appeal_number_prefix: str = Field(default="ADL", pattern=r"^[A-Z]{1,8}$")

    # Outbox dispatcher.
    dispatch_interval_seconds: float = Field(default=0.25, gt=0, le=60)
    outbox_lease_seconds: float = Field(default=60.0, ge=1)
    outbox_max_attempts: int = Field(default=12, ge=1)
    send_timeout_seconds: float = Field(default=15.0, gt=0)
    dispatch_concurrency: int = Field(default=8, ge=1, le=100)

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr | None = None
    telegram_poll_timeout: int = Field(default=25, ge=0, le=50)

    # --- VKontakte (connectors/vk): a community token, Bots Long Poll or Callback API ---------------
    vk_token: SecretStr | None = None
    vk_group_id: int | None = Field(default=None, ge=1)
    vk_api_url: str = "https://api.vk.com"
    # message_new carries {"message", "client_info"} only from 5.103 on (platforms.md §2a); vk-api's
    # own default (5.92) would give the legacy shape.
    vk_api_version: str = Field(default="5.199", pattern=r"^5\.\d{1,3}$")
    vk_mode: Literal["longpoll", "callback"] = "longpoll"
    vk_confirmation: str | None = None
    vk_secret: SecretStr | None = None
    # Bots Long Poll `wait`: at most 90; 25 is VK's advice because proxies cut requests at 30 s.
    vk_longpoll_wait: int = Field(default=25, ge=1, le=90)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:// or postgresql:// (postgresql+psycopg://)")
        return value

    @field_validator("telegram_api_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address")
        return value.rstrip("/") if value else value

    @field_validator("telegram_token")
    @classmethod
    def _telegram_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and value.get_secret_value()
            and not _TELEGRAM_TOKEN.match(value.get_secret_value())
        ):
            raise ValueError("does not look like a bot token from @BotFather (<digits>:<secret>)")
        return value or None

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _telegram_secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_SECRET.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @field_validator("vk_api_url")
    @classmethod
    def _vk_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address")
        return value.rstrip("/")

    @field_validator("vk_api_version")
    @classmethod
    def _vk_modern_version(cls, value: str) -> str:
        if int(value.split(".")[1]) < 103:
            raise ValueError("must be 5.103 or later (older versions send message_new in the legacy shape)")
        return value

    @field_validator("vk_token", "vk_secret")
    @classmethod
    def _vk_blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.working_hours_end <= self.working_hours_start:
            raise _FieldError("working_hours_end", "must be later than ADALDYK_WORKING_HOURS_START")
        if self.telegram_token and self.telegram_mode == "webhook":
            if not self.public_url:
                raise _FieldError("public_url", "is required when ADALDYK_TELEGRAM_MODE=webhook")
            if not self.telegram_webhook_secret:
                raise _FieldError("telegram_webhook_secret", "is required when ADALDYK_TELEGRAM_MODE=webhook")
        if self.vk_token and self.vk_group_id is None:
            raise _FieldError("vk_group_id", "is required when ADALDYK_VK_TOKEN is set (the community's id)")
        if self.vk_token and self.vk_mode == "callback":
            if not self.vk_confirmation:
                raise _FieldError("vk_confirmation", "is required when ADALDYK_VK_MODE=callback")
            if not self.vk_secret:
                raise _FieldError("vk_secret", "is required when ADALDYK_VK_MODE=callback")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def secret_values(self) -> list[str]:
        """Every secret in force, so log output can be scrubbed of them."""
        secrets = [self.secret_key, self.telegram_token, self.telegram_webhook_secret]
        secrets += [self.vk_token, self.vk_secret]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def load_settings(**overrides: object) -> Settings:
    """Build settings once; turn any validation problem into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            field, message = ctx_error.field, str(ctx_error)
        else:
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = (
            "" if "secret" in field or "token" in field or isinstance(given, dict) else f" (got {given!r})"
        )
        problems.append(f"{ENV_PREFIX}{field.upper()}: {message}{shown}")
    return "; ".join(problems)
